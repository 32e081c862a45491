// gpu-c2f training kernels: dense forward pass, loss and output error,
// backprop, the gradient reduction over samples, and Keras's Adam update.
//
// Every concept is written once, as a function of one work item (`*_at`).
// A training step (one mini-batch, one Adam update) is a typed list of
// operations (src/step.rs): gather_batch (when batches are shuffled or
// chunked) -> dense_forward per layer -> output_error -> dense_backward per
// layer, last to second -> gradient_partials per layer and for the squared
// error -> reduce_partials (0+ levels) -> adam_step -> finish_step. The host
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
    // inputs and targets, the network's output and its error, residuals.
    data_offset: u32,
    input_offset: u32,
    target_offset: u32,
    output_offset: u32,
    output_delta_offset: u32,
    residual_offset: u32,
    // In `reduce`: the fully reduced value of each row (gradients, then the
    // squared-error sum in row `param_count`).
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
    tensors[run.input_offset + i] = tensors[run.data_offset + sample];
    tensors[run.target_offset + i] = tensors[run.data_offset + run.samples + sample];
}

// Which `DispatchArgs` a dispatch works on, or how many training steps a
// fused dispatch runs (bound with a dynamic offset per dispatch).
struct Current {
    dispatch: u32,
    fused_steps: u32,
}

// Weights in [0, P), Adam's m in [P, 2P), v in [2P, 3P).
@group(0) @binding(0) var<storage, read_write> params: array<f32>;
// Per-sample activations and errors of every layer, targets, residuals.
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

// Writes the tile `sums` (+ `bias[c]`) to out[s][j], inside the batch and
// the layer's width.
fn store_tile(sums: Sums, bias: Row, out_offset: u32, width: u32, tile: vec2<u32>, size: u32) {
    var rows = sums;
    for (var q = 0u; q < sample_tile; q++) {
        store_row(rows[0], rows[1], q, bias, out_offset, width, tile, size);
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

fn store_row(low: vec4<f32>, high: vec4<f32>, q: u32, bias: Row, out_offset: u32, width: u32, tile: vec2<u32>, size: u32) {
    if tile.x + q >= size {
        return;
    }
    let first = out_offset + (tile.x + q) * width + tile.y;
    for (var c = 0u; c < min(unit_tile, 4u); c++) {
        if tile.y + c < width {
            tensors[first + c] = low[c] + bias[0][c];
        }
    }
    
}

// out[s][j] = (sum_i in[s][i] * kernel[i][j]) + bias[j].
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
    store_tile(sums, bias, args.out_offset, args.units, tile, batch.size);
}

// Mean squared error, Keras's `mean((y - y_hat)^2)` over the batch:
// residual r = y_hat - y (squared later by the reduction) and the error fed
// back, dL/dy_hat = 2 r / N (N: the batch's size, over all its chunks).
fn output_error_at(sample: u32, batch: Batch) {
    if sample >= batch.size {
        return;
    }
    let residual = tensors[run.output_offset + sample] - tensors[run.target_offset + sample];
    tensors[run.residual_offset + sample] = residual;
    tensors[run.output_delta_offset + sample] = output_delta(residual, batch.total);
}

// dL/dy_hat of one sample of a batch of `total`: 2 r / N.
fn output_delta(residual: f32, total: u32) -> f32 {
    return (2.0 * residual) / f32(total);
}

// Error passed back through a Dense layer (no activation):
// err_in[s][i] = sum_j err_out[s][j] * kernel[i][j].
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
    store_tile(sums, Row(), args.out_offset, args.inputs, tile, batch.size);
}

// First level of every sum over samples, one layer at a time. Row p of
// `reduce` belongs to parameter p (kernel entry [i][j] at kernel_offset +
// i * units + j, the biases right after: "input" row i == inputs, whose a is
// 1); row param_count is the squared error, a one-entry "layer" with
// a = err = the residual and no bias row. An item adds, for one block of
// `reduce_block` consecutive samples in sample order, a unit_tile x
// unit_tile tile of a[s][i] * err[s][j]. `args.in_len` is the number of a
// rows: inputs + 1 for a layer, 1 for the loss.
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
    if batch.batch_first + batch.total == run.samples {
        history.losses[batch.epoch] = history.epoch_total / f32(run.samples);
        history.epoch_total = 0.0;
    }
    history.step = t;
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
    gather_batch_at(thread_index(group, groups, local), current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn dense_forward(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    dense_forward_at(thread_index(group, groups, local), dispatch_args[current.dispatch], current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn output_error(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    output_error_at(thread_index(group, groups, local), current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn dense_backward(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    dense_backward_at(thread_index(group, groups, local), dispatch_args[current.dispatch], current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn gradient_partials(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    gradient_partials_at(thread_index(group, groups, local), dispatch_args[current.dispatch], current_batch(dispatch_args[current.dispatch].chunk_first));
}

@compute @workgroup_size(workgroup_size)
fn reduce_partials(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    reduce_partials_at(thread_index(group, groups, local), dispatch_args[current.dispatch]);
}

@compute @workgroup_size(workgroup_size)
fn adam_step(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    adam_step_at(thread_index(group, groups, local), current_batch(0u));
}

@compute @workgroup_size(workgroup_size)
fn finish_step(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    finish_step_at(thread_index(group, groups, local), current_batch(0u));
}

// Generated by gpu-c2f (src/gpu/samples.rs) for the 1-3-3-1 network.
// The samples schedule's kernel: one thread per block of `reduce_block`
// samples runs the whole network forward and back for each sample of its
// block, in order, and adds the sample's gradient terms to one running sum
// per parameter. The sums go where `gradient_partials` would put them
// (level 0 of the reduction), so the rest of a step (`reduce_partials`,
// `adam_step`, `finish_step`) is the dispatch schedule's. Compiled appended
// to train.wgsl, with the holes filled by the host for one architecture
// (src/gpu/samples.rs): every activation, error, weight and sum a named
// scalar, computed with the arithmetic of the train.wgsl function named in
// the comment above it, in the same order.

@compute @workgroup_size(workgroup_size)
fn sample_partials(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    let args = dispatch_args[current.dispatch];
    let batch = current_batch(args.chunk_first);
    // One block of the chunk per thread, clipped as gradient_partials_at
    // clips them.
    let block = thread_index(group, groups, local);
    if !block_in_chunk(block, args, batch) {
        return;
    }
    let first = block * reduce_block;
    let end = min(first + reduce_block, batch.size);
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
    // One running sum per parameter, then the squared error's.
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
    var squared_error = 0.0;
    for (var s = first; s < end; s++) {
        let a0_0 = tensors[run.input_offset + s];
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
        let residual = a3_0 - tensors[run.target_offset + s];
        let e3_0 = output_delta(residual, batch.total);
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
        squared_error += residual * residual;
    }
    // Level 0 of the reduction: row p (parameter p; the squared error in
    // row param_count), column block0 + block, as gradient_partials_at.
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
    reduce[column + 22u * args.out_len] = squared_error;
}
