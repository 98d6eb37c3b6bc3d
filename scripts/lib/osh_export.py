# SPDX-License-Identifier: GPL-2.0
"""objcg-shadow export: the shadow's view for Prometheus, as a textfile for
node_exporter's textfile collector (--collector.textfile.directory).

One reading of debugfs becomes objcg_shadow.prom: per cgroup, design and
node the shadow's kmem counters, memory.stat's and their difference (as
`compare` computes them: hierarchical), per design its drains, page
charges and other counters, the events the module could not account, and
the dying memcgs.  The file is written next to its final name and renamed
over it, so the collector never reads half a file.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import osh_compare
import osh_state

FILENAME = "objcg_shadow.prom"

# designs-file fields that describe a design rather than count
DESIGN_KNOBS = {"design", "objcg", "task_cache", "stock_slots", "stock_key",
                "stock", "objcg_node", "reference"}


def escape(value) -> str:
    """A label value in the text exposition format."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self):
        self.families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_: str, labels: dict, value) -> None:
        fam = self.families.setdefault(name, (kind, help_, []))
        lab = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
        fam[2].append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    def text(self) -> str:
        out = []
        for name, (kind, help_, samples) in self.families.items():
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(samples)
        return "\n".join(out) + "\n"


def _split_counter(counter: str) -> tuple[str, str]:
    name, _, node = counter.partition(".N")
    return name, (node if node else "total")


def render(sh: osh_state.Shadow, cgroupfs: str = osh_state.CGROUPFS,
           now: float | None = None) -> str:
    m = Metrics()
    m.add("objcg_shadow_up", "gauge", "1 when the module's debugfs was read", {}, 1)
    m.add("objcg_shadow_info", "gauge", "module and kernel versions",
          {"version": sh.version.get("version", "?"),
           "kernel": sh.version.get("running", "?"),
           "reference": sh.reference}, 1)
    for design in sh.kmem:
        # every cgroup: on a host most predate the module (status pre-load)
        res = osh_compare.collect(sh, design, cgroupfs, True, None)
        for r in res["rows"]:
            if "error" in r:
                continue
            counter, node = _split_counter(r["counter"])
            labels = {"cgroup": r["path"], "design": design,
                      "counter": counter, "node": node}
            m.add("objcg_shadow_shadow_bytes", "gauge",
                  "kmem bytes of the cgroup's subtree as the design accounts them",
                  labels, r["shadow"])
            m.add("objcg_shadow_delta_bytes", "gauge",
                  "shadow minus memory.stat (memory.numa_stat per node), bytes; "
                  "status as compare: ok, EXCEEDS, pre-load (objects from before "
                  "the load are unknown), degraded",
                  dict(labels, status=r["status"]), r["delta"])
            if design == sh.default_design():
                m.add("objcg_shadow_kernel_bytes", "gauge",
                      "the kernel's memory.stat (memory.numa_stat per node), bytes",
                      {"cgroup": r["path"], "counter": counter, "node": node},
                      r["kernel"])
        m.add("objcg_shadow_delta_bound_bytes", "gauge",
              "allowed |delta|: PAGE_SIZE * MEMCG_CHARGE_BATCH * nr_cpus",
              {"design": design}, res["bound"]["bytes"])
        for cid, k in sh.kmem[design].items():
            path = sh.cgroups.get(cid, {}).get("path", "?")
            labels = {"cgroup": path, "id": cid, "design": design}
            m.add("objcg_shadow_memcg_objects", "gauge",
                  "live slab objects charged to the memcg itself (not its subtree)",
                  labels, k.get("objects", 0))
            m.add("objcg_shadow_memcg_kmem_pages", "gauge",
                  "pages on the memcg's own kmem page counter", labels,
                  k.get("kmem_pages", 0))
    for design, d in sh.designs.items():
        for key, value in d.items():
            if key in DESIGN_KNOBS or not isinstance(value, int):
                continue
            m.add("objcg_shadow_design_events_total", "counter",
                  "per design since load: charges, stock hits and drains by cause, "
                  "page counter operations and pages, vmstat flushes, task cache",
                  {"design": design, "event": key}, value)
    for key, value in sorted(sh.stats.items()):
        if isinstance(value, int):
            m.add("objcg_shadow_stat", "gauge",
                  "debugfs stats: memcg records, hook events, and every event the "
                  "module could not account (dropped_*, untracked_*, ...)",
                  {"name": key}, value)
    dying = sum(1 for r in sh.cgroups.values() if r["state"] in ("offline", "released"))
    m.add("objcg_shadow_dying_memcgs", "gauge",
          "memcgs offline but not yet freed by the kernel", {}, dying)
    for key in ("tracked_objects", "tracked_bytes", "tracked_pages"):
        if key in sh.objects:
            m.add("objcg_shadow_" + key, "gauge", "totals over the object and page maps",
                  {}, sh.objects[key])
    m.add("objcg_shadow_export_timestamp_seconds", "gauge",
          "when this file was written", {}, f"{now if now is not None else time.time():.3f}")
    return m.text()


def write_atomically(directory: str, text: str) -> str:
    final = os.path.join(directory, FILENAME)
    fd, tmp = tempfile.mkstemp(prefix="." + FILENAME + ".", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, final)
    except BaseException:
        os.unlink(tmp)
        raise
    return final


def main(args) -> int:
    if not os.path.isdir(args.textfile):
        print(f"objcg-shadow export: {args.textfile}: not a directory (give "
              "node_exporter's --collector.textfile.directory)", file=sys.stderr)
        return 2
    if not os.access(args.textfile, os.W_OK):
        print(f"objcg-shadow export: {args.textfile}: not writable", file=sys.stderr)
        return 2
    while True:
        try:
            text = render(osh_state.Shadow(args.debugfs), args.cgroupfs)
        except (osh_state.StateError, OSError) as e:
            print(f"objcg-shadow export: {e}", file=sys.stderr)
            if not args.interval:
                return 2
        else:
            path = write_atomically(args.textfile, text)
            if not args.interval:
                print(f"wrote {path} ({text.count(chr(10))} lines)")
                return 0
        time.sleep(args.interval)
