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
#include <linux/ftrace.h>
#include <linux/kfence.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/nsproxy.h>
#include <linux/percpu.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

/*
 * 6.1: the kmem tracepoints carry the kmem_cache and the node (6.0+); the
 * task's cached objcg, mem_cgroup_fork() and mem_cgroup_exit() do not
 * exist yet (6.7); slab objcgs are a vector in struct slab (<6.10).
 */

/* mem_cgroup_attach() is only built with the multi-gen LRU in 6.1. */
#define OSH_HAVE_MEM_CGROUP_ATTACH	IS_ENABLED(CONFIG_LRU_GEN)

/*
 * Where plain kprobes go: just after the function's fentry NOP.  A kprobe
 * on the NOP itself runs through an ftrace trampoline, and unregistering
 * it while other CPUs run the function (the maple tree calls the bulk
 * slab functions constantly) crashed or hung our guests; an int3 probe is
 * removed safely.  The arguments are still in their registers there.
 */
#if defined(CONFIG_X86_64) && defined(CONFIG_FUNCTION_TRACER)
#define OSH_KPROBE_OFFSET	MCOUNT_INSN_SIZE
#else
#define OSH_KPROBE_OFFSET	0
#endif

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

/*
 * SLUB's struct kmem_cache and struct slab are private to mm/.  These
 * mirrors of their first fields (6.1 layout) are trusted only after
 * osh_slab_layout_verify() has checked them against caches the module
 * creates with known sizes and flags; the module refuses to load if not.
 */
struct osh_slub_cache_prefix {
	void __percpu *cpu_slab;
	slab_flags_t flags;
	unsigned long min_partial;
	unsigned int size;		/* object size including metadata */
	unsigned int object_size;
};

struct osh_slub_slab_prefix {
	unsigned long page_flags;
	void *list_or_rcu[2];
	struct kmem_cache *slab_cache;
};

static inline const struct osh_slub_cache_prefix *
osh_cache_layout(const struct kmem_cache *s)
{
	return (const struct osh_slub_cache_prefix *)s;
}

/* The cache of a slab object, or NULL if @obj is not in a slab page. */
static inline struct kmem_cache *osh_obj_cache(const void *obj)
{
	struct folio *folio = virt_to_folio(obj);

	if (!folio_test_slab(folio))
		return NULL;
	return ((const struct osh_slub_slab_prefix *)folio)->slab_cache;
}

/* obj_full_size(): what 6.1 charges for one object of @s */
static inline unsigned int osh_obj_full_size(const struct kmem_cache *s)
{
	return osh_cache_layout(s)->size + sizeof(struct obj_cgroup *);
}

/*
 * The kernel's own objcg for a slab object (slab_objcgs()[obj_to_index]),
 * read before the kernel's free hook clears it.  NULL if not accounted.
 */
static inline struct obj_cgroup *osh_kernel_obj_objcg(const void *obj,
						      const struct kmem_cache *s)
{
	struct folio *folio = virt_to_folio(obj);
	unsigned long data = READ_ONCE(folio->memcg_data);
	struct obj_cgroup **objcgs;
	unsigned int idx = 0;

	if (!(data & MEMCG_DATA_OBJCGS))
		return NULL;
	objcgs = (struct obj_cgroup **)(data & ~MEMCG_DATA_FLAGS_MASK);
	if (!is_kfence_address(obj))
		idx = ((unsigned long)obj - (unsigned long)folio_address(folio)) /
		      osh_cache_layout(s)->size;
	return READ_ONCE(objcgs[idx]);
}

/* The kernel's objcg of a kmem page, or NULL. */
static inline struct obj_cgroup *osh_kernel_page_objcg(struct page *page)
{
	unsigned long data = READ_ONCE(page_folio(page)->memcg_data);

	if (!(data & MEMCG_DATA_KMEM))
		return NULL;
	return (struct obj_cgroup *)(data & ~MEMCG_DATA_FLAGS_MASK);
}

/*
 * get_obj_cgroup_from_current()'s choice of memcg: the active memcg for
 * remote charging, else the task's, never for kthreads or tasks without
 * an mm.  In interrupt context 6.1 uses the per-CPU int_active_memcg,
 * which is not exported: such events are counted, not attributed.
 * Context: rcu_read_lock().
 */
static inline struct mem_cgroup *osh_current_memcg(bool *irq_unknown)
{
	struct mem_cgroup *memcg;

	*irq_unknown = false;
	if (!in_task()) {
		*irq_unknown = true;
		return NULL;
	}
	memcg = READ_ONCE(current->active_memcg);
	if (memcg)
		return memcg;
	if (!current->mm || (current->flags & PF_KTHREAD))
		return NULL;
	return mem_cgroup_from_task(current);
}

/* pcpu_obj_full_size() of mm/percpu-internal.h (6.1) */
static inline size_t osh_pcpu_obj_full_size(size_t size)
{
	return size * num_possible_cpus() +
	       size / PCPU_MIN_ALLOC_SIZE * sizeof(struct obj_cgroup *);
}

/* pcpu_alloc() aligns the size before charging it */
static inline size_t osh_pcpu_aligned_size(size_t size)
{
	return ALIGN(size, PCPU_MIN_ALLOC_SIZE);
}

/* Pages of a task's kernel stack (VMAP_STACK), or 0 if not vmapped. */
static inline unsigned int osh_task_stack_pages(struct task_struct *task,
						struct page ***pages)
{
#ifdef CONFIG_VMAP_STACK
	struct vm_struct *vm = task->stack_vm_area;

	if (vm) {
		*pages = vm->pages;
		return THREAD_SIZE / PAGE_SIZE;
	}
#endif
	return 0;
}

#endif /* OBJCG_SHADOW_COMPAT_H */
