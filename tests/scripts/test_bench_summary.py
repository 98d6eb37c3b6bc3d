#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The arithmetic of `bench`'s instruction counts (scripts/lib/osh_bench.py),
on counts made up so that each rule gives a different answer than the
obvious mistake would: paired differences against a difference of medians,
the kernel's kmem cost against the nokmem boot, the noise floor of x kmem.
Prints PASS/FAIL lines."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import script_tests  # noqa: E402
import osh_bench  # noqa: E402
import osh_experiment  # noqa: E402


def rows_by(rows, op):
    return {r["config"]: r for r in rows if r["op"] == op}


def test_added_is_the_median_of_paired_differences():
    # off drifts up over the repetitions and the config with it, but for
    # one repetition; the difference of medians (1300 - 2000) is not the
    # paired one (100)
    samples = {"open": {"off": [1000, 1000, 2000, 3000, 3000],
                        "designs=v6.1": [1100, 1100, 2100, 3100, 1300]}}
    r = rows_by(osh_bench.summarize_icount(samples, {}), "open")
    assert r["designs=v6.1"]["added"] == 100, r["designs=v6.1"]
    assert r["designs=v6.1"]["instructions"] == 1300
    assert abs(r["off"]["spread"] - 2000 / 2000) < 1e-9, r["off"]


def test_kmem_cost_and_its_multiple():
    samples = {"pipe": {"off": [15000, 15100, 15200],
                        "probes_only=1": [15240, 15340, 15440],
                        "default": [35000, 35100, 35200]}}
    nokmem = {"pipe": [11500, 11600, 11700]}
    r = rows_by(osh_bench.summarize_icount(samples, nokmem), "pipe")
    assert r["off"]["kmem_cost"] == 15100 - 11600, r["off"]
    assert r["nokmem boot"]["instructions"] == 11600
    assert abs(r["default"]["x_kmem"] - 20000 / 3500) < 1e-9, r["default"]
    assert abs(r["probes_only=1"]["x_kmem"] - 240 / 3500) < 1e-9


def test_no_multiple_of_a_kmem_cost_below_the_noise():
    # stat: the kernel's kmem cost is 10 of 8000 instructions
    samples = {"stat": {"off": [8000, 8000], "default": [8450, 8450]}}
    r = rows_by(osh_bench.summarize_icount(samples, {"stat": [7990, 7990]}), "stat")
    assert r["default"]["added"] == 450
    assert "x_kmem" not in r["default"], r["default"]
    # and none at all without a nokmem boot
    r = rows_by(osh_bench.summarize_icount(samples, {}), "stat")
    assert "nokmem boot" not in r and r["off"]["kmem_cost"] is None


def test_table_shows_every_row():
    samples = {"fork": {"off": [265000, 266000], "default": [420000, 421000]}}
    rows = osh_bench.summarize_icount(samples, {"fork": [236000, 237000]})
    text = osh_bench.icount_table(rows)
    for needle in ("nokmem boot", "+155,000", "kmem 29,000", "5.34x"):
        assert needle in text, (needle, text)


def test_breakdown_per_op_sums_and_compares():
    # 2 kfree calls of 300 and 1 kmalloc call of 500 per op: 1,100; the
    # probes' floor is taken from the configuration's added
    breakdown = {"designs=v6.1 observe=0": {"open": {"clock_overhead": 30, "hooks": {
        "kfree": {"calls_per_op": 2.0, "instructions_per_call": 300.0},
        "kmalloc": {"calls_per_op": 1.0, "instructions_per_call": 500.0}}}}}
    summary = [{"op": "open", "config": "designs=v6.1 observe=0", "added": 1400},
               {"op": "open", "config": "probes_only=1", "added": 200}]
    rows = osh_bench.summarize_breakdown(breakdown, summary)
    assert [r["hook"] for r in rows] == ["kfree", "kmalloc", "(sum of handlers)"], rows
    assert rows[0]["instructions_per_op"] == 600
    assert rows[2]["instructions_per_op"] == 1100
    assert rows[2]["added_beyond_probes"] == 1200
    text = osh_bench.breakdown_table(rows)
    for needle in ("kfree", "2.00", "1,100", "added - probes_only: 1,200"):
        assert needle in text, (needle, text)
    # without the probes' row nothing is compared
    rows = osh_bench.summarize_breakdown(breakdown, summary[:1])
    assert "added_beyond_probes" not in rows[-1]


def test_icount_configs_load_slab_layouts_beside_a_design():
    for kernel in ("6.1", "6.12", "7.3"):
        configs = osh_bench.icount_configs(kernel)
        alone = [c for c in configs if c == "designs=memcgptr"]
        assert not alone, "%s: memcgptr alone would be refused: %s" % (kernel, configs)
        ref = osh_experiment.DESIGNS[kernel].split(",")[0]
        assert "designs=%s,memcgptr" % ref in configs, configs


def test_breakdown_configs():
    assert osh_bench.breakdown_configs("6.12", None) == [
        "designs=v6.7 observe=0", "default"]
    assert osh_bench.breakdown_configs(None, ["designs=v6.1", "probes_only=1"]) == [
        "designs=v6.1"]


if __name__ == "__main__":
    sys.exit(script_tests.run(globals(), "bench"))
