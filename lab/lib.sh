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

# npt_ip DEV CIDR: give DEV an address and bring it up.
npt_ip() {
    ip addr add "$2" dev "$1" && ip link set "$1" up
}

# npt_receiver DEV OUT: moves DEV into a network namespace of its own as 10.99.0.2/24 and
# runs `netpoll-trace receive` on UDP port 6666 there, writing what arrives to OUT: netconsole's
# packets then really leave through the QEMU hub. Sets NPT_NS (the namespace's pid).
npt_receiver() {
    rm -f /tmp/npt-ns.pid
    unshare -n sh -c 'echo $$ > /tmp/npt-ns.pid; exec sleep 100000' &
    # The file appears once the namespace exists (unshare made it before running sh).
    npt_wait_for 10 test -s /tmp/npt-ns.pid
    NPT_NS=$(cat /tmp/npt-ns.pid)
    ip link set "$1" netns "$NPT_NS"
    nsenter -t "$NPT_NS" -n sh -c "ip link set lo up; ip addr add 10.99.0.2/24 dev $1; ip link set $1 up"
    # The tool's own receiver (plain lines prefixed with the sender); OUT.err says when it listens.
    nsenter -t "$NPT_NS" -n netpoll-trace receive --listen 0.0.0.0:6666 >"$2" 2>"$2.err" &
    npt_wait_for 20 grep -q 'listening on UDP' "$2.err"
}

# npt_target NAME DEV REMOTE_IP [off]: a configfs netconsole target NAME for DEV, sending
# to REMOTE_IP port 6666, and one try to enable it (a refusal is the kernel's answer under
# test, so it is not an error here; read `enabled` to see it). With `off` it is left
# disabled, for a caller that counts every enable itself.
npt_target() {
    _t=/sys/kernel/config/netconsole/$1
    mkdir -p "$_t"
    echo 0 >"$_t/enabled" 2>/dev/null
    echo "$2" >"$_t/dev_name"
    echo "$3" >"$_t/remote_ip"
    echo 6666 >"$_t/remote_port"
    [ "$4" = off ] || echo 1 >"$_t/enabled" 2>/dev/null
}

# npt_uptime_cs: centiseconds since boot (no fork: polled in loops).
npt_uptime_cs() {
    read -r _u _ </proc/uptime
    echo "${_u%.*}${_u#*.}"
}

# npt_wait_for SECONDS CMD [ARGS...]: runs CMD every half second until it succeeds or
# SECONDS have passed; returns 0 when it succeeded, 1 (after saying what it waited for) on
# timeout. CMD's output is discarded: it is a predicate. It runs in this shell, so a
# shell function may set variables the caller reads afterwards.
npt_wait_for() {
    _w_secs=$1
    shift
    _w_end=$(($(npt_uptime_cs) + _w_secs * 100))
    while ! "$@" >/dev/null 2>&1; do
        if [ "$(npt_uptime_cs)" -ge "$_w_end" ]; then
            echo "npt_wait_for: gave up after ${_w_secs}s waiting for: $*"
            return 1
        fi
        sleep 0.5
    done
}

# JSON-lines assertions (busybox has no jq). Each PAIR names a top-level field of a line:
#   key=VALUE  the field equals VALUE. A number, null, true, false, or a JSON array, object
#              or quoted string is compared as written; anything else is a string: ret=0 is
#              the number 0, dev=eth0 the string "eth0", dev='"0"' the string "0".
#   key~TEXT   the field's JSON text, as written, contains TEXT (part of a string, an
#              array's items; a " or \ in TEXT is written escaped, as JSON has it).
#   key        the line has the field.
# Only top-level fields count: a histogram bucket's "count" is not the line's "count".
# A string VALUE holding " or \ must be written as JSON (quoted, escaped).

# npt_json_lines FILE PAIR...: prints the lines of FILE that hold every PAIR.
npt_json_lines() { _npt_json print "$@"; }

# npt_json_count FILE PAIR...: prints how many lines of FILE hold every PAIR.
npt_json_count() { _npt_json count "$@"; }

# npt_json_has FILE PAIR...: true when a line of FILE holds every PAIR; otherwise says so.
npt_json_has() {
    _jn=$(_npt_json count "$@") || return 2
    [ "$_jn" -gt 0 ] && return 0
    _jf=$1
    shift
    echo "no line of $_jf holds all of: $*"
    return 1
}

# npt_json_none FILE PAIR...: true when no line of FILE holds every PAIR; an unreadable
# FILE or a malformed PAIR is a failure, never a vacuous pass.
npt_json_none() {
    _jn=$(_npt_json count "$@") || return 2
    [ "$_jn" -eq 0 ] && return 0
    _jf=$1
    shift
    echo "$_jn line(s) of $_jf hold all of: $*"
    _npt_json print "$_jf" "$@" | head -n 3
    return 1
}

# _npt_json MODE FILE PAIR...: MODE print (matching lines) or count (their number).
_npt_json() {
    _jm=$1
    _jf=$2
    shift 2
    if [ ! -r "$_jf" ]; then
        echo "npt_json: cannot read $_jf" >&2
        return 2
    fi
    for _jp in "$@"; do
        _jk=${_jp%%[=~]*}
        _jv=${_jp#"$_jk"}
        case "$_jk" in
            '' | [!a-z_]* | *[!a-z0-9_]*) echo "npt_json: bad field name in $_jp" >&2; return 2 ;;
        esac
        # A plain string VALUE (not a JSON literal) must not need escaping.
        case "$_jv" in
            =-[0-9]* | =[0-9]* | =null | =true | =false | =\"* | =\[* | =\{*) ;;
            =*\"* | =*\\*) echo "npt_json: write $_jp's value as JSON (it holds \" or \\)" >&2; return 2 ;;
        esac
    done
    awk -v mode="$_jm" '
        # strend(s, i): s[i] opens a JSON string; the index of its closing quote (0: none).
        function strend(s, i) {
            return match(substr(s, i + 1), /^([^"\\]|\\.)*"/) ? i + RLENGTH : 0
        }
        # fields(s): F[key] = the raw JSON text of each top-level value; 0 if s is no object.
        function fields(s,    n, i, j, c, depth, key, start) {
            split("", F)
            n = length(s)
            i = 1
            while (substr(s, i, 1) ~ /[ \t]/) i++
            if (substr(s, i, 1) != "{") return 0
            for (i++; ; i++) {
                while (substr(s, i, 1) ~ /[ \t]/) i++
                c = substr(s, i, 1)
                if (c == "}") return 1
                if (c != "\"" || !(j = strend(s, i))) return 0
                key = substr(s, i + 1, j - i - 1)
                for (i = j + 1; substr(s, i, 1) ~ /[ \t]/; i++) ;
                if (substr(s, i, 1) != ":") return 0
                for (i++; substr(s, i, 1) ~ /[ \t]/; i++) ;
                start = i
                depth = 0
                for (; i <= n; i++) {
                    c = substr(s, i, 1)
                    if (c == "\"") {
                        if (!(i = strend(s, i))) return 0
                    } else if (c == "[" || c == "{") {
                        depth++
                    } else if (c == "]" || c == "}") {
                        if (depth == 0) break
                        depth--
                    } else if (c == "," && depth == 0) {
                        break
                    }
                }
                if (i > n) return 0
                F[key] = substr(s, start, i - start)
                sub(/[ \t]+$/, "", F[key])
                if (c == "}") return 1
            }
        }
        BEGIN {
            for (a = 2; a < ARGC; a++) {
                p = ARGV[a]
                delete ARGV[a]
                ns++
                if (match(p, /[=~]/)) {
                    key[ns] = substr(p, 1, RSTART - 1)
                    op[ns] = substr(p, RSTART, 1)
                    val[ns] = substr(p, RSTART + 1)
                } else {
                    key[ns] = p
                    op[ns] = ""
                }
                if (op[ns] == "=" && val[ns] !~ /^(-?[0-9][0-9.eE+-]*|null|true|false|["[{].*)$/)
                    val[ns] = "\"" val[ns] "\""
                # Cheap test first: the line must hold this text somewhere.
                need[ns] = op[ns] == "~" ? val[ns] : "\"" key[ns] "\":" val[ns]
            }
        }
        {
            for (k = 1; k <= ns; k++) if (!index($0, need[k])) next
            if (!fields($0)) next
            for (k = 1; k <= ns; k++) {
                if (!(key[k] in F)) next
                if (op[k] == "=" && F[key[k]] != val[k]) next
                if (op[k] == "~" && !index(F[key[k]], val[k])) next
            }
            hits++
            if (mode == "print") print
        }
        END { if (mode == "count") print hits + 0 }
    ' "$_jf" "$@"
}

# npt_has FEATURE: whether the running kernel has FEATURE, measured here and never read
# off the kernel's label, so that a new lab kernel needs no scenario edits. This is the
# one table of kernel differences scenarios branch on:
#   netconsole_keeps_failed  a `netconsole=` target whose set-up fails leaves the module
#       loaded and the target disabled (modprobe returns 0: dynamic netconsole, 6.10 on)
#       instead of failing the load with the errno. Fact: the module holds its message
#       for that path ("Not enabling netconsole for cmdline0. Netpoll setup failed").
#   kprobe_links  BPF perf links (5.15 on), so a kprobe's link can be pinned. Fact: the
#       kernel's BTF has struct bpf_perf_link.
# (netkit, 6.7 on, is probed where it is used: creating the pair is the test.)
# npt_module_of FUNCTION: the loaded module holding FUNCTION (kallsyms' fourth field,
# "[netconsole]"), empty for vmlinux; fails where FUNCTION is in neither.
npt_module_of() {
    awk -v f="$1" '$3 == f { m = $4; gsub(/[][]/, "", m); print m; found = 1; exit }
        END { exit !found }' /proc/kallsyms
}
npt_has() {
    case "$1" in
        netconsole_keeps_failed)
            _m=$(find "/lib/modules/$(uname -r)" -name 'netconsole.ko*' | head -n 1)
            test -n "$_m" && grep -q 'Not enabling netconsole for' "$_m"
            ;;
        kprobe_links) grep -q bpf_perf_link /sys/kernel/btf/vmlinux ;;
        # 7.3+: netconsole is an nbcon console: printk's own thread (pr/netcon0) sends,
        # after the writer returned.
        netconsole_nbcon)
            _m=$(find "/lib/modules/$(uname -r)" -name 'netconsole.ko*' | head -n 1)
            test -n "$_m" && grep -q netconsole_write_basic "$_m"
            ;;
        # 7.3+: netconsole resumes a target its device stopped when the device is back.
        netconsole_resumes)
            _m=$(find "/lib/modules/$(uname -r)" -name 'netconsole.ko*' | head -n 1)
            test -n "$_m" && grep -q process_resume_target "$_m"
            ;;
        # 7.3+: netconsole sets netpoll up itself (and logs its refusals as "netconsole: ").
        netconsole_sets_up)
            _m=$(find "/lib/modules/$(uname -r)" -name 'netconsole.ko*' | head -n 1)
            test -n "$_m" && grep -q netcons_netpoll_setup "$_m"
            ;;
        *)
            echo "npt_has: unknown feature $1" >&2
            return 2
            ;;
    esac
}

# npt_agent_config FILE [--bare] [KEY=VALUE]...: writes an agent configuration (TOML).
# Without --bare it starts from the lab's defaults: journal /tmp/journal.jsonl, the lab's
# patch module, allowed_drivers virtio_net, 2 attempts 1 s apart, 8 s to verify, and
# policy.missing_poll_controller "patch". Each KEY=VALUE sets or replaces one key; VALUE
# is TOML as written (strings quoted); table.key goes into [table].
npt_agent_config() {
    _cf=$1
    shift
    if [ "$1" = --bare ]; then
        shift
    else
        set -- journal='"/tmp/journal.jsonl"' patch_module='"/lib/kmods/netpoll_patch.ko"' \
            allowed_drivers='["virtio_net"]' max_attempts=2 backoff='"1s"' verify_timeout='"8s"' \
            policy.missing_poll_controller='"patch"' "$@"
    fi
    printf '%s\n' "$@" | awk '
        {
            eq = index($0, "=")
            k = substr($0, 1, eq - 1)
            if (!(k in v)) order[++n] = k
            v[k] = substr($0, eq + 1)
        }
        END {
            # Top-level keys first: in TOML, a key after [table] belongs to that table.
            for (i = 1; i <= n; i++) if (index(order[i], ".") == 0) print order[i] " = " v[order[i]]
            for (i = 1; i <= n; i++) {
                if (!(d = index(order[i], "."))) continue
                t = substr(order[i], 1, d - 1)
                if (t in done) continue
                done[t] = 1
                print "[" t "]"
                for (j = i; j <= n; j++)
                    if (index(order[j], t ".") == 1) print substr(order[j], d + 1) " = " v[order[j]]
            }
        }' >"$_cf"
    echo "--- $_cf"
    cat "$_cf"
}

# npt_enable NAME: one more try to enable the configfs netconsole target NAME (made by
# npt_target); the kernel's answer is read from its `enabled`.
npt_enable() {
    echo 1 >"/sys/kernel/config/netconsole/$1/enabled" 2>/dev/null
}

# npt_ready_or_gone PATTERN FILE PID: FILE (a tool's stderr) holds PATTERN, or PID has
# exited so that waiting longer is pointless. For npt_wait_for.
npt_ready_or_gone() {
    grep -q "$1" "$2" 2>/dev/null || ! kill -0 "$3" 2>/dev/null
}

# npt_panic LINES: ends a `# ends: panic` scenario. Prints the kernel log as lab/init would
# (the run's verdict checks it for oopses before the panic), says NPT-PANIC lines=LINES, then
# loads lab/panic's npt_panic.ko: LINES report lines printed with interrupts off, then
# panic(). The lab runner counts what its receiver got (received_report,
# received_panic_line). Never returns.
npt_panic() {
    echo NPT-DMESG-BEGIN
    dmesg
    echo NPT-DMESG-END
    echo "NPT-PANIC lines=$1"
    insmod /lib/kmods/npt_panic.ko lines="$1"
    echo "npt_panic: the kernel is still alive after npt_panic.ko (insmod exit $?)"
    exit 1
}

# npt_host_nic DEV: DEV (the scenario's e1000-host NIC) as 10.0.2.15/24, up with carrier;
# the lab runner's receiver is 10.0.2.2:$NPT_RECEIVER_PORT.
npt_host_nic() {
    npt_ip "$1" 10.0.2.15/24
    npt_wait_for 20 grep -qx 1 "/sys/class/net/$1/carrier"
}

# The outer set-up function the tool reports (netpoll_setup, or where netconsole sets
# netpoll up itself its netcons_netpoll_setup) and the prefix of its refusals.
# NPT_SETUP_FNS: how the ready line names the two set-up functions.
if npt_has netconsole_sets_up; then
    NPT_OUTER=netcons_netpoll_setup NPT_NC_LOG=netconsole
    NPT_SETUP_FNS="netconsole:netcons_netpoll_setup, __netpoll_setup"
else
    NPT_OUTER=netpoll_setup NPT_NC_LOG=netpoll
    NPT_SETUP_FNS="netpoll_setup, __netpoll_setup"
fi
