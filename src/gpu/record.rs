//! Recording and submitting the training steps: the `Current` records each
//! dispatch binds, and the compute passes of every submission, with one
//! submission queued behind the running one.

use super::abi::{
    CURRENT_STRIDE, Current, F32_BYTES, HISTORY_HEADER_WORDS, HistoryHeader, WORKGROUP_SIZE,
};
use super::buffers::RunBuffers;
use super::context::{Gpu, Submission};
use super::pipelines::Pipelines;
use super::plan::{Dispatch, GpuPlan, Stopping};
use super::schedule::{FusedSplit, Schedule};
use super::timer::PassTimer;
use crate::error::Result;
use crate::training::{DeviceSteps, EpochRows, StepRecord, TrainState};
use std::ops::Range;

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
    pub schedule: Schedule,
    pub pipelines: &'a Pipelines,
    pub buffers: &'a RunBuffers,
    pub plan: &'a GpuPlan,
    pub fused: &'a FusedSplit,
}

/// What a GPU run reports after each submission.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Epochs finished so far (those that ran: early stopping ends a run
    /// early).
    pub epochs: usize,
    /// The losses of the epochs finished since the last report, with
    /// `GpuOptions::stream_losses` or `record_steps` (read back with the
    /// submission that finished them); else empty.
    pub new_losses: &'a [f32],
    /// With `GpuOptions::record_steps`: the records of the steps the
    /// submission ran and the history's rows of the epochs it finished,
    /// for the shadow check to take as the run goes on.
    pub steps: Option<DeviceSteps>,
}

/// What a submission copies out for the host to read as it ends.
#[derive(Debug, Clone)]
struct Readback {
    /// The history's header, for early stopping's stop.
    header: bool,
    /// These epochs' rows of the first `series` series of the history (the
    /// loss alone when streamed for a curve; every series with records).
    epochs: Range<usize>,
    series: usize,
    /// These steps' records, from the ring's first slot.
    steps: Range<usize>,
}

impl Readback {
    fn header_bytes(&self) -> u64 {
        match self.header {
            true => std::mem::size_of::<HistoryHeader>() as u64,
            false => 0,
        }
    }

    fn rows_bytes(&self) -> u64 {
        (self.series * self.epochs.len()) as u64 * F32_BYTES
    }
}

/// A submission on the queue and what it will report.
struct InFlight {
    submission: Submission,
    epochs: usize,
    readback: Option<(Readback, wgpu::Buffer)>,
}

/// What the host learnt from a finished submission.
struct Heard {
    /// The 1-based epoch early stopping stopped after, once it has.
    stopped_epoch: Option<usize>,
}

impl Recorder<'_> {
    /// Records and submits every training step, `steps_per_submit` to a
    /// command buffer, keeping one submission queued behind the running one
    /// and waiting only for the one before; `on_progress` hears the finished
    /// epochs after each, and with `stream_losses` their losses, copied out
    /// of the history at the end of the submission that finished them (one
    /// readback per submission, counted in `readbacks`). With early
    /// stopping that readback also carries the history's header, and once
    /// it says the device stopped no more steps are recorded (the one
    /// already queued does nothing). Returns the number of submissions.
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
        let records = self.plan.records();
        // A single submission has nothing after it to skip; records after
        // the stop were never written.
        let watch_stop = self.plan.shape.early_stopping != Stopping::Off
            && (steps_per_submit < total_steps || records);
        let series = match records {
            true => self.plan.loss_series() as usize,
            false => stream_losses as usize,
        };
        let mut submits = 0;
        let mut in_flight: Option<InFlight> = None;
        let (mut done, mut copied) = (0usize, 0usize);
        let mut stopped = false;
        while done < total_steps && !stopped {
            let count = steps_per_submit.min(total_steps - done);
            let first = done;
            done += count;
            let epochs = done / steps_per_epoch;
            let rows = if series > 0 {
                copied..epochs
            } else {
                epochs..epochs
            };
            copied = epochs;
            let readback = (watch_stop || !rows.is_empty() || records).then_some(Readback {
                header: watch_stop,
                epochs: rows,
                series,
                steps: if records { first..done } else { done..done },
            });
            let (commands, readback) = self.record(first..done, timer, submits, readback);
            let submission = self.gpu.submit(commands);
            submits += 1;
            let flight = InFlight {
                submission,
                epochs,
                readback,
            };
            if let Some(previous) = in_flight.replace(flight) {
                let heard = self.report(previous, readbacks, &mut on_progress).await?;
                stopped = heard.stopped_epoch.is_some();
            }
        }
        if let Some(last) = in_flight {
            self.report(last, readbacks, &mut on_progress).await?;
        }
        Ok(submits)
    }

    /// Waits for `flight` and reports it: the epochs that ran, and the
    /// losses of those it copied.
    async fn report(
        &self,
        flight: InFlight,
        readbacks: &mut usize,
        on_progress: &mut impl FnMut(Progress<'_>),
    ) -> Result<Heard> {
        let Some((readback, buffer)) = &flight.readback else {
            self.gpu.wait(flight.submission).await?;
            on_progress(Progress {
                epochs: flight.epochs,
                new_losses: &[],
                steps: None,
            });
            return Ok(Heard {
                stopped_epoch: None,
            });
        };
        let bytes = self
            .gpu
            .read_mapped(buffer, flight.submission, readbacks)
            .await?;
        let (header, bytes) = bytes.split_at(readback.header_bytes() as usize);
        let (rows, records) = bytes.split_at(readback.rows_bytes() as usize);
        let stopped_epoch = (readback.header).then(|| {
            let header: HistoryHeader = bytemuck::pod_read_unaligned(header);
            (header.stopped_epoch > 0).then_some(header.stopped_epoch as usize)
        });
        let stopped_epoch = stopped_epoch.flatten();
        let epochs = stopped_epoch.map_or(flight.epochs, |stopped| stopped.min(flight.epochs));
        // The epochs and steps after the stop never ran.
        let ran = epochs.saturating_sub(readback.epochs.start);
        let series_rows = |series: usize| {
            let values = &rows[series * readback.epochs.len() * F32_BYTES as usize..]
                [..ran.min(readback.epochs.len()) * F32_BYTES as usize];
            bytemuck::pod_collect_to_vec::<u8, f32>(values)
        };
        let new_losses = if readback.series > 0 {
            series_rows(0)
        } else {
            Vec::new()
        };
        let steps = self.plan.records().then(|| {
            let steps_run = stopped_epoch.map_or(usize::MAX, |e| {
                e * self.plan.batching.steps_per_epoch as usize
            });
            DeviceSteps {
                records: self.step_records(records, readback.steps.start, steps_run),
                epochs: self.epoch_rows(readback.epochs.start, series_rows),
            }
        });
        on_progress(Progress {
            epochs,
            new_losses: &new_losses,
            steps,
        });
        Ok(Heard { stopped_epoch })
    }

    /// The history's series as [`EpochRows`] from epoch `first`, each
    /// series' values from `series_rows`.
    fn epoch_rows(&self, first: usize, series_rows: impl Fn(usize) -> Vec<f32>) -> EpochRows {
        let metrics = self.plan.shape.metrics.len();
        let validated = self.plan.shape.validation_samples > 0;
        // The history's order: loss, val_loss, metrics, val_metrics.
        let val_loss = validated as usize;
        let metric = |m: usize| series_rows(1 + val_loss + m);
        EpochRows {
            first,
            loss: series_rows(0),
            val_loss: if validated {
                series_rows(1)
            } else {
                Vec::new()
            },
            metrics: (0..metrics).map(metric).collect(),
            val_metrics: match validated {
                true => (0..metrics).map(|m| metric(metrics + m)).collect(),
                false => Vec::new(),
            },
        }
    }

    /// The step records the kernels wrote (`step_record` in
    /// shaders/adam.wgsl) from the ring's first slot, of steps from
    /// `first`, up to `steps_run`.
    fn step_records(&self, values: &[u8], first: usize, steps_run: usize) -> Vec<StepRecord> {
        let values: Vec<f32> = bytemuck::pod_collect_to_vec(values);
        let count = self.plan.param_count as usize;
        let state = |values: &[f32]| TrainState {
            weights: values[..count].to_vec(),
            m: values[count..2 * count].to_vec(),
            v: values[2 * count..3 * count].to_vec(),
        };
        values
            .chunks_exact(self.plan.record_len() as usize)
            .enumerate()
            .map(|(k, record)| (first + k, record))
            .take_while(|&(step, _)| step < steps_run)
            .map(|(step, record)| StepRecord {
                step: step as u64,
                before: state(record),
                gradients: record[3 * count..4 * count].to_vec(),
                loss: record[4 * count],
                after: state(&record[4 * count + 1..]),
            })
            .collect()
    }

    /// Training steps `steps` (0-based) in one compute pass of one command
    /// buffer: `fused_steps` dispatches, or every dispatch of every step
    /// (those that work only at an epoch's end only at the steps that end
    /// one); then, for
    /// `readback`, the copy of the history's header and of those epochs'
    /// losses into a mappable buffer (returned with the commands).
    fn record(
        &self,
        steps: std::ops::Range<usize>,
        timer: Option<&PassTimer>,
        pass_index: usize,
        readback: Option<Readback>,
    ) -> (wgpu::CommandBuffer, Option<(Readback, wgpu::Buffer)>) {
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
            match self.schedule {
                Schedule::Fused => {
                    pass.set_pipeline(pipelines.fused());
                    let mut left = steps.len();
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
                    let of_dispatch: Vec<usize> = (plan.dispatches.iter())
                        .map(|dispatch| pipelines.index_of(&dispatch.function()))
                        .collect();
                    let steps_per_epoch = plan.batching.steps_per_epoch as usize;
                    let mut current = None;
                    for step in steps {
                        let ends_epoch = (step + 1) % steps_per_epoch == 0;
                        for (index, dispatch) in plan.dispatches.iter().enumerate() {
                            if dispatch.kernel.at_epoch_ends_only() && !ends_epoch {
                                continue;
                            }
                            let pipeline = of_dispatch[index];
                            if current != Some(pipeline) {
                                pass.set_pipeline(pipelines.pipeline(pipeline));
                                current = Some(pipeline);
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
        let readback = readback.map(|readback| {
            let staging = self.copy_out(&mut encoder, &readback);
            (readback, staging)
        });
        (encoder.finish(), readback)
    }

    /// Copies what `readback` names into a new mappable buffer, in its
    /// order: the history's header, each series' rows, the step records.
    fn copy_out(&self, encoder: &mut wgpu::CommandEncoder, readback: &Readback) -> wgpu::Buffer {
        let history = &self.buffers.history;
        let (header, rows) = (readback.header_bytes(), readback.rows_bytes());
        let record_bytes = self.plan.record_len() * F32_BYTES;
        let records = readback.steps.len() as u64 * record_bytes;
        let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("streamed history and step records"),
            size: (header + rows + records).max(F32_BYTES),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if header > 0 {
            encoder.copy_buffer_to_buffer(history, 0, &staging, 0, header);
        }
        let epochs = readback.epochs.len() as u64;
        if epochs > 0 {
            for series in 0..readback.series as u64 {
                let first = series * self.plan.epochs as u64 + readback.epochs.start as u64;
                let from = (HISTORY_HEADER_WORDS + first) * F32_BYTES;
                let to = header + series * epochs * F32_BYTES;
                encoder.copy_buffer_to_buffer(history, from, &staging, to, epochs * F32_BYTES);
            }
        }
        if records > 0 {
            // A submission's steps fill the ring from its first slot.
            let ring = (HISTORY_HEADER_WORDS + self.plan.run.record_offset as u64) * F32_BYTES;
            encoder.copy_buffer_to_buffer(history, ring, &staging, header + rows, records);
        }
        staging
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
