#!/bin/sh
# The agent's Prometheus endpoint (--metrics-addr), scraped with busybox wget/nc, on an
# emulated pre-4.19 kernel (lab/emulate, test only). Known failures and one remediation,
# then exact counts: failures by device, driver and cause equal the kernel's "aborting"
# lines; set-ups by result; remediations by action and result equal the journal's lines;
# the poll histogram's count equals a tracefs kprobe's hits on netpoll_poll_dev, the
# messages' count its hits on netpoll_send_udp, and the target shows up; build
# info names this kernel and the attach method; the poll series carry the device's
# ifindex. Bad clients get bounded answers: 404, 431 for an oversized head, 413 for a
# body, 408 for a silent client, 421 for a Host other than the bound address (DNS
# rebinding) and 400 for none, 503 at once beyond the per-peer limit, nothing on a
# non-loopback address; idle connections do not delay a scrape, and four idle peers holding
# every slot do not keep one out; and the agent's stderr
# is JSON lines with --log-format json.
# timeout: 420
# variants: legacy
# checks: bad_addr metrics_thread_no_caps endpoint_up build_info failures_counted setups_counted remediations_match_journal poll_histogram send_metrics poll_ifindex not_found oversized body_refused slow_client idle_then_scrape per_peer_limit idle_peers_scrape bad_host no_host many_connections loopback_only still_serving clean_stop json_logs
. /lib.sh

PORT=9632
URL=http://127.0.0.1:$PORT
T=/sys/kernel/tracing
N=3   # failed set-ups on d0

# metric SERIES FILE: the sample's value ("" when absent). Exact match on the series.
metric() { awk -v s="$1" '$1 == s { print $2 }' "$2"; }
# aborting_lines DEV: the kernel's refusals of DEV since the last mark.
aborting_lines() { npt_dmesg_since_mark | grep -c "netpoll: netconsole: $1 doesn't support polling, aborting"; }
scrape() { wget -q -O "$1" "$URL/metrics"; }

# --- a port without a host: refused at the command line, nothing attached ---------
netpoll-trace agent --metrics-addr $PORT >/tmp/badaddr.out 2>&1
rc=$?
cat /tmp/badaddr.out
npt_check bad_addr sh -c "test $rc -eq 2 && grep -q '127.0.0.1:$PORT' /tmp/badaddr.out"

npt_ip eth0 10.99.0.1/24
modprobe dummy
ip link add d0 type dummy
npt_ip d0 10.99.3.1/24
modprobe netconsole      # no targets: dynamic ones are made in configfs below
insmod /lib/kmods/emulate_pre419.ko
# The oracle for the poll histogram, enabled before the agent attaches.
echo 'p:npt/poll netpoll_poll_dev' >>$T/kprobe_events
echo 1 >$T/events/npt/poll/enable
# And for the send path's counts: every netconsole message is one netpoll_send_udp call.
echo 'p:npt/udp netpoll_send_udp' >>$T/kprobe_events
echo 1 >$T/events/npt/udp/enable

npt_agent_config /tmp/agent.toml
netpoll-trace --log-format json agent --config /tmp/agent.toml --metrics-addr 127.0.0.1:$PORT >/tmp/agent.out 2>/tmp/agent.err &
agent=$!
npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/agent.err $agent
cat /tmp/agent.err
grep Cap /proc/$agent/status
# The thread that talks to the network holds no capability (#24: it used to inherit
# whatever the agent kept).
metrics_thread_caps() {
    for t in /proc/$agent/task/*; do
        [ "$(cat $t/comm)" = metrics ] || continue
        grep Cap $t/status
        grep -q '^CapEff:.0000000000000000$' $t/status && grep -q '^CapPrm:.0000000000000000$' $t/status && return 0
        return 1
    done
    echo "no thread named metrics in $agent"
    return 1
}
npt_check metrics_thread_no_caps metrics_thread_caps
npt_check endpoint_up sh -c "wget -q -O /tmp/m0 $URL/metrics && grep -q '^netpoll_trace_build_info{' /tmp/m0"

version=$(netpoll-trace --version | cut -d' ' -f2)
method=$(sed -n 's/.*agent ready: \([a-z]*\) on .*/\1/p' /tmp/agent.err | head -n 1)
object=$(sed -n 's/.*agent ready: .*; \([a-z]*\) object, attach path .*/\1/p' /tmp/agent.err | head -n 1)
series="netpoll_trace_build_info{version=\"$version\",kernel=\"$(uname -r)\",attach_method=\"$method\",object=\"$object\"}"
echo "expect: $series 1"
# A forced object (the legacy variant) must be the one reported.
npt_check build_info sh -c "test -n '$method' && test -n '$object' && test '${NETPOLL_TRACE_OBJECT:-$object}' = '$object' && test \"\$(awk -v s='$series' '\$1 == s { print \$2 }' /tmp/m0)\" = 1"

# --- N refusals on d0 (dummy: not allowlisted, so reported only) ------------------
# d0_decided I: the journal holds at least I decisions on d0.
d0_decided() { [ "$(npt_json_count /tmp/journal.jsonl dev=d0 action=decide)" -ge "$1" ]; }
npt_dmesg_mark
npt_target d0t d0 10.99.3.2
i=1
npt_wait_for 30 d0_decided $i
while [ $i -lt $N ]; do
    npt_enable d0t
    i=$((i + 1))
    npt_wait_for 30 d0_decided $i
done
d0_kernel=$(aborting_lines d0)

# --- eth0 (virtio_net, allowlisted): refused, patched, retried, verified ----------
npt_target t0 eth0 10.99.0.2
npt_wait_for 90 npt_json_has /tmp/journal.jsonl action=verify result=ok
eth0_kernel=$(aborting_lines eth0)
cat /tmp/journal.jsonl
scrape /tmp/m1
grep '^netpoll_trace_' /tmp/m1 | grep -v _bucket

f=netpoll_trace_setup_failures_total
d0_metric=$(metric "$f{dev=\"d0\",driver=\"dummy\",cause=\"missing_poll_controller\"}" /tmp/m1)
eth0_metric=$(metric "$f{dev=\"eth0\",driver=\"virtio_net\",cause=\"missing_poll_controller\"}" /tmp/m1)
echo "failures: d0 kernel $d0_kernel metric $d0_metric (made $N); eth0 kernel $eth0_kernel metric $eth0_metric"
npt_check failures_counted sh -c "test '$d0_kernel' = $N && test '$d0_metric' = '$d0_kernel' && test '$eth0_kernel' -ge 1 && test '$eth0_metric' = '$eth0_kernel'"

s=netpoll_trace_setups_total
verified=$(npt_json_count /tmp/journal.jsonl dev=eth0 action=verify result=ok)
ok_metric=$(metric "$s{dev=\"eth0\",driver=\"virtio_net\",result=\"ok\"}" /tmp/m1)
failed_metric=$(metric "$s{dev=\"eth0\",driver=\"virtio_net\",result=\"failed\"}" /tmp/m1)
d0_failed_metric=$(metric "$s{dev=\"d0\",driver=\"dummy\",result=\"failed\"}" /tmp/m1)
echo "set-ups: eth0 ok $ok_metric (journal verified $verified), eth0 failed $failed_metric, d0 failed $d0_failed_metric"
npt_check setups_counted sh -c "test '$verified' -ge 1 && test '$ok_metric' = '$verified' && test '$failed_metric' = '$eth0_kernel' && test '$d0_failed_metric' = '$d0_kernel'"

# Every (action, result) pair of the journal, counted, against the metric.
sed -n 's/.*"action":"\([a-z_]*\)","result":"\([a-z_]*\)".*/\1 \2/p' /tmp/journal.jsonl | sort | uniq -c >/tmp/jcounts
journal_lines=$(wc -l </tmp/journal.jsonl)
metric_sum=$(awk '/^netpoll_trace_remediations_total\{/ { s += $2 } END { print s + 0 }' /tmp/m1)
mismatch=""
while read -r count action result; do
    v=$(metric "netpoll_trace_remediations_total{action=\"$action\",result=\"$result\"}" /tmp/m1)
    echo "journal $action/$result: $count, metric: $v"
    [ "$v" = "$count" ] || mismatch="$mismatch $action/$result"
done </tmp/jcounts
echo "journal lines $journal_lines, remediation metrics sum $metric_sum"
npt_check remediations_match_journal sh -c "test -z '$mismatch' && test '$journal_lines' = '$metric_sum' && grep -q 'patch ok' /tmp/jcounts && grep -q 'decide reported' /tmp/jcounts"

# --- netconsole traffic on the patched eth0: poll histogram against kprobe_profile -
echo on >/proc/sys/kernel/printk_devkmsg
writers=""
for w in 1 2 3 4; do
    (i=0; while [ $i -lt 100 ]; do echo "<3>npt-metrics-flood $w $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" >/dev/kmsg; i=$((i + 1)); done) &
    writers="$writers $!"
done
for p in $writers; do wait $p; done
# polls_agree: the agent's histogram has caught up with the oracle (sets hits, count).
polls_agree() {
    hits=$(awk '$1 == "poll" || $1 == "npt/poll" { print $2 }' $T/kprobe_profile)
    scrape /tmp/m2
    count=$(awk '/^netpoll_trace_poll_duration_seconds_count\{/ { s += $2 } END { print s + 0 }' /tmp/m2)
    [ "$count" = "$hits" ]
}
npt_wait_for 10 polls_agree
grep '^netpoll_trace_poll_duration_seconds' /tmp/m2 | grep -v '_bucket.* 0$'
# Where a device has polls: buckets never decrease and +Inf equals _count.
shape=$(awk '
    /^netpoll_trace_poll_duration_seconds_bucket\{/ { split($1, a, "le=\""); dev = a[1]; if (dev == last && $2 < prev) bad = bad " decreasing"; last = dev; prev = $2; if (index($1, "le=\"+Inf\"")) inf[dev] = $2 }
    /^netpoll_trace_poll_duration_seconds_count\{/ { d = $1; sub(/_count\{/, "_bucket{", d); sub(/\}$/, ",", d); if (inf[d] != $2) bad = bad " inf!=count" }
    END { print bad }' /tmp/m2)
echo "netpoll_poll_dev calls: kprobe_profile $hits, metrics _count $count; shape problems:${shape:- none}"
npt_check poll_histogram sh -c "test -n '$hits' && test '$count' = '$hits' && test -z '$shape'"
# The send path: every netpoll_send_udp call the kernel made is one message in
# netpoll_trace_messages_total (all results, all devices); the transmit histogram counts
# the sent and deferred ones; the target the agent saw enabled is up.
sends_agree() {
    udp=$(awk '$1 == "udp" || $1 == "npt/udp" { print $2 }' $T/kprobe_profile)
    scrape /tmp/m4
    msgs=$(awk '/^netpoll_trace_messages_total\{/ { s += $2 } END { print s + 0 }' /tmp/m4)
    [ "$msgs" = "$udp" ]
}
npt_wait_for 10 sends_agree
grep '^netpoll_trace_messages_total\|^netpoll_trace_target_up\|^netpoll_trace_send_duration_seconds_count' /tmp/m4
out_eth0=$(awk '/^netpoll_trace_messages_total\{dev="eth0",result="(sent|deferred)"\}/ { s += $2 } END { print s + 0 }' /tmp/m4)
dur_eth0=$(metric 'netpoll_trace_send_duration_seconds_count{dev="eth0"}' /tmp/m4)
up_t0=$(metric 'netpoll_trace_target_up{target="netconsole@10.99.0.2:6666",dev="eth0"}' /tmp/m4)
echo "netpoll_send_udp calls: kprobe_profile $udp, messages_total $msgs; eth0 sent+deferred $out_eth0, send_duration _count $dur_eth0; target_up $up_t0"
npt_check send_metrics sh -c "test -n '$udp' && test '$udp' -ge 400 && test '$msgs' = '$udp' && test '$dur_eth0' = '$out_eth0' && test '$up_t0' = 1"
# The series names the device by name and by the kernel's ifindex (a device made again
# under the same name is a new series, not a duplicate one).
# (Where the flood made no netpoll_poll_dev call, as on 5.10 and 6.1, there is no series.)
eth0_index=$(cat /sys/class/net/eth0/ifindex)
if [ "${hits:-0}" -gt 0 ]; then
    npt_check poll_ifindex grep -q "^netpoll_trace_poll_duration_seconds_count{dev=\"eth0\",ifindex=\"$eth0_index\"} " /tmp/m2
else
    npt_skip poll_ifindex "netpoll_poll_dev was not called (kprobe_profile 0): no poll series to label"
fi

# --- bad clients: bounded answers -------------------------------------------------
wget -O /dev/null "$URL/nope" >/tmp/404.out 2>&1
cat /tmp/404.out
npt_check not_found grep -q '404 Not Found' /tmp/404.out
# A 20 KB header (busybox wget crashes on one that long on 5.10: nc sends it raw).
{ printf 'GET /metrics HTTP/1.1\r\nX-Pad: '; head -c 20000 /dev/zero | tr '\0' a; printf '\r\n\r\n'; sleep 3; } |
    nc 127.0.0.1 $PORT >/tmp/431.out
head -n 1 /tmp/431.out
npt_check oversized grep -q '^HTTP/1.1 431 Request Header Fields Too Large' /tmp/431.out
wget -O /dev/null --post-data hello "$URL/metrics" >/tmp/413.out 2>&1
cat /tmp/413.out
npt_check body_refused grep -q '413 Payload Too Large' /tmp/413.out
# A client that connects and says nothing gets 408 after the read timeout (5 s).
# (busybox nc keeps running until its stdin ends: watch its output instead.)
start=$(date +%s)
(sleep 12) | nc 127.0.0.1 $PORT >/tmp/slow.out &
npt_wait_for 12 grep -q '^HTTP/1.1' /tmp/slow.out
took=$(( $(date +%s) - start ))
echo "silent client answered after ${took}s: $(head -n 1 /tmp/slow.out)"
npt_check slow_client sh -c "head -n 1 /tmp/slow.out | grep -q '^HTTP/1.1 408 ' && test $took -lt 9"
# server_conns: connections the endpoint has accepted and not closed (its side of them
# in /proc/net/tcp: local port $PORT, ESTABLISHED or CLOSE_WAIT).
port_hex=$(printf '%04X' $PORT)
server_conns() { awk -v p=":$port_hex" '$2 ~ p"$" && ($4 == "01" || $4 == "08")' /proc/net/tcp | wc -l; }
at_least_conns() { [ "$(server_conns)" -ge "$1" ]; }
# Six clients connect and say nothing (the issue had four blocking every scrape for 5 s):
# a scrape must still answer at once.
idle=""
for i in 1 2 3 4 5 6; do
    (sleep 6) | nc 127.0.0.1 $PORT >/dev/null &
    idle="$idle $!"
done
npt_wait_for 5 at_least_conns 6
t0=$(npt_uptime_cs)
wget -q -O /tmp/m_idle "$URL/metrics"
wget_rc=$?
t1=$(npt_uptime_cs)
echo "scrape behind $(server_conns) open connection(s): rc $wget_rc in $((t1 - t0))0 ms"
npt_check idle_then_scrape sh -c "test $wget_rc -eq 0 && test $((t1 - t0)) -lt 150 && grep -q '^netpoll_trace_build_info{' /tmp/m_idle"
for p in $idle; do wait $p; done
# One peer holds at most 8 connections: 8 silent ones, then a 9th is refused at once
# (503) instead of waiting behind them.
idle=""
for i in 1 2 3 4 5 6 7 8; do
    (sleep 6) | nc 127.0.0.1 $PORT >/dev/null &
    idle="$idle $!"
done
npt_wait_for 5 at_least_conns 8
(sleep 6) | nc 127.0.0.1 $PORT >/tmp/ninth.out &
ninth=$!
npt_wait_for 1 grep -q '^HTTP/1.1' /tmp/ninth.out
echo "9th connection of one peer: $(head -n 1 /tmp/ninth.out)"
npt_check per_peer_limit grep -q '^HTTP/1.1 503 ' /tmp/ninth.out
for p in $idle $ninth; do wait $p; done
# Four peers (their own loopback addresses) hold every slot with 8 silent connections
# each: a scrape still gets its answer (the oldest idle connection is closed for it).
peers=""
for p in 2 3 4 5; do
    tcpidle 127.0.0.$p 127.0.0.1 $PORT 8 8 >/tmp/idle.$p &
    peers="$peers $!"
done
npt_wait_for 5 at_least_conns 32
cat /tmp/idle.*
# (No -T: busybox 1.35's wget crashes on any error when given a timeout.)
npt_check idle_peers_scrape sh -c "wget -q -O /tmp/m_peers $URL/metrics && grep -q '^netpoll_trace_build_info{' /tmp/m_peers"
for p in $peers; do wait $p; done
# DNS rebinding: a page whose name now resolves to 127.0.0.1 sends its own Host.
{ printf 'GET /metrics HTTP/1.1\r\nHost: rebound.example:%s\r\n\r\n' $PORT; sleep 2; } | nc 127.0.0.1 $PORT >/tmp/421.out
head -n 1 /tmp/421.out
npt_check bad_host sh -c "grep -q '^HTTP/1.1 421 Misdirected Request' /tmp/421.out && ! grep -q '^netpoll_trace_' /tmp/421.out"
{ printf 'GET /metrics HTTP/1.1\r\n\r\n'; sleep 2; } | nc 127.0.0.1 $PORT >/tmp/400.out
head -n 1 /tmp/400.out
npt_check no_host grep -q '^HTTP/1.1 400 ' /tmp/400.out
# 30 silent connections at once from one peer: 8 are admitted (408 when they time
# out), the rest are refused at once with 503; every one gets an answer.
pids=""
for i in $(seq 1 30); do
    (sleep 12) | nc 127.0.0.1 $PORT >/tmp/conn.$i &
    pids="$pids $!"
done
for p in $pids; do wait $p; done
n408=$(cat /tmp/conn.* | grep -c '^HTTP/1.1 408 ')
n503=$(cat /tmp/conn.* | grep -c '^HTTP/1.1 503 ')
echo "30 silent connections: $n408 x 408, $n503 x 503"
npt_check many_connections sh -c "test $((n408 + n503)) -eq 30 && test $n408 -ge 1 && test $n503 -ge 1"
npt_check still_serving sh -c "wget -q -O /tmp/m3 $URL/metrics && grep -q '^netpoll_trace_build_info{' /tmp/m3 && kill -0 $agent"
# Bound to loopback: the NIC's address has nothing listening.
npt_check loopback_only sh -c "! wget -q -T 5 -O /dev/null http://10.99.0.1:$PORT/metrics"

# --- stop; stderr was JSON lines throughout ---------------------------------------
kill -TERM $agent
wait $agent
stop_rc=$?
clean_stop() { tail -n 1 /tmp/journal.jsonl >/tmp/journal.last && test $stop_rc -eq 0 && npt_json_has /tmp/journal.last action=stop; }
npt_check clean_stop clean_stop
lines=$(wc -l </tmp/agent.err)
not_json=$(grep -cv '^{"ts":"[0-9][0-9T:.-]*Z","level":"[a-z]*","target":"[a-z_:]*","message":".*"}$' /tmp/agent.err)
echo "agent stderr: $lines line(s), $not_json not JSON"
grep -v '^{"ts":' /tmp/agent.err | head -n 3
npt_check json_logs sh -c "test $lines -ge 2 && test $not_json -eq 0 && grep -q '\"level\":\"info\".*agent ready:' /tmp/agent.err"

for t in /sys/kernel/config/netconsole/*; do echo 0 >$t/enabled 2>/dev/null; rmdir $t 2>/dev/null; done
echo 0 >$T/events/npt/poll/enable
echo '-:npt/poll' >>$T/kprobe_events
echo 0 >$T/events/npt/udp/enable
echo '-:npt/udp' >>$T/kprobe_events
netpoll-trace unpatch eth0
