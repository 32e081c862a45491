#!/usr/bin/env python3
"""Today's build against 708d9ec, the last commit before activations,
losses, metrics, validation and early stopping came in (issue 19's table),
and against the fused floor.

Builds 708d9ec's release binary from git in a worktree in the system's
temporary folder (outside this workspace; once, its build under
target/baseline/), then runs each workload with both binaries in
turn, round after round, so a slow spell of this noisy machine hits both
alike. Prints the median (min-max) of each figure and the ratio of the
medians, today over 708d9ec. Usage:

    cargo build --release
    scripts/bench-baseline.py [--rounds 11] [--long-rounds 3] [--floor] [--only TEXT]

Figures: each run's own `timings_ms` from `--json` (train: the epochs on
the device; pipelines: shader compilation), and the whole process's wall
time. `--floor` also runs ../shared/tools/limit-probe (the seed job's fused
floor, a one-workgroup kernel written for exactly 1-3-3-1), when present.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

BASELINE = "708d9ec"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TODAY = os.path.join(ROOT, "target/release/gpu-c2f")
SINE = os.path.join(ROOT, "examples/data/sine.csv")

# (name, flags for today, flags for 708d9ec, long): the workloads.
# The nonlinear job's baseline is the linear job of the same widths, batch
# and sample count (708d9ec has no activations).
WORKLOADS = [
    ("seed job", [], [], False),
    ("seed job, --cpu-reference", ["--cpu-reference"], ["--cpu-reference"], False),
    (
        "10^6 x 3,3, full batch, 20 epochs (samples)",
        ["--samples", "1000000", "--hidden", "3,3", "--batch-size", "all", "--epochs", "20",
         "--schedule", "samples"],
        None,
        False,
    ),
    (
        "10^6, batch 32, 1 epoch (fused)",
        ["--samples", "1000000", "--batch-size", "32", "--epochs", "1", "--schedule", "fused"],
        None,
        True,
    ),
    (
        "10^6 x 64,64, full batch, 2 epochs (dispatch)",
        ["--samples", "1000000", "--hidden", "64,64", "--batch-size", "all", "--epochs", "2",
         "--schedule", "dispatch"],
        None,
        True,
    ),
    (
        "sine.csv 16:relu,16:relu batch 32 (708d9ec: linear 16,16 on 201 samples)",
        ["--data", SINE, "--x", "x", "--y", "y", "--hidden", "16:relu,16:relu",
         "--batch-size", "32", "--epochs", "200"],
        ["--samples", "201", "--hidden", "16,16", "--batch-size", "32", "--epochs", "200"],
        False,
    ),
]


def build_baseline():
    source = os.path.join(tempfile.gettempdir(), f"gpu-c2f-{BASELINE}")
    target = os.path.join(ROOT, "target/baseline")
    binary = os.path.join(target, "release/gpu-c2f")
    if not os.path.exists(source):
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", source, BASELINE],
                       check=True)
    if not os.path.exists(binary):
        env = dict(os.environ, CARGO_TARGET_DIR=target)
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "gpu-c2f"],
                       cwd=source, env=env, check=True)
    return binary


def run(binary, flags):
    command = [binary, *flags, "--quiet", "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = (time.perf_counter() - started) * 1e3
    timings = json.loads(done.stdout)["timings_ms"]
    return {"train": timings["train"], "pipelines": timings.get("pipelines") or 0.0,
            "process": wall}


def summary(values):
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def floor():
    probe = os.path.join(ROOT, "../shared/tools/limit-probe")
    if not os.path.isdir(probe):
        return None
    target = "/tmp/limit-probe-target"
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=probe, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=target))
    binaries = [f for f in os.listdir(os.path.join(target, "release"))
                if os.access(os.path.join(target, "release", f), os.X_OK)
                and os.path.isfile(os.path.join(target, "release", f))]
    done = subprocess.run([os.path.join(target, "release", binaries[0]), "--quick",
                           "--sections=gh"], capture_output=True, text=True, check=True)
    return done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--long-rounds", type=int, default=3)
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--only", help="run only the workloads whose name contains this")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    baseline = build_baseline()
    rows = []
    for name, today_flags, old_flags, long in WORKLOADS:
        if args.only and args.only not in name:
            continue
        old_flags = today_flags if old_flags is None else old_flags
        binaries = {"today": (TODAY, today_flags), BASELINE: (baseline, old_flags)}
        for binary, flags in binaries.values():  # warm Mesa's shader cache
            run(binary, flags)
        samples = {key: [] for key in binaries}
        for _ in range(args.long_rounds if long else args.rounds):
            for key, (binary, flags) in binaries.items():
                samples[key].append(run(binary, flags))
        for figure in ["train", "pipelines", "process"]:
            today = [s[figure] for s in samples["today"]]
            old = [s[figure] for s in samples[BASELINE]]
            if statistics.median(old) == 0:  # the CPU reference compiles nothing
                continue
            ratio = statistics.median(today) / statistics.median(old)
            rows.append(f"| {name} | {figure} | {summary(today)} | {summary(old)} | {ratio:.2f}x |")
            print(rows[-1], flush=True)
    print(f"\nms, median (min-max) of {args.rounds} rounds ({args.long_rounds} for the long ones)")
    print(f"| workload | figure | today | {BASELINE} | ratio |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    if args.floor:
        print(floor())


if __name__ == "__main__":
    main()
