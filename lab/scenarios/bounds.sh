#!/bin/sh
# Issue #13, items 4, 7 and 8 on a real kernel.
# - One recorder per pin directory, however it is spelled: with an agent --persist
#   running, `watch` and `reset` given the directory with a trailing slash, with `..`
#   and through a symlink are all refused naming the agent's pid; the pins stay, and
#   the agent's counters and journal are still exact afterwards (nothing stole its
#   perf arrays, no second set of probes counted twice).
# - Patch by name, later: under the pre-4.19 emulation two dummies fail; while the
#   agent handles the first, its retry command renames the second and creates a new
#   device with the same name. The agent patches that name, sees another ifindex,
#   unpatches it and journals both identities.
# - The retry command is bounded: one that ignores SIGTERM and overruns retry.timeout
#   is killed with its process group (journaled timed_out, SIGKILL); one still
#   running when the agent gets SIGTERM is killed too (journaled killed, SIGTERM).
# nics: virtio
# Two kernels, the oldest and newest (pin directories, the journal and the retry command
# are the tool's own; pins per kernel are `recorder`'s, patching per kernel `patch`'s).
# kernels: 5.10 7.3
# timeout: 420
# checks: lock_spellings_refused reset_refused agent_still_exact reset_after_stop wrong_device_unpatched retry_timed_out retry_killed_on_stop
. /lib.sh

modprobe dummy
modprobe netconsole

# gone PID: the process no longer runs (a zombie nobody reaped counts as gone).
gone() { ! test -e "/proc/$1" || grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }

# --- item 4: every spelling of a live recorder's directory is refused ----------------
netpoll-trace agent --persist --journal /tmp/lock.jsonl >/dev/null 2>/tmp/lock.err &
agent=$!
npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/lock.err $agent
cat /tmp/lock.err
# The default directory, as the agent names it (its last part is the recorder's schema).
PINS=$(sed -n 's/.*recording into \(\/[^ ]*\) (.*/\1/p' /tmp/lock.err | head -n 1)
echo "pins: $PINS"
ls $PINS
ln -s $PINS /tmp/pinlink
refused=0 reset_kept=0 n=0
for sp in "$PINS/" "$PINS/../${PINS##*/}" /tmp/pinlink; do
    n=$((n + 1))
    netpoll-trace watch --pin-dir "$sp" --for 3s >/tmp/w$n.out 2>/tmp/w$n.err
    rc=$?
    echo "watch --pin-dir $sp: exit $rc"; cat /tmp/w$n.err
    [ $rc -eq 1 ] && grep -q "another netpoll-trace (pid $agent) is recording into" /tmp/w$n.err && refused=$((refused + 1))
    netpoll-trace reset --pin-dir "$sp" >/tmp/r$n.out 2>&1
    rc=$?
    echo "reset --pin-dir $sp: exit $rc"; cat /tmp/r$n.out
    [ $rc -eq 1 ] && grep -q "another netpoll-trace (pid $agent) is recording into" /tmp/r$n.out &&
        ls $PINS | grep -qx RING && reset_kept=$((reset_kept + 1))
done
npt_check lock_spellings_refused test $refused -eq 3
npt_check reset_refused test $reset_kept -eq 3
# Two set-ups after all that: the agent sees both, the recorder counts each once.
npt_target t1 nosuch0 10.99.0.2
npt_enable t1
two_decided() { test "$(npt_json_count /tmp/lock.jsonl dev=nosuch0 action=decide)" -ge 2; }
npt_wait_for 30 two_decided
netpoll-trace dump --json >/tmp/dump.json 2>/tmp/dump.err
npt_json_lines /tmp/dump.json type=counter
npt_json_lines /tmp/lock.jsonl dev=nosuch0
agent_still_exact() {
    kill -0 $agent &&
        test "$(npt_json_count /tmp/lock.jsonl dev=nosuch0 action=decide result=reported cause=no_such_device)" -eq 2 &&
        test "$(npt_json_count /tmp/dump.json type=counter dev=nosuch0 fn=$NPT_OUTER errno=ENODEV count=2)" -eq 1
}
npt_check agent_still_exact agent_still_exact
kill -TERM $agent
wait $agent
rmdir /sys/kernel/config/netconsole/t1
netpoll-trace reset --pin-dir "$PINS/" >/tmp/reset.out 2>&1
rc=$?
cat /tmp/reset.out
npt_check reset_after_stop sh -c "test $rc -eq 0 && ! test -e $PINS"

# --- item 7: the name now stands for another device ---------------------------------
insmod /lib/kmods/emulate_pre419.ko
ip link add dA type dummy && npt_ip dA 10.99.11.1/24
ip link add dB type dummy && npt_ip dB 10.99.12.1/24
old_ifindex=$(cat /sys/class/net/dB/ifindex)
# The retry of dA's failure has dB swapped for a new device of the same name, while
# dB's failure waits its turn. The swap is done here: the agent's children keep only
# its capabilities, which do not include CAP_NET_ADMIN.
cat >/tmp/swap.sh <<'EOF'
#!/bin/sh
[ -e /tmp/swap-request ] && exit 0
touch /tmp/swap-request
i=0
while [ ! -e /tmp/swapped ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
EOF
npt_agent_config /tmp/id.toml journal='"/tmp/id.jsonl"' allowed_drivers='["dummy"]' max_attempts=1 verify_timeout='"3s"' \
    retry.method='"command"' retry.command='["/bin/sh", "/tmp/swap.sh"]'
netpoll-trace agent --config /tmp/id.toml >/dev/null 2>/tmp/id.err &
agent=$!
npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/id.err $agent
npt_target tA dA 10.99.11.2
npt_target tB dB 10.99.12.2
npt_wait_for 60 test -e /tmp/swap-request
ip link set dB down && ip link set dB name dBold && ip link add dB type dummy && npt_ip dB 10.99.13.1/24
echo "swapped: dBold is ifindex $(cat /sys/class/net/dBold/ifindex), dB is now $(cat /sys/class/net/dB/ifindex)" | tee /tmp/swapped
npt_wait_for 60 npt_json_has /tmp/id.jsonl dev=dB action=unpatch
cat /tmp/swapped /tmp/id.err; npt_json_lines /tmp/id.jsonl type=remediation
cat /sys/module/netpoll_patch/parameters/state 2>/dev/null
new_ifindex=$(cat /sys/class/net/dB/ifindex)
wrong_device_unpatched() {
    npt_json_has /tmp/id.jsonl dev=dB action=patch result=wrong_device \
        "detail~dB is now ifindex $new_ifindex, driver dummy but the failure was on ifindex $old_ifindex, driver dummy" &&
        npt_json_has /tmp/id.jsonl dev=dB action=unpatch result=ok &&
        npt_json_none /tmp/id.jsonl dev=dB action=retry &&
        ! grep -q '^dB ' /sys/module/netpoll_patch/parameters/state 2>/dev/null &&
        grep -q '^dA ' /sys/module/netpoll_patch/parameters/state
}
npt_check wrong_device_unpatched wrong_device_unpatched
kill -TERM $agent
wait $agent

# --- item 8: a retry command that overruns retry.timeout, ignoring SIGTERM ----------
cat >/tmp/hang.sh <<'EOF'
#!/bin/sh
trap '' TERM
sleep 300 &
echo $! >/tmp/hang.child
wait
EOF
ip link add dC type dummy && npt_ip dC 10.99.14.1/24
npt_agent_config /tmp/hang.toml journal='"/tmp/hang.jsonl"' allowed_drivers='["dummy"]' max_attempts=1 verify_timeout='"2s"' \
    retry.method='"command"' retry.command='["/bin/sh", "/tmp/hang.sh"]' retry.timeout='"3s"'
netpoll-trace agent --config /tmp/hang.toml >/dev/null 2>/tmp/hang.err &
agent=$!
npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/hang.err $agent
npt_target tC dC 10.99.14.2
npt_wait_for 60 npt_json_has /tmp/hang.jsonl dev=dC action=retry
npt_wait_for 10 gone "$(cat /tmp/hang.child)"
npt_json_lines /tmp/hang.jsonl dev=dC
retry_timed_out() {
    npt_json_has /tmp/hang.jsonl dev=dC action=retry result=timed_out 'detail~ran past retry.timeout (3s): killed its process group (SIGKILL)' &&
        gone "$(cat /tmp/hang.child)" && kill -0 $agent
}
npt_check retry_timed_out retry_timed_out
kill -TERM $agent
wait $agent

# --- item 8: the agent stops while its retry command runs --------------------------
cat >/tmp/slow.sh <<'EOF'
#!/bin/sh
sleep 300 &
echo $! >/tmp/slow.child
wait
EOF
ip link add dD type dummy && npt_ip dD 10.99.15.1/24
npt_agent_config /tmp/slow.toml journal='"/tmp/slow.jsonl"' allowed_drivers='["dummy"]' max_attempts=1 \
    retry.method='"command"' retry.command='["/bin/sh", "/tmp/slow.sh"]' retry.timeout='"120s"'
netpoll-trace agent --config /tmp/slow.toml >/dev/null 2>/tmp/slow.err &
agent=$!
npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/slow.err $agent
npt_target tD dD 10.99.15.2
npt_wait_for 60 test -s /tmp/slow.child
kill -TERM $agent
npt_wait_for 20 gone $agent
wait $agent
stop_rc=$?
npt_json_lines /tmp/slow.jsonl type=remediation
retry_killed_on_stop() {
    test $stop_rc -eq 0 && gone "$(cat /tmp/slow.child)" &&
        npt_json_has /tmp/slow.jsonl dev=dD action=retry result=killed 'detail~killed its process group (SIGTERM)' &&
        tail -n 1 /tmp/slow.jsonl >/tmp/slow.last && npt_json_has /tmp/slow.last action=stop
}
npt_check retry_killed_on_stop retry_killed_on_stop

for t in /sys/kernel/config/netconsole/*; do echo 0 >$t/enabled 2>/dev/null; rmdir $t 2>/dev/null; done
for d in dA dC dD; do netpoll-trace unpatch $d >/dev/null 2>&1; done
