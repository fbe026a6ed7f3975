#!/bin/sh
# The runtime patch must get a panic out, not only let netconsole start (the seed's empty hook
# did only that). The old kernel's whole story is emulated (lab/emulate, test only): e1000's
# ndo_poll_controller stripped from its ops (a driver built for 4.19+, as ena 2.x), and
# __netpoll_setup refusing it as before 4.19, and netpoll polling only NAPI contexts that
# are scheduled, as poll_one_napi() did before 4.19. eth0 is that e1000 on QEMU's user
# network (the lab runner listens at 10.0.2.2), TX ring at the driver's minimum (48), one
# vCPU. netconsole is refused as in the seed; the agent (and watch) diagnose
# missing_poll_controller, the agent patches, retries and verifies; then the kernel panics
# with a long report printed with interrupts off. An empty hook delivers the first ring's
# worth and loses the rest; the runner counts what arrived (received_report,
# received_panic_line).
# nics: e1000-host
# cpus: 1
# cmdline: e1000.TxDescriptors=48
# ends: panic
# timeout: 300
# variants: legacy
# checks: emulated seed_error diagnosed remediated verdict_names_proof napi_hook received_report received_panic_line
. /lib.sh

LINES=300
npt_host_nic eth0
TARGET="netconsole=@10.0.2.15/eth0,$NPT_RECEIVER_PORT@10.0.2.2/"
npt_check emulated insmod /lib/kmods/emulate_pre419.ko strip=eth0 poll=sched

netpoll-trace watch --json >/tmp/watch.json 2>/tmp/watch.err &
watch=$!
npt_wait_for 120 npt_ready_or_gone 'all ready:' /tmp/watch.err $watch

# The retry the way this kernel's netconsole needs it: the module parameter again, or the
# dynamic target's `enabled` where a failed module parameter leaves the module loaded.
cat >/tmp/retry.sh <<EOR
if [ -d /sys/kernel/config/netconsole/t0 ]; then echo 1 >/sys/kernel/config/netconsole/t0/enabled; else exec modprobe netconsole "$TARGET"; fi
EOR
npt_agent_config /tmp/agent.toml allowed_drivers='["e1000"]' retry.method='"command"' retry.command='["/bin/sh", "/tmp/retry.sh"]'
netpoll-trace agent --config /tmp/agent.toml >/tmp/agent.out 2>/tmp/agent.err &
agent=$!
npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/agent.err $agent

if npt_has netconsole_keeps_failed; then
    modprobe netconsole
    t=/sys/kernel/config/netconsole/t0
    mkdir -p $t
    echo eth0 >$t/dev_name
    echo 10.0.2.2 >$t/remote_ip
    echo "$NPT_RECEIVER_PORT" >$t/remote_port
    echo 1 >$t/enabled 2>/dev/null
    npt_check seed_error sh -c "dmesg | grep -q 'netpoll: netconsole: eth0 doesn.t support polling, aborting'"
else
    modprobe netconsole "$TARGET" >/tmp/modprobe.out 2>&1
    cat /tmp/modprobe.out
    npt_check seed_error grep -q 'Unknown error 524' /tmp/modprobe.out
fi
npt_wait_for 90 npt_json_has /tmp/journal.jsonl action=verify result=ok
cat /tmp/agent.err /tmp/journal.jsonl
npt_check diagnosed npt_json_has /tmp/watch.json type=diagnosis dev=eth0 cause=missing_poll_controller
remediated() {
    npt_json_has /tmp/journal.jsonl action=patch result=ok && npt_json_has /tmp/journal.jsonl action=verify result=ok
}
npt_check remediated remediated
# "verify ok" proves a set-up, and says that it does not prove delivery with interrupts off.
npt_check verdict_names_proof npt_json_has /tmp/journal.jsonl action=verify result=ok 'proved=["setup"]' 'not_proved=["send","delivery_interrupts_off"]'
cat /sys/module/netpoll_patch/parameters/state
npt_check napi_hook grep -q '^eth0 .* hook=napi' /sys/module/netpoll_patch/parameters/state
npt_panic $LINES
