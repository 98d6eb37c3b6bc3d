// SPDX-License-Identifier: GPL-2.0
/*
 * The slab page model (module/core/slabmodel.c): page counts that simple
 * patterns determine exactly, holes and min_partial, the RFC's
 * reparenting, pinned dead memcgs, and invariants under random churn.
 */
#include "osh_test.h"
#include <objcg_shadow/slabmodel.h>
#include <objcg_shadow/outbuf.h>

#define DENTRY_CACHE	0xffff888001000000UL
#define TASK_CACHE	0xffff888002000000UL

/* dentry on 6.1.0-57: 192 B, 21 per order-0 slab, min_partial 5 */
static const struct osh_sm_geometry dentry_geo = { 192, 21, 0, 5 };
/* task_struct: 3 per order-3 slab */
static const struct osh_sm_geometry task_geo = { 9984, 3, 3, 5 };

static struct osh_sm sm;
static unsigned long next_ptr = 0x100000;

static void setup(unsigned int cpus, unsigned int nodes)
{
	CHECK_EQ(osh_sm_init(&sm, cpus, nodes), 0);
}

static unsigned long alloc_on(unsigned long cache,
			      const struct osh_sm_geometry *geo, u64 memcg,
			      unsigned int cpu, unsigned int node)
{
	struct osh_sm_alloc a = {
		.ptr = next_ptr += 64, .cache = cache, .geo = *geo,
		.memcg = memcg, .cpu = cpu, .node = node,
		.name = cache == DENTRY_CACHE ? "dentry" : "task_struct",
		.whole = true,
	};

	osh_sm_alloc(&sm, &a);
	return a.ptr;
}

static unsigned long dentry(u64 memcg)
{
	return alloc_on(DENTRY_CACHE, &dentry_geo, memcg, 0, 0);
}

static void test_one_object_per_memcg(void)
{
	const unsigned int n = 50;
	unsigned int i;

	setup(1, 1);
	for (i = 0; i < n; i++)
		dentry(100 + i);
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].slabs, n);
	CHECK_EQ(sm.total[OSH_SM_SHARED].slabs, DIV_ROUND_UP(n, 21));
	CHECK_EQ(sm.total[OSH_SM_SHARED].objects, n);
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].obj_bytes, n * 192);
	/* order 3: 8 pages a slab */
	for (i = 0; i < 4; i++)
		alloc_on(TASK_CACHE, &task_geo, 100 + i, 0, 0);
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].pages, n + 4 * 8);
	CHECK_EQ(sm.total[OSH_SM_SHARED].pages, DIV_ROUND_UP(n, 21) + 2 * 8);
	osh_sm_destroy(&sm);
}

static void test_each_cpu_has_its_active_slab(void)
{
	unsigned int i;

	setup(4, 2);
	/* cpus 0,1 on node 0, cpus 2,3 on node 1; one memcg */
	for (i = 0; i < 12; i++)
		alloc_on(DENTRY_CACHE, &dentry_geo, 7, i % 4, (i % 4) / 2);
	CHECK_EQ(sm.total[OSH_SM_SHARED].slabs, 4);
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].slabs, 4);
	/* two memcgs on four CPUs: eight memcgptr slabs, still four shared */
	for (i = 0; i < 4; i++)
		alloc_on(DENTRY_CACHE, &dentry_geo, 8, i, i / 2);
	CHECK_EQ(sm.total[OSH_SM_SHARED].slabs, 4);
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].slabs, 8);
	osh_sm_destroy(&sm);
}

static void fill_three_slabs(unsigned long *ptr)
{
	unsigned int i;

	for (i = 0; i < 63; i++)
		ptr[i] = dentry(OSH_SM_ROOT_MEMCG);
	CHECK_EQ(sm.total[OSH_SM_SHARED].slabs, 3);
}

static void test_holes_are_refilled(void)
{
	unsigned long ptr[63];

	setup(1, 1);
	fill_three_slabs(ptr);
	/* a hole in the first (full, off-list) slab puts it on the partial list */
	osh_sm_free(&sm, ptr[3]);
	/* the active slab is full: the next object fills the hole */
	dentry(OSH_SM_ROOT_MEMCG);
	CHECK_EQ(sm.total[OSH_SM_SHARED].slabs, 3);
	dentry(OSH_SM_ROOT_MEMCG);
	CHECK_EQ(sm.total[OSH_SM_SHARED].slabs, 4);
	CHECK_EQ(sm.total[OSH_SM_SHARED].objects, 64);
	osh_sm_destroy(&sm);
}

/* Fill three dentry slabs, empty the first two: how many slabs remain. */
static unsigned long slabs_after_emptying_two(unsigned int min_partial)
{
	struct osh_sm_geometry geo = dentry_geo;
	unsigned long ptr[63], slabs;
	unsigned int i;

	geo.min_partial = min_partial;
	setup(1, 1);
	for (i = 0; i < 63; i++)
		ptr[i] = alloc_on(DENTRY_CACHE, &geo, OSH_SM_ROOT_MEMCG, 0, 0);
	for (i = 0; i < 42; i++)
		osh_sm_free(&sm, ptr[i]);
	CHECK_EQ(sm.total[OSH_SM_SHARED].pages, sm.total[OSH_SM_SHARED].slabs);
	slabs = sm.total[OSH_SM_SHARED].slabs;
	osh_sm_destroy(&sm);
	return slabs;
}

static void test_empty_slabs_kept_up_to_min_partial(void)
{
	unsigned long ptr[63];
	unsigned int i;

	setup(1, 1);
	fill_three_slabs(ptr);
	/* empty the two full slabs: min_partial 5 keeps both */
	for (i = 0; i < 42; i++)
		osh_sm_free(&sm, ptr[i]);
	CHECK_EQ(sm.total[OSH_SM_SHARED].slabs, 3);
	CHECK_EQ(sm.total[OSH_SM_SHARED].objects, 21);
	/* the active slab keeps its objects' holes even when empty */
	for (; i < 63; i++)
		osh_sm_free(&sm, ptr[i]);
	CHECK_EQ(sm.total[OSH_SM_SHARED].slabs, 3);
	osh_sm_destroy(&sm);

	CHECK_EQ(slabs_after_emptying_two(0), 1);
	/* SLUB counts the emptied slab itself: min_partial 1 keeps none */
	CHECK_EQ(slabs_after_emptying_two(1), 1);
	CHECK_EQ(slabs_after_emptying_two(2), 2);
}

static void test_reparenting_counts_and_pins(void)
{
	unsigned long charged, own, pinned_pages, obj;

	setup(1, 1);
	/* root <- 5 <- 10; 10 allocates one dentry */
	obj = dentry(10);
	osh_sm_memcg_counts(&sm, 10, &charged, &own);
	CHECK_EQ(charged, 1);
	osh_sm_offline(&sm, 10, 5);
	CHECK_EQ(sm.ptr_swaps, 1);
	CHECK_EQ(sm.pages_moved, 1);
	osh_sm_memcg_counts(&sm, 5, &charged, &own);
	CHECK_EQ(charged, 1);
	CHECK_EQ(own, 0);
	osh_sm_memcg_counts(&sm, 10, &charged, &own);
	CHECK_EQ(charged, 0);
	CHECK_EQ(own, 1);
	CHECK_EQ(osh_sm_pinned(&sm, &pinned_pages), 1);
	CHECK_EQ(pinned_pages, 1);
	/* 5 goes too: its own pointer and the one it inherited */
	osh_sm_offline(&sm, 5, OSH_SM_ROOT_MEMCG);
	CHECK_EQ(sm.ptr_swaps, 3);
	CHECK_EQ(sm.pages_moved, 2);
	osh_sm_memcg_counts(&sm, OSH_SM_ROOT_MEMCG, &charged, &own);
	CHECK_EQ(charged, 1);
	CHECK_EQ(osh_sm_pinned(&sm, &pinned_pages), 1);
	/* offlining twice changes nothing */
	osh_sm_offline(&sm, 5, OSH_SM_ROOT_MEMCG);
	CHECK_EQ(sm.ptr_swaps, 3);
	/* the last object goes: the dead cache's slab is released (min_partial 0) */
	osh_sm_free(&sm, obj);
	CHECK_EQ(osh_sm_pinned(&sm, &pinned_pages), 0);
	CHECK_EQ(pinned_pages, 0);
	osh_sm_memcg_counts(&sm, OSH_SM_ROOT_MEMCG, &charged, &own);
	CHECK_EQ(charged, 0);
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].slabs, 0);
	/* the shared layout keeps its slab: min_partial 5 */
	CHECK_EQ(sm.total[OSH_SM_SHARED].slabs, 1);
	osh_sm_destroy(&sm);
}

static void test_offline_shrinks_empty_slabs(void)
{
	unsigned long pinned_pages, obj;

	setup(2, 1);
	obj = alloc_on(DENTRY_CACHE, &dentry_geo, 10, 0, 0);
	alloc_on(DENTRY_CACHE, &dentry_geo, 10, 1, 0);
	osh_sm_free(&sm, obj);
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].slabs, 2);
	osh_sm_offline(&sm, 10, OSH_SM_ROOT_MEMCG);
	/* the empty active slab of CPU 0 is released, CPU 1's pins the memcg */
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].slabs, 1);
	CHECK_EQ(osh_sm_pinned(&sm, &pinned_pages), 1);
	/* a late charge to the dead memcg lands in its ancestor's cache */
	alloc_on(DENTRY_CACHE, &dentry_geo, 10, 0, 0);
	CHECK_EQ(sm.ev.after_offline, 1);
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].slabs, 2);
	osh_sm_destroy(&sm);
}

static void test_bad_events_counted(void)
{
	struct osh_sm_geometry bad = { 4096, 2, 0, 5 };	/* 2 x 4096 > 4096 */
	struct osh_sm_alloc a = {
		.ptr = 0x1000, .cache = DENTRY_CACHE, .geo = dentry_geo,
	};

	setup(1, 1);
	osh_sm_free(&sm, 0x1000);
	CHECK_EQ(sm.ev.untracked_frees, 1);
	osh_sm_alloc(&sm, &a);
	osh_sm_alloc(&sm, &a);
	CHECK_EQ(sm.ev.replaced, 1);
	CHECK_EQ(sm.total[OSH_SM_SHARED].objects, 1);
	a.ptr = 0x2000;
	a.geo = bad;
	osh_sm_alloc(&sm, &a);
	CHECK_EQ(sm.ev.bad_geometry, 1);
	CHECK_EQ(sm.total[OSH_SM_SHARED].objects, 1);
	/* out of memory: counted, nothing half placed */
	a.geo = dentry_geo;
	a.memcg = 77;
	osh_shim_fail_alloc_in = 3;
	osh_sm_alloc(&sm, &a);
	osh_shim_fail_alloc_in = 0;
	CHECK_EQ(sm.ev.alloc_failed, 1);
	CHECK_EQ(sm.total[OSH_SM_SHARED].objects, 1);
	CHECK_EQ(sm.total[OSH_SM_MEMCGPTR].objects, 1);
	CHECK_EQ(sm.objs.nr, 1);
	osh_sm_destroy(&sm);
}

/* xorshift: the same sequence on every run */
static u64 rnd_state = 88172645463325252ULL;

static u64 rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void check_layout_invariants(unsigned long live, unsigned int cpus,
				    unsigned int nodes)
{
	struct osh_sm_cache *cache;
	unsigned int l;

	for (l = 0; l < OSH_SM_NR_LAYOUTS; l++) {
		struct osh_sm_counts sum = { 0 };

		CHECK_EQ(sm.total[l].objects, live);
		list_for_each_entry(cache, &sm.caches_in_order, list) {
			CHECK(cache->cnt[l].slabs * cache->geo.objects >=
			      cache->cnt[l].objects);
			sum.slabs += cache->cnt[l].slabs;
			sum.objects += cache->cnt[l].objects;
		}
		CHECK_EQ(sum.slabs, sm.total[l].slabs);
		CHECK_EQ(sum.objects, live);
	}
}

static void test_random_churn_keeps_counts(void)
{
	enum { N = 20000, CPUS = 4, NODES = 2, MEMCGS = 40 };
	static unsigned long live[N];
	unsigned long nr = 0, charged_sum = 0, charged, own, pinned_pages;
	struct osh_sm_cache *cache;
	unsigned int i, m;

	setup(CPUS, NODES);
	for (i = 0; i < 6 * N; i++) {
		u64 r = rnd();

		if (nr < N && (r % 3 || !nr)) {
			unsigned int cpu = (r >> 8) % CPUS;
			bool task = !((r >> 16) % 8);

			live[nr++] = alloc_on(task ? TASK_CACHE : DENTRY_CACHE,
					      task ? &task_geo : &dentry_geo,
					      100 + (r >> 24) % MEMCGS, cpu,
					      cpu / 2);
		} else {
			unsigned long k = (r >> 8) % nr;

			osh_sm_free(&sm, live[k]);
			live[k] = live[--nr];
		}
		if (i == 3 * N)
			for (m = 0; m < MEMCGS / 2; m++)
				osh_sm_offline(&sm, 100 + m, OSH_SM_ROOT_MEMCG);
	}
	check_layout_invariants(nr, CPUS, NODES);
	CHECK_EQ(sm.objs.nr, nr);
	CHECK_EQ(sm.ev.after_offline > 0, 1);
	/* every memcgptr page is charged to exactly one memcg */
	for (m = 0; m < MEMCGS; m++) {
		osh_sm_memcg_counts(&sm, 100 + m, &charged, &own);
		charged_sum += charged;
	}
	osh_sm_memcg_counts(&sm, OSH_SM_ROOT_MEMCG, &charged, &own);
	CHECK_EQ(charged_sum + charged, sm.total[OSH_SM_MEMCGPTR].pages);
	while (nr)
		osh_sm_free(&sm, live[--nr]);
	check_layout_invariants(0, CPUS, NODES);
	/* with nothing live, only active and min_partial slabs remain */
	list_for_each_entry(cache, &sm.caches_in_order, list)
		CHECK(cache->cnt[OSH_SM_SHARED].slabs <=
		      CPUS + NODES * cache->geo.min_partial);
	CHECK_EQ(osh_sm_pinned(&sm, &pinned_pages), 0);
	CHECK_EQ(sm.ev.untracked_frees + sm.ev.replaced + sm.ev.alloc_failed, 0);
	osh_sm_destroy(&sm);
}

static void test_dump_names_the_figures(void)
{
	char buf[2048];
	struct osh_buf ob;

	setup(1, 1);
	dentry(10);
	osh_sm_offline(&sm, 10, OSH_SM_ROOT_MEMCG);
	osh_buf_init(&ob, buf, sizeof(buf));
	osh_sm_dump(&sm, &ob);
	CHECK(strstr(buf, "total layout=memcgptr model_slabs=1 model_pages=1 model_objects=1"));
	CHECK(strstr(buf, "ptr_swaps=1 pages_moved=1 pinned_memcgs=1 pinned_pages=1"));
	CHECK(strstr(buf, "cache name=dentry "));
	CHECK(strstr(buf, "objs_per_slab=21 order=0 min_partial=5 whole=1 memcg_pools=1"));
	osh_sm_destroy(&sm);
}

static const struct osh_test tests[] = {
	{ "slabmodel_one_object_per_memcg", test_one_object_per_memcg },
	{ "slabmodel_each_cpu_has_its_active_slab", test_each_cpu_has_its_active_slab },
	{ "slabmodel_holes_are_refilled", test_holes_are_refilled },
	{ "slabmodel_empty_slabs_kept_up_to_min_partial",
	  test_empty_slabs_kept_up_to_min_partial },
	{ "slabmodel_reparenting_counts_and_pins", test_reparenting_counts_and_pins },
	{ "slabmodel_offline_shrinks_empty_slabs", test_offline_shrinks_empty_slabs },
	{ "slabmodel_bad_events_counted", test_bad_events_counted },
	{ "slabmodel_random_churn_keeps_counts", test_random_churn_keeps_counts },
	{ "slabmodel_dump_names_the_figures", test_dump_names_the_figures },
};

OSH_TEST_MAIN(tests)
