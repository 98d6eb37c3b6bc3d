// SPDX-License-Identifier: GPL-2.0
/* Unit tests of the shadow memcg tree (module/core/memcg_tree.c). */
#include "osh_test.h"
#include <objcg_shadow/memcg_tree.h>
#include <objcg_shadow/outbuf.h>

static struct osh_memcg_tree tree;

static char *dump(void)
{
	struct osh_buf ob;
	size_t need;
	char *buf;

	osh_buf_init(&ob, NULL, 0);
	osh_tree_dump(&tree, &ob);
	need = ob.len;
	buf = malloc(need + 1);
	osh_buf_init(&ob, buf, need + 1);
	osh_tree_dump(&tree, &ob);
	CHECK_EQ(ob.len, need);
	return buf;
}

/* Value of key=@key on the line of record @id, or -1. */
static long long field(const char *text, u64 id, const char *key)
{
	char pat[64], kpat[64];
	const char *line, *v;

	snprintf(pat, sizeof(pat), "id=%llu ", (unsigned long long)id);
	snprintf(kpat, sizeof(kpat), " %s=", key);
	for (line = text; line && *line; line = strchr(line, '\n')) {
		if (*line == '\n')
			line++;
		if (strncmp(line, pat, strlen(pat)))
			continue;
		v = strstr(line, kpat);
		if (!v || v > strchr(line, '\n'))
			return -1;
		return strtoll(v + strlen(kpat), NULL, 10);
	}
	return -1;
}

static bool has_line(const char *text, const char *needle)
{
	return strstr(text, needle) != NULL;
}

static void build_abc(void)
{
	osh_tree_init(&tree, 4, NULL);
	CHECK(osh_memcg_observe(&tree, 1, 0, 0, OSH_MEMCG_ONLINE, true,
				GFP_KERNEL));
	CHECK(osh_memcg_observe(&tree, 10, 1, 1, OSH_MEMCG_ONLINE, false,
				GFP_ATOMIC));
	CHECK(osh_memcg_observe(&tree, 11, 10, 2, OSH_MEMCG_ONLINE, false,
				GFP_ATOMIC));
}

static void test_create_lookup_parent(void)
{
	struct osh_memcg *m;

	build_abc();
	m = osh_memcg_lookup(&tree, 11);
	CHECK(m && m->parent && m->parent->id == 10);
	CHECK(m && m->parent->parent && m->parent->parent->id == 1);
	CHECK(!osh_memcg_lookup(&tree, 12));
	CHECK_EQ(tree.nr_live, 3);
	/* the parent holds the tree's ref plus one per child */
	CHECK_EQ(refcount_read(&osh_memcg_lookup(&tree, 10)->ref), 2);
	osh_tree_destroy(&tree);
}

static void test_observe_is_idempotent(void)
{
	build_abc();
	CHECK(osh_memcg_observe(&tree, 10, 1, 1, OSH_MEMCG_ONLINE, true,
				GFP_KERNEL) == osh_memcg_lookup(&tree, 10));
	CHECK_EQ(tree.nr_live, 3);
	CHECK_EQ(atomic_long_read(&tree.stats.created), 3);
	osh_tree_destroy(&tree);
}

static void test_states_only_move_forward(void)
{
	char *text;

	build_abc();
	CHECK_EQ(osh_memcg_set_state(&tree, 11, OSH_MEMCG_OFFLINE), 0);
	/* discovery racing with offline reports "online": must not regress */
	osh_memcg_observe(&tree, 11, 10, 2, OSH_MEMCG_ONLINE, true, GFP_KERNEL);
	CHECK_EQ(osh_memcg_set_state(&tree, 11, OSH_MEMCG_ONLINE), -EALREADY);
	text = dump();
	CHECK(has_line(text, "id=11 parent=10 level=2 state=offline "));
	free(text);
	CHECK_EQ(osh_memcg_set_state(&tree, 11, OSH_MEMCG_RELEASED), 0);
	CHECK_EQ(osh_memcg_set_state(&tree, 11, OSH_MEMCG_FREED), 0);
	CHECK(!osh_memcg_lookup(&tree, 11));
	text = dump();
	CHECK(has_line(text, "id=11 parent=10 level=2 state=freed "));
	free(text);
	CHECK_EQ(osh_memcg_set_state(&tree, 99, OSH_MEMCG_OFFLINE), -ENOENT);
	CHECK_EQ(atomic_long_read(&tree.stats.unknown_id), 1);
	CHECK(atomic_long_read(&tree.stats.stale_state) >= 1);
	osh_tree_destroy(&tree);
}

static void test_graveyard_is_bounded(void)
{
	u64 id;
	char *text;

	build_abc();
	for (id = 100; id < 110; id++) {
		osh_memcg_observe(&tree, id, 1, 1, OSH_MEMCG_ONLINE, false,
				  GFP_ATOMIC);
		osh_memcg_set_state(&tree, id, OSH_MEMCG_FREED);
	}
	CHECK_EQ(tree.nr_graveyard, 4);
	CHECK_EQ(atomic_long_read(&tree.stats.released), 6);
	text = dump();
	CHECK(!has_line(text, "id=105 "));
	CHECK(has_line(text, "id=106 "));
	CHECK(has_line(text, "id=109 "));
	free(text);
	/* evicted children dropped their parent reference */
	CHECK_EQ(refcount_read(&osh_memcg_lookup(&tree, 1)->ref), 1 + 1 + 4);
	osh_tree_destroy(&tree);
}

static void test_paths_escaped_and_pending(void)
{
	u64 ids[8];
	char *text;

	build_abc();
	CHECK_EQ(osh_memcg_pending_paths(&tree, ids, 8), 3);
	CHECK_EQ(osh_memcg_set_path(&tree, 1, "/", GFP_KERNEL), 0);
	CHECK_EQ(osh_memcg_set_path(&tree, 10, "/a b", GFP_KERNEL), 0);
	CHECK_EQ(osh_memcg_set_path(&tree, 10, "/a\\b\n", GFP_KERNEL), 0);
	CHECK_EQ(osh_memcg_pending_paths(&tree, ids, 8), 1);
	CHECK_EQ(ids[0], 11);
	CHECK_EQ(osh_memcg_set_path(&tree, 77, "/x", GFP_KERNEL), -ENOENT);
	text = dump();
	CHECK(has_line(text, " path=/a\\134b\\012\n"));
	CHECK(has_line(text, "id=11 parent=10 level=2 state=online tasks_attached=0 attach_ops=0 discovered=0 refs=0 path=?\n"));
	free(text);
	osh_tree_destroy(&tree);
}

static void test_attach_counts(void)
{
	char *text;

	build_abc();
	CHECK_EQ(osh_memcg_attach(&tree, 10, 1), 0);
	CHECK_EQ(osh_memcg_attach(&tree, 10, 5), 0);
	CHECK_EQ(osh_memcg_attach(&tree, 12, 1), -ENOENT);
	text = dump();
	CHECK_EQ(field(text, 10, "tasks_attached"), 6);
	CHECK_EQ(field(text, 10, "attach_ops"), 2);
	CHECK_EQ(field(text, 11, "tasks_attached"), 0);
	free(text);
	osh_tree_destroy(&tree);
}

static void test_alloc_failure_counted(void)
{
	osh_tree_init(&tree, 4, NULL);
	osh_shim_fail_alloc_in = 1;
	CHECK(!osh_memcg_observe(&tree, 1, 0, 0, OSH_MEMCG_ONLINE, false,
				 GFP_ATOMIC));
	CHECK_EQ(atomic_long_read(&tree.stats.alloc_failed), 1);
	CHECK(osh_memcg_observe(&tree, 1, 0, 0, OSH_MEMCG_ONLINE, false,
				GFP_ATOMIC));
	osh_shim_fail_alloc_in = 1;
	CHECK_EQ(osh_memcg_set_path(&tree, 1, "/", GFP_ATOMIC), -ENOMEM);
	CHECK_EQ(atomic_long_read(&tree.stats.alloc_failed), 2);
	/* a child whose parent is unknown is kept and counted */
	CHECK(osh_memcg_observe(&tree, 5, 4, 2, OSH_MEMCG_ONLINE, false,
				GFP_ATOMIC));
	CHECK_EQ(atomic_long_read(&tree.stats.orphans), 1);
	osh_tree_destroy(&tree);
}

static void test_dump_measures_truncation(void)
{
	char small[16];
	struct osh_buf ob;
	size_t need;

	build_abc();
	osh_buf_init(&ob, NULL, 0);
	osh_tree_dump(&tree, &ob);
	need = ob.len;
	CHECK(need > sizeof(small));
	osh_buf_init(&ob, small, sizeof(small));
	osh_tree_dump(&tree, &ob);
	CHECK_EQ(ob.len, need);
	CHECK_EQ(strlen(small), sizeof(small) - 1);
	osh_buf_init(&ob, NULL, 0);
	osh_tree_dump_stats(&tree, &ob);
	CHECK(ob.len > 0);
	osh_tree_destroy(&tree);
}

/*
 * A dump whose snapshot cannot be allocated says so, and a dump takes
 * and drops one reference per record: refs read the same before and after.
 */
static void test_dump_snapshot_failure_shown(void)
{
	long long refs_before;
	struct osh_buf ob;
	char buf[512];
	char *text;

	build_abc();
	text = dump();
	refs_before = field(text, 10, "refs");
	CHECK(refs_before >= 0);
	free(text);
	osh_shim_fail_alloc_in = 1;
	osh_buf_init(&ob, buf, sizeof(buf));
	osh_tree_dump(&tree, &ob);
	CHECK(!strcmp(buf, "error=ENOMEM\n"));
	text = dump();
	CHECK_EQ(field(text, 10, "refs"), refs_before);
	CHECK(has_line(text, "id=11 "));
	free(text);
	osh_tree_destroy(&tree);
}

static const struct osh_test tests[] = {
	{ "tree_create_lookup_parent", test_create_lookup_parent },
	{ "tree_observe_is_idempotent", test_observe_is_idempotent },
	{ "tree_states_only_move_forward", test_states_only_move_forward },
	{ "tree_graveyard_is_bounded", test_graveyard_is_bounded },
	{ "tree_paths_escaped_and_pending", test_paths_escaped_and_pending },
	{ "tree_attach_counts", test_attach_counts },
	{ "tree_alloc_failure_counted", test_alloc_failure_counted },
	{ "tree_dump_measures_truncation", test_dump_measures_truncation },
	{ "tree_dump_snapshot_failure_shown", test_dump_snapshot_failure_shown },
};

OSH_TEST_MAIN(tests)
