#!/bin/sh
# The release artefacts of `cargo xtask dist`, installed the way INSTALL.md says, run from
# their own files only: the lab's /bin/netpoll-trace is moved away first. The tarball
# unpacks to a fresh prefix whose binary runs `check` and `watch` (a good set-up and a
# diagnosed failure), its man pages, completions, unit and module source are in place;
# the .deb unpacks (busybox dpkg-deb) to the same binary; --log-format json turns the
# final error into one JSON object. Installed with dpkg, then removed, it leaves no probe
# attached (a persistent watch's pinned links are detached by the package's prerm).
# needs: dist
# One kernel (what it proves is the packaging; check and watch themselves run on every
# kernel in the other scenarios).
# kernels: 6.12
# timeout: 240
# checks: unpacked layout version check_runs watch_ok watch_failure json_error man_pages completions deb_contents deb_remove_detaches
. /lib.sh

mv /bin/netpoll-trace /tmp/lab-netpoll-trace
PREFIX=/opt/fresh
mkdir -p $PREFIX
tar -xzf /dist/netpoll-trace.tar.gz -C $PREFIX
top=$(ls $PREFIX)
P=$PREFIX/$top
NPT=$P/bin/netpoll-trace
echo "unpacked $top:"
find $P -type f | sed "s|^$P/|  |" | sort
npt_check unpacked sh -c "! command -v netpoll-trace && test -x $NPT && echo '$top' | grep -qE '^netpoll-trace-[0-9][^/]*-x86_64\$'"

missing=""
for f in lib/systemd/system/netpoll-trace-agent.service share/netpoll-trace/netpoll-patch/Makefile \
         share/netpoll-trace/netpoll-patch/Kbuild share/netpoll-trace/netpoll-patch/netpoll_patch.c \
         share/doc/netpoll-trace/INSTALL.md share/doc/netpoll-trace/agent.toml.example; do
    test -s "$P/$f" || missing="$missing $f"
done
npt_check layout sh -c "test -z '$missing' || { echo 'missing:$missing'; exit 1; }"

version=$($NPT --version | cut -d' ' -f2)
npt_check version sh -c "test -n '$version' && test '$top' = 'netpoll-trace-$version-x86_64'"

$NPT check >/tmp/check.out 2>&1
rc=$?
cat /tmp/check.out
npt_check check_runs sh -c "test $rc -eq 0 && grep -q 'netpoll can be traced on this kernel' /tmp/check.out"

npt_ip eth0 10.99.0.1/24
$NPT watch --json -- modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/ >/tmp/ok.json 2>/tmp/ok.err
ok_rc=$?
cat /tmp/ok.err /tmp/ok.json
rmmod netconsole 2>/dev/null
watch_ok() { test $ok_rc -eq 0 && npt_json_has /tmp/ok.json fn=$NPT_OUTER dev=eth0 ret=0 driver=virtio_net; }
npt_check watch_ok watch_ok

# Where the failed target fails the module load, watch exits with modprobe's status;
# where the module keeps it disabled, modprobe succeeds silently and watch exits 3.
# Either way one no_such_device diagnosis.
$NPT watch --json -- modprobe netconsole netconsole=@/eth9,6666@10.99.0.2/ >/tmp/bad.json 2>/tmp/bad.err
bad_rc=$?
cat /tmp/bad.err /tmp/bad.json
rmmod netconsole 2>/dev/null
watch_failure() { test $bad_rc -ne 0 && npt_json_has /tmp/bad.json type=diagnosis dev=eth9 cause=no_such_device; }
npt_check watch_failure watch_failure

$NPT --log-format json watch --btf /nonexistent >/tmp/err.out 2>/tmp/err.err
rc=$?
cat /tmp/err.err
npt_check json_error sh -c "test $rc -eq 1 && test \$(wc -l </tmp/err.err) -eq 1 && grep -q '^{\"ts\":\"[^\"]*Z\",\"level\":\"error\",\"target\":\"netpoll_trace\",\"message\":\".*/nonexistent.*\"}\$' /tmp/err.err"

man=$P/share/man/man8
ls $man
npt_check man_pages sh -c "grep -q '^.TH netpoll-trace-agent 8' $man/netpoll-trace-agent.8 && grep -qF 'metrics\\-addr' $man/netpoll-trace-agent.8 && grep -q '^.SH \"EXIT STATUS\"' $man/netpoll-trace-watch.8 && test -s $man/netpoll-trace.8 && grep -q '^.TH \"netpoll-trace-agent.toml\" 5' $P/share/man/man5/netpoll-trace-agent.toml.5"
npt_check completions sh -c "grep -q -- '--metrics-addr' $P/share/bash-completion/completions/netpoll-trace && grep -q -- 'log-format' $P/share/zsh/site-functions/_netpoll-trace && grep -q -- 'metrics-addr' $P/share/fish/vendor_completions.d/netpoll-trace.fish"

mkdir -p /opt/deb
dpkg-deb -x /dist/netpoll-trace.deb /opt/deb
# busybox's dpkg-deb -f prints every control field (it takes no field names).
dpkg-deb -f /dist/netpoll-trace.deb >/tmp/control
pkg=$(sed -n 's/^Package: //p' /tmp/control)
debver=$(sed -n 's/^Version: //p' /tmp/control)
echo "deb: package $pkg version $debver"
npt_check deb_contents sh -c "test '$pkg' = netpoll-trace && test '$debver' = '$version' && test \"\$(/opt/deb/usr/bin/netpoll-trace --version)\" = 'netpoll-trace $version' && test -s /opt/deb/usr/share/man/man8/netpoll-trace.8.gz && test -s /opt/deb/usr/lib/systemd/system/netpoll-trace-agent.service && test -s /opt/deb/etc/netpoll-trace/agent.toml && test -s /opt/deb/usr/share/netpoll-trace/netpoll-patch/netpoll_patch.c"

# Installed with dpkg, a persistent watch pins its probes; removing the package leaves none
# of them attached (prerm: reset --all), and no directory under /sys/fs/bpf/netpoll-trace.
mkdir -p /var/lib/dpkg/info /var/lib/dpkg/updates
touch /var/lib/dpkg/status
echo 1 >/proc/sys/net/core/bpf_jit_kallsyms
progs() { grep -c ' bpf_prog_' /proc/kallsyms; }
base=$(progs)
dpkg -i /dist/netpoll-trace.deb >/tmp/dpkg-i.out 2>&1
echo "dpkg -i: exit $?"; cat /tmp/dpkg-i.out
/usr/bin/netpoll-trace watch --wait-all --persist -- true >/tmp/persist.out 2>&1
pinned=$(ls /sys/fs/bpf/netpoll-trace/v*/ 2>/dev/null | grep -c '^link_')
loaded=$(progs)
dpkg -r netpoll-trace >/tmp/dpkg-r.out 2>&1
echo "dpkg -r: exit $?"; cat /tmp/dpkg-r.out
# A detached program leaves kallsyms when the kernel frees it (deferred work): give it time.
back_to_base() { [ "$(progs)" -eq "$base" ]; }
npt_wait_for 15 back_to_base
after=$(progs)
echo "BPF programs in kallsyms: $base before, $loaded with the persistent probes ($pinned links pinned), $after after dpkg -r"
npt_check deb_remove_detaches sh -c "test $pinned -gt 0 && test $loaded -gt $base && test $after -eq $base && ! test -e /sys/fs/bpf/netpoll-trace && ! test -e /usr/bin/netpoll-trace"

mv /tmp/lab-netpoll-trace /bin/netpoll-trace
