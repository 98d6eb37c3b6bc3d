// SPDX-License-Identifier: GPL-2.0
/*
 * debugfs interface: /sys/kernel/debug/objcg_shadow/.  Every file is a
 * read-only snapshot taken at open(), so a reader sees one consistent
 * text however slowly it reads.  Formats are documented in README.md.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/utsname.h>
#include <generated/utsrelease.h>
#include <objcg_shadow/outbuf.h>
#include "osh_module.h"

typedef void (*osh_dump_fn)(struct osh_buf *ob);

struct osh_snapshot {
	size_t len;
	char text[];
};

static struct dentry *osh_debugfs_dir;

struct osh_debugfs_file {
	const char *name;
	osh_dump_fn dump;
	size_t size_hint;	/* the last snapshot's size */
};

/*
 * One dump into a buffer of the last snapshot's size (plus a quarter),
 * and only if the text outgrew it a second one: the dumps walk every
 * memcg, CPU and stock slot, so measuring first would double that.
 */
static struct osh_snapshot *osh_snapshot_take(struct osh_debugfs_file *f)
{
	struct osh_snapshot *snap;
	struct osh_buf ob;
	size_t size;

	size = max_t(size_t, READ_ONCE(f->size_hint), PAGE_SIZE);
	size += size / 4;
	for (;;) {
		snap = kvmalloc(sizeof(*snap) + size, GFP_KERNEL);
		if (!snap)
			return NULL;
		osh_buf_init(&ob, snap->text, size);
		f->dump(&ob);
		snap->len = ob.len;
		WRITE_ONCE(f->size_hint, snap->len + 1);
		if (snap->len < size)
			return snap;
		size = snap->len + 1 + size / 2;
		kvfree(snap);
	}
}

static int osh_snapshot_open(struct inode *inode, struct file *file)
{
	struct osh_snapshot *snap = osh_snapshot_take(inode->i_private);

	if (!snap)
		return -ENOMEM;
	file->private_data = snap;
	return 0;
}

static ssize_t osh_snapshot_read(struct file *file, char __user *ubuf,
				 size_t count, loff_t *ppos)
{
	struct osh_snapshot *snap = file->private_data;

	return simple_read_from_buffer(ubuf, count, ppos, snap->text,
				       snap->len);
}

static int osh_snapshot_release(struct inode *inode, struct file *file)
{
	kvfree(file->private_data);
	return 0;
}

static const struct file_operations osh_snapshot_fops = {
	.owner = THIS_MODULE,
	.open = osh_snapshot_open,
	.read = osh_snapshot_read,
	.llseek = default_llseek,
	.release = osh_snapshot_release,
};

static void osh_dump_cgroups(struct osh_buf *ob)
{
	osh_tree_dump(&osh_tree, ob);
}

static void osh_dump_version(struct osh_buf *ob)
{
	osh_buf_printf(ob, "version=%s built_for=%s running=%s ",
		       OSH_VERSION, UTS_RELEASE, init_utsname()->release);
	osh_buf_printf(ob, "page_size=%lu nr_cpu_ids=%u nr_node_ids=%u\n",
		       PAGE_SIZE, nr_cpu_ids, nr_node_ids);
}

static void osh_dump_stats(struct osh_buf *ob)
{
	osh_tree_dump_stats(&osh_tree, ob);
	osh_paths_dump_stats(ob);
	osh_kmem_dump_hotplug(ob);
	osh_events_dump(ob);
	osh_kmem_dump_events(ob);
	osh_fault_dump_stats(ob);
}

/* Every file is a snapshot of one dump function (formats: README.md). */
static struct osh_debugfs_file osh_debugfs_files[] = {
	{ "cgroups", osh_dump_cgroups },
	{ "hooks", osh_hooks_dump },
	{ "stats", osh_dump_stats },
	{ "version", osh_dump_version },
	{ "kmem", osh_kmem_dump_memcgs },
	{ "designs", osh_kmem_dump_designs },
	{ "observed", osh_observed_dump },
	{ "objects", osh_kmem_dump_objects },
	{ "slabmodel", osh_slabmodel_dump },
	{ "pins", osh_kmem_dump_pins },
	{ "slabinfo", osh_kmem_dump_slabinfo },
};

/**
 * osh_debugfs_init() - create /sys/kernel/debug/objcg_shadow/
 *
 * Return: 0 or -ENODEV when debugfs is not available.
 */
int osh_debugfs_init(void)
{
	struct dentry *dir = debugfs_create_dir(KBUILD_MODNAME, NULL);
	size_t i;

	if (IS_ERR(dir)) {
		pr_err("cannot create debugfs directory: error %ld\n",
		       PTR_ERR(dir));
		return -ENODEV;
	}
	osh_debugfs_dir = dir;
	for (i = 0; i < ARRAY_SIZE(osh_debugfs_files); i++)
		debugfs_create_file(osh_debugfs_files[i].name, 0444, dir,
				    &osh_debugfs_files[i], &osh_snapshot_fops);
	return 0;
}

/**
 * osh_debugfs_exit() - remove the debugfs directory; waits for readers
 */
void osh_debugfs_exit(void)
{
	debugfs_remove(osh_debugfs_dir);
	osh_debugfs_dir = NULL;
}
