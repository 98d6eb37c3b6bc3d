/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Every kernel-version difference objcg_shadow knows about lives here and
 * in the one file per kernel family under compat/ that module/Kbuild
 * picks; no C file tests a version number.
 *
 * Supported: Debian's stock 6.1 (Debian 12), 6.12 (Debian 13) and 7.3
 * (trixie-backports).  Each family file defines the same names:
 *
 *   OSH_KERNEL_FAMILY, OSH_REFERENCE_DESIGN  what runs and the design that
 *	reproduces it
 *   OSH_HAVE_MEM_CGROUP_ATTACH, OSH_HAVE_MEM_CGROUP_EXIT,
 *   OSH_FREE_VIA_MEMCG_HOOK, OSH_SCHED_EXIT_GROUP_DEAD,
 *   OSH_OBSERVE_SLOT_DRAINS, OSH_OBSERVE_KMEM_TRACEPOINT  which hooks exist
 *   OSH_HAVE_OBJ_STOCK_TRYLOCK  whether an interrupt can find the stock held
 *   OSH_SYM_*  names of probed functions that were renamed
 *   struct osh_slub_slab_prefix, osh_kernel_obj_objcg(), osh_memcg_kmem_on(),
 *   osh_kernel_obj_stock_busy()  private layouts, checked at load time
 *   osh_kernel_stock_slots(), osh_kernel_objcg_node()  the kernel's stock
 *	at load, for the design that reproduces it (7.3; none elsewhere)
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

#define OSH_SUPPORTED_KERNELS	"6.1, 6.12 and 7.3 (Debian's stock kernels)"

/*
 * Where plain kprobes go: just after the function's fentry NOP (and the
 * endbr64 before it on IBT kernels: a probe between the two would land
 * mid-instruction), where the kernel plants an int3.  Its handler runs
 * with IRQs off, so a softirq cannot nest in it: a kprobe hit while
 * another runs on the CPU is dropped, and on the fentry NOP itself
 * (ftrace, IRQs on) the frees of an RCU softirq that interrupted a
 * handler were (825 of 64,000 free-hook hits in one 7.3 run, against 4
 * at the int3).  The arguments are still in their registers there.  The
 * handler runs in NMI context: hooks.c and kmem.c say what that allows.
 */
#if defined(CONFIG_X86_64) && defined(CONFIG_FUNCTION_TRACER)
#ifdef CONFIG_X86_KERNEL_IBT
#define OSH_KPROBE_OFFSET	(ENDBR_INSN_SIZE + MCOUNT_INSN_SIZE)
#else
#define OSH_KPROBE_OFFSET	MCOUNT_INSN_SIZE
#endif
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
 * SLUB's struct kmem_cache is private to mm/.  This mirror of its first
 * fields (the same in 6.1, 6.12 and 7.3) is trusted only after
 * osh_slab_layout_verify() has checked it against caches the module
 * creates with known sizes and flags; the module refuses to load if not.
 */
struct osh_slub_cache_prefix {
	void __percpu *cpu_slab;	/* cpu_sheaves in 7.3 */
	slab_flags_t flags;
	unsigned long min_partial;
	unsigned int size;		/* object size including metadata */
	unsigned int object_size;
};

static inline const struct osh_slub_cache_prefix *
osh_cache_layout(const struct kmem_cache *s)
{
	return (const struct osh_slub_cache_prefix *)s;
}

/* Index of @obj in its slab (obj_to_index()); 0 for a KFENCE object. */
static inline unsigned int osh_obj_index(const void *obj,
					 const struct kmem_cache *s)
{
	struct folio *folio = virt_to_folio(obj);

	if (is_kfence_address(obj))
		return 0;
	return ((unsigned long)obj - (unsigned long)folio_address(folio)) /
	       osh_cache_layout(s)->size;
}

unsigned long osh_kernel_symbol(const char *name);

/* The family file: names and layouts of one kernel family. */
/* compat/linux-<family>.h, picked by module/Kbuild from the kernel's version */
#include OSH_COMPAT_FAMILY_H

#if !OSH_OBSERVE_SLOT_DRAINS
/* Observed stock switches: every drain_obj_stock() call is one. */
static inline bool osh_observed_slot_drained(struct pt_regs *regs)
{
	return true;
}

static inline unsigned int osh_observed_busy_slots(void *work)
{
	return 0;
}
#endif

#ifndef OSH_HAVE_KERNEL_STOCK_SLOTS
/* One slot (6.1, 6.12): a stale objcg there costs the shadow one drain. */
static inline unsigned int osh_kernel_stock_slots(struct obj_cgroup **objcgs,
						  unsigned int max,
						  unsigned int *victim)
{
	return 0;
}

static inline int osh_kernel_objcg_node(struct mem_cgroup *memcg,
					struct obj_cgroup *objcg)
{
	return -1;
}
#endif

#if !OSH_HAVE_OBJ_STOCK_TRYLOCK
static inline bool osh_kernel_obj_stock_busy(void)
{
	return false;
}

static inline int osh_compat_init(void)
{
	return 0;
}
#endif

/* The cache of a slab object, or NULL if @obj is not in a slab page. */
static inline struct kmem_cache *osh_obj_cache(const void *obj)
{
	struct folio *folio = virt_to_folio(obj);

	if (!folio_test_slab(folio))
		return NULL;
	return ((const struct osh_slub_slab_prefix *)folio)->slab_cache;
}

/* obj_full_size(): what every supported kernel charges for one object */
static inline unsigned int osh_obj_full_size(const struct kmem_cache *s)
{
	return osh_cache_layout(s)->size + sizeof(struct obj_cgroup *);
}

/* The kernel's objcg of a kmem page, or NULL. */
static inline struct obj_cgroup *osh_kernel_page_objcg(struct page *page)
{
	unsigned long data = READ_ONCE(page_folio(page)->memcg_data);

	if ((data & OSH_MEMCG_DATA_FLAGS) != MEMCG_DATA_KMEM)
		return NULL;
	return (struct obj_cgroup *)(data & ~OSH_MEMCG_DATA_FLAGS);
}

/*
 * get_obj_cgroup_from_current()'s choice of memcg in 6.1, the lookup
 * designs' rule: the active memcg for remote charging, else the task's,
 * never for kthreads or tasks without an mm.  In interrupt context the
 * kernels use the per-CPU int_active_memcg, which is not exported: such
 * events are counted, not attributed.  Context: rcu_read_lock().
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

/*
 * Kernel stacks are mirrored as the vmalloc'ed pages of every supported
 * Debian kernel; page-allocated ones would be charged unseen.
 */
#ifndef CONFIG_VMAP_STACK
#error "objcg_shadow needs CONFIG_VMAP_STACK: without it kernel stacks would be misaccounted"
#endif

/* Pages of a task's kernel stack, or 0 for one not vmapped (init's). */
static inline unsigned int osh_task_stack_pages(struct task_struct *task,
						struct page ***pages)
{
	struct vm_struct *vm = task->stack_vm_area;

	if (vm) {
		*pages = vm->pages;
		return THREAD_SIZE / PAGE_SIZE;
	}
	return 0;
}

#endif /* OBJCG_SHADOW_COMPAT_H */
