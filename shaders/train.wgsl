// gpu-c2f training kernels: dense forward pass, loss and output error,
// backprop, the gradient reduction over samples, and Keras's Adam update.
//
// Every concept is written once, as a function of one work item (`*_at`).
// A training step (one mini-batch, one Adam update) is a typed list of
// operations (src/step.rs): gather_batch (when batches are shuffled or
// chunked) -> dense_forward per layer -> output_error -> dense_backward per
// layer, last to second -> gradient_partials per layer and for the
// samples' losses -> reduce_partials (0+ levels) -> adam_step -> finish_step. The host
// lowers it, in one place (src/gpu/plan.rs), to one `DispatchArgs` per
// operation. Three schedules run that list:
//   - dispatch: one GPU dispatch per operation, many steps recorded into
//     one compute pass (the entry points at the end of this file);
//   - samples: the same, with the per-sample operations (forward to
//     gradient_partials) replaced by one `sample_partials` dispatch that the
//     host writes out for the architecture (src/gpu/samples.rs,
//     shaders/sample_partials.wgsl): one thread per block of samples, the
//     whole network per sample in registers;
//   - fused: one workgroup runs many steps in one dispatch, calling the same
//     `*_at` functions in the list's order with a barrier between
//     operations (shaders/fused_steps.wgsl, whose `fused_step` the host
//     writes out for each run with the list's sizes as constants:
//     src/gpu/fused.rs).
// The CPU reference (src/cpu.rs) walks the same list in the same order of
// operations, so on a driver with IEEE f32 and no FMA contraction they
// agree bit for bit.

// Threads per workgroup of the one-dispatch-per-kernel schedule.
override workgroup_size: u32 = 64u;
// Threads of the fused schedule's single workgroup.
override fused_workgroup_size: u32 = 8u;
// Samples (or partial sums) one thread adds in order before the next level
// of the reduction; the host sets it from step::REDUCE_BLOCK.
override reduce_block: u32 = 256u;


// Sizes and offsets fixed for a whole training run.
struct RunArgs {
    // Samples in the dataset, and how they are cut into batches.
    samples: u32,
    batch_size: u32,
    // Rows of the per-sample tensors: the batch, or a chunk of it.
    chunk_size: u32,
    steps_per_epoch: u32,
    // 1 when each epoch draws its batches from a shuffled order.
    shuffle: u32,
    // The shuffle's seed and Feistel half width (src/batching.rs).
    seed_low: u32,
    seed_high: u32,
    half_bits: u32,
    param_count: u32,
    // In `tensors`: the dataset (celsius, then fahrenheit), the batch's
    // inputs and targets, the network's output and its error, each
    // sample's loss.
    data_offset: u32,
    input_offset: u32,
    target_offset: u32,
    output_offset: u32,
    output_delta_offset: u32,
    sample_loss_offset: u32,
    // In `reduce`: the fully reduced value of each row (gradients, then the
    // loss sum in row `param_count`).
    totals_offset: u32,
    // Adam constants, computed in f64 on the host and rounded once (as Keras
    // casts its Python floats).
    one_minus_beta_1: f32,
    one_minus_beta_2: f32,
    epsilon: f32,
    // Step records for the shadow check (src/shadow.rs): every
    // `record_every`-th step (0: none), `record_count` of them, from
    // `history.losses[record_offset]`, each `7 param_count + 1` values:
    // weights, m and v before the step, its gradients, its loss, and
    // weights, m and v after it.
    record_every: u32,
    record_offset: u32,
    record_count: u32,
    // The loss (LOSS_*, `Loss::code`).
    loss: u32,
    // Rows of the dataset: the `samples` trained on, then the
    // `validation_samples` held out (Keras's validation_split); each row's
    // `input_width` inputs (the network's input width) and `output_width`
    // targets (its output units).
    data_rows: u32,
    input_width: u32,
    output_width: u32,
    validation_samples: u32,
    // In `reduce`: each validation block's loss sum. In `tensors`: each
    // validation row's loss, then its scratch: two rows of activations of
    // `widest` values (the widest layer's width) and one of sums.
    validation_offset: u32,
    validation_losses: u32,
    validation_scratch: u32,
    widest: u32,
    // The network's layers, one `DispatchArgs` each in `dispatch_args` from
    // `layer_table` (inputs, units, kernel and bias offsets, activation).
    layer_table: u32,
    layer_count: u32,
    // In `history.losses`: where each epoch's validation loss goes.
    val_loss_offset: u32,
    // Keras's EarlyStopping: 0 off, 1 on, 2 on and keeping the best
    // epoch's weights in params [3P, 4P); its patience and min_delta.
    early_stopping: u32,
    patience: u32,
    min_delta: f32,
    // Keras's metrics: `metric_count` of them, 4-bit codes in
    // `metric_codes` (`metric_code`); each sample's values in `tensors` from
    // `sample_metrics` (a row of `chunk_size` a metric), their sums in rows
    // param_count + 1 + m of `reduce`, the epoch's totals in `reduce` from
    // `metric_totals`; each metric's `epochs` values in `history.losses`
    // from `metric_offset`, then its validation values from
    // `val_metric_offset`.
    epochs: u32,
    metric_count: u32,
    metric_codes: u32,
    sample_metrics: u32,
    metric_totals: u32,
    metric_offset: u32,
    val_metric_offset: u32,
}

// What one dispatch works on (DispatchArgs in src/gpu/abi.rs).
struct DispatchArgs {
    // Dense layer: `inputs` -> `units`.
    inputs: u32,
    units: u32,
    kernel_offset: u32,
    bias_offset: u32,
    // Forward: activations in/out. Backward: errors in (unit side) / out.
    in_offset: u32,
    out_offset: u32,
    // Reduction: `rows` rows of `in_len` values at `src_offset` become rows
    // of `out_len` values at `dst_offset` in `reduce`.
    rows: u32,
    in_len: u32,
    out_len: u32,
    src_offset: u32,
    dst_offset: u32,
    // Per-sample kernels: the first row of the batch this dispatch works on
    // (a batch too large for one buffer runs in chunks; a multiple of
    // reduce_block).
    chunk_first: u32,
    // Dense layers and the output error: the activation (ACTIVATION_*)
    // applied by a forward pass, or whose derivative scales a backward
    // pass's errors (the layer below's) or the output error (the last
    // layer's).
    activation: u32,
    // Forward, nonlinear layers: where the sums z are kept for the backward
    // pass (the rows of the layer's errors, which overwrites them).
    pre_offset: u32,
}



struct History {
    // Training steps finished; the step in progress is t = step + 1.
    step: u32,
    // The first step whose loss or updated weights were not finite
    // (0xffffffff while none): divergence is flagged here, on the GPU, and
    // read back with the results instead of checked by the host each epoch.
    first_bad_step: atomic<u32>,
    // This epoch's batch losses times batch sizes so far (Keras's `Mean`).
    epoch_total: f32,
    // Early stopping (`watch_epoch`): the best monitored value, its 1-based
    // epoch (0: none yet), the epochs since, and the 1-based epoch after
    // which training stopped (0: it goes on; every kernel then returns at
    // once).
    best: f32,
    wait: u32,
    best_epoch: u32,
    stopped_epoch: u32,
    _pad: u32,
    // Each epoch's loss: its batches' losses (each from the forward pass
    // before that batch's update) weighted by batch size, as Keras's history.
    losses: array<f32>,
}

// The current training step: its number t (1-based, Adam's t), its batch
// (`total` samples from position `batch_first` of the epoch's order), and
// the chunk of that batch a dispatch works on (`size` rows from position
// `first`, whose sums start at reduction block `block0`). Read once per
// invocation and phase: `history.step` only moves in `finish_step`, the last
// phase.
struct Batch {
    t: u32,
    epoch: u32,
    batch_first: u32,
    total: u32,
    first: u32,
    size: u32,
    block0: u32,
}

fn current_batch(chunk_first: u32) -> Batch {
    let done = history.step;
    let batch_first = (done % run.steps_per_epoch) * run.batch_size;
    let total = min(run.batch_size, run.samples - batch_first);
    let size = min(run.chunk_size, total - min(chunk_first, total));
    return Batch(
        done + 1u,
        done / run.steps_per_epoch,
        batch_first,
        total,
        batch_first + chunk_first,
        size,
        chunk_first / reduce_block,
    );
}

// src/batching.rs, bit for bit: a keyed 4-round Feistel permutation of
// [0, 4^half_bits), cycle-walked into [0, samples).
fn hash32(value: u32) -> u32 {
    var x = value;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn sample_index(epoch: u32, position: u32) -> u32 {
    if run.shuffle == 0u {
        return position;
    }
    let base = hash32(hash32(run.seed_low ^ 0x9e3779b9u) ^ run.seed_high ^ hash32(epoch));
    let mask = (1u << run.half_bits) - 1u;
    var x = position;
    loop {
        var left = x >> run.half_bits;
        var right = x & mask;
        for (var round = 0u; round < 4u; round++) {
            let next = left ^ (hash32(right ^ hash32(base + round)) & mask);
            left = right;
            right = next;
        }
        x = (left << run.half_bits) | right;
        if x < run.samples {
            break;
        }
    }
    return x;
}

// The batch's inputs and targets, copied from the dataset in the epoch's
// shuffled order; item i of the batch.
fn gather_batch_at(i: u32, batch: Batch) {
    if i >= batch.size {
        return;
    }
    let sample = sample_index(batch.epoch, batch.first + i);
    for (var k = 0u; k < run.input_width; k++) {
        tensors[run.input_offset + i * run.input_width + k] = tensors[run.data_offset + sample * run.input_width + k];
    }
    for (var k = 0u; k < run.output_width; k++) {
        tensors[run.target_offset + i * run.output_width + k] = tensors[targets_of_row(sample) + k];
    }
}

// Where dataset row `row`'s targets start: every row's inputs come first.
fn targets_of_row(row: u32) -> u32 {
    return run.data_offset + run.data_rows * run.input_width + row * run.output_width;
}

// Which `DispatchArgs` a dispatch works on, or how many training steps a
// fused dispatch runs (bound with a dynamic offset per dispatch).
struct Current {
    dispatch: u32,
    fused_steps: u32,
}

// Weights in [0, P), Adam's m in [P, 2P), v in [2P, 3P), and with
// restore_best_weights the best epoch's weights in [3P, 4P).
@group(0) @binding(0) var<storage, read_write> params: array<f32>;
// Per-sample activations and errors of every layer, targets, losses.
@group(0) @binding(1) var<storage, read_write> tensors: array<f32>;
// Partial sums of every reduction level, then the totals.
@group(0) @binding(2) var<storage, read_write> reduce: array<f32>;
@group(0) @binding(3) var<storage, read_write> history: History;
// Adam's bias-corrected step size alpha_t for t = 1, 2, ... (host-computed).
@group(0) @binding(4) var<storage, read> step_sizes: array<f32>;
// The arguments of every dispatch of a training step's list.
@group(0) @binding(5) var<storage, read> dispatch_args: array<DispatchArgs>;
@group(0) @binding(6) var<uniform> run: RunArgs;
@group(1) @binding(0) var<uniform> current: Current;

// Dense layers work in register tiles: an item computes `sample_tile`
// samples x `unit_tile` units (forward) or inputs (backward), so every value
// it loads is used several times. Each output is still one sum in index
// order, as the CPU reference adds it; vec4 arithmetic rounds each component
// on its own. The host sets the tile (src/gpu/plan.rs, `Tile`), one for
// the whole network: for the dispatch schedule 8 x 8 when any layer is
// wider than 4, else 4 x 4; 1 x 1 for the fused schedule, whose few threads
// want many small items. Both sides are at most 8: a row of a
// tile is two vec4 halves (`Row`), and a tile's sums are `Sums`, row q in
// `[2q]` (columns 0..3) and `[2q + 1]` (4..7); a second half is only
// touched when the tile is wider than 4. The code that touches it is marked
// "wide tiles only", and modules whose tiles are at most 4 x 4 (the fused
// and samples schedules, and the dispatch schedule's narrow networks) are
// built without it (src/gpu/pipelines.rs, `train_shader`): on lavapipe that
// halves the fused schedule's pipeline creation.
override sample_tile: u32 = 8u;
override unit_tile: u32 = 8u;

alias Row = array<vec4<f32>, 2>;
alias Sums = array<vec4<f32>, 16>;

// Items of a layer's tiles: ceil(samples / sample_tile) x ceil(width / unit_tile).
fn tile_of(index: u32, width: u32) -> vec2<u32> {
    let tiles = (width + unit_tile - 1u) / unit_tile;
    return vec2<u32>((index / tiles) * sample_tile, (index % tiles) * unit_tile);
}

// The loops over a tile run to the tile's constants and at most 4 long,
// so a driver unrolls them and every index into a tile becomes a constant:
// a loop left rolled with a computed index would send the whole tile from
// registers to scratch memory (on lavapipe, 8 x 8 tiles ran 1.6-2.5x
// slower so). The store loops, which a driver may not unroll, take row 0
// and move the rows up (`next_rows`) instead of indexing row q.

// tensors[base + k * stride] for k < n where first + k < limit, else 0.
fn tensor_row(base: u32, stride: u32, first: u32, limit: u32, n: u32) -> Row {
    var values = Row();
    for (var k = 0u; k < min(n, 4u); k++) {
        if first + k < limit {
            values[0][k] = tensors[base + k * stride];
        }
    }
    // wide tiles only {
    for (var k = 4u; k < n; k++) {
        if first + k < limit {
            values[1][k - 4u] = tensors[base + k * stride];
        }
    }
    // } wide tiles only
    return values;
}

// params[base + k * stride] for k < n where first + k < limit, else 0.
fn param_row(base: u32, stride: u32, first: u32, limit: u32, n: u32) -> Row {
    var values = Row();
    for (var k = 0u; k < min(n, 4u); k++) {
        if first + k < limit {
            values[0][k] = params[base + k * stride];
        }
    }
    // wide tiles only {
    for (var k = 4u; k < n; k++) {
        if first + k < limit {
            values[1][k - 4u] = params[base + k * stride];
        }
    }
    // } wide tiles only
    return values;
}

// sums[row q] += x[q] * w for the tile's first `rows` rows: for each
// output a multiply, then an add, as the CPU reference's `sum += x * w`.
fn add_outer_product(sums: ptr<function, Sums>, x: Row, w: Row, rows: u32) {
    for (var q = 0u; q < min(rows, 4u); q++) {
        add_row(sums, q, x[0][q], w);
    }
    // wide tiles only {
    for (var q = 4u; q < rows; q++) {
        add_row(sums, q, x[1][q - 4u], w);
    }
    // } wide tiles only
}

fn add_row(sums: ptr<function, Sums>, q: u32, value: f32, w: Row) {
    (*sums)[2u * q] += value * w[0];
    // wide tiles only {
    if unit_tile > 4u {
        (*sums)[2u * q + 1u] += value * w[1];
    }
    // } wide tiles only
}

// Writes the tile `sums` (+ `bias[c]`) to out[s][j] through `finish`,
// inside the batch and the layer's width.
fn store_tile(sums: Sums, bias: Row, finish: Finish, width: u32, tile: vec2<u32>, size: u32) {
    var rows = sums;
    for (var q = 0u; q < sample_tile; q++) {
        store_row(rows[0], rows[1], q, bias, finish, width, tile, size);
        rows = next_rows(rows);
    }
}

// The tile's rows moved up by one: the store loops take row 0 each time, so
// every index into a tile stays a constant even where a loop is not unrolled.
fn next_rows(sums: Sums) -> Sums {
    return Sums(
        sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], sums[8], sums[9],
        sums[10], sums[11], sums[12], sums[13], sums[14], sums[15], vec4<f32>(), vec4<f32>(),
    );
}

fn store_row(low: vec4<f32>, high: vec4<f32>, q: u32, bias: Row, finish: Finish, width: u32, tile: vec2<u32>, size: u32) {
    if tile.x + q >= size {
        return;
    }
    let first = (tile.x + q) * width + tile.y;
    for (var c = 0u; c < min(unit_tile, 4u); c++) {
        if tile.y + c < width {
            store_dense(first + c, low[c] + bias[0][c], finish);
        }
    }
    // wide tiles only {
    for (var c = 4u; c < unit_tile; c++) {
        if tile.y + c < width {
            store_dense(first + c, high[c - 4u] + bias[1][c - 4u], finish);
        }
    }
    // } wide tiles only
}

// How a dense kernel stores a finished sum, element `element` of the
// layer's rows: forward, the layer's activation of it, keeping the sum z
// at `pre_offset` when the layer is nonlinear; backward, the error times
// the derivative of the layer below's activation at its z, which the
// element holds until then.
struct Finish {
    activation: u32,
    forward: bool,
    out_offset: u32,
    pre_offset: u32,
}

fn store_dense(element: u32, sum: f32, finish: Finish) {
    let index = finish.out_offset + element;
    if finish.activation == ACTIVATION_LINEAR {
        tensors[index] = sum;
    } else if finish.forward {
        tensors[finish.pre_offset + element] = sum;
        tensors[index] = activate(finish.activation, sum);
    } else {
        tensors[index] = sum * activation_derivative(finish.activation, tensors[index]);
    }
}

// out[s][j] = f((sum_i in[s][i] * kernel[i][j]) + bias[j]), f the layer's activation.
fn dense_forward_at(index: u32, args: DispatchArgs, batch: Batch) {
    let tile = tile_of(index, args.units);
    if tile.x >= batch.size {
        return;
    }
    var sums = Sums();
    for (var i = 0u; i < args.inputs; i++) {
        let x = tensor_row(args.in_offset + tile.x * args.inputs + i, args.inputs, tile.x, batch.size, sample_tile);
        let w = param_row(args.kernel_offset + i * args.units + tile.y, 1u, tile.y, args.units, unit_tile);
        add_outer_product(&sums, x, w, sample_tile);
    }
    let bias = param_row(args.bias_offset + tile.y, 1u, tile.y, args.units, unit_tile);
    let finish = Finish(args.activation, true, args.out_offset, args.pre_offset);
    store_tile(sums, bias, finish, args.units, tile, batch.size);
}

// Each sample's loss (summed over the batch by the reduction) and the
// error fed back, dL/dz (`output_error_of`). The error's rows hold the output
// layer's sums z when it is nonlinear.
// A sample's loss is the mean of its output units' (Keras's mean over the
// last axis); the error fed back is each unit's over N x units.
fn output_error_at(sample: u32, args: DispatchArgs, batch: Batch) {
    if sample >= batch.size {
        return;
    }
    let units = run.output_width;
    var sum = 0.0;
    var metric_sums = array<f32, 8>();
    for (var j = 0u; j < units; j++) {
        let output = tensors[run.output_offset + sample * units + j];
        let index = run.output_delta_offset + sample * units + j;
        let z = select(tensors[index], output, args.activation == ACTIVATION_LINEAR);
        let y = tensors[run.target_offset + sample * units + j];
        for (var m = 0u; m < run.metric_count; m++) {
            metric_sums[m] += metric_value(metric_code(m), output, z, y, args.activation);
        }
        let error = output_error_of(output, z, y, args.activation, batch.total * units);
        sum += error.loss;
        tensors[index] = error.delta;
    }
    tensors[run.sample_loss_offset + sample] = sum / f32(units);
    for (var m = 0u; m < run.metric_count; m++) {
        tensors[run.sample_metrics + m * run.chunk_size + sample] = metric_sums[m] / f32(units);
    }
}

// Keras's metrics (src/loss.rs, `Metric`): one output unit's value; a
// sample's is the mean over its units, an epoch's the mean over its samples
// (Keras's MeanMetricWrapper). The codes are `Metric::code`.
const METRIC_MEAN_SQUARED_ERROR: u32 = 0u;
const METRIC_MEAN_ABSOLUTE_ERROR: u32 = 1u;
const METRIC_BINARY_CROSSENTROPY: u32 = 2u;
const METRIC_BINARY_ACCURACY: u32 = 3u;

// The m-th metric's code, 4 bits each in `run.metric_codes`.
fn metric_code(m: u32) -> u32 {
    return (run.metric_codes >> (4u * m)) & 0xfu;
}

fn metric_value(metric: u32, output: f32, z: f32, y: f32, activation: u32) -> f32 {
    let r = output - y;
    switch metric {
        case METRIC_MEAN_ABSOLUTE_ERROR: {
            return abs(r);
        }
        case METRIC_BINARY_CROSSENTROPY: {
            return crossentropy_of(output, z, y, activation);
        }
        case METRIC_BINARY_ACCURACY: {
            // binary_accuracy: (output > 0.5) == y.
            let predicted = select(0.0, 1.0, output - 0.5 > 0.0);
            return select(1.0, 0.0, abs(y - predicted) > 0.0);
        }
        default: {
            return r * r;
        }
    }
}

// Keras's losses (src/loss.rs has each formula and the CPU reference's twin
// of this code; docs/losses.md the sources). The codes are `Loss::code`.
const LOSS_MEAN_SQUARED_ERROR: u32 = 0u;
const LOSS_MEAN_ABSOLUTE_ERROR: u32 = 1u;
const LOSS_HUBER: u32 = 2u;
const LOSS_BINARY_CROSSENTROPY: u32 = 3u;
const LOSS_BINARY_CROSSENTROPY_FROM_LOGITS: u32 = 4u;

// One sample's loss and dL/dz, for a batch of `total` (the loss is the
// batch's mean, Keras's sum_over_batch_size): `output` the network's
// output, `z` the output layer's sum (`output` itself when linear),
// `activation` that layer's.
struct OutputError {
    loss: f32,
    delta: f32,
}

fn output_error_of(output: f32, z: f32, y: f32, activation: u32, total: u32) -> OutputError {
    let n = f32(total);
    let crossentropy = run.loss == LOSS_BINARY_CROSSENTROPY || run.loss == LOSS_BINARY_CROSSENTROPY_FROM_LOGITS;
    if crossentropy && activation == ACTIVATION_SIGMOID {
        // Keras's `_keras_logits` shortcut: from the sigmoid's input (with
        // from_logits too, where Keras warns).
        return OutputError(logits_crossentropy(z, y), (sigmoid(z) - y) / n);
    }
    let r = output - y;
    var loss: f32;
    var derivative: f32;
    switch run.loss {
        case LOSS_MEAN_ABSOLUTE_ERROR: {
            loss = abs(r);
            derivative = sign_of(r);
        }
        case LOSS_HUBER: {
            // Keras's `abs_error <= delta` (delta 1) is the quadratic side.
            let linear = abs(r) - 1.0;
            loss = select(0.5 * (r * r), abs(r) - 0.5, linear > 0.0);
            derivative = select(r, sign_of(r), linear > 0.0);
        }
        case LOSS_BINARY_CROSSENTROPY: {
            // Probabilities clipped to [epsilon, 1 - epsilon] (Keras's 1e-7);
            // the clip's gradient is 0 outside.
            let p = clamp(output, 1e-7, 0.9999999);
            loss = crossentropy_of(output, z, y, activation);
            let inside = -(y / p) + (1.0 - y) / (1.0 - p);
            derivative = select(select(inside, 0.0, output - 0.9999999 > 0.0), 0.0, 1e-7 - output > 0.0);
        }
        case LOSS_BINARY_CROSSENTROPY_FROM_LOGITS: {
            loss = logits_crossentropy(output, y);
            derivative = sigmoid(output) - y;
        }
        default: {
            loss = r * r;
            derivative = 2.0 * r;
        }
    }
    let delta = derivative / n;
    if activation == ACTIVATION_LINEAR {
        return OutputError(loss, delta);
    }
    return OutputError(loss, delta * activation_derivative(activation, z));
}

// Binary cross-entropy of a probability output clipped to [1e-7, 1 - 1e-7]
// (Keras's epsilon), or after a sigmoid from its logit z (Keras's
// `_keras_logits`).
fn crossentropy_of(output: f32, z: f32, y: f32, activation: u32) -> f32 {
    if activation == ACTIVATION_SIGMOID {
        return logits_crossentropy(z, y);
    }
    let p = clamp(output, 1e-7, 0.9999999);
    return -(y * log(p) + (1.0 - y) * log(1.0 - p));
}

// 1, -1, or 0 at 0 (TensorFlow's gradient of abs).
fn sign_of(x: f32) -> f32 {
    return select(select(0.0, -1.0, -x > 0.0), 1.0, x > 0.0);
}

// TensorFlow's sigmoid_cross_entropy_with_logits.
fn logits_crossentropy(x: f32, y: f32) -> f32 {
    return (select(0.0, x, x > 0.0) - x * y) + log(1.0 + exp(-abs(x)));
}

// Keras's activations (src/activation.rs has each formula, its derivative
// as the backends take it, and the CPU reference's twin of this code,
// operation for operation; docs/activations.md the sources). The codes are
// `Activation::code`.
const ACTIVATION_LINEAR: u32 = 0u;
const ACTIVATION_RELU: u32 = 1u;
const ACTIVATION_TANH: u32 = 2u;
const ACTIVATION_SIGMOID: u32 = 3u;
const ACTIVATION_SOFTPLUS: u32 = 4u;
const ACTIVATION_ELU: u32 = 5u;
const ACTIVATION_LEAKY_RELU: u32 = 6u;
const ACTIVATION_GELU: u32 = 7u;
const ACTIVATION_SILU: u32 = 8u;

fn activate(activation: u32, z: f32) -> f32 {
    switch activation {
        case ACTIVATION_RELU: {
            return select(0.0, z, z > 0.0);
        }
        case ACTIVATION_TANH: {
            return saturating_tanh(z);
        }
        case ACTIVATION_SIGMOID: {
            return sigmoid(z);
        }
        case ACTIVATION_SOFTPLUS: {
            return select(0.0, z, z > 0.0) + log(1.0 + exp(-abs(z)));
        }
        case ACTIVATION_ELU: {
            return select(exp(min(z, 0.0)) - 1.0, z, z > 0.0);
        }
        case ACTIVATION_LEAKY_RELU: {
            return select(0.2 * z, z, z > 0.0);
        }
        case ACTIVATION_GELU: {
            return (0.5 * z) * (1.0 + erf(z / 1.4142135623730951));
        }
        case ACTIVATION_SILU: {
            return z * sigmoid(z);
        }
        default: {
            return z;
        }
    }
}

// The derivative at z: relu's is 0 at 0, leaky_relu's the slope, elu's 1.
fn activation_derivative(activation: u32, z: f32) -> f32 {
    switch activation {
        case ACTIVATION_RELU: {
            return select(0.0, 1.0, z > 0.0);
        }
        case ACTIVATION_TANH: {
            let t = saturating_tanh(z);
            return 1.0 - t * t;
        }
        case ACTIVATION_SIGMOID: {
            let s = sigmoid(z);
            return s * (1.0 - s);
        }
        case ACTIVATION_SOFTPLUS: {
            return sigmoid(z);
        }
        case ACTIVATION_ELU: {
            // TensorFlow's EluGrad, from the output y: y + 1 where y < 0.
            return select((exp(min(z, 0.0)) - 1.0) + 1.0, 1.0, z > 0.0);
        }
        case ACTIVATION_LEAKY_RELU: {
            return select(0.2, 1.0, z > 0.0);
        }
        case ACTIVATION_GELU: {
            let cdf = 0.5 * (1.0 + erf(z / 1.4142135623730951));
            let density = exp(-0.5 * (z * z)) * 0.3989422804014327;
            return cdf + z * density;
        }
        case ACTIVATION_SILU: {
            let s = sigmoid(z);
            return s * (1.0 + z * (1.0 - s));
        }
        default: {
            return 1.0;
        }
    }
}

// tanh of x clamped to [-10, 10], where f32's tanh is already +-1: WGSL's
// tanh may be computed as sinh / cosh, which is inf / inf = NaN once exp
// overflows (SwiftShader's is, from |x| ~ 45).
fn saturating_tanh(x: f32) -> f32 {
    return tanh(clamp(x, -10.0, 10.0));
}

// 1 / (1 + exp(-x)) as e / (1 + e) or 1 / (1 + e), e = exp(-|x|): exp
// never overflows.
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    let d = 1.0 + e;
    if -x > 0.0 {
        return e / d;
    }
    return 1.0 / d;
}

// erf as TensorFlow's CPU kernels compute it in f32 (Eigen's
// generic_fast_erf_float): x p(x^2) / q(x^2) on x clamped to [-4, 4].
fn erf(value: f32) -> f32 {
    let x = clamp(value, -4.0, 4.0);
    let x2 = x * x;
    var p = -2.72614225801306e-10;
    p = x2 * p + 2.77068142495902e-08;
    p = x2 * p + -2.10102402082508e-06;
    p = x2 * p + -5.69250639462346e-05;
    p = x2 * p + -7.34990630326855e-04;
    p = x2 * p + -2.95459980854025e-03;
    p = x2 * p + -1.60960333262415e-02;
    var q = -1.45660718464996e-05;
    q = x2 * q + -2.13374055278905e-04;
    q = x2 * q + -1.68282697438203e-03;
    q = x2 * q + -7.37332916720468e-03;
    q = x2 * q + -1.42647390514189e-02;
    return (x * p) / q;
}

// Error passed back through a Dense layer, to the sums of the layer below
// (activation f): err_in[s][i] = (sum_j err_out[s][j] * kernel[i][j]) * f'(z[s][i]).
fn dense_backward_at(index: u32, args: DispatchArgs, batch: Batch) {
    let tile = tile_of(index, args.inputs);
    if tile.x >= batch.size {
        return;
    }
    var sums = Sums();
    for (var j = 0u; j < args.units; j++) {
        let e = tensor_row(args.in_offset + tile.x * args.units + j, args.units, tile.x, batch.size, sample_tile);
        let w = param_row(args.kernel_offset + tile.y * args.units + j, args.units, tile.y, args.inputs, unit_tile);
        add_outer_product(&sums, e, w, sample_tile);
    }
    let finish = Finish(args.activation, false, args.out_offset, 0u);
    store_tile(sums, Row(), finish, args.inputs, tile, batch.size);
}

// First level of every sum over samples, one layer at a time. Row p of
// `reduce` belongs to parameter p (kernel entry [i][j] at kernel_offset +
// i * units + j, the biases right after: "input" row i == inputs, whose a is
// 1); row param_count is the loss, a layer of no inputs and one unit whose
// err is each sample's loss (its bias row's a is 1). An item adds, for one block of
// `reduce_block` consecutive samples in sample order, a unit_tile x
// unit_tile tile of a[s][i] * err[s][j]. `args.in_len` is the number of a
// rows: inputs + 1 (the bias row).
fn gradient_partials_at(index: u32, args: DispatchArgs, batch: Batch) {
    let column_tiles = (args.units + unit_tile - 1u) / unit_tile;
    let tiles = ((args.in_len + unit_tile - 1u) / unit_tile) * column_tiles;
    // The chunk's blocks, clipped to the batch's.
    let block = index / tiles;
    if !block_in_chunk(block, args, batch) {
        return;
    }
    let first_row = ((index % tiles) / column_tiles) * unit_tile;
    let first_column = ((index % tiles) % column_tiles) * unit_tile;
    let first = block * reduce_block;
    let end = min(first + reduce_block, batch.size);
    var sums = Sums();
    for (var s = first; s < end; s++) {
        let err = tensor_row(args.out_offset + s * args.units + first_column, 1u, first_column, args.units, unit_tile);
        // a[s][i] for the tile's rows; the bias row's a is 1.
        var a = Row(vec4<f32>(1.0), vec4<f32>(1.0));
        for (var q = 0u; q < min(unit_tile, 4u); q++) {
            if first_row + q < args.inputs {
                a[0][q] = tensors[args.in_offset + s * args.inputs + first_row + q];
            }
        }
        // wide tiles only {
        for (var q = 4u; q < unit_tile; q++) {
            if first_row + q < args.inputs {
                a[1][q - 4u] = tensors[args.in_offset + s * args.inputs + first_row + q];
            }
        }
        // } wide tiles only
        add_outer_product(&sums, a, err, unit_tile);
    }
    let column = args.dst_offset + batch.block0 + block;
    let tile = vec2<u32>(first_row, first_column);
    var rows = sums;
    for (var q = 0u; q < unit_tile; q++) {
        store_partials(rows[0], rows[1], q, args, tile, column);
        rows = next_rows(rows);
    }
}

// Whether block `block` of the chunk is one of its blocks and has a column
// in the first reduction level (`args.out_len` columns): a block past the
// end of a smaller (last) batch still writes its zero sums, so no stale
// partial from an earlier batch enters the next level.
fn block_in_chunk(block: u32, args: DispatchArgs, batch: Batch) -> bool {
    let chunk_blocks = (run.chunk_size + reduce_block - 1u) / reduce_block;
    return block < chunk_blocks && batch.block0 + block < args.out_len;
}

// Row q of a gradient tile (a-row first_row + q, columns from
// first_column) into its parameters' rows of `reduce`, at `column`.
fn store_partials(low: vec4<f32>, high: vec4<f32>, q: u32, args: DispatchArgs, tile: vec2<u32>, column: u32) {
    let i = tile.x + q;
    if i >= args.in_len {
        return;
    }
    let first = args.kernel_offset + i * args.units + tile.y;
    for (var c = 0u; c < min(unit_tile, 4u); c++) {
        if tile.y + c < args.units {
            reduce[column + (first + c) * args.out_len] = low[c];
        }
    }
    // wide tiles only {
    for (var c = 4u; c < unit_tile; c++) {
        if tile.y + c < args.units {
            reduce[column + (first + c) * args.out_len] = high[c - 4u];
        }
    }
    // } wide tiles only
}

// A further level: `reduce_block` consecutive partial sums of a row become one.
fn reduce_partials_at(index: u32, args: DispatchArgs) {
    if index >= args.rows * args.out_len {
        return;
    }
    let row = index % args.rows;
    let block = index / args.rows;
    let first = block * reduce_block;
    let end = min(first + reduce_block, args.in_len);
    var sum = 0.0;
    for (var k = first; k < end; k++) {
        sum += reduce[args.src_offset + row * args.in_len + k];
    }
    reduce[args.dst_offset + row * args.out_len + block] = sum;
}

// Keras's Adam (keras/src/optimizers/adam.py), per parameter p, step t:
//   alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)      (host: step_sizes)
//   m <- m + (g - m) * (1 - beta_1)
//   v <- v + (g * g - v) * (1 - beta_2)
//   w <- w - (m * alpha) / (sqrt(v) + epsilon)
// epsilon goes on sqrt of the raw v ("epsilon hat"), not PyTorch's sqrt(v_hat).
// The table of alpha ends once alpha has settled at the learning rate.
fn adam_step_at(p: u32, batch: Batch) {
    let count = run.param_count;
    if p >= count {
        return;
    }
    let t = batch.t;
    let g = reduce[run.totals_offset + p];
    let record = step_record(t);
    if record != NO_RECORD {
        history.losses[record + p] = params[p];
        history.losses[record + count + p] = params[count + p];
        history.losses[record + 2u * count + p] = params[2u * count + p];
        history.losses[record + 3u * count + p] = g;
    }
    let alpha = step_sizes[min(t, arrayLength(&step_sizes)) - 1u];
    let m = params[count + p] + (g - params[count + p]) * run.one_minus_beta_1;
    let v = params[2u * count + p] + (g * g - params[2u * count + p]) * run.one_minus_beta_2;
    params[count + p] = m;
    params[2u * count + p] = v;
    let w = params[p] - (m * alpha) / (sqrt(v) + run.epsilon);
    params[p] = w;
    flag_if_not_finite(w, t);
    if record != NO_RECORD {
        let after = record + 4u * count + 1u;
        history.losses[after + p] = w;
        history.losses[after + count + p] = m;
        history.losses[after + 2u * count + p] = v;
    }
}

const NO_RECORD: u32 = 0xffffffffu;

// Where step t's record starts in `history.losses`, or NO_RECORD when the
// step is not recorded.
fn step_record(t: u32) -> u32 {
    let done = t - 1u;
    if run.record_every == 0u || done % run.record_every != 0u {
        return NO_RECORD;
    }
    let slot = done / run.record_every;
    if slot >= run.record_count {
        return NO_RECORD;
    }
    return run.record_offset + slot * (7u * run.param_count + 1u);
}

// Ends the step (item 0 alone): the batch's loss, from its forward pass
// before the update, goes into the epoch's size-weighted total (Keras's
// `Mean` tracker: total += loss * size); the epoch's last batch records
// total / samples. Then the step counter moves on.
fn finish_step_at(item: u32, batch: Batch) {
    if item != 0u {
        return;
    }
    let t = batch.t;
    let loss = reduce[run.totals_offset + run.param_count] / f32(batch.total);
    flag_if_not_finite(loss, t);
    let record = step_record(t);
    if record != NO_RECORD {
        history.losses[record + 4u * run.param_count] = loss;
    }
    history.epoch_total += loss * f32(batch.total);
    // Each metric's sum over the batch into the epoch's (Keras's Mean:
    // total and count, the count being the epoch's samples).
    for (var m = 0u; m < run.metric_count; m++) {
        reduce[run.metric_totals + m] += reduce[run.totals_offset + run.param_count + 1u + m];
    }
    if ends_epoch(batch) {
        history.losses[batch.epoch] = history.epoch_total / f32(run.samples);
        history.epoch_total = 0.0;
        for (var m = 0u; m < run.metric_count; m++) {
            history.losses[run.metric_offset + m * run.epochs + batch.epoch] = reduce[run.metric_totals + m] / f32(run.samples);
            reduce[run.metric_totals + m] = 0.0;
        }
        if run.validation_samples > 0u {
            history.losses[run.val_loss_offset + batch.epoch] = validation_mean(0u);
            for (var m = 0u; m < run.metric_count; m++) {
                history.losses[run.val_metric_offset + m * run.epochs + batch.epoch] = validation_mean(1u + m);
            }
        }
        if run.early_stopping != 0u {
            watch_epoch(batch.epoch);
        }
    }
    history.step = t;
}

// Keras's EarlyStopping.on_epoch_end (0-based `epoch`), monitoring val_loss
// with a validation split, else loss: an improvement is `value + min_delta
// < best` (the first epoch always is); `patience` epochs in a row without
// one stop training, from the second epoch on (`EarlyStopping::watch`).
fn watch_epoch(epoch: u32) {
    var value = history.losses[epoch];
    if run.validation_samples > 0u {
        value = history.losses[run.val_loss_offset + epoch];
    }
    history.wait += 1u;
    if history.best_epoch == 0u || value + run.min_delta < history.best {
        history.best = value;
        history.best_epoch = epoch + 1u;
        history.wait = 0u;
        return;
    }
    if history.wait >= run.patience && epoch > 0u {
        history.stopped_epoch = epoch + 1u;
    }
}

// Whether early stopping ended training: every kernel returns at once.
fn training_stopped() -> bool {
    return history.stopped_epoch != 0u;
}

// After a step that ended the best epoch so far (`restore_best_weights`):
// its weights into params [3P, 4P).
fn keep_best_at(p: u32) {
    let done = history.step;
    let ended_best = done % run.steps_per_epoch == 0u && done / run.steps_per_epoch == history.best_epoch;
    if p >= run.param_count || !ended_best {
        return;
    }
    params[3u * run.param_count + p] = params[p];
}

// Whether `batch` is its epoch's last.
fn ends_epoch(batch: Batch) -> bool {
    return batch.batch_first + batch.total == run.samples;
}

// After an epoch's last update: the loss of validation row `s` under the
// updated weights, one thread a row, its network in the row's scratch
// rows (the CPU reference's `validation_losses`, `forward_one`).
fn validation_losses_at(s: u32, batch: Batch) {
    if s >= run.validation_samples || !ends_epoch(batch) {
        return;
    }
    let scratch = run.validation_scratch + s * 3u * run.widest;
    row_values(run.samples + s, scratch, s);
}

// Then each block of `reduce_block` rows' losses (and each metric's
// values), summed in order.
fn validation_partials_at(index: u32, batch: Batch) {
    let blocks = (run.validation_samples + reduce_block - 1u) / reduce_block;
    let block = index % blocks;
    let series = index / blocks;
    if series > run.metric_count || !ends_epoch(batch) {
        return;
    }
    let first = block * reduce_block;
    let end = min(first + reduce_block, run.validation_samples);
    let values = run.validation_losses + series * run.validation_samples;
    var sum = 0.0;
    for (var s = first; s < end; s++) {
        sum += tensors[values + s];
    }
    reduce[run.validation_offset + series * blocks + block] = sum;
}

// Dataset row `row` through the network, one value at a time (each sum from
// 0 in input order, the bias last, then the activation), its activations in
// two scratch rows of `widest` values taken in turn and each layer's sums in
// a third: the row's loss and each metric's value, the means of its output
// units', into validation row `s` of each series.
fn row_values(row: u32, scratch: u32, s: u32) {
    for (var k = 0u; k < run.input_width; k++) {
        tensors[scratch + k] = tensors[run.data_offset + row * run.input_width + k];
    }
    var inputs = scratch;
    var outputs = scratch + run.widest;
    let sums = scratch + 2u * run.widest;
    var activation = ACTIVATION_LINEAR;
    for (var l = 0u; l < run.layer_count; l++) {
        let layer = dispatch_args[run.layer_table + l];
        activation = layer.activation;
        for (var j = 0u; j < layer.units; j++) {
            var sum = 0.0;
            for (var i = 0u; i < layer.inputs; i++) {
                sum += tensors[inputs + i] * params[layer.kernel_offset + i * layer.units + j];
            }
            let z = sum + params[layer.bias_offset + j];
            tensors[sums + j] = z;
            tensors[outputs + j] = activate(activation, z);
        }
        let previous = inputs;
        inputs = outputs;
        outputs = previous;
    }
    let units = run.output_width;
    var loss = 0.0;
    var metric_sums = array<f32, 8>();
    for (var j = 0u; j < units; j++) {
        let output = tensors[inputs + j];
        let z = tensors[sums + j];
        let y = tensors[targets_of_row(row) + j];
        for (var m = 0u; m < run.metric_count; m++) {
            metric_sums[m] += metric_value(metric_code(m), output, z, y, activation);
        }
        loss += output_error_of(output, z, y, activation, 1u).loss;
    }
    let n = run.validation_samples;
    tensors[run.validation_losses + s] = loss / f32(units);
    for (var m = 0u; m < run.metric_count; m++) {
        tensors[run.validation_losses + (1u + m) * n + s] = metric_sums[m] / f32(units);
    }
}

// A validation series' mean for the epoch (`finish_step`, item 0; series 0
// the loss, 1 + m metric m): its blocks' sums added in block order, over
// the rows.
fn validation_mean(series: u32) -> f32 {
    let blocks = (run.validation_samples + reduce_block - 1u) / reduce_block;
    var total = 0.0;
    for (var b = 0u; b < blocks; b++) {
        total += reduce[run.validation_offset + series * blocks + b];
    }
    return total / f32(run.validation_samples);
}

// Tested on the bits: WGSL lets compilers assume float values are finite.
fn flag_if_not_finite(value: f32, t: u32) {
    if (bitcast<u32>(value) & 0x7f800000u) == 0x7f800000u {
        atomicMin(&history.first_bad_step, t);
    }
}

// The dispatch schedule's entry points. Grids larger than one dimension
// allows are folded into 2-D; the linear index is rebuilt here.
fn thread_index(group: vec3<u32>, groups: vec3<u32>, local: u32) -> u32 {
    return (group.y * groups.x + group.x) * workgroup_size + local;
}

@compute @workgroup_size(workgroup_size)
fn gather_batch(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    gather_batch_at(thread_index(group, groups, local), current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn dense_forward(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    dense_forward_at(thread_index(group, groups, local), dispatch_args[current.dispatch], current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn output_error(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    output_error_at(thread_index(group, groups, local), dispatch_args[current.dispatch], current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn dense_backward(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    dense_backward_at(thread_index(group, groups, local), dispatch_args[current.dispatch], current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn gradient_partials(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    gradient_partials_at(thread_index(group, groups, local), dispatch_args[current.dispatch], current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn reduce_partials(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    reduce_partials_at(thread_index(group, groups, local), dispatch_args[current.dispatch]);
}

@compute @workgroup_size(workgroup_size)
fn adam_step(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    adam_step_at(thread_index(group, groups, local), current_batch(0u));
}

@compute @workgroup_size(workgroup_size)
fn validation_losses(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    validation_losses_at(thread_index(group, groups, local), current_batch(0u));
}

@compute @workgroup_size(workgroup_size)
fn validation_partials(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    validation_partials_at(thread_index(group, groups, local), current_batch(0u));
}

@compute @workgroup_size(workgroup_size)
fn keep_best(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    keep_best_at(thread_index(group, groups, local));
}

@compute @workgroup_size(workgroup_size)
fn finish_step(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    finish_step_at(thread_index(group, groups, local), current_batch(0u));
}
