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
    // if records {
    let record = step_record(t);
    history.losses[record + p] = params[p];
    history.losses[record + PARAM_COUNT + p] = params[PARAM_COUNT + p];
    history.losses[record + 2u * PARAM_COUNT + p] = params[2u * PARAM_COUNT + p];
    history.losses[record + 3u * PARAM_COUNT + p] = g;
    // } records
    let alpha = step_sizes[min(t, arrayLength(&step_sizes)) - 1u];
    let m = params[PARAM_COUNT + p] + (g - params[PARAM_COUNT + p]) * run.one_minus_beta_1;
    let v = params[2u * PARAM_COUNT + p] + (g * g - params[2u * PARAM_COUNT + p]) * run.one_minus_beta_2;
    params[PARAM_COUNT + p] = m;
    params[2u * PARAM_COUNT + p] = v;
    let w = params[p] - (m * alpha) / (sqrt(v) + run.epsilon);
    params[p] = w;
    flag_if_not_finite(w, t);
    // if records {
    let after = record + 4u * PARAM_COUNT + 1u;
    history.losses[after + p] = w;
    history.losses[after + PARAM_COUNT + p] = m;
    history.losses[after + 2u * PARAM_COUNT + p] = v;
    // } records
}

// if records {
// Step records for the shadow check (src/shadow/): each STEP_RECORD_LEN
// = 7 PARAM_COUNT + 1 values, weights, m and v before the step, its
// gradients, its loss, and weights, m and v after it (`StepRecord`,
// src/training.rs). Every step is recorded, into a ring the host reads
// after each submission (a submission runs at most `record_slots` steps).

// Where step t's record starts in `history.losses`.
fn step_record(t: u32) -> u32 {
    return run.record_offset + ((t - 1u) % run.record_slots) * STEP_RECORD_LEN;
}
// } records
