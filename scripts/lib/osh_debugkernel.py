# SPDX-License-Identifier: GPL-2.0
"""The debug kernel: Debian's 6.1 built from linux-source-6.1 with lockdep,
KASAN, kmemleak, debug lists/objects and failslab (issue 8).

Config: ``allnoconfig`` plus three fragments, checked in the result:
``kernels/debug/guest.config`` (what the guest needs: virtio, 9p, ext4,
NUMA, hotplug, the hooks), Debian's own values, from the pinned 6.1
image's config, of the options in ``kernels/debug/debian-keep.list``
(preemption, RCU, slab, memcg, hardening: what the module mirrors), and
``kernels/debug/6.1-debug.config`` (the debug options).  Starting from
nothing keeps the build to about 1,100 files instead of Debian's 2,000
after localmodconfig, so a cold ``make check`` can build it.
Built once with the host's gcc-12 (Debian's 6.1 compiler), with progress,
and laid out like an extracted Debian kernel in ``.cache/kernels/<release>/``
(boot/vmlinuz-<release>, lib/modules/<release>, usr/src/linux-headers-<release>
pointing at the build tree) so the VM runner and the module build treat it
like the stock ones.  A changed fragment, list or source rebuilds it.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import osh_kernels

REPO = osh_kernels.REPO
CACHE = osh_kernels.CACHE
CONFIG_DIR = REPO / "kernels" / "debug"
FRAGMENT = CONFIG_DIR / "6.1-debug.config"
GUEST = CONFIG_DIR / "guest.config"
DEBIAN_KEEP = CONFIG_DIR / "debian-keep.list"
SOURCE_TAR = Path("/usr/src/linux-source-6.1.tar.xz")
BUILD_ROOT = CACHE / "debug-kernel"
SUFFIX = "-oshdebug-amd64"          # CONFIG_LOCALVERSION of the fragment
# What building a kernel from source needs on the host, beyond the module's
BUILD_DEPS = ["linux-source-6.1", "bc", "bison", "flex", "libelf-dev", "libssl-dev",
              "cpio", "kmod", "xz-utils", "gcc", "make", "rsync"]
STAMP = "objcg-shadow-debug-kernel"


def _inputs_key(base_config: Path) -> str:
    h = hashlib.sha256()
    for p in (FRAGMENT, GUEST, DEBIAN_KEEP, base_config, Path(__file__)):
        h.update(p.read_bytes())
    st = SOURCE_TAR.stat()
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _options(text: str) -> dict[str, str]:
    """Options of a config text: name -> 'y', a value, or 'n' (is not set)."""
    want = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"(CONFIG_\w+)=(.*)", line):
            want[m.group(1)] = m.group(2)
        elif m := re.fullmatch(r"# (CONFIG_\w+) is not set", line):
            want[m.group(1)] = "n"
    return want


def debian_fragment(base_config: Path) -> str:
    """Debian's values of the options in debian-keep.list, as a fragment."""
    debian = _options(base_config.read_text())
    names = [l.strip() for l in DEBIAN_KEEP.read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    lines = []
    for n in names:
        v = debian.get(n, "n")
        lines.append(f"# {n} is not set" if v == "n" else f"{n}={v}")
    return "\n".join(lines) + "\n"


def check_config(config: Path, fragments: list[str]) -> list[str]:
    """Options of the fragments the final .config does not have, as text."""
    have = {}
    for line in config.read_text().splitlines():
        if m := re.fullmatch(r"(CONFIG_\w+)=(.*)", line):
            have[m.group(1)] = m.group(2)
    want = {}
    for text in fragments:
        want.update(_options(text))
    missing = []
    for opt, val in want.items():
        got = have.get(opt, "n")
        if got != val:
            missing.append(f"{opt}={val} (got {got})")
    return missing


def _make(src: Path, args: list[str], progress, what: str) -> str:
    """make in `src`, printing a progress line every 30 s (files compiled)."""
    env = dict(os.environ, KBUILD_BUILD_USER="objcg-shadow", KBUILD_BUILD_HOST="debug",
               LC_ALL="C")
    p = subprocess.Popen(["make", "-C", str(src), *args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env)
    out, compiled, start, last = [], 0, time.monotonic(), time.monotonic()
    for line in p.stdout:
        out.append(line)
        if len(out) > 400:
            del out[:200]
        if line.startswith("  CC "):
            compiled += 1
        now = time.monotonic()
        if now - last >= 30:
            last = now
            progress(f"  {what}: {compiled} files compiled, {(now - start) / 60:.1f} min")
    if p.wait() != 0:
        raise osh_kernels.KernelError(f"building the debug kernel failed at {what}",
                                      detail="".join(out[-80:]))
    return "".join(out)


def release_of(src: Path) -> str:
    r = subprocess.run(["make", "-s", "-C", str(src), "kernelrelease"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise osh_kernels.KernelError("make kernelrelease failed", detail=r.stdout)
    return r.stdout.strip().splitlines()[-1]


def build(base_config: Path, progress, ensure_packages) -> tuple[str, Path]:
    """The debug kernel (built once); returns (release, its kernels/ dir)."""
    ensure_packages(BUILD_DEPS)
    key = _inputs_key(base_config)
    for done in (CACHE / "kernels").glob(f"*{SUFFIX}"):
        stamp = done / STAMP
        if stamp.exists() and stamp.read_text().strip() == key:
            return done.name, done
    t0 = time.monotonic()
    src = BUILD_ROOT / "linux"
    if not (src / "Makefile").exists():
        progress("extracting linux-source-6.1 for the debug kernel (one-time)...")
        shutil.rmtree(BUILD_ROOT, ignore_errors=True)
        BUILD_ROOT.mkdir(parents=True)
        r = subprocess.run(["tar", "-xJf", str(SOURCE_TAR), "-C", str(BUILD_ROOT)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tops = [d for d in BUILD_ROOT.iterdir() if (d / "Makefile").exists()]
        if r.returncode != 0 or len(tops) != 1:
            raise osh_kernels.KernelError(f"cannot extract {SOURCE_TAR}", detail=r.stdout)
        tops[0].rename(src)
    progress("configuring the debug kernel: allnoconfig, "
             f"{GUEST.relative_to(REPO)}, Debian's values of "
             f"{DEBIAN_KEEP.relative_to(REPO)}, {FRAGMENT.relative_to(REPO)}...")
    debian = BUILD_ROOT / "debian-keep.config"
    debian.write_text(debian_fragment(base_config))
    r = subprocess.run([str(src / "scripts" / "kconfig" / "merge_config.sh"), "-n",
                        "-O", str(src), str(GUEST), str(debian), str(FRAGMENT)],
                       cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise osh_kernels.KernelError("merge_config.sh failed", detail=r.stdout)
    missing = check_config(src / ".config", [GUEST.read_text(), debian.read_text(),
                                             FRAGMENT.read_text()])
    if missing:
        raise osh_kernels.KernelError("the debug kernel's config lacks: " +
                                      ", ".join(missing))
    jobs = str(os.cpu_count() or 1)
    progress(f"building the debug kernel with {jobs} jobs (one-time; tens of minutes, "
             "cached in .cache/kernels/)...")
    _make(src, [f"-j{jobs}", "bzImage", "modules"], progress, "bzImage modules")
    release = release_of(src)
    kdir = CACHE / "kernels" / release
    tmp = kdir.with_name(kdir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "boot").mkdir(parents=True)
    _make(src, [f"INSTALL_MOD_PATH={tmp}", "INSTALL_MOD_STRIP=1", "DEPMOD=/sbin/depmod",
                "modules_install"], progress, "modules_install")
    shutil.copy(src / "arch" / "x86" / "boot" / "bzImage", tmp / "boot" / f"vmlinuz-{release}")
    shutil.copy(src / "System.map", tmp / "boot" / f"System.map-{release}")
    shutil.copy(src / ".config", tmp / "boot" / f"config-{release}")
    (tmp / "usr" / "src").mkdir(parents=True)
    (tmp / "usr" / "src" / f"linux-headers-{release}").symlink_to(src)
    for link in ("build", "source"):
        p = tmp / "lib" / "modules" / release / link
        if p.is_symlink() or p.exists():
            p.unlink()
        p.symlink_to(src)
    shutil.rmtree(kdir, ignore_errors=True)
    tmp.rename(kdir)
    (kdir / osh_kernels.STAMP).write_text("built from linux-source-6.1\n")
    (kdir / STAMP).write_text(key + "\n")
    progress(f"debug kernel {release} built in {(time.monotonic() - t0) / 60:.1f} min")
    return release, kdir
