/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every kernel-version difference objcg_shadow knows about lives here; the
 * rest of the module never tests a version number.
 *
 * Reference kernel: Debian 12's 6.1 (SLUB, MEMCG_KMEM, LRU_GEN).
 */
#ifndef OBJCG_SHADOW_COMPAT_H
#define OBJCG_SHADOW_COMPAT_H

#include <linux/cgroup.h>
#include <linux/memcontrol.h>
#include <linux/ptrace.h>
#include <linux/nsproxy.h>

/*
 * 6.1: the kmem tracepoints carry the kmem_cache and the node (6.0+); the
 * task's cached objcg, mem_cgroup_fork() and mem_cgroup_exit() do not
 * exist yet (6.7); slab objcgs are a vector in struct slab (<6.10).
 */

/* mem_cgroup_attach() is only built with the multi-gen LRU in 6.1. */
#define OSH_HAVE_MEM_CGROUP_ATTACH	IS_ENABLED(CONFIG_LRU_GEN)

/* Argument @n of a probed function, from a kprobe's pt_regs. */
static inline unsigned long osh_regs_arg(struct pt_regs *regs, unsigned int n)
{
	return regs_get_kernel_argument(regs, n);
}

/* The root css of whichever hierarchy the memory controller is bound to. */
static inline struct cgroup_subsys_state *osh_memcg_root_css(void)
{
	return rcu_dereference(memory_cgrp_subsys.root->cgrp.subsys[memory_cgrp_id]);
}

/* The memory css of @task.  Context: rcu_read_lock(). */
static inline struct cgroup_subsys_state *osh_task_memcg_css(struct task_struct *task)
{
	return task_css(task, memory_cgrp_id);
}

/* The cgroup namespace to print paths in: the initial one from a kworker. */
static inline struct cgroup_namespace *osh_path_cgroup_ns(void)
{
	return current->nsproxy->cgroup_ns;
}

#endif /* OBJCG_SHADOW_COMPAT_H */
