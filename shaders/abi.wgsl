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
