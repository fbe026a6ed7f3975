#!/bin/sh
# One decision per netconsole target, not per device (#24). On an emulated pre-4.19 kernel
# (lab/emulate, test only) three configfs targets fail while the agent watches: two on
# eth0 (virtio: no ndo_poll_controller), sending to ports 6666 and 6667, and one on a vlan
# over eth0 (refused through its lower device). The agent patches eth0 once and re-enables
# each target by its own device and remote, verifying each; the receivers in another
# namespace get a line through each. Keyed by device, the second target on eth0 was
# "superseded" by the first one's success and never enabled, and the vlan's target was
# looked up by eth0 and never found.
# nics: virtio virtio
# modules: 8021q
# timeout: 300
# variants: legacy
# checks: refused_first each_verified none_superseded all_enabled delivered_each journal_schema
. /lib.sh

CFG=/sys/kernel/config/netconsole
ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up
npt_receiver eth1 /tmp/received
nsenter -t "$NPT_NS" -n netpoll-trace receive --listen 0.0.0.0:6667 >/tmp/received2 2>/tmp/received2.err &
npt_wait_for 20 grep -q 'listening on UDP' /tmp/received2.err
nsenter -t "$NPT_NS" -n sh -c "ip link add link eth1 name eth1.100 type vlan id 100 && ip addr add 10.99.100.2/24 dev eth1.100 && ip link set eth1.100 up"
ip link add link eth0 name eth0.100 type vlan id 100
ip addr add 10.99.100.1/24 dev eth0.100
ip link set eth0.100 up

insmod /lib/kmods/emulate_pre419.ko
modprobe netconsole
npt_agent_config /tmp/agent.toml retry.method='"configfs"'
netpoll-trace agent --config /tmp/agent.toml >/tmp/agent.out 2>/tmp/agent.err &
agent=$!
npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/agent.err $agent

npt_dmesg_mark
npt_target a eth0 10.99.0.2
npt_target b eth0 10.99.0.2 off
echo 6667 >$CFG/b/remote_port
echo 1 >$CFG/b/enabled 2>/dev/null
npt_target v eth0.100 10.99.100.2
refusals=$(npt_dmesg_since_mark | grep -c "doesn't support polling, aborting")
echo "refusals logged by the kernel: $refusals"
npt_check refused_first test "$refusals" -ge 3

verified() { [ "$(npt_json_count /tmp/journal.jsonl action=verify result=ok)" -ge 3 ]; }
npt_wait_for 120 verified
cat /tmp/agent.err /tmp/journal.jsonl
for t in a b v; do echo "target $t: dev $(cat $CFG/$t/dev_name) remote $(cat $CFG/$t/remote_ip):$(cat $CFG/$t/remote_port) enabled $(cat $CFG/$t/enabled)"; done
npt_check each_verified verified
npt_check none_superseded npt_json_none /tmp/journal.jsonl result=superseded
npt_check all_enabled sh -c "test \$(cat $CFG/a/enabled) = 1 && test \$(cat $CFG/b/enabled) = 1 && test \$(cat $CFG/v/enabled) = 1"

# Level 2 (crit): above any console loglevel, so every target sends it.
echo "<2>npt-each-target $$" >/dev/kmsg
through() { grep -q "^$1:[0-9]* .*npt-each-target $$" "$2"; }
delivered_each() { through 10.99.0.1 /tmp/received && through 10.99.100.1 /tmp/received && through 10.99.0.1 /tmp/received2; }
npt_wait_for 20 delivered_each
cat /tmp/received /tmp/received2 | grep npt-each-target
npt_check delivered_each delivered_each

kill -TERM $agent
wait $agent
npt_check journal_schema netpoll-trace schema-check /tmp/journal.jsonl
