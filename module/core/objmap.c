// SPDX-License-Identifier: GPL-2.0
/*
 * Growable lock-free object map; see include/objcg_shadow/objmap.h.
 */
#include <objcg_shadow/objmap.h>
#include <objcg_shadow/outbuf.h>

/* spins a remover waits for a move: far beyond its few stores */
#define OSH_OBJMAP_MOVE_SPINS	BIT(24)

static void osh_table_free(struct osh_objmap *map, struct osh_objmap_table *t)
{
	if (!t)
		return;
	map->free_fn(t->keys);
	map->free_fn(t->tags);
	map->free_fn(t->vals);
	map->free_fn(t->spilled);
	map->free_fn(t);
}

static struct osh_objmap_table *osh_table_alloc(struct osh_objmap *map,
						size_t nr_buckets)
{
	size_t slots = nr_buckets * OSH_OBJMAP_WAYS;
	struct osh_objmap_table *t = map->alloc(sizeof(*t));

	if (!t)
		return NULL;
	t->nr_buckets = nr_buckets;
	t->keys = map->alloc(slots * sizeof(*t->keys));
	t->tags = map->alloc(nr_buckets * sizeof(*t->tags));
	t->vals = map->alloc(slots * map->val_size);
	t->spilled = map->alloc(nr_buckets * sizeof(*t->spilled));
	if (!t->keys || !t->tags || !t->vals || !t->spilled) {
		osh_table_free(map, t);
		return NULL;
	}
	return t;
}

static size_t osh_table_slots(const struct osh_objmap_table *t)
{
	return t->nr_buckets * OSH_OBJMAP_WAYS;
}

/**
 * osh_objmap_init() - allocate an empty map
 * @map: the map
 * @bucket_bits: log2 of the number of buckets it starts with
 * @val_size: bytes of value per entry
 * @alloc: zeroing allocator for the tables (vzalloc in the kernel)
 * @free_fn: its free function
 * @grow_needed: called, from any context, when the map should grow; it
 *		 must arrange for osh_objmap_grow() in process context.
 *		 NULL: the map grows only when its owner calls that.
 *
 * Return: 0 or -ENOMEM.
 */
int osh_objmap_init(struct osh_objmap *map, unsigned int bucket_bits,
		    size_t val_size, void *(*alloc)(size_t size),
		    void (*free_fn)(void *p),
		    void (*grow_needed)(struct osh_objmap *map))
{
	memset(map, 0, sizeof(*map));
	map->val_size = ALIGN(val_size, sizeof(long));
	map->alloc = alloc;
	map->free_fn = free_fn;
	map->grow_needed = grow_needed;
	mutex_init(&map->grow_lock);
	map->views[0].cur = osh_table_alloc(map, (size_t)1 << bucket_bits);
	map->view = &map->views[0];
	return map->views[0].cur ? 0 : -ENOMEM;
}

/**
 * osh_objmap_destroy() - free the tables; no user may remain
 * @map: the map
 */
void osh_objmap_destroy(struct osh_objmap *map)
{
	unsigned int i;

	if (!map->view)
		return;
	osh_table_free(map, map->view->cur);
	for (i = 0; i < map->view->nr_old; i++)
		osh_table_free(map, map->view->old[i]);
	map->view = NULL;
}

static struct osh_objmap_view *osh_view(struct osh_objmap *map)
{
	/* pairs with the release that published the view */
	return smp_load_acquire(&map->view);
}

static size_t osh_view_slots(const struct osh_objmap_view *v)
{
	size_t slots = osh_table_slots(v->cur);
	unsigned int i;

	for (i = 0; i < v->nr_old; i++)
		slots += osh_table_slots(v->old[i]);
	return slots;
}

/**
 * osh_objmap_capacity() - slots of the table inserts go to
 * @map: the map
 *
 * Return: slots; inserts start failing somewhat below this.
 */
size_t osh_objmap_capacity(struct osh_objmap *map)
{
	size_t slots;

	rcu_read_lock();
	slots = osh_table_slots(osh_view(map)->cur);
	rcu_read_unlock();
	return slots;
}

/**
 * osh_objmap_slots() - slots of all the map's tables, as walks number them
 * @map: the map
 *
 * Return: slots of the current table and of any old one still emptying.
 */
size_t osh_objmap_slots(struct osh_objmap *map)
{
	size_t slots;

	rcu_read_lock();
	slots = osh_view_slots(osh_view(map));
	rcu_read_unlock();
	return slots;
}

/**
 * osh_objmap_bytes() - memory the map's tables take now
 * @map: the map
 *
 * Return: bytes of keys, tags and values, both tables while one grows.
 */
size_t osh_objmap_bytes(struct osh_objmap *map)
{
	return osh_objmap_slots(map) * (sizeof(unsigned long) + map->val_size) +
	       osh_objmap_slots(map) / OSH_OBJMAP_WAYS *
	       (sizeof(u64) + sizeof(atomic_t));
}

/* splitmix64's finaliser: every input bit affects every output bit */
static u64 osh_mix64(u64 x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * The two home buckets must be independent for two-choice hashing to
 * balance the load: take them from the two halves of one strong mix, each
 * scaled onto any number of buckets by a multiply (no power of two needed,
 * so a table can grow by half).  The multiply keeps the top bits of each
 * half, so the tag takes the lowest bits, which hardly move a bucket.
 * Return: the key's tag.
 */
static u8 osh_homes(const struct osh_objmap_table *t, unsigned long key,
		    size_t home[2])
{
	u64 h = osh_mix64(key);

	home[0] = ((u64)(u32)h * t->nr_buckets) >> 32;
	home[1] = ((h >> 32) * t->nr_buckets) >> 32;
	return (u8)h | 0x80;
}

/*
 * A bucket's tags as one word, byte i the tag of slot i (the byte order
 * of x86 and of the userspace tests: the module builds only for x86).
 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "objmap tags assume a little-endian CPU"
#endif
#define OSH_TAG_ONES	0x0101010101010101ULL
#define OSH_TAG_TOPS	0x8080808080808080ULL

static u8 *osh_tag_byte(struct osh_objmap_table *t, size_t slot)
{
	return (u8 *)&t->tags[slot / OSH_OBJMAP_WAYS] + slot % OSH_OBJMAP_WAYS;
}

/* The top bit of each free slot's byte: a used tag has its top bit set. */
static u64 osh_tags_free(u64 tags)
{
	return ~tags & OSH_TAG_TOPS;
}

/*
 * The top bit of each byte that may hold @tag: every one that does, and
 * rarely one more (a borrow past a match); the key decides.
 */
static u64 osh_tags_match(u64 tags, u8 tag)
{
	u64 x = tags ^ (OSH_TAG_ONES * tag);

	return (x - OSH_TAG_ONES) & ~x & OSH_TAG_TOPS;
}

/* The slot of the lowest bit of a mask from the two above, in @bucket. */
static size_t osh_tags_slot(size_t bucket, u64 mask)
{
	return bucket * OSH_OBJMAP_WAYS + __ffs64(mask) / 8;
}

static size_t osh_spill_bucket(const struct osh_objmap_table *t, size_t home,
			       unsigned int step)
{
	return (home + step) % t->nr_buckets;
}

static void *osh_val(const struct osh_objmap *map,
		     const struct osh_objmap_table *t, size_t slot)
{
	return t->vals + slot * map->val_size;
}

/*
 * Copy a value: a few words (val_size is a multiple of a long), where a
 * call to memcpy() of a size unknown at build time costs twice as much.
 */
static void osh_val_copy(void *dst, const void *src, size_t size)
{
	unsigned long *d = dst;
	const unsigned long *s = src;
	size_t i;

	for (i = 0; i < size / sizeof(long); i++)
		d[i] = s[i];
}

/* Fill @slot, claimed by the caller, and publish @key, then its tag. */
static void *osh_slot_fill(struct osh_objmap *map, struct osh_objmap_table *t,
			   size_t slot, unsigned long key, u8 tag,
			   const void *val)
{
	void *stored = osh_val(map, t, slot);

	osh_val_copy(stored, val, map->val_size);
	/* publish the key only once its value is complete */
	smp_store_release(&t->keys[slot], key);
	WRITE_ONCE(*osh_tag_byte(t, slot), tag);
	return stored;
}

static bool osh_slot_claim(struct osh_objmap_table *t, size_t slot)
{
	return !READ_ONCE(t->keys[slot]) &&
	       !cmpxchg(&t->keys[slot], 0UL, OSH_OBJMAP_KEY_BUSY);
}

/* Claim a free slot of @bucket, fill it and publish @key.  Or NULL. */
static void *osh_bucket_claim(struct osh_objmap *map,
			      struct osh_objmap_table *t, size_t bucket,
			      unsigned long key, u8 tag, const void *val)
{
	size_t slot = bucket * OSH_OBJMAP_WAYS, end = slot + OSH_OBJMAP_WAYS;

	for (; slot < end; slot++) {
		if (osh_slot_claim(t, slot))
			return osh_slot_fill(map, t, slot, key, tag, val);
	}
	return NULL;
}

static void osh_spill_count(struct osh_objmap_table *t, const size_t home[2],
			    int delta)
{
	atomic_add(delta, &t->spilled[home[0]]);
	if (home[1] != home[0])
		atomic_add(delta, &t->spilled[home[1]]);
}

/*
 * A home bucket's free slots, and the first of them (or -1), from its
 * tags; and the slot holding @key, if any (a stale entry).
 */
struct osh_bucket_scan {
	unsigned int empty;
	long first_empty;
	long found;
};

static __always_inline void osh_bucket_scan(struct osh_objmap_table *t,
					    size_t bucket, unsigned long key,
					    u8 tag, struct osh_bucket_scan *scan)
{
	u64 tags = READ_ONCE(t->tags[bucket]);
	u64 free = osh_tags_free(tags), match;

	scan->empty = hweight64(free);
	scan->first_empty = free ? (long)osh_tags_slot(bucket, free) : -1;
	scan->found = -1;
	for (match = key ? osh_tags_match(tags, tag) : 0; match;
	     match &= match - 1) {
		size_t slot = osh_tags_slot(bucket, match);

		if (READ_ONCE(t->keys[slot]) == key) {
			scan->found = (long)slot;
			break;
		}
	}
}

/*
 * Insert into @t: the emptier home bucket (two choices keep the fullest
 * bucket near the mean), else a bucket in the few after either home.  A
 * spilled entry is counted in both homes before it is published, so a
 * look-up knows to search past them.  @scan, when given, is what
 * osh_bucket_scan() read of both homes.  Return: the stored value, or NULL.
 */
static void *osh_table_insert_at(struct osh_objmap *map,
				 struct osh_objmap_table *t, unsigned long key,
				 u8 tag, const void *val, const size_t home[2],
				 const struct osh_bucket_scan scan[2])
{
	unsigned int b, step, first;
	void *stored;

	first = scan[1].empty > scan[0].empty;
	/* the slot the scan saw free, unless another insert took it since */
	if (scan[first].first_empty >= 0 &&
	    osh_slot_claim(t, scan[first].first_empty))
		return osh_slot_fill(map, t, scan[first].first_empty, key, tag,
				     val);
	for (b = 0; b < 2; b++) {
		stored = osh_bucket_claim(map, t, home[b ^ first], key, tag,
					  val);
		if (stored)
			return stored;
	}
	osh_spill_count(t, home, 1);
	for (step = 1; step <= OSH_OBJMAP_SPILL; step++) {
		for (b = 0; b < 2; b++) {
			size_t bucket = osh_spill_bucket(t, home[b ^ first], step);

			/* a home is no spill: its entry would stay counted */
			if (bucket == home[0] || bucket == home[1])
				continue;
			stored = osh_bucket_claim(map, t, bucket, key, tag, val);
			if (stored)
				return stored;
		}
	}
	osh_spill_count(t, home, -1);
	return NULL;
}

static void *osh_table_insert(struct osh_objmap *map,
			      struct osh_objmap_table *t, unsigned long key,
			      const void *val)
{
	struct osh_bucket_scan scan[2];
	size_t home[2];
	u8 tag = osh_homes(t, key, home);

	osh_bucket_scan(t, home[0], 0, tag, &scan[0]);
	osh_bucket_scan(t, home[1], 0, tag, &scan[1]);
	return osh_table_insert_at(map, t, key, tag, val, home, scan);
}

/* The slot of @bucket holding @key (or @key moving if @moving), or -1. */
static __always_inline long osh_bucket_find(const struct osh_objmap_table *t,
					    size_t bucket, unsigned long key,
					    u8 tag, bool moving)
{
	u64 match = osh_tags_match(READ_ONCE(t->tags[bucket]), tag);

	for (; match; match &= match - 1) {
		size_t slot = osh_tags_slot(bucket, match);
		/* pairs with the release that published the key */
		unsigned long k = smp_load_acquire(&t->keys[slot]);

		if (k == key || (moving && k == (key | OSH_OBJMAP_KEY_MOVING)))
			return (long)slot;
	}
	return -1;
}

/*
 * The slot of @t holding @key, or of @key being moved if @moving; or -1.
 * @home receives the key's home buckets.
 */
static __always_inline long osh_table_find_homes(const struct osh_objmap_table *t,
						 unsigned long key, bool moving,
						 size_t home[2])
{
	u8 tag = osh_homes(t, key, home);
	unsigned int b, step;
	long slot;

	for (b = 0; b < 2; b++) {
		slot = osh_bucket_find(t, home[b], key, tag, moving);
		if (slot >= 0)
			return slot;
	}
	if (likely(!atomic_read(&t->spilled[home[0]])))
		return -1;
	for (step = 1; step <= OSH_OBJMAP_SPILL; step++) {
		for (b = 0; b < 2; b++) {
			slot = osh_bucket_find(t, osh_spill_bucket(t, home[b], step),
					       key, tag, moving);
			if (slot >= 0)
				return slot;
		}
	}
	return -1;
}

static long osh_table_find(const struct osh_objmap_table *t, unsigned long key,
			   bool moving)
{
	size_t home[2];

	return osh_table_find_homes(t, key, moving, home);
}

/* Empty the slot holding a key of @home, owned by the caller; uncount a spill. */
static void osh_table_clear_homes(struct osh_objmap_table *t, size_t slot,
				  const size_t home[2])
{
	size_t bucket = slot / OSH_OBJMAP_WAYS;

	WRITE_ONCE(*osh_tag_byte(t, slot), 0);
	/*
	 * Release: the tag goes first, so a slot's tag is only ever cleared
	 * while its key still holds it and the next inserter's tag is never
	 * undone; and the copy of the value completes before reuse.
	 */
	smp_store_release(&t->keys[slot], 0UL);
	if (bucket != home[0] && bucket != home[1])
		osh_spill_count(t, home, -1);
}

static void osh_table_clear(struct osh_objmap_table *t, size_t slot,
			    unsigned long key)
{
	size_t home[2];

	osh_homes(t, key, home);
	osh_table_clear_homes(t, slot, home);
}

/* Copy out the value of an owned slot of @home and empty the slot. */
static void osh_slot_take(struct osh_objmap *map, struct osh_objmap_table *t,
			  size_t slot, const size_t home[2], void *val_out)
{
	osh_val_copy(val_out, osh_val(map, t, slot), map->val_size);
	osh_table_clear_homes(t, slot, home);
	atomic_long_dec(&map->nr);
}

/* 3/4 full: the spill buckets take the inserts until growth has run */
static bool osh_table_wants_growth(struct osh_objmap *map,
				   const struct osh_objmap_table *t)
{
	return atomic_long_read(&map->nr) * 4 > (long)osh_table_slots(t) * 3;
}

/**
 * osh_objmap_wants_growth() - whether the map is fuller than it should be
 * @map: the map
 *
 * Return: true if osh_objmap_grow() should run.
 */
bool osh_objmap_wants_growth(struct osh_objmap *map)
{
	bool wants;

	rcu_read_lock();
	wants = osh_table_wants_growth(map, osh_view(map)->cur);
	rcu_read_unlock();
	return wants;
}

/**
 * osh_objmap_insert() - add an entry for @key
 * @map: the map
 * @key: object address (never 0 or 1, and even)
 * @val: value to copy in
 * @stale_out: receives the value of a stale entry for @key, if any
 * @had_stale: set when such an entry was found and removed
 *
 * A stale entry for the same key means its free was never seen (a path
 * without a hook); it is removed and handed back so the caller can undo
 * its charge and count it.
 *
 * Context: any, with preemption off (the table is RCU-freed).
 * Return: the stored value, or NULL when both buckets are full (counted).
 * The stored value may move while the map grows: use it only at once.
 */
void *osh_objmap_insert(struct osh_objmap *map, unsigned long key,
			const void *val, void *stale_out, bool *had_stale)
{
	struct osh_objmap_view *v = osh_view(map);
	struct osh_objmap_table *t = v->cur;
	struct osh_bucket_scan scan[2];
	size_t home[2];
	void *stored;
	long stale;
	u8 tag;

	tag = osh_homes(t, key, home);
	osh_bucket_scan(t, home[0], key, tag, &scan[0]);
	osh_bucket_scan(t, home[1], key, tag, &scan[1]);
	stale = scan[0].found >= 0 ? scan[0].found : scan[1].found;
	*had_stale = false;
	if (unlikely(v->nr_old || atomic_read(&t->spilled[home[0]]))) {
		/* the stale entry may be in an old table or a spill bucket */
		*had_stale = osh_objmap_remove(map, key, stale_out);
	} else if (unlikely(stale >= 0)) {
		/* the key's only inserter: nobody else may remove it */
		osh_slot_take(map, t, stale, home, stale_out);
		*had_stale = true;
	}
	if (*had_stale) {
		atomic_long_inc(&map->replaced);
		/* its slot is free now */
		osh_bucket_scan(t, home[0], key, tag, &scan[0]);
		osh_bucket_scan(t, home[1], key, tag, &scan[1]);
	}
	stored = osh_table_insert_at(map, t, key, tag, val, home, scan);
	if (!stored) {
		atomic_long_inc(&map->full);
		return NULL;
	}
	atomic_long_inc(&map->nr);
	/* asked again by each insert until it runs: no request is lost */
	if (map->grow_needed && osh_table_wants_growth(map, t))
		map->grow_needed(map);
	return stored;
}

/*
 * Wait until the slot of @t stops holding the moving @key.  Return: false
 * if it did not within the spin budget (an NMI on the mover's CPU).
 */
static bool osh_wait_move(struct osh_objmap *map, struct osh_objmap_table *t,
			  long slot, unsigned long key)
{
	unsigned long spins;

	atomic_long_inc(&map->move_waits);
	for (spins = 0; spins < OSH_OBJMAP_MOVE_SPINS; spins++) {
		if (READ_ONCE(t->keys[slot]) != (key | OSH_OBJMAP_KEY_MOVING))
			return true;
		cpu_relax();
	}
	return false;
}

/*
 * Find @key and own it: in the old table by cmpxchg, so that it cannot
 * be moved meanwhile; in the current table by being the key's only
 * remover.  Return: false if absent.
 */
static bool osh_find_owned(struct osh_objmap *map, unsigned long key,
			   struct osh_objmap_table **table, long *slot,
			   size_t home[2])
{
	struct osh_objmap_view *v = osh_view(map);
	unsigned int i;
	long s;

	/*
	 * The old tables first: a move publishes the key in the current
	 * table before it empties the old slot, so a key not found in the
	 * old tables is found in the current one.
	 */
	for (i = 0; unlikely(i < v->nr_old); i++) {
		struct osh_objmap_table *old = v->old[i];

		for (;;) {
			s = osh_table_find_homes(old, key, true, home);
			if (s < 0)
				break;
			if (cmpxchg(&old->keys[s], key,
				    key | OSH_OBJMAP_KEY_MOVING) == key) {
				*table = old;
				*slot = s;
				return true;
			}
			if (!osh_wait_move(map, old, s, key))
				return false;
		}
	}
	s = osh_table_find_homes(v->cur, key, false, home);
	if (s < 0)
		return false;
	*table = v->cur;
	*slot = s;
	return true;
}

/**
 * osh_objmap_remove() - take the entry for @key out of the map
 * @map: the map
 * @key: object address
 * @val_out: receives the value
 *
 * Context: any, with preemption off.
 * Return: true if the key was present.
 */
bool osh_objmap_remove(struct osh_objmap *map, unsigned long key,
		       void *val_out)
{
	struct osh_objmap_table *t;
	size_t home[2];
	long slot;

	if (!osh_find_owned(map, key, &t, &slot, home))
		return false;
	osh_slot_take(map, t, slot, home, val_out);
	return true;
}

/**
 * osh_objmap_update() - change the value of @key in place
 * @map: the map
 * @key: object address
 * @fn: called on the value, with the entry held against moves
 * @arg: its argument
 *
 * Context: any, with preemption off; @key is not removed meanwhile.
 * Return: false if the key is absent, else what @fn returned.
 */
bool osh_objmap_update(struct osh_objmap *map, unsigned long key,
		       bool (*fn)(void *val, void *arg), void *arg)
{
	struct osh_objmap_table *t;
	size_t home[2];
	long slot;
	bool ret;

	if (!osh_find_owned(map, key, &t, &slot, home))
		return false;
	ret = fn(osh_val(map, t, slot), arg);
	/* an old table's entry was held as moving: hand it back */
	smp_store_release(&t->keys[slot], key);
	return ret;
}

/**
 * osh_objmap_read() - copy out the value of @key
 * @map: the map
 * @key: object address
 * @val_out: receives the value
 *
 * Context: any, with preemption off; @key is not removed meanwhile.
 * Return: true if the key was present.
 */
bool osh_objmap_read(struct osh_objmap *map, unsigned long key,
		     void *val_out)
{
	struct osh_objmap_view *v = osh_view(map);
	unsigned int i;
	long slot;

	/* a moving entry's value is the same in both tables */
	for (i = 0; i < v->nr_old; i++) {
		slot = osh_table_find(v->old[i], key, true);
		if (slot >= 0) {
			osh_val_copy(val_out, osh_val(map, v->old[i], slot),
				     map->val_size);
			return true;
		}
	}
	slot = osh_table_find(v->cur, key, false);
	if (slot < 0)
		return false;
	osh_val_copy(val_out, osh_val(map, v->cur, slot), map->val_size);
	return true;
}

/**
 * osh_objmap_contains() - whether @key is in the map
 * @map: the map
 * @key: object address
 *
 * Context: any, with preemption off.
 * Return: true if present at some moment of the call.
 */
bool osh_objmap_contains(struct osh_objmap *map, unsigned long key)
{
	struct osh_objmap_view *v = osh_view(map);
	unsigned int i;

	for (i = 0; i < v->nr_old; i++)
		if (osh_table_find(v->old[i], key, true) >= 0)
			return true;
	return osh_table_find(v->cur, key, false) >= 0;
}

/*
 * Move one entry of @old into @cur.  Interrupts are off so that no
 * remover on this CPU can wait for it.  Return: false if @cur was full
 * (the entry stays in @old).
 */
static bool osh_move_slot(struct osh_objmap *map, struct osh_objmap_table *old,
			  struct osh_objmap_table *cur, size_t slot)
{
	unsigned long key, flags;
	bool ok = true;
	u64 t0;

	local_irq_save(flags);
	t0 = ktime_get_mono_fast_ns();
	for (;;) {
		key = READ_ONCE(old->keys[slot]);
		if (key <= OSH_OBJMAP_KEY_BUSY)
			goto out_irq;
		/*
		 * Held by a remover or an updater on another CPU (one on
		 * this CPU finished before we run): its few stores end soon.
		 */
		if (key & OSH_OBJMAP_KEY_MOVING) {
			cpu_relax();
			continue;
		}
		if (cmpxchg(&old->keys[slot], key,
			    key | OSH_OBJMAP_KEY_MOVING) == key)
			break;
	}
	if (!osh_table_insert(map, cur, key, osh_val(map, old, slot))) {
		/* no room: hand the entry back, unchanged, to its old slot */
		smp_store_release(&old->keys[slot], key);
		ok = false;
		goto out_irq;
	}
	osh_table_clear(old, slot, key);
	atomic_long_inc(&map->moved);
out_irq:
	/* growth runs under grow_lock: one writer */
	t0 = ktime_get_mono_fast_ns() - t0;
	if (t0 > map->move_irqoff_max_ns)
		WRITE_ONCE(map->move_irqoff_max_ns, t0);
	local_irq_restore(flags);
	return ok;
}

/* Move every entry of @old into @cur.  Return: false if @cur filled up. */
static bool osh_move_table(struct osh_objmap *map, struct osh_objmap_table *old,
			   struct osh_objmap_table *cur)
{
	size_t slot, slots = osh_table_slots(old);

	for (slot = 0; slot < slots; slot++) {
		if (!osh_move_slot(map, old, cur, slot))
			return false;
		if (!(slot & 1023))
			cond_resched();
	}
	return true;
}

static bool osh_move_olds(struct osh_objmap *map, struct osh_objmap_view *v)
{
	unsigned int i;

	for (i = 0; i < v->nr_old; i++)
		if (!osh_move_table(map, v->old[i], v->cur))
			return false;
	return true;
}

/*
 * Publish a view of @cur alone in place of @v, whose old tables are empty,
 * and free them once no reader can be searching them.
 */
static void osh_retire_olds(struct osh_objmap *map, struct osh_objmap_view *v,
			    struct osh_objmap_table *cur)
{
	/* the other view was last published before a grace period */
	struct osh_objmap_view *next = &map->views[v == &map->views[0]];
	unsigned int i;

	next->cur = cur;
	next->nr_old = 0;
	/* the view is complete before readers can load it */
	smp_store_release(&map->view, next);
	synchronize_rcu();
	for (i = 0; i < v->nr_old; i++)
		osh_table_free(map, v->old[i]);
	v->nr_old = 0;
}

/**
 * osh_objmap_grow() - replace the tables by one half as big again
 * @map: the map
 *
 * Context: process context; sleeps (allocation, grace periods).
 * Return: 0; -ENOMEM (counted, the map stays as it is); -EAGAIN if the
 * new table filled up before every entry had moved into it (counted): the
 * old tables stay, searched as well, and the next growth moves them all
 * into one table big enough for both.
 */
int osh_objmap_grow(struct osh_objmap *map)
{
	struct osh_objmap_view *v, *next;
	struct osh_objmap_table *cur;
	size_t buckets;
	unsigned int i;
	int err = 0;

	mutex_lock(&map->grow_lock);
	v = map->view;
	/* an earlier growth fell short: removes may have made room since */
	if (v->nr_old && osh_move_olds(map, v)) {
		osh_retire_olds(map, v, v->cur);
		if (!osh_objmap_wants_growth(map))
			goto out_unlock;
		v = map->view;
	}
	if (v->nr_old == OSH_OBJMAP_MAX_OLD) {
		atomic_long_inc(&map->grow_failed);
		err = -EAGAIN;
		goto out_unlock;
	}
	buckets = osh_view_slots(v) / OSH_OBJMAP_WAYS;
	/* small maps double, big ones grow by half: bytes per entry matter */
	buckets += buckets * OSH_OBJMAP_WAYS < OSH_OBJMAP_DOUBLE_BELOW ?
		   buckets : (buckets + 1) / 2;
	cur = osh_table_alloc(map, buckets);
	if (!cur) {
		atomic_long_inc(&map->grow_failed);
		err = -ENOMEM;
		goto out_unlock;
	}
	next = &map->views[v == &map->views[0]];
	next->cur = cur;
	for (i = 0; i < v->nr_old; i++)
		next->old[i] = v->old[i];
	next->old[i] = v->cur;
	next->nr_old = i + 1;
	/* the view is complete before readers can load it */
	smp_store_release(&map->view, next);
	/* after this, nothing inserts into the old tables: they only empty */
	synchronize_rcu();

	if (!osh_move_olds(map, next)) {
		atomic_long_inc(&map->grow_failed);
		err = -EAGAIN;
		goto out_unlock;
	}
	osh_retire_olds(map, next, cur);
	atomic_long_inc(&map->grows);
out_unlock:
	mutex_unlock(&map->grow_lock);
	return err;
}

/**
 * osh_objmap_reserve() - grow until @n more entries fit without asking
 * @map: the map
 * @n: entries about to be inserted (a load-time scan, say)
 *
 * Context: process context; sleeps.
 * Return: 0 or the error of osh_objmap_grow().
 */
int osh_objmap_reserve(struct osh_objmap *map, size_t n)
{
	int err = 0;

	while (!err && (atomic_long_read(&map->nr) + (long)n) * 4 >
		       (long)osh_objmap_capacity(map) * 3)
		err = osh_objmap_grow(map);
	return err;
}

/**
 * osh_objmap_walk_begin() - hold the map's tables still for a walk
 * @map: the map
 *
 * Context: process context; growth waits until osh_objmap_walk_end().
 */
void osh_objmap_walk_begin(struct osh_objmap *map)
{
	mutex_lock(&map->grow_lock);
}

/**
 * osh_objmap_walk_end() - let the map grow again
 * @map: the map
 */
void osh_objmap_walk_end(struct osh_objmap *map)
{
	mutex_unlock(&map->grow_lock);
}

/**
 * osh_objmap_for_each() - call @fn on every published entry
 * @map: the map
 * @fn: callback
 * @arg: its argument
 *
 * Context: between osh_objmap_walk_begin() and _end(), or with no other
 * user of the map.
 */
void osh_objmap_for_each(struct osh_objmap *map,
			 void (*fn)(unsigned long key, void *val, void *arg),
			 void *arg)
{
	struct osh_objmap_view *v = osh_view(map);
	unsigned int i;
	size_t slot;

	for (i = 0; i <= v->nr_old; i++) {
		struct osh_objmap_table *t = i ? v->old[i - 1] : v->cur;

		for (slot = 0; slot < osh_table_slots(t); slot++) {
			/* pairs with the release that published the key */
			unsigned long key = smp_load_acquire(&t->keys[slot]);

			if (key > OSH_OBJMAP_KEY_BUSY)
				fn(key & ~OSH_OBJMAP_KEY_MOVING,
				   osh_val(map, t, slot), arg);
		}
	}
}

/* A value copied a word at a time, so no pointer in it is torn. */
static void osh_copy_words(unsigned long *dst, const unsigned long *src,
			   size_t size)
{
	size_t i;

	for (i = 0; i < size / sizeof(long); i++)
		dst[i] = READ_ONCE(src[i]);
}

/**
 * osh_objmap_walk() - visit stable copies of entries, resumably
 * @map: the map
 * @from: first slot to look at
 * @copy: scratch of map->val_size bytes, handed to @fn
 * @fn: callback; returns false to stop before this entry is counted done
 * @arg: its argument
 * @raced: incremented for each entry that changed while it was copied
 *
 * An entry is passed on only if its key was the same before and after
 * the copy.  The walk reschedules every few thousand slots, outside RCU.
 * Slot numbers stay valid between osh_objmap_walk_begin() and _end().
 *
 * Return: the slot at which @fn stopped (visit it again to resume), or
 * osh_objmap_slots() once every slot was visited.
 */
size_t osh_objmap_walk(struct osh_objmap *map, size_t from, void *copy,
		       osh_objmap_visit_fn fn, void *arg, unsigned long *raced)
{
	struct osh_objmap_view *v = osh_view(map);
	size_t slot, base = 0, end = osh_view_slots(v);
	bool more = true;
	unsigned int i;

	for (i = 0; i <= v->nr_old; i++) {
		struct osh_objmap_table *t = i ? v->old[i - 1] : v->cur;
		size_t slots = osh_table_slots(t);

		for (slot = from > base ? from - base : 0; slot < slots; slot++) {
			/* pairs with the release that published the key */
			unsigned long key = smp_load_acquire(&t->keys[slot]);

			if (key <= OSH_OBJMAP_KEY_BUSY)
				goto next;
			rcu_read_lock();
			osh_copy_words(copy,
				       (const unsigned long *)osh_val(map, t, slot),
				       map->val_size);
			/*
			 * The copy is read before the key again, so a slot
			 * emptied or reused meanwhile fails the check; pairs
			 * with the release stores of insert and remove.  A key
			 * held moving is about to change: raced too.
			 */
			smp_rmb();
			if (!(key & OSH_OBJMAP_KEY_MOVING) &&
			    READ_ONCE(t->keys[slot]) == key)
				more = fn(key, copy, arg);
			else
				(*raced)++;
			rcu_read_unlock();
			if (!more)
				return base + slot;
next:
			if (!(slot & 4095))
				cond_resched();
		}
		base += slots;
	}
	return end;
}

/**
 * osh_objmap_dump() - a map's fill, memory and growth as key=value lines
 * @map: the map
 * @name: prefix of each key
 * @ob: output
 */
void osh_objmap_dump(struct osh_objmap *map, const char *name,
		     struct osh_buf *ob)
{
	osh_buf_printf(ob, "%s_live=%ld\n%s_capacity=%zu\n%s_bytes=%zu\n",
		       name, atomic_long_read(&map->nr),
		       name, osh_objmap_capacity(map),
		       name, osh_objmap_bytes(map));
	osh_buf_printf(ob, "%s_grows=%ld\n%s_grow_failed=%ld\n%s_moved=%ld\n%s_move_waits=%ld\n",
		       name, atomic_long_read(&map->grows),
		       name, atomic_long_read(&map->grow_failed),
		       name, atomic_long_read(&map->moved),
		       name, atomic_long_read(&map->move_waits));
	osh_buf_printf(ob, "%s_move_irqoff_max_ns=%llu\n", name,
		       (unsigned long long)READ_ONCE(map->move_irqoff_max_ns));
}
