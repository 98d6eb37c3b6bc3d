#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Overhead benchmark, guest side: with the module unloaded and loaded with
each set of parameters, interleaved (the order rotates every repetition, so
drift hits every configuration), either time kmemload's allocate-and-free
phase (--workloads) or count the instructions per operation of opcount's
loops (--ops; the guest runs under -icount shift=0, where a guest
nanosecond is an instruction), and write every sample as JSON.  After each
load every workload runs once untimed (opcount runs its operation once
before its loop), so first-use costs (shadow state for the new cgroup, task
state, cold caches) are not in the samples.

--breakdown PARAMS (with --ops): after the repetitions, load once more
with PARAMS and time_handlers=1 and record, per operation, each hook's
handler calls and their summed guest nanoseconds (instructions).

usage: osh_bench_guest.py --config off --config "designs=v6.1" [--config PARAMS]
                          [--workloads dentry,pipe,... | --ops stat,fork,...]
                          [--breakdown PARAMS ...] [--scale X] --reps N --json PATH
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("OSH_REPO", os.path.dirname(os.path.dirname(HERE)))
# the build for the guest's kernel (scripts/objcg-shadow vm sets it)
MODULE = os.environ.get("OSH_MODULE") or os.path.join(REPO, "module",
                                                      "objcg_shadow.ko")
KMEMLOAD = os.path.join(REPO, "tests", "workloads", "kmemload")
OPCOUNT = os.path.join(REPO, "tests", "workloads", "opcount")
CG = "/sys/fs/cgroup"
BENCH_CG = os.path.join(CG, "osh-bench")

# name -> (objects at --scale 1, kmemload arguments); a run takes a few
# hundred milliseconds under TCG at scale 1
WORKLOADS = {
    "dentry": (3000, ["--dir", "/tmp/osh-bench", "dentry"]),
    "pipe": (1500, ["pipe"]),
    "socket": (1500, ["socket"]),
    "thread": (150, ["thread"]),
}


# operation -> iterations at --scale 1: enough for a spread near 1% (fork
# needs more than 500, seen)
OPS = {"stat": 4000, "access": 4000, "open": 4000, "pipe": 2000,
       "pipe_page": 2000, "socket": 2000, "fork": 1500, "creat_unlink": 2000}


def op_iterations(op, scale):
    return max(1, int(OPS[op] * scale))


def workload_args(name, scale):
    count, args = WORKLOADS[name]
    return ["--count", str(max(1, int(count * scale)))] + args


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def module_loaded():
    return os.path.isdir("/sys/module/objcg_shadow")


def load(config):
    """Unload, then load with module parameters @config unless "off"
    ("default": none)."""
    if module_loaded():
        subprocess.run(["rmmod", "objcg_shadow"], check=True)
    if config == "off":
        return
    params = [] if config == "default" else shlex.split(config)
    p = subprocess.run(["insmod", MODULE] + params,
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError("insmod %s: %s" % (config, p.stderr.strip()))


def phase_times(stdout):
    t = {}
    for line in stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[0] == "PHASE":
            t[f[1]] = float(f[2])
    return t


def time_workload(args):
    """Seconds from kmemload's first allocation to its last free."""
    cmd = [KMEMLOAD, "--quiet", "--phases", "--cpu", "1", "--cgroup",
           BENCH_CG] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    t = phase_times(p.stdout)
    if p.returncode or "alloc-start" not in t or "free-done" not in t:
        raise RuntimeError("kmemload %s failed (%d): %s" % (
            " ".join(args), p.returncode, p.stderr.strip()[-500:]))
    return t["free-done"] - t["alloc-start"]


def count_op(op, scale):
    """Guest nanoseconds, under -icount instructions, per operation."""
    n = op_iterations(op, scale)
    cmd = [OPCOUNT, "--cgroup", BENCH_CG, "--cpu", "0", op, str(n)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    f = p.stdout.split()
    if p.returncode or len(f) != 4 or f[0] != "OPCOUNT":
        raise RuntimeError("opcount %s failed (%d): %s" % (
            op, p.returncode, p.stderr.strip()[-500:]))
    return int(f[3]) / n


def time_workload_warm(workload, scale):
    """Seconds of the second of two runs: the first warms the caches."""
    time_workload(workload_args(workload, scale))
    return time_workload(workload_args(workload, scale))


HOOKS = "/sys/kernel/debug/objcg_shadow/hooks"


def hook_times():
    """name -> (handler calls timed, their ns) from the hooks file; and the
    clock's own cost per timed call."""
    times, overhead = {}, 0
    with open(HOOKS) as f:
        for line in f:
            kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
            if "timed" not in kv:
                raise RuntimeError("hooks shows no handler times: was the "
                                   "module loaded with time_handlers=1?")
            times[kv["name"]] = (int(kv["timed"]), int(kv["handler_ns"]))
            overhead = int(kv["clock_overhead_ns"])
    return times, overhead


def breakdown_op(op, scale):
    """Per hook: handler calls and instructions per operation, the clock's
    cost taken out; only hooks whose handlers ran."""
    n = op_iterations(op, scale)
    before, overhead = hook_times()
    count_op(op, scale)
    after, _ = hook_times()
    per_hook = {}
    for name, (calls, ns) in after.items():
        calls -= before[name][0]
        ns -= before[name][1]
        if calls > 0:
            per_hook[name] = {"calls_per_op": calls / n,
                              "instructions_per_call":
                                  max(ns / calls - overhead, 0.0)}
    return {"clock_overhead": overhead, "hooks": per_hook}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", action="append", required=True,
                    help="off, or module parameters; repeat")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--ops", help="count instructions of these operations "
                    "instead of timing workloads")
    ap.add_argument("--breakdown", action="append", default=[],
                    metavar="PARAMS", help="with --ops: per-hook handler "
                    "instructions under these parameters; repeat")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    configs = args.config
    if args.ops:
        workloads, known, sample = args.ops.split(","), OPS, count_op
    else:
        workloads, known = args.workloads.split(","), WORKLOADS
        sample = time_workload_warm
    unknown = [w for w in workloads if w not in known]
    if unknown:
        ap.error("unknown workload or operation %s" % ", ".join(unknown))
    if args.breakdown and not args.ops:
        ap.error("--breakdown needs --ops")
    write(os.path.join(CG, "cgroup.subtree_control"), "+memory")
    os.makedirs(BENCH_CG, exist_ok=True)
    samples = {w: {c: [] for c in configs} for w in workloads}
    total = args.reps * len(configs)
    done = 0
    t0 = time.monotonic()
    try:
        for rep in range(args.reps):
            order = configs[rep % len(configs):] + configs[:rep % len(configs)]
            for config in order:
                load(config)
                for w in workloads:
                    samples[w][config].append(sample(w, args.scale))
                done += 1
                print("[guest] rep %d/%d, %d/%d runs (%.0fs): %s" % (
                    rep + 1, args.reps, done, total,
                    time.monotonic() - t0, config), flush=True)
        breakdown = {}
        for config in args.breakdown:
            load(config + " time_handlers=1")
            breakdown[config] = {w: breakdown_op(w, args.scale)
                                 for w in workloads}
            print("[guest] per-hook breakdown (%.0fs): %s" % (
                time.monotonic() - t0, config), flush=True)
    finally:
        load("off")
        os.rmdir(BENCH_CG)
    with open(args.json, "w") as f:
        json.dump({"reps": args.reps, "configs": configs,
                   "scale": args.scale,
                   "metric": "instructions" if args.ops else "seconds",
                   "workloads": {w: (["opcount", w, str(op_iterations(w, args.scale))]
                                     if args.ops else workload_args(w, args.scale))
                                 for w in workloads},
                   "samples": samples, "breakdown": breakdown}, f, indent=1)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        print("osh_bench_guest: %s" % e, file=sys.stderr)
        sys.exit(1)
