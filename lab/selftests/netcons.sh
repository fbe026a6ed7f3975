#!/bin/sh
# The kernel's own netconsole selftests (from the kernel's linux-source package; see
# lab/selftests/README.md), run by `cargo xtask selftests` in a lab guest. Each test in
# /selftests/TESTS runs bare; one that passes bare runs again
#   watch         under `netpoll-trace watch --json -- TEST` (the modern object),
#   watch_legacy  the same with NETPOLL_TRACE_OBJECT=legacy NETPOLL_TRACE_ATTACH=kprobe,
#   agent         with `netpoll-trace agent` (default policy) running,
#   receive       with lab/selftests/socat (the `receive` shim) first in PATH,
# and one line per run is printed for the host:
#   NPT-SELFTEST TEST MODE pass|fail|skip key=value...
# The keys are the referees' and the tool's numbers (tracefs kprobes the kernel keeps, the
# kernel log) beside the tool's; the NPT-CHECK lines judge the tool only: a test that fails
# bare is the kernel's or the lab's, shown with the script's own output, never a check.
# (The header's checks are set by xtask per kernel.)
. /lib.sh

T=/sys/kernel/tracing
ST=/selftests
mkdir -p /tmp/selftests /run
[ -e /var/run ] || ln -s /run /var/run
tar -xf /selftests.tar -C /
# The tests get Debian's userland first in PATH; this driver stays on busybox (whose sh runs
# its own applets before PATH anyway), jq aside.
DEB=/opt/selftests/bin
JQ=$DEB/jq
# netdevsim: built by xtask from the same source (Debian ships none), made known to modprobe
# (netcons_resume unloads and reloads it) with its dependencies' modules.dep entries.
KDIR=/lib/modules/$(uname -r)
mkdir -p $KDIR/extra
cp /opt/selftests/netdevsim.ko $KDIR/extra/
deps=
for m in $(cat /opt/selftests/netdevsim.depends); do
    deps="$deps $(sed -n "s|^\([^:]*/$m\.ko[^:]*\):\(.*\)|\1\2|p" $KDIR/modules.dep)"
done
echo "extra/netdevsim.ko:$deps" >>$KDIR/modules.dep
modprobe netdevsim || echo "netdevsim did not load"
modprobe netconsole
echo "selftests from $(cat $ST/PACKAGE): $(tr '\n' ' ' <$ST/TESTS)"
$DEB/bash --version | head -n 1
$DEB/ip -V
$DEB/socat -V | grep 'socat version'
echo "udevadm $($DEB/udevadm --version)"

# The referees, kept by the kernel itself (tracefs kprobes, written as `MODULE:FUNCTION`
# for netconsole's own functions: the kernel registers those again at every load, so they
# survive the tests that reload netconsole, as the tool's armed probes do):
#   up     the outer set-up's return (netpoll_setup; netconsole's netcons_netpoll_setup
#          where it owns it, 7.3+): 0 is a target up, whoever asked (configfs, a module
#          parameter, the kernel's own resume);
#   down   a tear-down of a netpoll with a device (netpoll_cleanup, and do_netpoll_cleanup
#          where it exists: the owner's and, 7.3+, the notifier's; bonding's own netpolls go
#          through __netpoll_free instead), the first byte of `struct netpoll` being its
#          `dev` (an inlined call of one from the other is one tear-down);
#   send   netpoll_send_udp's hits.
ref_sym() {
    _mod=$(npt_module_of "$1")
    echo "${_mod:+$_mod:}$1"
}
probes_on() {
    # (netcons_cmdline leaves netconsole unloaded; its functions are the probes' places.)
    modprobe netconsole
    outer=$(ref_sym "$NPT_OUTER")
    echo "r:npt_st/up $outer ret=\$retval:s32" >>$T/kprobe_events &&
        echo "p:npt_st/down netpoll_cleanup np=\$arg1:x64 dev=+0(\$arg1):x64" >>$T/kprobe_events &&
        echo "p:npt_st/send $(ref_sym netpoll_send_udp)" >>$T/kprobe_events || return 1
    if grep -q ' T do_netpoll_cleanup$' /proc/kallsyms; then
        echo "p:npt_st/down_do do_netpoll_cleanup np=\$arg1:x64 dev=+0(\$arg1):x64" >>$T/kprobe_events || return 1
    fi
    echo >$T/trace && echo 1 >$T/events/npt_st/enable
}
probes_off() {
    echo 0 >$T/events/npt_st/enable
    awk '$1 == "npt_st/send" || $1 == "send" { print $2 }' $T/kprobe_profile >/tmp/selftests/send.hits
    cp $T/trace /tmp/selftests/trace
    for e in up down down_do send; do echo "-:npt_st/$e" >>$T/kprobe_events 2>/dev/null; done
}
# What the kernel did to targets, in order: `up` / `down`; a last line `overlap` when two
# were up at once (then only the counts are compared: the tool's order across targets is
# its own).
kernel_targets() {
    awk 'function v(k,   i) { for (i = 1; i <= NF; i++) if ($i ~ "^" k "=") return substr($i, length(k) + 2) }
        / up: / { if (v("ret") + 0 == 0) { print "up"; if (++n > 1) o = 1 }; next }
        / down: / { last[$1] = ""; if (v("dev") != "0x0") { print "down"; n--; last[$1] = v("np") }; next }
        / down_do: / { if (v("dev") != "0x0" && last[$1] != v("np")) { print "down"; n-- }; last[$1] = ""; next }
        END { if (o) print "overlap" }' /tmp/selftests/trace
}
# The tool's target events in the referee's words.
updown() { sed 's/^\(enabled\|re_enabled\|resumed\)$/up/; s/^\(disabled\|stopped\)$/down/'; }
# Records the test wrote to /dev/kmsg (facility user, prefix >= 8), our marks left out.
since_mark_raw() { dmesg -r | sed -n "/npt-mark $NPT_MARK\$/,\$p" | grep -v 'npt-mark'; }
test_writes() { since_mark_raw | grep -c '^<\([89]\|1[0-5]\)>'; }
kernel_failures() { since_mark_raw | grep -c -E 'aborting|Netpoll setup failed|Not enabling netconsole'; }
# The kernel's own stops and resumes of targets, as it logged them.
kernel_stops() { since_mark_raw | grep -c 'network logging stopped on interface'; }
kernel_resumes() { since_mark_raw | grep -c 'network logging resumed on interface'; }

# run_test TEST MODE: runs one test; sets RESULT (pass/fail/skip) and RC; output in LOG.
run_test() {
    LOG=/tmp/selftests/$(basename "$1" .sh).$2.log
    rm -f /tmp/selftests/rc /tmp/selftests/tool.json /tmp/selftests/receive.jsonl
    path=$DEB:$PATH
    [ "$2" = receive ] && path=/opt/selftests/shim:$path
    cmd="export PATH=$path; cd $(dirname "$ST/$1") && $DEB/bash ./$(basename "$1") >$LOG 2>&1; echo \$? >/tmp/selftests/rc"
    case "$2" in
        bare | receive) sh -c "$cmd" ;;
        watch | watch_legacy)
            (
                [ "$2" = watch_legacy ] && export NETPOLL_TRACE_OBJECT=legacy NETPOLL_TRACE_ATTACH=kprobe
                netpoll-trace watch --wait-all --json -- sh -c "$cmd" >/tmp/selftests/tool.json 2>/tmp/selftests/tool.err
                echo $? >/tmp/selftests/tool.rc
            )
            ;;
        agent)
            npt_agent_config /tmp/selftests/agent.toml --bare journal='"/tmp/selftests/tool.json"' >/dev/null
            rm -f /tmp/selftests/tool.json
            netpoll-trace agent --config /tmp/selftests/agent.toml >/tmp/selftests/agent.out 2>/tmp/selftests/tool.err &
            apid=$!
            npt_wait_for 120 npt_ready_or_gone 'agent ready:' /tmp/selftests/tool.err $apid
            sh -c "$cmd"
            kill -0 $apid 2>/dev/null && echo running >/tmp/selftests/agent.alive
            kill -TERM $apid
            wait $apid
            echo $? >/tmp/selftests/tool.rc
            ;;
    esac
    RC=$(cat /tmp/selftests/rc 2>/dev/null || echo none)
    case "$RC" in
        0) RESULT=pass ;;
        4) RESULT=skip ;;
        *) RESULT=fail ;;
    esac
}

# One test in one mode with the referees around it; prints the NPT-SELFTEST line.
one() {
    test=$1 mode=$2 name=$(basename "$1" .sh)
    npt_dmesg_mark
    probes_on || echo "the referee probes could not be set up"
    run_test "$test" "$mode"
    probes_off
    hits=$(cat /tmp/selftests/send.hits)
    writes=$(test_writes)
    failures=$(kernel_failures)
    expected=$(kernel_targets | tr '\n' ',')
    line="NPT-SELFTEST $name $mode $RESULT attempt=${ATTEMPT:-1} rc=$RC kmsg_writes=$writes send_hits=$hits kernel_failures=$failures kernel_stops=$(kernel_stops) kernel_resumes=$(kernel_resumes) targets=${expected:-none}"
    case "$mode" in
        watch | watch_legacy)
            # In the kernel's order (ts_ns): the tool reports a change when it reads it.
            tool_events=$($JQ -s -r '[.[] | select(.type == "target")] | sort_by(.ts_ns) | .[].event' /tmp/selftests/tool.json)
            tool_targets=$(echo "$tool_events" | grep . | updown | tr '\n' ',')
            resumed=$(echo "$tool_events" | grep -c '^resumed$')
            # Each device's last `send` line: counts are since start, and a test that runs
            # past --stats-every (60 s: 7.3's netcons_userdata under load) has two.
            msgs=$($JQ -s '[.[] | select(.type == "send")] | group_by(.dev) | map(last.messages) | add // 0' /tmp/selftests/tool.json)
            diags=$($JQ -s '[.[] | select(.type == "diagnosis")] | length' /tmp/selftests/tool.json)
            line="$line tool_rc=$(cat /tmp/selftests/tool.rc) tool_targets=${tool_targets:-none} tool_resumed=$resumed tool_messages=$msgs tool_diagnoses=$diags"
            ;;
        agent)
            actions=$($JQ -r '"\(.action):\(.result)"' /tmp/selftests/tool.json 2>/dev/null | sort | uniq -c | awk '{ printf "%s%s*%s", s, $2, $1; s = "," }')
            line="$line tool_rc=$(cat /tmp/selftests/tool.rc) agent_alive=$([ -e /tmp/selftests/agent.alive ] && echo yes || echo no) journal=${actions:-none}"
            rm -f /tmp/selftests/agent.alive
            ;;
        receive)
            got=$($JQ -s '[.[] | select(.type == "netconsole")] | length' /tmp/selftests/receive.jsonl 2>/dev/null)
            # The shim leaves receive.jsonl (maybe empty) when the test listened at all.
            [ -e /tmp/selftests/receive.jsonl ] || got=no_listener
            echo "receive's stderr:"
            sed 's/^/  | /' /tmp/selftests/receive.err 2>/dev/null | tail -n 8
            rm -f /tmp/selftests/receive.err
            line="$line received=${got:-0} fields=$(receive_fields "$name")"
            ;;
    esac
    echo "$line"
    if [ "$RESULT" != pass ]; then
        echo "--- $name ($mode) said:"
        tail -n 25 "$LOG" | sed 's/^/  | /'
        [ -s /tmp/selftests/tool.err ] && tail -n 5 /tmp/selftests/tool.err | sed 's/^/  tool| /'
    fi
}

# What `receive --json` must carry as fields for what the test checks in the text (issue
# #29): NAME:ok or NAME:missing for each, comma-separated; none for a test that checks none.
receive_fields() {
    f=/tmp/selftests/receive.jsonl
    has() { [ "$($JQ -s "[.[] | select(.type == \"netconsole\") | select($2)] | length" $f 2>/dev/null)" -gt 0 ] && echo "$1:ok" || echo "$1:missing"; }
    case "$1" in
        netcons_sysdata)
            { has cpu '.cpu != null'; has taskname '.taskname == "echo"'
              has release ".release == \"$(uname -r)\""; has msgid '.msgid != null'; } | tr '\n' ','
            ;;
        netcons_userdata) has userdata '(.userdata // {}) | length > 0' | tr '\n' ',' ;;
        netcons_basic)
            # basic on 7.x sets userdata key=value on its extended rounds; 6.12's sets none.
            grep -q set_user_data "$ST/$(grep "/$1.sh\$" $ST/TESTS)" || { echo none; return; }
            has userdata '.userdata.key == "value"' | tr '\n' ','
            ;;
        netcons_fragmented_msg)
            { has userdata '(.userdata.key // "") | startswith("1-2-3-")'
              has reassembled '(.text | contains("ncfrag") | not) and (.text | test("MSG1=MSG2=.*MSG150="))'; } | tr '\n' ','
            ;;
        *) echo none ;;
    esac
}

# The checks on the tool, from the last `one`'s line.
# Same kinds in the same order; where the kernel had two targets up at once, the same
# number of each (the tool orders events across targets by its own clock).
same_targets() {
    case "$1" in
        *overlap,) [ "$(echo "${1%overlap,}" | tr ',' '\n' | sort | uniq -c)" = "$(echo "$2" | tr ',' '\n' | sort | uniq -c)" ] ;;
        *) [ "${1:-none}" = "${2:-none}" ] ;;
    esac
}
# Whether an agent's journal (default policy) holds nothing the kernel gave no cause for,
# where it failed nothing: its start and stop, and at most one reported decision per target
# stop the kernel logged (its own resume, 7.3+, or the operator's fix brings it back). At
# most: netconsole's unload logs "stopped ... as it unregistered" for every target too
# (cleanup_netconsole's unregister_netdevice_notifier replays NETDEV_UNREGISTER to it while
# the device stays), which the tool rightly calls the owner's disable (netcons_cmdline).
quiet_journal() {
    case "$1" in
        start:ok*1,stop:ok*1) return 0 ;;
        decide:reported\*[0-9]*,start:ok*1,stop:ok*1)
            n=${1#decide:reported\*}
            n=${n%%,*}
            [ "$n" -le "$2" ]
            ;;
        *) return 1 ;;
    esac
}
field() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
judge() {
    name=$1 mode=$2
    if [ -z "$(field rc)" ]; then
        npt_fail "${name}_$mode" "no NPT-SELFTEST line to judge (the driver's own fault)"
        return
    elif [ "$RESULT" != pass ]; then
        npt_fail "${name}_$mode" "the test failed with the tool ($mode) after passing bare: rc=$RC; $(tail -n 1 "$LOG")"
        return
    fi
    case "$mode" in
        watch | watch_legacy)
            kernel=$(field targets) tool=$(field tool_targets)
            if ! same_targets "$kernel" "$tool"; then
                npt_fail "${name}_$mode" "target events $tool differ from the kernel's set-ups and tear-downs $kernel"
                echo "the tool's target events and its stderr, the kernel's trace:"
                $JQ -c 'select(.type == "target") | [.ts_ns, .event, .cause, .target, .dev, .pid, .comm]' /tmp/selftests/tool.json | sed 's/^/  tool| /'
                tail -n 5 /tmp/selftests/tool.err | sed 's/^/  tool| /'
                grep -E ' (up|down|down_do): ' /tmp/selftests/trace | sed 's/^/  kernel| /'
            elif [ "$(field tool_resumed)" != "$(field kernel_resumes)" ]; then
                npt_fail "${name}_$mode" "$(field tool_resumed) resumed target(s) where the kernel logged $(field kernel_resumes) resume(s)"
            elif [ "$(field tool_messages)" != "$(field send_hits)" ]; then
                npt_fail "${name}_$mode" "messages $(field tool_messages) differ from netpoll_send_udp's kprobe hits $(field send_hits)"
            elif [ "$(field kernel_failures)" = 0 ] && [ "$(field tool_diagnoses)" != 0 ]; then
                npt_fail "${name}_$mode" "$(field tool_diagnoses) diagnosis line(s) where the kernel logged no failure"
            else
                echo "NPT-CHECK ${name}_$mode pass"
            fi
            ;;
        agent)
            if [ "$(field agent_alive)" != yes ] || [ "$(field tool_rc)" != 0 ]; then
                npt_fail "${name}_$mode" "the agent did not run through the test and stop cleanly: alive=$(field agent_alive) rc=$(field tool_rc)"
            elif [ "$(field kernel_failures)" = 0 ] && ! quiet_journal "$(field journal)" "$(field kernel_stops)"; then
                npt_fail "${name}_$mode" "the agent's journal holds $(field journal) where the kernel logged no failure and $(field kernel_stops) stop(s): only start, stop and at most a reported decision per stop belong there"
            else
                echo "NPT-CHECK ${name}_$mode pass"
            fi
            ;;
        receive)
            if [ "$(field received)" = no_listener ]; then
                npt_skip "${name}_$mode" "the test listens for nothing (it never called socat)"
            elif [ "$(field received)" = 0 ]; then
                npt_fail "${name}_$mode" "the test passed but receive printed no message"
            elif field fields | grep -q missing; then
                npt_fail "${name}_$mode" "the test passed, but receive --json lacks fields it checks in the text: $(field fields)"
            else
                echo "NPT-CHECK ${name}_$mode pass"
            fi
            ;;
    esac
}

MODES=$(cat $ST/MODES)
for test in $(cat $ST/TESTS); do
    name=$(basename "$test" .sh)
    one "$test" bare
    bare=$RESULT
    for mode in $MODES; do
        if [ "$bare" != pass ]; then
            npt_skip "${name}_$mode" "the test does not pass bare ($bare): the kernel's or the lab's, see its output above"
            continue
        fi
        one "$test" "$mode"
        if [ "$RESULT" != pass ]; then
            # The tests race their own listener (6.12's netcons_basic waits at most 1 s for
            # socat to bind, then writes once over UDP): a slow guest loses the message. One
            # more try, shown in the table; a tool that breaks the test fails both.
            echo "--- $name ($mode) failed (rc=$RC): once more"
            ATTEMPT=2 one "$test" "$mode"
        fi
        judge "$name" "$mode"
    done
done
exit 0
