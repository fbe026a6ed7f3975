/* floor: what the benchmark's libbpf reference loader (floor.c) and its BPF object
 * (floor.bpf.c) share: the traced functions' ids, the counter layout and the event. */
#ifndef FLOOR_H
#define FLOOR_H

/* The three functions netpoll-trace watch traces, in this order everywhere. */
#define FN_NETPOLL_SETUP 0
#define FN_INNER_SETUP 1 /* __netpoll_setup */
#define FN_POLL_DEV 2    /* netpoll_poll_dev */
#define FN_COUNT 3

/* The full floor's further functions (--also: the send path, tear-downs, console write):
 * slots of generic programs, one function each; their start times share one key per
 * thread (FN_EXTRA). */
#define MAX_EXTRA 8
#define FN_EXTRA 3

/* counts[]: entries at FN, returns at FN_COUNT + FN; then events emitted and entries
 * whose start time could not be stored; then the extra functions' entries and returns. */
#define CNT_EVENTS (2 * FN_COUNT)
#define CNT_NO_SLOT (2 * FN_COUNT + 1)
#define CNT_EXTRA_CALLS (2 * FN_COUNT + 2)
#define CNT_EXTRA_RETURNS (2 * FN_COUNT + 3)
#define CNT_LEN (2 * FN_COUNT + 4)

/* Calls in flight whose start time is kept (one per thread and function). */
#define MAX_INFLIGHT 1024

/* One finished set-up call (netpoll_setup or __netpoll_setup), 32 bytes. */
struct floor_event {
	unsigned long long duration_ns;
	unsigned int pid;
	unsigned int tid;
	int ret;
	unsigned int fn;
	unsigned long long ts_ns;
};

#endif
