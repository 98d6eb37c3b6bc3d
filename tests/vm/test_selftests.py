#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The running kernel's own memcg selftests (test_kmem, test_memcontrol of
its Debian source, built by tests/run into build/selftests/<kernel>/), run
on one side (OSH_SELFTEST_SIDE: without or with the module) in this boot;
tests/run compares the sides.  On the module's side, a 40k-file tmpfs
workload also keeps compare within the bound at every step."""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from osh_guest import (KERNEL, REPO, REFERENCE, cg_mkdir, cg_move,  # noqa: E402
                       cg_rmdir_tree, check, enable_memory, ensure_unloaded,
                       insmod, read_kv, run_tests)
import osh_compare  # noqa: E402
import osh_state  # noqa: E402

TAP = re.compile(r"^(ok|not ok) \d+ (# SKIP )?(\S+)")
SELFTESTS = os.path.join(REPO, "build", "selftests", KERNEL)
SIDE = os.environ.get("OSH_SELFTEST_SIDE", "")


def verdicts(name):
    """Run one selftest binary; {test: 'ok'|'not ok'|'skip'}."""
    binary = os.path.join(SELFTESTS, name)
    check(os.access(binary, os.X_OK), "%s not built (tests/run builds it)" % binary)
    p = subprocess.run([binary], capture_output=True, text=True, timeout=900,
                       cwd="/tmp")
    out = {}
    for line in p.stdout.splitlines():
        m = TAP.match(line)
        if m:
            out[m.group(3)] = "skip" if m.group(2) else m.group(1)
    check(out, "%s printed no TAP verdict: %s%s" % (name, p.stdout[-500:],
                                                    p.stderr[-500:]))
    return out


def print_verdicts(name, out):
    """One line tests/run compares between the two sides' boots."""
    print("VERDICTS %s %s %s %s" % (KERNEL, SIDE, name, json.dumps(out,
                                                                 sort_keys=True)),
          flush=True)


def test_memcg_selftests_run():
    """test_kmem and test_memcontrol, first thing in this boot: without the
    module (OSH_SELFTEST_SIDE=without) or with it (=with).  tests/run boots
    each side separately, so that both run with the same history (verdicts
    of these tests depend on what ran before them in a boot: seen on 7.3),
    and compares the VERDICTS lines."""
    check(SIDE in ("without", "with"), "OSH_SELFTEST_SIDE=%r: tests/run sets "
          "it to without or with" % SIDE)
    cg_rmdir_tree("selftest")
    for name in ("test_kmem", "test_memcontrol"):
        if SIDE == "without":
            print_verdicts(name, verdicts(name))
            continue
        insmod()
        try:
            print_verdicts(name, verdicts(name))
            ev = read_kv("stats")
        finally:
            ensure_unloaded()
        for key in ("attribution_mismatch", "dropped_recursion"):
            check(ev[key] == 0, "%s during %s: %s" % (key, name, ev[key]))


def compare_now(under, what):
    time.sleep(2.5)     # 6.12+ flush memory.stat lazily, at most every 2 s
    sh = osh_state.Shadow()
    res = osh_compare.collect(sh, REFERENCE, "/sys/fs/cgroup", False, under)
    worst = max((abs(r["delta"]) / r["bound"] for r in res["rows"]
                 if "delta" in r), default=0.0)
    print("METRIC files40k %s %s: %d rows, largest |delta|/bound %.2f%%" % (
        KERNEL, what, len(res["rows"]), 100 * worst), flush=True)
    check(res["rows"], "%s: nothing compared" % what)
    check(not res["failed"], "%s: beyond the bound: %s" % (what, res["failed"]))
    return res


def test_40k_tmpfs_files_rmdir_and_delete():
    """(tests/run runs it in the module's side's boot.)  40,000 files on a tmpfs created in a leaf cgroup, the leaf removed
    (its objcg reparented with the files still there), then the files
    deleted: compare holds after each step."""
    cg_rmdir_tree("files")
    mnt = "/tmp/osh-files"
    os.makedirs(mnt, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "none", mnt],
                   check=True)
    insmod()
    try:
        # created after load: compare judges only what the shadow saw born
        enable_memory("/")
        cg_mkdir("files", memory_for_children=True)
        cg_mkdir("files/leaf")
        child = subprocess.Popen(
            [sys.executable, "-c",
             "import os, sys\n"
             "sys.stdin.readline()\n"
             "for i in range(40000):\n"
             "    with open('%s/f%%d' %% i, 'w') as f: f.write('x')\n"
             "print('done', flush=True)\n" % mnt],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        cg_move(child.pid, "files/leaf")
        child.stdin.write("go\n")
        child.stdin.flush()
        check(child.stdout.readline().strip() == "done", "file writer failed")
        child.wait(timeout=60)
        res = compare_now("/files", "after creating 40000 files")
        leaf = [r for r in res["rows"] if r["path"] == "/files/leaf" and
                r["counter"] == "slab_reclaimable"]
        check(leaf and leaf[0]["kernel"] > 40000 * 150,
              "the leaf holds too little reclaimable slab: %s" % leaf)
        cg_rmdir_tree("files/leaf")
        compare_now("/files", "after rmdir of the leaf")
        subprocess.run(["umount", mnt], check=True)
        compare_now("/files", "after deleting the files")
    finally:
        subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)
        ensure_unloaded()
        cg_rmdir_tree("files")


if __name__ == "__main__":
    ensure_unloaded()
    sys.exit(run_tests(globals()))
