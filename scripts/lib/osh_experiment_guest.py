#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Experiments, guest side: set up the cgroup layout, snapshot per-design
metrics, run the workload, snapshot again, write the delta as JSON.

The snapshots bracket the whole workload, except where the workload has
a phase of its own to measure (switch: the turns on one CPU, without the
warm-up and the exit that free objects on other CPUs).

usage: osh_experiment_guest.py NAME [--json PATH]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import osh_designs  # noqa: E402
import osh_slabmodel  # noqa: E402

REPO = os.environ.get("OSH_REPO", os.path.dirname(os.path.dirname(HERE)))
WL = os.path.join(REPO, "tests", "workloads")
CG = "/sys/fs/cgroup"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def mkcg(rel, children=False):
    path = os.path.join(CG, rel)
    os.makedirs(path, exist_ok=True)
    if children:
        write(os.path.join(path, "cgroup.subtree_control"), "+memory")
    return path


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


class Window:
    """The measured window: per-design snapshots at open() and close()."""

    def __init__(self):
        self.before = self.after = None
        self.slab_before = self.slab_after = None
        self.t_open = self.seconds = None

    def open(self):
        self.before = osh_designs.snapshot()
        self.slab_before = osh_slabmodel.snapshot()
        self.t_open = time.monotonic()

    def close(self):
        self.after = osh_designs.snapshot()
        self.slab_after = osh_slabmodel.snapshot()
        self.seconds = time.monotonic() - self.t_open

    def delta(self):
        return osh_designs.delta(self.before, self.after)

    def slab(self):
        """The slab model's window, or None without memcgptr."""
        if not (self.slab_before and self.slab_after):
            return None
        return osh_slabmodel.window(self.slab_before, self.slab_after,
                                    os.sysconf("SC_PAGE_SIZE"))


def measure(fn, scale=1.0, slab=None):
    """Run experiment @fn; return (its description, the window's delta).
    @slab, a dict, receives the slab model's window when there is one."""
    w = Window()
    w.open()
    what = fn(scale, w)
    if w.after is None:
        w.close()
    if slab is not None and w.slab():
        slab.update(w.slab())
    return what, w.delta()


class Clock:
    """A window without the module: only the time between the phases."""

    def open(self):
        self.t_open = time.monotonic()

    def close(self):
        self.seconds = time.monotonic() - self.t_open


def turn_times(reps, scale):
    """Median and range of the time per switch turn, in microseconds,
    over @reps runs with the module unloaded (the real kernel alone)."""
    subprocess.run(["rmmod", "objcg_shadow"], stderr=subprocess.DEVNULL)
    turns = int(1500 * scale) * 4
    per_turn = []
    for _ in range(reps):
        c = Clock()
        exp_switch(scale, c)
        per_turn.append(1e6 * c.seconds / turns)
    per_turn.sort()
    return {"turns": turns, "reps": reps, "us_per_turn": per_turn,
            "median": per_turn[len(per_turn) // 2],
            "min": per_turn[0], "max": per_turn[-1]}


def run_phased(cmd, window, start, end):
    """Run a --pause workload: open the window at the PHASE line @start,
    close it at @end, letting the workload go on after each."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    seen = []
    for line in p.stdout:
        word = line.split()[1] if line.startswith("PHASE ") else None
        if word in (start, end):
            seen.append(word)
            if word == start:
                window.open()
            else:
                window.close()
            p.stdin.write("\n")
            p.stdin.flush()
    p.stdin.close()
    if p.wait() or seen != [start, end]:
        raise RuntimeError("%s failed (exit %d, phases seen %s)" %
                           (cmd[0], p.returncode, seen))


def exp_switch(scale, window):
    """Tasks of one memcg warm up on alternating nodes, then take turns on
    CPU 0 while allocating: upstream's stress-ng switch regression shape.
    Measured: the turns only."""
    cg = mkcg("exp/switch")
    with open(os.path.join(cg, "cgroup.procs")) as f:
        if f.read().strip():
            raise RuntimeError("exp/switch is not empty")
    run_phased([os.path.join(WL, "switchload"), "--cgroup", cg,
                "--threads", "4", "--warm", "200",
                "--rounds", str(int(1500 * scale)), "--allocs", "4",
                "--cpu", "0", "--pause"], window, "warm-done", "switch-done")
    return "4 threads, warm-up on nodes 0/1, then %d token rounds on CPU 0, " \
           "4 file allocations per turn (measured: the rounds)" % \
           int(1500 * scale)


def exp_memcgs(scale, window):
    """Tasks of two memcgs take turns on CPU 0: every turn switches the
    objcg, so even the 6.1 stock drains; the fidelity workload."""
    a, b = mkcg("exp/ma"), mkcg("exp/mb")
    run([os.path.join(WL, "switchload"), "--cgroups", a + "," + b,
         "--threads", "4", "--warm", "50", "--rounds", str(int(1500 * scale)),
         "--allocs", "4", "--cpu", "0"])
    return "4 processes in 2 memcgs taking %d token rounds on CPU 0, 4 " \
           "file allocations per turn" % int(1500 * scale)


def exp_slots(scale, window):
    """Tasks of eight memcgs take turns on CPU 0: more objcgs than any
    stock has slots (7.3 has five), so every turn evicts one."""
    cgs = [mkcg("exp/s%d" % i) for i in range(8)]
    run([os.path.join(WL, "switchload"), "--cgroups", ",".join(cgs),
         "--threads", "8", "--warm", "50", "--rounds", str(int(750 * scale)),
         "--allocs", "4", "--cpu", "0"])
    return "8 processes in 8 memcgs taking %d token rounds on CPU 0, 4 " \
           "file allocations per turn" % int(750 * scale)


def exp_reparent(scale, window):
    """Short-lived child cgroups each leave dentries and inodes behind."""
    mkcg("exp/rep", children=True)
    os.makedirs("/mnt/rep", exist_ok=True)
    n = int(40 * scale)
    for i in range(n):
        child = mkcg("exp/rep/c%d" % i)
        run([os.path.join(WL, "kmemload"), "--quiet", "--cgroup", child,
             "--keep-files", "--dir", "/mnt/rep/%d" % i, "dentry",
             "--count", "300"])
        os.rmdir(child)
    return "%d child cgroups, each creating 300 files kept after rmdir" % n


def exp_crossnode(scale, window):
    """One task alternating between the nodes' CPUs while allocating."""
    cg = mkcg("exp/cross")
    run([os.path.join(WL, "kmemload"), "--quiet", "--cgroup", cg,
         "--flip-nodes", "50", "dentry", "--count", str(int(4000 * scale))])
    return "one task creating %d files, moving between node 0 and node 1 " \
           "CPUs every 50 files" % int(4000 * scale)


def exp_slabshare(scale, window):
    """Many small cgroups, the case per-memcg caches served worst: each
    runs one single-threaded task that moves between the nodes' CPUs while
    it creates a few files (kept after rmdir) and a few sockets (freed), so
    every cgroup has a few objects per cache on several CPUs."""
    mkcg("exp/share", children=True)
    os.makedirs("/mnt/share", exist_ok=True)
    # fill the free slots the kernel's slabs had before the load (the model
    # cannot know them), so both start the window without old holes
    fill = mkcg("exp/share/fill")
    run([os.path.join(WL, "kmemload"), "--quiet", "--cgroup", fill,
         "--keep-files", "--dir", "/mnt/share/fill", "dentry", "--count",
         "4000"])
    window.open()
    n = int(60 * scale)
    for i in range(n):
        child = mkcg("exp/share/c%d" % i)
        run([os.path.join(WL, "kmemload"), "--quiet", "--cgroup", child,
             "--keep-files", "--dir", "/mnt/share/%d" % i, "--flip-nodes",
             "10", "dentry", "--count", "40"])
        run([os.path.join(WL, "kmemload"), "--quiet", "--cgroup", child,
             "--flip-nodes", "5", "socket", "--count", "10"])
        os.rmdir(child)
    return "%d cgroups, one after another, each a task moving between the " \
           "nodes every 10 objects: 40 files kept after rmdir, 10 sockets " \
           "freed (measured after 4000 files filled the kernel's old slabs)" % n


EXPERIMENTS = {"switch": exp_switch, "memcgs": exp_memcgs, "slots": exp_slots,
               "reparent": exp_reparent,
               "crossnode": exp_crossnode, "slabshare": exp_slabshare}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=sorted(EXPERIMENTS))
    ap.add_argument("--json")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--time-reps", type=int, default=0,
                    help="switch: also time the turns this many times with the "
                    "module unloaded (the real kernel's own time per turn)")
    args = ap.parse_args()
    write(os.path.join(CG, "cgroup.subtree_control"), "+memory")
    mkcg("exp", children=True)
    t0 = time.monotonic()
    slab = {}
    what, d = measure(EXPERIMENTS[args.name], args.scale, slab)
    seconds = time.monotonic() - t0
    result = {"experiment": args.name, "workload": what,
              "seconds": round(seconds, 1), "delta": d,
              "kernel": os.uname().release,
              "agreement": osh_designs.agreement(d)}
    if slab:
        result["slab"] = slab
    if args.name == "switch" and args.time_reps:
        result["turn_time"] = turn_times(args.time_reps, args.scale)
    print("[guest] %s: %s (%.1fs)" % (args.name, what, seconds), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    else:
        print(osh_designs.table(d))
        print(osh_designs.agreement_text(result["agreement"],
                                   osh_designs.reference_of(result["delta"])))
        if slab:
            print(osh_slabmodel.table(slab))
    shutil.rmtree("/mnt/rep", ignore_errors=True)
    shutil.rmtree("/mnt/share", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
