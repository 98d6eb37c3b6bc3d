#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Scale run (issue 11, item 5): 10,000 live memcgs, 30,000 tasks and
1,000,000 accounted objects at once in one guest, with every debugfs file
read and `compare` run over them.  Not part of `make check` (minutes of
guest time and 3+ GiB); run it with

  scripts/objcg-shadow vm --kernel 6.1 --mem 4096 --icount --cpus 1 \\
      --params time_handlers=1 --no-load -- python3 tests/vm/scale.py

Under --icount a guest nanosecond is one instruction, so the handlers'
longest timed region (the upper bound of an IRQs-off section) and the
longest IRQs-off move of a growing map read in instructions.  Sizes
follow OSH_SCALE (1: the sizes above)."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "lib"))
from osh_guest import (Workload, cg_mkdir, cg_path, cg_rmdir_tree, check,  # noqa: E402
                       enable_memory, ensure_unloaded, hooks, insmod, read_kv, run_tests, scaled, sh)
import osh_state  # noqa: E402
import osh_compare  # noqa: E402

DEBUGFS = "/sys/kernel/debug/objcg_shadow"


def metric(fmt, *args):
    print("METRIC " + fmt % args, flush=True)


def test_scale_memcgs_tasks_objects():
    memcgs = scaled(10000, least=100)
    tasks = scaled(30000, least=300)
    objects = scaled(1000000, least=10000)
    params = os.environ.get("OSH_SCALE_PARAMS", "time_handlers=1")
    insmod(params)
    cg_rmdir_tree("scale")
    held = []
    try:
        sh("echo %d > /proc/sys/kernel/threads-max; echo %d > /proc/sys/kernel/pid_max"
           % (4 * tasks + 10000, 4 * tasks + 10000))
        enable_memory("/")
        cg_mkdir("scale", memory_for_children=True)
        t0 = time.monotonic()
        sh("cd %s && i=0; while [ $i -lt %d ]; do mkdir m$i; i=$((i+1)); done"
           % (cg_path("scale"), memcgs))
        metric("scale %d memcgs made in %.0f s", memcgs, time.monotonic() - t0)
        enable_memory("scale/m0")
        enable_memory("scale/m1")
        cg_mkdir("scale/m0/objects")
        cg_mkdir("scale/m1/tasks")
        t0 = time.monotonic()
        held.append(Workload(["--quiet", "thread", "--count", str(tasks)],
                             cgroup="scale/m1/tasks"))
        held.append(Workload(["--quiet", "negdentry", "--count", str(objects)],
                             cgroup="scale/m0/objects"))
        metric("scale %d threads and %d objects held after %.0f s", tasks, objects,
               time.monotonic() - t0)

        t0 = time.monotonic()
        sizes = {}
        for name in sorted(os.listdir(DEBUGFS)):
            path = os.path.join(DEBUGFS, name)
            if os.path.isfile(path):
                with open(path) as f:
                    sizes[name] = len(f.read())
        metric("scale every debugfs file read (%d files, %d bytes) in %.0f s",
               len(sizes), sum(sizes.values()), time.monotonic() - t0)
        check(sizes.get("cgroups", 0) > memcgs * 20, "cgroups file lacks the memcgs")

        ev = {k: int(v) for k, v in read_kv("stats").items()
              if str(v).lstrip("-").isdigit()}
        for key in ("dropped_objects_map_full", "dropped_objects_no_record",
                    "dropped_pages_map_full",
                    "task_state_alloc_failed", "dropped_recursion",
                    "objmap_grow_failed", "taskmap_grow_failed"):
            check(ev.get(key, 0) == 0, "%s = %s" % (key, ev.get(key)))
        check(ev["objmap_live"] >= objects, "object map holds %d" % ev["objmap_live"])
        check(ev["task_states"] >= tasks, "task states: %d" % ev["task_states"])
        for m in ("objmap", "pagemap", "taskmap"):
            metric("scale %s %d live, %d slots, %d bytes (%.1f per entry), %d grows, "
                   "longest IRQs-off move %d ns", m, ev[m + "_live"], ev[m + "_capacity"],
                   ev[m + "_bytes"], ev[m + "_bytes"] / max(1, ev[m + "_live"]),
                   ev[m + "_grows"], ev[m + "_move_irqoff_max_ns"])
        metric("scale object records %d (%d bytes): %.1f bytes per object with the map",
               ev["objrecs_live"], ev["objrecs_bytes"],
               (ev["objmap_bytes"] + ev["objrecs_bytes"]) / max(1, ev["objmap_live"]))
        worst = sorted(((int(h.get("handler_max_ns", 0)), name)
                        for name, h in hooks().items()), reverse=True)[:5]
        metric("scale longest handler calls (ns; instructions under --icount): %s",
               ", ".join("%s %d" % (n, v) for v, n in worst))

        t0 = time.monotonic()
        shadow = osh_state.Shadow()
        res = osh_compare.collect(shadow, shadow.default_design(), "/sys/fs/cgroup",
                                  False, "/scale")
        metric("scale compare over %d rows in %.0f s, %d failed", len(res["rows"]),
               time.monotonic() - t0, len(res["failed"]))
        check(res["rows"], "compare compared nothing")
        check(not res["failed"], "compare failed: %s" % res["failed"][:5])
    finally:
        for w in held:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("scale")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
