// SPDX-License-Identifier: GPL-2.0
/*
 * npt_panic: TEST ONLY. Loading it kills the kernel the way netconsole exists for: interrupts
 * off, a long report, then panic(). Every report line and the final "Kernel panic - not
 * syncing" line must reach a receiver outside the guest; with interrupts off on one CPU only
 * netpoll's own polling reaps the NIC's TX completions once its ring is full.
 *
 *   insmod npt_panic.ko lines=300
 *
 * prints "npt-panic: line N of 300" for N = 1..300 at KERN_EMERG (every console level shows
 * it), then panics with "npt-lab: 300 report lines printed with interrupts off".
 */
#include <linux/irqflags.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/printk.h>

static int lines = 300;
module_param(lines, int, 0444);
MODULE_PARM_DESC(lines, "report lines printed with interrupts off before the panic");

static int __init npt_panic_init(void)
{
	int i;

	if (lines < 0 || lines > 100000)
		return -EINVAL;
	local_irq_disable();
	for (i = 1; i <= lines; i++)
		pr_emerg("npt-panic: line %d of %d (printed with interrupts off)\n", i, lines);
	panic("npt-lab: %d report lines printed with interrupts off", lines);
	return 0;
}

module_init(npt_panic_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("TEST ONLY: a long report with interrupts off, then panic()");
MODULE_AUTHOR("netpoll-trace");
