//! The compute pipelines of the training kernels, all built from the one
//! WGSL module and sharing one pipeline layout, so a single bind group of
//! training buffers stays bound across every dispatch of a pass.

use crate::cpu::REDUCE_BLOCK;
use anyhow::{Result, bail};

/// Threads per workgroup of every kernel. 64 fills the SIMD width of common
/// GPUs (32 or 64 lanes) and eight 8-wide rows on llvmpipe.
pub const WORKGROUP_SIZE: u32 = 64;

/// Byte stride between the per-dispatch `Step` records, the alignment every
/// adapter accepts for dynamic uniform offsets.
pub const STEP_STRIDE: u64 = 256;

/// The kernels a training epoch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    DenseForward,
    OutputError,
    DenseBackward,
    GradientPartials,
    ReducePartials,
    AdamStep,
}

impl Kernel {
    pub const ALL: [Kernel; 6] = [
        Kernel::DenseForward,
        Kernel::OutputError,
        Kernel::DenseBackward,
        Kernel::GradientPartials,
        Kernel::ReducePartials,
        Kernel::AdamStep,
    ];

    /// The WGSL entry point.
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::DenseForward => "dense_forward",
            Kernel::OutputError => "output_error",
            Kernel::DenseBackward => "dense_backward",
            Kernel::GradientPartials => "gradient_partials",
            Kernel::ReducePartials => "reduce_partials",
            Kernel::AdamStep => "adam_step",
        }
    }
}

/// Layouts and pipelines, built once per device.
pub struct Pipelines {
    /// Group 0: the run's buffers (bindings 0..=7 of train.wgsl).
    pub train_layout: wgpu::BindGroupLayout,
    /// Group 1: the `Step` record, bound with a dynamic offset per dispatch.
    pub step_layout: wgpu::BindGroupLayout,
    pipelines: Vec<(Kernel, wgpu::ComputePipeline)>,
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
    /// Compiles the module and builds a pipeline per kernel. Validation
    /// errors come back as an error instead of reaching the uncaptured handler.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("train.wgsl"),
            source: wgpu::ShaderSource::Wgsl(super::TRAIN_SHADER.into()),
        });
        let train_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("training buffers layout"),
            entries: &[
                storage_entry(0, false), // params
                storage_entry(1, false), // moments
                storage_entry(2, false), // tensors
                storage_entry(3, false), // reduce
                storage_entry(4, false), // history
                storage_entry(5, true),  // step_sizes
                storage_entry(6, true),  // grad_terms
                uniform_entry(7, false), // run
            ],
        });
        let step_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("step record layout"),
            entries: &[uniform_entry(0, true)],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("training pipeline layout"),
            bind_group_layouts: &[Some(&train_layout), Some(&step_layout)],
            immediate_size: 0,
        });
        let constants = [
            ("workgroup_size", WORKGROUP_SIZE as f64),
            ("reduce_block", REDUCE_BLOCK as f64),
        ];
        let pipelines = Kernel::ALL
            .iter()
            .map(|&kernel| {
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.entry_point()),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some(kernel.entry_point()),
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
            step_layout,
            pipelines,
        })
    }

    pub fn get(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        let (_, pipeline) = self
            .pipelines
            .iter()
            .find(|(k, _)| *k == kernel)
            .expect("every kernel has a pipeline");
        pipeline
    }
}
