# SPDX-License-Identifier: GPL-2.0
"""The stock Debian kernels objcg_shadow supports, pinned, and how to get them.

KERNELS is the one table of supported kernels: family name -> the pinned
Debian kernel ABI, the suite serving it, the packages holding its image,
modules and headers, and the compiler it was built with.  Everything is
fetched with ``apt-get download`` through a private apt configuration in
``.cache/apt`` (the machine's own apt sources are never touched) and
extracted, never installed, into ``.cache/kernels/<version>/``.

A family whose pinned ABI the archive no longer serves falls back to the
newest ABI of the same family that it does serve, and says so.

Kernels built with a compiler the host lacks (gcc-14: Debian 13) get their
module built in a Debian 13 chroot made once with mmdebstrap, cached in
``.cache/chroot-trixie``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LIB_DIR = Path(__file__).resolve().parent
REPO = LIB_DIR.parent.parent
CACHE = REPO / ".cache"
APT_DIR = CACHE / "apt"
CHROOT = CACHE / "chroot-trixie"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
SUITES = [(MIRROR, s) for s in ("bookworm", "bookworm-updates", "bookworm-backports",
                                "trixie", "trixie-updates", "trixie-backports")] + \
         [(SECURITY, s) for s in ("bookworm-security", "trixie-security")]
# dwarves: pahole for the modules' BTF; perl, python3: kernel-doc (W=1)
# dkms: the dkms.conf test of 6.12 and 7.3 (tests/run)
CHROOT_PACKAGES = ["gcc-14", "make", "libc6-dev", "libelf1t64", "libssl3t64", "zlib1g",
                   "kmod", "xz-utils", "dwarves", "perl", "python3", "dkms"]
CHROOT_FORMAT = "4"     # bump to rebuild cached chroots
STAMP = ".osh-kernel-complete"  # image, modules and headers all extracted


@dataclass(frozen=True)
class Family:
    """One supported kernel family and its pinned Debian build."""
    name: str               # what --kernel takes: 6.1, 6.12, 7.3
    abi: str                # pinned ABI: 6.1.0-57, 6.12.118+deb13, 7.3.4+deb13
    abi_re: str             # ABIs of the same family, for the fallback
    who: str                # who runs it (README table)
    compiler: str           # "host" (gcc-12) or "trixie" (gcc-14 chroot)
    image: tuple            # package name templates, {abi} and {flavour}
    headers: tuple
    kbuild: str             # linux-kbuild package template
    reference: str          # the design that matches this kernel
    extra: tuple = field(default_factory=tuple)
    base: str = ""          # built from source: the stock family it debugs
    guest_mem: int = 1536   # default guest MiB

    @property
    def compat(self) -> str:
        """The family whose compat header and tests apply (itself, or base)."""
        return self.base or self.name

    def version(self, abi: str | None = None) -> str:
        if self.base and not abi:
            return f"6.1.N{SUFFIX_DEBUG}"
        return f"{abi or self.abi}-amd64"


KERNELS: dict[str, Family] = {
    "6.1": Family(
        "6.1", "6.1.0-57", r"6\.1\.0-\d+", "Debian 12 (bookworm, oldstable)", "host",
        image=("linux-image-{abi}-amd64",),
        headers=("linux-headers-{abi}-amd64", "linux-headers-{abi}-common"),
        kbuild="linux-kbuild-6.1", reference="v6.1"),
    "6.12": Family(
        "6.12", "6.12.118+deb13", r"6\.12\.\d+\+deb13", "Debian 13 (trixie, stable)",
        "trixie",
        image=("linux-image-{abi}-amd64-unsigned",),
        headers=("linux-headers-{abi}-amd64", "linux-headers-{abi}-common"),
        kbuild="linux-kbuild-{abi}", reference="v6.7"),
    "7.3": Family(
        "7.3", "7.3.4+deb13", r"7\.3\.\d+\+deb13", "Debian 13 trixie-backports", "trixie",
        image=("linux-binary-{abi}-amd64", "linux-modules-{abi}-amd64",
               "linux-base-{abi}-amd64"),
        headers=("linux-headers-{abi}-amd64", "linux-headers-{abi}-common"),
        kbuild="linux-kbuild-{abi}", reference="v7.3"),
    # Not a Debian package: built once from linux-source-6.1 with lockdep,
    # KASAN and kmemleak (scripts/lib/osh_debugkernel.py).
    "6.1-debug": Family(
        "6.1-debug", "6.1.N-oshdebug", r"6\.1\.\d+-oshdebug",
        "debug build of Debian 12's 6.1 (lockdep, KASAN, kmemleak)", "host",
        image=(), headers=(), kbuild="", reference="v6.1", base="6.1",
        # KASAN's shadow (1/8) and its 32 KiB stacks: 4,000 threads fail
        # for memory at 1536 MiB
        guest_mem=3072),
}
SUFFIX_DEBUG = "-oshdebug-amd64"
DEFAULT = "6.1"


class KernelError(Exception):
    """A user-facing failure to get or build for a kernel."""

    def __init__(self, msg: str, detail: str = ""):
        super().__init__(msg)
        self.detail = detail


def log(msg: str) -> None:
    print(f"[objcg-shadow] {msg}", file=sys.stderr, flush=True)


def supported() -> str:
    return ", ".join(f"{n} ({f.version()})" for n, f in KERNELS.items())


def family(name: str) -> Family:
    if name not in KERNELS:
        raise KernelError(f"--kernel {name!r} is not a supported kernel; supported: "
                          f"{supported()}")
    return KERNELS[name]


def family_of_version(version: str) -> Family | None:
    """The family of a full kernel version such as 6.12.118+deb13-amd64."""
    for fam in KERNELS.values():
        if re.fullmatch(fam.abi_re + r"-amd64", version):
            return fam
    return None


# --------------------------------------------------------------------------
# private apt

def _apt_args() -> list[str]:
    return ["-o", f"Dir::Etc::sourcelist={APT_DIR / 'sources.list'}",
            "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={APT_DIR / 'lists'}",
            "-o", f"Dir::Cache::Archives={APT_DIR / 'archives'}",
            "-o", "APT::Sandbox::User=root", "-q"]


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


_apt_fresh = False


def apt_update(force: bool = False) -> None:
    """Create and refresh the private apt configuration (once per run)."""
    global _apt_fresh
    if _apt_fresh and not force:
        return
    for d in ("lists/partial", "archives/partial"):
        (APT_DIR / d).mkdir(parents=True, exist_ok=True)
    (APT_DIR / "sources.list").write_text("".join(
        f"deb [signed-by={KEYRING}] {url} {suite} main\n" for url, suite in SUITES))
    log("refreshing the private apt lists in .cache/apt (the machine's apt sources "
        "are not used)...")
    r = _run(["apt-get", *_apt_args(), "update"])
    if r.returncode != 0:
        raise KernelError("apt-get update with the private configuration failed",
                          detail=r.stdout)
    _apt_fresh = True


def _lists_present() -> bool:
    return any((APT_DIR / "lists").glob("*_Packages*")) if (APT_DIR / "lists").is_dir() \
        else False


def available(pkg: str) -> bool:
    r = _run(["apt-cache", *_apt_args(), "show", "--no-all-versions", pkg])
    return r.returncode == 0 and "Package:" in r.stdout


def resolve_abi(fam: Family) -> str:
    """The pinned ABI, or the newest of its family the archive serves."""
    if not _lists_present():
        apt_update()
    probe = fam.headers[0].format(abi=fam.abi)
    if not available(probe):
        apt_update(force=True)
    if available(probe):
        return fam.abi
    r = _run(["apt-cache", *_apt_args(), "pkgnames", "linux-headers-"])
    pat = re.compile(r"linux-headers-(" + fam.abi_re + r")-amd64$")
    abis = sorted({m.group(1) for line in r.stdout.split() if (m := pat.match(line))},
                  key=lambda a: [int(x) if x.isdigit() else x
                                 for x in re.split(r"(\d+)", a)])
    abis = [a for a in abis if available(fam.image[0].format(abi=a))]
    if not abis:
        raise KernelError(f"the archive serves no {fam.name} kernel (pinned {fam.abi}, "
                          f"none matching {fam.abi_re})")
    log(f"NOTE: pinned kernel {fam.version()} is no longer in the archive; using the "
        f"newest of the {fam.name} family it serves: {fam.version(abis[-1])}")
    return abis[-1]


def _download(pkgs: list[str], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    r = _run(["apt-get", *_apt_args(), "download", *pkgs], cwd=dest)
    if r.returncode != 0:
        apt_update(force=True)
        r = _run(["apt-get", *_apt_args(), "download", *pkgs], cwd=dest)
    debs = sorted(dest.glob("*.deb"))
    if r.returncode != 0 or len(debs) < len(pkgs):
        raise KernelError("apt-get download %s failed" % " ".join(pkgs), detail=r.stdout)
    return debs


def _extract(debs: list[Path], root: Path) -> None:
    for deb in debs:
        r = _run(["dpkg-deb", "-x", str(deb), str(root)])
        if r.returncode != 0:
            raise KernelError(f"dpkg-deb -x {deb.name} failed", detail=r.stdout)


def fetch(fam: Family, kdir_of, progress) -> tuple[str, Path]:
    """Image, modules and headers of `fam` in .cache/kernels/<version>/.

    `kdir_of(version)` gives the cache directory; returns (version, dir).
    """
    abi = resolve_abi(fam)
    version = fam.version(abi)
    kdir = kdir_of(version)
    if (kdir / STAMP).exists():
        return version, kdir
    fmt = {"abi": abi}
    pkgs = [p.format(**fmt) for p in fam.image + fam.headers + (fam.kbuild,) + fam.extra]
    progress(f"downloading kernel {version}: {len(pkgs)} packages (one-time, cached in "
             ".cache/kernels/)...")
    kdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=kdir.parent))
    try:
        debs = _download(pkgs, tmp / "debs")
        mb = sum(d.stat().st_size for d in debs) / 2**20
        progress(f"downloaded {mb:.0f} MB; extracting...")
        root = tmp / "root"
        _extract(debs, root)
        # usr-merged packages (6.12, 7.3) ship usr/lib/modules; 7.3 has no /boot
        if (root / "usr" / "lib" / "modules").is_dir() and not (root / "lib").exists():
            (root / "lib").symlink_to("usr/lib")
        vmlinuz = root / "boot" / f"vmlinuz-{version}"
        if not vmlinuz.exists():
            alt = root / "lib" / "modules" / version / "vmlinuz"
            if not alt.exists():
                raise KernelError(f"no kernel image for {version} in {', '.join(pkgs)}")
            vmlinuz.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(alt, vmlinuz)
        r = _run(["depmod", "-b", str(root), version])
        if r.returncode != 0:
            raise KernelError(f"depmod for {version} failed", detail=r.stdout)
        if kdir.exists():
            shutil.rmtree(kdir)
        root.rename(kdir)
        (kdir / STAMP).write_text(" ".join(pkgs) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return version, kdir


# --------------------------------------------------------------------------
# building the module with the kernel's own compiler

def ensure_chroot(progress) -> Path:
    """A Debian 13 minbase chroot with gcc-14 (for kernels built with it)."""
    stamp = CHROOT / ".osh-complete"
    if stamp.exists() and stamp.read_text().strip() == CHROOT_FORMAT:
        return CHROOT
    if shutil.which("mmdebstrap") is None:
        progress("installing mmdebstrap (Debian package)...")
        r = _run(["apt-get", "install", "-y", "--no-install-recommends", "mmdebstrap"])
        if r.returncode != 0:
            r = _run(["apt-get", "update"])
            r = _run(["apt-get", "install", "-y", "--no-install-recommends",
                      "mmdebstrap"])
        if r.returncode != 0:
            raise KernelError("apt-get install mmdebstrap failed", detail=r.stdout)
    progress("creating the Debian 13 build chroot with gcc-14 (one-time, about a "
             "minute and 350 MB, cached in .cache/chroot-trixie)...")
    tmp = CHROOT.with_name(CHROOT.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
           "--include=" + ",".join(CHROOT_PACKAGES), "trixie", str(tmp), MIRROR]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out = []
    for line in p.stdout:
        out.append(line)
        if line.startswith(("I: ", "W: ")) and len(out) % 5 == 0:
            progress("  mmdebstrap: " + line[3:].strip()[:100])
    if p.wait() != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KernelError("mmdebstrap trixie failed", detail="".join(out[-60:]))
    shutil.rmtree(CHROOT, ignore_errors=True)
    tmp.rename(CHROOT)
    stamp.write_text(CHROOT_FORMAT + "\n")
    return CHROOT


SOURCES = ("Kbuild", "module", "include")


def _copy_sources(dest: Path) -> None:
    """The module's sources only, into a build directory of one kernel."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "Kbuild").write_text((REPO / "Kbuild").read_text())
    for sub in ("module", "include"):
        for src in sorted((REPO / sub).rglob("*")):
            if src.is_dir() or src.name.endswith(".mod.c") or \
                    src.suffix not in (".c", ".h") and src.name != "Kbuild":
                continue        # sources only, not an in-tree build's output
            out = dest / src.relative_to(REPO)
            out.parent.mkdir(parents=True, exist_ok=True)
            data = src.read_bytes()
            if not out.exists() or out.read_bytes() != data:
                out.write_bytes(data)   # unchanged files keep their mtime


def _localize_headers(kdir: Path, version: str) -> None:
    """Point the headers' Makefile at the cached tree instead of /usr/src."""
    mk = kdir / "usr" / "src" / f"linux-headers-{version}" / "Makefile"
    text = mk.read_text()
    # whatever the paths were (/usr/src, or a cache at another path)
    local = re.sub(r"[\w./+-]*/usr/src/(linux-headers-[^/\s]+)",
                   lambda m: f"{kdir}/usr/src/{m.group(1)}", text)
    if local != text:
        mk.write_text(local)


def build_module(fam: Family | None, version: str, kdir: Path, progress,
                 verbose: bool = False, extra_args: list[str] | None = None,
                 capture: bool = False):
    """Build objcg_shadow.ko for `version` (in build/kbuild/VERSION/).

    Returns the .ko path, or with `capture` the build's output.
    `extra_args` go to make (e.g. W=1; the objects are rebuilt then).
    """
    extra = " ".join(extra_args or [])
    headers = kdir / "usr" / "src" / f"linux-headers-{version}"
    if not headers.is_dir():
        raise KernelError(f"no headers for {version} in {kdir}")
    out = REPO / "build" / "kbuild" / version
    # objects of another header tree or compiler must not be linked in
    stamp = out / ".osh-built-with"
    want = f"{headers} {fam.compiler if fam else 'host'} {extra}\n"
    if out.exists() and (not stamp.exists() or stamp.read_text() != want):
        shutil.rmtree(out)
    _copy_sources(out)
    stamp.write_text(want)
    # modpost's outputs are always made anew: a stale .mod.c carries the
    # symbol CRCs of whatever kernel it was last generated for
    for pattern in ("module/*.mod.c", "module/*.ko", "Module.symvers",
                    "module/Module.symvers"):
        for f in out.glob(pattern):
            f.unlink()
    _localize_headers(kdir, version)
    chrooted = fam is not None and fam.compiler == "trixie"
    if chrooted:
        root = ensure_chroot(progress)
        # The chroot sees the header tree and the build directory at their
        # host paths, through bind mounts in a private mount namespace of
        # this one command.
        mounts = " && ".join([f"mkdir -p {root}{p} && mount --bind {p} {root}{p}"
                              for p in (kdir, out)] +
                             [f"mount -t proc proc {root}/proc"])
        script = (f"{mounts} && chroot {root} make -C {headers} M={out} CC=gcc-14 "
                  f"{extra} modules")
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
    else:
        cmd = ["make", "-C", str(headers), f"M={out}", *(extra_args or []), "modules"]
    progress(f"building the module for {version}" + (" (gcc-14 chroot)" if chrooted else "")
             + "...")
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=None if verbose and
                       not capture else subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0:
        raise KernelError(f"building the module for {version} failed",
                          detail=r.stdout or "")
    ko = out / "module" / "objcg_shadow.ko"
    if not ko.is_file():
        raise KernelError(f"the build for {version} produced no {ko}")
    return r.stdout or "" if capture else ko
