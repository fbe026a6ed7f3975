#!/bin/sh
# The moment netconsole exists for, with the tool attached: the kernel dies with interrupts
# off, and every line of a long report and the final panic line must reach a receiver
# outside the guest. eth0 is an e1000 (NAPI, with its own ndo_poll_controller) on QEMU's user
# network, where the lab runner listens at 10.0.2.2; its TX ring at the driver's minimum (48
# descriptors) and one vCPU, so once the ring is full only netpoll's polling reaps TX
# completions. watch and the agent (default policy) are both attached (the legacy variant:
# the legacy object on kprobes, send-path probes included) while netconsole starts and the
# kernel panics. The runner counts what arrived: received_report, received_panic_line.
# nics: e1000-host
# cpus: 1
# cmdline: e1000.TxDescriptors=48
# ends: panic
# timeout: 300
# variants: legacy
# checks: ring_minimum watch_saw_setup agent_attached received_report received_panic_line
. /lib.sh

LINES=300
npt_host_nic eth0
# e1000 logs a ring size that differs from its default: the kernel took the minimum.
npt_check ring_minimum sh -c "dmesg | grep -q 'Transmit Descriptors set to 48'"

netpoll-trace watch --json >/tmp/watch.json 2>/tmp/watch.err &
watch=$!
npt_wait_for 120 npt_ready_or_gone 'all ready:' /tmp/watch.err $watch
npt_agent_config /tmp/agent.toml --bare journal='"/tmp/journal.jsonl"'
netpoll-trace agent --config /tmp/agent.toml >/tmp/agent.out 2>/tmp/agent.err &
agent=$!
npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/agent.err $agent
npt_check agent_attached kill -0 $agent

modprobe netconsole "netconsole=@10.0.2.15/eth0,$NPT_RECEIVER_PORT@10.0.2.2/"
npt_wait_for 30 npt_json_has /tmp/watch.json type=setup fn=$NPT_OUTER dev=eth0 ret=0
cat /tmp/watch.err
npt_check watch_saw_setup npt_json_has /tmp/watch.json type=setup fn=$NPT_OUTER dev=eth0 ret=0
npt_panic $LINES
