#!/usr/bin/env python3
"""The gpu-c2f benchmark jobs in PyTorch and JAX on the CPU, for BENCHMARKS.md.

Jobs (each in its own child process, so thread settings apply before import
and the whole-process time of the seed job can be measured from outside):

- seed job: Dense 1-3-3-1 (no activation), MSE, Adam(lr 0.1, eps 1e-7),
  1000 full-batch epochs on the tutorial's 7 Celsius/Fahrenheit pairs:
  training time only (first run in the process and the warm median), and the
  whole process (interpreter start, import, init, train once, exit);
- per-epoch time of full-batch training at N = 1 000 000, hidden 3,3 and
  64,64, with 2 threads and with 1 (torch.set_num_threads + taskset -c 0).

Adam: JAX uses Keras's formula written out (epsilon on sqrt of the raw v, the
bias corrections folded into the step size), as gpu-c2f does. PyTorch uses
torch.optim.Adam(lr=0.1, eps=1e-7), default and fused=True, which puts
epsilon on sqrt(v_hat): the same as Keras with epsilon scaled by
sqrt(1 - beta_2^t); the difference is below the noise for these runs and
costs nothing in time. Initial weights are glorot_uniform from each
framework's own seeded stream, so the 100 C predictions differ a little.

Usage: bench-frameworks.py [--quick] [--json FILE] [--only torch|jax]
Needs torch and/or jax (CPU) importable by the python running it; a framework
that cannot be imported is reported as skipped with the import error.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SEED_C = [-40.0, -10.0, 0.0, 8.0, 15.0, 22.0, 38.0]
SEED_F = [-40.0, 14.0, 32.0, 46.0, 59.0, 72.0, 100.0]
LR, BETA_1, BETA_2, EPSILON = 0.1, 0.9, 0.999, 1e-7
SEED_EPOCHS = 1000
BIG_N = 1_000_000


def formula_data(n, np):
    rng = np.random.default_rng(42)
    c = rng.uniform(-50.0, 150.0, size=(n, 1))
    return c.astype(np.float32), (c * 1.8 + 32.0).astype(np.float32)


# --------------------------------------------------------------------- torch


def torch_setup(threads):
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(42)
    return torch


def torch_model(torch, hidden):
    widths = [1, *hidden, 1]
    layers = []
    for a, b in zip(widths, widths[1:]):
        layer = torch.nn.Linear(a, b)
        torch.nn.init.xavier_uniform_(layer.weight)  # glorot_uniform
        torch.nn.init.zeros_(layer.bias)
        layers.append(layer)
    return torch.nn.Sequential(*layers)


def torch_train(torch, x, y, hidden, epochs, per_epoch=False, fused=False):
    model = torch_model(torch, hidden)
    # fused=True: one kernel for every parameter's update (CPU support since
    # torch 2.4); the default on CPU is a Python loop over the parameters.
    extra = {"fused": True} if fused else {}
    optimizer = torch.optim.Adam(
        model.parameters(), lr=LR, betas=(BETA_1, BETA_2), eps=EPSILON, **extra
    )
    loss_fn = torch.nn.MSELoss()
    history = []
    times = []
    started = time.perf_counter()
    for _ in range(epochs):
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        history.append(loss.detach())
        if per_epoch:
            times.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    with torch.no_grad():
        prediction = float(model(torch.tensor([[100.0]]))[0, 0])
    return elapsed, times, float(history[-1]), prediction


def torch_job(job, threads, hidden, reps, variant=None):
    torch = torch_setup(threads)
    info = {"version": torch.__version__, "threads": torch.get_num_threads()}
    if job == "seed":
        x = torch.tensor(SEED_C).reshape(-1, 1)
        y = torch.tensor(SEED_F).reshape(-1, 1)
        for name in ("default", "fused"):
            if variant and name != variant:
                continue
            runs = [
                torch_train(torch, x, y, [3, 3], SEED_EPOCHS, fused=name == "fused")
                for _ in range(reps)
            ]
            info[name] = {
                "train_s": [r[0] for r in runs],
                "final_loss": runs[-1][2],
                "prediction": runs[-1][3],
            }
    else:
        import numpy as np

        c, f = formula_data(BIG_N, np)
        x, y = torch.from_numpy(c), torch.from_numpy(f)
        _, times, loss, _ = torch_train(torch, x, y, hidden, reps, per_epoch=True)
        info.update(epoch_s=times[1:], first_epoch_s=times[0], final_loss=loss)
    return info


# ----------------------------------------------------------------------- jax


def jax_parts(hidden):
    import jax
    import jax.numpy as jnp

    def init(key):
        widths = [1, *hidden, 1]
        params = []
        for a, b in zip(widths, widths[1:]):
            key, sub = jax.random.split(key)
            limit = (6.0 / (a + b)) ** 0.5
            params.append(
                (jax.random.uniform(sub, (a, b), jnp.float32, -limit, limit), jnp.zeros(b, jnp.float32))
            )
        return params

    def forward(params, x):
        for w, b in params:
            x = x @ w + b
        return x

    def loss_fn(params, x, y):
        return jnp.mean((y - forward(params, x)) ** 2)

    def step(params, m, v, t, x, y):
        # Keras's Adam: alpha = lr sqrt(1 - b2^t) / (1 - b1^t),
        # m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2), w -= m alpha / (sqrt(v) + eps).
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        t = t + 1.0
        alpha = LR * jnp.sqrt(1.0 - BETA_2**t) / (1.0 - BETA_1**t)
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1.0 - BETA_1), m, grads)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1.0 - BETA_2), v, grads)
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - m * alpha / (jnp.sqrt(v) + EPSILON), params, m, v
        )
        return params, m, v, t, loss

    return jax, jnp, init, forward, step


def jax_job(job, hidden, reps, variant=None):
    jax, jnp, init, forward, step = jax_parts(hidden)
    info = {"version": jax.__version__, "devices": str(jax.devices())}
    zeros = lambda p: jax.tree_util.tree_map(jnp.zeros_like, p)

    if job == "seed":
        x = jnp.array(SEED_C).reshape(-1, 1)
        y = jnp.array(SEED_F).reshape(-1, 1)
        jit_step = jax.jit(step)

        def python_loop():
            params = init(jax.random.PRNGKey(42))
            m, v, t = zeros(params), zeros(params), jnp.float32(0.0)
            losses = []
            for _ in range(SEED_EPOCHS):
                params, m, v, t, loss = jit_step(params, m, v, t, x, y)
                losses.append(loss)
            jax.block_until_ready(params)
            return params, losses[-1]

        @jax.jit
        def scanned(params):
            def body(carry, _):
                params, m, v, t = carry
                params, m, v, t, loss = step(params, m, v, t, x, y)
                return (params, m, v, t), loss

            carry = (params, zeros(params), zeros(params), jnp.float32(0.0))
            (params, _, _, _), losses = jax.lax.scan(body, carry, None, length=SEED_EPOCHS)
            return params, losses

        def scan_run():
            params, losses = scanned(init(jax.random.PRNGKey(42)))
            jax.block_until_ready(params)
            return params, losses[-1]

        for name, run in (("loop", python_loop), ("scan", scan_run)):
            if variant and name != variant:
                continue
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                params, loss = run()
                times.append(time.perf_counter() - t)
            info[name] = {
                "train_s": times,
                "final_loss": float(loss),
                "prediction": float(forward(params, jnp.array([[100.0]]))[0, 0]),
            }
    else:
        import numpy as np

        c, f = formula_data(BIG_N, np)
        x, y = jnp.asarray(c), jnp.asarray(f)
        jit_step = jax.jit(step, donate_argnums=(0, 1, 2))
        params = init(jax.random.PRNGKey(42))
        m, v, t = zeros(params), zeros(params), jnp.float32(0.0)
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            params, m, v, t, loss = jit_step(params, m, v, t, x, y)
            jax.block_until_ready(loss)
            times.append(time.perf_counter() - started)
        info.update(epoch_s=times[1:], first_epoch_s=times[0], final_loss=float(loss))
    return info


# -------------------------------------------------------------------- parent


def child_main(args):
    hidden = [int(w) for w in args.hidden.split(",")]
    if args.framework == "torch":
        info = torch_job(args.job, args.threads, hidden, args.reps, args.variant)
    else:
        info = jax_job(args.job, hidden, args.reps, args.variant)
    print("RESULT " + json.dumps(info), flush=True)


def spawn(framework, job, threads, hidden="3,3", reps=1, variant=None):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--framework",
        framework,
        "--job",
        job,
        "--threads",
        str(threads),
        "--hidden",
        hidden,
        "--reps",
        str(reps),
    ]
    if variant:
        cmd += ["--variant", variant]
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads == 1:
        cmd = ["taskset", "-c", "0", *cmd]
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            info = json.loads(line[len("RESULT "):])
            info["process_s"] = wall
            return info
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"{framework} {job} failed (exit {done.returncode}): {' / '.join(tail)}")


def ms(seconds):
    return seconds * 1e3


def fmt(values_s):
    if not values_s:
        return "-"
    v = [ms(s) for s in values_s]
    med = statistics.median(v)
    if len(v) == 1:
        return f"{med:.1f}"
    return f"{med:.1f} ({min(v):.1f}-{max(v):.1f})"


def probe(framework):
    """None when the framework imports, else why not."""
    code = "import torch" if framework == "torch" else "import jax, jax.numpy as j; j.zeros(1).block_until_ready()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1]


def parent_main(args):
    quick = args.quick
    seed_reps = 3 if quick else 7
    process_reps = 2 if quick else 5
    epoch_reps = 3 if quick else 6  # the first epoch is reported apart
    frameworks = [args.only] if args.only else ["torch", "jax"]
    results = {"loadavg_start": open("/proc/loadavg").read().split()[:3]}
    seed_rows, epoch_rows = [], []
    print("# PyTorch / JAX on the CPU" + (" (quick)" if quick else ""))
    print()
    print(f"- python {sys.version.split()[0]}, nproc {os.cpu_count()}, load average at start {' '.join(results['loadavg_start'])}")
    for framework in frameworks:
        why = probe(framework)
        if why:
            print(f"- {framework}: skipped, import fails: {why}")
            results[framework] = {"skipped": why}
            continue
        for threads in (2, 1):
            seed = spawn(framework, "seed", threads, reps=seed_reps)
            results[f"{framework}-seed-{threads}"] = seed
            version = seed["version"]
            if framework == "torch":
                variants = [
                    ("Adam (default), Python loop", seed["default"], "default"),
                    ("Adam(fused=True), Python loop", seed["fused"], "fused"),
                ]
            else:
                variants = [
                    ("jit step, Python loop", seed["loop"], "loop"),
                    ("lax.scan, 1 jit call", seed["scan"], "scan"),
                ]
            for label, run, variant in variants:
                # Whole process: start, import, init, compile, train once, exit.
                processes = [
                    spawn(framework, "seed", threads, reps=1, variant=variant)["process_s"]
                    for _ in range(process_reps)
                ]
                results[f"{framework}-seed-{threads}-process-{variant}"] = processes
                seed_rows.append(
                    f"| {framework} {version} {label} | {threads} | {ms(run['train_s'][0]):.1f} | "
                    f"{fmt(run['train_s'][1:])} | {fmt(processes)} | {run['prediction']:.3f} |"
                )
            for hidden in ("3,3", "64,64"):
                if quick and hidden == "64,64" and threads == 1:
                    continue
                info = spawn(framework, "epoch", threads, hidden=hidden, reps=epoch_reps)
                results[f"{framework}-epoch-{hidden}-{threads}"] = info
                epoch_rows.append(
                    f"| {framework} {version} | {hidden} | {threads} | {fmt(info['epoch_s'])} | "
                    f"{ms(info['first_epoch_s']):.1f} | {len(info['epoch_s'])} |"
                )
    print(f"- load average at end {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print()
    print("## Seed job: 1-3-3-1, 7 samples, 1000 full-batch epochs (ms)")
    print()
    print("| framework, how | threads | train, first in process | train, warm median (min-max) | whole process median (min-max) | 100 C -> F |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(seed_rows))
    print()
    print(f"## Per-epoch, full batch, N = {BIG_N:,} (ms per epoch)")
    print()
    print("| framework | hidden | threads | ms/epoch median (min-max) | first epoch | epochs timed |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    print("\n".join(epoch_rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--only", choices=["torch", "jax"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--framework", choices=["torch", "jax"], help=argparse.SUPPRESS)
    parser.add_argument("--job", choices=["seed", "epoch"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--hidden", default="3,3", help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=["loop", "scan", "default", "fused"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
