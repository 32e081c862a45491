//! The CPU reference: plain f32 Rust, the same math and the same order of
//! operations as the WGSL kernels, one step at a time. Tests hold the GPU to
//! it, and `gpu-c2f --cpu-reference` trains with it.

use crate::batching::{Batch, Batching};
use crate::data::Dataset;
use crate::model::{Architecture, DenseLayout, LANES, Model, dense_forward, padded_samples};
use crate::optimizer::adam_update;
use crate::training::{Diverged, TrainConfig, TrainOutput};
use anyhow::Result;

/// Every sum over samples (and over partial sums) adds this many values in
/// order before the next level adds the block sums: the GPU gives each block
/// to one thread, so the CPU adds in exactly the same order.
pub const REDUCE_BLOCK: usize = 256;

/// Sum of `term(0) + ... + term(count - 1)` in blocks of [`REDUCE_BLOCK`],
/// level by level, in the GPU's order. Allocates only when `count` exceeds
/// one block.
pub fn blocked_sum(count: usize, term: impl Fn(usize) -> f32) -> f32 {
    let block_sum = |first: usize| {
        let end = (first + REDUCE_BLOCK).min(count);
        (first..end).fold(0.0f32, |sum, i| sum + term(i))
    };
    if count <= REDUCE_BLOCK {
        return block_sum(0);
    }
    let mut partials: Vec<f32> = (0..count).step_by(REDUCE_BLOCK).map(block_sum).collect();
    while partials.len() > 1 {
        partials = partials
            .chunks(REDUCE_BLOCK)
            .map(|block| block.iter().fold(0.0f32, |sum, v| sum + v))
            .collect();
    }
    partials[0]
}

/// The per-sample buffers of one forward and backward pass over a batch,
/// reused every step so the loop does not allocate. Every tensor is stored
/// feature-major (all samples of unit 0, then of unit 1, ...), each row
/// padded to a multiple of [`LANES`]: the inner loops then run over a few
/// samples at a time in registers, which on the seed's 1-3 wide layers is
/// what keeps the reference fast. Each sum is still added in the kernels'
/// order.
pub struct Backprop {
    layers: Vec<DenseLayout>,
    /// `activations[l][i * stride + s]`: layer l's activation i for sample s
    /// of the batch, `stride = padded_samples(samples)` (`activations[0]`
    /// holds the inputs).
    activations: Vec<Vec<f32>>,
    /// `errors[l]`: dLoss/d(activations[l]) in the same layout (`errors[0]` unused).
    errors: Vec<Vec<f32>>,
    /// `output - target` per sample.
    residuals: Vec<f32>,
    /// Per-block gradient sums when the samples span several blocks.
    block_partials: Vec<f32>,
}

impl Backprop {
    /// Buffers for batches of up to `capacity` samples.
    pub fn new(architecture: &Architecture, capacity: usize) -> Self {
        let activations: Vec<Vec<f32>> = architecture
            .widths()
            .iter()
            .map(|w| vec![0.0f32; padded_samples(capacity) * w])
            .collect();
        Self {
            layers: architecture.layers(),
            errors: activations.clone(),
            activations,
            residuals: vec![0.0f32; capacity],
            block_partials: Vec::new(),
        }
    }

    /// Mean squared error of `params` on one batch (`celsius[s]` ->
    /// `fahrenheit[s]`), and its gradient with respect to every parameter,
    /// written into `gradients`.
    pub fn loss_and_gradients(
        &mut self,
        params: &[f32],
        celsius: &[f32],
        fahrenheit: &[f32],
        gradients: &mut [f32],
    ) -> f32 {
        let samples = celsius.len();
        let stride = padded_samples(samples);
        let layers = &self.layers;
        let (activations, errors) = (&mut self.activations, &mut self.errors);
        activations[0][..samples].copy_from_slice(celsius);

        // Forward, layer by layer (the `dense_forward` kernel).
        for (l, layer) in layers.iter().enumerate() {
            let (inputs, outputs) = activations.split_at_mut(l + 1);
            dense_forward(
                params,
                layer,
                stride,
                &inputs[l][..stride * layer.inputs],
                &mut outputs[0][..stride * layer.units],
            );
        }

        // Loss and output error: L = mean(r^2), dL/dy = 2r/N.
        output_error(
            &activations.last().expect("at least one layer")[..samples],
            fahrenheit,
            &mut self.residuals[..samples],
            &mut errors.last_mut().expect("at least one layer")[..samples],
        );
        let residuals = &self.residuals[..samples];

        // Errors passed back to every hidden layer.
        for (l, layer) in layers.iter().enumerate().skip(1).rev() {
            let (before, after) = errors.split_at_mut(l + 1);
            dense_backward(params, layer, stride, &after[0], &mut before[l]);
        }

        // Gradients summed over samples (`gradient_partials`, `reduce_partials`):
        // each block of REDUCE_BLOCK samples in sample order, then the block
        // sums level by level, exactly as `blocked_sum` orders them.
        for (l, layer) in layers.iter().enumerate() {
            let (input, error) = (&activations[l], &errors[l + 1]);
            let size = layer.inputs * layer.units + layer.units;
            let layer_gradients = &mut gradients[layer.kernel_offset..][..size];
            if samples <= REDUCE_BLOCK {
                gradient_partials(input, error, layer, stride, 0..samples, layer_gradients);
                continue;
            }
            let blocks = samples.div_ceil(REDUCE_BLOCK);
            self.block_partials.resize(blocks * size, 0.0);
            for (block, partial) in self.block_partials.chunks_mut(size).enumerate() {
                let first = block * REDUCE_BLOCK;
                let range = first..(first + REDUCE_BLOCK).min(samples);
                gradient_partials(input, error, layer, stride, range, partial);
            }
            let partials = &self.block_partials;
            for (p, gradient) in layer_gradients.iter_mut().enumerate() {
                *gradient = blocked_sum(blocks, |block| partials[block * size + p]);
            }
        }
        blocked_sum(samples, |s| residuals[s] * residuals[s]) / samples as f32
    }
}

/// One batch's samples in the epoch's order (the `gather_batch` kernel),
/// in buffers reused from step to step.
#[derive(Debug, Default)]
pub struct GatheredBatch {
    celsius: Vec<f32>,
    fahrenheit: Vec<f32>,
}

impl GatheredBatch {
    /// `batch`'s inputs and targets: gathered through the shuffle, or the
    /// dataset's own slices when batches are not shuffled.
    pub fn gather<'a>(
        &'a mut self,
        data: &'a Dataset,
        batching: &Batching,
        batch: Batch,
    ) -> (&'a [f32], &'a [f32]) {
        if !batching.shuffle {
            let range = batch.first as usize..(batch.first + batch.size) as usize;
            return (&data.celsius[range.clone()], &data.fahrenheit[range]);
        }
        self.celsius.clear();
        self.fahrenheit.clear();
        for position in batch.first..batch.first + batch.size {
            let sample = batching.sample_index(batch.epoch, position) as usize;
            self.celsius.push(data.celsius[sample]);
            self.fahrenheit.push(data.fahrenheit[sample]);
        }
        (&self.celsius, &self.fahrenheit)
    }
}

/// The `output_error` kernel: for each sample of a batch of
/// `outputs.len()`, the residual `r = y_hat - y` (squared by the loss's
/// reduction) and the error fed back, `dL/dy_hat = 2 r / N`.
pub fn output_error(outputs: &[f32], targets: &[f32], residuals: &mut [f32], errors: &mut [f32]) {
    let samples = outputs.len() as f32;
    for (((residual, error), &y_hat), &y) in residuals
        .iter_mut()
        .zip(errors.iter_mut())
        .zip(outputs)
        .zip(targets)
    {
        *residual = y_hat - y;
        *error = (2.0 * *residual) / samples;
    }
}

/// The `dense_backward` kernel: the error passed back through a Dense layer
/// (no activation), `err_in[s][i] = sum_j err_out[s][j] * kernel[i][j]`,
/// added in order of j, on feature-major rows of `stride` samples (a
/// multiple of [`LANES`]).
pub fn dense_backward(
    params: &[f32],
    layer: &DenseLayout,
    stride: usize,
    error_out: &[f32],
    error_in: &mut [f32],
) {
    assert_eq!(stride % LANES, 0, "rows are padded to whole lane chunks");
    for first in (0..stride).step_by(LANES) {
        for i in 0..layer.inputs {
            let mut sums = [0.0f32; LANES];
            for j in 0..layer.units {
                let weight = params[layer.kernel_offset + i * layer.units + j];
                let unit_errors = &error_out[j * stride + first..][..LANES];
                for (sum, &e) in sums.iter_mut().zip(unit_errors) {
                    *sum += e * weight;
                }
            }
            error_in[i * stride + first..][..LANES].copy_from_slice(&sums);
        }
    }
}

/// The `gradient_partials` kernel for one layer and one block of samples:
/// the gradient sums over the samples in `range` of a batch whose
/// feature-major rows hold `stride` samples, each started at 0 and added in
/// sample order: kernel `[i][j] = sum_s input[s][i] * error[s][j]`, bias
/// `[j] = sum_s error[s][j]` (`out` is laid out as the parameters are).
pub fn gradient_partials(
    input: &[f32],
    error: &[f32],
    layer: &DenseLayout,
    stride: usize,
    range: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let (kernel, bias) = out.split_at_mut(layer.inputs * layer.units);
    let unit_errors = |j: usize| &error[j * stride..][range.clone()];
    for (i, row) in kernel.chunks_exact_mut(layer.units).enumerate() {
        let values = &input[i * stride..][range.clone()];
        for (j, gradient) in row.iter_mut().enumerate() {
            *gradient = values
                .iter()
                .zip(unit_errors(j))
                .fold(0.0f32, |sum, (&a, &e)| sum + a * e);
        }
    }
    for (j, gradient) in bias.iter_mut().enumerate() {
        *gradient = unit_errors(j).iter().fold(0.0f32, |sum, &e| sum + e);
    }
}

/// Trains `initial` on `config.data` with Adam and mean squared error in
/// Keras's mini-batches, recording each epoch's loss as Keras's history
/// does: the batch losses (each from its forward pass, before its update)
/// weighted by batch size, `sum(loss_k * size_k) / samples`.
pub fn train(initial: &Model, config: &TrainConfig) -> Result<TrainOutput> {
    train_with_progress(initial, config, |_| {})
}

/// [`train`], calling `on_progress` with the number of finished epochs
/// after each one.
pub fn train_with_progress(
    initial: &Model,
    config: &TrainConfig,
    mut on_progress: impl FnMut(usize),
) -> Result<TrainOutput> {
    config.validate()?;
    let started = std::time::Instant::now();
    let data = &config.data;
    let batching = config.batching();
    let adam = config.adam();
    let constants = adam.constants();
    let steps = config.epochs as u64 * batching.steps_per_epoch as u64;
    let step_sizes = adam.step_size_table(steps);
    let batch_capacity = batching.batch_size as usize;
    let mut backprop = Backprop::new(initial.architecture(), batch_capacity);
    let mut params = initial.params().to_vec();
    let mut gradients = vec![0.0f32; params.len()];
    let mut m = vec![0.0f32; params.len()];
    let mut v = vec![0.0f32; params.len()];
    let mut loss_history = Vec::with_capacity(config.epochs);
    let mut gathered = GatheredBatch::default();
    let mut epoch_total = 0.0f32;

    for step in 0..steps {
        let batch = batching.batch(step);
        let (celsius, fahrenheit) = gathered.gather(data, &batching, batch);
        let loss = backprop.loss_and_gradients(&params, celsius, fahrenheit, &mut gradients);
        let alpha = step_sizes[(step as usize).min(step_sizes.len() - 1)];
        let mut finite = loss.is_finite();
        for p in 0..params.len() {
            params[p] = adam_update(
                params[p],
                gradients[p],
                &mut m[p],
                &mut v[p],
                alpha,
                &constants,
            );
            finite &= params[p].is_finite();
        }
        // The same test as the kernels' flag: stop at the first step whose
        // loss or updated weights are not finite.
        if !finite {
            return Err(Diverged::at_step(step, batching.steps_per_epoch).into());
        }
        // Keras's `Mean` loss tracker: total += loss * batch size.
        epoch_total += loss * batch.size as f32;
        if batch.first + batch.size == batching.samples {
            loss_history.push(epoch_total / batching.samples as f32);
            epoch_total = 0.0;
            on_progress(batch.epoch as usize + 1);
        }
    }

    let model = Model::from_params(initial.architecture().clone(), params)?;
    Ok(TrainOutput {
        loss_history,
        model,
        train_time: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_sum_adds_blocks_then_block_sums() {
        let n = REDUCE_BLOCK * 3 + 5;
        let total = blocked_sum(n, |i| i as f32);
        assert_eq!(total as usize, n * (n - 1) / 2);
        assert_eq!(blocked_sum(0, |_| 1.0), 0.0);
        assert_eq!(blocked_sum(1, |_| 4.0), 4.0);
    }
}
