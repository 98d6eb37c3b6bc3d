// SPDX-License-Identifier: GPL-2.0
/*
 * Live charged objects, grouped; see include/objcg_shadow/objstats.h.
 */
#include <objcg_shadow/acct.h>
#include <objcg_shadow/objstats.h>

#define OSH_OBJSTATS_MIN_CAP	256

/**
 * osh_objstat_kind_name() - name of a kind, as printed in debugfs
 * @kind: enum osh_objstat_kind value
 *
 * Return: a static string.
 */
const char *osh_objstat_kind_name(unsigned int kind)
{
	static const char *const names[OSH_NR_OBJSTAT_KINDS] = {
		[OSH_OBJSTAT_SLAB] = "slab",
		[OSH_OBJSTAT_PERCPU] = "percpu",
		[OSH_OBJSTAT_PAGE] = "page",
		[OSH_OBJSTAT_STACK] = "stack",
		[OSH_OBJSTAT_LARGE_KMALLOC] = "large_kmalloc",
	};

	return kind < OSH_NR_OBJSTAT_KINDS ? names[kind] : "?";
}

static bool osh_objstat_same(const struct osh_objstat *a,
			     const struct osh_objstat *b)
{
	return a->memcg_id == b->memcg_id && a->born_id == b->born_id &&
	       a->cache == b->cache && a->node == b->node && a->kind == b->kind;
}

static size_t osh_objstat_hash(const struct osh_objstat *k, size_t cap)
{
	u64 h = k->memcg_id * 0x9e3779b97f4a7c15ULL;

	h ^= k->born_id * 0xc2b2ae3d27d4eb4fULL;
	h ^= (u64)k->cache * 0x165667b19e3779f9ULL;
	h ^= ((u64)(u32)k->node << 8 | k->kind) * 0x27d4eb2f165667c5ULL;
	return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

/* Entries with nr == 0 are free: every stored one has an object. */
static struct osh_objstat *osh_objstat_slot(struct osh_objstat *v, size_t cap,
					    const struct osh_objstat *k)
{
	size_t i = osh_objstat_hash(k, cap);

	while (v[i].nr && !osh_objstat_same(&v[i], k))
		i = (i + 1) & (cap - 1);
	return &v[i];
}

static int osh_objstats_grow(struct osh_objstats *st)
{
	size_t cap = st->cap ? st->cap * 2 : OSH_OBJSTATS_MIN_CAP, i;
	struct osh_objstat *v = kvmalloc_array(cap, sizeof(*v), GFP_KERNEL);

	if (!v)
		return -ENOMEM;
	memset(v, 0, cap * sizeof(*v));
	for (i = 0; i < st->cap; i++) {
		if (st->v[i].nr)
			*osh_objstat_slot(v, cap, &st->v[i]) = st->v[i];
	}
	kvfree(st->v);
	st->v = v;
	st->cap = cap;
	return 0;
}

static unsigned int osh_page_objstat_kind(const struct osh_objinfo *info)
{
	if (info->flags & OSH_OBJINFO_STACK)
		return OSH_OBJSTAT_STACK;
	if (info->flags & OSH_OBJINFO_LARGE_KMALLOC)
		return OSH_OBJSTAT_LARGE_KMALLOC;
	return OSH_OBJSTAT_PAGE;
}

/*
 * Under rcu_read_lock(): an object's record, its objcg and the objcg's
 * memcg may be followed.
 */
static bool osh_objstats_add(unsigned long key, const void *val, void *arg)
{
	struct osh_objstats *st = arg;
	const struct osh_objinfo *info = st->kind_of_map == OSH_OBJSTAT_PAGE ?
		val : &(*(struct osh_objrec *const *)val)->info;
	struct osh_objcg *objcg = info->objcg[st->design];
	struct osh_objstat k = { .node = info->node }, *e;

	if (!objcg) {
		st->unowned++;
		return true;
	}
	/* a full table is grown outside RCU, then this entry is revisited */
	if (4 * (st->nr_used + 1) > 3 * st->cap)
		return false;
	k.memcg_id = READ_ONCE(objcg->memcg)->id;
	k.born_id = objcg->born_id;
	if (st->kind_of_map == OSH_OBJSTAT_PAGE) {
		k.kind = osh_page_objstat_kind(info);
	} else if (info->type == OSH_OBJ_PERCPU) {
		k.kind = OSH_OBJSTAT_PERCPU;
	} else {
		k.kind = OSH_OBJSTAT_SLAB;
		k.cache = st->cache_of(key);
	}
	e = osh_objstat_slot(st->v, st->cap, &k);
	if (!e->nr) {
		*e = k;
		st->nr_used++;
	}
	e->nr++;
	if (st->kind_of_map == OSH_OBJSTAT_PAGE) {
		e->pages += info->size;
		e->bytes += (unsigned long)info->size * PAGE_SIZE;
	} else {
		e->bytes += info->size;
	}
	return true;
}

static int osh_objstats_walk(struct osh_objmap *map, struct osh_objstats *st)
{
	void *copy = kmalloc(map->val_size, GFP_KERNEL);
	size_t from = 0, slots;
	int err = 0;

	if (!copy)
		return -ENOMEM;
	osh_objmap_walk_begin(map);
	slots = osh_objmap_slots(map);
	while (!err) {
		from = osh_objmap_walk(map, from, copy, osh_objstats_add, st,
				       &st->raced);
		if (from >= slots)
			break;
		err = osh_objstats_grow(st);
	}
	osh_objmap_walk_end(map);
	kfree(copy);
	return err;
}

/**
 * osh_objstats_collect() - group every live object and kmem page of design @d
 * @acct: accounting state
 * @d: design whose objcgs say where each object is charged
 * @cache_of: finds a slab object's cache
 * @st: output, zeroed by the caller; free with osh_objstats_free()
 *
 * Not atomic against the event stream: an object freed or allocated
 * during the walk may be missed or seen (@st->raced counts the entries
 * that changed under it).
 *
 * Context: process context, may sleep.
 * Return: 0 or -ENOMEM (@st then holds what was grouped so far).
 */
int osh_objstats_collect(struct osh_acct *acct, unsigned int d,
			 osh_cache_of_fn cache_of, struct osh_objstats *st)
{
	int err;

	if (d >= acct->nr_designs)
		return -EINVAL;
	st->design = d;
	st->cache_of = cache_of;
	err = osh_objstats_grow(st);
	if (err)
		return err;
	st->kind_of_map = OSH_OBJSTAT_SLAB;
	err = osh_objstats_walk(&acct->objmap, st);
	if (err)
		return err;
	st->kind_of_map = OSH_OBJSTAT_PAGE;
	return osh_objstats_walk(&acct->pagemap, st);
}

/**
 * osh_objstats_free() - free what osh_objstats_collect() built
 * @st: the groups
 */
void osh_objstats_free(struct osh_objstats *st)
{
	kvfree(st->v);
	st->v = NULL;
	st->cap = 0;
	st->nr_used = 0;
}
