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
//! **Chaining.** Records of consecutive steps must hand the state on bit for
//! bit (the after-state of one is the before-state of the next), the first
//! step must start from the initial weights with m = v = 0, and the last
//! must end in the trained model: with every step recorded, that covers the
//! whole run.

use crate::activation::Activation;
use crate::compare::Comparison;
use crate::cpu::{self, Backprop, GatheredBatch};
use crate::loss::Loss;
use crate::model::{DenseLayout, Model};
use crate::optimizer::adam_update;
pub use crate::rounding::apart;
use crate::rounding::{Bounded, DIVISION_APART, FLUSH, ONE_OP, SQRT_APART};
use crate::step::REDUCE_BLOCK;
use crate::training::{EarlyStopping, TrainConfig, Watch};
pub use crate::training::{StepRecord, TrainState};
use serde::Serialize;

/// The largest difference of one kind, as a fraction of its bound (above 1:
/// outside the tolerance), and where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Worst {
    /// |device - CPU| / bound.
    pub ratio: f64,
    /// 0-based training step of the difference (for an epoch's loss, the
    /// epoch's first step).
    pub step: u64,
    /// Parameter index (0 for a loss).
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
}

/// The verdict of a shadow check.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowCheck {
    /// Number of step records checked.
    pub steps_checked: usize,
    /// The worst gradient (index: parameter).
    pub gradients: Worst,
    /// The worst step loss, and the worst epoch loss of the history where an
    /// epoch's steps were all recorded (index: the 0-based epoch).
    pub losses: Worst,
    /// Weights, m and v after the update (index: parameter, then
    /// `count + p` for m, `2 count + p` for v).
    pub states: Worst,
    /// Broken hand-overs between records, or from the initial state or to
    /// the final model: each described.
    pub chain_breaks: Vec<String>,
    /// The verdict: no broken hand-over and every worst ratio at most 1.
    pub within_tolerance: bool,
}

/// The verdict of `--compare` (and of the browser page's check): the shadow
/// check; when not one step could be recorded for it, the whole-run
/// comparison instead. `Err` says why the runs disagree.
pub fn verdict(check: &ShadowCheck, comparison: Option<&Comparison>) -> Result<(), String> {
    if !check.within_tolerance {
        return Err(
            "the shadow check failed: the GPU's training steps differ from the CPU \
                    reference's beyond their rounding bounds"
                .into(),
        );
    }
    match comparison {
        Some(comparison) if check.steps_checked == 0 && !comparison.within_tolerance => {
            Err(format!(
                "no training step could be recorded for the shadow check, and the GPU and the CPU \
             reference differ beyond the whole-run tolerance ({} relative loss, {} weight)",
                comparison.tolerance.loss_relative, comparison.tolerance.weight
            ))
        }
        _ => Ok(()),
    }
}

/// What a device's run gave: its records of training steps (in step
/// order), its loss history and the trained model.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRun<'a> {
    /// The device's step records, in step order.
    pub records: &'a [StepRecord],
    /// The device's loss per epoch (index 0 is epoch 1).
    pub loss_history: &'a [f32],
    /// The device's validation loss per epoch (empty without a split).
    pub val_loss_history: &'a [f32],
    /// The model the device's run ended with.
    pub trained: &'a Model,
}

/// Checks a device's run of `config` from `initial`: every record (see the
/// module's notes), the hand-overs between them, and, where every step of
/// an epoch was recorded, the epoch's loss in the history against its
/// steps' recorded losses (Keras's size-weighted mean).
pub fn check_steps(initial: &Model, config: &TrainConfig, run: DeviceRun<'_>) -> ShadowCheck {
    let DeviceRun {
        records,
        loss_history,
        val_loss_history,
        trained,
    } = run;
    let validation_rows = config.validation_rows();
    let (validation_x, validation_y) = (
        config.data.rows(validation_rows.clone()).0,
        config.data.rows(validation_rows.clone()).1,
    );
    let mut validation = Vec::new();
    let batching = config.batching();
    let adam = config.adam();
    let constants = adam.constants();
    let total_steps = config.epochs as u64 * batching.steps_per_epoch as u64;
    let step_sizes = adam.step_size_table(total_steps);
    let mut chain_breaks = Vec::new();
    // The step whose after-state is the trained model: the last one run,
    // or with restore_best_weights the best epoch's last. Early stopping's
    // verdict is replayed from the device's own history first.
    let per_epoch = batching.steps_per_epoch as u64;
    let mut model_step = total_steps.checked_sub(1);
    if let Some(stopping) = &config.early_stopping {
        let replay = replay_early_stopping(stopping, config, loss_history, val_loss_history);
        let (epochs_run, best_epoch) = replay;
        if epochs_run != loss_history.len() {
            chain_breaks.push(format!(
                "the device ran {} epochs, but early stopping on its own history stops after {}",
                loss_history.len(),
                epochs_run
            ));
        }
        let kept = if stopping.restore_best_weights {
            best_epoch
        } else {
            epochs_run
        };
        model_step = (kept as u64 * per_epoch).checked_sub(1);
    }
    let architecture = initial.architecture();
    let layers = architecture.layers();
    let count = initial.params().len();
    let mut backprop = Backprop::new(architecture, config.loss, batching.batch_size as usize);
    let mut cpu_gradients = vec![0.0f32; count];
    let (mut gradients, mut losses, mut states) =
        (Worst::default(), Worst::default(), Worst::default());
    let mut gathered = GatheredBatch::default();

    for (position, record) in records.iter().enumerate() {
        let step = record.step;
        if step == 0 && record.before != TrainState::initial(initial) {
            chain_breaks.push("step 1 does not start from the initial weights".into());
        }
        if let Some(previous) = position.checked_sub(1).map(|p| &records[p])
            && previous.step + 1 == step
            && previous.after != record.before
        {
            chain_breaks.push(format!(
                "step {} does not start where step {} ended",
                step + 1,
                step
            ));
        }
        if Some(step) == model_step && record.after.weights != trained.params() {
            chain_breaks.push(format!(
                "the trained model is not the weights after step {}",
                step + 1
            ));
        }

        let batch = batching.batch(step);
        gathered.gather(&config.data, &batching, batch);
        let (x, y) = gathered.view(&config.data, &batching, batch);
        let weights = &record.before.weights;
        let loss = backprop.loss_and_gradients(weights, x, y, &mut cpu_gradients);
        let bounds = step_bounds(&layers, config.loss, weights, x, y);
        losses.consider(step, 0, record.loss, loss, bounds.loss);
        let compared = record.gradients.iter().zip(&cpu_gradients);
        for (p, ((&device, &cpu), &bound)) in compared.zip(&bounds.gradients).enumerate() {
            gradients.consider(step, p, device, cpu, bound);
        }

        // After an epoch's last update: its validation loss, from the
        // device's updated weights.
        let epoch = batch.epoch as usize;
        if batch.ends_epoch(&batching)
            && let Some(&device) = val_loss_history.get(epoch)
        {
            let after = &record.after.weights;
            let rows = validation_rows.clone();
            let n = rows.len();
            let scored = (config.loss, &[][..]);
            cpu::validation_losses(after, &layers, scored, &config.data, rows, &mut validation);
            let partials = cpu::validation_partials(&validation, n);
            let cpu_loss = cpu::validation_loss(&partials[0], n);
            let roundings = n.min(REDUCE_BLOCK) + n.div_ceil(REDUCE_BLOCK);
            let bound = bounds_with(
                &layers,
                config.loss,
                after,
                validation_x,
                validation_y,
                roundings,
            );
            losses.consider(step, epoch, device, cpu_loss, bound.loss);
        }

        let alpha = step_sizes[(step as usize).min(step_sizes.len() - 1)];
        for p in 0..count {
            let (w, g) = (record.before.weights[p], record.gradients[p]);
            let (mut m, mut v) = (record.before.m[p], record.before.v[p]);
            let bound = adam_bounds(w, g, m, v, alpha, &constants);
            let updated = adam_update(w, g, &mut m, &mut v, alpha, &constants);
            states.consider(step, p, record.after.weights[p], updated, bound.weight);
            states.consider(step, count + p, record.after.m[p], m, bound.m);
            states.consider(step, 2 * count + p, record.after.v[p], v, bound.v);
        }
    }
    check_epoch_losses(config, records, loss_history, &mut losses);
    let within_tolerance =
        chain_breaks.is_empty() && gradients.holds() && losses.holds() && states.holds();
    ShadowCheck {
        steps_checked: records.len(),
        gradients,
        losses,
        states,
        chain_breaks,
        within_tolerance,
    }
}

/// Early stopping run over a device's loss (or val_loss) history as the
/// kernels run it: the epochs it lets run and the best epoch (1-based).
fn replay_early_stopping(
    stopping: &EarlyStopping,
    config: &TrainConfig,
    loss_history: &[f32],
    val_loss_history: &[f32],
) -> (usize, usize) {
    let watched = if config.validation_rows().is_empty() {
        loss_history
    } else {
        val_loss_history
    };
    let mut watch = Watch::default();
    for (epoch, &value) in watched.iter().enumerate() {
        if stopping.watch(&mut watch, epoch, value) {
            return (epoch + 1, watch.best_epoch);
        }
    }
    (config.epochs, watch.best_epoch)
}

/// Each epoch whose steps were all recorded: its loss in the history against
/// `sum(loss_k * size_k) / samples` of the recorded step losses, added in
/// step order as the kernels do (the index of a mismatch is the epoch).
fn check_epoch_losses(
    config: &TrainConfig,
    records: &[StepRecord],
    loss_history: &[f32],
    worst: &mut Worst,
) {
    let batching = config.batching();
    let per_epoch = batching.steps_per_epoch as usize;
    let samples = batching.samples as f64;
    for epoch_records in records.chunks(per_epoch) {
        let first = epoch_records[0].step;
        let whole_epoch = first % per_epoch as u64 == 0
            && epoch_records.len() == per_epoch
            && epoch_records
                .iter()
                .enumerate()
                .all(|(k, r)| r.step == first + k as u64);
        if !whole_epoch {
            continue;
        }
        let epoch = (first / per_epoch as u64) as usize;
        let Some(&device) = loss_history.get(epoch) else {
            continue;
        };
        let sizes = epoch_records
            .iter()
            .map(|r| batching.batch(r.step).size as f32);
        let total = epoch_records
            .iter()
            .zip(sizes.clone())
            .fold(0.0f32, |sum, (r, size)| sum + r.loss * size);
        let magnitude: f64 = epoch_records
            .iter()
            .zip(sizes)
            .map(|(r, size)| (r.loss as f64 * size as f64).abs())
            .sum();
        let mean = total as f64 / samples;
        let bound = apart(2 * per_epoch) * magnitude / samples
            + DIVISION_APART * (mean.abs() + apart(2 * per_epoch) * magnitude / samples);
        worst.consider(first, epoch, device, total / samples as f32, bound);
    }
}

/// How far a device's loss and gradients of one batch may be from the CPU
/// reference's, both computed from the same weights.
#[derive(Debug, Clone)]
pub struct StepBounds {
    /// Bound on each gradient, one per parameter.
    pub gradients: Vec<f64>,
    /// Bound on the batch's loss.
    pub loss: f64,
}

/// Bounds for one batch (see the module's notes): each value's forward and
/// backward differences carried through the network, then the blocked sums
/// over samples.
pub fn step_bounds(
    layers: &[DenseLayout],
    loss: Loss,
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
    bounds_with(layers, loss, weights, x, y, roundings)
}

/// [`step_bounds`] for sums over samples of `roundings` roundings each.
fn bounds_with(
    layers: &[DenseLayout],
    loss: Loss,
    weights: &[f32],
    x: &[f32],
    y: &[f32],
    roundings: usize,
) -> StepBounds {
    let samples = x.len() / layers[0].inputs;
    let units = layers.last().expect("one layer").units;
    let w = |index: usize| weights[index] as f64;
    // Per parameter (and the loss last): sum over samples of the
    // terms' magnitude products, and of their own differences.
    let mut magnitudes = vec![0.0f64; weights.len() + 1];
    let mut term_differences = vec![0.0f64; weights.len() + 1];
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
        let mut errors = Vec::with_capacity(units);
        for (j, &target) in y.iter().enumerate() {
            let output = activations.last().expect("the output layer")[j];
            let z = match output_layer.activation {
                Activation::Linear => output,
                _ => sums_of.last().expect("one layer")[j],
            };
            let target = Bounded::exact(target as f64);
            let error = loss.output_error(output, z, target, output_layer.activation, total);
            sample_loss = sample_loss + error.loss;
            errors.push(error.delta);
        }
        let sample_loss = sample_loss / Bounded::exact(units as f64);
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
    }
    let sum_bound = |p: usize| term_differences[p] + apart(roundings) * magnitudes[p];
    let gradients = (0..weights.len()).map(sum_bound).collect();
    let loss_sum = sum_bound(weights.len());
    let n = samples as f64;
    let loss_magnitude = magnitudes[weights.len()] / n;
    StepBounds {
        gradients,
        loss: loss_sum / n + DIVISION_APART * (loss_magnitude + loss_sum / n),
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
