#!/bin/sh
# The agent end to end on an emulated pre-4.19 kernel (lab/emulate, test only):
# modprobe netconsole fails as in the seed, the agent diagnoses
# missing_poll_controller, patches (allowlisted driver), retries and verifies, and a
# UDP receiver in another namespace gets a kernel message. Also: a driver not on the
# allowlist is only reported, --dry-run changes nothing, a bad configuration is one
# line naming the key, netkit is never patched, SIGTERM stops cleanly, and the agent
# keeps only the capabilities it needs.
# kernels: 5.10 6.1 6.12
# nics: virtio virtio
# timeout: 500
# checks: bad_config seed_error not_allowlisted dry_run_changes_nothing remediated delivered capabilities device_vanished still_working clean_stop journal_schema netkit_never_patched
. /lib.sh

KO=/lib/kmods/netpoll_patch.ko
TARGET=netconsole=@/eth0,6666@10.99.0.2/
ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up
npt_receiver eth1 /tmp/received

config() { # FILE ALLOWED_DRIVERS (TOML list items)
    cat >"$1" <<EOC
journal = "/tmp/journal.jsonl"
patch_module = "$KO"
allowed_drivers = [$2]
max_attempts = 2
backoff = "1s"
verify_timeout = "8s"
[policy]
missing_poll_controller = "patch"
[retry]
command = ["modprobe", "netconsole", "$TARGET"]
EOC
}

# start_agent LOG ARGS...: agent in the background; waits until it is attached.
start_agent() {
    log=$1; shift
    netpoll-trace agent "$@" >"$log.out" 2>"$log.err" &
    agent=$!
    n=0
    while ! grep -q 'agent ready:' "$log.err" && [ $n -lt 120 ] && kill -0 $agent 2>/dev/null; do sleep 1; n=$((n + 1)); done
}

uptime_cs() { cut -d' ' -f1 /proc/uptime | tr -d .; }

# --- a bad configuration: one line naming the key, nothing attached --------------
printf '[policy]\nnetpoll_disabled = "patch"\n' >/tmp/bad.toml
netpoll-trace agent --config /tmp/bad.toml >/tmp/bad.out 2>&1
bad_rc=$?
cat /tmp/bad.out
npt_check bad_config sh -c "test $bad_rc -eq 1 && test \$(wc -l </tmp/bad.out) -eq 1 && grep -q 'policy.netpoll_disabled' /tmp/bad.out"

insmod /lib/kmods/emulate_pre419.ko

# --- driver not on the allowlist: reported, never patched ------------------------
config /tmp/ena.toml '"ena"'
start_agent /tmp/ena --config /tmp/ena.toml --once
modprobe netconsole "$TARGET" >/tmp/modprobe.out 2>&1
echo "modprobe exit $?"; cat /tmp/modprobe.out
case "$NPT_KERNEL" in
    5.10|6.1) npt_check seed_error grep -q 'Unknown error 524' /tmp/modprobe.out ;;
    *) npt_check seed_error sh -c "dmesg | grep -q 'Not enabling netconsole for cmdline0. Netpoll setup failed'" ;;
esac
wait $agent
ena_rc=$?
cat /tmp/ena.err /tmp/ena.out
rmmod netconsole 2>/dev/null
npt_check not_allowlisted sh -c "test $ena_rc -eq 3 && grep -F '\"action\":\"decide\"' /tmp/ena.out | grep -F '\"result\":\"reported\"' | grep -q 'driver virtio_net of eth0 is not in allowed_drivers' && ! test -d /sys/module/netpoll_patch"

# --- dry run: decides and journals, changes nothing ------------------------------
config /tmp/virtio.toml '"virtio_net", "dummy"'
start_agent /tmp/dry --config /tmp/virtio.toml --dry-run --once
modprobe netconsole "$TARGET" >/dev/null 2>&1
wait $agent
dry_rc=$?
cat /tmp/dry.err /tmp/dry.out
rmmod netconsole 2>/dev/null
netpoll-trace watch --json -- modprobe netconsole "$TARGET" >/tmp/dry-ops.json 2>/dev/null
rmmod netconsole 2>/dev/null
npt_check dry_run_changes_nothing sh -c "test $dry_rc -eq 3 && grep -F '\"action\":\"patch\"' /tmp/dry.out | grep -qF '\"result\":\"dry_run\"' && ! test -d /sys/module/netpoll_patch && grep -F '\"fn\":\"__netpoll_setup\"' /tmp/dry-ops.json | grep -qF '\"ops_symbol\":\"virtnet_netdev\"'"

# --- the real thing: refused, patched, retried, verified, delivered -------------
# 5.10/6.1: the seed's `modprobe netconsole netconsole=...` fails; the agent retries
# with retry.command. 6.12: a dynamic (configfs) target refuses to enable; the agent
# retries by writing its `enabled`.
rm -f /tmp/journal.jsonl
start_agent /tmp/agent --config /tmp/virtio.toml
t0=$(uptime_cs)
case "$NPT_KERNEL" in
    5.10|6.1) modprobe netconsole "$TARGET" >/dev/null 2>&1 ;;
    *)
        rmmod netconsole 2>/dev/null
        modprobe netconsole
        t=/sys/kernel/config/netconsole/t0
        mkdir $t
        echo eth0 >$t/dev_name
        echo 10.99.0.2 >$t/remote_ip
        echo 6666 >$t/remote_port
        echo 1 >$t/enabled 2>/tmp/enable.err
        echo "enabling $t: $(cat /tmp/enable.err) (enabled=$(cat $t/enabled))"
        ;;
esac
n=0
while ! grep -F '"action":"verify"' /tmp/journal.jsonl 2>/dev/null | grep -qF '"result":"ok"' && [ $n -lt 90 ]; do sleep 1; n=$((n + 1)); done
echo "<2>npt-agent-hello $$" >/dev/kmsg
n=0
while ! grep -q "npt-agent-hello $$" /tmp/received && [ $n -lt 30 ]; do sleep 1; n=$((n + 1)); done
t1=$(uptime_cs)
echo "time from the failed set-up to the first delivered message: $(( (t1 - t0) / 100 )).$(( (t1 - t0) % 100 )) s ($NPT_KERNEL, TCG)"
cat /tmp/agent.err /tmp/journal.jsonl
npt_check remediated sh -c "grep -F '\"action\":\"patch\"' /tmp/journal.jsonl | grep -qF '\"result\":\"ok\"' && grep -F '\"action\":\"verify\"' /tmp/journal.jsonl | grep -qF '\"result\":\"ok\"' && grep -q '^eth0 ' /sys/module/netpoll_patch/parameters/state"
npt_check delivered grep -q "npt-agent-hello $$" /tmp/received
# CAP_DAC_OVERRIDE (1), CAP_SYS_MODULE (16), CAP_SYSLOG (34), nothing else.
capeff=$(grep CapEff /proc/$agent/status | cut -f2)
capbnd=$(grep CapBnd /proc/$agent/status | cut -f2)
echo "agent CapEff=$capeff CapBnd=$capbnd"
npt_check capabilities sh -c "test $capeff = 0000000400010002 && test $capbnd = 0000000400010002 && grep -q 'keeping only CAP_SYS_MODULE, CAP_SYSLOG, CAP_DAC_OVERRIDE' /tmp/agent.err"

# --- netkit (6.7+): reported, never patched ---------------------------------------
if nlhelper netkit-add nk0 nk1 2>/dev/null; then
    ip addr add 10.99.2.1/24 dev nk0
    ip link set nk0 up
    ip link set nk1 up
    npt_target nk nk0 10.99.2.2
    n=0
    while ! grep -F '"dev":"nk0"' /tmp/journal.jsonl 2>/dev/null | grep -qF '"action":"decide"' && [ $n -lt 30 ]; do sleep 1; n=$((n + 1)); done
    grep -F '"dev":"nk0"' /tmp/journal.jsonl
    npt_check netkit_never_patched sh -c "grep -F '\"dev\":\"nk0\"' /tmp/journal.jsonl | grep -F '\"result\":\"reported\"' | grep -q 'netpoll_disabled is not fixed by patching' && ! grep -F '\"dev\":\"nk0\"' /tmp/journal.jsonl | grep -qF '\"action\":\"patch\"' && ! grep -q '^nk0 ' /sys/module/netpoll_patch/parameters/state"
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
n=0
while ! grep -F '"dev":"d5"' /tmp/journal.jsonl | grep -qF '"action":"verify"' && \
      ! grep -F '"dev":"d5"' /tmp/journal.jsonl | grep -F '"action":"patch"' | grep -qF '"result":"failed"' && [ $n -lt 60 ]; do
    sleep 1; n=$((n + 1))
done
grep -F '"dev":"d5"' /tmp/journal.jsonl
npt_check device_vanished sh -c "kill -0 $agent && grep -F '\"dev\":\"d5\"' /tmp/journal.jsonl | grep -qF '\"result\":\"failed\"'"
# ... and handles the next failure as usual.
t=/sys/kernel/config/netconsole/gone
mkdir $t
echo eth7 >$t/dev_name
echo 1 >$t/enabled 2>/dev/null
n=0
while ! grep -F '"dev":"eth7"' /tmp/journal.jsonl | grep -qF '"action":"decide"' && [ $n -lt 30 ]; do sleep 1; n=$((n + 1)); done
npt_check still_working sh -c "grep -F '\"dev\":\"eth7\"' /tmp/journal.jsonl | grep -F '\"result\":\"reported\"' | grep -qF '\"cause\":\"no_such_device\"'"

# --- SIGTERM: a clean stop, journalled ------------------------------------------
kill -TERM $agent
wait $agent
stop_rc=$?
npt_check clean_stop sh -c "test $stop_rc -eq 0 && tail -n 1 /tmp/journal.jsonl | grep -qF '\"action\":\"stop\"'"
npt_check journal_schema netpoll-trace schema-check /tmp/journal.jsonl
for t in /sys/kernel/config/netconsole/*; do echo 0 >$t/enabled 2>/dev/null; rmdir $t 2>/dev/null; done
rmmod netconsole 2>/dev/null
netpoll-trace unpatch eth0
