//! The compute pipelines of a job's module, sharing one pipeline layout, so
//! a single bind group of training buffers stays bound across every
//! dispatch of a pass; and the cache that builds them once per module.

use super::abi::FUSED_ENTRY_POINT;
use super::wgsl::ModuleSource;
use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Layouts and the pipelines of one module: one per entry point.
pub struct Pipelines {
    /// Group 0: the run's buffers (bindings 0..=6 of abi.wgsl).
    pub train_layout: wgpu::BindGroupLayout,
    /// Group 1: the `Current` record, bound with a dynamic offset.
    pub current_layout: wgpu::BindGroupLayout,
    pipelines: Vec<(String, wgpu::ComputePipeline)>,
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
    /// Compiles `source` and builds a pipeline for each of its entry
    /// points. Validation errors come back as an error instead of reaching
    /// the uncaptured handler.
    pub async fn new(device: &wgpu::Device, source: &ModuleSource) -> Result<Self> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
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
        // constant, a bound taken from a `DispatchArgs` or the batch (the
        // samples kernel's to the end of its block), and `fused_steps` to
        // `current.fused_steps`; `sample_index` walks the cycle of a
        // permutation of [0, 4^HALF_BITS) that contains its start, which is
        // below SAMPLES, so it returns to [0, SAMPLES) (src/batching.rs).
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
        let pipelines = source
            .entry_points
            .iter()
            .map(|entry_point| {
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry_point),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some(entry_point),
                    compilation_options: wgpu::PipelineCompilationOptions::default(),
                    cache: None,
                });
                (entry_point.clone(), pipeline)
            })
            .collect();
        if let Some(error) = scope.pop().await {
            return Err(Error::ShaderBuild {
                label: source.label.clone(),
                message: error.to_string(),
            });
        }
        Ok(Self {
            train_layout,
            current_layout,
            pipelines,
        })
    }

    /// Where the pipeline of entry point `name` is in [`Pipelines::pipeline`].
    pub fn index_of(&self, name: &str) -> usize {
        self.pipelines
            .iter()
            .position(|(entry_point, _)| entry_point == name)
            .unwrap_or_else(|| panic!("the module has the entry point {name}"))
    }

    /// The pipeline at `index`.
    pub fn pipeline(&self, index: usize) -> &wgpu::ComputePipeline {
        &self.pipelines[index].1
    }

    /// The fused schedule's pipeline.
    pub fn fused(&self) -> &wgpu::ComputePipeline {
        self.pipeline(self.index_of(FUSED_ENTRY_POINT))
    }
}

/// The pipelines of the modules a device compiled last, by module text: a
/// run whose module was built before (the same shape, any seed, learning
/// rate or epoch count) compiles nothing.
#[derive(Default)]
pub struct PipelineCache {
    recent: Mutex<VecDeque<(String, Arc<Pipelines>)>>,
}

/// Modules a [`PipelineCache`] keeps, the oldest used dropped first.
pub const PIPELINE_CACHE_MODULES: usize = 16;

impl PipelineCache {
    /// The pipelines of `source`, built now unless they were built before;
    /// also says whether they were.
    pub async fn get(
        &self,
        device: &wgpu::Device,
        source: &ModuleSource,
    ) -> Result<(Arc<Pipelines>, bool)> {
        if let Some(found) = self.take(&source.text) {
            self.keep(source, found.clone());
            return Ok((found, true));
        }
        let built = Arc::new(Pipelines::new(device, source).await?);
        self.keep(source, built.clone());
        Ok((built, false))
    }

    fn take(&self, text: &str) -> Option<Arc<Pipelines>> {
        let mut recent = self.recent.lock().expect("pipeline cache");
        let position = recent.iter().position(|(kept, _)| kept == text)?;
        recent.remove(position).map(|(_, pipelines)| pipelines)
    }

    fn keep(&self, source: &ModuleSource, pipelines: Arc<Pipelines>) {
        let mut recent = self.recent.lock().expect("pipeline cache");
        recent.push_front((source.text.clone(), pipelines));
        recent.truncate(PIPELINE_CACHE_MODULES);
    }
}
