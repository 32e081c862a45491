//! The run's one readback: the trained weights, Adam's moments, the loss
//! history, the divergence flag and the pass timestamps, copied into one
//! mappable buffer and decoded.

use super::abi::{F32_BYTES, HistoryHeader, NO_BAD_STEP};
use super::buffers::RunBuffers;
use super::context::Gpu;
use super::plan::GpuPlan;
use super::timer::PassTimer;
use crate::error::{Error, Result};

/// What the readback brings home.
pub struct GpuResults {
    pub params: Vec<f32>,
    /// Adam's moments after the last step: every parameter's m, then v.
    pub moments: Vec<f32>,
    /// Training steps the run took.
    pub steps_run: u64,
    pub loss_history: Vec<f32>,
    /// Each epoch's validation loss (empty without a split).
    pub val_loss_history: Vec<f32>,
    /// Each metric's values per epoch, and on the validation rows (empty
    /// without a split).
    pub metrics: Vec<Vec<f32>>,
    pub val_metrics: Vec<Vec<f32>>,
    /// The training step (1-based) the kernels flagged as the first with a
    /// non-finite loss or weight.
    pub first_bad_step: Option<usize>,
    /// Pass timestamps (empty without timestamp queries).
    pub ticks: Vec<u64>,
    /// Early stopping's state at the end: the best monitored value, its
    /// 1-based epoch, and the 1-based epoch it stopped after (0: none).
    pub best: f32,
    pub best_epoch: u32,
    pub wait: u32,
    pub stopped_epoch: u32,
}

/// Copies the weights, the loss history, the divergence flag and the pass
/// timestamps into one mappable buffer and reads it: the run's only readback.
pub async fn read_back(
    gpu: &Gpu,
    buffers: &RunBuffers,
    plan: &GpuPlan,
    timer: Option<&PassTimer>,
    readbacks: &mut usize,
) -> Result<GpuResults> {
    let params_bytes = plan.param_count as u64 * F32_BYTES;
    // Adam's m and v follow the weights in the params buffer.
    let moment_bytes = 2 * params_bytes;
    // The history's header and series, without the ring of step records.
    let history_bytes = (plan.history_words() - plan.record_floats) * F32_BYTES;
    // Timestamps are u64s: their copy starts on an 8-byte boundary.
    let timestamps_offset = (params_bytes + moment_bytes + history_bytes).next_multiple_of(8);
    let timestamp_bytes = timer.map_or(0, |t| t.ticks.size());
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback staging"),
        size: timestamps_offset + timestamp_bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
    let model_bytes = plan.model_offset() * F32_BYTES;
    encoder.copy_buffer_to_buffer(&buffers.params, model_bytes, &staging, 0, params_bytes);
    let moments = (params_bytes, moment_bytes);
    encoder.copy_buffer_to_buffer(&buffers.params, moments.0, &staging, moments.0, moments.1);
    let history_start = params_bytes + moment_bytes;
    encoder.copy_buffer_to_buffer(&buffers.history, 0, &staging, history_start, history_bytes);
    if let Some(timer) = timer {
        encoder.copy_buffer_to_buffer(
            &timer.ticks,
            0,
            &staging,
            timestamps_offset,
            timestamp_bytes,
        );
    }
    let submission = gpu.submit(encoder.finish());
    let bytes = gpu.read_mapped(&staging, submission, readbacks).await?;

    let (results, timestamps) = bytes.split_at(timestamps_offset as usize);
    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(timestamps);
    let (params_bytes, rest) = results.split_at(params_bytes as usize);
    let (moment_bytes, history_bytes) = rest.split_at(moment_bytes as usize);
    let params: Vec<f32> = bytemuck::pod_collect_to_vec(params_bytes);
    let moments: Vec<f32> = bytemuck::pod_collect_to_vec(moment_bytes);
    let header_bytes = std::mem::size_of::<HistoryHeader>();
    let header: HistoryHeader = bytemuck::pod_read_unaligned(&history_bytes[..header_bytes]);
    let history: Vec<f32> = bytemuck::pod_collect_to_vec(&history_bytes[header_bytes..]);
    // Early stopping ends the run after its stopped epoch.
    let (epochs_run, steps_run) = match header.stopped_epoch {
        0 => (plan.epochs, plan.total_steps),
        stopped => (
            stopped,
            stopped as u64 * plan.batching.steps_per_epoch as u64,
        ),
    };
    if header.step as u64 != steps_run || epochs_run > plan.epochs {
        return Err(Error::Gpu {
            adapter: gpu.info.name.clone(),
            message: format!(
                "it ran {} training steps, expected {steps_run}",
                header.step
            ),
        });
    }
    let epochs = plan.epochs as usize;
    let series = epochs * plan.loss_series() as usize;
    let val_loss_history = &history[epochs..series];
    let run = epochs_run as usize;
    let metric_series = |offset: u32| {
        (0..plan.shape.metrics.len())
            .map(|m| history[offset as usize + m * epochs..][..run].to_vec())
            .collect::<Vec<_>>()
    };
    let validated = plan.shape.validation_samples > 0;
    let results = GpuResults {
        metrics: metric_series(plan.run.metric_offset),
        val_metrics: if validated {
            metric_series(plan.run.val_metric_offset)
        } else {
            Vec::new()
        },
        params,
        moments,
        steps_run,
        loss_history: history[..epochs_run as usize].to_vec(),
        val_loss_history: if validated {
            val_loss_history[..run].to_vec()
        } else {
            Vec::new()
        },
        best: header.best,
        best_epoch: header.best_epoch,
        wait: header.wait,
        stopped_epoch: header.stopped_epoch,
        first_bad_step: match header.first_bad_step {
            NO_BAD_STEP => None,
            step => Some(step as usize),
        },
        ticks,
    };
    Ok(results)
}
