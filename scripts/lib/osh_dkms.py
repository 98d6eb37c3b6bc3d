# SPDX-License-Identifier: GPL-2.0
"""dkms add + build of the repo's dkms.conf against one kernel's headers,
in private trees (--dkmstree, --sourcetree: the machine's /var/lib/dkms
and /usr/src are not touched).  Kernels built with gcc-14 build in the
Debian 13 chroot, which has its own dkms."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import osh_kernels

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "dkms.conf"
TREE = ("Kbuild", "Makefile", "module", "include", "dkms.conf")


class DkmsError(Exception):
    def __init__(self, msg: str, detail: str = ""):
        super().__init__(msg)
        self.detail = detail


def conf_version() -> str:
    m = re.search(r'^PACKAGE_VERSION="([^"]+)"', CONF.read_text(), re.M)
    if not m:
        raise DkmsError("dkms.conf has no PACKAGE_VERSION")
    return m.group(1)


def module_version() -> str:
    m = re.search(r'#define OSH_VERSION\s+"([^"]+)"',
                  (REPO / "module" / "osh_module.h").read_text())
    return m.group(1) if m else ""


def _copy_tree(dest: Path) -> None:
    for name in TREE:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(
                "*.o", "*.ko", "*.mod*", ".*.cmd", "Module.symvers", "modules.order"))
        else:
            shutil.copy2(src, dest / name)


def build(fam, version: str, kdir: Path, progress) -> tuple[Path, str]:
    """Build with dkms; returns (a copy of the built .ko, dkms's output)."""
    if not shutil.which("dkms") and fam.compiler != "trixie":
        raise DkmsError("dkms is not installed (apt-get install dkms)")
    ver = conf_version()
    headers = kdir / "usr" / "src" / f"linux-headers-{version}"
    osh_kernels._localize_headers(kdir, version)
    work = Path(tempfile.mkdtemp(prefix="osh-dkms-", dir=REPO / "build"))
    src = work / "src" / f"objcg_shadow-{ver}"
    src.mkdir(parents=True)
    (work / "tree").mkdir()
    _copy_tree(src)
    args = ["-m", "objcg_shadow", "-v", ver, "--dkmstree", str(work / "tree"),
            "--sourcetree", str(work / "src")]
    steps = [["dkms", "add", *args],
             ["dkms", "build", *args, "-k", version, "--kernelsourcedir", str(headers)]]
    chrooted = fam.compiler == "trixie"
    progress(f"dkms build for {version}" + (" (gcc-14 chroot)" if chrooted else "") + "...")
    if chrooted:
        root = osh_kernels.ensure_chroot(progress)
        # objtool reads /proc (7.3)
        mounts = " && ".join([f"mkdir -p {root}{p} && mount --bind {p} {root}{p}"
                              for p in (kdir, work)] + [f"mount -t proc proc {root}/proc"])
        script = mounts + " && " + " && ".join(
            "chroot %s %s" % (root, " ".join(s)) for s in steps)
        cmds = [["unshare", "-m", "--propagation", "private", "sh", "-c", script]]
    else:
        cmds = steps
    out = ""
    try:
        for cmd in cmds:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            out += r.stdout
            if r.returncode:
                logs = list((work / "tree").glob("objcg_shadow/*/build/make.log"))
                log = logs[0].read_text(errors="replace") if logs else ""
                raise DkmsError(f"dkms failed for {version} (status {r.returncode})",
                                detail=(out + "\nmake.log:\n" + log)[-3000:])
        built = list((work / "tree").glob(f"objcg_shadow/{ver}/{version}/*/module/"
                                          "objcg_shadow.ko*"))
        if not built:
            raise DkmsError(f"dkms built no objcg_shadow.ko for {version}", detail=out[-3000:])
        ko = REPO / "build" / "dkms" / version / built[0].name
        ko.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[0], ko)
        return ko, out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def declared_parameters() -> set[str]:
    """Names of the module's parameters, from its sources."""
    names = set()
    for c in (REPO / "module").glob("*.c"):
        names |= set(re.findall(r"^module_param(?:_cb|_named)?\((\w+),",
                                c.read_text(), re.M))
    return names


def modinfo_parameters(ko: Path) -> dict[str, str]:
    """modinfo's parameter descriptions: {name: description}."""
    r = subprocess.run(["modinfo", "-F", "parm", str(ko)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        raise DkmsError(f"modinfo {ko} failed", detail=r.stdout)
    out = {}
    for line in r.stdout.splitlines():
        name, _, desc = line.partition(":")
        out[name.strip()] = desc.strip()
    return out
