// SPDX-License-Identifier: GPL-2.0
/*
 * npt_netdev: TEST ONLY. Does to a network device what the kernel does in paths the lab
 * cannot drive on demand, then stays loaded doing nothing (rmmod it to run it again).
 *
 *   insmod npt_netdev.ko poll=bond0 times=5
 *	calls netpoll_poll_dev(bond0) 5 times, as netpoll's transmit does when the TX
 *	queue is busy: interrupts off, under RCU. A bond's poll controller polls each slave
 *	with netpoll_poll_dev from inside (4.19+), so every call nests one per up slave.
 *   insmod npt_netdev.ko show=eth0.100
 *	prints "npt-netdev: eth0.100 at <address> ifindex <n>", so a scenario can tell
 *	whether a re-created device landed at a freed one's address.
 *
 * netpoll_poll_dev is exported since 4.19; the lab's kernels are newer.
 */
#include <linux/errno.h>
#include <linux/irqflags.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/netdevice.h>
#include <linux/netpoll.h>
#include <linux/rcupdate.h>
#include <net/net_namespace.h>

static char *poll;
module_param(poll, charp, 0444);
MODULE_PARM_DESC(poll, "a device to poll as netpoll does (it must carry a netpoll)");

static int times = 1;
module_param(times, int, 0444);
MODULE_PARM_DESC(times, "how many netpoll_poll_dev calls (1-1000)");

static char *show;
module_param(show, charp, 0444);
MODULE_PARM_DESC(show, "a device whose address and ifindex to print");

static int npt_poll(const char *name)
{
	struct net_device *dev;
	unsigned long flags;
	int i;

	if (times < 1 || times > 1000)
		return -EINVAL;
	dev = dev_get_by_name(&init_net, name);
	if (!dev)
		return -ENODEV;
	if (!rcu_access_pointer(dev->npinfo)) {
		pr_err("npt-netdev: %s has no netpoll\n", name);
		dev_put(dev);
		return -EINVAL;
	}
	for (i = 0; i < times; i++) {
		/*
		 * As __netpoll_send_skb calls it: interrupts off (so an RCU-bh and RCU-sched
		 * read-side section for npinfo) inside rcu_read_lock.
		 */
		rcu_read_lock();
		local_irq_save(flags);
		netpoll_poll_dev(dev);
		local_irq_restore(flags);
		rcu_read_unlock();
	}
	pr_info("npt-netdev: polled %s %d time(s)\n", name, times);
	dev_put(dev);
	return 0;
}

static int npt_show(const char *name)
{
	struct net_device *dev = dev_get_by_name(&init_net, name);

	if (!dev)
		return -ENODEV;
	pr_info("npt-netdev: %s at %px ifindex %d\n", name, dev, dev->ifindex);
	dev_put(dev);
	return 0;
}

static int __init npt_netdev_init(void)
{
	int err = 0;

	if (!poll && !show)
		return -EINVAL;
	if (poll)
		err = npt_poll(poll);
	if (!err && show)
		err = npt_show(show);
	return err;
}

static void __exit npt_netdev_exit(void)
{
}

module_init(npt_netdev_init);
module_exit(npt_netdev_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("TEST ONLY: poll a device as netpoll does; print a device's address");
MODULE_AUTHOR("netpoll-trace");
