"""Run a command inside a QEMU guest booting Debian's stock kernel.

The host cannot load kernel modules, so objcg_shadow.ko is tested in a VM:

* the guest kernel is Debian's linux-image-<ver> for the installed
  /usr/src/linux-headers-<ver>, fetched with ``apt-get download`` and
  extracted (never installed) into ``<repo>/.cache/kernels/<ver>/``;
* a small busybox initramfs (``<repo>/.cache/initramfs-<ver>-<hash>.cpio.gz``)
  loads virtio/9p/ext4, mounts the host's root file system read-only over
  9p and chroots into it, so the guest runs the host's own python3, insmod,
  etc.  See guest/init and guest/stage2.sh next to this file;
* the repo is shared read-only at /run/osh/repo, a per-run output directory
  read-write at /run/osh/out, a fresh 512M ext4 scratch disk is on /mnt.

Entry point: ``run_vm(cmd, **opts) -> int`` (used by ``scripts/objcg-shadow vm``).
Only the Python standard library is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import lzma
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import osh_debugkernel
import osh_kernels

LIB_DIR = Path(__file__).resolve().parent
GUEST_DIR = LIB_DIR / "guest"
REPO = LIB_DIR.parent.parent
CACHE = REPO / ".cache"

EXIT_TIMEOUT = 124   # --timeout expired
EXIT_FAILURE = 125   # build failure, VM/boot failure, kernel WARN/BUG/panic/Oops,
                     # insmod/rmmod failure, guest did not report CMD's status

DEFAULT_CMD = ["cat", "/sys/kernel/debug/objcg_shadow/cgroups"]
MODULE_NAME = "objcg_shadow"

# Debian packages the VM needs on the host (the guest uses the host's root fs,
# so python3, kmod, util-linux etc. come from the host too).
VM_PACKAGES = ["qemu-system-x86", "busybox-static", "kmod", "e2fsprogs"]
# what the guest tests of the reports run from the host's root: crosscheck
# (bpftrace) and export (parsed with Prometheus' own parser)
REPORT_PACKAGES = ["bpftrace", "python3-prometheus-client"]
# the kernels' kbuild tools (objtool, sign-file) are extracted, not
# installed: their shared libraries must be there
BUILD_PACKAGES = ["make", "gcc", "libelf1", "libssl3", "zlib1g"]

# Modules the initramfs loads (their modules.dep dependencies are added
# automatically, in load order).  crc32c_generic: ext4/jbd2 need "crc32c"
# through the crypto API (a softdep, not in modules.dep); 7.3 calls it
# crc32c_cryptoapi.  A tuple names one module under its kernels' names.
INITRAMFS_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "virtio_blk",
                     ("crc32c_generic", "crc32c_cryptoapi"), "ext4"]
INITRAMFS_FORMAT = "1"  # bump to invalidate cached initramfs images

# watchdog_thresh=60: soft lockups are reported after 120 s instead of 20.
# Under TCG on a busy host a vCPU can go unscheduled for tens of seconds
# (seen: 27 s in clear_page() with the module already unloaded); a real
# hang still trips the 120 s watchdog or the run's timeout.
KERNEL_CMDLINE = ("console=ttyS0 quiet loglevel=4 panic_on_warn=1 oops=panic "
                  "panic=-1 watchdog_thresh=60 rdinit=/init")

# A kernel message (printk timestamp, possibly in the middle of a line of CMD
# output) matching this, on the console or in dmesg, fails the run.  Requiring
# the timestamp keeps userspace output such as Python logging's
# "WARNING:root:..." from counting.
# BUG: covers KASAN, soft lockups and list corruption; WARNING: covers
# lockdep's reports, refcount_t and DEBUG_OBJECTS' warnings.
BAD_RE = re.compile(r"\[ *\d+\.\d+\] .*(WARNING:|BUG:|Kernel panic|Oops|UBSAN:|"
                    r"ODEBUG:|detected stall|self-detected stall|"
                    r"blocked for more than|possible circular locking|"
                    r"inconsistent lock state)")
# kmemleak's report of one object, and its backtrace lines
KMEMLEAK_OBJ_RE = re.compile(r"^unreferenced object (0x[0-9a-f]+)", re.M)

TAIL_LINES = 60
SCRATCH_SIZE = "512M"


class VMError(Exception):
    """A failure before or around the guest run; message is user-facing."""

    def __init__(self, msg: str, code: int = EXIT_FAILURE, detail: str = ""):
        super().__init__(msg)
        self.code = code
        self.detail = detail


# --------------------------------------------------------------------------
# progress output

_T0 = time.monotonic()


def _elapsed() -> float:
    return time.monotonic() - _T0


def log(msg: str) -> None:
    print(f"[objcg-shadow] {msg}", file=sys.stderr, flush=True)


def progress(msg: str) -> None:
    log(f"{msg} [{_elapsed():.1f}s]")


# --------------------------------------------------------------------------
# host packages

_apt_updated = False


def _pkg_installed(pkg: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return r.returncode == 0 and r.stdout.strip() == "installed"


def _apt(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def apt_update() -> None:
    global _apt_updated
    if _apt_updated:
        return
    r = _apt(["update"])
    if r.returncode != 0:
        raise VMError("apt-get update failed", detail=r.stdout)
    _apt_updated = True


# Multi-threaded TCG needs QEMU 10: bookworm-backports has it for Debian 12.
MTTCG_QEMU_MAJOR = 10
QEMU_APT = CACHE / "apt-qemu"
QEMU_SUITES = [("http://deb.debian.org/debian", s) for s in
               ("bookworm", "bookworm-updates", "bookworm-backports")] + \
              [("http://deb.debian.org/debian-security", "bookworm-security")]


def qemu_major() -> int:
    r = subprocess.run(["qemu-system-x86_64", "--version"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    m = re.search(r"version (\d+)\.", r.stdout or "")
    return int(m.group(1)) if m else 0


def ensure_mttcg_qemu() -> None:
    """QEMU >= 10 for multi-threaded TCG: installed from bookworm-backports
    through a private apt configuration in .cache/apt-qemu (Debian 12
    suites only, so no dependency comes from a newer release; the
    machine's own apt sources are not used)."""
    ensure_packages(["qemu-system-x86"])
    if qemu_major() >= MTTCG_QEMU_MAJOR:
        return
    if os.geteuid() != 0:
        raise VMError(f"--mttcg needs QEMU {MTTCG_QEMU_MAJOR} (installed: "
                      f"{qemu_major()}); run as root to install it from "
                      "bookworm-backports", code=2)
    with _cache_lock("apt"):
        if qemu_major() >= MTTCG_QEMU_MAJOR:
            return
        progress(f"installing QEMU {MTTCG_QEMU_MAJOR} from bookworm-backports for "
                 "multi-threaded TCG (one-time)...")
        for d in ("lists/partial", "archives/partial"):
            (QEMU_APT / d).mkdir(parents=True, exist_ok=True)
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        (QEMU_APT / "sources.list").write_text("".join(
            f"deb [signed-by={keyring}] {url} {suite} main\n" for url, suite in QEMU_SUITES))
        opts = ["-o", f"Dir::Etc::sourcelist={QEMU_APT / 'sources.list'}",
                "-o", "Dir::Etc::sourceparts=-",
                "-o", f"Dir::State::Lists={QEMU_APT / 'lists'}",
                "-o", f"Dir::Cache::Archives={QEMU_APT / 'archives'}", "-q"]
        r = _apt([*opts, "update"])
        if r.returncode == 0:
            r = _apt([*opts, "install", "-y", "--no-install-recommends", "-t",
                      "bookworm-backports", "qemu-system-x86"])
        if r.returncode != 0 or qemu_major() < MTTCG_QEMU_MAJOR:
            raise VMError("installing qemu-system-x86 from bookworm-backports failed",
                          detail=r.stdout)


def ensure_packages(pkgs: list[str]) -> None:
    """Install the Debian packages of `pkgs` that are missing.  Concurrent
    runs (make check's guests) wait for each other: apt's own lock makes
    the second one fail instead (seen on a fresh machine)."""
    if all(_pkg_installed(p) for p in pkgs):
        return
    with _cache_lock("apt"):
        missing = [p for p in pkgs if not _pkg_installed(p)]
        if not missing:
            return
        if os.geteuid() != 0:
            raise VMError("missing Debian packages: %s (run as root, or install them: "
                          "apt-get install %s)" % (" ".join(missing), " ".join(missing)))
        progress("installing missing Debian packages: %s..." % " ".join(missing))
        apt_update()
        r = _apt(["install", "-y", "--no-install-recommends", *missing])
        if r.returncode != 0:
            raise VMError("apt-get install %s failed" % " ".join(missing),
                          detail=r.stdout)


def pyplot():
    """matplotlib.pyplot with the Agg backend, installing Debian's package
    if needed (it lands in the system python's path, not a venv's)."""
    ensure_packages(["python3-matplotlib"])
    try:
        import matplotlib
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# A backtrace frame kallsyms could not name, in x86-64's module mapping
# (MODULES_VADDR..MODULES_END): code of a module unloaded since.  In the
# guest only objcg_shadow is ever unloaded.
UNLOADED_FRAME_RE = re.compile(r"\] (0xffffffff(?:c|d|e|f)[0-9a-f]{7})\s*$")


def module_leak(report: Path) -> str | None:
    """The first kmemleak object allocated by the module (a frame named
    [objcg_shadow], or an unnamed one in the module mapping: the scan runs
    after the unload), as a line; the kernel's own leaks are not ours."""
    with contextlib.suppress(OSError):
        text = report.read_text(errors="replace")
        for block in re.split(r"(?=^unreferenced object )", text, flags=re.M):
            if not KMEMLEAK_OBJ_RE.match(block):
                continue
            ours = [l.strip() for l in block.splitlines()
                    if "[objcg_shadow]" in l or UNLOADED_FRAME_RE.search(l)]
            if ours:
                return f"{block.splitlines()[0].strip()} allocated at {ours[0]}"
    return None


# --------------------------------------------------------------------------
# guest kernel

@dataclass
class Kernel:
    version: str
    vmlinuz: Path
    modules_dir: Path   # .../lib/modules/<version>, with modules.dep
    root: Path | None = None        # the extracted packages (headers in usr/src)
    family: osh_kernels.Family | None = None

    @property
    def module(self) -> Path:
        """objcg_shadow.ko built for this kernel."""
        return REPO / "build" / "kbuild" / self.version / "module" / "objcg_shadow.ko"

    @property
    def guest_module(self) -> str:
        return "/run/osh/repo/" + str(self.module.relative_to(REPO))


@contextlib.contextmanager
def _cache_lock(name: str = ""):
    """Serialize cache preparation between concurrent runs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / (f".lock-{name}" if name else ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _kernel_dir(version: str) -> Path:
    return CACHE / "kernels" / version


def fetch_kernel(fam: osh_kernels.Family) -> Kernel:
    """The pinned kernel of `fam` (image, modules, headers), cached."""
    ensure_packages(["kmod"])
    if fam.base:
        stock = fetch_kernel(osh_kernels.KERNELS[fam.base])
        # a lock of its own: other kernels' runs go on during the long build
        with _cache_lock("debug-kernel"):
            try:
                version, kdir = osh_debugkernel.build(
                    stock.root / "boot" / f"config-{stock.version}", progress,
                    ensure_packages)
            except osh_kernels.KernelError as e:
                raise VMError(str(e), detail=e.detail)
        return Kernel(version, kdir / "boot" / f"vmlinuz-{version}",
                      kdir / "lib" / "modules" / version, kdir, fam)
    with _cache_lock():
        try:
            version, kdir = osh_kernels.fetch(fam, _kernel_dir, progress)
        except osh_kernels.KernelError as e:
            raise VMError(str(e), detail=e.detail)
    return Kernel(version, kdir / "boot" / f"vmlinuz-{version}",
                  kdir / "lib" / "modules" / version, kdir, fam)


def resolve_kernel(spec: str | None) -> Kernel:
    """--kernel: a family of the table (6.1, 6.12, 7.3; default 6.1), its
    full version, or a path to a vmlinuz with lib/modules next to it."""
    spec = spec or osh_kernels.DEFAULT
    if spec in osh_kernels.KERNELS:
        return fetch_kernel(osh_kernels.KERNELS[spec])
    fam = osh_kernels.family_of_version(spec)
    if fam and "/" not in spec:
        if spec != fam.version():
            raise VMError(f"--kernel {spec}: the {fam.name} family is pinned to "
                          f"{fam.version()}; use --kernel {fam.name}", code=2)
        return fetch_kernel(fam)
    if "/" not in spec:
        raise VMError(f"--kernel {spec!r} is not a supported kernel; supported: "
                      f"{osh_kernels.supported()}, or a path to a vmlinuz-VERSION file",
                      code=2)
    path = Path(spec).resolve()
    if not path.is_file():
        raise VMError(f"--kernel {spec}: no such file", code=2)
    m = re.match(r"vmlinu[xz]-(.+)$", path.name)
    if not m:
        raise VMError(f"--kernel {spec}: cannot derive the kernel version from the file "
                      "name (expected vmlinuz-<version>)", code=2)
    version = m.group(1)
    for cand in (path.parent.parent / "lib" / "modules" / version,
                 path.parent / "lib" / "modules" / version,
                 Path("/lib/modules") / version):
        if (cand / "modules.dep").is_file():
            return Kernel(version, path, cand, cand.parent.parent.parent,
                          osh_kernels.family_of_version(version))
    raise VMError(f"--kernel {spec}: no modules for {version} found (looked for "
                  f"lib/modules/{version}/modules.dep next to it and in /lib/modules; "
                  "run depmod -b if the tree has no modules.dep)")


# --------------------------------------------------------------------------
# PVH boot: QEMU can start an uncompressed vmlinux ELF that has a PVH entry
# note directly, which skips SeaBIOS's bzImage loader and the kernel's own
# (XZ) decompression -- about 4 of the ~13 seconds a TCG boot takes.

def _has_pvh_note(elf: bytes) -> bool:
    """True if `elf` is a 64-bit ELF with a XEN_ELFNOTE_PHYS32_ENTRY note."""
    if len(elf) < 64 or elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        ph = phoff + i * phentsize
        if ph + 56 > len(elf) or struct.unpack_from("<I", elf, ph)[0] != 4:  # PT_NOTE
            continue
        pos = struct.unpack_from("<Q", elf, ph + 8)[0]
        end = min(pos + struct.unpack_from("<Q", elf, ph + 32)[0], len(elf))
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            pos += 12 + (-(-namesz // 4) * 4) + (-(-descsz // 4) * 4)
    return False


def _extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside an XZ- or gzip-compressed bzImage, or None."""
    for magic, fmt in ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gz")):
        start = 0
        while (i := bzimage.find(magic, start)) >= 0:
            start = i + 1
            try:
                if fmt == "xz":
                    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
                else:
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                data = d.decompress(bzimage[i:])
            except (lzma.LZMAError, zlib.error):
                continue
            if data[:4] == b"\x7fELF":
                return data
    return None


def pvh_kernel(kernel: Kernel) -> Path:
    """A PVH-bootable vmlinux for `kernel` (cached), or its vmlinuz as a fallback."""
    src = kernel.vmlinuz
    if kernel.family and kernel.family.base:
        return src      # the debug kernel's PVH entry triple-faults (KASAN)
    st = src.stat()
    # not the path: two checkouts sharing one cache must agree on the name
    key = hashlib.sha256(f"{src.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    dest = CACHE / "vmlinux" / f"vmlinux-{kernel.version}-{key}"
    nopvh = dest.with_name(dest.name + ".no-pvh")
    if dest.exists():
        return dest
    if nopvh.exists():
        return src
    with _cache_lock():
        if dest.exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        for old in dest.parent.glob(f"vmlinux-{kernel.version}-*"):
            with contextlib.suppress(OSError):
                old.unlink()
        elf = _extract_vmlinux(src.read_bytes())
        if elf is None or not _has_pvh_note(elf):
            nopvh.touch()
            return src
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        tmp.write_bytes(elf)
        os.replace(tmp, dest)
    return dest


# --------------------------------------------------------------------------
# initramfs

def _modname(path: str) -> str:
    base = os.path.basename(path)
    base = re.sub(r"\.ko(\.(xz|zst|gz))?$", "", base)
    return base.replace("-", "_")


def module_load_order(modules_dir: Path, wanted: list) -> list[tuple[str, Path]]:
    """Resolve `wanted` and their modules.dep dependencies into load order."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[_modname(mod)] = (mod, [_modname(d) for d in rest.split()])
    builtin = set()
    bfile = modules_dir / "modules.builtin"
    if bfile.exists():
        builtin = {_modname(l) for l in bfile.read_text().split()}
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        if name not in deps:
            raise VMError(f"kernel module {name} (needed by the initramfs: "
                          f"{' <- '.join(chain + (name,))}) not found in {modules_dir}")
        seen.add(name)
        rel, ds = deps[name]
        for d in reversed(ds):
            visit(d, chain + (name,))
        order.append((name, modules_dir / rel))

    for w in wanted:
        if isinstance(w, tuple):    # renamed between kernels: the one it has
            w = next((a for a in w if a.replace("-", "_") in deps or
                      a.replace("-", "_") in builtin), w[0])
        visit(w, ())
    return order


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        r = subprocess.run(["zstd", "-dc", str(path)], stdout=subprocess.PIPE)
        if r.returncode != 0:
            raise VMError(f"cannot decompress {path} (zstd missing?)")
        return r.stdout
    return data


class _Cpio:
    """Minimal writer for the 'newc' cpio format (no root needed for /dev nodes)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 1

    def _add(self, name: str, mode: int, data: bytes = b"", rdev=(0, 0)) -> None:
        nameb = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(nameb), 0]
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.parts.append(hdr + nameb + b"\0" * (-(len(hdr) + len(nameb)) % 4))
        self.parts.append(data + b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._add(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._add(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._add(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._add(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self.ino = 0
        self._add("TRAILER!!!", 0)
        return b"".join(self.parts)


def build_initramfs(kernel: Kernel) -> Path:
    init = (GUEST_DIR / "init").read_bytes()
    busybox = Path("/bin/busybox")
    mods = module_load_order(kernel.modules_dir, INITRAMFS_MODULES)
    bst = busybox.stat()
    h = hashlib.sha256()
    for part in (INITRAMFS_FORMAT, init, kernel.version, str(kernel.modules_dir),
                 f"{bst.st_size}:{bst.st_mtime_ns}",
                 # a rebuilt kernel (the debug one) keeps its module paths
                 *(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for _, p in mods)):
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    out = CACHE / f"initramfs-{kernel.version}-{h.hexdigest()[:12]}.cpio.gz"
    if out.exists():
        return out
    progress(f"building initramfs for {kernel.version} (one-time)...")
    r = subprocess.run([str(busybox), "--list-full"], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise VMError("busybox --list-full failed")
    applets = sorted(set(r.stdout.split()))
    c = _Cpio()
    dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "host",
            "etc", "lib", "lib/osh-modules", "tmp", "run"}
    for a in applets:
        dirs.add(os.path.dirname(a))
    for d in sorted(dirs):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3)
    c.file("bin/busybox", busybox.read_bytes(), 0o755)
    for a in applets:
        if a != "bin/busybox":
            c.symlink(a, "/bin/busybox")
    c.file("init", init, 0o755)
    for name, path in mods:
        c.file(f"lib/osh-modules/{name}.ko", _read_module(path))
    c.file("etc/osh-modules", "".join(f"{n}\n" for n, _ in mods).encode())
    c.symlink("lib/modules", "/host/lib/modules")
    data = gzip.compress(c.finish(), compresslevel=6, mtime=0)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    # Drop stale images (old enough that no concurrent run is about to boot one).
    for old in CACHE.glob(f"initramfs-{kernel.version}-*.cpio.gz"):
        with contextlib.suppress(OSError):
            if old != out and time.time() - old.stat().st_mtime > 3600:
                old.unlink()
    return out


# --------------------------------------------------------------------------
# building the module and workloads

def _make(args: list[str], what: str, verbose: bool) -> None:
    progress(f"building {what}...")
    cmd = ["make", "-C", str(REPO), *args]
    if verbose:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr)
        out = ""
    else:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        out = r.stdout
    if r.returncode != 0:
        raise VMError(f"building {what} failed: {shlex.join(cmd)} exited with status "
                      f"{r.returncode}", detail=out)


def build(kernel: Kernel, verbose: bool, extra_args: list[str] | None = None) -> None:
    if kernel.root is None or not (kernel.root / "usr" / "src" /
                                   f"linux-headers-{kernel.version}").is_dir():
        raise VMError(f"no headers for {kernel.version} next to its image (use --kernel "
                      f"with a supported kernel: {osh_kernels.supported()}, or --no-build)")
    # concurrent runs share build/kbuild/VERSION and the workloads
    with _cache_lock():
        try:
            osh_kernels.build_module(kernel.family, kernel.version, kernel.root,
                                     progress, verbose, extra_args=extra_args)
        except osh_kernels.KernelError as e:
            raise VMError(str(e), detail=e.detail)
        _make(["workloads"], "workloads", verbose)


def check_module(kernel: Kernel) -> None:
    ko = kernel.module
    if not ko.is_file():
        raise VMError(f"{ko.relative_to(REPO)} does not exist (build it: drop --no-build, "
                      "or use --no-load)")
    r = subprocess.run(["modinfo", "-F", "vermagic", str(ko)], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    vermagic = r.stdout.split()
    if r.returncode == 0 and vermagic and vermagic[0] != kernel.version:
        raise VMError(f"{ko.relative_to(REPO)} was built for {vermagic[0]}, the guest "
                      f"runs {kernel.version} (rebuild it: drop --no-build)")


# --------------------------------------------------------------------------
# QEMU

def numa_layout(cpus: int, nodes: int, mem: int) -> list[tuple[list[int], int]]:
    """[(cpu list, MiB)] per node: CPUs in contiguous blocks, memory split evenly."""
    layout = []
    for n in range(nodes):
        lo, hi = n * cpus // nodes, (n + 1) * cpus // nodes
        size = mem // nodes + (mem % nodes if n == nodes - 1 else 0)
        layout.append((list(range(lo, hi)), size))
    return layout


def kernel_cmdline(verbose: bool = False, append: str = "") -> str:
    line = KERNEL_CMDLINE if not verbose else \
        KERNEL_CMDLINE.replace("quiet loglevel=4", "loglevel=7")
    return line + (" " + append if append else "")


def qemu_command(kernel: Kernel, boot_image: Path, initramfs: Path, *, cpus: int,
                 nodes: int, mem: int, out: Path, ctl: Path, scratch: Path,
                 verbose: bool = False, icount: bool = False,
                 append: str = "", mttcg: bool = False) -> list[str]:
    # One socket per NUMA node when possible, otherwise one per CPU: CPUs that
    # share a socket (LLC) but sit on different nodes make the scheduler's
    # topology_sane() WARN at boot, which panic_on_warn turns into a panic.
    sockets = nodes if cpus % nodes == 0 else cpus
    # Single-threaded TCG by default: Debian 12's QEMU 7.2 runs a breakpoint
    # byte another vCPU has patched away (the module's hooks patch kernel
    # text) and hangs multi-threaded TCG; --mttcg (real concurrency) takes
    # QEMU 10 from bookworm-backports (ensure_mttcg_qemu()).
    accel = "tcg,thread=multi" if mttcg else "tcg,thread=single"
    if icount:
        # the guest clock advances 1 ns per guest instruction: time measured
        # in the guest counts instructions (single-threaded TCG only)
        accel = "tcg,thread=single"
    cmd = ["qemu-system-x86_64", "-accel", accel, "-cpu", "max",
           "-smp", f"cpus={cpus},sockets={sockets},cores={cpus // sockets},threads=1",
           "-m", str(mem)]
    for n, (node_cpus, size) in enumerate(numa_layout(cpus, nodes, mem)):
        cmd += ["-object", f"memory-backend-ram,id=m{n},size={size}M"]
        spec = f"node,nodeid={n},memdev=m{n}"
        if node_cpus:
            spec += f",cpus={node_cpus[0]}-{node_cpus[-1]}"
        cmd += ["-numa", spec]
    cmd += ["-kernel", str(boot_image), "-initrd", str(initramfs),
            "-append", kernel_cmdline(verbose, append),
            "-nographic", "-no-reboot", "-nic", "none"]

    def share(tag: str, path: Path, readonly: bool) -> list[str]:
        p = str(path).replace(",", ",,")
        fs = f"local,id={tag},path={p},security_model=none,multidevs=remap"
        if readonly:
            fs += ",readonly=on"
        return ["-fsdev", fs, "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]

    cmd += share("hostroot", Path("/"), True)
    cmd += share("repo", REPO, True)
    cmd += share("out", out, False)
    cmd += share("ctl", ctl, True)
    cmd += share("kmods", kernel.modules_dir, True)
    cmd += ["-drive", f"file={str(scratch).replace(',', ',,')},if=virtio,format=raw"]
    if icount:
        cmd += ["-icount", "shift=0,sleep=off,align=off"]
    return cmd


# A guest that has not started CMD by then is stuck in firmware or boot.
# The slowest boot seen: 42 s (the debug kernel beside another guest).
BOOT_LIMIT = 300.0


def _wait_past_boot(proc, con, limit: float) -> bool:
    """Wait until CMD began or QEMU exited; True if `limit` passed first."""
    t0 = time.monotonic()
    while proc.poll() is None and con.phase == "boot":
        if time.monotonic() - t0 > limit:
            return True
        time.sleep(0.5)
    return False


def _write_ctl(ctl: Path, cmd: list[str], nonce: str, load: bool, params: list[str],
               env: dict[str, str], module: str) -> None:
    ctl.mkdir(parents=True, exist_ok=True)
    shutil.copy(GUEST_DIR / "stage2.sh", ctl / "stage2.sh")
    lines = [
        "# generated by scripts/lib/osh_vm.py for one run",
        f"OSH_NONCE={nonce}",
        f"OSH_LOAD={1 if load else 0}",
        "osh_insmod() {",
        "    insmod " + shlex.join([module, *params]),
        "}",
    ]
    for k, v in env.items():
        lines.append(f"export {k}={shlex.quote(v)}")
    (ctl / "config.sh").write_text("\n".join(lines) + "\n")
    (ctl / "cmd.sh").write_text("# CMD of this run\nexec " + shlex.join(cmd) + "\n")


class _Console:
    """Reads QEMU's serial console, shows CMD output live, watches for trouble."""

    def __init__(self, stream, nonce: str, verbose: bool, log_path: Path, t_boot: float):
        self.stream = stream
        self.verbose = verbose
        self.log_path = log_path
        self.t_boot = t_boot
        self.marker_re = re.compile(r"@@OSH-(CMD-BEGIN|CMD-END|STATUS) %s(?: ([^@]*))?@@"
                                    % re.escape(nonce))
        self.init_fail_re = re.compile(r"@@OSH-INIT-FAIL (.*?)@@")
        self.phase = "boot"
        # console lines not shown to the user (since CMD began, once it has)
        self.hidden: deque[str] = deque(maxlen=TAIL_LINES)
        self.bad: list[str] = []
        self.init_fail: str | None = None
        self.cmd_rc: int | None = None
        self.status: str | None = None
        self.t_begin: float | None = None
        self.t_end: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def last_line(self) -> str:
        return self.hidden[-1] if self.hidden else ""

    def _show(self, text: str, to_stdout: bool) -> None:
        f = sys.stdout if to_stdout else sys.stderr
        f.write(text + "\n")
        f.flush()

    def _run(self) -> None:
        with open(self.log_path, "w", encoding="utf-8", errors="replace") as logf:
            for raw in iter(self.stream.readline, b""):
                line = raw.decode("utf-8", "replace").replace("\r", "").rstrip("\n")
                line = _ESCAPE_RE.sub("", line)
                if line.startswith("Booting from ROM.."):   # SeaBIOS, no newline
                    logf.write("Booting from ROM..\n")
                    line = line[len("Booting from ROM.."):].lstrip(".")
                    if not line:
                        continue
                logf.write(line + "\n")
                logf.flush()
                self._line(line)

    def _line(self, line: str) -> None:
        m = self.marker_re.search(line)
        if BAD_RE.search(line[:m.start()] if m else line):
            self.bad.append(line)
        if m:
            before = line[:m.start()]
            kind, arg = m.group(1), (m.group(2) or "")
            if before and self.phase == "cmd":
                self._show(before, True)
            elif before and (self.phase == "post" or self.verbose):
                self._show(before, False)
            if kind == "CMD-BEGIN":
                self.phase = "cmd"
                self.hidden.clear()
                self.t_begin = time.monotonic()
                log(f"guest booted in {self.t_begin - self.t_boot:.1f}s; running CMD "
                    f"[{_elapsed():.1f}s]")
            elif kind == "CMD-END":
                self.phase = "post"
                self.t_end = time.monotonic()
                with contextlib.suppress(ValueError):
                    self.cmd_rc = int(arg.split("=", 1)[1])
            elif kind == "STATUS":
                self.status = arg
            return
        fm = self.init_fail_re.search(line)
        if fm:
            self.init_fail = fm.group(1)
            return
        if "@@OSH-INIT-DONE" in line or _POWER_DOWN_RE.search(line):
            return
        if self.phase == "cmd":
            self._show(line, True)
        elif self.phase == "post" or self.verbose:
            self._show(line, False)
        else:
            self.hidden.append(line)


_POWER_DOWN_RE = re.compile(r"^\[ *[0-9.]+\] reboot: Power down$")

# terminal control sequences (SeaBIOS clears the screen)
_ESCAPE_RE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_]|c)")


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def _show_block(title: str, lines) -> None:
    lines = list(lines)
    if not lines:
        return
    print(f"----- {title} -----", file=sys.stderr)
    for l in lines:
        print(l, file=sys.stderr)
    print(f"----- end of {title} -----", file=sys.stderr, flush=True)


def run_vm(cmd: list[str] | None = None, *, kernel: str | None = None, params: str = "",
           load: bool = True, cpus: int = 2, nodes: int = 2, mem: int | None = None,
           timeout: float = 600, out: str | os.PathLike | None = None,
           verbose: bool = False, build_first: bool = True,
           env: dict[str, str] | None = None, icount: bool = False,
           append: str = "", mttcg: bool = False) -> int:
    """Boot the guest, run `cmd` in it, return its exit status.

    Returns EXIT_TIMEOUT (124) on timeout and EXIT_FAILURE (125) on any other
    failure (build, boot, insmod/rmmod, kernel WARNING/BUG/panic/Oops).
    Options mirror `scripts/objcg-shadow vm --help`.
    """
    global _T0
    _T0 = time.monotonic()
    old_term = None
    with contextlib.suppress(ValueError):   # only possible in the main thread
        old_term = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return _run_vm(list(cmd) if cmd else list(DEFAULT_CMD), kernel=kernel,
                       params=shlex.split(params or ""), load=load, cpus=cpus, nodes=nodes,
                       mem=mem, timeout=timeout, out=out, verbose=verbose,
                       build_first=build_first, env=dict(env or {}), icount=icount,
                       append=append, mttcg=mttcg)
    except VMError as e:
        if e.detail:
            _show_block("output", e.detail.rstrip("\n").splitlines()[-200:])
        log(f"error: {e}")
        return e.code
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _sigterm(signum, frame):
    # Treated like Ctrl-C, so that qemu is killed and the run cleaned up.
    raise KeyboardInterrupt


def _run_vm(cmd, *, kernel, params, load, cpus, nodes, mem, timeout, out, verbose,
            build_first, env, icount=False, append="", mttcg=False) -> int:
    if cpus < 1 or nodes < 1:
        raise VMError("--cpus and --nodes must be at least 1", code=2)
    if mem is not None and mem < 64 * nodes:
        raise VMError(f"--mem {mem} is too small for {nodes} nodes (need >= {64 * nodes} MiB)",
                      code=2)
    ensure_packages(VM_PACKAGES + (BUILD_PACKAGES if build_first else []))
    if mttcg and icount:
        raise VMError("--icount counts instructions on single-threaded TCG only; "
                      "drop --mttcg", code=2)
    if mttcg:
        ensure_mttcg_qemu()
    k = resolve_kernel(kernel)
    if mem is None:
        mem = (k.family or osh_kernels.Family).guest_mem
    if build_first:
        build(k, verbose)
    if load:
        check_module(k)
    with _cache_lock():
        initramfs = build_initramfs(k)
    boot_image = pvh_kernel(k)

    runs = CACHE / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))
    ctl = run_dir / "ctl"
    out_dir = Path(out).resolve() if out else run_dir / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("rc", "status", "dmesg", "tainted", "console.log"):
        with contextlib.suppress(FileNotFoundError):
            (out_dir / name).unlink()
    scratch = run_dir / "scratch.img"
    r = subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(scratch), SCRATCH_SIZE],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise VMError("mke2fs for the scratch disk failed", detail=r.stdout)

    nonce = secrets.token_hex(6)
    genv = {}
    if "CI" in os.environ:
        genv["CI"] = os.environ["CI"]
    genv.update(env)
    genv["OSH_MODULE"] = k.guest_module
    genv["OSH_KERNEL"] = k.family.compat if k.family else k.version
    if k.family and k.family.base:
        genv["OSH_DEBUG_KERNEL"] = k.family.name
    _write_ctl(ctl, cmd, nonce, load, params, genv, k.guest_module)
    qcmd = qemu_command(k, boot_image, initramfs, cpus=cpus, nodes=nodes, mem=mem, out=out_dir,
                        ctl=ctl, scratch=scratch, verbose=verbose, icount=icount,
                        append=append, mttcg=mttcg)
    if verbose:
        log("qemu command: " + shlex.join(qcmd))

    for attempt in (1, 2):
        progress(f"booting guest ({cpus} vCPU{'s' if cpus != 1 else ''}, {nodes} node"
                 f"{'s' if nodes != 1 else ''}, {mem} MiB, kernel {k.version})...")
        t_boot = time.monotonic()
        proc = subprocess.Popen(qcmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        con = _Console(proc.stdout, nonce, verbose, out_dir / "console.log", t_boot)
        con.start()
        timed_out = interrupted = stuck = False
        try:
            stuck = _wait_past_boot(proc, con, min(timeout, BOOT_LIMIT))
            if not stuck:
                proc.wait(timeout=max(1.0, timeout - (time.monotonic() - t_boot)))
        except subprocess.TimeoutExpired:
            timed_out = True
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            con.thread.join(timeout=10)
        # QEMU 10's multi-threaded TCG once aborted in SeaBIOS, before the
        # guest kernel ran (iotlb_to_section: "section_index <
        # d->map.sections_nb" failed): that is QEMU's, not a result either
        died_booting = (not stuck and not timed_out and not interrupted and
                        con.phase == "boot" and proc.returncode != 0)
        if died_booting and attempt == 1:
            log(f"qemu exited with status {proc.returncode} before the guest "
                f"kernel reached CMD (last console line: {con.last_line()!r}); "
                "booting it once more")
            timeout -= time.monotonic() - t_boot
            continue
        if not stuck:
            break
        if attempt == 2 or BOOT_LIMIT >= timeout:
            timed_out = True
            break
        # the module is not loaded before CMD: a boot that hangs is QEMU's
        # or the kernel's, not a result (seen with QEMU 10's multi-threaded
        # TCG: idle after SeaBIOS with every vCPU thread waiting; a boot
        # kworker blocked for 120 s), whatever it printed meanwhile
        log(f"the guest did not reach CMD in {BOOT_LIMIT:.0f}s (last console line: "
            f"{con.last_line()!r}" + (f"; it reported {con.bad[0].strip()!r}" if con.bad
                                      else "") + "); booting it once more")
        timeout -= time.monotonic() - t_boot
    t_done = time.monotonic()

    reasons: list[str] = []
    code = None
    if interrupted:
        reasons.append("interrupted")
        code = 130
    if timed_out:
        where = {"boot": "the guest was still booting", "cmd": "CMD was still running",
                 "post": "the guest had not powered off after CMD"}[con.phase]
        reasons.append(f"TIMEOUT after {timeout:g}s: {where}; qemu killed")
        code = EXIT_TIMEOUT
    if con.init_fail:
        reasons.append(f"guest init failed: {con.init_fail}")
    if con.bad:
        reasons.append(f"kernel problem on the console: {con.bad[0].strip()}")
    if not timed_out and not interrupted and proc.returncode != 0:
        reasons.append(f"qemu exited with status {proc.returncode}")
    status = con.status
    if status is None:
        with contextlib.suppress(OSError):
            status = (out_dir / "status").read_text().strip()
    if status and status != "ok":
        reasons.append(status)
    dmesg_bad = [l for l in _tail(out_dir / "dmesg", 100000) if BAD_RE.search(l)]
    if dmesg_bad:
        reasons.append(f"kernel problem in dmesg: {dmesg_bad[0].strip()}")
    leak = module_leak(out_dir / "kmemleak")
    if leak:
        reasons.append(f"kmemleak: {leak}")
    rc = None
    with contextlib.suppress(OSError, ValueError):
        rc = int((out_dir / "rc").read_text().strip())
    if rc is None:
        rc = con.cmd_rc
    if rc is None and not reasons:
        reasons.append("the guest did not report CMD's exit status")
    if not reasons and con.phase != "boot" and status is None:
        reasons.append("the guest stopped before finishing (no status after CMD)")

    boot_s = (con.t_begin - t_boot) if con.t_begin else None
    cmd_s = (con.t_end - con.t_begin) if con.t_begin and con.t_end else None
    times = []
    if boot_s is not None:
        times.append(f"boot {boot_s:.1f}s")
    if cmd_s is not None:
        times.append(f"cmd {cmd_s:.1f}s")
    times.append(f"vm {t_done - t_boot:.1f}s")
    times.append(f"total {_elapsed():.1f}s")
    timing = ", ".join(times)

    with contextlib.suppress(OSError):
        scratch.unlink()
    if reasons:
        if code is None:
            code = EXIT_FAILURE
        _show_block("console (not shown above)", con.hidden)
        _show_block("dmesg tail", _tail(out_dir / "dmesg", 25))
        for r_ in reasons:
            log(f"FAILED: {r_}")
        if rc is not None:
            log(f"(CMD had exited with status {rc})")
        log(f"exit status {code} ({timing}); outputs (console.log, dmesg, ...) kept in "
            f"{out_dir}")
        if out:
            shutil.rmtree(run_dir, ignore_errors=True)
        return code

    log(f"CMD exited with status {rc} ({timing})")
    if out:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif rc != 0:
        log(f"outputs kept in {out_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return rc
