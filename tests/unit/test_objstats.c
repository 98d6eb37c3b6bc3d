// SPDX-License-Identifier: GPL-2.0
/*
 * Live objects grouped by memcg, birth memcg, cache and node (debugfs
 * slabinfo), and the dying-memcg dump (debugfs pins).
 */
#include "acct_fixture.h"
#include <objcg_shadow/objstats.h>

#define PG		4096
#define CACHE_A		0xa0a0UL
#define CACHE_B		0xb0b0UL
#define B_OBJS		0x200000UL	/* objects at or above: cache B */

static unsigned long two_caches(unsigned long obj)
{
	return obj >= B_OBJS ? CACHE_B : CACHE_A;
}

/* Every object its own cache: as many groups as objects. */
static unsigned long cache_per_object(unsigned long obj)
{
	return obj;
}

static const struct osh_objstat *find(const struct osh_objstats *st,
				      u64 memcg, u64 born, unsigned int kind,
				      unsigned long cache, int node)
{
	size_t i;

	for (i = 0; i < st->cap; i++) {
		const struct osh_objstat *e = &st->v[i];

		if (e->nr && e->memcg_id == memcg && e->born_id == born &&
		    e->kind == kind && e->cache == cache && e->node == node)
			return e;
	}
	return NULL;
}

static long nr_of(const struct osh_objstat *e)
{
	return e ? (long)e->nr : -1;
}

static long bytes_of(const struct osh_objstat *e)
{
	return e ? (long)e->bytes : -1;
}

static unsigned long slab_bytes_of(const struct osh_objstats *st, u64 memcg)
{
	unsigned long sum = 0;
	size_t i;

	for (i = 0; i < st->cap; i++) {
		const struct osh_objstat *e = &st->v[i];

		if (e->nr && e->memcg_id == memcg &&
		    (e->kind == OSH_OBJSTAT_SLAB ||
		     e->kind == OSH_OBJSTAT_LARGE_KMALLOC))
			sum += e->bytes;
	}
	return sum;
}

static void populate(void)
{
	unsigned long i;

	fx_memcg(10, 1, 1);
	fx_memcg(11, 10, 2);
	fx_memcg(12, 1, 1);
	for (i = 0; i < 5; i++)
		CHECK_EQ(fx_alloc(0, 11, 0x100000 + i * 128, 72, 0,
				  OSH_SLAB_RECLAIMABLE), 0);
	for (i = 0; i < 3; i++)
		CHECK_EQ(fx_alloc(2, 11, B_OBJS + i * 256, 200, 1,
				  OSH_SLAB_UNRECLAIMABLE), 0);
	for (i = 0; i < 2; i++)
		CHECK_EQ(fx_alloc(1, 12, 0x180000 + i * 128, 72, 0,
				  OSH_SLAB_RECLAIMABLE), 0);
	CHECK_EQ(fx_alloc(1, 12, 0x300000, 40, 0, OSH_OBJ_PERCPU), 0);
	CHECK_EQ(osh_acct_page_alloc(&fx.acct, fx_cpu(0),
				     osh_memcg_lookup(&fx.tree, 11), NULL,
				     0xa000, 4, 0), 0);
	CHECK(osh_acct_mark_page(&fx.acct, 0xa000, OSH_OBJINFO_STACK));
	CHECK_EQ(osh_acct_page_alloc(&fx.acct, fx_cpu(0),
				     osh_memcg_lookup(&fx.tree, 11), NULL,
				     0xb000, 1, 1), 0);
}

static void test_groups_follow_reparenting(void)
{
	struct osh_objstats st = {};
	unsigned int d;

	fx_setup("v6.1,v7.1");
	populate();
	for (d = 0; d < 2; d++) {
		memset(&st, 0, sizeof(st));
		CHECK_EQ(osh_objstats_collect(&fx.acct, d, two_caches, &st), 0);
		CHECK_EQ(nr_of(find(&st, 11, 11, OSH_OBJSTAT_SLAB, CACHE_A, 0)), 5);
		CHECK_EQ(bytes_of(find(&st, 11, 11, OSH_OBJSTAT_SLAB, CACHE_A, 0)),
			 5 * 72);
		CHECK_EQ(nr_of(find(&st, 11, 11, OSH_OBJSTAT_SLAB, CACHE_B, 1)), 3);
		CHECK_EQ(nr_of(find(&st, 12, 12, OSH_OBJSTAT_SLAB, CACHE_A, 0)), 2);
		CHECK_EQ(bytes_of(find(&st, 12, 12, OSH_OBJSTAT_PERCPU, 0, 0)), 40);
		CHECK_EQ(bytes_of(find(&st, 11, 11, OSH_OBJSTAT_STACK, 0, 0)), 4 * PG);
		CHECK_EQ(nr_of(find(&st, 11, 11, OSH_OBJSTAT_PAGE, 0, 1)), 1);
		CHECK_EQ(st.nr_used, 6);
		CHECK_EQ(st.unowned, 0);
		osh_objstats_free(&st);
	}

	/* reparenting moves every group to the parent; the birth stays */
	fx_offline(11);
	memset(&st, 0, sizeof(st));
	CHECK_EQ(osh_objstats_collect(&fx.acct, 0, two_caches, &st), 0);
	CHECK(!find(&st, 11, 11, OSH_OBJSTAT_SLAB, CACHE_A, 0));
	CHECK_EQ(nr_of(find(&st, 10, 11, OSH_OBJSTAT_SLAB, CACHE_A, 0)), 5);
	CHECK_EQ(nr_of(find(&st, 10, 11, OSH_OBJSTAT_SLAB, CACHE_B, 1)), 3);
	CHECK_EQ(bytes_of(find(&st, 10, 11, OSH_OBJSTAT_STACK, 0, 0)), 4 * PG);
	/* and the groups add up to what the memcg's own counters say */
	CHECK_EQ(slab_bytes_of(&st, 10),
		 fx_stat(10, 0, "slab_reclaimable") +
		 fx_stat(10, 0, "slab_unreclaimable"));
	CHECK_EQ(slab_bytes_of(&st, 12),
		 fx_stat(12, 0, "slab_reclaimable") +
		 fx_stat(12, 0, "slab_unreclaimable"));
	osh_objstats_free(&st);

	/* freed objects leave their group */
	CHECK(fx_free_obj(3, 0x100000));
	memset(&st, 0, sizeof(st));
	CHECK_EQ(osh_objstats_collect(&fx.acct, 0, two_caches, &st), 0);
	CHECK_EQ(nr_of(find(&st, 10, 11, OSH_OBJSTAT_SLAB, CACHE_A, 0)), 4);
	osh_objstats_free(&st);
	CHECK_EQ(osh_objstats_collect(&fx.acct, 7, two_caches, &st), -EINVAL);
	fx_teardown();
}

static void test_table_grows_without_losing_groups(void)
{
	struct osh_objstats st = {};
	unsigned long i, sum = 0;
	const unsigned long n = 1000;
	size_t j;

	fx_setup("v6.1");
	fx_memcg(10, 1, 1);
	for (i = 0; i < n; i++)
		CHECK_EQ(fx_alloc(i % FX_CPUS, 10, 0x100000 + i * 64, 64, 0,
				  OSH_SLAB_UNRECLAIMABLE), 0);
	CHECK_EQ(osh_objstats_collect(&fx.acct, 0, cache_per_object, &st), 0);
	CHECK_EQ(st.nr_used, n);
	CHECK(st.cap >= n * 4 / 3);
	for (j = 0; j < st.cap; j++) {
		if (st.v[j].nr) {
			CHECK_EQ(st.v[j].nr, 1);
			sum += st.v[j].bytes;
		}
	}
	CHECK_EQ(sum, n * 64);
	osh_objstats_free(&st);
	fx_teardown();
}

static char *pins_dump(unsigned int d)
{
	return fx_dump_of(osh_acct_dump_pins, d);
}

static int count_lines(const char *text, const char *prefix)
{
	const char *line;
	int n = 0;

	for (line = text; *line; line = strchr(line, '\n') + 1)
		n += !strncmp(line, prefix, strlen(prefix));
	return n;
}

/* Whether the line starting with @prefix contains @field. */
static bool line_has(const char *text, const char *prefix, const char *field)
{
	const char *line = strstr(text, prefix), *end, *f;

	if (!line)
		return false;
	end = strchr(line, '\n');
	f = strstr(line, field);
	return f && f < end;
}

static void test_pins_lists_dying_memcgs_and_their_objcgs(void)
{
	char *text;

	fx_setup("v6.1,v7.1");
	populate();
	text = pins_dump(0);
	CHECK_EQ(count_lines(text, "memcg "), 0);
	CHECK_EQ(count_lines(text, "objcg "), 0);
	free(text);

	fx_offline(11);
	/* dead before the module loaded: found by the walk, already offline */
	CHECK(osh_memcg_observe(&fx.tree, 20, 1, 1, OSH_MEMCG_OFFLINE, true,
				GFP_KERNEL));
	text = pins_dump(0);
	CHECK(!strncmp(text, "design=v6.1\n", 12));
	CHECK(strstr(text, "memcg id=11 state=offline dead_before_load=0 offline_age_ms="));
	CHECK(strstr(text, "memcg id=20 state=offline dead_before_load=1 refs="));
	/* held by 8 objects, 2 kmem pages and the stocks of CPUs 0 and 2 */
	CHECK(strstr(text, "objcg born=11 now=10 node=-1 refs=12 objects=8 allocs=8 "));
	CHECK_EQ(count_lines(text, "memcg "), 2);
	CHECK_EQ(count_lines(text, "objcg "), 1);
	free(text);

	/* per-node objcgs: one inherited objcg per node */
	text = pins_dump(1);
	/* only the report design (the kernel's, here the first) counts allocations */
	CHECK(line_has(text, "objcg born=11 now=10 node=0 ", " allocs=0 "));
	CHECK(strstr(text, "objcg born=11 now=10 node=1 "));
	CHECK_EQ(count_lines(text, "objcg "), 2);
	free(text);

	/* a freed memcg is no longer dying; its objcgs stay with the parent */
	fx_free(11);
	text = pins_dump(0);
	CHECK(!strstr(text, "memcg id=11 "));
	CHECK_EQ(count_lines(text, "objcg born=11 now=10 "), 1);
	free(text);
	fx_teardown();
}

static const struct osh_test tests[] = {
	{ "objstats_groups_follow_reparenting", test_groups_follow_reparenting },
	{ "objstats_table_grows_without_losing_groups",
	  test_table_grows_without_losing_groups },
	{ "pins_lists_dying_memcgs_and_their_objcgs",
	  test_pins_lists_dying_memcgs_and_their_objcgs },
};

OSH_TEST_MAIN(tests)
