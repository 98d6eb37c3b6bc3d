// SPDX-License-Identifier: GPL-2.0
/*
 * Design names (the designs= parameter) and the text dumps of the
 * accounting state.
 */
#include <objcg_shadow/acct.h>
#include <objcg_shadow/outbuf.h>
#include "acct_internal.h"

static const struct osh_design osh_base_designs[] = {
	{ .name = "v6.1", .task_cache = OSH_TASK_CACHE_NONE, .stock_slots = 1 },
	{ .name = "v6.7", .task_cache = OSH_TASK_CACHE_SINGLE, .stock_slots = 1,
	  .cpu_dead_drains_obj_stock = true },
	{ .name = "v7.1", .per_node_objcg = true,
	  .task_cache = OSH_TASK_CACHE_SINGLE, .stock_slots = 1,
	  .cpu_dead_drains_obj_stock = true },
	{ .name = "pernode", .per_node_objcg = true,
	  .task_cache = OSH_TASK_CACHE_PERNODE, .stock_slots = 1,
	  .cpu_dead_drains_obj_stock = true },
	{ .name = "v7.3", .per_node_objcg = true,
	  .task_cache = OSH_TASK_CACHE_SINGLE, .stock_slots = 5,
	  .stock_kind = OSH_STOCK_ROUND_ROBIN, .cpu_dead_drains_obj_stock = true },
	{ .name = "memcgptr", .per_memcg_caches = true },
};

#define OSH_DESIGN_BASES	"v6.1, v6.7, v7.1, pernode, v7.3"
#define OSH_DESIGN_LAYOUTS	"memcgptr (per-memcg slab caches, beside one of those)"
#define OSH_DESIGN_KNOBS	"+stockN (N=1..8), +memcgkey, +pernode, +pagenode"

/**
 * osh_design_known_names() - what designs= accepts, for error messages
 *
 * Return: a static string.
 */
const char *osh_design_known_names(void)
{
	return OSH_DESIGN_BASES ", each optionally with " OSH_DESIGN_KNOBS
	       "; and " OSH_DESIGN_LAYOUTS;
}

static int osh_parse_one(struct osh_design *out, const char *tok, size_t len,
			 char *err, size_t err_len)
{
	const char *plus = memchr(tok, '+', len);
	size_t base_len = plus ? (size_t)(plus - tok) : len;
	unsigned int i;

	if (len >= OSH_DESIGN_NAME_LEN)
		goto unknown;
	for (i = 0; i < ARRAY_SIZE(osh_base_designs); i++) {
		if (strlen(osh_base_designs[i].name) == base_len &&
		    !strncmp(osh_base_designs[i].name, tok, base_len))
			break;
	}
	if (i == ARRAY_SIZE(osh_base_designs))
		goto unknown;
	*out = osh_base_designs[i];
	memcpy(out->name, tok, len);
	out->name[len] = '\0';
	if (out->per_memcg_caches && plus)
		goto unknown;	/* a slab layout has no stock to tune */

	while (plus) {
		const char *opt = plus + 1;
		const char *next = memchr(opt, '+', tok + len - opt);
		size_t opt_len = (next ? next : tok + len) - opt;

		if (opt_len == 8 && !strncmp(opt, "memcgkey", 8)) {
			out->stock_by_memcg = true;
		} else if (opt_len == 7 && !strncmp(opt, "pernode", 7)) {
			out->per_node_objcg = true;
			out->task_cache = OSH_TASK_CACHE_PERNODE;
		} else if (opt_len == 8 && !strncmp(opt, "pagenode", 8)) {
			/* the follow-up patch builds on the per-node array */
			out->per_node_objcg = true;
			out->objcg_of_page_node = true;
			if (out->task_cache == OSH_TASK_CACHE_SINGLE)
				out->task_cache = OSH_TASK_CACHE_PERNODE;
		} else if (opt_len == 6 && !strncmp(opt, "stock", 5) &&
			   opt[5] >= '1' && opt[5] <= '0' + OSH_STOCK_MAX_SLOTS) {
			out->stock_slots = opt[5] - '0';
		} else {
			goto unknown;
		}
		plus = next;
	}
	return 0;

unknown:
	snprintf(err, err_len, "unknown design '%.*s': valid designs are %s",
		 (int)min_t(size_t, len, 64), tok, osh_design_known_names());
	return -EINVAL;
}

/**
 * osh_design_parse() - parse a comma list of design names
 * @designs: output array
 * @max: its capacity
 * @list: e.g. "v6.1,v7.1+stock4"
 * @err: receives a message on failure
 * @err_len: size of @err
 *
 * Return: number of designs, or -EINVAL with @err set.
 */
int osh_design_parse(struct osh_design *designs, unsigned int max,
		     const char *list, char *err, size_t err_len)
{
	const char *p = list;
	unsigned int n = 0, i;

	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		/* a trailing newline comes with values written via sysfs */
		while (len && (p[len - 1] == '\n' || p[len - 1] == ' '))
			len--;
		if (!len) {
			snprintf(err, err_len, "empty design name in '%s'", list);
			return -EINVAL;
		}
		if (n == max) {
			snprintf(err, err_len, "too many designs: at most %u",
				 max);
			return -EINVAL;
		}
		if (osh_parse_one(&designs[n], p, len, err, err_len))
			return -EINVAL;
		for (i = 0; i < n; i++) {
			if (!strcmp(designs[i].name, designs[n].name)) {
				snprintf(err, err_len, "design '%s' given twice",
					 designs[n].name);
				return -EINVAL;
			}
		}
		n++;
		if (!end)
			break;
		p = end + 1;
	}
	if (!n) {
		snprintf(err, err_len, "no design given: valid designs are %s",
			 osh_design_known_names());
		return -EINVAL;
	}
	return n;
}

/**
 * osh_design_take_slab_layouts() - move slab-layout designs out of a list
 * @designs: parsed designs; the obj_cgroup ones are kept, in order
 * @nr: how many
 * @memcgptr: set if memcgptr was among them
 *
 * Return: how many obj_cgroup designs remain.
 */
unsigned int osh_design_take_slab_layouts(struct osh_design *designs,
					  unsigned int nr, bool *memcgptr)
{
	unsigned int i, kept = 0;

	*memcgptr = false;
	for (i = 0; i < nr; i++) {
		if (designs[i].per_memcg_caches) {
			*memcgptr = true;
			continue;
		}
		designs[kept++] = designs[i];
	}
	return kept;
}

/* --- dumps ---------------------------------------------------------------- */

/**
 * osh_acct_sum_counters() - one design's counters summed over all CPUs
 * @acct: accounting state
 * @d: design index
 * @sum: output
 */
void osh_acct_sum_counters(struct osh_acct *acct, unsigned int d,
			   struct osh_dcounters *sum)
{
	unsigned long *out = (unsigned long *)sum;
	unsigned int cpu, i;

	memset(sum, 0, sizeof(*sum));
	for (cpu = 0; cpu < acct->nr_cpus; cpu++) {
		struct osh_cpu_ctx *ctx = acct->cpu_ctx(acct, cpu);
		const unsigned long *in;

		if (!ctx)
			continue;
		in = (const unsigned long *)&ctx->cnt[d];
		for (i = 0; i < OSH_NR_DCOUNTERS; i++)
			out[i] += READ_ONCE(in[i]);
	}
}

static const char *const osh_task_cache_names[] = {
	[OSH_TASK_CACHE_NONE] = "none",
	[OSH_TASK_CACHE_SINGLE] = "single",
	[OSH_TASK_CACHE_PERNODE] = "pernode",
};

#define OSH_DCOUNTER(field)	{ #field, offsetof(struct osh_dcounters, field) }

static const struct {
	const char *name;
	size_t offset;
} osh_dcounter_fields[] = {
	OSH_DCOUNTER(allocs), OSH_DCOUNTER(frees),
	OSH_DCOUNTER(stock_hits), OSH_DCOUNTER(stock_misses),
	OSH_DCOUNTER(drain_objcg), OSH_DCOUNTER(drain_on_free),
	OSH_DCOUNTER(drain_node),
	OSH_DCOUNTER(drain_explicit),
	OSH_DCOUNTER(charge_ops), OSH_DCOUNTER(charge_pages),
	OSH_DCOUNTER(uncharge_ops), OSH_DCOUNTER(uncharge_pages),
	OSH_DCOUNTER(vmstat_flushes),
	OSH_DCOUNTER(remote_objcg_cpu), OSH_DCOUNTER(remote_objcg_page),
	OSH_DCOUNTER(root_bypass),
	OSH_DCOUNTER(task_refresh), OSH_DCOUNTER(task_retry),
	OSH_DCOUNTER(task_state_missing),
	OSH_DCOUNTER(page_allocs), OSH_DCOUNTER(page_frees),
	OSH_DCOUNTER(stock_takes), OSH_DCOUNTER(stock_busy),
	OSH_DCOUNTER(seeded_slots), OSH_DCOUNTER(seeded_foreign),
};

/**
 * osh_acct_dump_designs() - one line per design: its knobs and counters
 * @acct: accounting state
 * @ob: output
 */
void osh_acct_dump_designs(struct osh_acct *acct, struct osh_buf *ob)
{
	unsigned int d, i;

	for (d = 0; d < acct->nr_designs; d++) {
		const struct osh_design *design = &acct->designs[d];
		struct osh_dcounters sum;

		osh_acct_sum_counters(acct, d, &sum);
		osh_buf_printf(ob,
			       "design=%s objcg=%s task_cache=%s stock_slots=%u stock_key=%s stock=%s objcg_node=%s",
			       design->name,
			       design->per_node_objcg ? "pernode" : "permemcg",
			       osh_task_cache_names[design->task_cache],
			       design->stock_slots,
			       design->stock_by_memcg ? "memcg" : "objcg",
			       design->stock_kind == OSH_STOCK_ROUND_ROBIN ?
			       "roundrobin" : "lru",
			       design->objcg_of_page_node ? "page" : "cpu");
		for (i = 0; i < ARRAY_SIZE(osh_dcounter_fields); i++)
			osh_buf_printf(ob, " %s=%lu", osh_dcounter_fields[i].name,
				       *(unsigned long *)((char *)&sum +
					osh_dcounter_fields[i].offset));
		osh_buf_printf(ob, " objcgs_swapped=%ld objects_repointed=%ld reference=%d\n",
			       atomic_long_read(&acct->objcgs_swapped[d]),
			       atomic_long_read(&acct->objects_repointed[d]),
			       acct->reference == (int)d);
	}
}

/**
 * osh_acct_dump_events() - global accounting events as key=value lines
 * @acct: accounting state
 * @ob: output
 */
void osh_acct_dump_events(struct osh_acct *acct, struct osh_buf *ob)
{
	static const char *const names[OSH_NR_ACCT_EVENTS] = {
		[OSH_EV_OBJ_UNTRACKED_FREE] = "untracked_frees",
		[OSH_EV_OBJ_MAP_FULL] = "dropped_objects_map_full",
		[OSH_EV_OBJ_STALE] = "stale_objects_replaced",
		[OSH_EV_OBJ_NO_RECORD] = "dropped_objects_no_record",
		[OSH_EV_PAGE_UNTRACKED_FREE] = "untracked_page_frees",
		[OSH_EV_PAGE_MAP_FULL] = "dropped_pages_map_full",
		[OSH_EV_PAGE_STALE] = "stale_pages_replaced",
		[OSH_EV_OBJCG_ALLOC_FAILED] = "objcg_alloc_failed",
		[OSH_EV_REPARENT_OPS] = "reparent_ops",
		[OSH_EV_NO_PARENT] = "offline_without_parent",
		[OSH_EV_OBJCG_RELEASED] = "objcgs_released",
		[OSH_EV_RELEASE_UNCHARGED_PAGES] = "release_uncharged_pages",
	};
	long swapped = 0, repointed = 0;
	unsigned long recursion = 0;
	unsigned int i, cpu;

	for (i = 0; i < OSH_NR_ACCT_EVENTS; i++)
		osh_buf_printf(ob, "%s=%ld\n", names[i],
			       atomic_long_read(&acct->events[i]));
	for (i = 0; i < acct->nr_designs; i++) {
		swapped += atomic_long_read(&acct->objcgs_swapped[i]);
		repointed += atomic_long_read(&acct->objects_repointed[i]);
	}
	osh_buf_printf(ob, "objcgs_swapped=%ld\nobjects_repointed_without_objcg=%ld\n",
		       swapped, repointed);
	for (cpu = 0; cpu < acct->nr_cpus; cpu++) {
		struct osh_cpu_ctx *ctx = acct->cpu_ctx(acct, cpu);

		if (ctx)
			recursion += READ_ONCE(ctx->recursion);
	}
	osh_buf_printf(ob, "dropped_recursion=%lu\n", recursion);
	osh_objmap_dump(&acct->objmap, "objmap", ob);
	osh_buf_printf(ob, "objrecs_live=%ld\nobjrecs_bytes=%zu\n",
		       atomic_long_read(&acct->nr_objrecs),
		       (size_t)atomic_long_read(&acct->nr_objrecs) *
		       osh_objrec_bytes(acct));
	osh_objmap_dump(&acct->pagemap, "pagemap", ob);
	osh_buf_printf(ob, "objects_kernel_did_not_charge=%ld\n",
		       atomic_long_read(&acct->nr_kernel_uncharged));
}

static void osh_add_object_info(struct osh_live_totals *t,
				const struct osh_objinfo *info)
{
	if (info->type == OSH_OBJ_PERCPU) {
		t->percpu_objects++;
		t->percpu_bytes += info->size;
		return;
	}
	t->objects++;
	t->bytes += info->size;
}

static void osh_add_object(unsigned long key, void *val, void *arg)
{
	struct osh_live_totals *t = arg;
	const struct osh_objinfo *info;

	/* a record freed meanwhile stays readable until the grace period */
	rcu_read_lock();
	info = &READ_ONCE(*(struct osh_objrec **)val)->info;
	osh_add_object_info(t, info);
	rcu_read_unlock();
}

static void osh_add_page(unsigned long key, void *val, void *arg)
{
	struct osh_live_totals *t = arg;
	const struct osh_objinfo *info = val;

	t->pages += info->size;
	if (info->flags & OSH_OBJINFO_LARGE_KMALLOC)
		t->large_kmalloc_bytes += info->size * PAGE_SIZE;
	if (info->flags & OSH_OBJINFO_STACK)
		t->stack_bytes += info->size * PAGE_SIZE;
}

/**
 * osh_acct_live_totals() - totals over the object and page maps
 * @acct: accounting state
 * @t: output
 *
 * Exact only at quiescence; used for the conservation check.
 */
void osh_acct_live_totals(struct osh_acct *acct, struct osh_live_totals *t)
{
	memset(t, 0, sizeof(*t));
	osh_objmap_walk_begin(&acct->objmap);
	osh_objmap_for_each(&acct->objmap, osh_add_object, t);
	osh_objmap_walk_end(&acct->objmap);
	osh_objmap_walk_begin(&acct->pagemap);
	osh_objmap_for_each(&acct->pagemap, osh_add_page, t);
	osh_objmap_walk_end(&acct->pagemap);
}

struct osh_memcg_sums {
	long stat[OSH_MAX_NODES][OSH_NR_OBJCG_STATS];
	long objects;
	long allocs;			/* of the active objcgs: born here */
	long charged_bytes;
	long stock_bytes;
	unsigned int objcgs;
	unsigned int inherited;
};

static void osh_sum_objcg(struct osh_acct *acct, unsigned int d,
			  struct osh_objcg *objcg, struct osh_memcg_sums *s)
{
	unsigned int n, i, cpu;

	for (n = 0; n < acct->nr_nodes; n++) {
		const atomic_long_t *stat = &objcg->stat[n * OSH_NR_OBJCG_STATS];

		for (i = 0; i < OSH_NR_OBJCG_STATS; i++)
			s->stat[n][i] += atomic_long_read(&stat[i]);
	}
	s->objects += atomic_long_read(&objcg->nr_objects);
	s->charged_bytes += atomic_read(&objcg->nr_charged_bytes);
	/* other CPUs' slots: compare pointers only, never dereference */
	for (cpu = 0; cpu < acct->nr_cpus; cpu++) {
		struct osh_cpu_ctx *ctx = acct->cpu_ctx(acct, cpu);

		for (i = 0; ctx && i < OSH_STOCK_MAX_SLOTS; i++) {
			const struct osh_stock_slot *slot = &ctx->stock[d].slot[i];

			if (READ_ONCE(slot->objcg) == objcg)
				s->stock_bytes += READ_ONCE(slot->nr_bytes);
		}
	}
}

static void osh_dump_memcg(struct osh_acct *acct, unsigned int d,
			   struct osh_memcg *memcg, struct osh_memcg_sums *s,
			   struct osh_buf *ob)
{
	struct osh_mdesign *md = memcg->design[d];
	struct osh_objcg *objcg;
	long vm[OSH_NR_SLAB_TYPES] = {};
	unsigned long flags;
	unsigned int i, n;

	memset(s, 0, sizeof(*s));
	spin_lock_irqsave(&acct->objcg_lock, flags);
	for (i = 0; i < (acct->designs[d].per_node_objcg ? acct->nr_nodes : 1); i++) {
		objcg = READ_ONCE(md->objcg[i]);
		if (objcg) {
			s->objcgs++;
			s->allocs += atomic_long_read(&objcg->nr_allocs);
			osh_sum_objcg(acct, d, objcg, s);
		}
	}
	list_for_each_entry(objcg, &md->objcg_list, list) {
		s->inherited++;
		osh_sum_objcg(acct, d, objcg, s);
	}
	spin_unlock_irqrestore(&acct->objcg_lock, flags);
	for (n = 0; n < acct->nr_nodes; n++)
		for (i = 0; i < OSH_NR_SLAB_TYPES; i++)
			vm[i] += atomic_long_read(&md->vmstat[n * OSH_NR_SLAB_TYPES + i]);

	osh_buf_printf(ob, "id=%llu design=%s objcgs=%u inherited=%u objects=%ld",
		       (unsigned long long)memcg->id, acct->designs[d].name,
		       s->objcgs, s->inherited, s->objects);
	for (i = 0; i < OSH_NR_OBJCG_STATS; i++) {
		static const char *const names[] = {
			"slab_reclaimable", "slab_unreclaimable", "kernel_stack",
			"percpu",
		};
		long total = 0;

		for (n = 0; n < acct->nr_nodes; n++)
			total += s->stat[n][i];
		osh_buf_printf(ob, " %s=%ld", names[i], total);
		/* percpu memory has no node */
		for (n = 0; i != OSH_STAT_PERCPU && n < acct->nr_nodes; n++)
			osh_buf_printf(ob, " %s.N%u=%ld", names[i], n,
				       s->stat[n][i]);
	}
	osh_buf_printf(ob, " kmem_pages=%ld charged_bytes=%ld stock_bytes=%ld",
		       atomic_long_read(&md->kmem_pages),
		       s->charged_bytes + atomic_read(&md->charged_bytes),
		       s->stock_bytes);
	osh_buf_printf(ob, " objcg_alloc_failed=%u allocs=%ld",
		       md->objcg_alloc_failed, s->allocs);
	osh_buf_printf(ob, " vmstat_slab_reclaimable=%ld vmstat_slab_unreclaimable=%ld\n",
		       vm[OSH_SLAB_RECLAIMABLE], vm[OSH_SLAB_UNRECLAIMABLE]);
}

struct osh_dump_memcgs_arg {
	struct osh_acct *acct;
	unsigned int d;
	struct osh_memcg_sums *sums;
	struct osh_buf *ob;
};

static void osh_dump_memcg_of_design(struct osh_memcg *memcg, void *arg)
{
	struct osh_dump_memcgs_arg *a = arg;

	/* design state is published once and freed only at teardown */
	if (READ_ONCE(memcg->design[a->d]))
		osh_dump_memcg(a->acct, a->d, memcg, a->sums, a->ob);
}

/**
 * osh_acct_dump_memcgs() - one line per live memcg for design @d
 * @acct: accounting state
 * @tree: the memcg tree
 * @d: design index
 * @ob: output
 *
 * Values are local to each memcg (its own objcgs and those it inherited);
 * memory.stat is hierarchical, so readers sum over the subtree.
 */
void osh_acct_dump_memcgs(struct osh_acct *acct, struct osh_memcg_tree *tree,
			  unsigned int d, struct osh_buf *ob)
{
	struct osh_dump_memcgs_arg a = { .acct = acct, .d = d, .ob = ob };

	a.sums = kmalloc(sizeof(*a.sums), GFP_KERNEL);
	if (!a.sums || osh_tree_walk(tree, false, osh_dump_memcg_of_design, &a))
		osh_buf_printf(ob, "error=ENOMEM\n");
	kfree(a.sums);
}

struct osh_dump_pins_arg {
	struct osh_acct *acct;
	unsigned int d;
	u64 now_ns;
	struct osh_buf *ob;
};

static void osh_dump_dying(struct osh_memcg *memcg, struct osh_dump_pins_arg *a)
{
	u64 offline_ns = READ_ONCE(memcg->offline_ns);
	unsigned long flags;

	osh_buf_printf(a->ob, "memcg id=%llu state=%s dead_before_load=%d",
		       (unsigned long long)memcg->id,
		       osh_memcg_state_name(READ_ONCE(memcg->state)),
		       memcg->discovered && !offline_ns);
	/* it may have gone offline after the dump read the clock */
	if (offline_ns)
		osh_buf_printf(a->ob, " offline_age_ms=%llu",
			       (unsigned long long)(a->now_ns > offline_ns ?
						    a->now_ns - offline_ns : 0) /
			       1000000);
	/* beyond the tree's and the walk's: children and objcgs */
	osh_buf_printf(a->ob, " refs=%d path=", refcount_read(&memcg->ref) - 2);
	/* tree->lock keeps the path from being replaced under us */
	spin_lock_irqsave(&memcg->tree->lock, flags);
	if (memcg->path)
		osh_buf_puts_escaped(a->ob, memcg->path);
	else
		osh_buf_printf(a->ob, "?");
	spin_unlock_irqrestore(&memcg->tree->lock, flags);
	osh_buf_printf(a->ob, "\n");
}

static void osh_dump_pins_of(struct osh_memcg *memcg, void *arg)
{
	struct osh_dump_pins_arg *a = arg;
	struct osh_mdesign *md = READ_ONCE(memcg->design[a->d]);
	struct osh_objcg *objcg;
	unsigned long flags;
	int state = READ_ONCE(memcg->state);

	if (state == OSH_MEMCG_OFFLINE || state == OSH_MEMCG_RELEASED)
		osh_dump_dying(memcg, a);
	if (!md)
		return;
	/* inherited objcgs were all born in memcgs that went offline */
	spin_lock_irqsave(&a->acct->objcg_lock, flags);
	list_for_each_entry(objcg, &md->objcg_list, list) {
		osh_buf_printf(a->ob,
			       "objcg born=%llu now=%llu node=%d refs=%ld objects=%ld allocs=%ld charged_bytes=%d\n",
			       (unsigned long long)objcg->born_id,
			       (unsigned long long)memcg->id, objcg->node,
			       atomic_long_read(&objcg->ref),
			       atomic_long_read(&objcg->nr_objects),
			       atomic_long_read(&objcg->nr_allocs),
			       atomic_read(&objcg->nr_charged_bytes));
	}
	spin_unlock_irqrestore(&a->acct->objcg_lock, flags);
}

/**
 * osh_acct_dump_pins() - dying memcgs and the objcgs they left behind
 * @acct: accounting state
 * @tree: the memcg tree
 * @d: design whose objcgs are listed
 * @ob: output
 *
 * One "memcg" line per memcg that is offline but not yet freed, and one
 * "objcg" line per inherited objcg of design @d: born in a memcg that went
 * offline, now pointing at an ancestor.  Each record is held under its
 * locks only while its own lines are written.
 */
void osh_acct_dump_pins(struct osh_acct *acct, struct osh_memcg_tree *tree,
			unsigned int d, struct osh_buf *ob)
{
	struct osh_dump_pins_arg a = {
		.acct = acct, .d = d, .now_ns = ktime_get_mono_fast_ns(),
		.ob = ob,
	};

	osh_buf_printf(ob, "design=%s\n", acct->designs[d].name);
	if (osh_tree_walk(tree, false, osh_dump_pins_of, &a))
		osh_buf_printf(ob, "error=ENOMEM\n");
}
