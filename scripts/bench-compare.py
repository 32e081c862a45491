#!/usr/bin/env python3
"""What `--compare` costs: each workload run with and without it, by each
binary given, in turn, round after round (so a slow spell of a noisy
machine hits every row alike).
Prints the median (min-max) of the whole process's wall time, the report's
`train` time (with `--compare`, the GPU run while the shadow check takes its
streamed records on another thread) and the process's peak resident memory.
`--compare` also trains the CPU reference once more for its whole-run
comparison, which the wall time includes. Usage:

    cargo build --release
    scripts/bench-compare.py [--rounds 5] [--binary target/release/gpu-c2f ...]
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
    parser.add_argument("--binary", action="append", help="default: target/release/gpu-c2f")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    binaries = args.binary or ["target/release/gpu-c2f"]
    print(f"{args.rounds} rounds: median (min-max)")
    print("| workload | binary | steps checked | wall ms | with --compare | train ms "
          "| with --compare | peak MiB | with --compare |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, flags in WORKLOADS.items():
        commands = {}
        for binary in binaries:
            plain = [binary, "--json", "--quiet", *flags]
            commands[binary] = {"plain": plain, "compare": [*plain, "--compare"]}
            run(plain)  # warm Mesa's shader cache
        rows = {binary: {"plain": [], "compare": []} for binary in binaries}
        for _ in range(args.rounds):
            for binary, kinds in commands.items():
                for kind, command in kinds.items():
                    rows[binary][kind].append(run(command))
        for binary in binaries:
            check = rows[binary]["compare"][-1][3]["shadow_check"]
            assert check["within_tolerance"], check
            # Before the check streamed (101729e), the report said total_steps.
            expected = check.get("steps_expected", check.get("total_steps"))
            cells = [name, f"`{binary}`", f'{check["steps_checked"]} of {expected}']
            for column in range(3):
                for kind in ("plain", "compare"):
                    cells.append(spread([row[column] for row in rows[binary][kind]]))
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
