#!/bin/sh
# The runtime patch by hand, on a real kernel: the pre-4.19 rule is emulated
# (lab/emulate, test only), netconsole on virtio is refused exactly as in the seed
# (errno 524), watch diagnoses missing_poll_controller, `netpoll-trace patch` gives the
# device an ndo_poll_controller (scheduling its NAPI contexts), and kernel messages then reach a UDP receiver
# on a second NIC in another network namespace. Refusals, unpatch and device removal
# are checked against the module's state, the traced ops and module refcounts. The module
# file is checked through the descriptor that is loaded (no symlinks, no directory others
# can write); no kernel address appears in the module's state, its log or the tool's output;
# a ping flood runs across patch and unpatch. A copy of the ops once published is kept
# forever, never freed (listed in `kept` once the device is gone) and given again to the
# next device with the same ops.
# nics: virtio e1000 virtio
# timeout: 400
# variants: legacy
# checks: bad_module_file module_symlink_refused module_dir_refused status_empty emulated_refusal diagnosed patch_eth0 orig_ops_recorded flood_across_patch no_kernel_addresses traffic_patched traced_patched_ops refuse_has_controller refuse_unknown refuse_bad_name refuse_netkit delivered unpatch_refused_while_bound module_pinned delivered_after_refusal forced_unpatch forced_unpatch_logged repatched_while_bound unpatch_restores flood_across_unpatch traffic_unpatched delivered_after_unpatch patch_json delete_patched_device deleted_cleanly copy_kept_and_reused module_unloaded
. /lib.sh

KO=/lib/kmods/netpoll_patch.ko
# Interface names follow driver probe order: find them by driver.
by_driver() { for d in /sys/class/net/*; do [ "$(basename "$(readlink $d/device/driver 2>/dev/null)")" = "$1" ] && basename $d; done; }
E1000=$(by_driver e1000)
RECV=$(by_driver virtio_net | grep -vx eth0 | head -n 1)
echo "patched NIC eth0, e1000 NIC $E1000, receiver NIC $RECV"
ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up

# The receiver: the second virtio NIC in its own network namespace, so netconsole's
# packets really cross the QEMU hub. The e1000 (which has a poll controller) stays here.
npt_receiver "$RECV" /tmp/received
recv=$!

# --- a module file anyone could have written is refused, nothing loaded -----------
cp $KO /tmp/writable.ko
chmod 666 /tmp/writable.ko
netpoll-trace patch eth0 --module /tmp/writable.ko >/tmp/bad.out 2>&1
bad_rc=$?
cat /tmp/bad.out
npt_check bad_module_file sh -c "test $bad_rc -eq 1 && grep -q 'writable by group or others' /tmp/bad.out && test \$(wc -l </tmp/bad.out) -eq 1 && ! test -d /sys/module/netpoll_patch"
# refused_module WANT PATH: one line naming WANT, exit 1, nothing loaded.
refused_module() {
    netpoll-trace patch eth0 --module "$2" >/tmp/badm.out 2>&1
    rc=$?
    cat /tmp/badm.out
    test $rc -eq 1 && grep -q "$1" /tmp/badm.out && test "$(wc -l </tmp/badm.out)" -eq 1 && ! test -d /sys/module/netpoll_patch
}
ln -s $KO /tmp/link.ko
npt_check module_symlink_refused refused_module 'symbolic link' /tmp/link.ko
mkdir -m 775 /tmp/shared
cp $KO /tmp/shared/netpoll_patch.ko
npt_check module_dir_refused refused_module '/tmp/shared is a directory writable by group or others' /tmp/shared/netpoll_patch.ko
# status also names the object and attach path the tracer would use (the forced one in
# the legacy variant).
npt_check status_empty sh -c "netpoll-trace status >/tmp/status0.out; cat /tmp/status0.out; grep -q 'no device patched' /tmp/status0.out && grep -q '^tracer: the ${NETPOLL_TRACE_OBJECT:-modern} eBPF object, attach path ' /tmp/status0.out"

# --- the emulated pre-4.19 kernel refuses virtio, as in the seed -----------------
insmod /lib/kmods/emulate_pre419.ko
npt_dmesg_mark
netpoll-trace watch --wait-all --json -- modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/ >/tmp/refused.json 2>/tmp/refused.err
echo "watch exit $?"; cat /tmp/refused.err /tmp/refused.json
rmmod netconsole 2>/dev/null
npt_expect_dmesg emulated_refusal 'netpoll: netconsole: eth0 doesn.t support polling, aborting'
npt_check diagnosed npt_json_has /tmp/refused.json type=diagnosis cause=missing_poll_controller \
    'remedies=["runtime_patch","upgrade_kernel","rebuild_driver_with_poll_controller"]' errno=ENOTSUPP

# flood_start NAME / flood_stop NAME: a ping flood to the receiver's namespace around a
# step; flood_ok NAME: it sent at least 100 and lost at most a tenth.
flood_start() { ping -q -s 1400 -i 0.002 10.99.0.2 >/tmp/$1.ping 2>&1 & flood=$!; sleep 1; }
flood_stop() { sleep 1; kill -INT $flood; wait $flood; cat /tmp/$1.ping; }
flood_ok() {
    tx=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' /tmp/$1.ping)
    rx=$(sed -n 's/.*, \([0-9]*\) packets received.*/\1/p' /tmp/$1.ping)
    test -n "$tx" && test "$tx" -ge 100 && test $((rx * 10)) -ge $((tx * 9))
}

# --- patch, then the same set-up succeeds and messages arrive ------------------
npt_dmesg_mark
# Without --module: found where the netpoll-patch-dkms package's dkms installs it.
DKMS=/lib/modules/$(uname -r)/updates/dkms
mkdir -p $DKMS
cp $KO $DKMS/netpoll_patch.ko
flood_start patch
netpoll-trace patch eth0 >/tmp/patch.out 2>&1
patch_rc=$?
flood_stop patch
cat /tmp/patch.out
npt_check flood_across_patch flood_ok patch
netpoll-trace status | tee /tmp/status.out
npt_check patch_eth0 sh -c "test $patch_rc -eq 0 && grep -q 'patched eth0: ops virtnet_netdev \[virtio_net\]' /tmp/patch.out && grep -q 'owner=virtio_net' /sys/module/netpoll_patch/parameters/state"
# The module recorded the driver's own table as the original ops, and names it (from the
# pointer it saved, through kallsyms).
cat /sys/module/netpoll_patch/parameters/state
npt_check orig_ops_recorded grep -q '^eth0 ifindex=[0-9]* orig_ops=virtnet_netdev owner=virtio_net hook=napi copy=[0-9]*$' /sys/module/netpoll_patch/parameters/state
# No kernel address (16 hex digits) in the module's state or log, nor in what the tool printed.
no_kernel_addresses() {
    npt_dmesg_since_mark | grep netpoll_patch >/tmp/np.dmesg
    cat /tmp/np.dmesg
    netpoll-trace status --json >/tmp/status.json
    ! grep -qiE '[0-9a-f]{16}' /tmp/np.dmesg /sys/module/netpoll_patch/parameters/state /tmp/patch.out /tmp/status.out /tmp/status.json
}
npt_check no_kernel_addresses no_kernel_addresses
# Ordinary traffic on the patched device.
npt_check traffic_patched ping -c 3 -W 5 10.99.0.2
netpoll-trace watch --wait-all --json -- modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/ >/tmp/patched.json 2>/tmp/patched.err
echo "watch exit $?"; cat /tmp/patched.err /tmp/patched.json
# While patched, the device's ops are the private copy (no kernel symbol) with a hook.
npt_check traced_patched_ops npt_json_has /tmp/patched.json fn=__netpoll_setup ret=0 ops_symbol=null has_poll_controller=true
# Level 2 (crit): above any console loglevel, so netconsole sends it.
echo "<2>npt-hello-patched $$" >/dev/kmsg
npt_wait_for 3 grep -q "npt-hello-patched $$" /tmp/received
echo "received:"; cat /tmp/received
npt_check delivered grep -q "npt-hello-patched $$" /tmp/received

# --- refusals: one line each, exit 1, nothing changed ----------------------------
refused() { # EXPECTED-TEXT ARGS...
    want=$1; shift
    netpoll-trace patch "$@" --module $KO >/tmp/r.out 2>&1
    rc=$?
    cat /tmp/r.out
    test $rc -eq 1 && grep -q "$want" /tmp/r.out && test "$(wc -l </tmp/r.out)" -eq 1
}
npt_check refuse_has_controller refused 'already has an ndo_poll_controller' "$E1000"
ip link add d9 type dummy 2>/dev/null
npt_check refuse_unknown refused 'no such device' nosuch0
npt_check refuse_bad_name refused 'not a valid interface name' 'a/b'
if nlhelper netkit-add nk0 nk1 2>/dev/null; then
    npt_check refuse_netkit refused 'IFF_DISABLE_NETPOLL' nk0
else
    npt_skip refuse_netkit "no netkit on $NPT_KERNEL (netkit arrived in 6.7)"
fi

# --- while netconsole is bound: unpatch refused, module pinned, messages still go --
# (before 4.19, netpoll stops polling a device whose hook is gone: a live user stalls)
state_before=$(cat /sys/module/netpoll_patch/parameters/state)
netpoll-trace unpatch eth0 >/tmp/busy.out 2>&1
busy_rc=$?
cat /tmp/busy.out
refused_unpatch() {
    test $busy_rc -eq 1 && grep -q 'netpoll is attached' /tmp/busy.out && test "$(wc -l </tmp/busy.out)" -eq 1 &&
        test "$(cat /sys/module/netpoll_patch/parameters/state)" = "$state_before"
}
npt_check unpatch_refused_while_bound refused_unpatch
npt_check module_pinned sh -c '! rmmod netpoll_patch && grep -q "^eth0 " /sys/module/netpoll_patch/parameters/state'
echo "<2>npt-hello-still-patched $$" >/dev/kmsg
npt_wait_for 3 grep -q "npt-hello-still-patched $$" /tmp/received
npt_check delivered_after_refusal grep -q "npt-hello-still-patched $$" /tmp/received

# --- forced: restored while bound, with a warning from the tool and the kernel ------
npt_dmesg_mark
netpoll-trace unpatch eth0 --force --json >/tmp/forced.out 2>/tmp/forced.err
forced_rc=$?
cat /tmp/forced.out /tmp/forced.err
forced_unpatch() {
    test $forced_rc -eq 0 && npt_json_has /tmp/forced.out dev=eth0 orig_ops=virtnet_netdev owner=virtio_net module_unloaded=true &&
        grep -q 'may stall' /tmp/forced.err && ! test -d /sys/module/netpoll_patch
}
npt_check forced_unpatch forced_unpatch
npt_expect_dmesg forced_unpatch_logged 'netpoll_patch: eth0: forced unpatch while netpoll is attached'
# Patching again while netconsole is bound is fine: the hook only adds what netpoll wants.
npt_check repatched_while_bound netpoll-trace patch eth0 --module $KO

# --- unpatch: original ops back (traced), netconsole keeps working --------------
rmmod netconsole
rmmod emulate_pre419
flood_start unpatch
netpoll-trace unpatch eth0 >/tmp/unpatch.out
flood_stop unpatch
cat /tmp/unpatch.out
npt_check flood_across_unpatch flood_ok unpatch
netpoll-trace watch --wait-all --json -- modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/ >/tmp/unpatched.json 2>/tmp/unpatched.err
cat /tmp/unpatched.json
unpatch_restores() {
    grep -q 'restored eth0: ops virtnet_netdev \[virtio_net\]' /tmp/unpatch.out &&
        npt_json_has /tmp/unpatched.json fn=__netpoll_setup ops_symbol=virtnet_netdev has_poll_controller=false
}
npt_check unpatch_restores unpatch_restores
npt_check traffic_unpatched ping -c 3 -W 5 10.99.0.2
echo "<2>npt-hello-unpatched $$" >/dev/kmsg
npt_wait_for 3 grep -q "npt-hello-unpatched $$" /tmp/received
npt_check delivered_after_unpatch grep -q "npt-hello-unpatched $$" /tmp/received
rmmod netconsole

# --- a patched device deleted while patched: no oops, no leaked reference --------
modprobe dummy
ip link add d0 type dummy
refcnt_before=$(cat /sys/module/dummy/refcnt)
netpoll-trace patch d0 --module $KO --json >/tmp/d0.json
cat /tmp/d0.json
npt_check patch_json npt_json_has /tmp/d0.json dev=d0 orig_ops=dummy_netdev_ops owner=dummy hook=napi
d0_copy=$(sed -n 's/.*"copy":\([0-9]*\).*/\1/p' /tmp/d0.json)
refcnt_patched=$(cat /sys/module/dummy/refcnt)
npt_dmesg_mark
ip link del d0
netpoll-trace status | tee /tmp/status2.out
echo "dummy refcnt: before $refcnt_before, patched $refcnt_patched, after delete $(cat /sys/module/dummy/refcnt)"
# The module restored the ops on unregister, said so, and the kernel said nothing worse.
deleted_cleanly() {
    npt_dmesg_since_mark >/tmp/del.dmesg
    cat /tmp/del.dmesg
    grep -q 'netpoll_patch: d0: device is being unregistered, restoring its ops' /tmp/del.dmesg &&
        ! grep -qE 'BUG:|Oops|WARNING:|general protection|refcount' /tmp/del.dmesg
}
npt_check delete_patched_device sh -c "test $refcnt_patched -eq $((refcnt_before + 1)) && test \$(cat /sys/module/dummy/refcnt) -eq $refcnt_before && grep -q 'no device patched' /tmp/status2.out"
npt_check deleted_cleanly deleted_cleanly
# The copy d0 used outlives d0 (a reader outside every RCU flavour may still hold it),
# unpublished and kept; a new device with the same ops gets that same copy back.
kept_after_delete=$(cat /sys/module/netpoll_patch/parameters/kept)
ip link add d0 type dummy
echo d0 >/sys/module/netpoll_patch/parameters/patch
state_repatched=$(cat /sys/module/netpoll_patch/parameters/state)
kept_repatched=$(cat /sys/module/netpoll_patch/parameters/kept)
echo "d0's copy: $d0_copy; kept after delete: $kept_after_delete; state after re-patch: $state_repatched; kept then: $kept_repatched"
copy_kept_and_reused() {
    test -n "$d0_copy" && test "$kept_after_delete" = "copy=$d0_copy orig_ops=dummy_netdev_ops" &&
        echo "$state_repatched" | grep -q "^d0 .* hook=napi copy=$d0_copy\$" && test -z "$kept_repatched"
}
npt_check copy_kept_and_reused copy_kept_and_reused
echo d0 >/sys/module/netpoll_patch/parameters/unpatch
ip link del d0
rmmod netpoll_patch
npt_check module_unloaded sh -c "! test -d /sys/module/netpoll_patch && test \$(cat /sys/module/dummy/refcnt) -eq $refcnt_before"

kill $recv 2>/dev/null
