// SPDX-License-Identifier: GPL-2.0
/*
 * The object map (module/core/objmap.c): two-choice load, growth that
 * keeps every entry, and removes, updates and reads racing with growth
 * (also run under ThreadSanitizer).
 */
#define _GNU_SOURCE
#include "osh_test.h"
#include <objcg_shadow/objmap.h>

static void *zalloc(size_t size)
{
	return calloc(1, size);
}

static void free_mem(void *p)
{
	free(p);
}

static int growth_asked;

static void ask_growth(struct osh_objmap *map)
{
	__atomic_store_n(&growth_asked, 1, __ATOMIC_RELAXED);
}

/* Spill counts of every table: all zero once the map is empty. */
static long spill_counts(struct osh_objmap *map)
{
	struct osh_objmap_view *v = map->view;
	long sum = 0;
	unsigned int i;
	size_t b;

	for (i = 0; i <= v->nr_old; i++) {
		struct osh_objmap_table *t = i ? v->old[i - 1] : v->cur;

		for (b = 0; b < t->nr_buckets; b++)
			sum += atomic_read(&t->spilled[b]);
	}
	return sum;
}

/* Grow if an insert asked, as the kernel's worker would. */
static void grow_if_asked(struct osh_objmap *map)
{
	if (__atomic_exchange_n(&growth_asked, 0, __ATOMIC_RELAXED))
		CHECK_EQ(osh_objmap_grow(map), 0);
}

/* Slab-like keys: objects of several sizes packed in 4K pages. */
static unsigned long slab_key(size_t n)
{
	static const unsigned int sizes[] = { 64, 192, 256, 704, 1024 };
	unsigned int size = sizes[(n / 4) % ARRAY_SIZE(sizes)];

	return 0xffff888100000000UL + (n / 4) * 4096 * 3 + (n % 4) * size;
}

static bool insert(struct osh_objmap *map, unsigned long key,
		   unsigned long val)
{
	unsigned long stale;
	bool had_stale, ok;

	rcu_read_lock();
	ok = osh_objmap_insert(map, key, &val, &stale, &had_stale);
	rcu_read_unlock();
	CHECK(!had_stale);
	return ok;
}

/*
 * Up to the 3/4 at which the map asks to grow, and beyond it to 85% for
 * the inserts that come before growth runs, no insert may fail.
 */
static void test_two_choice_load(void)
{
	struct osh_objmap map;
	size_t n, target;

	CHECK_EQ(osh_objmap_init(&map, 14, sizeof(long), zalloc, free_mem,
				 NULL), 0);
	target = osh_objmap_capacity(&map) * 85 / 100;
	for (n = 0; n < target; n++)
		CHECK(insert(&map, slab_key(n), n));
	CHECK_EQ(atomic_long_read(&map.full), 0);
	CHECK_EQ(atomic_long_read(&map.nr), target);
	CHECK(osh_objmap_wants_growth(&map));
	osh_objmap_destroy(&map);
}

static bool bump(void *val, void *arg)
{
	*(unsigned long *)val += *(unsigned long *)arg;
	return true;
}

/*
 * From 16 buckets to a million entries: every entry kept with its value,
 * at most 32 bytes of table per 8-byte-valued entry, and the map grew
 * by half each time, not more.
 */
static void test_growth_keeps_entries(void)
{
	const size_t count = 1000000;
	struct osh_objmap map;
	unsigned long val, one = 1;
	size_t n, lost = 0, wrong = 0;

	CHECK_EQ(osh_objmap_init(&map, 4, sizeof(long), zalloc, free_mem,
				 ask_growth), 0);
	for (n = 0; n < count; n++) {
		CHECK(insert(&map, slab_key(n), n));
		grow_if_asked(&map);
	}
	CHECK_EQ(atomic_long_read(&map.full), 0);
	CHECK_EQ(atomic_long_read(&map.nr), count);
	CHECK(atomic_long_read(&map.grows) > 12);
	CHECK(osh_objmap_bytes(&map) <= 32 * count);
	CHECK(osh_objmap_bytes(&map) >= 16 * count);
	for (n = 0; n < count; n += 7)
		CHECK(osh_objmap_update(&map, slab_key(n), bump, &one));
	for (n = 0; n < count; n++) {
		if (!osh_objmap_read(&map, slab_key(n), &val))
			lost++;
		else if (val != n + (n % 7 == 0))
			wrong++;
	}
	CHECK_EQ(lost, 0);
	CHECK_EQ(wrong, 0);
	for (n = 0; n < count; n++) {
		if (!osh_objmap_remove(&map, slab_key(n), &val))
			lost++;
	}
	CHECK_EQ(lost, 0);
	CHECK_EQ(atomic_long_read(&map.nr), 0);
	CHECK_EQ(spill_counts(&map), 0);
	osh_objmap_destroy(&map);
}

/* A reserve before a burst: the burst asks for no growth and fits. */
static void test_reserve_fits_burst(void)
{
	struct osh_objmap map;
	size_t n;

	CHECK_EQ(osh_objmap_init(&map, 4, sizeof(long), zalloc, free_mem,
				 ask_growth), 0);
	growth_asked = 0;
	CHECK_EQ(osh_objmap_reserve(&map, 30000), 0);
	for (n = 0; n < 30000; n++)
		CHECK(insert(&map, slab_key(n), n));
	CHECK_EQ(growth_asked, 0);
	CHECK_EQ(atomic_long_read(&map.full), 0);
	osh_objmap_destroy(&map);
}

#define RACE_THREADS	3
#define RACE_KEYS	20000
#define RACE_ROUNDS	6

struct racer {
	struct osh_objmap *map;
	int id;
	bool stored[RACE_KEYS];
	size_t dropped, lost, wrong;
};

static unsigned long race_key(int id, size_t i)
{
	return 0xffff888200000000UL + ((unsigned long)id << 32) + i * 64;
}

static bool race_update(struct racer *r, size_t i, unsigned long add)
{
	bool found;

	rcu_read_lock();
	found = osh_objmap_update(r->map, race_key(r->id, i), bump, &add);
	rcu_read_unlock();
	return found;
}

static bool race_take(struct racer *r, size_t i, bool remove,
		      unsigned long *val)
{
	bool found;

	rcu_read_lock();
	if (remove)
		found = osh_objmap_remove(r->map, race_key(r->id, i), val);
	else
		found = osh_objmap_read(r->map, race_key(r->id, i), val);
	rcu_read_unlock();
	return found;
}

/*
 * Each thread owns its keys: it inserts them all, bumps some, reads each,
 * then removes all, round after round, while the main thread grows the
 * map.  An entry lost or torn by a move shows as a failed or wrong read
 * or remove.  Inserts may fail (counted) while a burst outruns growth;
 * those keys are not expected back.
 */
static void *race(void *arg)
{
	struct racer *r = arg;
	const unsigned long add = 1000;
	unsigned long val;
	size_t i, round;
	int pass;

	osh_shim_cpu = r->id;
	for (round = 0; round < RACE_ROUNDS; round++) {
		for (i = 0; i < RACE_KEYS; i++) {
			r->stored[i] = insert(r->map, race_key(r->id, i), i);
			r->dropped += !r->stored[i];
			/* a scheduling point now and then, as in the kernel */
			if (!(i % 256))
				sched_yield();
		}
		for (i = 0; i < RACE_KEYS; i += 3)
			if (r->stored[i] && !race_update(r, i, add))
				r->lost++;
		for (pass = 0; pass < 2; pass++) {
			for (i = 0; i < RACE_KEYS; i++) {
				if (!r->stored[i])
					continue;
				if (!race_take(r, i, pass, &val))
					r->lost++;
				else if (val != i + (i % 3 ? 0 : add))
					r->wrong++;
			}
		}
	}
	return NULL;
}

static void test_moves_race_with_users(void)
{
	static struct racer r[RACE_THREADS];
	bool joined[RACE_THREADS] = {};
	pthread_t th[RACE_THREADS];
	struct osh_objmap map;
	size_t dropped = 0;
	int i, running;

	CHECK_EQ(osh_objmap_init(&map, 4, sizeof(long), zalloc, free_mem,
				 ask_growth), 0);
	growth_asked = 0;
	for (i = 0; i < RACE_THREADS; i++) {
		r[i] = (struct racer){ .map = &map, .id = i };
		pthread_create(&th[i], NULL, race, &r[i]);
	}
	/* grow whenever asked until every racer is done */
	do {
		if (__atomic_exchange_n(&growth_asked, 0, __ATOMIC_RELAXED))
			osh_objmap_grow(&map);
		running = 0;
		for (i = 0; i < RACE_THREADS; i++) {
			if (!joined[i])
				joined[i] = !pthread_tryjoin_np(th[i], NULL);
			running += !joined[i];
		}
		sched_yield();
	} while (running);
	for (i = 0; i < RACE_THREADS; i++) {
		CHECK_EQ(r[i].lost, 0);
		CHECK_EQ(r[i].wrong, 0);
		dropped += r[i].dropped;
	}
	/*
	 * Growth ran while users raced it.  How many growths completed
	 * depends on the scheduler: on a loaded host the racers' bursts
	 * fill many new tables before their moves end (counted as short).
	 */
	CHECK(atomic_long_read(&map.grows) >= 2);
	CHECK(atomic_long_read(&map.moved) > 0);
	CHECK_EQ(atomic_long_read(&map.nr), 0);
	CHECK_EQ(spill_counts(&map), 0);
	CHECK_EQ(atomic_long_read(&map.full), dropped);
	printf("  %ld grows (%ld short), %ld entries moved, %ld removers waited for a move, %zu inserts dropped\n",
	       atomic_long_read(&map.grows), atomic_long_read(&map.grow_failed),
	       atomic_long_read(&map.moved), atomic_long_read(&map.move_waits),
	       dropped);
	osh_objmap_destroy(&map);
}

static const struct osh_test tests[] = {
	{ "objmap_two_choice_load", test_two_choice_load },
	{ "objmap_growth_keeps_entries", test_growth_keeps_entries },
	{ "objmap_reserve_fits_burst", test_reserve_fits_burst },
	{ "objmap_moves_race_with_users", test_moves_race_with_users },
};

OSH_TEST_MAIN(tests)
