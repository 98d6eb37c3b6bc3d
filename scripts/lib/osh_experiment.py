# SPDX-License-Identifier: GPL-2.0
"""objcg-shadow experiment NAME: run a named workload in the guest with
every design loaded, print the side-by-side table and write a PNG plot."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import osh_designs
import osh_slabmodel
import osh_vm

REPO = Path(__file__).resolve().parents[2]
# per kernel: its own design first, then the ones the experiments compare
DESIGNS = {
    "6.1": "v6.1,v6.7,v7.1,pernode,v7.1+stock2,v7.1+memcgkey,memcgptr",
    "6.12": "v6.7,v6.1,v7.1,pernode,v7.1+stock2,v7.1+memcgkey,memcgptr",
    # 7.3, the regressed one-slot v7.1, the hotfix, the seed's task array on
    # 7.3's stock, and the series' next patch (objcg of the page's node)
    "7.3": "v7.3,v7.1,v7.1+memcgkey,v7.3+pernode,v7.3+pagenode,v6.7,memcgptr",
}
TIME_REPS = 5
NAMES = ("switch", "memcgs", "slots", "reparent", "crossnode", "slabshare")

PLOT_KEYS = [("drains", "drain_objcg"), ("charges", "charge_ops"),
             ("uncharges", "uncharge_ops"), ("node flushes", "drain_node"),
             ("remote objcg (cpu)", "remote_objcg_cpu"),
             ("task refreshes", "task_refresh")]


def plot(result: dict, path: Path) -> bool:
    plt = osh_vm.pyplot()
    d = result["delta"]["designs"]
    names = list(d)
    fig, ax = plt.subplots(figsize=(11, 4.8))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [osh_designs.per_k(d[name], key) for _l, key in PLOT_KEYS]
        xs = [j + i * width for j in range(len(PLOT_KEYS))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(PLOT_KEYS))])
    ax.set_xticklabels([label for label, _k in PLOT_KEYS])
    ax.set_ylabel("per 1000 allocations")
    ax.set_yscale("symlog", linthresh=1)
    top = max([osh_designs.per_k(d[n], k) for n in names for _l, k in PLOT_KEYS]
              + [1.0])
    ax.set_ylim(0, top * 3)
    ax.set_title("objcg_shadow experiment '%s': %s" % (
        result["experiment"], result["workload"]), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_slab(result: dict, path: Path) -> bool:
    """Pages each layout added per cache, beside the kernel's own."""
    plt = osh_vm.pyplot()
    rows = result["slab"]["caches"][:10]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    series = [("kernel (/sys/kernel/slab)", lambda r: (r["kernel_slabs"] or 0)
               << r["order"]),
              ("shared caches (obj_cgroup designs)", lambda r: r["shared_pages"]),
              ("per-memcg caches (memcgptr)", lambda r: r["memcgptr_pages"])]
    width = 0.8 / len(series)
    for i, (label, value) in enumerate(series):
        ax.bar([j + i * width for j in range(len(rows))],
               [value(r) for r in rows], width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
    ax.set_xticklabels([r["cache"] for r in rows], rotation=30, ha="right",
                       fontsize=8)
    ax.set_ylabel("slab pages added in the window")
    t = result["slab"]["totals"]
    ax.set_title("objcg_shadow experiment '%s': pages shared %+d, memcgptr %+d; "
                 "%d dead memcgs pinned under memcgptr" % (
                     result["experiment"], t["shared"]["pages"],
                     t["memcgptr"]["pages"], result["slab"]["pinned_memcgs"]),
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def turn_time_text(tt: dict) -> str:
    return ("time per turn, module unloaded (%d runs of %d turns; TCG wall "
            "clock, noisy): median %.1f us, range %.1f .. %.1f us" % (
                tt["reps"], tt["turns"], tt["median"], tt["min"], tt["max"]))


def report(result: dict, png: Path | None) -> str:
    out = ["experiment %s on %s: %s (%.1fs in the guest)" % (
        result["experiment"], result.get("kernel", "?"), result["workload"],
        result["seconds"]),
        osh_designs.table(result["delta"]),
        osh_designs.agreement_text(result["agreement"],
                                   osh_designs.reference_of(result["delta"]))]
    if result.get("turn_time"):
        out.append(turn_time_text(result["turn_time"]))
    if result.get("slab"):
        out.append(osh_slabmodel.table(result["slab"]))
    if png:
        out.append("plot: %s" % png)
    return "\n".join(out)


def main(args) -> int:
    if args.name not in NAMES:
        print(f"objcg-shadow experiment: unknown experiment {args.name!r}; "
              f"choose one of: {', '.join(NAMES)}", file=sys.stderr)
        return 2
    suffix = "" if args.kernel == "6.1" else "-" + args.kernel
    out = Path(args.out or REPO / "build" / "experiments").resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / f"{args.name}{suffix}.run"
    cmd = ["python3", "scripts/lib/osh_experiment_guest.py", args.name,
           "--scale", str(args.scale), "--json", f"/run/osh/out/{args.name}.json"]
    if args.name == "switch":
        cmd += ["--time-reps", str(TIME_REPS)]
    rc = osh_vm.run_vm(cmd, kernel=args.kernel, params=f"designs={args.designs}",
                       out=run_dir, timeout=args.timeout, build_first=args.build)
    src = run_dir / f"{args.name}.json"
    if rc or not src.exists():
        print(f"objcg-shadow experiment: the guest run failed (status {rc}); "
              f"see {run_dir}", file=sys.stderr)
        return rc or 1
    result = json.loads(src.read_text())
    (out / f"{args.name}{suffix}.json").write_text(json.dumps(result, indent=1))
    png = out / f"{args.name}{suffix}.png"
    if not args.no_plot:
        if args.name == "slabshare" and result.get("slab"):
            plot_slab(result, png)
        else:
            plot(result, png)
    text = report(result, None if args.no_plot else png)
    (out / f"{args.name}{suffix}.txt").write_text(text + "\n")
    print(text)
    return 0
