//! Replaying one recorded step on the CPU (see src/shadow/mod.rs): the
//! batch's loss, gradients and metrics from the record's before-state, Adam's
//! update from its before-state and gradients, and at an epoch's end the
//! validation values from its after-state, each held to its bound. A step
//! needs nothing but its record, so a submission's steps are replayed on
//! several threads ([`replay_all`]) and folded in step order after.

use super::Worst;
use super::bounds::{adam_bounds, bounds_with, mean_bound, step_bounds};
use crate::batching::Batching;
use crate::cpu::{self, Backprop, GatheredBatch};
use crate::loss::Metric;
use crate::model::{DenseLayout, Model};
use crate::optimizer::{AdamConstants, adam_update};
use crate::step::REDUCE_BLOCK;
use crate::training::{StepRecord, TrainConfig};

/// Fewer steps than this a thread are replayed on the calling thread:
/// starting threads would cost more than they save.
#[cfg(not(target_arch = "wasm32"))]
const STEPS_PER_THREAD_MIN: usize = 8;

/// What replaying a step needs that every thread shares.
pub(super) struct Job<'a> {
    pub config: &'a TrainConfig,
    pub batching: Batching,
    pub layers: Vec<DenseLayout>,
    pub metrics: Vec<Metric>,
    constants: AdamConstants,
    step_sizes: Vec<f32>,
}

impl<'a> Job<'a> {
    pub fn new(config: &'a TrainConfig, initial: &Model) -> Self {
        let batching = config.batching();
        let adam = config.adam();
        let total_steps = config.epochs as u64 * batching.steps_per_epoch as u64;
        Self {
            config,
            batching,
            layers: initial.architecture().layers(),
            metrics: config.metrics.iter().map(|m| m.metric).collect(),
            constants: adam.constants(),
            step_sizes: config.step_sizes(total_steps),
        }
    }
}

/// One thread's buffers for replaying steps.
pub(super) struct Replayer {
    backprop: Backprop,
    gradients: Vec<f32>,
    gathered: GatheredBatch,
    validation: Vec<f32>,
}

impl Replayer {
    /// `count` of them for `job`'s network (`initial`'s).
    pub fn for_threads(job: &Job, initial: &Model, count: usize) -> Vec<Self> {
        let architecture = initial.architecture();
        let capacity = job.batching.batch_size as usize;
        (0..count.max(1))
            .map(|_| Replayer {
                backprop: Backprop::with_metrics(
                    architecture,
                    job.config.loss,
                    &job.metrics,
                    capacity,
                ),
                gradients: vec![0.0; initial.params().len()],
                gathered: GatheredBatch::default(),
                validation: Vec::new(),
            })
            .collect()
    }
}

/// The worst differences of a run of steps; those of consecutive runs
/// merge into what one pass over both would have found.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StepWorsts {
    pub gradients: Worst,
    pub losses: Worst,
    pub states: Worst,
}

impl StepWorsts {
    /// `later`'s after this one's.
    pub fn then(&mut self, later: &StepWorsts) {
        self.gradients.then(&later.gradients);
        self.losses.then(&later.losses);
        self.states.then(&later.states);
    }

    /// These, of steps after those `result` holds, into it.
    pub fn add_to(&self, result: &mut super::ShadowCheck) {
        let mut all = StepWorsts {
            gradients: result.gradients,
            losses: result.losses,
            states: result.states,
        };
        all.then(self);
        (result.gradients, result.losses, result.states) = (all.gradients, all.losses, all.states);
    }
}

/// What the CPU made of one step that the in-order fold needs.
#[derive(Debug, Clone)]
pub(super) struct Replayed {
    /// Each metric's CPU sum over the batch, its bound and the sum of its
    /// values' magnitudes.
    pub metric_sums: Vec<f32>,
    pub metric_bounds: Vec<f64>,
    pub metric_magnitudes: Vec<f64>,
    /// At an epoch's end: the CPU's validation loss and metrics of the
    /// after-state, each with its bound (else empty).
    pub validation: Vec<(f32, f64)>,
    /// Each gradient's bound over its CPU value (the check's power).
    pub ratios: Vec<f32>,
}

impl Replayer {
    /// Replays `record`, adding its differences to `worsts`.
    pub fn replay(&mut self, job: &Job, record: &StepRecord, worsts: &mut StepWorsts) -> Replayed {
        let step = record.step;
        let config = job.config;
        let batch = job.batching.batch(step);
        self.gathered.gather(&config.data, &job.batching, batch);
        let (x, y) = self.gathered.view(&config.data, &job.batching, batch);
        let weights = &record.before.weights;
        let loss = self
            .backprop
            .loss_and_gradients(weights, x, y, &mut self.gradients);
        let scored = (config.loss, &job.metrics[..]);
        let bounds = step_bounds(&job.layers, scored, weights, x, y);
        worsts
            .losses
            .consider(step, 0, record.loss, loss, bounds.loss);
        let compared = record.gradients.iter().zip(&self.gradients);
        let mut ratios = Vec::with_capacity(self.gradients.len());
        for (p, ((&device, &cpu), &bound)) in compared.zip(&bounds.gradients).enumerate() {
            worsts.gradients.consider(step, p, device, cpu, bound);
            ratios.push((bound / (cpu as f64).abs()) as f32);
        }
        self.adam(job, record, &mut worsts.states);
        let validation = match batch.ends_epoch(&job.batching) {
            true => self.validation_values(job, &record.after.weights),
            false => Vec::new(),
        };
        Replayed {
            metric_sums: self.backprop.metric_sums().to_vec(),
            metric_bounds: bounds.metric_sums,
            metric_magnitudes: bounds.metric_magnitudes,
            validation,
            ratios,
        }
    }

    /// Adam's update of every parameter from the record's before-state
    /// and gradients.
    fn adam(&self, job: &Job, record: &StepRecord, states: &mut Worst) {
        let step = record.step;
        let count = record.gradients.len();
        let alpha = job.step_sizes[(step as usize).min(job.step_sizes.len() - 1)];
        for p in 0..count {
            let (w, g) = (record.before.weights[p], record.gradients[p]);
            let (mut m, mut v) = (record.before.m[p], record.before.v[p]);
            let bound = adam_bounds(w, g, m, v, alpha, &job.constants);
            let updated = adam_update(w, g, &mut m, &mut v, alpha, &job.constants);
            states.consider(step, p, record.after.weights[p], updated, bound.weight);
            states.consider(step, count + p, record.after.m[p], m, bound.m);
            states.consider(step, 2 * count + p, record.after.v[p], v, bound.v);
        }
    }

    /// The CPU's validation loss and metrics of `weights`, each with its
    /// bound (none without a split).
    fn validation_values(&mut self, job: &Job, weights: &[f32]) -> Vec<(f32, f64)> {
        let config = job.config;
        let rows = config.validation_rows();
        let n = rows.len();
        if n == 0 {
            return Vec::new();
        }
        let scored = (config.loss, &job.metrics[..]);
        let (layers, data) = (&job.layers, &config.data);
        let values = &mut self.validation;
        cpu::validation_losses(weights, layers, scored, data, rows.clone(), values);
        let partials = cpu::validation_partials(values, n);
        let means = partials
            .iter()
            .map(|series| cpu::validation_loss(series, n));
        let (x, y) = config.data.rows(rows);
        let roundings = n.min(REDUCE_BLOCK) + n.div_ceil(REDUCE_BLOCK);
        let bounds = bounds_with(layers, scored, weights, x, y, roundings);
        let metric_bounds = (bounds.metric_sums.iter().zip(&bounds.metric_magnitudes))
            .map(|(&sum, &magnitude)| mean_bound(sum, magnitude, n as f64));
        means
            .zip(std::iter::once(bounds.loss).chain(metric_bounds))
            .collect()
    }
}

/// Threads the check replays steps on: the machine's, up to 8 (one where
/// there are no threads, as in the browser).
pub(super) fn threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}

/// Replays `records` on `replayers`' threads, each a run of consecutive
/// steps, and returns what each step gave, in step order, with the worst
/// differences of them all.
pub(super) fn replay_all(
    job: &Job,
    replayers: &mut [Replayer],
    records: &[StepRecord],
) -> (Vec<Replayed>, StepWorsts) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = (replayers.len())
            .min(records.len() / STEPS_PER_THREAD_MIN)
            .max(1);
        if threads > 1 {
            return replay_on_threads(job, &mut replayers[..threads], records);
        }
    }
    let mut worsts = StepWorsts::default();
    let replayer = &mut replayers[0];
    let replayed = (records.iter())
        .map(|record| replayer.replay(job, record, &mut worsts))
        .collect();
    (replayed, worsts)
}

#[cfg(not(target_arch = "wasm32"))]
fn replay_on_threads(
    job: &Job,
    replayers: &mut [Replayer],
    records: &[StepRecord],
) -> (Vec<Replayed>, StepWorsts) {
    let chunk = records.len().div_ceil(replayers.len());
    let runs: Vec<(Vec<Replayed>, StepWorsts)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (replayers.iter_mut().zip(records.chunks(chunk)))
            .map(|(replayer, run)| {
                scope.spawn(move || {
                    let mut worsts = StepWorsts::default();
                    let replayed = (run.iter())
                        .map(|record| replayer.replay(job, record, &mut worsts))
                        .collect::<Vec<_>>();
                    (replayed, worsts)
                })
            })
            .collect();
        (handles.into_iter())
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut replayed = Vec::with_capacity(records.len());
    let mut worsts = StepWorsts::default();
    for (run, run_worsts) in runs {
        replayed.extend(run);
        worsts.then(&run_worsts);
    }
    (replayed, worsts)
}
