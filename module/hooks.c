// SPDX-License-Identifier: GPL-2.0
/*
 * Hooks: tracepoints found by name and kprobes/kretprobes on memcg
 * lifecycle functions.  Handlers run in probe context: they never sleep,
 * take no lock shared with the hot path, and count what they cannot do.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/jump_label.h>
#include <linux/kprobes.h>
#include <linux/percpu.h>
#include <linux/sched/clock.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/tracepoint.h>
#include <trace/events/cgroup.h>
#include <trace/events/kmem.h>
#include <trace/events/sched.h>
#include "compat.h"
#if OSH_OBSERVE_KMEM_TRACEPOINT
#include <trace/events/memcg.h>
#endif
#include <objcg_shadow/outbuf.h>
#include "osh_module.h"

enum osh_hook_kind {
	OSH_HOOK_TRACEPOINT,
	OSH_HOOK_KPROBE,
	OSH_HOOK_KRETPROBE,
};

struct osh_hook {
	const char *name;		/* tracepoint or function name */
	enum osh_hook_kind kind;
	bool required;
	bool observe_only;		/* only for the fidelity check */
	void *tp_probe;			/* tracepoint probe function */
	struct tracepoint *tp;
	struct kretprobe krp;		/* krp.kp is the kprobe for KPROBE */
	/* the handlers, called by the IRQs-off wrappers below */
	kprobe_pre_handler_t pre;
	kretprobe_handler_t entry, ret;
	bool attached;
	int err;			/* why it is absent */
	struct osh_hook_stat __percpu *stat;
};

struct osh_hook_stat {
	unsigned long hits;
	unsigned long timed;		/* time_handlers=1: handler calls timed */
	u64 ns;				/* sched_clock() time in those calls */
	u64 max_ns;			/* the longest timed region */
};

/* Events the hooks saw but that are not per-hook hits. */
struct osh_events {
	unsigned long kmem_alloc_accounted;
	unsigned long kmem_alloc_failed;	/* NULL object */
	unsigned long memcg_online_failed;	/* css_online returned error */
	unsigned long observed_charge_ops;	/* memcg_account_kmem(+n) */
	unsigned long observed_charge_pages;
	unsigned long observed_uncharge_ops;	/* memcg_account_kmem(-n) */
	unsigned long observed_uncharge_pages;
	unsigned long observed_drains;		/* stock switches / slot drains */
	unsigned long observed_explicit_slot_drains; /* 7.3: drained on request */
};

static DEFINE_PER_CPU(struct osh_events, osh_events);

/* observe=1: the hooks of the fidelity check are attached */
static bool osh_observing;

#define OSH_EVENT_INC(field)	this_cpu_inc(osh_events.field)

static void osh_hit(struct osh_hook *hook)
{
	this_cpu_inc(hook->stat->hits);
}

/*
 * time_handlers=1: each handler's time is summed per hook.  Under QEMU's
 * -icount shift=0 a guest nanosecond is one instruction, so this is the
 * per-hook breakdown of the module's cost (the probe's own trap and
 * dispatch are not inside: probes_only=1 measures those).
 */
static DEFINE_STATIC_KEY_FALSE(osh_time_handlers);
static u64 osh_clock_overhead_ns;

static u64 osh_clock_start(void)
{
	if (!static_branch_unlikely(&osh_time_handlers))
		return 0;
	return sched_clock();
}

/* @call: this ends a handler call (a kretprobe's entry and return are one) */
static void osh_clock_add(struct osh_hook *hook, u64 t0, bool call)
{
	u64 ns;

	if (!static_branch_unlikely(&osh_time_handlers))
		return;
	ns = sched_clock() - t0;
	this_cpu_add(hook->stat->ns, ns);
	/* each region holds a handler's IRQs-off section: its upper bound */
	if (ns > this_cpu_read(hook->stat->max_ns))
		this_cpu_write(hook->stat->max_ns, ns);
	if (call)
		this_cpu_inc(hook->stat->timed);
}

/* The cost of one timed empty region, subtracted by the reader. */
static u64 osh_measure_clock_overhead(void)
{
	u64 best = U64_MAX, t0;
	int i;

	for (i = 0; i < 32; i++) {
		t0 = sched_clock();
		best = min(best, sched_clock() - t0);
	}
	return best;
}

/* probes_only=1: every hook is attached, its handler only counts the hit */
static DEFINE_STATIC_KEY_FALSE(osh_probes_only);

/* Counts the hit; true if the handler is to do nothing more. */
static bool osh_hit_only(struct osh_hook *hook)
{
	osh_hit(hook);
	return static_branch_unlikely(&osh_probes_only);
}

/* probes_only=1: a wrapper counts the hit its handler would have counted */
static bool osh_probes_only_hit(struct osh_hook *hook)
{
	if (!static_branch_unlikely(&osh_probes_only))
		return false;
	osh_hit(hook);
	return true;
}

static struct osh_hook *osh_kprobe_hook(struct kprobe *kp)
{
	struct kretprobe *krp = container_of(kp, struct kretprobe, kp);

	return container_of(krp, struct osh_hook, krp);
}

static struct osh_hook *osh_kretprobe_hook(struct kretprobe_instance *ri)
{
	return container_of(get_kretprobe(ri), struct osh_hook, krp);
}

/*
 * Kprobes do not nest: a hit while another kprobe runs on the CPU is
 * dropped.  The int3 kprobes run with IRQs off; the kretprobes' handlers
 * run from ftrace and the return trampoline with IRQs on, where a softirq
 * freeing objects in the middle of a handler would lose every free.  So
 * every handler runs with IRQs off; what remains is the kprobe core's own
 * few instructions, and any drop is counted in the hook's misses.
 */
static int osh_kp_irqs_off(struct kprobe *kp, struct pt_regs *regs)
{
	struct osh_hook *hook = osh_kprobe_hook(kp);
	unsigned long flags;
	int ret;

	u64 t0;

	if (osh_probes_only_hit(hook))
		return 0;
	t0 = osh_clock_start();
	local_irq_save(flags);
	ret = hook->pre(kp, regs);
	local_irq_restore(flags);
	osh_clock_add(hook, t0, true);
	return ret;
}

static int osh_krp_call_irqs_off(kretprobe_handler_t handler,
				 struct kretprobe_instance *ri,
				 struct pt_regs *regs, bool entry)
{
	u64 t0 = osh_clock_start();
	unsigned long flags;
	int ret;

	local_irq_save(flags);
	ret = handler(ri, regs);
	local_irq_restore(flags);
	osh_clock_add(osh_kretprobe_hook(ri), t0, entry);
	return ret;
}

/* probes_only=1 keeps the instance: the return trampoline is a probe cost */
static int osh_krp_entry_irqs_off(struct kretprobe_instance *ri,
				  struct pt_regs *regs)
{
	if (static_branch_unlikely(&osh_probes_only))
		return 0;
	return osh_krp_call_irqs_off(osh_kretprobe_hook(ri)->entry, ri, regs,
				     true);
}

static int osh_krp_ret_irqs_off(struct kretprobe_instance *ri,
				struct pt_regs *regs)
{
	struct osh_hook *hook = osh_kretprobe_hook(ri);

	if (osh_probes_only_hit(hook))
		return 0;
	return osh_krp_call_irqs_off(hook->ret, ri, regs, false);
}

static u64 osh_css_id(struct cgroup_subsys_state *css)
{
	return cgroup_id(css->cgroup);
}

/* --- kmem tracepoints ------------------------------------------------- */

/* @s: the object's cache, or NULL (kmalloc) to find it from the slab */
static void osh_tp_slab_alloc(struct osh_hook *hook, const void *ptr,
			      struct kmem_cache *s, gfp_t gfp_flags)
{
	u64 t0;

	if (osh_hit_only(hook))
		return;
	t0 = osh_clock_start();
	if (unlikely(!ptr)) {
		OSH_EVENT_INC(kmem_alloc_failed);
	} else {
		if (gfp_flags & __GFP_ACCOUNT)
			OSH_EVENT_INC(kmem_alloc_accounted);
		/* a large kmalloc's charge is a kmem page event */
		osh_kmem_slab_alloc(ptr, s, gfp_flags);
	}
	osh_clock_add(hook, t0, true);
}

static void osh_tp_kmalloc(void *data, unsigned long call_site,
			   const void *ptr, size_t bytes_req,
			   size_t bytes_alloc, gfp_t gfp_flags, int node)
{
	osh_tp_slab_alloc(data, ptr, NULL, gfp_flags);
}

static void osh_tp_kmem_cache_alloc(void *data, unsigned long call_site,
				    const void *ptr, struct kmem_cache *s,
				    gfp_t gfp_flags, int node)
{
	osh_tp_slab_alloc(data, ptr, s, gfp_flags);
}

#if !OSH_FREE_VIA_MEMCG_HOOK
static void osh_tp_slab_free(struct osh_hook *hook, const void *ptr)
{
	u64 t0;

	if (osh_hit_only(hook))
		return;
	t0 = osh_clock_start();
	osh_kmem_slab_free(ptr);
	osh_clock_add(hook, t0, true);
}

static void osh_tp_kfree(void *data, unsigned long call_site, const void *ptr)
{
	osh_tp_slab_free(data, ptr);
}

static void osh_tp_kmem_cache_free(void *data, unsigned long call_site,
				   const void *ptr, const struct kmem_cache *s)
{
	osh_tp_slab_free(data, ptr);
}
#endif

#if OSH_FREE_VIA_MEMCG_HOOK
/* __memcg_slab_free_hook(s, slab, p, objects, obj_exts): before uncharge */
static int osh_kp_slab_free_hook(struct kprobe *kp, struct pt_regs *regs)
{
	void **objs = (void **)osh_regs_arg(regs, 2);
	int i, nr = (int)osh_regs_arg(regs, 3);

	osh_hit(osh_kprobe_hook(kp));
	for (i = 0; i < nr; i++)
		osh_kmem_slab_free(objs[i]);
	return 0;
}

struct osh_charge_call {
	void *obj;
	gfp_t gfp;
};

static int osh_cache_charge_entry(struct kretprobe_instance *ri,
				  struct pt_regs *regs)
{
	struct osh_charge_call *call = (void *)ri->data;

	call->obj = (void *)osh_regs_arg(regs, 0);
	call->gfp = osh_regs_arg(regs, 1);
	return 0;
}

/* kmem_cache_charge() returned true: the object may now be charged. */
static int osh_cache_charge_ret(struct kretprobe_instance *ri,
				struct pt_regs *regs)
{
	struct osh_charge_call *call = (void *)ri->data;

	osh_hit(osh_kretprobe_hook(ri));
	if (regs_return_value(regs) & 0xff)
		osh_kmem_slab_charge_existing(call->obj, call->gfp);
	return 0;
}
#endif

/* --- cgroup tracepoints ----------------------------------------------- */

/* mkdir and rename carry the path the kernel just computed: use it. */
static void osh_tp_cgroup_path(void *data, struct cgroup *cgrp,
			       const char *path)
{
	u64 id = cgroup_id(cgrp);
	bool known;

	if (osh_hit_only(data))
		return;
	/* kernfs ids are per hierarchy: a v1 cgroup's id may be a memcg's */
	if (cgrp->root != &cgrp_dfl_root)
		return;
	rcu_read_lock();
	known = osh_memcg_lookup(&osh_tree, id);
	rcu_read_unlock();
	/* no record: the cgroup has no memcg of its own */
	if (known)
		osh_memcg_set_path(&osh_tree, id, path,
				   GFP_ATOMIC | __GFP_NOWARN);
}

static void osh_tp_cgroup_rmdir(void *data, struct cgroup *cgrp,
				const char *path)
{
	osh_hit(data);
}

static void osh_tp_cgroup_attach_task(void *data, struct cgroup *dst_cgrp,
				      const char *path,
				      struct task_struct *task,
				      bool threadgroup)
{
	struct cgroup_subsys_state *css;
	long nr = threadgroup ? get_nr_threads(task) : 1;
	u64 id;

	if (osh_hit_only(data))
		return;
	/* a move within a v1 hierarchy leaves the memory css as it was */
	if (dst_cgrp->root != &cgrp_dfl_root)
		return;
	/* the tasks have moved: the leader's memory css is the destination */
	rcu_read_lock();
	css = osh_task_memcg_css(task);
	id = osh_css_id(css);
	rcu_read_unlock();
	osh_memcg_attach(&osh_tree, id, nr);
	osh_kmem_task_attached(task, threadgroup);
}

/* --- sched tracepoints -------------------------------------------------- */

static void osh_tp_sched_process_fork(void *data, struct task_struct *parent,
				      struct task_struct *child)
{
	u64 t0;

	if (osh_hit_only(data))
		return;
	t0 = osh_clock_start();
	osh_kmem_task_forked(child);
	osh_clock_add(data, t0, true);
}

static void osh_tp_task_gone(struct osh_hook *hook, struct task_struct *p)
{
	u64 t0 = osh_clock_start();

	osh_kmem_task_gone(p);
	osh_clock_add(hook, t0, true);
}

/* Without mem_cgroup_exit() (6.1) the task state goes at exit. */
static void osh_tp_sched_process_task(void *data, struct task_struct *p)
{
	if (osh_hit_only(data))
		return;
	if (!OSH_HAVE_MEM_CGROUP_EXIT)
		osh_tp_task_gone(data, p);
}

#if OSH_SCHED_EXIT_GROUP_DEAD
static void osh_tp_sched_process_exit(void *data, struct task_struct *p,
				      bool group_dead)
{
	osh_tp_sched_process_task(data, p);
}
#else
#define osh_tp_sched_process_exit osh_tp_sched_process_task
#endif

static void osh_tp_sched_process_free(void *data, struct task_struct *p)
{
	if (osh_hit_only(data))
		return;
	osh_tp_task_gone(data, p);
}

/* --- memcg lifecycle kprobes ------------------------------------------ */

static int osh_online_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	*(unsigned long *)ri->data = osh_regs_arg(regs, 0);
	return 0;
}

static int osh_online_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct cgroup_subsys_state *css = *(void **)ri->data;
	struct osh_hook *hook = osh_kretprobe_hook(ri);

	osh_hit(hook);
	if (regs_return_value(regs)) {
		OSH_EVENT_INC(memcg_online_failed);
		return 0;
	}
	osh_memcg_seen_online(css, false, OSH_MEMCG_ONLINE);
	return 0;
}

/*
 * The memcg lifecycle hooks take locks and call call_rcu(): they are
 * kretprobes, doing their work in the return handler (not NMI).  The
 * entry saves the css's id (css_free() frees the css).
 */
static int osh_save_css_id(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	*(u64 *)ri->data = osh_css_id((void *)osh_regs_arg(regs, 0));
	return 0;
}

static u64 osh_saved_css_id(struct kretprobe_instance *ri)
{
	osh_hit(osh_kretprobe_hook(ri));
	return *(u64 *)ri->data;
}

/* The kernel reparented the memcg's objcgs in css_offline: so do we. */
static int osh_offline_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	u64 id = osh_saved_css_id(ri);

	osh_memcg_set_state(&osh_tree, id, OSH_MEMCG_OFFLINE);
	osh_kmem_memcg_offline(id);
	return 0;
}

static int osh_released_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	osh_memcg_set_state(&osh_tree, osh_saved_css_id(ri), OSH_MEMCG_RELEASED);
	return 0;
}

static int osh_free_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	u64 id = osh_saved_css_id(ri);

	osh_kmem_memcg_freed(id);
	osh_memcg_set_state(&osh_tree, id, OSH_MEMCG_FREED);
	return 0;
}

#if OSH_HAVE_MEM_CGROUP_EXIT
/*
 * mem_cgroup_exit(task): the kernel drops the task's objcg here.  Every
 * task exit passes: an int3 kprobe (a kretprobe's IRQs-on entry would let
 * softirqs' frees be dropped); the state's release is deferred (NMI).
 */
static int osh_kp_task_exit(struct kprobe *kp, struct pt_regs *regs)
{
	osh_hit(osh_kprobe_hook(kp));
	osh_kmem_task_gone((struct task_struct *)osh_regs_arg(regs, 0));
	return 0;
}
#endif

/* --- kmem pages and bulk slab operations --------------------------------- */

struct osh_page_call {
	struct page *page;
	unsigned int order;
};

static int osh_charge_page_entry(struct kretprobe_instance *ri,
				 struct pt_regs *regs)
{
	struct osh_page_call *call = (void *)ri->data;

	call->page = (struct page *)osh_regs_arg(regs, 0);
	call->order = osh_regs_arg(regs, 2);
	return 0;
}

static int osh_charge_page_ret(struct kretprobe_instance *ri,
			       struct pt_regs *regs)
{
	struct osh_page_call *call = (void *)ri->data;

	osh_hit(osh_kretprobe_hook(ri));
	if (!regs_return_value(regs))
		osh_kmem_page_charged(call->page, call->order);
	return 0;
}

static int osh_kp_uncharge_page(struct kprobe *kp, struct pt_regs *regs)
{
	osh_hit(osh_kprobe_hook(kp));
	osh_kmem_page_uncharging((struct page *)osh_regs_arg(regs, 0));
	return 0;
}

/*
 * Kmem pages freed through put_page()/release_pages() (page tables, pipe
 * buffers) are uncharged here, not in __memcg_kmem_uncharge_page().
 */
static int osh_kp_uncharge_folio(struct kprobe *kp, struct pt_regs *regs)
{
	struct folio *folio = (struct folio *)osh_regs_arg(regs, 0);

	osh_hit(osh_kprobe_hook(kp));
	if (folio_memcg_kmem(folio))
		osh_kmem_page_uncharging(&folio->page);
	return 0;
}

/* percpu: pcpu_alloc() charges accounted allocations, free_percpu() not */
struct osh_pcpu_call {
	size_t size;
	gfp_t gfp;
};

static int osh_pcpu_alloc_entry(struct kretprobe_instance *ri,
				struct pt_regs *regs)
{
	struct osh_pcpu_call *call = (void *)ri->data;

	call->size = osh_regs_arg(regs, 0);
	call->gfp = osh_regs_arg(regs, 3);
	return 0;
}

static int osh_pcpu_alloc_ret(struct kretprobe_instance *ri,
			      struct pt_regs *regs)
{
	struct osh_pcpu_call *call = (void *)ri->data;
	void __percpu *ptr = (void __percpu *)regs_return_value(regs);

	osh_hit(osh_kretprobe_hook(ri));
	/* gfp as pcpu_alloc() sees it: current_gfp_context() keeps ACCOUNT */
	if (ptr && (call->gfp & __GFP_ACCOUNT) && osh_memcg_kmem_on())
		osh_kmem_percpu_alloc(ptr, osh_pcpu_aligned_size(call->size));
	return 0;
}

static int osh_kp_free_percpu(struct kprobe *kp, struct pt_regs *regs)
{
	osh_hit(osh_kprobe_hook(kp));
	osh_kmem_percpu_free((void __percpu *)osh_regs_arg(regs, 0));
	return 0;
}

/*
 * kmem_cache_alloc_bulk() fires no per-object tracepoint, yet charges
 * accounted caches (io_uring requests): 6.1 and 6.12 once for the batch,
 * 7.3 per object.  Unaccounted calls (maple tree nodes) skip the return
 * handler at entry.
 */
struct osh_bulk_call {
	struct kmem_cache *s;
	gfp_t gfp;
	size_t size;
	void **objs;
};

static int osh_alloc_bulk_entry(struct kretprobe_instance *ri,
				struct pt_regs *regs)
{
	struct osh_bulk_call *call = (void *)ri->data;

	call->s = (struct kmem_cache *)osh_regs_arg(regs, 0);
	call->gfp = osh_regs_arg(regs, 1);
	call->size = osh_regs_arg(regs, 2);
	call->objs = (void **)osh_regs_arg(regs, 3);
	return !osh_kmem_cache_accounted(call->s, call->gfp);
}

static int osh_alloc_bulk_ret(struct kretprobe_instance *ri,
			      struct pt_regs *regs)
{
	struct osh_bulk_call *call = (void *)ri->data;
	size_t i;

	osh_hit(osh_kretprobe_hook(ri));
	/* all @size objects or none */
	if (!OSH_ALLOC_BULK_OK(regs_return_value(regs)))
		return 0;
	for (i = 0; i < call->size; i++)
		osh_kmem_slab_alloc(call->objs[i], call->s, call->gfp);
	return 0;
}

#if !OSH_FREE_VIA_MEMCG_HOOK
/* kfree_bulk() and kfree_rcu() batches free without per-object events. */
static int osh_kp_free_bulk(struct kprobe *kp, struct pt_regs *regs)
{
	size_t i, nr = osh_regs_arg(regs, 1);
	void **objs = (void **)osh_regs_arg(regs, 2);

	osh_hit(osh_kprobe_hook(kp));
	for (i = 0; i < nr; i++)
		osh_kmem_slab_free(objs[i]);
	return 0;
}
#endif

/*
 * mem_cgroup_attach() gets a cgroup_taskset, whose layout is private to
 * kernel/cgroup; per-task attach counts come from cgroup_attach_task.
 * The observed-only hooks below count their hits the same way.
 */
static int osh_kp_count(struct kprobe *kp, struct pt_regs *regs)
{
	osh_hit(osh_kprobe_hook(kp));
	return 0;
}

/*
 * drain_all_stock() (cgroup offline, memory pressure) makes chosen CPUs
 * drain their stocks from a work item on that CPU.  The choice depends on
 * the page stock, which also caches user-page charges the shadow cannot
 * see, so the kernel's decision is an input event: every design drains
 * its stocks on this CPU too.
 */
static int osh_kp_drain_local(struct kprobe *kp, struct pt_regs *regs)
{
	osh_hit(osh_kprobe_hook(kp));
	/* 7.3: what drain_local_obj_stock(&stock->work) is about to drain */
	if (OSH_OBSERVE_SLOT_DRAINS && osh_observing)
		this_cpu_add(osh_events.observed_explicit_slot_drains,
			     osh_observed_busy_slots((void *)osh_regs_arg(regs, 0)));
	osh_kmem_drain_this_cpu();
	return 0;
}

/*
 * drain_obj_stock() (6.1, 6.12: at every stock switch) or
 * drain_obj_stock_slot(stock, i) (7.3: a slot, possibly empty).
 */
static int osh_kp_observe_drain(struct kprobe *kp, struct pt_regs *regs)
{
	osh_hit(osh_kprobe_hook(kp));
	if (osh_observed_slot_drained(regs))
		OSH_EVENT_INC(observed_drains);
	return 0;
}

/*
 * The kernel's own stock behaviour, for the fidelity check of the design
 * that matches it: memcg_account_kmem() is where 6.1 charges (n > 0) and
 * uncharges (n < 0) kmem pages, whether through the obj stock or not.
 */
static void osh_observe_kmem(long nr)
{
	if (nr > 0) {
		OSH_EVENT_INC(observed_charge_ops);
		this_cpu_add(osh_events.observed_charge_pages, nr);
	} else if (nr < 0) {
		OSH_EVENT_INC(observed_uncharge_ops);
		this_cpu_add(osh_events.observed_uncharge_pages, -nr);
	}
}

#if OSH_OBSERVE_KMEM_TRACEPOINT
static void osh_tp_mod_memcg_state(void *data, struct mem_cgroup *memcg,
				   int item, long val)
{
	if (osh_hit_only(data))
		return;
	if (item == MEMCG_KMEM)
		osh_observe_kmem(val);
}
#else
static int osh_kp_account_kmem(struct kprobe *kp, struct pt_regs *regs)
{
	long nr;

	osh_hit(osh_kprobe_hook(kp));
	if (osh_observed_kmem_delta(regs, &nr))
		osh_observe_kmem(nr);
	return 0;
}
#endif

/* --- the hook table ----------------------------------------------------- */

#define OSH_TP(_name, _probe, _req)					\
	{ .name = #_name, .kind = OSH_HOOK_TRACEPOINT, .required = _req,	\
	  .tp_probe = _probe }
#define OSH_TP_OBSERVE(_name, _probe)					\
	{ .name = #_name, .kind = OSH_HOOK_TRACEPOINT, .observe_only = true, \
	  .tp_probe = _probe }
#define OSH_KP(_sym, _pre, _req)					\
	{ .name = _sym, .kind = OSH_HOOK_KPROBE, .required = _req,	\
	  .pre = _pre, .krp.kp.pre_handler = osh_kp_irqs_off }
#define OSH_KP_OBSERVE(_sym, _pre)					\
	{ .name = _sym, .kind = OSH_HOOK_KPROBE, .observe_only = true,	\
	  .pre = _pre, .krp.kp.pre_handler = osh_kp_irqs_off }
#define OSH_KRP(_sym, _entry, _ret, _size, _req)			\
	{ .name = _sym, .kind = OSH_HOOK_KRETPROBE, .required = _req,	\
	  .entry = _entry, .ret = _ret,					\
	  .krp.entry_handler = osh_krp_entry_irqs_off,			\
	  .krp.handler = osh_krp_ret_irqs_off, .krp.data_size = _size }

static struct osh_hook osh_hooks[] = {
	OSH_TP(kmalloc, osh_tp_kmalloc, true),
	OSH_TP(kmem_cache_alloc, osh_tp_kmem_cache_alloc, true),
#if OSH_FREE_VIA_MEMCG_HOOK
	/* every charged free, kfree_rcu sheaves and kfree_nolock included */
	OSH_KP("__memcg_slab_free_hook", osh_kp_slab_free_hook, true),
	/* kmem_cache_charge(): TCP accept charges an existing socket */
	OSH_KRP("kmem_cache_charge", osh_cache_charge_entry,
		osh_cache_charge_ret, sizeof(struct osh_charge_call), true),
	OSH_KP("mem_cgroup_exit", osh_kp_task_exit, true),
#else
	OSH_TP(kfree, osh_tp_kfree, true),
	OSH_TP(kmem_cache_free, osh_tp_kmem_cache_free, true),
	/* kfree_bulk() and kfree_rcu() batches free without per-object events */
	OSH_KP("kmem_cache_free_bulk", osh_kp_free_bulk, false),
#endif
	OSH_TP(cgroup_mkdir, osh_tp_cgroup_path, true),
	OSH_TP(cgroup_rmdir, osh_tp_cgroup_rmdir, true),
	OSH_TP(cgroup_rename, osh_tp_cgroup_path, false),
	OSH_TP(cgroup_attach_task, osh_tp_cgroup_attach_task, true),
	OSH_TP(sched_process_fork, osh_tp_sched_process_fork, true),
	OSH_TP(sched_process_exit, osh_tp_sched_process_exit, true),
	OSH_TP(sched_process_free, osh_tp_sched_process_free, true),
	OSH_KRP("mem_cgroup_css_online", osh_online_entry, osh_online_ret,
		sizeof(void *), true),
	OSH_KRP("mem_cgroup_css_offline", osh_save_css_id, osh_offline_ret,
		sizeof(u64), true),
	OSH_KRP("mem_cgroup_css_released", osh_save_css_id, osh_released_ret,
		sizeof(u64), true),
	OSH_KRP("mem_cgroup_css_free", osh_save_css_id, osh_free_ret,
		sizeof(u64), true),
	OSH_KP("mem_cgroup_attach", osh_kp_count, OSH_HAVE_MEM_CGROUP_ATTACH),
	OSH_KRP("__memcg_kmem_charge_page", osh_charge_page_entry,
		osh_charge_page_ret, sizeof(struct osh_page_call), true),
	OSH_KP("__memcg_kmem_uncharge_page", osh_kp_uncharge_page, true),
	OSH_KP("uncharge_folio", osh_kp_uncharge_folio, true),
	OSH_KRP(OSH_SYM_ALLOC_BULK, osh_alloc_bulk_entry, osh_alloc_bulk_ret,
		sizeof(struct osh_bulk_call), true),
	OSH_KRP(OSH_SYM_PCPU_ALLOC, osh_pcpu_alloc_entry, osh_pcpu_alloc_ret,
		sizeof(struct osh_pcpu_call), false),
	OSH_KP("free_percpu", osh_kp_free_percpu, false),
	/* the kernel's explicit drains: an input of every design */
	OSH_KP(OSH_SYM_DRAIN_LOCAL, osh_kp_drain_local, false),
	/* observed only: the running kernel's stock operations */
	OSH_KP_OBSERVE(OSH_SYM_OBSERVE_DRAIN, osh_kp_observe_drain),
#if OSH_OBSERVE_KMEM_TRACEPOINT
	OSH_TP_OBSERVE(mod_memcg_state, osh_tp_mod_memcg_state),
#else
	OSH_KP_OBSERVE(OSH_SYM_OBSERVE_KMEM, osh_kp_account_kmem),
#endif
};

/* The build fails if a probe's prototype differs from the kernel's. */
static void __maybe_unused osh_check_probe_types(void)
{
	check_trace_callback_type_kmalloc(osh_tp_kmalloc);
	check_trace_callback_type_kmem_cache_alloc(osh_tp_kmem_cache_alloc);
#if !OSH_FREE_VIA_MEMCG_HOOK
	check_trace_callback_type_kfree(osh_tp_kfree);
	check_trace_callback_type_kmem_cache_free(osh_tp_kmem_cache_free);
#endif
#if OSH_OBSERVE_KMEM_TRACEPOINT
	check_trace_callback_type_mod_memcg_state(osh_tp_mod_memcg_state);
#endif
	check_trace_callback_type_cgroup_mkdir(osh_tp_cgroup_path);
	check_trace_callback_type_cgroup_rmdir(osh_tp_cgroup_rmdir);
	check_trace_callback_type_cgroup_rename(osh_tp_cgroup_path);
	check_trace_callback_type_cgroup_attach_task(osh_tp_cgroup_attach_task);
	check_trace_callback_type_sched_process_fork(osh_tp_sched_process_fork);
	check_trace_callback_type_sched_process_exit(osh_tp_sched_process_exit);
	check_trace_callback_type_sched_process_free(osh_tp_sched_process_free);
}

static void osh_find_tracepoint(struct tracepoint *tp, void *unused)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(osh_hooks); i++) {
		if (osh_hooks[i].kind == OSH_HOOK_TRACEPOINT &&
		    !strcmp(osh_hooks[i].name, tp->name))
			osh_hooks[i].tp = tp;
	}
}

/* A post handler keeps a kprobe from being optimized into a jump. */
static void osh_kp_post_noop(struct kprobe *kp, struct pt_regs *regs,
			     unsigned long flags)
{
}

/*
 * An int3 kprobe (compat.h says why): its handler runs in NMI context, so
 * it takes no lock and calls no call_rcu(); releases go through
 * osh_defer(), and the memcg lifecycle hooks are kretprobes, whose
 * return handlers run in the function's own context.
 */
static int osh_register_int3_kprobe(struct kprobe *kp, const char *name)
{
	kprobe_pre_handler_t pre = kp->pre_handler;
	int err;

	kp->symbol_name = name;
	kp->offset = OSH_KPROBE_OFFSET;
	kp->post_handler = osh_kp_post_noop;
	err = register_kprobe(kp);
	if ((err != -EILSEQ && err != -EINVAL) || !OSH_KPROBE_OFFSET)
		return err;
	/*
	 * No fentry NOP there (-EILSEQ), or a jump label right after it
	 * (-EINVAL): probe the entry itself.
	 */
	memset(kp, 0, sizeof(*kp));
	kp->symbol_name = name;
	kp->pre_handler = pre;
	kp->post_handler = osh_kp_post_noop;
	return register_kprobe(kp);
}

/*
 * A kretprobe's entry goes on the fentry site and runs from ftrace, its
 * return handler from the return trampoline: both in the function's own
 * context, never NMI (a function without fentry is refused).
 */
static int osh_register_entry_kretprobe(struct kretprobe *krp, const char *name)
{
	int err;

	krp->kp.symbol_name = name;
	err = register_kretprobe(krp);
	if (err)
		return err;
	if (!kprobe_ftrace(&krp->kp)) {
		unregister_kretprobe(krp);
		pr_err("%s has no ftrace entry: a kretprobe there would run in NMI context\n",
		       name);
		return -EOPNOTSUPP;
	}
	return 0;
}

static int osh_hook_attach_one(struct osh_hook *hook)
{
	switch (hook->kind) {
	case OSH_HOOK_TRACEPOINT:
		if (!hook->tp)
			return -ENOENT;
		return tracepoint_probe_register(hook->tp, hook->tp_probe, hook);
	case OSH_HOOK_KPROBE:
		return osh_register_int3_kprobe(&hook->krp.kp, hook->name);
	case OSH_HOOK_KRETPROBE:
		/* calls may sleep (reclaim) while others start elsewhere */
		hook->krp.maxactive = 64 * num_possible_cpus();
		return osh_register_entry_kretprobe(&hook->krp, hook->name);
	}
	return -EINVAL;
}

static void osh_hook_detach_one(struct osh_hook *hook)
{
	switch (hook->kind) {
	case OSH_HOOK_TRACEPOINT:
		tracepoint_probe_unregister(hook->tp, hook->tp_probe, hook);
		break;
	case OSH_HOOK_KPROBE:
		unregister_kprobe(&hook->krp.kp);
		break;
	case OSH_HOOK_KRETPROBE:
		unregister_kretprobe(&hook->krp);
		break;
	}
	hook->attached = false;
}

static void osh_hooks_free_counters(void)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(osh_hooks); i++) {
		free_percpu(osh_hooks[i].stat);
		osh_hooks[i].stat = NULL;
	}
}

/**
 * osh_hooks_detach() - detach every attached hook and wait for handlers
 *
 * Context: process.  After return no handler runs or will run.
 */
void osh_hooks_detach(void)
{
	size_t i;

	for (i = ARRAY_SIZE(osh_hooks); i-- > 0;) {
		if (osh_hooks[i].attached)
			osh_hook_detach_one(&osh_hooks[i]);
	}
	/* tracepoint handlers may still run until both grace periods end */
	tracepoint_synchronize_unregister();
	osh_hooks_free_counters();
}

/* Not attached on purpose: an observe-only hook with observe=0. */
static bool osh_hook_off(const struct osh_hook *hook)
{
	return hook->observe_only && !osh_observing;
}

/**
 * osh_hooks_attach() - attach every hook of the table
 * @observe: also attach the hooks that only observe the kernel's stock
 *	     operations (the fidelity check); they cost a kprobe hit per
 *	     kmem page charge and per stock drain
 * @probes_only: the handlers only count their hits (no accounting): what
 *		 the probes cost by themselves, and a load that tells a
 *		 fault of the probes from one of the handlers
 * @time_handlers: sum each hook's handler time (two sched_clock() reads
 *		   per call), the per-hook cost breakdown
 *
 * A required hook that cannot be attached makes the whole call fail with
 * nothing left attached; an optional one is logged and reported absent.
 *
 * Return: 0 or the error of the first required hook that failed.
 */
int osh_hooks_attach(bool observe, bool probes_only, bool time_handlers)
{
	size_t i;
	int err;

	/* before any hook is attached: no handler sees them change */
	if (probes_only)
		static_branch_enable(&osh_probes_only);
	if (time_handlers) {
		osh_clock_overhead_ns = osh_measure_clock_overhead();
		static_branch_enable(&osh_time_handlers);
	}

	for (i = 0; i < ARRAY_SIZE(osh_hooks); i++) {
		osh_hooks[i].stat = alloc_percpu(struct osh_hook_stat);
		if (!osh_hooks[i].stat) {
			err = -ENOMEM;
			goto free_counters;
		}
	}
	for_each_kernel_tracepoint(osh_find_tracepoint, NULL);
	osh_observing = observe;

	for (i = 0; i < ARRAY_SIZE(osh_hooks); i++) {
		struct osh_hook *hook = &osh_hooks[i];

		if (osh_hook_off(hook))
			continue;
		err = osh_hook_attach_one(hook);
		hook->err = err;
		if (!err) {
			hook->attached = true;
			continue;
		}
		if (hook->required) {
			pr_err("cannot attach required hook %s: error %d\n",
			       hook->name, err);
			goto detach_hooks;
		}
		pr_info("optional hook %s absent: error %d\n", hook->name, err);
	}
	return 0;

detach_hooks:
	osh_hooks_detach();
	return err;
free_counters:
	osh_hooks_free_counters();
	return err;
}

static const char *const osh_hook_kind_names[] = {
	[OSH_HOOK_TRACEPOINT] = "tracepoint",
	[OSH_HOOK_KPROBE] = "kprobe",
	[OSH_HOOK_KRETPROBE] = "kretprobe",
};

static struct osh_hook_stat osh_hook_stat_sum(const struct osh_hook *hook)
{
	struct osh_hook_stat sum = {};
	int cpu;

	if (!hook->stat)
		return sum;
	for_each_possible_cpu(cpu) {
		const struct osh_hook_stat *s = per_cpu_ptr(hook->stat, cpu);

		sum.hits += READ_ONCE(s->hits);
		sum.timed += READ_ONCE(s->timed);
		sum.ns += READ_ONCE(s->ns);
		sum.max_ns = max(sum.max_ns, READ_ONCE(s->max_ns));
	}
	return sum;
}

/* Hits the kprobe core dropped (nested on a CPU; no free kretprobe slot). */
static unsigned long osh_hook_misses(const struct osh_hook *hook)
{
	if (hook->kind == OSH_HOOK_KPROBE)
		return hook->krp.kp.nmissed;
	if (hook->kind == OSH_HOOK_KRETPROBE)
		return hook->krp.kp.nmissed + hook->krp.nmissed;
	return 0;
}

/**
 * osh_hooks_dump() - one line per hook: state, hits, misses
 * @ob: output
 *
 * With time_handlers=1 also the handler calls timed and their total
 * nanoseconds, and on every line the clock's own cost per timed call.
 */
void osh_hooks_dump(struct osh_buf *ob)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(osh_hooks); i++) {
		const struct osh_hook *hook = &osh_hooks[i];
		struct osh_hook_stat sum = osh_hook_stat_sum(hook);

		osh_buf_printf(ob,
			       "name=%s kind=%s required=%d state=%s error=%d hits=%lu misses=%lu",
			       hook->name, osh_hook_kind_names[hook->kind],
			       hook->required,
			       osh_hook_off(hook) ? "off" :
			       hook->attached ? "attached" : "absent",
			       hook->err, sum.hits, osh_hook_misses(hook));
		if (static_branch_unlikely(&osh_time_handlers))
			osh_buf_printf(ob,
				       " timed=%lu handler_ns=%llu handler_max_ns=%llu clock_overhead_ns=%llu",
				       sum.timed, sum.ns, sum.max_ns,
				       osh_clock_overhead_ns);
		osh_buf_printf(ob, "\n");
	}
}

/**
 * osh_events_dump() - event counters of the hooks as key=value lines
 * @ob: output
 */
void osh_events_dump(struct osh_buf *ob)
{
	struct osh_events sum;

	unsigned long misses = 0;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(osh_hooks); i++)
		misses += osh_hook_misses(&osh_hooks[i]);
	osh_sum_percpu_counters(&sum, &osh_events, sizeof(sum));
	/* events lost before any handler ran: see hooks for which */
	osh_buf_printf(ob, "hook_misses=%lu\n", misses);
	osh_buf_printf(ob, "kmem_alloc_accounted=%lu\n", sum.kmem_alloc_accounted);
	osh_buf_printf(ob, "kmem_alloc_failed=%lu\n", sum.kmem_alloc_failed);
	osh_buf_printf(ob, "memcg_online_failed=%lu\n", sum.memcg_online_failed);
}

static unsigned long osh_hook_hits(const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(osh_hooks); i++)
		if (!strcmp(osh_hooks[i].name, name))
			return osh_hooks[i].attached ?
			       osh_hook_stat_sum(&osh_hooks[i]).hits : 0;
	return 0;
}

/**
 * osh_observed_dump() - the running kernel's own stock operations
 * @ob: output
 *
 * One line, the "observed" column that the design matching the running
 * kernel must reproduce.  Absent hooks read 0 and are listed in hooks;
 * observing=0 says the module was loaded with observe=0.
 */
void osh_observed_dump(struct osh_buf *ob)
{
	struct osh_events sum;

	osh_sum_percpu_counters(&sum, &osh_events, sizeof(sum));
	osh_buf_printf(ob, "design=observed kernel=%s reference=%s observing=%d",
		       OSH_KERNEL_FAMILY, OSH_REFERENCE_DESIGN, osh_observing);
	osh_buf_printf(ob, " drain_obj_stock=%lu drain_local_stock=%lu explicit_slot_drains=%lu",
		       sum.observed_drains, osh_hook_hits(OSH_SYM_DRAIN_LOCAL),
		       sum.observed_explicit_slot_drains);
	osh_buf_printf(ob, " charge_ops=%lu charge_pages=%lu",
		       sum.observed_charge_ops, sum.observed_charge_pages);
	osh_buf_printf(ob, " uncharge_ops=%lu uncharge_pages=%lu\n",
		       sum.observed_uncharge_ops, sum.observed_uncharge_pages);
}
