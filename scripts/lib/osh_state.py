# SPDX-License-Identifier: GPL-2.0
"""Read objcg_shadow's debugfs files and the kernel's cgroupfs view.

Every debugfs file is documented key=value lines (README.md, "debugfs").
"""
from __future__ import annotations

import json
import os
import re
import sys

DEBUGFS = "/sys/kernel/debug/objcg_shadow"
CGROUPFS = "/sys/fs/cgroup"


class StateError(Exception):
    """Something the user must fix (module not loaded, no cgroup2...)."""


def _unescape(value: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), value)


def parse_records(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        rec = {}
        for field in line.split():
            key, _, value = field.partition("=")
            rec[key] = _unescape(value)
        out.append(rec)
    return out


def as_number(v: str):
    """An integer field as int, anything else unchanged."""
    try:
        return int(v)
    except ValueError:
        return v



def require_debugfs(root: str = DEBUGFS) -> None:
    if not os.path.isdir(root):
        raise StateError(
            f"{root} not found: is objcg_shadow loaded "
            "(insmod module/objcg_shadow.ko) and debugfs mounted "
            "(mount -t debugfs none /sys/kernel/debug)?")


def read_records(name: str, root: str = DEBUGFS) -> list[dict]:
    """The records of one debugfs file, values as strings."""
    with open(os.path.join(root, name)) as f:
        return parse_records(f.read())


def read_kv(name: str, root: str = DEBUGFS) -> dict:
    """All key=value fields of one debugfs file, numbers as ints."""
    out = {}
    for r in read_records(name, root):
        out.update({k: as_number(v) for k, v in r.items()})
    return out


def children_of(cgroups: dict) -> dict[int, list[int]]:
    """Child ids per parent id, over the records of the cgroups file that
    are not freed."""
    kids: dict[int, list[int]] = {}
    for cid, r in cgroups.items():
        if r["state"] != "freed":
            kids.setdefault(int(r["parent"]), []).append(cid)
    return kids


def subtree_of(cgroups: dict, cid: int) -> list[int]:
    """`cid` and every descendant of it."""
    kids, out, todo = children_of(cgroups), [], [cid]
    while todo:
        c = todo.pop()
        out.append(c)
        todo.extend(kids.get(c, []))
    return out


def emit(res: dict, as_json: bool, print_table) -> None:
    """A command's result: JSON on stdout, or its table."""
    if as_json:
        json.dump(res, sys.stdout, indent=1)
        print()
    else:
        print_table(res)


class Shadow:
    """One consistent-enough reading of the module's debugfs files."""

    def __init__(self, root: str = DEBUGFS):
        require_debugfs(root)
        self.root = root
        self.version = self._kv("version")
        self.stats = self._kv("stats")
        self.cgroups = {int(r["id"]): r for r in self._records("cgroups")}
        self.kmem: dict[str, dict[int, dict]] = {}
        for r in self._records("kmem"):
            self.kmem.setdefault(r["design"], {})[int(r["id"])] = {
                k: as_number(v) for k, v in r.items()}
        self.designs = {r["design"]: {k: as_number(v) for k, v in r.items()}
                        for r in self._records("designs")}
        self.objects = self._kv("objects")
        observed = self._records("observed")
        self.observed = observed[0] if observed else {}

    def _records(self, name: str) -> list[dict]:
        return read_records(name, self.root)

    def _kv(self, name: str) -> dict:
        return read_kv(name, self.root)

    @property
    def page_size(self) -> int:
        return int(self.version.get("page_size", 4096))

    def children(self) -> dict[int, list[int]]:
        return children_of(self.cgroups)

    def subtree(self, cid: int) -> list[int]:
        return subtree_of(self.cgroups, cid)

    @property
    def reference(self) -> str:
        """The design that reproduces the running kernel (v6.1 on 6.1)."""
        return self.observed.get("reference", "v6.1")

    def default_design(self) -> str:
        """The running kernel's design if it is loaded, else the first."""
        if self.reference in self.kmem or not self.kmem:
            return self.reference
        return next(iter(self.kmem))


def read_memory_stat(cgdir: str) -> dict[str, int]:
    out = {}
    with open(os.path.join(cgdir, "memory.stat")) as f:
        for line in f:
            key, value = line.split()
            out[key] = int(value)
    return out


def read_numa_stat(cgdir: str) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    with open(os.path.join(cgdir, "memory.numa_stat")) as f:
        for line in f:
            key, *fields = line.split()
            out[key] = {int(n[1:n.index("=")]): int(n[n.index("=") + 1:])
                        for n in fields}
    return out


def find_cgroup_dirs(root: str = CGROUPFS) -> dict[int, str]:
    """cgroup id (directory inode) -> directory, for every memcg dir."""
    if not os.path.exists(os.path.join(root, "cgroup.controllers")):
        raise StateError(f"{root} is not a cgroup v2 mount")
    dirs = {}
    for dirpath, _dirnames, files in os.walk(root):
        if "memory.stat" in files or dirpath == root:
            try:
                dirs[os.stat(dirpath).st_ino] = dirpath
            except FileNotFoundError:
                pass            # removed while we walked: no longer a cgroup
    return dirs
