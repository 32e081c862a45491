#!/usr/bin/env python3
"""The curved example of BENCHMARKS.md: y = sin x on [-pi, pi], 100 000 samples,
a Dense 1-16-16-1 network with relu hidden layers, mean squared error,
Adam(0.01), in gpu-c2f on every schedule and in PyTorch and JAX on the CPU,
one after the other in one session.

Two jobs, each timed per epoch (the median of the epochs after the first):
  - Keras's default batch size, 32 (3125 Adam steps an epoch), shuffled;
  - one full batch an epoch.

gpu-c2f runs `target/release/gpu-c2f` (build it first) with --json and
reports `timings_ms.train` over the epochs (one process per schedule and
job; that time includes recording and submitting, not pipeline creation).
PyTorch runs a Python loop over the batches (torch.optim.Adam(eps=1e-7));
JAX a jitted Keras Adam step, the epoch's batches in one lax.scan call.

Usage: bench-curve.py [--quick] [--json FILE]
       (run with a python that has torch and jax; a framework that does not
       import is reported as skipped)
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

N = 100_000
HIDDEN = [16, 16]
LR, BETA_1, BETA_2, EPSILON = 0.01, 0.9, 0.999, 1e-7
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def curve(n):
    xs = [-math.pi + 2 * math.pi * k / (n - 1) for k in range(n)]
    return xs, [math.sin(x) for x in xs]


def write_csv(path, n):
    xs, ys = curve(n)
    with open(path, "w") as out:
        out.write("x,y\n")
        for x, y in zip(xs, ys):
            out.write(f"{x:.9g},{y:.9g}\n")


def gpu_c2f(csv, schedule, batch, epochs):
    binary = os.path.join(ROOT, "target", "release", "gpu-c2f")
    cmd = [binary, "--data", csv, "--x", "x", "--y", "y", "--hidden", "16:relu,16:relu",
           "--learning-rate", str(LR), "--epochs", str(epochs), "--batch-size", batch,
           "--schedule", schedule, "--json", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        return {"error": (errors or lines or [f"exit {done.returncode}"])[0]}
    report = json.loads(done.stdout)
    t = report["timings_ms"]
    return {
        "schedule": report.get("schedule"),
        "ms_per_epoch": t["train"] / epochs,
        "gpu_ms_per_epoch": (t.get("gpu_train") or 0) / epochs,
        "pipelines_ms": t.get("pipelines"),
        "final_loss": report["final_loss"],
        "device": report["device"]["name"] if isinstance(report["device"], dict) else report["device"],
    }


def torch_run(batch, epochs):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(42)
    xs, ys = curve(N)
    x = torch.tensor(xs, dtype=torch.float32).reshape(-1, 1)
    y = torch.tensor(ys, dtype=torch.float32).reshape(-1, 1)
    widths = [1, *HIDDEN, 1]
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layer = torch.nn.Linear(a, b)
        torch.nn.init.xavier_uniform_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
        layers.append(layer)
        if i + 2 < len(widths):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=(BETA_1, BETA_2), eps=EPSILON)
    loss_fn = torch.nn.MSELoss()
    size = N if batch == "all" else int(batch)
    times, last = [], float("nan")
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(N)
        total = 0.0
        for first in range(0, N, size):
            index = order[first:first + size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            total += float(loss) * len(index)
        last = total / N
        times.append(time.perf_counter() - started)
    return {"version": torch.__version__, "epoch_s": times, "final_loss": last}


def jax_run(batch, epochs):
    import jax
    import jax.numpy as jnp

    xs, ys = curve(N)
    x = jnp.asarray(xs, jnp.float32).reshape(-1, 1)
    y = jnp.asarray(ys, jnp.float32).reshape(-1, 1)
    size = N if batch == "all" else int(batch)
    steps = N // size  # whole batches; the remainder joins no batch
    key = jax.random.PRNGKey(42)
    widths = [1, *HIDDEN, 1]
    params = []
    for a, b in zip(widths, widths[1:]):
        key, sub = jax.random.split(key)
        limit = (6.0 / (a + b)) ** 0.5
        params.append((jax.random.uniform(sub, (a, b), jnp.float32, -limit, limit), jnp.zeros(b, jnp.float32)))

    def forward(params, x):
        for i, (w, b) in enumerate(params):
            x = x @ w + b
            if i + 1 < len(params):
                x = jax.nn.relu(x)
        return x

    def loss_fn(params, x, y):
        return jnp.mean((forward(params, x) - y) ** 2)

    def step(carry, index):
        params, m, v, t = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, x[index], y[index])
        t = t + 1.0
        alpha = LR * jnp.sqrt(1.0 - BETA_2**t) / (1.0 - BETA_1**t)
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1.0 - BETA_1), m, grads)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1.0 - BETA_2), v, grads)
        params = jax.tree_util.tree_map(lambda p, m, v: p - m * alpha / (jnp.sqrt(v) + EPSILON), params, m, v)
        return (params, m, v, t), loss

    @jax.jit
    def epoch(carry, key):
        order = jax.random.permutation(key, N)[: steps * size].reshape(steps, size)
        carry, losses = jax.lax.scan(step, carry, order)
        return carry, jnp.mean(losses)

    zeros = lambda p: jax.tree_util.tree_map(jnp.zeros_like, p)
    carry = (params, zeros(params), zeros(params), jnp.float32(0.0))
    times, last = [], float("nan")
    for e in range(epochs):
        key, sub = jax.random.split(key)
        started = time.perf_counter()
        carry, loss = epoch(carry, sub)
        loss.block_until_ready()
        times.append(time.perf_counter() - started)
        last = float(loss)
    return {"version": jax.__version__, "epoch_s": times, "final_loss": last}


def child(args):
    run = torch_run if args.framework == "torch" else jax_run
    print("RESULT " + json.dumps(run(args.batch, args.epochs)), flush=True)


def spawn(framework, batch, epochs):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--framework", framework,
           "--batch", batch, "--epochs", str(epochs)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
    return {"error": " / ".join(tail) or f"exit {done.returncode}"}


def median_ms(seconds):
    rest = seconds[1:] or seconds
    return statistics.median(rest) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", help=argparse.SUPPRESS)
    parser.add_argument("--batch", default="32", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    jobs = {"32": 2 if args.quick else 4, "all": 10 if args.quick else 40}
    results = {"loadavg_start": open("/proc/loadavg").read().split()[:3], "rows": []}
    print(f"# Curved example: 1-16relu-16relu-1 on y = sin x, N = {N:,}")
    print()
    print(f"- nproc {os.cpu_count()}, load average at start {' '.join(results['loadavg_start'])}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "curve.csv")
        write_csv(csv, N)
        for batch, epochs in jobs.items():
            for schedule in ("fused", "samples", "dispatch", "auto"):
                r = gpu_c2f(csv, schedule, batch, epochs)
                results["rows"].append({"who": f"gpu-c2f {schedule}", "batch": batch, **r})
                if "error" in r:
                    rows.append(f"| gpu-c2f `{schedule}` | {batch} | - | {r['error'][:80]} |")
                else:
                    rows.append(
                        f"| gpu-c2f `{schedule}` ({r['schedule']}, {r['device']}) | {batch} | "
                        f"{r['ms_per_epoch']:.1f} (mean) | final loss {r['final_loss']:.3g} after {epochs} epochs |"
                    )
            for framework in ("torch", "jax"):
                r = spawn(framework, batch, epochs)
                results["rows"].append({"who": framework, "batch": batch, **r})
                if "error" in r:
                    rows.append(f"| {framework} | {batch} | - | skipped: {r['error'][:80]} |")
                else:
                    rows.append(
                        f"| {framework} {r['version']} | {batch} | {median_ms(r['epoch_s']):.1f} (median after the 1st) | "
                        f"final loss {r['final_loss']:.3g} after {epochs} epochs |"
                    )
    print(f"- load average at end {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print()
    print("| who | batch | ms per epoch | note |")
    print("| --- | --- | ---: | --- |")
    print("\n".join(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
