// SPDX-License-Identifier: GPL-2.0
/*
 * netpoll_patch: give a network device an ndo_poll_controller at run time.
 *
 * Before Linux 4.19, __netpoll_setup() refused any device whose net_device_ops had no
 * ndo_poll_controller ("doesn't support polling, aborting", -ENOTSUPP = 524). Drivers built for
 * 4.19+ dropped the hook (NAPI drivers do not need it there: netpoll polls their NAPI contexts),
 * so on an old kernel netconsole cannot start on them. This module installs, per named device, a
 * private copy of the device's ops whose only difference is an ndo_poll_controller that does
 * what those drivers' hooks did: schedule the device's NAPI contexts, which the pre-4.19
 * netpoll polls only when they are scheduled (see netpoll_patch_poll_controller()).
 *
 * Safety rules (see README.md):
 *  - Everything runs under RTNL. The copy is published with one release store, and replaced
 *    back the same way. A copy that was ever published is never freed: readers of
 *    dev->netdev_ops outside every RCU flavour exist (sysfs iflink -> dev_get_iflink() calls
 *    ndo_get_iflink with preemption on), and on a preemptible kernel such a reader outlives any
 *    grace period. Unpatching clears the copy's hook, waits for the pollers that may be inside
 *    it (wait_for_ops_readers: all RCU flavours, also before 4.20) and keeps the copy for reuse
 *    when a device with the same ops is patched again; at module exit kept copies are leaked.
 *    If someone else replaced the ops meanwhile, they are left alone.
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
 *            <name> ifindex=<n> orig_ops=<symbol|?> owner=<module|vmlinux> hook=napi copy=<id>
 *   kept     (0400) one line per unpublished copy kept for reuse: copy=<id> orig_ops=<symbol|?>
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

/*
 * An ops copy. Once published it is never freed (see the top of this file): while a device uses
 * it, it hangs off that device's np_patch; afterwards, with its hook cleared, on `kept`.
 */
struct np_copy {
	struct list_head list; /* on `kept` while no device uses it */
	unsigned int id;       /* for `state`/`kept`: which copy, without an address */
	const struct net_device_ops *orig; /* the table it copies */
	struct net_device_ops ops;
};

struct np_patch {
	struct list_head list;
	struct net_device *dev;
	const struct net_device_ops *orig;
	struct np_copy *copy;
	struct module *owner; /* NULL: the ops belong to the kernel image */
};

/* All of the following are protected by RTNL. */
static LIST_HEAD(patches);
static LIST_HEAD(kept);
static unsigned int copies_made;
static bool ready; /* true between a successful init and the start of exit */

/*
 * What the drivers' own hooks did before 4.19 (virtio_net's and ena 1.x's called napi_schedule()
 * on each queue): before 4.19 poll_one_napi() returns at once for a context that is not
 * scheduled ("if (!test_bit(NAPI_STATE_SCHED, &napi->state))", removed by 4.19's "netpoll: do
 * not test NAPI_STATE_SCHED in poll_one_napi()"), so an empty hook gets __netpoll_setup() past
 * its check but, with interrupts off (a panic), nothing reaps TX completions: once the TX ring is
 * full every later message is queued to npinfo->txq and never sent. The kernels that demand a
 * hook are exactly those: the two changes came in one series, and a kernel that accepts a
 * hookless device never makes the tool install this.
 *
 * State of a context: napi_schedule() does nothing for a context being disabled
 * (napi_schedule_prep() tests NAPI_STATE_DISABLE) or already scheduled (owned by the softirq,
 * busy polling or netpoll: poll_napi() polls only scheduled ones before 4.19), and masks
 * interrupts itself.
 *
 * Readers we race with: netpoll_poll_dev() calls this with interrupts off (the sched RCU flavour
 * before 4.20, plain RCU after), and so does a bond's poll controller for its slaves
 * (rcu_read_lock_bh() and interrupts off in netpoll_poll_dev()); dev->napi_list is walked as
 * poll_napi() walks it, under the same protection (netif_napi_del() waits for it with
 * synchronize_net() before the context is freed).
 *
 * Cost (Song Liu's concern behind the 4.19 change): the scheduled contexts run on this CPU's
 * softirq until they complete, so one CPU can end up owning every queue of a loaded NIC. netpoll
 * calls the hook only when a transmit failed (netpoll_send_skb_on_dev()'s retry loop, i.e. a
 * full TX ring), so on a healthy host it is rare; its price is paid when netconsole is
 * already in trouble.
 */
static void netpoll_patch_poll_controller(struct net_device *dev)
{
	struct napi_struct *napi;

	list_for_each_entry_rcu(napi, &dev->napi_list, dev_list)
		napi_schedule(napi);
}

static struct np_patch *find_patch(const struct net_device *dev)
{
	struct np_patch *p;

	list_for_each_entry(p, &patches, list)
		if (p->dev == dev)
			return p;
	return NULL;
}

#if LINUX_VERSION_CODE < KERNEL_VERSION(4, 9, 0)
/*
 * The module that owns @addr, with a reference taken, in *@owner (NULL: not in a module).
 * Before 4.9 kset_find_obj() is not exported (4.4), but __module_address() is (until 5.9).
 * The module list is an RCU-sched list: entries are unlinked with list_del_rcu() and freed
 * only after synchronize_sched() (free_module()), so with preemption off (an RCU-sched
 * read-side section, what __module_address() asserts) the module cannot be freed under us;
 * try_module_get() then fails for one already going, and holds it from then on.
 */
static int get_owner(unsigned long addr, struct module **owner)
{
	struct module *mod;
	int err = 0;

	*owner = NULL;
	preempt_disable();
	mod = __module_address(addr);
	if (mod && try_module_get(mod))
		*owner = mod;
	else if (mod)
		err = -EBUSY; /* the owner is being unloaded */
	preempt_enable();
	return err;
}
#else
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
#endif

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
 * What this cannot wait for: readers outside every flavour (sysfs iflink -> dev_get_iflink(),
 * preemptible). None of them calls ndo_poll_controller, so after this wait no CPU is in our
 * hook; the copy they may hold is never freed.
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

/* Whether @a and @b are the same table apart from ndo_poll_controller. */
static bool same_but_hook(const struct net_device_ops *a, const struct net_device_ops *b)
{
	const size_t at = offsetof(struct net_device_ops, ndo_poll_controller);
	const size_t end = at + sizeof(a->ndo_poll_controller);

	return !memcmp(a, b, at) &&
	       !memcmp((const char *)a + end, (const char *)b + end, sizeof(*a) - end);
}

/*
 * A copy of @orig with our hook, ready to publish: a kept copy of the same table when there is
 * one (it may still be read by a straggler, who then sees either NULL or our hook, both valid),
 * else a new one. NULL when out of memory.
 */
static struct np_copy *take_copy(const struct net_device_ops *orig)
{
	struct np_copy *c;

	list_for_each_entry(c, &kept, list) {
		/* The same table, still holding what it held (its module was not replaced). */
		if (c->orig == orig && same_but_hook(&c->ops, orig)) {
			list_del_init(&c->list);
			WRITE_ONCE(c->ops.ndo_poll_controller, netpoll_patch_poll_controller);
			return c;
		}
	}
	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		return NULL;
	INIT_LIST_HEAD(&c->list);
	c->id = ++copies_made;
	c->orig = orig;
	c->ops = *orig;
	c->ops.ndo_poll_controller = netpoll_patch_poll_controller;
	return c;
}

static void ops_name(char *buf, size_t len, const void *ops);

static int patch_dev(const char *name)
{
	const struct net_device_ops *orig;
	char sym[KSYM_SYMBOL_LEN];
	struct np_copy *copy;
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
	copy = p ? take_copy(orig) : NULL;
	if (!p || !copy) {
		kfree(p);
		module_put(owner);
		pr_err("%s: out of memory\n", name);
		return -ENOMEM;
	}
	/* Our copy points at our hook: stay loaded while any device uses it. */
	__module_get(THIS_MODULE);
	p->dev = dev;
	p->orig = orig;
	p->copy = copy;
	p->owner = owner;
	list_add_tail(&p->list, &patches);

	/* The copy's contents must be visible before the pointer to it. */
	smp_store_release(&dev->netdev_ops, (const struct net_device_ops *)&copy->ops);
	ops_name(sym, sizeof(sym), orig);
	pr_info("%s: installed a NAPI-scheduling ndo_poll_controller (ops %s [%s] -> private copy %u)\n",
		name, sym, owner_name(owner), copy->id);
	return 0;
}

/*
 * Puts the original ops back on p->dev and frees p (never the copy: see the top of this file).
 * @force: the device is going away or the module is being unloaded, so the entry must go even
 * when someone else replaced the ops. Without @force that case is refused with -ESTALE.
 */
static int restore(struct np_patch *p, bool force)
{
	struct net_device *dev = p->dev;
	const struct net_device_ops *now;

	ASSERT_RTNL();
	now = READ_ONCE(dev->netdev_ops);
	if (now == &p->copy->ops) {
		smp_store_release(&dev->netdev_ops, p->orig);
		/*
		 * Readers that loaded the copy may keep using it for as long as they like (the copy
		 * stays), but none may still be inside our hook once this module can go: clear it,
		 * then wait for the pollers (interrupts off: covered on every kernel).
		 */
		WRITE_ONCE(p->copy->ops.ndo_poll_controller, NULL);
		wait_for_ops_readers();
		list_add(&p->copy->list, &kept);
		pr_info("%s: restored original ops %ps (copy %u kept, unpublished)\n", dev->name,
			p->orig, p->copy->id);
		module_put(THIS_MODULE);
	} else if (!force) {
		pr_err("%s: ops were replaced by someone else (now %ps); leaving them alone, still patched\n",
		       dev->name, now);
		return -ESTALE;
	} else {
		/*
		 * Not ours any more: do not touch them. Whoever replaced them may have copied ours,
		 * hook included (DSA's master overlay copies the current ops), so our copy stays as
		 * it is, and so does this module: its reference on itself is never dropped, and it
		 * stays loaded until reboot rather than leave a copy pointing at unloaded code.
		 */
		pr_warn("%s: ops were replaced by someone else (now %ps); left them alone, keeping copy %u and this module until reboot\n",
			dev->name, now, p->copy->id);
	}
	module_put(p->owner);
	list_del(&p->list);
	kfree(p);
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
		len += scnprintf(buffer + len, PAGE_SIZE - len,
				 "%s ifindex=%d orig_ops=%s owner=%s hook=napi copy=%u\n",
				 p->dev->name, p->dev->ifindex, sym, owner_name(p->owner), p->copy->id);
	}
	rtnl_unlock();
	return len;
}

static int kept_get(char *buffer, const struct kernel_param *kp)
{
	char sym[KSYM_SYMBOL_LEN];
	struct np_copy *c;
	int len = 0;

	rtnl_lock();
	list_for_each_entry(c, &kept, list) {
		ops_name(sym, sizeof(sym), c->orig);
		len += scnprintf(buffer + len, PAGE_SIZE - len, "copy=%u orig_ops=%s\n", c->id, sym);
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

static const struct kernel_param_ops kept_ops = {
	.get = kept_get,
};

static char *devices;
module_param(devices, charp, 0444);
MODULE_PARM_DESC(devices, "comma-separated devices to patch at load (all or nothing)");
module_param_cb(patch, &patch_ops, NULL, 0200);
MODULE_PARM_DESC(patch, "write a device name: install a NAPI-scheduling ndo_poll_controller on it");
module_param_cb(unpatch, &unpatch_ops, NULL, 0200);
MODULE_PARM_DESC(unpatch, "write a device name: restore its original ops (refused while netpoll is attached)");
module_param_cb(unpatch_force, &unpatch_force_ops, NULL, 0200);
MODULE_PARM_DESC(unpatch_force, "write a device name: restore its original ops even while netpoll is attached");
module_param_cb(state, &state_ops, NULL, 0400);
MODULE_PARM_DESC(state, "patched devices: <name> ifindex=<n> orig_ops=<symbol> owner=<module|vmlinux> hook=napi copy=<id>");
module_param_cb(kept, &kept_ops, NULL, 0400);
MODULE_PARM_DESC(kept, "ops copies no device uses, kept for reuse (never freed): copy=<id> orig_ops=<symbol>");

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
	struct np_copy *c, *tmp;
	unsigned int n = 0;

	rtnl_lock();
	ready = false;
	restore_all();
	/* Never freed: a reader outside every RCU flavour may still hold one (hooks are cleared). */
	list_for_each_entry_safe(c, tmp, &kept, list) {
		list_del(&c->list);
		n++;
	}
	rtnl_unlock();
	if (n)
		pr_info("leaving %u unpublished ops cop%s allocated (a reader may still hold one)\n",
			n, n == 1 ? "y" : "ies");
	/* Replays NETDEV_UNREGISTER for every device; the list is empty by now. */
	unregister_netdevice_notifier(&netdev_nb);
}

module_init(netpoll_patch_init);
module_exit(netpoll_patch_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Install a NAPI-scheduling ndo_poll_controller on named devices so pre-4.19 netpoll accepts and polls them");
MODULE_AUTHOR("netpoll-trace");
