#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The demo, guest side: a small cgroup tree, a workload in each leaf, then
the shadow's view of the tree next to the kernel's own (objcg-shadow
compare).  Runs as root in the guest with the module loaded."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import osh_compare  # noqa: E402
import osh_reports  # noqa: E402
import osh_slabmodel  # noqa: E402
import osh_state  # noqa: E402

REPO = os.environ.get("OSH_REPO", os.path.dirname(os.path.dirname(HERE)))
KMEMLOAD = os.path.join(REPO, "tests", "workloads", "kmemload")
CG = "/sys/fs/cgroup"

TREE = {
    "demo/web": ["socket", "--mib", "8"],
    "demo/db": ["dentry", "--mib", "8"],
    "demo/batch/jobs": ["pipe", "--mib", "6"],
    "demo/batch/workers": ["thread", "--count", "300"],
}


def say(msg):
    print("\n== " + msg, flush=True)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def build_tree():
    write(os.path.join(CG, "cgroup.subtree_control"), "+memory")
    for leaf in TREE:
        parts = leaf.split("/")
        for i in range(1, len(parts)):
            inner = os.path.join(CG, *parts[:i])
            os.makedirs(inner, exist_ok=True)
            write(os.path.join(inner, "cgroup.subtree_control"), "+memory")
        os.makedirs(os.path.join(CG, leaf), exist_ok=True)


def print_tree(sh):
    kids = sh.children()
    mem = sh.kmem.get(sh.default_design(), {})

    def show(cid, depth):
        r = sh.cgroups[cid]
        k = mem.get(cid, {})
        slab = int(k.get("slab_reclaimable", 0)) + int(k.get("slab_unreclaimable", 0))
        print("%s%-*s id=%-6s %-8s own slab %8.1f KiB  objects %6s  objcgs %s+%s" % (
            "  " * depth, 28 - 2 * depth, r["path"] if depth == 0 else
            os.path.basename(r["path"]), cid, r["state"], slab / 1024,
            k.get("objects", 0), k.get("objcgs", 0), k.get("inherited", 0)))
        for c in sorted(kids.get(cid, []), key=lambda c: sh.cgroups[c]["path"]):
            show(c, depth + 1)
    show(1, 0)


def main():
    say("objcg_shadow %s on %s, %s CPUs" % (
        open("/sys/kernel/debug/objcg_shadow/version").read().split()[0],
        os.uname().release, os.cpu_count()))
    slab_before = osh_slabmodel.snapshot()     # None unless memcgptr is loaded
    build_tree()
    loads = []
    for leaf, args in TREE.items():
        print("starting kmemload %-22s in /%s" % (" ".join(args), leaf))
        p = subprocess.Popen([KMEMLOAD, "--quiet", "--cgroup",
                              os.path.join(CG, leaf), "--hold"] + args,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        if not p.stdout.readline().startswith("READY"):
            sys.exit("kmemload failed in /" + leaf)
        loads.append(p)
    time.sleep(2.5)     # one periodic memcg stats flush
    sh = osh_state.Shadow()
    say("the memory cgroup tree as the shadow sees it (debugfs cgroups + kmem)")
    print_tree(sh)
    say("shadow vs kernel (objcg-shadow compare --cgroup /demo)")
    res = osh_compare.collect(sh, sh.default_design(), CG, False, "/demo")
    res["rows"] = [r for r in res["rows"] if "." not in r["counter"]]
    osh_compare.print_table(res)
    slab_after = osh_slabmodel.snapshot()
    if slab_before and slab_after:
        say("slab pages of the tree's workloads: shared caches against the "
            "2019 per-memcg caches (memcgptr)")
        print(osh_slabmodel.table(osh_slabmodel.window(
            slab_before, slab_after, os.sysconf("SC_PAGE_SIZE"))))
    say("rmdir a leaf after moving its task out: its objcg is reparented")
    p = loads[0]
    write(os.path.join(CG, "demo", "db", "cgroup.procs"), str(p.pid))
    os.rmdir(os.path.join(CG, "demo", "web"))
    time.sleep(2.5)
    sh = osh_state.Shadow()
    print_tree(sh)
    res = osh_compare.collect(sh, sh.default_design(), CG, False, "/demo")
    res["rows"] = [r for r in res["rows"] if r["counter"] in ("slab", "kernel")]
    osh_compare.print_table(res)
    rd = osh_reports.Reading()
    say("the top caches of /demo/db (objcg-shadow slabinfo --cgroup /demo/db)")
    osh_reports.print_slabinfo(osh_reports.slabinfo(rd, "/demo/db"), 5)
    say("what the removed leaf left behind: its sockets keep it dying "
        "(objcg-shadow pins --cgroup /demo/web)")
    osh_reports.print_pins(osh_reports.pins(rd, "/demo/web"), 5)
    for p in loads:
        p.stdin.close()
        p.wait()
    return 1 if res["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
