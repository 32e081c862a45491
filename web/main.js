// The page's glue: reads the form, calls the Rust library (compiled to
// WebAssembly, web/src/lib.rs) and draws what comes back. Everything that
// trains, parses or checks is the library's own code.

import init, * as gpuC2f from './dist/gpu_c2f_web.js';

const $ = (id) => document.getElementById(id);

// What the page knows, also read by the browser test (web/test_page.py).
const page = {
  losses: [],        // the loss curve drawn: the history as it arrives
  streamed: [],      // every loss received while training, in order
  totalEpochs: 0,
  progressUpdates: 0, // chunks of losses received while training
  result: null,      // the last run's result (JSON from the library)
  check: null,       // the last CPU check
  initModel: null,   // an uploaded model file's text (--init)
  errors: [],        // every error shown
  adapterName: '',
};
window.gpuC2fPage = page;

const WEBGPU_HELP =
  'WebGPU is on by default in current Chrome and Edge (Windows, macOS, ChromeOS, Android) ' +
  'and Safari 26. In Firefox it is on in version 141 and later on Windows; elsewhere set ' +
  'dom.webgpu.enabled in about:config. Chromium on Linux needs it switched on: ' +
  'chrome://flags/#enable-unsafe-webgpu, or start it with --enable-unsafe-webgpu ' +
  '--enable-features=Vulkan.';

function setStatus(state, text) {
  document.body.dataset.state = state;
  $('status').textContent = text;
}

function showError(title, detail) {
  page.errors.push({ title, detail });
  $('error-title').textContent = title;
  $('error-detail').textContent = detail;
  $('error').hidden = false;
  setStatus('error', title);
}

function hideError() {
  $('error').hidden = true;
}

// A library error arrives as a JS Error whose message is the Rust error's text.
const message = (error) => (error && error.message) || String(error);

// ---- data table ----------------------------------------------------------

function fillTable(pairs) {
  const body = $('pairs').tBodies[0];
  body.replaceChildren();
  pairs.celsius.forEach((c, i) => addRow(c, pairs.fahrenheit[i]));
}

function addRow(celsius = '', fahrenheit = '') {
  const row = $('pairs').tBodies[0].insertRow();
  for (const value of [celsius, fahrenheit]) {
    const input = document.createElement('input');
    input.type = 'text';
    input.value = value;
    row.insertCell().append(input);
  }
}

function readPairs() {
  const celsius = [];
  const fahrenheit = [];
  const rows = [...$('pairs').tBodies[0].rows];
  rows.forEach((row, index) => {
    const [c, f] = [...row.querySelectorAll('input')].map((input) => input.value.trim());
    if (c === '' && f === '') return; // an empty row is no data
    for (const [name, text] of [['celsius', c], ['fahrenheit', f]]) {
      if (text === '' || !Number.isFinite(Number(text))) {
        throw new Error(`data row ${index + 1}: ${name} ${JSON.stringify(text)} is not a number`);
      }
    }
    celsius.push(Number(c));
    fahrenheit.push(Number(f));
  });
  if (celsius.length === 0) throw new Error('the data table has no rows');
  return { celsius, fahrenheit };
}

// ---- the form ------------------------------------------------------------

function readRequest() {
  const integer = (id, name, least) => {
    const text = $(id).value.trim();
    const value = Number(text);
    if (!Number.isInteger(value) || value < least) {
      throw new Error(`${name}: ${JSON.stringify(text)} is not a whole number of at least ${least}`);
    }
    return value;
  };
  const rate = Number($('learning-rate').value.trim());
  if (!(rate > 0 && Number.isFinite(rate))) {
    throw new Error(`learning rate: ${JSON.stringify($('learning-rate').value)} is not a number greater than 0`);
  }
  const hiddenText = $('hidden').value.trim();
  const hidden = hiddenText === '' ? [] : hiddenText.split(',').map((part) => {
    const width = Number(part.trim());
    if (!Number.isInteger(width) || width < 1) {
      throw new Error(`hidden widths: ${JSON.stringify(part.trim())} is not a whole number of at least 1`);
    }
    return width;
  });
  const batchText = $('batch-size').value.trim().toLowerCase();
  const batch_size = batchText === 'all' || batchText === '' ? null : integer('batch-size', 'batch size', 1);
  const pairs = readPairs();
  return {
    epochs: integer('epochs', 'epochs', 1),
    learning_rate: rate,
    hidden,
    batch_size,
    seed: integer('seed', 'seed', 0),
    schedule: $('schedule').value,
    celsius: pairs.celsius,
    fahrenheit: pairs.fahrenheit,
    init_model: page.initModel,
  };
}

// ---- the loss curve --------------------------------------------------------

function niceStep(span) {
  const raw = span / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

function drawCurve() {
  const canvas = $('curve');
  const g = canvas.getContext('2d');
  const [width, height] = [canvas.width, canvas.height];
  const margin = { left: 110, right: 30, top: 20, bottom: 60 };
  g.clearRect(0, 0, width, height);
  g.font = '22px system-ui, sans-serif';
  g.fillStyle = '#4a5263';
  const epochs = Math.max(page.totalEpochs, page.losses.length, 1);
  const log = $('log-scale').checked;
  const finite = page.losses.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (finite.length === 0) {
    g.fillText(page.totalEpochs ? 'waiting for the first epochs…' : 'press Train', margin.left + 20, height / 2);
    return;
  }
  const y = log ? (v) => Math.log10(v) : (v) => v;
  let [low, high] = [Math.min(...finite.map(y)), Math.max(...finite.map(y))];
  if (log) { low = Math.floor(low); high = Math.ceil(high); }
  if (!log) low = Math.min(low, 0);
  if (high === low) high = low + 1;
  const px = (epoch) => margin.left + (epoch / epochs) * (width - margin.left - margin.right);
  const py = (value) => height - margin.bottom - ((y(value) - low) / (high - low)) * (height - margin.top - margin.bottom);

  // Axes and ticks.
  g.strokeStyle = '#c9ced8';
  g.lineWidth = 1;
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  const yTicks = [];
  if (log) {
    for (let p = low; p <= high; p++) yTicks.push(10 ** p);
  } else {
    const step = niceStep(high - low);
    for (let t = Math.ceil(low / step) * step; t <= high + 1e-9; t += step) yTicks.push(t);
  }
  for (const t of yTicks) {
    const at = py(t);
    g.beginPath(); g.moveTo(margin.left, at); g.lineTo(width - margin.right, at); g.stroke();
    g.fillText(log ? `1e${Math.round(Math.log10(t))}` : String(+t.toPrecision(4)), margin.left - 10, at);
  }
  g.textAlign = 'center';
  g.textBaseline = 'top';
  const xStep = niceStep(epochs);
  for (let e = 0; e <= epochs; e += xStep) g.fillText(String(e), px(e), height - margin.bottom + 10);
  g.fillText('epoch', (margin.left + width - margin.right) / 2, height - 28);

  // The curve, as far as it has arrived.
  g.strokeStyle = '#2456d6';
  g.lineWidth = 3;
  g.beginPath();
  let drawing = false;
  page.losses.forEach((value, index) => {
    if (!Number.isFinite(value) || (log && value <= 0)) { drawing = false; return; }
    const [x, yy] = [px(index + 1), py(value)];
    if (drawing) g.lineTo(x, yy); else g.moveTo(x, yy);
    drawing = true;
  });
  g.stroke();
}

// ---- results ---------------------------------------------------------------

const fmt = (value, digits = 6) => (Number.isFinite(value) ? Number(value).toPrecision(digits) : String(value));

function showResult(result, request) {
  $('final-loss').textContent = fmt(result.final_loss);
  $('prediction-100').textContent = `${fmt(result.prediction_100, 8)} °F`;
  const line = gpuC2f.least_squares_at_100(JSON.stringify({ celsius: request.celsius, fahrenheit: request.fahrenheit }));
  $('least-squares').textContent = `${fmt(line, 8)} °F`;
  $('schedule-used').textContent = `${result.schedule} (${result.architecture})`;
  const t = result.timings_ms;
  $('timings').textContent =
    `train ${t.train.toFixed(1)} ms` + (t.gpu_train == null ? '' : ` (GPU ${t.gpu_train.toFixed(1)} ms)`) +
    `, pipelines ${t.pipelines.toFixed(1)} ms, upload ${t.upload.toFixed(1)} ms, readback ${t.readback.toFixed(1)} ms; ` +
    `${t.submits} submissions, ${t.readbacks} readbacks; whole run in the page ${result.page_ms.toFixed(0)} ms`;
  const weights = $('weights');
  weights.replaceChildren();
  result.layers.forEach((layer, index) => {
    const title = document.createElement('div');
    title.textContent = `layer ${index}: kernel ${layer.kernel.length} x ${layer.bias.length}, bias ${layer.bias.length}`;
    const table = document.createElement('table');
    for (const row of [...layer.kernel, layer.bias]) {
      const tr = table.insertRow();
      for (const value of row) tr.insertCell().textContent = fmt(value, 7);
    }
    table.rows[table.rows.length - 1].style.borderTop = '1px solid #c9ced8';
    weights.append(title, table);
  });
  predictNow();
}

function predictNow() {
  if (!page.result) return;
  const celsius = Number($('predict-input').value);
  $('predict-output').textContent = Number.isFinite(celsius) ? fmt(gpuC2f.predict(celsius), 8) : '–';
}

// ---- actions ---------------------------------------------------------------

async function train() {
  hideError();
  let request;
  try {
    request = readRequest();
  } catch (error) {
    showError('Check the form', message(error));
    return;
  }
  page.losses = [];
  page.streamed = [];
  page.totalEpochs = request.epochs;
  page.progressUpdates = 0;
  page.result = null;
  page.check = null;
  $('check-result').textContent = '';
  $('check-detail').textContent = '';
  for (const id of ['train', 'check', 'download-model']) $(id).disabled = true;
  setStatus('training', 'Training…');
  drawCurve();
  const started = performance.now();
  try {
    const json = await gpuC2f.train(JSON.stringify(request), (epochs, newLosses) => {
      page.losses.push(...newLosses);
      page.streamed.push(...newLosses);
      page.progressUpdates += 1;
      $('progress').textContent = `epoch ${epochs} of ${request.epochs}`;
      drawCurve();
    });
    const result = JSON.parse(json);
    result.page_ms = performance.now() - started;
    page.losses = result.loss_history;
    page.result = result;
    drawCurve();
    showResult(result, request);
    $('check').disabled = false;
    $('download-model').disabled = false;
    setStatus('done', `Done: ${result.loss_history.length} epochs.`);
  } catch (error) {
    showError('Training failed', message(error));
  } finally {
    $('train').disabled = false;
  }
}

function checkAgainstCpu() {
  try {
    const check = JSON.parse(gpuC2f.check_against_cpu());
    page.check = check;
    const shadow = check.shadow_check;
    const box = $('check-result');
    box.className = check.passed ? 'passed' : 'failed';
    box.textContent = check.passed
      ? `Agrees: every recorded step within its rounding bounds (${shadow.steps_checked} steps).`
      : 'Disagrees: see below.';
    const worst = (w) => `${w.ratio.toPrecision(3)} of its bound at step ${w.step + 1}`;
    const lines = [
      `Shadow check (the verdict, as --compare): ${shadow.steps_checked} steps replayed on the CPU from the GPU's state` +
        (check.record_every > 1 ? ` (every ${check.record_every}th)` : ''),
      `  worst gradient ${worst(shadow.gradients)}, loss ${worst(shadow.losses)}, weights/m/v ${worst(shadow.states)}`,
    ];
    if (shadow.chain_breaks.length) lines.push(`  broken hand-overs: ${shadow.chain_breaks.join('; ')}`);
    if (check.comparison) {
      const c = check.comparison;
      lines.push(
        `Whole run against the CPU reference (information): loss ${c.loss.relative.toExponential(2)} relative at most, ` +
          `weights ${c.weights.relative.toExponential(2)}; CPU predicts ${fmt(check.cpu_prediction_100, 8)} °F at 100 °C`,
      );
    }
    if (check.cpu_error) lines.push(`The CPU reference failed: ${check.cpu_error}`);
    $('check-detail').textContent = lines.join('\n');
  } catch (error) {
    showError('The CPU check failed', message(error));
  }
}

function downloadModel() {
  try {
    const blob = new Blob([gpuC2f.model_json()], { type: 'application/json' });
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = 'gpu-c2f-model.json';
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (error) {
    showError('Cannot save the model', message(error));
  }
}

async function loadCsv(file) {
  hideError();
  try {
    fillTable(JSON.parse(gpuC2f.parse_csv(await file.text())));
  } catch (error) {
    showError(`Bad CSV file ${file.name}`, message(error));
  }
}

async function loadModel(file) {
  hideError();
  try {
    const text = await file.text();
    const model = JSON.parse(gpuC2f.parse_model(text));
    page.initModel = text;
    $('hidden').value = model.hidden.join(',');
    $('hidden').disabled = true;
    $('init-model').textContent = `Training starts from ${file.name} (${model.architecture}); clear the file to start fresh.`;
  } catch (error) {
    page.initModel = null;
    $('hidden').disabled = false;
    $('init-model').textContent = '';
    showError(`Bad model file ${file.name}`, message(error));
  }
}

// Browsers leave wgpu's adapter name (WebGPU's `description`) empty more
// often than not; vendor and architecture say what it is.
async function browserAdapterName() {
  const adapter = await navigator.gpu.requestAdapter();
  const info = adapter && adapter.info;
  const parts = info ? [info.vendor, info.architecture, info.device, info.description] : [];
  return parts.filter(Boolean).join(' ') || 'unnamed adapter';
}

async function start() {
  drawCurve();
  try {
    await init();
  } catch (error) {
    showError('The page could not load its WebAssembly module', message(error));
    return;
  }
  fillTable(JSON.parse(gpuC2f.seed_pairs()));
  $('add-row').onclick = () => addRow();
  $('remove-row').onclick = () => $('pairs').tBodies[0].lastElementChild?.remove();
  $('seed-rows').onclick = () => fillTable(JSON.parse(gpuC2f.seed_pairs()));
  $('csv-file').onchange = (event) => event.target.files[0] && loadCsv(event.target.files[0]);
  $('model-file').onchange = (event) => {
    const file = event.target.files[0];
    if (file) {
      loadModel(file);
    } else {
      page.initModel = null;
      $('hidden').disabled = false;
      $('init-model').textContent = '';
    }
  };
  $('log-scale').onchange = drawCurve;
  $('predict-input').oninput = predictNow;
  $('train').onclick = train;
  $('check').onclick = checkAgainstCpu;
  $('download-model').onclick = downloadModel;

  if (!('gpu' in navigator)) {
    showError('This browser has no WebGPU', WEBGPU_HELP);
    return;
  }
  try {
    const info = JSON.parse(await gpuC2f.open_gpu());
    page.adapterName = info.name || (await browserAdapterName());
    $('adapter').textContent = `${page.adapterName} (${info.backend}, ${info.device_type})`;
  } catch (error) {
    showError('No WebGPU adapter', `${message(error)}\n\n${WEBGPU_HELP}`);
    return;
  }
  $('train').disabled = false;
  setStatus('ready', 'Ready.');
}

start();
