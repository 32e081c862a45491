// gpu-c2f's fused module for Dense 3:linear, 3:linear, 1:linear from 1 inputs, mean_squared_error: assembled by src/gpu/module.rs from
// shaders/*.wgsl, with what this job uses and nothing else.

// Threads of a workgroup, and values each thread of a sum adds in order.
const FUSED_WORKGROUP_SIZE: u32 = 8u;
const REDUCE_BLOCK: u32 = 256u;
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

fn mean_squared_error(output: f32, y: f32) -> LossTerms {
    let r = output - y;
    return LossTerms(r * r, 2.0 * r);
}

// Sums over samples (the CPU reference's `gradient_partials` and
// `reduce_partials`, src/cpu.rs): every sum adds REDUCE_BLOCK values in
// order, one thread a block, then the next level adds the block sums the
// same way, down to one total per row. The CPU adds in exactly this order.

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

// One output unit's loss (mean_squared_error) and dL/dz after its linear activation.
fn output_error_of(output: f32, z: f32, y: f32, total: u32) -> OutputError {
    let terms = mean_squared_error(output, y);
    return OutputError(terms.loss, terms.derivative / f32(total));
}

// The samples schedule's per-sample work: one thread per block of
// REDUCE_BLOCK samples runs the whole network forward and back for each
// sample of its block, in order, and adds the sample's gradient terms to one
// running sum per parameter. The sums go where `gradient_partials` would put
// them (level 0 of the reduction), so the rest of a step (`reduce_partials`,
// `adam_step`, `finish_step`) is the dispatch schedule's. The holes are
// filled by the host for one architecture (src/gpu/samples.rs): every
// activation, error, weight and sum a named scalar, computed with the
// arithmetic of the function named in the comment above it, in the same
// order.
fn sample_partials_at(block: u32, args: DispatchArgs, batch: Batch) {
    // One block of the chunk per thread, clipped as gradient_partials_at
    // clips them.
    if !block_in_chunk(block, args, batch) {
        return;
    }
    let first = block * REDUCE_BLOCK;
    let end = min(first + REDUCE_BLOCK, batch.size);
    // The weights, read once for the block.
    let w0 = params[0u];
    let w1 = params[1u];
    let w2 = params[2u];
    let w3 = params[3u];
    let w4 = params[4u];
    let w5 = params[5u];
    let w6 = params[6u];
    let w7 = params[7u];
    let w8 = params[8u];
    let w9 = params[9u];
    let w10 = params[10u];
    let w11 = params[11u];
    let w12 = params[12u];
    let w13 = params[13u];
    let w14 = params[14u];
    let w15 = params[15u];
    let w16 = params[16u];
    let w17 = params[17u];
    let w18 = params[18u];
    let w19 = params[19u];
    let w20 = params[20u];
    let w21 = params[21u];
    // One running sum per parameter, then the loss's.
    var g0 = 0.0;
    var g1 = 0.0;
    var g2 = 0.0;
    var g3 = 0.0;
    var g4 = 0.0;
    var g5 = 0.0;
    var g6 = 0.0;
    var g7 = 0.0;
    var g8 = 0.0;
    var g9 = 0.0;
    var g10 = 0.0;
    var g11 = 0.0;
    var g12 = 0.0;
    var g13 = 0.0;
    var g14 = 0.0;
    var g15 = 0.0;
    var g16 = 0.0;
    var g17 = 0.0;
    var g18 = 0.0;
    var g19 = 0.0;
    var g20 = 0.0;
    var g21 = 0.0;
    var loss_sum = 0.0;
    for (var s = first; s < end; s++) {
        // gather_batch_at's rows: the sample's inputs
        let a0_0 = tensors[INPUT_OFFSET + s * 1u + 0u];
        // dense_forward_at, layer 0 (1 -> 3)
        let a1_0 = (0.0 + a0_0 * w0) + w3;
        let a1_1 = (0.0 + a0_0 * w1) + w4;
        let a1_2 = (0.0 + a0_0 * w2) + w5;
        // dense_forward_at, layer 1 (3 -> 3)
        let a2_0 = (0.0 + a1_0 * w6 + a1_1 * w9 + a1_2 * w12) + w15;
        let a2_1 = (0.0 + a1_0 * w7 + a1_1 * w10 + a1_2 * w13) + w16;
        let a2_2 = (0.0 + a1_0 * w8 + a1_1 * w11 + a1_2 * w14) + w17;
        // dense_forward_at, layer 2 (3 -> 1)
        let a3_0 = (0.0 + a2_0 * w18 + a2_1 * w19 + a2_2 * w20) + w21;
        // output_error_at
        let y_0 = tensors[TARGET_OFFSET + s * 1u + 0u];
        let error_0 = output_error_of(a3_0, a3_0, y_0, batch.total * 1u);
        let e3_0 = error_0.delta;
        let sample_loss = (0.0 + error_0.loss) / 1.0;
        // dense_backward_at, layer 2's errors into its 3 inputs
        let e2_0 = 0.0 + e3_0 * w18;
        let e2_1 = 0.0 + e3_0 * w19;
        let e2_2 = 0.0 + e3_0 * w20;
        // dense_backward_at, layer 1's errors into its 3 inputs
        let e1_0 = 0.0 + e2_0 * w6 + e2_1 * w7 + e2_2 * w8;
        let e1_1 = 0.0 + e2_0 * w9 + e2_1 * w10 + e2_2 * w11;
        let e1_2 = 0.0 + e2_0 * w12 + e2_1 * w13 + e2_2 * w14;
        // gradient_partials_at, layer 0: kernel[i][j] += a[i] * err[j], bias[j] += err[j]
        g0 += a0_0 * e1_0;
        g1 += a0_0 * e1_1;
        g2 += a0_0 * e1_2;
        g3 += e1_0;
        g4 += e1_1;
        g5 += e1_2;
        // gradient_partials_at, layer 1: kernel[i][j] += a[i] * err[j], bias[j] += err[j]
        g6 += a1_0 * e2_0;
        g7 += a1_0 * e2_1;
        g8 += a1_0 * e2_2;
        g9 += a1_1 * e2_0;
        g10 += a1_1 * e2_1;
        g11 += a1_1 * e2_2;
        g12 += a1_2 * e2_0;
        g13 += a1_2 * e2_1;
        g14 += a1_2 * e2_2;
        g15 += e2_0;
        g16 += e2_1;
        g17 += e2_2;
        // gradient_partials_at, layer 2: kernel[i][j] += a[i] * err[j], bias[j] += err[j]
        g18 += a2_0 * e3_0;
        g19 += a2_1 * e3_0;
        g20 += a2_2 * e3_0;
        g21 += e3_0;
        loss_sum += sample_loss;
    }
    // Level 0 of the reduction: row p (parameter p; the loss in row
    // LOSS_ROW, the metrics from METRIC_ROW), column block0 + block, as
    // gradient_partials_at.
    let column = args.dst_offset + batch.block0 + block;
    reduce[column + 0u * args.out_len] = g0;
    reduce[column + 1u * args.out_len] = g1;
    reduce[column + 2u * args.out_len] = g2;
    reduce[column + 3u * args.out_len] = g3;
    reduce[column + 4u * args.out_len] = g4;
    reduce[column + 5u * args.out_len] = g5;
    reduce[column + 6u * args.out_len] = g6;
    reduce[column + 7u * args.out_len] = g7;
    reduce[column + 8u * args.out_len] = g8;
    reduce[column + 9u * args.out_len] = g9;
    reduce[column + 10u * args.out_len] = g10;
    reduce[column + 11u * args.out_len] = g11;
    reduce[column + 12u * args.out_len] = g12;
    reduce[column + 13u * args.out_len] = g13;
    reduce[column + 14u * args.out_len] = g14;
    reduce[column + 15u * args.out_len] = g15;
    reduce[column + 16u * args.out_len] = g16;
    reduce[column + 17u * args.out_len] = g17;
    reduce[column + 18u * args.out_len] = g18;
    reduce[column + 19u * args.out_len] = g19;
    reduce[column + 20u * args.out_len] = g20;
    reduce[column + 21u * args.out_len] = g21;
    reduce[column + LOSS_ROW * args.out_len] = loss_sum;
}

// The fused schedule's entry point: one workgroup runs `current.fused_steps`
// training steps in one dispatch. `fused_step` is written by the host for
// each run (src/gpu/fused.rs): the calls of the `*_at` functions in the
// order of the step's operations, each over its items, a barrier where the
// next operation reads what this one wrote, every loop bound and
// `DispatchArgs` a constant so the driver can unroll them.

@compute @workgroup_size(FUSED_WORKGROUP_SIZE)
fn fused_steps(@builtin(local_invocation_index) local: u32) {
    for (var step = 0u; step < current.fused_steps; step++) {
        fused_step(local);
    }
}

// One training step for one invocation of the workgroup.
fn fused_step(local: u32) {
    let batch = current_batch(0u);
    // SamplePartials { chunk: 0 }
    for (var index = local; index < 1u; index += 8u) {
        sample_partials_at(index, DispatchArgs(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 1u, 0u, 0u, 0u, 0u), batch);
    }
    storageBarrier();
    // Adam
    for (var index = local; index < 22u; index += 8u) {
        adam_step_at(index, DispatchArgs(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u), batch);
    }
    // FinishStep
    for (var index = local; index < 1u; index += 8u) {
        finish_step_at(index, DispatchArgs(0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u), batch);
    }
    storageBarrier();
}
