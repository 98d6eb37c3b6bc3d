# SPDX-License-Identifier: GPL-2.0
"""Per-design metrics from debugfs: snapshots, deltas, tables, fidelity.

The design matching the running kernel (the "reference" of debugfs
observed: v6.1 on 6.1, v6.7 on 6.12, v7.3 on 7.3) is checked against the
kernel's own stock operations, counted by probes ("observed"):

  drains        6.1, 6.12: drain_obj_stock() calls not made by
                drain_local_stock(), i.e. stock switches, vs the design's
                stock_takes; 7.3: slots drain_obj_stock_slot() emptied
                other than on request (drain_local_obj_stock()), i.e.
                evictions, vs the design's drain_objcg
  page charges  MEMCG_KMEM increments (memcg_account_kmem(n > 0) on 6.1,
                __mod_memcg_state() on 6.12, the memcg:mod_memcg_state
                tracepoint on 7.3) vs the design's charge_ops
"""
from __future__ import annotations

import os

import osh_slabmodel
import osh_state

REFERENCE = "v6.1"     # when the module does not say (older builds)
FIDELITY_TOLERANCE = 0.05
# A window with a few dozen events cannot resolve 5%: a difference of at
# most this many events also agrees (events in flight at the window edges,
# frees of objects from before load).
FIDELITY_NOISE_EVENTS = 5

# (column header, counter, per-1000-allocations?)
COLUMNS = [
    ("allocs", "allocs", False),
    ("stock miss", "stock_misses", True),
    ("drains", "drain_objcg", True),
    ("on free", "drain_on_free", True),
    ("node flush", "drain_node", True),
    ("explicit", "drain_explicit", True),
    ("charges", "charge_ops", True),
    ("uncharges", "uncharge_ops", True),
    ("vmstat", "vmstat_flushes", True),
    ("remote cpu", "remote_objcg_cpu", True),
    ("remote page", "remote_objcg_page", True),
    ("refresh", "task_refresh", True),
    ("retry", "task_retry", True),
    ("no state", "task_state_missing", True),
    ("objcgs swapped", "objcgs_swapped", False),
    ("objs repointed", "objects_repointed", False),
]


def _counters(rec: dict) -> dict:
    return {k: osh_state.as_number(v) for k, v in rec.items() if k != "design"}


def snapshot(root: str = osh_state.DEBUGFS) -> dict:
    osh_state.require_debugfs(root)
    designs = {r["design"]: _counters(r)
               for r in osh_state.read_records("designs", root)}
    observed = {}
    for r in osh_state.read_records("observed", root):
        observed = _counters(r)
    return {"designs": designs, "observed": observed}


# numbers in the designs file that describe a design instead of counting
DESIGN_FIELDS = ("stock_slots", "reference")


def delta(before: dict, after: dict) -> dict:
    out = {"designs": {}, "observed": {}}
    for name, counters in after["designs"].items():
        prev = before["designs"].get(name, {})
        out["designs"][name] = {
            k: (v - prev.get(k, 0)) if isinstance(v, int) and
            k not in DESIGN_FIELDS else v
            for k, v in counters.items()}
    out["observed"] = {k: (v - before["observed"].get(k, 0))
                       if isinstance(v, int) else v
                       for k, v in after["observed"].items()}
    for flag in ("observing",):             # a flag, not a counter
        if flag in after["observed"]:
            out["observed"][flag] = after["observed"][flag]
    return out


def reference_of(d: dict) -> str:
    return d.get("observed", {}).get("reference") or REFERENCE


def per_k(counters: dict, key: str) -> float:
    allocs = max(counters.get("allocs", 0), 1)
    return 1000.0 * counters.get(key, 0) / allocs


def observed_row(d: dict) -> dict:
    """The running kernel as a row of the table: its observed drains (as
    the reference design counts them) and page charges, per 1000 of the
    reference design's allocations."""
    obs = d.get("observed", {})
    ref = d["designs"].get(reference_of(d), {})
    if not obs or not obs.get("observing", 1) or not ref:
        return {}
    agr = agreement(d)
    return {"allocs": ref.get("allocs", 0),
            "drain_objcg": agr["drains"]["observed"],
            "charge_ops": obs.get("charge_ops", 0),
            "uncharge_ops": obs.get("uncharge_ops", 0)}


def table(d: dict) -> str:
    names = list(d["designs"])
    kernel = observed_row(d)
    label = "kernel %s (observed)" % d.get("observed", {}).get("kernel", "")
    width = max([len(n) + 2 for n in names] + [len("design"), len(label)])
    head = f"{'design':<{width}}" + "".join(f" {h:>14}" for h, _k, _p in COLUMNS)
    lines = [head, "-" * len(head)]
    for name in names:
        c = d["designs"][name]
        if c.get("reference") == 1:
            name += " *"
        cells = []
        for _h, key, scaled in COLUMNS:
            cells.append(f"{per_k(c, key):14.1f}" if scaled
                         else f"{c.get(key, 0):14d}")
        lines.append(f"{name:<{width}}" + " ".join([""] + cells))
    if kernel:
        cells = []
        for _h, key, scaled in COLUMNS:
            if key not in kernel:
                cells.append(f"{'-':>14}")
            else:
                cells.append(f"{per_k(kernel, key):14.1f}" if scaled
                             else f"{kernel[key]:14d}")
        lines.append(f"{label:<{width}}" + " ".join([""] + cells))
    lines.append("(* the running kernel's own design.  Columns other than "
                 "allocs and the reparenting totals are per 1000 allocations; "
                 "the kernel's drains are what its design counts: stock "
                 "switches, or on 7.3 slot evictions)")
    return "\n".join(lines)


def agreement(d: dict, reference: str | None = None) -> dict:
    """Simulated vs observed for the design that matches the kernel."""
    reference = reference or reference_of(d)
    ref = d["designs"].get(reference)
    obs = d["observed"]
    if not ref or not obs or not obs.get("observing", 1):
        return {}
    if ref.get("stock") == "roundrobin":
        drains = (ref.get("drain_objcg", 0),
                  obs.get("drain_obj_stock", 0) -
                  obs.get("explicit_slot_drains", 0))
    else:
        drains = (ref.get("stock_takes", 0),
                  obs.get("drain_obj_stock", 0) -
                  obs.get("drain_local_stock", 0))
    pairs = {
        "drains": drains,
        "page_charges": (ref.get("charge_ops", 0), obs.get("charge_ops", 0)),
    }
    out = {}
    for what, (sim, seen) in pairs.items():
        rel = abs(sim - seen) / seen if seen else (0.0 if not sim else 1.0)
        out[what] = {"simulated": sim, "observed": seen, "relative": rel,
                     "ok": rel <= FIDELITY_TOLERANCE or
                     abs(sim - seen) <= FIDELITY_NOISE_EVENTS}
    return out


def agreement_text(agr: dict, reference: str = REFERENCE) -> str:
    """The fidelity lines; `reference` names the design in them."""
    if not agr:
        return ("fidelity: nothing observed (module loaded with observe=0, "
                "or its kprobes absent: see hooks)")
    lines = [f"fidelity of {reference} against the running kernel "
             f"(tolerance {FIDELITY_TOLERANCE:.0%}, or "
             f"{FIDELITY_NOISE_EVENTS} events):"]
    for what, a in agr.items():
        lines.append(f"  {what:<13} simulated {a['simulated']:>9}  observed "
                     f"{a['observed']:>9}  difference {a['relative']:6.2%}  "
                     f"{'ok' if a['ok'] else 'DISAGREES'}")
    return "\n".join(lines)


def main(args) -> int:
    try:
        snap = snapshot(args.debugfs)
    except osh_state.StateError as e:
        print(f"objcg-shadow designs: {e}")
        return 2
    zero = {"designs": {}, "observed": {}}
    d = delta(zero, snap)
    print("totals since the module was loaded")
    print(table(d))
    agr = agreement(d)
    print()
    print(agreement_text(agr, reference_of(d)))
    model = osh_slabmodel.parse(osh_state.read_records("slabmodel", args.debugfs)) \
        if os.path.exists(os.path.join(args.debugfs, "slabmodel")) else None
    if model and model["enabled"]:
        print()
        print(osh_slabmodel.designs_text(model, list(d["designs"]),
                                         os.sysconf("SC_PAGE_SIZE")))
    return 0 if all(a["ok"] for a in agr.values()) else 1
