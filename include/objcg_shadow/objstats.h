/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the live charged objects are, grouped by the memcg their objcg
 * points to now, the memcg the objcg was made for, slab cache, node and
 * kind: per-cgroup slabinfo, and what a dead cgroup left behind.
 *
 * Built on demand from the object and page maps (debugfs "slabinfo" and
 * "pins"), in process context, never on the event path.
 */
#ifndef OBJCG_SHADOW_OBJSTATS_H
#define OBJCG_SHADOW_OBJSTATS_H

#include "osh_env.h"

struct osh_acct;

enum osh_objstat_kind {
	OSH_OBJSTAT_SLAB,		/* a slab object; cache says which */
	OSH_OBJSTAT_PERCPU,		/* an accounted percpu allocation */
	OSH_OBJSTAT_PAGE,		/* a kmem page: page tables, pipes... */
	OSH_OBJSTAT_STACK,		/* kernel stack pages */
	OSH_OBJSTAT_LARGE_KMALLOC,	/* kmalloc above the largest cache */
	OSH_NR_OBJSTAT_KINDS,
};

struct osh_objstat {
	u64 memcg_id;			/* where the objcg points now */
	u64 born_id;			/* what the objcg was made for */
	unsigned long cache;		/* struct kmem_cache *, 0 if not slab */
	int node;			/* of the object's page */
	unsigned int kind;		/* enum osh_objstat_kind */
	unsigned long nr;		/* objects, or page allocations */
	unsigned long pages;		/* page kinds: pages */
	unsigned long bytes;		/* charged: obj_full_size(), or pages */
};

/* The slab cache of a live slab object, 0 if unknown. */
typedef unsigned long (*osh_cache_of_fn)(unsigned long obj);

struct osh_objstats {
	struct osh_objstat *v;		/* open addressing; nr_used of cap */
	size_t cap;			/* a power of two */
	size_t nr_used;
	unsigned long raced;		/* entries changed while read */
	unsigned long unowned;		/* no objcg for the design */
	/* the walk's own state */
	unsigned int design;
	osh_cache_of_fn cache_of;
	unsigned int kind_of_map;	/* OSH_OBJSTAT_SLAB or _PAGE */
};

const char *osh_objstat_kind_name(unsigned int kind);
int osh_objstats_collect(struct osh_acct *acct, unsigned int d,
			 osh_cache_of_fn cache_of, struct osh_objstats *st);
void osh_objstats_free(struct osh_objstats *st);

#endif /* OBJCG_SHADOW_OBJSTATS_H */
