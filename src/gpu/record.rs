//! Recording and submitting the training steps: the `Current` records each
//! dispatch binds, and the compute passes of every submission, with one
//! submission queued behind the running one.

use super::abi::{
    CURRENT_STRIDE, Current, F32_BYTES, HISTORY_HEADER_WORDS, Kernel, WORKGROUP_SIZE,
};
use super::buffers::RunBuffers;
use super::context::{Gpu, Submission};
use super::pipelines::Pipelines;
use super::plan::{Dispatch, GpuPlan};
use super::schedule::{FusedSplit, Schedule};
use super::timer::PassTimer;
use crate::error::Result;

/// The `Current` records of a run: record i names dispatch i of the plan;
/// after them, the fused schedule's step counts of a full dispatch and of
/// the run's last.
pub fn current_records(plan: &GpuPlan, fused: &FusedSplit) -> Vec<Current> {
    let mut records: Vec<Current> = (0..plan.dispatches.len())
        .map(|dispatch| Current {
            dispatch: dispatch as u32,
            fused_steps: 0,
        })
        .collect();
    for steps in [fused.steps_per_dispatch, fused.remainder] {
        records.push(Current {
            dispatch: 0,
            fused_steps: steps as u32,
        });
    }
    records
}

/// The byte offset of the `Current` record of dispatch `index`.
pub fn dispatch_offset(index: usize) -> u32 {
    (index as u64 * CURRENT_STRIDE) as u32
}

/// The byte offset of the `Current` record of a fused dispatch of `steps`.
fn fused_offset(plan: &GpuPlan, fused: &FusedSplit, steps: usize) -> u32 {
    let full = plan.dispatches.len();
    dispatch_offset(if steps == fused.steps_per_dispatch {
        full
    } else {
        full + 1
    })
}

/// What recording a run's training steps needs.
pub struct Recorder<'a> {
    pub gpu: &'a Gpu,
    pub pipelines: &'a Pipelines,
    pub buffers: &'a RunBuffers,
    pub plan: &'a GpuPlan,
    pub fused: &'a FusedSplit,
}

/// What a GPU run reports after each submission.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Epochs finished so far.
    pub epochs: usize,
    /// The losses of the epochs finished since the last report, with
    /// `GpuOptions::stream_losses` (read back with the submission that
    /// finished them); else empty.
    pub new_losses: &'a [f32],
}

/// A submission on the queue and what it will report.
struct InFlight {
    submission: Submission,
    epochs: usize,
    losses: Option<wgpu::Buffer>,
}

impl Recorder<'_> {
    /// Records and submits every training step, `steps_per_submit` to a
    /// command buffer, keeping one submission queued behind the running one
    /// and waiting only for the one before; `on_progress` hears the finished
    /// epochs after each, and with `stream_losses` their losses, copied out
    /// of the history at the end of the submission that finished them (one
    /// readback per submission, counted in `readbacks`). Returns the number
    /// of submissions.
    pub async fn submit_all(
        &self,
        steps_per_submit: usize,
        timer: Option<&PassTimer>,
        stream_losses: bool,
        readbacks: &mut usize,
        mut on_progress: impl FnMut(Progress<'_>),
    ) -> Result<usize> {
        let total_steps = self.plan.total_steps as usize;
        let steps_per_epoch = self.plan.batching.steps_per_epoch as usize;
        let mut submits = 0;
        let mut in_flight: Option<InFlight> = None;
        let (mut done, mut copied) = (0usize, 0usize);
        while done < total_steps {
            let count = steps_per_submit.min(total_steps - done);
            done += count;
            let epochs = done / steps_per_epoch;
            let copy = (stream_losses && epochs > copied).then_some(copied..epochs);
            copied = epochs;
            let (commands, losses) = self.record(count, timer, submits, copy);
            let submission = self.gpu.submit(commands);
            submits += 1;
            let flight = InFlight {
                submission,
                epochs,
                losses,
            };
            if let Some(previous) = in_flight.replace(flight) {
                self.report(previous, readbacks, &mut on_progress).await?;
            }
        }
        if let Some(last) = in_flight {
            self.report(last, readbacks, &mut on_progress).await?;
        }
        Ok(submits)
    }

    /// Waits for `flight` and reports it, with its losses when it copied some.
    async fn report(
        &self,
        flight: InFlight,
        readbacks: &mut usize,
        on_progress: &mut impl FnMut(Progress<'_>),
    ) -> Result<()> {
        let new_losses: Vec<f32> = match &flight.losses {
            Some(buffer) => bytemuck::pod_collect_to_vec(
                &self
                    .gpu
                    .read_mapped(buffer, flight.submission, readbacks)
                    .await?,
            ),
            None => {
                self.gpu.wait(flight.submission).await?;
                Vec::new()
            }
        };
        on_progress(Progress {
            epochs: flight.epochs,
            new_losses: &new_losses,
        });
        Ok(())
    }

    /// `count` training steps in one compute pass of one command buffer:
    /// `fused_steps` dispatches, or every dispatch of every step; then, for
    /// `losses`, the copy of those epochs' losses into a mappable buffer
    /// (returned with the commands).
    fn record(
        &self,
        count: usize,
        timer: Option<&PassTimer>,
        pass_index: usize,
        losses: Option<std::ops::Range<usize>>,
    ) -> (wgpu::CommandBuffer, Option<wgpu::Buffer>) {
        let (plan, buffers, pipelines) = (self.plan, self.buffers, self.pipelines);
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("training steps"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("training pass"),
                timestamp_writes: timer.and_then(|t| t.writes(pass_index)),
            });
            pass.set_bind_group(0, &buffers.train_bind_group, &[]);
            match pipelines.schedule {
                Schedule::Fused => {
                    pass.set_pipeline(pipelines.get(None));
                    let mut left = count;
                    while left > 0 {
                        let steps = left.min(self.fused.steps_per_dispatch);
                        let offset = fused_offset(plan, self.fused, steps);
                        pass.set_bind_group(1, &buffers.current_bind_group, &[offset]);
                        pass.dispatch_workgroups(1, 1, 1);
                        left -= steps;
                    }
                }
                Schedule::Dispatch | Schedule::Samples => {
                    let max_groups = self
                        .gpu
                        .device
                        .limits()
                        .max_compute_workgroups_per_dimension;
                    let mut current: Option<Kernel> = None;
                    for _ in 0..count {
                        for (index, dispatch) in plan.dispatches.iter().enumerate() {
                            if current != Some(dispatch.kernel) {
                                pass.set_pipeline(pipelines.get(Some(dispatch.kernel)));
                                current = Some(dispatch.kernel);
                            }
                            let offset = dispatch_offset(index);
                            pass.set_bind_group(1, &buffers.current_bind_group, &[offset]);
                            let (x, y) = workgroup_grid(dispatch, max_groups);
                            pass.dispatch_workgroups(x, y, 1);
                        }
                    }
                }
            }
        }
        if let Some(timer) = timer {
            timer.collect(&mut encoder, pass_index);
        }
        let losses = losses.map(|epochs| {
            let bytes = epochs.len() as u64 * F32_BYTES;
            let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("streamed losses"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let first = (HISTORY_HEADER_WORDS + epochs.start as u64) * F32_BYTES;
            encoder.copy_buffer_to_buffer(&buffers.history, first, &staging, 0, bytes);
            staging
        });
        (encoder.finish(), losses)
    }
}

/// Workgroups for `dispatch.threads` threads, folded into a 2-D grid when
/// they exceed one dimension (the kernels rebuild the linear index).
pub fn workgroup_grid(dispatch: &Dispatch, max_groups: u32) -> (u32, u32) {
    let groups = dispatch.threads.div_ceil(WORKGROUP_SIZE).max(1);
    if groups <= max_groups {
        (groups, 1)
    } else {
        (max_groups, groups.div_ceil(max_groups))
    }
}
