// SPDX-License-Identifier: GPL-2.0
/*
 * emulate_pre419: TEST-ONLY. Makes __netpoll_setup() enforce the rule it had before Linux 4.19:
 * a device whose net_device_ops have no ndo_poll_controller is refused with -ENOTSUPP (524)
 * and the kernel's own message, np_err(np, "%s doesn't support polling, aborting\n", ...).
 * The lab uses it to run the whole "old kernel, new driver" story on kernels it can boot.
 *
 * How: an ftrace_ops with SAVE_REGS|IPMODIFY on __netpoll_setup (found by name). Its callback
 * reads the arguments from the saved registers and, only for a device that would have been
 * refused before 4.19 (no ndo_poll_controller; IFF_DISABLE_NETPOLL devices are refused by
 * the real function anyway), moves the instruction pointer to emulated_refusal(), which has
 * the same signature and returns -ENOTSUPP. Otherwise the real function runs untouched. ftrace
 * calls every ops on the function, so kprobes and kretprobes on __netpoll_setup still fire,
 * and a kretprobe sees the -ENOTSUPP return.
 */
#define pr_fmt(fmt) "emulate_pre419: " fmt

#include <linux/ftrace.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/netpoll.h>
#include <linux/ptrace.h>
#include <linux/version.h>

#ifndef CONFIG_DYNAMIC_FTRACE_WITH_REGS
#error "emulate_pre419 needs CONFIG_DYNAMIC_FTRACE_WITH_REGS"
#endif

static const char target[] = "__netpoll_setup";

#ifdef EMULATE_NETPOLL_HAS_REFILL_WQ
static void emulated_refill_noop(struct work_struct *work)
{
}
#endif

/*
 * Runs instead of __netpoll_setup() for the devices the old kernel refused. It first does what
 * this kernel's __netpoll_setup() does before its own early refusals, because netpoll_setup()'s
 * error path relies on it: newer kernels (6.12 stable, 6.13+) keep a per-netpoll skb pool that
 * __netpoll_setup() initialises and netpoll_setup() purges on failure (purging a zeroed queue
 * is a NULL dereference). Kernels that initialise and fill the pool in netpoll_setup() already
 * did so (then the queue is not zeroed: netpoll users kzalloc struct netpoll) and it is kept.
 */
static noinline int emulated_refusal(struct netpoll *np, struct net_device *ndev)
{
#ifdef EMULATE_NETPOLL_HAS_SKB_POOL
	if (!np->skb_pool.next)
		skb_queue_head_init(&np->skb_pool);
#endif
#ifdef EMULATE_NETPOLL_HAS_REFILL_WQ
	if (!np->refill_wq.func)
		INIT_WORK(&np->refill_wq, emulated_refill_noop);
#endif
	/* np_err() of Linux < 4.19: pr_err("netpoll: %s: " fmt, np->name, ...) */
	printk(KERN_ERR "netpoll: %s: %s doesn't support polling, aborting\n",
	       np->name, np->dev_name);
	return -ENOTSUPP;
}

static bool old_kernel_refuses(const struct net_device *ndev)
{
	const struct net_device_ops *ops;

	if (!ndev || (ndev->priv_flags & IFF_DISABLE_NETPOLL))
		return false; /* the real function deals with these */
	ops = READ_ONCE(ndev->netdev_ops);
	return ops && !ops->ndo_poll_controller;
}

static void notrace emulate_regs(struct pt_regs *regs)
{
	struct net_device *ndev;

	if (!regs)
		return;
	ndev = (struct net_device *)regs->si; /* second argument (x86-64 SysV) */
	if (old_kernel_refuses(ndev))
		regs->ip = (unsigned long)emulated_refusal;
}

#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 11, 0)
static void notrace emulate_cb(unsigned long ip, unsigned long parent_ip,
			       struct ftrace_ops *op, struct pt_regs *regs)
{
	emulate_regs(regs);
}
#define EMULATE_FLAGS (FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY)
#else
static void notrace emulate_cb(unsigned long ip, unsigned long parent_ip,
			       struct ftrace_ops *op, struct ftrace_regs *fregs)
{
	emulate_regs(ftrace_get_regs(fregs));
}
/* Since 5.11 ftrace protects an ops from recursion only when asked to. */
#define EMULATE_FLAGS (FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_RECURSION)
#endif

static struct ftrace_ops emulate_ops = {
	.func = emulate_cb,
	.flags = EMULATE_FLAGS,
};

static int __init emulate_init(void)
{
	char buf[sizeof(target)];
	int err;

	memcpy(buf, target, sizeof(target)); /* ftrace_set_filter() wants a writable buffer */
	err = ftrace_set_filter(&emulate_ops, buf, strlen(buf), 1);
	if (err) {
		pr_err("cannot filter ftrace on %s (error %d)\n", target, err);
		return err;
	}
	err = register_ftrace_function(&emulate_ops);
	if (err) {
		pr_err("cannot register the ftrace hook on %s (error %d; another IPMODIFY user such as livepatch or a BPF trampoline?)\n",
		       target, err);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 1, 0)
		ftrace_free_filter(&emulate_ops);
#endif
		return err;
	}
	pr_warn("EMULATION: __netpoll_setup now requires ndo_poll_controller, as before Linux 4.19 (test only)\n");
	return 0;
}

static void __exit emulate_exit(void)
{
	unregister_ftrace_function(&emulate_ops);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 1, 0)
	ftrace_free_filter(&emulate_ops);
#endif
	pr_info("emulation removed: __netpoll_setup behaves as on this kernel again\n");
}

module_init(emulate_init);
module_exit(emulate_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("TEST ONLY: emulate pre-4.19 __netpoll_setup (requires ndo_poll_controller)");
MODULE_AUTHOR("netpoll-trace");
