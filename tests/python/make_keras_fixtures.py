#!/usr/bin/env python3
"""Writes the Keras-made model files that gpu-c2f's tests read, into
tests/fixtures/keras/, with Keras itself (3.15.1, JAX backend, CPU):

- `seed-trained.keras`: the tutorial's network (`keras.Input(shape=(1,))`,
  `Dense(3)`, `Dense(3)`, `Dense(1)`, `Adam(0.1)`, mean squared error)
  trained 50 epochs on the 7 Celsius/Fahrenheit pairs after
  `keras.utils.set_random_seed(0)`, saved with `model.save`: weights, the
  compile config and Adam's state (50 iterations, m and v).
- `relu-tanh.weights.h5`: a 1-8relu-4tanh-1 network, same data, optimizer
  and loss, 20 epochs, saved with `model.save_weights` (no config: the
  reader must be told the activations, `--hidden 8:relu,4:tanh`).
- `predictions.json`: for each of the two, Keras's `model.predict` at
  -40, 0, 37 and 100 (each float32 written as the exact float it is,
  `repr(float(x))`), its architecture in gpu-c2f's notation and its layers'
  activations, and for the `.keras` file the optimizer's iteration count.
- Files gpu-c2f must refuse, each a small `.keras` of a model that is not a
  Sequential of biased float32 Dense layers trained with Adam:
  `dropout.keras` (Dense, Dropout, Dense), `functional.keras` (a functional
  `keras.Model` of Dense layers), `no-bias.keras` (a Dense with
  `use_bias=False`), `float64.keras` (every layer float64, its weights
  float64 in the file: written with JAX's x64 mode on), and `sgd.keras`
  (Dense layers compiled with `SGD(0.001, momentum=0.9)` and trained 2
  epochs, so its optimizer state is SGD's: iterations, learning rate and one
  momentum per variable, not Adam's m and v).

Sizes: Keras writes its HDF5 with h5py's default (oldest) object layout,
which costs about 1 KB per group and dataset; a trained 1-3-3-1 model with
Adam's 12 state arrays is then about 22 KB. The files are kept as Keras
wrote them, byte for byte, because reading Keras's own layout is what the
tests are for.

Usage, from the repository root (a venv with `pip install -r
tests/python/requirements-keras.txt`):
    python tests/python/make_keras_fixtures.py [--out tests/fixtures/keras]
"""

import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

CELSIUS = np.array([-40, -10, 0, 8, 15, 22, 38], dtype=np.float32)
FAHRENHEIT = np.array([-40, 14, 32, 46, 59, 72, 100], dtype=np.float32)
INPUTS = [-40.0, 0.0, 37.0, 100.0]


def sequential(widths, activations, dtype=None, use_bias=True):
    """A Sequential of an Input of 1 and Dense layers of these widths."""
    layers = [keras.Input(shape=(1,), dtype=dtype or "float32")]
    for width, activation in zip(widths, activations):
        layers.append(keras.layers.Dense(width, activation=activation, use_bias=use_bias, dtype=dtype))
    return keras.Sequential(layers)


def architecture(model):
    """gpu-c2f's notation: 1-3-3-1, 1-8relu-4tanh-1 (the output's activation
    is written when it is not linear, as `1-8relu-1sigmoid`)."""
    parts = [str(model.inputs[0].shape[-1])]
    for layer in model.layers:
        activation = keras.activations.serialize(layer.activation)
        parts.append(f"{layer.units}{'' if activation == 'linear' else activation}")
    return "-".join(parts)


def predictions(model):
    x = np.array(INPUTS, dtype=np.float32).reshape(-1, 1)
    y = model.predict(x, verbose=0)
    assert y.dtype == np.float32, y.dtype
    return [{"celsius": xi, "fahrenheit": float(yi)} for xi, yi in zip(INPUTS, y[:, 0])]


def describe(model):
    return {
        "architecture": architecture(model),
        "activations": [keras.activations.serialize(layer.activation) for layer in model.layers],
        "inputs": INPUTS,
        "predictions": predictions(model),
    }


def trained(widths, activations, epochs, optimizer=None, **kwargs):
    keras.utils.set_random_seed(0)
    model = sequential(widths, activations, **kwargs)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(learning_rate=0.1), loss="mse")
    if epochs:
        model.fit(CELSIUS, FAHRENHEIT, epochs=epochs, verbose=0)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures/keras")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if keras.__version__ != "3.15.1" or keras.backend.backend() != "jax":
        sys.exit(f"expected Keras 3.15.1 on JAX, found {keras.__version__} on {keras.backend.backend()}")
    written = []

    def path(name):
        written.append(name)
        return os.path.join(args.out, name)

    report = {"keras_version": keras.__version__, "backend": keras.backend.backend()}

    seed = trained([3, 3, 1], ["linear"] * 3, epochs=50)
    seed.save(path("seed-trained.keras"))
    report["seed-trained.keras"] = {**describe(seed), "epochs": 50, "iterations": int(seed.optimizer.iterations)}

    relu_tanh = trained([8, 4, 1], ["relu", "tanh", "linear"], epochs=20)
    relu_tanh.save_weights(path("relu-tanh.weights.h5"))
    report["relu-tanh.weights.h5"] = {**describe(relu_tanh), "epochs": 20, "flags": ["--hidden", "8:relu,4:tanh"]}

    with open(path("predictions.json"), "w") as file:
        json.dump(report, file, indent=2)
        file.write("\n")

    # Files gpu-c2f must refuse. Compiled, not trained (no Adam state to
    # carry), except sgd.keras.
    keras.utils.set_random_seed(0)
    dropout = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(3), keras.layers.Dropout(0.5),
                                keras.layers.Dense(1)])
    dropout.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    dropout.save(path("dropout.keras"))

    inputs = keras.Input(shape=(1,))
    outputs = keras.layers.Dense(1)(keras.layers.Dense(3)(inputs))
    functional = keras.Model(inputs, outputs)
    functional.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    functional.save(path("functional.keras"))

    trained([3, 1], ["linear"] * 2, epochs=0, use_bias=False).save(path("no-bias.keras"))
    sgd = trained([3, 1], ["linear"] * 2, epochs=2, optimizer=keras.optimizers.SGD(learning_rate=0.001, momentum=0.9))
    sgd.save(path("sgd.keras"))
    # JAX holds float64 variables as float32 unless x64 is enabled: without
    # this the file says float64 in its config but stores float32 weights.
    # Last, as it changes every later array's default widths.
    jax.config.update("jax_enable_x64", True)
    trained([3, 1], ["linear"] * 2, epochs=0, dtype="float64").save(path("float64.keras"))

    for name in written:
        size = os.path.getsize(os.path.join(args.out, name))
        print(f"wrote {os.path.join(args.out, name)} ({size} bytes)")
    for name in ("seed-trained.keras", "relu-tanh.weights.h5"):
        entry = report[name]
        print(f"{name}: {entry['architecture']}, Keras predicts "
              + ", ".join(f"{p['celsius']:g} -> {p['fahrenheit']!r}" for p in entry["predictions"]))


if __name__ == "__main__":
    main()
