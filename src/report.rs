//! The run's report: one structure, rendered as text for people or as one
//! JSON object for programs.

use crate::compare::Comparison;
use crate::data::ColumnNames;
use crate::gpu::GpuInfo;
use crate::gpu::trainer::GpuTimings;
use crate::model::{DenseWeights, Model};
use crate::shadow::power::EpochPower;
use crate::shadow::{Certificate, ShadowCheck, Worst};
use crate::training::{TrainConfig, TrainOutput};
use serde::Serialize;
use std::fmt::Write;
use std::time::Duration;

/// Which device trained: a GPU adapter, or the CPU reference (serialised as
/// the string `"cpu-reference"`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum DeviceReport {
    Gpu(GpuInfo),
    CpuReference(&'static str),
}

impl DeviceReport {
    pub fn cpu_reference() -> Self {
        DeviceReport::CpuReference("cpu-reference")
    }

    /// The adapter's name, or "CPU reference".
    pub fn short_name(&self) -> &str {
        match self {
            DeviceReport::Gpu(info) => &info.name,
            DeviceReport::CpuReference(_) => "CPU reference",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            DeviceReport::Gpu(info) => format!(
                "{} ({}, {}{})",
                info.name,
                info.backend,
                info.device_type,
                if info.driver.is_empty() {
                    String::new()
                } else {
                    format!(", driver {}", info.driver)
                }
            ),
            DeviceReport::CpuReference(_) => "CPU reference (plain Rust f32)".to_string(),
        }
    }
}

/// The network's outputs for one row of inputs, written under the data's
/// column names (`{"celsius": 100, "fahrenheit": 211.7}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub input: Vec<f32>,
    pub output: Vec<f32>,
    pub columns: ColumnNames,
}

impl Serialize for Prediction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let names = &self.columns;
        let mut map = serializer.serialize_map(Some(names.x.len() + names.y.len()))?;
        for (name, value) in names.x.iter().zip(&self.input) {
            map.serialize_entry(name, value)?;
        }
        for (name, value) in names.y.iter().zip(&self.output) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Prediction {
    /// `100 °C -> 211.7 °F`, or `x1 = 1.5, x2 = 2 -> y = 0.99` for other
    /// columns.
    fn describe(&self) -> String {
        let names = &self.columns;
        if names.are_temperatures() {
            return format!("{} °C -> {} °F", self.input[0], self.output[0]);
        }
        format!(
            "{} -> {}",
            named_values(&names.x, &self.input),
            named_values(&names.y, &self.output)
        )
    }
}

/// `a = 1, b = 2`.
fn named_values(names: &[String], values: &[f32]) -> String {
    let pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    pairs.join(", ")
}

/// `[(name, values)]` as a JSON object `{name: values}`, in order.
fn as_map<S: serde::Serializer>(
    pairs: &[(String, Vec<f32>)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (name, values) in pairs {
        map.serialize_entry(name, values)?;
    }
    map.end()
}

/// Early stopping's settings and how it ended the run.
#[derive(Debug, Clone, Serialize)]
pub struct EarlyStopReport {
    pub monitor: &'static str,
    pub patience: usize,
    pub min_delta: f32,
    pub restore_best_weights: bool,
    /// The 1-based epoch after which training stopped; null when every
    /// epoch ran.
    pub stopped_epoch: Option<usize>,
    /// The best epoch (1-based) and its monitored value.
    pub best_epoch: usize,
    pub best: f32,
    /// Whether the reported weights are the best epoch's.
    pub restored: bool,
}

impl EarlyStopReport {
    fn describe(&self, epochs: usize) -> String {
        let ran = match self.stopped_epoch {
            Some(epoch) => format!(
                "stopped after epoch {epoch} of {epochs}: {} did not improve by more than {} \
                 for {} epoch(s)",
                self.monitor, self.min_delta, self.patience
            ),
            None => format!("ran all {epochs} epochs"),
        };
        let kept = if self.restored {
            "kept the weights of"
        } else {
            "the best was"
        };
        format!(
            "{ran}; {kept} epoch {} ({} {})",
            self.best_epoch,
            self.monitor,
            readable(self.best)
        )
    }
}

/// Milliseconds spent in each part of the run. The GPU-only parts are
/// absent for the CPU reference.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimingsMs {
    /// Instance, adapter and device (GPU); 0 for the CPU reference.
    pub setup: f64,
    /// Shader module and pipeline creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<f64>,
    /// Buffer creation and upload of weights, data and tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<f64>,
    /// The training loop as the host sees it: recording, submitting, waiting.
    pub train: f64,
    /// The GPU's own time in the training passes (timestamp queries); null
    /// where the adapter does not support them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_train: Option<Option<f64>>,
    /// Copying the loss history and weights back and mapping them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readback: Option<f64>,
    /// Epochs per second of the training loop alone.
    pub epochs_per_second: f64,
}

/// A number as people read it: the shortest decimal that round-trips,
/// switching to scientific notation below 1e-4 and from 1e7 in magnitude,
/// where the plain form is a run of zeros (`6.509285e-9`, not
/// `0.000000006509285`). The JSON report keeps the plain, full value.
pub fn readable(value: f32) -> String {
    let magnitude = value.abs();
    if value != 0.0 && magnitude.is_finite() && !(1e-4..1e7).contains(&magnitude) {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub device: DeviceReport,
    /// The GPU schedule that ran (`fused`, `samples` or `dispatch`); absent
    /// on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<&'static str>,
    /// GPU command buffers of training work and buffers read back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submits: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readbacks: Option<usize>,
    /// Submissions `timings_ms.gpu_train` covers (all of them unless a run
    /// has more than `gpu::trainer::MAX_TIMED_PASSES`; 0 without timestamp
    /// queries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timed_submits: Option<usize>,
    pub architecture: String,
    pub parameters: usize,
    pub samples: usize,
    pub epochs: usize,
    pub learning_rate: f32,
    /// The loss minimised and recorded in `loss_history` (Keras's name).
    pub loss: &'static str,
    /// The data's input and target columns, which name the predictions.
    pub columns: ColumnNames,
    /// The initialisation seed; null when the weights came from `--init`.
    pub seed: Option<u64>,
    /// The seed of the per-epoch shuffle (and of `--samples` data).
    pub shuffle_seed: u64,
    /// Whether batches were drawn from a new permutation each epoch
    /// (`--shuffle`; with one batch there is nothing to shuffle).
    pub shuffle: bool,
    /// `glorot_uniform` or the model file the weights came from.
    pub init: String,
    /// How Adam started: `fresh` (and why, with `--init`), or `resumed
    /// after N steps from FILE`.
    pub adam_start: String,
    pub loss_history: Vec<f32>,
    /// The last epoch's loss; null after 0 epochs.
    pub final_loss: Option<f32>,
    /// The fraction of the rows held out (`--validation-split`) and how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_samples: Option<usize>,
    /// Each epoch's loss on the held-out rows, after its updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss_history: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_val_loss: Option<f32>,
    /// Each `--metrics` metric per epoch under its Keras name (and `val_`
    /// + name with a validation split).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "as_map")]
    pub metrics: Vec<(String, Vec<f32>)>,
    /// How early stopping ended the run (`--patience`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopReport>,
    /// 100 degrees first, then every `--predict` value.
    pub predictions: Vec<Prediction>,
    pub layers: Vec<DenseWeights>,
    pub timings_ms: TimingsMs,
    /// GPU against the CPU reference over the whole run (`--compare`): for
    /// information, since two correct devices' trajectories may part in
    /// Adam's chaotic stretches; the verdict is `shadow_check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// The GPU's recorded training steps replayed on the CPU reference from
    /// the GPU's own state (`--compare`): the verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow_check: Option<ShadowCheck>,
    /// The check's certificate (`--compare`): what the page's "Check my
    /// GPU" downloads, for the same job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Certificate>,
}

impl Report {
    /// A report of the job before training (CPU reference device until a
    /// GPU is chosen).
    pub fn new(initial: &Model, config: &TrainConfig, seed: Option<u64>, init: String) -> Self {
        let early_stopping = config.early_stopping.map(|e| EarlyStopReport {
            monitor: config.monitor(),
            patience: e.patience,
            min_delta: e.min_delta,
            restore_best_weights: e.restore_best_weights,
            stopped_epoch: None,
            best_epoch: 0,
            best: f32::NAN,
            restored: false,
        });
        Self {
            device: DeviceReport::cpu_reference(),
            schedule: None,
            submits: None,
            readbacks: None,
            timed_submits: None,
            architecture: initial.architecture().describe(),
            parameters: initial.architecture().param_count(),
            samples: config.training_len(),
            epochs: config.epochs,
            learning_rate: config.learning_rate,
            loss: config.loss.name(),
            columns: ColumnNames::default(),
            seed,
            shuffle_seed: config.shuffle_seed,
            shuffle: config.batching().shuffle,
            init,
            adam_start: "fresh".into(),
            loss_history: Vec::new(),
            final_loss: None,
            validation_split: (config.validation_split > 0.0).then_some(config.validation_split),
            validation_samples: (config.validation_split > 0.0)
                .then(|| config.validation_rows().len()),
            val_loss_history: None,
            final_val_loss: None,
            metrics: Vec::new(),
            early_stopping,
            predictions: Vec::new(),
            layers: Vec::new(),
            timings_ms: TimingsMs::default(),
            comparison: None,
            shadow_check: None,
            certificate: None,
        }
    }

    pub fn record_gpu_timings(&mut self, timings: &GpuTimings) {
        self.schedule = Some(timings.schedule.name());
        self.submits = Some(timings.submits);
        self.readbacks = Some(timings.readbacks);
        self.timed_submits = Some(timings.timed_submits);
        let t = &mut self.timings_ms;
        t.pipelines = Some(millis(timings.pipelines));
        t.upload = Some(millis(timings.upload));
        t.train = millis(timings.train);
        t.gpu_train = Some(timings.gpu_train.map(millis));
        t.readback = Some(millis(timings.readback));
    }

    /// Loss history, weights, predictions (100 first) and the epoch rate.
    pub fn record_results(&mut self, output: &TrainOutput, extra_predictions: &[Vec<f32>]) {
        let model = &output.model;
        self.final_loss = output.loss_history.last().copied();
        self.loss_history = output.loss_history.clone();
        if self.validation_split.is_some() {
            self.final_val_loss = output.val_loss_history.last().copied();
            self.val_loss_history = Some(output.val_loss_history.clone());
        }
        self.metrics = output.metric_history.clone();
        if let (Some(stop), Some(report)) = (output.early_stop, &mut self.early_stopping) {
            report.stopped_epoch = stop.stopped_epoch;
            report.best_epoch = stop.best_epoch;
            report.best = stop.best;
            report.restored = stop.restored;
        }
        // 100 °C is the tutorial's question; other data has no such input.
        let first = self.columns.are_temperatures().then(|| vec![100.0]);
        self.predictions = first
            .into_iter()
            .chain(extra_predictions.iter().cloned())
            .map(|input| Prediction {
                output: model.predict_row(&input),
                input,
                columns: self.columns.clone(),
            })
            .collect();
        self.layers = model.dense_weights();
        let seconds = output.train_time.as_secs_f64();
        self.timings_ms.epochs_per_second = if seconds > 0.0 {
            output.loss_history.len() as f64 / seconds
        } else {
            0.0
        };
    }

    /// The title of `--plot`: device, epochs and final loss.
    pub fn plot_title(&self) -> String {
        let loss = self.final_loss.map_or_else(|| "none".to_string(), readable);
        format!(
            "gpu-c2f {} on {}: {} epochs, final loss {loss}",
            self.architecture,
            self.device.short_name(),
            self.loss_history.len()
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// The announcement printed before training, as the seed program does.
    pub fn start_line(&self) -> String {
        format!(
            "Training a {} network ({} parameters) on {} samples for {} epochs: Adam(learning_rate={}), {}, {}...",
            self.architecture,
            self.parameters,
            self.samples,
            self.epochs,
            self.learning_rate,
            self.loss.replace('_', " "),
            match self.seed {
                Some(seed) => format!("glorot_uniform init, seed {seed}"),
                None => format!("weights from {}, Adam {}", self.init, self.adam_start),
            }
        )
    }

    /// The human report, after training.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let t = &self.timings_ms;
        let _ = writeln!(out, "Device:      {}", self.device.describe());
        if let (Some(schedule), Some(submits), Some(readbacks)) =
            (self.schedule, self.submits, self.readbacks)
        {
            let _ = writeln!(
                out,
                "Schedule:    {schedule} ({submits} submission(s), {readbacks} readback(s))"
            );
        }
        let _ = writeln!(
            out,
            "Trained:     {} epochs in {:.2} ms ({:.0} epochs/s)",
            self.loss_history.len(),
            t.train,
            t.epochs_per_second
        );
        match (self.final_loss, self.loss_history.first()) {
            (Some(last), Some(first)) => {
                let _ = writeln!(
                    out,
                    "Final loss:  {} (epoch 1: {})",
                    readable(last),
                    readable(*first)
                );
            }
            _ => {
                let _ = writeln!(out, "Final loss:  none (0 epochs: the untrained model)");
            }
        }
        if let Some(stop) = &self.early_stopping {
            let _ = writeln!(out, "Early stop:  {}", stop.describe(self.epochs));
        }
        let last_values: Vec<String> = self
            .metrics
            .iter()
            .filter_map(|(name, values)| Some(format!("{name} {}", readable(*values.last()?))))
            .collect();
        if !last_values.is_empty() {
            let _ = writeln!(out, "Metrics:     {} (last epoch)", last_values.join(", "));
        }
        if let (Some(last), Some(rows)) = (self.final_val_loss, self.validation_samples) {
            let _ = writeln!(
                out,
                "Validation:  val_loss {} on the last {rows} rows, held out",
                readable(last)
            );
        }
        for p in &self.predictions {
            let _ = writeln!(out, "Prediction:  {}", p.describe());
        }
        let _ = writeln!(
            out,
            "Weights (Keras get_weights() layout, kernel[input][unit]):"
        );
        for (index, layer) in self.layers.iter().enumerate() {
            let _ = writeln!(
                out,
                "  dense_{index} ({} -> {}): kernel {:?} bias {:?}",
                layer.kernel.len(),
                layer.bias.len(),
                layer.kernel,
                layer.bias
            );
        }
        let mut parts = vec![format!("setup {:.1} ms", t.setup)];
        for (name, value) in [
            ("pipelines", t.pipelines),
            ("upload", t.upload),
            ("train", Some(t.train)),
            ("readback", t.readback),
        ] {
            if let Some(ms) = value {
                parts.push(format!("{name} {ms:.2} ms"));
            }
        }
        let _ = writeln!(out, "Timings:     {}", parts.join(", "));
        match t.gpu_train {
            Some(Some(ms)) => {
                let passes = match (self.timed_submits, self.submits) {
                    (Some(timed), Some(all)) if timed < all => {
                        format!("the first {timed} of {all} training passes")
                    }
                    _ => "the training passes".to_string(),
                };
                let _ = writeln!(
                    out,
                    "GPU time:    {ms:.2} ms in {passes} (timestamp queries)"
                );
            }
            Some(None) => {
                let _ = writeln!(
                    out,
                    "GPU time:    not supported by this adapter (no timestamp queries)"
                );
            }
            None => {}
        }
        if let Some(check) = &self.shadow_check {
            write_shadow_check(check, &mut out);
        }
        if let Some(c) = &self.comparison {
            let _ = writeln!(
                out,
                "Trajectory:  GPU vs CPU reference over the whole run (information: correct devices may part in Adam's chaotic stretches), {} relative loss, {} weight",
                c.tolerance.loss_relative, c.tolerance.weight
            );
            let _ = writeln!(
                out,
                "  loss:        max {:e} absolute, {:e} relative (epoch {})",
                c.loss.absolute, c.loss.relative, c.loss.at
            );
            let _ = writeln!(
                out,
                "  weights:     max {:e} absolute, {:e} relative (parameter {})",
                c.weights.absolute, c.weights.relative, c.weights.at
            );
            let _ = writeln!(
                out,
                "  predictions: max {:e} absolute, {:e} relative ({})",
                c.predictions.absolute,
                c.predictions.relative,
                self.predictions
                    .get(c.predictions.at)
                    .map_or_else(String::new, |p| named_values(&self.columns.x, &p.input))
            );
            let _ = writeln!(
                out,
                "  result:      {}",
                if c.within_tolerance {
                    "within that tolerance"
                } else {
                    "beyond that tolerance (not a verdict)"
                }
            );
        }
        out
    }
}

/// The shadow check's lines of the text report.
fn write_shadow_check(check: &ShadowCheck, out: &mut String) {
    let which = match (check.steps_checked, check.steps_expected) {
        (_, 0) => "the run has no training steps",
        (checked, expected) if checked == expected => "every step",
        (checked, expected) if checked > expected => "more steps than the run should have run",
        _ => "NOT every step",
    };
    let _ = writeln!(
        out,
        "Shadow check: {} of {} training steps replayed on the CPU reference from the GPU's own state ({which})",
        check.steps_checked, check.steps_expected
    );
    let kinds = [
        ("gradients:", Some(&check.gradients), "parameter"),
        ("losses:", Some(&check.losses), "index"),
        ("metrics:", check.metrics.as_ref(), "metric"),
        ("states:", Some(&check.states), "value"),
    ];
    for (what, worst, index) in kinds {
        if let Some(worst) = worst {
            let _ = writeln!(out, "  {what:<12} {}", describe(worst, index));
        }
    }
    if let Some(power) = describe_power(&check.power) {
        let _ = writeln!(out, "  power:       {power}");
    }
    for chain_break in &check.chain_breaks {
        let _ = writeln!(out, "  chain:       {chain_break}");
    }
    for gap in &check.not_covered {
        let _ = writeln!(out, "  unchecked:   {gap}");
    }
    let verdict = if !check.not_covered.is_empty() {
        "NOT PASSED: part of the run was not checked"
    } else if check.within_tolerance && check.steps_checked > 0 {
        "every value within its rounding bound (see docs/agreement.md)"
    } else if check.within_tolerance {
        "nothing checked"
    } else if !check.chain_breaks.is_empty() {
        "FAILED: the run does not hang together (see the chain lines)"
    } else {
        "FAILED: a value beyond its rounding bound"
    };
    let _ = writeln!(out, "  result:      {verdict}");
}

/// "catches a gradient off by 1.2e-7 of itself (median over the epoch;
/// worst 3.1e-5) in epoch 1, by 0.84 (worst inf) in epoch 1000": the first
/// and last epochs.
fn describe_power(power: &[EpochPower]) -> Option<String> {
    let ratio = |value: Option<f64>| value.map_or("inf".to_string(), |v| format!("{v:.2e}"));
    let first = power.first()?;
    let mut text = format!(
        "catches a gradient off by {} of itself (median over the epoch; worst {}) in epoch {}",
        ratio(first.median),
        ratio(first.worst),
        first.epoch
    );
    if let Some(last) = power.last().filter(|last| last.epoch != first.epoch) {
        let _ = write!(
            text,
            ", by {} (worst {}) in epoch {}",
            ratio(last.median),
            ratio(last.worst),
            last.epoch
        );
    }
    Some(text)
}

/// "worst 0.06 of its bound (step 12, parameter 3: GPU x, CPU y)".
fn describe(worst: &Worst, index: &str) -> String {
    if worst.ratio == 0.0 {
        return "identical".to_string();
    }
    format!(
        "worst {:.3} of its bound (step {}, {index} {}: GPU {}, CPU {})",
        worst.ratio,
        worst.step + 1,
        worst.index,
        readable(worst.device),
        readable(worst.cpu)
    )
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn the_gpu_time_line_says_how_many_passes_it_covers() {
        use crate::{Model, TrainConfig, model::Architecture};
        let config = TrainConfig::seed();
        let model = Model::glorot_uniform(Architecture::seed(), 1);
        let mut report = super::Report::new(&model, &config, Some(1), "glorot_uniform".into());
        report.timings_ms.gpu_train = Some(Some(12.5));
        report.submits = Some(70_000);
        report.timed_submits = Some(65_536);
        assert!(
            report
                .to_text()
                .contains("GPU time:    12.50 ms in the first 65536 of 70000 training passes"),
            "{}",
            report.to_text()
        );
        report.timed_submits = Some(70_000);
        assert!(
            report
                .to_text()
                .contains("GPU time:    12.50 ms in the training passes"),
            "{}",
            report.to_text()
        );
    }

    #[test]
    fn small_and_huge_losses_print_in_scientific_notation() {
        assert_eq!(readable(0.000_000_006_509_285), "6.509285e-9");
        assert_eq!(readable(6.9e27), "6.9e27");
        assert_eq!(readable(0.063_045_55), "0.06304555");
        assert_eq!(readable(4234.2656), "4234.2656");
        assert_eq!(readable(0.0001), "0.0001");
        assert_eq!(readable(0.0), "0");
        assert_eq!(readable(f32::NAN), "NaN");
    }
}
