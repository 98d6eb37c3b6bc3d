// SPDX-License-Identifier: GPL-2.0
/*
 * Shadow memcg records: creation, lifecycle, paths, attach counters, dumps.
 */
#include <objcg_shadow/memcg_tree.h>
#include <objcg_shadow/outbuf.h>

static const char *const osh_state_names[OSH_MEMCG_NR_STATES] = {
	[OSH_MEMCG_ONLINE] = "online",
	[OSH_MEMCG_OFFLINE] = "offline",
	[OSH_MEMCG_RELEASED] = "released",
	[OSH_MEMCG_FREED] = "freed",
};

/**
 * osh_memcg_state_name() - name of a memcg state, as printed in debugfs
 * @state: enum osh_memcg_state value
 *
 * Return: a static string; "invalid" for out-of-range values.
 */
const char *osh_memcg_state_name(int state)
{
	if (state < 0 || state >= OSH_MEMCG_NR_STATES)
		return "invalid";
	return osh_state_names[state];
}

static struct hlist_head *osh_bucket(struct osh_memcg_tree *tree, u64 id)
{
	return &tree->hash[hash_64(id, OSH_MEMCG_HASH_BITS)];
}

/**
 * osh_tree_init() - initialise an empty tree
 * @tree: the tree
 * @keep_freed: how many freed records to keep for display
 * @release: frees the per-design state of a record, may be NULL
 */
void osh_tree_init(struct osh_memcg_tree *tree, unsigned int keep_freed,
		   void (*release)(struct osh_memcg *memcg))
{
	unsigned int i;

	memset(tree, 0, sizeof(*tree));
	spin_lock_init(&tree->lock);
	for (i = 0; i < OSH_MEMCG_HASH_SIZE; i++)
		INIT_HLIST_HEAD(&tree->hash[i]);
	INIT_LIST_HEAD(&tree->live);
	INIT_LIST_HEAD(&tree->graveyard);
	tree->keep_freed = min(keep_freed, OSH_KEEP_FREED_MAX);
	tree->release = release;
}

static void osh_memcg_free_rcu(struct rcu_head *head)
{
	struct osh_memcg *memcg = container_of(head, struct osh_memcg, rcu);

	if (memcg->tree->release)
		memcg->tree->release(memcg);
	kfree(memcg->path);
	kfree(memcg);
}

/**
 * osh_memcg_put() - drop a reference to a shadow memcg
 * @memcg: the record, may be NULL
 *
 * The last put releases the record's reference on its parent too; the
 * walk up is iterative so deep hierarchies cannot overflow the stack.
 */
void osh_memcg_put(struct osh_memcg *memcg)
{
	while (memcg && refcount_dec_and_test(&memcg->ref)) {
		struct osh_memcg *parent = memcg->parent;

		call_rcu(&memcg->rcu, osh_memcg_free_rcu);
		memcg = parent;
	}
}

/**
 * osh_memcg_lookup() - find a not-yet-freed record by cgroup id
 * @tree: the tree
 * @id: cgroup id
 *
 * Context: caller holds rcu_read_lock() or tree->lock.
 * Return: the record, valid until the read-side section ends, or NULL.
 */
struct osh_memcg *osh_memcg_lookup(struct osh_memcg_tree *tree, u64 id)
{
	struct osh_memcg *memcg;

	hlist_for_each_entry_rcu(memcg, osh_bucket(tree, id), hnode) {
		if (memcg->id == id)
			return memcg;
	}
	return NULL;
}

/**
 * osh_memcg_get_by_id() - find a record by id and take a reference
 * @tree: the tree
 * @id: cgroup id
 *
 * Return: a referenced record (release with osh_memcg_put()) or NULL.
 */
struct osh_memcg *osh_memcg_get_by_id(struct osh_memcg_tree *tree, u64 id)
{
	struct osh_memcg *memcg;

	rcu_read_lock();
	memcg = osh_memcg_lookup(tree, id);
	if (memcg && !refcount_inc_not_zero(&memcg->ref))
		memcg = NULL;
	rcu_read_unlock();
	return memcg;
}

/* Drop the tree's reference of the oldest freed records beyond capacity. */
static void osh_trim_graveyard(struct osh_memcg_tree *tree,
			       struct list_head *evicted)
{
	while (tree->nr_graveyard > tree->keep_freed) {
		struct osh_memcg *old = list_first_entry(&tree->graveyard,
							 struct osh_memcg,
							 node);

		list_move_tail(&old->node, evicted);
		tree->nr_graveyard--;
	}
}

static void osh_put_evicted(struct osh_memcg_tree *tree,
			    struct list_head *evicted)
{
	struct osh_memcg *memcg, *tmp;

	list_for_each_entry_safe(memcg, tmp, evicted, node) {
		list_del(&memcg->node);
		atomic_long_inc(&tree->stats.released);
		osh_memcg_put(memcg);
	}
}

static struct osh_memcg *osh_memcg_alloc(struct osh_memcg_tree *tree, u64 id,
					 u64 parent_id, int level, gfp_t gfp)
{
	struct osh_memcg *memcg = osh_zalloc(sizeof(*memcg), gfp);

	if (!memcg) {
		atomic_long_inc(&tree->stats.alloc_failed);
		return NULL;
	}
	refcount_set(&memcg->ref, 1);
	INIT_LIST_HEAD(&memcg->node);
	memcg->tree = tree;
	memcg->id = id;
	memcg->parent_id = parent_id;
	memcg->level = level;
	memcg->state = OSH_MEMCG_ONLINE;
	atomic_long_set(&memcg->tasks_attached, 0);
	atomic_long_set(&memcg->attach_ops, 0);
	return memcg;
}

/* Move @memcg forward to @state.  Caller holds tree->lock. */
static int osh_advance_locked(struct osh_memcg_tree *tree,
			      struct osh_memcg *memcg, int state,
			      struct list_head *evicted)
{
	if (state <= memcg->state) {
		atomic_long_inc(&tree->stats.stale_state);
		return -EALREADY;
	}
	WRITE_ONCE(memcg->state, state);
	if (state == OSH_MEMCG_FREED) {
		hlist_del_init_rcu(&memcg->hnode);
		list_move_tail(&memcg->node, &tree->graveyard);
		tree->nr_live--;
		tree->nr_graveyard++;
		atomic_long_inc(&tree->stats.freed);
		osh_trim_graveyard(tree, evicted);
	}
	return 0;
}

/**
 * osh_memcg_observe() - record that a memcg exists in a given state
 * @tree: the tree
 * @id: cgroup id of the memcg
 * @parent_id: cgroup id of its parent memcg, 0 for the root
 * @level: depth in the hierarchy, 0 for the root
 * @state: state the kernel reports (ONLINE from css_online, anything from
 *	   the load-time walk)
 * @discovered: found by the load-time walk rather than a hook
 * @gfp: allocation context (GFP_ATOMIC from probes)
 *
 * Creates the record if the id is new, otherwise only moves its state
 * forward, so discovery and hooks may race in any order.
 *
 * Return: the record (not referenced; valid under tree rules) or NULL if
 * it had to be created and allocation failed (counted).
 */
struct osh_memcg *osh_memcg_observe(struct osh_memcg_tree *tree, u64 id,
				    u64 parent_id, int level, int state,
				    bool discovered, gfp_t gfp)
{
	struct osh_memcg *memcg, *fresh;
	unsigned long flags;
	LIST_HEAD(evicted);

	/* Allocate outside the lock; most calls create a record. */
	fresh = osh_memcg_alloc(tree, id, parent_id, level, gfp);

	spin_lock_irqsave(&tree->lock, flags);
	memcg = osh_memcg_lookup(tree, id);
	if (!memcg && fresh) {
		memcg = fresh;
		fresh = NULL;
		memcg->discovered = discovered;
		if (parent_id) {
			memcg->parent = osh_memcg_lookup(tree, parent_id);
			if (memcg->parent)
				refcount_inc(&memcg->parent->ref);
			else
				atomic_long_inc(&tree->stats.orphans);
		}
		hlist_add_head_rcu(&memcg->hnode, osh_bucket(tree, id));
		list_add_tail(&memcg->node, &tree->live);
		tree->nr_live++;
		atomic_long_inc(&tree->stats.created);
		if (state != OSH_MEMCG_ONLINE)
			osh_advance_locked(tree, memcg, state, &evicted);
	} else if (memcg && state > memcg->state) {
		osh_advance_locked(tree, memcg, state, &evicted);
	}
	spin_unlock_irqrestore(&tree->lock, flags);

	kfree(fresh);
	osh_put_evicted(tree, &evicted);
	return memcg;
}

/**
 * osh_memcg_set_state() - move a memcg's record forward to @state
 * @tree: the tree
 * @id: cgroup id
 * @state: new state
 *
 * Return: 0, -ENOENT for an unknown id, -EALREADY for a stale event; the
 * last two are counted.
 */
int osh_memcg_set_state(struct osh_memcg_tree *tree, u64 id, int state)
{
	struct osh_memcg *memcg;
	unsigned long flags;
	LIST_HEAD(evicted);
	int ret;

	spin_lock_irqsave(&tree->lock, flags);
	memcg = osh_memcg_lookup(tree, id);
	if (memcg) {
		/* a hook saw it go: the age of a dying memcg counts from here */
		if (memcg->state == OSH_MEMCG_ONLINE && state > memcg->state)
			WRITE_ONCE(memcg->offline_ns, ktime_get_mono_fast_ns());
		ret = osh_advance_locked(tree, memcg, state, &evicted);
	} else {
		atomic_long_inc(&tree->stats.unknown_id);
		ret = -ENOENT;
	}
	spin_unlock_irqrestore(&tree->lock, flags);
	osh_put_evicted(tree, &evicted);
	return ret;
}

/**
 * osh_memcg_set_path() - set or replace the cgroup path of a record
 * @tree: the tree
 * @id: cgroup id
 * @path: absolute cgroup path, e.g. "/a/b"
 * @gfp: allocation context
 *
 * Return: 0, -ENOENT for an unknown id, -ENOMEM (counted).
 */
int osh_memcg_set_path(struct osh_memcg_tree *tree, u64 id, const char *path,
		       gfp_t gfp)
{
	struct osh_memcg *memcg;
	char *copy = kstrdup(path, gfp);
	unsigned long flags;

	if (!copy) {
		atomic_long_inc(&tree->stats.alloc_failed);
		return -ENOMEM;
	}
	spin_lock_irqsave(&tree->lock, flags);
	memcg = osh_memcg_lookup(tree, id);
	if (memcg)
		swap(memcg->path, copy);
	spin_unlock_irqrestore(&tree->lock, flags);
	kfree(copy);
	return memcg ? 0 : -ENOENT;
}

/**
 * osh_memcg_attach() - count tasks attached to a memcg
 * @tree: the tree
 * @id: cgroup id of the destination memcg
 * @nr_tasks: how many tasks the operation moved
 *
 * Context: any; lock-free.
 * Return: 0 or -ENOENT (counted).
 */
int osh_memcg_attach(struct osh_memcg_tree *tree, u64 id, long nr_tasks)
{
	struct osh_memcg *memcg;

	rcu_read_lock();
	memcg = osh_memcg_lookup(tree, id);
	if (memcg) {
		atomic_long_add(nr_tasks, &memcg->tasks_attached);
		atomic_long_inc(&memcg->attach_ops);
	}
	rcu_read_unlock();
	if (!memcg) {
		atomic_long_inc(&tree->stats.unknown_id);
		return -ENOENT;
	}
	return 0;
}

/**
 * osh_memcg_pending_paths() - ids of live records whose path is unknown
 * @tree: the tree
 * @ids: output array
 * @max: capacity of @ids
 *
 * Return: number of ids stored.
 */
size_t osh_memcg_pending_paths(struct osh_memcg_tree *tree, u64 *ids,
			       size_t max)
{
	struct osh_memcg *memcg;
	unsigned long flags;
	size_t n = 0;

	spin_lock_irqsave(&tree->lock, flags);
	list_for_each_entry(memcg, &tree->live, node) {
		if (n == max)
			break;
		if (!memcg->path)
			ids[n++] = memcg->id;
	}
	spin_unlock_irqrestore(&tree->lock, flags);
	return n;
}

/*
 * Referenced snapshot of the records: the only work under tree->lock (IRQs
 * off) is one reference per record.  Records created after the count are
 * left out, as if they came later.  Returns NULL with *nr 0 for an empty
 * tree, or ERR_PTR(-ENOMEM).
 */
static struct osh_memcg **osh_tree_grab(struct osh_memcg_tree *tree,
					bool freed, size_t *nr)
{
	struct list_head *lists[] = { &tree->live, &tree->graveyard };
	struct osh_memcg **v, *memcg;
	unsigned long flags;
	size_t max, n = 0;
	unsigned int l;

	max = READ_ONCE(tree->nr_live) + (freed ? READ_ONCE(tree->nr_graveyard) : 0);
	*nr = 0;
	if (!max)
		return NULL;
	v = kvmalloc_array(max, sizeof(*v), GFP_KERNEL);
	if (!v)
		return ERR_PTR(-ENOMEM);
	spin_lock_irqsave(&tree->lock, flags);
	for (l = 0; l < (freed ? 2 : 1); l++) {
		list_for_each_entry(memcg, lists[l], node) {
			if (n == max)
				break;
			refcount_inc(&memcg->ref);
			v[n++] = memcg;
		}
	}
	spin_unlock_irqrestore(&tree->lock, flags);
	*nr = n;
	return v;
}

/**
 * osh_tree_walk() - call @fn on each record, without holding tree->lock
 * @tree: the tree
 * @freed: the kept freed records too, after the live ones
 * @fn: called in process context, holding a reference on @memcg
 * @arg: passed to @fn
 *
 * Walks that print or sum per record must not hold tree->lock (IRQs off)
 * across thousands of records: they walk a referenced snapshot and
 * reschedule between records.
 *
 * Return: 0, or -ENOMEM if the snapshot could not be allocated.
 */
int osh_tree_walk(struct osh_memcg_tree *tree, bool freed,
		  void (*fn)(struct osh_memcg *memcg, void *arg), void *arg)
{
	struct osh_memcg **v;
	size_t nr, i;

	v = osh_tree_grab(tree, freed, &nr);
	if (IS_ERR(v))
		return PTR_ERR(v);
	for (i = 0; i < nr; i++) {
		fn(v[i], arg);
		cond_resched();
	}
	for (i = 0; i < nr; i++)
		osh_memcg_put(v[i]);
	kvfree(v);
	return 0;
}

static void osh_dump_one(struct osh_buf *ob, const struct osh_memcg *memcg)
{
	osh_buf_printf(ob,
		       "id=%llu parent=%llu level=%d state=%s tasks_attached=%ld attach_ops=%ld discovered=%d refs=%d path=",
		       (unsigned long long)memcg->id,
		       (unsigned long long)memcg->parent_id, memcg->level,
		       osh_memcg_state_name(memcg->state),
		       atomic_long_read(&memcg->tasks_attached),
		       atomic_long_read(&memcg->attach_ops),
		       memcg->discovered,
		       /* beyond the tree's and the dump's: children, objcgs */
		       refcount_read(&memcg->ref) - 2);
	if (memcg->path)
		osh_buf_puts_escaped(ob, memcg->path);
	else
		osh_buf_printf(ob, "?");
	osh_buf_printf(ob, "\n");
}

struct osh_tree_dump_arg {
	struct osh_memcg_tree *tree;
	struct osh_buf *ob;
};

static void osh_tree_dump_locked(struct osh_memcg *memcg, void *arg)
{
	struct osh_tree_dump_arg *a = arg;
	unsigned long flags;

	/* the lock keeps the path from being replaced under us */
	spin_lock_irqsave(&a->tree->lock, flags);
	osh_dump_one(a->ob, memcg);
	spin_unlock_irqrestore(&a->tree->lock, flags);
}

/**
 * osh_tree_dump() - one line per record: live ones, then kept freed ones
 * @tree: the tree
 * @ob: output
 */
void osh_tree_dump(struct osh_memcg_tree *tree, struct osh_buf *ob)
{
	struct osh_tree_dump_arg a = { .tree = tree, .ob = ob };

	if (osh_tree_walk(tree, true, osh_tree_dump_locked, &a))
		osh_buf_printf(ob, "error=ENOMEM\n");
}

/**
 * osh_tree_dump_stats() - tree counters as key=value lines
 * @tree: the tree
 * @ob: output
 */
void osh_tree_dump_stats(struct osh_memcg_tree *tree, struct osh_buf *ob)
{
	const struct osh_tree_stats *st = &tree->stats;

	osh_buf_printf(ob, "memcgs_live=%u\nmemcgs_freed_kept=%u\n",
		       READ_ONCE(tree->nr_live), READ_ONCE(tree->nr_graveyard));
	osh_buf_printf(ob, "memcgs_created=%ld\nmemcgs_freed=%ld\n",
		       atomic_long_read(&st->created),
		       atomic_long_read(&st->freed));
	osh_buf_printf(ob, "records_released=%ld\nrecord_alloc_failed=%ld\n",
		       atomic_long_read(&st->released),
		       atomic_long_read(&st->alloc_failed));
	osh_buf_printf(ob, "unknown_id_events=%ld\norphans=%ld\nstale_state_events=%ld\n",
		       atomic_long_read(&st->unknown_id),
		       atomic_long_read(&st->orphans),
		       atomic_long_read(&st->stale_state));
}

/**
 * osh_tree_destroy() - free every record
 * @tree: the tree; no hook may run any more
 *
 * Children are dropped before parents (reverse creation order), and each
 * record's memory goes once its last reference is gone.
 */
void osh_tree_destroy(struct osh_memcg_tree *tree)
{
	struct osh_memcg *memcg, *tmp;
	LIST_HEAD(all);
	unsigned long flags;

	spin_lock_irqsave(&tree->lock, flags);
	list_for_each_entry(memcg, &tree->live, node)
		hlist_del_init_rcu(&memcg->hnode);
	list_splice_init(&tree->live, &all);
	list_splice_init(&tree->graveyard, &all);
	tree->nr_live = 0;
	tree->nr_graveyard = 0;
	spin_unlock_irqrestore(&tree->lock, flags);

	list_for_each_entry_safe_reverse(memcg, tmp, &all, node) {
		list_del(&memcg->node);
		osh_memcg_put(memcg);
	}
}
