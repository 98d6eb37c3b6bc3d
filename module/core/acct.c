// SPDX-License-Identifier: GPL-2.0
/*
 * Shadow obj_cgroups, page charges, reparenting and the object paths.
 * See include/objcg_shadow/acct.h for the model and its locking.
 */
#include <objcg_shadow/acct.h>
#include <objcg_shadow/outbuf.h>
#include "acct_internal.h"

static void osh_event(struct osh_acct *acct, enum osh_acct_event ev, long n)
{
	atomic_long_add(n, &acct->events[ev]);
}

static unsigned int osh_nr_objcgs(const struct osh_acct *acct,
				  unsigned int d)
{
	return acct->designs[d].per_node_objcg ? acct->nr_nodes : 1;
}

static atomic_long_t *osh_objcg_stat(struct osh_objcg *objcg, int node,
				     enum osh_objcg_stat item)
{
	if (node < 0 || node >= (int)objcg->acct->nr_nodes)
		node = 0;
	return &objcg->stat[node * OSH_NR_OBJCG_STATS + item];
}

/* --- page counter (MEMCG_KMEM) ----------------------------------------- */

/**
 * osh_charge_pages() - obj_cgroup_charge_pages()
 * @acct: accounting state
 * @d: design index
 * @ctx: this CPU's context
 * @objcg: objcg whose current memcg is charged
 * @nr_pages: pages
 */
void osh_charge_pages(struct osh_acct *acct, unsigned int d,
		      struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
		      unsigned int nr_pages)
{
	atomic_long_add(nr_pages, &osh_objcg_mdesign(objcg)->kmem_pages);
	ctx->cnt[d].charge_ops++;
	ctx->cnt[d].charge_pages += nr_pages;
}

/**
 * osh_uncharge_pages() - obj_cgroup_uncharge_pages()
 * @acct: accounting state
 * @d: design index
 * @ctx: this CPU's context
 * @objcg: objcg whose current memcg is uncharged
 * @nr_pages: pages
 */
void osh_uncharge_pages(struct osh_acct *acct, unsigned int d,
			struct osh_cpu_ctx *ctx, struct osh_objcg *objcg,
			unsigned int nr_pages)
{
	atomic_long_sub(nr_pages, &osh_objcg_mdesign(objcg)->kmem_pages);
	ctx->cnt[d].uncharge_ops++;
	ctx->cnt[d].uncharge_pages += nr_pages;
}

/* --- objcg lifetime ----------------------------------------------------- */

static void osh_objcg_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct osh_objcg, rcu));
}

/* obj_cgroup_release(): the remainder can only be whole pages by now. */
static void osh_objcg_release(struct osh_objcg *objcg)
{
	struct osh_acct *acct = objcg->acct;
	unsigned int nr_bytes = atomic_read(&objcg->nr_charged_bytes);
	struct osh_memcg *memcg;
	unsigned long flags;

	WARN_ON_ONCE(!acct->tearing_down && (nr_bytes & (PAGE_SIZE - 1)));
	if (nr_bytes >> PAGE_SHIFT) {
		atomic_long_sub(nr_bytes >> PAGE_SHIFT,
				&osh_objcg_mdesign(objcg)->kmem_pages);
		osh_event(acct, OSH_EV_RELEASE_UNCHARGED_PAGES,
			  nr_bytes >> PAGE_SHIFT);
	}
	spin_lock_irqsave(&acct->objcg_lock, flags);
	list_del_init(&objcg->list);
	memcg = objcg->memcg;
	spin_unlock_irqrestore(&acct->objcg_lock, flags);

	osh_event(acct, OSH_EV_OBJCG_RELEASED, 1);
	osh_memcg_put(memcg);
	call_rcu(&objcg->rcu, osh_objcg_free_rcu);
}

/* Takes objcg_lock and calls call_rcu(): never from NMI (osh_defer()). */
static void osh_objcg_release_head(struct rcu_head *head)
{
	osh_objcg_release(container_of(head, struct osh_objcg, rcu));
}

/**
 * osh_objcg_get() - take a reference; the caller already holds one
 * @objcg: the objcg
 */
void osh_objcg_get(struct osh_objcg *objcg)
{
	atomic_long_inc(&objcg->ref);
}

/**
 * osh_objcg_put() - drop a reference, releasing the objcg on the last one
 * @objcg: the objcg, may be NULL
 */
void osh_objcg_put(struct osh_objcg *objcg)
{
	if (objcg && atomic_long_dec_and_test(&objcg->ref))
		osh_defer(&objcg->rcu, osh_objcg_release_head);
}

static bool osh_objcg_tryget(struct osh_objcg *objcg)
{
	long old = atomic_long_read(&objcg->ref);

	do {
		if (!old)
			return false;
	} while (!atomic_long_try_cmpxchg(&objcg->ref, &old, old + 1));
	return true;
}

static struct osh_objcg *osh_objcg_alloc(struct osh_acct *acct, unsigned int d,
					 struct osh_memcg *memcg, int node,
					 gfp_t gfp)
{
	size_t nstats = (size_t)acct->nr_nodes * OSH_NR_OBJCG_STATS;
	struct osh_objcg *objcg;

	objcg = osh_zalloc(sizeof(*objcg) + nstats * sizeof(atomic_long_t), gfp);
	if (!objcg)
		return NULL;
	atomic_long_set(&objcg->ref, 1);	/* the memcg's active ref */
	INIT_LIST_HEAD(&objcg->list);
	refcount_inc(&memcg->ref);
	objcg->memcg = memcg;
	objcg->born_id = memcg->id;
	objcg->acct = acct;
	objcg->node = node;
	objcg->design = d;
	return objcg;
}

/* --- memcg lifecycle ----------------------------------------------------- */

static struct osh_mdesign *osh_mdesign_alloc(struct osh_acct *acct,
					     unsigned int d, gfp_t gfp)
{
	size_t nvm = (size_t)acct->nr_nodes * OSH_NR_SLAB_TYPES;
	unsigned int nobj = osh_nr_objcgs(acct, d);
	struct osh_mdesign *md;

	md = osh_zalloc(sizeof(*md) + nvm * sizeof(atomic_long_t) +
		     nobj * sizeof(struct osh_objcg *), gfp);
	if (!md)
		return NULL;
	md->vmstat = (atomic_long_t *)(md + 1);
	md->objcg = (struct osh_objcg **)(md->vmstat + nvm);
	INIT_LIST_HEAD(&md->objcg_list);
	return md;
}

static bool osh_memcg_is_root(const struct osh_memcg *memcg)
{
	return memcg->level == 0;
}

/**
 * osh_acct_memcg_online() - give a new memcg its objcgs, per design
 * @acct: accounting state
 * @memcg: the memcg record
 * @gfp: allocation context
 *
 * The root gets design state but no objcg: 6.1 never charges the root.
 * On allocation failure the design's allocations fall back to the
 * nearest ancestor, as the kernel's objcg walk does; it is counted.
 *
 * Return: 0 or -ENOMEM.
 */
int osh_acct_memcg_online(struct osh_acct *acct, struct osh_memcg *memcg,
			  gfp_t gfp)
{
	unsigned int d, i;
	int err = 0;

	for (d = 0; d < acct->nr_designs; d++) {
		struct osh_mdesign *md;

		if (READ_ONCE(memcg->design[d]))
			continue;	/* discovery and a hook both saw it */
		md = osh_mdesign_alloc(acct, d, gfp);
		if (!md) {
			osh_event(acct, OSH_EV_OBJCG_ALLOC_FAILED, 1);
			err = -ENOMEM;
			continue;
		}
		for (i = 0; i < osh_nr_objcgs(acct, d); i++) {
			int node = acct->designs[d].per_node_objcg ? (int)i : -1;

			if (osh_memcg_is_root(memcg))
				break;

			md->objcg[i] = osh_objcg_alloc(acct, d, memcg, node, gfp);
			if (!md->objcg[i]) {
				md->objcg_alloc_failed++;
				osh_event(acct, OSH_EV_OBJCG_ALLOC_FAILED, 1);
				err = -ENOMEM;
			}
		}
		/* publish fully initialised; lost race: the winner's stays */
		if (cmpxchg(&memcg->design[d], NULL, md)) {
			for (i = 0; i < osh_nr_objcgs(acct, d); i++)
				osh_objcg_put(md->objcg[i]);
			kfree(md);
		}
	}
	return err;
}

/**
 * osh_acct_memcg_offline() - memcg_reparent_objcgs(), for every design
 * @acct: accounting state
 * @memcg: the memcg going offline
 *
 * The active objcg(s) join the list of inherited ones, every objcg on it
 * is re-pointed to the parent and the list is spliced into the parent's:
 * one pointer swap per objcg, none per object.
 */
void osh_acct_memcg_offline(struct osh_acct *acct, struct osh_memcg *memcg)
{
	struct osh_memcg *parent = memcg->parent;
	unsigned int d, i;

	for (d = 0; d < acct->nr_designs; d++) {
		struct osh_mdesign *md = READ_ONCE(memcg->design[d]);
		struct osh_objcg *active[OSH_MAX_NODES];
		struct osh_mdesign *pmd;
		struct osh_objcg *iter;
		unsigned int nr_active = 0;
		long swapped = 0, objects = 0;
		unsigned long flags;

		if (!md)
			continue;
		pmd = parent ? READ_ONCE(parent->design[d]) : NULL;
		if (!pmd) {
			osh_event(acct, OSH_EV_NO_PARENT, 1);
			continue;
		}
		spin_lock_irqsave(&acct->objcg_lock, flags);
		for (i = 0; i < osh_nr_objcgs(acct, d); i++) {
			struct osh_objcg *objcg = md->objcg[i];

			if (!objcg)
				continue;
			WRITE_ONCE(md->objcg[i], NULL);
			list_add(&objcg->list, &md->objcg_list);
			active[nr_active++] = objcg;
		}
		list_for_each_entry(iter, &md->objcg_list, list) {
			refcount_inc(&parent->ref);
			WRITE_ONCE(iter->memcg, parent);
			swapped++;
			objects += atomic_long_read(&iter->nr_objects);
		}
		list_splice_init(&md->objcg_list, &pmd->objcg_list);
		spin_unlock_irqrestore(&acct->objcg_lock, flags);
		atomic_add(atomic_xchg(&md->charged_bytes, 0),
			   &pmd->charged_bytes);

		osh_event(acct, OSH_EV_REPARENT_OPS, 1);
		atomic_long_add(swapped, &acct->objcgs_swapped[d]);
		atomic_long_add(objects, &acct->objects_repointed[d]);
		/* the swapped objcgs' references on this memcg */
		while (swapped--)
			osh_memcg_put(memcg);
		for (i = 0; i < nr_active; i++)
			osh_objcg_put(active[i]);
	}
}

/**
 * osh_acct_memcg_freed() - fold a freed memcg's local counters upwards
 * @acct: accounting state
 * @memcg: the memcg the kernel freed
 *
 * What rstat does when a memcg goes: its contribution stays in the
 * parent's hierarchical totals.  No objcg points here any more.
 */
void osh_acct_memcg_freed(struct osh_acct *acct, struct osh_memcg *memcg)
{
	struct osh_memcg *parent = memcg->parent;
	unsigned int d, i;

	for (d = 0; d < acct->nr_designs; d++) {
		struct osh_mdesign *md = READ_ONCE(memcg->design[d]);
		struct osh_mdesign *pmd = parent ?
					  READ_ONCE(parent->design[d]) : NULL;

		if (!md || !pmd)
			continue;
		atomic_long_add(atomic_long_xchg(&md->kmem_pages, 0),
				&pmd->kmem_pages);
		for (i = 0; i < acct->nr_nodes * OSH_NR_SLAB_TYPES; i++)
			atomic_long_add(atomic_long_xchg(&md->vmstat[i], 0),
					&pmd->vmstat[i]);
	}
}

/**
 * osh_acct_memcg_release() - free a memcg record's design state
 * @memcg: the record, whose last reference is gone
 *
 * Context: RCU callback.  No objcg refers to @memcg any more.
 */
void osh_acct_memcg_release(struct osh_memcg *memcg)
{
	unsigned int d;

	for (d = 0; d < OSH_MAX_DESIGNS; d++)
		kfree(memcg->design[d]);
}

/* --- choosing the objcg -------------------------------------------------- */

/**
 * osh_objcg_tryget_active() - referenced active objcg of @memcg, if any
 * @acct: accounting state
 * @d: design index
 * @memcg: the memcg
 * @node: node for per-node designs
 *
 * Context: rcu_read_lock().
 * Return: a referenced objcg or NULL (offline memcg, root, or no state).
 */
struct osh_objcg *osh_objcg_tryget_active(struct osh_acct *acct,
					  unsigned int d,
					  struct osh_memcg *memcg, int node)
{
	struct osh_mdesign *md = READ_ONCE(memcg->design[d]);
	struct osh_objcg *objcg;
	unsigned int idx = 0;

	if (!md)
		return NULL;
	if (acct->designs[d].per_node_objcg && node >= 0 &&
	    node < (int)acct->nr_nodes)
		idx = node;
	objcg = READ_ONCE(md->objcg[idx]);
	if (objcg && osh_objcg_tryget(objcg))
		return objcg;
	return NULL;
}

/**
 * osh_objcg_walk() - first live objcg from @memcg up, below the root
 * @acct: accounting state
 * @d: design index
 * @memcg: where to start
 * @node: node for per-node designs
 *
 * Context: rcu_read_lock().
 * Return: a referenced objcg, or NULL when only the root is left.
 */
struct osh_objcg *osh_objcg_walk(struct osh_acct *acct, unsigned int d,
				 struct osh_memcg *memcg, int node)
{
	for (; memcg && !osh_memcg_is_root(memcg); memcg = memcg->parent) {
		struct osh_objcg *objcg;

		objcg = osh_objcg_tryget_active(acct, d, memcg, node);
		if (objcg)
			return objcg;
	}
	return NULL;
}

/**
 * osh_acct_pick_objcg() - __get_obj_cgroup_from_memcg() for design @d
 * @acct: accounting state
 * @d: design index
 * @ctx: this CPU's context (its node picks the per-node objcg)
 * @memcg: the memcg the kernel would charge
 *
 * Walks up to the first ancestor with a live objcg, stopping at the root,
 * which 6.1 never charges.
 *
 * Context: rcu_read_lock().
 * Return: a referenced objcg, or NULL (counted as root bypass).
 */
struct osh_objcg *osh_acct_pick_objcg(struct osh_acct *acct, unsigned int d,
				      struct osh_cpu_ctx *ctx,
				      struct osh_memcg *memcg)
{
	struct osh_objcg *objcg = osh_objcg_walk(acct, d, memcg,
						 osh_objcg_node(acct, d, ctx));

	if (!objcg)
		ctx->cnt[d].root_bypass++;
	return objcg;
}

/* --- objects ---------------------------------------------------------------- */

static void osh_objcg_count_remote(struct osh_cpu_ctx *ctx, unsigned int d,
				   const struct osh_objcg *objcg, int page_node)
{
	if (objcg->node < 0)
		return;
	if (objcg->node != ctx->node)
		ctx->cnt[d].remote_objcg_cpu++;
	if (objcg->node != page_node)
		ctx->cnt[d].remote_objcg_page++;
}

static enum osh_objcg_stat osh_stat_of(unsigned int type)
{
	if (type == OSH_OBJ_PERCPU)
		return OSH_STAT_PERCPU;
	return type == OSH_SLAB_RECLAIMABLE ? OSH_STAT_SLAB_RECLAIMABLE :
					      OSH_STAT_SLAB_UNRECLAIMABLE;
}

/*
 * Undo the charges of one object: memcg_slab_free_hook(), or for percpu
 * pcpu_memcg_free_hook() (an uncharge and no slab vmstat).
 */
static void osh_slab_uncharge(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			      struct osh_objinfo *info)
{
	bool percpu = info->type == OSH_OBJ_PERCPU;
	unsigned int d;

	if (info->flags & OSH_OBJINFO_KERNEL_UNCHARGED)
		atomic_long_dec(&acct->nr_kernel_uncharged);
	for (d = 0; d < acct->nr_designs; d++) {
		struct osh_objcg *objcg = info->objcg[d];
		unsigned long drains = ctx->cnt[d].drain_objcg;

		if (!objcg)
			continue;
		osh_stock_uncharge(acct, d, ctx, objcg, info->size);
		if (!percpu) {
			osh_stock_mod_state(acct, d, ctx, objcg, info->node,
					    info->type, -(int)info->size);
			atomic_long_dec(&objcg->nr_objects);
		}
		/* per-node objcgs pay here for objects freed on another node */
		ctx->cnt[d].drain_on_free += ctx->cnt[d].drain_objcg - drains;
		atomic_long_sub(info->size, osh_objcg_stat(objcg, info->node,
							   osh_stat_of(info->type)));
		ctx->cnt[d].frees++;
		osh_objcg_put(objcg);
	}
}

#define OSH_OBJINFO_MAX	(sizeof(struct osh_objinfo) + \
			 OSH_MAX_DESIGNS * sizeof(struct osh_objcg *))
static_assert(OSH_ENTRY_LONGS * sizeof(long) >= OSH_OBJINFO_MAX,
	      "a CPU context's entry buffers hold any map entry's value");

/* Each design's objcg for a new entry; false if none charges anything. */
static bool osh_info_fill(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			  struct osh_memcg *memcg, struct osh_objcg **picked,
			  struct osh_objinfo *info)
{
	bool any = false;
	unsigned int d;

	for (d = 0; d < acct->nr_designs; d++) {
		info->objcg[d] = picked ? picked[d] :
				 osh_acct_pick_objcg(acct, d, ctx, memcg);
		any |= !!info->objcg[d];
	}
	return any;
}

/*
 * Insert @info into @map.  A stale entry for the key (its free was
 * missed) is uncharged with @uncharge; a full map drops the new entry's
 * references.  Both are counted.  Return: true if @info was stored.
 */
static bool osh_map_store(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			  struct osh_objmap *map, unsigned long key,
			  struct osh_objinfo *info,
			  void (*uncharge)(struct osh_acct *acct,
					   struct osh_cpu_ctx *ctx,
					   struct osh_objinfo *info),
			  enum osh_acct_event ev_full, enum osh_acct_event ev_stale)
{
	struct osh_objinfo *stale = (void *)ctx->entry;
	bool stored, had_stale;
	unsigned int d;

	stored = osh_objmap_insert(map, key, info, stale, &had_stale);
	if (!stored) {
		osh_event(acct, ev_full, 1);
		for (d = 0; d < acct->nr_designs; d++)
			osh_objcg_put(info->objcg[d]);
	}
	if (had_stale) {
		osh_event(acct, ev_stale, 1);
		uncharge(acct, ctx, stale);
	}
	return stored;
}

/* --- object records ------------------------------------------------------------ */

static_assert(sizeof(struct osh_objinfo) == sizeof(long),
	      "an objinfo is compared and hashed a word at a time");

static size_t osh_objinfo_words(const struct osh_acct *acct)
{
	return 1 + acct->nr_designs;
}

/*
 * The first slot of @info's set: its size, node, type, flags and first
 * design's objcg tell the charges of a workload apart.
 */
static unsigned int osh_objrec_set(const struct osh_objinfo *info)
{
	const unsigned long *w = (const unsigned long *)info;
	unsigned long h = (w[0] ^ w[1]) * 0x9e3779b97f4a7c15UL;

	return (h >> (sizeof(long) * 8 - OSH_OBJREC_SET_BITS)) * OSH_OBJREC_WAYS;
}

static bool osh_objinfo_same(const struct osh_acct *acct,
			     const struct osh_objinfo *a,
			     const struct osh_objinfo *b)
{
	const unsigned long *x = (const unsigned long *)a;
	const unsigned long *y = (const unsigned long *)b;
	size_t i;

	for (i = 0; i < osh_objinfo_words(acct); i++) {
		if (x[i] != y[i])
			return false;
	}
	return true;
}

static void osh_objrec_free_rcu(struct rcu_head *head)
{
	kfree(container_of(head, struct osh_objrec, rcu));
}

/* osh_defer()'s callback: out of NMI context, call_rcu() is safe. */
static void osh_objrec_release(struct rcu_head *head)
{
	call_rcu(head, osh_objrec_free_rcu);
}

/* Drop one reference: an object's (any CPU, any context) or a cache's. */
static void osh_objrec_put(struct osh_acct *acct, struct osh_objrec *rec)
{
	if (rec && atomic_long_dec_and_test(&rec->refs)) {
		atomic_long_dec(&acct->nr_objrecs);
		osh_defer(&rec->rcu, osh_objrec_release);
	}
}

/*
 * The record for a new object charged as @info, with a reference for it:
 * one this CPU used lately for the same charge, or a new one that takes
 * the place of the least recent of its set.  NULL if no memory.
 */
static struct osh_objrec *osh_objrec_get(struct osh_acct *acct,
					 struct osh_cpu_ctx *ctx,
					 const struct osh_objinfo *info)
{
	struct osh_objrec **set = &ctx->objrec_cache[osh_objrec_set(info)];
	struct osh_objrec *rec = set[0];
	size_t i;

	static_assert(OSH_OBJREC_WAYS == 2, "the set keeps its recent one first");
	if (likely(rec && osh_objinfo_same(acct, &rec->info, info)))
		goto hit;
	rec = set[1];
	if (rec && osh_objinfo_same(acct, &rec->info, info)) {
		set[1] = set[0];
		set[0] = rec;
		goto hit;
	}
	rec = acct->objrec_alloc ? acct->objrec_alloc(osh_objrec_bytes(acct)) :
	      kmalloc(osh_objrec_bytes(acct), GFP_ATOMIC | __GFP_NOWARN);
	if (!rec)
		return NULL;
	atomic_long_set(&rec->refs, 2);		/* the object's and the cache's */
	for (i = 0; i < osh_objinfo_words(acct); i++)
		((unsigned long *)&rec->info)[i] = ((const unsigned long *)info)[i];
	atomic_long_inc(&acct->nr_objrecs);
	osh_objrec_put(acct, set[1]);
	set[1] = set[0];
	set[0] = rec;
	return rec;
hit:
	atomic_long_inc(&rec->refs);
	return rec;
}

/* Drop the records a CPU's cache holds (teardown: no handler runs). */
static void osh_objrec_cache_drain(struct osh_acct *acct,
				   struct osh_cpu_ctx *ctx)
{
	unsigned int i;

	for (i = 0; i < OSH_OBJREC_CACHE; i++) {
		osh_objrec_put(acct, ctx->objrec_cache[i]);
		ctx->objrec_cache[i] = NULL;
	}
}

/* A stale object entry (its free was missed): uncharge it and drop it. */
static void osh_slab_uncharge_stale(struct osh_acct *acct,
				    struct osh_cpu_ctx *ctx,
				    struct osh_objrec *rec)
{
	osh_event(acct, OSH_EV_OBJ_STALE, 1);
	osh_slab_uncharge(acct, ctx, &rec->info);
	osh_objrec_put(acct, rec);
}

/*
 * Insert the record of @info under @ptr.  No record or a full map drops
 * the object and its references (counted).  Return: the record, or NULL.
 */
static struct osh_objrec *osh_objmap_store(struct osh_acct *acct,
					   struct osh_cpu_ctx *ctx,
					   unsigned long ptr,
					   struct osh_objinfo *info)
{
	struct osh_objrec *rec = osh_objrec_get(acct, ctx, info);
	struct osh_objrec **stale = (void *)ctx->entry;
	bool had_stale = false;
	unsigned int d;

	if (rec && !osh_objmap_insert(&acct->objmap, ptr, &rec, stale,
				      &had_stale)) {
		osh_event(acct, OSH_EV_OBJ_MAP_FULL, 1);
		osh_objrec_put(acct, rec);
		rec = NULL;
	} else if (!rec) {
		osh_event(acct, OSH_EV_OBJ_NO_RECORD, 1);
	}
	if (!rec) {
		for (d = 0; d < acct->nr_designs; d++)
			osh_objcg_put(info->objcg[d]);
	}
	if (had_stale)
		osh_slab_uncharge_stale(acct, ctx, *stale);
	return rec;
}

/**
 * osh_acct_slab_alloc() - charge one accounted slab object, every design
 * @acct: accounting state
 * @ctx: this CPU's context
 * @memcg: the memcg the kernel would charge
 * @picked: objcg per design (references are taken over), or NULL to let
 *	    each design pick from @memcg
 * @ptr: object address
 * @size: obj_full_size() of its cache
 * @node: node of the object's page
 * @type: reclaimable or not, or OSH_OBJ_PERCPU (@ptr is then the percpu
 *	  pointer and @size pcpu_obj_full_size())
 * @flags: OSH_OBJINFO_KERNEL_UNCHARGED if the kernel's vector holds no
 *	   objcg for @ptr (it is then counted, and its free looked up)
 *
 * Return: 0, -ENOENT when no design charges anything (root), -ENOSPC when
 * the object map is full or no record could be allocated (counted; the
 * object is not charged).
 */
int osh_acct_slab_alloc(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			struct osh_memcg *memcg, struct osh_objcg **picked,
			unsigned long ptr, unsigned int size, int node,
			enum osh_slab_type type, unsigned int flags)
{
	struct osh_objinfo *info = (void *)ctx->new_entry;
	unsigned int d, report = osh_acct_report_design(acct);

	info->size = size;
	info->node = node;
	info->type = type;
	info->flags = flags;
	if (!osh_info_fill(acct, ctx, memcg, picked, info))
		return -ENOENT;

	/* counted before it is visible, so that no free can miss it */
	if (flags & OSH_OBJINFO_KERNEL_UNCHARGED)
		atomic_long_inc(&acct->nr_kernel_uncharged);
	if (!osh_objmap_store(acct, ctx, ptr, info)) {
		if (flags & OSH_OBJINFO_KERNEL_UNCHARGED)
			atomic_long_dec(&acct->nr_kernel_uncharged);
		return -ENOSPC;
	}

	for (d = 0; d < acct->nr_designs; d++) {
		struct osh_objcg *objcg = info->objcg[d];

		if (!objcg)
			continue;
		osh_stock_charge(acct, d, ctx, objcg, size);
		atomic_long_add(size, osh_objcg_stat(objcg, node, osh_stat_of(type)));
		if (type == OSH_OBJ_PERCPU)
			continue;
		osh_stock_mod_state(acct, d, ctx, objcg, node, type, size);
		atomic_long_inc(&objcg->nr_objects);
		if (d == report)
			atomic_long_inc(&objcg->nr_allocs);
		ctx->cnt[d].allocs++;
		osh_objcg_count_remote(ctx, d, objcg, node);
	}
	return 0;
}

/**
 * osh_acct_slab_free() - uncharge one slab object if the shadow has it
 * @acct: accounting state
 * @ctx: this CPU's context
 * @ptr: object address
 *
 * Return: true if the object was tracked.  The caller decides whether an
 * untracked free was an accounted object (and counts it).
 */
bool osh_acct_slab_free(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			unsigned long ptr)
{
	struct osh_objrec **rec = (void *)ctx->entry;

	if (!osh_objmap_remove(&acct->objmap, ptr, rec))
		return false;
	osh_slab_uncharge(acct, ctx, &(*rec)->info);
	osh_objrec_put(acct, *rec);
	return true;
}

/* --- kmem pages --------------------------------------------------------------- */

/*
 * Kernel stacks and large kmalloc pages update their vmstat item directly
 * (mod_lruvec_page_state(), no stock batching), in the memcg the page's
 * objcg points to at that moment.
 */
static void osh_page_kind_stat(struct osh_acct *acct,
			       const struct osh_objinfo *info,
			       struct osh_objcg *objcg, int sign)
{
	long bytes = sign * (long)info->size * PAGE_SIZE;
	int node = info->node;

	if (node < 0 || node >= (int)acct->nr_nodes)
		node = 0;
	if (info->flags & OSH_OBJINFO_STACK)
		atomic_long_add(bytes, osh_objcg_stat(objcg, node,
						      OSH_STAT_KERNEL_STACK));
	if (info->flags & OSH_OBJINFO_LARGE_KMALLOC) {
		atomic_long_t *vm = osh_objcg_mdesign(objcg)->vmstat;

		atomic_long_add(bytes, osh_objcg_stat(objcg, node,
						      OSH_STAT_SLAB_UNRECLAIMABLE));
		atomic_long_add(bytes, &vm[node * OSH_NR_SLAB_TYPES +
					  OSH_SLAB_UNRECLAIMABLE]);
	}
}

static void osh_page_uncharge(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			      struct osh_objinfo *info)
{
	unsigned int d;

	for (d = 0; d < acct->nr_designs; d++) {
		struct osh_objcg *objcg = info->objcg[d];

		if (!objcg)
			continue;
		osh_page_kind_stat(acct, info, objcg, -1);
		osh_uncharge_pages(acct, d, ctx, objcg, info->size);
		ctx->cnt[d].page_frees++;
		osh_objcg_put(objcg);
	}
}

/**
 * osh_acct_page_alloc() - __memcg_kmem_charge_page(), every design
 * @acct: accounting state
 * @ctx: this CPU's context
 * @memcg: the memcg the kernel would charge
 * @picked: objcg per design (references are taken over), or NULL
 * @page: key of the page (its struct page address)
 * @nr_pages: 1 << order
 * @node: node of the page
 *
 * Return: 0, -ENOENT (root: nothing charged), -ENOSPC (map full, counted).
 */
int osh_acct_page_alloc(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			struct osh_memcg *memcg, struct osh_objcg **picked,
			unsigned long page, unsigned int nr_pages, int node)
{
	struct osh_objinfo *info = (void *)ctx->new_entry;
	unsigned int d;

	info->size = nr_pages;
	info->node = node;
	info->type = 0;
	info->flags = 0;
	if (!osh_info_fill(acct, ctx, memcg, picked, info))
		return -ENOENT;
	if (!osh_map_store(acct, ctx, &acct->pagemap, page, info,
			   osh_page_uncharge, OSH_EV_PAGE_MAP_FULL,
			   OSH_EV_PAGE_STALE))
		return -ENOSPC;
	for (d = 0; d < acct->nr_designs; d++) {
		if (!info->objcg[d])
			continue;
		osh_charge_pages(acct, d, ctx, info->objcg[d], nr_pages);
		ctx->cnt[d].page_allocs++;
	}
	return 0;
}

/**
 * osh_acct_page_free() - __memcg_kmem_uncharge_page(), every design
 * @acct: accounting state
 * @ctx: this CPU's context
 * @page: key of the page
 *
 * Return: true if the page was tracked.
 */
bool osh_acct_page_free(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
			unsigned long page)
{
	struct osh_objinfo *info = (void *)ctx->entry;

	if (!osh_objmap_remove(&acct->pagemap, page, info))
		return false;
	osh_page_uncharge(acct, ctx, info);
	return true;
}

struct osh_page_mark {
	struct osh_acct *acct;
	unsigned int kind;
};

static bool osh_mark_page_entry(void *val, void *arg)
{
	struct osh_objinfo *info = val, only = {};
	struct osh_page_mark *m = arg;
	unsigned int d;

	if (info->flags & m->kind)
		return false;
	info->flags |= m->kind;
	only.size = info->size;
	only.node = info->node;
	only.flags = m->kind;
	for (d = 0; d < m->acct->nr_designs; d++) {
		if (info->objcg[d])
			osh_page_kind_stat(m->acct, &only, info->objcg[d], 1);
	}
	return true;
}

/**
 * osh_acct_mark_page() - say what a tracked kmem page is used for
 * @acct: accounting state
 * @page: key of the page
 * @kind: OSH_OBJINFO_STACK or OSH_OBJINFO_LARGE_KMALLOC
 *
 * Context: the page cannot be freed meanwhile (its owner holds it).
 * Return: true if the page was tracked and not yet marked.
 */
bool osh_acct_mark_page(struct osh_acct *acct, unsigned long page,
			unsigned int kind)
{
	struct osh_page_mark m = { .acct = acct, .kind = kind };

	return osh_objmap_update(&acct->pagemap, page, osh_mark_page_entry, &m);
}

/* --- setup and teardown -------------------------------------------------------- */

/**
 * osh_acct_init() - set up accounting for @nr_designs designs
 * @acct: accounting state
 * @designs: the designs, copied
 * @nr_designs: 1..OSH_MAX_DESIGNS
 * @nr_nodes: NUMA nodes (nr_node_ids), 1..OSH_MAX_NODES
 * @nr_cpus: CPU ids are below this
 * @objmap_bits: log2 of the object map's buckets
 * @pagemap_bits: log2 of the page map's buckets
 * @alloc: zeroing allocator for the maps' tables
 * @free_fn: its free function
 * @grow_needed: how a map asks to grow (see osh_objmap_init())
 *
 * Return: 0, -EINVAL, or -ENOMEM.
 */
int osh_acct_init(struct osh_acct *acct, const struct osh_design *designs,
		  unsigned int nr_designs, unsigned int nr_nodes,
		  unsigned int nr_cpus, unsigned int objmap_bits,
		  unsigned int pagemap_bits, void *(*alloc)(size_t size),
		  void (*free_fn)(void *p),
		  void (*grow_needed)(struct osh_objmap *map))
{
	unsigned int i;

	memset(acct, 0, sizeof(*acct));
	if (!nr_designs || nr_designs > OSH_MAX_DESIGNS || !nr_nodes ||
	    nr_nodes > OSH_MAX_NODES)
		return -EINVAL;
	acct->nr_designs = nr_designs;
	acct->nr_nodes = nr_nodes;
	acct->reference = -1;
	acct->nr_cpus = nr_cpus;
	memcpy(acct->designs, designs, nr_designs * sizeof(*designs));
	spin_lock_init(&acct->objcg_lock);
	for (i = 0; i < OSH_NR_ACCT_EVENTS; i++)
		atomic_long_set(&acct->events[i], 0);
	for (i = 0; i < nr_designs; i++) {
		if (designs[i].task_cache != OSH_TASK_CACHE_PERNODE)
			continue;
		acct->task_nodes_off[i] = acct->task_nodes_total;
		acct->task_nodes_total += nr_nodes;
	}
	if (osh_objmap_init(&acct->objmap, objmap_bits,
			    sizeof(struct osh_objrec *), alloc, free_fn,
			    grow_needed) ||
	    osh_objmap_init(&acct->pagemap, pagemap_bits,
			    osh_objinfo_size(acct), alloc, free_fn, grow_needed))
		return -ENOMEM;
	return 0;
}

/**
 * osh_acct_cpu_init() - initialise one CPU's context
 * @acct: accounting state
 * @ctx: the context
 * @cpu: its CPU id
 * @node: the CPU's NUMA node
 */
void osh_acct_cpu_init(struct osh_acct *acct, struct osh_cpu_ctx *ctx,
		       int cpu, int node)
{
	unsigned int d, i;

	memset(ctx, 0, sizeof(*ctx));
	ctx->cpu = cpu;
	ctx->node = node;
	ctx->event_node = -1;
	for (d = 0; d < OSH_MAX_DESIGNS; d++) {
		for (i = 0; i < OSH_STOCK_MAX_SLOTS; i++)
			ctx->stock[d].slot[i].node = -1;
		ctx->stock[d].stat_slot = -1;
		ctx->stock[d].stat_node = -1;
	}
}

/**
 * osh_acct_drain_cpu() - drain every stock of one CPU (all designs)
 * @acct: accounting state
 * @ctx: the CPU's context; the caller owns it
 */
void osh_acct_drain_cpu(struct osh_acct *acct, struct osh_cpu_ctx *ctx)
{
	unsigned int d;

	for (d = 0; d < acct->nr_designs; d++)
		osh_stock_drain_all_slots(acct, d, ctx);
}

/**
 * osh_acct_cpu_dead() - a CPU went offline: drain what its kernel drains
 * @acct: accounting state
 * @ctx: the dead CPU's context; no handler runs on it any more
 *
 * Designs of kernels that drain a dead CPU's obj stock drain the shadow
 * stock; the others keep its bytes and objcg reference, as 6.1 does.
 * Context: process, on a surviving CPU (the CPU hotplug teardown).
 */
void osh_acct_cpu_dead(struct osh_acct *acct, struct osh_cpu_ctx *ctx)
{
	unsigned int d;

	for (d = 0; d < acct->nr_designs; d++) {
		if (acct->designs[d].cpu_dead_drains_obj_stock)
			osh_stock_drain_all_slots(acct, d, ctx);
	}
}

/**
 * osh_acct_cpu_online() - a CPU came (back) online on @node
 * @ctx: the CPU's context
 * @node: its NUMA node now
 */
void osh_acct_cpu_online(struct osh_cpu_ctx *ctx, int node)
{
	WRITE_ONCE(ctx->node, node);
}

static void osh_put_objcgs(struct osh_acct *acct, struct osh_objinfo *info)
{
	unsigned int d;

	for (d = 0; d < acct->nr_designs; d++)
		osh_objcg_put(info->objcg[d]);
}

static void osh_put_page_entry(unsigned long key, void *val, void *arg)
{
	osh_put_objcgs(arg, val);
}

static void osh_put_object_entry(unsigned long key, void *val, void *arg)
{
	struct osh_objrec *rec = *(struct osh_objrec **)val;

	osh_put_objcgs(arg, &rec->info);
	osh_objrec_put(arg, rec);
}

/**
 * osh_acct_teardown() - drop every reference the accounting holds
 * @acct: accounting state
 * @tree: the memcg tree whose records carry the design state
 *
 * Context: no hook runs any more and every CPU stock has been drained.
 * Afterwards the tree can be destroyed and the maps freed.
 */
void osh_acct_teardown(struct osh_acct *acct, struct osh_memcg_tree *tree)
{
	struct osh_memcg *memcg;
	struct osh_objcg *put[64];
	unsigned long flags;
	unsigned int n, d, i;

	acct->tearing_down = true;
	osh_objmap_for_each(&acct->objmap, osh_put_object_entry, acct);
	osh_objmap_for_each(&acct->pagemap, osh_put_page_entry, acct);
	for (i = 0; acct->cpu_ctx && i < acct->nr_cpus; i++) {
		struct osh_cpu_ctx *ctx = acct->cpu_ctx(acct, i);

		if (ctx)
			osh_objrec_cache_drain(acct, ctx);
	}

	/*
	 * Active objcgs: collect a batch under the lock, put it outside, and
	 * go on from where the batch stopped.  No hook runs, so no record
	 * leaves the list and the resume point stays valid; a record left
	 * half-collected is visited again, its collected slots are NULL.
	 */
	memcg = list_entry(&tree->live, struct osh_memcg, node);
	do {
		n = 0;
		spin_lock_irqsave(&tree->lock, flags);
		list_for_each_entry_continue(memcg, &tree->live, node) {
			for (d = 0; d < acct->nr_designs; d++) {
				struct osh_mdesign *md = memcg->design[d];

				for (i = 0; md && i < osh_nr_objcgs(acct, d); i++) {
					if (md->objcg[i] && n < ARRAY_SIZE(put)) {
						put[n++] = md->objcg[i];
						md->objcg[i] = NULL;
					}
				}
			}
			if (n == ARRAY_SIZE(put)) {
				memcg = list_prev_entry(memcg, node);
				break;
			}
		}
		spin_unlock_irqrestore(&tree->lock, flags);
		for (i = 0; i < n; i++)
			osh_objcg_put(put[i]);
	} while (n == ARRAY_SIZE(put));
}

/**
 * osh_acct_destroy() - free the maps
 * @acct: accounting state, torn down (or whose init failed)
 */
void osh_acct_destroy(struct osh_acct *acct)
{
	osh_objmap_destroy(&acct->objmap);
	osh_objmap_destroy(&acct->pagemap);
}
