//! The host driver: records every epoch's dispatches into compute passes,
//! submits them without waiting inside the loop, and reads the loss history
//! and the final weights back once at the end.

use super::buffers::{Dispatch, Plan, RunBuffers};
use super::context::Gpu;
use super::pipelines::{Kernel, Pipelines, STEP_STRIDE, WORKGROUP_SIZE};
use crate::model::Model;
use crate::training::{TrainConfig, TrainOutput};
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

/// Most dispatches recorded into one command buffer. The seed job (9
/// dispatches an epoch, 1000 epochs) fits in one; a very long run is split
/// so its command buffers stay small, with one submission in flight while
/// the next is recorded.
pub const MAX_DISPATCHES_PER_SUBMIT: usize = 32_768;

/// Where the time of a GPU run went.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuTimings {
    /// Shader module and pipeline creation.
    pub pipelines: Duration,
    /// Buffer creation and upload.
    pub upload: Duration,
    /// Recording, submitting and waiting for every epoch.
    pub train: Duration,
    /// Copying the results out and mapping them.
    pub readback: Duration,
    /// Command buffers submitted to the queue.
    pub submits: usize,
}

/// A GPU run's output and its timings.
pub struct GpuTrainOutput {
    pub output: TrainOutput,
    pub timings: GpuTimings,
}

/// Trains `initial` on the GPU. The same math as [`crate::cpu::train`], one
/// kernel per step, every epoch on the GPU; the host waits only between
/// large submissions and once at the end.
pub fn train(gpu: &Gpu, initial: &Model, config: &TrainConfig) -> Result<GpuTrainOutput> {
    config.validate()?;
    let mut timings = GpuTimings::default();

    let started = Instant::now();
    let pipelines = Pipelines::new(&gpu.device)?;
    timings.pipelines = started.elapsed();

    let started = Instant::now();
    let plan = Plan::new(initial, config)?;
    let adam = config.adam();
    let buffers = RunBuffers::new(
        &gpu.device,
        &gpu.queue,
        &pipelines,
        &plan,
        initial,
        config,
        &adam,
    )?;
    gpu.check_errors()?;
    timings.upload = started.elapsed();

    let started = Instant::now();
    let epochs_per_submit = (MAX_DISPATCHES_PER_SUBMIT / plan.epoch.len()).max(1);
    let mut in_flight: Option<wgpu::SubmissionIndex> = None;
    let mut done = 0usize;
    while done < config.epochs {
        let count = epochs_per_submit.min(config.epochs - done);
        let commands = record_epochs(gpu, &pipelines, &buffers, &plan, count);
        let submission = gpu.queue.submit([commands]);
        timings.submits += 1;
        // Keep at most one submission queued behind the running one.
        if let Some(previous) = in_flight.replace(submission) {
            gpu.wait(previous)?;
        }
        done += count;
    }
    if let Some(last) = in_flight {
        gpu.wait(last)?;
    }
    timings.train = started.elapsed();
    let (params, loss_history) = read_back(gpu, &buffers, &plan, &mut timings)?;

    if let Some(epoch) = loss_history.iter().position(|l| !l.is_finite()) {
        bail!(
            "training diverged: the loss became {} at epoch {} (try a smaller --learning-rate)",
            loss_history[epoch],
            epoch + 1
        );
    }
    let model = Model::from_params(initial.architecture().clone(), params)?;
    Ok(GpuTrainOutput {
        output: TrainOutput {
            loss_history,
            model,
            train_time: timings.train,
        },
        timings,
    })
}

/// `epochs` epochs of dispatches in one compute pass of one command buffer.
fn record_epochs(
    gpu: &Gpu,
    pipelines: &Pipelines,
    buffers: &RunBuffers,
    plan: &Plan,
    epochs: usize,
) -> wgpu::CommandBuffer {
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("training epochs"),
        });
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("training pass"),
            timestamp_writes: None,
        });
        pass.set_bind_group(0, &buffers.train_bind_group, &[]);
        let max_groups = gpu.device.limits().max_compute_workgroups_per_dimension;
        let mut current: Option<Kernel> = None;
        for _ in 0..epochs {
            for dispatch in &plan.epoch {
                if current != Some(dispatch.kernel) {
                    pass.set_pipeline(pipelines.get(dispatch.kernel));
                    current = Some(dispatch.kernel);
                }
                let offset = (dispatch.step as u64 * STEP_STRIDE) as u32;
                pass.set_bind_group(1, &buffers.step_bind_group, &[offset]);
                let (x, y) = workgroup_grid(dispatch, max_groups);
                pass.dispatch_workgroups(x, y, 1);
            }
        }
    }
    encoder.finish()
}

/// Workgroups for `dispatch.threads` threads, folded into a 2-D grid when
/// they exceed one dimension (the kernels rebuild the linear index).
fn workgroup_grid(dispatch: &Dispatch, max_groups: u32) -> (u32, u32) {
    let groups = dispatch.threads.div_ceil(WORKGROUP_SIZE).max(1);
    if groups <= max_groups {
        (groups, 1)
    } else {
        (max_groups, groups.div_ceil(max_groups))
    }
}

/// Copies the weights and the loss history into one mappable buffer and
/// reads it: the run's only readback.
fn read_back(
    gpu: &Gpu,
    buffers: &RunBuffers,
    plan: &Plan,
    timings: &mut GpuTimings,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let started = Instant::now();
    let params_bytes = buffers.params.size();
    let history_bytes = buffers.history.size();
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback staging"),
        size: params_bytes + history_bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
    encoder.copy_buffer_to_buffer(&buffers.params, 0, &staging, 0, params_bytes);
    encoder.copy_buffer_to_buffer(&buffers.history, 0, &staging, params_bytes, history_bytes);
    let submission = gpu.queue.submit([encoder.finish()]);
    timings.submits += 1;

    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |result| {
            sender.send(result).ok();
        });
    gpu.wait(submission)?;
    pollster::block_on(receiver.receive())
        .context("the GPU dropped the readback request")?
        .context("cannot map the readback buffer")?;
    let bytes = staging
        .slice(..)
        .get_mapped_range()
        .context("cannot read the readback buffer")?
        .to_vec();
    staging.unmap();

    let floats: &[f32] = bytemuck::cast_slice(&bytes);
    let params = floats[..plan.param_count as usize].to_vec();
    let history = &floats[params_bytes as usize / 4..];
    let steps_run = bytemuck::cast::<f32, u32>(history[0]) as usize;
    let epochs = plan.epochs as usize;
    if steps_run != epochs {
        bail!("the GPU ran {steps_run} training steps, expected {epochs}");
    }
    timings.readback = started.elapsed();
    Ok((params, history[1..=epochs].to_vec()))
}
