//! How a run's steps are laid onto the GPU: the three schedules, `auto`'s
//! choice between them, and every threshold and cost estimate behind it,
//! in one place. Every figure here was measured on lavapipe (BENCHMARKS.md
//! has the runs), the only adapter this project has been measured on.

use super::abi::{F32_BYTES, Kernel, WORKGROUP_SIZE};
use super::plan::{GpuPlan, Tile, floats_per_sample, validation_row_iterations};
use crate::error::{Result, fail};
use crate::model::Model;
use crate::step::{REDUCE_BLOCK, SampleWork};
use crate::training::TrainConfig;

/// How the epochs run on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// One GPU dispatch per operation of a training step's list, many steps
    /// recorded into one compute pass: scales to any data size.
    Dispatch,
    /// The dispatch schedule with one generated kernel for the per-sample
    /// work of a step (`sample_partials`, src/gpu/samples.rs): one thread
    /// per block of samples runs the whole network in registers. For large
    /// data on small networks.
    Samples,
    /// One workgroup runs the step's list for many steps in a single
    /// dispatch (`fused_steps`): for jobs too small to fill a GPU, where
    /// the cost of each dispatch dominates.
    Fused,
}

impl Schedule {
    /// The schedule's name in reports, as `--schedule` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Dispatch => "dispatch",
            Schedule::Samples => "samples",
            Schedule::Fused => "fused",
        }
    }

    /// How the schedule runs a step's per-sample work, and in what tile.
    /// The fused schedule runs a small network's samples one block a thread
    /// through the written-out kernel (`sample_partials`): three barriers a
    /// step instead of a dozen, the way the fused floor runs the seed job.
    pub fn work(self, model: &Model) -> (SampleWork, Tile) {
        match self {
            Schedule::Fused if model.params().len() <= SAMPLES_AUTO_MAX_PARAMS => {
                (SampleWork::Samples, Tile::SINGLE)
            }
            Schedule::Fused => (SampleWork::Layers, Tile::SINGLE),
            Schedule::Samples => (SampleWork::Samples, Tile::SINGLE),
            Schedule::Dispatch => {
                let widest = model.architecture().widths().iter().max().copied();
                (SampleWork::Layers, Tile::blocked(widest.unwrap_or(1)))
            }
        }
    }
}

/// Which schedule to run (`auto`'s thresholds: `FUSED_MAX_WORK`,
/// `FUSED_OVER_SAMPLES_MAX_WORK` and `SAMPLES_AUTO_MAX_PARAMS` in
/// src/gpu/schedule.rs, measured in BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ScheduleChoice {
    /// Fused for small jobs; samples for large ones on small networks
    /// (at most 128 parameters), dispatch for wider networks.
    #[default]
    Auto,
    /// One workgroup loops over the epochs: few dispatches.
    Fused,
    /// A thread per block of 256 samples runs the whole network, from a
    /// kernel written out for it (small networks, at most 512 parameters).
    Samples,
    /// One dispatch per kernel per step, spread over the whole GPU.
    Dispatch,
}

impl ScheduleChoice {
    /// Every choice's name, `auto` first.
    pub const NAMES: [&'static str; 4] = ["auto", "fused", "samples", "dispatch"];

    /// The choice named `name` (`auto`, or a schedule's [`Schedule::name`]),
    /// as the CLI's `--schedule` takes it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(ScheduleChoice::Auto),
            "fused" => Some(ScheduleChoice::Fused),
            "samples" => Some(ScheduleChoice::Samples),
            "dispatch" => Some(ScheduleChoice::Dispatch),
            _ => None,
        }
    }
}

/// `auto` fuses the steps into one workgroup when batch size x parameters
/// (the work of one gradient pass) is at most this: below it the cost of a
/// dozen dispatches a step outweighs the parallelism one workgroup gives up.
pub const FUSED_MAX_WORK: u64 = 1 << 15;

/// The same bound against the samples schedule, for networks small enough
/// for it: its step is 3 dispatches (plus one per further reduction level
/// and a gather per chunk when shuffled), not a dozen.
pub const FUSED_OVER_SAMPLES_MAX_WORK: u64 = 1 << 13;

/// Most parameters `auto` runs with the samples schedule: the driver's
/// compile time of the written-out kernel grows with the square of the
/// parameter count (BENCHMARKS.md, "Samples kernel compile time"); Mesa's
/// shader cache makes later runs of a shape free.
pub const SAMPLES_AUTO_MAX_PARAMS: usize = 128;

/// Most parameters `--schedule samples` accepts (about 10 s of compiling
/// on lavapipe); wider networks use the dispatch schedule.
pub const SAMPLES_MAX_PARAMS: usize = 512;

/// Most loop iterations (as [`fused_iterations_per_step`] counts them) one
/// invocation of a fused dispatch may run. llvmpipe ends every loop of an
/// invocation once 65 535 iterations have run inside its outermost loop
/// (gallivm's loop limiter, a guard against hangs). The count is an upper
/// bound (llvmpipe ran 1.6 to 2.0x fewer than counted, as it unrolls the
/// loops whose bounds the generated code makes constants); half the limit
/// leaves a further 2x margin and keeps each dispatch short for any
/// driver's watchdog.
pub const FUSED_LOOP_BUDGET: u64 = 32_768;

/// Most dispatches recorded into one command buffer by the dispatch and
/// samples schedules: a longer run is split so command buffers stay small,
/// with one submission in flight while the next is recorded.
pub const MAX_DISPATCHES_PER_SUBMIT: usize = 32_768;

/// Most training steps one fused submission runs (rounded to whole dispatches).
pub const MAX_FUSED_STEPS_PER_SUBMIT: usize = 4096;

impl ScheduleChoice {
    /// The schedule to run and its plan, built by `plan_for` once for the
    /// schedule chosen (and for the fused schedule too when `auto` needs its
    /// cost to decide). `Fused` fails when not even one training step fits
    /// in one fused dispatch, `Samples` when the network is too wide for its
    /// written-out kernel.
    pub fn resolve(
        self,
        model: &Model,
        config: &TrainConfig,
        fused_workgroup_size: u32,
        plan_for: impl Fn(Schedule) -> Result<GpuPlan>,
    ) -> Result<(Schedule, GpuPlan)> {
        let params = model.params().len();
        let fused_fits = |plan: &GpuPlan| {
            fused_iterations_per_step(plan, fused_workgroup_size) <= FUSED_LOOP_BUDGET
        };
        let chosen = match self {
            ScheduleChoice::Dispatch => Schedule::Dispatch,
            ScheduleChoice::Samples if params > SAMPLES_MAX_PARAMS => fail!(
                InvalidConfig,
                "this network has {params} parameters, more than the samples schedule takes \
                 ({SAMPLES_MAX_PARAMS}: its kernel is written out per parameter, and compiling it \
                 grows with their square); use the dispatch schedule"
            ),
            ScheduleChoice::Samples => Schedule::Samples,
            ScheduleChoice::Fused => {
                let plan = plan_for(Schedule::Fused)?;
                if !fused_fits(&plan) {
                    fail!(
                        InvalidConfig,
                        "this job is too large for the fused schedule (one step needs more than \
                         {FUSED_LOOP_BUDGET} loop iterations per thread); use the samples or \
                         dispatch schedule"
                    );
                }
                return Ok((Schedule::Fused, plan));
            }
            ScheduleChoice::Auto => {
                let samples = params <= SAMPLES_AUTO_MAX_PARAMS;
                let work = config.batching().batch_size as u64 * params as u64;
                let most = if samples {
                    FUSED_OVER_SAMPLES_MAX_WORK
                } else {
                    FUSED_MAX_WORK
                };
                if work <= most {
                    let plan = plan_for(Schedule::Fused)?;
                    if fused_fits(&plan) {
                        return Ok((Schedule::Fused, plan));
                    }
                }
                if samples {
                    Schedule::Samples
                } else {
                    Schedule::Dispatch
                }
            }
        };
        Ok((chosen, plan_for(chosen)?))
    }
}

/// The run's plan for `schedule`: the dispatch and samples schedules hold at
/// most the samples that fit the device's largest buffer (`largest` bytes)
/// or `max_chunk_samples` per chunk; the fused schedule holds the batch.
pub fn plan_for(
    schedule: Schedule,
    model: &Model,
    config: &TrainConfig,
    largest: u64,
    max_chunk_samples: Option<usize>,
) -> Result<GpuPlan> {
    let (work, tile) = schedule.work(model);
    let row_iterations = validation_row_iterations(model.architecture());
    if !config.validation_rows().is_empty() && row_iterations > FUSED_LOOP_BUDGET {
        fail!(
            InvalidConfig,
            "the validation pass runs each row's network in one GPU thread, {row_iterations} \
             loop iterations for this {} network, more than {FUSED_LOOP_BUDGET} (software \
             drivers end longer loops); use narrower layers or no --validation-split",
            model.architecture().describe()
        );
    }
    let max_chunk = match schedule {
        Schedule::Fused => None,
        Schedule::Dispatch | Schedule::Samples => {
            // The dataset and the validation pass's buffers are there
            // whatever the chunk; the rest holds the chunk's rows.
            let dataset = (config.data.x.len() + config.data.y.len()) as u64;
            let widest = model
                .architecture()
                .widths()
                .iter()
                .max()
                .copied()
                .unwrap_or(1);
            let validation = config.validation_rows().len() as u64
                * (1 + config.metrics.len() as u64 + 3 * widest as u64);
            let room = (largest / F32_BYTES).saturating_sub(dataset + validation);
            let per_sample = floats_per_sample(model.architecture(), work)
                + (work == SampleWork::Layers) as u64 * config.metrics.len() as u64;
            let fits = room / per_sample;
            Some(max_chunk_samples.map_or(fits, |m| (m as u64).min(fits)))
        }
    };
    GpuPlan::new(model, config, work, tile, max_chunk)
}

/// Threads of the fused schedule's one workgroup: `requested` (checked
/// against the device's `most`), else 8 on a software adapter (llvmpipe
/// runs a workgroup as 8-wide SIMD rows and switches between rows at every
/// barrier: one row is fastest there), else a GPU's full wave.
pub fn fused_workgroup_size(
    requested: Option<u32>,
    device_type: wgpu::DeviceType,
    most: u32,
) -> Result<u32> {
    match requested {
        Some(size) if !(1..=most).contains(&size) => {
            fail!(
                InvalidConfig,
                "a fused workgroup of {size} threads: this device takes 1 to {most}"
            )
        }
        Some(size) => Ok(size),
        None if device_type == wgpu::DeviceType::Cpu => Ok(8),
        None => Ok(WORKGROUP_SIZE),
    }
}

/// Loop iterations one invocation of `fused_steps` (a workgroup of
/// `workgroup_size`) runs per training step, counting one more for every
/// loop entered: an upper bound, since the invocation with local index 0
/// does the most. Compared with [`FUSED_LOOP_BUDGET`].
pub fn fused_iterations_per_step(plan: &GpuPlan, workgroup_size: u32) -> u64 {
    let batch = plan.batching.batch_size as u64;
    let block = REDUCE_BLOCK as u64;
    let (tile_samples, tile_units) = (plan.tile.samples as u64, plan.tile.units as u64);
    // The tile's loops run once per input; a 1-wide tile's loops have a
    // single, constant trip and compile to straight code.
    let counted = |n: u64| if n > 1 { 2 * n } else { 0 };
    let tile_loops = 1 + counted(tile_samples) + counted(tile_units);
    let tile_stores = counted(tile_samples) * (1 + tile_units);
    let mut total = 1 + plan.dispatches.len() as u64 + 1;
    for dispatch in &plan.dispatches {
        let items = (dispatch.threads as u64).div_ceil(workgroup_size as u64);
        let args = &dispatch.args;
        let inner = match dispatch.kernel {
            // Per input (unit): a loop over the tile's samples and one
            // over its units; then the tile's store, TILE x TILE.
            Kernel::DenseForward => (args.inputs as u64 + 1) * tile_loops + tile_stores,
            Kernel::DenseBackward => (args.units as u64 + 1) * tile_loops + tile_stores,
            // Per sample of the block: the tile's error load and rows.
            Kernel::GradientPartials => {
                batch.min(block) * (1 + 2 * counted(tile_units) + 1) + tile_stores
            }
            Kernel::ReducePartials => (args.in_len as u64).min(block) + 1,
            // A block's samples in one thread (small networks' fused
            // work): per sample, each metric's loops over the output units.
            Kernel::SamplePartials => {
                let (units, metrics) = (
                    plan.shape.output_width as u64,
                    plan.shape.metrics.len() as u64,
                );
                batch.min(block) * (1 + (units + 1) * metrics) + 1
            }
            // Cycle-walking the shuffle: under 4 rounds on average, and
            // rarely more than a dozen.
            Kernel::GatherBatch => 16,
            // A validation row's network, one multiply-add at a time.
            Kernel::ValidationLosses => validation_row_iterations(&plan.architecture),
            Kernel::ValidationPartials => block,
            // Each metric twice; each validation series' blocks.
            Kernel::FinishStep => {
                let metrics = plan.shape.metrics.len() as u64;
                let blocks = (plan.shape.validation_samples as u64).div_ceil(block);
                2 * metrics + (1 + metrics) * blocks
            }
            // Per output unit, its loss and each metric; then each metric.
            Kernel::OutputError => {
                let (units, metrics) = (
                    plan.shape.output_width as u64,
                    plan.shape.metrics.len() as u64,
                );
                units * (1 + metrics) + metrics
            }
            Kernel::AdamStep | Kernel::KeepBest => 0,
        };
        total += items * (1 + inner) + 1;
    }
    total
}

/// How the fused schedule splits a run's training steps into dispatches:
/// full ones of `steps_per_dispatch` steps, and the run's last of `remainder`.
#[derive(Debug, Clone, Copy)]
pub struct FusedSplit {
    pub steps_per_dispatch: usize,
    pub remainder: usize,
}

impl FusedSplit {
    /// As many steps a dispatch as the loop budget allows, no more than
    /// `epochs_per_submit` epochs when the caller wants to hear of each
    /// submission (progress, streamed losses), and no more than
    /// `most_steps` (a submission's step records) when given.
    pub fn new(
        plan: &GpuPlan,
        workgroup_size: u32,
        epochs_per_submit: Option<usize>,
        most_steps: Option<usize>,
    ) -> Self {
        let per_step = fused_iterations_per_step(plan, workgroup_size);
        let budget = (FUSED_LOOP_BUDGET / per_step).max(1) as usize;
        let asked = epochs_per_submit.map(|e| e.max(1) * plan.batching.steps_per_epoch as usize);
        let steps_per_dispatch = asked
            .into_iter()
            .chain(most_steps)
            .fold(budget, usize::min)
            .max(1);
        Self {
            steps_per_dispatch,
            remainder: plan.total_steps as usize % steps_per_dispatch,
        }
    }
}

/// Training steps per submission: `epochs_per_submit` epochs if asked, at
/// most as many as keep a command buffer small and no more than
/// `most_steps` when given (a submission's step records); fused ones in
/// whole dispatches, so only the run's last dispatch is a remainder.
pub fn steps_per_submit(
    plan: &GpuPlan,
    schedule: Schedule,
    fused: &FusedSplit,
    epochs_per_submit: Option<usize>,
    most_steps: Option<usize>,
) -> usize {
    let steps_per_epoch = plan.batching.steps_per_epoch as usize;
    let most = match schedule {
        Schedule::Dispatch | Schedule::Samples => MAX_DISPATCHES_PER_SUBMIT / plan.dispatches.len(),
        Schedule::Fused => MAX_FUSED_STEPS_PER_SUBMIT,
    }
    .min(most_steps.unwrap_or(usize::MAX));
    let steps = epochs_per_submit
        .map_or(most, |e| (e.max(1) * steps_per_epoch).min(most))
        .max(1);
    match schedule {
        Schedule::Dispatch | Schedule::Samples => steps,
        // `steps_per_dispatch` is at most `most_steps`: rounding down keeps
        // a whole dispatch within it.
        Schedule::Fused if most_steps.is_some() => {
            (steps / fused.steps_per_dispatch).max(1) * fused.steps_per_dispatch
        }
        Schedule::Fused => steps.next_multiple_of(fused.steps_per_dispatch),
    }
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
        let plan = |schedule| plan_for(schedule, &model, &config, 1 << 30, None);
        choice
            .resolve(&model, &config, 8, plan)
            .map(|(schedule, _)| schedule)
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

    #[test]
    fn every_schedule_is_chosen_by_its_name() {
        for schedule in [Schedule::Fused, Schedule::Samples, Schedule::Dispatch] {
            let choice = ScheduleChoice::from_name(schedule.name()).unwrap();
            assert_eq!(format!("{choice:?}").to_lowercase(), schedule.name());
        }
        assert_eq!(
            ScheduleChoice::from_name("auto"),
            Some(ScheduleChoice::Auto)
        );
        assert_eq!(ScheduleChoice::from_name("fastest"), None);
    }

    #[test]
    fn fused_refuses_a_step_beyond_the_loop_budget() {
        let error = resolve(ScheduleChoice::Fused, 100_000, &[64, 64]).unwrap_err();
        assert!(
            error.to_string().contains("too large for the fused"),
            "{error}"
        );
    }
}
