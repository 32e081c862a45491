//! The host driver: records the training steps' work, submits it without waiting
//! inside the loop, and reads the loss history and the final weights back
//! once at the end.

use super::buffers::{
    CurrentRecord, Dispatch, HistoryHeader, NO_BAD_STEP, Plan, RECORD_BUDGET, RunBuffers,
    SampleWork, Tile, floats_per_sample, largest_buffer,
};
use super::context::Gpu;
use super::network::{SAMPLES_AUTO_MAX_PARAMS, SAMPLES_MAX_PARAMS};
use super::pipelines::{CURRENT_STRIDE, Kernel, Pipelines, Schedule, WORKGROUP_SIZE};
use crate::model::Model;
use crate::shadow::{StepRecord, TrainState};
use crate::training::{Diverged, TrainConfig, TrainOutput};
use anyhow::{Result, bail};
use std::time::{Duration, Instant};

/// Most dispatches recorded into one command buffer by the dispatch
/// schedule. The seed job (12 a step, 1000 steps) fits in one; a longer
/// run is split so command buffers stay small, with one submission in
/// flight while the next is recorded.
pub const MAX_DISPATCHES_PER_SUBMIT: usize = 32_768;

/// Most loop iterations (as [`Plan::fused_iterations_per_step`] counts
/// them) one invocation of a fused dispatch may run. llvmpipe ends every
/// loop of an invocation once 65 535 iterations have run inside its
/// outermost loop. The count is an upper bound: measured against that
/// cut-off, llvmpipe ran 1.6 to 2.0x fewer iterations than counted (the seed
/// job: 159 counted, 80 real, per step), since it unrolls the loops whose
/// bounds the generated code makes constants. Half the limit leaves a
/// further 2x margin, and keeps each dispatch short for any driver's
/// watchdog. The seed job runs ~200 steps a dispatch, all of a submission's
/// dispatches in one compute pass.
pub const FUSED_LOOP_BUDGET: u64 = 32_768;

/// Most training steps one fused submission runs (rounded to whole dispatches).
pub const MAX_FUSED_STEPS_PER_SUBMIT: usize = 4096;

/// `auto` fuses the steps into one workgroup when batch size x parameters
/// (the work of one gradient pass) is at most this: below it the cost of a
/// dozen dispatches a step outweighs the parallelism one workgroup gives
/// up. Measured on lavapipe, ms per full-batch epoch fused / dispatched:
/// 1000 samples x 22 parameters 0.31 / 0.78; 7 x 4353 (hidden 64,64) 0.61 /
/// 0.61 in one run, 0.64 / 0.30 in another: that is the crossover.
pub const FUSED_MAX_WORK: u64 = 1 << 15;

/// The same bound against the samples schedule, for networks small enough
/// for it: its step is 3 dispatches (plus one per further reduction level
/// and a gather per chunk when shuffled), not a dozen. Measured on
/// lavapipe, ms for 1000 full-batch epochs fused / samples (learning rate
/// 0.01): hidden 3,3 (22 parameters) at 64 samples 21 / 107-126, 256
/// samples 72-74 / 50-125, 1000 samples 247-261 / 38-136; hidden 8,8 (97)
/// at 256 samples 300-308 / 106-154.
pub const FUSED_OVER_SAMPLES_MAX_WORK: u64 = 1 << 13;

/// Which schedule to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleChoice {
    /// Fused for small jobs (see [`FUSED_MAX_WORK`] and
    /// [`FUSED_OVER_SAMPLES_MAX_WORK`]); otherwise samples for networks of
    /// at most [`SAMPLES_AUTO_MAX_PARAMS`] parameters, dispatch for wider
    /// ones. The thresholds were measured on lavapipe, the only adapter
    /// this project has been measured on so far.
    #[default]
    Auto,
    Fused,
    Samples,
    Dispatch,
}

impl ScheduleChoice {
    /// The schedule to run; `Fused` fails when not even one training step
    /// fits in one fused dispatch, `Samples` when the network is too wide
    /// for its written-out kernel.
    pub fn resolve(self, plan: &Plan, fused_workgroup_size: u32) -> Result<Schedule> {
        let fits = plan.fused_iterations_per_step(fused_workgroup_size) <= FUSED_LOOP_BUDGET;
        let params = plan.param_count as usize;
        match self {
            ScheduleChoice::Fused if !fits => bail!(
                "this job is too large for the fused schedule (one step needs more than {} loop \
                 iterations per thread); use the samples or dispatch schedule",
                FUSED_LOOP_BUDGET
            ),
            ScheduleChoice::Fused => Ok(Schedule::Fused),
            ScheduleChoice::Samples if params > SAMPLES_MAX_PARAMS => bail!(
                "this network has {params} parameters, more than the samples schedule takes \
                 ({SAMPLES_MAX_PARAMS}: its kernel is written out per parameter, and compiling it \
                 grows with their square); use the dispatch schedule"
            ),
            ScheduleChoice::Samples => Ok(Schedule::Samples),
            ScheduleChoice::Dispatch => Ok(Schedule::Dispatch),
            ScheduleChoice::Auto => {
                let samples = params <= SAMPLES_AUTO_MAX_PARAMS;
                let work = plan.batching.batch_size as u64 * plan.param_count as u64;
                let most = if samples {
                    FUSED_OVER_SAMPLES_MAX_WORK
                } else {
                    FUSED_MAX_WORK
                };
                Ok(if work <= most && fits {
                    Schedule::Fused
                } else if samples {
                    Schedule::Samples
                } else {
                    Schedule::Dispatch
                })
            }
        }
    }
}

/// How to run a GPU training.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuOptions {
    pub schedule: ScheduleChoice,
    /// Epochs per submission (default: as many as the limits above allow).
    /// The results do not depend on it.
    pub epochs_per_submit: Option<usize>,
    /// Most samples the dispatch schedule holds at once (default: what the
    /// device's largest buffer allows); a larger batch runs in chunks. The
    /// results do not depend on it.
    pub max_chunk_samples: Option<usize>,
    /// Threads of the fused schedule's one workgroup (default: 8 on a
    /// software adapter, where one SIMD row is fastest, else
    /// [`WORKGROUP_SIZE`]); tests run a GPU's 64 on lavapipe. At most the
    /// device's `max_compute_invocations_per_workgroup`.
    pub fused_workgroup_size: Option<u32>,
    /// Record training steps for the shadow check ([`crate::shadow`]): every
    /// step while [`RECORD_BUDGET`] holds them, else every K-th. They come
    /// back with the results, in the same readback.
    pub record_steps: bool,
}

/// Where the time of a GPU run went, and how often the host talked to it.
#[derive(Debug, Clone, Copy)]
pub struct GpuTimings {
    pub schedule: Schedule,
    /// Shader module and pipeline creation.
    pub pipelines: Duration,
    /// Buffer creation and upload.
    pub upload: Duration,
    /// Recording, submitting and waiting for every epoch.
    pub train: Duration,
    /// Copying the results out and mapping them.
    pub readback: Duration,
    /// The GPU's own time in the first `timed_submits` training passes,
    /// from timestamp queries; `None` where the adapter does not support them.
    pub gpu_train: Option<Duration>,
    /// Command buffers of training work submitted to the queue, one compute
    /// pass each.
    pub submits: usize,
    /// Passes `gpu_train` covers: all of them up to [`MAX_TIMED_PASSES`].
    pub timed_submits: usize,
    /// Buffers mapped back to the host.
    pub readbacks: usize,
}

/// A GPU run's output and its timings.
pub struct GpuTrainOutput {
    pub output: TrainOutput,
    pub timings: GpuTimings,
    /// The recorded training steps (with `record_steps`), in step order.
    pub records: Vec<StepRecord>,
    /// Every how many steps one was recorded (0: none; with `record_steps`,
    /// only when not even one step's record fits the budget).
    pub record_every: u64,
}

/// Trains `initial` on the GPU with the default options.
pub fn train(gpu: &Gpu, initial: &Model, config: &TrainConfig) -> Result<GpuTrainOutput> {
    train_with(gpu, initial, config, &GpuOptions::default(), |_| {})
}

/// Trains `initial` on the GPU: the same math as [`crate::cpu::train`],
/// every epoch on the GPU. The host waits only between submissions (never
/// per epoch unless `epochs_per_submit` is 1) and once at the end;
/// `on_progress` hears the number of finished epochs after each submission.
pub fn train_with(
    gpu: &Gpu,
    initial: &Model,
    config: &TrainConfig,
    options: &GpuOptions,
    mut on_progress: impl FnMut(usize),
) -> Result<GpuTrainOutput> {
    config.validate()?;
    let (plan, schedule, fused_workgroup_size) = plan_run(gpu, initial, config, options)?;

    let started = Instant::now();
    let pipelines = Pipelines::new(&gpu.device, schedule, fused_workgroup_size, &plan)?;
    let pipelines_time = started.elapsed();

    let started = Instant::now();
    let adam = config.adam();
    // An allocation the device cannot make becomes an error of this run.
    let out_of_memory = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let buffers = RunBuffers::new(
        &gpu.device,
        &gpu.queue,
        &pipelines,
        &plan,
        initial,
        config,
        &adam,
    )?;
    if let Some(error) = pollster::block_on(out_of_memory.pop()) {
        bail!("the GPU ran out of memory for this run's buffers: {error}");
    }
    gpu.check_errors()?;
    let upload = started.elapsed();

    let started = Instant::now();
    let steps_per_epoch = plan.batching.steps_per_epoch as usize;
    let fused = FusedSplit::new(&plan, fused_workgroup_size, plan.total_steps as usize);
    if schedule == Schedule::Fused {
        fused.write_records(gpu, &buffers, &plan);
    }
    let steps_per_submit = steps_per_submit(&plan, schedule, &fused, options);
    let timer = PassTimer::new(gpu, (plan.total_steps as usize).div_ceil(steps_per_submit));
    let recorder = Recorder {
        gpu,
        pipelines: &pipelines,
        buffers: &buffers,
        plan: &plan,
        fused: &fused,
    };
    let submits = recorder.submit_all(steps_per_submit, timer.as_ref(), |steps| {
        on_progress(steps / steps_per_epoch)
    })?;
    let train_time = started.elapsed();

    let started = Instant::now();
    let mut readbacks = 0;
    let mut results = read_back(gpu, &buffers, &plan, timer.as_ref(), &mut readbacks)?;
    let readback = started.elapsed();
    let gpu_train = timer.as_ref().map(|t| t.total(&results.ticks));
    let timed_submits = timer.as_ref().map_or(0, |t| t.timed_passes);
    if let Some(step) = results.first_bad_step {
        return Err(Diverged::at_step(step as u64 - 1, plan.batching.steps_per_epoch).into());
    }
    let records = std::mem::take(&mut results.records);
    let loss_history = results.loss_history;
    let model = Model::from_params(initial.architecture().clone(), results.params)?;
    Ok(GpuTrainOutput {
        output: TrainOutput {
            loss_history,
            model,
            train_time,
        },
        timings: GpuTimings {
            schedule,
            pipelines: pipelines_time,
            upload,
            train: train_time,
            readback,
            gpu_train,
            submits,
            timed_submits,
            readbacks,
        },
        records,
        record_every: plan.run.record_every as u64,
    })
}

/// The run's plan and schedule: the schedule `options` ask for (auto: by
/// the size of a step and of the network), its way of running the
/// per-sample work, and for the dispatch and samples schedules the chunk
/// size the device's largest buffer allows. Also the fused workgroup's size
/// for this adapter.
fn plan_run(
    gpu: &Gpu,
    initial: &Model,
    config: &TrainConfig,
    options: &GpuOptions,
) -> Result<(Plan, Schedule, u32)> {
    // llvmpipe runs a workgroup as 8-wide SIMD rows and switches between rows
    // at every barrier: one row is fastest there. GPUs want a full wave.
    let fused_workgroup_size = match (options.fused_workgroup_size, gpu.adapter.get_info()) {
        (Some(size), _) => {
            let most = gpu.device.limits().max_compute_invocations_per_workgroup;
            if !(1..=most).contains(&size) {
                bail!("a fused workgroup of {size} threads: this device takes 1 to {most}");
            }
            size
        }
        (None, info) if info.device_type == wgpu::DeviceType::Cpu => 8,
        (None, _) => WORKGROUP_SIZE,
    };
    let plan = Plan::new(initial, config, SampleWork::Layers(Tile::SINGLE), None)?;
    let schedule = options.schedule.resolve(&plan, fused_workgroup_size)?;
    let work = match schedule {
        Schedule::Fused => None,
        Schedule::Samples => Some(SampleWork::Network),
        Schedule::Dispatch => {
            let widest = initial.architecture().widths().iter().max().copied();
            Some(SampleWork::Layers(Tile::blocked(widest.unwrap_or(1))))
        }
    };
    let limits = gpu.device.limits();
    let mut plan = match work {
        None => plan,
        Some(work) => {
            let floats = largest_buffer(&limits) / 4;
            let room = floats.saturating_sub(2 * config.data.len() as u64);
            let fits = room / floats_per_sample(initial, work);
            let most = options
                .max_chunk_samples
                .map_or(fits, |m| (m as u64).min(fits));
            Plan::new(initial, config, work, Some(most))?
        }
    };
    if options.record_steps {
        plan.record_steps(RECORD_BUDGET, largest_buffer(&limits));
    }
    plan.check_limits(&limits)?;
    Ok((plan, schedule, fused_workgroup_size))
}

/// Training steps per submission: what `options` asks for (in epochs), or
/// as many as keep a command buffer small; fused ones in whole dispatches,
/// so only the run's last dispatch is a remainder.
fn steps_per_submit(
    plan: &Plan,
    schedule: Schedule,
    fused: &FusedSplit,
    options: &GpuOptions,
) -> usize {
    let steps_per_epoch = plan.batching.steps_per_epoch as usize;
    let requested = options
        .epochs_per_submit
        .map(|e| e.max(1) * steps_per_epoch);
    match schedule {
        Schedule::Dispatch | Schedule::Samples => requested
            .unwrap_or(MAX_DISPATCHES_PER_SUBMIT / plan.step_list.len())
            .max(1),
        Schedule::Fused => requested
            .unwrap_or(MAX_FUSED_STEPS_PER_SUBMIT)
            .next_multiple_of(fused.steps_per_dispatch),
    }
}

/// How the fused schedule splits a run's training steps into dispatches:
/// full ones of `steps_per_dispatch` steps, and the run's last of `remainder`.
struct FusedSplit {
    steps_per_dispatch: usize,
    remainder: usize,
}

impl FusedSplit {
    fn new(plan: &Plan, workgroup_size: u32, steps: usize) -> Self {
        let per_step = plan.fused_iterations_per_step(workgroup_size);
        let steps_per_dispatch = (FUSED_LOOP_BUDGET / per_step).max(1) as usize;
        Self {
            steps_per_dispatch,
            remainder: steps % steps_per_dispatch,
        }
    }

    /// Index of the `Current` record holding a dispatch's step count.
    fn record(&self, plan: &Plan, steps: usize) -> u64 {
        let full = plan.steps.len() as u64;
        if steps == self.steps_per_dispatch {
            full
        } else {
            full + 1
        }
    }

    fn write_records(&self, gpu: &Gpu, buffers: &RunBuffers, plan: &Plan) {
        for steps in [self.steps_per_dispatch, self.remainder] {
            let record = CurrentRecord {
                step: 0,
                steps: steps as u32,
            };
            let offset = self.record(plan, steps) * CURRENT_STRIDE;
            gpu.queue
                .write_buffer(&buffers.current, offset, bytemuck::bytes_of(&record));
        }
    }
}

/// What recording a run's training steps needs.
struct Recorder<'a> {
    gpu: &'a Gpu,
    pipelines: &'a Pipelines,
    buffers: &'a RunBuffers,
    plan: &'a Plan,
    fused: &'a FusedSplit,
}

impl Recorder<'_> {
    /// Records and submits every training step, `steps_per_submit` to a
    /// command buffer, keeping one submission queued behind the running one
    /// and waiting only for the one before; `on_progress` hears the finished
    /// steps. Returns the number of submissions.
    fn submit_all(
        &self,
        steps_per_submit: usize,
        timer: Option<&PassTimer>,
        mut on_progress: impl FnMut(usize),
    ) -> Result<usize> {
        let total_steps = self.plan.total_steps as usize;
        let mut submits = 0;
        let mut in_flight: Option<(wgpu::SubmissionIndex, usize)> = None;
        let mut done = 0usize;
        while done < total_steps {
            let count = steps_per_submit.min(total_steps - done);
            let commands = self.record(count, timer, submits);
            let submission = self.gpu.queue.submit([commands]);
            submits += 1;
            done += count;
            if let Some((previous, finished)) = in_flight.replace((submission, done)) {
                self.gpu.wait(previous)?;
                on_progress(finished);
            }
        }
        if let Some((last, finished)) = in_flight {
            self.gpu.wait(last)?;
            on_progress(finished);
        }
        Ok(submits)
    }

    /// `count` training steps in one compute pass of one command buffer:
    /// `fused_steps` dispatches, or every kernel of every step.
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
                        let offset = (self.fused.record(plan, steps) * CURRENT_STRIDE) as u32;
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
                        for dispatch in &plan.step_list {
                            if current != Some(dispatch.kernel) {
                                pass.set_pipeline(pipelines.get(Some(dispatch.kernel)));
                                current = Some(dispatch.kernel);
                            }
                            let offset = (dispatch.step as u64 * CURRENT_STRIDE) as u32;
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
fn workgroup_grid(dispatch: &Dispatch, max_groups: u32) -> (u32, u32) {
    let groups = dispatch.threads.div_ceil(WORKGROUP_SIZE).max(1);
    if groups <= max_groups {
        (groups, 1)
    } else {
        (max_groups, groups.div_ceil(max_groups))
    }
}

/// Most training passes whose GPU time is measured: 16 bytes of results
/// each (1 MiB in all). Passes beyond it run untimed, and the report says
/// how many were timed. Reached only by runs split into very many
/// submissions (e.g. a progress chunk of one epoch).
pub const MAX_TIMED_PASSES: usize = 1 << 16;

/// Query pairs the timer cycles through. wgpu caps a query set at
/// `QUERY_SET_MAX_QUERIES` (4096), so the queries cannot grow with the
/// run: each pass writes a pair, the same command buffer resolves it and
/// copies the two ticks out, and later passes reuse the pair. A few pairs
/// rather than one keep a reused pair well apart from the one in flight.
const TIMER_QUERY_PAIRS: u32 = 8;

/// Timestamps at the start and end of every training pass (up to
/// [`MAX_TIMED_PASSES`]), gathered on the GPU into one buffer that is read
/// back with the results: no extra round trip.
struct PassTimer {
    queries: wgpu::QuerySet,
    /// One 256-byte slot per query pair (resolves need that alignment).
    resolve_slots: wgpu::Buffer,
    /// Two ticks per timed pass, in pass order.
    ticks: wgpu::Buffer,
    timed_passes: usize,
    nanoseconds_per_tick: f64,
}

impl PassTimer {
    /// `None` when the device has no timestamp queries.
    fn new(gpu: &Gpu, passes: usize) -> Option<Self> {
        if !gpu
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            || passes == 0
        {
            return None;
        }
        let timed_passes = passes.min(MAX_TIMED_PASSES);
        Some(Self {
            queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("training pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * TIMER_QUERY_PAIRS,
            }),
            resolve_slots: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resolved timestamp slots"),
                size: TIMER_QUERY_PAIRS as u64 * wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            ticks: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("pass timestamps"),
                size: timed_passes as u64 * 16,
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            timed_passes,
            nanoseconds_per_tick: gpu.queue.get_timestamp_period() as f64,
        })
    }

    /// The query pair of `pass`.
    fn pair(pass: usize) -> u32 {
        (pass % TIMER_QUERY_PAIRS as usize) as u32
    }

    /// The timestamp writes of `pass`, or `None` past [`MAX_TIMED_PASSES`].
    fn writes(&self, pass: usize) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let first = 2 * Self::pair(pass);
        (pass < self.timed_passes).then_some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(first),
            end_of_pass_write_index: Some(first + 1),
        })
    }

    /// Records, after `pass`, the copy of its two ticks to their place.
    fn collect(&self, encoder: &mut wgpu::CommandEncoder, pass: usize) {
        if pass >= self.timed_passes {
            return;
        }
        let pair = Self::pair(pass);
        let slot = pair as u64 * wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT;
        encoder.resolve_query_set(
            &self.queries,
            2 * pair..2 * pair + 2,
            &self.resolve_slots,
            slot,
        );
        encoder.copy_buffer_to_buffer(&self.resolve_slots, slot, &self.ticks, pass as u64 * 16, 16);
    }

    /// The sum of every timed pass's end minus start.
    fn total(&self, ticks: &[u64]) -> Duration {
        let ticks: u64 = ticks
            .chunks_exact(2)
            .map(|pair| pair[1].saturating_sub(pair[0]))
            .sum();
        Duration::from_nanos((ticks as f64 * self.nanoseconds_per_tick) as u64)
    }
}

/// What the readback brings home.
struct GpuResults {
    params: Vec<f32>,
    loss_history: Vec<f32>,
    /// The training step (1-based) the kernels flagged as the first with a
    /// non-finite loss or weight.
    first_bad_step: Option<usize>,
    /// Pass timestamps (empty without timestamp queries).
    ticks: Vec<u64>,
    /// The step records, in step order (empty unless recorded).
    records: Vec<StepRecord>,
}

/// Copies the weights, the loss history, the divergence flag and the pass
/// timestamps into one mappable buffer and reads it: the run's only readback.
fn read_back(
    gpu: &Gpu,
    buffers: &RunBuffers,
    plan: &Plan,
    timer: Option<&PassTimer>,
    readbacks: &mut usize,
) -> Result<GpuResults> {
    let params_bytes = plan.param_count as u64 * 4;
    let history_bytes = buffers.history.size();
    // Timestamps are u64s: their copy starts on an 8-byte boundary.
    let timestamps_offset = (params_bytes + history_bytes).next_multiple_of(8);
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
    encoder.copy_buffer_to_buffer(&buffers.params, 0, &staging, 0, params_bytes);
    encoder.copy_buffer_to_buffer(&buffers.history, 0, &staging, params_bytes, history_bytes);
    if let Some(timer) = timer {
        encoder.copy_buffer_to_buffer(
            &timer.ticks,
            0,
            &staging,
            timestamps_offset,
            timestamp_bytes,
        );
    }
    let submission = gpu.queue.submit([encoder.finish()]);
    let bytes = gpu.read_mapped(&staging, submission, readbacks)?;

    let (results, timestamps) = bytes.split_at(timestamps_offset as usize);
    let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(timestamps);
    let (params_bytes, history_bytes) = results.split_at(params_bytes as usize);
    let params: Vec<f32> = bytemuck::pod_collect_to_vec(params_bytes);
    let header_bytes = std::mem::size_of::<HistoryHeader>();
    let header: HistoryHeader = bytemuck::pod_read_unaligned(&history_bytes[..header_bytes]);
    let history: Vec<f32> = bytemuck::pod_collect_to_vec(&history_bytes[header_bytes..]);
    if header.step as u64 != plan.total_steps {
        bail!(
            "the GPU ran {} training steps, expected {}",
            header.step,
            plan.total_steps
        );
    }
    let epochs = plan.epochs as usize;
    let results = GpuResults {
        records: step_records(plan, &history[epochs..]),
        params,
        loss_history: history[..epochs].to_vec(),
        first_bad_step: match header.first_bad_step {
            NO_BAD_STEP => None,
            step => Some(step as usize),
        },
        ticks,
    };
    Ok(results)
}

/// The step records the kernels wrote (see `Run.record_every` in
/// train.wgsl), from the values after the losses in the history buffer.
fn step_records(plan: &Plan, values: &[f32]) -> Vec<StepRecord> {
    let every = plan.run.record_every as u64;
    let count = plan.param_count as usize;
    let state = |values: &[f32]| TrainState {
        weights: values[..count].to_vec(),
        m: values[count..2 * count].to_vec(),
        v: values[2 * count..3 * count].to_vec(),
    };
    values
        .chunks_exact(plan.record_len() as usize)
        .take(plan.run.record_count as usize)
        .enumerate()
        .map(|(slot, record)| StepRecord {
            step: slot as u64 * every,
            before: state(record),
            gradients: record[3 * count..4 * count].to_vec(),
            loss: record[4 * count],
            after: state(&record[4 * count + 1..]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;
    use crate::model::Architecture;

    fn resolve(choice: ScheduleChoice, samples: u64, hidden: &[usize]) -> Result<Schedule> {
        let model = Model::glorot_uniform(Architecture::new(hidden).unwrap(), 1);
        let config = TrainConfig {
            data: Dataset::from_formula(samples, 1),
            batch_size: None,
            ..TrainConfig::seed()
        };
        let plan = Plan::new(&model, &config, SampleWork::Layers(Tile::SINGLE), None)?;
        choice.resolve(&plan, 8)
    }

    #[test]
    fn auto_fuses_small_jobs_and_picks_samples_or_dispatch_by_the_network() {
        let auto = ScheduleChoice::Auto;
        assert_eq!(resolve(auto, 7, &[3, 3]).unwrap(), Schedule::Fused);
        assert_eq!(resolve(auto, 256, &[3, 3]).unwrap(), Schedule::Fused);
        assert_eq!(resolve(auto, 1000, &[3, 3]).unwrap(), Schedule::Samples);
        // 17,17: 358 parameters, too many for auto's samples schedule.
        assert_eq!(resolve(auto, 64, &[17, 17]).unwrap(), Schedule::Fused);
        assert_eq!(resolve(auto, 100_000, &[3, 3]).unwrap(), Schedule::Samples);
        // 8,8: 97 parameters; 16,16: 321, beyond SAMPLES_AUTO_MAX_PARAMS.
        assert_eq!(resolve(auto, 100_000, &[8, 8]).unwrap(), Schedule::Samples);
        assert_eq!(
            resolve(auto, 100_000, &[16, 16]).unwrap(),
            Schedule::Dispatch
        );
        assert_eq!(
            resolve(auto, 100_000, &[64, 64]).unwrap(),
            Schedule::Dispatch
        );
    }

    #[test]
    fn samples_refuses_networks_too_wide_to_write_out() {
        let samples = ScheduleChoice::Samples;
        assert_eq!(resolve(samples, 10, &[16, 16]).unwrap(), Schedule::Samples);
        let error = resolve(samples, 10, &[64, 64]).unwrap_err().to_string();
        assert!(
            error.contains("4353 parameters") && error.contains("dispatch schedule"),
            "{error}"
        );
    }
}
