/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Slab page model: the slab pages SLUB would use for the objects the
 * shadow sees, under two layouts fed by the same events:
 *
 * - shared: one pool per kmem_cache, objects of every memcg mixed, as
 *   since 5.9 (obj_cgroup, byte charging);
 * - memcgptr: one pool per (memcg, kmem_cache), as before 5.9, with the
 *   reparenting of the 2019 mem_cgroup_ptr RFC: on offline the memcg's
 *   pointers are swapped to the parent (one swap per pointer) and the
 *   pages they charge move with them, while the dead memcg's own caches
 *   keep their slabs, and so the memcg, until their last object is freed.
 *
 * A pool keeps what decides SLUB's page count: a per-CPU active slab, per
 * node partial lists, every object in a concrete slot so that frees leave
 * holes, and empty slabs released once a node has min_partial partial
 * slabs.  SLUB's per-CPU partial lists are not modelled: a slab that a
 * free makes partial goes straight to its node's list.
 *
 * Context: process context only, one caller at a time; the module replays
 * its per-CPU event logs into the model under a mutex.
 */
#ifndef OBJCG_SHADOW_SLABMODEL_H
#define OBJCG_SHADOW_SLABMODEL_H

#include "osh_env.h"

#define OSH_SM_NAME_LEN		32
#define OSH_SM_MAX_OBJECTS	32767	/* SLUB's MAX_OBJS_PER_PAGE */
#define OSH_SM_MAX_ORDER	10
#define OSH_SM_ROOT_MEMCG	0	/* id of allocations charged to no memcg */

enum osh_sm_layout {
	OSH_SM_SHARED,
	OSH_SM_MEMCGPTR,
	OSH_SM_NR_LAYOUTS,
};

/* What SLUB's struct kmem_cache says about one cache's slabs. */
struct osh_sm_geometry {
	unsigned int size;		/* s->size: the object stride */
	unsigned int objects;		/* objects per slab (oo) */
	unsigned int order;		/* a slab is 1 << order pages */
	unsigned int min_partial;	/* partial slabs kept per node */
};

struct osh_sm_hnode {
	struct osh_sm_hnode *next;
	unsigned long key;
};

/* Chained hash that doubles past one entry per bucket. */
struct osh_sm_hash {
	struct osh_sm_hnode **bucket;
	unsigned int bits;
	unsigned long nr;
};

struct osh_sm_counts {
	unsigned long slabs;
	unsigned long pages;
	unsigned long objects;
	unsigned long obj_bytes;	/* objects * size */
};

struct osh_sm_cache {
	struct osh_sm_hnode hnode;	/* key: the kernel's kmem_cache */
	struct osh_sm_geometry geo;
	char name[OSH_SM_NAME_LEN];
	bool whole;			/* SLAB_ACCOUNT: the model sees all its objects */
	struct list_head list;		/* osh_sm.caches_in_order */
	struct osh_sm_counts cnt[OSH_SM_NR_LAYOUTS];
	unsigned long memcg_pools;	/* memcgptr pools of this cache */
};

struct osh_sm_memcg {
	struct osh_sm_hnode hnode;	/* key: cgroup id */
	struct osh_sm_memcg *parent;	/* known from the offline event */
	bool offline;
	struct list_head pools;		/* its own memcgptr pools */
	struct list_head list;		/* osh_sm.memcgs_in_order */
	unsigned long nr_ptrs;		/* mem_cgroup_ptrs that point at it */
	unsigned long charged_pages;	/* slab pages charged to it, local */
	unsigned long own_slabs;	/* slabs of its own pools */
};

struct osh_sm_slab;

struct osh_sm_pool {
	struct osh_sm_hnode hnode;	/* key: osh_sm_pool_key() */
	struct osh_sm_cache *cache;
	struct osh_sm_memcg *memcg;	/* NULL in the shared layout */
	struct list_head memcg_node;	/* memcg->pools */
	unsigned int min_partial;	/* 0 once its memcg is dead */
	unsigned long slabs;
	struct osh_sm_slab **active;	/* [nr_cpus] */
	struct list_head *partial;	/* [nr_nodes] */
	unsigned int *nr_partial;	/* [nr_nodes] */
};

struct osh_sm_events {
	unsigned long allocs;
	unsigned long frees;
	unsigned long offlines;
	unsigned long untracked_frees;	/* allocated before the model saw it */
	unsigned long replaced;		/* allocated twice: its free was missed */
	unsigned long alloc_failed;	/* model memory: event not modelled */
	unsigned long bad_geometry;	/* event with impossible geometry */
	unsigned long after_offline;	/* charged to a dead memcg: its ancestor's pool */
};

struct osh_sm {
	unsigned int nr_cpus;
	unsigned int nr_nodes;
	struct osh_sm_hash caches;
	struct osh_sm_hash memcgs;
	struct osh_sm_hash pools;
	struct osh_sm_hash objs;
	struct list_head caches_in_order;
	struct list_head memcgs_in_order;
	struct osh_sm_counts total[OSH_SM_NR_LAYOUTS];
	unsigned long ptr_swaps;	/* memcgptr: pointers swapped at offline */
	unsigned long pages_moved;	/* memcgptr: pages whose charge moved */
	struct osh_sm_events ev;
};

/* One allocation, as the event log records it. */
struct osh_sm_alloc {
	unsigned long ptr;
	unsigned long cache;		/* the kmem_cache, as a key */
	const char *name;		/* the cache's name, or NULL */
	bool whole;			/* every object of the cache is logged */
	struct osh_sm_geometry geo;
	u64 memcg;			/* charged memcg's cgroup id, or ROOT */
	unsigned int cpu;
	unsigned int node;		/* of the CPU: where SLUB allocates */
};

int osh_sm_init(struct osh_sm *sm, unsigned int nr_cpus,
		unsigned int nr_nodes);
void osh_sm_destroy(struct osh_sm *sm);
void osh_sm_alloc(struct osh_sm *sm, const struct osh_sm_alloc *a);
void osh_sm_free(struct osh_sm *sm, unsigned long ptr);
void osh_sm_offline(struct osh_sm *sm, u64 memcg, u64 parent);
bool osh_sm_geometry_valid(const struct osh_sm_geometry *geo);
bool osh_sm_has_cache(struct osh_sm *sm, unsigned long cache);
void osh_sm_memcg_counts(struct osh_sm *sm, u64 memcg,
			 unsigned long *charged_pages, unsigned long *own_slabs);
unsigned long osh_sm_pinned(struct osh_sm *sm, unsigned long *pinned_pages);

struct osh_buf;
void osh_sm_dump(struct osh_sm *sm, struct osh_buf *ob);

#endif /* OBJCG_SHADOW_SLABMODEL_H */
