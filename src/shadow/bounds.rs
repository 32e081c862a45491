//! The shadow check's bounds (see src/shadow/mod.rs): how far a device's
//! values of one step may be from the CPU reference's, both from the same
//! state, each value's own bound from a rounding-error analysis of the
//! operations that produced it.

use crate::activation::Activation;
use crate::loss::{Loss, Metric};
use crate::model::DenseLayout;
use crate::rounding::{Bounded, DIVISION_APART, FLUSH, ONE_OP, SQRT_APART, apart};
use crate::step::REDUCE_BLOCK;

/// How far a device's loss, gradients and metrics of one batch may be from
/// the CPU reference's, all computed from the same weights.
#[derive(Debug, Clone)]
pub struct StepBounds {
    /// Bound on each gradient, one per parameter.
    pub gradients: Vec<f64>,
    /// Bound on the batch's loss (its mean over the samples).
    pub loss: f64,
    /// Bound on each metric's sum over the samples (a sample's value is
    /// the mean over its units).
    pub metric_sums: Vec<f64>,
    /// The sum of each metric's values' magnitudes.
    pub metric_magnitudes: Vec<f64>,
}

/// A bound on a mean `sum / count` on both sides, from a bound on their
/// sums and the sum of the magnitudes added: carried through the division,
/// plus the division's own rounding.
pub fn mean_bound(sum_bound: f64, magnitude: f64, count: f64) -> f64 {
    sum_bound / count + DIVISION_APART * (magnitude / count + sum_bound / count)
}

/// Bounds for one batch (see the module's notes): each value's forward and
/// backward differences carried through the network, then the blocked sums
/// over samples.
pub fn step_bounds(
    layers: &[DenseLayout],
    (loss, metrics): (Loss, &[Metric]),
    weights: &[f32],
    x: &[f32],
    y: &[f32],
) -> StepBounds {
    // The blocked sum adds at most REDUCE_BLOCK values a level.
    let mut roundings = 0;
    let mut length = x.len() / layers[0].inputs;
    loop {
        roundings += length.min(REDUCE_BLOCK);
        if length <= REDUCE_BLOCK {
            break;
        }
        length = length.div_ceil(REDUCE_BLOCK);
    }
    bounds_with(layers, (loss, metrics), weights, x, y, roundings)
}

/// [`step_bounds`] for sums over samples of `roundings` roundings each.
pub fn bounds_with(
    layers: &[DenseLayout],
    (loss, metrics): (Loss, &[Metric]),
    weights: &[f32],
    x: &[f32],
    y: &[f32],
    roundings: usize,
) -> StepBounds {
    let samples = x.len() / layers[0].inputs;
    let units = layers.last().expect("one layer").units;
    let w = |index: usize| weights[index] as f64;
    // Per parameter, then the loss, then each metric: sum over samples of
    // the terms' magnitude products, and of their own differences.
    let rows = weights.len() + 1 + metrics.len();
    let mut magnitudes = vec![0.0f64; rows];
    let mut term_differences = vec![0.0f64; rows];
    for (x, y) in x.chunks_exact(layers[0].inputs).zip(y.chunks_exact(units)) {
        // Forward: activations[l][j], and each layer's sums z.
        let inputs: Vec<Bounded> = x.iter().map(|&v| Bounded::exact(v as f64)).collect();
        let mut activations = vec![inputs];
        let mut sums_of = Vec::with_capacity(layers.len());
        for layer in layers {
            let inputs = activations.last().expect("the input layer");
            let outputs = (0..layer.units)
                .map(|j| {
                    let kernel = |i: usize| w(layer.kernel_offset + i * layer.units + j);
                    let bias = w(layer.bias_offset + j);
                    let sum: f64 = (0..layer.inputs)
                        .map(|i| inputs[i].value * kernel(i))
                        .sum::<f64>()
                        + bias;
                    let size: f64 = (0..layer.inputs)
                        .map(|i| inputs[i].magnitude() * kernel(i).abs())
                        .sum::<f64>()
                        + bias.abs();
                    let carried: f64 = (0..layer.inputs)
                        .map(|i| inputs[i].apart * kernel(i).abs())
                        .sum();
                    Bounded {
                        value: sum,
                        apart: apart(layer.inputs + 1) * size
                            + carried
                            + 2.0 * (layer.inputs + 1) as f64 * FLUSH,
                    }
                })
                .collect::<Vec<_>>();
            activations.push(outputs.iter().map(|&z| layer.activation.apply(z)).collect());
            sums_of.push(outputs);
        }
        // The sample's loss, the mean of its units', and each unit's output
        // error (`Loss::output_error` over N x units).
        let output_layer = layers.last().expect("one layer");
        let total = Bounded::exact((samples * units) as f32 as f64);
        let mut sample_loss = Bounded::exact(0.0);
        let mut sample_metrics = vec![Bounded::exact(0.0); metrics.len()];
        let mut errors = Vec::with_capacity(units);
        let activation = output_layer.activation;
        for (j, &target) in y.iter().enumerate() {
            let output = activations.last().expect("the output layer")[j];
            let z = match activation {
                Activation::Linear => output,
                _ => sums_of.last().expect("one layer")[j],
            };
            let target = Bounded::exact(target as f64);
            let error = loss.output_error(output, z, target, activation, total);
            sample_loss = sample_loss + error.loss;
            errors.push(error.delta);
            for (sum, metric) in sample_metrics.iter_mut().zip(metrics) {
                *sum = *sum + metric.value(output, z, target, activation);
            }
        }
        let units_count = Bounded::exact(units as f64);
        let sample_loss = sample_loss / units_count;
        // Backward: errors of each layer's inputs, last layer first;
        // `errors_of[l]` holds layer l's output errors.
        let mut errors_of = vec![Vec::new(); layers.len()];
        for (l, layer) in layers.iter().enumerate().rev() {
            errors_of[l] = errors.clone();
            if l == 0 {
                break;
            }
            let below = layers[l - 1].activation;
            errors = (0..layer.inputs)
                .map(|i| {
                    let kernel = |j: usize| w(layer.kernel_offset + i * layer.units + j);
                    let sum: f64 = (0..layer.units).map(|j| errors[j].value * kernel(j)).sum();
                    let size: f64 = (0..layer.units)
                        .map(|j| errors[j].magnitude() * kernel(j).abs())
                        .sum();
                    let carried: f64 = (0..layer.units)
                        .map(|j| errors[j].apart * kernel(j).abs())
                        .sum();
                    let error = Bounded {
                        value: sum,
                        apart: apart(layer.units) * size
                            + carried
                            + 2.0 * layer.units as f64 * FLUSH,
                    };
                    times_derivative(error, below, sums_of[l - 1][i])
                })
                .collect();
        }
        // This sample's gradient terms a[i] * err[j] (the bias's a is 1) and
        // the squared error r * r.
        let mut add = |index: usize, a: Bounded, e: Bounded| {
            magnitudes[index] += a.magnitude() * e.magnitude();
            term_differences[index] += a.apart * e.magnitude()
                + a.magnitude() * e.apart
                + ONE_OP * a.magnitude() * e.magnitude()
                + 4.0 * FLUSH;
        };
        let one = Bounded::exact(1.0);
        for ((layer, inputs), output_errors) in layers.iter().zip(&activations).zip(&errors_of) {
            for (j, &e) in output_errors.iter().enumerate() {
                for (i, &a) in inputs.iter().enumerate() {
                    add(layer.kernel_offset + i * layer.units + j, a, e);
                }
                add(layer.bias_offset + j, one, e);
            }
        }
        add(weights.len(), one, sample_loss);
        for (m, &sum) in sample_metrics.iter().enumerate() {
            add(weights.len() + 1 + m, one, sum / units_count);
        }
    }
    let sum_bound = |row: usize| term_differences[row] + apart(roundings) * magnitudes[row];
    let loss_row = weights.len();
    let metric_rows = loss_row + 1..rows;
    StepBounds {
        gradients: (0..loss_row).map(sum_bound).collect(),
        loss: mean_bound(sum_bound(loss_row), magnitudes[loss_row], samples as f64),
        metric_sums: metric_rows.clone().map(sum_bound).collect(),
        metric_magnitudes: magnitudes[metric_rows].to_vec(),
    }
}

/// An error times the derivative of a nonlinear `activation` at the sums
/// `z` (the kernels' `error * activation_derivative(z)`).
fn times_derivative(error: Bounded, activation: Activation, z: Bounded) -> Bounded {
    if activation.is_linear() {
        return error;
    }
    error * activation.derivative(z)
}

/// How far a device's Adam update may be from the CPU reference's, both from
/// the same weight `w`, gradient `g`, moments `m`, `v` and step size: each
/// value's few roundings (one fewer where a multiply-add fuses), carried
/// through the update's division and square root.
#[derive(Debug, Clone, Copy)]
pub struct AdamBounds {
    /// Bound on the updated weight.
    pub weight: f64,
    /// Bound on the updated first moment.
    pub m: f64,
    /// Bound on the updated second moment.
    pub v: f64,
}

/// Bounds on how far a device's Adam update of one parameter may be from
/// the CPU reference's ([`AdamBounds`]); `alpha` is the step's size.
pub fn adam_bounds(
    w: f32,
    g: f32,
    m: f32,
    v: f32,
    alpha: f32,
    c: &crate::optimizer::AdamConstants,
) -> AdamBounds {
    let (w, g, m, v, alpha) = (w as f64, g as f64, m as f64, v as f64, alpha as f64);
    let (c1, c2, epsilon) = (
        c.one_minus_beta_1 as f64,
        c.one_minus_beta_2 as f64,
        c.epsilon as f64,
    );
    // m' = m + (g - m) c1: three roundings.
    let new_m = m + (g - m) * c1;
    let m_apart = apart(3) * (m.abs() + (g - m).abs() * c1 + new_m.abs()) + 8.0 * FLUSH;
    // v' = v + (g g - v) c2: four roundings.
    let new_v = v + (g * g - v) * c2;
    let v_apart = apart(4) * (v.abs() + (g * g + v.abs()) * c2 + new_v.abs()) + 8.0 * FLUSH;
    // s = sqrt(v') + eps; q = m' alpha / s; w' = w - q.
    let s = new_v.sqrt() + epsilon;
    let s_apart = (new_v + v_apart).sqrt() - new_v.sqrt() + SQRT_APART * new_v.sqrt() + ONE_OP * s;
    let q = new_m * alpha / s;
    let low = (s - s_apart).max(epsilon / 2.0);
    let q_apart = (m_apart * alpha + q.abs() * s_apart) / low + (ONE_OP + DIVISION_APART) * q.abs();
    let weight = q_apart + ONE_OP * (w.abs() + q.abs() + q_apart);
    AdamBounds {
        weight: weight + 16.0 * FLUSH,
        m: m_apart,
        v: v_apart,
    }
}
