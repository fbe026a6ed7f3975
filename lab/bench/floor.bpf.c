// SPDX-License-Identifier: GPL-2.0
/* floor.bpf.c: the BPF side of the benchmark's libbpf reference loader (floor.c).
 *
 * Entry and return programs on the outer set-up, __netpoll_setup and netpoll_poll_dev, twice:
 * fentry/fexit and kprobe/kretprobe (the loader keeps one set). The sections name
 * netpoll_setup as the outer set-up; the loader attaches every program by function name
 * (floor.c: `--outer`), so the same programs go on netconsole's netcons_netpoll_setup
 * where the module sets netpoll up itself (7.3), found through the module's BTF. Their work is small and
 * close to netpoll-trace watch's: an entry stores its start time per thread and function;
 * a return counts, computes the duration and, for the two set-up functions, sends a
 * 32-byte event through a perf event array. No vmlinux.h: the functions' arguments are
 * opaque pointers, and kprobes read registers through <asm/ptrace.h>'s struct pt_regs. */
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "floor.h"

struct netpoll;
struct net_device;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CNT_LEN);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_INFLIGHT);
	__type(key, __u64); /* tid << 2 | fn */
	__type(value, __u64);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counts, &slot);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline __u64 start_key(__u32 fn)
{
	return ((bpf_get_current_pid_tgid() & 0xffffffff) << 2) | fn;
}

static __always_inline int on_entry(__u32 fn)
{
	__u64 key = start_key(fn), now = bpf_ktime_get_ns();
	count(fn);
	if (bpf_map_update_elem(&starts, &key, &now, BPF_ANY))
		count(CNT_NO_SLOT);
	return 0;
}

static __always_inline int on_return(void *ctx, __u32 fn, int ret)
{
	__u64 key = start_key(fn), now = bpf_ktime_get_ns();
	__u64 *start = bpf_map_lookup_elem(&starts, &key);
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct floor_event e = {};

	count(FN_COUNT + fn);
	if (!start)
		return 0;
	e.duration_ns = now - *start;
	bpf_map_delete_elem(&starts, &key);
	if (fn == FN_POLL_DEV)
		return 0;
	e.pid = pid_tgid >> 32;
	e.tid = (__u32)pid_tgid;
	e.ret = ret;
	e.fn = fn;
	e.ts_ns = now;
	if (!bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e)))
		count(CNT_EVENTS);
	return 0;
}

/* fentry/fexit: the arguments as the kernel's BTF types them; fexit also gets the return. */
SEC("fentry/netpoll_setup")
int BPF_PROG(setup_fentry, struct netpoll *np)
{
	return on_entry(FN_NETPOLL_SETUP);
}

SEC("fexit/netpoll_setup")
int BPF_PROG(setup_fexit, struct netpoll *np, int ret)
{
	return on_return(ctx, FN_NETPOLL_SETUP, ret);
}

SEC("fentry/__netpoll_setup")
int BPF_PROG(inner_fentry, struct netpoll *np, struct net_device *ndev)
{
	return on_entry(FN_INNER_SETUP);
}

SEC("fexit/__netpoll_setup")
int BPF_PROG(inner_fexit, struct netpoll *np, struct net_device *ndev, int ret)
{
	return on_return(ctx, FN_INNER_SETUP, ret);
}

SEC("fentry/netpoll_poll_dev")
int BPF_PROG(poll_fentry, struct net_device *dev)
{
	return on_entry(FN_POLL_DEV);
}

SEC("fexit/netpoll_poll_dev")
int BPF_PROG(poll_fexit, struct net_device *dev)
{
	return on_return(ctx, FN_POLL_DEV, 0);
}

/* kprobe/kretprobe: the same work; the return value from the return register. */
SEC("kprobe/netpoll_setup")
int BPF_KPROBE(setup_kprobe)
{
	return on_entry(FN_NETPOLL_SETUP);
}

SEC("kretprobe/netpoll_setup")
int BPF_KRETPROBE(setup_kretprobe, int ret)
{
	return on_return(ctx, FN_NETPOLL_SETUP, ret);
}

SEC("kprobe/__netpoll_setup")
int BPF_KPROBE(inner_kprobe)
{
	return on_entry(FN_INNER_SETUP);
}

SEC("kretprobe/__netpoll_setup")
int BPF_KRETPROBE(inner_kretprobe, int ret)
{
	return on_return(ctx, FN_INNER_SETUP, ret);
}

SEC("kprobe/netpoll_poll_dev")
int BPF_KPROBE(poll_kprobe)
{
	return on_entry(FN_POLL_DEV);
}

SEC("kretprobe/netpoll_poll_dev")
int BPF_KRETPROBE(poll_kretprobe)
{
	return on_return(ctx, FN_POLL_DEV, 0);
}

/* The full floor (--also): generic slots, each retargeted by the loader to one further
 * function before load (fentry/fexit through BTF, kprobes by name; netconsole's functions
 * by kprobe, as the tool traces a module's). An entry counts and stores its start time; a
 * return counts and computes the duration: about the tool's per-call work on the send path
 * (it also updates a per-device statistics entry) without events. */
static __always_inline int extra_entry(void)
{
	__u64 key = start_key(FN_EXTRA), now = bpf_ktime_get_ns();
	count(CNT_EXTRA_CALLS);
	if (bpf_map_update_elem(&starts, &key, &now, BPF_ANY))
		count(CNT_NO_SLOT);
	return 0;
}

static __always_inline int extra_return(void)
{
	__u64 key = start_key(FN_EXTRA), now = bpf_ktime_get_ns();
	__u64 *start = bpf_map_lookup_elem(&starts, &key);
	count(CNT_EXTRA_RETURNS);
	if (start && now > *start)
		bpf_map_delete_elem(&starts, &key);
	return 0;
}

#define EXTRA_SLOT(i)                                                   \
	SEC("fentry/netpoll_poll_dev")                                  \
	int BPF_PROG(x##i##_fentry)                                     \
	{                                                               \
		return extra_entry();                                   \
	}                                                               \
	SEC("fexit/netpoll_poll_dev")                                   \
	int BPF_PROG(x##i##_fexit)                                      \
	{                                                               \
		return extra_return();                                  \
	}                                                               \
	SEC("kprobe/netpoll_poll_dev")                                  \
	int BPF_KPROBE(x##i##_kprobe)                                   \
	{                                                               \
		return extra_entry();                                   \
	}                                                               \
	SEC("kretprobe/netpoll_poll_dev")                               \
	int BPF_KRETPROBE(x##i##_kretprobe)                             \
	{                                                               \
		return extra_return();                                  \
	}

/* MAX_EXTRA of them. */
EXTRA_SLOT(0)
EXTRA_SLOT(1)
EXTRA_SLOT(2)
EXTRA_SLOT(3)
EXTRA_SLOT(4)
EXTRA_SLOT(5)
EXTRA_SLOT(6)
EXTRA_SLOT(7)

char LICENSE[] SEC("license") = "GPL";
