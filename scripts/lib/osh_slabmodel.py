# SPDX-License-Identifier: GPL-2.0
"""The slab page model of the memcgptr design (debugfs "slabmodel") and
the kernel's own slab counts it is checked against (/sys/kernel/slab)."""
from __future__ import annotations

import os

from osh_state import DEBUGFS, StateError, as_number, read_records

SYS_SLAB = "/sys/kernel/slab"
LAYOUTS = ("shared", "memcgptr")


def _numbers(rec: dict, drop: tuple[str, ...] = ()) -> dict:
    return {k: as_number(v) for k, v in rec.items() if v != "" and k not in drop}


def parse(records: list[dict]) -> dict:
    """The "slabmodel" records as {"enabled", "log", "total", "memcgptr",
    "events", "caches": {name: {...}}}."""
    out = {"enabled": False, "log": {}, "total": {}, "memcgptr": {},
           "events": {}, "caches": {}}
    for r in records:
        if "enabled" in r:
            out["enabled"] = r["enabled"] == "1"
            out["log"] = _numbers(r)
        elif "total" in r:
            out["total"][r["layout"]] = _numbers(r, ("layout",))
        elif "memcgptr" in r:
            out["memcgptr"] = _numbers(r)
        elif "events" in r:
            out["events"] = _numbers(r)
        elif "cache" in r:
            name = r["name"]
            if name in out["caches"]:       # two caches of one name
                name = "%s@%s" % (name, r["key"])
            out["caches"][name] = _numbers(r, ("name", "key"))
    return out


def read(root: str = DEBUGFS) -> dict:
    model = parse(read_records("slabmodel", root))
    if not model["enabled"]:
        raise StateError("the slab model is off: load objcg_shadow with "
                         "memcgptr in designs= (e.g. designs=v6.1,memcgptr)")
    return model


def kernel_slabs(cache: str, root: str = SYS_SLAB) -> int | None:
    """The kernel's slab count of a cache (merged caches: of the alias),
    or None if the cache has no sysfs directory."""
    try:
        with open(os.path.join(root, cache, "slabs")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cache_delta(before: dict, after: dict, name: str, field: str) -> int:
    """The change of one cache's model field between two readings."""
    old = before["caches"].get(name, {}).get(field, 0)
    return after["caches"].get(name, {}).get(field, 0) - old


def kernel_caches(root: str = SYS_SLAB) -> dict:
    """{name: {"slabs", "objects"}} of every cache directory and alias.
    Without slub_debug "objects" is the slabs' capacity, not objects in
    use: SLUB does not count those."""
    out = {}
    try:
        names = os.listdir(root)
    except OSError:
        return out
    for name in names:
        counts = {}
        for field in ("slabs", "objects"):
            try:
                with open(os.path.join(root, name, field)) as f:
                    counts[field] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        if "slabs" in counts:
            out[name] = counts
    return out


def snapshot(root: str = DEBUGFS) -> dict | None:
    """The model and the kernel's slab counts, or None if the model is off.

    The kernel's counts are read twice: the first reading of a sysfs file
    allocates its dentry and inode (inode_cache: hundreds of objects), and
    the window must not count the reading itself."""
    try:
        read(root)
    except (OSError, StateError):
        return None
    kernel_caches()
    model = read(root)
    return {"model": model, "kernel": kernel_caches()}


# A cache whose kernel change the workload's objects make: its live objects
# fill at least this share of the slots the kernel's new slabs added, and
# the kernel added this many slabs.
DOMINATED_SHARE = 0.8
DOMINATED_SLABS = 20  # one slab is then at most 5% of the change


def window(before: dict, after: dict, page_size: int = 4096) -> dict:
    """What changed between two snapshots: per model cache the kernel's and
    each layout's slabs, and the totals, utilization and pins."""
    rows = []
    for name, c in after["model"]["caches"].items():
        b = before["model"]["caches"].get(name, {})
        kb, ka = before["kernel"].get(name), after["kernel"].get(name)
        row = {"cache": name, "size": c["size"],
               "objs_per_slab": c["objs_per_slab"], "order": c["order"],
               "objects": c["shared_objects"] - b.get("shared_objects", 0),
               "memcg_pools": c["memcg_pools"]}
        for layout in LAYOUTS:
            row[layout + "_slabs"] = c[layout + "_slabs"] - b.get(layout + "_slabs", 0)
            row[layout + "_pages"] = c[layout + "_pages"] - b.get(layout + "_pages", 0)
        row["kernel_slabs"] = ka["slabs"] - kb["slabs"] if ka and kb else None
        # the slots the kernel's new slabs added
        row["kernel_capacity"] = (ka["objects"] - kb["objects"]
                                  if ka and kb and "objects" in ka and "objects" in kb
                                  else None)
        row["whole"] = bool(c.get("whole", 1))
        row["dominated"], row["why_not"] = _dominated(row)
        if row["kernel_slabs"]:
            row["error"] = (row["shared_slabs"] - row["kernel_slabs"]) / row["kernel_slabs"]
        rows.append(row)
    rows.sort(key=lambda r: -max(r["memcgptr_pages"], r["shared_pages"]))
    tot_b, tot_a = before["model"]["total"], after["model"]["total"]
    totals = {}
    for layout in LAYOUTS:
        a = tot_a[layout]
        totals[layout] = {
            "pages": a["model_pages"] - tot_b[layout]["model_pages"],
            "slabs": a["model_slabs"] - tot_b[layout]["model_slabs"],
            "objects": a["model_objects"] - tot_b[layout]["model_objects"],
            # of everything the model holds, not of the window
            "utilization": (a["model_obj_bytes"] / (a["model_pages"] * page_size)
                            if a["model_pages"] else None),
            "pages_held": a["model_pages"]}
    mb, ma = before["model"]["memcgptr"], after["model"]["memcgptr"]
    return {"caches": rows, "totals": totals,
            "pinned_memcgs": ma["pinned_memcgs"], "pinned_pages": ma["pinned_pages"],
            "ptr_swaps": ma["ptr_swaps"] - mb["ptr_swaps"],
            "pages_moved": ma["pages_moved"] - mb["pages_moved"],
            "lost": {"dropped": after["model"]["log"].get("dropped", 0),
                     "alloc_failed": after["model"]["events"].get("alloc_failed", 0),
                     "untracked_frees": (after["model"]["events"]["untracked_frees"] -
                                         before["model"]["events"]["untracked_frees"])}}


def _dominated(row: dict) -> tuple[bool, str]:
    ks, ko = row["kernel_slabs"], row["kernel_capacity"]
    if ks is None or ko is None:
        return False, "no /sys/kernel/slab counts for it"
    if not row["whole"]:
        return False, ("not SLAB_ACCOUNT: the model has only its accounted "
                       "objects, the kernel's slabs hold unaccounted ones too")
    if abs(ks) < DOMINATED_SLABS:
        return False, "the kernel's change is %+d slabs, under %d" % (ks, DOMINATED_SLABS)
    if ko <= 0 or row["objects"] < DOMINATED_SHARE * ko:
        return False, ("its %+d live objects fill under %d%% of the kernel's %+d "
                       "new slots: objects freed in the window left empty slabs "
                       "(SLUB keeps them on per-CPU partial lists, which the "
                       "model does not have), or other users filled them"
                       % (row["objects"], 100 * DOMINATED_SHARE, ko))
    return True, ""


def _pct(x: float | None) -> str:
    return "-" if x is None else "%+.1f%%" % (100 * x)


def table(w: dict, top: int = 12) -> str:
    """The slab part of an experiment's report."""
    head = ("cache", "obj/slab", "kernel", "shared", "error", "memcgptr",
            "x shared", "objects")
    rows = []
    for r in w["caches"][:top]:
        ratio = (r["memcgptr_pages"] / r["shared_pages"]) if r["shared_pages"] > 0 else None
        rows.append((r["cache"] + ("" if r["dominated"] else " *"),
                     "%d (o%d)" % (r["objs_per_slab"], r["order"]),
                     "-" if r["kernel_slabs"] is None else "%+d" % r["kernel_slabs"],
                     "%+d" % r["shared_slabs"], _pct(r.get("error")) if r["dominated"] else "",
                     "%+d" % r["memcgptr_slabs"],
                     "-" if ratio is None else "%.2fx" % ratio, "%+d" % r["objects"]))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join(("%%-%ds" if i == 0 else "%%%ds") % wd
                    for i, wd in enumerate(widths))
    out = ["slab model: slabs the window added, per cache (kernel: /sys/kernel/slab; "
           "shared: the obj_cgroup designs' layout; memcgptr: per-memcg caches)",
           fmt % head]
    out += [fmt % r for r in rows]
    if len(w["caches"]) > top:
        out.append("... %d more caches" % (len(w["caches"]) - top))
    t = w["totals"]
    sp, mp = t["shared"]["pages"], t["memcgptr"]["pages"]
    out.append("pages added: shared %+d, memcgptr %+d%s" % (
        sp, mp, "" if mp <= 0 else "; shared needs %.0f%% fewer" % (100 * (1 - sp / mp))))
    out.append("utilization (object bytes / slab bytes, all the model holds): "
               "shared %s, memcgptr %s" % tuple(
                   "-" if t[x]["utilization"] is None else "%.2f" % t[x]["utilization"]
                   for x in LAYOUTS))
    out.append("memcgptr: %d dead memcgs pinned by %d pages; reparenting swapped "
               "%d pointers and moved %d pages (obj_cgroup designs pin none: their "
               "objcgs are reparented)" % (w["pinned_memcgs"], w["pinned_pages"],
                                            w["ptr_swaps"], w["pages_moved"]))
    others = [r for r in w["caches"][:top] if not r["dominated"]]
    if others:
        out.append("* not compared with the kernel: " + "; ".join(
            "%s: %s" % (r["cache"], r["why_not"]) for r in others))
    lost = w["lost"]
    if lost["dropped"] or lost["alloc_failed"]:
        out.append("WARNING: the model lost %d events (log full) and %d to memory "
                   "failures: its counts are low" % (lost["dropped"], lost["alloc_failed"]))
    return "\n".join(out)


def designs_text(model: dict, designs: list[str], page_size: int = 4096) -> str:
    """Per design, the slab pages its layout needs for everything the model
    holds: the obj_cgroup designs share one layout, memcgptr has its own."""
    head = ("design", "layout", "slab pages", "MiB", "utilization",
            "pinned dead memcgs", "reparenting")
    m = model["memcgptr"]
    rows = []
    for name, layout in [(d, "shared") for d in designs] + [("memcgptr", "memcgptr")]:
        t = model["total"][layout]
        util = t["model_obj_bytes"] / (t["model_pages"] * page_size) if t["model_pages"] else 0
        if layout == "shared":
            pins, rep = "0", "objcgs (designs table)"
        else:
            pins = "%d (%d pages)" % (m["pinned_memcgs"], m["pinned_pages"])
            rep = "%d pointer swaps, %d pages moved" % (m["ptr_swaps"], m["pages_moved"])
        rows.append((name, "per-memcg caches" if layout == "memcgptr" else "shared caches",
                     "{:,}".format(t["model_pages"]),
                     "%.1f" % (t["model_pages"] * page_size / 2**20), "%.2f" % util,
                     pins, rep))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join(("%%-%ds" if i < 2 else "%%%ds") % w for i, w in enumerate(widths))
    return "\n".join(["slab pages per design (slab model, since load; utilization = "
                      "object bytes / slab bytes)", fmt % head] + [fmt % r for r in rows])
