#!/bin/sh
# The flight recorder on a real kernel. An agent started with --persist pins its maps
# and probe links, then dies by SIGKILL; three netconsole targets then fail (no such
# device, no IPv4 address, no poll controller under the pre-4.19 emulation) and one
# succeeds and delivers a message: `dump` must show all four with their causes.
# A watch restarted on those pins reuses the probes (counters equal the set-ups made,
# nothing counted twice); a ring of 8 after 20 set-ups keeps the newest 8 and says 12
# were overwritten; reset detaches the programs (gone from /proc/kallsyms); kprobe
# links pin only from 5.15 on; and dump fails cleanly on no pins, an incomplete or
# foreign directory and another schema version; `dump --from` reads a JSON-lines file with
# a torn last line up to it, with a warning naming it, and refuses a FIFO and /dev/zero at once (one line, exit 1), and a device whose name holds
# an escape sequence is shown escaped, by `watch` and by `dump --from` its record.
# variants: legacy
# nics: virtio virtio
# timeout: 600
# checks: persist_pinned four_after_kill causes delivered dump_human restart_reuses no_double_count live_from_pins ring_wraps reset_detaches reset_json kprobe_links no_pins incomplete foreign other_schema from_file from_truncated from_journal from_fifo from_device from_escapes json_schema
. /lib.sh

# The recorder schema of this build (its pin directory is versioned).
PINS=/sys/fs/bpf/netpoll-trace/v5
CFG=/sys/kernel/config/netconsole
ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up
npt_receiver eth1 /tmp/received
modprobe dummy
ip link add noip0 type dummy
ip link set noip0 up
modprobe netconsole

# target NAME DEV: a configfs netconsole target for DEV; tries to enable it.
target() { npt_target "$1" "$2" 10.99.0.2; echo "target $1 enabled=$(cat $CFG/$1/enabled)"; }
enable() { echo 1 >$CFG/$1/enabled 2>/dev/null; echo "target $1 enabled=$(cat $CFG/$1/enabled)"; }


# --- agent --persist, then SIGKILL --------------------------------------------------
netpoll-trace agent --persist --journal /tmp/journal.jsonl >/tmp/agent.out 2>/tmp/agent.err &
agent=$!
npt_wait_for 120 grep -q 'agent ready:' /tmp/agent.err
cat /tmp/agent.err
kill -9 $agent
wait $agent 2>/dev/null
ls $PINS
# Where the tool says its probes cannot outlive it (kprobes before 5.15: the legacy
# variant on 5.10), nothing records after the kill: the checks that need it are skipped
# with the tool's reason, and the tool must have pinned the maps and no link.
NOLINKS=
if grep -q 'kprobe links can be pinned only on kernels 5.15' /tmp/agent.err; then
    NOLINKS="the tool said its kprobe links cannot be pinned on this kernel (< 5.15): nothing records once it is gone"
    npt_check persist_pinned sh -c "! ls $PINS | grep -q '^link_' && ls $PINS | grep -qx RING && ! grep -q 'links pinned' /tmp/agent.err"
else
    npt_check persist_pinned sh -c "grep -q 'links pinned: recording goes on' /tmp/agent.err && ls $PINS | grep -q '^link_' && ls $PINS | grep -qx RING"
fi
# rcheck NAME CMD...: npt_check, or a skip with the tool's reason when nothing records.
rcheck() {
    if [ -n "$NOLINKS" ]; then npt_skip "$1" "$NOLINKS"; else npt_check "$@"; fi
}

# --- three failures and one success with nobody running -----------------------------
insmod /lib/kmods/emulate_pre419.ko
npt_dmesg_mark
target t1 nosuch0
target t2 noip0
target t3 eth0
rmmod emulate_pre419
enable t3
echo "<2>npt-recorder-hello $$" >/dev/kmsg
npt_check delivered npt_wait_for 30 grep -q "npt-recorder-hello $$" /tmp/received
npt_dmesg_since_mark

netpoll-trace dump --json >/tmp/dump1.json 2>/tmp/dump1.err
echo "dump rc=$?"; cat /tmp/dump1.err /tmp/dump1.json
netpoll-trace dump >/tmp/dump1.txt 2>&1
cat /tmp/dump1.txt
four_after_kill() {
    test "$(npt_json_count /tmp/dump1.json type=setup fn=$NPT_OUTER dev=nosuch0 ret=-19)" -eq 1 &&
    test "$(npt_json_count /tmp/dump1.json type=setup fn=$NPT_OUTER dev=noip0 ret=-89)" -eq 1 &&
    test "$(npt_json_count /tmp/dump1.json type=setup fn=__netpoll_setup dev=eth0 ret=-524)" -eq 1 &&
    test "$(npt_json_count /tmp/dump1.json type=setup fn=$NPT_OUTER dev=eth0 ret=0)" -eq 1 &&
    test "$(npt_json_count /tmp/dump1.json type=setup resolved_at=dump seq)" -eq 6
}
causes() {
    test "$(npt_json_count /tmp/dump1.json type=diagnosis)" -eq 3 &&
    test "$(npt_json_count /tmp/dump1.json type=diagnosis dev=nosuch0 cause=no_such_device)" -eq 1 &&
    test "$(npt_json_count /tmp/dump1.json type=diagnosis dev=noip0 cause=no_ip_address)" -eq 1 &&
    test "$(npt_json_count /tmp/dump1.json type=diagnosis dev=eth0 cause=missing_poll_controller "kernel_message~eth0 doesn't support polling, aborting")" -eq 1
}
rcheck four_after_kill four_after_kill
rcheck causes causes
rcheck dump_human sh -c "grep -q 'resolved now, at dump time' /tmp/dump1.txt && grep -q 'probes: pinned' /tmp/dump1.txt && grep -q 'diagnosis: no_such_device on nosuch0' /tmp/dump1.txt && grep -Eq '^memory: the pinned maps take [0-9]+ KiB' /tmp/dump1.txt"

# --- restart on the pins: the pinned probes are reused, history kept ---------------
netpoll-trace watch --persist --json --for 600s >/tmp/w2.json 2>/tmp/w2.err &
w=$!
npt_wait_for 120 grep -q 'all ready:' /tmp/w2.err
enable t1
enable t1
sleep 1
kill -TERM $w
wait $w
echo "--- restarted watch"; cat /tmp/w2.err /tmp/w2.json
rcheck restart_reuses grep -q 'reusing the pinned probes' /tmp/w2.err
rcheck live_from_pins test "$(npt_json_count /tmp/w2.json fn=$NPT_OUTER dev=nosuch0)" -eq 2
netpoll-trace dump --json >/tmp/dump2.json
npt_json_lines /tmp/dump2.json type=counter
no_double_count() {
    test "$(npt_json_count /tmp/dump2.json type=counter dev=nosuch0 fn=$NPT_OUTER errno=ENODEV count=3)" -eq 1 &&
    test "$(npt_json_count /tmp/dump2.json type=counter dev=eth0 fn=$NPT_OUTER ret=0 count=1)" -eq 1 &&
    test "$(npt_json_count /tmp/dump2.json type=setup)" -eq 8 &&
    test "$(npt_json_count /tmp/dump2.json type=recorder recorded=8 overwritten=0)" -eq 1
}
rcheck no_double_count no_double_count

# --- reset detaches the pinned programs ----------------------------------------------
progs() { grep -c 'bpf_prog_[0-9a-f]*_.*netpoll_setup' /proc/kallsyms; }
before=$(progs)
netpoll-trace reset >/tmp/reset.out 2>&1
cat /tmp/reset.out
progs_gone() { [ "$(progs)" -eq 0 ]; }
npt_wait_for 10 progs_gone
after=$(progs)
echo "programs in kallsyms: before reset $before, after $after"
rcheck reset_detaches sh -c "test $before -gt 0 && test $after -eq 0 && ! test -e $PINS && grep -q 'pinned probe link(s) detached' /tmp/reset.out"
# Again, as JSON: nothing left to remove.
netpoll-trace reset --json >/tmp/reset2.json
cat /tmp/reset2.json
npt_check reset_json npt_json_has /tmp/reset2.json removed=false links_detached=0 maps_unpinned=0

# --- a ring of 8 after 20 set-ups ---------------------------------------------------
netpoll-trace watch --persist --ring-size 8 --for 1s 2>/tmp/w3.err >/dev/null
cat /tmp/w3.err
i=0
while [ $i -lt 20 ]; do enable t1 >/dev/null; i=$((i + 1)); done
netpoll-trace dump --json >/tmp/dump3.json
cat /tmp/dump3.json
seqs=$(npt_json_lines /tmp/dump3.json type=setup | sed 's/.*"seq":\([0-9]*\).*/\1/' | tr '\n' ' ')
echo "seqs: $seqs"
ring_wraps() {
    test "$seqs" = '12 13 14 15 16 17 18 19 ' &&
    test "$(npt_json_count /tmp/dump3.json type=recorder ring_size=8 recorded=20 kept=8 overwritten=12 'missing_seqs=[]')" -eq 1 &&
    test "$(npt_json_count /tmp/dump3.json type=counter dev=nosuch0 count=20)" -eq 1
}
rcheck ring_wraps ring_wraps
rcheck json_schema sh -c "netpoll-trace schema-check /tmp/dump1.json && netpoll-trace schema-check /tmp/dump3.json"

# --- kprobe links: pinned only where BPF perf links exist (5.15+) -------------------
netpoll-trace reset >/dev/null
netpoll-trace watch --persist --attach kprobe --for 1s >/dev/null 2>/tmp/w4.err
cat /tmp/w4.err
enable t1 >/dev/null
netpoll-trace dump --json >/tmp/dump4.json
npt_json_lines /tmp/dump4.json type=recorder
ls $PINS
if npt_has kprobe_links; then
    # The outer set-up's kprobe: netpoll_setup's, or netconsole's own (armed) one.
    outer_link=link_netpoll_setup_entry
    [ $NPT_OUTER = netpoll_setup ] || outer_link=link_nc_setup_entry
    kprobe_links() {
        ls $PINS | grep -q "^$outer_link" &&
        test "$(npt_json_count /tmp/dump4.json type=recorder recorded=1)" -eq 1
    }
else
    kprobe_links() {
        grep -q 'kprobe links can be pinned only on kernels 5.15' /tmp/w4.err && ! ls $PINS | grep -q '^link_' &&
        test "$(npt_json_count /tmp/dump4.json type=recorder recorded=0)" -eq 1
    }
fi
npt_check kprobe_links kprobe_links
netpoll-trace reset >/dev/null

# --- bad input: one line, non-zero, nothing changed ---------------------------------
# Each: exit status non-zero, exactly one line naming the problem, nothing changed.
netpoll-trace dump >/tmp/e1 2>&1
rc=$?; cat /tmp/e1
npt_check no_pins sh -c "test $rc -ne 0 && test \$(wc -l </tmp/e1) -eq 1 && grep -q 'no flight recorder' /tmp/e1 && ! test -e /sys/fs/bpf/netpoll-trace"

netpoll-trace watch --persist --pin-dir /sys/fs/bpf/half --for 1s >/dev/null 2>&1
rm /sys/fs/bpf/half/RING
ls /sys/fs/bpf/half >/tmp/half.before
netpoll-trace dump --pin-dir /sys/fs/bpf/half >/tmp/e2 2>&1
rc=$?; cat /tmp/e2
ls /sys/fs/bpf/half >/tmp/half.after
npt_check incomplete sh -c "test $rc -ne 0 && test \$(wc -l </tmp/e2) -eq 1 && grep -q 'incomplete recorder: RING is missing' /tmp/e2 && cmp /tmp/half.before /tmp/half.after"

mkdir /sys/fs/bpf/foreign
mv /sys/fs/bpf/half/META /sys/fs/bpf/foreign/their_map
netpoll-trace dump --pin-dir /sys/fs/bpf/foreign >/tmp/e3 2>&1
rc3=$?; cat /tmp/e3
netpoll-trace reset --pin-dir /sys/fs/bpf/foreign >/tmp/e3r 2>&1
rc3r=$?; cat /tmp/e3r
npt_check foreign sh -c "test $rc3 -ne 0 && test \$(wc -l </tmp/e3) -eq 1 && grep -q 'not a netpoll-trace recorder: it holds their_map; choose another --pin-dir' /tmp/e3 && test $rc3r -ne 0 && test -e /sys/fs/bpf/foreign/their_map"

netpoll-trace watch --persist --for 1s >/dev/null 2>&1
mv $PINS /sys/fs/bpf/netpoll-trace/v1
netpoll-trace dump --pin-dir /sys/fs/bpf/netpoll-trace/v1 >/tmp/e4 2>&1
rc4=$?; cat /tmp/e4
v1_links=$(ls /sys/fs/bpf/netpoll-trace/v1 | grep -c '^link_')
netpoll-trace watch --persist --for 1s >/dev/null 2>/tmp/w5.err
cat /tmp/w5.err
v1_links_after=$(ls /sys/fs/bpf/netpoll-trace/v1 | grep -c '^link_')
echo "the other schema's pinned links: $v1_links before the new recorder, $v1_links_after after"
# Another schema version's recorder is not reused; its probes no longer run beside the
# new ones (its links detached, said so), its data stays for `reset`. (kprobe links can be
# pinned only from 5.15 on: before, a kprobe recorder has none to detach.)
some_links=1
if ! npt_has kprobe_links && [ "${NETPOLL_TRACE_ATTACH:-}" = kprobe ]; then some_links=0; fi
npt_check other_schema sh -c "test $rc4 -ne 0 && test \$(wc -l </tmp/e4) -eq 1 && grep -q 'holds a schema v1 recorder' /tmp/e4 && { test $v1_links -gt 0 || test $some_links -eq 0; } && test $v1_links_after -eq 0 && grep -q \"v1 is a recorder of another schema version: not reused, its $v1_links pinned probe link(s) detached, its maps kept\" /tmp/w5.err && test -e /sys/fs/bpf/netpoll-trace/v1/RING && test -e $PINS/RING"

# --- JSON-lines files: watch --record, a truncated copy, the agent's journal ---------
netpoll-trace watch --wait-all --record /tmp/rec.jsonl -- sh -c "echo 0 >$CFG/t1/enabled; echo 1 >$CFG/t1/enabled" >/dev/null 2>&1
netpoll-trace dump --from /tmp/rec.jsonl >/tmp/f1 2>&1
rc=$?; cat /tmp/rec.jsonl /tmp/f1
npt_check from_file sh -c "test $rc -eq 0 && grep -q 'diagnosis: no_such_device on nosuch0' /tmp/f1 && grep -q \"nosuch0 doesn't exist\" /tmp/rec.jsonl"
head -c -15 /tmp/rec.jsonl >/tmp/trunc.jsonl
netpoll-trace dump --from /tmp/trunc.jsonl >/tmp/f2 2>&1
rc=$?; cat /tmp/f2
# A torn last line (a writer stopped mid-line) is named in a warning; the lines before it are kept.
npt_check from_truncated sh -c "test $rc -eq 0 && grep -Eq 'warning: .*line [0-9]+: .*truncated.*kept' /tmp/f2 && test \$(grep -vc 'warning:' /tmp/f2) -ge 1"
netpoll-trace dump --from /tmp/journal.jsonl >/tmp/f3 2>&1
rc=$?; cat /tmp/f3
npt_check from_journal sh -c "test $rc -eq 0 && grep -q '^remediation - start ok' /tmp/f3"
# Not regular files: a FIFO (no writer: reading would wait for ever) and /dev/zero
# (endless: reading it whole ran out of memory) are refused before any read.
mkfifo /tmp/fifo
timeout 10 netpoll-trace dump --from /tmp/fifo >/tmp/f5 2>&1
rc=$?; cat /tmp/f5
npt_check from_fifo sh -c "test $rc -eq 1 && test \$(wc -l </tmp/f5) -eq 1 && grep -q '/tmp/fifo: a FIFO, not a regular file' /tmp/f5"
timeout 10 netpoll-trace dump --from /dev/zero >/tmp/f6 2>&1
rc=$?; cat /tmp/f6
npt_check from_device sh -c "test $rc -eq 1 && test \$(wc -l </tmp/f6) -eq 1 && grep -q '/dev/zero: a character device, not a regular file' /tmp/f6"
# The kernel accepts an escape sequence in a device name (only whitespace, / and : are
# refused): a dummy named so fails netpoll (no IPv4 address); neither watch nor dump
# --from of its record may pass the sequence to the terminal.
ESC=$(printf '\033')
escdev="e${ESC}[2J"
ip link add "$escdev" type dummy
ip link set "$escdev" up
npt_target tesc "$escdev" 10.99.0.2 off
netpoll-trace watch --wait-all --record /tmp/esc.jsonl -- sh -c "echo 1 >$CFG/tesc/enabled" >/tmp/w6 2>&1
netpoll-trace dump --from /tmp/esc.jsonl >/tmp/f7 2>&1
rc=$?; cat -v /tmp/w6 /tmp/f7
from_escapes() {
    test $rc -eq 0 &&
        npt_json_has /tmp/esc.jsonl type=setup dev~'e\u001b[2J' &&
        grep -qF 'no_ip_address on e\x1b[2J' /tmp/w6 && grep -qF 'no_ip_address on e\x1b[2J' /tmp/f7 &&
        ! grep -q "$ESC" /tmp/w6 && ! grep -q "$ESC" /tmp/f7
}
npt_check from_escapes from_escapes
rmdir $CFG/tesc
ip link del "$escdev"
