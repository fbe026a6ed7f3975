#!/bin/sh
# Statistics that keep their identity and events that do not vanish (#24 items 3-5),
# judged against what the kernel did.
# 1. Nested polls: netconsole on a bond over eth0; lab/netdev's npt_netdev.ko calls
#    netpoll_poll_dev(bond0) as netpoll's transmit does, and the bond's poll controller
#    polls its slave from inside that call (4.19+). Both levels must be counted: bond0 and
#    eth0 each as often as asked, and their sum equal to a tracefs kprobe's hit count.
# 2. A device deleted and re-created: a vlan target sends, the vlan is deleted, a new vlan
#    (another name, created at once so it may land at the freed address; npt_netdev.ko
#    prints both addresses) carries a new target and sends. Each device's messages must be
#    counted under its own name and ifindex.
# 3. A CPU brought online after watch started: a set-up run on that CPU must be reported.
# nics: e1000 virtio
# cpus: 2
# timeout: 400
# variants: legacy
# checks: bond_netpoll nested_both_counted nested_oracle vlan_addresses own_counts cpu1_offline cpu1_setup_reported no_output_lost json_schema
. /lib.sh

T=/sys/kernel/tracing
KO=/lib/kmods/npt_netdev.ko
POLLS=5

# --- 1. nested polls: a bond's poll polls its slave ---------------------------------
modprobe bonding
[ -d /sys/class/net/bond0 ] || echo +bond0 >/sys/class/net/bonding_masters
ip link set eth0 down
echo +eth0 >/sys/class/net/bond0/bonding/slaves
npt_ip bond0 10.99.0.1/24
# The bond polls only slaves that are up with a carrier (bond_slave_is_up): wait for both.
carrier() { [ "$(cat /sys/class/net/$1/carrier 2>/dev/null)" = 1 ]; }
npt_wait_for 30 carrier bond0
npt_wait_for 30 carrier eth0
npt_dmesg_mark
modprobe netconsole netconsole=@/bond0,6666@10.99.0.2/
npt_expect_dmesg bond_netpoll 'netconsole: network logging started'

echo "p:npt/nested netpoll_poll_dev" >>$T/kprobe_events
echo 1 >$T/events/npt/nested/enable
netpoll-trace watch --wait-all --json -- insmod $KO poll=bond0 times=$POLLS >/tmp/nested.json 2>/tmp/nested.err
rc=$?
echo 0 >$T/events/npt/nested/enable
set -- $(awk '$1 == "npt/nested" || $1 == "nested" { print $2, $3 }' $T/kprobe_profile)
hits=${1:-missing} missed=${2:-missing}
echo "-:npt/nested" >>$T/kprobe_events
rmmod npt_netdev
echo "--- watch -- insmod npt_netdev.ko poll=bond0 times=$POLLS: exit $rc"
cat /tmp/nested.err
cat /tmp/nested.json
# The last summary of each device counts everything since watch started.
count_of() { npt_json_lines /tmp/nested.json type=poll dev="$1" histogram | tail -n 1 | sed -n 's/.*"count":\([0-9]*\),"total_ns".*/\1/p'; }
bond=$(count_of bond0)
slave=$(count_of eth0)
echo "netpoll_poll_dev: bond0 ${bond:-none}, eth0 ${slave:-none} (netpoll-trace); kprobe_profile $hits (missed $missed)"
npt_check nested_both_counted sh -c "test $rc -eq 0 && test '${bond:-0}' -ge $POLLS && test '${slave:-0}' -ge $POLLS"
npt_check nested_oracle sh -c "test '$missed' = 0 && test $((${bond:-0} + ${slave:-0})) -eq '$hits'"

# --- 2. devices deleted and re-created at (often) the same address -----------------
# Each cycle, on one CPU: vlan aN carries a target that sends 5 lines, is deleted, and
# vlan bN is created at once (the allocator's per-CPU free list often hands it aN's
# memory: seen in 3 of 6 cycles on 6.12), carries a target that sends 7 lines and is
# disabled. Every line at level 3 reaches the consoles (`quiet`: console level 4), one
# message per enabled target. Each device must be counted under its own name and ifindex.
CYCLES=8
C=/sys/kernel/config/netconsole
# Where printk's thread sends (nbcon netconsole), the lines leave after the write returns:
# give it a moment before the target goes, or they are (rightly) never sent.
FLUSH=true
npt_has netconsole_nbcon && FLUSH="sleep 1"
ip link set eth1 up
cat >/tmp/recreate.sh <<EOF
for i in \$(seq $CYCLES); do
    taskset -c 0 sh -c "
        ip link add link eth1 name a\$i type vlan id 1\$i && ip addr add 10.97.\$i.1/24 dev a\$i &&
        ip link set a\$i up && insmod $KO show=a\$i && rmmod npt_netdev &&
        mkdir $C/a\$i && echo a\$i >$C/a\$i/dev_name && echo 10.97.\$i.2 >$C/a\$i/remote_ip &&
        echo 1 >$C/a\$i/enabled &&
        for n in 1 2 3 4 5; do echo '<3>npt-identity a\$i' >/dev/kmsg; done && $FLUSH &&
        ip link del a\$i && ip link add link eth1 name b\$i type vlan id 2\$i &&
        insmod $KO show=b\$i && rmmod npt_netdev &&
        ip addr add 10.96.\$i.1/24 dev b\$i && ip link set b\$i up &&
        mkdir $C/b\$i && echo b\$i >$C/b\$i/dev_name && echo 10.96.\$i.2 >$C/b\$i/remote_ip &&
        echo 1 >$C/b\$i/enabled &&
        for n in 1 2 3 4 5 6 7; do echo '<3>npt-identity b\$i' >/dev/kmsg; done && $FLUSH &&
        echo 0 >$C/b\$i/enabled" || exit 1
done
EOF
netpoll-trace watch --wait-all --json --stats-every 1s -- sh /tmp/recreate.sh >/tmp/recreate.json 2>/tmp/recreate.err
rc=$?
echo "--- watch -- recreate.sh: exit $rc"
cat /tmp/recreate.err
grep -v '"histogram"' /tmp/recreate.json | grep -v '"type":"poll"'
at() { dmesg | sed -n "s/.*npt-netdev: $1 at \([0-9a-f]*\) ifindex \([0-9]*\).*/\1 \2/p" | tail -n 1; }
# messages DEV IFINDEX: its messages in the last summary that names it.
messages() { npt_json_lines /tmp/recreate.json type=send dev="$1" ifindex="$2" | tail -n 1 | sed -n 's/.*"messages":\([0-9]*\),.*/\1/p'; }
reused=0
# The addresses of the vlans deleted so far (every aN is): a later device at one of them
# is what the identity must survive, whichever cycle it comes in (the allocator hands
# out a freed address at once, or a cycle later: seen both ways on 5.10).
freed=" "
: >/tmp/recreate.bad
for i in $(seq $CYCLES); do
    set -- $(at a$i) $(at b$i)
    a_at=$1 a_if=$2 b_at=$3 b_if=$4
    same=
    case "$freed" in *" $a_at "*) [ -n "$a_at" ] && reused=$((reused + 1)) && same=" (a$i at a freed address)" ;; esac
    freed="$freed$a_at "
    case "$freed" in *" $b_at "*) [ -n "$b_at" ] && reused=$((reused + 1)) && same="$same (b$i at a freed address)" ;; esac
    a_msgs=$(messages a$i "$a_if")
    b_msgs=$(messages b$i "$b_if")
    echo "cycle $i: a$i at $a_at ifindex $a_if: ${a_msgs:-no} messages (5 written); b$i at $b_at ifindex $b_if: ${b_msgs:-no} messages (7 written)$same"
    [ "${a_msgs:-x}" = 5 ] || echo "a$i: ${a_msgs:-no} messages" >>/tmp/recreate.bad
    [ "${b_msgs:-x}" = 7 ] || echo "b$i: ${b_msgs:-no} messages" >>/tmp/recreate.bad
done
echo "$reused device(s) created at the address of a vlan deleted before"
npt_check vlan_addresses test "$rc" -eq 0 -a "$reused" -gt 0
npt_check own_counts sh -c '! test -s /tmp/recreate.bad || { cat /tmp/recreate.bad; exit 1; }'

# --- 3. a CPU brought online after watch started ------------------------------------
echo 0 >/sys/devices/system/cpu/cpu1/online
npt_check cpu1_offline sh -c "test \"\$(cat /sys/devices/system/cpu/cpu1/online)\" = 0"
cat >/tmp/online.sh <<'EOF'
echo 1 >/sys/devices/system/cpu/cpu1/online
# The tool looks for new CPUs once a second.
sleep 3
mkdir /sys/kernel/config/netconsole/cpu1
echo eth1 >/sys/kernel/config/netconsole/cpu1/dev_name
echo 10.98.2.2 >/sys/kernel/config/netconsole/cpu1/remote_ip
taskset -c 1 sh -c 'echo 1 >/sys/kernel/config/netconsole/cpu1/enabled'
EOF
ip addr add 10.98.2.1/24 dev eth1
netpoll-trace watch --wait-all --json -- sh /tmp/online.sh >/tmp/online.json 2>/tmp/online.err
rc=$?
echo "--- watch -- online.sh (cpu1 offline at start): exit $rc"
cat /tmp/online.err
cat /tmp/online.json
# The kernel enabled it (on CPU 1), and the tool reported that set-up.
cpu1_setup() {
    test "$rc" -eq 0 && test "$(cat /sys/kernel/config/netconsole/cpu1/enabled)" = 1 &&
        npt_json_has /tmp/online.json type=setup fn=$NPT_OUTER dev=eth1 ret=0
}
npt_check cpu1_setup_reported cpu1_setup
# Nothing lost on the way: no perf buffer overflow, no failed output, no full map.
no_losses() {
    for f in nested recreate online; do
        grep -q ', 0 event(s) lost' /tmp/$f.err && ! grep -Eq 'stats_full|output_failed|cleanup_unmarked' /tmp/$f.err || return 1
    done
}
npt_check no_output_lost no_losses

npt_check json_schema sh -c 'netpoll-trace schema-check /tmp/nested.json && netpoll-trace schema-check /tmp/recreate.json && netpoll-trace schema-check /tmp/online.json'
