#!/bin/sh
# Missed returns do not break pairing. The tool runs with one return probe left
# unattached (NETPOLL_TRACE_FAULT_SKIP_RETURN, fault injection: as if the kernel had
# skipped every fexit of that function, or run out of kretprobe instances), so real
# set-ups lose real returns. One shell (one thread) enables configfs netconsole targets
# in turn, which is how a missed return used to poison a thread's later set-ups.
# A: __netpoll_setup's returns are missed. A good target on eth0, then nosuch0 and
#    noip0 on the same thread: every netpoll_setup is paired at depth 0, no
#    __netpoll_setup record is made up from another call's return, both failures are
#    diagnosed live with their causes, and dump's lost says 1 missed_return.
# B: netpoll_setup's returns are missed (the pre-4.19 emulation makes __netpoll_setup
#    fail for want of a poll controller). eth0, then d1 on the same thread: each __netpoll_setup
#    is at depth 1 (the leftover netpoll_setup entry is flushed at the thread's next
#    set-up, not nested under), both are diagnosed live though their parent never
#    returns, and dump's lost says 1 orphaned_entry.
# variants: legacy
# nics: virtio
# timeout: 300
# checks: a_paired a_no_made_up_record a_diagnosed_live a_lost b_depths b_diagnosed_live b_lost json_schema
. /lib.sh

CFG=/sys/kernel/config/netconsole
npt_ip eth0 10.99.0.1/24
modprobe dummy
ip link add noip0 type dummy
ip link set noip0 up
ip link add d1 type dummy
npt_ip d1 10.99.3.1/24
modprobe netconsole
me=$$
echo "this shell (every set-up's thread): pid $me"

# start PHASE FUNCTION: watch --json recording into its own pin dir, FUNCTION's return
# probe unattached; waits until it is ready.
start() {
    NETPOLL_TRACE_FAULT_SKIP_RETURN=$2 netpoll-trace watch --json --pin-dir /sys/fs/bpf/pairing-$1 \
        >/tmp/$1.json 2>/tmp/$1.err &
    watch=$!
    npt_wait_for 120 npt_ready_or_gone 'ready:' /tmp/$1.err $watch
    cat /tmp/$1.err
}
# stop PHASE: SIGINT, then the output.
stop() {
    kill -INT $watch
    wait $watch
    echo "--- watch $1 exit $?"
    cat /tmp/$1.err /tmp/$1.json
}
# dump PHASE: the recorder's view, JSON and human.
dump() {
    netpoll-trace dump --json --pin-dir /sys/fs/bpf/pairing-$1 >/tmp/$1.dump.json 2>&1
    netpoll-trace dump --pin-dir /sys/fs/bpf/pairing-$1 >/tmp/$1.dump.txt 2>&1
    npt_json_lines /tmp/$1.dump.json type=recorder
    head -n 4 /tmp/$1.dump.txt
}

# --- A: __netpoll_setup's returns are missed ------------------------------------------
start a __netpoll_setup
npt_target a1 eth0 10.99.0.2
npt_target a2 nosuch0 10.99.0.2
npt_target a3 noip0 10.99.0.2
echo "enabled: a1=$(cat $CFG/a1/enabled) a2=$(cat $CFG/a2/enabled) a3=$(cat $CFG/a3/enabled)"
a_diagnosed() {
    npt_json_has /tmp/a.json type=diagnosis dev=nosuch0 cause=no_such_device errno=ENODEV &&
        npt_json_has /tmp/a.json type=diagnosis dev=noip0 cause=no_ip_address
}
# Live: while watch runs (it would report everything at exit anyway).
npt_check a_diagnosed_live npt_wait_for 30 a_diagnosed
dump a
stop a
a_paired() {
    npt_json_has /tmp/a.json type=setup fn=$NPT_OUTER dev=eth0 ret=0 depth=0 pid=$me &&
        npt_json_has /tmp/a.json type=setup fn=$NPT_OUTER dev=nosuch0 ret=-19 depth=0 pid=$me &&
        npt_json_has /tmp/a.json type=setup fn=$NPT_OUTER dev=noip0 depth=0 pid=$me &&
        npt_json_none /tmp/a.json type=setup fn=$NPT_OUTER depth=1
}
npt_check a_paired a_paired
# No __netpoll_setup return was seen, so no __netpoll_setup record may exist.
npt_check a_no_made_up_record npt_json_none /tmp/a.json type=setup fn=__netpoll_setup
a_lost() {
    npt_json_has /tmp/a.dump.json type=recorder 'lost~"missed_return":1,' 'lost~"orphaned_entry":0,' \
        'lost~"unpaired_return":0,' 'lost~"entry_dropped":0,' &&
        grep -q '^lost: 1 set-up record(s) to pairing (1 missed_return)$' /tmp/a.dump.txt
}
npt_check a_lost a_lost

# --- B: netpoll_setup's returns are missed --------------------------------------------
insmod /lib/kmods/emulate_pre419.ko
start b $NPT_OUTER
npt_target b1 eth0 10.99.0.2
npt_target b2 d1 10.99.0.2
echo "enabled: b1=$(cat $CFG/b1/enabled) b2=$(cat $CFG/b2/enabled)"
b_diagnosed() {
    npt_json_has /tmp/b.json type=diagnosis dev=eth0 cause=missing_poll_controller &&
        npt_json_has /tmp/b.json type=diagnosis dev=d1 cause=missing_poll_controller
}
# Their parents never return: reported after the assembler's 10 s wait, while running.
npt_check b_diagnosed_live npt_wait_for 40 b_diagnosed
dump b
stop b
rmmod emulate_pre419
b_depths() {
    npt_json_has /tmp/b.json type=setup fn=__netpoll_setup dev=eth0 ret=-524 depth=1 pid=$me &&
        npt_json_has /tmp/b.json type=setup fn=__netpoll_setup dev=d1 ret=-524 depth=1 pid=$me &&
        npt_json_none /tmp/b.json type=setup fn=$NPT_OUTER &&
        npt_json_none /tmp/b.json type=setup depth=2
}
npt_check b_depths b_depths
b_lost() {
    npt_json_has /tmp/b.dump.json type=recorder 'lost~"orphaned_entry":1,' 'lost~"missed_return":0,' &&
        grep -q '^lost: 1 set-up record(s) to pairing (1 orphaned_entry)$' /tmp/b.dump.txt
}
npt_check b_lost b_lost

npt_check json_schema sh -c 'for f in /tmp/a.json /tmp/b.json /tmp/a.dump.json /tmp/b.dump.json; do netpoll-trace schema-check $f || exit 1; done'
