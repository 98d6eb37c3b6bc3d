#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""A/B designs in the guest: the switch regression shape, fidelity of the
v6.1 design to the running kernel, and compare for every design."""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "lib"))
from osh_guest import (DEBUG_KERNEL, FAMILY, REFERENCE, TestSkipped,  # noqa: E402
                       Workload, cg_mkdir, cg_rmdir_tree, check,
                       dmesg_mark, enable_memory, ensure_unloaded, insmod,
                       module_loaded, read_kv, run_tests, scaled,
                       KMEMLOAD, cg_path, wait_for)
import osh_bench  # noqa: E402
import osh_compare  # noqa: E402
import osh_designs  # noqa: E402
import osh_experiment_guest as exp  # noqa: E402
import osh_slabmodel  # noqa: E402
import osh_state  # noqa: E402

ALL = ",".join(dict.fromkeys([REFERENCE, "v6.1", "v6.7", "v7.1", "pernode",
                              "v7.1+stock2", "v7.1+memcgkey"]))


def setup():
    cg_rmdir_tree("exp")
    enable_memory("/")
    exp.mkcg("exp", children=True)


def drains(d, name):
    return d["designs"][name]["drain_objcg"]


def test_switch_drains_v71_vs_pernode():
    insmod("designs=" + ALL)
    try:
        setup()
        _what, d = exp.measure(exp.exp_switch)
        v61, v67, v71, pn = (drains(d, n) for n in ("v6.1", "v6.7", "v7.1",
                                                     "pernode"))
        allocs = d["designs"]["v7.1"]["allocs"]
        print("METRIC switch allocs=%d drains v6.1=%d v6.7=%d v7.1=%d "
              "pernode=%d (on free %d) v7.1+stock2=%d" %
              (allocs, v61, v67, v71, pn,
               d["designs"]["pernode"]["drain_on_free"],
               drains(d, "v7.1+stock2")), flush=True)
        check(allocs > 20000, "too few allocations: %d" % allocs)
        # the regression: v7.1 drains at (almost) every one of the 6000
        # turns (on 6.1 once more when the turn's files are freed by RCU)
        check(v71 >= 0.9 * 6000, "v7.1 drained only %d times" % v71)
        check(v71 >= 10 * pn, "v7.1 %d < 10 x pernode %d" % (v71, pn))
        # the per-node array behaves like the single per-memcg objcg
        check(pn <= 2 * v67 + 2 and v67 <= 2 * pn + 2,
              "pernode %d not within 2x of v6.7 %d" % (pn, v67))
        check(drains(d, "v7.1+stock2") <= 2 * v67 + 2,
              "two slots should hold both nodes' objcgs")
        # every design charged the same objects
        counts = {n: c["allocs"] for n, c in d["designs"].items()}
        check(len(set(counts.values())) == 1, "allocs differ: %s" % counts)
    finally:
        ensure_unloaded()
        cg_rmdir_tree("exp")


def test_fidelity_to_running_kernel():
    """The kernel's own design reproduces its drains and page charges
    within 5% on each standard workload.  It runs after the switch test
    on purpose: that leaves 7.3's five slots full of dead cgroups'
    objcgs, which the shadow must take over at load with the kernel's
    round-robin victim (osh_acct_seed_stock()); before it did, this
    order gave 5,999 simulated against 3,007 observed evictions."""
    if DEBUG_KERNEL:
        # seen: page charges 5.4% apart on `slots` (10,633 simulated,
        # 10,084 observed), drains equal.  Not explained yet; suspected:
        # the debug checks between a tracepoint and the charge it marks
        # widen the window in which an interrupt reorders them.
        raise TestSkipped("fidelity is judged on the stock kernels; on the "
                          "debug kernel page charges differ by 5%, not yet "
                          "explained (README)")
    insmod("designs=" + ALL)
    try:
        setup()
        workloads = [("memcgs", exp.exp_memcgs), ("slots", exp.exp_slots),
                     ("switch", exp.exp_switch),
                     ("crossnode", exp.exp_crossnode),
                     ("reparent", exp.exp_reparent)]
        for name, fn in workloads:
            _what, d = exp.measure(fn)
            agr = osh_designs.agreement(d)
            for what, a in agr.items():
                print("METRIC fidelity %s %s simulated=%d observed=%d "
                      "difference=%.2f%%" % (name, what, a["simulated"],
                                              a["observed"],
                                              100 * a["relative"]),
                      flush=True)
                check(a["ok"], "%s: %s disagrees: %s" % (name, what, a))
            if name == "slots":
                # 8 memcgs on one CPU: every kernel switches or evicts
                check(agr["drains"]["observed"] > 1000 and
                      agr["page_charges"]["observed"] > 500,
                      "slots: the kernel's stock operations were not "
                      "observed: %s" % agr)
        p = subprocess.run(["scripts/objcg-shadow", "designs"],
                           capture_output=True, text=True)
        check("fidelity of " + REFERENCE in p.stdout and "pernode" in p.stdout,
              "objcg-shadow designs output: %s%s" % (p.stdout, p.stderr))
    finally:
        ensure_unloaded()
        cg_rmdir_tree("exp")


def test_every_design_passes_compare():
    insmod("designs=" + ALL)
    loads = []
    try:
        setup()
        for kind, args in (("dentry", ["--mib", str(scaled(20))]),
                           ("pipe", ["--mib", str(scaled(20))]),
                           ("thread", ["--count", str(scaled(1500))])):
            cg_mkdir("exp/" + kind)
            loads.append(Workload(["--quiet", "--node", "1", kind] + args,
                                  cgroup="exp/" + kind))
        time.sleep(2.5)
        sh = osh_state.Shadow()
        for design in ALL.split(","):
            res = osh_compare.collect(sh, design, "/sys/fs/cgroup", False,
                                      "/exp")
            bad = ["%s %s delta %d" % (r["path"], r["counter"], r["delta"])
                   for r in res["failed"]]
            check(res["rows"] and not bad,
                  "%s beyond the bound: %s" % (design, bad))
        ev = read_kv("stats")
        check(ev["task_state_alloc_failed"] == 0, "task state allocation failed")
    finally:
        for w in loads:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("exp")


def test_task_states_follow_tasks():
    insmod("designs=v6.1,pernode")
    try:
        setup()
        cg_mkdir("exp/t")
        base = read_kv("stats")["task_states"]
        w = Workload(["--quiet", "thread", "--count", "200"], cgroup="exp/t")
        held = read_kv("stats")["task_states"]
        check(held >= base + 200, "task states %d -> %d for 201 tasks" % (
            base, held))
        w.release()
        time.sleep(0.5)
        after = read_kv("stats")["task_states"]
        check(after <= base + 5, "task states not freed at exit: %d -> %d" % (
            base, after))
        d = osh_designs.snapshot()["designs"]["pernode"]
        check(d["task_refresh"] > 0, "no task cache refresh")
        check(d["task_state_missing"] == 0, "tasks without state: %d" %
              d["task_state_missing"])
    finally:
        ensure_unloaded()
        cg_rmdir_tree("exp")


def test_bad_designs_refused():
    for value, message in (
            ("v6.2", "designs=v6.2 is invalid: unknown design 'v6.2': valid "
             "designs are v6.1, v6.7, v7.1, pernode"),
            ("v7.1+stock9", "unknown design 'v7.1+stock9'"),
            ("v6.1,v6.1", "design 'v6.1' given twice"),
            ("memcgptr", "memcgptr is compared with the slab layout of an "
             "obj_cgroup design: name one too"),
            ("v6.1,memcgptr+stock2", "unknown design 'memcgptr+stock2'")):
        since = dmesg_mark()
        p = insmod("designs=" + value, must_succeed=False)
        check(p.returncode != 0 and not module_loaded(),
              "designs=%s accepted" % value)
        check(message in since(), "no message %r in %s" % (message, since()))
    insmod("designs=v7.1+stock4+memcgkey")
    try:
        names = list(osh_designs.snapshot()["designs"])
        check(names == ["v7.1+stock4+memcgkey"], "designs: %s" % names)
    finally:
        ensure_unloaded()


def test_bench_tool_pairs_samples():
    """objcg-shadow bench's guest side: every configuration timed once per
    repetition, the module left unloaded, a refused design reported."""
    if DEBUG_KERNEL:
        raise TestSkipped("a test of the bench tool's pairing, not of kernel "
                          "context: the stock kernels run it")
    ensure_unloaded()
    out = "/tmp/bench.json"
    guest = os.path.join(HERE, "..", "..", "scripts", "lib",
                         "osh_bench_guest.py")
    loaded = "designs=v6.1 observe=0"
    p = subprocess.run(["python3", guest, "--reps", "2", "--workloads",
                        "pipe,thread", "--config", "off", "--config", loaded,
                        "--json", out], capture_output=True, text=True)
    check(p.returncode == 0, "bench guest failed: %s" % p.stderr[-2000:])
    check(not module_loaded(), "bench left the module loaded")
    with open(out) as f:
        result = json.load(f)
    for w in ("pipe", "thread"):
        for c in ("off", loaded):
            t = result["samples"][w][c]
            check(len(t) == 2 and all(0 < x < 120 for x in t),
                  "%s/%s samples: %s" % (w, c, t))
    rows = {(r["workload"], r["config"]): r
            for r in osh_bench.summarize(result)}
    r = rows[("pipe", loaded)]
    t, base = result["samples"]["pipe"][loaded], result["samples"]["pipe"]["off"]
    check(abs(r["ratio"] - (t[0] / base[0] + t[1] / base[1]) / 2) < 1e-9,
          "ratio is not the median of the paired ratios: %s" % r)
    check(r["ratio_min"] <= r["ratio"] <= r["ratio_max"], "range: %s" % r)
    p = subprocess.run(["python3", guest, "--reps", "1", "--workloads",
                        "pipe", "--config", "off", "--config", "designs=v6.2",
                        "--json", out], capture_output=True, text=True)
    check(p.returncode == 1 and "insmod designs=v6.2" in p.stderr,
          "a refused design: rc %d, %s" % (p.returncode, p.stderr[-500:]))
    check(not module_loaded(), "module loaded after a refused design")


def test_observe_off_skips_the_fidelity_kprobes():
    """observe=0: the observe-only kprobes stay off, the designs still
    account, and `designs` says nothing was observed instead of failing."""
    since = dmesg_mark()
    p = insmod("observe=2", must_succeed=False)
    check(p.returncode != 0 and not module_loaded(), "observe=2 accepted")
    check("observe=2 is invalid: accepted values are integers 0..1" in since(),
          "no message for observe=2: %s" % since())
    insmod("designs=v6.1 observe=0")
    try:
        setup()
        states = {h["name"]: h["state"] for h in
                  osh_state.read_records("hooks")}
        check(all(states[n] == "off" for n in FAMILY["observe"]),
              "observe-only hooks: %s" % states)
        check(states[FAMILY["drain_local"]] == "attached",
              "%s is an input: %s" % (FAMILY["drain_local"], states))
        _what, d = exp.measure(exp.exp_memcgs, 0.2)
        check(d["designs"]["v6.1"]["drain_objcg"] > 100,
              "v6.1 did not account: %s" % d["designs"]["v6.1"])
        check(d["observed"]["observing"] == 0 and
              d["observed"]["charge_ops"] == 0, "observed: %s" % d["observed"])
        check(osh_designs.agreement(d) == {}, "agreement without observing")
        p = subprocess.run(["scripts/objcg-shadow", "designs"],
                           capture_output=True, text=True)
        check(p.returncode == 0 and "observe=0" in p.stdout,
              "objcg-shadow designs: rc %d %s" % (p.returncode, p.stdout))
    finally:
        ensure_unloaded()
        cg_rmdir_tree("exp")

def test_slab_model_follows_kernel_and_pins_dead_memcgs():
    """designs=REF,memcgptr: while 8 cgroups create files, the slab model's
    shared layout grows the dentry cache by the kernel's own slab change
    (within 10%); memcgptr holds the same objects on at least as many
    slabs; cgroups removed while their files live stay pinned under
    memcgptr, their pointers swapped to the parent.  Files created before
    the window fill the free slots the kernel's slabs had before the load,
    which the model cannot know."""
    insmod("designs=%s,memcgptr" % REFERENCE)
    dirs = ["/mnt/osh-sm%d" % i for i in range(8)] + ["/mnt/osh-smfill"]
    try:
        setup()
        n = scaled(1500, 300)
        exp.mkcg("exp/smfill")
        subprocess.run([KMEMLOAD, "--cgroup", cg_path("exp/smfill"), "--count",
                        str(scaled(4000, 1000)), "--keep-files", "--dir", dirs[-1],
                        "dentry"], check=True, stdout=subprocess.DEVNULL)
        before = osh_slabmodel.read()
        k0 = osh_slabmodel.kernel_slabs("dentry")
        for i, d in enumerate(dirs[:8]):
            exp.mkcg("exp/sm%d" % i)
            subprocess.run([KMEMLOAD, "--cgroup", cg_path("exp/sm%d" % i),
                            "--count", str(n), "--keep-files", "--dir", d,
                            "dentry"], check=True, stdout=subprocess.DEVNULL)
        after = osh_slabmodel.read()
        k1 = osh_slabmodel.kernel_slabs("dentry")
        shared = osh_slabmodel.cache_delta(before, after, "dentry", "shared_slabs")
        per_memcg = osh_slabmodel.cache_delta(before, after, "dentry",
                                              "memcgptr_slabs")
        objs = [osh_slabmodel.cache_delta(before, after, "dentry", f)
                for f in ("shared_objects", "memcgptr_objects")]
        print("METRIC slabmodel dentry kernel=+%d shared=+%d memcgptr=+%d "
              "objects=+%d" % (k1 - k0, shared, per_memcg, objs[0]), flush=True)
        check(after["log"]["dropped"] == 0 and after["events"]["alloc_failed"] == 0,
              "the model lost events: %s %s" % (after["log"], after["events"]))
        check(objs[0] == objs[1] and objs[0] >= 8 * n,
              "layouts hold different objects, or too few: %s" % objs)
        check(k1 - k0 > 0 and abs(shared - (k1 - k0)) <= 0.1 * (k1 - k0),
              "shared layout +%d slabs, the kernel +%d" % (shared, k1 - k0))
        check(per_memcg >= shared, "memcgptr +%d < shared +%d" % (per_memcg, shared))
        for i in range(4):
            os.rmdir(cg_path("exp/sm%d" % i))
        pinned = wait_for(lambda: osh_slabmodel.read()["memcgptr"]["pinned_memcgs"] >= 4
                          and osh_slabmodel.read()["memcgptr"], what="4 pinned memcgs")
        check(pinned["ptr_swaps"] - before["memcgptr"]["ptr_swaps"] >= 4,
              "offlines swapped no pointers: %s" % pinned)
        check(pinned["pinned_pages"] > 0, "pinned memcgs hold no pages: %s" % pinned)
        # objects the kernel charges to no memcg fill the root's caches
        before = osh_slabmodel.read()
        subprocess.run([KMEMLOAD, "--count", "500", "--keep-files", "--dir",
                        dirs[0] + "root", "dentry"], check=True,
                       stdout=subprocess.DEVNULL)
        root = osh_slabmodel.cache_delta(before, osh_slabmodel.read(), "dentry",
                                         "memcgptr_objects")
        check(root >= 500, "500 files of the root memcg: %+d dentries modelled" % root)
    finally:
        ensure_unloaded()
        subprocess.run(["rm", "-rf", dirs[0] + "root"] + dirs)


if __name__ == "__main__":
    ensure_unloaded()
    sys.exit(run_tests(globals()))
