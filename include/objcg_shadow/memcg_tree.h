/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shadow memory cgroups: one record per kernel memcg, keyed by cgroup id.
 *
 * Pure logic: builds against osh_env.h only, so the same file compiles into
 * the module and into the userspace unit tests.
 *
 * Concurrency: writers (cgroup lifecycle hooks, discovery, path worker)
 * serialise on tree->lock; dumps take it per record (osh_tree_walk());
 * hot-path lookups by id walk the hash under rcu_read_lock().  Records are
 * freed through RCU once their last reference is gone.  The live and
 * graveyard lists are lock-only: a record moves between them, which RCU
 * list walkers could not follow.
 */
#ifndef OBJCG_SHADOW_MEMCG_TREE_H
#define OBJCG_SHADOW_MEMCG_TREE_H

#include "osh_env.h"

/*
 * Kernel memcg lifecycle as seen by the hooks.  States only move forward:
 * a late event for an earlier state (e.g. discovery racing with offline)
 * never moves a record back.
 */
enum osh_memcg_state {
	OSH_MEMCG_ONLINE,	/* css_online returned 0 */
	OSH_MEMCG_OFFLINE,	/* css_offline: rmdir'ed, may still be pinned */
	OSH_MEMCG_RELEASED,	/* css_released: offline, awaiting free */
	OSH_MEMCG_FREED,	/* css_free: the kernel memcg is gone */
	OSH_MEMCG_NR_STATES,
};

#define OSH_MEMCG_HASH_BITS	8
#define OSH_MEMCG_HASH_SIZE	BIT(OSH_MEMCG_HASH_BITS)

/* Upper bound for the keep_freed parameter: freed records kept for display */
#define OSH_KEEP_FREED_MAX	65536U

/* Accounting designs run side by side (see acct.h) */
#define OSH_MAX_DESIGNS		8

struct osh_mdesign;

struct osh_memcg_tree;

struct osh_memcg {
	struct osh_memcg_tree *tree;
	struct hlist_node hnode;	/* tree->hash, until freed */
	struct list_head node;		/* tree->live, then tree->graveyard */
	struct rcu_head rcu;
	refcount_t ref;
	u64 id;				/* cgroup id == cgroupfs inode number */
	u64 parent_id;			/* 0 for the root */
	struct osh_memcg *parent;	/* referenced; NULL if root or unknown */
	int level;
	int state;			/* enum osh_memcg_state */
	char *path;			/* NULL until resolved; tree->lock */
	atomic_long_t tasks_attached;	/* tasks moved into this memcg */
	atomic_long_t attach_ops;	/* attach operations targeting it */
	bool discovered;		/* found by the load-time walk */
	/* when a hook saw it go offline; 0: still online, or dead at load */
	u64 offline_ns;
	/* per-design accounting state, owned by acct.c */
	struct osh_mdesign *design[OSH_MAX_DESIGNS];
};

/* Global tree counters, all visible in debugfs */
struct osh_tree_stats {
	atomic_long_t created;
	atomic_long_t freed;		/* kernel freed the memcg */
	atomic_long_t released;		/* records whose memory was released */
	atomic_long_t alloc_failed;	/* record or path allocation failed */
	atomic_long_t unknown_id;	/* event for an id never seen */
	atomic_long_t orphans;		/* parent id not found at creation */
	atomic_long_t stale_state;	/* event older than the current state */
};

struct osh_memcg_tree {
	spinlock_t lock;		/* writers and dumps; see top of file */
	struct hlist_head hash[OSH_MEMCG_HASH_SIZE];
	struct list_head live;		/* not freed, in creation order */
	struct list_head graveyard;	/* freed, oldest first */
	unsigned int nr_live;
	unsigned int nr_graveyard;
	unsigned int keep_freed;	/* graveyard capacity */
	struct osh_tree_stats stats;
	/* called from RCU when a record's memory goes, to free its state */
	void (*release)(struct osh_memcg *memcg);
};

const char *osh_memcg_state_name(int state);

void osh_tree_init(struct osh_memcg_tree *tree, unsigned int keep_freed,
		   void (*release)(struct osh_memcg *memcg));
void osh_tree_destroy(struct osh_memcg_tree *tree);

struct osh_memcg *osh_memcg_lookup(struct osh_memcg_tree *tree, u64 id);
struct osh_memcg *osh_memcg_get_by_id(struct osh_memcg_tree *tree, u64 id);
void osh_memcg_put(struct osh_memcg *memcg);

struct osh_memcg *osh_memcg_observe(struct osh_memcg_tree *tree, u64 id,
				    u64 parent_id, int level, int state,
				    bool discovered, gfp_t gfp);
int osh_memcg_set_state(struct osh_memcg_tree *tree, u64 id, int state);
int osh_memcg_set_path(struct osh_memcg_tree *tree, u64 id,
		       const char *path, gfp_t gfp);
int osh_memcg_attach(struct osh_memcg_tree *tree, u64 id, long nr_tasks);
size_t osh_memcg_pending_paths(struct osh_memcg_tree *tree, u64 *ids,
			       size_t max);

int osh_tree_walk(struct osh_memcg_tree *tree, bool freed,
		  void (*fn)(struct osh_memcg *memcg, void *arg), void *arg);

struct osh_buf;
void osh_tree_dump(struct osh_memcg_tree *tree, struct osh_buf *ob);
void osh_tree_dump_stats(struct osh_memcg_tree *tree, struct osh_buf *ob);

#endif /* OBJCG_SHADOW_MEMCG_TREE_H */
