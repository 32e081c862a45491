//! A GPU run checked as it runs: every step's record and every finished
//! epoch's history row stream back after each submission into the shadow
//! check ([`crate::shadow::StepCheck`]), which drops each record once
//! checked. Natively the check runs on its own threads while the GPU runs
//! the next submission, at most [`CHECK_QUEUE`] submissions behind (the
//! GPU waits for it beyond that, which bounds the memory); in the browser,
//! which has no threads here, it runs between submissions.

use super::Gpu;
use super::trainer::{GpuOptions, GpuTrainOutput, Progress, train_async};
use crate::error::Result;
use crate::model::Model;
use crate::shadow::{ShadowCheck, StepCheck};
use crate::training::{EpochRows, TrainConfig};

/// Submissions' records waiting for the check thread: the GPU runs at most
/// this many submissions ahead of the check, besides the one checked and
/// the two on the queue.
pub const CHECK_QUEUE: usize = 1;

/// A GPU run and its shadow check.
#[derive(Debug)]
pub struct CheckedRun {
    /// The run, as [`train_async`] returns it.
    pub run: GpuTrainOutput,
    /// Its shadow check, of every step.
    pub check: ShadowCheck,
}

/// Trains `initial` on the GPU, recording every step (whatever
/// `options.record_steps` says), and checks each submission's steps on a
/// thread of their own as the run goes on; blocking.
#[cfg(not(target_arch = "wasm32"))]
pub fn train_checked(
    gpu: &Gpu,
    initial: &Model,
    config: &TrainConfig,
    options: &GpuOptions,
    mut on_progress: impl FnMut(Progress<'_>),
) -> Result<CheckedRun> {
    let options = recording(options);
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(CHECK_QUEUE);
        let checker = scope.spawn(move || {
            let mut check = StepCheck::new(initial, config);
            for steps in receiver {
                check.take(steps);
            }
            check
        });
        let run = pollster::block_on(train_async(
            gpu,
            initial,
            config,
            &options,
            |mut progress| {
                if let Some(steps) = progress.steps.take() {
                    // A check thread that ended (it panicked) leaves the run
                    // unchecked: its join below says so.
                    let _ = sender.send(steps);
                }
                on_progress(progress)
            },
        ));
        // The check ends with the last submission's records.
        drop(sender);
        let check = checker.join();
        let run = run?;
        let check = check.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok(finish(check, config, run))
    })
}

/// [`train_checked`] in one thread: the check runs between submissions
/// (the browser's page).
pub async fn train_checked_async(
    gpu: &Gpu,
    initial: &Model,
    config: &TrainConfig,
    options: &GpuOptions,
    mut on_progress: impl FnMut(Progress<'_>),
) -> Result<CheckedRun> {
    let options = recording(options);
    let mut check = StepCheck::new(initial, config);
    let run = train_async(gpu, initial, config, &options, |mut progress| {
        if let Some(steps) = progress.steps.take() {
            check.take(steps);
        }
        on_progress(progress)
    })
    .await?;
    Ok(finish(check, config, run))
}

/// `options`, recording every step.
fn recording(options: &GpuOptions) -> GpuOptions {
    GpuOptions {
        record_steps: true,
        ..*options
    }
}

fn finish(check: StepCheck<'_>, config: &TrainConfig, run: GpuTrainOutput) -> CheckedRun {
    let history = EpochRows::whole(&run.output, config);
    let check = check.finish(&history, &run.output.model);
    CheckedRun { run, check }
}
