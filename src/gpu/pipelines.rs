//! The compute pipelines of the training kernels, all built from the one
//! WGSL module and sharing one pipeline layout, so a single bind group of
//! training buffers stays bound across every dispatch of a pass.

use super::abi::{FUSED_ENTRY_POINT, Kernel, WORKGROUP_SIZE};
use super::fused::fused_module;
use super::plan::GpuPlan;
use super::samples::samples_module;
use super::schedule::Schedule;
use super::wgsl::{ModuleSource, train_shader};
use crate::error::{Error, Result};
use crate::step::REDUCE_BLOCK;

/// The WGSL module `schedule` compiles for `plan`: train.wgsl alone for
/// the dispatch schedule, with the generated kernel of the samples or fused
/// schedule appended.
pub fn module_source(
    schedule: Schedule,
    plan: &GpuPlan,
    fused_workgroup_size: u32,
) -> ModuleSource {
    match schedule {
        Schedule::Dispatch => ModuleSource {
            label: format!(
                "dispatch-{}-tile{}x{}",
                plan.architecture.describe(),
                plan.tile.samples,
                plan.tile.units
            ),
            text: train_shader(plan.tile).into_owned(),
        },
        Schedule::Samples => samples_module(&plan.architecture),
        Schedule::Fused => fused_module(plan, fused_workgroup_size),
    }
}

/// Layouts and the pipelines one schedule needs, built once per run.
pub struct Pipelines {
    /// Group 0: the run's buffers (bindings 0..=6 of train.wgsl).
    pub train_layout: wgpu::BindGroupLayout,
    /// Group 1: the `Current` record, bound with a dynamic offset.
    pub current_layout: wgpu::BindGroupLayout,
    pub schedule: Schedule,
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
    /// the plan's dispatches. Validation errors come back as an error
    /// instead of reaching the uncaptured handler.
    pub async fn new(
        device: &wgpu::Device,
        schedule: Schedule,
        fused_workgroup_size: u32,
        plan: &GpuPlan,
    ) -> Result<Self> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let source = module_source(schedule, plan, fused_workgroup_size);
        source.dump_if_asked()?;
        let descriptor = wgpu::ShaderModuleDescriptor {
            label: Some(&source.label),
            source: wgpu::ShaderSource::Wgsl(source.text.as_str().into()),
        };
        // Bounds checks stay on. Loop bounding (a counter wgpu adds to every
        // loop, so a driver cannot assume an endless loop away) is off: it
        // more than doubled lavapipe's pipeline creation (52 ms against 20 ms
        // for the seed job's fused module).
        // SAFETY: every loop in these shaders ends. Each `for` runs to a
        // bound taken from a uniform, a `DispatchArgs` or a constant (the
        // samples kernel's to the end of its block), and
        // `fused_steps` to `current.fused_steps`; `sample_index` walks the cycle of
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
                storage_entry(5, true),  // dispatch_args
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
                for dispatch in &plan.dispatches {
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
        if let Some(error) = scope.pop().await {
            return Err(Error::ShaderBuild {
                label: source.label,
                message: error.to_string(),
            });
        }
        Ok(Self {
            train_layout,
            current_layout,
            schedule,
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
