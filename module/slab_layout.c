// SPDX-License-Identifier: GPL-2.0
/*
 * Load-time check of the SLUB layout mirrors in compat.h.  Object sizes
 * and SLAB_ACCOUNT come from struct kmem_cache, which the headers do not
 * give us; if the mirror does not describe this kernel, the module must
 * not guess: it refuses to load and says which check failed.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kprobes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>
#include "compat.h"
#include "osh_module.h"

/* A constructor keeps the verification caches from being merged. */
static void osh_verify_ctor(void *obj)
{
}

static int osh_check(bool ok, const char *what, unsigned long got,
		     unsigned long want)
{
	if (ok)
		return 0;
	pr_err("SLUB layout check failed: %s (read %lu, expected %lu); this kernel's struct kmem_cache or struct slab differs from the %s layout objcg_shadow knows\n",
	       what, got, want, OSH_KERNEL_FAMILY);
	return -ENOEXEC;
}

/*
 * ksize() is s->size for a plain cache; red zones, poisoning and generic
 * KASAN's metadata sit past the object, so there it is object_size and
 * s->size (what the kernel charges) only has to cover it.
 */
static unsigned long osh_expected_ksize(const struct osh_slub_cache_prefix *l,
					unsigned int object_size)
{
	if (l->flags & (SLAB_RED_ZONE | SLAB_POISON | SLAB_KASAN))
		return object_size;
	return l->size;
}

static int osh_verify_cache(struct kmem_cache *s, unsigned int object_size,
			    slab_flags_t flags)
{
	const struct osh_slub_cache_prefix *l = osh_cache_layout(s);
	unsigned long want_ksize = osh_expected_ksize(l, object_size);
	void *obj = kmem_cache_alloc(s, GFP_KERNEL);
	int err;

	if (!obj)
		return -ENOMEM;
	err = osh_check(l->object_size == object_size &&
			kmem_cache_size(s) == object_size,
			"kmem_cache.object_size", l->object_size, object_size);
	err = err ?: osh_check((l->flags & flags) == flags,
			       "kmem_cache.flags has the requested flags",
			       l->flags, flags);
	err = err ?: osh_check(!(l->flags & (SLAB_ACCOUNT |
					      SLAB_RECLAIM_ACCOUNT) & ~flags),
			       "kmem_cache.flags lacks flags not requested",
			       l->flags, flags);
	err = err ?: osh_check(l->size >= want_ksize && ksize(obj) == want_ksize,
			       "kmem_cache.size", l->size, ksize(obj));
	err = err ?: osh_check(osh_obj_cache(obj) == s, "slab.slab_cache",
			       (unsigned long)osh_obj_cache(obj),
			       (unsigned long)s);
	kmem_cache_free(s, obj);
	return err;
}

static int osh_verify_kmalloc(gfp_t gfp, bool accounted)
{
	void *obj = kmalloc(100, gfp);
	struct kmem_cache *s;
	int err;

	if (!obj)
		return -ENOMEM;
	s = osh_obj_cache(obj);
	err = osh_check(s, "kmalloc object in a slab", 0, 1);
	err = err ?: osh_check(ksize(obj) ==
			       osh_expected_ksize(osh_cache_layout(s),
						  osh_cache_layout(s)->object_size),
			       "kmalloc cache size", osh_cache_layout(s)->size,
			       ksize(obj));
	err = err ?: osh_check(!!(osh_cache_layout(s)->flags & SLAB_ACCOUNT) ==
			       accounted, "kmalloc-cg caches are SLAB_ACCOUNT",
			       osh_cache_layout(s)->flags, accounted);
	kfree(obj);
	return err;
}

/* Offset of kmem_cache.name, found on the verification caches; 0: unknown. */
static unsigned int osh_cache_name_off;

/*
 * Read a pointer field of @s and check that it points into the kernel half:
 * a nofault read of a non-canonical address is a #GP, which x86 warns about.
 */
static const char *osh_cache_ptr_field(const struct kmem_cache *s,
				       unsigned int off)
{
	const char *p;

	if (copy_from_kernel_nofault(&p, (const char *)s + off, sizeof(p)) ||
	    (unsigned long)p < PAGE_OFFSET)
		return NULL;
	return p;
}

static bool osh_cache_name_at(const struct kmem_cache *s, unsigned int off,
			      const char *want)
{
	const char *name = osh_cache_ptr_field(s, off);
	size_t len = strlen(want) + 1;
	char got[32];

	if (!name || len > sizeof(got) || copy_from_kernel_nofault(got, name, len))
		return false;
	return !memcmp(got, want, len);
}

/*
 * The name is further into struct kmem_cache than the mirror, at an offset
 * that depends on the config: the one pointer field that holds both
 * verification caches' names is it.  Not finding it only loses names.
 */
static void osh_find_cache_name(const struct kmem_cache *a,
				const struct kmem_cache *b)
{
	unsigned int off;

	for (off = sizeof(struct osh_slub_cache_prefix); off < 512;
	     off += sizeof(void *)) {
		if (osh_cache_name_at(a, off, "objcg_shadow_verify_a") &&
		    osh_cache_name_at(b, off, "objcg_shadow_verify_b")) {
			osh_cache_name_off = off;
			return;
		}
	}
	pr_warn("kmem_cache.name not found: slab model caches are named by size\n");
}

/**
 * osh_cache_names_known() - whether osh_cache_name() can name caches
 *
 * Return: true once the load found kmem_cache.name.
 */
bool osh_cache_names_known(void)
{
	return osh_cache_name_off;
}

/**
 * osh_cache_name() - the name of a slab cache
 * @cache: a struct kmem_cache, as an address
 * @buf: output
 * @len: its size
 *
 * Read without faulting: the cache may have been destroyed since the
 * event that named it.
 *
 * Return: true if @buf holds the name.
 * Context: any.
 */
bool osh_cache_name(unsigned long cache, char *buf, size_t len)
{
	const char *name;
	size_t i;

	if (!osh_cache_name_off || !len)
		return false;
	name = osh_cache_ptr_field((const struct kmem_cache *)cache,
				   osh_cache_name_off);
	if (!name)
		return false;
	for (i = 0; i < len - 1; i++) {
		if (copy_from_kernel_nofault(&buf[i], name + i, 1))
			return false;
		if (!buf[i])
			return i > 0;
	}
	buf[i] = '\0';
	return true;
}

static int osh_slab_layout_verify(void)
{
	struct kmem_cache *a, *b;
	int err = -ENOMEM;

	a = kmem_cache_create("objcg_shadow_verify_a", 200, 0,
			      SLAB_ACCOUNT | SLAB_RECLAIM_ACCOUNT,
			      osh_verify_ctor);
	b = kmem_cache_create("objcg_shadow_verify_b", 72, 0, 0,
			      osh_verify_ctor);
	if (a && b) {
		err = osh_verify_cache(a, 200, SLAB_ACCOUNT |
				       SLAB_RECLAIM_ACCOUNT);
		err = err ?: osh_verify_cache(b, 72, 0);
		err = err ?: osh_verify_kmalloc(GFP_KERNEL, false);
		err = err ?: osh_verify_kmalloc(GFP_KERNEL_ACCOUNT, true);
		if (!err)
			osh_find_cache_name(a, b);
	}
	kmem_cache_destroy(a);
	kmem_cache_destroy(b);
	if (!err)
		pr_info("SLUB layout verified\n");
	return err;
}

/* "6.12.118+deb13-amd64" is of the family "6.12", "6.120.1" is not. */
static bool osh_release_in_family(const char *release, const char *family)
{
	size_t n = strlen(family);

	return !strncmp(release, family, n) &&
	       (release[n] == '.' || release[n] == '-' || release[n] == '+');
}

#if OSH_HAVE_OBJ_STOCK_TRYLOCK
struct osh_obj_stock_pcp __percpu *osh_kernel_obj_stock;
#endif

/**
 * osh_kernel_symbol() - address of a kernel symbol, exported or not
 * @name: symbol name
 *
 * kallsyms_lookup_name() is not exported; a kprobe on it gives its
 * address (past the endbr64 on IBT kernels, which an indirect call must
 * not skip).
 *
 * Return: the address, or 0 if @name (or kallsyms) cannot be found.
 */
unsigned long osh_kernel_symbol(const char *name)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long (*lookup)(const char *name);
	unsigned long addr;

	if (register_kprobe(&kp))
		return 0;
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);
#ifdef CONFIG_X86_KERNEL_IBT
	u32 insn;

	/* endbr64: f3 0f 1e fa */
	memcpy(&insn, (void *)(addr - ENDBR_INSN_SIZE), sizeof(insn));
	if (insn == 0xfa1e0ff3)
		addr -= ENDBR_INSN_SIZE;
#endif
	lookup = (void *)addr;
	return lookup(name);
}

/**
 * osh_kernel_verify() - is this a kernel whose layouts the module knows
 *
 * The running release must be of the family the module was built for,
 * the SLUB mirrors must describe it, and the family's private symbols
 * must exist.  Every failure is logged with what failed.
 *
 * Return: 0, -ENOEXEC (not verified), -ENOENT (symbol missing), -ENOMEM.
 */
int osh_kernel_verify(void)
{
	const char *release = init_utsname()->release;
	int err;

	if (!osh_release_in_family(release, OSH_KERNEL_FAMILY)) {
		pr_err("running %s, built for the %s family\n", release,
		       OSH_KERNEL_FAMILY);
		return -ENOEXEC;
	}
	err = osh_slab_layout_verify();
	if (err)
		return err;
	err = osh_compat_init();
	if (err)
		pr_err("a private symbol of %s is missing: error %d\n",
		       release, err);
	return err;
}
