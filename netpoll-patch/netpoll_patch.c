// SPDX-License-Identifier: GPL-2.0
/*
 * netpoll_patch: give a network device an empty ndo_poll_controller at run time.
 *
 * Before Linux 4.19, __netpoll_setup() refused any device whose net_device_ops had no
 * ndo_poll_controller ("doesn't support polling, aborting", -ENOTSUPP = 524). Drivers built for
 * 4.19+ dropped the hook (NAPI drivers do not need it: netpoll polls their NAPI contexts), so on
 * an old kernel netconsole cannot start on them. This module installs, per named device, a
 * private copy of the device's ops whose only difference is an empty ndo_poll_controller.
 *
 * Safety rules (see README.md):
 *  - Everything runs under RTNL. The copy is published with one release store, and replaced
 *    back the same way; a copy is freed only after every reader of the old pointer is done
 *    (wait_for_ops_readers: all RCU flavours, also before 4.20) and only if the device
 *    still points at it. If someone else replaced the ops meanwhile, they are left alone.
 *  - Devices with IFF_DISABLE_NETPOLL are never patched: their driver says netpoll cannot work.
 *  - The module owning the original ops is pinned while the device is patched, and so is this
 *    module itself: it cannot be unloaded (and so cannot restore anything) while a device
 *    depends on its copy; userspace's unload after the last unpatch cannot race a new patch.
 *  - A device with netpoll attached (netconsole) is never unpatched on request: before 4.19
 *    netpoll_poll_dev() returns without polling when the hook is missing, so the live user
 *    would stall. Detach netpoll first (rmmod netconsole, or disable its target), or
 *    write the name to unpatch_force, which warns in the kernel log.
 *  - A netdevice notifier restores the ops when the device is unregistered (or leaves the
 *    namespace); module exit restores every device.
 *
 * Interface (/sys/module/netpoll_patch/parameters/):
 *   devices  (load time, 0444) comma-separated names; all are patched or init fails
 *   patch    (0200) write a device name to patch it
 *   unpatch  (0200) write a device name to restore it (-EBUSY while netpoll is attached)
 *   unpatch_force (0200) the same, even while netpoll is attached
 *   state    (0400) one line per patched device, the ops by name (no addresses anywhere):
 *            <name> ifindex=<n> orig_ops=<symbol|?> owner=<module|vmlinux>
 */
#define pr_fmt(fmt) "netpoll_patch: " fmt

#include <linux/kallsyms.h>
#include <linux/kobject.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/rcupdate.h>
#include <linux/rtnetlink.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/version.h>
#include <net/net_namespace.h>

#ifndef CONFIG_NET_POLL_CONTROLLER
#error "netpoll_patch needs a kernel built with CONFIG_NET_POLL_CONTROLLER (netpoll)"
#endif

struct np_patch {
	struct list_head list;
	struct net_device *dev;
	const struct net_device_ops *orig;
	struct net_device_ops *copy;
	struct module *owner; /* NULL: the ops belong to the kernel image */
};

/* All of the following are protected by RTNL. */
static LIST_HEAD(patches);
static bool ready; /* true between a successful init and the start of exit */

static void netpoll_patch_poll_controller(struct net_device *dev)
{
	/* Empty on purpose: netpoll polls the device's NAPI contexts itself. */
}

static struct np_patch *find_patch(const struct net_device *dev)
{
	struct np_patch *p;

	list_for_each_entry(p, &patches, list)
		if (p->dev == dev)
			return p;
	return NULL;
}

/*
 * The module that owns @addr, with a reference taken, in *@owner (NULL: not in a module).
 * __module_address() is not exported to modules (since 5.9), so the module's name comes from
 * kallsyms and the module itself from its /sys/module kobject, which keeps struct module alive
 * while we hold it (module teardown waits for the kobject's last reference).
 */
static int get_owner(unsigned long addr, struct module **owner)
{
	char sym[KSYM_SYMBOL_LEN];
	struct module_kobject *mk;
	struct kobject *kobj;
	char *open, *close;
	int err = 0;

	*owner = NULL;
	sprint_symbol(sym, addr);
	close = strrchr(sym, ']');
	open = strrchr(sym, '[');
	if (!open || !close || close < open || close[1] != '\0')
		return 0; /* no "[module]" suffix: built into the kernel image */
	*close = '\0';
	open++;
	/* A build id may follow the name: "[name buildid]". */
	close = strchr(open, ' ');
	if (close)
		*close = '\0';

	kobj = kset_find_obj(THIS_MODULE->mkobj.kobj.kset, open);
	if (!kobj) {
		pr_err("owner %s of %ps not found in /sys/module\n", open, (void *)addr);
		return -ENOENT;
	}
	mk = container_of(kobj, struct module_kobject, kobj);
	if (!mk->mod)
		err = 0; /* built-in "module" (parameters only): nothing to pin */
	else if (try_module_get(mk->mod))
		*owner = mk->mod;
	else
		err = -EBUSY; /* the owner is being unloaded */
	kobject_put(kobj);
	return err;
}

/*
 * Waits until no CPU can still be using an ops table we just unpublished. dev->netdev_ops is
 * read without a lock of its own; the readers we race with, and what protects each:
 *  - the transmit path (__dev_queue_xmit -> ndo_start_xmit): rcu_read_lock_bh();
 *  - netpoll (netpoll_poll_dev, netpoll_send_skb_on_dev): interrupts off;
 *  - NAPI and the receive path: softirq context; dev_get_stats() via sysfs: dev_base_lock
 *    held for reading (preemption off); other callers: rcu_read_lock();
 *  - ethtool, rtnetlink and ioctls: RTNL, which we hold, so none is in flight.
 * From 4.20 on, the RCU flavours are one: synchronize_rcu() (synchronize_net()) waits for
 * rcu_read_lock(), rcu_read_lock_bh(), and preemption-, BH- or interrupt-disabled regions.
 * Before 4.20 a preemptible kernel's synchronize_rcu() waits for rcu_read_lock() readers
 * only, so the BH and sched flavours need their own grace periods.
 */
static void wait_for_ops_readers(void)
{
	synchronize_net();
#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 20, 0)
	synchronize_rcu_bh();
	synchronize_sched();
#endif
}

static const char *owner_name(const struct module *owner)
{
	return owner ? owner->name : "vmlinux";
}

static int patch_dev(const char *name)
{
	const struct net_device_ops *orig;
	struct net_device_ops *copy;
	struct net_device *dev;
	struct module *owner;
	struct np_patch *p;
	int err;

	ASSERT_RTNL();
	dev = __dev_get_by_name(&init_net, name);
	if (!dev) {
		pr_err("%s: no such device in the initial network namespace\n", name);
		return -ENODEV;
	}
	if (find_patch(dev)) {
		pr_err("%s: already patched by netpoll_patch\n", name);
		return -EALREADY;
	}
	if (dev->priv_flags & IFF_DISABLE_NETPOLL) {
		pr_err("%s: driver disabled netpoll on this device (IFF_DISABLE_NETPOLL); netpoll cannot work here, not patching\n",
		       name);
		return -EOPNOTSUPP;
	}
	orig = dev->netdev_ops;
	if (!orig) {
		pr_err("%s: device has no net_device_ops\n", name);
		return -EINVAL;
	}
	if (orig->ndo_poll_controller) {
		pr_err("%s: ops %ps already have ndo_poll_controller %ps; nothing to do\n",
		       name, orig, orig->ndo_poll_controller);
		return -EEXIST;
	}

	err = get_owner((unsigned long)orig, &owner);
	/* ops in dynamically allocated memory: the functions tell who owns the code */
	if (!err && !owner && orig->ndo_start_xmit)
		err = get_owner((unsigned long)orig->ndo_start_xmit, &owner);
	if (err) {
		pr_err("%s: cannot pin the module owning ops %ps (error %d)\n", name, orig, err);
		return err;
	}

	p = kzalloc(sizeof(*p), GFP_KERNEL);
	copy = kmemdup(orig, sizeof(*orig), GFP_KERNEL);
	if (!p || !copy) {
		kfree(p);
		kfree(copy);
		module_put(owner);
		pr_err("%s: out of memory\n", name);
		return -ENOMEM;
	}
	copy->ndo_poll_controller = netpoll_patch_poll_controller;
	/* Our copy points at our hook: stay loaded while any device uses it. */
	__module_get(THIS_MODULE);
	p->dev = dev;
	p->orig = orig;
	p->copy = copy;
	p->owner = owner;
	list_add_tail(&p->list, &patches);

	/* The copy's contents must be visible before the pointer to it. */
	smp_store_release(&dev->netdev_ops, (const struct net_device_ops *)copy);
	pr_info("%s: installed empty ndo_poll_controller (ops %ps -> private copy)\n", name, orig);
	return 0;
}

/*
 * Puts the original ops back on p->dev and frees p. @force: the device is going away or the
 * module is being unloaded, so the entry must go even when someone else replaced the ops
 * (then their ops are left alone and our copy is leaked, with its hook cleared, since it may
 * still be reachable through theirs). Without @force that case is refused with -EBUSY.
 */
static int restore(struct np_patch *p, bool force)
{
	struct net_device *dev = p->dev;
	const struct net_device_ops *now;

	ASSERT_RTNL();
	now = READ_ONCE(dev->netdev_ops);
	if (now == p->copy) {
		smp_store_release(&dev->netdev_ops, p->orig);
		wait_for_ops_readers(); /* no reader can still be using the copy */
		kfree(p->copy);
		pr_info("%s: restored original ops %ps\n", dev->name, p->orig);
	} else if (!force) {
		pr_err("%s: ops were replaced by someone else (now %ps); leaving them alone, still patched\n",
		       dev->name, now);
		return -ESTALE;
	} else {
		/*
		 * Not ours any more: do not touch them. Our copy may still be reached through
		 * the new ops, so it is never freed; its hook points into this module, which may
		 * be about to go away, so clear it and wait for pollers (they run with
		 * interrupts off: the sched flavour, which wait_for_ops_readers() covers on
		 * every kernel).
		 */
		WRITE_ONCE(p->copy->ndo_poll_controller, NULL);
		wait_for_ops_readers();
		pr_warn("%s: ops were replaced by someone else (now %ps); left them alone and leaked our copy\n",
			dev->name, now);
	}
	module_put(p->owner);
	list_del(&p->list);
	kfree(p);
	module_put(THIS_MODULE);
	return 0;
}

static int unpatch_dev_as(const char *name, bool force)
{
	struct net_device *dev;
	struct np_patch *p;

	ASSERT_RTNL();
	dev = __dev_get_by_name(&init_net, name);
	if (!dev) {
		pr_err("%s: no such device in the initial network namespace\n", name);
		return -ENODEV;
	}
	p = find_patch(dev);
	if (!p) {
		pr_err("%s: not patched by netpoll_patch\n", name);
		return -ENOENT;
	}
	/* npinfo is set and cleared under RTNL, which we hold. */
	if (rtnl_dereference(dev->npinfo)) {
		if (!force) {
			pr_err("%s: netpoll is attached (netconsole?): without our ndo_poll_controller it would stop polling this device; detach it first (rmmod netconsole, or disable its target), still patched\n",
			       name);
			return -EBUSY;
		}
		pr_warn("%s: forced unpatch while netpoll is attached: before 4.19 netpoll stops polling this device, so netconsole output on it may stall\n",
			name);
	}
	return restore(p, false);
}

static int unpatch_dev(const char *name)
{
	return unpatch_dev_as(name, false);
}

static int unpatch_dev_forced(const char *name)
{
	return unpatch_dev_as(name, true);
}

static void restore_all(void)
{
	struct np_patch *p, *tmp;

	ASSERT_RTNL();
	list_for_each_entry_safe(p, tmp, &patches, list)
		restore(p, true);
}

static int netdev_event(struct notifier_block *nb, unsigned long event, void *ptr)
{
	struct net_device *dev = netdev_notifier_info_to_dev(ptr);
	struct np_patch *p;

	/* Also sent when the device moves to another namespace: unpatch then too. */
	if (event != NETDEV_UNREGISTER)
		return NOTIFY_DONE;
	p = find_patch(dev);
	if (p) {
		pr_info("%s: device is being unregistered, restoring its ops\n", dev->name);
		restore(p, true);
	}
	return NOTIFY_DONE;
}

static struct notifier_block netdev_nb = {
	.notifier_call = netdev_event,
};

/* A device name from a sysfs write ("eth0\n") into @name; -EINVAL if it cannot be one. */
static int parse_name(const char *val, char name[IFNAMSIZ])
{
	size_t len;

	val = skip_spaces(val);
	len = strcspn(val, " \t\n");
	if (len == 0 || len >= IFNAMSIZ || val[len + strspn(val + len, " \t\n")] != '\0')
		return -EINVAL;
	memcpy(name, val, len);
	name[len] = '\0';
	return 0;
}

static int run_op(const char *val, int (*op)(const char *name))
{
	char name[IFNAMSIZ];
	int err;

	err = parse_name(val, name);
	if (err) {
		pr_err("expected one device name, got \"%s\"\n", val);
		return err;
	}
	rtnl_lock();
	if (!ready) {
		pr_err("%s: module is not ready (use devices= at load time)\n", name);
		err = -EBUSY;
	} else {
		err = op(name);
	}
	rtnl_unlock();
	return err;
}

static int patch_set(const char *val, const struct kernel_param *kp)
{
	return run_op(val, patch_dev);
}

static int unpatch_set(const char *val, const struct kernel_param *kp)
{
	return run_op(val, unpatch_dev);
}

static int unpatch_force_set(const char *val, const struct kernel_param *kp)
{
	return run_op(val, unpatch_dev_forced);
}

/*
 * The original ops by name ("virtnet_netdev"), never by address: the state is readable
 * by root only, but addresses do not belong in it. "?" when kallsyms cannot name it
 * (%ps then falls back to the raw address).
 */
static void ops_name(char *buf, size_t len, const void *ops)
{
	char *space;

	snprintf(buf, len, "%ps", ops);
	if (!strncmp(buf, "0x", 2)) {
		strscpy(buf, "?", len);
		return;
	}
	space = strchr(buf, ' '); /* " [module]": the owner has its own field */
	if (space)
		*space = '\0';
}

static int state_get(char *buffer, const struct kernel_param *kp)
{
	char sym[KSYM_SYMBOL_LEN];
	struct np_patch *p;
	int len = 0;

	rtnl_lock();
	list_for_each_entry(p, &patches, list) {
		ops_name(sym, sizeof(sym), p->orig);
		len += scnprintf(buffer + len, PAGE_SIZE - len, "%s ifindex=%d orig_ops=%s owner=%s\n",
				 p->dev->name, p->dev->ifindex, sym, owner_name(p->owner));
	}
	rtnl_unlock();
	return len;
}

static const struct kernel_param_ops patch_ops = {
	.set = patch_set,
};

static const struct kernel_param_ops unpatch_ops = {
	.set = unpatch_set,
};

static const struct kernel_param_ops unpatch_force_ops = {
	.set = unpatch_force_set,
};

static const struct kernel_param_ops state_ops = {
	.get = state_get,
};

static char *devices;
module_param(devices, charp, 0444);
MODULE_PARM_DESC(devices, "comma-separated devices to patch at load (all or nothing)");
module_param_cb(patch, &patch_ops, NULL, 0200);
MODULE_PARM_DESC(patch, "write a device name: install an empty ndo_poll_controller on it");
module_param_cb(unpatch, &unpatch_ops, NULL, 0200);
MODULE_PARM_DESC(unpatch, "write a device name: restore its original ops (refused while netpoll is attached)");
module_param_cb(unpatch_force, &unpatch_force_ops, NULL, 0200);
MODULE_PARM_DESC(unpatch_force, "write a device name: restore its original ops even while netpoll is attached");
module_param_cb(state, &state_ops, NULL, 0400);
MODULE_PARM_DESC(state, "patched devices: <name> ifindex=<n> orig_ops=<symbol> owner=<module|vmlinux>");

static int patch_list(const char *list)
{
	char *buf, *cur, *tok;
	int err = 0;

	buf = kstrdup(list, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	cur = buf;
	while (!err && (tok = strsep(&cur, ",")) != NULL) {
		tok = strim(tok);
		if (!*tok)
			continue;
		if (strlen(tok) >= IFNAMSIZ) {
			pr_err("%s: not a device name (too long)\n", tok);
			err = -EINVAL;
		} else {
			err = patch_dev(tok);
		}
	}
	kfree(buf);
	return err;
}

static int __init netpoll_patch_init(void)
{
	int err;

	/* First, so that no patched device can be unregistered unnoticed. */
	err = register_netdevice_notifier(&netdev_nb);
	if (err)
		return err;

	rtnl_lock();
	err = devices ? patch_list(devices) : 0;
	if (err)
		restore_all(); /* all or nothing */
	else
		ready = true;
	rtnl_unlock();

	if (err) {
		pr_err("devices=%s: not all could be patched (error %d); none left patched\n",
		       devices, err);
		unregister_netdevice_notifier(&netdev_nb);
	}
	return err;
}

static void __exit netpoll_patch_exit(void)
{
	rtnl_lock();
	ready = false;
	restore_all();
	rtnl_unlock();
	/* Replays NETDEV_UNREGISTER for every device; the list is empty by now. */
	unregister_netdevice_notifier(&netdev_nb);
}

module_init(netpoll_patch_init);
module_exit(netpoll_patch_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Install an empty ndo_poll_controller on named devices so pre-4.19 netpoll accepts them");
MODULE_AUTHOR("netpoll-trace");
