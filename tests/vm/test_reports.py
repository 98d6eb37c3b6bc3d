#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The user-facing reports (issue 9): pins (what dying cgroups left
behind) and slabinfo (which caches a cgroup's kmem is in), checked against
objects the tests create and against the shadow's own kmem counters."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "lib"))
from osh_guest import (KMEMLOAD, REFERENCE, REPO, TestSkipped,  # noqa: E402
                       Workload, cg_id, cg_mkdir, cg_path, cg_rmdir_tree,
                       check, enable_memory,
                       ensure_unloaded, insmod, kmem_line, pin_with_socket,
                       run_tests, scaled, sh, shadow_cgroups, wait_for)
import osh_reports  # noqa: E402

CLI = os.path.join(REPO, "scripts", "objcg-shadow")
# a directory of files has a few objects of its own: the directory, lost+found
SLACK = 64


def kmem_of(cid):
    k = kmem_line(cid, REFERENCE)
    check(k is not None, "no kmem line for memcg %d" % cid)
    return k


def quiet_reading(cid):
    """A slabinfo reading between two equal kmem lines of memcg `cid`, so
    that both describe the same objects."""
    for _ in range(20):
        before = kmem_of(cid)
        rd = osh_reports.Reading()
        after = kmem_of(cid)
        if before == after:
            return rd, after
        time.sleep(0.5)
    check(False, "memcg %d never quiet: %s vs %s" % (cid, before, after))


def keep_files(rel, n, name):
    """n files made from cgroup `rel` and kept: their dentries and inodes
    stay charged after the process exits."""
    sh([KMEMLOAD, "--quiet", "--cgroup", cg_path(rel), "--keep-files",
        "--dir", "/mnt/" + name, "dentry", "--count", str(n)])


def in_range(v, lo, hi, what):
    check(lo <= v <= hi, "%s: %d, expected %d..%d" % (what, v, lo, hi))


def slab_object_size(name):
    path = "/sys/kernel/slab/%s/object_size" % name
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return int(f.read())


def fresh_tree(top, children, dirs):
    """Cgroup `top` with the memory controller for its `children`, made
    anew, and the scratch directories `dirs` under /mnt removed."""
    enable_memory("/")
    cg_rmdir_tree(top)
    sh(["rm", "-rf"] + ["/mnt/" + d for d in dirs])
    cg_mkdir(top, memory_for_children=True)
    for c in children:
        cg_mkdir(top + "/" + c)


def test_slabinfo_adds_up_and_names_the_kernels_caches():
    n = scaled(3000, least=500)
    fresh_tree("rpt", ["files"], ["rpt-files"])
    insmod()
    try:
        keep_files("rpt/files", n, "rpt-files")
        cid = cg_id("rpt/files")
        rd, k = quiet_reading(cid)
        check(rd.design == REFERENCE, "slabinfo of design %s, not the kernel's %s"
              % (rd.design, REFERENCE))
        res = osh_reports.slabinfo(rd, "/rpt")
        rows = {r["id"]: r for r in res["cgroups"]}
        check(cid in rows, "no slabinfo row for /rpt/files: %s" % list(rows))
        own = {c["cache"]: c for c in rows[cid]["own"]}
        # every slab byte of the memcg is in exactly one cache
        slab = sum(c["bytes"] for c in own.values()
                   if c["kind"] in ("slab", "large_kmalloc"))
        check(slab == k["slab_reclaimable"] + k["slab_unreclaimable"],
              "caches add up to %d, the memcg's slab counters to %d" % (
                  slab, k["slab_reclaimable"] + k["slab_unreclaimable"]))
        for node in range(4):
            key = "slab_reclaimable.N%d" % node
            if key not in k:
                break
            on_node = sum(c["nodes"].get(str(node), {"bytes": 0})["bytes"]
                          for c in own.values()
                          if c["kind"] in ("slab", "large_kmalloc"))
            check(on_node == k[key] + k["slab_unreclaimable.N%d" % node],
                  "node %d: caches %d, counters %d" % (
                      node, on_node, k[key] + k["slab_unreclaimable.N%d" % node]))
        for pseudo, field in (("(percpu)", "percpu"), ("(kernel stacks)", "kernel_stack")):
            got = own.get(pseudo, {"bytes": 0})["bytes"]
            check(got == k[field], "%s: %d, the memcg's %s %d" % (
                pseudo, got, field, k[field]))
        # N files: N dentries and N inodes
        for cache in ("dentry", "ext4_inode_cache"):
            check(cache in own, "no %s in %s" % (cache, sorted(own)))
            in_range(own[cache]["objects"], n, n + SLACK, cache + " objects")
        # the names and sizes are the kernel's own
        named = 0
        for c in own.values():
            if c["kind"] != "slab":
                continue
            size = slab_object_size(c["cache"])
            if size is not None:
                named += 1
                check(size == c["object_size"], "%s: object_size %s, sysfs says %d"
                      % (c["cache"], c["object_size"], size))
        check(named >= 2, "fewer than 2 caches found in /sys/kernel/slab: %s"
              % sorted(own))
        # the parent's subtree holds the child's objects
        parent = {c["cache"]: c for c in rows[cg_id("rpt")]["subtree"]}
        check(parent["dentry"]["objects"] >= own["dentry"]["objects"],
              "parent subtree has fewer dentries than its child")
        # the command line tool says the same
        p = subprocess.run([CLI, "slabinfo", "--cgroup", "/rpt/files"],
                           capture_output=True, text=True)
        check(p.returncode == 0 and "ext4_inode_cache" in p.stdout and
              "/rpt/files" in p.stdout, "slabinfo CLI: rc %d\n%s%s" % (
                  p.returncode, p.stdout, p.stderr))
        p = subprocess.run([CLI, "slabinfo", "--cgroup", "/no/such"],
                           capture_output=True, text=True)
        check(p.returncode == 2 and "no cgroup" in p.stderr,
              "unknown cgroup not refused: rc %d %s" % (p.returncode, p.stderr))
        print("METRIC slabinfo /rpt/files: %d files, dentry %d, "
              "ext4_inode_cache %d, %d caches" % (
                  n, own["dentry"]["objects"], own["ext4_inode_cache"]["objects"],
                  len(own)), flush=True)
    finally:
        ensure_unloaded()
        sh("rm -rf /mnt/rpt-files")
        cg_rmdir_tree("rpt")


def test_pins_reports_what_removed_cgroups_left():
    na, nb = scaled(2000, least=400), scaled(700, least=200)
    fresh_tree("pins", ["a", "b"], ["pins-a", "pins-b"])
    insmod()
    pin = None
    try:
        keep_files("pins/a", na, "pins-a")
        keep_files("pins/b", nb, "pins-b")
        ids = {"a": cg_id("pins/a"), "b": cg_id("pins/b")}
        parent = cg_id("pins")
        pin = pin_with_socket("pins/a")         # a stays dying
        os.rmdir(cg_path("pins/a"))
        os.rmdir(cg_path("pins/b"))
        wait_for(lambda: all(shadow_cgroups()[i]["state"] != "online"
                             for i in ids.values()), 10, what="both offline")
        rd = osh_reports.Reading()
        res = osh_reports.pins(rd, "/pins")
        rows = {r["id"]: r for r in res["dying"]}
        check(ids["a"] in rows, "pinned /pins/a not reported as dying: %s" % res)
        a = rows[ids["a"]]
        check(a["path"] == "/pins/a" and not a["dead_before_load"],
              "wrong record: %s" % a)
        check(a["offline_age_s"] is not None and 0 <= a["offline_age_s"] < 600,
              "offline age %s" % a["offline_age_s"])
        check(a["objcgs_born_here"], "no objcg born in /pins/a listed")
        for o in a["objcgs_born_here"]:
            check(o["now_charges"] == parent and o["now_path"] == "/pins",
                  "objcg of /pins/a charges %s, not /pins" % o)
        caches = {c["cache"]: c for c in a["caches"]}
        for cache in ("dentry", "ext4_inode_cache"):
            check(cache in caches, "%s left by /pins/a not listed: %s" % (
                cache, sorted(caches)))
            in_range(caches[cache]["objects"], na, na + SLACK,
                     "/pins/a " + cache)
        check(a["record_refs"]["children"] == 0, "refs %s" % a["record_refs"])
        # b may be freed already, but what it left stays, charged to /pins
        born_b = [g for g in rd.groups if g["born"] == ids["b"] and
                  g["kind"] == "slab" and g["cache"] == "dentry"]
        check(born_b and all(g["memcg"] == parent for g in born_b),
              "dentries born in /pins/b: %s" % born_b)
        in_range(sum(g["objects"] for g in born_b), nb, nb + SLACK,
                 "/pins/b dentries")
        p = subprocess.run([CLI, "pins", "--cgroup", "/pins"],
                           capture_output=True, text=True)
        check(p.returncode == 0 and "/pins/a (id %d" % ids["a"] in p.stdout
              and "left behind:" in p.stdout, "pins CLI: rc %d\n%s%s" % (
                  p.returncode, p.stdout, p.stderr))
        print("METRIC pins /pins/a: %d files, dentry %d, ext4_inode_cache %d, "
              "%d objcgs" % (na, caches["dentry"]["objects"],
                             caches["ext4_inode_cache"]["objects"],
                             len(a["objcgs_born_here"])), flush=True)
        # loaded again, the module finds /pins/a dead before load
        ensure_unloaded()
        insmod()
        rd = osh_reports.Reading()
        res = osh_reports.pins(rd, "/pins")
        rows = {r["id"]: r for r in res["dying"]}
        check(ids["a"] in rows and rows[ids["a"]]["dead_before_load"],
              "after reload /pins/a not reported dead before load: %s\n"
              "record %s, pins %s" % (res, rd.cgroups.get(ids["a"]),
                                      rd.dying.get(ids["a"])))
        check(rows[ids["a"]]["path"] == "/pins/?", "path %s" % rows[ids["a"]])
        check(rows[ids["a"]]["offline_age_s"] is None and
              not rows[ids["a"]]["objcgs_born_here"],
              "dead before load, yet: %s" % rows[ids["a"]])
    finally:
        ensure_unloaded()
        if pin:
            pin.stdin.close()
            pin.wait(timeout=30)
        sh("rm -rf /mnt/pins-a /mnt/pins-b")
        cg_rmdir_tree("pins")


def test_crosscheck_agrees_with_bpftrace():
    """bpftrace's per-cgroup count of accounted allocations, from the kmem
    tracepoints alone, against the module's, for cgroups whose objects are
    all made inside the window."""
    import osh_crosscheck
    if not os.path.exists("/proc/sys/kernel/unprivileged_bpf_disabled"):
        raise TestSkipped("this kernel has no BPF (CONFIG_BPF_SYSCALL): bpftrace "
                          "cannot run")
    n_files, n_socks = scaled(1500, least=300), scaled(300, least=100)
    fresh_tree("cc", ["files", "socks"], ["cc-files"])
    insmod()
    try:
        cmd = ["sh", "-c", "%s --quiet --cgroup %s --keep-files --dir /mnt/cc-files "
               "dentry --count %d; %s --quiet --cgroup %s socket --count %d" % (
                   KMEMLOAD, cg_path("cc/files"), n_files, KMEMLOAD,
                   cg_path("cc/socks"), n_socks)]
        res = osh_crosscheck.run(cmd, 0, osh_reports.osh_state.DEBUGFS)
        check(res["command_rc"] == 0, "workload failed: %s" % res)
        rows = {r["id"]: r for r in res["rows"]}
        for rel, least in (("cc/files", 2 * n_files), ("cc/socks", 2 * n_socks)):
            cid = cg_id(rel)
            check(cid in rows, "%s not in the crosscheck: %s" % (rel, res["rows"]))
            r = rows[cid]
            check(r["bpftrace_allocs"] >= least, "%s: bpftrace saw only %d "
                  "allocations" % (rel, r["bpftrace_allocs"]))
            # one process exited in each: its SIGCHLD sigqueue is not charged
            check(r["alloc_difference"] == -1, "%s: module %d allocations, "
                  "bpftrace %d" % (rel, r["module_allocs"], r["bpftrace_allocs"]))
            check(r["bpftrace_net"] >= r["module_live_change"],
                  "%s: bpftrace saw more frees than the module: %s" % (rel, r))
        print("METRIC crosscheck %s" % " ".join(
            "%s:bt=%d,module=%d" % (r["path"], r["bpftrace_allocs"], r["module_allocs"])
            for r in res["rows"]), flush=True)
    finally:
        ensure_unloaded()
        sh("rm -rf /mnt/cc-files")
        cg_rmdir_tree("cc")


def test_export_writes_a_textfile_prometheus_parses():
    from prometheus_client.parser import text_string_to_metric_families
    weird = 'exp/we"ird\\ name'
    fresh_tree("exp", [weird[len("exp/"):]], [])
    insmod()
    out = "/tmp/osh-textfile"
    sh("rm -rf %s; mkdir -p %s" % (out, out))
    w = None
    try:
        w = Workload(["--quiet", "dentry", "--count", str(scaled(2000, least=300))],
                     cgroup=weird)
        wait_for(lambda: "/" + weird in [r.get("path") for r in
                                         shadow_cgroups().values()],
                 10, what="the path of %r resolved" % weird)
        before = osh_reports.osh_state.Shadow()
        p = subprocess.run([CLI, "export", "--textfile", out],
                           capture_output=True, text=True)
        after = osh_reports.osh_state.Shadow()
        check(p.returncode == 0, "export: rc %d %s" % (p.returncode, p.stderr))
        check(sorted(os.listdir(out)) == ["objcg_shadow.prom"],
              "left in the textfile directory: %s" % os.listdir(out))
        with open(os.path.join(out, "objcg_shadow.prom")) as f:
            text = f.read()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        for name, kind in (("objcg_shadow_shadow_bytes", "gauge"),
                           ("objcg_shadow_delta_bytes", "gauge"),
                           ("objcg_shadow_kernel_bytes", "gauge"),
                           ("objcg_shadow_design_events", "counter"),
                           ("objcg_shadow_stat", "gauge")):
            check(name in fams and fams[name].type == kind and fams[name].documentation,
                  "%s missing or without HELP/TYPE %s" % (name, kind))
        # the odd cgroup name survives escaping
        rows = [s for s in fams["objcg_shadow_delta_bytes"].samples
                if s.labels["cgroup"] == "/" + weird and s.labels["counter"] == "slab"
                and s.labels["design"] == REFERENCE]
        check(len(rows) == 1, "no delta for %r: %s" % (weird, sorted(
            {s.labels["cgroup"] for s in fams["objcg_shadow_delta_bytes"].samples})))
        shadow = [s.value for s in fams["objcg_shadow_shadow_bytes"].samples
                  if s.labels["cgroup"] == "/" + weird and s.labels["counter"] == "slab"
                  and s.labels["design"] == REFERENCE]
        cid = cg_id(weird)
        k = before.kmem[REFERENCE][cid]
        check(shadow == [k["slab_reclaimable"] + k["slab_unreclaimable"]] or
              shadow == [after.kmem[REFERENCE][cid]["slab_reclaimable"] +
                         after.kmem[REFERENCE][cid]["slab_unreclaimable"]],
              "exported slab %s, debugfs %d" % (shadow, k["slab_reclaimable"] +
                                                 k["slab_unreclaimable"]))
        # counters lie between the readings before and after
        for s in fams["objcg_shadow_design_events"].samples:
            d, ev = s.labels["design"], s.labels["event"]
            lo, hi = before.designs[d][ev], after.designs[d][ev]
            check(lo <= s.value <= hi, "%s %s: exported %d, debugfs %d..%d" % (
                d, ev, s.value, lo, hi))
        stats = {s.labels["name"]: s.value for s in fams["objcg_shadow_stat"].samples}
        for key in ("untracked_frees", "dropped_objects_map_full", "dropped_recursion"):
            check(key in stats and stats[key] == before.stats[key],
                  "stat %s: %s vs %s" % (key, stats.get(key), before.stats.get(key)))
        # --interval rewrites the file; a bad directory is refused
        bg = subprocess.Popen([CLI, "export", "--textfile", out, "--interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        first = os.stat(os.path.join(out, "objcg_shadow.prom")).st_mtime_ns
        try:
            wait_for(lambda: os.stat(os.path.join(out, "objcg_shadow.prom")).st_mtime_ns
                     != first, 30, what="export --interval to rewrite the file")
        finally:
            bg.kill()
            bg.wait()
        p = subprocess.run([CLI, "export", "--textfile", "/no/such/dir"],
                           capture_output=True, text=True)
        check(p.returncode == 2 and "not a directory" in p.stderr,
              "bad --textfile: rc %d %s" % (p.returncode, p.stderr))
        print("METRIC export %d lines, %d families" % (text.count("\n"), len(fams)),
              flush=True)
    finally:
        if w:
            w.release()
        ensure_unloaded()
        cg_rmdir_tree("exp")


if __name__ == "__main__":
    sys.exit(run_tests(globals()))
