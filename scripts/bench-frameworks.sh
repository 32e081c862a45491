#!/usr/bin/env bash
# Runs the numbers behind BENCHMARKS.md, one after the other in one session.
#
#   scripts/bench-frameworks.sh            PyTorch and JAX on the CPU only
#   scripts/bench-frameworks.sh --all      also `cargo bench --bench train`, the
#                                          end-to-end runs of target/release/gpu-c2f
#                                          and scripts/bench-curve.py
#   add --quick for a smoke run of whichever parts run.
#
# PyTorch and JAX go into a virtual environment outside the repository,
# ${BENCH_VENV:-/tmp/gpu-c2f-bench-venv}, from PyPI's default index. PyPI's
# Linux x86-64 torch wheel is the CUDA build: it pulls about 5 GB of NVIDIA
# libraries it will not use here, and does not import without them.
# Logs go to ${BENCH_OUT:-/tmp/gpu-c2f-bench}.
set -euo pipefail
cd "$(dirname "$0")/.."

all=false
quick=()
for arg in "$@"; do
    case "$arg" in
        --all) all=true ;;
        --quick) quick=(--quick) ;;
        *) echo "usage: $0 [--all] [--quick]" >&2; exit 2 ;;
    esac
done

venv="${BENCH_VENV:-/tmp/gpu-c2f-bench-venv}"
out="${BENCH_OUT:-/tmp/gpu-c2f-bench}"
mkdir -p "$out"
# The Vulkan loader warns on every instance when this is unset.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR=/tmp/xdg
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

echo "== machine" | tee "$out/machine.txt"
{ date -u; nproc; lscpu | head -20; cat /proc/loadavg; } | tee -a "$out/machine.txt"

if $all; then
    echo "== cargo bench --bench train"
    cargo build --release --locked
    if [ ${#quick[@]} -gt 0 ]; then export BENCH_QUICK=1; fi
    cargo bench --locked --bench train | tee "$out/rust-bench.md"

    echo "== end to end: target/release/gpu-c2f (hyperfine)"
    runs=20; cold_runs=10
    if [ ${#quick[@]} -gt 0 ]; then runs=5; cold_runs=3; fi
    # Warm: Mesa's shader cache (~/.cache/mesa_shader_cache) filled by the warm-up runs.
    hyperfine -N --warmup 3 --runs "$runs" --export-json "$out/e2e-warm.json" \
        'target/release/gpu-c2f --adapter auto' \
        'target/release/gpu-c2f --cpu-reference'
    # Cold: every run compiles the shaders (no disk cache).
    MESA_SHADER_CACHE_DISABLE=true hyperfine -N --warmup 1 --runs "$cold_runs" \
        --export-json "$out/e2e-cold.json" 'target/release/gpu-c2f --adapter auto'
    for cache in warm cold; do
        python3 - "$out/e2e-$cache.json" "$cache" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    t = [x * 1e3 for x in r["times"]]
    print(f"e2e {sys.argv[2]}: {r['command']}: median {r['median'] * 1e3:.1f} ms, "
          f"min {min(t):.1f}, max {max(t):.1f}, mean {r['mean'] * 1e3:.1f}, runs {len(t)}")
PY
    done | tee "$out/e2e-summary.txt"
    echo "-- one warm and one cold run's own timings"
    target/release/gpu-c2f --adapter auto | grep -E 'Trained|Timings' | tee "$out/e2e-timings.txt"
    MESA_SHADER_CACHE_DISABLE=true target/release/gpu-c2f --adapter auto | grep -E 'Trained|Timings' \
        | sed 's/^/cold: /' | tee -a "$out/e2e-timings.txt"
    cat /proc/loadavg | tee -a "$out/machine.txt"
fi

echo "== PyTorch and JAX"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import torch, jax' 2>/dev/null; then
    "$venv/bin/pip" install torch jax jaxlib numpy || echo "pip install failed: the script reports what does not import"
fi
"$venv/bin/python" scripts/bench-frameworks.py "${quick[@]}" --json "$out/frameworks.json" | tee "$out/frameworks.md"
if $all; then
    echo "== the curved example (gpu-c2f's schedules, PyTorch, JAX)"
    "$venv/bin/python" scripts/bench-curve.py "${quick[@]}" --json "$out/curve.json" | tee "$out/curve.md"
fi
cat /proc/loadavg | tee -a "$out/machine.txt"
