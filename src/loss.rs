//! Keras's losses: what each output's error costs and the error fed back.
//!
//! Written once, generically over [`Scalar`] like the activations: the CPU
//! reference runs it in f32 with shaders/loss.wgsl's operations in their order
//! (`output_error`), the shadow check on bounded values. A batch's loss is
//! the mean of its samples' losses (Keras's `sum_over_batch_size`), so the
//! error fed back is each sample's derivative divided by the batch's size.
//! Keras's formulas, with their source lines: docs/losses.md.

use crate::activation::{Activation, Scalar, sigmoid};
use crate::error::{Result, fail};
use serde::{Deserialize, Serialize};

/// A loss, by its Keras name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Loss {
    /// `mean((y_hat - y)^2)`: the seed's loss.
    #[default]
    MeanSquaredError,
    /// `mean(|y_hat - y|)`; the derivative at 0 is 0 (TensorFlow's `sign`).
    MeanAbsoluteError,
    /// Keras's `huber` with its default delta 1: `0.5 e^2` where `|e| <= 1`,
    /// else `|e| - 0.5`.
    Huber,
    /// `-(y log p + (1 - y) log(1 - p))` of the output clipped to
    /// `[1e-7, 1 - 1e-7]` (Keras's epsilon), whose gradient is 0 outside
    /// the clip. After a sigmoid output layer Keras computes it from the
    /// layer's logits instead (its `_keras_logits` shortcut), and so does
    /// gpu-c2f.
    BinaryCrossentropy,
    /// `binary_crossentropy(from_logits=True)`: the output is a logit x,
    /// `max(x, 0) - x y + log(1 + exp(-|x|))`, derivative `sigmoid(x) - y`.
    BinaryCrossentropyFromLogits,
}

/// Keras's `epsilon()` (keras/src/backend/config.py), the clip of binary
/// cross-entropy's probabilities.
pub const EPSILON: f64 = 1e-7;

impl Loss {
    /// Every loss.
    pub const ALL: [Loss; 5] = [
        Loss::MeanSquaredError,
        Loss::MeanAbsoluteError,
        Loss::Huber,
        Loss::BinaryCrossentropy,
        Loss::BinaryCrossentropyFromLogits,
    ];

    /// The name the history records it under: Keras's function name, with
    /// `_from_logits` for the logits form.
    pub fn name(self) -> &'static str {
        match self {
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
            Loss::Huber => "huber",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::BinaryCrossentropyFromLogits => "binary_crossentropy_from_logits",
        }
    }

    /// The Keras names [`Loss::from_name`] takes (each loss once; the
    /// logits form is `binary_crossentropy` with `from_logits`).
    pub const KERAS_NAMES: [&'static str; 4] = [
        "mean_squared_error",
        "mean_absolute_error",
        "huber",
        "binary_crossentropy",
    ];

    /// The loss of a Keras name or alias (`mse`, `mae`,
    /// `mean_squared_error`, ...), in its logits form when `from_logits`
    /// (binary cross-entropy only). Unknown names list the known ones.
    pub fn from_name(name: &str, from_logits: bool) -> Result<Self> {
        let loss = match name {
            "mse" | "mean_squared_error" => Loss::MeanSquaredError,
            "mae" | "mean_absolute_error" => Loss::MeanAbsoluteError,
            "huber" => Loss::Huber,
            "binary_crossentropy" | "bce" => Loss::BinaryCrossentropy,
            _ => fail!(
                InvalidConfig,
                "unknown loss {name:?}; known: mse (mean_squared_error), mae \
                 (mean_absolute_error), huber, binary_crossentropy (bce)"
            ),
        };
        match (loss, from_logits) {
            (Loss::BinaryCrossentropy, true) => Ok(Loss::BinaryCrossentropyFromLogits),
            (_, false) => Ok(loss),
            (other, true) => fail!(
                InvalidConfig,
                "--from-logits applies to binary_crossentropy only, not {}",
                other.name()
            ),
        }
    }

    /// Whether the targets must be probabilities, in [0, 1].
    pub fn needs_probabilities(self) -> bool {
        matches!(
            self,
            Loss::BinaryCrossentropy | Loss::BinaryCrossentropyFromLogits
        )
    }

    /// One output's loss and the error fed back, dL/dz, for a batch of
    /// `total` samples: `output` is the network's output, `z` the output
    /// layer's sum (the same value for a linear layer), `activation` that
    /// layer's. loss.wgsl's functions and the `output_error_of` the module
    /// generator writes for the loss (src/gpu/module.rs), operation for
    /// operation.
    pub fn output_error<S: Scalar>(
        self,
        output: S,
        z: S,
        target: S,
        activation: Activation,
        total: S,
    ) -> OutputError<S> {
        let one = S::of(1.0);
        if self.needs_probabilities() && activation == Activation::Sigmoid {
            // Keras's `_keras_logits`: the sigmoid's input, not its output
            // (with `from_logits=True` too, where Keras warns).
            return OutputError {
                loss: logits_crossentropy(z, target),
                delta: (sigmoid(z) - target) / total,
            };
        }
        let r = output - target;
        let (loss, derivative) = match self {
            Loss::MeanSquaredError => (r * r, S::of(2.0) * r),
            Loss::MeanAbsoluteError => (r.abs(), sign(r)),
            Loss::Huber => {
                // Keras's `abs_error <= delta` is the quadratic side.
                let linear = r.abs() - one;
                (
                    linear.if_positive(|| r.abs() - S::of(0.5), || S::of(0.5) * (r * r)),
                    linear.if_positive(|| sign(r), || r),
                )
            }
            Loss::BinaryCrossentropy => {
                let p = output.clamp(EPSILON, 1.0 - EPSILON);
                let loss = -(target * p.ln() + (one - target) * (one - p).ln());
                let inside = -(target / p) + (one - target) / (one - p);
                let zero = || S::of(0.0);
                let above = || (output - S::of(1.0 - EPSILON)).if_positive(zero, || inside);
                (loss, (S::of(EPSILON) - output).if_positive(zero, above))
            }
            Loss::BinaryCrossentropyFromLogits => (
                logits_crossentropy(output, target),
                sigmoid(output) - target,
            ),
        };
        let delta = derivative / total;
        OutputError {
            loss,
            delta: if activation.is_linear() {
                delta
            } else {
                delta * activation.derivative(z)
            },
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One sample's loss and the error it feeds back (dL/dz of the output layer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputError<S> {
    /// The sample's loss (summed over the batch, then divided by its size).
    pub loss: S,
    /// dL/dz: the loss's derivative over the batch's size, times the
    /// output activation's derivative.
    pub delta: S,
}

/// `sign(x)`: 1, -1, or 0 at 0 (TensorFlow's gradient of `abs`).
fn sign<S: Scalar>(x: S) -> S {
    x.if_positive(
        || S::of(1.0),
        || (-x).if_positive(|| S::of(-1.0), || S::of(0.0)),
    )
}

/// TensorFlow's `sigmoid_cross_entropy_with_logits`:
/// `max(x, 0) - x y + log(1 + exp(-|x|))`.
fn logits_crossentropy<S: Scalar>(x: S, y: S) -> S {
    (x.max0() - x * y) + (S::of(1.0) + (-x.abs()).exp()).ln()
}

/// A Keras metric tracked per epoch (`compile(metrics=[...])`), computed
/// from the same forward pass as the loss, before the batch's update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Metric {
    /// `(y_hat - y)^2`.
    MeanSquaredError,
    /// `|y_hat - y|`.
    MeanAbsoluteError,
    /// Binary cross-entropy, as the loss computes it.
    BinaryCrossentropy,
    /// Keras's `binary_accuracy`: 1 where `(y_hat > 0.5) == y`, else 0.
    BinaryAccuracy,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 4] = [
        Metric::MeanSquaredError,
        Metric::MeanAbsoluteError,
        Metric::BinaryCrossentropy,
        Metric::BinaryAccuracy,
    ];

    /// The Keras names [`Metric::from_name`] takes, each metric once.
    pub const KERAS_NAMES: [&'static str; 4] = [
        "mean_squared_error",
        "mean_absolute_error",
        "binary_crossentropy",
        "binary_accuracy",
    ];

    /// The metric of a Keras name or alias (`mse`, `mae`, `accuracy`,
    /// `binary_accuracy`, ...); unknown names list the known ones.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "mse" | "mean_squared_error" => Metric::MeanSquaredError,
            "mae" | "mean_absolute_error" => Metric::MeanAbsoluteError,
            "bce" | "binary_crossentropy" => Metric::BinaryCrossentropy,
            "accuracy" | "acc" | "binary_accuracy" => Metric::BinaryAccuracy,
            _ => fail!(
                InvalidConfig,
                "unknown metric {name:?}; known: mse (mean_squared_error), mae \
                 (mean_absolute_error), binary_crossentropy (bce), accuracy (binary_accuracy)"
            ),
        })
    }

    /// One output unit's value (`metric_values` in a job's module): a sample's is
    /// the mean over its units, an epoch's the mean over its samples
    /// (Keras's `MeanMetricWrapper`).
    pub fn value<S: Scalar>(self, output: S, z: S, target: S, activation: Activation) -> S {
        let r = output - target;
        match self {
            Metric::MeanSquaredError => r * r,
            Metric::MeanAbsoluteError => r.abs(),
            Metric::BinaryCrossentropy => {
                let one = S::of(1.0);
                Loss::BinaryCrossentropy
                    .output_error(output, z, target, activation, one)
                    .loss
            }
            Metric::BinaryAccuracy => {
                let predicted = (output - S::of(0.5)).if_positive(|| S::of(1.0), || S::of(0.0));
                let miss = (target - predicted).abs();
                miss.if_positive(|| S::of(0.0), || S::of(1.0))
            }
        }
    }
}
