#!/bin/sh
# The shipped systemd unit, run as systemd runs it: its ExecStart under its
# CapabilityBoundingSet and NoNewPrivileges, with a notify socket (lab/tools/sdlisten) and a
# watchdog. READY=1 comes only once every probe is attached: a netconsole set-up started the
# moment READY arrives (as a unit ordered after the agent would) is traced and diagnosed, and
# no program is added after it. The ready line is the STATUS=; watchdog pings follow at half
# WATCHDOG_USEC; SIGTERM brings STOPPING=1 and exit 0.
# Two kernels, fentry (6.12) and 7.3's armed module probes: the unit and its notify
# protocol do not depend on the kernel; what READY waits for does.
# kernels: 6.12 7.3
# timeout: 240
# variants: legacy
# files: packaging/netpoll-trace-agent.service
# checks: unit_is_notify ready_after_attach traced_right_after_ready status_line watchdog stopping
. /lib.sh

UNIT=/packaging/netpoll-trace-agent.service
CAPS=$(sed -n 's/^CapabilityBoundingSet=//p' $UNIT)
EXEC=$(sed -n 's/^ExecStart=//p' $UNIT)
echo "ExecStart: $EXEC"
npt_check unit_is_notify grep -qx 'Type=notify' $UNIT
mkdir -p /usr/bin /etc/netpoll-trace
ln -sf /bin/netpoll-trace /usr/bin/netpoll-trace
npt_agent_config /etc/netpoll-trace/agent.toml
modprobe netconsole
echo 1 >/proc/sys/net/core/bpf_jit_kallsyms
before=$(grep -c ' bpf_prog_' /proc/kallsyms)

# Right at READY=1: a target on a device that does not exist (the kernel refuses it at once).
cat >/tmp/onready.sh <<'ONREADY'
. /lib.sh
npt_target gone eth7 10.99.0.2
true # the kernel refusing the target is the point, not a failure of this hook
ONREADY
sdlisten /run/notify /tmp/notify.log 'sh /tmp/onready.sh' &
listener=$!
npt_wait_for 10 test -S /run/notify
NOTIFY_SOCKET=/run/notify WATCHDOG_USEC=2000000 capexec "$CAPS" $EXEC >/tmp/agent.out 2>/tmp/agent.err &
agent=$!
npt_wait_for 120 grep -q 'READY=1' /tmp/notify.log
# Pings every second (half of 2 s): two within a few seconds.
watchdog_pings() { [ "$(grep -c '^WATCHDOG=1$' /tmp/notify.log)" -ge 2 ]; }
npt_wait_for 15 watchdog_pings
npt_wait_for 30 npt_json_has /tmp/journal.jsonl dev=eth7 cause=no_such_device
after=$(grep -c ' bpf_prog_' /proc/kallsyms)
cat /tmp/notify.log /tmp/agent.err /tmp/journal.jsonl
ready_progs=$(sed -n 's/^progs=\([0-9]*\) READY=1.*/\1/p' /tmp/notify.log)
echo "BPF programs: $before before, $ready_progs at READY=1, $after once running"
ready_after_attach() { test -n "$ready_progs" && test "$ready_progs" -gt "$before" && test "$ready_progs" -eq "$after"; }
npt_check ready_after_attach ready_after_attach
npt_check traced_right_after_ready npt_json_has /tmp/journal.jsonl dev=eth7 result=reported cause=no_such_device
npt_check status_line grep -q 'READY=1 | STATUS=agent ready' /tmp/notify.log
npt_check watchdog watchdog_pings
kill -TERM $agent
wait $agent
rc=$?
echo "agent exit $rc"
# The listener writes what it got on its own time: wait for it.
stopping() { test $rc -eq 0 && npt_wait_for 10 grep -q 'STOPPING=1' /tmp/notify.log; }
npt_check stopping stopping
cat /tmp/notify.log
kill $listener
