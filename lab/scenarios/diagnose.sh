#!/bin/sh
# Every cause a real kernel can show us, diagnosed live by `watch --json`, with the
# kernel as the oracle: sysfs and kallsyms for what the tool reads, dmesg for what
# failed (each "aborting" line the kernel logs has exactly one diagnosis, and no
# diagnosis exists without one).
# nics: virtio e1000
# timeout: 400
# variants: legacy
# checks: virtio_ok e1000_ok poll_controller_truth no_such_device_suggests slave_device bond_two_slaves netkit_disabled netkit_lower_device json_schema dmesg_oracle
. /lib.sh

ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up
ip addr add 10.99.0.3/24 dev eth1
ip link set eth1 up

# run NAME TARGET: netconsole on TARGET under `watch --json`; output in /tmp/NAME.*
run() {
    netpoll-trace watch --wait-all --json -- modprobe netconsole "netconsole=$2" >/tmp/$1.json 2>/tmp/$1.err
    echo $? >/tmp/$1.rc
    rmmod netconsole 2>/dev/null
    echo "--- $1: netconsole=$2 (watch exit $(cat /tmp/$1.rc))"
    cat /tmp/$1.err /tmp/$1.json
}

# --- two drivers, two ops tables -------------------------------------------------
run virtio @/eth0,6666@10.99.0.2/
npt_check virtio_ok npt_json_has /tmp/virtio.json fn=__netpoll_setup dev=eth0 ret=0 driver=virtio_net ops_symbol=virtnet_netdev ops_module=virtio_net
run e1000 @/eth1,6666@10.99.0.2/
npt_check e1000_ok npt_json_has /tmp/e1000.json fn=__netpoll_setup dev=eth1 ret=0 driver=e1000 ops_symbol=e1000_netdev_ops ops_module=e1000
# has_poll_controller as the drivers really have it: their hooks are kernel symbols.
truth() { grep -qw "$1" /proc/kallsyms && echo true || echo false; }
e1000_pc=$(truth e1000_netpoll)
virtio_pc=$(truth virtnet_netpoll)
echo "kallsyms: e1000_netpoll=$e1000_pc virtnet_netpoll=$virtio_pc"
poll_controller_truth() {
    npt_json_has /tmp/e1000.json fn=__netpoll_setup has_poll_controller=$e1000_pc &&
        npt_json_has /tmp/virtio.json fn=__netpoll_setup has_poll_controller=$virtio_pc
}
npt_check poll_controller_truth poll_controller_truth

# --- a name that does not exist: the real names are suggested --------------------
run nosuch @/eth7,6666@10.99.0.2/
npt_check no_such_device_suggests npt_json_has /tmp/nosuch.json type=diagnosis dev=eth7 cause=no_such_device \
    'remedies=["check_interface_name","use_other_device"]' 'explanation~Existing interfaces: ' explanation~eth0 errno=ENODEV

# --- bonding: a slave is refused; the bond itself sets up both slaves -----------
modprobe bonding
[ -d /sys/class/net/bond0 ] || echo +bond0 >/sys/class/net/bonding_masters
ip link set eth1 down
echo +eth1 >/sys/class/net/bond0/bonding/slaves
ip link set bond0 up
run slave @/eth1,6666@10.99.0.2/
npt_check slave_device npt_json_has /tmp/slave.json type=diagnosis dev=eth1 cause=slave_device 'remedies=["use_master_device"]' \
    'explanation~its master bond0' errno=EBUSY

ip addr del 10.99.0.1/24 dev eth0
ip link set eth0 down
echo +eth0 >/sys/class/net/bond0/bonding/slaves
ip addr add 10.99.0.5/24 dev bond0
ip link set bond0 up
echo "bond0 slaves: $(cat /sys/class/net/bond0/bonding/slaves)"
run bond @/bond0,6666@10.99.0.2/
bond_two_slaves() {
    npt_json_none /tmp/bond.json type=diagnosis && npt_json_has /tmp/bond.json fn=__netpoll_setup dev=bond0 depth=1 &&
        npt_json_has /tmp/bond.json dev=eth0 depth=2 ret=0 && npt_json_has /tmp/bond.json dev=eth1 depth=2 ret=0
}
npt_check bond_two_slaves bond_two_slaves

# --- netkit (6.7+): IFF_DISABLE_NETPOLL; and a device stacked on it ------------
if nlhelper netkit-add nk0 nk1 2>/tmp/nk.err; then
    ip addr add 10.99.2.1/24 dev nk0
    ip link set nk0 up
    ip link set nk1 up
    run netkit @/nk0,6666@10.99.2.2/
    npt_check netkit_disabled npt_json_has /tmp/netkit.json type=diagnosis dev=nk0 cause=netpoll_disabled 'remedies=["use_other_device"]' \
        errno=ENOTSUPP ret=-524 "kernel_message=netpoll: netconsole: nk0 doesn't support polling, aborting"
    if ip link add link nk0 name nkv type vlan id 5 2>/dev/null || { modprobe 8021q; ip link add link nk0 name nkv type vlan id 5; }; then
        upper=nkv
    else
        ip link add br0 type bridge 2>/dev/null || brctl addbr br0
        ip link set nk0 master br0 2>/dev/null || brctl addif br0 nk0
        upper=br0
    fi
    ip addr add 10.99.3.1/24 dev $upper
    ip link set $upper up
    run lower @/$upper,6666@10.99.3.2/
    npt_check netkit_lower_device npt_json_has /tmp/lower.json type=diagnosis dev=$upper cause=lower_device_failed \
        "chain=[\"$upper\",\"nk0\"]" errno=ENOTSUPP "kernel_message~nk0 doesn't support polling, aborting"
else
    cat /tmp/nk.err
    npt_skip netkit_disabled "no netkit on $NPT_KERNEL (netkit arrived in 6.7): $(cat /tmp/nk.err)"
    npt_skip netkit_lower_device "no netkit on $NPT_KERNEL (netkit arrived in 6.7)"
fi

# --- every JSON line meets the contract; dmesg is the oracle --------------------
npt_check json_schema sh -c 'for f in /tmp/*.json; do netpoll-trace schema-check $f || exit 1; done'
# 7.3+: netconsole checks the device itself and logs as "netconsole: " (netpoll's own
# refusal still says "netpoll: ").
aborting=$(dmesg | grep -cE '(netpoll|netconsole): .* aborting')
cat /tmp/*.json >/tmp/all.jsonl
diagnoses=$(npt_json_count /tmp/all.jsonl type=diagnosis)
quoted=$(( $(npt_json_count /tmp/all.jsonl type=diagnosis 'kernel_message~"netpoll: ') + \
    $(npt_json_count /tmp/all.jsonl type=diagnosis 'kernel_message~"netconsole: ') ))
echo "kernel aborting lines: $aborting, diagnoses: $diagnoses, quoting the kernel: $quoted"
npt_check dmesg_oracle sh -c "test $aborting -ge 4 && test $aborting -eq $diagnoses && test $quoted -eq $diagnoses"
