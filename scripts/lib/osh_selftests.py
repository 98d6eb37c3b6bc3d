# SPDX-License-Identifier: GPL-2.0
"""The kernel's own memcg selftests, built from each kernel's Debian source.

tools/testing/selftests/cgroup/{test_kmem,test_memcontrol}.c of
linux-source-<family> (fetched through the private apt configuration of
osh_kernels, the matching Debian version where the archive has it) are
built on the host into build/selftests/<family>/; the guest test
tests/vm/test_selftests.py runs them with and without the module.
"""
from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import osh_kernels

REPO = osh_kernels.REPO
TESTS = ("test_kmem", "test_memcontrol")


def _source_package(fam: osh_kernels.Family) -> str:
    return f"linux-source-{fam.compat}"


def binaries(fam: osh_kernels.Family) -> dict[str, Path]:
    out = REPO / "build" / "selftests" / fam.compat
    return {t: out / t for t in TESTS}


def _extract(fam: osh_kernels.Family, progress) -> Path:
    src = osh_kernels.CACHE / "selftests" / fam.compat
    stamp = src / ".osh-complete"
    if stamp.exists():
        return src
    progress(f"fetching the memcg selftests of {fam.name} ({_source_package(fam)}, "
             "one-time, cached in .cache/selftests/)...")
    if not osh_kernels._lists_present():
        osh_kernels.apt_update()
    tmp = src.with_name(src.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    debs = osh_kernels._download([_source_package(fam)], tmp / "debs")
    osh_kernels._extract(debs, tmp / "root")
    tarballs = sorted((tmp / "root" / "usr" / "src").glob("linux-source-*.tar.*"))
    if not tarballs:
        raise osh_kernels.KernelError(f"{debs[0].name} has no source tarball")
    progress(f"unpacking tools/testing/selftests/cgroup from {tarballs[0].name}...")
    want = ("/tools/testing/selftests/cgroup/", "/tools/testing/selftests/kselftest",
            "/tools/testing/selftests/clone3/")
    with tarfile.open(tarballs[0]) as tf:
        members = [m for m in tf if any(w in m.name for w in want)]
        tf.extractall(tmp / "tree", members=members, filter="data")
    roots = list((tmp / "tree").iterdir())
    if len(roots) != 1:
        raise osh_kernels.KernelError(f"unexpected layout of {tarballs[0].name}")
    shutil.rmtree(src, ignore_errors=True)
    roots[0].rename(src)
    shutil.rmtree(tmp, ignore_errors=True)
    stamp.write_text(tarballs[0].name + "\n")
    return src


def build(fam: osh_kernels.Family, progress) -> dict[str, Path]:
    """Build test_kmem and test_memcontrol of `fam`; return their paths."""
    src = _extract(fam, progress)
    cg = src / "tools" / "testing" / "selftests" / "cgroup"
    util = sorted(cg.rglob("cgroup_util.c"))
    if not util:
        raise osh_kernels.KernelError(f"no cgroup_util.c in {cg}")
    incs = {str(cg), str(util[0].parent), str(cg.parent)} | \
        {str(p) for p in cg.rglob("include")}
    out = binaries(fam)
    for name, binary in out.items():
        binary.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["gcc", "-O2", "-pthread", *[f"-I{i}" for i in sorted(incs)],
               "-o", str(binary), str(cg / f"{name}.c"), str(util[0])]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        if r.returncode != 0:
            raise osh_kernels.KernelError(f"building the {fam.name} {name} selftest "
                                          "failed", detail=r.stdout)
    return out
