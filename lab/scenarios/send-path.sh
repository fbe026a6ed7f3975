#!/bin/sh
# netconsole's delivery through netpoll (#16), judged against what the kernel did.
# Flood: an extended configfs target on eth0 (e1000: its TX ring shrinks to the driver's
# minimum through the ethtool ioctl, and two fast pings compete for the same TX queue)
# sends N lines written to /dev/kmsg to a receiver (`netpoll-trace receive` on eth1, a
# virtio NIC in its own namespace). The oracle is a tracefs kprobe on netpoll_send_udp:
# the tool's messages and its sent + deferred + dropped for eth0 must equal its hit count,
# and the receiver's messages plus its sequence gaps must equal it too (the console log
# level is raised to 8 for the flood, so netconsole sends every record and a gap is a
# record lost, never one the log level held back). Slow sends: the default threshold
# (2 ms) is reported as measured; a 1 us threshold makes every transmit slow, so each
# must be reported, naming eth0. A vlan on eth0 (a device that can be deleted) carries a
# second target: set down, netconsole itself skips it (write_msg checks netif_running),
# so the kernel makes no netpoll_send_udp call, and the tool must count each line it
# skipped as dropped not_running (its probe on netconsole's write_msg); up again, it sends. `ip link del` of the vlan stops the live target: the tool must report
# stopped/device_unregistered and the kernel must log that it stopped. `--stats-every 1s`
# prints eth0's send statistics while a trickle of lines goes out, not only at the end.
# nics: e1000 virtio
# timeout: 600
# variants: legacy
# checks: check_send_path ring_shrunk flood_attached flood_counts flood_histogram flood_drops flood_delivered flood_lifecycle slow_default slow_tiny stats_periodic vlan_up down_counted up_counts removed_event removed_dmesg removed_disabled dump_stopped status_health transmit_errors json_schema
. /lib.sh

T=/sys/kernel/tracing
CFG=/sys/kernel/config/netconsole
N=2000

# sum: the sum of the numbers on stdin.
sum() { awk '{ s += $1 } END { print s + 0 }'; }
# field NAME LINE: a top-level number of one JSON line (0 when absent).
field() { v=$(echo "$2" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"); echo "${v:-0}"; }
# kp_start NAME / kp_hits NAME / kp_stop NAME: a tracefs kprobe event on netpoll_send_udp,
# its hit count in kprobe_profile ("HITS MISSES"), and its removal.
kp_start() { echo "p:npt/$1 netpoll_send_udp" >>$T/kprobe_events && echo 1 >$T/events/npt/$1/enable; }
kp_hits() { awk -v e="$1" '$1 == e || $1 == "npt/" e { print $2, $3 }' $T/kprobe_profile; }
kp_stop() { echo 0 >$T/events/npt/$1/enable; echo "-:npt/$1" >>$T/kprobe_events; }
# send_line FILE DEV: the tool's final `send` line for DEV.
send_line() { npt_json_lines "$1" type=send dev="$2" | tail -n 1; }
# hist_sum LINE: the histogram's counts summed.
hist_sum() { echo "$1" | grep -o '"le_ns":[0-9]*,"count":[0-9]*' | sed 's/.*://' | sum; }

# check names the skb transmit function this kernel has (5.8+: netpoll_send_skb).
netpoll-trace check --json >/tmp/check.json 2>/tmp/check.err
grep -o '{"name":"send_path"[^}]*}' /tmp/check.json
npt_check check_send_path sh -c "grep -o '{\"name\":\"send_path\"[^}]*}' /tmp/check.json | grep '\"status\":\"ok\"' | grep -q 'netpoll_send_udp and netpoll_send_skb'"

npt_ip eth0 10.99.0.1/24
# The receiver may not run for a while during the flood: a socket buffer for all of it
# (set in both namespaces: whether the sysctl is per namespace depends on the kernel).
echo 16777216 >/proc/sys/net/core/rmem_default
echo 16777216 >/proc/sys/net/core/rmem_max
# rx_start: (re)starts the receiver in the namespace npt_receiver made, writing /tmp/rx.
rx_start() {
    nsenter -t "$NPT_NS" -n netpoll-trace receive --listen 0.0.0.0:6666 >/tmp/rx 2>/tmp/rx.err &
    rx_pid=$!
    npt_wait_for 20 grep -q 'listening on UDP' /tmp/rx.err
}
# rx_stop: stops it; its summary goes to /tmp/rx.err.
rx_stop() { kill -TERM $rx_pid; wait $rx_pid 2>/dev/null; }
npt_receiver eth1 /tmp/rx
# Once more, with the namespace's buffer size too, for its socket.
kill -TERM "$(pidof netpoll-trace)"
sleep 1
nsenter -t "$NPT_NS" -n sh -c 'echo 16777216 >/proc/sys/net/core/rmem_default' 2>/dev/null
rx_start

# --- the TX ring: e1000 takes 48 descriptors at least (the lab's virtio NIC has no ring
# resize on these kernels, hence e1000 for the sender) -----------------------------
echo "ring before: $(nlhelper ring-show eth0)"
nlhelper ring-tx eth0 48
echo "ring after:  $(nlhelper ring-show eth0)"
npt_check ring_shrunk sh -c 'nlhelper ring-show eth0 | grep -q "^tx 48 "'
carrier_up() { [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; }
npt_wait_for 30 carrier_up

old_devkmsg=$(cat /proc/sys/kernel/printk_devkmsg)
echo on >/proc/sys/kernel/printk_devkmsg
old_printk=$(cat /proc/sys/kernel/printk | awk '{ print $1 }')
modprobe netconsole
modprobe 8021q
# The flood's target: extended, left disabled (enabled inside watch, so the tool sees it).
npt_target flood eth0 10.99.0.2 off
echo 1 >$CFG/flood/extended
# Competing traffic to an address with a static neighbour entry: no ARP, every packet is
# queued at once; the MAC is nobody's.
arp -s 10.99.0.3 52:54:00:4e:50:ee

# The flood, run as watch's COMMAND: $1 lines (tag $2), the flood target enabled first and
# disabled last, the console log level at 8 in between. The target is disabled only once
# the last line arrived: tearing netpoll down purges what it still holds deferred.
cat >/tmp/flood.sh <<EOF
n=\$1 tag=\$2
rm -f /tmp/stop.\$tag
loops=
for p in 1 2; do
    ( while [ ! -e /tmp/stop.\$tag ]; do ping -q -s 1400 -i 0.001 -w 1 10.99.0.3 >/dev/null 2>&1; done ) &
    loops="\$loops \$!"
done
sleep 1
echo 8 >/proc/sys/kernel/printk
echo 1 >$CFG/flood/enabled
echo "flood target enabled=\$(cat $CFG/flood/enabled)" >&2
pad=\$(printf '%040d' 0)
i=0
while [ \$i -lt \$n ]; do echo "<3>npt-send \$tag \$i \$pad"; i=\$((i + 1)); done >/dev/kmsg
echo "<3>npt-send-end \$tag" >/dev/kmsg
touch /tmp/stop.\$tag
echo "console write kprobes during the flood: \$(grep 'write_msg\|netconsole_write_basic' /sys/kernel/debug/kprobes/list | grep -vc DISABLED)" >&2
wait \$loops
t=0
while ! grep -q "npt-send-end \$tag" /tmp/rx && [ \$t -lt 60 ]; do sleep 0.5; t=\$((t + 1)); done
sleep 1
echo $old_printk >/proc/sys/kernel/printk
echo 0 >$CFG/flood/enabled
exit 0
EOF

# --- (a) the flood ------------------------------------------------------------------
# What tears the flood target down when it is disabled (6.12's late stable releases call
# do_netpoll_cleanup, not netpoll_cleanup): each function's hit count, for the record.
CLEANUPS=$(awk '$3 == "netpoll_cleanup" || $3 == "do_netpoll_cleanup" || $3 == "__netpoll_cleanup" { print $3 }' /proc/kallsyms | sort -u)
for f in $CLEANUPS; do echo "p:npt/c$f $f" >>$T/kprobe_events && echo 1 >$T/events/npt/c$f/enable; done
kp_start udp_flood
netpoll-trace watch --wait-all --json -- sh /tmp/flood.sh $N F >/tmp/flood.json 2>/tmp/flood.err
rc=$?
for f in $CLEANUPS; do echo "$NPT_KERNEL kernel calls during the flood run: $f $(kp_hits c$f)"; echo 0 >$T/events/npt/c$f/enable; echo "-:npt/c$f" >>$T/kprobe_events; done
set -- $(kp_hits udp_flood)
hits=${1:-missing} missed=${2:-missing}
kp_stop udp_flood
echo "--- watch (flood): exit $rc"
cat /tmp/flood.err
grep -v '"slow_send"' /tmp/flood.json
echo "($(grep -c '"slow_send"' /tmp/flood.json) slow_send line(s) not shown)"
npt_check flood_attached sh -c "test $rc -eq 0 && grep -q 'ready:' /tmp/flood.err"

# --- (a') without --wait-all: COMMAND starts at ready, the rest attaches meanwhile -------
# ready waits for the set-up and poll programs only; the send path, tear-downs and console
# write follow on another thread (`all ready:`, the `attached` object) while COMMAND runs.
# COMMAND marks its start in the same file and waits for the second line.
netpoll-trace watch --json -- sh -c 'echo npt-command-started >&2; t=0; while ! grep -q "all ready:" /tmp/def.err && [ $t -lt 240 ]; do sleep 0.5; t=$((t + 1)); done' >/tmp/def.json 2>/tmp/def.err
rc=$?
echo "--- watch (deferred): exit $rc"; cat /tmp/def.err; npt_json_lines /tmp/def.json type=attached
at() { grep -n "$1" /tmp/def.err | head -n 1 | cut -d: -f1; }
r=$(at 'netpoll-trace: ready:') c=$(at npt-command-started) a=$(at 'all ready:')
echo "$NPT_KERNEL deferred attach: ready at line ${r:-none}, COMMAND started at ${c:-none}, all ready at ${a:-none}"
npt_check deferred_ready_is_set_ups_only sh -c "test $rc -eq 0 && grep 'netpoll-trace: ready:' /tmp/def.err | grep -q 'poll_dev' && ! grep 'netpoll-trace: ready:' /tmp/def.err | grep -Eq 'send_skb|send_udp|cleanup|write_'"
npt_check deferred_command_starts_at_ready sh -c "test -n '$r' && test -n '$c' && test -n '$a' && test $r -lt $c && test $c -lt $a"
deferred_object() {
    npt_json_has /tmp/def.json type=attached deferred=true error=null functions~netpoll_send_skb functions~netpoll_send_udp on_demand~netconsole: &&
        test "$(npt_json_count /tmp/def.json type=attached)" -eq 1 && netpoll-trace schema-check /tmp/def.json
}
npt_check deferred_attached_object deferred_object

line=$(send_line /tmp/flood.json eth0)
msgs=$(field messages "$line") sent=$(field sent "$line") deferred=$(field deferred "$line") dropped=$(field dropped "$line")
outcomes=$((sent + deferred + dropped))
echo "$NPT_KERNEL flood of $N lines: kprobe_profile netpoll_send_udp hits $hits (missed $missed); tool eth0: messages $msgs, sent $sent, deferred $deferred, dropped $dropped (sum $outcomes)"
flood_counts() {
    test -n "$line" && test "$missed" = 0 && test "$hits" = "$msgs" && test "$outcomes" = "$hits" && test "$hits" -ge $N ||
        { echo "hits $hits (missed $missed), messages $msgs, sent+deferred+dropped $outcomes, N $N"; return 1; }
}
npt_check flood_counts flood_counts
hsum=$(hist_sum "$line")
npt_check flood_histogram sh -c "test $hsum -eq $((sent + deferred)) || { echo 'histogram holds $hsum, sent+deferred $((sent + deferred))'; exit 1; }"
# Every drop counted is reported once, on eth0.
drops=$(npt_json_count /tmp/flood.json type=send_drop)
npt_check flood_drops sh -c "test $drops -eq $dropped && test $(npt_json_count /tmp/flood.json type=send_drop dev=eth0) -eq $drops || { echo 'send_drop lines $drops, dropped $dropped'; exit 1; }"

# The receiver: what arrived from 10.99.0.1, and the gaps in the kernel's sequence numbers.
rx_stop
npt_wait_for 10 grep -q 'gap(s)' /tmp/rx.err
cat /tmp/rx.err
rsum=$(grep 'receive: 10.99.0.1:' /tmp/rx.err | tail -n 1)
rmsgs=$(echo "$rsum" | sed -n 's/.*: \([0-9]*\) message(s), \([0-9]*\) gap(s).*/\1/p')
rgaps=$(echo "$rsum" | sed -n 's/.*: \([0-9]*\) message(s), \([0-9]*\) gap(s).*/\2/p')
rflood=$(grep -c "npt-send F " /tmp/rx)
echo "$NPT_KERNEL receiver: $rmsgs message(s), $rgaps gap(s); $rflood of $N flood lines; the kernel sent $hits (N + $((hits - N)) other records)"
flood_delivered() {
    test -n "$rmsgs" && test $((rmsgs + rgaps)) -eq "$hits" ||
        { echo "received $rmsgs + gaps $rgaps != netpoll_send_udp hits $hits"; return 1; }
}
npt_check flood_delivered flood_delivered
flood_lifecycle() {
    npt_json_has /tmp/flood.json type=target target=netconsole@10.99.0.2:6666 event=enabled cause=netpoll_setup dev=eth0 &&
        npt_json_has /tmp/flood.json type=target target=netconsole@10.99.0.2:6666 event=disabled cause=disabled dev=eth0
}
npt_check flood_lifecycle flood_lifecycle

# --- (b) slow sends -------------------------------------------------------------------
# The default threshold (2 ms): as many slow_send lines as the histogram allows (a bucket
# holds [le/2, le): those of le >= 2^22 ns are all slow, of 2^21 some may be).
slow=$(npt_json_count /tmp/flood.json type=slow_send dev=eth0)
slow_all=$(npt_json_count /tmp/flood.json type=slow_send)
lo=$(echo "$line" | grep -o '"le_ns":[0-9]*,"count":[0-9]*' | awk -F'[:,]' '$2 >= 4194304 { s += $4 } END { print s + 0 }')
hi=$(echo "$line" | grep -o '"le_ns":[0-9]*,"count":[0-9]*' | awk -F'[:,]' '$2 >= 2097152 { s += $4 } END { print s + 0 }')
short=$(npt_json_lines /tmp/flood.json type=slow_send | grep -o '"duration_ns":[0-9]*' | sed 's/.*://' | awk '$1 < 2000000' | wc -l)
echo "$NPT_KERNEL slow sends >= 2 ms in the flood: $slow reported (histogram: $lo to $hi); max_ns $(field max_ns "$line")"
npt_check slow_default sh -c "test $slow -eq $slow_all && test $short -eq 0 && test $slow -ge $lo && test $slow -le $hi && grep -q ', 0 event(s) lost' /tmp/flood.err"

# A 1 us threshold: every transmit is slow under TCG, so each one is reported.
rx_start
netpoll-trace watch --wait-all --json --slow-send 0.001ms -- sh /tmp/flood.sh 50 S >/tmp/slow.json 2>/tmp/slow.err
rc=$?
cat /tmp/slow.err
grep -v '"slow_send"' /tmp/slow.json
sline=$(send_line /tmp/slow.json eth0)
stx=$(($(field sent "$sline") + $(field deferred "$sline")))
sslow=$(npt_json_count /tmp/slow.json type=slow_send dev=eth0)
echo "$NPT_KERNEL with --slow-send 1us: $sslow slow_send line(s) for eth0, $stx transmits; first: $(npt_json_lines /tmp/slow.json type=slow_send | head -n 1)"
npt_check slow_tiny sh -c "test $rc -eq 0 && test $stx -ge 50 && test $sslow -eq $stx && grep -q ', 0 event(s) lost' /tmp/slow.err"

# --- (e) while watching: --stats-every prints the send statistics as it goes ----------
# 12 lines 0.5 s apart under `--stats-every 1s`: eth0's `send` line comes out while the
# command runs, more than once, with counts that never go down, the last one counting
# every line.
cat >/tmp/trickle.sh <<EOF
echo 8 >/proc/sys/kernel/printk
echo 1 >$CFG/flood/enabled
i=0
while [ \$i -lt 12 ]; do echo "<3>npt-trickle \$i" >/dev/kmsg; sleep 0.5; i=\$((i + 1)); done
echo $old_printk >/proc/sys/kernel/printk
echo 0 >$CFG/flood/enabled
EOF
netpoll-trace watch --wait-all --json --stats-every 1s -- sh /tmp/trickle.sh >/tmp/trickle.json 2>/tmp/trickle.err
rc=$?
npt_json_lines /tmp/trickle.json type=send dev=eth0 | grep -o '"messages":[0-9]*' | sed 's/.*://' >/tmp/trickle.counts
echo "$NPT_KERNEL --stats-every 1s: eth0's messages in each send line: $(tr '\n' ' ' </tmp/trickle.counts)"
stats_periodic() {
    test $rc -eq 0 && test "$(wc -l </tmp/trickle.counts)" -ge 3 &&
        awk 'NR > 1 && $1 < p { bad = 1 } { p = $1 } END { exit bad }' /tmp/trickle.counts && test "$(tail -n 1 /tmp/trickle.counts)" -ge 12
}
npt_check stats_periodic stats_periodic

# --- (d) a target's device down, then up --------------------------------------------
ip link add link eth0 name vl100 type vlan id 100
npt_ip vl100 10.99.100.1/24
npt_dmesg_mark
npt_target gone vl100 10.99.100.2
npt_dmesg_since_mark
npt_check vlan_up test "$(cat $CFG/gone/enabled)" = 1
K=20
cat >/tmp/downup.sh <<EOF
i=0; while [ \$i -lt $K ]; do echo "<3>npt-send-\$1 \$i"; i=\$((i + 1)); done >/dev/kmsg
EOF
# One watch sees the target enabled (so it knows the target's netpoll), its device set
# down while K lines are written, then up again while K more are.
# The console write's probe is attached only while a known target's device is down: the
# kernel's kprobe list has it armed then and only then (7.3's armed event keeps a kprobe
# registered, [DISABLED] while no program is attached), and the script waits for the tool's word
# that it attached before writing (the window it measures is reported).
cat >/tmp/downup2.sh <<EOF
kp() { grep 'write_msg\|netconsole_write_basic' /sys/kernel/debug/kprobes/list | grep -vc DISABLED; }
echo 0 >$CFG/gone/enabled; echo 1 >$CFG/gone/enabled
sleep 2
echo "console write kprobes before down: \$(kp)" >&2
t0=\$(cut -d' ' -f1 /proc/uptime)
ip link set vl100 down
t=0; while ! grep -q 'vl100 down: tracing' /tmp/down.err && [ \$t -lt 200 ]; do sleep 0.05; t=\$((t + 1)); done
echo "console write attached within: \$t0 -> \$(cut -d' ' -f1 /proc/uptime) s of uptime" >&2
echo "console write kprobes while down: \$(kp)" >&2
echo "hits down-before: \$(awk '\$1 == "npt/udp_down" || \$1 == "udp_down" { print \$2 }' $T/kprobe_profile)" >&2
sh /tmp/downup.sh down
# 7.3's netconsole is an nbcon console: its printk thread sends the lines later, and finds
# the device down only if it runs before the link is up again (a loaded host delayed it
# past that once: all 40 sent, none dropped, as the tool said too).
sleep 2
echo "hits down-after: \$(awk '\$1 == "npt/udp_down" || \$1 == "udp_down" { print \$2 }' $T/kprobe_profile)" >&2
ip link set vl100 up
sleep 1
sh /tmp/downup.sh up
t=0; while ! grep -q 'no longer traced' /tmp/down.err && [ \$t -lt 200 ]; do sleep 0.05; t=\$((t + 1)); done
echo "console write kprobes after up: \$(kp)" >&2
sleep 1
EOF
kp_start udp_down
netpoll-trace watch --wait-all --json -- sh /tmp/downup2.sh >/tmp/down.json 2>/tmp/down.err
set -- $(kp_hits udp_down)
uhits=$1 umissed=$2
kp_stop udp_down
cat /tmp/down.err
grep -v '"type":"setup"' /tmp/down.json | head -c 3000; echo
hb=$(sed -n 's/^hits down-before: //p' /tmp/down.err | head -n 1)
ha=$(sed -n 's/^hits down-after: //p' /tmp/down.err | head -n 1)
uline=$(send_line /tmp/down.json vl100)
umsgs=$(field messages "$uline")
udropped=$(echo "$uline" | sed -n 's/.*"not_running":\([0-9]*\).*/\1/p')
usent=$(field sent "$uline")
uout=$(($(field sent "$uline") + $(field deferred "$uline") + $(field dropped "$uline")))
drops=$(npt_json_lines /tmp/down.json type=send_drop dev=vl100 reason=not_running | wc -l)
echo "$NPT_KERNEL vl100 down then up, $K lines each: netpoll_send_udp hits while down $hb -> $ha, all $uhits (missed $umissed); tool vl100: messages $umsgs, sent $usent, dropped not_running ${udropped:-?} (events $drops), sent+deferred+dropped $uout"
kpf=$(sed -n 's/^console write kprobes during the flood: //p' /tmp/flood.err | head -n 1)
kpb=$(sed -n 's/^console write kprobes before down: //p' /tmp/down.err | head -n 1)
kpd=$(sed -n 's/^console write kprobes while down: //p' /tmp/down.err | head -n 1)
kpu=$(sed -n 's/^console write kprobes after up: //p' /tmp/down.err | head -n 1)
echo "$NPT_KERNEL console write's kprobe registered: during the flood ${kpf:-?}, vl100 up ${kpb:-?}, down ${kpd:-?}, up again ${kpu:-?}; $(sed -n 's/^console write attached within: //p' /tmp/down.err)"
grep -E 'down: tracing|no longer traced' /tmp/down.err
# The kernel's word: no console write kprobe while every known device is up (the flood's
# targets too), one while vl100 is down; the tool's: a line each way.
console_write_on_demand() {
    test "$kpf" = 0 && test "$kpb" = 0 && test "${kpd:-0}" -ge 1 && test "$kpu" = 0 &&
        grep -q 'vl100 down: tracing netconsole:[a-z_]* to count the messages netconsole skips (attached in' /tmp/down.err &&
        grep -q "every known target's device is up: netconsole:[a-z_]* no longer traced" /tmp/down.err &&
        grep -q "only while a known target's device is down" /tmp/flood.err
}
npt_check console_write_on_demand console_write_on_demand
# While down the kernel made no netpoll_send_udp call, and the tool counted the K lines
# netconsole skipped as dropped, not_running, each also an event naming vl100.
npt_check down_counted sh -c "test -n '$hb' && test '$hb' = '$ha' && test '${udropped:-0}' -ge $K && test '$drops' = '${udropped:-0}'"
# Up again: every call the kernel made was sent; each message has one outcome.
npt_check up_counts sh -c "test '$umissed' = 0 && test '$uhits' -ge $K && test '$usent' -ge $K && test '$uout' = '$umsgs' && test '$umsgs' = $(( ${uhits:-0} + ${udropped:-0} ))"

# --- (c) the device removed under the live target ------------------------------------
npt_dmesg_mark
# Into a flight recorder too: dump shows the recorded stop and status the target's health.
netpoll-trace watch --wait-all --persist --json -- ip link del vl100 >/tmp/del.json 2>/tmp/del.err
cat /tmp/del.err /tmp/del.json
netpoll-trace dump --json >/tmp/del.dump 2>&1
netpoll-trace status --json >/tmp/del.status 2>&1
netpoll-trace status >/tmp/del.status.txt 2>&1
grep -v '"type":"setup"' /tmp/del.dump | head -c 2000; echo
cat /tmp/del.status /tmp/del.status.txt
netpoll-trace reset >/dev/null 2>&1
npt_check removed_event npt_json_has /tmp/del.json type=target target=netconsole@10.99.100.2:6666 event=stopped cause=device_unregistered dev=vl100
npt_expect_dmesg removed_dmesg 'network logging stopped on interface vl100 as it unregistered'
removed_disabled() { test "$(cat $CFG/gone/enabled)" = 0 && npt_json_none /tmp/del.json type=target event=disabled; }
npt_check removed_disabled removed_disabled
npt_check dump_stopped npt_json_has /tmp/del.dump type=target target=netconsole@10.99.100.2:6666 event=stopped cause=device_unregistered dev=vl100
# One target for configfs's item and the recorded one: disabled, stopped by the unregister.
# The kernel's own failed-send count (configfs, where it keeps one) beside the tool's.
if [ -e $CFG/gone/transmit_errors ]; then
    te=$(cat $CFG/gone/transmit_errors)
    npt_check transmit_errors sh -c "grep -o '{[^{}]*\"configfs\":\"gone\"[^{}]*}' /tmp/del.status | grep -q '\"transmit_errors\":$te[,}]' &&
        grep -q 'kernel counts $te transmit error(s)' /tmp/del.status.txt"
else
    npt_skip transmit_errors "this kernel's netconsole keeps no transmit_errors"
fi
npt_check status_health sh -c "grep -q '\"configfs\":\"gone\"' /tmp/del.status && grep -o '{[^{}]*\"configfs\":\"gone\"[^{}]*}' /tmp/del.status | grep '\"enabled\":false' | grep '\"last_change\":\"stopped\"' | grep -q '\"last_cause\":\"device_unregistered\"' && grep -q 'target netconsole@10.99.100.2:6666 dev vl100 .*disabled (configfs gone); last stopped (device unregistered)' /tmp/del.status.txt"

# (down.json is empty when the tool rightly printed nothing; schema-check refuses an empty file.)
npt_check json_schema sh -c 'for f in /tmp/flood.json /tmp/slow.json /tmp/down.json /tmp/del.json /tmp/del.dump; do test -s $f || continue; netpoll-trace schema-check $f || exit 1; done'

rmdir $CFG/gone $CFG/flood
rmmod netconsole
echo "$old_devkmsg" >/proc/sys/kernel/printk_devkmsg
kill $rx_pid $NPT_NS 2>/dev/null
