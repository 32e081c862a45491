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

// if layered {
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
    // if metrics {
    var metric_sums = array<f32, METRIC_COUNT>();
    // } metrics
    for (var j = 0u; j < OUTPUT_WIDTH; j++) {
        let output = tensors[OUTPUT_OFFSET + sample * OUTPUT_WIDTH + j];
        let index = OUTPUT_DELTA_OFFSET + sample * OUTPUT_WIDTH + j;
        // if nonlinear_output {
        let z = tensors[index];
        // } nonlinear_output
        // if !nonlinear_output {
        let z = output;
        // } !nonlinear_output
        let y = tensors[TARGET_OFFSET + sample * OUTPUT_WIDTH + j];
        // if metrics {
        let values = metric_values(output, z, y);
        for (var m = 0u; m < METRIC_COUNT; m++) {
            metric_sums[m] += values[m];
        }
        // } metrics
        let error = output_error_of(output, z, y, batch.total * OUTPUT_WIDTH);
        sum += error.loss;
        tensors[index] = error.delta;
    }
    tensors[SAMPLE_LOSS_OFFSET + sample] = sum / f32(OUTPUT_WIDTH);
    // if metrics {
    for (var m = 0u; m < METRIC_COUNT; m++) {
        tensors[SAMPLE_METRICS_OFFSET + m * CHUNK_SIZE + sample] = metric_sums[m] / f32(OUTPUT_WIDTH);
    }
    // } metrics
}
// } layered

// if mean_squared_error {
fn mean_squared_error(output: f32, y: f32) -> LossTerms {
    let r = output - y;
    return LossTerms(r * r, 2.0 * r);
}
// } mean_squared_error

// if mean_absolute_error {
fn mean_absolute_error(output: f32, y: f32) -> LossTerms {
    let r = output - y;
    return LossTerms(abs(r), sign_of(r));
}
// } mean_absolute_error

// if huber {
// Keras's `abs_error <= delta` (delta 1) is the quadratic side.
fn huber(output: f32, y: f32) -> LossTerms {
    let r = output - y;
    let linear = abs(r) - 1.0;
    return LossTerms(select(0.5 * (r * r), abs(r) - 0.5, linear > 0.0), select(r, sign_of(r), linear > 0.0));
}
// } huber

// if sign_of {
// 1, -1, or 0 at 0 (TensorFlow's gradient of abs).
fn sign_of(x: f32) -> f32 {
    return select(select(0.0, -1.0, -x > 0.0), 1.0, x > 0.0);
}
// } sign_of

// if binary_crossentropy {
// Of a probability output clipped to [1e-7, 1 - 1e-7] (Keras's epsilon);
// the clip's gradient is 0 outside.
fn binary_crossentropy(output: f32, y: f32) -> LossTerms {
    let p = clamp(output, 1e-7, 0.9999999);
    let loss = -(y * log(p) + (1.0 - y) * log(1.0 - p));
    let inside = -(y / p) + (1.0 - y) / (1.0 - p);
    return LossTerms(loss, select(select(inside, 0.0, output - 0.9999999 > 0.0), 0.0, 1e-7 - output > 0.0));
}
// } binary_crossentropy

// if binary_crossentropy_from_logits {
// Of a logit x: TensorFlow's sigmoid_cross_entropy_with_logits, whose
// derivative is sigmoid(x) - y. After a sigmoid output layer binary
// cross-entropy is taken from the layer's sums this way (Keras's
// `_keras_logits` shortcut), with the derivative by z itself.
fn binary_crossentropy_from_logits(x: f32, y: f32) -> LossTerms {
    let loss = (select(0.0, x, x > 0.0) - x * y) + log(1.0 + exp(-abs(x)));
    return LossTerms(loss, sigmoid(x) - y);
}
// } binary_crossentropy_from_logits

// if binary_accuracy {
// Keras's binary_accuracy: (output > 0.5) == y.
fn binary_accuracy(output: f32, y: f32) -> f32 {
    let predicted = select(0.0, 1.0, output - 0.5 > 0.0);
    return select(1.0, 0.0, abs(y - predicted) > 0.0);
}
// } binary_accuracy
