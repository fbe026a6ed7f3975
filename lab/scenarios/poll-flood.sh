#!/bin/sh
# netconsole under a message flood, so that netpoll_poll_dev runs: an e1000 NIC with its
# TX ring shrunk to the driver's minimum, regular traffic (two fast pings) competing for
# the same TX queue, and several writers pushing lines through /dev/kmsg. netpoll then
# finds the queue locked or stopped and polls the device between its retries. (Measured
# under TCG, 400 lines: 37-411 calls with the pings, 1-84 without; the ring size changes
# little.) The oracle is a tracefs kprobe event on the same function: the tool's
# per-device count must equal its hit count in kprobe_profile, for both of the tool's
# attach methods. A receiver on a second NIC in its own network namespace proves
# netconsole sent the flood.
# nics: e1000 virtio
# timeout: 300
# variants: legacy
# checks: ring_shrunk netconsole_up fentry_attached fentry_counts_equal fentry_histogram fentry_slow_named fentry_slow_matches fentry_delivered kprobe_attached kprobe_counts_equal kprobe_histogram kprobe_slow_named kprobe_slow_matches kprobe_delivered count_positive json_schema
. /lib.sh

T=/sys/kernel/tracing
WRITERS=4
# Many short lines: netconsole sends one datagram per line, and 4 x 100 lines of ~230
# bytes fit the kernel's log buffer, so the consoles drop none.
LINES=100
# A power of two in ns (2^14 = 16384 ns = 0.016384 ms): a call is reported as slow
# exactly when it lands in a histogram bucket whose upper bound is >= 2^15 ns.
SLOW=0.016384ms
SLOW_NS=16384

npt_ip eth0 10.99.0.1/24
ifindex=$(cat /sys/class/net/eth0/ifindex)

# --- the netconsole receiver: eth1 (virtio) as 10.99.0.2 in its own namespace -----
unshare -n sleep 100000 &
ns_pid=$!
ns_apart() { [ "$(readlink /proc/$ns_pid/ns/net)" != "$(readlink /proc/self/ns/net)" ]; }
npt_wait_for 10 ns_apart
ip link set eth1 netns $ns_pid
nsenter -t $ns_pid -n sh -c 'ip link set lo up && ip addr add 10.99.0.2/24 dev eth1 && ip link set eth1 up'
# The receiver may not run for a while during the flood: a socket buffer for all of it
# (set in both namespaces: whether the sysctl is per namespace depends on the kernel).
echo 8388608 >/proc/sys/net/core/rmem_default
nsenter -t $ns_pid -n sh -c 'echo 8388608 >/proc/sys/net/core/rmem_default' 2>/dev/null
nsenter -t $ns_pid -n udprecv 6666 >/tmp/rx.txt &
rx_pid=$!

# --- shrink the TX ring (e1000's minimum is 48 descriptors) -----------------------
echo "ring before: $(nlhelper ring-show eth0)"
nlhelper ring-tx eth0 48
echo "ring after:  $(nlhelper ring-show eth0)"
npt_check ring_shrunk sh -c 'nlhelper ring-show eth0 | grep -q "^tx 48 "'
# Resizing the ring resets the NIC: wait for the link to come back before netconsole.
carrier_up() { [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]; }
npt_wait_for 30 carrier_up

# --- netconsole on eth0; the flood's lines must reach the consoles -----------------
# `quiet` sets the console log level to 4, so the flood logs at level 3 (err); /dev/kmsg
# must not rate-limit the writers.
old_devkmsg=$(cat /proc/sys/kernel/printk_devkmsg)
echo on >/proc/sys/kernel/printk_devkmsg
npt_dmesg_mark
modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/
npt_check netconsole_up sh -c "test -d /sys/module/netconsole && dmesg | sed -n '/npt-mark $NPT_MARK\$/,\$p' | grep -q 'netconsole: network logging started'"
# The competing traffic goes to an address with a static neighbour entry: no ARP, every
# packet is queued at once. The MAC is nobody's: the hub's sink port drops the frames.
arp -s 10.99.0.2 52:54:00:4e:50:ee

# The flood, run as watch's COMMAND (argument: a tag for its lines). busybox ping exits
# on ENOBUFS (the qdisc full behind the stopped queue), so it is restarted until the
# writers are done.
cat >/tmp/flood.sh <<EOF
rm -f /tmp/stop.\$1
loops=
for p in 1 2; do
    ( while [ ! -e /tmp/stop.\$1 ]; do ping -q -s 1400 -i 0.001 -w 1 10.99.0.2 >/dev/null 2>&1; done ) &
    loops="\$loops \$!"
done
sleep 1
line=\$(printf '%0200d' 0)
pids=
for w in \$(seq $WRITERS); do
    ( i=0; while [ \$i -lt $LINES ]; do echo "<3>npt-flood \$1 \$w \$i \$line"; i=\$((i + 1)); done >/dev/kmsg ) &
    pids="\$pids \$!"
done
wait \$pids
touch /tmp/stop.\$1
wait \$loops
exit 0
EOF

# sum: the sum of the numbers on stdin.
sum() { awk '{ s += $1 } END { print s + 0 }'; }
# profile_hits EVENT: its hit and miss counts in kprobe_profile ("HITS MISSES").
profile_hits() { awk -v e="$1" '$1 == e || $1 == "npt/" e { print $2, $3 }' $T/kprobe_profile; }

# flood METHOD: one flood under `watch --attach METHOD`, with a fresh tracefs kprobe
# event on netpoll_poll_dev enabled before watch attaches and disabled after it exits.
# Whether the kernel polls at all depends on the TX ring filling up in time: a flood in
# which it made no netpoll_poll_dev call proves nothing, so it is flooded again (at most
# ten times; the checks judge the last flood, whose lines carry their own tag). On 7.3,
# whose netconsole sends from its printk thread, the kernel polls once or twice in a
# flood when it polls at all under QEMU 10 on a slower host: three floods in a row
# without a single poll were seen, then six (its own kprobe_profile counted none).
flood() {
    m=$1
    for try in 1 2 3 4 5 6 7 8 9 10; do
        tag=$m$try
        ev=pollcount_$tag
        echo "p:npt/$ev netpoll_poll_dev" >>$T/kprobe_events
        echo 1 >$T/events/npt/$ev/enable
        netpoll-trace watch --wait-all --attach "$m" --json --slow-poll $SLOW -- sh /tmp/flood.sh "$tag" >/tmp/$m.json 2>/tmp/$m.err
        rc=$?
        echo 0 >$T/events/npt/$ev/enable
        set -- $(profile_hits $ev)
        hits=${1:-missing} missed=${2:-missing}
        echo "-:npt/$ev" >>$T/kprobe_events
        [ "$hits" != 0 ] || [ $rc -ne 0 ] && break
        echo "--- flood $try under watch --attach $m: the kernel made no netpoll_poll_dev call; flooding again"
    done
    echo "--- flood under watch --attach $m: exit $rc"
    cat /tmp/$m.err
    grep -v '"duration_ns"' /tmp/$m.json
    echo "($(grep -c '"duration_ns"' /tmp/$m.json) slow-poll line(s) not shown)"
    # The legacy variant (NETPOLL_TRACE_OBJECT=legacy) has no fentry programs: the tool
    # must refuse --attach fentry as a usage error, and then there is nothing to count.
    if [ "$NETPOLL_TRACE_OBJECT" = legacy ] && [ "$m" = fentry ]; then
        npt_check ${m}_attached sh -c "test $rc -eq 2 && grep -q 'legacy has kprobe programs only' /tmp/$m.err"
        for c in counts_equal histogram slow_named slow_matches delivered; do
            npt_skip ${m}_$c "the legacy object has no fentry programs (the tool refused --attach fentry)"
        done
        eval "count_$m=0"
        return 0
    fi

    npt_check ${m}_attached grep -Eq "ready: $m on .*netpoll_poll_dev" /tmp/$m.err
    # The last summary: counts since watch started (a long run also prints them every
    # --stats-every while it goes).
    npt_json_lines /tmp/$m.json type=poll histogram | tail -n 1 >/tmp/$m.summary
    npt_json_lines /tmp/$m.json type=poll duration_ns >/tmp/$m.slow
    # The per-device count: the number before "total_ns" (histogram counts end in '}').
    tool=$(sed -n 's/.*"count":\([0-9]*\),"total_ns".*/\1/p' /tmp/$m.summary | sum)
    echo "netpoll_poll_dev calls: netpoll-trace ($m) $tool, kprobe_profile $hits (missed $missed)"
    eval "count_$m=$tool"
    npt_check ${m}_counts_equal sh -c "test $rc -eq 0 && test '$missed' = 0 && test '$hits' = '$tool' || { echo 'watch exit $rc; tool $tool, kprobe_profile $hits, missed $missed'; exit 1; }"

    # Each summary: a device (eth0, its sysfs ifindex), histogram buckets summing to count.
    : >/tmp/$m.hist_bad
    while read -r s; do
        c=$(echo "$s" | sed -n 's/.*"count":\([0-9]*\),"total_ns".*/\1/p')
        h=$(echo "$s" | grep -o '"le_ns":[0-9]*,"count":[0-9]*' | sed 's/.*://' | sum)
        [ "$c" = "$h" ] || echo "count $c, buckets sum to $h" >>/tmp/$m.hist_bad
    done </tmp/$m.summary
    not_eth0=$(($(wc -l </tmp/$m.summary) - $(npt_json_count /tmp/$m.summary dev=eth0 ifindex=$ifindex)))
    [ "$not_eth0" -eq 0 ] || echo "$not_eth0 summary line(s) not for eth0/$ifindex" >>/tmp/$m.hist_bad
    npt_check ${m}_histogram sh -c "test -s /tmp/$m.summary && ! test -s /tmp/$m.hist_bad || { cat /tmp/$m.hist_bad; echo 'no valid poll summary'; exit 1; }"

    # Slow polls: each names eth0 and took at least the threshold; as many as the
    # histogram holds at or above it (none may be lost for that).
    slow=$(wc -l </tmp/$m.slow)
    slow_hist=$(grep -o '"le_ns":[0-9]*,"count":[0-9]*' /tmp/$m.summary | awk -F'[:,]' -v t=$SLOW_NS '$2 > t { s += $4 } END { print s + 0 }')
    echo "slow polls (>= $SLOW_NS ns): $slow reported, $slow_hist in the histogram"
    if [ "$slow" -gt 0 ]; then
        slow_named() {
            test "$(npt_json_count /tmp/$m.slow dev=eth0 ifindex=$ifindex)" -eq "$slow" &&
                grep -o '"duration_ns":[0-9]*' /tmp/$m.slow | sed 's/.*://' | awk -v t=$SLOW_NS '$1 < t { bad = 1 } END { exit bad }'
        }
        npt_check ${m}_slow_named slow_named
    elif [ "$slow_hist" -eq 0 ]; then
        npt_skip ${m}_slow_named "no netpoll_poll_dev call took $SLOW_NS ns or more on $NPT_KERNEL"
    else
        npt_fail ${m}_slow_named "histogram holds $slow_hist call(s) >= $SLOW_NS ns but no slow-poll event was reported"
    fi
    npt_check ${m}_slow_matches sh -c "grep -q ', 0 event(s) lost' /tmp/$m.err && test $slow -eq $slow_hist"

    # Every flood line reached the receiver (netpoll queues what it cannot send at once,
    # so late ones may still be on their way).
    want=$((WRITERS * LINES))
    # (netconsole sends the kernel's text with its "[ timestamp] " prefix.)
    all_arrived() { [ "$(grep -c "] npt-flood $tag " /tmp/rx.txt)" -ge $want ]; }
    npt_wait_for 10 all_arrived
    got=$(grep -c "] npt-flood $tag " /tmp/rx.txt)
    echo "receiver got $got of $want flood lines; its UDP counters:"
    nsenter -t $ns_pid -n grep Udp: /proc/net/snmp
    npt_check ${m}_delivered test "$got" -eq $want
}

flood fentry
flood kprobe

echo "$NPT_KERNEL: netpoll_poll_dev calls during the flood: fentry run $count_fentry, kprobe run $count_kprobe"
npt_check count_positive test $((count_fentry + count_kprobe)) -gt 0
if [ "$NETPOLL_TRACE_OBJECT" = legacy ]; then
    npt_check json_schema sh -c 'test ! -s /tmp/fentry.json && netpoll-trace schema-check /tmp/kprobe.json'
else
    npt_check json_schema sh -c 'netpoll-trace schema-check /tmp/fentry.json && netpoll-trace schema-check /tmp/kprobe.json'
fi

rmmod netconsole
echo "$old_devkmsg" >/proc/sys/kernel/printk_devkmsg
kill $rx_pid $ns_pid 2>/dev/null
