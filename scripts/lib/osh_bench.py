# SPDX-License-Identifier: GPL-2.0
"""objcg-shadow bench: what loading the module costs.

Default, instructions: a guest on QEMU's -icount shift=0 (1 vCPU), where a
guest nanosecond is one guest instruction, counts instructions per
operation (tests/workloads/opcount) with the module off, loaded with only
its probes (probes_only=1: the floor any module on these hooks pays), with
each design alone, with the default designs, with observe=0; a second boot
with cgroup.memory=nokmem counts the kernel without kmem accounting, so
off minus nokmem is the kernel's own kmem accounting cost, and each
configuration's added instructions are also given as a multiple of it.
Configurations are interleaved over repetitions; "added" is the median of
the per-repetition differences to "off", the spread is (max - min) / median
of a configuration's counts.

Per-hook breakdown: after the repetitions the same boot loads the
reference design (observe=0) and the default designs once more with
time_handlers=1 (or each --config), and each hook's handlers sum their own
guest nanoseconds: instructions per call and per operation, per hook.  The
probes' own trap and dispatch are outside the handlers: their sum with
probes_only=1's cost should come near the configuration's "added".

--wallclock: the older mode, kmemload workloads timed under plain TCG; the
ratio of a configuration to "off" within one repetition is a paired
sample; the table shows the median of those ratios and their spread.
Under TCG the absolute times say little about a real host.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import osh_vm

REPO = Path(__file__).resolve().parents[2]
SLAB_LAYOUTS = {"memcgptr"}
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


def _config_width(rows: list[dict]) -> int:
    return max([len(r["config"]) for r in rows] + [len("config")])


def _head(head: str) -> list[str]:
    return [head, "-" * len(head)]


def table(rows: list[dict]) -> str:
    cw = _config_width(rows)
    out = _head(f"{'workload':<9} {'config':<{cw}} {'median ms':>10} "
                f"{'vs off':>8} {'range of the paired ratios':>27}")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else "-"
        spread = (f"{r['ratio_min']:.2f}x .. {r['ratio_max']:.2f}x"
                  if "ratio" in r else "-")
        out.append(f"{r['workload']:<9} {r['config']:<{cw}} "
                   f"{1000 * r['median_s']:>10.1f} {ratio:>8} {spread:>27}")
    return "\n".join(out)


def _grouped_bars(rows: list[dict], key: str, configs: list[str], size,
                  bar) -> tuple:
    """A figure with one group of bars per @key value, one bar per config;
    bar(ax, xs, selected rows by @key value, width, config) draws one."""
    plt = osh_vm.pyplot()
    groups = list(dict.fromkeys(r[key] for r in rows))
    fig, ax = plt.subplots(figsize=size)
    width = 0.8 / max(len(configs), 1)
    for i, config in enumerate(configs):
        sel = {r[key]: r for r in rows if r["config"] == config}
        bar(ax, [j + i * width for j in range(len(groups))],
            [sel[g] for g in groups], width, config)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))])
    ax.set_xticklabels(groups)
    return plt, fig, ax, groups, width


def _save(plt, fig, ax, path: Path, legend: dict) -> None:
    ax.legend(**legend)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(rows: list[dict], reps: int, path: Path) -> None:
    def bar(ax, xs, sel, width, config):
        med = [r["ratio"] for r in sel]
        err = [[r["ratio"] - r["ratio_min"] for r in sel],
               [r["ratio_max"] - r["ratio"] for r in sel]]
        ax.bar(xs, med, width, yerr=err, capsize=3, label=config)

    configs = [c for c in dict.fromkeys(r["config"] for r in rows) if c != "off"]
    plt, fig, ax, _, _ = _grouped_bars(rows, "workload", configs, (9, 4.5), bar)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("time / time without the module")
    ax.set_title("objcg_shadow overhead: median of %d paired ratios "
                 "(bars: min..max), QEMU/TCG guest" % reps, fontsize=9)
    _save(plt, fig, ax, path, {"fontsize": 8})


def icount_configs(kernel: str) -> list[str]:
    import osh_experiment
    designs = osh_experiment.DESIGNS.get(kernel or "6.1",
                                         osh_experiment.DESIGNS["6.1"])
    names = designs.split(",")
    # a slab layout runs beside an obj_cgroup design (the module refuses it
    # alone): its cost is what it adds to the kernel's own design
    return (["off", "probes_only=1"]
            + ["designs=" + (f"{names[0]},{d}" if d in SLAB_LAYOUTS else d)
               for d in names]
            + ["default", "observe=0"])


def breakdown_configs(kernel: str, user: list[str] | None) -> list[str]:
    """The configurations whose per-hook cost is broken down."""
    if user:
        return [c for c in user if "probes_only=1" not in c.split()]
    import osh_kernels
    ref = osh_kernels.KERNELS[kernel or "6.1"].reference
    return [f"designs={ref} observe=0", "default"]


def summarize_breakdown(breakdown: dict, rows: list[dict]) -> list[dict]:
    """Per configuration, operation and hook: handler calls and instructions
    per operation, hooks by cost; then the sum, beside the configuration's
    added instructions minus the probes' own (from @rows, when both ran)."""
    added = {(r["op"], r["config"]): r["added"] for r in rows if "added" in r}
    out = []
    for config, per_op in breakdown.items():
        for op, b in per_op.items():
            hooks = sorted(b["hooks"].items(), key=lambda kv: -kv[1]["calls_per_op"]
                           * kv[1]["instructions_per_call"])
            total = 0.0
            for name, h in hooks:
                per_op_cost = h["calls_per_op"] * h["instructions_per_call"]
                total += per_op_cost
                out.append({"config": config, "op": op, "hook": name,
                            "calls_per_op": h["calls_per_op"],
                            "instructions_per_call": h["instructions_per_call"],
                            "instructions_per_op": per_op_cost})
            row = {"config": config, "op": op, "hook": "(sum of handlers)",
                   "instructions_per_op": total}
            if (op, config) in added and (op, "probes_only=1") in added:
                row["added_beyond_probes"] = (added[(op, config)]
                                              - added[(op, "probes_only=1")])
            out.append(row)
    return out


def breakdown_table(rows: list[dict]) -> str:
    cw = max([len(r["config"]) for r in rows] + [6])
    hw = max([len(r["hook"]) for r in rows] + [4])
    out = _head(f"{'op':<13} {'config':<{cw}} {'hook':<{hw}} {'calls/op':>9} "
                f"{'instr/call':>11} {'instr/op':>9}")
    last = None
    for r in rows:
        key = (r["config"], r["op"])
        if last and key != last:
            out.append("")
        last = key
        if "calls_per_op" in r:
            out.append(f"{r['op']:<13} {r['config']:<{cw}} {r['hook']:<{hw}} "
                       f"{r['calls_per_op']:>9.2f} {r['instructions_per_call']:>11,.0f} "
                       f"{r['instructions_per_op']:>9,.0f}")
            continue
        beyond = (f"   (added - probes_only: {r['added_beyond_probes']:,.0f})"
                  if "added_beyond_probes" in r else "")
        out.append(f"{r['op']:<13} {r['config']:<{cw}} {r['hook']:<{hw}} "
                   f"{'':>9} {'':>11} {r['instructions_per_op']:>9,.0f}{beyond}")
    return "\n".join(out)


def _median_spread(xs: list[float]) -> tuple[float, float]:
    med = statistics.median(xs)
    return med, (max(xs) - min(xs)) / med if med else 0.0


def summarize_icount(samples: dict, nokmem: dict) -> list[dict]:
    """Per operation and configuration: median instructions and spread,
    instructions added over "off" (median of the paired differences), and
    that as a multiple of the kernel's own kmem cost (off - nokmem)."""
    rows = []
    for op, per_config in samples.items():
        off = per_config["off"]
        off_med = statistics.median(off)
        kmem = None
        if nokmem.get(op):
            kmem = off_med - statistics.median(nokmem[op])
            med, spread = _median_spread(nokmem[op])
            rows.append({"op": op, "config": "nokmem boot", "n": len(nokmem[op]),
                         "instructions": med, "spread": spread})
        for config, counts in per_config.items():
            med, spread = _median_spread(counts)
            row = {"op": op, "config": config, "n": len(counts),
                   "instructions": med, "spread": spread}
            if config == "off":
                row["kmem_cost"] = kmem
            else:
                added = statistics.median(c - o for c, o in zip(counts, off))
                row["added"] = added
                # below 1% of the operation the kernel's kmem cost is noise
                if kmem is not None and kmem > 0.01 * off_med:
                    row["x_kmem"] = added / kmem
            rows.append(row)
    return rows


def icount_table(rows: list[dict]) -> str:
    cw = _config_width(rows)
    out = _head(f"{'op':<13} {'config':<{cw}} {'instr/op':>10} {'spread':>7} "
                f"{'added':>12} {'x kmem':>7}")
    last = None
    for r in rows:
        if last and r["op"] != last:
            out.append("")
        last = r["op"]
        added = f"{r['added']:+,.0f}" if "added" in r else (
            f"kmem {r['kmem_cost']:,.0f}" if r.get("kmem_cost") is not None else "")
        x = f"{r['x_kmem']:.2f}x" if "x_kmem" in r else ""
        out.append(f"{r['op']:<13} {r['config']:<{cw}} {r['instructions']:>10,.0f} "
                   f"{100 * r['spread']:>6.1f}% {added:>12} {x:>7}")
    return "\n".join(out)


def plot_icount(rows: list[dict], reps: int, path: Path) -> None:
    def bar(ax, xs, sel, width, config):
        ax.bar(xs, [max(r["added"], 1) for r in sel], width, label=config)

    configs = list(dict.fromkeys(r["config"] for r in rows if "added" in r))
    plt, fig, ax, ops, width = _grouped_bars(rows, "op", configs, (11, 4.8), bar)
    kmem = {r["op"]: r.get("kmem_cost") for r in rows if r["config"] == "off"}
    for j, o in enumerate(ops):
        if kmem.get(o) and kmem[o] > 0:
            ax.hlines(kmem[o], j - width / 2, j + 0.8 - width / 2, colors="black",
                      linewidth=1.5, label="kernel's own kmem cost" if j == 0 else None)
    ax.set_yscale("log")
    ax.set_ylabel("instructions added per operation")
    ax.set_title("objcg_shadow cost: median of %d paired differences to the "
                 "module off (QEMU -icount shift=0; black: off minus nokmem)" % reps,
                 fontsize=9)
    _save(plt, fig, ax, path, {"fontsize": 7, "ncol": 2})


def _guest_run(configs: list[str], args, extra: list[str], run_dir: Path,
               name: str, **vm) -> dict | None:
    """One boot of osh_bench_guest.py over @configs; its JSON, or None."""
    cmd = ["python3", "scripts/lib/osh_bench_guest.py", "--reps",
           str(args.reps), "--scale", str(args.scale), *extra,
           "--json", "/run/osh/out/" + name]
    for c in configs:
        cmd += ["--config", c]
    rc = osh_vm.run_vm(cmd, kernel=args.kernel, load=False, out=run_dir,
                       timeout=args.timeout, build_first=args.build, **vm)
    src = run_dir / name
    if rc or not src.exists():
        print(f"objcg-shadow bench: the guest run failed (status {rc}); "
              f"see {run_dir}", file=sys.stderr)
        return None
    return json.loads(src.read_text())


def _finish(text: str, rows: list[dict], reps: int, out: Path, stem: str,
            plotter, args) -> int:
    if not args.no_plot:
        plotter(rows, reps, out / (stem + ".png"))
        text += f"\nplot: {out / (stem + '.png')}"
    (out / (stem + ".txt")).write_text(text + "\n")
    print(text)
    return 0


def main_icount(args, out: Path) -> int:
    import osh_bench_guest
    ops = args.ops or ",".join(osh_bench_guest.OPS)
    configs = ["off"] + args.config if args.config else icount_configs(args.kernel)
    split = breakdown_configs(args.kernel, args.config)
    osh_vm.log(f"bench: {len(configs)} configurations x {args.reps} repetitions "
               f"x {len(ops.split(','))} operations, {len(split)} per-hook "
               f"breakdowns, then a nokmem boot")
    icount = {"icount": True, "cpus": 1, "nodes": 1}
    extra = ["--ops", ops]
    for c in split:
        extra += ["--breakdown", c]
    result = _guest_run(configs, args, extra, out / "icount.run",
                        "counts.json", **icount)
    if result is None:
        return 1
    base = _guest_run(["off"], args, ["--ops", ops], out / "nokmem.run",
                      "counts.json", append="cgroup.memory=nokmem", **icount)
    if base is None:
        return 1
    nokmem = {op: per["off"] for op, per in base["samples"].items()}
    rows = summarize_icount(result["samples"], nokmem)
    split_rows = summarize_breakdown(result.get("breakdown", {}), rows)
    result.update(nokmem=nokmem, summary=rows, kernel=args.kernel or "6.1",
                  breakdown_summary=split_rows)
    (out / "cost.json").write_text(json.dumps(result, indent=1))
    iters = ", ".join(f"{w} {a[2]}" for w, a in result["workloads"].items())
    text = (f"objcg_shadow cost on {args.kernel or '6.1'}: guest instructions per "
            f"operation (QEMU -icount shift=0, 1 vCPU), {result['reps']} "
            f"repetitions, configurations interleaved; iterations per count: "
            f"{iters}\n'added': median of the paired differences to off; "
            f"'x kmem': added / the kernel's own kmem cost (off - nokmem)\n"
            + icount_table(rows))
    if split_rows:
        text += ("\n\nper-hook breakdown (time_handlers=1: each handler's own "
                 "instructions, the clock's cost taken out; the probes' trap "
                 "and dispatch are not in it)\n" + breakdown_table(split_rows))
    return _finish(text, rows, result["reps"], out, "cost", plot_icount, args)


def main(args) -> int:
    out = Path(args.out or REPO / "build" / "bench").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.wallclock:
        return main_icount(args, out)
    configs = ["off"] + (args.config or DEFAULT_CONFIGS)
    extra = ["--workloads", args.workloads] if args.workloads else []
    result = _guest_run(configs, args, extra, out / "overhead.run",
                        "overhead.json")
    if result is None:
        return 1
    rows = summarize(result)
    result["summary"] = rows
    (out / "overhead.json").write_text(json.dumps(result, indent=1))
    sizes = ", ".join(f"{w} {a[1]}" for w, a in result["workloads"].items())
    text = (f"objcg_shadow overhead: {result['reps']} repetitions, "
            f"configurations interleaved, one untimed run after each load "
            f"(guest: QEMU/TCG; objects per run: {sizes})\n" + table(rows))
    return _finish(text, rows, result["reps"], out, "overhead", plot, args)
