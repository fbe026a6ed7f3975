// SPDX-License-Identifier: GPL-2.0
/*
 * emulate_pre419: TEST-ONLY. Makes __netpoll_setup() enforce the rule it had before Linux 4.19:
 * a device whose net_device_ops have no ndo_poll_controller is refused with -ENOTSUPP (524)
 * and the kernel's own message, np_err(np, "%s doesn't support polling, aborting\n", ...).
 * The lab uses it to run the whole "old kernel, new driver" story on kernels it can boot.
 *
 * How, so that tracers on __netpoll_setup keep working (module parameter `mode`):
 *
 *  - mode=body (default): a kprobe on the first instruction after the function's ftrace site
 *    (its `call __fentry__`), i.e. a breakpoint in the body, not an ftrace user. Its
 *    pre-handler reads the arguments (np = di, ndev = si: unchanged since entry) and, only for
 *    a device that would have been refused before 4.19 (no ndo_poll_controller; devices with
 *    IFF_DISABLE_NETPOLL are refused by the real function anyway), moves the instruction
 *    pointer to emulated_refusal(), which has the same signature and returns -ENOTSUPP; the
 *    pre-handler returns 1 so the kprobe resumes there. Otherwise the real function runs
 *    untouched. The entry stays free for every tracer: kprobes/kretprobes (a kretprobe has
 *    already hooked the return, so it sees -524) and BPF fentry/fexit (a fexit trampoline
 *    calls the body, hits the breakpoint and sees -524). A post_handler keeps the kprobe from
 *    being optimised into a jump, which would ignore the new instruction pointer.
 *  - mode=ftrace: an ftrace_ops with SAVE_REGS|IPMODIFY on the function entry doing the same
 *    redirect from the ftrace callback. kprobes/kretprobes still fire, but it conflicts with
 *    BPF trampolines: on 5.10 fentry/fexit on __netpoll_setup fail with EBUSY (tracers must
 *    fall back to kprobes), and on 6.1 a fexit attached after it hits a kernel bug (WARNING in
 *    arch_ftrace_ops_list_func, ftrace disabled, later oopses). Kept for comparison.
 */
#define pr_fmt(fmt) "emulate_pre419: " fmt

#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/netpoll.h>
#include <linux/ptrace.h>
#include <linux/string.h>
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

static char *mode = "body";
module_param(mode, charp, 0444);
MODULE_PARM_DESC(mode, "body (kprobe after the ftrace site, default) or ftrace (IPMODIFY ftrace_ops on the entry)");

/* ---- mode=body ---------------------------------------------------------------------- */

static int emulate_pre(struct kprobe *p, struct pt_regs *regs)
{
	if (!old_kernel_refuses((struct net_device *)regs->si))
		return 0;
	regs->ip = (unsigned long)emulated_refusal;
	return 1; /* resume at regs->ip, do not single-step the probed instruction */
}

static void emulate_post(struct kprobe *p, struct pt_regs *regs, unsigned long flags)
{
	/* Never does anything; its presence keeps the kprobe from being optimised. */
}

static struct kprobe body_probe = {
	.pre_handler = emulate_pre,
	.post_handler = emulate_post,
};

/* The address of the first instruction after the ftrace site of __netpoll_setup. */
static int find_body(kprobe_opcode_t **addr)
{
	struct kprobe entry = { .symbol_name = target };
	bool on_ftrace;
	int err;

	/* kprobes resolves the entry the way tracers do (past endbr64 where IBT is on). */
	err = register_kprobe(&entry);
	if (err) {
		pr_err("cannot resolve %s with a kprobe (error %d)\n", target, err);
		return err;
	}
	on_ftrace = kprobe_ftrace(&entry);
	*addr = (kprobe_opcode_t *)((unsigned long)entry.addr + MCOUNT_INSN_SIZE);
	unregister_kprobe(&entry);
	if (!on_ftrace) {
		pr_err("%s has no ftrace site at %px: cannot place the probe after it\n", target, entry.addr);
		return -EOPNOTSUPP;
	}
	return 0;
}

static int body_register(void)
{
	kprobe_opcode_t *addr;
	int err;

	err = find_body(&addr);
	if (err)
		return err;
	body_probe.addr = addr;
	err = register_kprobe(&body_probe);
	if (err)
		pr_err("cannot place a kprobe at %pS (error %d)\n", addr, err);
	return err;
}

/* ---- mode=ftrace -------------------------------------------------------------------- */

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

static void emu_ftrace_free(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 1, 0)
	ftrace_free_filter(&emulate_ops);
#endif
}

static int emu_ftrace_register(void)
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
		emu_ftrace_free();
	}
	return err;
}

/* ---- module -------------------------------------------------------------------------- */

static bool use_ftrace;

static int __init emulate_init(void)
{
	int err;

	if (!strcmp(mode, "ftrace"))
		use_ftrace = true;
	else if (strcmp(mode, "body")) {
		pr_err("mode=%s: expected body or ftrace\n", mode);
		return -EINVAL;
	}
	err = use_ftrace ? emu_ftrace_register() : body_register();
	if (err)
		return err;
	pr_warn("EMULATION: __netpoll_setup now requires ndo_poll_controller, as before Linux 4.19 (test only)\n");
	return 0;
}

static void __exit emulate_exit(void)
{
	if (use_ftrace) {
		unregister_ftrace_function(&emulate_ops);
		emu_ftrace_free();
	} else {
		unregister_kprobe(&body_probe);
	}
	pr_info("emulation removed: __netpoll_setup behaves as on this kernel again\n");
}

module_init(emulate_init);
module_exit(emulate_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("TEST ONLY: emulate pre-4.19 __netpoll_setup (requires ndo_poll_controller)");
MODULE_AUTHOR("netpoll-trace");
