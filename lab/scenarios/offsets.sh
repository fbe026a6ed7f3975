#!/bin/sh
# Offsets without the kernel's BTF, never guessed. The BTF is read first (offsets --json),
# then hidden under a tmpfs; the same offsets must then come, field for field, from
# netpoll_offsets.o (compiled by netpoll-patch's kbuild from this kernel's headers, never
# loaded) and from a BTFHub-style <release>.btf.tar.xz that xtask made of this kernel's own
# BTF. With the header offsets, watch reports a real failure with every field (a dummy
# device without an address) and, under the emulated pre-4.19 rule, diagnoses
# missing_poll_controller, which needs the ops read through those offsets; the archive
# does the same. With no source at all, the message names the three sources; an object
# installed where the patch module is found on its own, and check names it.
# nics: virtio
# variants: legacy
# timeout: 300
# checks: btf_offsets btf_hidden headers_source headers_equal_btf archive_is_kernel_btf archive_source archive_equal_btf reduced_names_sources default_path_found check_names_source dkms_path_found no_address_ready no_address_full_fields emulated_refusal headers_diagnose archive_diagnose btf_restored
. /lib.sh

OBJ=/lib/kmods/netpoll_offsets.o
ARCHIVE=/lib/btfhub/$NPT_RELEASE.btf.tar.xz
# The "offsets" object of `offsets --json` (one line, keys sorted).
offsets_of() { sed -n 's/.*"offsets":\({[^}]*}\).*/\1/p' "$1"; }
# offsets NAME ARGS...: runs `netpoll-trace offsets --json ARGS`, timed, into /tmp/NAME.*
offsets() {
    _name=$1
    shift
    _t0=$(npt_uptime_cs)
    netpoll-trace offsets --json "$@" >/tmp/$_name.json 2>/tmp/$_name.err
    echo $? >/tmp/$_name.rc
    echo "--- offsets $* (exit $(cat /tmp/$_name.rc), $(($(npt_uptime_cs) - _t0))0 ms)"
    cat /tmp/$_name.err /tmp/$_name.json
}
# Where netconsole sets netpoll up itself (7.3+) struct netpoll has no addresses and the
# target's come from netconsole's module BTF, which is split over the kernel's: with that
# hidden they are unknown (null, with the reason), never from the headers (the struct is
# private to netconsole.c). Those are compared apart: vmlinux's own offsets must agree.
own_offsets() {
    if npt_has netconsole_sets_up; then
        offsets_of "$1" | sed -E 's/"(netpoll\.(remote_ip|remote_port|local_port|ipv6)|netconsole_target\.[a-z0-9_]+)":[^,}]*,?//g; s/,}/}/'
    else
        offsets_of "$1"
    fi
}
same_offsets() { test -n "$(own_offsets /tmp/btf.json)" && test "$(own_offsets /tmp/btf.json)" = "$(own_offsets "$1")"; }
# rc_ok NAME: `offsets` exited 0; or, where netconsole sets netpoll up itself and the
# kernel's BTF is hidden, 1 for exactly the target's four addresses, with the reason.
rc_ok() {
    test "$(cat /tmp/$1.rc)" -eq 0 && return
    npt_has netconsole_sets_up && test "$(cat /tmp/$1.rc)" -eq 1 &&
        grep -q '"missing":\["netpoll.remote_ip","netpoll.remote_port","netpoll.local_port","netpoll.ipv6"\]' /tmp/$1.json &&
        grep -q "netconsole's module BTF" /tmp/$1.json
}

# --- the reference: the kernel's own BTF ----------------------------------------------
offsets btf
btf_offsets() {
    test "$(cat /tmp/btf.rc)" -eq 0 && grep -q '"source":"kernel_btf"' /tmp/btf.json &&
        test -n "$(offsets_of /tmp/btf.json)" && ! offsets_of /tmp/btf.json | grep -q null
}
npt_check btf_offsets btf_offsets
cp /sys/kernel/btf/vmlinux /tmp/vmlinux.btf
mount -t tmpfs none /sys/kernel/btf
npt_check btf_hidden sh -c "! test -e /sys/kernel/btf/vmlinux && test -s /tmp/vmlinux.btf"

# --- from the kernel's headers ---------------------------------------------------------
offsets headers --offsets $OBJ
headers_source() {
    rc_ok headers && grep -q '"source":"headers"' /tmp/headers.json &&
        grep -q "\"detail\":\"$NPT_RELEASE\"" /tmp/headers.json && grep -q "\"path\":\"$OBJ\"" /tmp/headers.json
}
npt_check headers_source headers_source
npt_check headers_equal_btf same_offsets /tmp/headers.json

# --- from a BTFHub-style archive -------------------------------------------------------
mkdir -p /tmp/unpacked
unxz -c $ARCHIVE >/tmp/archive.tar && tar -xf /tmp/archive.tar -C /tmp/unpacked
ls -l $ARCHIVE /tmp/unpacked
npt_check archive_is_kernel_btf cmp /tmp/unpacked/$NPT_RELEASE.btf /tmp/vmlinux.btf
offsets archive --btf $ARCHIVE
archive_source() {
    rc_ok archive && grep -q '"source":"btf_archive"' /tmp/archive.json &&
        grep -q "\"detail\":\"$NPT_RELEASE.btf\"" /tmp/archive.json
}
npt_check archive_source archive_source
npt_check archive_equal_btf same_offsets /tmp/archive.json

# --- no source: reduced mode names the three ------------------------------------------
offsets none
reduced_names_sources() {
    test "$(cat /tmp/none.rc)" -eq 1 && grep -q '"source":null' /tmp/none.json &&
        grep -q '/sys/kernel/btf/vmlinux' /tmp/none.json && grep -q -- '--btf FILE' /tmp/none.json &&
        grep -q "$NPT_RELEASE.btf.tar.xz" /tmp/none.json && grep -q 'M=$PWD/netpoll-patch' /tmp/none.json &&
        grep -q -- '--offsets FILE' /tmp/none.json
}
npt_check reduced_names_sources reduced_names_sources

# --- found where the patch module is, without a flag ----------------------------------
EXTRA=/lib/modules/$NPT_RELEASE/extra
mkdir -p $EXTRA
cp $OBJ $EXTRA/
offsets found
found_at() { rc_ok $1 && grep -q "\"path\":\"$2/netpoll_offsets.o\"" /tmp/$1.json && same_offsets /tmp/$1.json; }
npt_check default_path_found found_at found $EXTRA
netpoll-trace check >/tmp/check.out 2>&1
cat /tmp/check.out
npt_check check_names_source grep -qF "struct offsets from $EXTRA/netpoll_offsets.o (built from the kernel headers of $NPT_RELEASE)" /tmp/check.out
rm $EXTRA/netpoll_offsets.o

# --- where the netpoll-patch-dkms package's dkms puts it, without a flag ----------------
DKMS=/lib/modules/$NPT_RELEASE/updates/dkms
mkdir -p $DKMS
cp $OBJ $DKMS/
offsets dkms
npt_check dkms_path_found found_at dkms $DKMS
rm $DKMS/netpoll_offsets.o

# --- watch with the header offsets: a real failure, every field -----------------------
modprobe dummy
ip link add d0 type dummy
ip link set d0 up
netpoll-trace watch --wait-all --json --offsets $OBJ -- modprobe netconsole netconsole=@/d0,6666@10.99.0.2/ >/tmp/noaddr.json 2>/tmp/noaddr.err
echo "--- watch, d0 without address (exit $?)"; cat /tmp/noaddr.err /tmp/noaddr.json
rmmod netconsole 2>/dev/null
npt_check no_address_ready grep -qF "offsets from $OBJ (built from the kernel headers of $NPT_RELEASE);" /tmp/noaddr.err
# netpoll_setup refuses before __netpoll_setup, from the struct netpoll alone: the device
# and owner names are read through netpoll.dev_name and netpoll.name (null in reduced mode).
no_address_full_fields() {
    if npt_has netconsole_sets_up; then
        # netconsole's own set-up: where its target's netpoll is needs the module's BTF,
        # split over the kernel's (hidden here): the cause and errno, the device unknown.
        npt_json_has /tmp/noaddr.json type=diagnosis cause=no_ip_address errno=EDESTADDRREQ &&
            npt_json_has /tmp/noaddr.json type=setup fn=$NPT_OUTER ret=-89 &&
            grep -q "netconsole's module BTF" /tmp/noaddr.err
        return
    fi
    npt_json_has /tmp/noaddr.json type=diagnosis dev=d0 cause=no_ip_address netpoll=netconsole errno=EDESTADDRREQ &&
        npt_json_has /tmp/noaddr.json type=setup fn=$NPT_OUTER dev=d0 netpoll=netconsole ret=-89 driver=dummy
}
npt_check no_address_full_fields no_address_full_fields

# --- the emulated pre-4.19 rule: missing_poll_controller through those offsets --------
npt_ip eth0 10.99.0.1/24
insmod /lib/kmods/emulate_pre419.ko
npt_dmesg_mark
netpoll-trace watch --wait-all --json --offsets $OBJ -- modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/ >/tmp/emul.json 2>/tmp/emul.err
echo "--- watch, emulated rule, header offsets (exit $?)"; cat /tmp/emul.err /tmp/emul.json
rmmod netconsole 2>/dev/null
npt_expect_dmesg emulated_refusal 'netpoll: netconsole: eth0 doesn.t support polling, aborting'
eth0_ifindex=$(cat /sys/class/net/eth0/ifindex)
diagnosed() {
    npt_json_has "$1" type=diagnosis dev=eth0 cause=missing_poll_controller \
        'remedies=["runtime_patch","upgrade_kernel","rebuild_driver_with_poll_controller"]' errno=ENOTSUPP &&
        npt_json_has "$1" fn=__netpoll_setup dev=eth0 ifindex=$eth0_ifindex ret=-524 driver=virtio_net \
            ops_symbol=virtnet_netdev has_poll_controller=false netpoll_disabled=false
}
npt_check headers_diagnose diagnosed /tmp/emul.json
netpoll-trace watch --wait-all --json --btf $ARCHIVE -- modprobe netconsole netconsole=@/eth0,6666@10.99.0.2/ >/tmp/emul_archive.json 2>/tmp/emul_archive.err
echo "--- watch, emulated rule, BTFHub archive (exit $?)"; cat /tmp/emul_archive.err /tmp/emul_archive.json
rmmod netconsole 2>/dev/null
archive_diagnose() {
    grep -qF "offsets from $ARCHIVE (BTFHub archive, $NPT_RELEASE.btf);" /tmp/emul_archive.err && diagnosed /tmp/emul_archive.json
}
npt_check archive_diagnose archive_diagnose
rmmod emulate_pre419

umount /sys/kernel/btf
npt_check btf_restored cmp /sys/kernel/btf/vmlinux /tmp/vmlinux.btf
