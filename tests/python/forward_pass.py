"""What tests/python/check_*.py share: the exact forward pass of a Dense
network in float64, with the magnitude of what was summed (for the float32
rounding bound each script states), and gpu-c2f run as a user would."""

import math
import subprocess
import sys

import numpy as np

ROUNDING = 64 * 2.0**-24

# The largest slope of each activation, for the magnitude (see the bound).
SLOPE = {"linear": 1.0, "relu": 1.0, "leaky_relu": 1.0, "elu": 1.0, "tanh": 1.0, "sigmoid": 0.25,
         "softplus": 1.0, "gelu": 1.13, "silu": 1.13}

ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softplus": lambda z: np.logaddexp(z, 0.0),
    "gelu": lambda z: 0.5 * z * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0))),
    "silu": lambda z: z / (1.0 + np.exp(-z)),
}

def gpu_c2f(binary, *args, expect=0):
    done = subprocess.run([binary, *args], capture_output=True, text=True)
    if expect is not None and done.returncode != expect:
        sys.exit(f"{binary} {' '.join(args)} exited {done.returncode}, not {expect}:\n{done.stderr}")
    return done


def slope(activation, z, radius):
    """The largest slope of the activation within `radius` of z, where the
    computed z may lie: tanh and sigmoid are steepest nearest 0, relu is flat
    left of 0; the others take their largest slope anywhere."""
    nearest = np.maximum(np.abs(z) - radius, 0.0)
    if activation == "tanh":
        return 1.0 - np.tanh(nearest) ** 2
    if activation == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-nearest))
        return s * (1.0 - s)
    if activation == "relu":
        return np.where(z + radius < 0.0, 0.0, 1.0)
    return np.full_like(z, SLOPE[activation])


def forward(layers, x):
    """The exact prediction (float64) and the magnitude of what was summed."""
    value = np.asarray(x, dtype=np.float64)
    magnitude = np.abs(value)
    for kernel, bias, activation in layers:
        z = value @ kernel + bias
        magnitude = magnitude @ np.abs(kernel) + np.abs(bias)
        value = ACTIVATIONS[activation](z)
        if activation != "linear":
            magnitude = slope(activation, z, ROUNDING * magnitude) * magnitude + np.abs(value)
    return value, magnitude
