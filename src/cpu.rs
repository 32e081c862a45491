//! The CPU reference: plain f32 Rust, the same math and the same order of
//! operations as the WGSL kernels, one step at a time. It walks the same
//! operation list as the GPU (src/step.rs), each operation through a
//! function named like its kernel. Tests hold the GPU to it, and
//! `gpu-c2f --cpu-reference` trains with it.

use crate::activation::Activation;
use crate::batching::{Batch, Batching};
use crate::data::Dataset;
use crate::error::Result;
use crate::loss::{Loss, Metric};
use crate::model::{Architecture, DenseLayout, Model, forward_one};
use crate::optimizer::{AdamState, adam_update};
use crate::step::{
    Chunking, Extras, Op, REDUCE_BLOCK, SampleWork, SumRows, reduction_levels, step_ops,
};
use crate::training::{Diverged, EpochResults, TrainConfig, TrainOutput, Watch};

/// The operations of one CPU training step on batches of `batch_size`: the
/// batch at once (the CPU needs no chunks), gathered first when `gather`.
pub fn cpu_step_ops(
    architecture: &Architecture,
    batch_size: usize,
    gather: bool,
    extras: Extras,
) -> Vec<Op> {
    let levels = reduction_levels(batch_size as u64, REDUCE_BLOCK as u64);
    let chunking = Chunking {
        chunks: 1,
        gather,
        further_levels: levels.len() - 1,
    };
    step_ops(
        architecture.layers().len(),
        chunking,
        SampleWork::Layers,
        extras,
    )
}

/// The per-sample tensors and the reduction levels of one forward and
/// backward pass over a batch, reused every step so the loop does not
/// allocate. Every tensor is stored feature-major (all samples of unit 0,
/// then of unit 1, ...), each row padded to a multiple of [`LANES`]: the
/// inner loops then run over a few samples at a time in registers, which on
/// the seed's 1-3 wide layers is what keeps the reference fast. Each sum is
/// still added in the kernels' order.
pub struct Backprop {
    layers: Vec<DenseLayout>,
    /// The rows of every level: the gradients, the loss, the metrics.
    rows: SumRows,
    loss: Loss,
    /// The operations from the forward pass to the last reduction level.
    ops: Vec<Op>,
    /// `activations[l][i * stride + s]`: layer l's activation i for sample s
    /// of the batch, `stride = padded_samples(samples)` (`activations[0]`
    /// holds the inputs).
    activations: Vec<Vec<f32>>,
    /// `errors[l]`: dLoss/dz of layer l - 1's sums z in the same layout
    /// (`errors[0]` unused); before the backward pass, the sums themselves
    /// where the layer is nonlinear.
    errors: Vec<Vec<f32>>,
    /// Each sample's loss.
    sample_losses: Vec<f32>,
    /// The metrics tracked, and each one's value of each sample, a row of
    /// `capacity` a metric.
    metrics: Vec<Metric>,
    sample_metrics: Vec<f32>,
    capacity: usize,
    /// `levels[k][row * len_k + column]`, as the GPU's `reduce` buffer: one
    /// row per parameter, then the squared error's; level 0 one column per
    /// block of samples, the last level one total per row.
    levels: Vec<Vec<f32>>,
    /// One block's sums of one layer, in the layer's parameter order.
    block_sums: Vec<f32>,
}

/// A batch's samples as the per-sample operations see them: inputs and
/// targets row-major, `inputs` and `outputs` a sample.
struct BatchView<'a> {
    x: &'a [f32],
    y: &'a [f32],
    inputs: usize,
}

impl BatchView<'_> {
    fn samples(&self) -> usize {
        self.x.len() / self.inputs
    }

    fn stride(&self) -> usize {
        padded_samples(self.samples())
    }

    /// Columns of reduction level `level` for this batch: a smaller last
    /// batch has fewer blocks, and the levels past its total hold it again.
    fn level_len(&self, level: usize) -> usize {
        (0..level).fold(self.samples().div_ceil(REDUCE_BLOCK), |len, _| {
            len.div_ceil(REDUCE_BLOCK)
        })
    }

    fn block(&self, block: usize) -> std::ops::Range<usize> {
        let first = block * REDUCE_BLOCK;
        first..(first + REDUCE_BLOCK).min(self.samples())
    }
}

impl Backprop {
    /// Buffers for batches of up to `capacity` samples, for `loss`.
    pub fn new(architecture: &Architecture, loss: Loss, capacity: usize) -> Self {
        Self::with_metrics(architecture, loss, &[], capacity)
    }

    /// [`Self::new`], also summing each of `metrics` over the batch
    /// ([`Self::metric_sums`]).
    pub fn with_metrics(
        architecture: &Architecture,
        loss: Loss,
        metrics: &[Metric],
        capacity: usize,
    ) -> Self {
        let activations: Vec<Vec<f32>> = architecture
            .widths()
            .iter()
            .map(|w| vec![0.0f32; padded_samples(capacity) * w])
            .collect();
        let rows = SumRows {
            params: architecture.param_count(),
            metrics: metrics.len(),
        };
        let levels = reduction_levels(capacity as u64, REDUCE_BLOCK as u64)
            .iter()
            .map(|&len| vec![0.0f32; rows.count() * len as usize])
            .collect();
        // Without the gather, the update and the bookkeeping, which the
        // trainer walking the whole list does itself.
        let extras = Extras {
            metrics: metrics.len(),
            ..Extras::default()
        };
        let ops = cpu_step_ops(architecture, capacity, false, extras)
            .into_iter()
            .filter(|op| !matches!(op, Op::Adam | Op::FinishStep))
            .collect();
        Self {
            layers: architecture.layers(),
            rows,
            loss,
            ops,
            errors: activations.clone(),
            activations,
            sample_losses: vec![0.0f32; capacity],
            metrics: metrics.to_vec(),
            sample_metrics: vec![0.0f32; capacity * metrics.len()],
            capacity,
            levels,
            block_sums: Vec::new(),
        }
    }

    /// The loss of `params` on one batch (`celsius[s]` ->
    /// `fahrenheit[s]`), and its gradient with respect to every parameter,
    /// written into `gradients`: the step's operations from the forward pass
    /// to the last reduction level.
    pub fn loss_and_gradients(
        &mut self,
        params: &[f32],
        x: &[f32],
        y: &[f32],
        gradients: &mut [f32],
    ) -> f32 {
        let batch = BatchView {
            x,
            y,
            inputs: self.layers[0].inputs,
        };
        for k in 0..self.ops.len() {
            let op = self.ops[k];
            self.run(op, params, &batch);
        }
        gradients.copy_from_slice(self.totals());
        self.loss(batch.samples())
    }

    /// Each metric's sum over the last batch (its values added in the
    /// kernels' order).
    pub fn metric_sums(&self) -> &[f32] {
        &self.levels.last().expect("one level")[self.rows.metric(0)..]
    }

    /// Each parameter's gradient: the last reduction level's totals.
    fn totals(&self) -> &[f32] {
        &self.levels.last().expect("one level")[..self.rows.params]
    }

    /// The batch's mean squared error, from the squared-error total (the
    /// `finish_step` kernel's division).
    fn loss(&self, samples: usize) -> f32 {
        self.levels.last().expect("one level")[self.rows.loss()] / samples as f32
    }

    /// One per-sample or reduction operation, through the function named
    /// like its kernel.
    fn run(&mut self, op: Op, params: &[f32], batch: &BatchView) {
        let (samples, stride) = (batch.samples(), batch.stride());
        let blocks = batch.level_len(0);
        let last = self.layers.len();
        match op {
            Op::DenseForward { layer, .. } => {
                // The batch's inputs, as gathered, are activation 0
                // (feature-major, as every tensor here).
                if layer == 0 {
                    let inputs = batch.inputs;
                    for (s, row) in batch.x.chunks_exact(inputs).enumerate() {
                        for (i, &value) in row.iter().enumerate() {
                            self.activations[0][i * stride + s] = value;
                        }
                    }
                }
                let layout = &self.layers[layer];
                let (inputs, outputs) = self.activations.split_at_mut(layer + 1);
                dense_forward(
                    params,
                    layout,
                    stride,
                    &inputs[layer][..stride * layout.inputs],
                    &mut outputs[0][..stride * layout.units],
                    &mut self.errors[layer + 1][..stride * layout.units],
                );
            }
            Op::OutputError { .. } => output_error(
                self.loss,
                &self.metrics,
                self.layers[last - 1].activation,
                OutputTensors {
                    stride,
                    outputs: &self.activations[last],
                    targets: batch.y,
                    sample_losses: &mut self.sample_losses[..samples],
                    errors: &mut self.errors[last],
                    sample_metrics: &mut self.sample_metrics,
                    metric_stride: self.capacity,
                },
            ),
            Op::DenseBackward { layer, .. } => {
                let (before, after) = self.errors.split_at_mut(layer + 1);
                dense_backward(
                    params,
                    &self.layers[layer],
                    self.layers[layer - 1].activation,
                    stride,
                    &after[0],
                    &mut before[layer],
                );
            }
            Op::GradientPartials { layer, .. } => {
                let layout = &self.layers[layer];
                let size = layout.inputs * layout.units + layout.units;
                let (input, error) = (&self.activations[layer], &self.errors[layer + 1]);
                if blocks == 1 {
                    // One column: the layer's partial sums are its rows'
                    // entries, in place.
                    let out = &mut self.levels[0][layout.kernel_offset..][..size];
                    gradient_partials(input, error, layout, stride, batch.block(0), out);
                    return;
                }
                self.block_sums.resize(size, 0.0);
                for block in 0..blocks {
                    let range = batch.block(block);
                    gradient_partials(input, error, layout, stride, range, &mut self.block_sums);
                    for (k, &sum) in self.block_sums.iter().enumerate() {
                        self.levels[0][(layout.kernel_offset + k) * blocks + block] = sum;
                    }
                }
            }
            Op::LossSum { .. } => {
                let row = self.rows.loss() * blocks;
                for block in 0..blocks {
                    let losses = &self.sample_losses[batch.block(block)];
                    self.levels[0][row + block] = loss_partial(losses);
                }
            }
            Op::MetricSum { metric, .. } => {
                let row = self.rows.metric(metric) * blocks;
                let values = &self.sample_metrics[metric * self.capacity..];
                for block in 0..blocks {
                    self.levels[0][row + block] = loss_partial(&values[batch.block(block)]);
                }
            }
            Op::Reduce { level } => {
                let (before, after) = self.levels.split_at_mut(level);
                reduce_partials(
                    &before[level - 1],
                    batch.level_len(level - 1),
                    &mut after[0],
                    batch.level_len(level),
                    self.rows.count(),
                );
            }
            Op::Gather { .. }
            | Op::SamplePartials { .. }
            | Op::Adam
            | Op::ValidationLosses
            | Op::ValidationPartials
            | Op::FinishStep
            | Op::KeepBest => {
                unreachable!("{op:?} is not a per-sample or reduction operation")
            }
        }
    }
}

/// One batch's samples in the epoch's order (the `gather_batch` kernel),
/// in buffers reused from step to step.
#[derive(Debug, Default)]
pub struct GatheredBatch {
    x: Vec<f32>,
    y: Vec<f32>,
    /// The batch the buffers hold.
    gathered: Option<Batch>,
}

impl GatheredBatch {
    /// `gather_batch`: copies `batch`'s inputs and targets in the epoch's
    /// shuffled order (a no-op when batches are not shuffled: [`Self::view`]
    /// then reads the dataset in place).
    pub fn gather(&mut self, data: &Dataset, batching: &Batching, batch: Batch) {
        if !batching.shuffle {
            return;
        }
        self.x.clear();
        self.y.clear();
        for position in batch.first..batch.first + batch.size {
            let sample = batching.sample_index(batch.epoch, position) as usize;
            self.x.extend_from_slice(data.x_row(sample));
            self.y.extend_from_slice(data.y_row(sample));
        }
        self.gathered = Some(batch);
    }

    /// `batch`'s inputs and targets: as gathered, or the dataset's own
    /// slices when batches are not shuffled.
    pub fn view<'a>(
        &'a self,
        data: &'a Dataset,
        batching: &Batching,
        batch: Batch,
    ) -> (&'a [f32], &'a [f32]) {
        if batching.shuffle {
            // Reading a batch never gathered would train on another one.
            assert_eq!(self.gathered, Some(batch), "the batch was not gathered");
            return (&self.x, &self.y);
        }
        data.rows(batch.first as usize..(batch.first + batch.size) as usize)
    }
}

/// Samples the CPU tensors hold per row chunk: [`dense_forward`] and the
/// backward pass work on `LANES` samples at a time in registers, so every
/// tensor row is padded to a multiple of it (see [`padded_samples`]).
pub const LANES: usize = 8;

/// Row length of a feature-major tensor for `samples` samples: the next
/// multiple of [`LANES`]. Padding lanes compute values no sum ever reads.
pub fn padded_samples(samples: usize) -> usize {
    samples.next_multiple_of(LANES)
}

/// The `dense_forward` kernel: one Dense layer for a batch stored
/// feature-major with rows of `stride` samples (a multiple of [`LANES`]):
/// `inputs[i * stride + s]`, `outputs[j * stride + s]`.
/// `out[s][j] = f((sum_i in[s][i] * kernel[i][j]) + bias[j])`, each sum
/// started at 0 and added in order of `i`, the bias added last, then the
/// layer's activation `f`, as the WGSL kernel does. A nonlinear layer also
/// keeps its sums `z` in `sums` (the same layout) for the backward pass.
/// Working on LANES samples of one unit at a time keeps the sums in
/// registers however narrow the layer (the seed's are 1-3 wide).
pub fn dense_forward(
    params: &[f32],
    layer: &DenseLayout,
    stride: usize,
    inputs: &[f32],
    outputs: &mut [f32],
    sums: &mut [f32],
) {
    // A stride off the lane grid would let a chunk run into the next row.
    assert_eq!(stride % LANES, 0, "rows are padded to whole lane chunks");
    assert!(inputs.len() >= stride * layer.inputs && outputs.len() >= stride * layer.units);
    let kernel = &params[layer.kernel_offset..layer.bias_offset];
    let bias = &params[layer.bias_offset..][..layer.units];
    let activation = layer.activation;
    for first in (0..stride).step_by(LANES) {
        for (unit, &b) in bias.iter().enumerate() {
            let mut lanes = [0.0f32; LANES];
            for i in 0..layer.inputs {
                let weight = kernel[i * layer.units + unit];
                let values = &inputs[i * stride + first..][..LANES];
                for (sum, &value) in lanes.iter_mut().zip(values) {
                    *sum += value * weight;
                }
            }
            let row = unit * stride + first..unit * stride + first + LANES;
            if activation.is_linear() {
                for (out, sum) in outputs[row].iter_mut().zip(lanes) {
                    *out = sum + b;
                }
                continue;
            }
            for ((out, z), sum) in outputs[row.clone()]
                .iter_mut()
                .zip(&mut sums[row])
                .zip(lanes)
            {
                *z = sum + b;
                *out = activation.apply(*z);
            }
        }
    }
}

/// The tensors the `output_error` kernel reads and writes: `outputs` and
/// `errors` feature-major rows of `stride` samples (`errors` holds the
/// output layer's sums z when it is nonlinear, and the errors after),
/// `targets` row-major, one loss a sample, and each metric's values in a
/// row of `metric_stride`.
pub struct OutputTensors<'a> {
    /// Row length of `outputs` and `errors`.
    pub stride: usize,
    /// The network's outputs.
    pub outputs: &'a [f32],
    /// The targets, row-major.
    pub targets: &'a [f32],
    /// Each sample's loss (one per sample of the batch).
    pub sample_losses: &'a mut [f32],
    /// The output layer's sums z in, dL/dz out.
    pub errors: &'a mut [f32],
    /// Metric m's value of sample s at `m * metric_stride + s`.
    pub sample_metrics: &'a mut [f32],
    /// Row length of `sample_metrics`.
    pub metric_stride: usize,
}

/// The `output_error` kernel: for each sample of a batch, its loss (the
/// mean over the output units of each unit's, summed by the reduction), the
/// error fed back, dL/dz ([`Loss::output_error`], over `N x units`), and
/// each metric's value (the mean over the units, [`Metric::value`]), for
/// the output layer's `activation`.
pub fn output_error(loss: Loss, metrics: &[Metric], activation: Activation, t: OutputTensors) {
    let samples = t.sample_losses.len();
    let units = t.targets.len() / samples.max(1);
    let total = (samples * units) as f32;
    let mut metric_sums = vec![0.0f32; metrics.len()];
    for s in 0..samples {
        let mut sum = 0.0f32;
        metric_sums.iter_mut().for_each(|m| *m = 0.0);
        for j in 0..units {
            let output = t.outputs[j * t.stride + s];
            let error = &mut t.errors[j * t.stride + s];
            let z = if activation.is_linear() {
                output
            } else {
                *error
            };
            let y = t.targets[s * units + j];
            for (metric_sum, metric) in metric_sums.iter_mut().zip(metrics) {
                *metric_sum += metric.value(output, z, y, activation);
            }
            let result = loss.output_error(output, z, y, activation, total);
            sum += result.loss;
            *error = result.delta;
        }
        t.sample_losses[s] = sum / units as f32;
        for (m, &metric_sum) in metric_sums.iter().enumerate() {
            t.sample_metrics[m * t.metric_stride + s] = metric_sum / units as f32;
        }
    }
}

/// The `dense_backward` kernel: the error passed back through a Dense
/// layer to its inputs, `err_in[s][i] = (sum_j err_out[s][j] *
/// kernel[i][j]) * f'(z[s][i])`, added in order of j, where `f` is the
/// activation of the layer below (`below`), whose sums `z` `error_in` holds
/// when it is nonlinear; on feature-major rows of `stride` samples (a
/// multiple of [`LANES`]).
pub fn dense_backward(
    params: &[f32],
    layer: &DenseLayout,
    below: Activation,
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
            let out = &mut error_in[i * stride + first..][..LANES];
            if below.is_linear() {
                out.copy_from_slice(&sums);
                continue;
            }
            for (error, sum) in out.iter_mut().zip(sums) {
                *error = sum * below.derivative(*error);
            }
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

/// The loss's "layer" of `gradient_partials`: one block's sum of the
/// samples' losses, started at 0 and added in sample order.
pub fn loss_partial(sample_losses: &[f32]) -> f32 {
    sample_losses.iter().fold(0.0f32, |sum, &loss| sum + loss)
}

/// The `reduce_partials` kernel: each of `rows` rows of `from` (`from_len`
/// partial sums a row) becomes `to_len` sums of [`REDUCE_BLOCK`] consecutive
/// partials, each started at 0 and added in order.
pub fn reduce_partials(from: &[f32], from_len: usize, to: &mut [f32], to_len: usize, rows: usize) {
    for row in 0..rows {
        let partials = &from[row * from_len..][..from_len];
        for (block, chunk) in partials.chunks(REDUCE_BLOCK).enumerate() {
            to[row * to_len + block] = chunk.iter().fold(0.0f32, |sum, &v| sum + v);
        }
    }
}

/// The `validation_losses` kernel, run after an epoch's last update: the
/// loss of every validation row (`rows` of `data`) under `params`, then
/// each of `metrics`' values, a series of `rows.len()` each, into `values`.
pub fn validation_losses(
    params: &[f32],
    layers: &[DenseLayout],
    (loss, metrics): (Loss, &[Metric]),
    data: &Dataset,
    rows: std::ops::Range<usize>,
    values: &mut Vec<f32>,
) {
    let activation = layers.last().expect("one layer").activation;
    let (mut outputs, mut sums) = (Vec::new(), Vec::new());
    let n = rows.len();
    values.clear();
    values.resize(n * (1 + metrics.len()), 0.0);
    for (s, row) in rows.enumerate() {
        forward_one(params, layers, data.x_row(row), &mut outputs, &mut sums);
        let targets = data.y_row(row);
        let units = targets.len();
        let mut loss_sum = 0.0f32;
        let mut metric_sums = vec![0.0f32; metrics.len()];
        for j in 0..units {
            let (output, z, y) = (outputs[j], sums[j], targets[j]);
            for (metric_sum, metric) in metric_sums.iter_mut().zip(metrics) {
                *metric_sum += metric.value(output, z, y, activation);
            }
            loss_sum += loss.output_error(output, z, y, activation, 1.0f32).loss;
        }
        values[s] = loss_sum / units as f32;
        for (m, metric_sum) in metric_sums.into_iter().enumerate() {
            values[(1 + m) * n + s] = metric_sum / units as f32;
        }
    }
}

/// The `validation_partials` kernel: in each series of `rows` values (the
/// loss, then each metric), each block of [`REDUCE_BLOCK`] rows' values
/// summed in order.
pub fn validation_partials(values: &[f32], rows: usize) -> Vec<Vec<f32>> {
    values
        .chunks(rows.max(1))
        .map(|series| {
            series
                .chunks(REDUCE_BLOCK)
                .map(|block| block.iter().fold(0.0f32, |sum, &v| sum + v))
                .collect()
        })
        .collect()
}

/// A series' epoch mean from its blocks' sums (`finish_step`): added in
/// block order, divided by the rows.
pub fn validation_loss(partials: &[f32], rows: usize) -> f32 {
    partials.iter().fold(0.0f32, |sum, &p| sum + p) / rows as f32
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
    config.check_model(initial)?;
    let started = web_time::Instant::now();
    let data = &config.data;
    let batching = config.batching();
    let adam = config.adam();
    let constants = adam.constants();
    let steps = config.epochs as u64 * batching.steps_per_epoch as u64;
    let step_sizes = config.step_sizes(steps);
    let batch_capacity = batching.batch_size as usize;
    let metrics: Vec<Metric> = config.metrics.iter().map(|m| m.metric).collect();
    let architecture = initial.architecture();
    let mut backprop = Backprop::with_metrics(architecture, config.loss, &metrics, batch_capacity);
    // Each metric's running total over the epoch, its values per epoch, and
    // on the validation rows.
    let mut metric_totals = vec![0.0f32; metrics.len()];
    let mut metric_values = vec![Vec::new(); metrics.len()];
    let mut val_metric_values = vec![Vec::new(); metrics.len()];
    let mut params = initial.params().to_vec();
    let AdamState {
        iterations,
        mut m,
        mut v,
    } = config.adam_start(params.len());
    let mut loss_history = Vec::with_capacity(config.epochs);
    let mut val_loss_history = Vec::new();
    let mut gathered = GatheredBatch::default();
    let mut epoch_total = 0.0f32;
    let layers = initial.architecture().layers();
    let validation_rows = config.validation_rows();
    let mut validation = Vec::new();
    let mut watch = Watch::default();
    let mut stopped_epoch = None;
    let mut best_params = Vec::new();

    let ops = cpu_step_ops(
        initial.architecture(),
        batching.batch_size as usize,
        batching.shuffle,
        config.extras(),
    );
    'steps: for step in 0..steps {
        let batch = batching.batch(step);
        let mut loss = 0.0f32;
        for &op in &ops {
            match op {
                Op::Gather { .. } => gathered.gather(data, &batching, batch),
                Op::Adam => {
                    let alpha = step_sizes[(step as usize).min(step_sizes.len() - 1)];
                    let gradients = backprop.totals();
                    loss = backprop.loss(batch.size as usize);
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
                    // The same test as the kernels' flag: stop at the first
                    // step whose loss or updated weights are not finite.
                    if !finite {
                        return Err(Diverged::at_step(step, batching.steps_per_epoch)
                            .diagnosed(config)
                            .into());
                    }
                }
                Op::ValidationLosses if batch.ends_epoch(&batching) => {
                    let rows = validation_rows.clone();
                    let losses = (config.loss, &metrics[..]);
                    validation_losses(&params, &layers, losses, data, rows, &mut validation);
                }
                // The best weights are kept where the epoch is watched.
                Op::ValidationLosses | Op::ValidationPartials | Op::KeepBest => {}
                Op::FinishStep => {
                    // Keras's `Mean` loss tracker: total += loss * batch size.
                    epoch_total += loss * batch.size as f32;
                    for (total, &sum) in metric_totals.iter_mut().zip(backprop.metric_sums()) {
                        *total += sum;
                    }
                    if batch.ends_epoch(&batching) {
                        let samples = batching.samples as f32;
                        loss_history.push(epoch_total / samples);
                        epoch_total = 0.0;
                        for (values, total) in metric_values.iter_mut().zip(&mut metric_totals) {
                            values.push(*total / samples);
                            *total = 0.0;
                        }
                        if !validation_rows.is_empty() {
                            let rows = validation_rows.len();
                            let partials = validation_partials(&validation, rows);
                            val_loss_history.push(validation_loss(&partials[0], rows));
                            for (values, series) in val_metric_values.iter_mut().zip(&partials[1..])
                            {
                                values.push(validation_loss(series, rows));
                            }
                        }
                        on_progress(batch.epoch as usize + 1);
                        if let Some(stopping) = &config.early_stopping {
                            let epoch = batch.epoch as usize;
                            let history = match validation_rows.is_empty() {
                                true => &loss_history,
                                false => &val_loss_history,
                            };
                            let stop = stopping.watch(&mut watch, epoch, history[epoch]);
                            if stopping.restore_best_weights && watch.best_epoch == epoch + 1 {
                                best_params.clone_from(&params);
                            }
                            if stop {
                                stopped_epoch = Some(epoch + 1);
                                break 'steps;
                            }
                        }
                    }
                }
                op => {
                    let (x, y) = gathered.view(data, &batching, batch);
                    let view = BatchView {
                        x,
                        y,
                        inputs: data.x_width,
                    };
                    backprop.run(op, &params, &view);
                }
            }
        }
    }

    if config
        .early_stopping
        .is_some_and(|stopping| stopping.restores(&watch))
    {
        params = best_params;
    }
    let steps_run = loss_history.len() as u64 * batching.steps_per_epoch as u64;
    let adam = AdamState {
        iterations: iterations + steps_run,
        m,
        v,
    };
    let epochs = EpochResults {
        loss_history,
        val_loss_history,
        metrics: metric_values,
        val_metrics: if validation_rows.is_empty() {
            Vec::new()
        } else {
            val_metric_values
        },
        watch,
        stopped_epoch,
    };
    TrainOutput::assemble(config, initial, epochs, params, adam, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_partials_adds_each_block_of_each_row_in_order() {
        // Two rows of REDUCE_BLOCK + 2 partials: two sums a row.
        let len = REDUCE_BLOCK + 2;
        let from: Vec<f32> = (0..2 * len).map(|i| i as f32).collect();
        let mut to = vec![0.0; 4];
        reduce_partials(&from, len, &mut to, 2, 2);
        let block = REDUCE_BLOCK as f32;
        let first_block = block * (block - 1.0) / 2.0;
        assert_eq!(to[0], first_block);
        assert_eq!(to[1], block + block + 1.0);
        let offset = len as f32;
        assert_eq!(to[2], first_block + offset * block);
        assert_eq!(to[3], 2.0 * offset + block + block + 1.0);
    }
}
