//! The run's report: one structure, rendered as text for people or as one
//! JSON object for programs.

use crate::gpu::GpuInfo;
use crate::model::DenseWeights;
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

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    pub celsius: f32,
    pub fahrenheit: f32,
}

/// Milliseconds spent in each part of the run. The GPU-only parts are
/// absent for the CPU reference.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimingsMs {
    /// Instance, adapter and device (GPU); 0 for the CPU reference.
    pub setup: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<f64>,
    pub train: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readback: Option<f64>,
    /// Epochs per second of the training loop alone.
    pub epochs_per_second: f64,
}

pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub device: DeviceReport,
    /// The GPU schedule that ran (`fused` or `dispatch`); absent on the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<&'static str>,
    pub architecture: String,
    pub parameters: usize,
    pub samples: usize,
    pub epochs: usize,
    pub learning_rate: f32,
    /// The initialisation seed; absent when the weights came from `--init`.
    pub seed: Option<u64>,
    /// `glorot_uniform` or the model file the weights came from.
    pub init: String,
    pub loss_history: Vec<f32>,
    /// The last epoch's loss; null after 0 epochs.
    pub final_loss: Option<f32>,
    /// 100 degrees first, then every `--predict` value.
    pub predictions: Vec<Prediction>,
    pub layers: Vec<DenseWeights>,
    pub timings_ms: TimingsMs,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }

    /// The announcement printed before training, as the seed program does.
    pub fn start_line(&self) -> String {
        format!(
            "Training a {} network ({} parameters) on {} samples for {} epochs: Adam(learning_rate={}), mean squared error, {}...",
            self.architecture,
            self.parameters,
            self.samples,
            self.epochs,
            self.learning_rate,
            match self.seed {
                Some(seed) => format!("glorot_uniform init, seed {seed}"),
                None => format!("weights from {}", self.init),
            }
        )
    }

    /// The human report, after training.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let t = &self.timings_ms;
        let _ = writeln!(out, "Device:      {}", self.device.describe());
        if let Some(schedule) = self.schedule {
            let _ = writeln!(out, "Schedule:    {schedule}");
        }
        let _ = writeln!(
            out,
            "Trained:     {} epochs in {:.2} ms ({:.0} epochs/s)",
            self.epochs, t.train, t.epochs_per_second
        );
        match (self.final_loss, self.loss_history.first()) {
            (Some(last), Some(first)) => {
                let _ = writeln!(out, "Final loss:  {last} (epoch 1: {first})");
            }
            _ => {
                let _ = writeln!(out, "Final loss:  none (0 epochs: the untrained model)");
            }
        }
        for p in &self.predictions {
            let _ = writeln!(out, "Prediction:  {} °C -> {} °F", p.celsius, p.fahrenheit);
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
        out
    }
}
