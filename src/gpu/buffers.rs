//! The memory plan of one training run (where every tensor lives, what each
//! dispatch of an epoch works on) and the GPU buffers built from it.

use super::pipelines::{CURRENT_STRIDE, Kernel, Pipelines};
use crate::cpu::REDUCE_BLOCK;
use crate::model::Model;
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
    pub param_count: u32,
    pub output_offset: u32,
    pub output_delta_offset: u32,
    pub target_offset: u32,
    pub residual_offset: u32,
    pub totals_offset: u32,
    pub one_minus_beta_1: f32,
    pub one_minus_beta_2: f32,
    pub epsilon: f32,
    pub _padding: [u32; 2],
}

/// `Step` in train.wgsl.
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
    pub _padding: [u32; 5],
}

/// `GradTerm` in train.wgsl: row value = sum over s of a[s] * d[s].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct GradTerm {
    pub a_offset: u32,
    /// 0 means a[s] = 1 (a bias gradient).
    pub a_stride: u32,
    pub d_offset: u32,
    pub d_stride: u32,
}

/// Entries of `Schedule.steps` (MAX_STEPS in train.wgsl): enough for 28
/// hidden layers.
pub const MAX_STEPS: usize = 64;

/// `Current` in train.wgsl, one per `CURRENT_STRIDE` bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct CurrentRecord {
    pub step: u32,
    pub epochs: u32,
}

/// One dispatch of an epoch: which kernel, on which `Step` record, over how
/// many threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    pub kernel: Kernel,
    pub step: u32,
    pub threads: u32,
}

/// Where everything of a run lives, in f32 elements, and the dispatches of
/// one epoch. Pure arithmetic: built and tested without a GPU.
#[derive(Debug, Clone)]
pub struct Plan {
    pub samples: u32,
    pub param_count: u32,
    pub epochs: u32,
    pub run: RunUniform,
    /// Size of `tensors`: activations of every layer, errors of layers 1..,
    /// residuals, targets.
    pub tensors_len: u64,
    pub input_offset: u32,
    /// Size of `reduce`: one region per reduction level.
    pub reduce_len: u64,
    pub grad_terms: Vec<GradTerm>,
    pub steps: Vec<StepUniform>,
    pub epoch: Vec<Dispatch>,
}

fn to_u32(value: u64, what: &str) -> Result<u32> {
    u32::try_from(value).with_context(|| {
        format!("{what} needs {value} elements, more than a GPU kernel can index (2^32)")
    })
}

impl Plan {
    pub fn new(model: &Model, config: &TrainConfig) -> Result<Self> {
        let architecture = model.architecture();
        let samples = config.data.len() as u64;
        let widths: Vec<u64> = architecture.widths().iter().map(|&w| w as u64).collect();
        let layers = architecture.layers();
        let param_count = architecture.param_count() as u64;

        // tensors: activations[0..=L], errors[1..=L], residuals, targets.
        let mut offset = 0u64;
        let mut activation_offsets = Vec::new();
        for width in &widths {
            activation_offsets.push(offset);
            offset += samples * width;
        }
        let mut error_offsets = vec![0u64];
        for width in &widths[1..] {
            error_offsets.push(offset);
            offset += samples * width;
        }
        let residual_offset = offset;
        let target_offset = offset + samples;
        let tensors_len = target_offset + samples;
        to_u32(tensors_len, "the per-sample activations and errors")?;

        // Gradient rows, then the squared-error row.
        let mut grad_terms = Vec::with_capacity(param_count as usize + 1);
        for (l, layer) in layers.iter().enumerate() {
            let a_offset = activation_offsets[l];
            let d_offset = error_offsets[l + 1];
            for i in 0..layer.inputs as u64 {
                for j in 0..layer.units as u64 {
                    grad_terms.push(GradTerm {
                        a_offset: (a_offset + i) as u32,
                        a_stride: layer.inputs as u32,
                        d_offset: (d_offset + j) as u32,
                        d_stride: layer.units as u32,
                    });
                }
            }
            for j in 0..layer.units as u64 {
                grad_terms.push(GradTerm {
                    a_offset: 0,
                    a_stride: 0,
                    d_offset: (d_offset + j) as u32,
                    d_stride: layer.units as u32,
                });
            }
        }
        grad_terms.push(GradTerm {
            a_offset: residual_offset as u32,
            a_stride: 1,
            d_offset: residual_offset as u32,
            d_stride: 1,
        });
        let rows = grad_terms.len() as u64;

        // Reduction levels: samples -> ceil(samples / block) -> ... -> 1.
        let block = REDUCE_BLOCK as u64;
        let mut level_lens = vec![samples.div_ceil(block)];
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
        let mut epoch = Vec::new();
        let mut push = |kernel, step: StepUniform, threads: u64| -> Result<()> {
            epoch.push(Dispatch {
                kernel,
                step: steps.len() as u32,
                threads: to_u32(threads, kernel.entry_point())?,
            });
            steps.push(step);
            Ok(())
        };
        let dense = |l: usize, in_offset: u64, out_offset: u64| StepUniform {
            inputs: layers[l].inputs as u32,
            units: layers[l].units as u32,
            kernel_offset: layers[l].kernel_offset as u32,
            bias_offset: layers[l].bias_offset as u32,
            in_offset: in_offset as u32,
            out_offset: out_offset as u32,
            ..Default::default()
        };
        for (l, layer) in layers.iter().enumerate() {
            let step = dense(l, activation_offsets[l], activation_offsets[l + 1]);
            push(Kernel::DenseForward, step, samples * layer.units as u64)?;
        }
        push(Kernel::OutputError, StepUniform::default(), samples)?;
        for (l, layer) in layers.iter().enumerate().skip(1).rev() {
            let step = dense(l, error_offsets[l + 1], error_offsets[l]);
            push(Kernel::DenseBackward, step, samples * layer.inputs as u64)?;
        }
        let mut in_len = samples;
        for (level, (&len, &offset)) in level_lens.iter().zip(&level_offsets).enumerate() {
            let kernel = if level == 0 {
                Kernel::GradientPartials
            } else {
                Kernel::ReducePartials
            };
            let step = StepUniform {
                rows: rows as u32,
                in_len: in_len as u32,
                out_len: len as u32,
                src_offset: if level == 0 {
                    0
                } else {
                    level_offsets[level - 1] as u32
                },
                dst_offset: offset as u32,
                ..Default::default()
            };
            push(kernel, step, rows * len)?;
            in_len = len;
        }
        push(Kernel::AdamStep, StepUniform::default(), param_count)?;

        let constants = config.adam().constants();
        let last = widths.len() - 1;
        let run = RunUniform {
            samples: samples as u32,
            param_count: param_count as u32,
            output_offset: activation_offsets[last] as u32,
            output_delta_offset: error_offsets[last] as u32,
            target_offset: target_offset as u32,
            residual_offset: residual_offset as u32,
            totals_offset: totals_offset as u32,
            one_minus_beta_1: constants.one_minus_beta_1,
            one_minus_beta_2: constants.one_minus_beta_2,
            epsilon: constants.epsilon,
            _padding: [0; 2],
        };
        debug_assert!(
            epoch.len() <= MAX_STEPS,
            "Architecture caps hidden layers so an epoch fits MAX_STEPS"
        );
        Ok(Self {
            samples: samples as u32,
            param_count: param_count as u32,
            epochs: to_u32(config.epochs as u64, "the loss history")?,
            run,
            tensors_len,
            input_offset: activation_offsets[0] as u32,
            reduce_len,
            grad_terms,
            steps,
            epoch,
        })
    }
}

impl Plan {
    /// Fails, before any GPU allocation, when a buffer of this run would
    /// exceed what the device allows, naming the buffer and the limit.
    pub fn check_limits(&self, limits: &wgpu::Limits) -> Result<()> {
        let most = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let words = |n: u64| n.max(1) * 4;
        for (what, bytes) in [
            ("per-sample activations and errors", words(self.tensors_len)),
            ("gradient reduction", words(self.reduce_len)),
            ("loss history", words(HISTORY_HEADER + self.epochs as u64)),
            ("Adam step-size table", words(self.epochs as u64)),
            (
                "weights and Adam moments",
                words(3 * self.param_count as u64),
            ),
        ] {
            if bytes > most {
                bail!(
                    "the {what} of this run need {bytes} bytes, more than this device allows in \
                     one buffer ({most} bytes); use fewer samples, fewer epochs or narrower layers"
                );
            }
        }
        Ok(())
    }

    /// Loop iterations one invocation of `fused_epochs` (a workgroup of
    /// `workgroup_size`) runs per epoch, counting one more for every loop
    /// entered: an upper bound, since the invocation with local index 0 does
    /// the most. llvmpipe silently ends the loops of an invocation after
    /// 65 535 iterations inside its outermost loop (gallivm's loop limiter,
    /// a guard against hangs), so the fused schedule splits its epochs into
    /// dispatches well below that (`trainer::FUSED_LOOP_BUDGET`).
    pub fn fused_iterations_per_epoch(&self, workgroup_size: u32) -> u64 {
        let samples = self.samples as u64;
        let block = REDUCE_BLOCK as u64;
        let mut total = 1 + self.epoch.len() as u64 + 1;
        for dispatch in &self.epoch {
            let items = (dispatch.threads as u64).div_ceil(workgroup_size as u64);
            let step = &self.steps[dispatch.step as usize];
            let inner = match dispatch.kernel {
                Kernel::DenseForward => step.inputs as u64 + 1,
                Kernel::DenseBackward => step.units as u64 + 1,
                Kernel::GradientPartials => samples.min(block) + 1,
                Kernel::ReducePartials => (step.in_len as u64).min(block) + 1,
                Kernel::OutputError | Kernel::AdamStep => 0,
            };
            total += items * (1 + inner) + 1;
        }
        total
    }

    /// The bytes of `Schedule` in train.wgsl: the step records (a
    /// fixed-size array), then the gradient terms.
    pub fn schedule_bytes(&self) -> Vec<u8> {
        let mut steps = [StepUniform::default(); MAX_STEPS];
        steps[..self.steps.len()].copy_from_slice(&self.steps);
        let mut bytes = bytemuck::cast_slice(&steps).to_vec();
        bytes.extend_from_slice(bytemuck::cast_slice(&self.grad_terms));
        bytes
    }
}

/// The GPU buffers and bind groups of one run, made once before the loop.
pub struct RunBuffers {
    /// Weights, then Adam's m and v.
    pub params: wgpu::Buffer,
    pub history: wgpu::Buffer,
    /// `Current` records: one per step, then the fused schedule's epochs
    /// per full dispatch and in the last dispatch.
    pub current: wgpu::Buffer,
    pub train_bind_group: wgpu::BindGroup,
    pub current_bind_group: wgpu::BindGroup,
}

/// 32-bit words before the losses in `History`: `step`, `first_bad_step`.
pub const HISTORY_HEADER: u64 = 2;

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
            usage: storage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let float_size = std::mem::size_of::<f32>() as u64;
        queue.write_buffer(
            &tensors,
            plan.input_offset as u64 * float_size,
            bytemuck::cast_slice(&config.data.celsius),
        );
        queue.write_buffer(
            &tensors,
            plan.run.target_offset as u64 * float_size,
            bytemuck::cast_slice(&config.data.fahrenheit),
        );
        let reduce = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("reduce"),
            size: f32_bytes(plan.reduce_len),
            usage: storage,
            mapped_at_creation: false,
        });
        // `step` (0), `first_bad_step` (none yet), one loss per epoch.
        let history = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("history"),
            size: float_size * (HISTORY_HEADER + plan.epochs as u64),
            usage: storage | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&history, 0, bytemuck::cast_slice(&[0u32, NO_BAD_STEP]));
        let step_sizes = init(
            "adam step sizes",
            bytemuck::cast_slice(&adam.step_sizes(config.epochs.max(1))),
            storage,
        );
        let schedule = init("schedule", &plan.schedule_bytes(), storage);
        let run = init(
            "run uniform",
            bytemuck::bytes_of(&plan.run),
            wgpu::BufferUsages::UNIFORM,
        );
        // One record per step, then the fused schedule's two epoch counts.
        let mut current_bytes = vec![0u8; (plan.steps.len() + 2) * CURRENT_STRIDE as usize];
        for step in 0..plan.steps.len() {
            let record = CurrentRecord {
                step: step as u32,
                epochs: 0,
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
            ..TrainConfig::seed()
        };
        Plan::new(&model, &config).unwrap()
    }

    fn kernels(plan: &Plan) -> Vec<Kernel> {
        plan.epoch.iter().map(|d| d.kernel).collect()
    }

    #[test]
    fn seed_epoch_is_forward_error_backward_reduce_adam() {
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
                AdamStep
            ]
        );
        // 22 gradient rows and the squared-error row.
        assert_eq!(plan.grad_terms.len(), 23);
        assert_eq!(plan.grad_terms[22].a_offset, plan.run.residual_offset);
        // Activations 7*(1+3+3+1), errors 7*(3+3+1), residuals, targets.
        assert_eq!(plan.tensors_len, 7 * 8 + 7 * 7 + 7 + 7);
        // Backward runs last layer first: layer 2's errors into layer 2's input.
        let backward = plan.steps[plan.epoch[4].step as usize];
        assert_eq!((backward.inputs, backward.units), (3, 1));
    }

    #[test]
    fn reduction_levels_grow_with_samples() {
        let levels = |samples| {
            kernels(&plan(samples, &[3]))
                .iter()
                .filter(|k| matches!(k, Kernel::GradientPartials | Kernel::ReducePartials))
                .count()
        };
        assert_eq!(levels(1), 1);
        assert_eq!(levels(REDUCE_BLOCK), 1);
        assert_eq!(levels(REDUCE_BLOCK + 1), 2);
        assert_eq!(levels(REDUCE_BLOCK * REDUCE_BLOCK), 2);
        assert_eq!(levels(REDUCE_BLOCK * REDUCE_BLOCK + 1), 3);
        // The last level leaves one total per row where Adam reads it.
        let plan = plan(70_000, &[3]);
        let last = plan.steps[plan.epoch[plan.epoch.len() - 2].step as usize];
        assert_eq!((last.out_len, last.dst_offset), (1, plan.run.totals_offset));
    }
}
