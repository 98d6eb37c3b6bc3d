# SPDX-License-Identifier: GPL-2.0
"""objcg-shadow crosscheck: the module's per-cgroup object counts next to
an independent bpftrace count from the kmem tracepoints.

scripts/bpf/kmem_per_cgroup.bt counts accounted slab allocations per
cgroup of the allocating task, and their frees.  Over the same window the
module's live slab objects change, per memcg the objects' objcgs were born
in (debugfs slabinfo).  For objects allocated inside the window the two
must agree: bpftrace's allocations minus frees equal the module's change.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import osh_reports
import osh_state

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAM = os.path.join(REPO, "scripts", "bpf", "kmem_per_cgroup.bt")
TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
PROBES = ("kmem_cache_alloc", "kmalloc", "kmem_cache_free", "kfree")
MAP_KEYS = 1 << 20      # objects bpftrace can follow at once

BLIND = """\
what bpftrace cannot see and the module can:
  objects allocated before the window (their frees; the module's change
  includes them), bulk allocations and frees (kmem_cache_alloc_bulk and
  kmem_cache_free_bulk fire no per-object tracepoint), frees on paths
  without a tracepoint (6.12 and later: kfree_rcu through sheaves), which
  memcg is charged (bpftrace takes the task's cgroup: the kernel charges
  an active memcg when one is set, nothing in interrupt context, from
  a kernel thread or from a task past exit_mm(): bpftrace counts the
  SIGCHLD sigqueue every exiting process allocates for its parent, the
  kernel does not charge it), and the nearest ancestor with the memory controller
  when the task's cgroup has none), reparenting, percpu memory and kmem
  pages, per-CPU stocks and their drains."""


class CrossError(Exception):
    pass


def gfp_account_mask(tracefs: str) -> int:
    """__GFP_ACCOUNT of the running kernel, from the kmalloc tracepoint's
    print format ("accounted=%s" tests it)."""
    with open(os.path.join(tracefs, "events", "kmem", "kmalloc", "format")) as f:
        fmt = f.read()
    tail = fmt[fmt.rfind("node,"):]
    m = re.search(r"gfp_t\)\s*0x([0-9a-fA-F]+)u?\)", tail)
    if m:
        return int(m.group(1), 16)
    m = re.search(r"<<\s*\((\d+)\)", tail)
    if m:
        return 1 << int(m.group(1))
    raise CrossError("cannot find __GFP_ACCOUNT in the kmalloc tracepoint's format")


def find_tracefs() -> str:
    for t in TRACEFS:
        if os.path.exists(os.path.join(t, "events", "kmem", "kmalloc", "format")):
            return t
    raise CrossError("tracefs not mounted (mount -t tracefs none /sys/kernel/tracing)")


def parse_maps(text: str) -> dict[str, dict[int, int]]:
    """bpftrace's printed maps: "@allocs[123]: 456"."""
    out: dict[str, dict[int, int]] = {}
    for m in re.finditer(r"^@(\w+)\[(\d+)\]: (\d+)$", text, re.M):
        out.setdefault(m.group(1), {})[int(m.group(2))] = int(m.group(3))
    return out


def module_counts(root: str) -> dict[int, dict[str, int]]:
    """Per memcg the module's objcgs were born in: slab objects ever
    charged ("allocs": the memcg's active objcgs in kmem, its inherited
    ones in pins) and live now ("live", from slabinfo)."""
    rd = osh_reports.Reading(root)
    out: dict[int, dict[str, int]] = {}

    def add(cid, key, n):
        out.setdefault(cid, {"allocs": 0, "live": 0})[key] += n
    for r in osh_state.read_records("kmem", root):
        if r["design"] == rd.design:
            add(int(r["id"]), "allocs", int(r.get("allocs", 0)))
    for o in rd.objcgs:
        add(o["born"], "allocs", o.get("allocs", 0))
    for g in rd.groups:
        if g["kind"] == "slab":
            add(g["born"], "live", g["objects"])
    return out


class Tracer:
    def __init__(self, mask: int, attach_timeout: float):
        env = dict(os.environ, BPFTRACE_MAP_KEYS_MAX=str(MAP_KEYS))
        try:
            self.proc = subprocess.Popen(["bpftrace", PROGRAM, str(mask)],
                                         stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, env=env)
        except FileNotFoundError:
            raise CrossError("bpftrace not found (apt-get install bpftrace)")
        self.lines: list[str] = []
        self.up: set[str] = set()
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + attach_timeout
        with self.cond:
            while self.up != set(PROBES):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    self.proc.kill()
                    raise CrossError("bpftrace did not attach (%s up): %s" % (
                        ", ".join(sorted(self.up)) or "nothing",
                        self.proc.stderr.read()[-1500:]))
                self.cond.wait(min(left, 0.5))

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                if line.startswith("UP "):
                    self.up.add(line.split()[1])
                self.cond.notify_all()

    def stop(self) -> dict[str, dict[int, int]]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise CrossError("bpftrace did not exit after SIGINT")
        time.sleep(0.2)     # the reader thread drains the pipe
        text = "".join(self.lines)
        if "DONE" not in text:
            raise CrossError("bpftrace ended without printing its maps: %s" %
                             self.proc.stderr.read()[-1500:])
        return parse_maps(text)


def run(cmd: list[str] | None, seconds: float, root: str, settle: float = 2.0,
        attach_timeout: float = 120.0, progress=None) -> dict:
    say = progress or (lambda m: None)
    osh_state.require_debugfs(root)
    mask = gfp_account_mask(find_tracefs())
    say("starting bpftrace (%s)..." % os.path.relpath(PROGRAM, REPO))
    tracer = Tracer(mask, attach_timeout)
    try:
        before = module_counts(root)
        if cmd:
            say("running: %s" % " ".join(cmd))
            rc = subprocess.run(cmd).returncode
        else:
            say("watching for %g s..." % seconds)
            time.sleep(seconds)
            rc = 0
        time.sleep(settle)      # RCU-deferred frees of the workload
        after = module_counts(root)
    finally:
        maps = tracer.stop()
    allocs, frees = maps.get("allocs", {}), maps.get("frees", {})
    cgroups = {int(r["id"]): r for r in osh_state.read_records("cgroups", root)}
    zero = {"allocs": 0, "live": 0}
    rows = []
    for cid in sorted(set(allocs) | set(frees) | set(before) | set(after)):
        b, a = before.get(cid, zero), after.get(cid, zero)
        mod_allocs = a["allocs"] - b["allocs"]
        mod_live = a["live"] - b["live"]
        if not (allocs.get(cid) or frees.get(cid) or mod_allocs or mod_live):
            continue
        rec = cgroups.get(cid, {})
        rows.append({"id": cid, "path": rec.get("path", "?"),
                     # the shadow charges nothing to the root (6.1 and
                     # 6.12 neither; 7.3's root objcgs: root_bypass)
                     "root": rec.get("level") == "0",
                     "bpftrace_allocs": allocs.get(cid, 0),
                     "module_allocs": mod_allocs,
                     "alloc_difference": mod_allocs - allocs.get(cid, 0),
                     "bpftrace_frees": frees.get(cid, 0),
                     "bpftrace_net": allocs.get(cid, 0) - frees.get(cid, 0),
                     "module_live_change": mod_live})
    return {"command_rc": rc, "gfp_account": mask, "rows": rows}


def print_table(res: dict, out=sys.stdout) -> None:
    fmt = "{:<24} {:>7} {:>11} {:>11} {:>8} {:>11} {:>11} {:>11}"
    print(fmt.format("cgroup", "id", "bt allocs", "mod allocs", "diff",
                     "bt frees", "bt net", "mod live"), file=out)
    for r in sorted(res["rows"], key=lambda r: r["path"]):
        print(fmt.format(r["path"] + (" (root)" if r["root"] else ""), r["id"],
                         f"{r['bpftrace_allocs']:,}", f"{r['module_allocs']:,}",
                         f"{r['alloc_difference']:,}", f"{r['bpftrace_frees']:,}",
                         f"{r['bpftrace_net']:,}", f"{r['module_live_change']:,}"),
              file=out)
    print("""
bt allocs: accounted slab allocations the kmem tracepoints showed in the
window, per cgroup of the allocating task; mod allocs: objects the module
charged to objcgs born in that memcg.  They agree for every cgroup but the
root (the shadow charges nothing there: 6.1 and 6.12 do not either, 7.3's
root objcgs are counted as root_bypass), less one per process that exited
there (its SIGCHLD sigqueue, allocated after exit_mm(): not charged).  bt net (allocations minus frees) may stay
above the module's live change: a tracepoint program does not run while
another BPF program runs on the CPU, and the frees of an RCU softirq that
interrupts one are lost, uncounted.
""", file=out)
    print(BLIND, file=out)


def main(args) -> int:
    try:
        res = run(args.passthrough or None, args.seconds, args.debugfs,
                  progress=lambda m: print("[crosscheck] " + m, file=sys.stderr,
                                           flush=True))
    except (CrossError, osh_state.StateError, OSError) as e:
        print(f"objcg-shadow crosscheck: {e}", file=sys.stderr)
        return 2
    osh_state.emit(res, args.json, print_table)
    return 0
