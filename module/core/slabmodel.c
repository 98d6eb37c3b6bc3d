// SPDX-License-Identifier: GPL-2.0
/*
 * The slab page model of include/objcg_shadow/slabmodel.h.  SLUB's rules
 * it follows (mm/slub.c of 6.1, the same in 6.12 and 7.3 for page counts):
 * an allocation takes a slot of the CPU's active slab; a full active slab
 * is left off every list and the CPU takes the first slab of its node's
 * partial list, or of another node's list holding more than min_partial,
 * or a new slab; a free into a full slab puts it at the tail of its node's
 * partial list; a free that empties a slab not active on a CPU releases it
 * if the node already has min_partial partial slabs.  Before 5.9 an
 * offlined memcg's caches were shrunk (active slabs deactivated, empty
 * slabs released) and their min_partial set to 0.
 */
#include <objcg_shadow/slabmodel.h>
#include <objcg_shadow/outbuf.h>

enum osh_sm_slab_state {
	OSH_SM_ACTIVE,
	OSH_SM_PARTIAL,
	OSH_SM_FULL,
};

struct osh_sm_slab {
	struct list_head list;		/* pool->partial[node], when partial */
	struct osh_sm_pool *pool;
	unsigned int inuse;
	unsigned int node;
	unsigned int cpu;		/* when active */
	enum osh_sm_slab_state state;
	unsigned long used[];		/* slot bitmap */
};

struct osh_sm_obj {
	struct osh_sm_hnode hnode;	/* key: the object's address */
	struct osh_sm_slab *slab[OSH_SM_NR_LAYOUTS];
	unsigned int slot[OSH_SM_NR_LAYOUTS];
};

#define OSH_SM_LONG_BITS	(8 * sizeof(unsigned long))
#define OSH_SM_HASH_MIN_BITS	6

static void *osh_sm_zalloc(size_t size)
{
	return kzalloc(size, GFP_KERNEL);
}

static int osh_sm_hash_init(struct osh_sm_hash *h)
{
	h->bits = OSH_SM_HASH_MIN_BITS;
	h->nr = 0;
	h->bucket = osh_sm_zalloc(sizeof(*h->bucket) << h->bits);
	return h->bucket ? 0 : -ENOMEM;
}

static struct osh_sm_hnode **osh_sm_hash_slot(struct osh_sm_hash *h,
					      unsigned long key)
{
	struct osh_sm_hnode **pp = &h->bucket[hash_64(key, h->bits)];

	while (*pp && (*pp)->key != key)
		pp = &(*pp)->next;
	return pp;
}

/* Doubling is best effort: a failed resize only makes the chains longer. */
static void osh_sm_hash_grow(struct osh_sm_hash *h)
{
	unsigned int bits = h->bits + 1, i;
	struct osh_sm_hnode **nb;

	nb = osh_sm_zalloc(sizeof(*nb) << bits);
	if (!nb)
		return;
	for (i = 0; i < (1U << h->bits); i++) {
		struct osh_sm_hnode *n = h->bucket[i], *next;

		for (; n; n = next) {
			struct osh_sm_hnode **head = &nb[hash_64(n->key, bits)];

			next = n->next;
			n->next = *head;
			*head = n;
		}
	}
	kfree(h->bucket);
	h->bucket = nb;
	h->bits = bits;
}

static void osh_sm_hash_add(struct osh_sm_hash *h, struct osh_sm_hnode *n)
{
	struct osh_sm_hnode **head;

	if (h->nr >= (1UL << h->bits) && h->bits < 30)
		osh_sm_hash_grow(h);
	head = &h->bucket[hash_64(n->key, h->bits)];
	n->next = *head;
	*head = n;
	h->nr++;
}

static struct osh_sm_hnode *osh_sm_hash_find(struct osh_sm_hash *h,
					     unsigned long key)
{
	return *osh_sm_hash_slot(h, key);
}

static struct osh_sm_hnode *osh_sm_hash_remove(struct osh_sm_hash *h,
					       unsigned long key)
{
	struct osh_sm_hnode **pp = osh_sm_hash_slot(h, key), *n = *pp;

	if (n) {
		*pp = n->next;
		h->nr--;
	}
	return n;
}

/* Calls @fn on every node; @fn may free it. */
static void osh_sm_hash_drain(struct osh_sm_hash *h,
			      void (*fn)(struct osh_sm *sm,
					 struct osh_sm_hnode *n),
			      struct osh_sm *sm)
{
	unsigned int i;

	if (!h->bucket)
		return;
	for (i = 0; i < (1U << h->bits); i++) {
		struct osh_sm_hnode *n = h->bucket[i], *next;

		for (; n; n = next) {
			next = n->next;
			if (fn)
				fn(sm, n);
		}
	}
	kfree(h->bucket);
	h->bucket = NULL;
	h->nr = 0;
}

/**
 * osh_sm_geometry_valid() - whether a cache's geometry can be modelled
 * @geo: the geometry an event carries
 *
 * Return: true if objects fit the slab and the counts are within SLUB's.
 */
bool osh_sm_geometry_valid(const struct osh_sm_geometry *geo)
{
	return geo->size && geo->objects && geo->objects <= OSH_SM_MAX_OBJECTS &&
	       geo->order <= OSH_SM_MAX_ORDER &&
	       (unsigned long)geo->objects * geo->size <= (PAGE_SIZE << geo->order);
}

/**
 * osh_sm_init() - an empty model
 * @sm: the model
 * @nr_cpus: CPU ids are below this
 * @nr_nodes: node ids are below this
 *
 * Return: 0 or -ENOMEM.
 */
int osh_sm_init(struct osh_sm *sm, unsigned int nr_cpus,
		unsigned int nr_nodes)
{
	memset(sm, 0, sizeof(*sm));
	sm->nr_cpus = nr_cpus ?: 1;
	sm->nr_nodes = nr_nodes ?: 1;
	INIT_LIST_HEAD(&sm->caches_in_order);
	INIT_LIST_HEAD(&sm->memcgs_in_order);
	if (osh_sm_hash_init(&sm->caches) || osh_sm_hash_init(&sm->memcgs) ||
	    osh_sm_hash_init(&sm->pools) || osh_sm_hash_init(&sm->objs)) {
		osh_sm_destroy(sm);
		return -ENOMEM;
	}
	return 0;
}

static void osh_sm_free_node(struct osh_sm *sm, struct osh_sm_hnode *n)
{
	kfree(n);
}

static void osh_sm_free_pool(struct osh_sm *sm, struct osh_sm_hnode *n)
{
	struct osh_sm_pool *pool = container_of(n, struct osh_sm_pool, hnode);
	struct osh_sm_slab *slab, *tmp;
	unsigned int i;

	for (i = 0; i < sm->nr_cpus; i++)
		kfree(pool->active[i]);
	for (i = 0; i < sm->nr_nodes; i++)
		list_for_each_entry_safe(slab, tmp, &pool->partial[i], list)
			kfree(slab);
	kfree(pool);
}

static void osh_sm_free_obj(struct osh_sm *sm, struct osh_sm_hnode *n)
{
	struct osh_sm_obj *obj = container_of(n, struct osh_sm_obj, hnode);
	unsigned int l;

	/* full slabs are on no list: their last object frees them */
	for (l = 0; l < OSH_SM_NR_LAYOUTS; l++) {
		struct osh_sm_slab *slab = obj->slab[l];

		if (slab && slab->state == OSH_SM_FULL && !--slab->inuse)
			kfree(slab);
	}
	kfree(obj);
}

/**
 * osh_sm_destroy() - free the model and everything it holds
 * @sm: the model, initialized (even partly) by osh_sm_init()
 */
void osh_sm_destroy(struct osh_sm *sm)
{
	osh_sm_hash_drain(&sm->objs, osh_sm_free_obj, sm);
	osh_sm_hash_drain(&sm->pools, osh_sm_free_pool, sm);
	osh_sm_hash_drain(&sm->memcgs, osh_sm_free_node, sm);
	osh_sm_hash_drain(&sm->caches, osh_sm_free_node, sm);
	INIT_LIST_HEAD(&sm->caches_in_order);
	INIT_LIST_HEAD(&sm->memcgs_in_order);
}

/**
 * osh_sm_has_cache() - whether the model has seen a cache
 * @sm: the model
 * @cache: the kmem_cache key
 *
 * Return: true if it has (its name is then not needed again).
 */
bool osh_sm_has_cache(struct osh_sm *sm, unsigned long cache)
{
	return osh_sm_hash_find(&sm->caches, cache);
}

static struct osh_sm_cache *osh_sm_cache_get(struct osh_sm *sm,
					     const struct osh_sm_alloc *a)
{
	struct osh_sm_hnode *n = osh_sm_hash_find(&sm->caches, a->cache);
	struct osh_sm_cache *cache;

	if (n)
		return container_of(n, struct osh_sm_cache, hnode);
	cache = osh_sm_zalloc(sizeof(*cache));
	if (!cache)
		return NULL;
	cache->hnode.key = a->cache;
	cache->geo = a->geo;
	cache->whole = a->whole;
	if (a->name)
		snprintf(cache->name, sizeof(cache->name), "%s", a->name);
	else
		snprintf(cache->name, sizeof(cache->name), "size-%u",
			 a->geo.size);
	list_add_tail(&cache->list, &sm->caches_in_order);
	osh_sm_hash_add(&sm->caches, &cache->hnode);
	return cache;
}

static struct osh_sm_memcg *osh_sm_memcg_get(struct osh_sm *sm, u64 id)
{
	struct osh_sm_hnode *n = osh_sm_hash_find(&sm->memcgs, id);
	struct osh_sm_memcg *memcg;

	if (n)
		return container_of(n, struct osh_sm_memcg, hnode);
	memcg = osh_sm_zalloc(sizeof(*memcg));
	if (!memcg)
		return NULL;
	memcg->hnode.key = id;
	memcg->nr_ptrs = 1;		/* its own kmem_memcg_ptr */
	INIT_LIST_HEAD(&memcg->pools);
	list_add_tail(&memcg->list, &sm->memcgs_in_order);
	osh_sm_hash_add(&sm->memcgs, &memcg->hnode);
	return memcg;
}

/* Where a dead memcg's charges went: its nearest ancestor still online. */
static struct osh_sm_memcg *osh_sm_charge_target(struct osh_sm_memcg *memcg)
{
	while (memcg->offline && memcg->parent)
		memcg = memcg->parent;
	return memcg;
}

static unsigned long osh_sm_pool_key(unsigned long cache,
				     const struct osh_sm_memcg *memcg)
{
	return cache ^ (memcg ? memcg->hnode.key * 0x9E3779B97F4A7C15ULL + 1 : 0);
}

static struct osh_sm_pool *osh_sm_pool_find(struct osh_sm *sm,
					    struct osh_sm_cache *cache,
					    struct osh_sm_memcg *memcg)
{
	unsigned long key = osh_sm_pool_key(cache->hnode.key, memcg);
	struct osh_sm_hnode *n;

	for (n = sm->pools.bucket[hash_64(key, sm->pools.bits)]; n; n = n->next) {
		struct osh_sm_pool *pool = container_of(n, struct osh_sm_pool,
							hnode);

		if (n->key == key && pool->cache == cache && pool->memcg == memcg)
			return pool;
	}
	return NULL;
}

static struct osh_sm_pool *osh_sm_pool_get(struct osh_sm *sm,
					   struct osh_sm_cache *cache,
					   struct osh_sm_memcg *memcg)
{
	struct osh_sm_pool *pool = osh_sm_pool_find(sm, cache, memcg);
	size_t active = sm->nr_cpus * sizeof(*pool->active);
	size_t partial = sm->nr_nodes * sizeof(*pool->partial);
	size_t nr_partial = sm->nr_nodes * sizeof(*pool->nr_partial);
	unsigned int i;

	if (pool)
		return pool;
	pool = osh_sm_zalloc(sizeof(*pool) + active + partial + nr_partial);
	if (!pool)
		return NULL;
	pool->active = (struct osh_sm_slab **)(pool + 1);
	pool->partial = (struct list_head *)((char *)pool->active + active);
	pool->nr_partial = (unsigned int *)((char *)pool->partial + partial);
	for (i = 0; i < sm->nr_nodes; i++)
		INIT_LIST_HEAD(&pool->partial[i]);
	pool->cache = cache;
	pool->memcg = memcg;
	pool->min_partial = cache->geo.min_partial;
	pool->hnode.key = osh_sm_pool_key(cache->hnode.key, memcg);
	if (memcg) {
		list_add_tail(&pool->memcg_node, &memcg->pools);
		cache->memcg_pools++;
	} else {
		INIT_LIST_HEAD(&pool->memcg_node);
	}
	osh_sm_hash_add(&sm->pools, &pool->hnode);
	return pool;
}

static enum osh_sm_layout osh_sm_layout_of(const struct osh_sm_pool *pool)
{
	return pool->memcg ? OSH_SM_MEMCGPTR : OSH_SM_SHARED;
}

static void osh_sm_count_slab(struct osh_sm *sm, struct osh_sm_pool *pool,
			      long sign)
{
	enum osh_sm_layout l = osh_sm_layout_of(pool);
	unsigned long pages = 1UL << pool->cache->geo.order;

	pool->slabs += sign;
	pool->cache->cnt[l].slabs += sign;
	pool->cache->cnt[l].pages += sign * pages;
	sm->total[l].slabs += sign;
	sm->total[l].pages += sign * pages;
	if (pool->memcg) {
		/* the page was charged through the memcg's pointer */
		pool->memcg->own_slabs += sign;
		osh_sm_charge_target(pool->memcg)->charged_pages += sign * pages;
	}
}

static void osh_sm_count_object(struct osh_sm *sm, struct osh_sm_pool *pool,
				long sign)
{
	enum osh_sm_layout l = osh_sm_layout_of(pool);
	unsigned long size = pool->cache->geo.size;

	pool->cache->cnt[l].objects += sign;
	pool->cache->cnt[l].obj_bytes += sign * size;
	sm->total[l].objects += sign;
	sm->total[l].obj_bytes += sign * size;
}

static struct osh_sm_slab *osh_sm_new_slab(struct osh_sm *sm,
					   struct osh_sm_pool *pool,
					   unsigned int node)
{
	unsigned int words = DIV_ROUND_UP(pool->cache->geo.objects,
					  OSH_SM_LONG_BITS);
	struct osh_sm_slab *slab;

	slab = osh_sm_zalloc(sizeof(*slab) + words * sizeof(unsigned long));
	if (!slab)
		return NULL;
	slab->pool = pool;
	slab->node = node;
	INIT_LIST_HEAD(&slab->list);
	osh_sm_count_slab(sm, pool, 1);
	return slab;
}

static void osh_sm_discard_slab(struct osh_sm *sm, struct osh_sm_slab *slab)
{
	osh_sm_count_slab(sm, slab->pool, -1);
	kfree(slab);
}

static void osh_sm_add_partial(struct osh_sm_slab *slab, bool tail)
{
	struct osh_sm_pool *pool = slab->pool;

	slab->state = OSH_SM_PARTIAL;
	if (tail)
		list_add_tail(&slab->list, &pool->partial[slab->node]);
	else
		list_add(&slab->list, &pool->partial[slab->node]);
	pool->nr_partial[slab->node]++;
}

static void osh_sm_remove_partial(struct osh_sm_slab *slab)
{
	list_del_init(&slab->list);
	slab->pool->nr_partial[slab->node]--;
}

/* get_partial(): the local node first, then nodes above min_partial. */
static struct osh_sm_slab *osh_sm_get_partial(struct osh_sm *sm,
					      struct osh_sm_pool *pool,
					      unsigned int node)
{
	unsigned int i;

	for (i = 0; i < sm->nr_nodes; i++) {
		unsigned int n = (node + i) % sm->nr_nodes;
		struct osh_sm_slab *slab;

		if (list_empty(&pool->partial[n]) ||
		    (i && pool->nr_partial[n] <= pool->min_partial))
			continue;
		slab = list_first_entry(&pool->partial[n], struct osh_sm_slab,
					list);
		osh_sm_remove_partial(slab);
		return slab;
	}
	return NULL;
}

/* Place one object of @pool on @cpu; returns its slab, NULL on -ENOMEM. */
static struct osh_sm_slab *osh_sm_place(struct osh_sm *sm,
					struct osh_sm_pool *pool,
					unsigned int cpu, unsigned int node,
					unsigned int *slot)
{
	struct osh_sm_slab *slab = pool->active[cpu];
	unsigned int w;

	if (slab && slab->inuse == pool->cache->geo.objects) {
		slab->state = OSH_SM_FULL;
		pool->active[cpu] = NULL;
		slab = NULL;
	}
	if (!slab) {
		slab = osh_sm_get_partial(sm, pool, node);
		if (!slab)
			slab = osh_sm_new_slab(sm, pool, node);
		if (!slab)
			return NULL;
		slab->state = OSH_SM_ACTIVE;
		slab->cpu = cpu;
		pool->active[cpu] = slab;
	}
	for (w = 0; ~slab->used[w] == 0; w++)
		;
	*slot = w * OSH_SM_LONG_BITS + ffz(slab->used[w]);
	slab->used[w] |= 1UL << (*slot % OSH_SM_LONG_BITS);
	slab->inuse++;
	osh_sm_count_object(sm, pool, 1);
	return slab;
}

static void osh_sm_unplace(struct osh_sm *sm, struct osh_sm_slab *slab,
			   unsigned int slot)
{
	struct osh_sm_pool *pool = slab->pool;
	bool empty;

	slab->used[slot / OSH_SM_LONG_BITS] &= ~(1UL << (slot % OSH_SM_LONG_BITS));
	slab->inuse--;
	osh_sm_count_object(sm, pool, -1);
	if (slab->state == OSH_SM_ACTIVE)
		return;		/* the CPU's own slab keeps its holes */
	empty = !slab->inuse && pool->nr_partial[slab->node] >= pool->min_partial;
	if (slab->state == OSH_SM_FULL) {
		if (empty)
			osh_sm_discard_slab(sm, slab);
		else
			osh_sm_add_partial(slab, true);
	} else if (empty) {
		osh_sm_remove_partial(slab);
		osh_sm_discard_slab(sm, slab);
	}
}

static void osh_sm_forget(struct osh_sm *sm, struct osh_sm_obj *obj)
{
	unsigned int l;

	for (l = 0; l < OSH_SM_NR_LAYOUTS; l++)
		if (obj->slab[l])
			osh_sm_unplace(sm, obj->slab[l], obj->slot[l]);
}

/**
 * osh_sm_alloc() - place one allocated object under both layouts
 * @sm: the model
 * @a: the allocation
 *
 * An object the model still holds at that address lost its free event: it
 * is counted as replaced and removed first.  A failure to allocate model
 * memory is counted and leaves the object out of both layouts.
 */
void osh_sm_alloc(struct osh_sm *sm, const struct osh_sm_alloc *a)
{
	struct osh_sm_pool *pool[OSH_SM_NR_LAYOUTS];
	struct osh_sm_memcg *memcg;
	struct osh_sm_cache *cache;
	struct osh_sm_hnode *old;
	struct osh_sm_obj *obj;
	unsigned int l, cpu = a->cpu % sm->nr_cpus;
	unsigned int node = a->node % sm->nr_nodes;

	sm->ev.allocs++;
	if (!osh_sm_geometry_valid(&a->geo)) {
		sm->ev.bad_geometry++;
		return;
	}
	old = osh_sm_hash_remove(&sm->objs, a->ptr);
	if (old) {
		sm->ev.replaced++;
		osh_sm_forget(sm, container_of(old, struct osh_sm_obj, hnode));
		kfree(old);
	}
	cache = osh_sm_cache_get(sm, a);
	memcg = osh_sm_memcg_get(sm, a->memcg);
	obj = osh_sm_zalloc(sizeof(*obj));
	if (!cache || !memcg || !obj)
		goto fail;
	if (memcg->offline) {
		sm->ev.after_offline++;
		memcg = osh_sm_charge_target(memcg);
	}
	pool[OSH_SM_SHARED] = osh_sm_pool_get(sm, cache, NULL);
	pool[OSH_SM_MEMCGPTR] = osh_sm_pool_get(sm, cache, memcg);
	if (!pool[OSH_SM_SHARED] || !pool[OSH_SM_MEMCGPTR])
		goto fail;
	for (l = 0; l < OSH_SM_NR_LAYOUTS; l++) {
		obj->slab[l] = osh_sm_place(sm, pool[l], cpu, node, &obj->slot[l]);
		if (!obj->slab[l]) {
			osh_sm_forget(sm, obj);
			goto fail;
		}
	}
	obj->hnode.key = a->ptr;
	osh_sm_hash_add(&sm->objs, &obj->hnode);
	return;
fail:
	kfree(obj);
	sm->ev.alloc_failed++;
}

/**
 * osh_sm_free() - take a freed object out of both layouts
 * @sm: the model
 * @ptr: the object
 */
void osh_sm_free(struct osh_sm *sm, unsigned long ptr)
{
	struct osh_sm_hnode *n = osh_sm_hash_remove(&sm->objs, ptr);

	sm->ev.frees++;
	if (!n) {
		sm->ev.untracked_frees++;
		return;
	}
	osh_sm_forget(sm, container_of(n, struct osh_sm_obj, hnode));
	kfree(n);
}

/* memcg_deactivate_kmem_caches(): flush the active slabs, drop empties. */
static void osh_sm_shrink_dead_pool(struct osh_sm *sm,
				    struct osh_sm_pool *pool)
{
	struct osh_sm_slab *slab, *tmp;
	unsigned int i;

	pool->min_partial = 0;
	for (i = 0; i < sm->nr_cpus; i++) {
		slab = pool->active[i];
		if (!slab)
			continue;
		pool->active[i] = NULL;
		if (!slab->inuse)
			osh_sm_discard_slab(sm, slab);
		else if (slab->inuse == pool->cache->geo.objects)
			slab->state = OSH_SM_FULL;
		else
			osh_sm_add_partial(slab, false);
	}
	for (i = 0; i < sm->nr_nodes; i++) {
		list_for_each_entry_safe(slab, tmp, &pool->partial[i], list) {
			if (slab->inuse)
				continue;
			osh_sm_remove_partial(slab);
			osh_sm_discard_slab(sm, slab);
		}
	}
}

/**
 * osh_sm_offline() - a memcg went offline: reparent as the RFC does
 * @sm: the model
 * @memcg: its cgroup id
 * @parent: its parent's cgroup id
 *
 * Its pointers (its own and those it inherited) now point at the parent:
 * one swap each, and the pages charged through them move to the parent.
 * Its caches are shrunk; what they still hold pins it.
 */
void osh_sm_offline(struct osh_sm *sm, u64 memcg, u64 parent)
{
	struct osh_sm_memcg *m, *p;
	struct osh_sm_pool *pool;

	sm->ev.offlines++;
	m = osh_sm_memcg_get(sm, memcg);
	p = osh_sm_memcg_get(sm, parent);
	if (!m || !p) {
		sm->ev.alloc_failed++;
		return;
	}
	if (m == p || m->offline)
		return;		/* the root, or offlined twice */
	m->parent = p;
	list_for_each_entry(pool, &m->pools, memcg_node)
		osh_sm_shrink_dead_pool(sm, pool);
	m->offline = true;
	p = osh_sm_charge_target(p);
	sm->ptr_swaps += m->nr_ptrs;
	p->nr_ptrs += m->nr_ptrs;
	m->nr_ptrs = 0;
	sm->pages_moved += m->charged_pages;
	p->charged_pages += m->charged_pages;
	m->charged_pages = 0;
}

/**
 * osh_sm_memcg_counts() - one memcg's memcgptr figures
 * @sm: the model
 * @memcg: cgroup id
 * @charged_pages: slab pages charged to it (its page counter's slab part)
 * @own_slabs: slabs of its own caches, wherever charged
 */
void osh_sm_memcg_counts(struct osh_sm *sm, u64 memcg,
			 unsigned long *charged_pages, unsigned long *own_slabs)
{
	struct osh_sm_hnode *n = osh_sm_hash_find(&sm->memcgs, memcg);
	struct osh_sm_memcg *m = n ? container_of(n, struct osh_sm_memcg, hnode) : NULL;

	*charged_pages = m ? m->charged_pages : 0;
	*own_slabs = m ? m->own_slabs : 0;
}

/**
 * osh_sm_pinned() - dead memcgs that memcgptr slabs keep alive
 * @sm: the model
 * @pinned_pages: set to the pages of their caches' slabs
 *
 * Return: how many offline memcgs still own slabs.
 */
unsigned long osh_sm_pinned(struct osh_sm *sm, unsigned long *pinned_pages)
{
	unsigned long nr = 0, pages = 0;
	struct osh_sm_memcg *m;

	list_for_each_entry(m, &sm->memcgs_in_order, list) {
		struct osh_sm_pool *pool;

		if (!m->offline || !m->own_slabs)
			continue;
		nr++;
		list_for_each_entry(pool, &m->pools, memcg_node)
			pages += pool->slabs << pool->cache->geo.order;
	}
	*pinned_pages = pages;
	return nr;
}

static void osh_sm_dump_counts(struct osh_buf *ob, const char *prefix,
			       const struct osh_sm_counts *c)
{
	osh_buf_printf(ob, " %s_slabs=%lu %s_pages=%lu %s_objects=%lu %s_obj_bytes=%lu",
		       prefix, c->slabs, prefix, c->pages, prefix, c->objects,
		       prefix, c->obj_bytes);
}

static const char *const osh_sm_layout_names[OSH_SM_NR_LAYOUTS] = {
	[OSH_SM_SHARED] = "shared",
	[OSH_SM_MEMCGPTR] = "memcgptr",
};

/**
 * osh_sm_dump() - the model as text, one "key=value" record per line
 * @sm: the model
 * @ob: output
 *
 * A "total" line per layout, a "memcgptr" line with reparenting and pins,
 * an "events" line, then a "cache" line per cache in order of first use.
 */
void osh_sm_dump(struct osh_sm *sm, struct osh_buf *ob)
{
	unsigned long pinned, pinned_pages;
	struct osh_sm_cache *cache;
	unsigned int l;

	for (l = 0; l < OSH_SM_NR_LAYOUTS; l++) {
		osh_buf_printf(ob, "total layout=%s", osh_sm_layout_names[l]);
		osh_sm_dump_counts(ob, "model", &sm->total[l]);
		osh_buf_printf(ob, "\n");
	}
	pinned = osh_sm_pinned(sm, &pinned_pages);
	osh_buf_printf(ob, "memcgptr ptr_swaps=%lu pages_moved=%lu",
		       sm->ptr_swaps, sm->pages_moved);
	osh_buf_printf(ob, " pinned_memcgs=%lu pinned_pages=%lu pools=%lu memcgs=%lu\n",
		       pinned, pinned_pages, sm->pools.nr, sm->memcgs.nr);
	osh_buf_printf(ob, "events allocs=%lu frees=%lu offlines=%lu",
		       sm->ev.allocs, sm->ev.frees, sm->ev.offlines);
	osh_buf_printf(ob, " untracked_frees=%lu replaced=%lu alloc_failed=%lu",
		       sm->ev.untracked_frees, sm->ev.replaced,
		       sm->ev.alloc_failed);
	osh_buf_printf(ob, " bad_geometry=%lu after_offline=%lu objects=%lu\n",
		       sm->ev.bad_geometry, sm->ev.after_offline, sm->objs.nr);
	list_for_each_entry(cache, &sm->caches_in_order, list) {
		osh_buf_printf(ob, "cache name=");
		osh_buf_puts_escaped(ob, cache->name);
		osh_buf_printf(ob, " key=%lx size=%u objs_per_slab=%u",
			       cache->hnode.key, cache->geo.size,
			       cache->geo.objects);
		osh_buf_printf(ob, " order=%u min_partial=%u whole=%d memcg_pools=%lu",
			       cache->geo.order, cache->geo.min_partial,
			       cache->whole, cache->memcg_pools);
		for (l = 0; l < OSH_SM_NR_LAYOUTS; l++)
			osh_sm_dump_counts(ob, osh_sm_layout_names[l],
					   &cache->cnt[l]);
		osh_buf_printf(ob, "\n");
	}
}
