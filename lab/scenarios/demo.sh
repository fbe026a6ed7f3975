#!/bin/sh
# The main job, shown live: `netpoll-trace watch` runs while netconsole is set up on
# devices that work and devices netpoll refuses; every failure gets a diagnosis.
# nics: virtio e1000
# timeout: 300
# checks: demo_ready demo_virtio_ok demo_e1000_ok demo_no_such_device demo_no_address demo_netkit demo_exit_3
. /lib.sh

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say netpoll-trace check
netpoll-trace check

ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up
ip addr add 10.99.0.3/24 dev eth1
ip link set eth1 up
modprobe dummy
ip link add d0 type dummy
ip link set d0 up

say "netpoll-trace watch &    # live; each set-up below is reported as it happens"
netpoll-trace watch --for 280s >/tmp/watch.out 2>&1 &
watch_pid=$!
tail -f /tmp/watch.out &
tail_pid=$!
npt_wait_for 120 grep -q 'all ready:' /tmp/watch.out

try() {
    say "modprobe netconsole netconsole=@/$1,6666@10.99.0.2/"
    modprobe netconsole "netconsole=@/$1,6666@10.99.0.2/"
    echo "(modprobe exit status: $?)"
    rmmod netconsole 2>/dev/null
    sleep 2
}

try eth0
try eth1
try eth9
try d0
if [ -x /bin/nlhelper ] && nlhelper netkit-add nk0 nk1 2>/dev/null; then
    ip addr add 10.99.1.1/24 dev nk0
    ip link set nk0 up
    ip link set nk1 up
    try nk0
    netkit=yes
fi

kill -INT $watch_pid
wait $watch_pid
watch_rc=$?
sleep 1
kill $tail_pid 2>/dev/null
echo "(watch exit status: $watch_rc)"

npt_expect_grep demo_ready "ready: (fentry|kprobe) on $NPT_SETUP_FNS" /tmp/watch.out
npt_expect_grep demo_virtio_ok '__netpoll_setup +netconsole +eth0 +ok +driver=virtio_net' /tmp/watch.out
npt_expect_grep demo_e1000_ok '__netpoll_setup +netconsole +eth1 +ok +driver=e1000' /tmp/watch.out
npt_expect_grep demo_no_such_device 'diagnosis: no_such_device on eth9' /tmp/watch.out
npt_expect_grep demo_no_address 'diagnosis: no_ip_address on d0' /tmp/watch.out
if [ "$netkit" = yes ]; then
    npt_expect_grep demo_netkit 'diagnosis: netpoll_disabled on nk0 \(-ENOTSUPP\)' /tmp/watch.out
else
    npt_skip demo_netkit "no netkit on $NPT_KERNEL (netkit arrived in 6.7)"
fi
npt_check demo_exit_3 test "$watch_rc" -eq 3
