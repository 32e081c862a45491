// gpu-c2f's dispatch module for Dense 3:linear, 3:linear, 1:linear from 1 inputs, mean_squared_error: assembled by src/gpu/module.rs from
// shaders/*.wgsl, with what this job uses and nothing else.

// Threads of a workgroup, and values each thread of a sum adds in order.
const WORKGROUP_SIZE: u32 = 64u;
const REDUCE_BLOCK: u32 = 256u;
// The dense layers' register tile (samples x units).
const SAMPLE_TILE: u32 = 4u;
const UNIT_TILE: u32 = 4u;
// Training samples and their batches.
const SAMPLES: u32 = 7u;
const BATCH_SIZE: u32 = 7u;
const CHUNK_SIZE: u32 = 7u;
const STEPS_PER_EPOCH: u32 = 1u;
// The dataset's rows (training, then validation) and each row's inputs and targets.
const DATA_ROWS: u32 = 7u;
const INPUT_WIDTH: u32 = 1u;
const OUTPUT_WIDTH: u32 = 1u;
// In `tensors`: where each tensor starts.
const DATA_OFFSET: u32 = 0u;
const INPUT_OFFSET: u32 = 0u;
const TARGET_OFFSET: u32 = 7u;
const OUTPUT_OFFSET: u32 = 56u;
const OUTPUT_DELTA_OFFSET: u32 = 105u;
const SAMPLE_LOSS_OFFSET: u32 = 112u;
// Parameters, the rows of every sum over samples (`SumRows`: the gradients, the loss, the metrics) and in `reduce` their totals.
const PARAM_COUNT: u32 = 22u;
const LOSS_ROW: u32 = 22u;
const TOTALS_OFFSET: u32 = 0u;

// What every kernel shares with the host (src/gpu/abi.rs, whose structs
// mirror these, field for field, as a test checks): the run's values, each
// dispatch's arguments, the history, and the buffers. The job's shape (its
// widths, batch geometry, offsets and features) is not here: the generator
// (src/gpu/module.rs) writes it into each module as constants above this
// file, and leaves out the code of every feature the job does not use.

// Values of a run that do not change its shape: a run with another seed,
// Adam constants, epoch count or early-stopping patience reuses the
// compiled module.
struct RunArgs {
    // The shuffle's seed (src/batching.rs).
    seed_low: u32,
    seed_high: u32,
    // Adam constants, computed in f64 on the host and rounded once (as Keras
    // casts its Python floats).
    one_minus_beta_1: f32,
    one_minus_beta_2: f32,
    epsilon: f32,
    // Step records for the shadow check (src/shadow/): a ring of
    // `record_slots` records of STEP_RECORD_LEN values from
    // `history.losses[record_offset]`, read back after each submission.
    record_offset: u32,
    record_slots: u32,
    // Keras's EarlyStopping: its patience and min_delta.
    patience: u32,
    min_delta: f32,
    // The history's series in `history.losses`: each epoch's loss from 0,
    // its validation loss from `val_loss_offset`, each metric's `epochs`
    // values from `metric_offset`, their validation values from
    // `val_metric_offset`.
    epochs: u32,
    val_loss_offset: u32,
    metric_offset: u32,
    val_metric_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
    // REDUCE_BLOCK).
    chunk_first: u32,
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

// Tested on the bits: WGSL lets compilers assume float values are finite.
fn flag_if_not_finite(value: f32, t: u32) {
    if (bitcast<u32>(value) & 0x7f800000u) == 0x7f800000u {
        atomicMin(&history.first_bad_step, t);
    }
}

// Mini-batches (src/batching.rs): which samples a training step works on,
// in each epoch's shuffled order.

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
    let batch_first = (done % STEPS_PER_EPOCH) * BATCH_SIZE;
    let total = min(BATCH_SIZE, SAMPLES - batch_first);
    let size = min(CHUNK_SIZE, total - min(chunk_first, total));
    return Batch(
        done + 1u,
        done / STEPS_PER_EPOCH,
        batch_first,
        total,
        batch_first + chunk_first,
        size,
        chunk_first / REDUCE_BLOCK,
    );
}

// Whether `batch` is its epoch's last.
fn ends_epoch(batch: Batch) -> bool {
    return batch.batch_first + batch.total == SAMPLES;
}

// Where dataset row `row`'s targets start: every row's inputs come first.
fn targets_of_row(row: u32) -> u32 {
    return DATA_OFFSET + DATA_ROWS * INPUT_WIDTH + row * OUTPUT_WIDTH;
}

// Dense layers (the CPU reference's `dense_forward` and `dense_backward`,
// src/cpu.rs): a layer's outputs from its inputs, and its output error
// passed back to its inputs.
//
// Dense layers work in register tiles: an item computes SAMPLE_TILE
// samples x UNIT_TILE units (forward) or inputs (backward), so every value
// it loads is used several times. Each output is still one sum in index
// order, as the CPU reference adds it; vec4 arithmetic rounds each component
// on its own. The host sets the tile (src/gpu/plan.rs, `Tile`), one for
// the whole network: for the dispatch schedule 8 x 8 when any layer is
// wider than 4, else 4 x 4; 1 x 1 for the fused schedule, whose few threads
// want many small items. Both sides are at most 8: a row of a tile is two
// vec4 halves (`Row`), and a tile's sums are `Sums`, row q in `[2q]`
// (columns 0..3) and `[2q + 1]` (4..7). The code that touches a second half
// is in `wide_tiles` sections, which modules whose tiles are at most 4 x 4
// leave out: on lavapipe that halves the fused schedule's pipeline creation.
//
// The activation is the layer's own (forward) or the layer below's
// (backward): the functions in the `each forward_activation` and `each
// backward_activation` sections are written once per activation the job
// uses, and end in that activation's `store_forward_*` or `store_backward_*`
// (written by src/gpu/module.rs from shaders/activation.wgsl).

alias Row = array<vec4<f32>, 2>;
alias Sums = array<vec4<f32>, 16>;

// Items of a layer's tiles: ceil(samples / SAMPLE_TILE) x ceil(width / UNIT_TILE).
fn tile_of(index: u32, width: u32) -> vec2<u32> {
    let tiles = (width + UNIT_TILE - 1u) / UNIT_TILE;
    return vec2<u32>((index / tiles) * SAMPLE_TILE, (index % tiles) * UNIT_TILE);
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
    return values;
}

// sums[row q] += x[q] * w for the tile's first `rows` rows: for each
// output a multiply, then an add, as the CPU reference's `sum += x * w`.
fn add_outer_product(sums: ptr<function, Sums>, x: Row, w: Row, rows: u32) {
    for (var q = 0u; q < min(rows, 4u); q++) {
        add_row(sums, q, x[0][q], w);
    }
}

fn add_row(sums: ptr<function, Sums>, q: u32, value: f32, w: Row) {
    (*sums)[2u * q] += value * w[0];
}

// The tile's rows moved up by one: the store loops take row 0 each time, so
// every index into a tile stays a constant even where a loop is not unrolled.
fn next_rows(sums: Sums) -> Sums {
    return Sums(
        sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], sums[8], sums[9],
        sums[10], sums[11], sums[12], sums[13], sums[14], sums[15], vec4<f32>(), vec4<f32>(),
    );
}

// out[s][j] = f((sum_i in[s][i] * kernel[i][j]) + bias[j]), f the layer's
// activation (linear).
fn dense_forward_linear_at(index: u32, args: DispatchArgs, batch: Batch) {
    let tile = tile_of(index, args.units);
    if tile.x >= batch.size {
        return;
    }
    var sums = Sums();
    for (var i = 0u; i < args.inputs; i++) {
        let x = tensor_row(args.in_offset + tile.x * args.inputs + i, args.inputs, tile.x, batch.size, SAMPLE_TILE);
        let w = param_row(args.kernel_offset + i * args.units + tile.y, 1u, tile.y, args.units, UNIT_TILE);
        add_outer_product(&sums, x, w, SAMPLE_TILE);
    }
    let bias = param_row(args.bias_offset + tile.y, 1u, tile.y, args.units, UNIT_TILE);
    var rows = sums;
    for (var q = 0u; q < SAMPLE_TILE; q++) {
        forward_row_linear(rows[0], rows[1], q, bias, args, tile, batch.size);
        rows = next_rows(rows);
    }
}

// Row q of a forward tile, plus the bias, stored inside the batch and the
// layer's width.
fn forward_row_linear(low: vec4<f32>, high: vec4<f32>, q: u32, bias: Row, args: DispatchArgs, tile: vec2<u32>, size: u32) {
    if tile.x + q >= size {
        return;
    }
    let first = (tile.x + q) * args.units + tile.y;
    for (var c = 0u; c < min(UNIT_TILE, 4u); c++) {
        if tile.y + c < args.units {
            store_forward_linear(first + c, low[c] + bias[0][c], args);
        }
    }
}

// Error passed back through a Dense layer, to the sums of the layer below
// (activation f, here linear):
// err_in[s][i] = (sum_j err_out[s][j] * kernel[i][j]) * f'(z[s][i]).
fn dense_backward_linear_at(index: u32, args: DispatchArgs, batch: Batch) {
    let tile = tile_of(index, args.inputs);
    if tile.x >= batch.size {
        return;
    }
    var sums = Sums();
    for (var j = 0u; j < args.units; j++) {
        let e = tensor_row(args.in_offset + tile.x * args.units + j, args.units, tile.x, batch.size, SAMPLE_TILE);
        let w = param_row(args.kernel_offset + tile.y * args.units + j, args.units, tile.y, args.inputs, UNIT_TILE);
        add_outer_product(&sums, e, w, SAMPLE_TILE);
    }
    var rows = sums;
    for (var q = 0u; q < SAMPLE_TILE; q++) {
        backward_row_linear(rows[0], rows[1], q, args, tile, batch.size);
        rows = next_rows(rows);
    }
}

// Row q of a backward tile, stored inside the batch and the layer's inputs.
fn backward_row_linear(low: vec4<f32>, high: vec4<f32>, q: u32, args: DispatchArgs, tile: vec2<u32>, size: u32) {
    if tile.x + q >= size {
        return;
    }
    let first = (tile.x + q) * args.inputs + tile.y;
    for (var c = 0u; c < min(UNIT_TILE, 4u); c++) {
        if tile.y + c < args.inputs {
            store_backward_linear(first + c, low[c], args);
        }
    }
}

// Keras's losses and metrics (src/loss.rs has each formula and the CPU
// reference's twin of this code; docs/losses.md the sources). A module holds
// the run's loss and metrics and no others, called by name from
// `output_error_of` and `metric_values`, which src/gpu/module.rs writes for
// the run's loss, metrics and output activation.

// One sample's loss and dL/dz, for a batch of `total` (the loss is the
// batch's mean, Keras's sum_over_batch_size).
struct OutputError {
    loss: f32,
    delta: f32,
}

// One output unit's loss and its derivative by the output.
struct LossTerms {
    loss: f32,
    derivative: f32,
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
    var sum = 0.0;
    for (var j = 0u; j < OUTPUT_WIDTH; j++) {
        let output = tensors[OUTPUT_OFFSET + sample * OUTPUT_WIDTH + j];
        let index = OUTPUT_DELTA_OFFSET + sample * OUTPUT_WIDTH + j;
        let z = output;
        let y = tensors[TARGET_OFFSET + sample * OUTPUT_WIDTH + j];
        let error = output_error_of(output, z, y, batch.total * OUTPUT_WIDTH);
        sum += error.loss;
        tensors[index] = error.delta;
    }
    tensors[SAMPLE_LOSS_OFFSET + sample] = sum / f32(OUTPUT_WIDTH);
}

fn mean_squared_error(output: f32, y: f32) -> LossTerms {
    let r = output - y;
    return LossTerms(r * r, 2.0 * r);
}

// Sums over samples (the CPU reference's `gradient_partials` and
// `reduce_partials`, src/cpu.rs): every sum adds REDUCE_BLOCK values in
// order, one thread a block, then the next level adds the block sums the
// same way, down to one total per row. The CPU adds in exactly this order.

// First level of every sum over samples, one layer at a time. Row p of
// `reduce` belongs to parameter p (kernel entry [i][j] at kernel_offset +
// i * units + j, the biases right after: "input" row i == inputs, whose a is
// 1); row LOSS_ROW is the loss, a layer of no inputs and one unit whose
// err is each sample's loss (its bias row's a is 1), and each metric's
// values follow in the rows from METRIC_ROW (`SumRows`, src/step.rs). An item adds, for one block of
// REDUCE_BLOCK consecutive samples in sample order, a UNIT_TILE x
// UNIT_TILE tile of a[s][i] * err[s][j]. `args.in_len` is the number of a
// rows: inputs + 1 (the bias row).
fn gradient_partials_at(index: u32, args: DispatchArgs, batch: Batch) {
    let column_tiles = (args.units + UNIT_TILE - 1u) / UNIT_TILE;
    let tiles = ((args.in_len + UNIT_TILE - 1u) / UNIT_TILE) * column_tiles;
    // The chunk's blocks, clipped to the batch's.
    let block = index / tiles;
    if !block_in_chunk(block, args, batch) {
        return;
    }
    let first_row = ((index % tiles) / column_tiles) * UNIT_TILE;
    let first_column = ((index % tiles) % column_tiles) * UNIT_TILE;
    let first = block * REDUCE_BLOCK;
    let end = min(first + REDUCE_BLOCK, batch.size);
    var sums = Sums();
    for (var s = first; s < end; s++) {
        let err = tensor_row(args.out_offset + s * args.units + first_column, 1u, first_column, args.units, UNIT_TILE);
        // a[s][i] for the tile's rows; the bias row's a is 1.
        var a = Row(vec4<f32>(1.0), vec4<f32>(1.0));
        for (var q = 0u; q < min(UNIT_TILE, 4u); q++) {
            if first_row + q < args.inputs {
                a[0][q] = tensors[args.in_offset + s * args.inputs + first_row + q];
            }
        }
        add_outer_product(&sums, a, err, UNIT_TILE);
    }
    let column = args.dst_offset + batch.block0 + block;
    let tile = vec2<u32>(first_row, first_column);
    var rows = sums;
    for (var q = 0u; q < UNIT_TILE; q++) {
        store_partials(rows[0], rows[1], q, args, tile, column);
        rows = next_rows(rows);
    }
}

// Row q of a gradient tile (a-row first_row + q, columns from
// first_column) into its parameters' rows of `reduce`, at `column`.
fn store_partials(low: vec4<f32>, high: vec4<f32>, q: u32, args: DispatchArgs, tile: vec2<u32>, column: u32) {
    let i = tile.x + q;
    if i >= args.in_len {
        return;
    }
    let first = args.kernel_offset + i * args.units + tile.y;
    for (var c = 0u; c < min(UNIT_TILE, 4u); c++) {
        if tile.y + c < args.units {
            reduce[column + (first + c) * args.out_len] = low[c];
        }
    }
}

// Whether block `block` of the chunk is one of its blocks and has a column
// in the first reduction level (`args.out_len` columns): a block past the
// end of a smaller (last) batch still writes its zero sums, so no stale
// partial from an earlier batch enters the next level.
fn block_in_chunk(block: u32, args: DispatchArgs, batch: Batch) -> bool {
    let chunk_blocks = (CHUNK_SIZE + REDUCE_BLOCK - 1u) / REDUCE_BLOCK;
    return block < chunk_blocks && batch.block0 + block < args.out_len;
}

// Keras's Adam (keras/src/optimizers/adam.py; src/optimizer.rs), per
// parameter p, step t:
//   alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)      (host: step_sizes)
//   m <- m + (g - m) * (1 - beta_1)
//   v <- v + (g * g - v) * (1 - beta_2)
//   w <- w - (m * alpha) / (sqrt(v) + epsilon)
// epsilon goes on sqrt of the raw v ("epsilon hat"), not PyTorch's sqrt(v_hat).
// The table of alpha ends once alpha has settled at the learning rate.
fn adam_step_at(p: u32, args: DispatchArgs, batch: Batch) {
    if p >= PARAM_COUNT {
        return;
    }
    let t = batch.t;
    let g = reduce[TOTALS_OFFSET + p];
    let alpha = step_sizes[min(t, arrayLength(&step_sizes)) - 1u];
    let m = params[PARAM_COUNT + p] + (g - params[PARAM_COUNT + p]) * run.one_minus_beta_1;
    let v = params[2u * PARAM_COUNT + p] + (g * g - params[2u * PARAM_COUNT + p]) * run.one_minus_beta_2;
    params[PARAM_COUNT + p] = m;
    params[2u * PARAM_COUNT + p] = v;
    let w = params[p] - (m * alpha) / (sqrt(v) + run.epsilon);
    params[p] = w;
    flag_if_not_finite(w, t);
}

// The history (src/training.rs): each batch's loss into its epoch's, and at
// an epoch's end its validation values and early stopping's verdict. The
// validation, metric and early-stopping code is in sections that a job
// without them leaves out.

// Ends the step (item 0 alone): the batch's loss, from its forward pass
// before the update, goes into the epoch's size-weighted total (Keras's
// `Mean` tracker: total += loss * size); the epoch's last batch records
// total / samples. Then the step counter moves on.
fn finish_step_at(item: u32, args: DispatchArgs, batch: Batch) {
    if item != 0u {
        return;
    }
    let t = batch.t;
    let loss = reduce[TOTALS_OFFSET + LOSS_ROW] / f32(batch.total);
    flag_if_not_finite(loss, t);
    history.epoch_total += loss * f32(batch.total);
    if ends_epoch(batch) {
        history.losses[batch.epoch] = history.epoch_total / f32(SAMPLES);
        history.epoch_total = 0.0;
    }
    history.step = t;
}

// Written for this job by src/gpu/module.rs.

// A linear layer's sum: its output.
fn store_forward_linear(element: u32, sum: f32, args: DispatchArgs) {
    tensors[args.out_offset + element] = sum;
}

// An error passed back into a linear layer's sums.
fn store_backward_linear(element: u32, sum: f32, args: DispatchArgs) {
    let index = args.out_offset + element;
    tensors[index] = sum;
}

// One output unit's loss (mean_squared_error) and dL/dz after its linear activation.
fn output_error_of(output: f32, z: f32, y: f32, total: u32) -> OutputError {
    let terms = mean_squared_error(output, y);
    return OutputError(terms.loss, terms.derivative / f32(total));
}

// The entry points, one per kernel of the step.

@compute @workgroup_size(WORKGROUP_SIZE)
fn dense_forward_linear(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let args = dispatch_args[current.dispatch];
    let index = (group.y * groups.x + group.x) * WORKGROUP_SIZE + local;
    dense_forward_linear_at(index, args, current_batch(args.chunk_first));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn output_error(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let args = dispatch_args[current.dispatch];
    let index = (group.y * groups.x + group.x) * WORKGROUP_SIZE + local;
    output_error_at(index, args, current_batch(args.chunk_first));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn dense_backward_linear(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let args = dispatch_args[current.dispatch];
    let index = (group.y * groups.x + group.x) * WORKGROUP_SIZE + local;
    dense_backward_linear_at(index, args, current_batch(args.chunk_first));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gradient_partials(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let args = dispatch_args[current.dispatch];
    let index = (group.y * groups.x + group.x) * WORKGROUP_SIZE + local;
    gradient_partials_at(index, args, current_batch(args.chunk_first));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn adam_step(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let args = dispatch_args[current.dispatch];
    let index = (group.y * groups.x + group.x) * WORKGROUP_SIZE + local;
    adam_step_at(index, args, current_batch(args.chunk_first));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn finish_step(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let args = dispatch_args[current.dispatch];
    let index = (group.y * groups.x + group.x) * WORKGROUP_SIZE + local;
    finish_step_at(index, args, current_batch(args.chunk_first));
}
