//! The shadow check: a device's training steps, one at a time, against the
//! CPU reference started from the device's own state.
//!
//! A device under test records training steps: the state before the step
//! (weights, Adam's m and v), the gradients and the loss it computed for the
//! step's batch, and the state after its update ([`StepRecord`]). For each
//! recorded step the CPU reference computes the loss and gradients from the
//! device's *before* state, and Adam's update from that state with the
//! device's own gradients. Since every comparison starts from the device's
//! state, nothing compounds from step to step: Adam's late, chaotic spikes,
//! which make two correct trajectories part, never enter the verdict.
//!
//! **Tolerance.** Every value gets its own bound from a rounding-error
//! analysis of the operations that produced it ([`step_bounds`],
//! [`adam_bounds`]), for the arithmetic WGSL allows a device
//! (<https://www.w3.org/TR/WGSL/#floating-point-accuracy>): each addition,
//! subtraction and multiplication rounded to either neighbour of the exact
//! result (an ULP, at most 2u of the value, u = 2^-24), any `a * b + c` fused
//! into one rounding (a fused step skips a rounding, it adds none), a
//! division 2.5 ULP off, a square root 4.5 ULP (`1.0 / inverseSqrt(x)`), a
//! subnormal result flushed to zero. A sum of n terms is then within
//! gamma(2n) of the sum of its terms' magnitudes of the exact sum on the
//! device, and within gamma(n) on the CPU, which rounds to nearest (gamma(n)
//! = n u / (1 - n u)): so within their sum of each other; the
//! differences of the inputs themselves are carried through each layer
//! (forward, output error, backward, the blocked sums over samples). The
//! bounds are per value, scaled by the magnitudes that value was computed
//! from: tight where nothing cancels, loose only where the terms cancel (a
//! gradient near a minimum is a sum of large terms of either sign). A device
//! that computes the wrong thing (a gradient twice as large, a dropped bias
//! gradient, epsilon in the wrong place, Adam's t off by one, another
//! sample's data) is outside them.
//!
//! **Epochs.** Each epoch's loss in the device's history is held to its
//! steps' recorded losses (Keras's size-weighted mean), each metric to the
//! CPU's values of its steps' batches from the recorded before-states, the
//! validation loss and metrics to the CPU's from the epoch's last
//! after-state. Early stopping is decided on the CPU from the device's own
//! history; the run's length is held to that decision (or to the epochs the
//! job asked for), and the trained model to the weights it keeps.
//!
//! **Chaining.** Records of consecutive steps must hand the state on bit for
//! bit (the after-state of one is the before-state of the next), the first
//! step must start from the initial weights with m = v = 0, and the last
//! must end in the trained model: with every step recorded, that covers the
//! whole run.
//!
//! **Streaming.** [`StepCheck`] takes the records and the history's rows as
//! a device streams them, one submission at a time, and drops each record
//! once checked: its memory is one submission's records plus a few values
//! per epoch, whatever the run's length. What it could not check (steps
//! never recorded) it lists, and the verdict is then not "passed".
//!
//! **Power.** [`power`] reports per epoch the smallest relative gradient
//! error the bounds would have caught.

use crate::model::Model;
pub use crate::rounding::apart;
pub use crate::training::{DeviceSteps, EpochRows, StepRecord, TrainState};
use crate::training::{TrainConfig, Watch};
use serde::Serialize;
use std::collections::VecDeque;

mod bounds;
mod certificate;
pub mod power;
mod replay;

pub use bounds::{AdamBounds, StepBounds, adam_bounds, mean_bound, step_bounds};
pub use certificate::{Certificate, WorstRatios};
use power::{EpochPower, PowerTally};
use replay::{Job, Replayed, Replayer, replay_all};

/// The largest difference of one kind, as a fraction of its bound (above 1:
/// outside the tolerance), and where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Worst {
    /// |device - CPU| / bound.
    pub ratio: f64,
    /// 0-based training step of the difference (for an epoch's value, the
    /// epoch's last step).
    pub step: u64,
    /// Parameter index (a loss: 0, or the 0-based epoch of an epoch's
    /// loss; a metric: its index in the job's list, validation ones after).
    pub index: usize,
    /// The device's value.
    pub device: f32,
    /// The CPU reference's value.
    pub cpu: f32,
}

impl Worst {
    fn consider(&mut self, step: u64, index: usize, device: f32, cpu: f32, bound: f64) {
        let difference = (device as f64 - cpu as f64).abs();
        let ratio = if difference == 0.0 {
            0.0
        } else if bound > 0.0 {
            difference / bound
        } else {
            f64::INFINITY
        };
        if ratio > self.ratio || ratio.is_nan() {
            *self = Worst {
                ratio,
                step,
                index,
                device,
                cpu,
            };
        }
    }

    fn holds(&self) -> bool {
        self.ratio <= 1.0
    }

    /// The worst of `later`'s steps after this one's: the first of the
    /// largest ratios, or the last NaN, as one pass over both finds.
    fn then(&mut self, later: &Worst) {
        if later.ratio > self.ratio || later.ratio.is_nan() {
            *self = *later;
        }
    }
}

/// The verdict of a shadow check.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowCheck {
    /// Training steps checked.
    pub steps_checked: u64,
    /// The steps the run should have run: the job's epochs, or as many as
    /// early stopping lets run on the device's own history, decided on the
    /// CPU.
    pub steps_expected: u64,
    /// The worst gradient (index: parameter).
    pub gradients: Worst,
    /// The worst step loss, epoch loss of the history and validation loss
    /// (index: 0 for a step's, the 0-based epoch for an epoch's).
    pub losses: Worst,
    /// The worst metric of an epoch, on the training batches and on the
    /// validation rows (index: the metric, validation ones after); `None`
    /// when the job tracks none.
    pub metrics: Option<Worst>,
    /// Weights, m and v after the update (index: parameter, then
    /// `count + p` for m, `2 count + p` for v).
    pub states: Worst,
    /// Broken hand-overs between records, or from the initial state or to
    /// the final model, and a run whose length early stopping (or the job)
    /// does not give: each described.
    pub chain_breaks: Vec<String>,
    /// What the check could not see (steps never recorded): each described.
    pub not_covered: Vec<String>,
    /// Per epoch, the smallest relative gradient error the bounds catch.
    pub power: Vec<EpochPower>,
    /// The verdict: every step checked, no broken hand-over and every worst
    /// ratio at most 1.
    pub within_tolerance: bool,
}

/// The verdict of `--compare` (and of the browser page's check): the shadow
/// check, which must have checked every step. `Err` says why not.
pub fn verdict(check: &ShadowCheck) -> Result<(), String> {
    if !check.not_covered.is_empty() {
        return Err(format!(
            "the shadow check could not check the whole run: {}",
            check.not_covered.join("; ")
        ));
    }
    if !check.within_tolerance {
        return Err(
            "the shadow check failed: the GPU's training steps differ from the CPU \
                    reference's beyond their rounding bounds"
                .into(),
        );
    }
    Ok(())
}

/// What a device's run gave, whole: its records of training steps (in
/// step order), its history and the trained model.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRun<'a> {
    /// The device's step records, in step order.
    pub records: &'a [StepRecord],
    /// The device's history, every epoch from 0.
    pub history: &'a EpochRows,
    /// The model the device's run ended with.
    pub trained: &'a Model,
}

/// Checks a device's whole run of `config` from `initial` (see the
/// module's notes), fed to a [`StepCheck`] an epoch at a time.
pub fn check_steps(initial: &Model, config: &TrainConfig, run: DeviceRun<'_>) -> ShadowCheck {
    let mut check = StepCheck::new(initial, config);
    let per_epoch = config.batching().steps_per_epoch as u64;
    let mut records = run.records;
    for epoch in 0..run.history.len() {
        let ends = (epoch as u64 + 1) * per_epoch;
        let taken = records.partition_point(|r| r.step < ends);
        check.check_records(&records[..taken]);
        records = &records[taken..];
        check.check_epochs(&rows(run.history, epoch..epoch + 1));
    }
    check.check_records(records);
    check.finish(run.history, run.trained)
}

/// `epochs` of `history`.
fn rows(history: &EpochRows, epochs: std::ops::Range<usize>) -> EpochRows {
    let cut = |series: &Vec<f32>| series.get(epochs.clone()).unwrap_or_default().to_vec();
    EpochRows {
        first: history.first + epochs.start,
        loss: cut(&history.loss),
        val_loss: cut(&history.val_loss),
        metrics: history.metrics.iter().map(cut).collect(),
        val_metrics: history.val_metrics.iter().map(cut).collect(),
    }
}

/// What the check learnt of one epoch from its steps, kept until the
/// device's history row for it arrives.
#[derive(Debug, Clone)]
struct EpochTally {
    epoch: usize,
    /// Its last step, once checked.
    last_step: Option<u64>,
    /// Every step of the epoch was checked.
    whole: bool,
    /// `sum(loss_k * size_k)` of the recorded step losses, in step order
    /// as the kernels add them, and the sum of the terms' magnitudes.
    loss_total: f32,
    loss_magnitude: f64,
    /// Each metric's CPU sum over the epoch's batches, the bound on the
    /// device's, and the sum of the steps' magnitudes.
    metric_totals: Vec<f32>,
    metric_bounds: Vec<f64>,
    metric_magnitudes: Vec<f64>,
    /// From the epoch's last after-state: the CPU's validation loss and
    /// metrics, each with its bound.
    validation: Vec<(f32, f64)>,
    /// The epoch's last after-state's weights, where early stopping may
    /// restore them.
    weights: Option<Vec<f32>>,
    power: Option<EpochPower>,
}

impl EpochTally {
    fn new(epoch: usize, metrics: usize) -> Self {
        Self {
            epoch,
            last_step: None,
            whole: true,
            loss_total: 0.0,
            loss_magnitude: 0.0,
            metric_totals: vec![0.0; metrics],
            metric_bounds: vec![0.0; metrics],
            metric_magnitudes: vec![0.0; metrics],
            validation: Vec::new(),
            weights: None,
            power: None,
        }
    }
}

/// The shadow check of one run, taking the device's records and history
/// rows as they come (see the module's notes).
pub struct StepCheck<'a> {
    initial: &'a Model,
    /// The run's config, batching and what replaying its steps needs.
    job: Job<'a>,
    /// One a thread the steps are replayed on.
    replayers: Vec<Replayer>,
    /// The step the next record should be, and the state it should start
    /// from.
    next_step: u64,
    state: TrainState,
    steps_checked: u64,
    /// Epochs whose steps were checked, waiting for their history rows.
    tallies: VecDeque<EpochTally>,
    power: PowerTally,
    /// The device's history, as streamed.
    history: EpochRows,
    watch: Watch,
    /// The 1-based epoch after which early stopping, run on the device's
    /// history, stops the run; and the weights it keeps.
    stopped_after: Option<usize>,
    best_weights: Option<Vec<f32>>,
    ran_on: bool,
    result: ShadowCheck,
}

impl<'a> StepCheck<'a> {
    /// A check of a run of `config` from `initial`.
    pub fn new(initial: &'a Model, config: &'a TrainConfig) -> Self {
        Self::with_threads(initial, config, replay::threads())
    }

    /// [`StepCheck::new`], replaying steps on at most `threads` threads
    /// (the verdict does not depend on it).
    pub fn with_threads(initial: &'a Model, config: &'a TrainConfig, threads: usize) -> Self {
        let job = Job::new(config, initial);
        let total_steps = config.epochs as u64 * job.batching.steps_per_epoch as u64;
        let replayers = Replayer::for_threads(&job, initial, threads);
        Self {
            initial,
            job,
            replayers,
            next_step: 0,
            state: TrainState::start(initial, config),
            steps_checked: 0,
            tallies: VecDeque::new(),
            power: PowerTally::default(),
            history: EpochRows::default(),
            watch: Watch::default(),
            stopped_after: None,
            best_weights: None,
            ran_on: false,
            result: ShadowCheck {
                steps_checked: 0,
                steps_expected: total_steps,
                gradients: Worst::default(),
                losses: Worst::default(),
                metrics: (!config.metrics.is_empty()).then(Worst::default),
                states: Worst::default(),
                chain_breaks: Vec::new(),
                not_covered: Vec::new(),
                power: Vec::new(),
                within_tolerance: false,
            },
        }
    }

    fn per_epoch(&self) -> u64 {
        self.job.batching.steps_per_epoch as u64
    }

    /// One submission's stream: its records, then its finished epochs.
    pub fn take(&mut self, steps: DeviceSteps) {
        self.check_records(&steps.records);
        self.check_epochs(&steps.epochs);
    }

    /// The device's next records, in step order: replayed (on several
    /// threads where there are), then folded in step order.
    pub fn check_records(&mut self, records: &[StepRecord]) {
        let (replayed, worsts) = replay_all(&self.job, &mut self.replayers, records);
        worsts.add_to(&mut self.result);
        for (record, replayed) in records.iter().zip(replayed) {
            self.fold(record, replayed);
        }
    }

    /// One replayed step into the run's account: the hand-over from the
    /// step before, its epoch's tally, the check's power.
    fn fold(&mut self, record: &StepRecord, replayed: Replayed) {
        let step = record.step;
        let per_epoch = self.per_epoch();
        if step < self.next_step {
            let why = format!("step {} was recorded again, or out of order", step + 1);
            self.result.chain_breaks.push(why);
            return;
        }
        if step > self.next_step {
            self.not_recorded(self.next_step, step);
        } else if record.before != self.state {
            let why = match step {
                0 => "step 1 does not start from the initial weights".to_string(),
                _ => format!("step {} does not start where step {step} ended", step + 1),
            };
            self.result.chain_breaks.push(why);
        }
        self.went_on(step);
        let epoch = (step / per_epoch) as usize;
        if self.tallies.back().is_none_or(|t| t.epoch != epoch) {
            let mut tally = EpochTally::new(epoch, self.job.metrics.len());
            tally.whole = step.is_multiple_of(per_epoch);
            self.tallies.push_back(tally);
        }
        for &ratio in &replayed.ratios {
            self.power.add(ratio as f64);
        }
        self.tally(record, replayed);
        self.state.clone_from(&record.after);
        self.next_step = step + 1;
        self.steps_checked += 1;
        if self.next_step.is_multiple_of(per_epoch) {
            let power = self.power.take(epoch);
            let tally = self.tallies.back_mut().expect("this epoch's tally");
            tally.power = Some(power);
        }
    }

    /// The step's loss and metrics into its epoch's tally; at the epoch's
    /// end, its validation values and the weights early stopping may keep.
    fn tally(&mut self, record: &StepRecord, replayed: Replayed) {
        let batch = self.job.batching.batch(record.step);
        let tally = self.tallies.back_mut().expect("this epoch's tally");
        let size = batch.size as f32;
        tally.loss_total += record.loss * size;
        tally.loss_magnitude += (record.loss as f64 * size as f64).abs();
        let each = (replayed.metric_sums.iter())
            .zip(&replayed.metric_bounds)
            .zip(&replayed.metric_magnitudes);
        for (m, ((&sum, &bound), &magnitude)) in each.enumerate() {
            tally.metric_totals[m] += sum;
            tally.metric_bounds[m] += bound;
            tally.metric_magnitudes[m] += magnitude;
        }
        if batch.ends_epoch(&self.job.batching) {
            tally.last_step = Some(record.step);
            tally.validation = replayed.validation;
            let restores = (self.job.config.early_stopping).is_some_and(|e| e.restore_best_weights);
            tally.weights = restores.then(|| record.after.weights.clone());
        }
    }

    /// Steps `from..to` (0-based) ran but were not recorded.
    fn not_recorded(&mut self, from: u64, to: u64) {
        let why = match to - from {
            1 => format!("step {} was not recorded", from + 1),
            _ => format!("steps {} to {} were not recorded", from + 1, to),
        };
        self.result.not_covered.push(why);
        let epoch = (from / self.per_epoch()) as usize;
        if let Some(tally) = self.tallies.back_mut()
            && tally.epoch == epoch
        {
            tally.whole = false;
        }
    }

    /// A record of `step` after early stopping's stop: said once.
    fn went_on(&mut self, step: u64) {
        let Some(stopped) = self.stopped_after else {
            return;
        };
        if step >= stopped as u64 * self.per_epoch() {
            self.ran_on_after(stopped);
        }
    }

    fn ran_on_after(&mut self, stopped: usize) {
        if !self.ran_on {
            self.ran_on = true;
            self.result.chain_breaks.push(format!(
                "the device ran on after epoch {stopped}, where early stopping on its own \
                 history stops the run"
            ));
        }
    }

    /// The device's history rows of its next finished epochs.
    pub fn check_epochs(&mut self, rows: &EpochRows) {
        for k in 0..rows.len() {
            let epoch = rows.first + k;
            if epoch != self.history.len() {
                let why = format!("the device's history skips to epoch {}", epoch + 1);
                self.result.chain_breaks.push(why);
                return;
            }
            let value = |series: &Vec<f32>| series.get(k).copied();
            let row = Row {
                loss: rows.loss[k],
                val_loss: value(&rows.val_loss),
                metrics: rows.metrics.iter().map(|s| s[k]).collect(),
                val_metrics: rows.val_metrics.iter().map(|s| s[k]).collect(),
            };
            self.check_epoch(epoch, &row);
            push_row(&mut self.history, &row);
        }
    }

    /// One epoch's row against what its steps gave, then early stopping's
    /// verdict on it.
    fn check_epoch(&mut self, epoch: usize, row: &Row) {
        while self.tallies.front().is_some_and(|t| t.epoch < epoch) {
            self.tallies.pop_front();
        }
        let tally = match self.tallies.front() {
            Some(tally) if tally.epoch == epoch => self.tallies.pop_front(),
            _ => None,
        };
        if let Some(tally) = tally.as_ref().filter(|t| t.whole && t.last_step.is_some()) {
            self.check_epoch_values(tally, row);
        }
        if let Some(power) = tally.as_ref().and_then(|t| t.power) {
            self.result.power.push(power);
        }
        if let Some(stopped) = self.stopped_after {
            self.ran_on_after(stopped);
            return;
        }
        let Some(stopping) = &self.job.config.early_stopping else {
            return;
        };
        let watched = row.val_loss.unwrap_or(row.loss);
        let stop = stopping.watch(&mut self.watch, epoch, watched);
        if stopping.restore_best_weights && self.watch.best_epoch == epoch + 1 {
            self.best_weights = tally.and_then(|t| t.weights);
        }
        if stop {
            self.stopped_after = Some(epoch + 1);
            if self.next_step > (epoch as u64 + 1) * self.per_epoch() {
                self.went_on(self.next_step - 1);
            }
        }
    }

    /// The epoch's loss, metrics and validation values in the device's row
    /// against the CPU's, each within its bound.
    fn check_epoch_values(&mut self, tally: &EpochTally, row: &Row) {
        let samples = self.job.batching.samples as f64;
        let steps = self.per_epoch() as usize;
        let step = tally.last_step.expect("a whole epoch");
        // The device's epoch loss: the same recorded step losses, added in
        // the same order (each side's rounding of the sum apart), divided.
        let cpu = tally.loss_total / samples as f32;
        let sum_bound = apart(2 * steps) * tally.loss_magnitude;
        let bound = mean_bound(sum_bound, tally.loss_magnitude, samples);
        let result = &mut self.result;
        result
            .losses
            .consider(step, tally.epoch, row.loss, cpu, bound);
        let mut metrics = result.metrics.unwrap_or_default();
        for (m, &device) in row.metrics.iter().enumerate() {
            let magnitude = tally.metric_magnitudes[m];
            let sum_bound = tally.metric_bounds[m] + apart(2 * steps) * magnitude;
            let cpu = tally.metric_totals[m] / samples as f32;
            let bound = mean_bound(sum_bound, magnitude, samples);
            metrics.consider(step, m, device, cpu, bound);
        }
        let validation = row.val_loss.iter().chain(&row.val_metrics);
        for (k, (&device, &(cpu, bound))) in validation.zip(&tally.validation).enumerate() {
            match k {
                0 => result
                    .losses
                    .consider(step, tally.epoch, device, cpu, bound),
                k => metrics.consider(step, self.job.metrics.len() + k - 1, device, cpu, bound),
            }
        }
        if let Some(worst) = &mut result.metrics {
            *worst = metrics;
        }
    }

    /// The verdict, once the run has ended: its length against the job's
    /// (or early stopping's), the trained model against the weights the
    /// run keeps, and the history the device read back at the end against
    /// the one it streamed.
    pub fn finish(mut self, history: &EpochRows, trained: &Model) -> ShadowCheck {
        let per_epoch = self.per_epoch();
        let epochs = self.stopped_after.unwrap_or(self.job.config.epochs);
        let expected = epochs as u64 * per_epoch;
        let ran = history.len();
        let result = &mut self.result;
        result.steps_checked = self.steps_checked;
        result.steps_expected = expected;
        if ran != epochs && !self.ran_on {
            result.chain_breaks.push(match self.stopped_after {
                Some(stopped) => format!(
                    "the device ran {ran} epochs, but early stopping on its own history stops \
                     after {stopped}"
                ),
                None if self.job.config.early_stopping.is_some() => format!(
                    "the device stopped after epoch {ran}, but early stopping on its own history \
                     lets all {epochs} run"
                ),
                None => format!("the device ran {ran} epochs, the job {epochs}"),
            });
        }
        let ran_steps = (ran as u64 * per_epoch).min(expected);
        if self.next_step < ran_steps {
            let from = self.next_step;
            let why = match from {
                0 => format!("none of the {ran_steps} steps was recorded"),
                _ => format!("steps {} to {ran_steps} were not recorded", from + 1),
            };
            self.result.not_covered.push(why);
        }
        let result = &mut self.result;
        if !rows_equal(&self.history, history) {
            result.chain_breaks.push(
                "the history the device read back at the end is not the one it streamed".into(),
            );
        }
        let restored =
            (self.job.config.early_stopping).is_some_and(|stopping| stopping.restores(&self.watch));
        let (kept, step) = match restored {
            true => (
                self.best_weights.as_ref(),
                self.watch.best_epoch as u64 * per_epoch,
            ),
            false => (Some(&self.state.weights), self.next_step),
        };
        // Without a step, the trained model is the initial one.
        let kept = kept.map(Vec::as_slice).unwrap_or(self.initial.params());
        if result.not_covered.is_empty() && kept != trained.params() {
            result.chain_breaks.push(match step {
                0 => "the trained model is not the initial weights".to_string(),
                step => format!("the trained model is not the weights after step {step}"),
            });
        }
        result.within_tolerance = result.chain_breaks.is_empty()
            && result.not_covered.is_empty()
            && result.gradients.holds()
            && result.losses.holds()
            && result.metrics.is_none_or(|worst| worst.holds())
            && result.states.holds();
        self.result
    }
}

/// One epoch's values in a device's history.
struct Row {
    loss: f32,
    val_loss: Option<f32>,
    metrics: Vec<f32>,
    val_metrics: Vec<f32>,
}

fn push_row(history: &mut EpochRows, row: &Row) {
    history.loss.push(row.loss);
    history.val_loss.extend(row.val_loss);
    history.metrics.resize(row.metrics.len(), Vec::new());
    for (series, &value) in history.metrics.iter_mut().zip(&row.metrics) {
        series.push(value);
    }
    history
        .val_metrics
        .resize(row.val_metrics.len(), Vec::new());
    for (series, &value) in history.val_metrics.iter_mut().zip(&row.val_metrics) {
        series.push(value);
    }
}

/// Bit for bit (a NaN equals itself).
fn rows_equal(a: &EpochRows, b: &EpochRows) -> bool {
    let bits = |series: &Vec<f32>| series.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let all = |rows: &EpochRows| {
        let mut series = vec![bits(&rows.loss), bits(&rows.val_loss)];
        series.extend(rows.metrics.iter().map(bits));
        series.extend(rows.val_metrics.iter().filter(|s| !s.is_empty()).map(bits));
        series.retain(|s| !s.is_empty());
        series
    };
    all(a) == all(b)
}
