#!/bin/sh
# The whole pipe on a real kernel: netpoll-trace loads its eBPF object, attaches to
# netpoll_setup and __netpoll_setup, and records what `modprobe netconsole` does on a
# virtio NIC (success) and on a dummy device without an IPv4 address (failure:
# -EDESTADDRREQ from netpoll_setup before __netpoll_setup is reached); the module
# parameter's target is reported enabled, and disabled by the unload, in kernel order even
# when both happen under one watch. The kernel's own log and sysfs are the oracle.
# nics: virtio
# timeout: 300
# variants: legacy
# checks: param_target_enabled param_target_off causal_order bpf_log_quiet bpf_log_verbose json_schema attach ok_modprobe ok_outer_event ok_inner_event ok_ifindex ok_ops_read ok_kernel_log fail_modprobe fail_outer_event fail_no_inner fail_matches_dmesg watch_exit_3 watch_human
. /lib.sh

ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up

# --- success: virtio NIC with an address ---------------------------------------
netpoll-trace watch --wait-all --json -- modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/ >/tmp/ok.json 2>/tmp/ok.err
ok_rc=$?
echo "--- watch (success case) rc=$ok_rc"; cat /tmp/ok.err /tmp/ok.json

npt_check attach grep -Eq "ready: (fentry|kprobe) on $NPT_SETUP_FNS" /tmp/ok.err
npt_check ok_modprobe test "$ok_rc" -eq 0
npt_check ok_outer_event npt_json_has /tmp/ok.json fn=$NPT_OUTER netpoll=netconsole dev=eth0 ret=0 depth=0 comm=modprobe
npt_check ok_inner_event npt_json_has /tmp/ok.json fn=__netpoll_setup dev=eth0 ret=0 depth=1
ifindex=$(cat /sys/class/net/eth0/ifindex)
npt_check ok_ifindex npt_json_has /tmp/ok.json fn=__netpoll_setup ifindex=$ifindex
# The ops table was read through BTF offsets: a boolean, never null, on a BTF kernel.
ok_ops_read() {
    npt_json_has /tmp/ok.json fn=__netpoll_setup has_poll_controller=true ||
        npt_json_has /tmp/ok.json fn=__netpoll_setup has_poll_controller=false
}
npt_check ok_ops_read ok_ops_read
# The programs' own log records (aya-log): silent by default, shown with -vv.
npt_check bpf_log_quiet sh -c "! grep -q 'set-up fn=' /tmp/ok.err"
npt_check ok_kernel_log sh -c "dmesg | grep -Eq '$NPT_NC_LOG: netconsole: local IP(v4 address)? 10.99.0.1'"
# A module-parameter target's lifecycle: enabled by its set-up, disabled by the unload.
npt_check param_target_enabled npt_json_has /tmp/ok.json type=target target=netconsole@10.99.0.2:6666 event=enabled cause=netpoll_setup dev=eth0
netpoll-trace watch --wait-all --json -- rmmod netconsole >/tmp/rmmod.json 2>/tmp/rmmod.err
cat /tmp/rmmod.err /tmp/rmmod.json
# Unloading, netconsole unregisters its netdevice notifier, which replays NETDEV_UNREGISTER
# to it: the kernel stops the target there (and logs "stopped ... as it unregistered")
# with the device alive. 5.10 and 6.1 do it through __netpoll_cleanup alone (reported
# stopped, device_event); 6.12 through do_netpoll_cleanup, as for a disable (disabled).
param_target_off() {
    t="type=target target=netconsole@10.99.0.2:6666 dev=eth0"
    npt_json_has /tmp/rmmod.json $t event=disabled cause=disabled ||
        npt_json_has /tmp/rmmod.json $t event=stopped cause=device_event
}
npt_check param_target_off param_target_off
# Set-up and unload under one watch (the demo's case): the unload's tear-down arrives while
# the set-up waits out its grace period; both outputs keep kernel order: the set-up, then
# `enabled`, then the target's end, and nothing after it.
netpoll-trace watch --wait-all --json -- sh -c 'modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/; rmmod netconsole' >/tmp/both.json 2>/tmp/both.err
netpoll-trace watch --wait-all -- sh -c 'modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/; rmmod netconsole' >/tmp/both.txt 2>&1
cat /tmp/both.json /tmp/both.txt
# line_of FILE PATTERN: the number of the first line matching PATTERN (0 when none).
line_of() { n=$(grep -n -E "$2" "$1" | head -n 1 | cut -d: -f1); echo "${n:-0}"; }
causal_order() {
    s=$(line_of /tmp/both.json '"type":"setup".*"fn":"'$NPT_OUTER'".*"dev":"eth0"')
    e=$(line_of /tmp/both.json '"type":"target".*"event":"enabled"')
    d=$(line_of /tmp/both.json '"type":"target".*"event":"(disabled|stopped)"')
    last=$(grep '"type":"target"' /tmp/both.json | tail -n 1)
    ts=$(line_of /tmp/both.txt "$NPT_OUTER +netconsole eth0")
    te=$(line_of /tmp/both.txt '^target netconsole@10.99.0.2:6666 enabled')
    td=$(line_of /tmp/both.txt '^target netconsole@10.99.0.2:6666 (disabled|stopped)')
    echo "json: setup $s, enabled $e, end $d; table: setup $ts, enabled $te, end $td"
    test "$s" -gt 0 && test "$e" -gt "$s" && test "$d" -gt "$e" && echo "$last" | grep -Eq '"event":"(disabled|stopped)"' &&
        test "$ts" -gt 0 && test "$te" -gt "$ts" && test "$td" -gt "$te"
}
npt_check causal_order causal_order
netpoll-trace -vv watch -- modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/ >/dev/null 2>/tmp/verbose.err
grep 'set-up fn=' /tmp/verbose.err
if grep -q '; legacy object, attach path' /tmp/verbose.err; then
    # The legacy object (4.14) has no log channel: no aya-log records, even with -vv.
    npt_check bpf_log_verbose sh -c "! grep -q 'set-up fn=' /tmp/verbose.err"
else
    npt_check bpf_log_verbose grep -q 'set-up fn=2 depth=1 ret=0' /tmp/verbose.err
fi
rmmod netconsole

# --- failure: dummy device without an IPv4 address -------------------------------
modprobe dummy
ip link add d0 type dummy
ip link set d0 up
dmesg_before=$(dmesg | grep -c 'no IP address for d0, aborting')
netpoll-trace watch --wait-all --json -- modprobe netconsole netconsole=@/d0,6666@10.99.0.2/ >/tmp/fail.json 2>/tmp/fail.err
fail_rc=$?
echo "--- watch (failure case) rc=$fail_rc"; cat /tmp/fail.err /tmp/fail.json

# Where a failed target fails the module load (with the errno), watch passes
# modprobe's status on; where the module stays loaded with the target disabled (dynamic
# netconsole, 6.10 on), the failure is silent: watch turns it into exit 3 and says
# netconsole is not logging.
if npt_has netconsole_keeps_failed; then
    npt_check fail_modprobe sh -c "test $fail_rc -eq 3 && dmesg | grep -q 'Not enabling netconsole' && grep -q 'netconsole is NOT logging' /tmp/fail.err"
else
    npt_check fail_modprobe sh -c "test $fail_rc -ne 0 && test $fail_rc -ne 3"
fi
npt_check fail_outer_event npt_json_has /tmp/fail.json fn=$NPT_OUTER dev=d0 ret=-89 errno=EDESTADDRREQ
npt_check fail_no_inner npt_json_none /tmp/fail.json fn=__netpoll_setup dev=d0
# Exactly one recorded failure per "aborting" line the kernel logged (busybox's
# modprobe retries a failed load once, so where the load fails it is logged twice).
dmesg_after=$(dmesg | grep -c 'no IP address for d0, aborting')
kernel_failures=$((dmesg_after - dmesg_before))
traced_failures=$(npt_json_count /tmp/fail.json fn=$NPT_OUTER dev=d0 ret=-89)
echo "kernel logged $kernel_failures failure(s), netpoll-trace recorded $traced_failures"
npt_check fail_matches_dmesg sh -c "test $kernel_failures -ge 1 && test $kernel_failures -eq $traced_failures"
rmmod netconsole 2>/dev/null

# --- watch without COMMAND: report live, exit 3 once a set-up failed -----------
netpoll-trace watch --for 120s >/tmp/bg.out 2>/tmp/bg.err &
bg=$!
npt_wait_for 120 grep -q 'all ready:' /tmp/bg.err
modprobe netconsole netconsole=@/d0,6666@10.99.0.2/ >/dev/null 2>&1
rmmod netconsole 2>/dev/null
kill -INT $bg
wait $bg
bg_rc=$?
echo "--- watch (no command) rc=$bg_rc"; cat /tmp/bg.err /tmp/bg.out
npt_check watch_exit_3 test "$bg_rc" -eq 3
npt_check watch_human grep -Eq 'netpoll_setup +netconsole +d0 +-EDESTADDRREQ' /tmp/bg.out
npt_check json_schema sh -c 'netpoll-trace schema-check /tmp/ok.json && netpoll-trace schema-check /tmp/fail.json'
