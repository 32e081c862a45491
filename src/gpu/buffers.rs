//! The memory plan of one training run (where every tensor lives, what each
//! dispatch of an epoch works on) and the GPU buffers built from it.

use super::pipelines::{CURRENT_STRIDE, Kernel, Pipelines};
use crate::batching::{Batching, half_bits};
use crate::cpu::REDUCE_BLOCK;
use crate::model::{Architecture, Model};
use crate::optimizer::Adam;
use crate::training::TrainConfig;
use anyhow::{Context, Result, bail};
use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

/// `Run` in train.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RunUniform {
    pub samples: u32,
    pub batch_size: u32,
    pub chunk_size: u32,
    pub steps_per_epoch: u32,
    pub shuffle: u32,
    pub seed_low: u32,
    pub seed_high: u32,
    pub half_bits: u32,
    pub param_count: u32,
    pub data_offset: u32,
    pub input_offset: u32,
    pub target_offset: u32,
    pub output_offset: u32,
    pub output_delta_offset: u32,
    pub residual_offset: u32,
    pub totals_offset: u32,
    pub one_minus_beta_1: f32,
    pub one_minus_beta_2: f32,
    pub epsilon: f32,
    pub record_every: u32,
    pub record_offset: u32,
    pub record_count: u32,
    pub _padding: [u32; 2],
}

/// `Step` in train.wgsl: what one dispatch of the list works on.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct StepUniform {
    pub inputs: u32,
    pub units: u32,
    pub kernel_offset: u32,
    pub bias_offset: u32,
    pub in_offset: u32,
    pub out_offset: u32,
    pub rows: u32,
    pub in_len: u32,
    pub out_len: u32,
    pub src_offset: u32,
    pub dst_offset: u32,
    pub chunk_first: u32,
    pub _padding: [u32; 4],
}

/// The register tile one dense-layer item computes (`sample_tile` x
/// `unit_tile` in train.wgsl, at most 8 x 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub samples: u32,
    pub units: u32,
}

impl Tile {
    /// The dispatch schedule's tile for a network whose widest layer has
    /// `widest` units: 8 x 8 (each loaded value used 8 times) when a layer
    /// is wider than 4, else 4 x 4, so narrow layers do not compute mostly
    /// empty tiles. On lavapipe, where every per-thread memory access costs
    /// a loop over the SIMD lanes, 8 x 8 runs 64-wide layers 1.7x faster
    /// than 4 x 4, and 4 x 4 runs 3-wide layers ~10 % faster than 8 x 8.
    pub fn blocked(widest: usize) -> Tile {
        let size = if widest > 4 { 8 } else { 4 };
        Tile {
            samples: size,
            units: size,
        }
    }
    /// One output per item: the fused schedule's 8 threads want many small
    /// items (the seed job's layers are 1 to 3 wide).
    pub const SINGLE: Tile = Tile {
        samples: 1,
        units: 1,
    };

    fn items(&self, samples: u64, width: usize) -> u64 {
        samples.div_ceil(self.samples as u64) * (width as u64).div_ceil(self.units as u64)
    }

    /// Items of a `rows` x `columns` gradient block in `units` x `units` tiles.
    fn square_items(&self, rows: usize, columns: usize) -> u64 {
        let tile = self.units as u64;
        (rows as u64).div_ceil(tile) * (columns as u64).div_ceil(tile)
    }
}

/// How a training step's per-sample work (forward, output error, backward,
/// the first level of the gradient sums) is dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleWork {
    /// One dispatch per layer and pass, in register tiles of this size.
    Layers(Tile),
    /// One `network_partials` dispatch per chunk, a thread per block of
    /// samples (the samples schedule): of the per-sample tensors only the
    /// gathered inputs and targets are kept in memory.
    Network,
}

/// `Current` in train.wgsl, one per `CURRENT_STRIDE` bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct CurrentRecord {
    pub step: u32,
    pub steps: u32,
}

/// One dispatch of a training step: which kernel, on which `Step` record,
/// over how many threads (sized for a full batch; a smaller last batch
/// leaves the extra threads idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    pub kernel: Kernel,
    pub step: u32,
    pub threads: u32,
}

/// Where everything of a run lives, in f32 elements, and the dispatches of
/// one training step. Pure arithmetic: built and tested without a GPU.
#[derive(Debug, Clone)]
pub struct Plan {
    pub architecture: Architecture,
    pub batching: Batching,
    /// The dense layers' register tile (unused by `SampleWork::Network`).
    pub tile: Tile,
    pub param_count: u32,
    pub epochs: u32,
    /// Training steps in the run: epochs x steps per epoch.
    pub total_steps: u64,
    pub run: RunUniform,
    /// Size of `tensors`: the dataset, the batch's activations of every
    /// layer and errors of layers 1.., residuals, batch targets.
    pub tensors_len: u64,
    /// Size of `reduce`: one region per reduction level.
    pub reduce_len: u64,
    pub steps: Vec<StepUniform>,
    /// The dispatches of one training step.
    pub step_list: Vec<Dispatch>,
    /// Values after the losses in the history buffer: the step records
    /// ([`Plan::record_steps`]).
    pub record_floats: u64,
}

/// Most bytes of step records a run keeps for the shadow check: every step
/// while they fit, else every K-th. 64 MiB holds every step of the seed job
/// 100 times over (620 bytes a step) and ~550 steps of a 1-64-64-1 network
/// (122 kB a step).
pub const RECORD_BUDGET: u64 = 64 << 20;

/// The most bytes one buffer a kernel binds may hold on a device with
/// `limits`: the smaller of its storage-binding and buffer-size limits.
pub fn largest_buffer(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

fn to_u32(value: u64, what: &str) -> Result<u32> {
    u32::try_from(value).with_context(|| {
        format!("{what} needs {value} elements, more than a GPU kernel can index (2^32)")
    })
}

/// f32 values a batch holds per sample: the activations and errors of
/// every layer past the input, the residual, and a gathered input and target
/// (only the last two for `SampleWork::Network`).
pub fn floats_per_sample(model: &Model, work: SampleWork) -> u64 {
    let widths = model.architecture().widths();
    match work {
        SampleWork::Layers(_) => 2 * widths[1..].iter().map(|&w| w as u64).sum::<u64>() + 3,
        SampleWork::Network => 2,
    }
}

impl Plan {
    /// The plan of a run whose per-sample tensors hold at most `max_chunk`
    /// samples (a batch larger than that runs in chunks of a multiple of
    /// `REDUCE_BLOCK` samples; `None`: no limit).
    pub fn new(
        model: &Model,
        config: &TrainConfig,
        sample_work: SampleWork,
        max_chunk: Option<u64>,
    ) -> Result<Self> {
        let tile = match sample_work {
            SampleWork::Layers(tile) => tile,
            SampleWork::Network => Tile::SINGLE,
        };
        // train.wgsl holds a tile in two vec4 halves a side.
        if !(1..=8).contains(&tile.samples) || !(1..=8).contains(&tile.units) {
            bail!(
                "a {} x {} register tile is not supported; each side must be 1 to 8",
                tile.samples,
                tile.units
            );
        }
        let architecture = model.architecture();
        let batching = config.batching();
        let samples = batching.samples as u64;
        let batch = batching.batch_size as u64;
        let block = REDUCE_BLOCK as u64;
        // At least one reduction block: when even that does not fit,
        // `check_limits` says so with the sizes.
        let chunk = match max_chunk {
            Some(most) if most < batch => (most / block * block).max(block),
            _ => batch,
        };
        let chunks = batch.div_ceil(chunk);
        // A single unchunked, unshuffled batch reads the dataset in place.
        let gather = batching.shuffle || chunks > 1;
        let widths: Vec<u64> = architecture.widths().iter().map(|&w| w as u64).collect();
        let layers = architecture.layers();
        let param_count = architecture.param_count() as u64;

        // tensors: the dataset (celsius, fahrenheit), then per chunk of
        // samples: the gathered inputs, activations[1..=L], errors[1..=L],
        // residuals (these three for layered work only), gathered targets.
        let layered = matches!(sample_work, SampleWork::Layers(_));
        let data_offset = 0u64;
        let mut offset = 2 * samples;
        let mut take = |len: u64| {
            offset += len;
            offset - len
        };
        let input_offset = if gather { take(chunk) } else { data_offset };
        let mut activation_offsets = vec![input_offset];
        let mut error_offsets = vec![0u64];
        let mut residual_offset = 0;
        if layered {
            for width in &widths[1..] {
                activation_offsets.push(take(chunk * width));
            }
            for width in &widths[1..] {
                error_offsets.push(take(chunk * width));
            }
            residual_offset = take(chunk);
        }
        let target_offset = if gather {
            take(chunk)
        } else {
            data_offset + samples
        };
        let tensors_len = offset;
        to_u32(
            tensors_len,
            "the dataset and per-sample activations and errors",
        )?;

        // One reduction row per parameter, then the squared-error row.
        let rows = param_count + 1;

        // Reduction levels: batch -> ceil(batch / block) -> ... -> 1.
        let mut level_lens = vec![batch.div_ceil(block)];
        while *level_lens.last().expect("one level") > 1 {
            let last = *level_lens.last().expect("one level");
            level_lens.push(last.div_ceil(block));
        }
        let mut level_offsets = Vec::new();
        let mut reduce_len = 0u64;
        for len in &level_lens {
            level_offsets.push(reduce_len);
            reduce_len += rows * len;
        }
        to_u32(reduce_len, "the gradient reduction")?;
        let totals_offset = *level_offsets.last().expect("one level");

        let mut steps = Vec::new();
        let mut step_list = Vec::new();
        let mut push = |kernel, step: StepUniform, threads: u64| -> Result<()> {
            step_list.push(Dispatch {
                kernel,
                step: steps.len() as u32,
                threads: to_u32(threads, kernel.entry_point())?,
            });
            steps.push(step);
            Ok(())
        };
        for c in 0..chunks {
            let chunk_first = (c * chunk) as u32;
            let per_chunk = StepUniform {
                chunk_first,
                ..Default::default()
            };
            let dense = |l: usize, in_offset: u64, out_offset: u64| StepUniform {
                inputs: layers[l].inputs as u32,
                units: layers[l].units as u32,
                kernel_offset: layers[l].kernel_offset as u32,
                bias_offset: layers[l].bias_offset as u32,
                in_offset: in_offset as u32,
                out_offset: out_offset as u32,
                chunk_first,
                ..Default::default()
            };
            if gather {
                push(Kernel::GatherBatch, per_chunk, chunk)?;
            }
            let blocks = chunk.div_ceil(block);
            if !layered {
                let step = StepUniform {
                    out_len: level_lens[0] as u32,
                    dst_offset: level_offsets[0] as u32,
                    chunk_first,
                    ..Default::default()
                };
                push(Kernel::NetworkPartials, step, blocks)?;
                continue;
            }
            for (l, layer) in layers.iter().enumerate() {
                let step = dense(l, activation_offsets[l], activation_offsets[l + 1]);
                push(Kernel::DenseForward, step, tile.items(chunk, layer.units))?;
            }
            push(Kernel::OutputError, per_chunk, chunk)?;
            for (l, layer) in layers.iter().enumerate().skip(1).rev() {
                let step = dense(l, error_offsets[l + 1], error_offsets[l]);
                push(Kernel::DenseBackward, step, tile.items(chunk, layer.inputs))?;
            }
            // Level 1, layer by layer: kernel and bias rows of each layer,
            // then the squared error as a one-entry layer (a = err =
            // residual), into the columns of this chunk's blocks.
            let gradient =
                |inputs: usize, units: usize, first_row: usize, a: u64, err: u64, bias: bool| {
                    let a_rows = inputs + bias as usize;
                    let step = StepUniform {
                        inputs: inputs as u32,
                        units: units as u32,
                        kernel_offset: first_row as u32,
                        in_offset: a as u32,
                        out_offset: err as u32,
                        in_len: a_rows as u32,
                        out_len: level_lens[0] as u32,
                        dst_offset: level_offsets[0] as u32,
                        chunk_first,
                        ..Default::default()
                    };
                    (step, blocks * tile.square_items(a_rows, units))
                };
            for (l, layer) in layers.iter().enumerate() {
                let (step, threads) = gradient(
                    layer.inputs,
                    layer.units,
                    layer.kernel_offset,
                    activation_offsets[l],
                    error_offsets[l + 1],
                    true,
                );
                push(Kernel::GradientPartials, step, threads)?;
            }
            let (step, threads) = gradient(
                1,
                1,
                param_count as usize,
                residual_offset,
                residual_offset,
                false,
            );
            push(Kernel::GradientPartials, step, threads)?;
        }
        // Further levels over all rows at once, then the update.
        for level in 1..level_lens.len() {
            let step = StepUniform {
                rows: rows as u32,
                in_len: level_lens[level - 1] as u32,
                out_len: level_lens[level] as u32,
                src_offset: level_offsets[level - 1] as u32,
                dst_offset: level_offsets[level] as u32,
                ..Default::default()
            };
            push(Kernel::ReducePartials, step, rows * level_lens[level])?;
        }
        push(Kernel::AdamStep, StepUniform::default(), param_count)?;
        push(Kernel::FinishStep, StepUniform::default(), 1)?;

        let constants = config.adam().constants();
        let last = widths.len() - 1;
        let run = RunUniform {
            samples: samples as u32,
            batch_size: batching.batch_size,
            chunk_size: chunk as u32,
            steps_per_epoch: batching.steps_per_epoch,
            shuffle: batching.shuffle as u32,
            seed_low: batching.seed as u32,
            seed_high: (batching.seed >> 32) as u32,
            half_bits: half_bits(batching.samples),
            param_count: param_count as u32,
            data_offset: data_offset as u32,
            input_offset: input_offset as u32,
            target_offset: target_offset as u32,
            // Layered work's output and its error (unused by the network kernel).
            output_offset: activation_offsets.get(last).map_or(0, |&o| o as u32),
            output_delta_offset: error_offsets.get(last).map_or(0, |&o| o as u32),
            residual_offset: residual_offset as u32,
            totals_offset: totals_offset as u32,
            one_minus_beta_1: constants.one_minus_beta_1,
            one_minus_beta_2: constants.one_minus_beta_2,
            epsilon: constants.epsilon,
            record_every: 0,
            record_offset: to_u32(config.epochs as u64, "the loss history")?,
            record_count: 0,
            _padding: [0; 2],
        };
        let total_steps = config.epochs as u64 * batching.steps_per_epoch as u64;
        // The kernels count steps in a u32.
        if total_steps > u32::MAX as u64 {
            bail!(
                "this run has {total_steps} training steps (epochs x batches per epoch), more than \
                 the GPU's step counter holds ({}); use fewer epochs or a larger --batch-size",
                u32::MAX
            );
        }
        Ok(Self {
            architecture: architecture.clone(),
            batching,
            tile,
            param_count: param_count as u32,
            epochs: to_u32(config.epochs as u64, "the loss history")?,
            total_steps,
            run,
            tensors_len,
            reduce_len,
            steps,
            step_list,
            record_floats: 0,
        })
    }
}

impl Plan {
    /// Values in one step record: weights, m and v before, gradients, loss,
    /// weights, m and v after.
    pub fn record_len(&self) -> u64 {
        7 * self.param_count as u64 + 1
    }

    /// Records every step for the shadow check, or every K-th when all of
    /// them would not fit in `budget` bytes (and beside the losses in one
    /// buffer of at most `most` bytes); returns K, or 0 when not even one
    /// record fits.
    pub fn record_steps(&mut self, budget: u64, most: u64) -> u64 {
        let losses = 4 * (HISTORY_HEADER + self.epochs as u64);
        let room = budget.min(most.saturating_sub(losses));
        let record_bytes = 4 * self.record_len();
        let fitting = room / record_bytes;
        if fitting == 0 || self.total_steps == 0 {
            return 0;
        }
        let every = self.total_steps.div_ceil(fitting);
        let count = self.total_steps.div_ceil(every);
        // Both fit in u32: every <= total_steps (checked against u32 by
        // Plan::new) and count <= fitting < 2^30 at the budget above.
        self.run.record_every = every as u32;
        self.run.record_count = count as u32;
        self.record_floats = count * self.record_len();
        every
    }

    /// Fails, before any GPU allocation, when a buffer of this run would
    /// exceed what the device allows, naming the buffer and the limit.
    pub fn check_limits(&self, limits: &wgpu::Limits) -> Result<()> {
        let most = largest_buffer(limits);
        let words = |n: u64| n.max(1) * 4;
        for (what, bytes) in [
            (
                "dataset and per-sample activations and errors",
                words(self.tensors_len),
            ),
            ("gradient reduction", words(self.reduce_len)),
            (
                "loss history and step records",
                words(HISTORY_HEADER + self.epochs as u64 + self.record_floats),
            ),
            (
                "weights and Adam moments",
                words(3 * self.param_count as u64),
            ),
        ] {
            if bytes > most {
                bail!(
                    "the {what} of this run need {bytes} bytes, more than this device allows in \
                     one buffer ({most} bytes); use a smaller --batch-size, fewer samples or \
                     narrower layers"
                );
            }
        }
        Ok(())
    }

    /// Loop iterations one invocation of `fused_steps` (a workgroup of
    /// `workgroup_size`) runs per training step, counting one more for every
    /// loop entered: an upper bound, since the invocation with local index 0
    /// does the most. llvmpipe silently ends the loops of an invocation after
    /// 65 535 iterations inside its outermost loop (gallivm's loop limiter,
    /// a guard against hangs), so the fused schedule splits its steps into
    /// dispatches well below that (`trainer::FUSED_LOOP_BUDGET`).
    pub fn fused_iterations_per_step(&self, workgroup_size: u32) -> u64 {
        let batch = self.batching.batch_size as u64;
        let block = REDUCE_BLOCK as u64;
        let (tile_samples, tile_units) = (self.tile.samples as u64, self.tile.units as u64);
        // The tile's loops run once per input; a 1-wide tile's loops have a
        // single, constant trip and compile to straight code.
        let counted = |n: u64| if n > 1 { 2 * n } else { 0 };
        let tile_loops = 1 + counted(tile_samples) + counted(tile_units);
        let tile_stores = counted(tile_samples) * (1 + tile_units);
        let mut total = 1 + self.step_list.len() as u64 + 1;
        for dispatch in &self.step_list {
            let items = (dispatch.threads as u64).div_ceil(workgroup_size as u64);
            let step = &self.steps[dispatch.step as usize];
            let inner = match dispatch.kernel {
                // Per input (unit): a loop over the tile's samples and one
                // over its units; then the tile's store, TILE x TILE.
                Kernel::DenseForward => (step.inputs as u64 + 1) * tile_loops + tile_stores,
                Kernel::DenseBackward => (step.units as u64 + 1) * tile_loops + tile_stores,
                // Per sample of the block: the tile's error load and rows.
                Kernel::GradientPartials => {
                    batch.min(block) * (1 + 2 * counted(tile_units) + 1) + tile_stores
                }
                Kernel::ReducePartials => (step.in_len as u64).min(block) + 1,
                // Never in a fused plan (fused.rs refuses it); counted as
                // its loop over a block's samples all the same.
                Kernel::NetworkPartials => batch.min(block) + 1,
                // Cycle-walking the shuffle: under 4 rounds on average, and
                // rarely more than a dozen.
                Kernel::GatherBatch => 16,
                Kernel::OutputError | Kernel::AdamStep | Kernel::FinishStep => 0,
            };
            total += items * (1 + inner) + 1;
        }
        total
    }

    /// The bytes of `steps` in train.wgsl.
    pub fn schedule_bytes(&self) -> Vec<u8> {
        bytemuck::cast_slice(&self.steps).to_vec()
    }
}

/// The GPU buffers and bind groups of one run, made once before the loop.
pub struct RunBuffers {
    /// Weights, then Adam's m and v.
    pub params: wgpu::Buffer,
    /// The dataset and the per-sample tensors (readable: the per-kernel tests
    /// look at one dispatch's output).
    pub tensors: wgpu::Buffer,
    /// The gradient reduction's levels (readable, as `tensors`).
    pub reduce: wgpu::Buffer,
    pub history: wgpu::Buffer,
    /// `Current` records: one per `Step` record, then the fused schedule's
    /// training steps per full dispatch and in the last dispatch.
    pub current: wgpu::Buffer,
    pub train_bind_group: wgpu::BindGroup,
    pub current_bind_group: wgpu::BindGroup,
}

/// The fixed fields of `History` in train.wgsl, before its losses.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct HistoryHeader {
    /// Training steps finished.
    pub step: u32,
    /// The first step with a non-finite loss or weight ([`NO_BAD_STEP`]: none).
    pub first_bad_step: u32,
    /// The epoch's size-weighted batch losses so far.
    pub epoch_total: f32,
    pub _pad: u32,
}

/// 32-bit words before the losses in `History`.
pub const HISTORY_HEADER: u64 = (std::mem::size_of::<HistoryHeader>() / 4) as u64;

/// `first_bad_step` while every loss and weight has been finite.
pub const NO_BAD_STEP: u32 = u32::MAX;

fn buffer(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

fn f32_bytes(len: u64) -> u64 {
    len.max(1) * std::mem::size_of::<f32>() as u64
}

impl RunBuffers {
    /// Allocates and uploads everything: initial weights and zero moments,
    /// inputs and targets, the Adam step-size table and the plan's records.
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        pipelines: &Pipelines,
        plan: &Plan,
        model: &Model,
        config: &TrainConfig,
        adam: &Adam,
    ) -> Result<Self> {
        let storage = wgpu::BufferUsages::STORAGE;
        let init = |label: &str, contents: &[u8], usage: wgpu::BufferUsages| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            })
        };
        let mut optimizer_state = model.params().to_vec();
        optimizer_state.resize(3 * model.params().len(), 0.0);
        let params = init(
            "params and adam moments",
            bytemuck::cast_slice(&optimizer_state),
            storage | wgpu::BufferUsages::COPY_SRC,
        );
        let tensors = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tensors"),
            size: f32_bytes(plan.tensors_len),
            usage: storage | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let float_size = std::mem::size_of::<f32>() as u64;
        let data_start = plan.run.data_offset as u64 * float_size;
        let samples = config.data.len() as u64;
        queue.write_buffer(
            &tensors,
            data_start,
            bytemuck::cast_slice(&config.data.celsius),
        );
        queue.write_buffer(
            &tensors,
            data_start + samples * float_size,
            bytemuck::cast_slice(&config.data.fahrenheit),
        );
        let reduce = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("reduce"),
            size: f32_bytes(plan.reduce_len),
            usage: storage | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        // `step` (0), `first_bad_step` (none yet), `epoch_total` (0),
        // padding, one loss per epoch.
        let history = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("history"),
            size: float_size * (HISTORY_HEADER + plan.epochs as u64 + plan.record_floats),
            usage: storage | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let header = HistoryHeader {
            step: 0,
            first_bad_step: NO_BAD_STEP,
            epoch_total: 0.0,
            _pad: 0,
        };
        queue.write_buffer(&history, 0, bytemuck::bytes_of(&header));
        let step_sizes = init(
            "adam step sizes",
            bytemuck::cast_slice(&adam.step_size_table(plan.total_steps)),
            storage,
        );
        let schedule = init("schedule", &plan.schedule_bytes(), storage);
        let run = init(
            "run uniform",
            bytemuck::bytes_of(&plan.run),
            wgpu::BufferUsages::UNIFORM,
        );
        // One record per `Step`, then the fused schedule's two step counts.
        let mut current_bytes = vec![0u8; (plan.steps.len() + 2) * CURRENT_STRIDE as usize];
        for step in 0..plan.steps.len() {
            let record = CurrentRecord {
                step: step as u32,
                steps: 0,
            };
            current_bytes[step * CURRENT_STRIDE as usize..][..std::mem::size_of::<CurrentRecord>()]
                .copy_from_slice(bytemuck::bytes_of(&record));
        }
        let current = init(
            "current records",
            &current_bytes,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let train_bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("training buffers"),
            layout: &pipelines.train_layout,
            entries: &[
                buffer(0, &params),
                buffer(1, &tensors),
                buffer(2, &reduce),
                buffer(3, &history),
                buffer(4, &step_sizes),
                buffer(5, &schedule),
                buffer(6, &run),
            ],
        });
        let current_bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("current record"),
            layout: &pipelines.current_layout,
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &current,
                    offset: 0,
                    size: wgpu::BufferSize::new(std::mem::size_of::<CurrentRecord>() as u64),
                }),
            }],
        });
        Ok(Self {
            params,
            tensors,
            reduce,
            history,
            current,
            train_bind_group,
            current_bind_group,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;
    use crate::model::Architecture;

    fn plan(samples: usize, hidden: &[usize]) -> Plan {
        let model = Model::glorot_uniform(Architecture::new(hidden).unwrap(), 1);
        let config = TrainConfig {
            data: Dataset {
                celsius: vec![0.0; samples],
                fahrenheit: vec![0.0; samples],
            },
            batch_size: None,
            ..TrainConfig::seed()
        };
        Plan::new(&model, &config, SampleWork::Layers(Tile::SINGLE), None).unwrap()
    }

    fn kernels(plan: &Plan) -> Vec<Kernel> {
        plan.step_list.iter().map(|d| d.kernel).collect()
    }

    #[test]
    fn seed_step_is_forward_error_backward_reduce_adam_finish() {
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
        let loss = plan.steps[plan.step_list[9].step as usize];
        assert_eq!(
            (loss.kernel_offset, loss.in_offset),
            (22, plan.run.residual_offset)
        );
        // The dataset 2*7; one unshuffled batch reads its inputs and
        // targets there; activations 7*(3+3+1), errors 7*(3+3+1), residuals.
        assert_eq!(plan.tensors_len, 2 * 7 + 7 * 7 + 7 * 7 + 7);
        assert_eq!(plan.run.input_offset, plan.run.data_offset);
        assert_eq!(plan.run.target_offset, plan.run.data_offset + 7);
        // Backward runs last layer first: layer 2's errors into layer 2's input.
        let backward = plan.steps[plan.step_list[4].step as usize];
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
        assert_eq!(further_levels(1), 0);
        assert_eq!(further_levels(REDUCE_BLOCK), 0);
        assert_eq!(further_levels(REDUCE_BLOCK + 1), 1);
        assert_eq!(further_levels(REDUCE_BLOCK * REDUCE_BLOCK), 1);
        assert_eq!(further_levels(REDUCE_BLOCK * REDUCE_BLOCK + 1), 2);
        // The last level leaves one total per row where Adam reads it.
        let plan = plan(70_000, &[3]);
        let last = plan.steps[plan.step_list[plan.step_list.len() - 3].step as usize];
        assert_eq!((last.out_len, last.dst_offset), (1, plan.run.totals_offset));
    }

    #[test]
    fn tiles_beyond_8_by_8_are_refused() {
        let model = Model::glorot_uniform(Architecture::seed(), 1);
        let config = TrainConfig::seed();
        let tile = Tile {
            samples: 16,
            units: 8,
        };
        let error = Plan::new(&model, &config, SampleWork::Layers(tile), None).unwrap_err();
        assert!(error.to_string().contains("16 x 8"), "{error}");
        assert!(Plan::new(&model, &config, SampleWork::Layers(Tile::blocked(64)), None).is_ok());
    }

    #[test]
    fn network_work_is_one_dispatch_per_chunk_and_keeps_no_per_sample_tensors() {
        let model = Model::glorot_uniform(Architecture::new(&[3, 3]).unwrap(), 1);
        let config = TrainConfig {
            data: Dataset::from_formula(1000, 1),
            batch_size: None,
            ..TrainConfig::seed()
        };
        let plan = Plan::new(&model, &config, SampleWork::Network, Some(512)).unwrap();
        use Kernel::*;
        // Two chunks of 512 (2 blocks each), gathered; then 4 block sums
        // per row reduced to one, Adam, the step's end.
        assert_eq!(
            kernels(&plan),
            [
                GatherBatch,
                NetworkPartials,
                GatherBatch,
                NetworkPartials,
                ReducePartials,
                AdamStep,
                FinishStep
            ]
        );
        let second = plan.steps[plan.step_list[3].step as usize];
        assert_eq!(
            (second.chunk_first, second.out_len, second.dst_offset),
            (512, 4, 0)
        );
        assert_eq!(plan.step_list[3].threads, 2);
        // The dataset, then a chunk's gathered inputs and targets only.
        assert_eq!(plan.tensors_len, 2 * 1000 + 2 * 512);
        assert_eq!(plan.run.input_offset, 2000);
        assert_eq!(plan.run.target_offset, 2000 + 512);
    }

    #[test]
    fn shuffled_batches_gather_first_and_size_tensors_by_the_batch() {
        let model = Model::glorot_uniform(Architecture::new(&[3]).unwrap(), 1);
        let config = TrainConfig {
            data: Dataset::from_formula(1000, 1),
            ..TrainConfig::seed()
        };
        let plan = Plan::new(&model, &config, SampleWork::Layers(Tile::SINGLE), None).unwrap();
        assert_eq!(plan.batching.steps_per_epoch, 32); // ceil(1000 / 32)
        assert_eq!(kernels(&plan)[0], Kernel::GatherBatch);
        // Dataset 2*1000, then per batch of 32: inputs, activations (3+1),
        // errors (3+1), residuals, targets.
        assert_eq!(plan.tensors_len, 2000 + 32 * (1 + 4 + 4 + 1 + 1));
        assert_eq!(plan.total_steps, 32 * 1000);
    }
}
