#!/bin/sh
# kprobes through tracefs kprobe_events, the attach path of kernels before 4.17 (no
# kprobe PMU), proven on a lab kernel. aya 0.14 chooses that path by the kernel version it
# reads, Ubuntu's /proc/version_signature first: in a private mount namespace, a /proc
# (a tmpfs of links to the real one) whose version_signature says 4.15 makes it take it.
# (--attach kprobe: this kernel has fentry, which a real pre-4.17 one has not.)
# The kprobe PMU is hidden too (an empty tmpfs over its sysfs directory) and tracefs and
# debugfs are unmounted. The kernel is the oracle: kprobe_events lists aya's events (a
# PMU kprobe never appears there) with watch's pid while it runs, and dmesg says what
# netconsole did. Checked: `check` names the path; watch mounts tracefs and says so; the
# ready line names the path; the set-up is traced through it, by both objects; a clean
# exit leaves no event; a SIGKILLed run leaves its events, and the next run removes
# exactly those and names them, leaving a live process's and a foreign event alone.
# nics: virtio
# timeout: 300
# checks: fake_old_kernel check_names_tracefs mounts_tracefs ready_names_tracefs events_while_running traced_through_tracefs clean_exit_removes killed_leaves stale_removed_named stale_gone others_left_alone legacy_through_tracefs
. /lib.sh

if [ -z "$NPT_IN_NS" ]; then
    export NPT_IN_NS=1
    exec unshare -m sh "$0"
fi

# --- an "old" kernel, as aya and netpoll-trace see it ---------------------------------
mkdir -p /tmp/realproc
mount -t proc proc /tmp/realproc
mount -t tmpfs tmpfs /proc
for e in /tmp/realproc/*; do ln -s "$e" /proc/; done
echo "Ubuntu 4.15.0-213.224-generic 4.15.18" >/proc/version_signature
mount -t tmpfs tmpfs /sys/bus/event_source/devices/kprobe
umount /sys/kernel/debug/tracing 2>/dev/null
umount /sys/kernel/debug 2>/dev/null
umount /sys/kernel/tracing 2>/dev/null
grep -E 'tracefs|debugfs' /proc/mounts
npt_check fake_old_kernel sh -c "test ! -e /sys/bus/event_source/devices/kprobe/type && ! grep -Eq 'tracefs|debugfs' /proc/mounts && grep -q kallsyms_on_each_symbol /proc/kallsyms"

ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up
TARGET=netconsole=@/eth0,6666@10.99.0.2/
EVENTS=/sys/kernel/tracing/kprobe_events

# --- check: what watch would use ---------------------------------------------------
netpoll-trace check --json --attach kprobe >/tmp/check.json 2>/tmp/check.err
netpoll-trace check --attach kprobe; cat /tmp/check.json /tmp/check.err
npt_check check_names_tracefs npt_json_has /tmp/check.json object=modern 'attach_path=kprobe (tracefs kprobe_events)'

# --- watch in the background: tracefs mounted, aya's events while it runs ---------------
netpoll-trace watch --attach kprobe --json --for 120s >/tmp/bg.json 2>/tmp/bg.err &
pid=$!
npt_wait_for 120 npt_ready_or_gone 'all ready:' /tmp/bg.err $pid
cat /tmp/bg.err
npt_check mounts_tracefs grep -q 'mounted tracefs on /sys/kernel/tracing' /tmp/bg.err
npt_check ready_names_tracefs grep -q "ready: kprobe on $NPT_SETUP_FNS.*modern object, attach path kprobe (tracefs kprobe_events)" /tmp/bg.err
cat $EVENTS | tee /tmp/running.events
# An entry and a return probe per traced function, all named by aya for this pid.
ours_running=$(grep -c "^[pr][0-9]*:kprobes/aya_${pid}_[pr]_" /tmp/running.events)
# The outer set-up's event: netpoll_setup's, or netconsole's own (module:function).
if [ $NPT_OUTER = netpoll_setup ]; then outer_ev="p_netpoll_setup_0x0_[0-9]* netpoll_setup"; else outer_ev="p_netconsole_netcons_netpoll_setup_0x0_[0-9]* netconsole:netcons_netpoll_setup"; fi
npt_check events_while_running sh -c "test $ours_running -ge 4 && grep -q 'aya_${pid}_$outer_ev' /tmp/running.events && grep -q 'aya_${pid}_r___netpoll_setup_0x0_[0-9]* __netpoll_setup' /tmp/running.events"
npt_dmesg_mark
modprobe netconsole $TARGET
echo "modprobe exit $?"
npt_wait_for 20 npt_json_has /tmp/bg.json fn=__netpoll_setup dev=eth0 ret=0
kill -TERM $pid
wait $pid
echo "watch exit $?"; cat /tmp/bg.json
traced() {
    npt_json_has /tmp/bg.json fn=$NPT_OUTER netpoll=netconsole dev=eth0 ret=0 depth=0 comm=modprobe &&
        npt_json_has /tmp/bg.json fn=__netpoll_setup dev=eth0 ret=0 depth=1 &&
        npt_dmesg_since_mark | grep -Eq "$NPT_NC_LOG: netconsole: local IP(v4 address)? 10.99.0.1"
}
npt_check traced_through_tracefs traced
rmmod netconsole
cat $EVENTS
npt_check clean_exit_removes sh -c "! grep -q 'aya_${pid}_' $EVENTS"

# --- a killed run leaves its events; the next run removes exactly those ------------------
netpoll-trace watch --attach kprobe --for 120s >/dev/null 2>/tmp/killed.err &
killed=$!
npt_wait_for 120 npt_ready_or_gone 'all ready:' /tmp/killed.err $killed
kill -KILL $killed
wait $killed
grep "kprobes/aya_${killed}_" $EVENTS | sed 's/^[pr][0-9]*:\([^ ]*\) .*/\1/' >/tmp/left.names
cat /tmp/left.names
npt_check killed_leaves test "$(wc -l </tmp/left.names)" -ge 4
# Someone else's: a live process's event in aya's own naming, and a foreign event.
sleep 300 &
live=$!
echo "p:kprobes/aya_${live}_p___netpoll_setup_0x0_0 __netpoll_setup" >>$EVENTS
echo "p:kprobes/npt_foreign __netpoll_setup" >>$EVENTS
netpoll-trace watch --attach kprobe --for 1s >/dev/null 2>/tmp/next.err
echo "watch exit $?"; cat /tmp/next.err; cat $EVENTS
all_named() {
    grep -q "removed [0-9]* stale kprobe event(s) that an earlier, killed run left" /tmp/next.err || return 1
    while read -r n; do
        grep -q "$n" /tmp/next.err || { echo "not named: $n"; return 1; }
    done </tmp/left.names
}
npt_check stale_removed_named all_named
npt_check stale_gone sh -c "! grep -q 'aya_${killed}_' $EVENTS"
npt_check others_left_alone sh -c "grep -q 'kprobes/aya_${live}_p___netpoll_setup_0x0_0 __netpoll_setup' $EVENTS && grep -q 'kprobes/npt_foreign __netpoll_setup' $EVENTS && ! grep -q 'aya_${live}_\|npt_foreign' /tmp/next.err"
echo "-:kprobes/aya_${live}_p___netpoll_setup_0x0_0" >>$EVENTS
echo "-:kprobes/npt_foreign" >>$EVENTS
kill $live

# --- the legacy object, through the same path ------------------------------------
netpoll-trace watch --wait-all --json --object legacy -- modprobe netconsole $TARGET >/tmp/legacy.json 2>/tmp/legacy.err
echo "watch exit $?"; cat /tmp/legacy.err /tmp/legacy.json
legacy_traced() {
    grep -q 'legacy object, attach path kprobe (tracefs kprobe_events)' /tmp/legacy.err &&
        npt_json_has /tmp/legacy.json fn=__netpoll_setup dev=eth0 ret=0 depth=1 &&
        ! grep -q 'kprobes/aya_' $EVENTS
}
npt_check legacy_through_tracefs legacy_traced
rmmod netconsole
