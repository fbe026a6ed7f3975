#!/bin/sh
# The ways watch degrades, on a real kernel: kprobes chosen explicitly; no kernel BTF
# (hidden under a tmpfs): fentry impossible, kprobes with only return codes ("reduced
# mode"); the same with a copy of the BTF given by --btf: full information again; and a
# --btf file that does not exist: one error line, exit 1, nothing attached. The kernel
# is the oracle: dmesg for what each set-up did, sysfs and kallsyms for the fields,
# debugfs' kprobe list and ftrace's enabled_functions for what is attached.
# nics: virtio
# timeout: 300
# checks: kprobe_ready kprobe_events_ok kprobe_same_as_fentry btf_hidden reduced_fallback reduced_warns reduced_fail_ret reduced_fail_matches_dmesg reduced_ok_ret reduced_fields_null btf_file_kprobes btf_file_full btf_file_attached missing_btf_exit missing_btf_message missing_btf_nothing_attached btf_restored nothing_left json_schema
. /lib.sh

npt_ip eth0 10.99.0.1/24
ifindex=$(cat /sys/class/net/eth0/ifindex)
modprobe dummy
ip link add d0 type dummy
ip link set d0 up
OK_TARGET=netconsole=@/eth0,6666@10.99.0.2/
FAIL_TARGET=netconsole=@/d0,6666@10.99.0.2/

show() { echo "--- $1 (exit $(cat /tmp/$1.rc))"; cat /tmp/$1.err /tmp/$1.json; }
# probes: netpoll functions with a kprobe or an ftrace hook (fentry trampolines and
# kprobes on function entry both show in enabled_functions).
probes() {
    grep -h 'netpoll' /sys/kernel/debug/kprobes/list /sys/kernel/tracing/enabled_functions 2>/dev/null
}
no_probes() { ! probes; }
no_probes_and_no_netconsole() { ! probes && ! grep -q '^netconsole ' /proc/modules; }
# The setup objects without what differs between two runs of the same set-up.
normalized() {
    npt_json_lines "$1" type=setup | sed -e 's/"ts_ns":[0-9]*,//' -e 's/"duration_ns":[0-9]*,//' -e 's/"pid":[0-9]*,//' | sort
}
aborting() { dmesg | grep -c 'no IP address for d0, aborting'; }

# --- kprobes chosen explicitly: the same events as the default (fentry) -------------
netpoll-trace watch --wait-all --json -- modprobe netconsole $OK_TARGET >/tmp/fentry.json 2>/tmp/fentry.err
echo $? >/tmp/fentry.rc
rmmod netconsole
show fentry
netpoll-trace watch --wait-all --attach kprobe --json -- modprobe netconsole $OK_TARGET >/tmp/kprobe.json 2>/tmp/kprobe.err
echo $? >/tmp/kprobe.rc
rmmod netconsole
show kprobe
npt_check kprobe_ready grep -q "ready: kprobe on $NPT_SETUP_FNS" /tmp/kprobe.err
kprobe_events_ok() {
    test "$(cat /tmp/kprobe.rc)" -eq 0 && npt_json_has /tmp/kprobe.json fn=$NPT_OUTER dev=eth0 ret=0 &&
        { npt_json_has /tmp/kprobe.json fn=__netpoll_setup dev=eth0 ifindex=$ifindex ret=0 has_poll_controller=true ||
            npt_json_has /tmp/kprobe.json fn=__netpoll_setup dev=eth0 ifindex=$ifindex ret=0 has_poll_controller=false; }
}
npt_check kprobe_events_ok kprobe_events_ok
normalized /tmp/fentry.json >/tmp/fentry.norm
normalized /tmp/kprobe.json >/tmp/kprobe.norm
npt_check kprobe_same_as_fentry sh -c "grep -q 'ready: fentry on' /tmp/fentry.err && test -s /tmp/fentry.norm && diff /tmp/fentry.norm /tmp/kprobe.norm"

# --- no kernel BTF: reduced mode -----------------------------------------------------
cp /sys/kernel/btf/vmlinux /tmp/vmlinux.btf
mount -t tmpfs none /sys/kernel/btf
npt_check btf_hidden sh -c "grep -q ' /sys/kernel/btf tmpfs ' /proc/mounts && ! test -e /sys/kernel/btf/vmlinux && test -s /tmp/vmlinux.btf"

before=$(aborting)
netpoll-trace watch --wait-all --json -- modprobe netconsole $FAIL_TARGET >/tmp/reduced_fail.json 2>/tmp/reduced_fail.err
echo $? >/tmp/reduced_fail.rc
rmmod netconsole 2>/dev/null
kernel_failures=$(($(aborting) - before))
show reduced_fail
npt_dmesg_mark
netpoll-trace watch --wait-all --json -- modprobe netconsole $OK_TARGET >/tmp/reduced_ok.json 2>/tmp/reduced_ok.err
echo $? >/tmp/reduced_ok.rc
started=$(npt_dmesg_since_mark | grep -c 'netconsole: network logging started')
rmmod netconsole
show reduced_ok

npt_check reduced_fallback sh -c "grep -q 'fentry unavailable (.*); using kprobes' /tmp/reduced_fail.err && \
    grep -q 'ready: kprobe on $NPT_SETUP_FNS' /tmp/reduced_fail.err && grep -q 'reduced mode' /tmp/reduced_fail.err"
npt_check reduced_warns sh -c "grep 'warning: could not resolve' /tmp/reduced_fail.err | grep -q 'reported as null' && \
    grep 'warning: could not resolve' /tmp/reduced_ok.err | grep -q 'reported as null'"
npt_check reduced_fail_ret npt_json_has /tmp/reduced_fail.json fn=$NPT_OUTER ret=-89 errno=EDESTADDRREQ
traced=$(npt_json_count /tmp/reduced_fail.json fn=$NPT_OUTER ret=-89)
echo "kernel logged $kernel_failures failure(s), reduced mode recorded $traced"
reduced_fail_matches_dmesg() {
    test $kernel_failures -ge 1 && test $kernel_failures -eq $traced && npt_json_none /tmp/reduced_fail.json fn=__netpoll_setup
}
npt_check reduced_fail_matches_dmesg reduced_fail_matches_dmesg
reduced_ok_ret() {
    test "$(cat /tmp/reduced_ok.rc)" -eq 0 && test $started -ge 1 && npt_json_has /tmp/reduced_ok.json fn=$NPT_OUTER ret=0 &&
        npt_json_has /tmp/reduced_ok.json fn=__netpoll_setup ret=0
}
npt_check reduced_ok_ret reduced_ok_ret
# What needs struct offsets is null, never a guess: every setup object has all three null.
reduced_fields_null() {
    cat /tmp/reduced_ok.json /tmp/reduced_fail.json >/tmp/reduced.all
    setups=$(npt_json_count /tmp/reduced.all type=setup)
    nulls=$(npt_json_count /tmp/reduced.all type=setup dev=null ifindex=null has_poll_controller=null)
    echo "setup objects: $setups, with dev, ifindex and has_poll_controller null: $nulls"
    test "$setups" -gt 0 && test "$setups" -eq "$nulls"
}
npt_check reduced_fields_null reduced_fields_null

# --- the same, with the BTF given as a file: full information again -----------------
truth() { grep -qw "$1" /proc/kallsyms && echo true || echo false; }
virtio_pc=$(truth virtnet_netpoll)
netpoll-trace watch --wait-all --btf /tmp/vmlinux.btf --json -- sh -c \
    "grep netpoll_setup /sys/kernel/debug/kprobes/list >/tmp/attached.txt; exec modprobe netconsole $OK_TARGET" \
    >/tmp/btf_file.json 2>/tmp/btf_file.err
echo $? >/tmp/btf_file.rc
rmmod netconsole
show btf_file
echo "kprobes while attached:"; cat /tmp/attached.txt
npt_check btf_file_kprobes sh -c "grep -q 'fentry unavailable (.*); using kprobes' /tmp/btf_file.err && \
    grep -q 'ready: kprobe on $NPT_SETUP_FNS.*offsets from /tmp/vmlinux.btf' /tmp/btf_file.err && \
    ! grep -q 'could not resolve' /tmp/btf_file.err"
btf_file_full() {
    test "$(cat /tmp/btf_file.rc)" -eq 0 && npt_json_has /tmp/btf_file.json fn=$NPT_OUTER netpoll=netconsole dev=eth0 ret=0 &&
        npt_json_has /tmp/btf_file.json fn=__netpoll_setup dev=eth0 ifindex=$ifindex ret=0 has_poll_controller=$virtio_pc
}
npt_check btf_file_full btf_file_full
# The oracle for "attached" sees this run's probes (so it can see leftovers below).
npt_check btf_file_attached grep -q 'netpoll_setup' /tmp/attached.txt

# --- a --btf file that does not exist: one line, exit 1, nothing attached -----------
netpoll-trace watch --wait-all --btf /nonexistent --json -- modprobe netconsole $OK_TARGET >/tmp/missing.json 2>/tmp/missing.err
echo $? >/tmp/missing.rc
show missing
npt_check missing_btf_exit test "$(cat /tmp/missing.rc)" -eq 1
npt_check missing_btf_message sh -c "test \$(wc -l </tmp/missing.err) -eq 1 && grep -q '^netpoll-trace: error: .*/nonexistent' /tmp/missing.err && ! test -s /tmp/missing.json"
# Nothing attached, and COMMAND never ran (netconsole is not loaded).
npt_check missing_btf_nothing_attached no_probes_and_no_netconsole
rmmod netconsole 2>/dev/null

# --- restore ---------------------------------------------------------------------------
umount /sys/kernel/btf
npt_check btf_restored cmp /sys/kernel/btf/vmlinux /tmp/vmlinux.btf
npt_check nothing_left no_probes
npt_check json_schema sh -c 'for f in fentry kprobe reduced_fail reduced_ok btf_file; do netpoll-trace schema-check /tmp/$f.json || exit 1; done'
