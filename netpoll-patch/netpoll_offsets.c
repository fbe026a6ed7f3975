// SPDX-License-Identifier: GPL-2.0
/*
 * netpoll_offsets.o: the struct offsets netpoll-trace's eBPF programs need, computed by
 * the compiler from this kernel's headers, for kernels without BTF. Compile-only, in the
 * style of the kernel's asm-offsets: this object is never linked or loaded. Each value is
 * a global `const unsigned long long npt_<name>` that netpoll-trace reads from the
 * object's ELF symbol table; `npt_uts_release` holds the release the headers are for, so
 * an object built for another kernel is refused. Every member is named here, so a header
 * that lacks one fails the build instead of producing a guess.
 */
#include <linux/version.h>
#include <linux/stddef.h>
#include <linux/netdevice.h>
#include <linux/netpoll.h>
#include <generated/utsrelease.h>

#define NPT_VALUE(name, value)                                  \
	extern const unsigned long long npt_##name;             \
	const unsigned long long npt_##name = (value)

/* Bumped when the meaning of a symbol changes; netpoll-trace refuses other formats. */
NPT_VALUE(format, 1);

extern const char npt_uts_release[];
const char npt_uts_release[] = UTS_RELEASE;

NPT_VALUE(net_device_name, offsetof(struct net_device, name));
NPT_VALUE(net_device_ifindex, offsetof(struct net_device, ifindex));
NPT_VALUE(net_device_netdev_ops, offsetof(struct net_device, netdev_ops));

/*
 * priv_flags is read as a u64 at a byte offset, shifted right by a bit shift. Up to 6.11
 * it is a plain member (unsigned int, later unsigned long long). From 6.12 it is the
 * first member of the struct group priv_flags_fast, a 32-bit bitfield of an unsigned
 * long (`unsigned long priv_flags:32; unsigned long lltx:1;`): offsetof cannot take a
 * bitfield, so its byte offset is the group's and, being the group's first bitfield on a
 * little-endian machine, its shift is 0. A kernel whose layout does not match its
 * version fails to compile here (no such member), never yields a wrong offset.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
_Static_assert(sizeof(((struct net_device *)0)->priv_flags_fast) == sizeof(unsigned long),
	       "priv_flags_fast is no longer one unsigned long: priv_flags' position is unknown");
NPT_VALUE(net_device_priv_flags, offsetof(struct net_device, priv_flags_fast));
NPT_VALUE(net_device_priv_flags_shift, 0);
#else
NPT_VALUE(net_device_priv_flags, offsetof(struct net_device, priv_flags));
NPT_VALUE(net_device_priv_flags_shift, 0);
#endif

#ifdef CONFIG_NET_POLL_CONTROLLER
NPT_VALUE(net_device_ops_ndo_poll_controller, offsetof(struct net_device_ops, ndo_poll_controller));
NPT_VALUE(net_device_ops_ndo_netpoll_setup, offsetof(struct net_device_ops, ndo_netpoll_setup));
#endif

NPT_VALUE(netpoll_dev_name, offsetof(struct netpoll, dev_name));
NPT_VALUE(netpoll_name, offsetof(struct netpoll, name));
NPT_VALUE(iff_disable_netpoll, IFF_DISABLE_NETPOLL);

/* The send path (netpoll_send_udp, the skb transmit) and tear-downs. */
NPT_VALUE(netpoll_dev, offsetof(struct netpoll, dev));
NPT_VALUE(net_device_state, offsetof(struct net_device, state));
NPT_VALUE(netpoll_info_txq, offsetof(struct netpoll_info, txq));
NPT_VALUE(sk_buff_head_qlen, offsetof(struct sk_buff_head, qlen));
NPT_VALUE(__link_state_start, __LINK_STATE_START);
NPT_VALUE(__link_state_present, __LINK_STATE_PRESENT);
/*
 * The target's addresses and ports. In 2026 (7.3 in Debian) they moved out of struct netpoll
 * into netconsole's private struct netconsole_target, which no header declares: there
 * these four symbols are left out (Kbuild sets NPT_NETPOLL_NO_ADDRESSES when the headers'
 * linux/netpoll.h names no remote_port), and netpoll-trace reads them from BTF or not at all.
 */
#ifndef NPT_NETPOLL_NO_ADDRESSES
NPT_VALUE(netpoll_remote_ip, offsetof(struct netpoll, remote_ip));
NPT_VALUE(netpoll_remote_port, offsetof(struct netpoll, remote_port));
NPT_VALUE(netpoll_local_port, offsetof(struct netpoll, local_port));
NPT_VALUE(netpoll_ipv6, offsetof(struct netpoll, ipv6));
#endif
NPT_VALUE(net_device_dismantle, offsetof(struct net_device, dismantle));
#ifdef CONFIG_NETPOLL
NPT_VALUE(net_device_npinfo, offsetof(struct net_device, npinfo));
#endif
