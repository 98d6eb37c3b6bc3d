#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Kernel-context correctness (issue 8): every load step's failure unwound,
CPU hotplug, memcgs dead before load, a cgroup v1 hierarchy beside v2.

Each test also requires a clean kernel log; the VM runner fails the whole
run on any report (BUG, WARNING, lockdep, KASAN, stall, ...) anyway.
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "lib"))
from osh_guest import (REFERENCE, Workload, cg_id, cg_mkdir,  # noqa: E402
                       cg_path, cg_rmdir_tree, check, dmesg_mark,
                       enable_memory, ensure_unloaded, insmod, module_loaded,
                       pin_with_socket,
                       read_kv, read_records, run_tests, scaled, shadow_cgroups,
                       sh)
import osh_compare  # noqa: E402
import osh_state  # noqa: E402

INIT_STEPS = ("kmem", "slabmodel", "debugfs", "hooks", "discover", "start")
REPORTS = ("WARNING:", "BUG:", "Oops", "refcount_t", "leak", "lockdep",
           "circular locking", "INFO: task", "stall")


def clean_log(log, what):
    for bad in REPORTS:
        check(bad not in log, "%s: %r in dmesg:\n%s" % (what, bad, log[-3000:]))


def compare_holds(under, what, allow_degraded=False):
    time.sleep(2.5)
    sh_ = osh_state.Shadow()
    res = osh_compare.collect(sh_, REFERENCE, "/sys/fs/cgroup", False, under)
    check(res["rows"], "%s: nothing compared" % what)
    degraded = [r["path"] for r in res["rows"] if r.get("status") == "degraded"]
    check(allow_degraded or not degraded,
          "%s: rows not judged, the shadow lost state: %s" % (what, degraded[:5]))
    if res["failed"]:
        ev = read_kv("stats")
        missed = {h["name"]: h["misses"] for h in read_records("hooks")
                  if h.get("misses", "0") != "0"}
        check(False, "%s: beyond the bound: %s\n(untracked_frees=%s "
              "dropped_recursion=%s, hooks that missed hits: %s)" % (
                  what, [(r["path"], r["counter"], r["kernel"], r["shadow"])
                         for r in res["failed"]], ev["untracked_frees"],
                  ev["dropped_recursion"], missed or "none"))
    return res


def test_every_init_failure_unwound():
    """fail_init=STEP fails the load after STEP ran, for every step: the
    load fails with ENOMEM, nothing of the module is left (debugfs, hooks,
    late work), and a normal load afterwards works.  Cgroups are created
    meanwhile so the path worker has work queued when the load fails."""
    enable_memory("/")
    cg_rmdir_tree("initfail")
    cg_mkdir("initfail", memory_for_children=True)
    since = dmesg_mark()
    try:
        for i, step in enumerate(INIT_STEPS):
            cg_mkdir("initfail/c%d" % i)
            # memcgptr: the slab model's worker is running at every later step
            p = insmod("fail_init=%s designs=v6.1,memcgptr" % step,
                       must_succeed=False)
            check(p.returncode != 0, "fail_init=%s: the load succeeded" % step)
            check("Cannot allocate memory" in p.stderr,
                  "fail_init=%s: insmod said %r, not ENOMEM" % (step, p.stderr))
            check(not module_loaded(), "fail_init=%s: module still loaded" % step)
            check(not os.path.exists("/sys/kernel/debug/objcg_shadow"),
                  "fail_init=%s: debugfs directory left behind" % step)
            # late work of the failed load would run (and crash) about now
            time.sleep(0.5)
        p = insmod("fail_init=nosuchstep", must_succeed=False)
        check(p.returncode != 0 and not module_loaded(),
              "fail_init=nosuchstep was accepted")
        insmod()
        check(len(read_records("hooks")) > 10, "the normal load has no hooks")
        ensure_unloaded()
    finally:
        ensure_unloaded()
        cg_rmdir_tree("initfail")
    log = since()
    for step in INIT_STEPS:
        check("fail_init=%s: failing the load at this step" % step in log,
              "no log line for the injected failure at %s" % step)
    clean_log(log, "init failures")


def test_memcgs_dead_before_load_are_dying_and_never_charged():
    """Memcgs removed before load but still pinned (a socket) are found
    at load as offline, their objcgs already reparented: nothing is ever
    charged to them, and compare holds beside them."""
    enable_memory("/")
    cg_rmdir_tree("dead")
    cg_mkdir("dead", memory_for_children=True)
    cg_mkdir("dead/gone", memory_for_children=True)
    cg_mkdir("dead/gone/child")
    # the child's socket pins it, and it pins its parent
    pin = pin_with_socket("dead/gone/child")
    ids = {"dead/gone": cg_id("dead/gone"), "dead/gone/child": cg_id("dead/gone/child")}
    os.rmdir(cg_path("dead/gone/child"))
    os.rmdir(cg_path("dead/gone"))
    try:
        insmod()
        records = shadow_cgroups()
        for rel, cid in ids.items():
            rec = records.get(cid)
            check(rec is not None, "%s (id %d) not found at load" % (rel, cid))
            check(rec["state"] in ("offline", "released"),
                  "%s is %s at load, not dying" % (rel, rec["state"]))
            check(rec["discovered"] == "1", "%s not marked discovered" % rel)
        ev = read_kv("stats")
        check(ev["reparent_ops"] >= len(ids),
              "reparent_ops=%s for %d dying memcgs" % (ev["reparent_ops"], len(ids)))
        # kmem next to them while they are dying
        cg_mkdir("dead/after")
        Workload(["--quiet", "dentry", "--count", str(scaled(20000, least=2000))],
                 cgroup="dead/after").release()
        for r in read_records("kmem"):
            if int(r["id"]) in ids.values():
                charged = sum(int(r[k]) for k in ("slab_reclaimable",
                                                  "slab_unreclaimable")
                              if k in r)
                check(charged == 0, "dying memcg %s charged %d bytes after load"
                      % (r["id"], charged))
        compare_holds("/dead/after", "beside memcgs dead before load")
    finally:
        ensure_unloaded()
        pin.stdin.close()
        pin.wait(timeout=30)
        cg_rmdir_tree("dead")


def test_cgroup_v1_hierarchy_changes_nothing():
    """A named v1 hierarchy beside v2: its mkdir, rename and task moves
    (kernfs ids of another hierarchy) change no memcg record or counter."""
    enable_memory("/")
    cg_rmdir_tree("v2side")
    mnt = "/tmp/osh-v1"
    os.makedirs(mnt, exist_ok=True)
    sh(["mount", "-t", "cgroup", "-o", "none,name=oshv1", "oshv1", mnt])
    try:
        insmod()
        # created after load: compare judges what the shadow saw born
        cg_mkdir("v2side", memory_for_children=True)
        cg_mkdir("v2side/a")
        w = Workload(["--quiet", "dentry", "--count", str(scaled(5000, least=1000))],
                     cgroup="v2side/a")
        time.sleep(0.5)     # the path worker names the new records
        before = {k: (v["path"], v["state"], v["tasks_attached"], v["attach_ops"])
                  for k, v in shadow_cgroups().items()}
        for i in range(200):
            os.mkdir(os.path.join(mnt, "g%d" % i))
        for i in range(0, 200, 2):
            os.rename(os.path.join(mnt, "g%d" % i), os.path.join(mnt, "r%d" % i))
        for i in range(1, 200, 40):
            with open(os.path.join(mnt, "g%d" % i, "cgroup.procs"), "w") as f:
                f.write(str(w.pid))
        time.sleep(1)
        after = {k: (v["path"], v["state"], v["tasks_attached"], v["attach_ops"])
                 for k, v in shadow_cgroups().items()}
        changed = {k: (before.get(k), v) for k, v in after.items()
                   if before.get(k) != v}
        check(not changed, "v1 operations changed memcg records: %s" % changed)
        compare_holds("/v2side", "with a v1 hierarchy beside")
        w.release()
    finally:
        ensure_unloaded()
        for name in sorted(os.listdir(mnt)):
            p = os.path.join(mnt, name)
            if os.path.isdir(p):
                with open(os.path.join(p, "cgroup.procs")) as f:
                    pids = f.read().split()
                for pid in pids:
                    with open(os.path.join(mnt, "cgroup.procs"), "w") as f:
                        f.write(pid)
                os.rmdir(p)
        sh(["umount", mnt])
        cg_rmdir_tree("v2side")


def _cpu_online(cpu, on):
    with open("/sys/devices/system/cpu/cpu%d/online" % cpu, "w") as f:
        f.write("1" if on else "0")


def test_cpu_hotplug_during_load():
    """CPU 1 offlined with stocks on it, then onlined, while loaded: the
    shadow drains the dead CPU's stocks as the running kernel does (6.1:
    page stock only; 6.12, 7.3: the obj stock too) and compare holds after
    each step."""
    if not os.path.exists("/sys/devices/system/cpu/cpu1/online"):
        check(False, "the guest has no hot-pluggable CPU 1")
    enable_memory("/")
    cg_rmdir_tree("hotplug")
    since = dmesg_mark()
    try:
        insmod()
        cg_mkdir("hotplug", memory_for_children=True)
        cg_mkdir("hotplug/a")
        w = Workload(["--quiet", "--cpu", "1", "mix", "--count",
                      str(scaled(4000, least=1000))], cgroup="hotplug/a")
        _cpu_online(1, False)
        ev = read_kv("stats")
        check(ev["cpus_died"] == 1, "cpus_died=%s after offlining CPU 1" %
              ev["cpus_died"])
        compare_holds("/hotplug", "after CPU 1 went offline")
        w.release()
        compare_holds("/hotplug", "objects freed with CPU 1 offline")
        _cpu_online(1, True)
        ev = read_kv("stats")
        check(ev["cpus_onlined"] == 1, "cpus_onlined=%s after onlining CPU 1" %
              ev["cpus_onlined"])
        Workload(["--quiet", "--cpu", "1", "mix", "--count",
                  str(scaled(2000, least=500))], cgroup="hotplug/a").release()
        compare_holds("/hotplug", "after CPU 1 came back")
        print("METRIC hotplug: %s releases deferred by handlers on the dying "
              "or starting CPU" % read_kv("stats")["deferred_on_offline_cpu"],
              flush=True)
    finally:
        if os.path.exists("/sys/devices/system/cpu/cpu1/online"):
            with open("/sys/devices/system/cpu/cpu1/online") as f:
                if f.read().strip() == "0":
                    _cpu_online(1, True)
        ensure_unloaded()
        cg_rmdir_tree("hotplug")
    clean_log(since(), "CPU hotplug")


def _mixed_load():
    """Background load of every kind the hooks see, restarted as it ends."""
    kinds = ("thread", "pipe", "socket", "mix")
    return [subprocess.Popen(
        ["sh", "-c", "while :; do %s --quiet %s --count 300 >/dev/null || exit 1; done"
         % (os.environ.get("KMEMLOAD", "tests/workloads/kmemload"), kind)])
        for kind in kinds]


def _stop(procs):
    for p in procs:
        p.kill()
        p.wait()


def test_load_unload_cycles_under_mixed_load():
    """OSH_CYCLES (default 100) insmod/rmmod cycles while threads, pipes, sockets and files
    come and go and cgroups are made and removed: every cycle loads and
    unloads, no kernel report, and the workloads survive."""
    cycles = int(os.environ.get("OSH_CYCLES", "100"))
    enable_memory("/")
    cg_rmdir_tree("cycles")
    cg_mkdir("cycles", memory_for_children=True)
    since = dmesg_mark()
    load = _mixed_load()
    t0 = time.monotonic()
    try:
        for i in range(cycles):
            insmod()
            cg_mkdir("cycles/c%d" % i)
            time.sleep(0.2)
            os.rmdir(cg_path("cycles/c%d" % i))
            ensure_unloaded()
            for p in load:
                check(p.poll() is None, "cycle %d: a workload died (rc %s)" % (
                    i, p.returncode))
    finally:
        _stop(load)
        ensure_unloaded()
        cg_rmdir_tree("cycles")
    log = since()
    clean_log(log, "%d load/unload cycles" % cycles)
    check(log.count("objcg_shadow: loaded") == cycles and
          log.count("objcg_shadow: unloaded") == cycles,
          "loads %d, unloads %d of %d cycles" % (
              log.count("objcg_shadow: loaded"),
              log.count("objcg_shadow: unloaded"), cycles))
    print("METRIC cycles %d load/unload cycles under mixed load in %.0fs" % (
        cycles, time.monotonic() - t0), flush=True)


CHURN_READER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
import osh_compare, osh_state
end = time.monotonic() + 1e9
n = 0
while True:
    for f in os.listdir("/sys/kernel/debug/objcg_shadow"):
        open("/sys/kernel/debug/objcg_shadow/" + f).read()
    sh = osh_state.Shadow()
    osh_compare.collect(sh, sh.default_design(), "/sys/fs/cgroup", False, "/churn")
    n += 1
    print(n, flush=True)
"""


def test_cgroups_churn_while_reading():
    """OSH_CHURN (default 10,000) cgroups created, populated (a task allocates in each), moved
    between and removed, while a reader loops over every debugfs file and
    compare: the reader never fails, the shadow records every cgroup, and
    compare holds at the end."""
    total = int(os.environ.get("OSH_CHURN", "10000"))
    enable_memory("/")
    cg_rmdir_tree("churn")
    insmod()
    since = dmesg_mark()
    reader = None
    try:
        cg_mkdir("churn", memory_for_children=True)
        cg_mkdir("churn/keep")
        reader = subprocess.Popen(
            [sys.executable, "-c", CHURN_READER,
             os.path.join(HERE, "..", "..", "scripts", "lib")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        made = 0
        for batch in range(0, total, 100):
            names = ["churn/b%d" % (batch + i) for i in range(min(100, total - batch))]
            for n in names:
                os.mkdir(cg_path(n))
            made += len(names)
            # a task allocates in one cgroup of the batch, moves to the
            # next, and stays behind in the kept one
            sh(["sh", "-c", 'for d in %s; do echo $$ > "%s/$d/cgroup.procs"; '
                ': > /tmp/osh-churn-$d; rm /tmp/osh-churn-$d; done; '
                'echo $$ > "%s/churn/keep/cgroup.procs"' % (
                    " ".join(os.path.basename(n) for n in names[:10]),
                    cg_path("churn"), "/sys/fs/cgroup")])
            for n in names:
                os.rmdir(cg_path(n))
            if made % 500 == 0:
                print("churn: %d cgroups made and removed" % made, flush=True)
            if reader.poll() is not None:
                check(False, "the reader died after %d cgroups: %s" % (
                    made, reader.stderr.read()[-2000:]))
        ev = read_kv("stats")
        print("METRIC churn %d cgroups made and removed while reading; "
              "memcgs_created=%s record_alloc_failed=%s" % (
                  made, ev.get("memcgs_created"), ev.get("record_alloc_failed")),
              flush=True)
        check(ev["record_alloc_failed"] == 0, "record allocations failed: %s" %
              ev["record_alloc_failed"])
        check(ev["memcgs_created"] >= made, "memcgs_created=%s for %d cgroups" % (
            ev["memcgs_created"], made))
        compare_holds("/churn", "after %d cgroups" % made)
    finally:
        if reader:
            reader.kill()
            reader.wait()
        ensure_unloaded()
        cg_rmdir_tree("churn")
    clean_log(since(), "cgroup churn")


def test_injected_allocation_failures_counted():
    """fail_alloc_every=7 fails every 7th allocation of shadow state while
    60 cgroups (OSH_SCALE: at least 30) are made and a task allocates in
    each: every injected
    failure is counted where it happened, compare holds for every cgroup
    the shadow tracked in full, and marks the others degraded."""
    every = 7
    enable_memory("/")
    cg_rmdir_tree("faults")
    cg_mkdir("faults", memory_for_children=True)
    since = dmesg_mark()
    held = []
    try:
        insmod("fail_alloc_every=%d" % every)
        for i in range(scaled(60, least=30)):
            cg_mkdir("faults/c%d" % i)
            held.append(Workload(["mix", "--count", "200"], "faults/c%d" % i))
        ev = read_kv("stats")
        injected = ev["alloc_failures_injected"]
        counted = {k: ev[k] for k in ("record_alloc_failed", "objcg_alloc_failed",
                                      "task_state_alloc_failed")}
        res = compare_holds("/faults", "with failures injected",
                            allow_degraded=True)
        rows = res["rows"]
        ok = {r["path"] for r in rows if r["status"] == "ok"}
        bad = {r["path"] for r in rows if r["status"] == "degraded"}
        print("METRIC faults every %d: %d injected, counted %s; compare: %d "
              "cgroups judged within bound, %d degraded (not judged)" % (
                  every, injected, counted, len(ok), len(bad)), flush=True)
        check(injected > 20, "only %d failures injected" % injected)
        check(sum(counted.values()) == injected,
              "%d failures injected, %d counted: %s" % (
                  injected, sum(counted.values()), counted))
        check(len(ok) >= 10, "only %d cgroups judged: %s" % (len(ok), sorted(ok)))
        check(bad, "no cgroup marked degraded although %s failed" % counted)
    finally:
        for w in held:
            w.kill()
        ensure_unloaded()
        cg_rmdir_tree("faults")
    clean_log(since(), "injected allocation failures")


if __name__ == "__main__":
    ensure_unloaded()
    sys.exit(run_tests(globals()))
