# SPDX-License-Identifier: GPL-2.0
"""objcg-shadow pins and slabinfo: what dying cgroups left behind, and which
slab caches each cgroup's kmem is in.

Both read the module's debugfs files "slabinfo" (live charged objects
grouped by the memcg their objcg points to now, the memcg the objcg was
born in, cache, node and kind), "pins" (dying memcgs and the objcgs born
in them) and "cgroups" (paths and parents).  Formats: README.md, "debugfs".
"""
from __future__ import annotations

import sys

import osh_state

# non-slab kinds, shown as pseudo caches
PSEUDO = {"percpu": "(percpu)", "page": "(kmem pages)",
          "stack": "(kernel stacks)", "large_kmalloc": "(large kmalloc)"}
PAGE_KINDS = ("page", "stack", "large_kmalloc")


class Reading:
    """One reading of slabinfo, pins and cgroups."""

    def __init__(self, root: str = osh_state.DEBUGFS):
        osh_state.require_debugfs(root)
        self.cgroups = {int(r["id"]): r for r in osh_state.read_records("cgroups", root)}
        lines = osh_state.read_records("slabinfo", root)
        if not lines or "design" not in lines[0]:
            raise osh_state.StateError("slabinfo: no header line (module too old?)")
        self.header = {k: osh_state.as_number(v) for k, v in lines[0].items()}
        if any("error" in r for r in lines):
            raise osh_state.StateError("slabinfo: the module ran out of memory "
                                       "while grouping objects")
        self.groups = [{k: osh_state.as_number(v) for k, v in r.items()}
                       for r in lines[1:]]
        pins = osh_state.read_records("pins", root)
        self.pins_design = pins[0].get("design") if pins else None
        self.dying = {}
        self.objcgs = []
        for r in pins[1:]:
            if "memcg" in r:
                rec = {k: osh_state.as_number(v) for k, v in r.items() if k != "memcg"}
                self.dying[rec["id"]] = rec
            elif "objcg" in r:
                self.objcgs.append({k: osh_state.as_number(v)
                                    for k, v in r.items() if k != "objcg"})

    @property
    def design(self) -> str:
        return str(self.header["design"])

    def path(self, cid: int) -> str:
        """The cgroup's path; for one removed before the module loaded
        (whose name the module cannot read any more) its nearest known
        ancestor's path with "/?" appended."""
        rec = self.cgroups.get(cid, {})
        path = rec.get("path", "?")
        seen = set()
        while path == "?" and rec and cid not in seen:
            seen.add(cid)
            cid = int(rec.get("parent", 0))
            rec = self.cgroups.get(cid, {})
            if rec.get("path", "?") != "?":
                return rec["path"].rstrip("/") + "/?"
        return path

    def children(self) -> dict[int, list[int]]:
        return osh_state.children_of(self.cgroups)

    def subtree(self, cid: int) -> list[int]:
        return osh_state.subtree_of(self.cgroups, cid)


def _cache_name(g: dict) -> str:
    return str(g["cache"]) if g["kind"] == "slab" else PSEUDO.get(g["kind"], g["kind"])


def _under(path: str, prefix: str | None) -> bool:
    if not prefix or prefix == "/":
        return True
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def caches_of(groups) -> dict[str, dict]:
    """Per cache: objects, bytes, object size and per-node splits."""
    out: dict[str, dict] = {}
    for g in groups:
        name = _cache_name(g)
        c = out.setdefault(name, {"cache": name, "kind": g["kind"], "objects": 0,
                                  "bytes": 0, "object_size": g.get("object_size"),
                                  "nodes": {}})
        c["objects"] += g["objects"]
        c["bytes"] += g["bytes"]
        if g["kind"] in PAGE_KINDS:
            c["pages"] = c.get("pages", 0) + g.get("pages", 0)
        n = c["nodes"].setdefault(str(g["node"]), {"objects": 0, "bytes": 0})
        n["objects"] += g["objects"]
        n["bytes"] += g["bytes"]
    return out


# --------------------------------------------------------------------------
# slabinfo

def slabinfo(rd: Reading, under: str | None = None) -> dict:
    by_memcg: dict[int, list] = {}
    for g in rd.groups:
        by_memcg.setdefault(g["memcg"], []).append(g)
    rows = []
    for cid, rec in sorted(rd.cgroups.items(), key=lambda kv: kv[1].get("path", "")):
        if rec["state"] != "online" or not _under(rec.get("path", "?"), under):
            continue
        own = by_memcg.get(cid, [])
        sub = [g for c in rd.subtree(cid) for g in by_memcg.get(c, [])]
        if not sub:
            continue
        rows.append({"path": rec.get("path", "?"), "id": cid,
                     "own": sorted(caches_of(own).values(), key=lambda c: -c["bytes"]),
                     "subtree": sorted(caches_of(sub).values(), key=lambda c: -c["bytes"])})
    return {"design": rd.design, "raced": rd.header.get("raced", 0),
            "unowned": rd.header.get("unowned", 0), "cgroups": rows}


def _nodes(c: dict) -> str:
    return " ".join(f"N{n}={v['objects']:,}" for n, v in sorted(c["nodes"].items()))


def print_slabinfo(res: dict, top: int, out=sys.stdout) -> None:
    print(f"live charged objects per cgroup and cache (design {res['design']}: "
          "where its objcgs point now)", file=out)
    if not res["cgroups"]:
        print("(no cgroup holds objects the shadow tracked)", file=out)
    for row in res["cgroups"]:
        own_b = sum(c["bytes"] for c in row["own"])
        sub_b = sum(c["bytes"] for c in row["subtree"])
        print(f"\n{row['path']} (id {row['id']}): own {own_b:,} bytes, "
              f"subtree {sub_b:,} bytes", file=out)
        fmt = "  {:<26} {:>10} {:>8} {:>14} {:>14}  {}"
        print(fmt.format("cache", "objects", "objsize", "bytes (own)",
                         "bytes (subtree)", "objects per node (own)"), file=out)
        own = {c["cache"]: c for c in row["own"]}
        for c in row["subtree"][:top]:
            o = own.get(c["cache"], {"objects": 0, "bytes": 0, "nodes": {}})
            size = c.get("object_size")
            print(fmt.format(c["cache"], f"{o['objects']:,}",
                             size if size else "-", f"{o['bytes']:,}",
                             f"{c['bytes']:,}", _nodes(o) or "-"), file=out)
        if len(row["subtree"]) > top:
            print(f"  ... {len(row['subtree']) - top} more caches (--top)", file=out)
    if res["raced"]:
        print(f"\n({res['raced']} objects changed while read)", file=out)


# --------------------------------------------------------------------------
# pins

def pins(rd: Reading, under: str | None = None) -> dict:
    kids = rd.children()
    rows = []
    for cid, d in sorted(rd.dying.items(), key=lambda kv: rd.path(kv[0])):
        path = rd.path(cid)
        if not _under(path, under):
            continue
        born = [g for g in rd.groups if g["born"] == cid]
        objcgs = [o for o in rd.objcgs if o["born"] == cid]
        children = [c for c in kids.get(cid, [])]
        caches = sorted(caches_of([g for g in born if g["kind"] not in PAGE_KINDS]).values(),
                        key=lambda c: -c["bytes"])
        pages = sum(g.get("pages", 0) for g in born if g["kind"] in PAGE_KINDS)
        refs = int(d["refs"])
        rows.append({
            "path": path, "id": cid, "state": d["state"],
            "dead_before_load": bool(d.get("dead_before_load")),
            "offline_age_s": (d["offline_age_ms"] / 1000.0
                              if "offline_age_ms" in d else None),
            "objcgs_born_here": [
                {"now_charges": o["now"], "now_path": rd.path(o["now"]),
                 "node": o["node"], "refs": o["refs"], "objects": o["objects"],
                 "charged_bytes": o["charged_bytes"]} for o in objcgs],
            "objects": sum(c["objects"] for c in caches),
            "bytes": sum(c["bytes"] for c in caches),
            "caches": caches,
            "kmem_pages": pages,
            "record_refs": {"total": refs, "children": len(children),
                            "objcgs": refs - len(children)},
            "children": [rd.path(c) for c in children],
        })
    return {"design": rd.pins_design or rd.design, "dying": rows}


def _age(s) -> str:
    if s is None:
        return "unknown (dead before load)"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def print_pins(res: dict, top: int, out=sys.stdout) -> None:
    rows = res["dying"]
    print(f"{len(rows)} dying memcgs (offline, not yet freed by the kernel); "
          f"design {res['design']}", file=out)
    for r in rows:
        print(f"\n{r['path']} (id {r['id']}, {r['state']}"
              f"{', dead before load' if r['dead_before_load'] else ''}): "
              f"offline for {_age(r['offline_age_s'])}", file=out)
        if r["dead_before_load"]:
            print("  the shadow saw nothing of it: its objects predate the module",
                  file=out)
        rf = r["record_refs"]
        print(f"  shadow record referenced by {rf['children']} child records "
              f"and {rf['objcgs']} objcgs", file=out)
        for o in r["objcgs_born_here"]:
            print(f"  objcg born here (node {o['node']}): now charges "
                  f"{o['now_path']} (id {o['now_charges']}), {o['objects']:,} objects, "
                  f"{o['refs']:,} references", file=out)
        if not r["objcgs_born_here"] and not r["dead_before_load"]:
            print("  no objcg born here is alive: no kmem the shadow tracked "
                  "holds it (the kernel's references are page cache, swap or "
                  "other css references)", file=out)
        if r["objects"] or r["kmem_pages"]:
            print(f"  left behind: {r['objects']:,} objects, {r['bytes']:,} bytes, "
                  f"{r['kmem_pages']:,} kmem pages", file=out)
            for c in r["caches"][:top]:
                print(f"    {c['cache']:<26} {c['objects']:>10,} objects "
                      f"{c['bytes']:>14,} bytes", file=out)


# --------------------------------------------------------------------------

def main(args, which: str) -> int:
    try:
        rd = Reading(args.debugfs)
    except (osh_state.StateError, OSError) as e:
        print(f"objcg-shadow {which}: {e}", file=sys.stderr)
        return 2
    if args.cgroup and not any(_under(r.get("path", "?"), args.cgroup)
                               for r in rd.cgroups.values()):
        print(f"objcg-shadow {which}: no cgroup {args.cgroup!r} is known to the "
              "shadow (paths look like /a/b)", file=sys.stderr)
        return 2
    res = slabinfo(rd, args.cgroup) if which == "slabinfo" else pins(rd, args.cgroup)
    printer = print_slabinfo if which == "slabinfo" else print_pins
    osh_state.emit(res, args.json, lambda r: printer(r, args.top))
    return 0
