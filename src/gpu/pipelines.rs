//! The compute pipelines of the training kernels, all built from the one
//! WGSL module and sharing one pipeline layout, so a single bind group of
//! training buffers stays bound across every dispatch of a pass.

use super::buffers::{Plan, Tile};
use super::fused::fused_module_source;
use super::network::{NETWORK_ENTRY_POINT, network_module_source};
use crate::cpu::REDUCE_BLOCK;
use anyhow::{Result, bail};
use std::borrow::Cow;

/// Threads per workgroup of the dispatch schedule. 64 fills the SIMD width
/// of common GPUs (32 or 64 lanes) and eight 8-wide rows on llvmpipe.
pub const WORKGROUP_SIZE: u32 = 64;

/// Storage buffers every training kernel's bind group holds (params,
/// tensors, reduce, history, step sizes, dispatch records): the one limit
/// above wgpu's downlevel defaults (4) that the kernels need besides buffer
/// sizes. Fitting in 4 would mean merging the two read-only tables into one
/// buffer and the history into another, which every kernel's addressing
/// would follow: left for the typed memory plan of the redesign.
pub const STORAGE_BUFFERS_PER_STAGE: u32 = 6;

/// Byte stride between the per-dispatch `Current` records, the alignment
/// every adapter accepts for dynamic uniform offsets.
pub const CURRENT_STRIDE: u64 = 256;

/// The markers around train.wgsl's code for tiles wider than 4.
pub const WIDE_TILES_BEGIN: &str = "// wide tiles only {";
pub const WIDE_TILES_END: &str = "// } wide tiles only";

/// train.wgsl as a module whose dense layers run in `tile`: without the
/// code marked "wide tiles only" when neither side of the tile exceeds 4,
/// so the driver never compiles what cannot run (the fused schedule's
/// pipeline creation on lavapipe: ~30 ms instead of ~60 here).
pub fn train_shader(tile: Tile) -> Cow<'static, str> {
    let source = super::TRAIN_SHADER;
    if tile.samples > 4 || tile.units > 4 {
        return Cow::Borrowed(source);
    }
    let mut narrow = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(begin) = rest.find(WIDE_TILES_BEGIN) {
        narrow.push_str(&rest[..begin]);
        let end = rest[begin..]
            .find(WIDE_TILES_END)
            .expect("train.wgsl's wide-tile markers come in pairs (tests/shaders.rs)");
        rest = &rest[begin + end + WIDE_TILES_END.len()..];
    }
    narrow.push_str(rest);
    Cow::Owned(narrow)
}

/// How the epochs run on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// One GPU dispatch per kernel of a training step's list, many steps
    /// recorded into one compute pass: scales to any data size.
    Dispatch,
    /// The dispatch schedule with one generated kernel for the per-sample
    /// work of a step (`network_partials`, src/gpu/network.rs): one thread
    /// per block of samples runs the whole network in registers. For large
    /// data on small networks.
    Samples,
    /// One workgroup runs the step's list for many steps in a single
    /// dispatch (`fused_steps`): for jobs too small to fill a GPU, where
    /// the cost of each dispatch dominates.
    Fused,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Dispatch => "dispatch",
            Schedule::Samples => "samples",
            Schedule::Fused => "fused",
        }
    }
}

/// The kernels of a training step's dispatch list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    GatherBatch,
    DenseForward,
    OutputError,
    DenseBackward,
    GradientPartials,
    /// The samples schedule's generated kernel: forward, output error,
    /// backward and the first level of the gradient sums in one.
    NetworkPartials,
    ReducePartials,
    AdamStep,
    FinishStep,
}

impl Kernel {
    pub const ALL: [Kernel; 9] = [
        Kernel::GatherBatch,
        Kernel::DenseForward,
        Kernel::OutputError,
        Kernel::DenseBackward,
        Kernel::GradientPartials,
        Kernel::NetworkPartials,
        Kernel::ReducePartials,
        Kernel::AdamStep,
        Kernel::FinishStep,
    ];

    /// The kernel's WGSL entry point (`network_partials` is generated per
    /// architecture; the others are in train.wgsl).
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::GatherBatch => "gather_batch",
            Kernel::DenseForward => "dense_forward",
            Kernel::OutputError => "output_error",
            Kernel::DenseBackward => "dense_backward",
            Kernel::GradientPartials => "gradient_partials",
            Kernel::NetworkPartials => NETWORK_ENTRY_POINT,
            Kernel::ReducePartials => "reduce_partials",
            Kernel::AdamStep => "adam_step",
            Kernel::FinishStep => "finish_step",
        }
    }
}

/// The entry point of the fused schedule.
pub const FUSED_ENTRY_POINT: &str = "fused_steps";

/// Layouts and the pipelines one schedule needs, built once per run.
pub struct Pipelines {
    /// Group 0: the run's buffers (bindings 0..=6 of train.wgsl).
    pub train_layout: wgpu::BindGroupLayout,
    /// Group 1: the `Current` record, bound with a dynamic offset.
    pub current_layout: wgpu::BindGroupLayout,
    pub schedule: Schedule,
    /// Threads of the fused workgroup (a multiple of the adapter's SIMD width).
    pub fused_workgroup_size: u32,
    pipelines: Vec<(Option<Kernel>, wgpu::ComputePipeline)>,
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn uniform_entry(binding: u32, has_dynamic_offset: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Pipelines {
    /// Compiles the module and builds the pipelines `schedule` uses: the
    /// fused schedule's one, written out for `plan`, or one per kernel of
    /// the plan's step list. Validation errors come back as an error
    /// instead of reaching the uncaptured handler.
    pub fn new(
        device: &wgpu::Device,
        schedule: Schedule,
        fused_workgroup_size: u32,
        plan: &Plan,
    ) -> Result<Self> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let source = match schedule {
            Schedule::Dispatch => train_shader(plan.tile).into_owned(),
            Schedule::Samples => network_module_source(&plan.architecture),
            Schedule::Fused => fused_module_source(plan, fused_workgroup_size),
        };
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some("train.wgsl"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        // Bounds checks stay on. Loop bounding (a counter wgpu adds to every
        // loop, so a driver cannot assume an endless loop away) is off: it
        // more than doubled lavapipe's pipeline creation (52 ms against 20 ms
        // for the seed job's fused module).
        // SAFETY: every loop in these shaders ends. Each `for` runs to a
        // bound taken from a uniform, a `Step` record or a constant (the
        // samples kernel's to the end of its block), and
        // `fused_steps` to `current.steps`; `sample_index` walks the cycle of
        // a permutation of [0, 4^half_bits) that contains its start, which is
        // below `samples`, so it returns to [0, samples) (src/batching.rs).
        let checks = wgpu::ShaderRuntimeChecks {
            force_loop_bounding: false,
            ..wgpu::ShaderRuntimeChecks::checked()
        };
        let module = unsafe { device.create_shader_module_trusted(descriptor, checks) };
        let train_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("training buffers layout"),
            entries: &[
                storage_entry(0, false), // params (weights, m, v)
                storage_entry(1, false), // tensors
                storage_entry(2, false), // reduce
                storage_entry(3, false), // history
                storage_entry(4, true),  // step_sizes
                storage_entry(5, true),  // schedule
                uniform_entry(6, false), // run
            ],
        });
        let current_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("current record layout"),
            entries: &[uniform_entry(0, true)],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("training pipeline layout"),
            bind_group_layouts: &[Some(&train_layout), Some(&current_layout)],
            immediate_size: 0,
        });
        let constants = [
            ("workgroup_size", WORKGROUP_SIZE as f64),
            ("fused_workgroup_size", fused_workgroup_size as f64),
            ("reduce_block", REDUCE_BLOCK as f64),
            ("sample_tile", plan.tile.samples as f64),
            ("unit_tile", plan.tile.units as f64),
        ];
        let entry_points: Vec<(Option<Kernel>, &str)> = match schedule {
            Schedule::Fused => vec![(None, FUSED_ENTRY_POINT)],
            Schedule::Dispatch | Schedule::Samples => {
                let mut kernels: Vec<Kernel> = Vec::new();
                for dispatch in &plan.step_list {
                    if !kernels.contains(&dispatch.kernel) {
                        kernels.push(dispatch.kernel);
                    }
                }
                kernels
                    .into_iter()
                    .map(|k| (Some(k), k.entry_point()))
                    .collect()
            }
        };
        let pipelines = entry_points
            .into_iter()
            .map(|(kernel, entry_point)| {
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry_point),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some(entry_point),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        ..Default::default()
                    },
                    cache: None,
                });
                (kernel, pipeline)
            })
            .collect();
        if let Some(error) = pollster::block_on(scope.pop()) {
            bail!("the training shaders failed to build: {error}");
        }
        Ok(Self {
            train_layout,
            current_layout,
            schedule,
            fused_workgroup_size,
            pipelines,
        })
    }

    /// The pipeline of a kernel (`None`: the fused kernel).
    pub fn get(&self, kernel: Option<Kernel>) -> &wgpu::ComputePipeline {
        let (_, pipeline) = self
            .pipelines
            .iter()
            .find(|(k, _)| *k == kernel)
            .expect("the schedule's pipelines were built");
        pipeline
    }
}
