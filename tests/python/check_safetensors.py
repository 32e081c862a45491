#!/usr/bin/env python3
"""gpu-c2f's .safetensors files, opened by Hugging Face's own `safetensors`
package: for the seed job and a nonlinear network, `gpu-c2f --save
x.safetensors --predict ...` (its predictions from the trained model in
memory), then the file read with `safetensors.safe_open` (numpy), its
forward pass computed here in float64 from the tensors and the metadata's
activations and held to those predictions; and the file read back by
`gpu-c2f --init x.safetensors --epochs 0 --predict ...`, whose predictions
must be the same, bit for bit.

Bound: both sides compute the same sums from the same float32 weights;
gpu-c2f in float32 (each addition and multiplication within 2^-24 of its
value, at most 17 terms a sum here), this script in float64. A prediction
may then differ by at most 64 * 2^-24 times the magnitude of what was
summed (the forward pass with every weight, bias and input taken
positive, through activations whose slope is at most 1.1: gelu's largest),
which this script computes alongside.

Usage: python tests/python/check_safetensors.py [--binary target/release/gpu-c2f]
(a venv with `pip install safetensors==0.8.0 numpy==2.2.6`).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors import safe_open

ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
}

JOBS = {
    "seed job": [],
    "relu and tanh": ["--hidden", "8:relu,4:tanh", "--epochs", "200"],
}

INPUTS = [-40.0, 37.0, 0.5]  # and 100, which every report predicts


def gpu_c2f(binary, *args):
    done = subprocess.run([binary, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{binary} {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def forward(layers, x):
    """The prediction and its magnitude (every value taken positive)."""
    value = np.array([x], dtype=np.float64)
    magnitude = np.abs(value)
    for kernel, bias, activation in layers:
        z = value @ kernel + bias
        magnitude = magnitude @ np.abs(kernel) + np.abs(bias)
        value = ACTIVATIONS[activation](z)
        if activation != "linear":
            magnitude = 1.1 * magnitude
    return float(value[0]), float(magnitude[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/gpu-c2f")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as folder:
        for name, flags in JOBS.items():
            path = os.path.join(folder, "model.safetensors")
            predict = [a for x in INPUTS for a in ("--predict", str(x))]
            trained = json.loads(gpu_c2f(args.binary, *flags, "--json", "--save", path, *predict))
            with safe_open(path, framework="numpy") as file:
                metadata = file.metadata()
                activations = metadata["activations"].split(",")
                layers = []
                for index, activation in enumerate(activations):
                    layer = "dense" if index == 0 else f"dense_{index}"
                    kernel = file.get_tensor(f"{layer}/kernel")
                    bias = file.get_tensor(f"{layer}/bias")
                    assert kernel.dtype == np.float32 and bias.dtype == np.float32
                    layers.append((kernel.astype(np.float64), bias.astype(np.float64), activation))
                assert len(file.keys()) == 2 * len(activations), sorted(file.keys())
            loaded = json.loads(gpu_c2f(args.binary, "--init", path, "--epochs", "0", "--json", *predict))
            if loaded["predictions"] != trained["predictions"]:
                sys.exit(f"FAIL: {name}: --init predicts {loaded['predictions']}, "
                         f"the trained model {trained['predictions']}")
            for prediction in trained["predictions"]:
                x = prediction["celsius"]
                printed = prediction["fahrenheit"]
                expected, magnitude = forward(layers, x)
                bound = 64 * 2.0**-24 * magnitude
                ok = abs(printed - expected) <= bound
                print(f"{'ok' if ok else 'FAIL'}: {name}, {metadata['architecture']} "
                      f"{activations}: {x} -> gpu-c2f {printed}, numpy {expected:.7g} "
                      f"(bound {bound:.2e})")
                if not ok:
                    sys.exit(1)
    print("safetensors: all checks passed")


if __name__ == "__main__":
    main()
