#!/usr/bin/env python3
"""What `--compare` costs: each workload run with and without it, in turn,
round after round (so a slow spell of a noisy machine hits both alike).
Prints the median (min-max) of the whole process's wall time, the report's
`train` time (with `--compare`, the GPU run while the shadow check takes its
streamed records on another thread) and the process's peak resident memory.
`--compare` also trains the CPU reference once more for its whole-run
comparison, which the wall time includes. Usage:

    cargo build --release
    scripts/bench-compare.py [--rounds 5] [--binary target/release/gpu-c2f]
"""

import argparse
import json
import os
import statistics
import subprocess
import time

WORKLOADS = {
    "seed job": [],
    "--hidden 64,64 --epochs 1000": ["--hidden", "64,64", "--epochs", "1000"],
    "--samples 100000 --batch-size 32 --epochs 10": [
        "--samples", "100000", "--batch-size", "32", "--epochs", "10",
    ],
}


def run(command):
    """Wall ms, the report's train ms, peak RSS in MiB, the report."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout = process.stdout.read()
    process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = (time.perf_counter() - started) * 1e3
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed")
    report = json.loads(stdout)
    return wall, report["timings_ms"]["train"], usage.ru_maxrss / 1024, report


def spread(values):
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--binary", default="target/release/gpu-c2f")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    print(f"{args.rounds} rounds: median (min-max)")
    print("| workload | steps checked | wall ms | with --compare | train ms | with --compare "
          "| peak MiB | with --compare |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, flags in WORKLOADS.items():
        plain = [args.binary, "--json", "--quiet", *flags]
        compared = [*plain, "--compare"]
        run(plain)  # warm Mesa's shader cache
        rows = {"plain": [], "compare": []}
        for _ in range(args.rounds):
            rows["plain"].append(run(plain))
            rows["compare"].append(run(compared))
        check = rows["compare"][-1][3]["shadow_check"]
        assert check["within_tolerance"], check
        # Before the check streamed (101729e), the report said total_steps.
        expected = check.get("steps_expected", check.get("total_steps"))
        steps = f'{check["steps_checked"]} of {expected}'
        cells = [name, steps]
        for column in range(3):
            for kind in ("plain", "compare"):
                cells.append(spread([row[column] for row in rows[kind]]))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
