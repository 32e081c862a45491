#!/usr/bin/env python3
"""TensorFlow.js on the seed job, in the same headless Chromium and
SwiftShader as web/test_page.py times gpu-c2f's page: the tutorial's model
(Dense(3), Dense(3), Dense(1), Adam(0.1), mean squared error) fitted 1000
epochs on the 7 pairs with `model.fit`, once per backend (cpu, webgl,
webgpu), each run timed in the page from the call to the prediction for
100 °C read back (the same span as the page's click to answer, without the
drawing). The first run of a backend compiles its kernels; the script
prints every run and the median of the runs after the first.

    python3 scripts/bench-tfjs.py [--runs 3] [--chromium /usr/bin/chromium]

Needs npm (it installs @tensorflow/tfjs 4.22.0 and its WebGPU backend into
target/tfjs-bench/ once) and Playwright (the venv of web/test_page.py).
"""

import argparse
import functools
import http.server
import json
import pathlib
import statistics
import subprocess
import threading

from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parent.parent
FOLDER = ROOT / "target" / "tfjs-bench"
VERSION = "4.22.0"
WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-angle=vulkan"]

PAGE = """<!doctype html><meta charset="utf-8"><title>tfjs seed job</title>
<script src="node_modules/@tensorflow/tfjs/dist/tf.min.js"></script>
<script src="node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js"></script>
<script>
window.runSeed = async (backend) => {
  await tf.setBackend(backend);
  await tf.ready();
  const started = performance.now();
  const model = tf.sequential();
  model.add(tf.layers.dense({units: 3, inputShape: [1]}));
  model.add(tf.layers.dense({units: 3}));
  model.add(tf.layers.dense({units: 1}));
  model.compile({optimizer: tf.train.adam(0.1), loss: 'meanSquaredError'});
  const xs = tf.tensor2d([-40, -10, 0, 8, 15, 22, 38], [7, 1]);
  const ys = tf.tensor2d([-40, 14, 32, 46, 59, 72, 100], [7, 1]);
  const history = await model.fit(xs, ys, {epochs: 1000, verbose: 0});
  const prediction = (await model.predict(tf.tensor2d([[100]])).data())[0];
  const ms = performance.now() - started;
  return {backend: tf.getBackend(), ms, prediction, loss: history.history.loss[999]};
};
</script>
"""


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def install():
    if not (FOLDER / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js").exists():
        FOLDER.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(FOLDER),
                        f"@tensorflow/tfjs@{VERSION}", f"@tensorflow/tfjs-backend-webgpu@{VERSION}"],
                       check=True)
    (FOLDER / "index.html").write_text(PAGE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    install()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(FOLDER)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox", *WEBGPU_FLAGS])
        for backend in ["cpu", "webgl", "webgpu"]:
            page = browser.new_page()
            page.goto(url)
            runs = []
            for _ in range(args.runs):
                run = page.evaluate(f"runSeed({json.dumps(backend)})")
                if run["backend"] != backend:
                    # tf.setBackend failed and TF.js kept another backend.
                    print(f"tfjs {backend}: not available in this browser (TF.js ran on {run['backend']})")
                    break
                runs.append(run)
                print(f"tfjs {VERSION} {run['backend']}: {run['ms']:.0f} ms, 100 C -> {run['prediction']:.4f} F, "
                      f"final loss {run['loss']:.4g}", flush=True)
            if runs:
                later = [run["ms"] for run in runs[1:]] or [runs[0]["ms"]]
                print(f"tfjs {backend}: median after the first run {statistics.median(later):.0f} ms")
            page.close()
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main()
