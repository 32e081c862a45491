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
    // if records {
    history.losses[step_record(t) + 4u * PARAM_COUNT] = loss;
    // } records
    history.epoch_total += loss * f32(batch.total);
    // if metrics {
    // Each metric's sum over the batch into the epoch's (Keras's Mean:
    // total and count, the count being the epoch's samples).
    for (var m = 0u; m < METRIC_COUNT; m++) {
        reduce[METRIC_TOTALS_OFFSET + m] += reduce[TOTALS_OFFSET + METRIC_ROW + m];
    }
    // } metrics
    if ends_epoch(batch) {
        history.losses[batch.epoch] = history.epoch_total / f32(SAMPLES);
        history.epoch_total = 0.0;
        // if metrics {
        for (var m = 0u; m < METRIC_COUNT; m++) {
            history.losses[run.metric_offset + m * run.epochs + batch.epoch] = reduce[METRIC_TOTALS_OFFSET + m] / f32(SAMPLES);
            reduce[METRIC_TOTALS_OFFSET + m] = 0.0;
        }
        // } metrics
        // if validation {
        history.losses[run.val_loss_offset + batch.epoch] = validation_mean(0u);
        // if metrics {
        for (var m = 0u; m < METRIC_COUNT; m++) {
            history.losses[run.val_metric_offset + m * run.epochs + batch.epoch] = validation_mean(1u + m);
        }
        // } metrics
        // } validation
        // if early_stopping {
        watch_epoch(batch.epoch);
        // } early_stopping
    }
    history.step = t;
}

// if early_stopping {
// Keras's EarlyStopping.on_epoch_end (0-based `epoch`), monitoring val_loss
// with a validation split, else loss: an improvement is `value + min_delta
// < best` (the first epoch always is); `patience` epochs in a row without
// one stop training, from the second epoch on (`EarlyStopping::watch`).
fn watch_epoch(epoch: u32) {
    // if validation {
    let value = history.losses[run.val_loss_offset + epoch];
    // } validation
    // if !validation {
    let value = history.losses[epoch];
    // } !validation
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
// } early_stopping

// if keep_best {
// After a step that ended the best epoch so far (`restore_best_weights`):
// its weights into params [3P, 4P).
fn keep_best_at(p: u32, args: DispatchArgs, batch: Batch) {
    let done = history.step;
    let ended_best = done % STEPS_PER_EPOCH == 0u && done / STEPS_PER_EPOCH == history.best_epoch;
    if p >= PARAM_COUNT || !ended_best {
        return;
    }
    params[3u * PARAM_COUNT + p] = params[p];
}
// } keep_best

// if validation {
// After an epoch's last update: the loss of validation row `s` under the
// updated weights, one thread a row, its network in the row's scratch
// rows (the CPU reference's `validation_losses`, `forward_one`).
fn validation_losses_at(s: u32, args: DispatchArgs, batch: Batch) {
    if s >= VALIDATION_SAMPLES || !ends_epoch(batch) {
        return;
    }
    let scratch = VALIDATION_SCRATCH_OFFSET + s * 3u * WIDEST;
    row_values(SAMPLES + s, scratch, s);
}

// Then each block of REDUCE_BLOCK rows' losses (and each metric's
// values), summed in order.
fn validation_partials_at(index: u32, args: DispatchArgs, batch: Batch) {
    let blocks = (VALIDATION_SAMPLES + REDUCE_BLOCK - 1u) / REDUCE_BLOCK;
    let block = index % blocks;
    let series = index / blocks;
    if series >= VALIDATION_SERIES || !ends_epoch(batch) {
        return;
    }
    let first = block * REDUCE_BLOCK;
    let end = min(first + REDUCE_BLOCK, VALIDATION_SAMPLES);
    let values = VALIDATION_VALUES_OFFSET + series * VALIDATION_SAMPLES;
    var sum = 0.0;
    for (var s = first; s < end; s++) {
        sum += tensors[values + s];
    }
    reduce[VALIDATION_PARTIALS_OFFSET + series * blocks + block] = sum;
}

// Dataset row `row` through the network (`forward_row`, written for the
// network by src/gpu/module.rs: each sum from 0 in input order, the bias
// last, then the activation, its activations in two scratch rows of WIDEST
// values taken in turn and each layer's sums in a third), then the row's
// loss and each metric's value, the means of its output units', into
// validation row `s` of each series.
fn row_values(row: u32, scratch: u32, s: u32) {
    let outputs = forward_row(row, scratch);
    let sums = scratch + 2u * WIDEST;
    var loss = 0.0;
    // if metrics {
    var metric_sums = array<f32, METRIC_COUNT>();
    // } metrics
    for (var j = 0u; j < OUTPUT_WIDTH; j++) {
        let output = tensors[outputs + j];
        let z = tensors[sums + j];
        let y = tensors[targets_of_row(row) + j];
        // if metrics {
        let values = metric_values(output, z, y);
        for (var m = 0u; m < METRIC_COUNT; m++) {
            metric_sums[m] += values[m];
        }
        // } metrics
        loss += output_error_of(output, z, y, 1u).loss;
    }
    tensors[VALIDATION_VALUES_OFFSET + s] = loss / f32(OUTPUT_WIDTH);
    // if metrics {
    for (var m = 0u; m < METRIC_COUNT; m++) {
        tensors[VALIDATION_VALUES_OFFSET + (1u + m) * VALIDATION_SAMPLES + s] = metric_sums[m] / f32(OUTPUT_WIDTH);
    }
    // } metrics
}

// A validation series' mean for the epoch (`finish_step`, item 0; series 0
// the loss, 1 + m metric m): its blocks' sums added in block order, over
// the rows.
fn validation_mean(series: u32) -> f32 {
    let blocks = (VALIDATION_SAMPLES + REDUCE_BLOCK - 1u) / REDUCE_BLOCK;
    var total = 0.0;
    for (var b = 0u; b < blocks; b++) {
        total += reduce[VALIDATION_PARTIALS_OFFSET + series * blocks + b];
    }
    return total / f32(VALIDATION_SAMPLES);
}
// } validation
