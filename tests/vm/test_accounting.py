#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Shadow accounting against the kernel's memory.stat, in the guest.

Each workload kind allocates at least 20 MiB of slab so the kernel's own
staleness bound (PAGE_SIZE * 64 * nr_cpus = 512 KiB here) is meaningful.
Lines "METRIC ..." report the largest |delta|/bound per counter for the
closing notes; they are information, the checks are the assertions.
"""
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "lib"))
from osh_guest import (FAMILY, Workload, cg_id, cg_mkdir, cg_move,  # noqa: E402
                       cg_path, cg_rmdir_tree, hooks,
                       check, enable_memory, ensure_unloaded, insmod, kmem_line,
                       read_kv, read_records, run_tests, shadow_cgroups,
                       wait_for, KMEMLOAD, scaled, sh)
import osh_compare  # noqa: E402
import osh_state  # noqa: E402

MIB = 1 << 20

# kind -> kmemload arguments for >= 20 MiB of slab (at OSH_SCALE 1)
KIND_MIB = 20
KINDS = {
    "dentry": ["dentry", "--mib", str(scaled(24))],
    "negdentry": ["negdentry", "--count", str(scaled(150000))],
    "pipe": ["pipe", "--mib", str(scaled(30))],
    "socket": ["socket", "--mib", str(scaled(28))],
    "thread": ["thread", "--count", str(scaled(4000))],
}


def compare(cgroup=None, include_all=False, design=None):
    shadow = osh_state.Shadow()
    return osh_compare.collect(shadow, design or shadow.default_design(),
                               "/sys/fs/cgroup", include_all, cgroup)


def rows_of(res, path):
    return {r["counter"]: r for r in res["rows"] if r["path"] == path}


def assert_within_bound(res, what):
    bad = ["%s %s: kernel %d shadow %d delta %d > bound %d" % (
        r["path"], r["counter"], r["kernel"], r["shadow"], r["delta"],
        r["bound"]) for r in res["failed"] if "error" not in r]
    errors = [r for r in res["failed"] if "error" in r]
    check(not bad and not errors, "%s: beyond the bound:\n%s%s" % (
        what, "\n".join(bad), errors))
    check(res["rows"], "%s: nothing compared" % what)


def memory_stat(rel):
    return osh_state.read_memory_stat(cg_path(rel))


def drop_caches():
    sh("sync; echo 3 > /proc/sys/vm/drop_caches")


def setup_tree(top):
    cg_rmdir_tree(top)
    enable_memory("/")
    cg_mkdir(top, memory_for_children=True)


def test_compare_each_kind():
    setup_tree("acct")
    insmod()
    loads = []
    try:
        for kind, args in KINDS.items():
            cg_mkdir("acct/" + kind)
            loads.append(Workload(["--quiet"] + args, cgroup="acct/" + kind))
        time.sleep(3)   # let the periodic stats flush run once
        res = compare("/acct")
        for kind in KINDS:
            rows = rows_of(res, "/acct/" + kind)
            check(rows, "no rows for " + kind)
            check(rows["slab"]["kernel"] >= scaled(KIND_MIB) * MIB,
                  "%s: only %d bytes of slab" % (kind, rows["slab"]["kernel"]))
            for counter in ("slab_reclaimable", "slab_unreclaimable", "slab",
                            "kernel_stack", "kernel"):
                check(counter in rows, "%s: no %s row" % (kind, counter))
            worst = {}
            for r in rows.values():
                base = r["counter"].split(".")[0]
                worst[base] = max(worst.get(base, 0),
                                  abs(r["delta"]) / r["bound"])
            for r in rows.values():
                if abs(r["delta"]) > 0.1 * r["bound"]:
                    print("DETAIL %s %s kernel=%d shadow=%d delta=%d" % (
                        kind, r["counter"], r["kernel"], r["shadow"],
                        r["delta"]), flush=True)
            print("METRIC kind=%s slab=%d %s largest_delta_bytes=%d "
                  "largest_batched_delta_bytes=%d" % (
                      kind, rows["slab"]["kernel"],
                      " ".join("%s=%.1f%%" % (k, 100 * v)
                               for k, v in sorted(worst.items())),
                      max(abs(r["delta"]) for r in rows.values()),
                      max(abs(r.get("vmstat_delta", 0)) for r in rows.values())),
                  flush=True)
        assert_within_bound(res, "%d MiB per kind" % scaled(KIND_MIB))
        health = res["health"]
        check(health["attribution_mismatch"] == 0,
              "attribution mismatches: %s" % health)
        for key in ("dropped_objects_map_full", "dropped_objects_no_record",
                    "dropped_pages_map_full", "dropped_recursion",
                    "unknown_memcg"):
            check(health[key] == 0, "%s=%s" % (key, health[key]))
    finally:
        for w in loads:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("acct")


TCP_SERVER = """
import socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(512)
print(srv.getsockname()[1], flush=True)
sys.stdin.readline()
conns = [srv.accept()[0] for _ in range(%d)]
print("accepted", flush=True)
sys.stdin.readline()
"""


def test_tcp_accept_charges_existing_sockets():
    """TCP accept: 6.12 and 7.3 charge the accepted socket afterwards with
    kmem_cache_charge(); the shadow follows, compare holds, nothing is
    freed untracked."""
    n = 300
    setup_tree("tcp")
    insmod()
    cg_mkdir("tcp/srv")
    srv = subprocess.Popen([sys.executable, "-c", TCP_SERVER % n],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    clients = []
    try:
        port = int(srv.stdout.readline())
        cg_move(srv.pid, "tcp/srv")
        srv.stdin.write("go\n")
        srv.stdin.flush()
        for _ in range(n):
            clients.append(socket.create_connection(("127.0.0.1", port)))
        check(srv.stdout.readline().strip() == "accepted", "server failed")
        time.sleep(2.5)
        res = compare("/tcp")
        assert_within_bound(res, "%d accepted TCP sockets" % n)
        if "kmem_cache_charge" in FAMILY["free_hooks"]:
            hits = int(hooks()["kmem_cache_charge"]["hits"])
            print("METRIC tcp accepted=%d kmem_cache_charge_hits=%d" % (n, hits),
                  flush=True)
            check(hits >= n, "kmem_cache_charge seen %d times for %d accepts" % (
                hits, n))
    finally:
        for c in clients:
            c.close()
        srv.stdin.close()
        srv.wait(timeout=60)
    check_shadow_agrees_with_kernel("untracked_frees", "attribution_mismatch",
                                    "kernel_only", "shadow_only")
    ensure_unloaded()
    cg_rmdir_tree("tcp")


def check_shadow_agrees_with_kernel(*events):
    """The named disagreement counters are 0, and so is every live object
    the kernel's vector did not charge (frees of those cannot skip the
    object map: one would make every unaccounted free look it up)."""
    ev = read_kv("stats")
    keys = events + ("objects_kernel_did_not_charge",)
    check(all(ev[k] == 0 for k in keys),
          "events: %s" % {k: ev[k] for k in keys})


URINGLOAD = os.path.join(os.path.dirname(KMEMLOAD), "uringload")


def test_io_uring_bulk_allocations():
    """io_uring requests come from kmem_cache_alloc_bulk() of a SLAB_ACCOUNT
    cache, with no per-object tracepoint: the shadow sees them through its
    bulk probe, compare holds while the rings are open and after they are
    torn down (asynchronously, by a kworker), and nothing is freed
    untracked."""
    rings, nops = 200, 32
    setup_tree("uring")
    insmod()
    cg_mkdir("uring/a")
    load = subprocess.Popen(
        ["sh", "-c", 'echo $$ > "$1/cgroup.procs" && exec "$2" --rings %d '
         '--nops %d' % (rings, nops), "sh", cg_path("uring/a"), URINGLOAD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = load.stdout.readline().split()
        check(ready[:1] == ["READY"], "uringload failed: %s (rc %s)" % (
            ready, load.poll()))
        time.sleep(2.5)
        res = compare("/uring")
        kernel = rows_of(res, "/uring/a").get("slab_unreclaimable", {})
        print("METRIC uring %s requests: kernel slab_unreclaimable %s, bulk "
              "probe hits %s" % (ready[-1], kernel.get("kernel"),
                                 hooks()[FAMILY["alloc_bulk"]]["hits"]),
              flush=True)
        check(kernel.get("kernel", 0) >= MIB,
              "the rings hold too little slab to judge: %s" % kernel)
        assert_within_bound(res, "%d rings with %d requests each" % (rings, nops))
        load.stdin.write("go\n")
        load.stdin.flush()
        check(load.stdout.readline().startswith("FREED"), "uringload: no FREED")
        check(load.wait(timeout=60) == 0, "uringload exited %s" % load.returncode)
        wait_for(lambda: memory_stat("uring/a").get("slab_unreclaimable", 0) <
                 kernel["kernel"] // 4, timeout=60, what="ring teardown")
        time.sleep(2.5)
        assert_within_bound(compare("/uring"), "after the rings are closed")
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    check_shadow_agrees_with_kernel("untracked_frees", "kernel_only",
                                    "shadow_only")
    ensure_unloaded()
    cg_rmdir_tree("uring")


def test_conservation_at_quiescence():
    setup_tree("cons")
    cg_mkdir("cons/a")
    cg_mkdir("cons/b")
    insmod("designs=v6.1,v7.1")
    loads = []
    try:
        loads.append(Workload(["--quiet", "mix", "--count", "3000"],
                              cgroup="cons/a"))
        loads.append(Workload(["--quiet", "pipe", "--count", "2000"],
                              cgroup="cons/b"))
        # every task of the tracked cgroups is asleep: nothing moves
        objects = read_kv("objects")
        lines = read_records("kmem")
        for design in ("v6.1", "v7.1"):
            slab = sum(int(r["slab_reclaimable"]) + int(r["slab_unreclaimable"])
                       for r in lines if r["design"] == design)
            n = sum(int(r["objects"]) for r in lines if r["design"] == design)
            check(slab == objects["tracked_bytes"] +
                  objects["large_kmalloc_bytes"],
                  "%s: sum of slab %d != tracked %d + large kmalloc %d" % (
                      design, slab, objects["tracked_bytes"],
                      objects["large_kmalloc_bytes"]))
            check(n == objects["tracked_objects"],
                  "%s: %d objects in memcgs, %d in the map" % (
                      design, n, objects["tracked_objects"]))
        check(objects["tracked_objects"] > 5000, "too few objects tracked")
    finally:
        for w in loads:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("cons")


def test_pinned_to_node1_shows_on_node1():
    insmod()
    setup_tree("numa")
    cg_mkdir("numa/n1")
    w = None
    try:
        w = Workload(["--quiet", "--node", "1", "dentry", "--mib",
                      str(scaled(20))], cgroup="numa/n1")
        time.sleep(2.5)
        res = compare("/numa/n1")
        assert_within_bound(res, "node 1")
        rows = rows_of(res, "/numa/n1")
        for side in ("kernel", "shadow"):
            n1 = rows["slab_reclaimable.N1"][side]
            total = rows["slab_reclaimable"][side]
            check(total > scaled(10) * MIB and n1 > 0.9 * total,
                  "%s: node 1 holds %d of %d reclaimable bytes" % (
                      side, n1, total))
    finally:
        if w:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("numa")


def test_reparent_to_parent_then_free():
    insmod()
    setup_tree("rep")
    cg_mkdir("rep/parent", memory_for_children=True)
    cg_mkdir("rep/parent/child")
    cg_mkdir("rep/parent/keeper")
    w = None
    try:
        base = memory_stat("rep/parent")["slab"]
        child = cg_id("rep/parent/child")
        parent = cg_id("rep/parent")
        # pipes have no page cache: nothing but kmem charges the child
        w = Workload(["--quiet", "pipe", "--mib", "24"],
                     cgroup="rep/parent/child")
        before = compare("/rep/parent")
        assert_within_bound(before, "before rmdir")
        # v2 keeps a task's old charges where they were: the process can
        # leave (a cgroup with enabled controllers holds no tasks itself)
        sh("echo %d > %s/cgroup.procs" % (w.pid, cg_path("rep/parent/keeper")))
        os.rmdir(cg_path("rep/parent/child"))
        wait_for(lambda: shadow_cgroups()[child]["state"] != "online", 10,
                 what="child offline")
        # live objects do not pin the dead shadow memcg: objcgs moved on
        check(shadow_cgroups()[child]["refs"] == "0",
              "dead child still referenced: %s" % shadow_cgroups()[child])
        time.sleep(2.5)
        after = compare("/rep/parent")
        assert_within_bound(after, "after rmdir: the parent holds it all")
        rows = rows_of(after, "/rep/parent")
        for side in ("kernel", "shadow"):
            check(rows["slab"][side] - base >= 20 * MIB,
                  "%s: parent slab grew by only %d" % (
                      side, rows["slab"][side] - base))
        pk = kmem_line(parent)
        check(pk["inherited"] >= 1, "parent inherited no objcg: %s" % pk)
        check(pk["objects"] > 10000, "objects not reparented: %s" % pk)
        ev = read_kv("stats")
        check(ev["objcgs_swapped"] >= 1 and ev["reparent_ops"] >= 1,
              "no reparenting counted")
        # free the objects: both sides return to the baseline
        w.release()
        w = None
        time.sleep(2.5)
        final = compare("/rep/parent")
        assert_within_bound(final, "after freeing")
        rows = rows_of(final, "/rep/parent")
        check(abs(rows["slab"]["kernel"] - base) < 256 * 1024,
              "kernel slab did not return: %d vs %d" % (
                  rows["slab"]["kernel"], base))
        check(rows["slab"]["shadow"] < 256 * 1024,
              "shadow slab did not return: %d" % rows["slab"]["shadow"])
        wait_for(lambda: shadow_cgroups().get(child, {}).get("state") == "freed",
                 30, what="dead child's memcg freed (kernel and shadow)")
    finally:
        if w:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("rep")


def test_task_moved_mid_workload():
    insmod()
    setup_tree("mv")
    cg_mkdir("mv/a")
    cg_mkdir("mv/b")
    w = None
    try:
        w = Workload(["--quiet", "--migrate-to", cg_path("mv/b"), "--after",
                      str(scaled(8000)), "dentry", "--count", str(scaled(16000))],
                     cgroup="mv/a")
        time.sleep(2.5)
        res = compare("/mv")
        assert_within_bound(res, "migrated task")
        a = rows_of(res, "/mv/a")["slab"]
        b = rows_of(res, "/mv/b")["slab"]
        for side in ("kernel", "shadow"):
            check(a[side] > scaled(5) * MIB and b[side] > scaled(5) * MIB,
                  "%s: a=%d b=%d, both halves expected" % (side, a[side],
                                                           b[side]))
        ka = kmem_line(cg_id("mv/a"))
        kb = kmem_line(cg_id("mv/b"))
        check(abs(ka["objects"] - kb["objects"]) < 0.2 * ka["objects"],
              "objects a=%d b=%d" % (ka["objects"], kb["objects"]))
    finally:
        if w:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("mv")


def test_preload_objects_freed_after_load():
    setup_tree("pre")
    cg_mkdir("pre/x")
    sh([KMEMLOAD, "--quiet", "--cgroup", cg_path("pre/x"), "--keep-files",
        "--dir", "/mnt/pre", "dentry", "--count", "5000"])
    insmod()
    try:
        before = read_kv("stats")["untracked_frees"]
        sh("rm -rf /mnt/pre")
        drop_caches()
        after = read_kv("stats")["untracked_frees"]
        check(after - before >= 5000,
              "untracked frees rose by %d, expected >= 5000" % (after - before))
        for r in read_records("kmem"):
            for key in ("objects", "slab_reclaimable", "slab_unreclaimable",
                        "kernel_stack"):
                check(int(r[key]) >= 0, "negative %s: %s" % (key, r))
        res = compare("/pre", include_all=True)
        check(all(r["status"] == "pre-load" for r in res["rows"]),
              "pre-load cgroup not marked as such")
        check(not res["failed"], "pre-load rows must not fail")
        p = subprocess.run([os.path.join("scripts", "objcg-shadow"), "compare",
                            "--json"], capture_output=True, text=True)
        check(p.returncode in (0, 1), "compare crashed: %s" % p.stderr)
        check(json.loads(p.stdout)["health"]["untracked_frees"] >= 5000,
              "compare does not show untracked frees")
    finally:
        sh("rm -rf /mnt/pre", check_rc=False)
        ensure_unloaded()
        cg_rmdir_tree("pre")


def test_maps_grow_with_use_without_drops():
    # 8,192 slots at load; 100,000 live dentries need it to grow many times
    insmod()
    setup_tree("grow")
    cg_mkdir("grow/x")
    w = None
    count = scaled(100000, least=30000)
    try:
        before = read_kv("stats")
        w = Workload(["--quiet", "negdentry", "--count", str(count)], cgroup="grow/x")
        ev = read_kv("stats")
        check(ev["objmap_grows"] > before["objmap_grows"],
              "the object map did not grow: %s" % ev)
        for key in ("dropped_objects_map_full", "dropped_objects_no_record"):
            check(ev[key] == 0, "%d objects dropped (%s) while the map grew" % (
                ev[key], key))
        check(ev["objmap_grow_failed"] == 0, "a growth failed")
        check(ev["objmap_live"] >= count, "map holds %d of %d objects" % (
            ev["objmap_live"], count))
        check(ev["objmap_live"] * 4 <= ev["objmap_capacity"] * 3 + 8 * 64,
              "map fuller than its growth threshold")
        # one cgroup, one cache: a handful of records (per CPU cache slot)
        # serve every object, which pays its map slot only
        check(ev["objrecs_live"] <= 64,
              "%d records for %d objects charged alike" % (
                  ev["objrecs_live"], ev["objmap_live"]))
        check(ev["objmap_bytes"] <= 18 * ev["objmap_capacity"],
              "%.1f bytes a slot" % (ev["objmap_bytes"] / ev["objmap_capacity"]))
        print("METRIC objmap %d live, %d slots, %d records, %.1f bytes per object "
              "(map and records), %d grows" % (
                  ev["objmap_live"], ev["objmap_capacity"], ev["objrecs_live"],
                  (ev["objmap_bytes"] + ev["objrecs_bytes"]) / ev["objmap_live"],
                  ev["objmap_grows"]), flush=True)
        assert_within_bound(compare("/grow"), "after the map grew")
    finally:
        if w:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("grow")


def test_full_object_map_is_counted_not_silent():
    insmod("objmap_bits=8 map_growth=0")
    setup_tree("full")
    cg_mkdir("full/x")
    w = None
    try:
        # 2,048 slots that never grow: thousands of dentries overflow them
        w = Workload(["--quiet", "dentry", "--count", str(scaled(20000, least=5000))],
                     cgroup="full/x")
        ev = read_kv("stats")
        check(ev["dropped_objects_map_full"] > 1000,
              "drops not counted: %s" % ev["dropped_objects_map_full"])
        check(ev["objmap_live"] <= ev["objmap_capacity"], "map overfilled")
        res = compare("/full")
        check(res["health"]["dropped_objects_map_full"] > 1000,
              "compare hides the drops")
        check(res["failed"], "compare passed although objects were dropped")
    finally:
        if w:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("full")


if __name__ == "__main__":
    ensure_unloaded()
    sys.exit(run_tests(globals()))
