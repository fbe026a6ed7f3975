#!/bin/sh
# Proves the lab itself: the right kernel booted, tracing and module loading work, netconsole
# can start on a virtio NIC, and the static netpoll-trace binary runs.
# nics: virtio
# timeout: 120
# checks: uname kprobes dummy netconsole netconsole_logged netpoll_trace_runs command_not_found command_not_executable panic_report
. /lib.sh

# The release xtask found in the cache for this label (npt.release=) is the one running.
uname_is_release() {
    test -n "$NPT_RELEASE" && test "$(uname -r)" = "$NPT_RELEASE" ||
        { echo "uname -r is $(uname -r), expected $NPT_RELEASE (kernel $NPT_KERNEL)"; return 1; }
}
npt_check uname uname_is_release

npt_check kprobes sh -c '[ -e /sys/kernel/tracing/kprobe_events ] || [ -e /sys/bus/event_source/devices/kprobe ]'

npt_check dummy sh -c 'modprobe dummy && ip link add d0 type dummy && ip link del d0'

npt_ip eth0 10.99.0.1/24
npt_dmesg_mark
npt_check netconsole modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/
npt_expect_dmesg netconsole_logged 'netconsole: network logging started'

npt_check netpoll_trace_runs /bin/netpoll-trace --help

# watch -- COMMAND that cannot start exits as env(1) does: 127 not found, 126 not executable;
# one error line naming it.
not_started() { # CODE WANT COMMAND
    netpoll-trace watch --wait-all -- "$3" >/tmp/ns.out 2>/tmp/ns.err
    rc=$?
    cat /tmp/ns.err
    test $rc -eq "$1" && grep -q "netpoll-trace: error: COMMAND .$3. $2" /tmp/ns.err
}
npt_check command_not_found not_started 127 'not found' /nonexistent
printf 'echo hi\n' >/tmp/noexec
chmod 644 /tmp/noexec
npt_check command_not_executable not_started 126 'cannot be executed' /tmp/noexec

# 7.3+ (nbcon netconsole, flushed in a panic only after panic()'s reboot): check says
# whether a panic's report can leave, by kernel.panic.
if npt_has netconsole_nbcon; then
    was=$(cat /proc/sys/kernel/panic)
    echo 10 >/proc/sys/kernel/panic
    netpoll-trace check --json >/tmp/panic10.json 2>&1
    echo 0 >/proc/sys/kernel/panic
    netpoll-trace check --json >/tmp/panic0.json 2>&1
    echo "$was" >/proc/sys/kernel/panic
    item() { grep -o '{"name":"panic_report"[^}]*}' "$1"; }
    item /tmp/panic10.json; item /tmp/panic0.json
    npt_check panic_report sh -c "grep -o '{\"name\":\"panic_report\"[^}]*}' /tmp/panic10.json | grep -q '\"status\":\"degraded\"' &&
        grep -o '{\"name\":\"panic_report\"[^}]*}' /tmp/panic0.json | grep -q '\"status\":\"ok\"'"
else
    npt_skip panic_report "netconsole is not an nbcon console here: a panic's report leaves before any reboot"
fi
