#!/bin/sh
# The kernel's BTF facts cache (/var/cache/netpoll-trace/kernel-btf.json). The first run
# parses the BTF, creates the directory 0700 and the file 0600 once it is ready (the file is
# for the next run, so writing it is no part of start-up) and says so, naming the BTF
# by the kernel's build-id (the one /sys/kernel/notes holds); the second reads that id
# instead of parsing, takes the facts from the file (the ready line names it) and parses
# nothing; `offsets --json` is the same cold, warm and with --no-cache (which leaves the
# file alone); a file whose identity was tampered with is ignored and rewritten; a
# symbolic link planted at the file's path is replaced, never followed, and the run
# works; a directory writable by others is not used. From 6.16 the first run maps the
# kernel's BTF instead of reading it: its 5-6 MiB are the kernel's pages, not our RSS.
# nics: virtio
# timeout: 300
# checks: first_run_parses first_run_maps_btf first_run_writes written_after_ready identity_by_build_id dir_private file_private second_run_cached second_run_no_parse offsets_equal no_cache_leaves_file check_names_cache tampered_ignored tampered_rewritten symlink_not_followed symlink_run_works loose_dir_refused
. /lib.sh

DIR=/var/cache/netpoll-trace
FILE=$DIR/kernel-btf.json
rm -rf $DIR

# run NAME ARGS...: `netpoll-trace watch --for 1s ARGS` with the start-up profile, into /tmp/NAME.*
run() {
    _name=$1
    shift
    RUST_LOG=netpoll_trace=debug netpoll-trace watch --for 1s "$@" >/tmp/$_name.out 2>/tmp/$_name.err
    echo $? >/tmp/$_name.rc
    echo "--- watch $* ($_name, exit $(cat /tmp/$_name.rc))"
    grep 'start-up:\|ready:\|cache\|BTF facts' /tmp/$_name.err
}
ready_ok() { test "$(cat /tmp/$1.rc)" -eq 0 && grep -q 'ready: ' /tmp/$1.err; }
CACHED="offsets from /sys/kernel/btf/vmlinux (cached facts, $FILE)"

# --- first run: parse, create, write ---------------------------------------------------
run first
npt_check first_run_parses sh -c "grep -q 'start-up: kernel BTF parsed' /tmp/first.err && ! grep -qF 'cached facts' /tmp/first.err"
# rss NAME STAGE: the RSS (KiB) the start-up profile of /tmp/NAME.err gives at STAGE.
rss() { sed -n "s/.*start-up: $2 at .* (RSS \([0-9]*\) KiB.*/\1/p" /tmp/$1.err | head -n 1; }
first_run_maps_btf() {
    _v=$(uname -r)
    _major=${_v%%.*}
    _minor=${_v#*.}
    _minor=${_minor%%[!0-9]*}
    if [ "$_major" -gt 6 ] || { [ "$_major" -eq 6 ] && [ "$_minor" -ge 16 ]; }; then
        # Mapped: the kernel's pages, not a copy in our RSS (a read adds its 5-6 MiB).
        # Both stages come from the facts thread, one right after the other; the main
        # thread loading the object meanwhile added up to 780 KiB (7.3), hence 2 MiB.
        _from=$(rss first 'kernel BTF: opening')
        _to=$(rss first 'kernel BTF mapped')
        echo "RSS from opening the kernel's BTF to having it: $_from -> $_to KiB"
        grep -q 'start-up: kernel BTF mapped' /tmp/first.err &&
            test -n "$_from" && test -n "$_to" && test $((_to - _from)) -lt 2048
    else
        grep -q 'start-up: kernel BTF read at' /tmp/first.err
    fi
}
npt_check first_run_maps_btf first_run_maps_btf
first_run_writes() {
    ready_ok first && grep -q 'start-up: cache written' /tmp/first.err &&
        grep -qF "wrote the kernel's BTF facts to $FILE" /tmp/first.err && test -s $FILE
}
npt_check first_run_writes first_run_writes
# line NAME PATTERN: the number of the first line of /tmp/NAME.err matching PATTERN.
line() { grep -n "$2" /tmp/$1.err | head -n 1 | cut -d: -f1; }
written_after_ready() {
    r=$(line first 'ready: ') && w=$(line first 'start-up: cache written') &&
        test -n "$r" && test -n "$w" && test "$w" -gt "$r"
}
npt_check written_after_ready written_after_ready
# The id recorded is the kernel's own: its bytes are among the notes', read here by od.
build_id_of() { sed -n 's/.*"build_id": "\([0-9a-f]*\)".*/\1/p' "$1"; }
identity_by_build_id() {
    bid=$(build_id_of $FILE)
    test ${#bid} -ge 16 && od -An -v -tx1 /sys/kernel/notes | tr -d ' \n' | grep -q "$bid" &&
        ! grep -q '"hash"' $FILE
}
npt_check identity_by_build_id identity_by_build_id
ls -la $DIR
npt_check dir_private sh -c "test -d $DIR && ! test -L $DIR && test \"\$(stat -c '%a %u' $DIR)\" = '700 0'"
npt_check file_private sh -c "test -f $FILE && test \"\$(stat -c '%a %u' $FILE)\" = '600 0'"
cp $FILE /tmp/good.json
cat $FILE

# --- second run: from the cache, no parse ----------------------------------------------
run second
npt_check second_run_cached sh -c "grep -q 'start-up: facts from cache' /tmp/second.err && grep 'ready: ' /tmp/second.err | grep -qF '$CACHED;'"
second_run_no_parse() {
    ready_ok second && grep -q 'start-up: BTF identity read' /tmp/second.err &&
        ! grep -q 'kernel BTF parsed' /tmp/second.err && ! grep -q 'cache written' /tmp/second.err
}
npt_check second_run_no_parse second_run_no_parse

# --- offsets: cold, warm, --no-cache ---------------------------------------------------
offsets_of() { sed -n 's/.*"offsets":\({[^}]*}\).*/\1/p' "$1"; }
rm $FILE
netpoll-trace offsets --json >/tmp/cold.json 2>&1
netpoll-trace offsets --json >/tmp/warm.json 2>&1
cp $FILE /tmp/before-no-cache.json
netpoll-trace offsets --json --no-cache >/tmp/nocache.json 2>&1
cat /tmp/cold.json /tmp/warm.json /tmp/nocache.json
offsets_equal() {
    grep -q '"cached":false' /tmp/cold.json && grep -q '"cached":true' /tmp/warm.json && grep -q '"cached":false' /tmp/nocache.json &&
        grep -qF "\"detail\":\"cached facts, $FILE\"" /tmp/warm.json &&
        test -n "$(offsets_of /tmp/cold.json)" && ! offsets_of /tmp/cold.json | grep -q null &&
        test "$(offsets_of /tmp/cold.json)" = "$(offsets_of /tmp/warm.json)" &&
        test "$(offsets_of /tmp/cold.json)" = "$(offsets_of /tmp/nocache.json)"
}
npt_check offsets_equal offsets_equal
RUST_LOG=netpoll_trace=debug netpoll-trace offsets --no-cache >/dev/null 2>/tmp/nocache.err
no_cache_leaves_file() {
    cmp $FILE /tmp/before-no-cache.json && ! grep -q 'identity read\|cache written\|facts from cache' /tmp/nocache.err &&
        grep -q 'kernel BTF parsed' /tmp/nocache.err
}
npt_check no_cache_leaves_file no_cache_leaves_file
netpoll-trace check >/tmp/check.out 2>&1
cat /tmp/check.out
npt_check check_names_cache grep -qF "struct offsets from /sys/kernel/btf/vmlinux (cached facts, $FILE)" /tmp/check.out

# --- a tampered identity: ignored, rewritten -------------------------------------------
sed 's/"build_id": "[0-9a-f]*"/"build_id": "00"/' /tmp/good.json >/tmp/tampered.json
cat /tmp/tampered.json >$FILE
chmod 600 $FILE
grep '"build_id"' $FILE
run tampered
tampered_ignored() {
    ready_ok tampered && grep -q 'made for another BTF' /tmp/tampered.err &&
        grep -q 'start-up: kernel BTF parsed' /tmp/tampered.err && ! grep -qF 'cached facts' /tmp/tampered.err
}
npt_check tampered_ignored tampered_ignored
npt_check tampered_rewritten sh -c "grep -q 'start-up: cache written' /tmp/tampered.err && cmp $FILE /tmp/good.json"

# --- a symbolic link at the file's path ------------------------------------------------
echo precious >/tmp/victim
rm $FILE
ln -s /tmp/victim $FILE
run symlink
symlink_not_followed() {
    test "$(cat /tmp/victim)" = precious && grep -q 'is a symbolic link' /tmp/symlink.err && ! test -L $FILE
}
npt_check symlink_not_followed symlink_not_followed
npt_check symlink_run_works sh -c "test \$(cat /tmp/symlink.rc) -eq 0 && grep -q 'ready: ' /tmp/symlink.err && cmp $FILE /tmp/good.json"

# --- a directory others can write: not used --------------------------------------------
chmod 777 $DIR
run loose
loose_dir_refused() {
    ready_ok loose && grep -q 'writable by group or others' /tmp/loose.err &&
        grep -q 'start-up: kernel BTF parsed' /tmp/loose.err && ! grep -q 'cache written' /tmp/loose.err &&
        cmp $FILE /tmp/good.json
}
npt_check loose_dir_refused loose_dir_refused
chmod 700 $DIR
