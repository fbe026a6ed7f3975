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
/*
 * Two more parts of "old kernel, new driver", each off unless asked for (the panic scenario):
 *
 *  - poll=sched: netpoll polls only NAPI contexts that are scheduled, as poll_one_napi() did
 *    before 4.19 ("if (!test_bit(NAPI_STATE_SCHED, &napi->state)) return;"). At the entry of
 *    netpoll_poll_dev() (a kretprobe) every unscheduled context of the device gets a poll_owner
 *    that poll_napi()'s cmpxchg(-1 -> cpu) cannot take, so poll_napi() skips it; a context that
 *    __napi_schedule() schedules meanwhile (the device's ndo_poll_controller, which runs before
 *    poll_napi()) gets -1 back and is polled; the return puts -1 back on the rest. With
 *    interrupts off (a panic) TX completions are then reaped only if the hook schedules NAPI.
 *  - strip=DEV: DEV's ops lose their ndo_poll_controller (a private copy without it is
 *    published, as a driver built for 4.19+ would have it: ena 2.x did exactly this), so a
 *    NIC whose driver still has a hook (e1000) stands in for one that dropped it.
 */
#define pr_fmt(fmt) "emulate_pre419: " fmt

#include <linux/ftrace.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/netpoll.h>
#include <linux/ptrace.h>
#include <linux/rtnetlink.h>
#include <linux/slab.h>
#include <net/net_namespace.h>
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

/* ---- poll=sched ---------------------------------------------------------------------- */

static char *poll = "all";
module_param(poll, charp, 0444);
MODULE_PARM_DESC(poll, "all (this kernel's netpoll, default) or sched (poll only scheduled NAPI contexts, as before 4.19)");

/* A poll_owner no CPU has: poll_napi() and netpoll_poll_lock() only take a context at -1. */
#define NOT_SCHEDULED (-2)

/*
 * Runs where netpoll_poll_dev() runs: interrupts off (netpoll's senders), so the device's NAPI
 * list is walked as poll_napi() walks it, under the same protection.
 */
static int poll_dev_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct net_device *dev = (struct net_device *)regs->di;
	struct napi_struct *napi;

	*(struct net_device **)ri->data = dev;
	list_for_each_entry_rcu(napi, &dev->napi_list, dev_list)
		if (!test_bit(NAPI_STATE_SCHED, &napi->state))
			cmpxchg(&napi->poll_owner, -1, NOT_SCHEDULED);
	return 0;
}

static int poll_dev_return(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct net_device *dev = *(struct net_device **)ri->data;
	struct napi_struct *napi;

	list_for_each_entry_rcu(napi, &dev->napi_list, dev_list)
		cmpxchg(&napi->poll_owner, NOT_SCHEDULED, -1);
	return 0;
}

static struct kretprobe poll_dev_probe = {
	.kp.symbol_name = "netpoll_poll_dev",
	.entry_handler = poll_dev_entry,
	.handler = poll_dev_return,
	.data_size = sizeof(struct net_device *),
	.maxactive = 64,
};

/* Scheduled while netpoll_poll_dev() runs (by the device's hook): poll it after all. */
static int napi_schedule_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct napi_struct *napi = (struct napi_struct *)regs->di;

	cmpxchg(&napi->poll_owner, NOT_SCHEDULED, -1);
	return 0;
}

static struct kprobe napi_schedule_probe = {
	.symbol_name = "__napi_schedule",
	.pre_handler = napi_schedule_pre,
};

static bool poll_sched;

static int poll_register(void)
{
	int err;

	if (!strcmp(poll, "all"))
		return 0;
	if (strcmp(poll, "sched")) {
		pr_err("poll=%s: expected all or sched\n", poll);
		return -EINVAL;
	}
	err = register_kprobe(&napi_schedule_probe);
	if (err) {
		pr_err("cannot probe __napi_schedule (error %d)\n", err);
		return err;
	}
	err = register_kretprobe(&poll_dev_probe);
	if (err) {
		pr_err("cannot probe netpoll_poll_dev (error %d)\n", err);
		unregister_kprobe(&napi_schedule_probe);
		return err;
	}
	poll_sched = true;
	pr_warn("EMULATION: netpoll polls only scheduled NAPI contexts, as before Linux 4.19 (test only)\n");
	return 0;
}

static void poll_unregister(void)
{
	if (!poll_sched)
		return;
	unregister_kretprobe(&poll_dev_probe);
	unregister_kprobe(&napi_schedule_probe);
}

/* ---- strip=DEV ------------------------------------------------------------------------ */

static char *strip;
module_param(strip, charp, 0444);
MODULE_PARM_DESC(strip, "a device whose ops lose their ndo_poll_controller (a driver built for 4.19+)");

static struct net_device_ops *stripped;
static const struct net_device_ops *stripped_from;

static int strip_register(void)
{
	struct net_device *dev;
	int err = 0;

	if (!strip)
		return 0;
	rtnl_lock();
	dev = __dev_get_by_name(&init_net, strip);
	if (!dev) {
		pr_err("strip=%s: no such device\n", strip);
		err = -ENODEV;
	} else if (!dev->netdev_ops->ndo_poll_controller) {
		pr_err("strip=%s: its ops have no ndo_poll_controller already\n", strip);
		err = -EEXIST;
	} else {
		stripped = kmemdup(dev->netdev_ops, sizeof(*stripped), GFP_KERNEL);
		if (!stripped) {
			err = -ENOMEM;
		} else {
			stripped->ndo_poll_controller = NULL;
			stripped_from = dev->netdev_ops;
			smp_store_release(&dev->netdev_ops, (const struct net_device_ops *)stripped);
			pr_warn("EMULATION: %s's ops have no ndo_poll_controller now (%ps without it; test only)\n",
				strip, stripped_from);
		}
	}
	rtnl_unlock();
	return err;
}

static void strip_unregister(void)
{
	struct net_device *dev;

	if (!stripped)
		return;
	rtnl_lock();
	dev = __dev_get_by_name(&init_net, strip);
	if (dev && dev->netdev_ops == stripped)
		smp_store_release(&dev->netdev_ops, stripped_from);
	rtnl_unlock();
	/* The copy is never freed: a reader may still hold it (test only, once per load). */
}

/* ---- module -------------------------------------------------------------------------- */

static bool use_ftrace;
static void emulate_remove(void);

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
	err = poll_register();
	if (!err)
		err = strip_register();
	if (err) {
		poll_unregister();
		emulate_remove();
	}
	return err;
}

static void emulate_remove(void)
{
	if (use_ftrace) {
		unregister_ftrace_function(&emulate_ops);
		emu_ftrace_free();
	} else {
		unregister_kprobe(&body_probe);
	}
}

static void __exit emulate_exit(void)
{
	strip_unregister();
	poll_unregister();
	emulate_remove();
	pr_info("emulation removed: __netpoll_setup behaves as on this kernel again\n");
}

module_init(emulate_init);
module_exit(emulate_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("TEST ONLY: emulate pre-4.19 __netpoll_setup (requires ndo_poll_controller)");
MODULE_AUTHOR("netpoll-trace");
