#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The slab model's report (scripts/lib/osh_slabmodel.py): parsing the
debugfs text, window deltas against the kernel's /sys/kernel/slab counts,
which caches count as dominated by the workload, and the table's totals.
The debugfs text is written here by hand in the module's format.
Prints PASS/FAIL lines."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "scripts", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import script_tests  # noqa: E402
import osh_slabmodel  # noqa: E402
import osh_state  # noqa: E402


def model_text(dentry, sock, swaps, pinned):
    """dentry, sock: (shared_slabs, memcgptr_slabs, objects)"""
    def layout(name, slabs, order, objects, size):
        return (" %s_slabs=%d %s_pages=%d %s_objects=%d %s_obj_bytes=%d" %
                (name, slabs, name, slabs << order, name, objects, name, objects * size))
    lines = ["enabled=1 log_records=8192 replayed=10 dropped=0 kfence=0 cache_names=1"]
    tot = {}
    for i, name in enumerate(osh_slabmodel.LAYOUTS):
        slabs = dentry[i] + sock[i]
        pages = dentry[i] + (sock[i] << 1)
        objs = dentry[2] + sock[2]
        tot[name] = (slabs, pages, objs, dentry[2] * 192 + sock[2] * 1024)
        lines.append("total layout=%s model_slabs=%d model_pages=%d model_objects=%d "
                     "model_obj_bytes=%d" % ((name,) + tot[name]))
    lines.append("memcgptr ptr_swaps=%d pages_moved=%d pinned_memcgs=%d pinned_pages=%d "
                 "pools=3 memcgs=3" % (swaps, swaps, pinned, pinned))
    lines.append("events allocs=1 frees=0 offlines=0 untracked_frees=0 replaced=0 "
                 "alloc_failed=0 bad_geometry=0 after_offline=0 objects=1")
    lines.append("cache name=dentry key=ffff1 size=192 objs_per_slab=21 order=0 "
                 "min_partial=5 memcg_pools=2" + layout("shared", dentry[0], 0, dentry[2], 192)
                 + layout("memcgptr", dentry[1], 0, dentry[2], 192))
    lines.append("cache name=sock\\040x key=ffff2 size=1024 objs_per_slab=8 order=1 "
                 "min_partial=5 memcg_pools=2" + layout("shared", sock[0], 1, sock[2], 1024)
                 + layout("memcgptr", sock[1], 1, sock[2], 1024))
    return "\n".join(lines) + "\n"


def snap(text, kernel):
    return {"model": osh_slabmodel.parse(osh_state.parse_records(text)), "kernel": kernel}


def window():
    before = snap(model_text((0, 0, 0), (0, 0, 0), 0, 0),
                  {"dentry": {"slabs": 100, "objects": 2000},
                   "sock x": {"slabs": 50, "objects": 400}})
    # dentry: the workload made 1000 of the kernel's 1050 new objects; the
    # sockets are 10 of 300 (someone else allocated there)
    after = snap(model_text((50, 70, 1000), (3, 6, 10), 4, 2),
                 {"dentry": {"slabs": 152, "objects": 3050},
                  "sock x": {"slabs": 90, "objects": 700}})
    return osh_slabmodel.window(before, after)


def test_parse_unescapes_names_and_reads_layouts():
    m = osh_slabmodel.parse(osh_state.parse_records(
        model_text((5, 7, 90), (1, 2, 3), 1, 1)))
    assert m["enabled"] and set(m["caches"]) == {"dentry", "sock x"}, m["caches"]
    assert m["caches"]["sock x"]["memcgptr_pages"] == 4, m["caches"]["sock x"]
    assert m["total"]["memcgptr"]["model_slabs"] == 9, m["total"]


def test_window_compares_dominated_caches_only():
    w = window()
    rows = {r["cache"]: r for r in w["caches"]}
    d, s = rows["dentry"], rows["sock x"]
    assert d["dominated"] and d["kernel_slabs"] == 52, d
    assert abs(d["error"] - (50 - 52) / 52) < 1e-9, d
    assert not s["dominated"] and "fill under 80%" in s["why_not"], s
    # memcgptr pages: 70 dentry pages + 6 order-1 sock slabs
    assert w["totals"]["memcgptr"]["pages"] == 70 + 12, w["totals"]
    assert w["totals"]["shared"]["pages"] == 50 + 6, w["totals"]
    assert w["ptr_swaps"] == 4 and w["pinned_memcgs"] == 2, w


def test_table_states_savings_and_names_the_others():
    text = osh_slabmodel.table(window())
    # shared 56 pages against memcgptr 82: 32% fewer
    assert "shared needs 32% fewer" in text, text
    assert "sock x *" in text and "* not compared with the kernel: sock x:" in text, text
    assert "-3.8%" in text, text        # dentry: 50 against 52
    assert "2 dead memcgs pinned" in text, text


def test_small_changes_are_not_compared():
    before = snap(model_text((0, 0, 0), (0, 0, 0), 0, 0),
                  {"dentry": {"slabs": 100, "objects": 2000}})
    after = snap(model_text((3, 5, 60), (0, 0, 0), 0, 0),
                 {"dentry": {"slabs": 103, "objects": 2060}})
    r = {r["cache"]: r for r in osh_slabmodel.window(before, after)["caches"]}
    assert not r["dentry"]["dominated"] and "under 20" in r["dentry"]["why_not"], r
    assert r["sock x"]["why_not"].startswith("no /sys/kernel/slab"), r


def test_mixed_caches_are_not_compared():
    before = snap(model_text((0, 0, 0), (0, 0, 0), 0, 0),
                  {"dentry": {"slabs": 100, "objects": 2000}})
    kernel = {"dentry": {"slabs": 148, "objects": 3008}}
    text = model_text((50, 70, 1000), (3, 6, 10), 4, 2)
    r = {r["cache"]: r for r in osh_slabmodel.window(before, snap(text, kernel))["caches"]}
    assert r["dentry"]["dominated"], r["dentry"]
    text = text.replace("min_partial=5 memcg_pools=2", "min_partial=5 whole=0 memcg_pools=2", 1)
    r = {r["cache"]: r for r in osh_slabmodel.window(before, snap(text, kernel))["caches"]}
    assert not r["dentry"]["dominated"] and "not SLAB_ACCOUNT" in r["dentry"]["why_not"], r


def test_designs_text_gives_each_design_its_layout():
    m = osh_slabmodel.parse(osh_state.parse_records(
        model_text((10, 30, 200), (2, 4, 12), 6, 3)))
    lines = osh_slabmodel.designs_text(m, ["v6.1", "v6.7"]).splitlines()
    rows = {ln.split()[0]: ln for ln in lines[2:]}
    assert set(rows) == {"v6.1", "v6.7", "memcgptr"}, lines
    # shared: 10 dentry pages + 2 order-1 sock slabs; memcgptr 30 + 8
    assert " 14 " in rows["v6.1"] and " 38 " in rows["memcgptr"], lines
    assert "3 (3 pages)" in rows["memcgptr"] and "6 pointer swaps" in rows["memcgptr"], lines


if __name__ == "__main__":
    sys.exit(script_tests.run(globals(), "slabmodel"))
