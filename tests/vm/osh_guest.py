# SPDX-License-Identifier: GPL-2.0
"""Helpers for tests that run inside the guest (as root, cgroup v2).

Tests are plain functions named test_*; run_tests() prints one
"PASS name" / "FAIL name: why" line per test, which tests/run counts.
"""
import os
import signal
import subprocess
import sys
import time
import traceback

REPO = os.environ.get("OSH_REPO", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, "scripts", "lib"))
import osh_state  # noqa: E402
# the build for the guest's kernel (scripts/objcg-shadow vm sets it)
MODULE = os.environ.get("OSH_MODULE") or os.path.join(REPO, "module",
                                                      "objcg_shadow.ko")
KMEMLOAD = os.path.join(REPO, "tests", "workloads", "kmemload")
CGROOT = "/sys/fs/cgroup"

# The guest's kernel family (scripts/objcg-shadow vm sets OSH_KERNEL) and
# what differs by family (module/compat/): the design that reproduces it,
# the hooks that see frees and task exits, the observe-only hooks.
KERNEL = os.environ.get("OSH_KERNEL", "6.1")
FAMILY = {
    "6.1": {"reference": "v6.1", "free_hooks": {"kfree", "kmem_cache_free"},
            "drain_local": "drain_local_stock",
            "alloc_bulk": "kmem_cache_alloc_bulk",
            "observe": {"drain_obj_stock", "memcg_account_kmem"}},
    "6.12": {"reference": "v6.7",
             "free_hooks": {"__memcg_slab_free_hook", "kmem_cache_charge",
                            "mem_cgroup_exit"},
             "drain_local": "drain_local_stock",
             "alloc_bulk": "kmem_cache_alloc_bulk_noprof",
             "observe": {"drain_obj_stock", "__mod_memcg_state"}},
    "7.3": {"reference": "v7.3",
            "free_hooks": {"__memcg_slab_free_hook", "kmem_cache_charge",
                           "mem_cgroup_exit"},
            "drain_local": "drain_local_obj_stock",
            "alloc_bulk": "kmem_cache_alloc_bulk_noprof",
            "observe": {"drain_obj_stock_slot", "mod_memcg_state"}},
}[KERNEL]
REFERENCE = FAMILY["reference"]


# Workload sizes are multiplied by OSH_SCALE (tests/run sets it below 1
# for debug kernels, whose guests run several times slower): the checks
# stay the same, the object counts shrink.
SCALE = float(os.environ.get("OSH_SCALE", "1"))


def scaled(n, least=1):
    """`n` objects or repetitions at OSH_SCALE, at least `least`."""
    return max(least, int(n * SCALE))


DEBUG_KERNEL = bool(os.environ.get("OSH_DEBUG_KERNEL"))


class TestSkipped(Exception):
    """A check that does not apply here; reported as SKIP with the reason."""


class TestFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def sh(cmd, check_rc=True, **kw):
    p = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True,
                       text=True, **kw)
    if check_rc and p.returncode != 0:
        raise TestFailure("command failed (%d): %s\n%s%s" % (
            p.returncode, cmd, p.stdout, p.stderr))
    return p


# --- module ----------------------------------------------------------------

def module_loaded():
    with open("/proc/modules") as f:
        return any(line.split()[0] == "objcg_shadow" for line in f)


def insmod(params="", must_succeed=True):
    cmd = ["insmod", MODULE] + params.split()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if must_succeed and p.returncode != 0:
        raise TestFailure("insmod %s failed: %s\n%s" % (
            params, p.stderr.strip(), dmesg_tail(20)))
    return p


def rmmod():
    p = subprocess.run(["rmmod", "objcg_shadow"], capture_output=True,
                       text=True)
    if p.returncode != 0:
        raise TestFailure("rmmod failed: " + p.stderr.strip())


def ensure_unloaded():
    if module_loaded():
        rmmod()


def dmesg():
    return sh(["dmesg"]).stdout


def dmesg_tail(n):
    return "\n".join(dmesg().splitlines()[-n:])


def dmesg_mark():
    """Return a function giving the dmesg text logged since this call."""
    before = len(dmesg().splitlines())
    return lambda: "\n".join(dmesg().splitlines()[before:])


# --- debugfs: read with the tools' own parser -------------------------------

read_records = osh_state.read_records
read_kv = osh_state.read_kv


def shadow_cgroups():
    """Records keyed by id; a freed record kept in the graveyard and a live
    one never share an id, so the last one wins."""
    return {int(r["id"]): r for r in read_records("cgroups")}


def kmem_line(cid, design="v6.1"):
    """The kmem record of memcg `cid` for `design`, numbers as ints; None
    if there is none."""
    for r in read_records("kmem"):
        if int(r["id"]) == cid and r["design"] == design:
            return {k: (int(v) if v.lstrip("-").isdigit() else v)
                    for k, v in r.items()}
    return None


def hooks():
    return {r["name"]: r for r in read_records("hooks")}


# --- cgroups -----------------------------------------------------------------

def cg_path(rel):
    return os.path.join(CGROOT, rel.strip("/"))


def cg_id(rel):
    return os.stat(cg_path(rel)).st_ino


def enable_memory(rel):
    """Enable the memory controller for the children of cgroup @rel."""
    with open(os.path.join(cg_path(rel), "cgroup.subtree_control"), "w") as f:
        f.write("+memory")


def cg_mkdir(rel, memory_for_children=False):
    path = cg_path(rel)
    os.makedirs(path, exist_ok=True)
    if memory_for_children:
        enable_memory(rel)
    return path


def cg_rmdir_tree(rel):
    path = cg_path(rel)
    if not os.path.isdir(path):
        return
    for dirpath, dirnames, _ in sorted(os.walk(path), key=lambda t: -len(t[0])):
        # move stray tasks to the root so rmdir can succeed
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                for pid in f.read().split():
                    cg_move(pid, "/")
        except OSError:
            pass
        os.rmdir(dirpath)


def cg_move(pid, rel):
    with open(os.path.join(cg_path(rel), "cgroup.procs"), "w") as f:
        f.write(str(pid))


def cg_move_thread(tid, rel):
    with open(os.path.join(cg_path(rel), "cgroup.threads"), "w") as f:
        f.write(str(tid))


_PIN = """
import socket, sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write("0")
s = socket.socket()       # sk_alloc() takes a reference on the memcg
with open("/sys/fs/cgroup/cgroup.procs", "w") as f:
    f.write("0")
print("pinned", flush=True)
sys.stdin.readline()
"""


def pin_with_socket(rel):
    """A process that made a socket inside `rel` and left: the socket keeps
    a reference on the memcg, so it stays dying after rmdir until the
    process is told to exit (close its stdin; page cache would not do on
    7.3, which reparents it at offline)."""
    p = subprocess.Popen([sys.executable, "-c", _PIN, cg_path(rel)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    check(p.stdout.readline().strip() == "pinned", "pinning %s failed" % rel)
    return p


def wait_for(cond, timeout=20.0, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.0fs waiting for %s" % (
                timeout, what))
        time.sleep(interval)


# --- workloads -----------------------------------------------------------------

class Workload:
    """kmemload --hold in the background, freed by closing its stdin."""

    def __init__(self, args, cgroup=None):
        cmd = [KMEMLOAD] + args + ["--hold"]
        if cgroup:
            cmd += ["--cgroup", cg_path(cgroup)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        while line.startswith(("MIGRATED", "PHASE")):
            line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise TestFailure("kmemload %s did not get ready: %r" % (
                " ".join(args), line))

    @property
    def pid(self):
        return self.proc.pid

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            out = self.proc.stdout.read()
            rc = self.proc.wait(timeout=120)
            check(rc == 0, "kmemload exited %d: %s" % (rc, out))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


# --- runner --------------------------------------------------------------------

def run_tests(module_globals, prefix="vm_"):
    names = [n for n in module_globals if n.startswith("test_")]
    only = sys.argv[1:]
    failed = 0
    for name in names:
        if only and name not in only:
            continue
        fn = module_globals[name]
        label = prefix + name[len("test_"):]
        t0 = time.monotonic()
        try:
            fn()
        except TestSkipped as e:
            print("SKIP %s: %s" % (label, e), flush=True)
        except Exception as e:  # report every failure, keep going
            failed += 1
            detail = str(e) if isinstance(e, TestFailure) else \
                traceback.format_exc()
            print("FAIL %s: %s" % (label, detail.strip().replace(
                "\n", "\n    ")), flush=True)
        else:
            print("PASS %s (%.1fs)" % (label, time.monotonic() - t0),
                  flush=True)
        finally:
            try:
                ensure_unloaded()
            except TestFailure as e:
                print("FAIL %s_cleanup: %s" % (label, e), flush=True)
                failed += 1
    return 1 if failed else 0
