#!/usr/bin/env python3
"""gpu-c2f's Keras and ONNX model files, opened by Keras 3 itself (JAX
backend, CPU) and by onnxruntime, and Keras's own files opened by gpu-c2f.

1. gpu-c2f writes, Keras and onnxruntime read. For the seed job, a
   1-8relu-4tanh-1 network and every example of README.md's table, each
   `gpu-c2f <flags> --json --predict ... --save x.keras` (and `.weights.h5`,
   `.onnx`), the predictions it printed from the trained model in memory:
   - `keras.saving.load_model(x.keras)`: a Sequential of Dense layers with
     the activations gpu-c2f used, weights equal to the JSON report's bit for
     bit, compiled with Adam at the job's learning rate and loss, its
     `optimizer.iterations` the job's steps (epochs x batches of 32), and
     `model.predict` giving what gpu-c2f printed;
   - `Model.load_weights(x.weights.h5)` on a Sequential built here from the
     report's architecture: the same weights and predictions;
   - onnxruntime on `x.onnx`: input "input", output "output", float32,
     [batch, inputs] -> [batch, outputs] with a dynamic batch (run on all the
     inputs at once), the same predictions.
   Bound: every forward pass here (gpu-c2f's, Keras's through XLA,
   onnxruntime's) is float32 arithmetic on the same float32 weights, held to
   the exact forward pass computed here in float64. Each addition and
   multiplication rounds within 2^-24 of its value, a sum has at most 17
   terms, and an activation is within a few units in the last place of its
   value. So each prediction must lie within 64 x 2^-24 of the magnitude of
   what was computed: the forward pass with every weight, bias and input
   taken positive, through each activation's largest slope where its input
   may lie (within the bound of the exact one: a saturated tanh passes
   little of its input's error on; 1.13, gelu's, where not worked out) plus
   the activation's own value (sigmoid(0) = 0.5 rounds too). The bound of
   tests/python/check_safetensors.py, with those two activation terms.
2. Keras writes, gpu-c2f reads: the files tests/python/make_keras_fixtures.py
   wrote with Keras 3.15.1 into tests/fixtures/keras/ load with `gpu-c2f
   --init FILE --epochs 0 --predict ...` and predict what Keras predicted
   (predictions.json), within the bound above computed from the file's
   weights; the trained `.keras`, read and saved again by gpu-c2f, loads
   in Keras with the same weights and Adam variables, bit for bit; the
   files of models gpu-c2f cannot train (Dropout, a functional model, no
   bias, float64) are refused with exit status 1 and a message, not a
   panic; and a file compiled with SGD gives its weights with Adam starting
   fresh, the JSON report's `adam_start` saying why.
3. Adam's state, both ways, on the seed job. W0 = `gpu-c2f --epochs 0 --save
   w0.keras`. Reference: Keras loads W0 and fits 1000 epochs (batch 32, one
   batch of 7: each epoch's loss is the loss before that epoch's update).
   Path A: Keras fits W0 500 epochs and saves; `gpu-c2f --init` that file
   runs 500 more, whose loss history must follow the reference's epochs
   501..1000. Path B: `gpu-c2f --init w0.keras --epochs 500 --save`, whose
   history must follow epochs 1..500; Keras loads that file (its optimizer
   must say 500 iterations) and fits 500 more, following epochs 501..1000.
   Each final prediction at 100 must match the reference's.
   Tolerance: LOSS_TOLERANCE (5e-4), the largest relative difference of an
   epoch's loss, and PREDICTION_TOLERANCE (5e-4 °F) for the prediction at
   100. Both runs are float32 and round differently (Keras's shuffle alone
   reorders the batch's 7 sums), and Adam near the least-squares floor
   amplifies that: measured over Keras shuffle seeds 0-4, gpu-c2f parts
   from Keras by at most 7.5e-5 of a loss and Keras from itself under
   another shuffle by 8.3e-5; the prediction at 100 by 6.3e-5 °F (4 float32
   steps). The tolerances are 6 and 8 times those.
   A resumed run with a fresh Adam (its state dropped) parts from the
   reference by a factor of about 5000 at epoch 502 (a fresh Adam's first
   steps are as large as the learning rate), so the check runs that planted
   mistake twice, in Keras (recompiled with a new Adam) and in gpu-c2f (the
   file's m and v removed), and requires both to fail the tolerance: proof
   that it tells a resumed Adam from a fresh one. (The prediction at 100
   cannot tell them apart, both sit on the least-squares line by epoch 500;
   the loss history does.)

4. Keras programs of jobs (`--keras-script`, and the page's download): the
   program Keras runs follows gpu-c2f's run of the same job, the seed job,
   one with a validation split, early stopping with restored weights and a
   metric, and one resuming Adam from a .keras file: the same number of epochs, each epoch's loss within
   LOSS_TOLERANCE (the parity of section 3), the predictions within
   PREDICTION_TOLERANCE relative, Keras's history keys the job's.
   With --page-downloads, the web page's seed-job downloads: Keras opens
   its .keras (Adam after 1000 steps, on the least-squares line at 100 within
   0.01 °F), and its Keras script follows the page's own run.

Usage: python tests/python/check_keras.py [--binary target/debug/gpu-c2f]
(a venv with `pip install -r tests/python/requirements-keras.txt`: keras
3.15.1, jax 0.10.2 on the CPU, h5py 3.16.0, onnxruntime 1.32.0, numpy
2.2.6; KERAS_BACKEND is set to jax here).
"""

import argparse
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile

os.environ["KERAS_BACKEND"] = "jax"
# Keras's variables trip numpy 2's `copy` deprecation on every conversion.
warnings.filterwarnings("ignore", category=DeprecationWarning)

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
from forward_pass import ROUNDING, forward, gpu_c2f  # noqa: E402

# Each job: (training flags, data and prediction flags). `--init` takes the
# second part only: the architecture and activations come from the file.
SEED_DATA = ["--predict", "-40", "--predict", "37", "--predict", "0.5"]  # and 100, always predicted
SINE = ["--data", "examples/data/sine.csv", "--x", "x", "--y", "y", "--predict", "-3", "--predict", "0.5",
        "--predict", "2"]
JOBS = {
    "seed job": ([], SEED_DATA),
    "relu and tanh": (["--hidden", "8:relu,4:tanh", "--epochs", "200"], SEED_DATA),
    "sine, relu": (["--hidden", "16:relu,16:relu", "--learning-rate", "0.01", "--epochs", "1000"], SINE),
    "sine, tanh, huber": (["--hidden", "16:tanh,16:tanh", "--learning-rate", "0.01", "--epochs", "1000",
                           "--loss", "huber"], SINE),
    "wind chill": (["--hidden", "16:relu,16:relu", "--learning-rate", "0.003", "--epochs", "1500"],
                   ["--data", "examples/data/wind_chill.csv", "--x", "celsius,wind_kmh", "--y", "wind_chill",
                    "--predict", "-20,30", "--predict", "5,10"]),
    "warm": (["--hidden", "8:relu", "--output-activation", "sigmoid", "--loss", "binary_crossentropy",
              "--learning-rate", "0.05", "--epochs", "300"],
             ["--data", "examples/data/warm.csv", "--y", "warm", "--predict", "10", "--predict", "30"]),
}
FORMATS = [".keras", ".weights.h5", ".onnx"]

FIXTURES = "tests/fixtures/keras"
REFUSED = ["dropout.keras", "functional.keras", "no-bias.keras", "float64.keras"]

CELSIUS = np.array([-40, -10, 0, 8, 15, 22, 38], dtype=np.float32)
FAHRENHEIT = np.array([-40, 14, 32, 46, 59, 72, 100], dtype=np.float32)

# Section 3. Measured with gpu-c2f on lavapipe and Keras 3.15.1 on this
# machine's CPU, over Keras shuffle seeds 0-4: gpu-c2f parts from Keras by
# at most 7.5e-5 of an epoch's loss (path A 5.7e-5, path B 4.9e-5, straight
# 1000 epochs 7.5e-5) and Keras from itself under another shuffle by 8.3e-5;
# the prediction at 100 by at most 6.3e-5 °F (4 float32 steps of 1.5e-5
# there). The tolerances are about 6 and 8 times those; the fresh Adam is
# off by about 5e3, seven orders of magnitude outside.
LOSS_TOLERANCE = 5e-4
PREDICTION_TOLERANCE = 5e-4  # °F at 100 °C: 2.4e-6 of 211.75
MEASURED = "loss 7.5e-5 (Keras against itself 8.3e-5), prediction 6.3e-5 °F"

failures = []


def report(ok, line):
    print(f"{'ok' if ok else 'FAIL'}: {line}")
    if not ok:
        failures.append(line)
    return ok


def run_json(binary, *args):
    return json.loads(gpu_c2f(binary, *args, "--json").stdout)


def report_layers(trained):
    """(kernel, bias, activation) in float64 from the JSON report."""
    return [(np.array(layer["kernel"], dtype=np.float32).astype(np.float64),
             np.array(layer["bias"], dtype=np.float32).astype(np.float64),
             layer.get("activation") or "linear") for layer in trained["layers"]]


def keras_layers(model):
    out = []
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        out.append((kernel.astype(np.float64), bias.astype(np.float64),
                    keras.activations.serialize(layer.activation)))
    return out


def points(trained):
    """The inputs and gpu-c2f's predictions, [n, inputs] and [n, outputs]."""
    xs, ys = trained["columns"]["x"], trained["columns"]["y"]
    inputs = np.array([[p[c] for c in xs] for p in trained["predictions"]], dtype=np.float32)
    printed = np.array([[p[c] for c in ys] for p in trained["predictions"]], dtype=np.float64)
    return inputs, printed


def within(label, layers, inputs, got, printed):
    """Both `got` (a reader's predictions) and `printed` (gpu-c2f's) within
    the bound of the exact forward pass."""
    exact, magnitude = forward(layers, inputs.astype(np.float64))
    bound = ROUNDING * magnitude
    worst = np.max(np.maximum(np.abs(got - exact), np.abs(printed - exact)) / bound)
    ok = worst <= 1.0
    detail = ", ".join(f"{list(map(float, x))} -> gpu-c2f {list(map(float, p))}, {list(map(float, g))}"
                       for x, p, g in zip(inputs, printed, got))
    report(ok, f"{label}: {detail} (worst {worst:.3f} of the bound)")
    return ok


def same_weights(label, file_layers, trained):
    want = report_layers(trained)
    ok = len(file_layers) == len(want) and all(
        a[0].shape == b[0].shape and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        for a, b in zip(file_layers, want))
    return report(ok, f"{label}: weights equal to the JSON report's, bit for bit")


def check_keras_file(name, path, trained):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = keras.saving.load_model(path)
        except Exception as error:  # Keras's message is the finding
            report(False, f"{name}: keras.saving.load_model refused the file: {type(error).__name__}: {error}")
            return
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            report(False, f"{name}: Keras warned on load: {warning.message}")
    kinds = [type(layer).__name__ for layer in model.layers]
    report(type(model).__name__ == "Sequential" and set(kinds) == {"Dense"},
           f"{name}: .keras is a {type(model).__name__} of {kinds}")
    activations = [keras.activations.serialize(layer.activation) for layer in model.layers]
    wanted = [layer.get("activation") or "linear" for layer in trained["layers"]]
    report(activations == wanted, f"{name}: .keras activations {activations}, gpu-c2f used {wanted}")
    same_weights(f"{name}: .keras", keras_layers(model), trained)
    optimizer = getattr(model, "optimizer", None)
    if not report(isinstance(optimizer, keras.optimizers.Adam),
                  f"{name}: .keras compiled with {type(optimizer).__name__}"):
        return
    report(np.float32(optimizer.learning_rate.numpy()) == np.float32(trained["learning_rate"]),
           f"{name}: Adam's learning rate {float(optimizer.learning_rate.numpy())}, gpu-c2f's "
           f"{trained['learning_rate']}")
    loss = model.loss if isinstance(model.loss, str) else getattr(model.loss, "__name__", str(model.loss))
    report(keras.losses.get(loss).__name__ == keras.losses.get(trained["loss"]).__name__,
           f"{name}: loss {loss!r}, gpu-c2f's {trained['loss']!r}")
    steps = trained["epochs"] * math.ceil(trained["samples"] / 32)
    report(int(optimizer.iterations.numpy()) == steps,
           f"{name}: optimizer.iterations {int(optimizer.iterations.numpy())}, gpu-c2f took {steps} steps")
    variables = len(optimizer.variables)
    expected = 2 + 2 * 2 * len(model.layers)
    report(variables == expected, f"{name}: Adam has {variables} variables (iterations, learning rate, "
           f"m and v per kernel and bias: {expected})")
    inputs, printed = points(trained)
    within(f"{name}: Keras load_model predicts", keras_layers(model), inputs,
           model.predict(inputs, verbose=0).astype(np.float64), printed)


def sequential(trained):
    inputs = len(trained["columns"]["x"])
    layers = [keras.Input(shape=(inputs,))]
    for layer in trained["layers"]:
        layers.append(keras.layers.Dense(len(layer["bias"]), activation=layer.get("activation") or "linear"))
    return keras.Sequential(layers)


def check_weights_file(name, path, trained):
    model = sequential(trained)
    try:
        model.load_weights(path)
    except Exception as error:
        report(False, f"{name}: Model.load_weights refused the file: {type(error).__name__}: {error}")
        return
    same_weights(f"{name}: .weights.h5", keras_layers(model), trained)
    inputs, printed = points(trained)
    within(f"{name}: Keras load_weights predicts", keras_layers(model), inputs,
           model.predict(inputs, verbose=0).astype(np.float64), printed)


def check_onnx_file(name, path, trained):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as error:
        report(False, f"{name}: onnxruntime refused the file: {type(error).__name__}: {error}")
        return
    n_in, n_out = len(trained["columns"]["x"]), len(trained["columns"]["y"])
    ins, outs = session.get_inputs(), session.get_outputs()
    shape_ok = (len(ins) == 1 and len(outs) == 1 and ins[0].name == "input" and outs[0].name == "output"
                and ins[0].type == "tensor(float)" and outs[0].type == "tensor(float)"
                and len(ins[0].shape) == 2 and not isinstance(ins[0].shape[0], int) and ins[0].shape[1] == n_in
                and len(outs[0].shape) == 2 and not isinstance(outs[0].shape[0], int)
                and outs[0].shape[1] == n_out)
    if not report(shape_ok, f"{name}: .onnx inputs {[(i.name, i.type, i.shape) for i in ins]}, outputs "
                  f"{[(o.name, o.type, o.shape) for o in outs]}; want input float [batch, {n_in}], "
                  f"output float [batch, {n_out}]"):
        return
    inputs, printed = points(trained)
    got = session.run(["output"], {"input": inputs})[0]
    single = np.concatenate([session.run(["output"], {"input": inputs[i:i + 1]})[0] for i in range(len(inputs))])
    report(got.dtype == np.float32 and got.shape == printed.shape and np.array_equal(got, single),
           f"{name}: onnxruntime gives {got.dtype} {got.shape}, the same row by row as for the whole batch")
    within(f"{name}: onnxruntime predicts", report_layers(trained), inputs, got.astype(np.float64), printed)


def save_modes(binary, folder):
    """Whether one run takes several --save flags."""
    paths = [os.path.join(folder, f"probe{ext}") for ext in FORMATS]
    done = gpu_c2f(binary, "--epochs", "0", "--quiet", *[a for p in paths for a in ("--save", p)], expect=None)
    return done.returncode == 0 and all(os.path.exists(p) for p in paths)


def check_writes(binary, folder):
    several = save_modes(binary, folder)
    print(f"info: one run {'writes all three formats' if several else 'writes one file: one run per format'}")
    for name, (training, data) in JOBS.items():
        paths = {ext: os.path.join(folder, f"model{ext}") for ext in FORMATS}
        runs = ([(FORMATS, [a for ext in FORMATS for a in ("--save", paths[ext])])] if several
                else [([ext], ["--save", paths[ext]]) for ext in FORMATS])
        for formats, save in runs:
            trained = run_json(binary, *training, *data, *save)
            for ext in formats:
                {".keras": check_keras_file, ".weights.h5": check_weights_file,
                 ".onnx": check_onnx_file}[ext](f"{name} ({trained['architecture']})", paths[ext], trained)
        # And gpu-c2f reads its own .keras back: the same predictions, bit for bit.
        loaded = run_json(binary, *data, "--init", paths[".keras"], "--epochs", "0")
        report(loaded["predictions"] == trained["predictions"],
               f"{name}: gpu-c2f --init its own .keras predicts the same, bit for bit")


def fixture_layers(path):
    """(kernel, bias) per Dense from a Keras file's H5, read with h5py."""
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            file = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    else:
        file = h5py.File(path, "r")
    with file:
        layers, index = [], 0
        while f"layers/{'dense' if index == 0 else f'dense_{index}'}" in file:
            group = file[f"layers/{'dense' if index == 0 else f'dense_{index}'}/vars"]
            layers.append((group["0"][()].astype(np.float64), group["1"][()].astype(np.float64)))
            index += 1
    return layers


def check_reads(binary, folder):
    with open(os.path.join(FIXTURES, "predictions.json")) as file:
        expected = json.load(file)
    for name in ("seed-trained.keras", "relu-tanh.weights.h5"):
        entry = expected[name]
        path = os.path.join(FIXTURES, name)
        predict = [a for x in entry["inputs"] for a in ("--predict", repr(x))]
        loaded = run_json(binary, "--init", path, *entry.get("flags", []), "--epochs", "0", *predict)
        report(loaded["architecture"] == entry["architecture"],
               f"{name}: gpu-c2f reads {loaded['architecture']}, Keras wrote {entry['architecture']}")
        layers = [(k, b, a) for (k, b), a in zip(fixture_layers(path), entry["activations"])]
        by_input = {p["celsius"]: p["fahrenheit"] for p in loaded["predictions"]}
        inputs = np.array([[x] for x in entry["inputs"]], dtype=np.float32)
        printed = np.array([[by_input[x]] for x in entry["inputs"]], dtype=np.float64)
        keras_said = np.array([[p["fahrenheit"]] for p in entry["predictions"]], dtype=np.float64)
        within(f"{name}: gpu-c2f --init predicts (vs Keras)", layers, inputs, keras_said, printed)
    # Keras's own Adam state through gpu-c2f and back: read, written again
    # untouched (--epochs 0), it must load in Keras bit for bit the same.
    name = "seed-trained.keras"
    again = os.path.join(folder, "again.keras")
    gpu_c2f(binary, "--init", os.path.join(FIXTURES, name), "--epochs", "0", "--quiet", "--save", again)
    original, copy = keras.saving.load_model(os.path.join(FIXTURES, name)), keras.saving.load_model(again)
    same = [np.array_equal(a, b) for a, b in zip(original.get_weights(), copy.get_weights())]
    state = [np.array_equal(a.numpy(), b.numpy())
             for a, b in zip(original.optimizer.variables, copy.optimizer.variables)]
    report(all(same) and len(copy.get_weights()) == len(same) and all(state)
           and len(copy.optimizer.variables) == len(state) == 14,
           f"{name} read by gpu-c2f and saved again: Keras loads the same {len(same)} weights and the same "
           f"{len(state)} optimizer variables (iterations {int(copy.optimizer.iterations.numpy())}, m, v), "
           "bit for bit")
    for name in REFUSED:
        done = gpu_c2f(binary, "--init", os.path.join(FIXTURES, name), "--epochs", "0", expect=None)
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        report(done.returncode == 1 and bool(message) and "panicked" not in done.stderr,
               f"{name}: gpu-c2f --init refuses it (exit {done.returncode}): {message}")
    # SGD's weights are a Sequential of Dense layers: they load, and Adam
    # starts fresh, saying why.
    loaded = run_json(binary, "--init", os.path.join(FIXTURES, "sgd.keras"), "--epochs", "0")
    start = str(loaded.get("adam_start"))
    report(start.startswith("fresh") and "SGD" in start,
           f"sgd.keras: gpu-c2f takes the weights, Adam starts {start!r}")


def keras_fit(model, epochs):
    keras.utils.set_random_seed(0)
    history = model.fit(CELSIUS, FAHRENHEIT, epochs=epochs, batch_size=32, verbose=0).history["loss"]
    return np.array(history), float(model.predict(np.array([[100.0]], dtype=np.float32), verbose=0)[0, 0])


def deviation(history, reference):
    relative = np.abs(np.asarray(history, dtype=np.float64) - reference) / np.abs(reference)
    return float(relative.max()), int(relative.argmax())


def compare(label, history, prediction, reference, reference_prediction, first_epoch):
    worst, at = deviation(history, reference)
    off = abs(prediction - reference_prediction)
    ok = worst <= LOSS_TOLERANCE and off <= PREDICTION_TOLERANCE
    report(ok, f"{label}: loss within {worst:.2e} of the reference's (epoch {first_epoch + at}; tolerance "
               f"{LOSS_TOLERANCE:g}), 100 °C -> {prediction!r}, reference {reference_prediction!r} "
               f"(off {off:.2e}; tolerance {PREDICTION_TOLERANCE:g})")
    return worst, off


def without_adam_state(source, target):
    """A copy of a .keras file whose optimizer/vars keeps only 0 and 1."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = io.BytesIO(members["model.weights.h5"])
    with h5py.File(weights, "a") as file:
        for name in list(file["optimizer/vars"]):
            if name not in ("0", "1"):
                del file["optimizer/vars"][name]
    members["model.weights.h5"] = weights.getvalue()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def check_adam_state(binary, folder):
    w0 = os.path.join(folder, "w0.keras")
    gpu_c2f(binary, "--epochs", "0", "--quiet", "--save", w0)
    with warnings.catch_warnings():
        # An optimizer that never stepped may be saved as Keras saves one,
        # iterations and learning rate only, which Keras skips with a warning.
        warnings.simplefilter("ignore", UserWarning)
        start = keras.saving.load_model(w0)
    optimizer = start.optimizer
    if not report(isinstance(optimizer, keras.optimizers.Adam) and int(optimizer.iterations.numpy()) == 0
                  and np.float32(optimizer.learning_rate.numpy()) == np.float32(0.1),
                  f"W0 (--epochs 0): Keras loads {type(optimizer).__name__} at iteration "
                  f"{int(optimizer.iterations.numpy())}, learning rate {float(optimizer.learning_rate.numpy())} "
                  "(the seed job's: Adam, 0, 0.1)"):
        return
    reference, reference_prediction = keras_fit(start, 1000)
    print(f"info: reference (Keras, 1000 epochs from W0): loss {reference[0]:.8g} -> {reference[-1]:.8g}, "
          f"100 °C -> {reference_prediction!r}")

    # Path A: Keras 500, gpu-c2f 500.
    k500 = os.path.join(folder, "k500.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        keras_500 = keras.saving.load_model(w0)
    _, keras_500_prediction = keras_fit(keras_500, 500)
    keras_500.save(k500)
    resumed = run_json(binary, "--init", k500, "--epochs", "500")
    report(str(resumed.get("adam_start")).startswith("resumed"),
           f"path A: gpu-c2f's Adam starts {resumed.get('adam_start')!r}")
    a = compare("path A, Keras 500 then gpu-c2f --init 500", resumed["loss_history"],
                resumed["predictions"][0]["fahrenheit"], reference[500:], reference_prediction, 501)

    # Path B: gpu-c2f 500, Keras 500.
    g500 = os.path.join(folder, "g500.keras")
    first = run_json(binary, "--init", w0, "--epochs", "500", "--save", g500)
    b1 = compare("path B, gpu-c2f's first 500", first["loss_history"], first["predictions"][0]["fahrenheit"],
                 reference[:500], keras_500_prediction, 1)
    loaded = keras.saving.load_model(g500)
    report(int(loaded.optimizer.iterations.numpy()) == 500,
           f"path B: Keras reads {int(loaded.optimizer.iterations.numpy())} iterations from gpu-c2f's file")
    history, prediction = keras_fit(loaded, 500)
    b2 = compare("path B, gpu-c2f 500 then Keras 500", history, prediction, reference[500:],
                 reference_prediction, 501)

    # The planted mistakes: a resumed run with a fresh Adam must fail the
    # tolerance. In Keras: recompiled with a new Adam after loading.
    fresh = keras.saving.load_model(k500)
    fresh.compile(optimizer=keras.optimizers.Adam(learning_rate=0.1), loss="mse")
    history, prediction = keras_fit(fresh, 500)
    worst, at = deviation(history, reference[500:])
    report(worst > LOSS_TOLERANCE,
           f"planted mistake, Keras resumes with a fresh Adam: loss off by {worst:.2e} (epoch {501 + at}), "
           f"outside the tolerance {LOSS_TOLERANCE:g} as it must be")
    # In gpu-c2f: Keras's file with its Adam state cut to what an optimizer
    # that never stepped saves (iterations and learning rate).
    stripped = os.path.join(folder, "k500-no-state.keras")
    without_adam_state(k500, stripped)
    cut = run_json(binary, "--init", stripped, "--epochs", "500")
    cut_worst, cut_at = deviation(cut["loss_history"], reference[500:])
    report(cut_worst > LOSS_TOLERANCE,
           f"planted mistake, gpu-c2f resumes a file without Adam's m and v (Adam {cut.get('adam_start')!r}): "
           f"loss off by {cut_worst:.2e} (epoch {501 + cut_at}), outside the tolerance as it must be")
    print(f"info: measured worst: path A {a[0]:.2e} loss, {a[1]:.2e} °F; path B {b1[0]:.2e} and {b2[0]:.2e} "
          f"loss, {b2[1]:.2e} °F; fresh Adam {worst:.2e} (Keras), {cut_worst:.2e} (gpu-c2f) loss "
          f"(tolerances {LOSS_TOLERANCE:g}, "
          f"{PREDICTION_TOLERANCE:g} °F; recorded: {MEASURED})")


def run_script(path, folder):
    """A Keras script gpu-c2f wrote, run by this venv's Python: its JSON."""
    done = subprocess.run([sys.executable, path], capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        report(False, f"{path} failed:\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout)


def check_script(label, keras, history, predictions, folder):
    """Keras's run of a job's script against gpu-c2f's run of the job:
    the same epochs (early stopping included), each epoch's loss within
    LOSS_TOLERANCE relative (Keras parity, as in section 3), and the
    predictions within PREDICTION_TOLERANCE relative."""
    if keras is None:
        return
    if not report(len(keras["loss_history"]) == len(history),
                  f"{label}: Keras ran {len(keras['loss_history'])} epochs, gpu-c2f {len(history)}"):
        return
    worst = deviation(history, keras["loss_history"])
    report(worst[0] <= LOSS_TOLERANCE, f"{label}: each epoch's loss within {worst[0]:.2e} of Keras's "
                                       f"(epoch {worst[1] + 1}; tolerance {LOSS_TOLERANCE})")
    ours = [value for row in predictions for value in row]
    theirs = [value for row in keras["predictions"] for value in row]
    off = max((abs(a - b) / max(abs(b), 1.0) for a, b in zip(ours, theirs)), default=0.0)
    report(len(ours) == len(theirs) and off <= PREDICTION_TOLERANCE,
           f"{label}: predictions {ours} against Keras's {theirs} (off {off:.2e} relative)")


def check_scripts(binary, folder):
    """`--keras-script`: the job as a Keras program, whose run in Keras
    follows gpu-c2f's (the seed job, and one with a validation split,
    early stopping with restored weights and a metric)."""
    jobs = {
        "script, seed job": ["--predict", "37"],
        "script, early stopping": ["--hidden", "8:relu", "--validation-split", "0.3", "--patience", "5",
                                   "--restore-best-weights", "--metrics", "mae", "--epochs", "300",
                                   "--predict", "37"],
    }
    # A run that resumes Adam from a .keras file: the program loads the
    # file, whose optimizer keeps its state (a fresh Adam here is off by
    # thousands: section 3's planted mistake).
    half = os.path.join(folder, "half.keras")
    run_json(binary, "--epochs", "500", "--save", half)
    jobs["script, resumed from .keras"] = ["--init", half, "--epochs", "100", "--predict", "37"]
    for label, flags in jobs.items():
        path = os.path.join(folder, "job.py")
        trained = run_json(binary, *flags, "--keras-script", path)
        keras = run_script(path, folder)
        rows = [[p["fahrenheit"]] for p in trained["predictions"][1:]]
        check_script(label, keras, trained["loss_history"], rows, folder)
        if keras is not None and "--metrics" in flags:
            keys = sorted(keras["history"])
            report(keys == ["loss", "mae", "val_loss", "val_mae"], f"{label}: Keras's history keys {keys}")


def check_page_downloads(folder):
    """The web page's downloads of the seed job (web/test_page.py
    --downloads): Keras opens its .keras as the tutorial's model, Adam
    after 1000 steps, predicting the least-squares line at 100 (0.01 °F:
    the converged seed job's tolerance, tests/seed_job.rs); and the page's
    Keras script runs in Keras within parity of the page's own run."""
    model = keras.saving.load_model(os.path.join(folder, "model.keras"))
    layers = [(layer.units, layer.get_config()["activation"]) for layer in model.layers]
    report(layers == [(3, "linear"), (3, "linear"), (1, "linear")], f"page model: Keras reads its layers {layers}")
    iterations = int(model.optimizer.iterations)
    report(iterations == 1000, f"page model: Adam's iterations {iterations}")
    at_100 = float(model.predict(np.array([[100.0]], dtype=np.float32), verbose=0)[0][0])
    slope, intercept = np.polyfit(CELSIUS.astype(np.float64), FAHRENHEIT.astype(np.float64), 1)
    line = slope * 100 + intercept
    report(abs(at_100 - line) < 0.01, f"page model: Keras predicts {at_100} at 100, the line {line:.5f}")
    with open(os.path.join(folder, "run.json")) as file:
        run = json.load(file)
    keras_run = run_script(os.path.abspath(os.path.join(folder, "job.py")), folder)
    check_script("page script, seed job", keras_run, run["loss_history"],
                 [outputs for _, outputs in run["predictions"]], folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/debug/gpu-c2f")
    parser.add_argument("--page-downloads", help="the web page's downloads (web/test_page.py --downloads)")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as folder:
        check_writes(args.binary, folder)
        check_reads(args.binary, folder)
        check_adam_state(args.binary, folder)
        check_scripts(args.binary, folder)
    if args.page_downloads:
        check_page_downloads(args.page_downloads)
    if failures:
        sys.exit(f"keras: {len(failures)} check(s) failed:\n" + "\n".join(failures))
    print("keras: all checks passed")


if __name__ == "__main__":
    main()
