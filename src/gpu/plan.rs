//! The plan of one GPU run: where every tensor lives (its memory layout)
//! and the step's operations (src/step.rs), lowered, in this one place, to
//! the dispatches that run them. Pure arithmetic: built and tested without
//! a GPU.

use super::abi::{DispatchArgs, F32_BYTES, HISTORY_HEADER_WORDS, Kernel, RunArgs, buffer_bytes};
use crate::activation::Activation;
use crate::batching::{Batching, half_bits};
use crate::error::{Error, Result, fail};
use crate::loss::{Loss, Metric};
use crate::model::{Architecture, Model};
use crate::step::{Chunking, Op, REDUCE_BLOCK, SampleWork, SumRows, reduction_levels, step_ops};
use crate::training::{StepRecord, TrainConfig};

/// The register tile one dense-layer item computes (`sample_tile` x
/// `UNIT_TILE` in shaders/dense.wgsl, each side 1 to 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub samples: u32,
    pub units: u32,
}

impl Tile {
    /// The dispatch schedule's tile for a network whose widest layer has
    /// `widest` units: 8 x 8 (each loaded value used 8 times) when a layer
    /// is wider than 4, else 4 x 4, so narrow layers do not compute mostly
    /// empty tiles (BENCHMARKS.md, "Register tiles").
    pub fn blocked(widest: usize) -> Tile {
        let size = if widest > 4 { 8 } else { 4 };
        Tile {
            samples: size,
            units: size,
        }
    }

    /// One output per item: the fused schedule's few threads want many
    /// small items (the seed job's layers are 1 to 3 wide).
    pub const SINGLE: Tile = Tile {
        samples: 1,
        units: 1,
    };

    /// Whether the tile needs dense.wgsl's `wide_tiles` code (a side over 4).
    pub fn is_wide(&self) -> bool {
        self.samples > 4 || self.units > 4
    }

    fn items(&self, samples: u64, width: usize) -> u64 {
        samples.div_ceil(self.samples as u64) * (width as u64).div_ceil(self.units as u64)
    }

    /// Items of a `rows` x `columns` gradient block in `units` x `units` tiles.
    fn square_items(&self, rows: usize, columns: usize) -> u64 {
        let tile = self.units as u64;
        (rows as u64).div_ceil(tile) * (columns as u64).div_ceil(tile)
    }
}

/// Where a run's tensors live, in f32 elements from the start of their
/// buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// `tensors`: the dataset, celsius then fahrenheit.
    pub data: u64,
    /// `tensors`: `activations[0]` the chunk's inputs (the dataset itself
    /// when the batch is read in place), `activations[l + 1]` layer l's
    /// outputs; one row of a layer's width per sample. Layered work only,
    /// past the inputs.
    pub activations: Vec<u64>,
    /// `tensors`: `errors[l]` the error of `activations[l]` (l >= 1;
    /// `errors[0]` is never computed). Layered work only.
    pub errors: Vec<u64>,
    /// `tensors`: each sample's loss. Layered work only.
    pub sample_losses: u64,
    /// `tensors`: each sample's value of each metric, a row of `chunk` a
    /// metric. Layered work only.
    pub sample_metrics: u64,
    /// `reduce`: each metric's running total over the epoch.
    pub metric_totals: u64,
    /// `tensors`: the chunk's targets.
    pub targets: u64,
    /// `tensors`: each validation row's loss and metric values, then its
    /// scratch: three rows of the widest layer's width (none without a
    /// validation split).
    pub validation_losses: u64,
    pub validation_scratch: u64,
    /// `reduce`: each validation block's loss sum, after the levels.
    pub validation_partials: u64,
    /// Elements of `tensors`.
    pub tensors_len: u64,
    /// `reduce`: the columns of each level's rows (one row per parameter,
    /// then the squared error's) and where the level starts.
    pub level_lens: Vec<u64>,
    pub level_offsets: Vec<u64>,
    /// Elements of `reduce`.
    pub reduce_len: u64,
}

impl Memory {
    /// The layout for a dataset of `rows` (`validation` of them held out),
    /// chunks of `chunk` samples (gathered or read in place) and batches of
    /// `batch` samples.
    fn new(
        architecture: &Architecture,
        rows: Rows,
        batch: u64,
        chunk: u64,
        chunking: Chunking,
        work: SampleWork,
    ) -> Result<Self> {
        let data = 0u64;
        let (inputs_width, targets_width) = (rows.inputs, rows.targets);
        let mut end = rows.data * (inputs_width + targets_width);
        let mut take = |len: u64| {
            end += len;
            end - len
        };
        let inputs = if chunking.gather {
            take(chunk * inputs_width)
        } else {
            data
        };
        let mut activations = vec![inputs];
        let mut errors = vec![0u64];
        let mut sample_losses = 0;
        let mut sample_metrics = 0;
        if work == SampleWork::Layers {
            let widths = &architecture.widths()[1..];
            activations.extend(widths.iter().map(|&w| take(chunk * w as u64)));
            errors.extend(widths.iter().map(|&w| take(chunk * w as u64)));
            sample_losses = take(chunk);
            sample_metrics = take(chunk * rows.metrics);
        }
        let targets = if chunking.gather {
            take(chunk * targets_width)
        } else {
            data + rows.data * inputs_width
        };
        let widest = *architecture.widths().iter().max().expect("widths") as u64;
        let validation_blocks = rows.validation.div_ceil(REDUCE_BLOCK as u64);
        // Each validation row's loss, then each metric's values.
        let validation_losses = take(rows.validation * (1 + rows.metrics));
        let validation_scratch = take(rows.validation * 3 * widest);
        let tensors_len = end;
        to_u32(
            tensors_len,
            "the dataset and per-sample activations and errors",
        )?;

        let sums = SumRows {
            params: architecture.param_count(),
            metrics: rows.metrics as usize,
        }
        .count() as u64;
        let level_lens = reduction_levels(batch, REDUCE_BLOCK as u64);
        let mut level_offsets = Vec::new();
        let mut reduce_len = 0u64;
        for len in &level_lens {
            level_offsets.push(reduce_len);
            reduce_len += sums * len;
        }
        let validation_partials = reduce_len;
        reduce_len += validation_blocks * (1 + rows.metrics);
        let metric_totals = reduce_len;
        reduce_len += rows.metrics;
        to_u32(reduce_len, "the gradient reduction")?;
        Ok(Self {
            data,
            activations,
            errors,
            sample_losses,
            sample_metrics,
            metric_totals,
            targets,
            validation_losses,
            validation_scratch,
            validation_partials,
            tensors_len,
            level_lens,
            level_offsets,
            reduce_len,
        })
    }

    /// Where the fully reduced value of each row lands (the last level).
    pub fn totals(&self) -> u64 {
        *self.level_offsets.last().expect("one level")
    }
}

/// A dataset's rows: all of them, how many of the last are held out for
/// validation, and each row's inputs and targets.
#[derive(Debug, Clone, Copy)]
struct Rows {
    data: u64,
    validation: u64,
    inputs: u64,
    targets: u64,
    /// Metrics tracked (their per-sample values and sums).
    metrics: u64,
}

/// One operation of a step, lowered: the kernel that runs it, its
/// arguments and its threads (sized for a full batch; a smaller last batch
/// leaves the extra threads idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    pub op: Op,
    pub kernel: Kernel,
    /// The dense kernels' activation: the layer's own (forward) or the
    /// layer below's (backward); `Linear` for the other kernels.
    pub activation: Activation,
    pub args: DispatchArgs,
    pub threads: u32,
}

impl Dispatch {
    /// The WGSL function that runs it, without its `_at`
    /// (`dense_forward_relu`), which is also the dispatch schedule's entry
    /// point that calls it.
    pub fn function(&self) -> String {
        match self.kernel {
            Kernel::DenseForward | Kernel::DenseBackward => {
                format!("{}_{}", self.kernel.name(), self.activation.name())
            }
            kernel => kernel.name().to_string(),
        }
    }
}

/// Keras's EarlyStopping, as the kernels run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopping {
    Off,
    /// Watching the monitored value, stopping after `patience` epochs.
    Watch,
    /// Watching, and keeping the best epoch's weights in params [3P, 4P)
    /// (`restore_best_weights`).
    KeepBest,
}

/// Everything a run's module is compiled for besides its architecture and
/// its step's operations: the batch geometry, where each tensor lives,
/// the loss, the metrics and the features. The generator writes each
/// number into the module as a constant (src/gpu/module.rs), so two runs
/// of one shape share one compiled module.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Training samples, the batches cut from them, and the rows of the
    /// per-sample tensors (the batch, or a chunk of it).
    pub samples: u32,
    pub batch_size: u32,
    pub chunk_size: u32,
    pub steps_per_epoch: u32,
    /// Whether each epoch draws its batches in a shuffled order, and the
    /// shuffle's Feistel half width (src/batching.rs).
    pub shuffle: bool,
    pub half_bits: u32,
    pub param_count: u32,
    /// Rows of the dataset (training, then validation) and each row's
    /// inputs and targets.
    pub data_rows: u32,
    pub input_width: u32,
    pub output_width: u32,
    /// In `tensors`: the dataset, the batch's inputs and targets, the
    /// network's output and its error, each sample's loss and metrics.
    pub data_offset: u32,
    pub input_offset: u32,
    pub target_offset: u32,
    pub output_offset: u32,
    pub output_delta_offset: u32,
    pub sample_loss_offset: u32,
    pub sample_metrics_offset: u32,
    /// In `reduce`: the fully reduced value of each row (gradients, the
    /// loss, each metric), and each metric's running total over the epoch.
    pub totals_offset: u32,
    pub metric_totals_offset: u32,
    /// Held-out rows (Keras's validation_split); in `tensors` each one's
    /// loss and metric values, then its scratch (three rows of `widest`
    /// values); in `reduce` each block's sums.
    pub validation_samples: u32,
    pub validation_values_offset: u32,
    pub validation_scratch_offset: u32,
    pub validation_partials_offset: u32,
    pub widest: u32,
    pub loss: Loss,
    pub metrics: Vec<Metric>,
    pub early_stopping: Stopping,
}

impl Shape {
    /// The rows of the run's sums over samples.
    pub fn sum_rows(&self) -> SumRows {
        SumRows {
            params: self.param_count as usize,
            metrics: self.metrics.len(),
        }
    }
}

/// Everything about a GPU run that is known before it starts.
#[derive(Debug, Clone)]
pub struct GpuPlan {
    pub architecture: Architecture,
    pub batching: Batching,
    pub work: SampleWork,
    /// The dense layers' register tile (layered work).
    pub tile: Tile,
    /// Rows of the per-sample tensors: the batch, or a chunk of it.
    pub chunk_size: u64,
    pub memory: Memory,
    pub shape: Shape,
    /// The operations of one training step (src/step.rs), in order,
    /// lowered; dispatch i works on `DispatchArgs` i.
    pub dispatches: Vec<Dispatch>,
    pub param_count: u32,
    pub epochs: u32,
    /// Training steps in the run: epochs x steps per epoch.
    pub total_steps: u64,
    /// The values the kernels read from their uniform.
    pub run: RunArgs,
    /// Values after the losses in the history buffer: the step records
    /// ([`GpuPlan::record_steps`]).
    pub record_floats: u64,
}

/// Most bytes of the ring of step records a run keeps on the device for the
/// shadow check (one submission's steps, read back as it ends; a record too
/// large for it gets a ring of one). 16 MiB holds the seed job's 1000 steps
/// 27 times over (620 bytes a step) and 137 steps of a 1-64-64-1 network
/// (122 kB a step).
pub const RECORD_BUDGET: u64 = 16 << 20;

/// The most bytes one buffer a kernel binds may hold on a device with
/// `limits`: the smaller of its storage-binding and buffer-size limits.
pub fn largest_buffer(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

fn to_u32(value: u64, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| {
        Error::LimitExceeded(format!(
            "{what} needs {value} elements, more than a GPU kernel can index (2^32)"
        ))
    })
}

/// Loop iterations of one validation row's pass through `architecture`
/// (epoch.wgsl's `row_values`: the layers, each unit, each input), all inside
/// one outermost loop, so llvmpipe's limiter counts them together.
pub fn validation_row_iterations(architecture: &Architecture) -> u64 {
    let layers = architecture.layers();
    let units: u64 = layers
        .iter()
        .map(|l| 1 + l.units as u64 * (l.inputs as u64 + 1))
        .sum();
    units + 1
}

/// f32 values a batch holds per sample: the activations and errors of
/// every layer past the input, the loss, and the gathered inputs and
/// targets (only the last two for the samples schedule's work).
pub fn floats_per_sample(architecture: &Architecture, work: SampleWork) -> u64 {
    let widths = architecture.widths();
    let gathered = (widths[0] + widths[widths.len() - 1]) as u64;
    match work {
        SampleWork::Layers => 2 * widths[1..].iter().map(|&w| w as u64).sum::<u64>() + 1 + gathered,
        SampleWork::Samples => gathered,
    }
}

impl GpuPlan {
    /// The plan of a run whose per-sample tensors hold at most `max_chunk`
    /// samples (a batch larger than that runs in chunks of a multiple of
    /// `REDUCE_BLOCK` samples; `None`: no limit).
    pub fn new(
        model: &Model,
        config: &TrainConfig,
        work: SampleWork,
        tile: Tile,
        max_chunk: Option<u64>,
    ) -> Result<Self> {
        // dense.wgsl holds a tile in two vec4 halves a side.
        if !(1..=8).contains(&tile.samples) || !(1..=8).contains(&tile.units) {
            fail!(
                InvalidConfig,
                "a {} x {} register tile is not supported; each side must be 1 to 8",
                tile.samples,
                tile.units
            );
        }
        let architecture = model.architecture().clone();
        let batching = config.batching();
        let samples = batching.samples as u64;
        let batch = batching.batch_size as u64;
        let block = REDUCE_BLOCK as u64;
        // At least one reduction block: when even that does not fit,
        // `check_limits` says so with the sizes.
        let chunk_size = match max_chunk {
            Some(most) if most < batch => (most / block * block).max(block),
            _ => batch,
        };
        let chunks = batch.div_ceil(chunk_size);
        let mut chunking = Chunking {
            chunks: chunks as usize,
            // A single unchunked batch reads the dataset in place; any other
            // is gathered into the chunk's rows (in order when unshuffled).
            gather: batching.steps_per_epoch > 1 || chunks > 1,
            further_levels: 0,
        };
        let rows = Rows {
            data: config.data.len() as u64,
            validation: config.validation_rows().len() as u64,
            inputs: config.data.x_width as u64,
            targets: config.data.y_width as u64,
            metrics: config.metrics.len() as u64,
        };
        let memory = Memory::new(&architecture, rows, batch, chunk_size, chunking, work)?;
        chunking.further_levels = memory.level_lens.len() - 1;
        let validate = rows.validation > 0;
        let ops = step_ops(architecture.layers().len(), chunking, work, config.extras());
        let epochs = to_u32(config.epochs as u64, "the loss history")?;
        let metrics = config.metrics.len();
        // The loss, each metric, and with a validation split each again.
        let series = (1 + metrics as u32) * (1 + validate as u32);
        let history_len = to_u32(epochs as u64 * series as u64, "the loss history")?;
        let total_steps = epochs as u64 * batching.steps_per_epoch as u64;
        // The kernels count steps in a u32.
        if total_steps > u32::MAX as u64 {
            fail!(
                LimitExceeded,
                "this run has {total_steps} training steps (epochs x batches per epoch), more than \
                 the GPU's step counter holds ({}); use fewer epochs or a larger --batch-size",
                u32::MAX
            );
        }
        let param_count = architecture.param_count() as u32;
        let constants = config.adam().constants();
        let layers = architecture.layers().len();
        let shape = Shape {
            samples: samples as u32,
            batch_size: batching.batch_size,
            chunk_size: chunk_size as u32,
            steps_per_epoch: batching.steps_per_epoch,
            shuffle: batching.shuffle,
            half_bits: half_bits(batching.samples),
            param_count,
            data_rows: rows.data as u32,
            input_width: config.data.x_width as u32,
            output_width: config.data.y_width as u32,
            data_offset: memory.data as u32,
            input_offset: memory.activations[0] as u32,
            target_offset: memory.targets as u32,
            // Layered work's output and its error (unused by sample_partials).
            output_offset: memory.activations.get(layers).map_or(0, |&o| o as u32),
            output_delta_offset: memory.errors.get(layers).map_or(0, |&o| o as u32),
            sample_loss_offset: memory.sample_losses as u32,
            sample_metrics_offset: memory.sample_metrics as u32,
            totals_offset: memory.totals() as u32,
            metric_totals_offset: memory.metric_totals as u32,
            validation_samples: rows.validation as u32,
            validation_values_offset: memory.validation_losses as u32,
            validation_scratch_offset: memory.validation_scratch as u32,
            validation_partials_offset: memory.validation_partials as u32,
            widest: *architecture.widths().iter().max().expect("widths") as u32,
            loss: config.loss,
            metrics: config.metrics.iter().map(|named| named.metric).collect(),
            early_stopping: match config.early_stopping {
                None => Stopping::Off,
                Some(e) if e.restore_best_weights => Stopping::KeepBest,
                Some(_) => Stopping::Watch,
            },
        };
        let run = RunArgs {
            seed_low: batching.seed as u32,
            seed_high: (batching.seed >> 32) as u32,
            one_minus_beta_1: constants.one_minus_beta_1,
            one_minus_beta_2: constants.one_minus_beta_2,
            epsilon: constants.epsilon,
            record_offset: history_len,
            record_slots: 0,
            patience: config
                .early_stopping
                .map_or(0, |e| e.patience.min(u32::MAX as usize) as u32),
            min_delta: config.early_stopping.map_or(0.0, |e| e.min_delta),
            epochs,
            val_loss_offset: epochs,
            metric_offset: epochs * (1 + validate as u32),
            val_metric_offset: epochs * (1 + validate as u32 + metrics as u32),
            _pad: [0; 3],
        };
        let mut plan = Self {
            architecture,
            batching,
            work,
            tile,
            chunk_size,
            memory,
            shape,
            dispatches: Vec::new(),
            param_count,
            epochs,
            total_steps,
            run,
            record_floats: 0,
        };
        plan.dispatches = ops
            .into_iter()
            .map(|op| plan.lower(op))
            .collect::<Result<_>>()?;
        Ok(plan)
    }

    /// The one lowering of an operation to its kernel, arguments and threads.
    fn lower(&self, op: Op) -> Result<Dispatch> {
        let memory = &self.memory;
        let layers = self.architecture.layers();
        let (tile, chunk) = (self.tile, self.chunk_size);
        let blocks = chunk.div_ceil(REDUCE_BLOCK as u64);
        let sum_rows = self.shape.sum_rows();
        let rows = sum_rows.count() as u64;
        let chunk_first = |c: usize| (c as u64 * chunk) as u32;
        // Offsets and lengths fit in u32: `Memory::new` checked both buffers.
        // A dense layer's pass.
        let dense = |l: usize, in_offset: u64, out_offset: u64, c: usize| DispatchArgs {
            inputs: layers[l].inputs as u32,
            units: layers[l].units as u32,
            kernel_offset: layers[l].kernel_offset as u32,
            bias_offset: layers[l].bias_offset as u32,
            in_offset: in_offset as u32,
            out_offset: out_offset as u32,
            chunk_first: chunk_first(c),
            ..Default::default()
        };
        // Level 0 of a layer's sums (kernel rows, then the bias row, whose a
        // is 1) or of the loss (a layer of no inputs whose err is each
        // sample's loss: its bias row), into the columns of this chunk's
        // blocks.
        let partials =
            |inputs: usize, units: usize, first_row: u64, a: u64, err: u64, bias: bool| {
                let a_rows = inputs + bias as usize;
                let args = DispatchArgs {
                    inputs: inputs as u32,
                    units: units as u32,
                    kernel_offset: first_row as u32,
                    in_offset: a as u32,
                    out_offset: err as u32,
                    in_len: a_rows as u32,
                    out_len: memory.level_lens[0] as u32,
                    dst_offset: memory.level_offsets[0] as u32,
                    ..Default::default()
                };
                (args, blocks * tile.square_items(a_rows, units))
            };
        let per_chunk = |c: usize| DispatchArgs {
            chunk_first: chunk_first(c),
            ..Default::default()
        };
        // The dense kernels' activation: the layer's own (forward) or the
        // layer below's (backward).
        let activation = match op {
            Op::DenseForward { layer, .. } => layers[layer].activation,
            Op::DenseBackward { layer, .. } => layers[layer - 1].activation,
            _ => Activation::Linear,
        };
        let (kernel, args, threads) = match op {
            Op::Gather { chunk: c } => (Kernel::GatherBatch, per_chunk(c), chunk),
            Op::DenseForward { layer, chunk: c } => {
                let args = dense(
                    layer,
                    memory.activations[layer],
                    memory.activations[layer + 1],
                    c,
                );
                let args = DispatchArgs {
                    pre_offset: memory.errors[layer + 1] as u32,
                    ..args
                };
                let threads = tile.items(chunk, layers[layer].units);
                (Kernel::DenseForward, args, threads)
            }
            Op::OutputError { chunk: c } => (Kernel::OutputError, per_chunk(c), chunk),
            Op::DenseBackward { layer, chunk: c } => (
                Kernel::DenseBackward,
                dense(layer, memory.errors[layer + 1], memory.errors[layer], c),
                tile.items(chunk, layers[layer].inputs),
            ),
            Op::GradientPartials { layer, chunk: c } => {
                let l = &layers[layer];
                let (a, err) = (memory.activations[layer], memory.errors[layer + 1]);
                let (args, threads) =
                    partials(l.inputs, l.units, l.kernel_offset as u64, a, err, true);
                let args = DispatchArgs {
                    chunk_first: chunk_first(c),
                    ..args
                };
                (Kernel::GradientPartials, args, threads)
            }
            Op::LossSum { chunk: c } => {
                let losses = memory.sample_losses;
                let loss_row = sum_rows.loss() as u64;
                let (args, threads) = partials(0, 1, loss_row, losses, losses, true);
                let args = DispatchArgs {
                    chunk_first: chunk_first(c),
                    ..args
                };
                (Kernel::GradientPartials, args, threads)
            }
            Op::MetricSum { metric, chunk: c } => {
                let values = memory.sample_metrics + metric as u64 * chunk;
                let row = sum_rows.metric(metric) as u64;
                let (args, threads) = partials(0, 1, row, values, values, true);
                let args = DispatchArgs {
                    chunk_first: chunk_first(c),
                    ..args
                };
                (Kernel::GradientPartials, args, threads)
            }
            Op::SamplePartials { chunk: c } => {
                let args = DispatchArgs {
                    out_len: memory.level_lens[0] as u32,
                    dst_offset: memory.level_offsets[0] as u32,
                    chunk_first: chunk_first(c),
                    ..Default::default()
                };
                (Kernel::SamplePartials, args, blocks)
            }
            Op::Reduce { level } => {
                let lens = &memory.level_lens;
                let args = DispatchArgs {
                    rows: rows as u32,
                    in_len: lens[level - 1] as u32,
                    out_len: lens[level] as u32,
                    src_offset: memory.level_offsets[level - 1] as u32,
                    dst_offset: memory.level_offsets[level] as u32,
                    ..Default::default()
                };
                (Kernel::ReducePartials, args, rows * lens[level])
            }
            Op::Adam => (
                Kernel::AdamStep,
                DispatchArgs::default(),
                self.param_count as u64,
            ),
            Op::ValidationLosses => (
                Kernel::ValidationLosses,
                DispatchArgs::default(),
                self.shape.validation_samples as u64,
            ),
            Op::ValidationPartials => {
                let blocks = (self.shape.validation_samples as u64).div_ceil(REDUCE_BLOCK as u64);
                let series = 1 + self.shape.metrics.len() as u64;
                (
                    Kernel::ValidationPartials,
                    DispatchArgs::default(),
                    series * blocks,
                )
            }
            Op::FinishStep => (Kernel::FinishStep, DispatchArgs::default(), 1),
            Op::KeepBest => (
                Kernel::KeepBest,
                DispatchArgs::default(),
                self.param_count as u64,
            ),
        };
        Ok(Dispatch {
            op,
            kernel,
            activation,
            args,
            threads: to_u32(threads, kernel.name())?,
        })
    }

    /// The bytes of the `dispatch_args` buffer: the step's dispatches'
    /// arguments, in order.
    pub fn dispatch_args_bytes(&self) -> Vec<u8> {
        let args: Vec<DispatchArgs> = self.dispatches.iter().map(|d| d.args).collect();
        bytemuck::cast_slice(&args).to_vec()
    }

    /// Values of the params buffer: weights, m, v, and with
    /// `restore_best_weights` the best epoch's weights.
    pub fn params_len(&self) -> u64 {
        let copies = if self.shape.early_stopping == Stopping::KeepBest {
            4
        } else {
            3
        };
        copies * self.param_count as u64
    }

    /// Where the trained model's weights are read back from: the best
    /// epoch's with `restore_best_weights`.
    pub fn model_offset(&self) -> u64 {
        if self.shape.early_stopping == Stopping::KeepBest {
            3 * self.param_count as u64
        } else {
            0
        }
    }

    /// Series in the history: the loss and each metric, and each again on
    /// the validation rows with a split.
    pub fn loss_series(&self) -> u64 {
        (1 + self.shape.metrics.len() as u64) * (1 + (self.shape.validation_samples > 0) as u64)
    }

    /// Values in one step record: weights, m and v before, gradients, loss,
    /// weights, m and v after.
    pub fn record_len(&self) -> u64 {
        StepRecord::len(self.param_count as usize) as u64
    }

    /// Words of the history buffer: its header, the losses, the records.
    pub fn history_words(&self) -> u64 {
        HISTORY_HEADER_WORDS + self.epochs as u64 * self.loss_series() + self.record_floats
    }

    /// Whether the kernels record every step for the shadow check.
    pub fn records(&self) -> bool {
        self.run.record_slots != 0
    }

    /// How many step records a ring of at most `budget` bytes holds (at
    /// least one record's worth, if one fits), beside the losses in one
    /// buffer of at most `most` bytes: the most steps one submission may
    /// run while it records (0: not one record fits).
    pub fn records_that_fit(&self, budget: u64, most: u64) -> usize {
        let losses = F32_BYTES * (HISTORY_HEADER_WORDS + self.epochs as u64 * self.loss_series());
        let record_bytes = F32_BYTES * self.record_len();
        let room = budget.max(record_bytes).min(most.saturating_sub(losses));
        (room / record_bytes).min(u32::MAX as u64) as usize
    }

    /// The error of a run whose one step record does not fit beside the
    /// losses in a buffer of at most `most` bytes: its steps cannot be
    /// checked, so it is refused before it trains.
    pub fn record_too_large(&self, most: u64) -> crate::Error {
        crate::Error::LimitExceeded(format!(
            "one training step's record for the shadow check ({} bytes: the weights, Adam's m \
             and v before and after the step, its gradients and its loss) does not fit in one \
             buffer of this device beside the loss history ({most} bytes): this network is \
             too large to check step by step; train it without --compare, or with narrower \
             layers",
            F32_BYTES * self.record_len()
        ))
    }

    /// Records every step into a ring of `slots` records, which the host
    /// reads after each submission of at most `slots` steps.
    pub fn record_ring(&mut self, slots: usize) {
        self.run.record_slots = slots as u32;
        self.record_floats = slots as u64 * self.record_len();
    }

    /// Fails, before any GPU allocation, when a buffer of this run would
    /// exceed `most` bytes (the device's largest buffer), naming the buffer.
    pub fn check_limits(&self, most: u64) -> Result<()> {
        let history = buffer_bytes(HISTORY_HEADER_WORDS + self.epochs as u64 * self.loss_series());
        if history > most {
            let per_epoch = F32_BYTES * self.loss_series();
            let fitting =
                (most / F32_BYTES).saturating_sub(HISTORY_HEADER_WORDS) / self.loss_series();
            fail!(
                LimitExceeded,
                "the loss history of {} epochs ({per_epoch} bytes an epoch: the loss{}) needs \
                 {history} bytes, more than this device allows in one buffer ({most} bytes); use \
                 at most {fitting} --epochs",
                self.epochs,
                match self.loss_series() {
                    1 => String::new(),
                    series => format!(", the metrics and the validation values, {series} in all"),
                }
            );
        }
        for (what, bytes, remedy) in [
            (
                "dataset and per-sample activations and errors",
                buffer_bytes(self.memory.tensors_len),
                "use a smaller --batch-size, fewer samples or narrower layers",
            ),
            (
                "gradient reduction",
                buffer_bytes(self.memory.reduce_len),
                "use a smaller --batch-size or narrower layers",
            ),
            (
                "loss history and step records",
                buffer_bytes(self.history_words()),
                "use fewer --epochs, or run without --compare",
            ),
            (
                "weights and Adam moments",
                buffer_bytes(self.params_len()),
                "use narrower layers",
            ),
        ] {
            if bytes > most {
                fail!(
                    LimitExceeded,
                    "the {what} of this run need {bytes} bytes, more than this device allows in \
                     one buffer ({most} bytes); {remedy}"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;

    fn config(samples: u64, batch_size: Option<usize>) -> TrainConfig {
        TrainConfig {
            data: Dataset::from_formula(samples, 1),
            batch_size,
            ..TrainConfig::seed()
        }
    }

    fn plan(samples: u64, hidden: &[usize]) -> GpuPlan {
        let model = Model::glorot_uniform(Architecture::new(hidden).unwrap(), 1);
        let config = config(samples, None);
        GpuPlan::new(&model, &config, SampleWork::Layers, Tile::SINGLE, None).unwrap()
    }

    #[test]
    fn the_ring_of_step_records_is_the_budget_or_one_record_or_refused() {
        // The seed job: 22 parameters, 7 x 22 + 1 = 155 values, 620 bytes a
        // step; 1000 epochs of losses, 4 kB.
        let mut plan = plan(7, &[3, 3]);
        let record = 620u64;
        assert_eq!(
            plan.records_that_fit(16 << 20, 1 << 30) as u64,
            (16 << 20) / record
        );
        // A budget smaller than a record: one record.
        assert_eq!(plan.records_that_fit(100, 1 << 30), 1);
        // A buffer that holds the losses and not one record: refused.
        let losses = 4 * (HISTORY_HEADER_WORDS + 1000);
        assert_eq!(plan.records_that_fit(16 << 20, losses + record - 4), 0);
        let error = plan.record_too_large(losses + record - 4).to_string();
        assert!(
            error.contains("(620 bytes") && error.contains("without --compare"),
            "{error}"
        );
        plan.record_ring(5);
        assert!(plan.records());
        assert_eq!(plan.record_floats, 5 * 155);
    }

    #[test]
    fn a_loss_history_beyond_one_buffer_asks_for_fewer_epochs() {
        let model = Model::glorot_uniform(Architecture::new(&[3, 3]).unwrap(), 1);
        let config = TrainConfig {
            epochs: 1 << 20,
            ..config(7, None)
        };
        let plan = GpuPlan::new(&model, &config, SampleWork::Layers, Tile::SINGLE, None).unwrap();
        // 2^20 epochs of one f32: 4 MiB; a device allowing 1 MiB a buffer.
        let error = plan.check_limits(1 << 20).unwrap_err().to_string();
        assert!(
            error.contains("the loss history of 1048576 epochs")
                && error.contains("at most 262136 --epochs"),
            "{error}"
        );
        assert!(
            !error.contains("batch-size") && !error.contains("step records"),
            "{error}"
        );
        plan.check_limits(4 << 20).unwrap_err();
        plan.check_limits(5 << 20).unwrap();
    }

    fn kernels(plan: &GpuPlan) -> Vec<Kernel> {
        plan.dispatches.iter().map(|d| d.kernel).collect()
    }

    #[test]
    fn the_seed_step_lowers_to_its_kernels_and_offsets() {
        let plan = plan(7, &[3, 3]);
        use Kernel::*;
        assert_eq!(
            kernels(&plan),
            [
                DenseForward,
                DenseForward,
                DenseForward,
                OutputError,
                DenseBackward,
                DenseBackward,
                GradientPartials,
                GradientPartials,
                GradientPartials,
                GradientPartials,
                AdamStep,
                FinishStep
            ]
        );
        // The squared-error "layer" writes row 22, after the 22 parameters.
        let loss = plan.dispatches[9];
        assert_eq!(loss.op, Op::LossSum { chunk: 0 });
        assert_eq!(
            (loss.args.kernel_offset, loss.args.in_offset),
            (22, plan.shape.sample_loss_offset)
        );
        // The dataset 2*7; one unshuffled batch reads its inputs and
        // targets there; activations 7*(3+3+1), errors 7*(3+3+1), residuals.
        assert_eq!(plan.memory.tensors_len, 2 * 7 + 7 * 7 + 7 * 7 + 7);
        assert_eq!(plan.shape.input_offset, plan.shape.data_offset);
        assert_eq!(plan.shape.target_offset, plan.shape.data_offset + 7);
        // Backward runs last layer first: layer 2's errors into layer 2's input.
        let backward = plan.dispatches[4].args;
        assert_eq!((backward.inputs, backward.units), (3, 1));
    }

    #[test]
    fn reduction_levels_grow_with_samples() {
        // Level 1 is one dispatch per layer and one for the loss (3 for a
        // 1-3-1 network); each further level is one dispatch.
        let further_levels = |samples| {
            kernels(&plan(samples, &[3]))
                .iter()
                .filter(|k| matches!(k, Kernel::ReducePartials))
                .count()
        };
        let block = REDUCE_BLOCK as u64;
        assert_eq!(further_levels(1), 0);
        assert_eq!(further_levels(block), 0);
        assert_eq!(further_levels(block + 1), 1);
        assert_eq!(further_levels(block * block), 1);
        assert_eq!(further_levels(block * block + 1), 2);
        // The last level leaves one total per row where Adam reads it.
        let plan = plan(70_000, &[3]);
        let last = plan.dispatches[plan.dispatches.len() - 3].args;
        assert_eq!(
            (last.out_len, last.dst_offset),
            (1, plan.shape.totals_offset)
        );
    }

    #[test]
    fn tiles_beyond_8_by_8_are_refused() {
        let model = Model::glorot_uniform(Architecture::seed(), 1);
        let config = TrainConfig::seed();
        let tile = Tile {
            samples: 16,
            units: 8,
        };
        let layers = SampleWork::Layers;
        let error = GpuPlan::new(&model, &config, layers, tile, None).unwrap_err();
        assert!(error.to_string().contains("16 x 8"), "{error}");
        assert!(GpuPlan::new(&model, &config, layers, Tile::blocked(64), None).is_ok());
    }

    #[test]
    fn sample_work_is_one_dispatch_per_chunk_and_keeps_no_per_sample_tensors() {
        let model = Model::glorot_uniform(Architecture::new(&[3, 3]).unwrap(), 1);
        let config = config(1000, None);
        let samples = SampleWork::Samples;
        let plan = GpuPlan::new(&model, &config, samples, Tile::SINGLE, Some(512)).unwrap();
        use Kernel::*;
        // Two chunks of 512 (2 blocks each), gathered; then 4 block sums
        // per row reduced to one, Adam, the step's end.
        assert_eq!(
            kernels(&plan),
            [
                GatherBatch,
                SamplePartials,
                GatherBatch,
                SamplePartials,
                ReducePartials,
                AdamStep,
                FinishStep
            ]
        );
        let second = plan.dispatches[3];
        assert_eq!(
            (
                second.args.chunk_first,
                second.args.out_len,
                second.args.dst_offset
            ),
            (512, 4, 0)
        );
        assert_eq!(second.threads, 2);
        // The dataset, then a chunk's gathered inputs and targets only.
        assert_eq!(plan.memory.tensors_len, 2 * 1000 + 2 * 512);
        assert_eq!(plan.shape.input_offset, 2000);
        assert_eq!(plan.shape.target_offset, 2000 + 512);
    }

    #[test]
    fn shuffled_batches_gather_first_and_size_tensors_by_the_batch() {
        let model = Model::glorot_uniform(Architecture::new(&[3]).unwrap(), 1);
        let config = config(1000, Some(32));
        let layers = SampleWork::Layers;
        let plan = GpuPlan::new(&model, &config, layers, Tile::SINGLE, None).unwrap();
        assert_eq!(plan.batching.steps_per_epoch, 32); // ceil(1000 / 32)
        assert_eq!(kernels(&plan)[0], Kernel::GatherBatch);
        // Dataset 2*1000, then per batch of 32: inputs, activations (3+1),
        // errors (3+1), residuals, targets.
        assert_eq!(plan.memory.tensors_len, 2000 + 32 * (1 + 4 + 4 + 1 + 1));
        assert_eq!(plan.total_steps, 32 * 1000);
    }
}
