# SPDX-License-Identifier: GPL-2.0
"""objcg-shadow bench: what loading the module costs a workload.

One guest boot times each kmemload workload with the module unloaded and
loaded with each design list, interleaved over repetitions.  A repetition
runs every configuration once, so the ratio of a configuration to "off"
within one repetition is a paired sample; the table shows the median of
those ratios and their spread.  Under TCG the absolute times say little
about a real host; the ratios are the result.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import osh_vm

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIGS = ["designs=v6.1", "designs=v6.1 observe=0",
                   "designs=v6.1,v6.7,v7.1,pernode"]


def summarize(result: dict) -> list[dict]:
    """Per workload and configuration: median seconds, and the median,
    minimum and maximum of its per-repetition ratios to "off"."""
    rows = []
    for w, per_config in result["samples"].items():
        base = per_config.get("off")
        for config, times in per_config.items():
            row = {"workload": w, "config": config, "n": len(times),
                   "median_s": statistics.median(times)}
            if base and len(base) == len(times):
                ratios = [t / b for t, b in zip(times, base)]
                row.update(ratio=statistics.median(ratios),
                           ratio_min=min(ratios), ratio_max=max(ratios))
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    cw = max([len(r["config"]) for r in rows] + [len("config")])
    head = (f"{'workload':<9} {'config':<{cw}} {'median ms':>10} "
            f"{'vs off':>8} {'range of the paired ratios':>27}")
    out = [head, "-" * len(head)]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "-"
        spread = (f"{r['ratio_min']:.2f}x .. {r['ratio_max']:.2f}x"
                  if "ratio" in r else "-")
        out.append(f"{r['workload']:<9} {r['config']:<{cw}} "
                   f"{1000 * r['median_s']:>10.1f} {ratio:>8} {spread:>27}")
    return "\n".join(out)


def plot(rows: list[dict], reps: int, path: Path) -> None:
    plt = osh_vm.pyplot()
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    configs = [c for c in dict.fromkeys(r["config"] for r in rows)
               if c != "off"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(configs), 1)
    for i, config in enumerate(configs):
        sel = {r["workload"]: r for r in rows if r["config"] == config}
        xs = [j + i * width for j in range(len(workloads))]
        med = [sel[w]["ratio"] for w in workloads]
        err = [[sel[w]["ratio"] - sel[w]["ratio_min"] for w in workloads],
               [sel[w]["ratio_max"] - sel[w]["ratio"] for w in workloads]]
        ax.bar(xs, med, width, yerr=err, capsize=3, label=config)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))])
    ax.set_xticklabels(workloads)
    ax.set_ylabel("time / time without the module")
    ax.set_title("objcg_shadow overhead: median of %d paired ratios "
                 "(bars: min..max), QEMU/TCG guest" % reps, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args) -> int:
    configs = ["off"] + (args.config or DEFAULT_CONFIGS)
    out = Path(args.out or REPO / "build" / "bench").resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "overhead.run"
    cmd = ["python3", "scripts/lib/osh_bench_guest.py", "--reps",
           str(args.reps), "--scale", str(args.scale),
           "--json", "/run/osh/out/overhead.json"]
    if args.workloads:
        cmd += ["--workloads", args.workloads]
    for c in configs:
        cmd += ["--config", c]
    rc = osh_vm.run_vm(cmd, kernel=args.kernel, load=False, out=run_dir,
                       timeout=args.timeout,
                       build_first=args.build)
    src = run_dir / "overhead.json"
    if rc or not src.exists():
        print(f"objcg-shadow bench: the guest run failed (status {rc}); "
              f"see {run_dir}", file=sys.stderr)
        return rc or 1
    result = json.loads(src.read_text())
    rows = summarize(result)
    result["summary"] = rows
    (out / "overhead.json").write_text(json.dumps(result, indent=1))
    sizes = ", ".join(f"{w} {a[1]}" for w, a in result["workloads"].items())
    text = (f"objcg_shadow overhead: {result['reps']} repetitions, "
            f"configurations interleaved, one untimed run after each load "
            f"(guest: QEMU/TCG; objects per run: {sizes})\n" + table(rows))
    if not args.no_plot:
        plot(rows, result["reps"], out / "overhead.png")
        text += f"\nplot: {out / 'overhead.png'}"
    (out / "overhead.txt").write_text(text + "\n")
    print(text)
    return 0
