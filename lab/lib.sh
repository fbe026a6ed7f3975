# Helpers for lab scenarios (sourced as /lib.sh). Results are lines the host runner reads:
#   NPT-CHECK <name> pass | NPT-CHECK <name> fail <detail> | NPT-CHECK <name> skip <reason>
# Every check a scenario declares in its `# checks:` header must appear as pass or skip.
# Check names are single words. Do not use `set -e`: a failed check should not hide the rest.

# npt_check NAME CMD [ARGS...]: runs CMD; pass when it exits 0. On failure its output is shown
# (prefixed) and the last line becomes the detail. Returns CMD's status.
npt_check() {
    _name=$1
    shift
    _out=$("$@" 2>&1)
    _rc=$?
    if [ "$_rc" -eq 0 ]; then
        echo "NPT-CHECK $_name pass"
    else
        if [ -n "$_out" ]; then
            echo "$_out" | sed 's/^/  | /'
            echo "NPT-CHECK $_name fail rc=$_rc: $(echo "$_out" | tail -n 1)"
        else
            echo "NPT-CHECK $_name fail rc=$_rc (no output) from: $*"
        fi
    fi
    return "$_rc"
}

# npt_skip NAME REASON...: the check cannot run here; say why (kernel version, feature).
npt_skip() {
    _name=$1
    shift
    echo "NPT-CHECK $_name skip $*"
}

# npt_fail NAME DETAIL...: report a failure found by the scenario's own logic.
npt_fail() {
    _name=$1
    shift
    echo "NPT-CHECK $_name fail $*"
    return 1
}

# npt_expect_grep NAME PATTERN FILE: pass when the extended regex PATTERN matches in FILE.
npt_expect_grep() {
    if grep -q -E -- "$2" "$3" 2>/dev/null; then
        echo "NPT-CHECK $1 pass"
    else
        echo "  | last lines of $3:"
        tail -n 5 "$3" 2>/dev/null | sed 's/^/  | /'
        echo "NPT-CHECK $1 fail /$2/ not found in $3"
        return 1
    fi
}

# npt_dmesg_mark: remember this point of the kernel log; npt_dmesg_since_mark prints what the
# kernel logged after it (without timestamps' help: the mark is a unique kernel log line).
NPT_MARK=0
npt_dmesg_mark() {
    NPT_MARK=$((NPT_MARK + 1))
    echo "npt-mark $NPT_MARK" > /dev/kmsg
}

npt_dmesg_since_mark() {
    dmesg | sed -n "/npt-mark $NPT_MARK\$/,\$p" | sed 1d
}

# npt_expect_dmesg NAME PATTERN: pass when the kernel logged PATTERN (ERE) since the last mark.
npt_expect_dmesg() {
    npt_dmesg_since_mark > /tmp/npt-dmesg.$$
    npt_expect_grep "$1" "$2" /tmp/npt-dmesg.$$
    _rc=$?
    rm -f /tmp/npt-dmesg.$$
    return "$_rc"
}

# npt_kernel_at_least MAJOR MINOR: true when the running kernel is MAJOR.MINOR or newer.
npt_kernel_at_least() {
    _v=$(uname -r)
    _maj=${_v%%.*}
    _rest=${_v#*.}
    _min=${_rest%%[!0-9]*}
    [ "$_maj" -gt "$1" ] || { [ "$_maj" -eq "$1" ] && [ "$_min" -ge "$2" ]; }
}

# npt_ip DEV CIDR: give DEV an address and bring it up.
npt_ip() {
    ip addr add "$2" dev "$1" && ip link set "$1" up
}

# npt_receiver DEV OUT: moves DEV into a network namespace of its own as 10.99.0.2/24 and
# runs a UDP receiver on port 6666 there, writing what arrives to OUT: netconsole's
# packets then really leave through the QEMU hub. Sets NPT_NS (the namespace's pid).
npt_receiver() {
    unshare -n sh -c 'echo $$ > /tmp/npt-ns.pid; exec sleep 100000' &
    sleep 1
    NPT_NS=$(cat /tmp/npt-ns.pid)
    ip link set "$1" netns "$NPT_NS"
    nsenter -t "$NPT_NS" -n sh -c "ip link set lo up; ip addr add 10.99.0.2/24 dev $1; ip link set $1 up"
    nsenter -t "$NPT_NS" -n udprecv 6666 >"$2" &
}

# npt_target NAME DEV REMOTE_IP: a configfs netconsole target NAME for DEV, sending to
# REMOTE_IP port 6666, and one try to enable it (a refusal is the kernel's answer under
# test, so it is not an error here; read `enabled` to see it).
npt_target() {
    _t=/sys/kernel/config/netconsole/$1
    mkdir -p "$_t"
    echo 0 >"$_t/enabled" 2>/dev/null
    echo "$2" >"$_t/dev_name"
    echo "$3" >"$_t/remote_ip"
    echo 6666 >"$_t/remote_port"
    echo 1 >"$_t/enabled" 2>/dev/null
}
