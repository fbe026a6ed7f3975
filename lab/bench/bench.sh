#!/bin/sh
# The benchmark guest script (run by lab/init as /scenario.sh; `cargo xtask bench` packs it).
# Everything is measured in this one VM, one tool at a time, and reported in lines
#   NPT-BENCH <key> <value...>
# that xtask/src/bench/ reads. Settings come from /bench.conf (REPS, MSGS, TPUT_REPS,
# CYCLES, QUICK; optional SECTIONS and MODES to run a part, e.g. while chasing a problem,
# and LOAD_THREADS, the program-load threads of every watch and agent run).
# Absolute times are QEMU/TCG emulation times; the host report leads with ratios.
# NICs: eth0 (virtio) sends netconsole, eth1 (virtio) receives in its own network namespace.
. /lib.sh
. /bench.conf
# --load-threads: watch and the agent load a pass's programs on that many threads.
if [ -n "${LOAD_THREADS:-}" ]; then export NETPOLL_TRACE_LOAD_THREADS=$LOAD_THREADS; fi

say() { echo "NPT-BENCH $*"; }
SECTIONS=${SECTIONS:-attach profile footprint burst tput}
# section NAME: true when NAME is to run.
section() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }
BT=/usr/bin/bpftrace
BT_SCRIPT=/tmp/bench.bt

# The outer set-up every tool traces: lib.sh's NPT_OUTER, measured from the netconsole
# module (netpoll_setup in vmlinux, or, where netconsole sets netpoll up itself, its own
# netcons_netpoll_setup in netconsole.ko, which watch traces there). The floor's fentry
# needs the module's BTF and kprobes need the symbol, so a function not in the running
# kernel yet is looked for again after loading netconsole, before anything attaches: all
# three tools then attach with the same module loaded.
OUTER=$NPT_OUTER
outer_mod=$(npt_module_of "$OUTER") || { modprobe netconsole; outer_mod=$(npt_module_of "$OUTER"); } ||
    echo "bench: the outer set-up $OUTER is neither in vmlinux nor in a loaded module"
say outer_setup "$OUTER${outer_mod:+ $outer_mod}"
# bpftrace: bench.bt names netpoll_setup; a module's function as kprobe:MODULE:FUNCTION.
sed "s/^kprobe:netpoll_setup /kprobe:${outer_mod:+$outer_mod:}$OUTER /" /bench.bt >$BT_SCRIPT
grep -q "^kprobe:${outer_mod:+$outer_mod:}$OUTER " $BT_SCRIPT || echo "bench: $BT_SCRIPT does not probe $OUTER"

npt_ip eth0 10.99.0.1/24
npt_receiver eth1 /tmp/rx.txt
rx_pid=$!
ns_pid=$NPT_NS
say binary_bytes_guest "$(stat -c %s /bin/netpoll-trace)"

# hwm PID: peak resident set size (VmHWM) in KiB; rss PID: resident now (VmRSS).
hwm() { awk '/^VmHWM:/ { print $2 }' /proc/$1/status 2>/dev/null; }
rss() { awk '/^VmRSS:/ { print $2 }' /proc/$1/status 2>/dev/null; }

# wait_for FILE PATTERN SECONDS: true once FILE contains PATTERN.
wait_for() {
    _n=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        [ $_n -ge $(($3 * 10)) ] && return 1
        sleep 0.1
        _n=$((_n + 1))
    done
}

# alive PID: true while PID runs (a zombie waiting for the shell to reap it is done).
alive() { [ -d /proc/$1 ] && ! grep -q '^State:.*Z' /proc/$1/status 2>/dev/null; }

# where PID...: each task's state, CPU times and kernel stack, for a process that is late.
where() {
    echo "bench: load $(cat /proc/loadavg)"
    for p in "$@"; do
        [ -d /proc/$p ] || continue
        echo "bench: pid $p $(cat /proc/$p/comm) $(grep '^State:' /proc/$p/status) wchan $(cat /proc/$p/wchan 2>/dev/null)"
        for t in /proc/$p/task/*; do
            echo "bench:   task ${t##*/} $(grep '^State:' $t/status) utime/stime $(cut -d' ' -f14,15 $t/stat)"
            sed 's/^/bench:     /' $t/stack 2>/dev/null
        done
    done
}

# settle PID: waits until PID has used no CPU for half a second (at most 15 s), so that
# what follows measures the steady state, not a tool's start-up work (a build of watch that
# read kallsyms on a helper thread after "ready" made floods started at once run ~0.5x
# untraced on 5.10: against that thread, not against tracing).
settle() {
    [ -n "$1" ] || return
    _prev=-1
    _n=0
    while [ $_n -lt 30 ]; do
        _cpu=$(awk '{ print $14 + $15 }' /proc/$1/stat 2>/dev/null)
        [ "$_cpu" = "$_prev" ] && return
        _prev=$_cpu
        sleep 0.5
        _n=$((_n + 1))
    done
    echo "bench: pid $1 still busy 15 s after it said ready"
}

# jiffies: "BUSY TOTAL", clock ticks over all CPUs since boot (idle and iowait are not busy).
jiffies() {
    awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}

# tracer_cpu PID: its user and system ticks (0 without a PID).
tracer_cpu() {
    if [ -n "$1" ]; then awk '{ print $14 + $15 }' /proc/$1/stat 2>/dev/null || echo 0; else echo 0; fi
}

# quiet: waits until the guest's CPUs were at least 95% idle over half a second (at most
# 15 s; then says so). A tracer just stopped leaves the kernel freeing its programs and
# trampolines, and one just started may still be verifying: a flood timed over that work
# measured it, not tracing (7.3: the first flood after watch's method look-up took 220 ms,
# the later untraced ones 50-70).
quiet() {
    _prev=
    _n=0
    while [ $_n -lt 30 ]; do
        _now=$(jiffies)
        if [ -n "$_prev" ]; then
            set -- $_prev $_now
            [ $(($4 - $2)) -gt 0 ] && [ $((($3 - $1) * 100)) -le $((($4 - $2) * 5)) ] && return
        fi
        _prev=$_now
        sleep 0.5
        _n=$((_n + 1))
    done
    echo "bench: the guest was still busy after 15 s of waiting for it to be quiet"
}

# stop_bg PID: SIGINT, then wait for it to exit. bpftrace (0.17 on 6.12, seen in the lab
# about once in six stops) can miss a single SIGINT and sit in epoll_wait for good; the old
# unbounded wait then hung the whole run until the guest timeout. So: a second SIGINT after
# 10 s (what a user at a terminal does), and after 60 s a report of where it sits and
# SIGKILL. Each escalation is reported (stop_resent, stop_killed), never hidden.
stop_bg() {
    [ -n "$1" ] || return
    kill -INT "$1" 2>/dev/null
    _n=0
    while alive "$1"; do
        if [ $_n -eq 100 ]; then
            echo "bench: pid $1 ($(cat /proc/$1/comm 2>/dev/null)) still running 10 s after SIGINT; sending another"
            where "$1"
            say stop_resent "$(cat /proc/$1/comm 2>/dev/null)"
            kill -INT "$1" 2>/dev/null
        elif [ $_n -ge 600 ]; then
            echo "bench: pid $1 still running 60 s after SIGINT; killing it"
            where "$1"
            say stop_killed "$(cat /proc/$1/comm 2>/dev/null)"
            kill -9 "$1" 2>/dev/null
            break
        fi
        sleep 0.1
        _n=$((_n + 1))
    done
    wait "$1" 2>/dev/null
}

# --- can bpftrace run here? --------------------------------------------------------
bt_ok=0
if [ -x $BT ]; then
    if benchtool ready NPT-BT-READY 300 $BT -B line $BT_SCRIPT >/tmp/bt.probe 2>/tmp/bt.probe.err; then
        bt_ok=1
        say bpftrace_version "$($BT --version 2>&1 | head -n 1)"
    else
        cat /tmp/bt.probe.err
        say bpftrace_unavailable "$(grep -v '^  | Attaching' /tmp/bt.probe.err | tail -n 2 | tr '\n' ' ')"
    fi
else
    say bpftrace_unavailable "no bpftrace packed for this kernel"
fi

# --- 1. time to attached -----------------------------------------------------------
# Each repetition: watch with its default method (fentry where the kernel has it), watch
# on kprobes (unless that was the default), the libbpf floor loader (/bin/floor,
# lab/bench/floor.c) with fentry and with kprobes, then bpftrace (kprobes). Per method:
#   attach_watch METHOD MS, attach_libbpf METHOD MS, attach_libbpf_failed METHOD REASON
# attach_ms stays watch's default-method time (attach_method names the method).
i=0
section attach || i=$REPS
# watch runs twice per method: first with no cache of the kernel's BTF facts (a first
# run: the cache directory removed), then with the cache the first run wrote (later runs):
#   attach_watch METHOD MS (first run), attach_watch_warm METHOD MS (cache warm)
CACHE_DIR=/var/cache/netpoll-trace
# also_list FILE METHOD: the functions watch's `all ready:` line lists, as the floor's
# --also takes them, with the programs watch gives each (netpoll-trace's kernel/targets.rs):
# the skb transmit a return program only under fentry (fexit sees the netpoll), entry and
# return under kprobes (`-`, `+`); the UDP send, the tear-downs and the console write an
# entry program only. The on-demand console write is listed (watch loads it; it attaches it
# only while a target's device is down): the clause saying so is not a function.
also_list() {
    sed -n 's/.*all ready: also tracing \(.*\) (.*/\1/p' "$1" | head -n 1 | sed 's/; [^;]* only while .*//' | tr -d ' ' | tr ',' '\n' |
        awk -v m="$2" '{ printf "%s%s%s", (NR > 1 ? "," : ""), $0, ($0 ~ /send_skb/ ? (m == "fentry" ? "-" : "+") : "") }'
}
# live_list FILE METHOD: also_list without the on-demand function (the console write,
# which watch attaches only while a target's device is down, so a healthy flood never runs
# it): what the full floor attaches when its floods are compared with watch's.
live_list() {
    _od=$(sed -n 's/.*all ready: also tracing .*; \([^ ]*\) only while .*/\1/p' "$1" | head -n 1)
    also_list "$1" "$2" | tr ',' '\n' | grep -vxF "${_od:-}" | tr '\n' ',' | sed 's/,$//'
}
# timed ARGS...: `benchtool ready ARGS` once the guest is quiet. A tool just stopped
# leaves the kernel freeing its programs and trampolines (RCU tasks, workqueues) for a
# while: the kprobe first run, which came right after fentry's warm one, measured ~250 ms
# of that teardown on 6.18 (first - warm: 250 ms with kprobes, 100 ms with fentry).
timed() {
    quiet >&2
    benchtool ready "$@"
}
ALSO_FROM=
while [ $i -lt $REPS ]; do
    rm -rf $CACHE_DIR
    ms=$(timed 'netpoll-trace: ready:' 120 netpoll-trace watch 2>/tmp/attach.err)
    if [ -n "$ms" ]; then
        say attach_ms "$ms"
        own=$(sed -n 's/.*attached in \([0-9.]*\) ms.*/\1/p' /tmp/attach.err | head -n 1)
        [ -n "$own" ] && say attach_ms_self "$own"
        m=$(sed -n 's/.*ready: \([a-z]*\) on .*/\1/p' /tmp/attach.err | head -n 1)
        [ -n "$m" ] && say attach_method "$m" && method=$m && say attach_watch "$m $ms"
    else
        cat /tmp/attach.err
    fi
    ms=$(timed 'netpoll-trace: ready:' 120 netpoll-trace watch 2>/tmp/attach.err)
    if [ -n "$ms" ]; then
        grep -q 'cached facts' /tmp/attach.err || echo "bench: warm run did not use the cache: $(grep 'ready:' /tmp/attach.err)"
        say attach_ms_warm "$ms" && [ -n "$method" ] && say attach_watch_warm "$method $ms"
    else
        cat /tmp/attach.err
    fi
    # The same two runs with the programs loaded one by one (NETPOLL_TRACE_LOAD_THREADS=1;
    # by default each pass loads them on one thread per CPU): the A/B of loading side by
    # side, in this VM. Not when --load-threads set the threads for every run.
    #   attach_watch_one_thread METHOD MS, attach_watch_one_thread_warm METHOD MS
    if [ -z "${LOAD_THREADS:-}" ] && [ -n "$method" ]; then
        rm -rf $CACHE_DIR
        ms=$(export NETPOLL_TRACE_LOAD_THREADS=1; timed 'netpoll-trace: ready:' 120 netpoll-trace watch 2>/tmp/attach.err)
        if [ -n "$ms" ]; then say attach_watch_one_thread "$method $ms"; else cat /tmp/attach.err; fi
        ms=$(export NETPOLL_TRACE_LOAD_THREADS=1; timed 'netpoll-trace: ready:' 120 netpoll-trace watch 2>/tmp/attach.err)
        if [ -n "$ms" ]; then say attach_watch_one_thread_warm "$method $ms"; else cat /tmp/attach.err; fi
    fi
    if [ "$method" != kprobe ]; then
        rm -rf $CACHE_DIR
        ms=$(timed 'netpoll-trace: ready:' 120 netpoll-trace watch --attach kprobe 2>/tmp/attach.err)
        if [ -n "$ms" ]; then say attach_watch "kprobe $ms"; else cat /tmp/attach.err; fi
        ms=$(timed 'netpoll-trace: ready:' 120 netpoll-trace watch --attach kprobe 2>/tmp/attach.err)
        if [ -n "$ms" ]; then say attach_watch_warm "kprobe $ms"; else cat /tmp/attach.err; fi
    fi
    # The full attach (cache warm): until `all ready:`, the send path, tear-downs and
    # console write attached too; what it lists is what the full floor attaches.
    #   attach_watch_full METHOD MS, attach_libbpf_full METHOD MS
    fulls=kprobe
    [ -n "$method" ] && [ "$method" != kprobe ] && fulls="$method kprobe"
    for m in $fulls; do
        ms=$(timed 'netpoll-trace: all ready:' 120 netpoll-trace watch --attach $m 2>/tmp/attach_full.err)
        if [ -n "$ms" ]; then
            say attach_watch_full "$m $ms"
            [ -z "$ALSO_FROM" ] && cp /tmp/attach_full.err /tmp/attach_also.err && ALSO_FROM=/tmp/attach_also.err &&
                echo "bench: the full floor also attaches $(also_list $ALSO_FROM fentry) (kprobe: $(also_list $ALSO_FROM kprobe))"
        else
            cat /tmp/attach_full.err
        fi
    done
    for m in fentry kprobe; do
        ms=$(timed 'floor: ready:' 120 floor --attach $m --outer $OUTER 2>/tmp/attach_floor.err)
        if [ -n "$ms" ]; then
            say attach_libbpf "$m $ms"
            [ $i = 0 ] && grep 'floor: ready:' /tmp/attach_floor.err
        else
            cat /tmp/attach_floor.err
            say attach_libbpf_failed "$m $(sed -n 's/^  | floor: //p' /tmp/attach_floor.err | tail -n 1)"
        fi
        [ -n "$ALSO_FROM" ] || continue
        ms=$(timed 'floor: ready:' 120 floor --attach $m --outer $OUTER --also "$(also_list $ALSO_FROM $m)" 2>/tmp/attach_floor.err)
        if [ -n "$ms" ]; then
            say attach_libbpf_full "$m $ms"
            [ $i = 0 ] && grep 'floor: ready:' /tmp/attach_floor.err
        else
            cat /tmp/attach_floor.err
        fi
    done
    if [ $bt_ok = 1 ]; then
        ms=$(timed NPT-BT-READY 300 $BT -B line $BT_SCRIPT 2>/tmp/attach_bt.err)
        if [ -n "$ms" ]; then say attach_ms_bpftrace "$ms"; else cat /tmp/attach_bt.err; fi
    fi
    i=$((i + 1))
done

# --- 1b. where the time to ready goes: watch's own start-up profile (debug log) ----
# The profile's lines only: the programs keep the default level (warn), whose log
# statements are all the verifier walks in a default run (`object::ebpf_log_level`).
PROFILE_LOG=warn,netpoll_trace::kernel::profile=debug
if section profile; then
    # Until `all ready:` (the late pass too), each stage with RSS and peak (VmHWM); the
    # first run with the cache of the kernel's BTF facts removed: the start-up peak.
    rm -rf $CACHE_DIR
    for m in auto kprobe; do
        ms=$(RUST_LOG=$PROFILE_LOG benchtool ready 'netpoll-trace: all ready:' 120 \
            netpoll-trace watch --attach $m 2>/tmp/profile.err)
        echo "bench: profile --attach $m: all ready after $ms ms (from before fork)"
        grep 'start-up:\|ready:\|memory:' /tmp/profile.err
    done
fi

# netconsole with no target yet: burst and throughput targets are made through configfs
# (already loaded where the outer set-up is the module's own, see OUTER).
modprobe netconsole
old_devkmsg=$(cat /proc/sys/kernel/printk_devkmsg)
echo on >/proc/sys/kernel/printk_devkmsg

# --- 4a. footprint: watch and agent idle -----------------------------------------
a=
if section footprint; then
# The allocator's in-use bytes once start-up is over (mallinfo2, a debug line): heap,
# told apart from the binary's and the perf buffers' pages in VmRSS.
heap() { sed -n 's/.*memory: heap in use \([0-9]*\) KiB.*/\1/p' "$1" | tail -n 1; }
# First runs (no cache of the kernel's BTF facts): their start-up peak is the higher one.
rm -rf /var/cache/netpoll-trace
RUST_LOG=$PROFILE_LOG netpoll-trace watch --json >/tmp/idle.json 2>/tmp/idle.err &
w=$!
wait_for /tmp/idle.err 'all ready:' 120 && settle $w && sleep 2 && say watch_idle_hwm_kib "$(hwm $w)" &&
    say watch_idle_rss_kib "$(rss $w)" && say watch_idle_heap_kib "$(heap /tmp/idle.err)"
stop_bg $w
rm -rf /var/cache/netpoll-trace
RUST_LOG=$PROFILE_LOG netpoll-trace agent --dry-run --journal /tmp/journal.jsonl >/tmp/agent.out 2>/tmp/agent.err &
a=$!
if wait_for /tmp/agent.err 'ready:' 120; then
    settle $a
    sleep 2
    # The goal (idle RSS) is resident memory while idle: VmRSS. VmHWM is the start-up peak.
    say agent_idle_rss_kib "$(rss $a)"
    say agent_idle_hwm_kib "$(hwm $a)"
    say agent_idle_heap_kib "$(heap /tmp/agent.err)"
else
    cat /tmp/agent.err
fi
# The agent keeps running through the burst below (4b).
fi

# --- 3. event loss: a burst of configfs enable/disable cycles --------------------
C=/sys/kernel/config/netconsole/bench
npt_target bench eth0 10.99.0.2 off
# burst: CYCLES enable/disable cycles; prints how many enables succeeded.
burst() {
    _i=0
    _ok=0
    while [ $_i -lt $CYCLES ]; do
        echo 1 >$C/enabled 2>/dev/null && _ok=$((_ok + 1))
        echo 0 >$C/enabled 2>/dev/null
        _i=$((_i + 1))
    done
    echo $_ok
}

if section burst; then
netpoll-trace watch --json >/tmp/burst.json 2>/tmp/burst.err &
w=$!
if wait_for /tmp/burst.err 'all ready:' 120; then
    t0=$(date +%s)
    ok=$(burst)
    say burst_secs $(($(date +%s) - t0))
    sleep 2
    say watch_burst_hwm_kib "$(hwm $w)"
    say watch_burst_rss_kib "$(rss $w)"
    stop_bg $w
    say setups "$CYCLES"
    say setups_ok "$ok"
    say events "$(grep '"type":"setup"' /tmp/burst.json | grep -c '"fn":"'$OUTER'"')"
    say events_inner "$(grep '"type":"setup"' /tmp/burst.json | grep -c '"fn":"__netpoll_setup"')"
    lost=$(sed -n 's/.*, \([0-9]*\) event(s) lost.*/\1/p' /tmp/burst.err | tail -n 1)
    say lost "${lost:-unknown}"
    grep -i 'warn\|lost\|drop' /tmp/burst.err | head -n 5
else
    cat /tmp/burst.err
    stop_bg $w
fi
if [ -n "$a" ]; then
    say agent_burst_hwm_kib "$(hwm $a)"
    say agent_burst_rss_kib "$(rss $a)"
    stop_bg $a
fi

# The floor loader's programs run, not only attach: one enable/disable cycle under each
# method, its event lines and counters shown (libbpf_setup_events METHOD N: returns of the
# outer set-up, $OUTER, it reported; 1 expected).
for m in fentry kprobe; do
    floor --attach $m --outer $OUTER 2>/tmp/floor.err &
    f=$!
    if wait_for /tmp/floor.err 'floor: ready:' 60; then
        # A failed enable is said, not silenced: it once made 7.3's count 0 with no why.
        echo 1 >$C/enabled || echo "bench: floor --attach $m: enabling $C failed"
        [ "$(cat $C/enabled)" = 1 ] || echo "bench: floor --attach $m: $C did not come up ($(dmesg | tail -n 3 | tr '\n' ' '))"
        echo 0 >$C/enabled 2>/dev/null
        sleep 1
        stop_bg $f
        sed -n 's/^floor: /bench: floor --attach '$m': /p' /tmp/floor.err | grep -v 'ready:'
        say libbpf_setup_events "$m $(grep -c "^floor: $OUTER ret=" /tmp/floor.err)"
    else
        cat /tmp/floor.err
        stop_bg $f
    fi
done

if [ $bt_ok = 1 ]; then
    $BT -B line $BT_SCRIPT >/tmp/burst_bt.out 2>/tmp/burst_bt.err &
    b=$!
    if wait_for /tmp/burst_bt.out NPT-BT-READY 300; then
        ok=$(burst)
        sleep 2
        say bpftrace_burst_hwm_kib "$(hwm $b)"
        stop_bg $b
        say setups_bpftrace "$CYCLES"
        say events_bpftrace "$(grep -c '^setup ' /tmp/burst_bt.out)"
        lost=$(sed -n 's/.*[Ll]ost \([0-9]*\) events.*/\1/p' /tmp/burst_bt.out /tmp/burst_bt.err | awk '{ s += $1 } END { print s + 0 }')
        say lost_bpftrace "$lost"
    else
        cat /tmp/burst_bt.out /tmp/burst_bt.err
        stop_bg $b
    fi
fi
fi
rmdir $C

# --- 2. hot-path throughput through netconsole ----------------------------------
# A flood is timed by the receiver: from its first write to /dev/kmsg until its last line
# is in /tmp/rx.txt (benchtool kmsg ... RXFILE). Timing the writes alone measured nothing
# on 7.3, where netconsole is an nbcon console: the writes return before its printk thread
# has sent them (traced ÷ untraced came out 0.1-20). On the legacy console (6.x) the
# writer sends itself, so the two times differ by the last packet's trip.
# FLOOD_IDLE: seconds without a new byte in the receive file that end a flood whose last
# line never comes (netconsole drops lines when the TX ring is full; the loss is reported).
# FLOOD_LIMIT: seconds one flood may take before it counts as stuck (a healthy one takes
# a few seconds even under TCG); then where the writer and the tracer sit is dumped and
# the flood is reported as `stuck_<mode>`, not timed, so the run still finishes.
FLOOD_IDLE=${FLOOD_IDLE:-5}
FLOOD_LIMIT=${FLOOD_LIMIT:-120}

# stuck_report WRITER TRACER: where a flood that did not finish is.
stuck_report() {
    echo "bench: flood not done after ${FLOOD_LIMIT}s"
    where $1 $2
    grep -i 'virtio\|eth' /proc/interrupts
    cat /proc/net/dev
    # Every CPU's backtrace (a CPU spinning with interrupts off shows here), then tasks
    # in uninterruptible sleep.
    echo l >/proc/sysrq-trigger
    echo w >/proc/sysrq-trigger
    sleep 2
}

# flood TAG TRACER_PID [RXFILE]: benchtool's timed flood, bounded by FLOOD_LIMIT; prints
# "MSGS_PER_SEC ELAPSED_MS", and with RXFILE (timed by the receiver) "RECEIVED WRITE_MS"
# after them; or nothing (after a report) when it got stuck: writes that did not return
# (this loop's bound, a little after benchtool's own) or lines still arriving at the
# bound (benchtool's exit 1).
flood() {
    benchtool kmsg $MSGS "npt-$1" ${3:+$3 $FLOOD_IDLE $FLOOD_LIMIT} >/tmp/flood.out 2>&1 &
    _f=$!
    _n=0
    while alive $_f; do
        if [ $_n -ge $(((FLOOD_LIMIT + FLOOD_IDLE + 5) * 10)) ]; then
            stuck_report $_f $2 >&2
            kill -9 $_f 2>/dev/null
            wait $_f 2>/dev/null
            return 1
        fi
        sleep 0.1
        _n=$((_n + 1))
    done
    if ! wait $_f; then
        cat /tmp/flood.out >&2
        stuck_report $_f $2 >&2
        return 1
    fi
    cat /tmp/flood.out
}

# bpf_run PID: "RUN_TIME_NS RUN_CNT" summed over the BPF programs PID holds, from their
# fdinfo (kernel.bpf_stats_enabled=1): the time the tracing programs themselves take on
# the hot path, a number host load on the TCG host barely moves, unlike msgs/s.
bpf_run() {
    cat /proc/$1/fdinfo/* 2>/dev/null |
        awk '/^run_time_ns:/ { t += $2 } /^run_cnt:/ { c += $2 } END { printf "%d %d\n", t, c }'
}

if section tput; then
old_bpf_stats=$(cat /proc/sys/kernel/bpf_stats_enabled 2>/dev/null)
echo 1 >/proc/sys/kernel/bpf_stats_enabled 2>/dev/null
# Without an enabled netconsole target: what the serial console alone costs per message
# (timed over the writes: nothing to receive).
set -- $(flood serial "")
say rate_serial_only "$1"
C=/sys/kernel/config/netconsole/tput
npt_target tput eth0 10.99.0.2
[ "$(cat $C/enabled)" = 1 ] || echo "bench: enabling the throughput target failed"

# tput MODE TAG: one timed flood under MODE (none, watch, kprobe, bpftrace); watch's
# send path attaches after ready: the flood waits for `all ready:`.
tput() {
    pid=
    case $1 in
        watch) netpoll-trace watch --json >/tmp/t.out 2>/tmp/t.err & pid=$!; wait_for /tmp/t.err "all ready:" 120 ;;
        # Diagnostic: no per-call slow-poll events (threshold far above any call).
        watch_noslow) netpoll-trace watch --slow-poll 60s --json >/tmp/t.out 2>/tmp/t.err & pid=$!; wait_for /tmp/t.err 'all ready:' 120 ;;
        kprobe) netpoll-trace watch --attach kprobe --json >/tmp/t.out 2>/tmp/t.err & pid=$!; wait_for /tmp/t.err 'all ready:' 120 ;;
        bpftrace) $BT -B line $BT_SCRIPT >/tmp/t.out 2>/tmp/t.err & pid=$!; wait_for /tmp/t.out NPT-BT-READY 300 ;;
        # The full libbpf floor with watch's method on the functions watch runs programs on
        # during a flood: what a C tool doing about the same per-call work costs (the flood
        # share's floor).
        floor) floor --attach $method --outer $OUTER --also "$(live_list $ALSO_FROM $method)" >/tmp/t.out 2>/tmp/t.err & pid=$!
            wait_for /tmp/t.err 'floor: ready:' 120 ;;
    esac || { cat /tmp/t.err; stop_bg $pid; return; }
    settle $pid
    quiet
    [ -n "$pid" ] && set -- $1 $2 $(bpf_run $pid)
    # CPU the guest and the tracer's process used during the flood (ticks of 10 ms): tells
    # the tracer's own work from what tracing costs in the kernel when a flood is slow.
    busy0=$(jiffies | cut -d' ' -f1)
    tcpu0=$(tracer_cpu "$pid")
    if out=$(flood "$2" "$pid" /tmp/rx.txt); then
        echo "bench: flood $2: $(echo $out | cut -d' ' -f2) ms, guest CPUs busy" \
            "$((($(jiffies | cut -d' ' -f1) - busy0) * 10)) ms, tracer $((($(tracer_cpu "$pid") - tcpu0) * 10)) ms"
        mode=$1
        if [ -n "$pid" ]; then
            set -- $(bpf_run $pid) $3 $4
            # Programs' run time and runs during this flood, and the flood's wall time.
            say bpf_$mode "$(($1 - $3)) $(($2 - $4)) $(echo $out | cut -d' ' -f2)"
        fi
        set -- $mode $out
        [ -n "$2" ] && say rate_$1 "$2"
        # What the receiver got of it: mode, lines sent, received, ms the writes took,
        # ms to the last line received.
        [ -n "$4" ] && say flood_rx "$1 $MSGS $4 $5 $3"
    else
        say stuck_$1 1
    fi
    [ -n "$pid" ] && stop_bg $pid
    case $1 in
        watch*|kprobe)
            say poll_lines_$1 "$(grep -c '"type":"poll"' /tmp/t.out)"
            # The send-path probes were on: eth0's messages this tracer counted.
            say send_messages_$1 "$(grep '"type":"send"' /tmp/t.out | grep '"dev":"eth0"' | sed -n 's/.*"messages":\([0-9]*\).*/\1/p' | tail -n 1)"
            grep -i 'lost\|warn' /tmp/t.err ;;
        bpftrace) grep -i 'lost' /tmp/t.out /tmp/t.err ;;
    esac
}
# Untraced floods interleave with the traced ones (none watch none kprobe none bpftrace
# none floor, and a closing none): the host reduces each traced flood against its untraced
# neighbours, which cancels most of the host-load drift that TCG rates suffer over a run.
modes="none watch"
# fentry vs kprobe, where watch's default is fentry (the attach runs said which).
[ -z "$method" ] && method=$(benchtool ready 'netpoll-trace: ready:' 120 netpoll-trace watch 2>&1 |
    sed -n 's/.*ready: \([a-z]*\) on .*/\1/p' | head -n 1)
[ "$method" = fentry ] && modes="$modes none kprobe"
[ $bt_ok = 1 ] && modes="$modes none bpftrace"
# The full floor needs watch's list of late functions (the attach section's, else one
# full start-up now).
if [ -z "$ALSO_FROM" ]; then
    benchtool ready 'netpoll-trace: all ready:' 120 netpoll-trace watch >/dev/null 2>/tmp/attach_also.err &&
        ALSO_FROM=/tmp/attach_also.err
fi
if [ -n "$ALSO_FROM" ]; then
    modes="$modes none floor"
    echo "bench: the flood floor attaches $(live_list $ALSO_FROM $method) ($method)"
fi
modes=${MODES:-$modes}
# Warm-up (untimed), after the look-up of watch's method above: the first flood after
# enabling the target runs slower. Waited for at the receiver too, or on 7.3 its lines
# would still be going out during the first flood.
benchtool kmsg $((MSGS / 4)) npt-warmup /tmp/rx.txt $FLOOD_IDLE $FLOOD_LIMIT >/dev/null
r=0
while [ $r -lt $TPUT_REPS ]; do
    for m in $modes; do tput $m "$m-$r"; done
    r=$((r + 1))
done
tput none close
sleep 2
say received "$(grep -c 'npt-' /tmp/rx.txt)"
echo "receiver: $(wc -c </tmp/rx.txt) bytes; first: $(head -c 200 /tmp/rx.txt)"
nsenter -t $ns_pid -n sh -c 'grep Udp: /proc/net/snmp; ip -s link show eth1; ip addr'
ps | grep -v ' \[' | head -20
echo 0 >$C/enabled
rmdir $C
[ -n "$old_bpf_stats" ] && echo "$old_bpf_stats" >/proc/sys/kernel/bpf_stats_enabled
fi
rmmod netconsole
echo "$old_devkmsg" >/proc/sys/kernel/printk_devkmsg
kill $rx_pid $ns_pid 2>/dev/null
say done 1
