#!/usr/bin/env python3
"""Start-up cost of the seed job: the whole process, and the report's own
setup (instance, adapter, device), pipeline-creation, upload and training
times.

Runs each command in turn, round after round (so a slow spell of a noisy
machine hits every command alike), and prints the median, min and max of
each. Usage:

    cargo build --release
    scripts/bench-startup.py [--rounds 20] [COMMAND ...]

Each COMMAND is a binary and any flags, as one argument (`"/tmp/old
--backend vulkan"`); the seed job's `--quiet --json` is added. With none,
target/release/gpu-c2f with `--backend all` (the default) and with
`--backend vulkan`.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import time


def run(command):
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = (time.perf_counter() - started) * 1e3
    timings = json.loads(done.stdout)["timings_ms"]
    return wall, timings["setup"], timings["pipelines"], timings["upload"], timings["train"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("commands", nargs="*")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    seed_job = ["--quiet", "--json"]
    if args.commands:
        commands = {c: [*shlex.split(c), *seed_job] for c in args.commands}
    else:
        binary = "target/release/gpu-c2f"
        commands = {
            "--backend all": [binary, *seed_job],
            "--backend vulkan": [binary, *seed_job, "--backend", "vulkan"],
        }
    for command in commands.values():  # warm Mesa's shader cache
        run(command)
    samples = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            samples[name].append(run(command))
    print(f"{args.rounds} rounds, ms: median (min-max)")
    print("| command | whole process | setup | pipelines | upload | train |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rows in samples.items():
        cells = []
        for column in zip(*rows):
            cells.append(
                f"{statistics.median(column):.2f} ({min(column):.2f}-{max(column):.2f})"
            )
        print(f"| `{name}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
