// The page's glue: reads the form, calls the Rust library (compiled to
// WebAssembly, web/src/lib.rs) and draws what comes back. Everything that
// trains, parses or checks is the library's own code.

// The library, loaded in start() so that a missing build is an error on the
// page rather than a page that never starts.
let gpuC2f = null;

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
  initModelName: null,
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
    shuffle: $('shuffle').checked,
    schedule: $('schedule').value,
    celsius: pairs.celsius,
    fahrenheit: pairs.fahrenheit,
    init_model: page.initModel,
    init_model_name: page.initModelName,
  };
}

// ---- the loss curve --------------------------------------------------------

function niceStep(span) {
  const raw = span / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

// Points drawn at most: beyond it every k-th epoch (and the last) stands
// for its neighbours, so a long run draws as fast as a short one.
const MOST_POINTS = 4000;

function drawCurve() {
  const canvas = $('curve');
  const g = canvas.getContext('2d');
  const [width, height] = [canvas.width, canvas.height];
  const margin = { left: 110, right: 30, top: 20, bottom: 60 };
  g.clearRect(0, 0, width, height);
  g.font = '22px system-ui, sans-serif';
  g.fillStyle = '#4a5263';
  const losses = page.losses;
  const epochs = Math.max(page.totalEpochs, losses.length, 1);
  const log = $('log-scale').checked;
  const shown = (v) => Number.isFinite(v) && (!log || v > 0);
  const y = log ? (v) => Math.log10(v) : (v) => v;
  let [low, high, count] = [Infinity, -Infinity, 0];
  for (const v of losses) {
    if (!shown(v)) continue;
    low = Math.min(low, y(v));
    high = Math.max(high, y(v));
    count += 1;
  }
  if (count === 0) {
    const why = losses.length === 0
      ? (page.totalEpochs ? 'waiting for the first epochs…' : 'press Train')
      : (log ? 'no positive finite loss to draw on a log scale' : 'no finite loss to draw');
    g.fillText(why, margin.left + 20, height / 2);
    return;
  }
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
  const xStep = Math.max(1, niceStep(epochs));
  for (let e = 0; e <= epochs; e += xStep) g.fillText(String(e), px(e), height - margin.bottom + 10);
  g.fillText('epoch', (margin.left + width - margin.right) / 2, height - 28);

  // The curve, as far as it has arrived; a lone point is a dot.
  g.strokeStyle = g.fillStyle = '#2456d6';
  g.lineWidth = 3;
  const every = Math.ceil(losses.length / MOST_POINTS);
  g.beginPath();
  let drawing = false;
  for (let index = 0; index < losses.length; index++) {
    const value = losses[index];
    if (index % every !== 0 && index !== losses.length - 1) continue;
    if (!shown(value)) { drawing = false; continue; }
    const [x, yy] = [px(index + 1), py(value)];
    if (drawing) g.lineTo(x, yy); else g.moveTo(x, yy);
    drawing = true;
  }
  g.stroke();
  if (count === 1) {
    const index = losses.findIndex(shown);
    g.beginPath(); g.arc(px(index + 1), py(losses[index]), 5, 0, 2 * Math.PI); g.fill();
  }
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
  const text = $('predict-input').value.trim();
  const celsius = Number(text);
  $('predict-output').textContent = text !== '' && Number.isFinite(celsius) ? fmt(gpuC2f.predict(celsius), 8) : '–';
}

// Before a run: nothing of the last one stays on screen.
function clearResult() {
  for (const id of ['final-loss', 'prediction-100', 'least-squares', 'predict-output', 'schedule-used', 'timings', 'weights']) {
    $(id).textContent = '–';
  }
  for (const id of ['progress', 'check-result', 'check-detail']) $(id).textContent = '';
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
  clearResult();
  for (const id of ['train', 'check', 'download-model']) $(id).disabled = true;
  setStatus('training', 'Training…');
  drawCurve();
  const started = performance.now();
  try {
    const json = await gpuC2f.train(JSON.stringify(request), (epochs, newLosses) => {
      for (const loss of newLosses) {
        page.losses.push(loss);
        page.streamed.push(loss);
      }
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

// The CPU reference runs on this thread: say so first, and let the page
// paint before it starts.
function checkAgainstCpu() {
  $('check').disabled = true;
  $('check-result').className = '';
  $('check-result').textContent = 'Checking…';
  $('check-detail').textContent = '';
  setTimeout(runCheck, 20);
}

// serde writes an infinite or NaN ratio as null.
const ratio = (value) => (value == null ? 'beyond (NaN or infinite)' : value.toPrecision(3));

function runCheck() {
  try {
    const check = JSON.parse(gpuC2f.check_against_cpu());
    page.check = check;
    const shadow = check.shadow_check;
    const box = $('check-result');
    box.className = check.passed ? 'passed' : 'failed';
    box.textContent = check.passed
      ? `Agrees: every step within its rounding bounds (${shadow.steps_checked} of ${shadow.steps_expected} steps).`
      : `Disagrees: ${check.why}.`;
    const worst = (w) => `${ratio(w.ratio)} of its bound at step ${w.step + 1}`;
    const lines = [
      `Shadow check (the verdict, as --compare): ${shadow.steps_checked} of ${shadow.steps_expected} steps replayed on the CPU from the GPU's state, as it trained`,
      `  worst gradient ${worst(shadow.gradients)}, loss ${worst(shadow.losses)}, weights/m/v ${worst(shadow.states)}`,
    ];
    const power = shadow.power;
    if (power.length) {
      const [first, last] = [power[0], power[power.length - 1]];
      const caught = (p) => `${p.median == null ? 'none' : p.median.toExponential(2)} in epoch ${p.epoch}`;
      lines.push(`  power: catches a gradient off by this fraction of itself (median): ${caught(first)}, ${caught(last)}`);
    }
    if (shadow.chain_breaks.length) lines.push(`  broken hand-overs: ${shadow.chain_breaks.join('; ')}`);
    if (shadow.not_covered.length) lines.push(`  not checked: ${shadow.not_covered.join('; ')}`);
    if (check.comparison) {
      const c = check.comparison;
      const relative = (v) => (v == null ? 'NaN' : v.toExponential(2));
      lines.push(
        `Whole run against the CPU reference (information): loss ${relative(c.loss.relative)} relative at most, ` +
          `weights ${relative(c.weights.relative)}; CPU predicts ${fmt(check.cpu_prediction_100, 8)} °F at 100 °C`,
      );
    }
    $('check-detail').textContent = lines.join('\n');
  } catch (error) {
    $('check-result').textContent = '';
    showError('The CPU check failed', message(error));
  } finally {
    $('check').disabled = false;
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

async function loadCsv(input) {
  const file = input.files[0];
  if (!file) return;
  hideError();
  try {
    fillTable(JSON.parse(gpuC2f.parse_csv(await file.text())));
    setStatus(page.result ? 'done' : 'ready', `Data from ${file.name}.`);
  } catch (error) {
    showError(`Bad CSV file ${file.name}`, message(error));
  } finally {
    input.value = ''; // the same file may be picked again after an edit
  }
}

function startFresh() {
  page.initModel = null;
  page.initModelName = null;
  $('hidden').disabled = false;
  $('init-model').textContent = '';
  $('start-fresh').hidden = true;
}

async function loadModel(input) {
  const file = input.files[0];
  if (!file) return;
  hideError();
  try {
    const text = await file.text();
    const model = JSON.parse(gpuC2f.parse_model(text));
    page.initModel = text;
    page.initModelName = file.name;
    $('hidden').value = model.hidden.join(',');
    $('hidden').disabled = true;
    $('init-model').textContent = `Training starts from ${file.name} (${model.architecture}).`;
    $('start-fresh').hidden = false;
  } catch (error) {
    startFresh();
    showError(`Bad model file ${file.name}`, message(error));
  } finally {
    input.value = '';
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
  document.body.dataset.script = 'running';
  drawCurve();
  try {
    gpuC2f = await import('./dist/gpu_c2f_web.js');
    await gpuC2f.default();
  } catch (error) {
    showError(
      'The page could not load its WebAssembly module',
      `${message(error)}\n\nBuild and serve it with ./scripts/web.sh (opening index.html as a file does not work).`,
    );
    return;
  }
  fillTable(JSON.parse(gpuC2f.seed_pairs()));
  $('add-row').onclick = () => addRow();
  $('remove-row').onclick = () => $('pairs').tBodies[0].lastElementChild?.remove();
  $('seed-rows').onclick = () => fillTable(JSON.parse(gpuC2f.seed_pairs()));
  $('csv-file').onchange = (event) => loadCsv(event.target);
  $('model-file').onchange = (event) => loadModel(event.target);
  $('start-fresh').onclick = startFresh;
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
    page.adapterName = await browserAdapterName();
    const info = JSON.parse(await gpuC2f.open_gpu(page.adapterName));
    $('adapter').textContent = `${info.name} (${info.backend}, ${info.device_type})`;
  } catch (error) {
    showError('No WebGPU adapter', `${message(error)}\n\n${WEBGPU_HELP}`);
    return;
  }
  $('train').disabled = false;
  setStatus('ready', 'Ready.');
}

start();
