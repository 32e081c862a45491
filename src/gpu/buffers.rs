//! The GPU buffers of one run and their bind groups, allocated and filled
//! from its plan once, before the first step.

use super::abi::{CURRENT_STRIDE, Current, F32_BYTES, HistoryHeader, buffer_bytes};
use super::context::Gpu;
use super::pipelines::Pipelines;
use super::plan::GpuPlan;
use crate::model::Model;
use crate::training::TrainConfig;

/// The GPU buffers and bind groups of one run, made once before the loop.
pub struct RunBuffers {
    /// Weights, then Adam's m and v.
    pub params: wgpu::Buffer,
    /// The dataset and the per-sample tensors (copyable: the per-kernel
    /// tests look at one dispatch's output; training never reads it back).
    #[cfg_attr(not(test), allow(dead_code))]
    pub tensors: wgpu::Buffer,
    /// The gradient reduction's levels (copyable, as `tensors`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub reduce: wgpu::Buffer,
    pub history: wgpu::Buffer,
    pub train_bind_group: wgpu::BindGroup,
    pub current_bind_group: wgpu::BindGroup,
}

fn buffer(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

impl RunBuffers {
    /// Allocates and uploads everything: initial weights and zero moments,
    /// inputs and targets, the Adam step-size table, the plan's dispatch
    /// arguments and `current_records`.
    pub fn new(
        gpu: &Gpu,
        pipelines: &Pipelines,
        plan: &GpuPlan,
        model: &Model,
        config: &TrainConfig,
        current_records: &[Current],
    ) -> Self {
        let (device, queue) = (&gpu.device, &gpu.queue);
        let storage = wgpu::BufferUsages::STORAGE;
        // Not wgpu's `create_buffer_init`: it panics when the device is
        // lost (its mapping fails); a queued write fails as an error of
        // the run. The contents are whole f32s and u32s.
        let init = |label: &str, contents: &[u8], usage: wgpu::BufferUsages| {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (contents.len() as u64).max(F32_BYTES),
                usage: usage | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            queue.write_buffer(&buffer, 0, contents);
            buffer
        };
        // Weights, m, v, and the best epoch's weights when they are kept.
        let adam = config.adam_start(model.params().len());
        let mut optimizer_state = [model.params(), &adam.m, &adam.v].concat();
        optimizer_state.resize(plan.params_len() as usize, 0.0);
        let params = init(
            "params and adam moments",
            bytemuck::cast_slice(&optimizer_state),
            storage | wgpu::BufferUsages::COPY_SRC,
        );
        let tensors = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tensors"),
            size: buffer_bytes(plan.memory.tensors_len),
            usage: storage | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        // The dataset: every row's inputs, then every row's targets.
        let data_start = plan.memory.data * F32_BYTES;
        let inputs = config.data.x.len() as u64;
        let x = bytemuck::cast_slice(&config.data.x);
        queue.write_buffer(&tensors, data_start, x);
        let y = bytemuck::cast_slice(&config.data.y);
        queue.write_buffer(&tensors, data_start + inputs * F32_BYTES, y);
        let reduce = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("reduce"),
            size: buffer_bytes(plan.memory.reduce_len),
            // Copied from for the kernel tests, which also write into it the
            // sums a kernel starts from.
            usage: storage | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // The header (no step done, none flagged), one loss per epoch, the
        // step records.
        let history = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("history"),
            size: buffer_bytes(plan.history_words()),
            usage: storage | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&history, 0, bytemuck::bytes_of(&HistoryHeader::START));
        let step_sizes = init(
            "adam step sizes",
            bytemuck::cast_slice(&config.step_sizes(plan.total_steps)),
            storage,
        );
        let dispatch_args = init("dispatch args", &plan.dispatch_args_bytes(), storage);
        let run = init(
            "run args",
            bytemuck::bytes_of(&plan.run),
            wgpu::BufferUsages::UNIFORM,
        );
        let mut current_bytes = vec![0u8; current_records.len() * CURRENT_STRIDE as usize];
        for (slot, record) in current_bytes
            .chunks_exact_mut(CURRENT_STRIDE as usize)
            .zip(current_records)
        {
            slot[..std::mem::size_of::<Current>()].copy_from_slice(bytemuck::bytes_of(record));
        }
        let current = init(
            "current records",
            &current_bytes,
            wgpu::BufferUsages::UNIFORM,
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
                buffer(5, &dispatch_args),
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
                    size: wgpu::BufferSize::new(std::mem::size_of::<Current>() as u64),
                }),
            }],
        });
        Self {
            params,
            tensors,
            reduce,
            history,
            train_bind_group,
            current_bind_group,
        }
    }
}
