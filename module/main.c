// SPDX-License-Identifier: GPL-2.0
/*
 * objcg_shadow: a shadow copy of memcg kernel-memory accounting.
 *
 * Load order: tree, debugfs, hooks, then the walk over existing memcgs (so
 * nothing created meanwhile is missed).  Unload undoes it in reverse and
 * waits for every handler in flight before freeing anything.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include "osh_module.h"

struct osh_memcg_tree osh_tree;

static unsigned int osh_keep_freed = 256;

static int osh_keep_freed_set(const char *val, const struct kernel_param *kp)
{
	unsigned int v;

	if (kstrtouint(val, 0, &v) || v > OSH_KEEP_FREED_MAX) {
		pr_err("keep_freed=%s is invalid: accepted values are integers 0..%u\n",
		       val, OSH_KEEP_FREED_MAX);
		return -EINVAL;
	}
	*(unsigned int *)kp->arg = v;
	return 0;
}

static const struct kernel_param_ops osh_keep_freed_ops = {
	.set = osh_keep_freed_set,
	.get = param_get_uint,
};

module_param_cb(keep_freed, &osh_keep_freed_ops, &osh_keep_freed, 0444);
MODULE_PARM_DESC(keep_freed,
		 "freed memcg records kept for display in debugfs (0..65536, default 256)");

static int __init osh_init(void)
{
	int err;

	osh_tree_init(&osh_tree, osh_keep_freed);

	err = osh_debugfs_init();
	if (err)
		goto destroy_tree;

	err = osh_hooks_attach();
	if (err)
		goto remove_debugfs;

	err = osh_discover_memcgs();
	if (err) {
		pr_err("cannot record the existing memory cgroups: error %d\n",
		       err);
		goto detach_hooks;
	}
	pr_info("loaded, version %s\n", OSH_VERSION);
	return 0;

detach_hooks:
	osh_hooks_detach();
	osh_paths_stop();
remove_debugfs:
	osh_debugfs_exit();
destroy_tree:
	osh_tree_destroy(&osh_tree);
	rcu_barrier();
	return err;
}

static void __exit osh_exit(void)
{
	osh_hooks_detach();
	osh_paths_stop();
	osh_debugfs_exit();
	osh_tree_destroy(&osh_tree);
	/* records are freed by RCU callbacks that live in this module */
	rcu_barrier();
	pr_info("unloaded\n");
}

module_init(osh_init);
module_exit(osh_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("objcg_shadow developers");
MODULE_DESCRIPTION("Shadow memcg kernel-memory accounting for A/B design comparison");
MODULE_VERSION(OSH_VERSION);
