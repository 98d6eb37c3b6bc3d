// SPDX-License-Identifier: GPL-2.0
/*
 * Lock-free object map; see include/objcg_shadow/objmap.h.
 */
#include <objcg_shadow/objmap.h>

/**
 * osh_objmap_init() - allocate an empty map
 * @map: the map
 * @bucket_bits: log2 of the number of buckets
 * @val_size: bytes of value per entry
 * @alloc: zeroing allocator for the two arrays (vzalloc in the kernel)
 *
 * Return: 0 or -ENOMEM.
 */
int osh_objmap_init(struct osh_objmap *map, unsigned int bucket_bits,
		    size_t val_size, void *(*alloc)(size_t size))
{
	size_t slots = (size_t)OSH_OBJMAP_WAYS << bucket_bits;

	memset(map, 0, sizeof(*map));
	map->bucket_bits = bucket_bits;
	map->val_size = ALIGN(val_size, sizeof(long));
	map->keys = alloc(slots * sizeof(*map->keys));
	map->vals = alloc(slots * map->val_size);
	if (!map->keys || !map->vals)
		return -ENOMEM;
	return 0;
}

/**
 * osh_objmap_destroy() - free the arrays; no user may remain
 * @map: the map
 * @free_fn: matching free function
 */
void osh_objmap_destroy(struct osh_objmap *map, void (*free_fn)(void *))
{
	free_fn(map->keys);
	free_fn(map->vals);
	map->keys = NULL;
	map->vals = NULL;
}

/**
 * osh_objmap_capacity() - number of slots
 * @map: the map
 *
 * Return: slots in the map; inserts start failing somewhat below this.
 */
size_t osh_objmap_capacity(const struct osh_objmap *map)
{
	return (size_t)OSH_OBJMAP_WAYS << map->bucket_bits;
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
 * The two candidate buckets must be independent for two-choice hashing to
 * balance the load: take them from the two halves of one strong mix.
 */
static size_t osh_bucket_of(const struct osh_objmap *map, unsigned long key,
			    unsigned int which)
{
	u64 h = osh_mix64(key);
	u64 mask = (1ULL << map->bucket_bits) - 1;

	h = which ? (h >> 32) ^ (h << 7) : h;
	return (size_t)(h & mask) * OSH_OBJMAP_WAYS;
}

static void *osh_val(const struct osh_objmap *map, size_t slot)
{
	return map->vals + slot * map->val_size;
}

/**
 * osh_objmap_insert() - add an entry for @key
 * @map: the map
 * @key: object address (never 0 or 1)
 * @val: value to copy in
 * @stale_out: receives the value of a stale entry for @key, if any
 * @had_stale: set when such an entry was found and removed
 *
 * A stale entry for the same key means its free was never seen (a path
 * without a hook); it is removed and handed back so the caller can undo
 * its charge and count it.
 *
 * Return: the stored value, or NULL when both buckets are full (counted).
 */
void *osh_objmap_insert(struct osh_objmap *map, unsigned long key,
			const void *val, void *stale_out, bool *had_stale)
{
	size_t base[2] = { osh_bucket_of(map, key, 0),
			   osh_bucket_of(map, key, 1) };
	unsigned int b, i, empty[2] = { 0, 0 }, first;

	*had_stale = osh_objmap_remove(map, key, stale_out);
	if (*had_stale)
		atomic_long_inc(&map->replaced);

	/* two choices: fill the emptier bucket, keeping the maximum load low */
	for (b = 0; b < 2; b++)
		for (i = 0; i < OSH_OBJMAP_WAYS; i++)
			empty[b] += !READ_ONCE(map->keys[base[b] + i]);
	first = empty[1] > empty[0];

	for (b = 0; b < 2; b++) {
		for (i = 0; i < OSH_OBJMAP_WAYS; i++) {
			size_t slot = base[b ^ first] + i;

			if (READ_ONCE(map->keys[slot]) ||
			    cmpxchg(&map->keys[slot], 0UL, OSH_OBJMAP_KEY_BUSY))
				continue;
			memcpy(osh_val(map, slot), val, map->val_size);
			/* publish the key only once its value is complete */
			smp_store_release(&map->keys[slot], key);
			atomic_long_inc(&map->nr);
			return osh_val(map, slot);
		}
	}
	atomic_long_inc(&map->full);
	return NULL;
}

static long osh_find(struct osh_objmap *map, unsigned long key)
{
	unsigned int b, i;

	for (b = 0; b < 2; b++) {
		size_t base = osh_bucket_of(map, key, b);

		for (i = 0; i < OSH_OBJMAP_WAYS; i++) {
			/* pairs with the release that published the key */
			if (smp_load_acquire(&map->keys[base + i]) == key)
				return (long)(base + i);
		}
	}
	return -1;
}

/**
 * osh_objmap_remove() - take the entry for @key out of the map
 * @map: the map
 * @key: object address
 * @val_out: receives the value
 *
 * Return: true if the key was present.
 */
bool osh_objmap_remove(struct osh_objmap *map, unsigned long key,
		       void *val_out)
{
	long slot = osh_find(map, key);

	if (slot < 0)
		return false;
	memcpy(val_out, osh_val(map, slot), map->val_size);
	/* the copy must complete before the slot can be claimed again */
	smp_store_release(&map->keys[slot], 0UL);
	atomic_long_dec(&map->nr);
	return true;
}

/**
 * osh_objmap_peek() - the value of @key, in place
 * @map: the map
 * @key: object address
 *
 * Context: the caller guarantees @key is not removed meanwhile (e.g. the
 * object cannot be freed while it runs).
 * Return: the value or NULL.
 */
void *osh_objmap_peek(struct osh_objmap *map, unsigned long key)
{
	long slot = osh_find(map, key);

	return slot < 0 ? NULL : osh_val(map, slot);
}

/**
 * osh_objmap_for_each() - call @fn on every published entry
 * @map: the map
 * @fn: callback
 * @arg: its argument
 */
void osh_objmap_for_each(struct osh_objmap *map,
			 void (*fn)(unsigned long key, void *val, void *arg),
			 void *arg)
{
	size_t slot, slots = osh_objmap_capacity(map);

	for (slot = 0; slot < slots; slot++) {
		/* pairs with the release that published the key */
		unsigned long key = smp_load_acquire(&map->keys[slot]);

		if (key > OSH_OBJMAP_KEY_BUSY)
			fn(key, osh_val(map, slot), arg);
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
 *
 * Return: the slot at which @fn stopped (visit it again to resume), or
 * the map's capacity once every slot was visited.
 */
size_t osh_objmap_walk(struct osh_objmap *map, size_t from, void *copy,
		       osh_objmap_visit_fn fn, void *arg, unsigned long *raced)
{
	size_t slot, slots = osh_objmap_capacity(map);
	bool more = true;

	for (slot = from; slot < slots; slot++) {
		/* pairs with the release that published the key */
		unsigned long key = smp_load_acquire(&map->keys[slot]);

		if (key <= OSH_OBJMAP_KEY_BUSY)
			goto next;
		rcu_read_lock();
		osh_copy_words(copy, (const unsigned long *)osh_val(map, slot),
			       map->val_size);
		/*
		 * The copy is read before the key again, so a slot emptied
		 * or reused meanwhile fails the check; pairs with the release
		 * stores of insert and remove.
		 */
		smp_rmb();
		if (READ_ONCE(map->keys[slot]) == key)
			more = fn(key, copy, arg);
		else
			(*raced)++;
		rcu_read_unlock();
		if (!more)
			return slot;
next:
		if (!(slot & 4095))
			cond_resched();
	}
	return slots;
}
