//! The host driver: plans a run, builds its pipelines and buffers, records
//! and submits the training steps without waiting inside the loop, and
//! reads the loss history and the final weights back once at the end.
//! [`train_async`] is the core; [`train`] and [`train_with`] block on it.

use super::buffers::RunBuffers;
use super::context::Gpu;
use super::module::module_source;
use super::plan::{RECORD_BUDGET, largest_buffer};
use super::readback::read_back;
pub use super::record::Progress;
use super::record::{Recorder, current_records};
use super::schedule::{
    FusedSplit, Schedule, ScheduleChoice, fused_workgroup_size, plan_for, steps_per_submit,
};
use super::timer::PassTimer;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::optimizer::AdamState;
use crate::training::{Diverged, EpochResults, TrainConfig, TrainOutput, Watch};
use std::time::Duration;
use web_time::Instant;

/// How to run a GPU training.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuOptions {
    /// Which schedule to run (default: `auto`).
    pub schedule: ScheduleChoice,
    /// Epochs per submission (default: as many as
    /// `schedule::MAX_DISPATCHES_PER_SUBMIT` or
    /// `schedule::MAX_FUSED_STEPS_PER_SUBMIT` allow).
    /// The results do not depend on it.
    pub epochs_per_submit: Option<usize>,
    /// Most samples the dispatch and samples schedules hold at once (default: what the
    /// device's largest buffer allows); a larger batch runs in chunks. The
    /// results do not depend on it.
    pub max_chunk_samples: Option<usize>,
    /// Threads of the fused schedule's one workgroup (default: 8 on a
    /// software adapter, where one SIMD row is fastest, else
    /// 64, a common GPU's wave); tests run a GPU's 64 on lavapipe. At most the
    /// device's `max_compute_invocations_per_workgroup`.
    pub fused_workgroup_size: Option<u32>,
    /// Record every training step for the shadow check ([`crate::shadow`]):
    /// each submission's records (at most `plan::RECORD_BUDGET`, 16 MiB, or
    /// one record) and the history rows of the epochs it finished come back
    /// as it ends, in [`Progress::steps`]. [`super::train_checked`] checks
    /// them as the run goes on.
    pub record_steps: bool,
    /// Read each submission's newly finished epoch losses back as it ends,
    /// for a live loss curve ([`Progress::new_losses`]): one readback per
    /// submission, so set `epochs_per_submit` to the chunk wanted.
    pub stream_losses: bool,
}

/// Where the time of a GPU run went, and how often the host talked to it.
#[derive(Debug, Clone, Copy)]
pub struct GpuTimings {
    /// The schedule that ran (`auto` resolved).
    pub schedule: Schedule,
    /// Shader module and pipeline creation.
    pub pipelines: Duration,
    /// Whether this run compiled its module: `false` when the `Gpu` had
    /// compiled it for an earlier run of the same shape (its pipeline cache).
    pub compiled: bool,
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
    /// Passes `gpu_train` covers: all of them up to `timer::MAX_TIMED_PASSES` (65 536).
    pub timed_submits: usize,
    /// Buffers mapped back to the host.
    pub readbacks: usize,
}

/// A GPU run's output and its timings.
#[derive(Debug)]
pub struct GpuTrainOutput {
    /// The loss history, trained model and training time, as the CPU
    /// reference returns them.
    pub output: TrainOutput,
    /// Where the run's time went.
    pub timings: GpuTimings,
}

/// Trains `initial` on the GPU with the default options, blocking.
#[cfg(not(target_arch = "wasm32"))]
pub fn train(gpu: &Gpu, initial: &Model, config: &TrainConfig) -> Result<GpuTrainOutput> {
    train_with(gpu, initial, config, &GpuOptions::default(), |_| {})
}

/// [`train_async`], blocking.
#[cfg(not(target_arch = "wasm32"))]
pub fn train_with(
    gpu: &Gpu,
    initial: &Model,
    config: &TrainConfig,
    options: &GpuOptions,
    on_progress: impl FnMut(Progress<'_>),
) -> Result<GpuTrainOutput> {
    pollster::block_on(train_async(gpu, initial, config, options, on_progress))
}

/// Trains `initial` on the GPU: the same math as [`crate::cpu::train`],
/// every epoch on the GPU. The host waits only between submissions (never
/// per epoch unless `epochs_per_submit` is 1) and once at the end;
/// `on_progress` hears the finished epochs (and with
/// [`GpuOptions::stream_losses`] their losses) after each submission.
pub async fn train_async(
    gpu: &Gpu,
    initial: &Model,
    config: &TrainConfig,
    options: &GpuOptions,
    on_progress: impl FnMut(Progress<'_>),
) -> Result<GpuTrainOutput> {
    config.validate()?;
    config.check_model(initial)?;
    // A device lost (or broken) before the run fails it now.
    gpu.check_errors()?;
    let fused_workgroup_size = fused_workgroup_size(
        options.fused_workgroup_size,
        gpu.device_type,
        gpu.device.limits().max_compute_invocations_per_workgroup,
    )?;
    let largest = largest_buffer(&gpu.device.limits());
    let plan = |schedule| {
        plan_for(
            schedule,
            initial,
            config,
            largest,
            options.max_chunk_samples,
        )
    };
    let (schedule, mut plan) =
        options
            .schedule
            .resolve(initial, config, fused_workgroup_size, plan)?;
    // With records, a submission runs no more steps than its records'
    // ring holds.
    let most_steps = options
        .record_steps
        .then(|| plan.records_that_fit(RECORD_BUDGET, largest));
    if most_steps == Some(0) {
        return Err(plan.record_too_large(largest));
    }
    let fused = FusedSplit::new(
        &plan,
        fused_workgroup_size,
        options.epochs_per_submit,
        most_steps,
    );
    let steps_per_submit = steps_per_submit(
        &plan,
        schedule,
        &fused,
        options.epochs_per_submit,
        most_steps,
    );
    if most_steps.is_some() {
        plan.record_ring(steps_per_submit.min(plan.total_steps as usize));
    }
    plan.check_limits(largest)?;

    let started = Instant::now();
    let source = module_source(schedule, &plan, fused_workgroup_size);
    let (pipelines, cached) = gpu.pipeline_cache.get(&gpu.device, &source).await?;
    let pipelines_time = started.elapsed();

    let started = Instant::now();
    // An allocation the device cannot make becomes an error of this run.
    let out_of_memory = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let records = current_records(&plan, &fused);
    let buffers = RunBuffers::new(gpu, &pipelines, &plan, initial, config, &records);
    if let Some(error) = out_of_memory.pop().await {
        return Err(Error::OutOfMemory(error.to_string()));
    }
    gpu.check_errors()?;
    let upload = started.elapsed();

    let started = Instant::now();
    let mut readbacks = 0;
    let timer = PassTimer::new(gpu, (plan.total_steps as usize).div_ceil(steps_per_submit));
    let recorder = Recorder {
        gpu,
        schedule,
        pipelines: &pipelines,
        buffers: &buffers,
        plan: &plan,
        fused: &fused,
    };
    let submits = recorder
        .submit_all(
            steps_per_submit,
            timer.as_ref(),
            options.stream_losses,
            &mut readbacks,
            on_progress,
        )
        .await?;
    let train_time = started.elapsed();

    let started = Instant::now();
    let results = read_back(gpu, &buffers, &plan, timer.as_ref(), &mut readbacks).await?;
    let readback = started.elapsed();
    let gpu_train = timer.as_ref().map(|t| t.total(&results.ticks));
    let timed_submits = timer.as_ref().map_or(0, |t| t.timed_passes.min(submits));
    if let Some(step) = results.first_bad_step {
        let diverged = Diverged::at_step(step as u64 - 1, plan.batching.steps_per_epoch);
        return Err(diverged.diagnosed(config).into());
    }
    let epochs = EpochResults {
        loss_history: results.loss_history,
        val_loss_history: results.val_loss_history,
        metrics: results.metrics,
        val_metrics: results.val_metrics,
        watch: Watch {
            best: results.best,
            best_epoch: results.best_epoch as usize,
            wait: results.wait as usize,
        },
        stopped_epoch: (results.stopped_epoch > 0).then_some(results.stopped_epoch as usize),
    };
    let (m, v) = results.moments.split_at(results.params.len());
    let adam = AdamState {
        iterations: config.start_iterations() + results.steps_run,
        m: m.to_vec(),
        v: v.to_vec(),
    };
    let output = TrainOutput::assemble(config, initial, epochs, results.params, adam, train_time)?;
    Ok(GpuTrainOutput {
        output,
        timings: GpuTimings {
            schedule,
            pipelines: pipelines_time,
            compiled: !cached,
            upload,
            train: train_time,
            readback,
            gpu_train,
            submits,
            timed_submits,
            readbacks,
        },
    })
}
