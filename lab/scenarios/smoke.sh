#!/bin/sh
# Proves the lab itself: the right kernel booted, tracing and module loading work, netconsole
# can start on a virtio NIC, and the static netpoll-trace binary runs.
# kernels: 5.10 6.1 6.12
# nics: virtio
# timeout: 120
# checks: uname kprobes dummy netconsole netconsole_logged netpoll_trace_runs
. /lib.sh

case "$(uname -r)" in
    "$NPT_KERNEL".*) echo "NPT-CHECK uname pass" ;;
    *) npt_fail uname "uname -r is $(uname -r), expected $NPT_KERNEL.*" ;;
esac

npt_check kprobes sh -c '[ -e /sys/kernel/tracing/kprobe_events ] || [ -e /sys/bus/event_source/devices/kprobe ]'

npt_check dummy sh -c 'modprobe dummy && ip link add d0 type dummy && ip link del d0'

npt_ip eth0 10.99.0.1/24
npt_dmesg_mark
npt_check netconsole modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/
npt_expect_dmesg netconsole_logged 'netconsole: network logging started'

npt_check netpoll_trace_runs /bin/netpoll-trace --help
