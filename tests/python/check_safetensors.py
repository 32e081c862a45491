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
summed: the forward pass with every weight, bias and input taken positive,
through each activation's largest slope where its input may lie, plus the
activation's own value (tests/python/forward_pass.py, shared with
check_keras.py, which says more).

Usage: python tests/python/check_safetensors.py [--binary target/release/gpu-c2f]
(a venv with `pip install safetensors==0.8.0 numpy==2.2.6`).
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np
from safetensors import safe_open

from forward_pass import ROUNDING, forward, gpu_c2f

JOBS = {
    "seed job": [],
    "relu and tanh": ["--hidden", "8:relu,4:tanh", "--epochs", "200"],
}

INPUTS = [-40.0, 37.0, 0.5]  # and 100, which every report predicts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/gpu-c2f")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as folder:
        for name, flags in JOBS.items():
            path = os.path.join(folder, "model.safetensors")
            predict = [a for x in INPUTS for a in ("--predict", str(x))]
            trained = json.loads(gpu_c2f(args.binary, *flags, "--json", "--save", path, *predict).stdout)
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
            loaded = json.loads(gpu_c2f(args.binary, "--init", path, "--epochs", "0", "--json", *predict).stdout)
            if loaded["predictions"] != trained["predictions"]:
                sys.exit(f"FAIL: {name}: --init predicts {loaded['predictions']}, "
                         f"the trained model {trained['predictions']}")
            for prediction in trained["predictions"]:
                x = prediction["celsius"]
                printed = prediction["fahrenheit"]
                expected, magnitude = (float(v[0]) for v in forward(layers, [x]))
                bound = ROUNDING * magnitude
                ok = abs(printed - expected) <= bound
                print(f"{'ok' if ok else 'FAIL'}: {name}, {metadata['architecture']} "
                      f"{activations}: {x} -> gpu-c2f {printed}, numpy {expected:.7g} "
                      f"(bound {bound:.2e})")
                if not ok:
                    sys.exit(1)
    print("safetensors: all checks passed")


if __name__ == "__main__":
    main()
