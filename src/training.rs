//! What a training run takes and what it gives back, shared by the CPU
//! reference and the GPU driver.

use crate::batching::{Batching, DEFAULT_BATCH_SIZE};
use crate::data::Dataset;
pub use crate::error::{DataOverflow, Diverged};
use crate::error::{Result, fail};
use crate::loss::{Loss, Metric};
use crate::model::Model;
use crate::optimizer::{Adam, AdamState, MOST_ITERATIONS};
use crate::step::Extras;
use std::time::Duration;

/// The seed used when none is given, so two runs print the same numbers.
pub const DEFAULT_SEED: u64 = 42;

/// The seed program's settings: `Adam(0.1)`, `epochs=1000`.
pub const DEFAULT_EPOCHS: usize = 1000;
/// The seed program's learning rate, `Adam(0.1)`.
pub const DEFAULT_LEARNING_RATE: f32 = 0.1;

/// One training run: Adam on mean squared error in mini-batches, as Keras's
/// `fit` runs it (its default batch size, 32, holds the seed's 7 samples in
/// one batch, so there each epoch is one Adam step over every sample).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// The samples to train on.
    pub data: Dataset,
    /// Passes over the whole dataset.
    pub epochs: usize,
    /// Adam's learning rate (finite, greater than 0).
    pub learning_rate: f32,
    /// Samples per Adam step; `None` for the whole dataset (`--batch-size all`).
    pub batch_size: Option<usize>,
    /// Seed of the per-epoch shuffle (used when there is more than one batch).
    pub shuffle_seed: u64,
    /// Whether each epoch draws its batches from a new permutation of the
    /// samples, as Keras's `fit(shuffle=True)` (the default); `false` takes
    /// them in the dataset's order every epoch, as `fit(shuffle=False)`.
    pub shuffle: bool,
    /// What training minimises (the seed's mean squared error by default).
    pub loss: Loss,
    /// The fraction of the data held out for validation, Keras's
    /// `fit(validation_split=...)`: the last rows, before any shuffling
    /// (0: none). Each epoch's `val_loss` is the loss on them after the
    /// epoch's updates.
    pub validation_split: f64,
    /// Keras's `EarlyStopping` callback, when given.
    pub early_stopping: Option<EarlyStopping>,
    /// Keras's `compile(metrics=[...])`: each tracked per epoch under its
    /// name (and `val_` + name with a validation split); at most
    /// [`MAX_METRICS`].
    pub metrics: Vec<NamedMetric>,
    /// Adam's state to go on from (a saved run's, `--init model.keras`), or
    /// `None` for a fresh Adam, as `fit` starts a newly compiled model.
    pub adam_state: Option<AdamState>,
}

/// Most metrics one run tracks.
pub const MAX_METRICS: usize = 8;

/// A metric and the name the history records it under, as given (`mae`,
/// `accuracy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedMetric {
    /// The history's key.
    pub name: String,
    /// What it measures.
    pub metric: Metric,
}

impl NamedMetric {
    /// A Keras metric name, kept as the history's key.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(Self {
            name: name.to_string(),
            metric: Metric::from_name(name)?,
        })
    }
}

/// Keras's `EarlyStopping(monitor, min_delta, patience,
/// restore_best_weights)`, monitoring `val_loss` with a validation split,
/// else `loss` (keras/src/callbacks/early_stopping.py). At each epoch's end
/// the monitored value improves when `value + min_delta < best` (the first
/// always does); `patience` epochs in a row without an improvement stop
/// training (from the second epoch on). Decided on the GPU: the kernels
/// flag the stop and every later step does nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    /// Epochs without an improvement before training stops.
    pub patience: usize,
    /// How much lower than the best the monitored value must be to count as
    /// an improvement (at least 0).
    pub min_delta: f32,
    /// End with the weights of the best epoch instead of the last.
    pub restore_best_weights: bool,
}

impl EarlyStopping {
    /// Whether training ends with the best epoch's weights, as Keras's
    /// `on_train_end`: when asked to and an epoch was watched.
    pub fn restores(&self, watch: &Watch) -> bool {
        self.restore_best_weights && watch.best_epoch > 0
    }

    /// One epoch's end, as Keras's `on_epoch_end` (0-based `epoch`): the
    /// state after it, and whether training stops. The kernels'
    /// `watch_epoch` does the same in f32.
    pub fn watch(&self, state: &mut Watch, epoch: usize, value: f32) -> bool {
        state.wait += 1;
        if state.best_epoch == 0 || value + self.min_delta < state.best {
            state.best = value;
            state.best_epoch = epoch + 1;
            state.wait = 0;
            return false;
        }
        state.wait >= self.patience && epoch > 0
    }
}

/// What early stopping tracks from epoch to epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Watch {
    /// The best monitored value so far.
    pub best: f32,
    /// Its 1-based epoch (0: none yet).
    pub best_epoch: usize,
    /// Epochs since it.
    pub wait: usize,
}

/// How a run with early stopping ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStop {
    /// The monitored quantity: `val_loss` or `loss`.
    pub monitor: &'static str,
    /// The 1-based epoch after which training stopped; `None` when every
    /// epoch ran.
    pub stopped_epoch: Option<usize>,
    /// The best epoch (1-based).
    pub best_epoch: usize,
    /// The best epoch's monitored value.
    pub best: f32,
    /// Whether the model returned holds the best epoch's weights.
    pub restored: bool,
}

impl TrainConfig {
    /// The seed job: its 7 pairs, 1000 epochs, learning rate 0.1.
    pub fn seed() -> Self {
        Self {
            data: Dataset::seed(),
            epochs: DEFAULT_EPOCHS,
            learning_rate: DEFAULT_LEARNING_RATE,
            batch_size: Some(DEFAULT_BATCH_SIZE),
            shuffle_seed: DEFAULT_SEED,
            shuffle: true,
            loss: Loss::MeanSquaredError,
            validation_split: 0.0,
            early_stopping: None,
            metrics: Vec::new(),
            adam_state: None,
        }
    }

    /// How the samples are cut into steps.
    pub fn batching(&self) -> Batching {
        let batching = Batching::new(self.training_len(), self.batch_size, self.shuffle_seed);
        if self.shuffle {
            batching
        } else {
            batching.in_order()
        }
    }

    /// The rows trained on: the first `floor(n (1 - validation_split))`, as
    /// Keras's `train_validation_split` cuts them.
    pub fn training_len(&self) -> usize {
        let n = self.data.len();
        if self.validation_split <= 0.0 {
            return n;
        }
        (n as f64 * (1.0 - self.validation_split)).floor() as usize
    }

    /// The rows held out for validation (empty without a split).
    pub fn validation_rows(&self) -> std::ops::Range<usize> {
        self.training_len()..self.data.len()
    }

    /// Refuses a model whose input width or output units differ from the
    /// data's columns; both trainers call it first.
    pub fn check_model(&self, model: &Model) -> Result<()> {
        let widths = model.architecture().widths();
        let (inputs, outputs) = (widths[0], widths[widths.len() - 1]);
        if inputs != self.data.x_width || outputs != self.data.y_width {
            fail!(
                InvalidConfig,
                "the {} network takes {inputs} input(s) and gives {outputs} output(s), but the \
                 data has {} input column(s) and {} target column(s) (--x, --y)",
                model.architecture().describe(),
                self.data.x_width,
                self.data.y_width
            );
        }
        if let Some(state) = &self.adam_state {
            if state.iterations > MOST_ITERATIONS {
                fail!(
                    InvalidConfig,
                    "Adam's saved state has taken {} steps; at most {MOST_ITERATIONS} are supported",
                    state.iterations
                );
            }
            let params = model.params().len();
            if state.m.len() != params || state.v.len() != params {
                fail!(
                    InvalidConfig,
                    "Adam's saved state has {} first and {} second moments, but the {} network \
                     has {params} parameters",
                    state.m.len(),
                    state.v.len(),
                    model.architecture().describe()
                );
            }
        }
        Ok(())
    }

    /// What a step does besides training (src/step.rs).
    pub fn extras(&self) -> Extras {
        Extras {
            validate: !self.validation_rows().is_empty(),
            keep_best: self.early_stopping.is_some_and(|e| e.restore_best_weights),
            metrics: self.metrics.len(),
        }
    }

    /// What early stopping watches: `val_loss` with a validation split.
    pub fn monitor(&self) -> &'static str {
        if self.validation_rows().is_empty() {
            "loss"
        } else {
            "val_loss"
        }
    }

    /// Adam with Keras's defaults and this learning rate.
    pub fn adam(&self) -> Adam {
        Adam::keras(self.learning_rate)
    }

    /// Adam's state before the run's first step, for a model of `params`
    /// parameters: the resumed one, or a fresh one.
    pub fn adam_start(&self, params: usize) -> AdamState {
        (self.adam_state.clone()).unwrap_or_else(|| AdamState::fresh(params))
    }

    /// The step sizes of a run of `steps` steps (the table every path
    /// reads: [`Adam::step_size_table`]), counted on from the resumed
    /// state's iterations.
    pub fn step_sizes(&self, steps: u64) -> Vec<f32> {
        (self.adam()).step_size_table_after(self.start_iterations(), steps)
    }

    /// Adam's steps before the run's first: the resumed state's, or 0.
    pub fn start_iterations(&self) -> u64 {
        self.adam_state.as_ref().map_or(0, |s| s.iterations)
    }

    /// Rejects settings no trainer can run; both paths call it first.
    pub fn validate(&self) -> Result<()> {
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            fail!(
                InvalidConfig,
                "learning rate must be a finite number greater than 0, got {}",
                self.learning_rate
            );
        }
        let data = &self.data;
        if data.x_width == 0 || data.y_width == 0 {
            fail!(
                InvalidConfig,
                "the dataset needs at least one input and one target column"
            );
        }
        if !data.x.len().is_multiple_of(data.x_width) || data.y.len() != data.len() * data.y_width {
            fail!(
                InvalidConfig,
                "the dataset's arrays do not hold whole samples: {} inputs of {} per sample, \
                 {} targets of {} per sample",
                data.x.len(),
                data.x_width,
                data.y.len(),
                data.y_width
            );
        }
        if self.data.is_empty() {
            fail!(InvalidConfig, "the dataset has no samples");
        }
        if u32::try_from(self.data.len()).is_err() {
            fail!(
                InvalidConfig,
                "the dataset has {} samples; at most {} are supported (sample indices are 32-bit)",
                self.data.len(),
                u32::MAX
            );
        }
        if self.batch_size == Some(0) {
            fail!(InvalidConfig, "the batch size must be at least 1");
        }
        if !(0.0..1.0).contains(&self.validation_split) {
            fail!(
                InvalidConfig,
                "the validation split must be at least 0 and below 1, got {}",
                self.validation_split
            );
        }
        let training = self.training_len();
        if self.validation_split > 0.0 && (training == 0 || training == self.data.len()) {
            fail!(
                InvalidConfig,
                "a validation split of {} leaves {} of the {} samples for training and {} for \
                 validation; both need at least one (use more data or another split)",
                self.validation_split,
                training,
                self.data.len(),
                self.data.len() - training
            );
        }
        for (k, metric) in self.metrics.iter().enumerate() {
            if self.metrics[..k].iter().any(|m| m.name == metric.name) {
                fail!(InvalidConfig, "the metric {:?} is given twice", metric.name);
            }
            // Keras's compile takes "accuracy" as binary_accuracy only for one
            // output unit (categorical_accuracy otherwise, not implemented).
            let accuracy = matches!(metric.name.as_str(), "accuracy" | "acc");
            if accuracy && self.data.y_width > 1 {
                fail!(
                    InvalidConfig,
                    "with {} target columns Keras reads {:?} as categorical_accuracy, which \
                     gpu-c2f does not have; ask for binary_accuracy",
                    self.data.y_width,
                    metric.name
                );
            }
        }
        if self.metrics.len() > MAX_METRICS {
            fail!(
                InvalidConfig,
                "{} metrics; at most {MAX_METRICS} are supported",
                self.metrics.len()
            );
        }
        if let Some(stopping) = &self.early_stopping {
            if self.epochs == 0 {
                fail!(
                    InvalidConfig,
                    "early stopping (--patience) watches epochs, but this run trains none"
                );
            }
            if !(stopping.min_delta.is_finite() && stopping.min_delta >= 0.0) {
                fail!(
                    InvalidConfig,
                    "min_delta must be a finite number of at least 0, got {}",
                    stopping.min_delta
                );
            }
        }
        if self.loss.needs_probabilities()
            && let Some(at) = self.data.y.iter().position(|y| !(0.0..=1.0).contains(y))
        {
            // The data's fault, not a setting's.
            return Err(crate::Error::data(
                None,
                None,
                format!(
                    "{} needs targets in [0, 1] (probabilities), but sample {} has {}",
                    self.loss,
                    at / self.data.y_width + 1,
                    self.data.y[at]
                ),
            ));
        }
        Ok(())
    }
}

impl Diverged {
    /// The divergence at 0-based training step `step`.
    pub fn at_step(step: u64, batches_per_epoch: u32) -> Self {
        let per_epoch = batches_per_epoch.max(1) as u64;
        Self {
            epoch: (step / per_epoch) as usize + 1,
            batch: (step % per_epoch) as usize + 1,
            batches_per_epoch: per_epoch as usize,
            overflow: None,
        }
    }

    /// Looks for the cause in the data (only once training has diverged,
    /// so a run that trains pays nothing): its largest value, when that is
    /// beyond what f32 arithmetic squares.
    pub fn diagnosed(mut self, config: &TrainConfig) -> Self {
        let data = &config.data;
        let largest = |values: &[f32], width: usize, target: bool| {
            values
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map(|(at, &value)| DataOverflow {
                    sample: at / width,
                    target,
                    column: at % width,
                    value,
                })
        };
        self.overflow = [
            largest(&data.x, data.x_width, false),
            largest(&data.y, data.y_width, true),
        ]
        .into_iter()
        .flatten()
        .filter(|c| c.value.abs() > f32::MAX.sqrt())
        .max_by(|a, b| a.value.abs().total_cmp(&b.value.abs()));
        self
    }

    /// The message, naming the data's columns by `names` (input names,
    /// target names) where given, else by number.
    pub fn describe(&self, names: Option<(&[String], &[String])>) -> String {
        let mut text = format!("training diverged at epoch {}", self.epoch);
        if self.batches_per_epoch > 1 {
            text += &format!(" (batch {} of {})", self.batch, self.batches_per_epoch);
        }
        text += ": the loss or a weight became infinite or NaN; no model was produced ";
        match &self.overflow {
            None => text += "(try a smaller --learning-rate)",
            Some(overflow) => {
                let kind = if overflow.target { "target" } else { "input" };
                let named = names
                    .map(|(x, y)| if overflow.target { y } else { x })
                    .and_then(|columns| columns.get(overflow.column));
                let column = match named {
                    Some(name) => format!("{kind} column {name:?}"),
                    None => format!("{kind} column {}", overflow.column + 1),
                };
                text += &format!(
                    "because the data overflows f32 arithmetic, whatever the learning rate: \
                     {column} holds {:e} (sample {}); training squares values that grow with \
                     it (the squared error, Adam's second moment), and f32 squares nothing \
                     beyond 1.8e19: rescale that column",
                    overflow.value,
                    overflow.sample + 1
                );
            }
        }
        text
    }
}

impl std::fmt::Display for Diverged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe(None))
    }
}

impl std::error::Error for Diverged {}

/// What a trainer returns.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    /// Loss of every epoch's forward pass, before that epoch's update
    /// (Keras's `history.history["loss"]`).
    pub loss_history: Vec<f32>,
    /// The loss on the validation rows after every epoch's updates
    /// (Keras's `history.history["val_loss"]`); empty without a split.
    pub val_loss_history: Vec<f32>,
    /// Each metric's value per epoch, under its name (and, with a
    /// validation split, `val_` + name), in Keras's history order.
    pub metric_history: Vec<(String, Vec<f32>)>,
    /// How early stopping ended the run, when it watched.
    pub early_stop: Option<EarlyStop>,
    /// The weights after the last update (the best epoch's when early
    /// stopping restored them).
    pub model: Model,
    /// Adam's state after the last update (also when early stopping
    /// restored an earlier epoch's weights, as Keras leaves its optimizer),
    /// for a later run to resume.
    pub adam: AdamState,
    /// Time spent in the epoch loop (GPU: recording, submitting and waiting).
    pub train_time: Duration,
}

/// What a trainer's epochs left, as both trainers hand it to
/// [`TrainOutput::assemble`]: the series of the epochs that ran, and early
/// stopping's state.
#[derive(Debug, Clone, Default)]
pub(crate) struct EpochResults {
    pub loss_history: Vec<f32>,
    /// Empty without a validation split.
    pub val_loss_history: Vec<f32>,
    /// Each metric's values per epoch, in `config.metrics`'s order, and on
    /// the validation rows (empty without a split).
    pub metrics: Vec<Vec<f32>>,
    pub val_metrics: Vec<Vec<f32>>,
    /// Early stopping's state after the last epoch that ran.
    pub watch: Watch,
    /// The 1-based epoch early stopping stopped after.
    pub stopped_epoch: Option<usize>,
}

impl TrainOutput {
    /// The one place a run's output is put together, for the CPU reference
    /// and the GPU alike: `params` are the weights the trainer ends with
    /// (the best epoch's when early stopping restored them, which it does,
    /// as Keras's `on_train_end`, when asked to and an epoch was watched).
    pub(crate) fn assemble(
        config: &TrainConfig,
        initial: &Model,
        epochs: EpochResults,
        params: Vec<f32>,
        adam: AdamState,
        train_time: Duration,
    ) -> Result<Self> {
        let early_stop = config.early_stopping.map(|stopping| EarlyStop {
            monitor: config.monitor(),
            stopped_epoch: epochs.stopped_epoch,
            best_epoch: epochs.watch.best_epoch,
            best: epochs.watch.best,
            restored: stopping.restores(&epochs.watch),
        });
        // Keras's history order: each metric, then each `val_` one.
        let names = config.metrics.iter().map(|m| m.name.clone());
        let val_names = names.clone().map(|name| format!("val_{name}"));
        let metric_history = names
            .zip(epochs.metrics)
            .chain(val_names.zip(epochs.val_metrics))
            .collect();
        Ok(Self {
            loss_history: epochs.loss_history,
            val_loss_history: epochs.val_loss_history,
            metric_history,
            early_stop,
            model: Model::from_params(initial.architecture().clone(), params)?,
            adam,
            train_time,
        })
    }

    /// The last recorded loss (NaN when no epoch ran).
    pub fn final_loss(&self) -> f32 {
        self.loss_history.last().copied().unwrap_or(f32::NAN)
    }
}

/// Weights, and Adam's first and second moments, one value per parameter:
/// what a training step starts from and leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// The parameters, in the model's flat order.
    pub weights: Vec<f32>,
    /// Adam's first moment of each parameter.
    pub m: Vec<f32>,
    /// Adam's second moment of each parameter.
    pub v: Vec<f32>,
}

impl TrainState {
    /// What `config`'s run of `model` starts from: its weights, and the
    /// resumed Adam's moments (0 for a fresh Adam).
    pub fn start(model: &Model, config: &TrainConfig) -> Self {
        let AdamState { m, v, .. } = config.adam_start(model.params().len());
        Self {
            weights: model.params().to_vec(),
            m,
            v,
        }
    }
}

/// What a device recorded of one training step, for the shadow check
/// (src/shadow/): `StepRecord::len` values a step in the GPU's history
/// buffer (shaders/adam.wgsl, `step_record`).
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// 0-based training step (Adam's t is `step + 1`).
    pub step: u64,
    /// Weights and moments before the step's update.
    pub before: TrainState,
    /// The gradient of the batch's loss, one per parameter.
    pub gradients: Vec<f32>,
    /// The batch's mean squared error, from the forward pass before the update.
    pub loss: f32,
    /// Weights and moments after the step's update.
    pub after: TrainState,
}

impl StepRecord {
    /// Values of one record of a network of `params` parameters: weights,
    /// m and v before, the gradients, the loss, weights, m and v after.
    pub fn len(params: usize) -> usize {
        7 * params + 1
    }
}

/// Consecutive epochs' values of a run's history, as a device streams them
/// to the shadow check: each series holds `len()` values from epoch
/// `first` (0-based).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochRows {
    /// The 0-based epoch of each series' first value.
    pub first: usize,
    /// The loss of each epoch.
    pub loss: Vec<f32>,
    /// Empty without a validation split.
    pub val_loss: Vec<f32>,
    /// Each metric's values, in `config.metrics`'s order.
    pub metrics: Vec<Vec<f32>>,
    /// The same on the validation rows (empty without a split).
    pub val_metrics: Vec<Vec<f32>>,
}

impl EpochRows {
    /// A whole run's history, every epoch from 0, of a run of `config`.
    pub fn whole(output: &TrainOutput, config: &TrainConfig) -> Self {
        let metrics = config.metrics.len();
        let series = |range: std::ops::Range<usize>| {
            output.metric_history[range]
                .iter()
                .map(|(_, values)| values.clone())
                .collect()
        };
        Self {
            first: 0,
            loss: output.loss_history.clone(),
            val_loss: output.val_loss_history.clone(),
            metrics: series(0..metrics),
            val_metrics: series(metrics..output.metric_history.len()),
        }
    }

    /// Epochs held.
    pub fn len(&self) -> usize {
        self.loss.len()
    }

    /// Whether no epoch is held.
    pub fn is_empty(&self) -> bool {
        self.loss.is_empty()
    }
}

/// What one submission of a recorded GPU run streams back for the shadow
/// check: the steps it ran and the epochs it finished.
#[derive(Debug, Clone, Default)]
pub struct DeviceSteps {
    /// Its steps' records, in step order.
    pub records: Vec<StepRecord>,
    /// The history's rows of the epochs it finished.
    pub epochs: EpochRows,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_names_the_1_based_epoch_and_batch_of_a_step() {
        let at = |step, batches| {
            let d = Diverged::at_step(step, batches);
            (d.epoch, d.batch, d.to_string())
        };
        let (epoch, batch, text) = at(12, 10);
        assert_eq!((epoch, batch), (2, 3));
        assert!(
            text.starts_with("training diverged at epoch 2 (batch 3 of 10): "),
            "{text}"
        );
        let (epoch, batch, text) = at(1, 1);
        assert_eq!((epoch, batch), (2, 1));
        assert!(text.starts_with("training diverged at epoch 2: "), "{text}");
        assert_eq!(at(0, 7).0, 1);
    }
}
