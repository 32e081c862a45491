//! Recording and submitting the training steps: the `Current` records each
//! dispatch binds, and the compute passes of every submission, with one
//! submission queued behind the running one.

use super::abi::{CURRENT_STRIDE, Current, Kernel, WORKGROUP_SIZE};
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

impl Recorder<'_> {
    /// Records and submits every training step, `steps_per_submit` to a
    /// command buffer, keeping one submission queued behind the running one
    /// and waiting only for the one before; `on_progress` hears the finished
    /// steps. Returns the number of submissions.
    pub async fn submit_all(
        &self,
        steps_per_submit: usize,
        timer: Option<&PassTimer>,
        mut on_progress: impl FnMut(usize),
    ) -> Result<usize> {
        let total_steps = self.plan.total_steps as usize;
        let mut submits = 0;
        let mut in_flight: Option<(Submission, usize)> = None;
        let mut done = 0usize;
        while done < total_steps {
            let count = steps_per_submit.min(total_steps - done);
            let commands = self.record(count, timer, submits);
            let submission = self.gpu.submit(commands);
            submits += 1;
            done += count;
            if let Some((previous, finished)) = in_flight.replace((submission, done)) {
                self.gpu.wait(previous).await?;
                on_progress(finished);
            }
        }
        if let Some((last, finished)) = in_flight {
            self.gpu.wait(last).await?;
            on_progress(finished);
        }
        Ok(submits)
    }

    /// `count` training steps in one compute pass of one command buffer:
    /// `fused_steps` dispatches, or every dispatch of every step.
    fn record(
        &self,
        count: usize,
        timer: Option<&PassTimer>,
        pass_index: usize,
    ) -> wgpu::CommandBuffer {
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
        encoder.finish()
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
