# SPDX-License-Identifier: GPL-2.0
"""The debug kernel: Debian's 6.1 built from linux-source-6.1 with lockdep,
KASAN, kmemleak, debug lists/objects and failslab (issue 8).

Config: Debian's own config of the pinned 6.1 image, trimmed by
``make localmodconfig`` to the modules the guest loads
(``kernels/debug/guest-modules.lsmod``), with ``kernels/debug/6.1-debug.config``
merged over it (every option of it is checked in the result) and
``kernels/debug/trim.config`` (builtin subsystems the guest does not use).
Built once with the host's gcc-12 (Debian's 6.1 compiler), with progress,
and laid out like an extracted Debian kernel in ``.cache/kernels/<release>/``
(boot/vmlinuz-<release>, lib/modules/<release>, usr/src/linux-headers-<release>
pointing at the build tree) so the VM runner and the module build treat it
like the stock ones.  A changed fragment, module list or source rebuilds it.
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
TRIM = CONFIG_DIR / "trim.config"
LSMOD = CONFIG_DIR / "guest-modules.lsmod"
SOURCE_TAR = Path("/usr/src/linux-source-6.1.tar.xz")
BUILD_ROOT = CACHE / "debug-kernel"
SUFFIX = "-oshdebug-amd64"          # CONFIG_LOCALVERSION of the fragment
# What building a kernel from source needs on the host, beyond the module's
BUILD_DEPS = ["linux-source-6.1", "bc", "bison", "flex", "libelf-dev", "libssl-dev",
              "cpio", "kmod", "xz-utils", "gcc", "make", "rsync"]
STAMP = "objcg-shadow-debug-kernel"


def _inputs_key(base_config: Path) -> str:
    h = hashlib.sha256()
    for p in (FRAGMENT, TRIM, LSMOD, base_config, Path(__file__)):
        h.update(p.read_bytes())
    st = SOURCE_TAR.stat()
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _want_options() -> dict[str, str]:
    """The fragment's options: name -> 'y', a value, or 'n' (is not set)."""
    want = {}
    for line in FRAGMENT.read_text().splitlines():
        if m := re.fullmatch(r"(CONFIG_\w+)=(.*)", line):
            want[m.group(1)] = m.group(2)
        elif m := re.fullmatch(r"# (CONFIG_\w+) is not set", line):
            want[m.group(1)] = "n"
    return want


def check_config(config: Path) -> list[str]:
    """Options of the fragment the final .config does not have, as text."""
    have = {}
    for line in config.read_text().splitlines():
        if m := re.fullmatch(r"(CONFIG_\w+)=(.*)", line):
            have[m.group(1)] = m.group(2)
    missing = []
    for opt, val in _want_options().items():
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
    progress("configuring the debug kernel: Debian's config, localmodconfig, "
             f"{FRAGMENT.relative_to(REPO)}...")
    shutil.copy(base_config, src / ".config")
    _make(src, [f"LSMOD={LSMOD}", "localmodconfig"], progress, "localmodconfig")
    r = subprocess.run([str(src / "scripts" / "kconfig" / "merge_config.sh"), "-m",
                        "-O", str(src), str(src / ".config"), str(FRAGMENT),
                        str(TRIM)],
                       cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise osh_kernels.KernelError("merge_config.sh failed", detail=r.stdout)
    _make(src, ["olddefconfig"], progress, "olddefconfig")
    missing = check_config(src / ".config")
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
