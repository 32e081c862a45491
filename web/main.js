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
  initModel: null,   // an uploaded model file's bytes (--init)
  initModelName: null,
  initWeightsOnly: false, // the model file is a .weights.h5 (no activations)
  predictRows: [],   // rows the job predicts besides 100 (an example's, a link's)
  examples: [],      // the shipped examples (examples/data/), in the page
  csv: null,         // an uploaded CSV file's text and name (--data)
  csvName: null,
  choices: null,     // what the library offers (activations, losses, ...)
  job: null,         // the last run's job, as the URL holds it
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

// The table's pairs as CSV text: the job's data when no file is open.
function tableCsv() {
  const pairs = readPairs();
  return 'celsius,fahrenheit\n' + pairs.celsius.map((c, i) => `${c},${pairs.fahrenheit[i]}`).join('\n') + '\n';
}

function isSeedTable() {
  const seed = JSON.parse(gpuC2f.seed_pairs());
  const pairs = readPairs();
  return pairs.celsius.length === seed.celsius.length &&
    pairs.celsius.every((c, i) => c === seed.celsius[i] && pairs.fahrenheit[i] === seed.fahrenheit[i]);
}

const selected = (id) => [...$(id).selectedOptions].map((option) => option.value);

// The form as a gpu-c2f job (src/job.rs): the same description the CLI's
// flags make. The library checks it (check_job) as it checks the flags.
function readJob() {
  const integer = (id, name, least) => {
    const text = $(id).value.trim();
    const value = Number(text);
    if (text === '' || !Number.isInteger(value) || value < least) {
      throw new Error(`${name}: ${JSON.stringify(text)} is not a whole number of at least ${least}`);
    }
    return value;
  };
  const number = (id, name) => {
    const text = $(id).value.trim();
    const value = Number(text);
    if (text === '' || !Number.isFinite(value)) throw new Error(`${name}: ${JSON.stringify(text)} is not a number`);
    return value;
  };
  const rateText = $('learning-rate').value.trim();
  const batchText = $('batch-size').value.trim().toLowerCase();
  const hidden = page.initModel && !page.initWeightsOnly ? null : JSON.parse(gpuC2f.parse_hidden($('hidden').value));
  const output = $('output-activation').value;
  const job = {
    hidden,
    output_activation: page.initModel && !page.initWeightsOnly ? null : output,
    loss: $('loss').value,
    from_logits: $('from-logits').checked,
    metrics: [...document.querySelectorAll('#metrics input:checked')].map((box) => box.value),
    epochs: integer('epochs', 'epochs', 1),
    learning_rate: rateText === '' ? null : number('learning-rate', 'learning rate'),
    batch_size: batchText === 'all' || batchText === '' ? null : integer('batch-size', 'batch size', 1),
    shuffle: $('shuffle').checked,
    seed: integer('seed', 'seed', 0),
    validation_split: number('validation-split', 'validation split'),
    patience: $('patience').value.trim() === '' ? null : integer('patience', 'patience', 0),
    min_delta: number('min-delta', 'min_delta'),
    restore_best_weights: $('restore-best-weights').checked,
    schedule: $('schedule').value,
    data: 'seed',
    x: ['celsius'],
    y: ['fahrenheit'],
    delimiter: null,
    init: page.initModelName,
    predict: [],
  };
  if (page.csv !== null) {
    job.data = { csv: page.csvName };
    job.x = selected('x-columns');
    job.y = selected('y-columns');
  } else if (!isSeedTable()) {
    job.data = { csv: 'table' };
  }
  // Every run predicts at 100 for one input (the tutorial's question), and
  // the rows the form's job asked for (a shipped example's, a link's).
  job.predict = [...(job.x.length === 1 ? [[100]] : []), ...page.predictRows.filter((row) => row.length === job.x.length)];
  gpuC2f.check_job(JSON.stringify(job));
  return job;
}

// The job's data file's text: the open CSV, or the table.
function jobCsv(job) {
  if (job.data === 'seed') return null;
  return page.csv !== null ? page.csv : tableCsv();
}

// A job into the form (from the URL).
function fillForm(partial) {
  // A link may give only some keys: the rest are the defaults.
  const job = { ...page.choices.defaults, ...partial };
  const set = (id, value) => { $(id).value = value == null ? '' : String(value); };
  set('epochs', job.epochs);
  set('learning-rate', job.learning_rate);
  set('hidden', job.hidden == null ? '3,3' : (job.hidden.length === 0 ? 'none'
    : job.hidden.map((l) => (l.activation === 'linear' ? `${l.units}` : `${l.units}:${l.activation}`)).join(',')));
  set('output-activation', job.output_activation || 'linear');
  set('loss', job.loss);
  $('from-logits').checked = job.from_logits;
  for (const box of document.querySelectorAll('#metrics input')) box.checked = job.metrics.includes(box.value);
  set('batch-size', job.batch_size == null ? 'all' : job.batch_size);
  set('seed', job.seed);
  $('shuffle').checked = job.shuffle;
  set('validation-split', job.validation_split);
  set('patience', job.patience);
  set('min-delta', job.min_delta);
  $('restore-best-weights').checked = job.restore_best_weights;
  set('schedule', job.schedule);
  page.predictRows = (job.predict || []).filter((row) => !(row.length === 1 && row[0] === 100));
}

// The library's choices into the selects and boxes: no list is written here.
function fillChoices(choices) {
  const options = (id, names) => {
    $(id).replaceChildren(...names.map((name) => new Option(name, name)));
  };
  options('output-activation', choices.activations);
  options('loss', choices.losses);
  options('schedule', choices.schedules);
  $('metrics').replaceChildren(...choices.metrics.map((name) => {
    const label = document.createElement('label');
    label.style.display = 'inline-flex';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.value = name;
    box.style.width = 'auto';
    label.append(box, name);
    return label;
  }));
  fillForm(choices.defaults);
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
  // The series chosen: the loss (as it streams) and val_loss, or a
  // metric and its val_ twin, once the run is done.
  const chosen = $('curve-series').value;
  const history = new Map((page.result && page.result.metric_history) || []);
  const losses = chosen === 'loss' ? page.losses : (history.get(chosen) || []);
  const epochs = Math.max(page.totalEpochs, losses.length, 1);
  const log = $('log-scale').checked;
  const shown = (v) => Number.isFinite(v) && (!log || v > 0);
  const y = log ? (v) => Math.log10(v) : (v) => v;
  let [low, high, count] = [Infinity, -Infinity, 0];
  const valLosses = chosen === 'loss'
    ? (page.result && page.result.val_loss_history) || []
    : history.get(`val_${chosen}`) || [];
  for (const v of valLosses) {
    if (!shown(v)) continue;
    low = Math.min(low, y(v));
    high = Math.max(high, y(v));
  }
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

  // Early stopping's stop, marked where it stopped.
  const stopped = page.result && page.result.stopped_epoch;
  if (stopped) {
    g.strokeStyle = g.fillStyle = '#b00';
    g.setLineDash([8, 6]);
    g.beginPath(); g.moveTo(px(stopped), margin.top); g.lineTo(px(stopped), height - margin.bottom); g.stroke();
    g.setLineDash([]);
    g.textAlign = 'right';
    g.fillText(`stopped after epoch ${stopped}`, px(stopped) - 8, margin.top);
  }
  // The curves, as far as they have arrived; a lone point is a dot.
  const series = (values, colour, label, row) => {
    g.strokeStyle = g.fillStyle = colour;
    g.lineWidth = 3;
    const every = Math.ceil(values.length / MOST_POINTS);
    g.beginPath();
    let drawing = false;
    for (let index = 0; index < values.length; index++) {
      const value = values[index];
      if (index % every !== 0 && index !== values.length - 1) continue;
      if (!shown(value)) { drawing = false; continue; }
      const [x, yy] = [px(index + 1), py(value)];
      if (drawing) g.lineTo(x, yy); else g.moveTo(x, yy);
      drawing = true;
    }
    g.stroke();
    g.textAlign = 'right';
    g.fillText(label, width - margin.right, margin.top + 30 * row);
  };
  series(losses, '#2456d6', chosen, 1);
  if (valLosses.length) series(valLosses, '#d67a24', `val_${chosen}`, 2);
  g.strokeStyle = g.fillStyle = '#2456d6';
  if (count === 1) {
    const index = losses.findIndex(shown);
    g.beginPath(); g.arc(px(index + 1), py(losses[index]), 5, 0, 2 * Math.PI); g.fill();
  }
}

// ---- results ---------------------------------------------------------------

const fmt = (value, digits = 6) => (Number.isFinite(value) ? Number(value).toPrecision(digits) : String(value));

function showResult(result, job) {
  $('final-loss').textContent = fmt(result.final_loss);
  const at100 = result.prediction_100;
  $('prediction-100').textContent = at100 == null ? '–' : `${fmt(at100, 8)}`;
  const data = job.data === 'seed' ? JSON.parse(gpuC2f.seed_pairs()) : (page.csv === null ? readPairs() : null);
  $('least-squares').textContent = data ? `${fmt(gpuC2f.least_squares_at_100(JSON.stringify(data)), 8)}` : '–';
  $('schedule-used').textContent = `${result.schedule} (${result.architecture})`;
  $('adam-start').textContent = result.adam_start;
  $('early-stop').textContent = result.stopped_epoch
    ? `stopped after epoch ${result.stopped_epoch}` + (result.restored_epoch ? `, weights of epoch ${result.restored_epoch} restored` : '')
    : (job.patience == null ? 'off' : 'ran every epoch');
  const t = result.timings_ms;
  $('timings').textContent =
    `train ${t.train.toFixed(1)} ms` + (t.gpu_train == null ? '' : ` (GPU ${t.gpu_train.toFixed(1)} ms)`) +
    `, pipelines ${t.pipelines.toFixed(1)} ms, upload ${t.upload.toFixed(1)} ms, readback ${t.readback.toFixed(1)} ms; ` +
    `${t.submits} submissions, ${t.readbacks} readbacks; whole run in the page ${result.page_ms.toFixed(0)} ms`;
  const weights = $('weights');
  weights.replaceChildren();
  result.layers.forEach((layer, index) => {
    const title = document.createElement('div');
    title.textContent = `layer ${index} (${layer.activation}): kernel ${layer.kernel.length} x ${layer.bias.length}, bias ${layer.bias.length}`;
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
  if (text === '') { $('predict-output').textContent = '–'; return; }
  try {
    const row = text.split(',').map((part) => Number(part.trim()));
    $('predict-output').textContent = [...gpuC2f.predict(new Float32Array(row))].map((v) => fmt(v, 8)).join(', ');
  } catch (error) {
    $('predict-output').textContent = message(error);
  }
}

// Before a run: nothing of the last one stays on screen.
function clearResult() {
  for (const id of ['final-loss', 'prediction-100', 'least-squares', 'predict-output', 'schedule-used', 'timings', 'weights', 'adam-start', 'early-stop']) {
    $(id).textContent = '–';
  }
  for (const id of ['progress', 'check-result', 'check-detail']) $(id).textContent = '';
}

// ---- actions ---------------------------------------------------------------

// Trains the form's job, or `given` (a link's job, run as it is).
async function train(fromHistory = false, given = null) {
  hideError();
  let job;
  try {
    job = given || readJob();
  } catch (error) {
    showError('Check the form', message(error));
    return;
  }
  page.losses = [];
  page.streamed = [];
  page.totalEpochs = job.epochs;
  page.progressUpdates = 0;
  page.result = null;
  page.check = null;
  clearResult();
  for (const id of ['train', 'check', 'download-model', 'download-script', 'download-certificate']) $(id).disabled = true;
  setStatus('training', 'Training…');
  drawCurve();
  const started = performance.now();
  try {
    const init = page.initModel === null ? undefined : page.initModel;
    const csv = jobCsv(job);
    const json = await gpuC2f.train(JSON.stringify(job), csv === null ? undefined : csv, init, (epochs, newLosses) => {
      for (const loss of newLosses) {
        page.losses.push(loss);
        page.streamed.push(loss);
      }
      page.progressUpdates += 1;
      $('progress').textContent = `epoch ${epochs} of ${job.epochs}`;
      drawCurve();
    });
    const result = JSON.parse(json);
    result.page_ms = performance.now() - started;
    // The tutorial's question, for one input: what is 100 °C?
    const at100 = result.predictions.find(([row]) => row.length === 1 && row[0] === 100);
    result.prediction_100 = at100 ? at100[1][0] : null;
    page.losses = result.loss_history;
    page.result = result;
    const metrics = result.metric_history.map(([name]) => name).filter((name) => !name.startsWith('val_'));
    const keep = $('curve-series').value;
    $('curve-series').replaceChildren(...['loss', ...metrics].map((name) => new Option(name, name, false, name === keep)));
    page.job = job;
    // The run in the URL: a link reproduces it, Back and Forward move between runs.
    const hash = '#job=' + encodeURIComponent(JSON.stringify(job));
    if (!fromHistory && location.hash !== hash) history.pushState(null, '', hash);
    drawCurve();
    showResult(result, job);
    $('check').disabled = false;
    $('download-model').disabled = false;
    $('download-script').disabled = false;
    setStatus('done', `Done: ${result.loss_history.length} epochs.`);
  } catch (error) {
    showError('Training failed', message(error));
  } finally {
    $('train').disabled = false;
  }
}

// The job in the URL (#job=...), into the form; it trains at once unless it
// needs a file the page does not have.
function jobFromUrl() {
  const match = location.hash.match(/^#job=(.*)$/);
  if (!match) return null;
  try {
    const job = JSON.parse(decodeURIComponent(match[1]));
    gpuC2f.check_job(JSON.stringify(job));
    return job;
  } catch (error) {
    showError('The link holds no valid job', message(error));
    return null;
  }
}

function runFromUrl() {
  const partial = jobFromUrl();
  if (!partial) return;
  const job = { ...page.choices.defaults, ...partial };
  fillForm(job);
  // The link's data and model, not whatever the page holds.
  if (job.data === 'seed') {
    useTable();
    fillTable(JSON.parse(gpuC2f.seed_pairs()));
  }
  if (!job.init && page.initModel !== null) startFresh();
  // A shipped example's data file is in the page already.
  const example = page.examples.find((e) => job.data && job.data.csv === e.file);
  if (example && page.csvName !== example.file) openCsv(example.csv, example.file, job.x, job.y);
  const needs = [];
  if (job.init) needs.push(`the model file ${job.init}`);
  if (job.data && job.data.csv && job.data.csv !== 'table') needs.push(`the data file ${job.data.csv}`);
  if (needs.length && (page.initModelName !== job.init || (job.data.csv && page.csvName !== job.data.csv))) {
    setStatus('ready', `This link's run needs ${needs.join(' and ')}: open it, then Train.`);
    return;
  }
  if (job.data && job.data.csv === 'table') useTable();
  train(true, job);
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
    const check = JSON.parse(gpuC2f.check_against_cpu(navigator.userAgent));
    const certificate = check.certificate;
    check.passed = certificate.passed;
    page.check = check;
    const shadow = check.shadow_check;
    const box = $('check-result');
    box.className = check.passed ? 'passed' : 'failed';
    box.textContent = check.passed
      ? `Agrees: every step within its rounding bounds (${shadow.steps_checked} of ${shadow.steps_expected} steps).`
      : `Disagrees: ${certificate.why}.`;
    $('download-certificate').disabled = false;
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
      const cpu = check.cpu_predictions.length ? `; CPU predicts ${fmt(check.cpu_predictions[0][0], 8)} at 100` : '';
      lines.push(
        `Whole run against the CPU reference (information): loss ${relative(c.loss.relative)} relative at most, ` +
          `weights ${relative(c.weights.relative)}${cpu}`,
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

function download(bytes, name, type) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([bytes], { type }));
  link.download = name;
  link.click();
  // Some browsers read the object URL after click() returns.
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

function downloadModel() {
  try {
    const name = `gpu-c2f-model${$('model-format').value}`;
    download(gpuC2f.model_file(name), name, 'application/octet-stream');
  } catch (error) {
    showError('Cannot save the model', message(error));
  }
}

function downloadScript() {
  try {
    download(gpuC2f.keras_script(), 'gpu-c2f-job.py', 'text/x-python');
  } catch (error) {
    showError('Cannot write the Keras script', message(error));
  }
}

function downloadCertificate() {
  download(JSON.stringify(page.check.certificate, null, 2) + '\n', 'gpu-c2f-certificate.json', 'application/json');
}

// CSV text into the page: with a header, the column pickers (`x` and `y`
// chosen, else every column but the last as inputs); without, the table.
function openCsv(text, name, x = null, y = null) {
  const header = JSON.parse(gpuC2f.csv_columns(text));
  if (header === null) {
    // No header: pairs of celsius, fahrenheit, into the table.
    fillTable(JSON.parse(gpuC2f.parse_csv(text)));
    useTable();
    return;
  }
  page.predictRows = [];
  page.csv = text;
  page.csvName = name;
  const chosen = { 'x-columns': x || header.slice(0, -1), 'y-columns': y || header.slice(-1) };
  for (const id of ['x-columns', 'y-columns']) {
    $(id).replaceChildren(...header.map((column) => new Option(column, column, false, chosen[id].includes(column))));
  }
  $('columns').hidden = false;
  $('pairs').hidden = true;
  $('data-name').textContent = `(${name}: pick the columns)`;
}

async function loadCsv(input) {
  const file = input.files[0];
  if (!file) return;
  hideError();
  try {
    openCsv(await file.text(), file.name);
    setStatus(page.result ? 'done' : 'ready', `Data from ${file.name}.`);
  } catch (error) {
    showError(`Bad CSV file ${file.name}`, message(error));
  } finally {
    input.value = ''; // the same file may be picked again after an edit
  }
}

// A shipped example: its data and job into the page, then train.
function runExample(example) {
  hideError();
  startFresh();
  openCsv(example.csv, example.file, example.job.x, example.job.y);
  fillForm(example.job);
  train();
}

function useTable() {
  page.predictRows = [];
  page.csv = null;
  page.csvName = null;
  $('columns').hidden = true;
  $('pairs').hidden = false;
  $('data-name').textContent = '(the table: celsius, fahrenheit)';
}

function startFresh() {
  page.initModel = null;
  page.initModelName = null;
  page.initWeightsOnly = false;
  $('hidden').disabled = false;
  $('output-activation').disabled = false;
  $('init-model').textContent = '';
  $('start-fresh').hidden = true;
}

async function loadModel(input) {
  const file = input.files[0];
  if (!file) return;
  hideError();
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const model = JSON.parse(gpuC2f.parse_model(file.name, bytes));
    page.initModel = bytes;
    page.initModelName = file.name;
    // A .weights.h5 names no activations: the form gives them.
    page.initWeightsOnly = !model.has_activations;
    // A .weights.h5 keeps the form's activations where its widths are the file's.
    let formWidths = null;
    try {
      formWidths = JSON.parse(gpuC2f.parse_hidden($('hidden').value)).map((layer) => layer.units);
    } catch (_) { /* the form's text is not layers: replaced below */ }
    const same = formWidths && formWidths.join(',') === model.hidden.join(',');
    if (model.has_activations || !same) {
      $('hidden').value = model.hidden.length ? model.hidden.join(',') : 'none';
    }
    $('hidden').disabled = model.has_activations;
    $('output-activation').disabled = model.has_activations;
    const adam = model.resumes_adam ? ', resuming its Adam' : '';
    $('init-model').textContent = `Training starts from ${file.name} (${model.architecture}${adam}).`;
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
  page.choices = JSON.parse(gpuC2f.choices());
  fillChoices(page.choices);
  $('use-table').onclick = useTable;
  page.examples = JSON.parse(gpuC2f.examples());
  for (const example of page.examples) {
    const button = document.createElement('button');
    button.textContent = example.name;
    button.onclick = () => runExample(example);
    $('examples').append(button);
  }
  $('download-certificate').onclick = downloadCertificate;
  $('download-script').onclick = downloadScript;
  $('add-row').onclick = () => addRow();
  $('remove-row').onclick = () => $('pairs').tBodies[0].lastElementChild?.remove();
  $('seed-rows').onclick = () => fillTable(JSON.parse(gpuC2f.seed_pairs()));
  $('csv-file').onchange = (event) => loadCsv(event.target);
  $('model-file').onchange = (event) => loadModel(event.target);
  $('start-fresh').onclick = startFresh;
  $('log-scale').onchange = drawCurve;
  $('curve-series').onchange = drawCurve;
  $('predict-input').oninput = predictNow;
  $('train').onclick = () => train();
  window.addEventListener('popstate', runFromUrl);
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
  runFromUrl();
}

start();
