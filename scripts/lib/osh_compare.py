# SPDX-License-Identifier: GPL-2.0
"""objcg-shadow compare: the shadow's accounting next to memory.stat.

Joins debugfs records with each cgroup's memory.stat and memory.numa_stat
by cgroup id (the inode number of the cgroup directory).  memory.stat is
hierarchical, so shadow values are summed over each memcg's subtree.

The allowed difference is the kernel's own: memory.stat is flushed lazily,
and the memcg selftests bound the staleness of a counter by
PAGE_SIZE * MEMCG_CHARGE_BATCH (64) * number of CPUs.
"""
from __future__ import annotations

import errno
import os
import sys

import osh_state

CHARGE_BATCH = 64

# counter -> (memory.stat key, shadow kmem field, per-node?)
COUNTERS = [
    ("slab_reclaimable", "slab_reclaimable", True),
    ("slab_unreclaimable", "slab_unreclaimable", True),
    ("slab", None, False),
    ("kernel_stack", "kernel_stack", True),
    ("percpu", "percpu", False),
    ("kernel", None, False),
]

COVERAGE = """\
covered: slab objects charged through the obj stock (every __GFP_ACCOUNT
kmalloc and SLAB_ACCOUNT cache, per node of the object's page), kmem pages
(__memcg_kmem_charge_page: kernel stacks, page tables, pipe buffers, large
kmalloc), kernel stacks and accounted percpu allocations.  not covered:
socket memory ("sock"), zswap, accounted kmem_cache_alloc_bulk()."""


def bound_bytes(page_size: int, ncpus: int) -> int:
    return page_size * CHARGE_BATCH * ncpus


def _shadow_sum(sh, design, ids, field, node=None):
    total = 0
    for cid in ids:
        rec = sh.kmem.get(design, {}).get(cid)
        if not rec:
            continue
        key = field if node is None else f"{field}.N{node}"
        total += int(rec.get(key, 0))
    return total


def _rel(cgdir, cgroupfs) -> str:
    """A cgroup directory as the path cgroup files print ("/a/b")."""
    return "/" + os.path.relpath(cgdir, cgroupfs).lstrip(".")


def _degraded(sh, design, dirs, cgroupfs) -> dict:
    """What the shadow could not track (its allocations failed): memcgs
    without design state or with objcgs missing, whose charges went to an
    ancestor (their own rows cannot match memory.stat; the ancestor's
    subtree still does), and cgroups without a record, whose charges it
    never saw (every row above them is short)."""
    ids, paths = set(), []
    # only after a failure: a cgroup made while the files were read may
    # lack a line or a record for a moment
    if int(sh.stats.get("objcg_alloc_failed", 0)):
        for cid, rec in sh.cgroups.items():
            if rec["state"] != "online" or rec.get("level") in ("0", 0):
                continue
            k = sh.kmem.get(design, {}).get(cid)
            if k is None or int(k.get("objcg_alloc_failed", 0)):
                ids.add(cid)
    if int(sh.stats.get("record_alloc_failed", 0)):
        paths = [_rel(d, cgroupfs) for cid, d in dirs.items()
                 if cid not in sh.cgroups and d != cgroupfs]
    return {"ids": ids, "paths": paths}


def collect(sh: osh_state.Shadow, design: str, cgroupfs: str,
            include_preload: bool, under: str | None) -> dict:
    ncpus = os.cpu_count() or 1
    bound = bound_bytes(sh.page_size, ncpus)
    dirs = osh_state.find_cgroup_dirs(cgroupfs)
    degraded = _degraded(sh, design, dirs, cgroupfs)
    rows = []
    for cid, rec in sorted(sh.cgroups.items(),
                           key=lambda kv: kv[1].get("path", "")):
        if rec["state"] != "online" or cid not in dirs:
            continue
        cgdir = dirs[cid]
        if not os.path.exists(os.path.join(cgdir, "memory.stat")):
            continue            # the root has no memory.stat in 6.1
        rel = _rel(cgdir, cgroupfs)
        if under and not (rel == under or rel.startswith(under.rstrip("/") + "/")):
            continue
        ids = sh.subtree(cid)
        preload = any(sh.cgroups[i].get("discovered") == "1" for i in ids
                      if i in sh.cgroups)
        status_base = "pre-load" if preload else "ok"
        if not preload and (cid in degraded["ids"] or any(
                p.startswith(rel.rstrip("/") + "/") for p in degraded["paths"])):
            status_base = "degraded"
        if preload and not include_preload:
            continue
        try:
            mstat = osh_state.read_memory_stat(cgdir)
            nstat = osh_state.read_numa_stat(cgdir)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENODEV):
                continue        # removed since the walk: nothing to compare
            rows.append({"path": rel, "id": cid, "counter": "*",
                         "error": str(e)})
            continue
        shadow = {}
        for name, field, per_node in COUNTERS:
            if field:
                shadow[name] = _shadow_sum(sh, design, ids, field)
                if per_node:
                    for node in nstat.get(name, {}):
                        shadow[f"{name}.N{node}"] = _shadow_sum(
                            sh, design, ids, field, node)
        shadow["slab"] = shadow["slab_reclaimable"] + shadow["slab_unreclaimable"]
        # what the design's simulated per-CPU batching has flushed so far:
        # memory.stat shows slab bytes only once a stock flushes them
        batched = {f: _shadow_sum(sh, design, ids, "vmstat_" + f)
                   for f in ("slab_reclaimable", "slab_unreclaimable")}
        batched["slab"] = sum(batched.values())
        shadow["kernel"] = _shadow_sum(sh, design, ids, "kmem_pages") * sh.page_size
        kernel = {name: mstat.get(name) for name, _f, _p in COUNTERS}
        for name, _f, per_node in COUNTERS:
            if per_node:
                for node, v in nstat.get(name, {}).items():
                    kernel[f"{name}.N{node}"] = v
        for counter in shadow:
            k = kernel.get(counter)
            if k is None:
                continue
            delta = shadow[counter] - k
            status = status_base
            if status == "ok" and abs(delta) > bound:
                status = "EXCEEDS"
            row = {"path": rel, "id": cid, "counter": counter,
                   "kernel": k, "shadow": shadow[counter],
                   "delta": delta, "bound": bound, "status": status}
            if counter in batched:
                row["simulated_vmstat"] = batched[counter]
                row["vmstat_delta"] = batched[counter] - k
            rows.append(row)
    st = sh.stats
    health = {k: st.get(k, 0) for k in (
        "untracked_frees", "untracked_page_frees", "dropped_objects_map_full",
        "dropped_objects_no_record",
        "dropped_pages_map_full", "dropped_recursion", "not_ready",
        "unknown_memcg", "irq_unattributed", "attribution_checked",
        "attribution_mismatch", "kernel_only", "shadow_only",
        "stale_objects_replaced", "stale_pages_replaced")}
    return {
        "design": design,
        "bound": {"bytes": bound, "page_size": sh.page_size,
                  "charge_batch": CHARGE_BATCH, "cpus": ncpus,
                  "formula": "PAGE_SIZE * MEMCG_CHARGE_BATCH * nr_cpus"},
        "rows": rows,
        "health": health,
        "degraded": {"memcgs": len(degraded["ids"]),
                     "cgroups_without_record": len(degraded["paths"])},
        "tracked": sh.objects,
        "failed": [r for r in rows if r.get("status") == "EXCEEDS"
                   or "error" in r],
    }


def _fmt(n: int) -> str:
    return f"{n:,}"


def print_table(res: dict, out=sys.stdout) -> None:
    b = res["bound"]
    print(f"design {res['design']}; bound per counter = {b['formula']} = "
          f"{b['page_size']} * {b['charge_batch']} * {b['cpus']} = "
          f"{_fmt(b['bytes'])} bytes", file=out)
    head = ("cgroup", "counter", "kernel", "shadow", "delta", "|d|/bound",
            "batched d", "status")
    rows = [r for r in res["rows"] if "error" not in r]
    width = max([len(head[0])] + [len(r["path"]) for r in rows])
    fmt = f"{{:<{width}}}  {{:<22}} {{:>14}} {{:>14}} {{:>12}} {{:>9}} {{:>10}}  {{}}"
    print(fmt.format(*head), file=out)
    for r in rows:
        print(fmt.format(r["path"], r["counter"], _fmt(r["kernel"]),
                         _fmt(r["shadow"]), _fmt(r["delta"]),
                         f"{abs(r['delta']) / r['bound']:.1%}",
                         _fmt(r["vmstat_delta"]) if "vmstat_delta" in r else "-",
                         r["status"]), file=out)
    if any("vmstat_delta" in r for r in rows):
        print("(batched d: the design's simulated memory.stat, i.e. the slab "
              "bytes its per-CPU stocks have flushed, minus the kernel's)",
              file=out)
    for r in res["rows"]:
        if "error" in r:
            print(f"{r['path']}: cannot read: {r['error']}", file=out)
    if not rows:
        print("(no cgroup to compare: only memcgs created after the module "
              "loaded are compared; --all includes older ones)", file=out)
    h = res["health"]
    print("\nevents the shadow could not account (all should be small):",
          file=out)
    print("  " + "  ".join(f"{k}={v}" for k, v in h.items()), file=out)
    dg = res["degraded"]
    if dg["memcgs"] or dg["cgroups_without_record"]:
        print(f"  degraded (shadow allocations failed): {dg['memcgs']} memcgs "
              f"with state missing, {dg['cgroups_without_record']} cgroups "
              f"without a record; rows over them are not judged", file=out)
    t = res["tracked"]
    print(f"  tracked objects={t.get('tracked_objects')} "
          f"bytes={t.get('tracked_bytes')}", file=out)
    print("\n" + COVERAGE, file=out)
    n_bad = len(res["failed"])
    print(f"\n{len(rows)} comparisons, {n_bad} beyond the bound", file=out)


def main(args) -> int:
    try:
        sh = osh_state.Shadow(args.debugfs)
        design = args.design or sh.default_design()
        if design not in sh.kmem and sh.kmem:
            print(f"objcg-shadow compare: unknown design {design!r}; the "
                  f"module runs: {', '.join(sh.kmem)}", file=sys.stderr)
            return 2
        res = collect(sh, design, args.cgroupfs, args.all, args.cgroup)
    except osh_state.StateError as e:
        print(f"objcg-shadow compare: {e}", file=sys.stderr)
        return 2
    osh_state.emit(res, args.json, print_table)
    return 1 if res["failed"] else 0
