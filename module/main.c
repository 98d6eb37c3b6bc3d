// SPDX-License-Identifier: GPL-2.0
/*
 * objcg_shadow: a shadow copy of memcg kernel-memory accounting.
 *
 * Load order: check the SLUB layout, set up the tree and the accounting,
 * debugfs, hooks, then walk the memcgs that already exist (so nothing
 * created meanwhile is missed) and start accounting.  Unload undoes it in
 * reverse and waits for every handler in flight before freeing anything.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <objcg_shadow/outbuf.h>
#include "compat.h"
#include "osh_module.h"

struct osh_memcg_tree osh_tree;

static unsigned int osh_keep_freed = 256;
static char osh_designs_param[256] = OSH_DEFAULT_DESIGNS;
static struct osh_design osh_designs[OSH_MAX_DESIGNS];
static int osh_nr_designs;
static bool osh_memcgptr;	/* designs= named memcgptr: run the slab model */
static unsigned int osh_objmap_bits = 10;
static unsigned int osh_pagemap_bits = 8;
static unsigned int osh_taskmap_bits = 8;
static unsigned int osh_observe = 1;
static unsigned int osh_map_growth = 1;
static unsigned int osh_probes_only;
static unsigned int osh_time_handlers;

static int osh_uint_range_set(const char *val, const struct kernel_param *kp,
			      unsigned int lo, unsigned int hi)
{
	unsigned int v;

	if (kstrtouint(val, 0, &v) || v < lo || v > hi) {
		pr_err("%s=%s is invalid: accepted values are integers %u..%u\n",
		       kp->name, val, lo, hi);
		return -EINVAL;
	}
	*(unsigned int *)kp->arg = v;
	return 0;
}

/* A setter accepting @_lo..@_hi and its kernel_param_ops osh_<name>_ops. */
#define OSH_UINT_RANGE_PARAM_OPS(_name, _lo, _hi)				\
static int osh_##_name##_set(const char *val, const struct kernel_param *kp) \
{									\
	return osh_uint_range_set(val, kp, _lo, _hi);			\
}									\
static const struct kernel_param_ops osh_##_name##_ops = {		\
	.set = osh_##_name##_set,					\
	.get = param_get_uint,						\
}

OSH_UINT_RANGE_PARAM_OPS(keep_freed, 0, OSH_KEEP_FREED_MAX);
OSH_UINT_RANGE_PARAM_OPS(objmap_bits, 4, 24);
OSH_UINT_RANGE_PARAM_OPS(pagemap_bits, 4, 22);
OSH_UINT_RANGE_PARAM_OPS(taskmap_bits, 4, 22);
OSH_UINT_RANGE_PARAM_OPS(observe, 0, 1);
OSH_UINT_RANGE_PARAM_OPS(map_growth, 0, 1);
OSH_UINT_RANGE_PARAM_OPS(probes_only, 0, 1);
OSH_UINT_RANGE_PARAM_OPS(time_handlers, 0, 1);

static int osh_designs_set(const char *val, const struct kernel_param *kp)
{
	struct osh_design parsed[OSH_MAX_DESIGNS];
	char err[384];
	int n;

	n = osh_design_parse(parsed, OSH_MAX_DESIGNS, val, err, sizeof(err));
	if (n < 0) {
		pr_err("designs=%s is invalid: %s\n", val, err);
		return -EINVAL;
	}
	memcpy(osh_designs, parsed, sizeof(parsed));
	osh_nr_designs = n;
	return param_set_copystring(val, kp);
}

static const struct kernel_param_ops osh_designs_ops = {
	.set = osh_designs_set,
	.get = param_get_string,
};

static struct kparam_string osh_designs_kps = {
	.string = osh_designs_param,
	.maxlen = sizeof(osh_designs_param),
};

module_param_cb(keep_freed, &osh_keep_freed_ops, &osh_keep_freed, 0444);
MODULE_PARM_DESC(keep_freed,
		 "freed memcg records kept for display in debugfs (0..65536, default 256)");
module_param_cb(designs, &osh_designs_ops, &osh_designs_kps, 0444);
MODULE_PARM_DESC(designs,
		 "comma list of accounting designs run side by side (default "
		 OSH_DEFAULT_DESIGNS ")");
module_param_cb(objmap_bits, &osh_objmap_bits_ops, &osh_objmap_bits, 0444);
MODULE_PARM_DESC(objmap_bits,
		 "log2 of object map buckets of 8 objects at load; it grows with use (4..24, default 10)");
module_param_cb(pagemap_bits, &osh_pagemap_bits_ops, &osh_pagemap_bits, 0444);
MODULE_PARM_DESC(pagemap_bits,
		 "log2 of kmem page map buckets of 8 pages at load; it grows with use (4..22, default 8)");
module_param_cb(taskmap_bits, &osh_taskmap_bits_ops, &osh_taskmap_bits, 0444);
MODULE_PARM_DESC(taskmap_bits,
		 "log2 of task map buckets of 8 tasks at load; it grows with use (4..22, default 8)");
module_param_cb(map_growth, &osh_map_growth_ops, &osh_map_growth, 0444);
MODULE_PARM_DESC(map_growth,
		 "testing: 0 keeps each map at its load size, so a full map drops (and counts) objects; 1: maps grow with use (default)");
module_param_cb(observe, &osh_observe_ops, &osh_observe, 0444);
MODULE_PARM_DESC(observe,
		 "1: count the kernel's own stock operations for the fidelity check (default); 0: skip those kprobes");
module_param_cb(probes_only, &osh_probes_only_ops, &osh_probes_only, 0444);
MODULE_PARM_DESC(probes_only,
		 "1: attach every hook but only count its hits, no accounting (the probes' own cost; whether a fault is the probes' or the handlers'); 0: default");
module_param_cb(time_handlers, &osh_time_handlers_ops, &osh_time_handlers, 0444);
MODULE_PARM_DESC(time_handlers,
		 "1: sum each hook's handler time (sched_clock(); instructions under QEMU -icount) into hooks, for the per-hook cost; 0: default");

/*
 * fail_init=STEP makes that step of the load fail with -ENOMEM after it
 * has done its work, so the unwinding of every step can be tested.
 */
static const char *const osh_init_steps[] = {
	"kmem", "slabmodel", "debugfs", "hooks", "discover", "start",
};

static char osh_fail_init[16];

static int osh_fail_init_set(const char *val, const struct kernel_param *kp)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(osh_init_steps); i++) {
		if (sysfs_streq(val, osh_init_steps[i]))
			return param_set_copystring(osh_init_steps[i], kp);
	}
	pr_err("fail_init=%s is invalid: accepted values are kmem, slabmodel, debugfs, hooks, discover, start\n",
	       val);
	return -EINVAL;
}

static const struct kernel_param_ops osh_fail_init_ops = {
	.set = osh_fail_init_set,
	.get = param_get_string,
};

static struct kparam_string osh_fail_init_kps = {
	.string = osh_fail_init,
	.maxlen = sizeof(osh_fail_init),
};

module_param_cb(fail_init, &osh_fail_init_ops, &osh_fail_init_kps, 0444);
MODULE_PARM_DESC(fail_init,
		 "testing: make a load step fail after it ran (kmem, debugfs, hooks, discover, start)");

/*
 * fail_alloc_every=N fails every Nth allocation of shadow state on the
 * event path (memcg records, design state, objcgs, task states), so tests
 * can check that every failure is counted where it happens.  Armed once
 * the load is done: a failure while recording what exists fails the load
 * (fail_init=discover tests that).
 */
static unsigned int osh_fail_alloc_every;
static bool osh_alloc_faults_armed;
static atomic_long_t osh_alloc_calls;
static atomic_long_t osh_alloc_injected;

OSH_UINT_RANGE_PARAM_OPS(fail_alloc_every, 0, INT_MAX);
module_param_cb(fail_alloc_every, &osh_fail_alloc_every_ops,
		&osh_fail_alloc_every, 0444);
MODULE_PARM_DESC(fail_alloc_every,
		 "testing: fail every Nth shadow-state allocation of the event path (0: never, default)");

void *osh_zalloc(size_t size, gfp_t gfp)
{
	unsigned int every = READ_ONCE(osh_fail_alloc_every);

	if (unlikely(every) && READ_ONCE(osh_alloc_faults_armed) &&
	    atomic_long_inc_return(&osh_alloc_calls) % every == 0) {
		atomic_long_inc(&osh_alloc_injected);
		return NULL;
	}
	return kzalloc(size, gfp);
}

/**
 * osh_fault_dump_stats() - injected allocation failures, for debugfs
 * @ob: output
 */
void osh_fault_dump_stats(struct osh_buf *ob)
{
	osh_buf_printf(ob, "fail_alloc_every=%u\nalloc_failures_injected=%ld\n",
		       osh_fail_alloc_every, atomic_long_read(&osh_alloc_injected));
}

/* The injected failure of @step, or @err_code as it is. */
static int osh_init_step(const char *step, int err_code)
{
	if (err_code || strcmp(osh_fail_init, step))
		return err_code;
	pr_err("fail_init=%s: failing the load at this step\n", step);
	return -ENOMEM;
}

static int __init osh_init(void)
{
	char err[384];
	int err_code;

	if (!osh_nr_designs) {
		osh_nr_designs = osh_design_parse(osh_designs, OSH_MAX_DESIGNS,
						  osh_designs_param, err,
						  sizeof(err));
		if (WARN_ON_ONCE(osh_nr_designs < 0))
			return -EINVAL;
	}
	osh_nr_designs = osh_design_take_slab_layouts(osh_designs,
						      osh_nr_designs,
						      &osh_memcgptr);
	if (!osh_nr_designs) {
		pr_err("designs=%s: memcgptr is compared with the slab layout of an obj_cgroup design: name one too (e.g. %s)\n",
		       osh_designs_param, OSH_REFERENCE_DESIGN);
		return -EINVAL;
	}
	err_code = osh_kernel_verify();
	if (err_code) {
		pr_err("refusing to load: this kernel is not one objcg_shadow verified (built for the %s family; supported: %s)\n",
		       OSH_KERNEL_FAMILY, OSH_SUPPORTED_KERNELS);
		return err_code;
	}

	osh_tree_init(&osh_tree, osh_keep_freed, osh_acct_memcg_release);
	/* a failing osh_kmem_init() frees what it allocated */
	err_code = osh_kmem_init(osh_designs, osh_nr_designs, osh_objmap_bits,
				 osh_pagemap_bits, osh_taskmap_bits, osh_map_growth);
	if (err_code)
		return err_code;
	err_code = osh_init_step("kmem", 0);
	if (err_code)
		goto free_kmem;
	err_code = osh_init_step("slabmodel",
				 osh_memcgptr ? osh_slabmodel_init() : 0);
	if (err_code)
		goto free_kmem;

	err_code = osh_init_step("debugfs", osh_debugfs_init());
	if (err_code)
		goto remove_debugfs;

	/*
	 * A hook attached before one that failed (css_online) may have
	 * queued the path worker: stop it before anything goes away.
	 */
	err_code = osh_init_step("hooks",
				 osh_hooks_attach(osh_observe, osh_probes_only,
						  osh_time_handlers));
	if (err_code)
		goto detach_hooks;

	err_code = osh_init_step("discover", osh_discover_memcgs());
	if (err_code) {
		pr_err("cannot record the existing memory cgroups: error %d\n",
		       err_code);
		goto detach_hooks;
	}
	osh_kmem_discover_tasks();
	err_code = osh_init_step("start", osh_kmem_start());
	if (err_code)
		goto detach_hooks;
	WRITE_ONCE(osh_alloc_faults_armed, true);
	pr_info("loaded, version %s, %d design(s): %s%s\n", OSH_VERSION,
		osh_nr_designs, osh_designs_param,
		osh_probes_only ? " (probes_only=1: hooks count hits, nothing is accounted)" : "");
	return 0;

detach_hooks:
	osh_hooks_detach();
	osh_paths_stop();
remove_debugfs:
	osh_debugfs_exit();
free_kmem:
	osh_kmem_stop();
	osh_slabmodel_exit();
	osh_tree_destroy(&osh_tree);
	/* records and objcgs are freed by RCU callbacks of this module */
	rcu_barrier();
	osh_kmem_exit();
	return err_code;
}

static void __exit osh_exit(void)
{
	osh_hooks_detach();
	osh_paths_stop();
	osh_debugfs_exit();
	osh_kmem_stop();
	osh_slabmodel_exit();
	osh_tree_destroy(&osh_tree);
	/* records and objcgs are freed by RCU callbacks of this module */
	rcu_barrier();
	osh_kmem_exit();
	pr_info("unloaded\n");
}

module_init(osh_init);
module_exit(osh_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("objcg_shadow developers");
MODULE_DESCRIPTION("Shadow memcg kernel-memory accounting for A/B design comparison");
MODULE_VERSION(OSH_VERSION);
