/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Object map: kernel address -> what the shadow charged for it.
 *
 * A fixed-size, preallocated hash with no lock: the hot path neither
 * allocates nor takes a lock shared across CPUs.  Each key hashes to two
 * buckets of OSH_OBJMAP_WAYS slots (one cache line of keys each).  Insert
 * claims an empty slot with cmpxchg, writes the value, then publishes the
 * key with release; remove finds the key, copies the value, then empties
 * the slot with release.  A live kernel object has one address, and the
 * kernel orders its free before any reuse, so a key is never inserted
 * twice concurrently.  When both buckets are full the insert fails and the
 * caller counts the object as dropped: nothing is lost silently.
 */
#ifndef OBJCG_SHADOW_OBJMAP_H
#define OBJCG_SHADOW_OBJMAP_H

#include "osh_env.h"

#define OSH_OBJMAP_WAYS		8
#define OSH_OBJMAP_KEY_BUSY	1UL	/* slot claimed, value being written */

struct osh_objmap {
	unsigned long *keys;		/* nr_buckets * OSH_OBJMAP_WAYS */
	char *vals;			/* same layout, val_size bytes each */
	size_t val_size;
	unsigned int bucket_bits;
	atomic_long_t nr;		/* live entries */
	atomic_long_t full;		/* inserts dropped: both buckets full */
	atomic_long_t replaced;		/* stale entries found at insert */
};

int osh_objmap_init(struct osh_objmap *map, unsigned int bucket_bits,
		    size_t val_size, void *(*alloc)(size_t size));
void osh_objmap_destroy(struct osh_objmap *map, void (*free_fn)(void *));
size_t osh_objmap_capacity(const struct osh_objmap *map);

void *osh_objmap_insert(struct osh_objmap *map, unsigned long key,
			const void *val, void *stale_out, bool *had_stale);
bool osh_objmap_remove(struct osh_objmap *map, unsigned long key,
		       void *val_out);
void *osh_objmap_peek(struct osh_objmap *map, unsigned long key);

/* Visit every published entry; not atomic against concurrent updates. */
void osh_objmap_for_each(struct osh_objmap *map,
			 void (*fn)(unsigned long key, void *val, void *arg),
			 void *arg);

/*
 * Visit entries from slot @from on, each as a copy that was the entry's
 * whole value at one moment, with rcu_read_lock() held around @fn: the
 * pointers in it may be followed to RCU-freed objects.
 */
typedef bool (*osh_objmap_visit_fn)(unsigned long key, const void *val,
				    void *arg);
size_t osh_objmap_walk(struct osh_objmap *map, size_t from, void *copy,
		       osh_objmap_visit_fn fn, void *arg, unsigned long *raced);

#endif /* OBJCG_SHADOW_OBJMAP_H */
