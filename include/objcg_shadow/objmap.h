/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Object map: kernel address -> what the shadow charged for it.
 *
 * A hash with no lock on the hot path: insert, remove and look-up neither
 * allocate nor take a lock shared across CPUs.  Each key hashes to two
 * home buckets of OSH_OBJMAP_WAYS slots (one cache line of keys each);
 * when both are full it spills into the few buckets after them, which
 * look-ups search only while an entry of that home has spilled.  Insert
 * claims an empty slot with cmpxchg, writes the value, then publishes the
 * key with release; remove finds the key, copies the value, then empties
 * the slot with release.  Each bucket also keeps one tag byte per slot (7
 * bits of the hash, top bit set; 0 when free) in one word, so that a
 * search compares a bucket's eight tags at once and reads only the keys
 * whose tag matches: the keys stay the truth, the tags only a hint that is
 * set after the key is published and cleared before it is.  A live
 * kernel object has one address, and the kernel orders its free before
 * any reuse, so a key is never inserted twice concurrently.
 *
 * The map grows with use.  Each insert into a map past 3/4 full asks for
 * growth (any context may: the kernel glue defers it to a worker), and
 * osh_objmap_grow() in process context allocates a table half as big
 * again, publishes it for inserts, waits for a grace period, and moves the
 * old table's entries one at a time, each with interrupts off.  Meanwhile
 * look-ups search the old table, then the new one; an entry being moved
 * carries OSH_OBJMAP_KEY_MOVING, and a remover that meets it waits for the
 * move (a few stores) and finds it in the new table.  Between walk_begin
 * and walk_end no growth runs, so slot numbers stay valid.  When even the
 * spill buckets are full the insert fails and the caller counts the
 * object as dropped: nothing is lost silently.
 */
#ifndef OBJCG_SHADOW_OBJMAP_H
#define OBJCG_SHADOW_OBJMAP_H

#include "osh_env.h"

#define OSH_OBJMAP_WAYS		8
#define OSH_OBJMAP_KEY_BUSY	1UL	/* slot claimed, value being written */
#define OSH_OBJMAP_KEY_MOVING	1UL	/* or'ed into a key being moved */
#define OSH_OBJMAP_SPILL	4	/* buckets after a full home to try */
#define OSH_OBJMAP_DOUBLE_BELOW	65536	/* slots: smaller tables double */

struct osh_objmap_table {
	unsigned long *keys;		/* nr_buckets * OSH_OBJMAP_WAYS */
	u64 *tags;			/* per bucket: a tag byte per slot */
	char *vals;			/* same layout, val_size bytes each */
	atomic_t *spilled;		/* per bucket: entries homed here, spilled */
	size_t nr_buckets;
};

/*
 * What a reader sees at once: the table inserts go to, and the older ones
 * being emptied into it, oldest first.  There are two only when a growth
 * found the new table too small for the moves (a burst of inserts while
 * it ran) and the next growth moves both into a bigger one.
 */
#define OSH_OBJMAP_MAX_OLD	2

struct osh_objmap_view {
	struct osh_objmap_table *cur;
	struct osh_objmap_table *old[OSH_OBJMAP_MAX_OLD];
	unsigned int nr_old;
};

struct osh_objmap {
	struct osh_objmap_view *view;	/* one of views[], read with acquire */
	struct osh_objmap_view views[2];
	size_t val_size;
	void *(*alloc)(size_t size);	/* zeroing, may sleep */
	void (*free_fn)(void *p);
	void (*grow_needed)(struct osh_objmap *map);	/* any context */
	struct mutex grow_lock;		/* growth against whole-map walks */
	atomic_long_t nr;		/* live entries */
	atomic_long_t full;		/* inserts dropped: both buckets full */
	atomic_long_t replaced;		/* stale entries found at insert */
	atomic_long_t grows;		/* tables replaced by a bigger one */
	atomic_long_t grow_failed;	/* growth that could not allocate */
	atomic_long_t moved;		/* entries moved by growth */
	atomic_long_t move_waits;	/* removers that waited for a move */
	u64 move_irqoff_max_ns;		/* longest IRQs-off move of one entry */
};

int osh_objmap_init(struct osh_objmap *map, unsigned int bucket_bits,
		    size_t val_size, void *(*alloc)(size_t size),
		    void (*free_fn)(void *p),
		    void (*grow_needed)(struct osh_objmap *map));
void osh_objmap_destroy(struct osh_objmap *map);
bool osh_objmap_wants_growth(struct osh_objmap *map);
int osh_objmap_grow(struct osh_objmap *map);
int osh_objmap_reserve(struct osh_objmap *map, size_t n);
size_t osh_objmap_capacity(struct osh_objmap *map);
size_t osh_objmap_slots(struct osh_objmap *map);
size_t osh_objmap_bytes(struct osh_objmap *map);
struct osh_buf;
void osh_objmap_dump(struct osh_objmap *map, const char *name,
		     struct osh_buf *ob);

void *osh_objmap_insert(struct osh_objmap *map, unsigned long key,
			const void *val, void *stale_out, bool *had_stale);
bool osh_objmap_remove(struct osh_objmap *map, unsigned long key,
		       void *val_out);
bool osh_objmap_contains(struct osh_objmap *map, unsigned long key);
bool osh_objmap_read(struct osh_objmap *map, unsigned long key,
		     void *val_out);
bool osh_objmap_update(struct osh_objmap *map, unsigned long key,
		       bool (*fn)(void *val, void *arg), void *arg);

/*
 * Whole-map walks hold the map still: no growth runs between
 * osh_objmap_walk_begin() and osh_objmap_walk_end() (process context).
 */
void osh_objmap_walk_begin(struct osh_objmap *map);
void osh_objmap_walk_end(struct osh_objmap *map);

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
