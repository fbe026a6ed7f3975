#!/bin/sh
# The agent end to end on an emulated pre-4.19 kernel (lab/emulate, test only):
# modprobe netconsole fails as in the seed, the agent diagnoses
# missing_poll_controller, patches (allowlisted driver), retries and verifies, and a
# UDP receiver in another namespace gets a kernel message. Also: a driver not on the
# allowlist is only reported, --dry-run changes nothing, a bad configuration is one
# line naming the key, netkit is never patched, SIGTERM stops cleanly, and the agent
# keeps only the capabilities it needs: run under the shipped unit's bounding set and
# NoNewPrivileges, it drops to CAP_SYS_MODULE and CAP_SYSLOG and its retry command gets
# CAP_SYS_MODULE alone; without CAP_SETPCAP it refuses to run on with more. And with
# policy.target_stopped = "reenable", a target whose vlan was deleted is re-enabled once
# the vlan is re-created, and sends again; one disabled by hand is left alone. A
# configuration group or others can write is refused; under the default policy (report
# only) the agent keeps CAP_SYSLOG alone (no CAP_SYS_MODULE: it never loads a module),
# and writes the cache of the kernel's BTF facts once started, with only that left.
# nics: virtio virtio
# timeout: 500
# variants: legacy
# files: packaging/netpoll-trace-agent.service
# checks: config_untrusted default_policy_caps agent_writes_cache bad_config drop_needs_setpcap seed_error not_allowlisted dry_run_changes_nothing remediated delivered capabilities retry_capabilities device_vanished still_working clean_stop journal_schema netkit_never_patched reenabled reenable_delivered disabled_left_alone reenable_journal_schema
. /lib.sh

KO=/lib/kmods/netpoll_patch.ko
TARGET=netconsole=@/eth0,6666@10.99.0.2/
ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up
npt_receiver eth1 /tmp/received

config() { # FILE ALLOWED_DRIVERS (TOML list items)
    npt_agent_config "$1" patch_module="\"$KO\"" allowed_drivers="[$2]" retry.command="[\"/sbin/modprobe\", \"netconsole\", \"$TARGET\"]"
}

# The shipped unit's CapabilityBoundingSet; `capexec "$UNIT_CAPS" CMD` runs CMD as
# systemd runs the unit's ExecStart (that bounding set, NoNewPrivileges).
UNIT_CAPS=$(sed -n 's/^CapabilityBoundingSet=//p' /packaging/netpoll-trace-agent.service)
echo "unit bounding set: $UNIT_CAPS"

# start_agent LOG ARGS...: agent in the background, under the unit's bounding set;
# waits until it is attached.
start_agent() {
    log=$1; shift
    capexec "$UNIT_CAPS" netpoll-trace agent "$@" >"$log.out" 2>"$log.err" &
    agent=$!
    npt_wait_for 120 npt_ready_or_gone 'agent ready:' "$log.err" $agent
}

# --- a configuration others could change (it names a command run as root): refused --
npt_agent_config /tmp/gw.toml
chmod 664 /tmp/gw.toml
netpoll-trace agent --config /tmp/gw.toml >/tmp/gw.out 2>&1
gw_rc=$?
cat /tmp/gw.out
npt_check config_untrusted sh -c "test $gw_rc -eq 1 && test \$(wc -l </tmp/gw.out) -eq 1 && grep -q 'refusing configuration /tmp/gw.toml: writable by group or others' /tmp/gw.out"

# --- the default policy (report only) under the shipped unit: no CAP_SYS_MODULE ----
npt_agent_config /tmp/report.toml --bare journal='"/tmp/report.jsonl"'
# No cache of the kernel's BTF facts: the agent writes it once started, capabilities dropped.
CACHE=/var/cache/netpoll-trace/kernel-btf.json
rm -rf /var/cache/netpoll-trace
capexec "$UNIT_CAPS" netpoll-trace agent --config /tmp/report.toml >/tmp/report.out 2>/tmp/report.err &
report_agent=$!
npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/report.err $report_agent
grep Cap /proc/$report_agent/status | tee /tmp/report.caps
npt_wait_for 60 test -s $CACHE
npt_check agent_writes_cache sh -c "kill -0 $report_agent && test \"\$(stat -c '%a %u' $CACHE)\" = '600 0'"
kill -TERM $report_agent
wait $report_agent
# CAP_SYSLOG (34) alone: it never patches, so it cannot load a module.
npt_check default_policy_caps sh -c "grep -q '^CapEff:.0000000400000000\$' /tmp/report.caps && grep -q '^CapPrm:.0000000400000000\$' /tmp/report.caps && grep -q 'keeping only CAP_SYSLOG\$' /tmp/report.err"

# --- a bad configuration: one line naming the key, nothing attached --------------
npt_agent_config /tmp/bad.toml --bare policy.netpoll_disabled='"patch"'
netpoll-trace agent --config /tmp/bad.toml >/tmp/bad.out 2>&1
bad_rc=$?
cat /tmp/bad.out
npt_check bad_config sh -c "test $bad_rc -eq 1 && test \$(wc -l </tmp/bad.out) -eq 1 && grep -q 'policy.netpoll_disabled' /tmp/bad.out"

# --- without CAP_SETPCAP the drop fails: exit 1, one line, nothing left attached ---
echo 1 >/proc/sys/net/core/bpf_jit_kallsyms
progs_before=$(grep -c ' bpf_prog_' /proc/kallsyms)
npt_agent_config /tmp/plain.toml
# (timeout: an agent that carries on regardless would otherwise run forever)
timeout 60 capexec "$(echo "$UNIT_CAPS" | sed 's/CAP_SETPCAP//')" netpoll-trace agent --config /tmp/plain.toml >/tmp/nosetpcap.out 2>/tmp/nosetpcap.err
nosetpcap_rc=$?
cat /tmp/nosetpcap.err
progs_after=$(grep -c ' bpf_prog_' /proc/kallsyms)
echo "exit $nosetpcap_rc; BPF programs in kallsyms: $progs_before before, $progs_after after"
drop_needs_setpcap() {
    test $nosetpcap_rc -eq 1 && test "$(wc -l </tmp/nosetpcap.err)" -eq 1 && grep -q 'CAP_SETPCAP' /tmp/nosetpcap.err &&
        test "$progs_after" -eq "$progs_before"
}
npt_check drop_needs_setpcap drop_needs_setpcap

insmod /lib/kmods/emulate_pre419.ko

# --- driver not on the allowlist: reported, never patched ------------------------
config /tmp/ena.toml '"ena"'
start_agent /tmp/ena --config /tmp/ena.toml --once
modprobe netconsole "$TARGET" >/tmp/modprobe.out 2>&1
echo "modprobe exit $?"; cat /tmp/modprobe.out
if npt_has netconsole_keeps_failed; then
    npt_check seed_error sh -c "dmesg | grep -q 'Not enabling netconsole for cmdline0. Netpoll setup failed'"
else
    npt_check seed_error grep -q 'Unknown error 524' /tmp/modprobe.out
fi
wait $agent
ena_rc=$?
cat /tmp/ena.err /tmp/ena.out
rmmod netconsole 2>/dev/null
not_allowlisted() {
    test $ena_rc -eq 3 &&
        npt_json_has /tmp/ena.out action=decide result=reported 'detail~driver virtio_net of eth0 is not in allowed_drivers' &&
        ! test -d /sys/module/netpoll_patch
}
npt_check not_allowlisted not_allowlisted

# --- dry run: decides and journals, changes nothing ------------------------------
config /tmp/virtio.toml '"virtio_net", "dummy"'
start_agent /tmp/dry --config /tmp/virtio.toml --dry-run --once
modprobe netconsole "$TARGET" >/dev/null 2>&1
wait $agent
dry_rc=$?
cat /tmp/dry.err /tmp/dry.out
rmmod netconsole 2>/dev/null
netpoll-trace watch --wait-all --json -- modprobe netconsole "$TARGET" >/tmp/dry-ops.json 2>/dev/null
rmmod netconsole 2>/dev/null
dry_run_changes_nothing() {
    test $dry_rc -eq 3 && npt_json_has /tmp/dry.out action=patch result=dry_run && ! test -d /sys/module/netpoll_patch &&
        npt_json_has /tmp/dry-ops.json fn=__netpoll_setup ops_symbol=virtnet_netdev
}
npt_check dry_run_changes_nothing dry_run_changes_nothing

# --- the real thing: refused, patched, retried, verified, delivered -------------
# Where a failed `netconsole=` fails the module load, the seed's `modprobe netconsole
# netconsole=...` fails and the agent retries with retry.command. Where the module
# keeps the failed target disabled instead, a dynamic (configfs) target refuses to
# enable and the agent retries by writing its `enabled`.
# The retry command records its capabilities, then retries the way this kernel's
# netconsole needs (module parameter, or the dynamic target's `enabled`).
cat >/tmp/retry.sh <<EOF
grep Cap /proc/\$\$/status >/tmp/retry.caps
if [ -d /sys/kernel/config/netconsole/t0 ]; then echo 1 >/sys/kernel/config/netconsole/t0/enabled; else exec modprobe netconsole "$TARGET"; fi
EOF
npt_agent_config /tmp/unit.toml allowed_drivers='["virtio_net", "dummy"]' retry.method='"command"' retry.command='["/bin/sh", "/tmp/retry.sh"]'
rm -f /tmp/journal.jsonl
start_agent /tmp/agent --config /tmp/unit.toml
t0=$(npt_uptime_cs)
if npt_has netconsole_keeps_failed; then
    rmmod netconsole 2>/dev/null
    modprobe netconsole
    npt_target t0 eth0 10.99.0.2
    echo "target t0 enabled=$(cat /sys/kernel/config/netconsole/t0/enabled)"
else
    modprobe netconsole "$TARGET" >/dev/null 2>&1
fi
npt_wait_for 90 npt_json_has /tmp/journal.jsonl action=verify result=ok
echo "<2>npt-agent-hello $$" >/dev/kmsg
npt_wait_for 30 grep -q "npt-agent-hello $$" /tmp/received
t1=$(npt_uptime_cs)
echo "time from the failed set-up to the first delivered message: $(( (t1 - t0) / 100 )).$(( (t1 - t0) % 100 )) s ($NPT_KERNEL, TCG)"
cat /tmp/agent.err /tmp/journal.jsonl
remediated() {
    npt_json_has /tmp/journal.jsonl action=patch result=ok 'detail~ops virtnet_netdev [virtio_net] -> a private copy' &&
        npt_json_has /tmp/journal.jsonl action=verify result=ok &&
        grep -q '^eth0 ' /sys/module/netpoll_patch/parameters/state
}
npt_check remediated remediated
npt_check delivered grep -q "npt-agent-hello $$" /tmp/received
# CAP_SYS_MODULE (16) and CAP_SYSLOG (34) in every set, nothing else; the retry command
# CAP_SYS_MODULE alone (its bounding set is the agent's, and no_new_privs keeps it there).
grep Cap /proc/$agent/status | tee /tmp/agent.caps
cat /tmp/retry.caps
caps_are() { # FILE EFF PRM BND
    grep -q "^CapEff:.$2\$" $1 && grep -q "^CapPrm:.$3\$" $1 && grep -q "^CapBnd:.$4\$" $1 && grep -q "^CapAmb:.0000000000000000\$" $1
}
agent_caps() { caps_are /tmp/agent.caps 0000000400010000 0000000400010000 0000000400010000 && grep -q 'keeping only CAP_SYS_MODULE, CAP_SYSLOG$' /tmp/agent.err; }
npt_check capabilities agent_caps
npt_check retry_capabilities caps_are /tmp/retry.caps 0000000000010000 0000000000010000 0000000400010000

# --- netkit (6.7+): reported, never patched ---------------------------------------
if nlhelper netkit-add nk0 nk1 2>/dev/null; then
    ip addr add 10.99.2.1/24 dev nk0
    ip link set nk0 up
    ip link set nk1 up
    npt_target nk nk0 10.99.2.2
    npt_wait_for 30 npt_json_has /tmp/journal.jsonl dev=nk0 action=decide
    npt_json_lines /tmp/journal.jsonl dev=nk0
    netkit_never_patched() {
        npt_json_has /tmp/journal.jsonl dev=nk0 result=reported 'detail~netpoll_disabled is not fixed by patching' &&
            npt_json_none /tmp/journal.jsonl dev=nk0 action=patch && ! grep -q '^nk0 ' /sys/module/netpoll_patch/parameters/state
    }
    npt_check netkit_never_patched netkit_never_patched
else
    npt_skip netkit_never_patched "no netkit on $NPT_KERNEL (netkit arrived in 6.7)"
fi

# --- a device that vanishes while the agent handles it: the agent goes on -------
modprobe dummy
ip link add d5 type dummy
ip addr add 10.99.5.1/24 dev d5
ip link set d5 up
npt_target d5t d5 10.99.5.2     # refused: dummy has no poll controller (emulated rule)
ip link del d5
rmdir /sys/kernel/config/netconsole/d5t 2>/dev/null
# Depending on when the agent looks, the device is gone before it reads the driver
# (reported: driver unknown) or before the patch or its verification (failed).
d5_handled() {
    npt_json_has /tmp/journal.jsonl dev=d5 action=verify || npt_json_has /tmp/journal.jsonl dev=d5 action=patch result=failed ||
        npt_json_has /tmp/journal.jsonl dev=d5 action=decide result=reported
}
npt_wait_for 60 d5_handled
npt_json_lines /tmp/journal.jsonl dev=d5
device_vanished() {
    kill -0 $agent && { npt_json_has /tmp/journal.jsonl dev=d5 result=failed || npt_json_has /tmp/journal.jsonl dev=d5 action=decide result=reported; }
}
npt_check device_vanished device_vanished
# ... and handles the next failure as usual.
npt_target gone eth7 10.99.0.2
npt_wait_for 30 npt_json_has /tmp/journal.jsonl dev=eth7 action=decide
npt_check still_working npt_json_has /tmp/journal.jsonl dev=eth7 result=reported cause=no_such_device

# --- SIGTERM: a clean stop, journalled ------------------------------------------
kill -TERM $agent
wait $agent
stop_rc=$?
clean_stop() { tail -n 1 /tmp/journal.jsonl >/tmp/journal.last && test $stop_rc -eq 0 && npt_json_has /tmp/journal.last action=stop; }
npt_check clean_stop clean_stop
npt_check journal_schema netpoll-trace schema-check /tmp/journal.jsonl
# --- a target stopped by its device: re-enabled once the device is back ------------
# A vlan on eth0 (patched above) carries a configfs target; the receiver gets the vlan
# too. Deleting the vlan stops the target (device_unregistered); with target_stopped =
# "reenable" the agent waits for the name, re-enables the target once it is re-created,
# verifies its set-up and sees the device send its marker line.
modprobe 8021q 2>/dev/null
nsenter -t "$NPT_NS" -n sh -c "ip link add link eth1 name eth1.100 type vlan id 100 && ip addr add 10.99.100.2/24 dev eth1.100 && ip link set eth1.100 up"
vlan_up() { ip link add link eth0 name eth0.100 type vlan id 100 && ip addr add 10.99.100.1/24 dev eth0.100 && ip link set eth0.100 up; }
vlan_up
npt_agent_config /tmp/reenable.toml journal='"/tmp/reenable.jsonl"' device_wait='"60s"' \
    policy.target_stopped='"reenable"' retry.method='"configfs"'
rm -f /tmp/reenable.jsonl
start_agent /tmp/reenable --config /tmp/reenable.toml
npt_target vt eth0.100 10.99.100.2
echo "target vt enabled=$(cat /sys/kernel/config/netconsole/vt/enabled)"
echo "<2>npt-vlan-before $$" >/dev/kmsg
npt_wait_for 30 grep -q "npt-vlan-before $$" /tmp/received
ip link del eth0.100
npt_wait_for 30 npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=decide result=ok
echo "target vt after the delete: enabled=$(cat /sys/kernel/config/netconsole/vt/enabled)"
sleep 2
vlan_up
npt_wait_for 120 npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=verify_send
echo "<2>npt-vlan-after $$" >/dev/kmsg
npt_wait_for 30 grep -q "npt-vlan-after $$" /tmp/received
npt_json_lines /tmp/reenable.jsonl dev=eth0.100
# Where netconsole resumes the target itself (7.3+) the agent only waits and reports: no
# write to enabled, the kernel's resume verified, then its sends.
resumed_by_kernel() {
    npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=decide result=ok 'detail~resumes it itself' &&
        npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=verify result=ok 'detail~resumed by the kernel' &&
        npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=verify_send result=ok &&
        test "$(npt_json_count /tmp/reenable.jsonl dev=eth0.100 action=reenable)" -eq 0 &&
        dmesg | grep -q 'network logging resumed on interface eth0.100' &&
        test "$(cat /sys/kernel/config/netconsole/vt/enabled)" = 1
}
reenabled() {
    if npt_has netconsole_resumes; then
        resumed_by_kernel
        return
    fi
    npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=decide result=ok 'detail~stopped (device_unregistered)' &&
        npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=wait_device result=ok &&
        npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=reenable result=ok 'detail~/sys/kernel/config/netconsole/vt/enabled' &&
        npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=verify result=ok &&
        npt_json_has /tmp/reenable.jsonl dev=eth0.100 action=verify_send result=ok &&
        test "$(npt_json_count /tmp/reenable.jsonl dev=eth0.100 action=reenable)" -eq 1 &&
        test "$(cat /sys/kernel/config/netconsole/vt/enabled)" = 1
}
npt_check reenabled reenabled
if npt_has netconsole_resumes; then how='resumed by the kernel'; else how=re-enabled; fi
npt_check reenable_delivered sh -c "grep -q 'netpoll-trace agent: netconsole@10.99.100.2:6666 $how on eth0.100' /tmp/received && grep -q 'npt-vlan-after $$' /tmp/received"
# Disabled by its owner: journaled, left disabled. (6.12's netconsole tears a disabled
# target down from its netdev notifier: the kernel events call it a device event.)
reenables=$(npt_json_count /tmp/reenable.jsonl dev=eth0.100 action=reenable)
decided=$(npt_json_count /tmp/reenable.jsonl dev=eth0.100 action=decide result=reported)
echo 0 >/sys/kernel/config/netconsole/vt/enabled
more_reported() { test "$(npt_json_count /tmp/reenable.jsonl dev=eth0.100 action=decide result=reported)" -gt "$decided"; }
npt_wait_for 30 more_reported
sleep 3
npt_json_lines /tmp/reenable.jsonl dev=eth0.100 action=decide
disabled_left_alone() {
    more_reported &&
        test "$(npt_json_count /tmp/reenable.jsonl dev=eth0.100 action=reenable)" -eq "$reenables" &&
        test "$(cat /sys/kernel/config/netconsole/vt/enabled)" = 0
}
npt_check disabled_left_alone disabled_left_alone
kill -TERM $agent
wait $agent
cat /tmp/reenable.err
npt_check reenable_journal_schema netpoll-trace schema-check /tmp/reenable.jsonl
ip link del eth0.100 2>/dev/null
for t in /sys/kernel/config/netconsole/*; do echo 0 >$t/enabled 2>/dev/null; rmdir $t 2>/dev/null; done
rmmod netconsole 2>/dev/null
netpoll-trace unpatch eth0
