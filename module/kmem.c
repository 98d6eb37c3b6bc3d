// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel side of the shadow accounting: turns kmem events into calls of
 * the pure core (module/core/acct.c), one per-CPU context per CPU.
 *
 * Hot path: interrupts off on this CPU only (the per-CPU stocks must not
 * be re-entered by an interrupt's allocation), a per-CPU recursion guard,
 * no lock shared across CPUs, no allocation, nothing that sleeps.  Every
 * event that cannot be accounted is counted in osh_kmem_events.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpuhotplug.h>
#include <linux/irq_work.h>
#include <linux/llist.h>
#include <linux/cgroup.h>
#include <linux/percpu.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
#include <linux/uaccess.h>
#include <objcg_shadow/objstats.h>
#include <objcg_shadow/outbuf.h>
#include "compat.h"
#include "osh_module.h"

struct osh_acct osh_acct;

static struct osh_cpu_ctx __percpu *osh_ctx;
static bool osh_kmem_ready;

/* task_struct pointer -> struct osh_task *, for the task-cache designs */
static struct osh_objmap osh_taskmap;
static atomic_long_t osh_task_states_at_load;

/*
 * Work the int3 kprobes' handlers (NMI context) leave for an irq_work on
 * their CPU: releases that take locks or call call_rcu().  The rcu_head
 * doubles as the list node (its first member is the next pointer, as in
 * llist_node) until the work runs and may hand it to call_rcu().
 */
struct osh_deferred {
	struct llist_head list;
	struct irq_work work;
};

static DEFINE_PER_CPU(struct osh_deferred, osh_deferred);
static atomic_long_t osh_deferred_runs, osh_deferred_offline;

static void osh_run_deferred(struct llist_node *node)
{
	while (node) {
		struct rcu_head *head = (struct rcu_head *)node;

		node = node->next;	/* before fn() reuses the head */
		head->func(head);
		atomic_long_inc(&osh_deferred_runs);
	}
}

static void osh_deferred_work(struct irq_work *work)
{
	struct osh_deferred *d = container_of(work, struct osh_deferred, work);

	osh_run_deferred(llist_del_all(&d->list));
}

void osh_defer(struct rcu_head *head, rcu_callback_t fn)
{
	struct osh_deferred *d;

	if (!in_nmi()) {
		fn(head);
		return;
	}
	BUILD_BUG_ON(offsetof(struct rcu_head, next) != 0);
	head->func = fn;
	d = this_cpu_ptr(&osh_deferred);
	llist_add((struct llist_node *)head, &d->list);
	/*
	 * A dying CPU is already out of the online mask with its local APIC
	 * off (x86 __cpu_disable()), and smpcfd_dying_cpu() may have run its
	 * irq_works for the last time: a work queued now stays claimed on the
	 * CPU's raised list with its IPI lost, and every irq_work of that CPU
	 * queued after it waits with it.  osh_cpu_dead() runs what is left.
	 */
	if (likely(cpu_online(smp_processor_id())))
		irq_work_queue(&d->work);
	else
		atomic_long_inc(&osh_deferred_offline);
}

/* Unload: no handler runs any more; what they left runs here. */
static void osh_deferred_flush(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		struct osh_deferred *d = per_cpu_ptr(&osh_deferred, cpu);

		irq_work_sync(&d->work);
		osh_run_deferred(llist_del_all(&d->list));
	}
}

/*
 * An object record is allocated on the event path, after the object it
 * describes (never NMI context in practice: only frees run there).  Not a
 * fail_alloc_every site: like the maps' growth, it is the map's storage.
 */
static void *osh_objrec_alloc(size_t size)
{
	if (WARN_ON_ONCE(in_nmi()))
		return NULL;
	return kmalloc(size, GFP_ATOMIC | __GFP_NOWARN);
}

/* index of the design that reproduces the running kernel, or -1 */
static int osh_reference;
static atomic_long_t osh_task_alloc_failed;	/* task falls back to root */
static atomic_long_t osh_task_states;
static bool osh_any_task_cache;

/* Per-CPU counts of events the glue handled or could not account. */
struct osh_kmem_events {
	unsigned long not_ready;	/* before the load-time walk finished */
	unsigned long irq_unattributed;	/* accounted alloc in irq context */
	unsigned long bypass;		/* kthread or no mm: kernel skips too */
	unsigned long unknown_memcg;	/* memcg without a shadow record */
	unsigned long attr_checked;	/* objects whose kernel objcg we read */
	unsigned long attr_mismatch;	/* kernel charged another memcg */
	unsigned long kernel_only;	/* kernel charged, shadow did not */
	unsigned long shadow_only;	/* shadow charged, kernel did not */
};

static DEFINE_PER_CPU(struct osh_kmem_events, osh_kmem_events);

#define OSH_KEV_INC(field)	this_cpu_inc(osh_kmem_events.field)

static struct osh_cpu_ctx *osh_ctx_of(struct osh_acct *acct, int cpu)
{
	if (cpu < 0 || cpu >= nr_cpu_ids || !cpu_possible(cpu))
		return NULL;
	return per_cpu_ptr(osh_ctx, cpu);
}

/* Own this CPU's context: interrupts off, not re-entered. */
static struct osh_cpu_ctx *osh_enter(unsigned long *flags)
{
	struct osh_cpu_ctx *ctx;

	local_irq_save(*flags);
	ctx = this_cpu_ptr(osh_ctx);
	if (unlikely(ctx->depth)) {
		ctx->recursion++;
		local_irq_restore(*flags);
		return NULL;
	}
	ctx->depth = 1;
	ctx->kernel_stock_busy = osh_kernel_obj_stock_busy();
	ctx->event_node = -1;
	return ctx;
}

static void osh_leave(struct osh_cpu_ctx *ctx, unsigned long flags)
{
	ctx->depth = 0;
	local_irq_restore(flags);
}

/*
 * Remove the shadow entry of @key with @remove on this CPU's context.
 * Return: whether the entry was there; true also when the context was
 * busy (counted as recursion), so the caller counts nothing more.
 */
static bool osh_uncharge_on_this_cpu(bool (*remove)(struct osh_acct *acct,
						    struct osh_cpu_ctx *ctx,
						    unsigned long key),
				     unsigned long key)
{
	struct osh_cpu_ctx *ctx;
	unsigned long flags;
	bool found;

	ctx = osh_enter(&flags);
	if (!ctx)
		return true;
	rcu_read_lock();
	found = remove(&osh_acct, ctx, key);
	rcu_read_unlock();
	osh_leave(ctx, flags);
	return found;
}

/* The shadow memcg the kernel charges for the current context, or NULL. */
static struct osh_memcg *osh_current_shadow(struct mem_cgroup **kmemcg)
{
	struct mem_cgroup *memcg;
	struct osh_memcg *shadow;
	bool irq_unknown;

	memcg = osh_current_memcg(&irq_unknown);
	*kmemcg = memcg;
	if (!memcg) {
		if (irq_unknown)
			OSH_KEV_INC(irq_unattributed);
		else
			OSH_KEV_INC(bypass);
		return NULL;
	}
	shadow = osh_memcg_lookup(&osh_tree, cgroup_id(memcg->css.cgroup));
	if (!shadow)
		OSH_KEV_INC(unknown_memcg);
	return shadow;
}

/*
 * The task's current shadow memcg, re-read at each refresh attempt; none
 * for kthreads and tasks past exit_mm(), as current_objcg_update().
 */
static struct osh_memcg *osh_current_task_memcg(void *unused)
{
	struct mem_cgroup *memcg;

	if (!current->mm || (current->flags & PF_KTHREAD))
		return NULL;
	memcg = mem_cgroup_from_task(current);

	return osh_memcg_lookup(&osh_tree, cgroup_id(memcg->css.cgroup));
}

static struct osh_task *osh_task_lookup(struct task_struct *p)
{
	struct osh_task *state;

	return osh_objmap_read(&osh_taskmap, (unsigned long)p, &state) ?
	       state : NULL;
}

static struct osh_task *osh_task_create(struct task_struct *p)
{
	struct osh_task *state = osh_task_alloc(&osh_acct,
						GFP_ATOMIC | __GFP_NOWARN);
	struct osh_task *stale;
	bool had_stale;

	if (!state) {
		atomic_long_inc(&osh_task_alloc_failed);
		return NULL;
	}
	if (!osh_objmap_insert(&osh_taskmap, (unsigned long)p, &state, &stale,
			       &had_stale)) {
		atomic_long_inc(&osh_task_alloc_failed);
		osh_task_free(state);
		state = NULL;
	} else {
		atomic_long_inc(&osh_task_states);
	}
	/* a task_struct reused before we saw its exit */
	if (had_stale) {
		osh_task_release(&osh_acct, stale);
		atomic_long_dec(&osh_task_states);
	}
	return state;
}

/*
 * Whether the current allocation goes through the task's cache, and the
 * cache: not for remote charging (active_memcg) nor outside task context,
 * which look the memcg up as 6.1 does.  A task keeps using its cache past
 * exit_mm() until mem_cgroup_exit(), as the kernels with the cache do.
 */
static bool osh_current_task_state(struct osh_task **state)
{
	*state = NULL;
	if (!osh_any_task_cache || !in_task() ||
	    READ_ONCE(current->active_memcg))
		return false;
	*state = osh_task_lookup(current);
	if (*state)
		return true;
	if (!current->mm || (current->flags & PF_KTHREAD))
		return false;
	/*
	 * States are made at fork and, for tasks older than the module, at
	 * load: never here, inside an allocation.  The designs charge this
	 * one as without the cache (task_state_missing).
	 */
	return true;
}

/* The memcg 6.1 charges: nearest online ancestor-or-self below the root. */
static u64 osh_expected_charge_id(struct osh_memcg *shadow)
{
	for (; shadow && shadow->level; shadow = shadow->parent) {
		if (READ_ONCE(shadow->state) == OSH_MEMCG_ONLINE)
			return shadow->id;
	}
	return 0;
}

/*
 * The kernel's own objcg for the object against the memcg the running
 * kernel's design charges (6.1's rule when that design is not loaded).
 */
static void osh_check_attribution(struct obj_cgroup *kobjcg,
				  struct osh_memcg *shadow,
				  struct osh_objcg **picked)
{
	u64 want = osh_expected_charge_id(shadow), got = 0;
	struct mem_cgroup *memcg;

	if (osh_reference >= 0)
		want = picked[osh_reference] ?
		       READ_ONCE(picked[osh_reference]->memcg)->id : 0;

	if (kobjcg) {
		memcg = READ_ONCE(kobjcg->memcg);
		got = memcg ? cgroup_id(memcg->css.cgroup) : 0;
	}
	OSH_KEV_INC(attr_checked);
	if (!got && want)
		OSH_KEV_INC(shadow_only);
	else if (got && !want)
		OSH_KEV_INC(kernel_only);
	else if (got != want)
		OSH_KEV_INC(attr_mismatch);
}

/*
 * The common start of every charge event: this CPU's context, the memcg
 * 6.1 would charge, optionally checked against the kernel's own objcg,
 * and each design's objcg.  On true the caller charges, then calls
 * osh_charge_end().
 */
struct osh_charge {
	struct osh_cpu_ctx *ctx;
	unsigned long flags;
	struct osh_memcg *shadow;
	struct obj_cgroup *kernel_objcg;	/* when checked */
	struct osh_objcg *picked[OSH_MAX_DESIGNS];
};

static void osh_charge_end(struct osh_charge *c)
{
	rcu_read_unlock();
	osh_leave(c->ctx, c->flags);
}

static bool osh_charge_begin(struct osh_charge *c, int node, bool check,
			     struct obj_cgroup *(*kernel_objcg)(const void *key,
								const void *arg),
			     const void *key, const void *arg)
{
	struct mem_cgroup *kmemcg;
	struct osh_task *state;
	bool use_cache;
	int n = 0;

	if (unlikely(!READ_ONCE(osh_kmem_ready))) {
		OSH_KEV_INC(not_ready);
		return false;
	}
	/* before entering: creating task state allocates */
	use_cache = osh_current_task_state(&state);
	c->ctx = osh_enter(&c->flags);
	if (!c->ctx)
		return false;
	c->ctx->event_node = node;
	rcu_read_lock();
	c->shadow = osh_current_shadow(&kmemcg);
	memset(c->picked, 0, sizeof(c->picked));
	if (c->shadow || state)
		n = osh_acct_pick_all(&osh_acct, c->ctx, c->shadow, state,
				      use_cache ? osh_current_task_memcg : NULL,
				      NULL, c->picked);
	c->kernel_objcg = check ? kernel_objcg(key, arg) : NULL;
	if (check)
		osh_check_attribution(c->kernel_objcg, c->shadow, c->picked);
	if (n)
		return true;
	osh_charge_end(c);
	return false;
}

static struct obj_cgroup *osh_kernel_objcg_of_obj(const void *obj,
						  const void *cache)
{
	return osh_kernel_obj_objcg(obj, cache);
}

static struct obj_cgroup *osh_kernel_objcg_of_page(const void *page,
						   const void *unused)
{
	return osh_kernel_page_objcg((struct page *)page);
}

/**
 * osh_kmem_cache_accounted() - whether allocations from @s with @gfp charge
 * @s: a slab cache
 * @gfp: allocation flags
 *
 * Return: true if kmem accounting is on and @s is SLAB_ACCOUNT or @gfp has
 * __GFP_ACCOUNT.
 * Context: any.
 */
bool osh_kmem_cache_accounted(struct kmem_cache *s, gfp_t gfp)
{
	if (!osh_memcg_kmem_on())
		return false;
	return (gfp & __GFP_ACCOUNT) || (osh_cache_layout(s)->flags & SLAB_ACCOUNT);
}

/* An object of a SLAB_ACCOUNT cache the kernel charges to no memcg. */
static void osh_slabmodel_log_uncharged(const void *ptr, struct kmem_cache *s)
{
	if (!s)
		s = osh_obj_cache(ptr);
	if (s && (osh_cache_layout(s)->flags & SLAB_ACCOUNT))
		osh_slabmodel_log_alloc(ptr, s, NULL);
}

/*
 * The charging part of osh_kmem_slab_alloc(), out of line: its charge
 * state is zeroed on entry (the kernel's INIT_STACK_ALL_ZERO), which the
 * far more frequent unaccounted allocations need not pay for.
 */
static noinline void osh_kmem_slab_charge(const void *ptr, struct kmem_cache *s,
					  const struct osh_slub_cache_prefix *l)
{
	int node = page_to_nid(virt_to_page(ptr));
	struct osh_charge c;

	if (!osh_charge_begin(&c, node, true, osh_kernel_objcg_of_obj, ptr, s)) {
		/* charged to no memcg: the root's caches before 5.9 */
		if (osh_slabmodel_enabled)
			osh_slabmodel_log_alloc(ptr, s, NULL);
		return;
	}
	osh_acct_slab_alloc(&osh_acct, c.ctx, c.shadow, c.picked,
			    (unsigned long)ptr, osh_obj_full_size(s), node,
			    (l->flags & SLAB_RECLAIM_ACCOUNT) ?
			    OSH_SLAB_RECLAIMABLE : OSH_SLAB_UNRECLAIMABLE,
			    c.kernel_objcg ? 0 : OSH_OBJINFO_KERNEL_UNCHARGED);
	if (osh_slabmodel_enabled)
		osh_slabmodel_log_alloc(ptr, s, c.shadow);
	osh_charge_end(&c);
}

/**
 * osh_kmem_slab_alloc() - account one slab allocation event
 * @ptr: the object
 * @s: its cache, or NULL to find it from the slab
 * @gfp: allocation flags
 *
 * Context: tracepoint or kretprobe handler.
 */
void osh_kmem_slab_alloc(const void *ptr, struct kmem_cache *s, gfp_t gfp)
{
	const struct osh_slub_cache_prefix *l;
	bool accounted;

	if (unlikely(!ptr))
		return;
	if (!osh_memcg_kmem_on()) {
		/* before the first memcg nothing is charged, but slabs fill */
		if (osh_slabmodel_enabled)
			osh_slabmodel_log_uncharged(ptr, s);
		return;
	}
	if (!s) {
		s = osh_obj_cache(ptr);
		if (!s) {
			/* large kmalloc: its charge was a kmem page event */
			if (gfp & __GFP_ACCOUNT)
				osh_acct_mark_page(&osh_acct,
						   (unsigned long)virt_to_page(ptr),
						   OSH_OBJINFO_LARGE_KMALLOC);
			return;
		}
	}
	l = osh_cache_layout(s);
	accounted = (gfp & __GFP_ACCOUNT) || (l->flags & SLAB_ACCOUNT);
	if (!accounted) {
		/* cheap test first: only slabs with objcgs can disagree */
		if (unlikely(osh_kernel_obj_objcg(ptr, s)))
			OSH_KEV_INC(kernel_only);
		return;
	}
	osh_kmem_slab_charge(ptr, s, l);
}

/**
 * osh_kmem_slab_charge_existing() - kmem_cache_charge() of an object
 * @ptr: the object, allocated without accounting
 * @gfp: the flags of the charge
 *
 * The kernel charges it as if it had been allocated with __GFP_ACCOUNT
 * (unless it already was): so does the shadow.
 * Context: kretprobe handler of kmem_cache_charge(), same task.
 */
void osh_kmem_slab_charge_existing(const void *ptr, gfp_t gfp)
{
	if (ptr && !osh_objmap_contains(&osh_acct.objmap, (unsigned long)ptr))
		osh_kmem_slab_alloc(ptr, NULL, gfp | __GFP_ACCOUNT);
}

/**
 * osh_kmem_slab_free() - account one slab free event
 * @ptr: the object, about to be freed
 *
 * An object the shadow does not know that the kernel had charged (it was
 * allocated before load, or dropped) is counted as an untracked free and
 * changes nothing else, so no counter can go negative.  An object the
 * kernel did not charge is not looked up at all while the shadow holds
 * none such (see OSH_OBJINFO_KERNEL_UNCHARGED): most frees end here.
 *
 * Context: tracepoint or kprobe handler.
 */
void osh_kmem_slab_free(const void *ptr)
{
	struct kmem_cache *s;
	bool kernel_charged;

	if (unlikely(ZERO_OR_NULL_PTR(ptr)))
		return;
	/* the kernel's free hook clears its vector after this event */
	s = osh_obj_cache(ptr);
	kernel_charged = s && osh_kernel_obj_objcg(ptr, s);
	/* the model holds every object of SLAB_ACCOUNT caches, charged or not */
	if (osh_slabmodel_enabled && s &&
	    (kernel_charged || (osh_cache_layout(s)->flags & SLAB_ACCOUNT)))
		osh_slabmodel_log_free(ptr);
	if (!kernel_charged && osh_acct_kernel_charged_all(&osh_acct))
		return;
	if (osh_uncharge_on_this_cpu(osh_acct_slab_free, (unsigned long)ptr))
		return;
	if (kernel_charged)
		atomic_long_inc(&osh_acct.events[OSH_EV_OBJ_UNTRACKED_FREE]);
}

/**
 * osh_kmem_percpu_alloc() - account an accounted percpu allocation
 * @ptr: the percpu pointer pcpu_alloc() returned
 * @size: its size, aligned as pcpu_alloc() aligns it
 *
 * pcpu_memcg_pre_alloc_hook() charges pcpu_obj_full_size() through the
 * obj stock, with the same choice of objcg as a slab object.
 * Context: kretprobe handler of pcpu_alloc(), same task.
 */
void osh_kmem_percpu_alloc(void __percpu *ptr, size_t size)
{
	struct osh_charge c;

	if (!osh_charge_begin(&c, -1, false, NULL, NULL, NULL))
		return;
	osh_acct_slab_alloc(&osh_acct, c.ctx, c.shadow, c.picked,
			    (unsigned long)ptr, osh_pcpu_obj_full_size(size), -1,
			    OSH_OBJ_PERCPU, 0);
	osh_charge_end(&c);
}

/**
 * osh_kmem_percpu_free() - uncharge a percpu allocation the shadow has
 * @ptr: the percpu pointer being freed
 *
 * Context: kprobe handler of free_percpu().
 */
void osh_kmem_percpu_free(void __percpu *ptr)
{
	if (ptr)
		osh_uncharge_on_this_cpu(osh_acct_slab_free, (unsigned long)ptr);
}

/**
 * osh_kmem_page_charged() - a kmem page was charged by the kernel
 * @page: first page
 * @order: allocation order
 *
 * Context: kretprobe handler of __memcg_kmem_charge_page(), same task.
 */
void osh_kmem_page_charged(struct page *page, unsigned int order)
{
	struct osh_charge c;

	if (!osh_charge_begin(&c, page_to_nid(page), true,
			      osh_kernel_objcg_of_page, page, NULL))
		return;
	osh_acct_page_alloc(&osh_acct, c.ctx, c.shadow, c.picked,
			    (unsigned long)page, 1U << order, page_to_nid(page));
	osh_charge_end(&c);
}

/**
 * osh_kmem_page_uncharging() - a kmem page is about to be uncharged
 * @page: first page
 *
 * Context: kprobe handler of __memcg_kmem_uncharge_page().
 */
void osh_kmem_page_uncharging(struct page *page)
{
	if (!osh_uncharge_on_this_cpu(osh_acct_page_free, (unsigned long)page) &&
	    osh_kernel_page_objcg(page))
		atomic_long_inc(&osh_acct.events[OSH_EV_PAGE_UNTRACKED_FREE]);
}

/**
 * osh_kmem_drain_this_cpu() - drain every design's stocks on this CPU
 *
 * Context: kprobe on drain_local_stock(), which runs on the CPU drained.
 */
void osh_kmem_drain_this_cpu(void)
{
	struct osh_cpu_ctx *ctx;
	unsigned long flags;

	if (!READ_ONCE(osh_kmem_ready))
		return;
	ctx = osh_enter(&flags);
	if (!ctx)
		return;
	rcu_read_lock();
	osh_acct_drain_cpu(&osh_acct, ctx);
	rcu_read_unlock();
	osh_leave(ctx, flags);
}

/**
 * osh_kmem_task_forked() - count a new task's kernel stack pages
 * @child: the new task
 *
 * Context: sched_process_fork tracepoint; the child cannot be freed.
 */
void osh_kmem_task_forked(struct task_struct *child)
{
	struct page **pages;
	unsigned int i, n = osh_task_stack_pages(child, &pages);

	for (i = 0; i < n; i++)
		osh_acct_mark_page(&osh_acct, (unsigned long)pages[i],
				   OSH_OBJINFO_STACK);
	/* mem_cgroup_fork(): eager, flagged for a refresh; none for kthreads */
	if (osh_any_task_cache && !(child->flags & PF_KTHREAD))
		osh_task_create(child);
}

/**
 * osh_kmem_discover_tasks() - task-cache state for the tasks older than
 *	the module
 *
 * The kernel gave them their cache at fork; the shadow gives them theirs
 * now (flagged for a refresh, as at fork), not inside an allocation.  A
 * task forked meanwhile got its state from the fork hook already.
 * Context: process, at load, after the hooks are attached.
 */
void osh_kmem_discover_tasks(void)
{
	struct task_struct *g, *p;
	size_t threads = 0;

	if (!osh_any_task_cache)
		return;
	/* room first: the scan below holds RCU, so growth could not run */
	rcu_read_lock();
	for_each_process_thread(g, p)
		threads++;
	rcu_read_unlock();
	if (osh_objmap_reserve(&osh_taskmap, threads + threads / 4))
		pr_warn("no room for %zu task states; some will be missing\n",
			threads);
	rcu_read_lock();
	for_each_process_thread(g, p) {
		if ((p->flags & (PF_KTHREAD | PF_EXITING)) || osh_task_lookup(p))
			continue;
		if (osh_task_create(p))
			atomic_long_inc(&osh_task_states_at_load);
	}
	rcu_read_unlock();
}

/**
 * osh_kmem_task_gone() - mem_cgroup_exit(): drop the task's state
 * @p: the exiting (or freed) task
 *
 * Context: sched_process_exit (the task itself) or sched_process_free.
 */
void osh_kmem_task_gone(struct task_struct *p)
{
	struct osh_task *state;

	if (!osh_objmap_remove(&osh_taskmap, (unsigned long)p, &state))
		return;
	osh_task_release(&osh_acct, state);
	atomic_long_dec(&osh_task_states);
}

/**
 * osh_kmem_task_attached() - attach: flag the task's caches for refresh
 * @leader: the task moved, or the leader of the thread group moved
 * @threadgroup: the whole thread group moved
 *
 * Context: cgroup_attach_task tracepoint.
 */
void osh_kmem_task_attached(struct task_struct *leader, bool threadgroup)
{
	struct task_struct *t;

	rcu_read_lock();
	if (threadgroup) {
		for_each_thread(leader, t) {
			struct osh_task *state = osh_task_lookup(t);

			if (state)
				osh_task_mark_update(&osh_acct, state);
		}
	} else {
		struct osh_task *state = osh_task_lookup(leader);

		if (state)
			osh_task_mark_update(&osh_acct, state);
	}
	rcu_read_unlock();
}

/**
 * osh_kmem_memcg_online() - give a new shadow memcg its objcgs
 * @memcg: the record
 * @gfp: allocation context
 */
void osh_kmem_memcg_online(struct osh_memcg *memcg, gfp_t gfp)
{
	osh_acct_memcg_online(&osh_acct, memcg, gfp);
}

/**
 * osh_kmem_memcg_offline() - reparent a memcg's objcgs (css_offline)
 * @id: cgroup id
 */
void osh_kmem_memcg_offline(u64 id)
{
	struct osh_memcg *memcg = osh_memcg_get_by_id(&osh_tree, id);

	if (!memcg)
		return;
	osh_acct_memcg_offline(&osh_acct, memcg);
	if (osh_slabmodel_enabled)
		osh_slabmodel_log_offline(memcg);
	osh_memcg_put(memcg);
}

/**
 * osh_kmem_memcg_freed() - fold a freed memcg's counters into its parent
 * @id: cgroup id
 */
void osh_kmem_memcg_freed(u64 id)
{
	struct osh_memcg *memcg = osh_memcg_get_by_id(&osh_tree, id);

	if (!memcg)
		return;
	osh_acct_memcg_freed(&osh_acct, memcg);
	osh_memcg_put(memcg);
}

static void *osh_vzalloc(size_t size)
{
	return vzalloc(size);
}

static void osh_vfree(void *p)
{
	vfree(p);
}

/*
 * Map growth: a map asks from the event path (any context, NMI included),
 * an irq_work hands it to a worker, and the worker grows every map that
 * asked (osh_objmap_grow() sleeps).
 */
static struct osh_objmap *const osh_maps[] = {
	&osh_acct.objmap, &osh_acct.pagemap, &osh_taskmap,
};

static struct work_struct osh_grow_work;

static void osh_grow_maps(struct work_struct *work)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(osh_maps); i++) {
		if (osh_objmap_wants_growth(osh_maps[i]))
			osh_objmap_grow(osh_maps[i]);
	}
}

static void osh_grow_irq(struct irq_work *work)
{
	queue_work(system_unbound_wq, &osh_grow_work);
}

/*
 * Lazy: it runs from the next tick, not from a self-IPI taken the moment
 * the handler that asked re-enables interrupts, still inside its kprobe,
 * where the softirqs run on that IPI's exit free objects whose probes then
 * count as missed (seen on 6.12).
 */
static struct irq_work osh_grow_irq_work = IRQ_WORK_INIT_LAZY(osh_grow_irq);

static void osh_map_grow_needed(struct osh_objmap *map)
{
	irq_work_queue(&osh_grow_irq_work);
}

/**
 * osh_kmem_init() - allocate the accounting state
 * @designs: designs to run
 * @nr_designs: how many
 * @objmap_bits: log2 of object-map buckets (8 objects each) at load
 * @pagemap_bits: log2 of page-map buckets at load
 * @taskmap_bits: log2 of task-map buckets at load
 * @grow: whether the maps grow with use (testing: false keeps them)
 *
 * Return: 0, -EINVAL, -ENOMEM.
 */
int osh_kmem_init(const struct osh_design *designs, unsigned int nr_designs,
		  unsigned int objmap_bits, unsigned int pagemap_bits,
		  unsigned int taskmap_bits, bool grow)
{
	void (*grow_needed)(struct osh_objmap *map) =
		grow ? osh_map_grow_needed : NULL;
	unsigned int d;
	int cpu, err;

	if (nr_node_ids > OSH_MAX_NODES) {
		pr_err("%u NUMA node ids, at most %u supported\n", nr_node_ids,
		       OSH_MAX_NODES);
		return -EINVAL;
	}
	osh_ctx = alloc_percpu(struct osh_cpu_ctx);
	if (!osh_ctx)
		return -ENOMEM;
	INIT_WORK(&osh_grow_work, osh_grow_maps);
	err = osh_acct_init(&osh_acct, designs, nr_designs, nr_node_ids,
			    nr_cpu_ids, objmap_bits, pagemap_bits, osh_vzalloc,
			    osh_vfree, grow_needed);
	if (err)
		goto destroy_acct;
	err = osh_objmap_init(&osh_taskmap, taskmap_bits,
			      sizeof(struct osh_task *), osh_vzalloc, osh_vfree,
			      grow_needed);
	if (err)
		goto destroy_taskmap;
	osh_acct.cpu_ctx = osh_ctx_of;
	osh_acct.objrec_alloc = osh_objrec_alloc;
	osh_reference = -1;
	for (d = 0; d < nr_designs; d++) {
		osh_any_task_cache |= designs[d].task_cache != OSH_TASK_CACHE_NONE;
		if (!strcmp(designs[d].name, OSH_REFERENCE_DESIGN))
			osh_reference = d;
	}
	osh_acct.reference = osh_reference;
	for_each_possible_cpu(cpu) {
		osh_acct_cpu_init(&osh_acct, per_cpu_ptr(osh_ctx, cpu), cpu,
				  cpu_to_node(cpu));
		init_llist_head(&per_cpu_ptr(&osh_deferred, cpu)->list);
		init_irq_work(&per_cpu_ptr(&osh_deferred, cpu)->work,
			      osh_deferred_work);
	}
	return 0;

destroy_taskmap:
	osh_objmap_destroy(&osh_taskmap);
destroy_acct:
	osh_acct_destroy(&osh_acct);
	free_percpu(osh_ctx);
	return err;
}

static int osh_cpuhp_online = -1, osh_cpuhp_dead = -1;
static atomic_long_t osh_cpus_onlined, osh_cpus_died;

/* On the CPU itself: its node may have changed while it was offline. */
static int osh_cpu_online(unsigned int cpu)
{
	struct osh_deferred *d = per_cpu_ptr(&osh_deferred, cpu);

	/* what handlers deferred while the CPU was coming up; bound to it */
	if (!llist_empty(&d->list))
		irq_work_queue(&d->work);
	osh_acct_cpu_online(per_cpu_ptr(osh_ctx, cpu), cpu_to_node(cpu));
	atomic_long_inc(&osh_cpus_onlined);
	return 0;
}

/* On a surviving CPU once @cpu is dead: no handler runs there any more. */
static int osh_cpu_dead(unsigned int cpu)
{
	unsigned long flags;

	/* what the CPU deferred while dying, with IRQs off as in its irq_work */
	local_irq_save(flags);
	osh_run_deferred(llist_del_all(&per_cpu_ptr(&osh_deferred, cpu)->list));
	local_irq_restore(flags);
	osh_acct_cpu_dead(&osh_acct, per_cpu_ptr(osh_ctx, cpu));
	atomic_long_inc(&osh_cpus_died);
	return 0;
}

/* The shadow's objcg for a kernel one in a stock slot (see osh_acct_seed_stock()). */
static struct osh_objcg *osh_seed_objcg(struct obj_cgroup *kobjcg)
{
	struct mem_cgroup *memcg;
	struct osh_memcg *shadow;
	struct osh_objcg *objcg;
	int node;

	if (!kobjcg)
		return NULL;
	memcg = READ_ONCE(kobjcg->memcg);
	node = memcg ? osh_kernel_objcg_node(memcg, kobjcg) : -1;
	shadow = node >= 0 ? osh_memcg_lookup(&osh_tree,
					      cgroup_id(memcg->css.cgroup)) : NULL;
	objcg = shadow ? osh_objcg_tryget_active(&osh_acct, osh_reference,
						 shadow, node) : NULL;
	return objcg ?: ERR_PTR(-ENOENT);
}

/*
 * On each CPU, IRQs off, before events are accounted: the reference
 * design's stock starts as the kernel's stands (7.3's five slots and its
 * round-robin victim), so that both evict on the same turns.
 */
static void osh_seed_stock_cpu(void *unused)
{
	struct obj_cgroup *kobjcg[OSH_STOCK_MAX_SLOTS];
	struct osh_objcg *held[OSH_STOCK_MAX_SLOTS];
	unsigned int victim, n, i;
	struct osh_cpu_ctx *ctx;
	unsigned long flags;

	n = osh_kernel_stock_slots(kobjcg, ARRAY_SIZE(kobjcg), &victim);
	if (!n)
		return;
	ctx = osh_enter(&flags);
	if (!ctx)
		return;
	rcu_read_lock();
	for (i = 0; i < n; i++)
		held[i] = osh_seed_objcg(kobjcg[i]);
	rcu_read_unlock();
	if (!osh_acct_seed_stock(&osh_acct, osh_reference, ctx, victim, held, n))
		for (i = 0; i < n; i++)
			if (!IS_ERR_OR_NULL(held[i]))
				osh_objcg_put(held[i]);
	osh_leave(ctx, flags);
}

/**
 * osh_kmem_start() - start accounting once every memcg has a record
 *
 * Also follows CPU hotplug from now on, as the running kernel does: a
 * dead CPU's stocks are drained where its kernel drains them.
 *
 * Return: 0, or the error of registering the CPU hotplug callbacks.
 */
int osh_kmem_start(void)
{
	int ret;

	ret = cpuhp_setup_state_nocalls(CPUHP_AP_ONLINE_DYN, "objcg_shadow:online",
					osh_cpu_online, NULL);
	if (ret < 0)
		return ret;
	osh_cpuhp_online = ret;
	ret = cpuhp_setup_state_nocalls(CPUHP_BP_PREPARE_DYN, "objcg_shadow:dead",
					NULL, osh_cpu_dead);
	if (ret < 0) {
		cpuhp_remove_state_nocalls(osh_cpuhp_online);
		osh_cpuhp_online = -1;
		return ret;
	}
	osh_cpuhp_dead = ret;
	if (osh_reference >= 0)
		on_each_cpu(osh_seed_stock_cpu, NULL, 1);
	WRITE_ONCE(osh_kmem_ready, true);
	return 0;
}

/**
 * osh_kmem_dump_hotplug() - CPU hotplug counters as key=value lines
 * @ob: output
 */
void osh_kmem_dump_hotplug(struct osh_buf *ob)
{
	osh_buf_printf(ob, "cpus_onlined=%ld\ncpus_died=%ld\ndeferred_from_nmi=%ld\n"
		       "deferred_on_offline_cpu=%ld\n",
		       atomic_long_read(&osh_cpus_onlined),
		       atomic_long_read(&osh_cpus_died),
		       atomic_long_read(&osh_deferred_runs),
		       atomic_long_read(&osh_deferred_offline));
}

static void osh_release_task_entry(unsigned long key, void *val, void *arg)
{
	osh_task_release(&osh_acct, *(struct osh_task **)val);
}

/**
 * osh_kmem_stop() - drop every reference; hooks must be detached
 *
 * Drains each CPU's stocks from this CPU: no handler runs any more.
 */
void osh_kmem_stop(void)
{
	int cpu;

	/* no hotplug callback drains a stock from here on */
	if (osh_cpuhp_dead >= 0)
		cpuhp_remove_state_nocalls(osh_cpuhp_dead);
	if (osh_cpuhp_online >= 0)
		cpuhp_remove_state_nocalls(osh_cpuhp_online);
	osh_cpuhp_dead = -1;
	osh_cpuhp_online = -1;
	WRITE_ONCE(osh_kmem_ready, false);
	osh_deferred_flush();
	/* no handler asks for growth any more: let a running one finish */
	irq_work_sync(&osh_grow_irq_work);
	cancel_work_sync(&osh_grow_work);
	osh_objmap_for_each(&osh_taskmap, osh_release_task_entry, NULL);
	for_each_possible_cpu(cpu)
		osh_acct_drain_cpu(&osh_acct, per_cpu_ptr(osh_ctx, cpu));
	osh_acct_teardown(&osh_acct, &osh_tree);
}

/**
 * osh_kmem_exit() - free the accounting state; after the tree is gone
 */
void osh_kmem_exit(void)
{
	osh_objmap_destroy(&osh_taskmap);
	osh_acct_destroy(&osh_acct);
	free_percpu(osh_ctx);
	osh_ctx = NULL;
}

/**
 * osh_sum_percpu_counters() - sum a per-CPU struct of counters
 * @sum: output, @size bytes
 * @pcp: the per-CPU struct, made only of unsigned long counters
 * @size: its size
 */
void osh_sum_percpu_counters(void *sum, const void __percpu *pcp, size_t size)
{
	unsigned long *out = sum;
	size_t i;
	int cpu;

	memset(out, 0, size);
	for_each_possible_cpu(cpu) {
		const unsigned long *in = per_cpu_ptr(pcp, cpu);

		for (i = 0; i < size / sizeof(long); i++)
			out[i] += READ_ONCE(in[i]);
	}
}

/**
 * osh_kmem_dump_events() - glue and core event counters, key=value lines
 * @ob: output
 */
void osh_kmem_dump_events(struct osh_buf *ob)
{
	struct osh_kmem_events sum;

	osh_sum_percpu_counters(&sum, &osh_kmem_events, sizeof(sum));
	osh_buf_printf(ob, "not_ready=%lu\nirq_unattributed=%lu\nbypass_kthread_or_no_mm=%lu\n",
		       sum.not_ready, sum.irq_unattributed, sum.bypass);
	osh_buf_printf(ob, "unknown_memcg=%lu\nattribution_checked=%lu\n",
		       sum.unknown_memcg, sum.attr_checked);
	osh_buf_printf(ob, "attribution_mismatch=%lu\nkernel_only=%lu\nshadow_only=%lu\n",
		       sum.attr_mismatch, sum.kernel_only, sum.shadow_only);
	osh_buf_printf(ob,
		       "task_states=%ld\ntask_states_at_load=%ld\ntask_state_alloc_failed=%ld\n",
		       atomic_long_read(&osh_task_states),
		       atomic_long_read(&osh_task_states_at_load),
		       atomic_long_read(&osh_task_alloc_failed));
	osh_objmap_dump(&osh_taskmap, "taskmap", ob);
	osh_acct_dump_events(&osh_acct, ob);
}

/**
 * osh_kmem_dump_memcgs() - per-memcg accounting, every design
 * @ob: output
 */
void osh_kmem_dump_memcgs(struct osh_buf *ob)
{
	unsigned int d;

	for (d = 0; d < osh_acct.nr_designs; d++)
		osh_acct_dump_memcgs(&osh_acct, &osh_tree, d, ob);
}

/**
 * osh_kmem_dump_designs() - per-design configuration and counters
 * @ob: output
 */
void osh_kmem_dump_designs(struct osh_buf *ob)
{
	osh_acct_dump_designs(&osh_acct, ob);
}

/**
 * osh_kmem_dump_objects() - totals over the object map
 * @ob: output
 */
void osh_kmem_dump_objects(struct osh_buf *ob)
{
	struct osh_live_totals t;

	osh_acct_live_totals(&osh_acct, &t);
	osh_buf_printf(ob, "tracked_objects=%lu tracked_bytes=%lu ", t.objects,
		       t.bytes);
	osh_buf_printf(ob, "tracked_pages=%lu large_kmalloc_bytes=%lu stack_bytes=%lu ",
		       t.pages, t.large_kmalloc_bytes, t.stack_bytes);
	osh_buf_printf(ob, "percpu_objects=%lu percpu_bytes=%lu\n",
		       t.percpu_objects, t.percpu_bytes);
}

/**
 * osh_kmem_dump_pins() - dying memcgs and the objcgs born in them
 * @ob: output
 */
void osh_kmem_dump_pins(struct osh_buf *ob)
{
	osh_acct_dump_pins(&osh_acct, &osh_tree, osh_acct_report_design(&osh_acct), ob);
}

static unsigned long osh_cache_of(unsigned long obj)
{
	return (unsigned long)osh_obj_cache((const void *)obj);
}

static void osh_dump_objstat(struct osh_buf *ob, const struct osh_objstat *e)
{
	unsigned int object_size;
	char name[64];

	osh_buf_printf(ob, "memcg=%llu born=%llu kind=%s node=%d",
		       (unsigned long long)e->memcg_id,
		       (unsigned long long)e->born_id,
		       osh_objstat_kind_name(e->kind), e->node);
	if (e->kind == OSH_OBJSTAT_SLAB) {
		/* the cache may be gone since the walk: read without faulting */
		if (!osh_cache_name(e->cache, name, sizeof(name)))
			strscpy(name, "?", sizeof(name));
		if (copy_from_kernel_nofault(&object_size,
					     &osh_cache_layout((void *)e->cache)->object_size,
					     sizeof(object_size)))
			object_size = 0;
		osh_buf_printf(ob, " cache=");
		osh_buf_puts_escaped(ob, name);
		osh_buf_printf(ob, " object_size=%u", object_size);
	}
	osh_buf_printf(ob, " objects=%lu", e->nr);
	if (e->kind != OSH_OBJSTAT_SLAB && e->kind != OSH_OBJSTAT_PERCPU)
		osh_buf_printf(ob, " pages=%lu", e->pages);
	osh_buf_printf(ob, " bytes=%lu\n", e->bytes);
}

/**
 * osh_kmem_dump_slabinfo() - live charged objects per memcg, cache and node
 * @ob: output
 *
 * Grouped by the memcg each object's objcg points to now (what memory.stat
 * counts) and the memcg the objcg was born in (what a dead cgroup left).
 */
void osh_kmem_dump_slabinfo(struct osh_buf *ob)
{
	struct osh_objstats st = {};
	unsigned int d = osh_acct_report_design(&osh_acct);
	size_t i;
	int err;

	err = osh_objstats_collect(&osh_acct, d, osh_cache_of, &st);
	osh_buf_printf(ob, "design=%s raced=%lu unowned=%lu\n",
		       osh_acct.designs[d].name, st.raced, st.unowned);
	if (err)
		osh_buf_printf(ob, "error=%s\n", err == -ENOMEM ? "ENOMEM" : "EINVAL");
	for (i = 0; i < st.cap; i++) {
		if (st.v[i].nr)
			osh_dump_objstat(ob, &st.v[i]);
		if (!(i & 1023))
			cond_resched();
	}
	osh_objstats_free(&st);
}
