#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Foundation tests, run inside the guest with the module NOT loaded:
each test loads and unloads it as it needs.  Checked against
/sys/fs/cgroup itself (ids are directory inode numbers)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from osh_guest import (FAMILY, TestFailure, Workload, cg_id, cg_mkdir,  # noqa: E402
                       cg_move,
                       cg_rmdir_tree, check, dmesg_mark, ensure_unloaded,
                       hooks, insmod, module_loaded, read_kv, rmmod,
                       run_tests, scaled, shadow_cgroups, wait_for, enable_memory)

REQUIRED_HOOKS = FAMILY["free_hooks"] | {
    "kmalloc", "kmem_cache_alloc",
    "cgroup_mkdir", "cgroup_rmdir", "cgroup_attach_task",
    "sched_process_fork", "sched_process_exit", "sched_process_free",
    "mem_cgroup_css_online", "mem_cgroup_css_offline",
    "mem_cgroup_css_released", "mem_cgroup_css_free", "mem_cgroup_attach",
}


def expect_record(recs, rel, parent_rel, state="online", discovered=None):
    cid = cg_id(rel)
    check(cid in recs, "no shadow record for %s (id %d)" % (rel, cid))
    r = recs[cid]
    want_parent = cg_id(parent_rel)
    check(int(r["parent"]) == want_parent,
          "%s: parent %s, kernel says %d" % (rel, r["parent"], want_parent))
    check(r["path"] == "/" + rel.strip("/"),
          "%s: path %r" % (rel, r["path"]))
    check(r["state"] == state, "%s: state %s, want %s" % (
        rel, r["state"], state))
    check(int(r["level"]) == rel.strip("/").count("/") + 1,
          "%s: level %s" % (rel, r["level"]))
    if discovered is not None:
        check(r["discovered"] == str(int(discovered)),
              "%s: discovered=%s" % (rel, r["discovered"]))
    return r


def wait_paths(rels):
    def ready():
        recs = shadow_cgroups()
        return all(recs.get(cg_id(r), {}).get("path", "?") != "?"
                   for r in rels) and recs
    return wait_for(ready, 10, what="paths of " + ", ".join(rels))


def test_existing_cgroups_discovered():
    cg_rmdir_tree("pre")
    enable_memory("/")
    cg_mkdir("pre", memory_for_children=True)
    cg_mkdir("pre/a")
    cg_mkdir("pre/b", memory_for_children=True)
    cg_mkdir("pre/b/c")
    try:
        insmod()
        recs = wait_paths(["pre", "pre/a", "pre/b/c"])
        check(recs[1]["path"] == "/" and recs[1]["state"] == "online",
              "root record wrong: %r" % recs.get(1))
        expect_record(recs, "pre", "/", discovered=True)
        expect_record(recs, "pre/a", "pre", discovered=True)
        expect_record(recs, "pre/b", "pre", discovered=True)
        expect_record(recs, "pre/b/c", "pre/b", discovered=True)
        # every memcg the kernel has is there: compare with cgroupfs
        kernel_ids = set()
        for dirpath, _, files in os.walk("/sys/fs/cgroup"):
            if "memory.current" in files:
                kernel_ids.add(os.stat(dirpath).st_ino)
        live = {i for i, r in recs.items() if r["state"] == "online"}
        check(kernel_ids - {1} <= live,
              "memcgs missing from shadow: %s" % sorted(kernel_ids - live))
    finally:
        ensure_unloaded()
        cg_rmdir_tree("pre")


def test_new_cgroups_tracked_and_rmdir_frees():
    cg_rmdir_tree("post")
    enable_memory("/")
    insmod()
    try:
        cg_mkdir("post", memory_for_children=True)
        cg_mkdir("post/x", memory_for_children=True)
        cg_mkdir("post/x/y")
        cg_mkdir("post/x/y z")  # odd name: escaped in debugfs
        recs = wait_paths(["post", "post/x", "post/x/y", "post/x/y z"])
        expect_record(recs, "post", "/", discovered=False)
        expect_record(recs, "post/x", "post", discovered=False)
        expect_record(recs, "post/x/y", "post/x", discovered=False)
        expect_record(recs, "post/x/y z", "post/x", discovered=False)
        yid = cg_id("post/x/y")
        os.rmdir("/sys/fs/cgroup/post/x/y")

        def state_of_y():
            r = shadow_cgroups().get(yid)
            return r and r["state"]
        wait_for(lambda: state_of_y() in ("offline", "released", "freed"),
                 10, what="y offline")
        wait_for(lambda: state_of_y() == "freed", 30, what="y freed")
        stats = read_kv("stats")
        check(int(stats["memcgs_freed"]) >= 1, "memcgs_freed not counted")
        check(int(stats["unknown_id_events"]) == 0,
              "unknown ids: %s" % stats["unknown_id_events"])
    finally:
        cg_rmdir_tree("post")
        ensure_unloaded()


def test_attach_counters():
    cg_rmdir_tree("att")
    enable_memory("/")
    cg_mkdir("att", memory_for_children=True)
    cg_mkdir("att/one")
    cg_mkdir("att/two")
    insmod()
    procs = []
    try:
        one, two = cg_id("att/one"), cg_id("att/two")
        before = shadow_cgroups()
        check(before[one]["tasks_attached"] == "0", "fresh counter not 0")
        for _ in range(3):
            procs.append(Workload(["thread", "--count", "1"]))
        for w in procs:
            cg_move(w.pid, "att/one")       # 2 threads each: main + 1
        for w in procs[:2]:
            cg_move(w.pid, "att/two")
        recs = shadow_cgroups()
        check(int(recs[one]["attach_ops"]) == 3,
              "one: attach_ops %s, want 3" % recs[one]["attach_ops"])
        check(int(recs[one]["tasks_attached"]) == 6,
              "one: tasks_attached %s, want 6" % recs[one]["tasks_attached"])
        check(int(recs[two]["attach_ops"]) == 2,
              "two: attach_ops %s, want 2" % recs[two]["attach_ops"])
        check(int(recs[two]["tasks_attached"]) == 4,
              "two: tasks_attached %s, want 4" % recs[two]["tasks_attached"])
        h = hooks()
        check(int(h["mem_cgroup_attach"]["hits"]) >= 5,
              "mem_cgroup_attach hits %s" % h["mem_cgroup_attach"]["hits"])
    finally:
        for w in procs:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("att")


def check_hooks_hit(h, also_hot):
    """Every required hook attached; the hooks any mixed workload reaches,
    and @also_hot, hit at least once."""
    for name in sorted(REQUIRED_HOOKS):
        check(h[name]["state"] == "attached", "%s is %s" % (
            name, h[name]["state"]))
    hot = ({"kmalloc", "kmem_cache_alloc", "sched_process_fork"} | also_hot
           | (FAMILY["free_hooks"] - {"kmem_cache_charge"}))
    for name in sorted(hot):
        check(int(h[name]["hits"]) > 0, "%s never hit" % name)


def test_hooks_attached_and_counting():
    insmod()
    try:
        Workload(["mix", "--count", "50"]).release()
        h = hooks()
        missing = REQUIRED_HOOKS - set(h)
        check(not missing, "hooks not listed: %s" % missing)
        check_hooks_hit(h, {"sched_process_exit"})
        for name in REQUIRED_HOOKS:
            check(h[name]["misses"] == "0", "%s missed %s" % (
                name, h[name]["misses"]))
        ev = read_kv("stats")
        check(int(ev["kmem_alloc_accounted"]) > 0, "no accounted allocation")
        with open("/sys/kernel/debug/objcg_shadow/version") as f:
            ver = f.read()
        check(os.uname().release in ver, "version lacks running kernel")
        try:
            with open("/sys/kernel/debug/objcg_shadow/cgroups", "w") as f:
                f.write("x")
            raise TestFailure("debugfs cgroups accepted a write")
        except OSError:
            pass
    finally:
        ensure_unloaded()


def test_probes_only_counts_hits_and_accounts_nothing():
    """probes_only=1 attaches the same hooks, which count their hits and do
    nothing else: no allocation accounted, no record for a new cgroup, no
    task state; the default load accounts the same workload."""
    enable_memory("/")
    cg_rmdir_tree("probesonly")
    insmod("probes_only=1")
    try:
        cg_mkdir("probesonly")
        Workload(["mix", "--count", "200"], cgroup="probesonly").release()
        h = hooks()
        check_hooks_hit(h, {"mem_cgroup_css_online"})
        ev = read_kv("stats")
        check(int(ev["kmem_alloc_accounted"]) == 0,
              "probes_only=1 accounted %s allocations" % ev["kmem_alloc_accounted"])
        check(cg_id("probesonly") not in shadow_cgroups(),
              "probes_only=1 made a record for a new cgroup")
        check(ev["task_states"] == ev["task_states_at_load"],
              "probes_only=1: task states %s, %s at load" % (
                  ev["task_states"], ev["task_states_at_load"]))
        ensure_unloaded()
        insmod()
        Workload(["mix", "--count", "200"], cgroup="probesonly").release()
        check(int(read_kv("stats")["kmem_alloc_accounted"]) > 0,
              "the default load accounted nothing of the same workload")
    finally:
        ensure_unloaded()
        cg_rmdir_tree("probesonly")


def test_bad_params_refused():
    cases = [
        ("keep_freed=abc", "keep_freed=abc is invalid: accepted values are integers 0..65536"),
        ("keep_freed=65537", "keep_freed=65537 is invalid"),
        ("keep_freed=-1", "keep_freed=-1 is invalid"),
        ("probes_only=2", "probes_only=2 is invalid: accepted values are integers 0..1"),
    ]
    for params, message in cases:
        since = dmesg_mark()
        p = insmod(params, must_succeed=False)
        check(p.returncode != 0, "insmod %s succeeded" % params)
        check("Invalid argument" in p.stderr or "Unknown symbol" in p.stderr
              or "Invalid parameters" in p.stderr,
              "insmod %s: unexpected error %r" % (params, p.stderr))
        check(not module_loaded(), "module loaded after %s" % params)
        check(message in since(), "no message %r for %s in:\n%s" % (
            message, params, since()))
    # unknown names never reach the module: the kernel ignores them, loudly
    since = dmesg_mark()
    insmod("no_such_param=1")
    check("unknown parameter 'no_such_param' ignored" in since(),
          "kernel did not report the unknown parameter")
    rmmod()
    # a valid value is taken
    insmod("keep_freed=0")
    try:
        with open("/sys/module/objcg_shadow/parameters/keep_freed") as f:
            check(f.read().strip() == "0", "keep_freed not applied")
        cg_mkdir("kf")
        kid = cg_id("kf")
        os.rmdir("/sys/fs/cgroup/kf")
        wait_for(lambda: int(read_kv("stats")["memcgs_freed"]) >= 1, 30,
                 what="kf freed")
        check(kid not in shadow_cgroups(), "freed record kept with keep_freed=0")
    finally:
        ensure_unloaded()


def test_load_unload_under_load():
    cycles = scaled(10, least=2)
    enable_memory("/")
    cg_rmdir_tree("churn")
    cg_mkdir("churn", memory_for_children=True)
    since = dmesg_mark()
    # background churn: threads, pipes, sockets, files and cgroups
    load = []
    try:
        for kind in ("thread", "pipe", "socket", "mix"):
            load.append(__import__("subprocess").Popen(
                ["sh", "-c", "while :; do %s --quiet %s --count 200 >/dev/null || exit 1; done"
                 % (os.environ.get("KMEMLOAD", "tests/workloads/kmemload"), kind)]))
        for i in range(cycles):
            insmod()
            cg_mkdir("churn/c%d" % i)
            time.sleep(0.3)
            os.rmdir("/sys/fs/cgroup/churn/c%d" % i)
            rmmod()
        for p in load:
            check(p.poll() is None, "workload died: rc %s" % p.returncode)
    finally:
        for p in load:
            p.kill()
            p.wait()
        ensure_unloaded()
        cg_rmdir_tree("churn")
    log = since()
    for bad in ("WARNING:", "BUG:", "Oops", "refcount_t", "leak"):
        check(bad not in log, "%r in dmesg:\n%s" % (bad, log))
    check(log.count("objcg_shadow: loaded") == cycles,
          "expected %d loads in dmesg" % cycles)
    check(log.count("objcg_shadow: unloaded") == cycles,
          "expected %d unloads in dmesg" % cycles)


if __name__ == "__main__":
    ensure_unloaded()
    sys.exit(run_tests(globals()))
