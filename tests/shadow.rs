//! The shadow check (src/shadow/) against simulated devices: a CPU trainer
//! written apart from the reference, with the arithmetic WGSL allows a real
//! GPU, pushed to its limits: every `a * b + c` a compiler may fuse
//! contracted into `f32::mul_add`, and sums taken in another order where
//! asked; the results of every addition, subtraction and multiplication
//! moved to the other neighbour of the exact value (WGSL's "correctly
//! rounded" allows either); divisions 2 ULP off the correctly rounded
//! result; square roots as `1.0 / inverseSqrt(x)` with both steps 2 ULP
//! off; `exp` (3 + 2|x| ULP), `log` (2^-21 absolute on [0.5, 2], else 3
//! ULP) and `tanh` (1e-5 absolute) off by all WGSL allows, always upward;
//! subnormal results flushed to zero. The activations', losses' and
//! metrics' formulas are the crate's, generic over [`Scalar`], evaluated in
//! this device's arithmetic ([`Device`]); the network, its sums over units
//! and samples, Adam, the history, validation and early stopping are
//! written here. It must pass; the same trainer with one mistake planted
//! must fail. The product code is never perturbed: only this test's device.

use gpu_c2f::activation::Scalar;
use gpu_c2f::shadow::{
    DeviceRun, DeviceSteps, EpochRows, ShadowCheck, StepCheck, StepRecord, TrainState, check_steps,
    verdict,
};
use gpu_c2f::step::REDUCE_BLOCK;
use gpu_c2f::training::{NamedMetric, Watch};
use gpu_c2f::{Activation, Architecture, Dataset, EarlyStopping, Loss, Model, TrainConfig};
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A mistake planted in the simulated device.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mistake {
    None,
    /// Every gradient times this (x0.5 is dropping the 2 of 2 r / N).
    GradientScale(f32),
    /// Bias gradients left at 0.
    DroppedBiasGradient,
    /// PyTorch's epsilon on sqrt(v-hat) instead of Keras's on sqrt(v).
    EpsilonOnVHat,
    /// Adam's t one step ahead.
    AdamTOffByOne,
    /// The shuffle drawn with another key.
    ShuffleKey,
    /// One sample of one batch (the first of step 5) read from the next
    /// position of the dataset: an off-by-one in an index.
    OneWrongSample,
    /// Unit 0 of the first hidden layer's activation derivative 5% off.
    OneUnitDerivative,
    /// The mean absolute error metric without its `abs`.
    MetricWithoutAbs,
    /// Every second step's update 1% too large.
    EverySecondUpdate,
    /// Early stopping that ignores min_delta.
    StoppingIgnoresMinDelta,
}

/// The order a device adds the terms of a sum in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    /// In index order, each term fused into the running sum.
    Fused,
    /// From the last term to the first (reassociated).
    Reversed,
}

/// `x` moved `ulps` ULPs up or down (a fixed pseudo-random choice by its
/// bits), as a GPU's division or square root may be.
fn off_by_ulps(x: f32, ulps: u32) -> f32 {
    let bits = x.to_bits();
    if !x.is_finite() || x == 0.0 || (bits & 0x7fff_ffff) <= ulps {
        return x;
    }
    let up = bits.wrapping_mul(0x9e37_79b9) >> 31 == 1;
    f32::from_bits(if up { bits + ulps } else { bits - ulps })
}

/// `x` moved `ulps` ULPs away from zero.
fn up_by_ulps(x: f32, ulps: u32) -> f32 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    f32::from_bits(x.to_bits() + ulps)
}

/// Division as a GPU may do it (WGSL: 2.5 ULP).
fn divide(a: f32, b: f32) -> f32 {
    flush(off_by_ulps(a / b, 2))
}

/// Square root as a GPU may do it: WGSL inherits it from 1 / inverseSqrt(x),
/// each 2 ULP off here (2 and 2.5 allowed).
fn square_root(x: f32) -> f32 {
    if x == 0.0 {
        return 0.0;
    }
    divide(1.0, off_by_ulps(1.0 / x.sqrt(), 2))
}

/// A result rounded to the other neighbour of the exact value than round to
/// nearest takes: one ULP off, away from the CPU's, as WGSL's "correctly
/// rounded" allows (either neighbour). Exact results stay.
fn other_neighbour(x: f32, exact: f64) -> f32 {
    if x as f64 == exact || !x.is_finite() {
        return x;
    }
    let toward = if exact > x as f64 { 1.0f32 } else { -1.0 };
    let bits = x.to_bits();
    let moved = if (x > 0.0) == (toward > 0.0) {
        bits + 1
    } else {
        bits.wrapping_sub(1)
    };
    flush(f32::from_bits(moved))
}

/// A subnormal result flushed to zero, as WGSL allows.
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

/// A value in the device's arithmetic: what the crate's activation, loss
/// and metric formulas compute in on this device.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct Device(f32);

impl Add for Device {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Device(other_neighbour(
            self.0 + other.0,
            self.0 as f64 + other.0 as f64,
        ))
    }
}

impl Sub for Device {
    type Output = Self;
    fn sub(self, other: Self) -> Self {
        Device(other_neighbour(
            self.0 - other.0,
            self.0 as f64 - other.0 as f64,
        ))
    }
}

impl Mul for Device {
    type Output = Self;
    fn mul(self, other: Self) -> Self {
        Device(other_neighbour(
            self.0 * other.0,
            self.0 as f64 * other.0 as f64,
        ))
    }
}

impl Div for Device {
    type Output = Self;
    fn div(self, other: Self) -> Self {
        Device(divide(self.0, other.0))
    }
}

impl Neg for Device {
    type Output = Self;
    fn neg(self) -> Self {
        Device(-self.0)
    }
}

impl Scalar for Device {
    fn of(value: f64) -> Self {
        Device(value as f32)
    }
    fn abs(self) -> Self {
        Device(self.0.abs())
    }
    fn max0(self) -> Self {
        Device(if self.0 > 0.0 { self.0 } else { 0.0 })
    }
    fn clamp(self, low: f64, high: f64) -> Self {
        Device(self.0.clamp(low as f32, high as f32))
    }
    fn exp(self) -> Self {
        // WGSL: 3 + 2 |x| ULP.
        let ulps = (3.0 + 2.0 * self.0.abs()).floor() as u32;
        Device(flush(up_by_ulps(self.0.exp(), ulps)))
    }
    fn ln(self) -> Self {
        // WGSL: 2^-21 absolute on [0.5, 2], 3 ULP elsewhere.
        let value = self.0.ln();
        if (0.5..=2.0).contains(&self.0) {
            let off = 1.0 / (1u32 << 21) as f32;
            Device(value + off * 0.99)
        } else {
            Device(up_by_ulps(value, 3))
        }
    }
    fn tanh(self) -> Self {
        // WGSL: the worse of 1e-5 absolute and sinh / cosh's accuracy.
        let value = self.0.tanh();
        Device(value + 0.99e-5f32.copysign(value))
    }
    fn if_positive(self, positive: impl Fn() -> Self, otherwise: impl Fn() -> Self) -> Self {
        if self.0 > 0.0 {
            positive()
        } else {
            otherwise()
        }
    }
}

/// A sum of `count` terms `term(k) = (a, b)` (each `a * b`) as one thread
/// of the device adds them: fused multiply-adds in index order, or from
/// the last term.
fn device_sum(count: usize, order: Order, term: impl Fn(usize) -> (f32, f32)) -> f32 {
    let add = |sum: f32, k: usize| {
        let (a, b) = term(k);
        a.mul_add(b, sum)
    };
    match order {
        Order::Fused => (0..count).fold(0.0f32, add),
        Order::Reversed => (0..count).rev().fold(0.0f32, add),
    }
}

/// Sums `count` terms in blocks of REDUCE_BLOCK, then the block sums, as
/// the GPU's reductions, each block a [`device_sum`].
fn blocked_sum(count: usize, order: Order, term: impl Fn(usize) -> (f32, f32)) -> f32 {
    let mut partials: Vec<f32> = (0..count)
        .step_by(REDUCE_BLOCK)
        .map(|first| {
            let len = (first + REDUCE_BLOCK).min(count) - first;
            device_sum(len, order, |k| term(first + k))
        })
        .collect();
    while partials.len() > 1 {
        partials = partials
            .chunks(REDUCE_BLOCK)
            .map(|block| device_sum(block.len(), order, |k| (block[k], 1.0)))
            .collect();
    }
    partials.first().copied().unwrap_or(0.0)
}

/// One sample's pass on the simulated device.
struct SamplePass {
    /// Each layer's input activations, then the output: `[layer][unit]`.
    activations: Vec<Vec<f32>>,
    /// dLoss/dz of each layer's units.
    errors: Vec<Vec<f32>>,
    /// The sample's loss and metrics (each the mean over its units).
    loss: f32,
    metrics: Vec<f32>,
}

/// The simulated device: its arithmetic's sums in `order`, and a mistake.
#[derive(Debug, Clone, Copy)]
struct Simulated {
    order: Order,
    mistake: Mistake,
}

impl Simulated {
    fn correct(order: Order) -> Self {
        Self {
            order,
            mistake: Mistake::None,
        }
    }

    /// Forward and backward for one sample of `n` in its batch.
    fn pass(
        &self,
        config: &TrainConfig,
        layers: &[gpu_c2f::model::DenseLayout],
        w: &[f32],
        x: &[f32],
        y: &[f32],
        n: usize,
    ) -> SamplePass {
        let order = self.order;
        let mut activations = vec![x.to_vec()];
        let mut sums = Vec::new();
        for layer in layers {
            let input = activations.last().unwrap();
            let z: Vec<f32> = (0..layer.units)
                .map(|j| {
                    let sum = device_sum(layer.inputs, order, |i| {
                        (input[i], w[layer.kernel_offset + i * layer.units + j])
                    });
                    (Device(sum) + Device(w[layer.bias_offset + j])).0
                })
                .collect();
            activations.push(
                z.iter()
                    .map(|&z| layer.activation.apply(Device(z)).0)
                    .collect(),
            );
            sums.push(z);
        }
        let last = layers.last().unwrap();
        let units = last.units;
        let total = Device((n * units) as f32);
        let (mut loss, mut errors_out) = (Device(0.0), Vec::new());
        let metrics: Vec<_> = config.metrics.iter().map(|m| m.metric).collect();
        let mut metric_sums = vec![Device(0.0); metrics.len()];
        let outputs = activations.last().unwrap().iter().zip(sums.last().unwrap());
        for ((&output, &z), &target) in outputs.zip(y) {
            let (output, z, target) = (Device(output), Device(z), Device(target));
            let error = config
                .loss
                .output_error(output, z, target, last.activation, total);
            loss = loss + error.loss;
            errors_out.push(error.delta.0);
            for (sum, metric) in metric_sums.iter_mut().zip(&metrics) {
                let value = match (self.mistake, metric) {
                    (Mistake::MetricWithoutAbs, gpu_c2f::loss::Metric::MeanAbsoluteError) => {
                        output - target
                    }
                    _ => metric.value(output, z, target, last.activation),
                };
                *sum = *sum + value;
            }
        }
        let mut errors = vec![Vec::new(); layers.len()];
        errors[layers.len() - 1] = errors_out;
        for l in (1..layers.len()).rev() {
            let layer = &layers[l];
            let below = layers[l - 1].activation;
            errors[l - 1] = (0..layer.inputs)
                .map(|i| {
                    let sum = device_sum(layer.units, order, |j| {
                        (errors[l][j], w[layer.kernel_offset + i * layer.units + j])
                    });
                    if below.is_linear() {
                        return sum;
                    }
                    let mut derivative = below.derivative(Device(sums[l - 1][i]));
                    if self.mistake == Mistake::OneUnitDerivative && l == 1 && i == 0 {
                        derivative = Device(derivative.0 * 1.05);
                    }
                    (Device(sum) * derivative).0
                })
                .collect();
        }
        let count = Device(units as f32);
        SamplePass {
            activations,
            errors,
            loss: (loss / count).0,
            metrics: metric_sums.into_iter().map(|m| (m / count).0).collect(),
        }
    }

    /// A mean over `rows` of each row's value, as the validation kernels
    /// take it: blocks of REDUCE_BLOCK rows added in order, the blocks'
    /// sums added, divided by the rows.
    fn validation_mean(&self, values: &[f32]) -> f32 {
        let partials: Vec<f32> = values
            .chunks(REDUCE_BLOCK)
            .map(|block| block.iter().fold(Device(0.0), |sum, &v| sum + Device(v)).0)
            .collect();
        let total = partials.iter().fold(Device(0.0), |sum, &p| sum + Device(p));
        divide(total.0, values.len() as f32)
    }

    /// Trains `initial` on this device, recording every step.
    fn train(&self, initial: &Model, config: &TrainConfig) -> SimulatedRun {
        let mistake = self.mistake;
        let mut batching = config.batching();
        let true_batching = batching;
        if mistake == Mistake::ShuffleKey {
            batching.seed ^= 0x5eed;
        }
        let adam = config.adam();
        let c = adam.constants();
        let steps = config.epochs as u64 * batching.steps_per_epoch as u64;
        let table = config.step_sizes(steps + 1);
        let layers = initial.architecture().layers();
        let data = &config.data;
        let metric_count = config.metrics.len();
        let validation_rows = config.validation_rows();
        let mut state = TrainState::start(initial, config);
        let mut records = Vec::new();
        let mut history = EpochRows {
            metrics: vec![Vec::new(); metric_count],
            val_metrics: vec![
                Vec::new();
                if validation_rows.is_empty() {
                    0
                } else {
                    metric_count
                }
            ],
            ..EpochRows::default()
        };
        let (mut epoch_total, mut metric_totals) = (0.0f32, vec![0.0f32; metric_count]);
        let mut watch = Watch::default();
        let mut best = None;
        for step in 0..steps {
            let batch = true_batching.batch(step);
            let mut samples: Vec<usize> = (batch.first..batch.first + batch.size)
                .map(|p| batching.sample_index(batch.epoch, p) as usize)
                .collect();
            if mistake == Mistake::OneWrongSample && step == 5 {
                samples[0] = (samples[0] + 1) % config.training_len();
            }
            let n = samples.len();
            let w = &state.weights;
            let passes: Vec<SamplePass> = samples
                .iter()
                .map(|&s| self.pass(config, &layers, w, data.x_row(s), data.y_row(s), n))
                .collect();
            let order = self.order;
            let mut gradients = vec![0.0f32; w.len()];
            for (l, layer) in layers.iter().enumerate() {
                for j in 0..layer.units {
                    for i in 0..layer.inputs {
                        gradients[layer.kernel_offset + i * layer.units + j] =
                            blocked_sum(n, order, |k| {
                                (passes[k].activations[l][i], passes[k].errors[l][j])
                            });
                    }
                    gradients[layer.bias_offset + j] = match mistake {
                        Mistake::DroppedBiasGradient => 0.0,
                        _ => blocked_sum(n, order, |k| (1.0, passes[k].errors[l][j])),
                    };
                }
            }
            if let Mistake::GradientScale(scale) = mistake {
                gradients.iter_mut().for_each(|g| *g *= scale);
            }
            let loss = divide(blocked_sum(n, order, |k| (passes[k].loss, 1.0)), n as f32);
            let metric_sums: Vec<f32> = (0..metric_count)
                .map(|m| blocked_sum(n, order, |k| (passes[k].metrics[m], 1.0)))
                .collect();

            let t = step + 1;
            let alpha = match mistake {
                Mistake::AdamTOffByOne => table[(t as usize).min(table.len() - 1)],
                _ => table[(t as usize - 1).min(table.len() - 1)],
            };
            let before = state.clone();
            for (p, &g) in gradients.iter().enumerate() {
                let (m0, v0) = (state.m[p], state.v[p]);
                let m_step = g - m0;
                let m = other_neighbour(
                    flush(m_step.mul_add(c.one_minus_beta_1, m0)),
                    m_step as f64 * c.one_minus_beta_1 as f64 + m0 as f64,
                );
                let v_step = g.mul_add(g, -v0);
                let v = other_neighbour(
                    flush(v_step.mul_add(c.one_minus_beta_2, v0)),
                    v_step as f64 * c.one_minus_beta_2 as f64 + v0 as f64,
                );
                let mut step_size = match mistake {
                    Mistake::EpsilonOnVHat => {
                        let m_hat = m / (1.0 - (adam.beta_1 as f32).powf(t as f32));
                        let v_hat = v / (1.0 - (adam.beta_2 as f32).powf(t as f32));
                        adam.learning_rate * m_hat / (v_hat.sqrt() + c.epsilon)
                    }
                    _ => divide(m * alpha, square_root(v) + c.epsilon),
                };
                if mistake == Mistake::EverySecondUpdate && step % 2 == 1 {
                    step_size *= 1.01;
                }
                let w = state.weights[p];
                state.weights[p] = other_neighbour(w - step_size, w as f64 - step_size as f64);
                state.m[p] = m;
                state.v[p] = v;
            }
            // Keras's size-weighted mean of the batch losses, as the kernels
            // keep it (their `epoch_total += loss * size` may fuse).
            epoch_total = loss.mul_add(batch.size as f32, epoch_total);
            for (total, &sum) in metric_totals.iter_mut().zip(&metric_sums) {
                *total = (Device(*total) + Device(sum)).0;
            }
            records.push(StepRecord {
                step,
                before,
                gradients,
                loss,
                after: state.clone(),
            });
            if !batch.ends_epoch(&true_batching) {
                continue;
            }
            let samples = true_batching.samples as f32;
            history.loss.push(divide(epoch_total, samples));
            epoch_total = 0.0;
            for (series, total) in history.metrics.iter_mut().zip(&mut metric_totals) {
                series.push(divide(*total, samples));
                *total = 0.0;
            }
            if !validation_rows.is_empty() {
                let passes: Vec<SamplePass> = validation_rows
                    .clone()
                    .map(|s| {
                        self.pass(
                            config,
                            &layers,
                            &state.weights,
                            data.x_row(s),
                            data.y_row(s),
                            1,
                        )
                    })
                    .collect();
                let losses: Vec<f32> = passes.iter().map(|p| p.loss).collect();
                history.val_loss.push(self.validation_mean(&losses));
                for (m, series) in history.val_metrics.iter_mut().enumerate() {
                    let values: Vec<f32> = passes.iter().map(|p| p.metrics[m]).collect();
                    series.push(self.validation_mean(&values));
                }
            }
            if let Some(mut stopping) = config.early_stopping {
                if mistake == Mistake::StoppingIgnoresMinDelta {
                    stopping.min_delta = 0.0;
                }
                let epoch = batch.epoch as usize;
                let watched = history.val_loss.last().unwrap_or(&history.loss[epoch]);
                let stop = stopping.watch(&mut watch, epoch, *watched);
                if watch.best_epoch == epoch + 1 {
                    best = Some(state.weights.clone());
                }
                if stop {
                    break;
                }
            }
        }
        let restore = config.early_stopping.is_some_and(|e| e.restores(&watch));
        let weights = match (restore, best) {
            (true, Some(best)) => best,
            _ => state.weights,
        };
        let trained = Model::from_params(initial.architecture().clone(), weights).unwrap();
        SimulatedRun {
            records,
            history,
            trained,
        }
    }
}

/// What the simulated device's run gave.
struct SimulatedRun {
    records: Vec<StepRecord>,
    history: EpochRows,
    trained: Model,
}

impl SimulatedRun {
    fn device(&self) -> DeviceRun<'_> {
        DeviceRun {
            records: &self.records,
            history: &self.history,
            trained: &self.trained,
        }
    }
}

fn check(initial: &Model, config: &TrainConfig, mistake: Mistake) -> ShadowCheck {
    let device = Simulated {
        order: Order::Fused,
        mistake,
    };
    let run = device.train(initial, config);
    check_steps(initial, config, run.device())
}

fn seed_job(seed: u64) -> (Model, TrainConfig) {
    (
        Model::glorot_uniform(Architecture::seed(), seed),
        TrainConfig::seed(),
    )
}

fn assert_passes(what: &str, initial: &Model, config: &TrainConfig) {
    let result = check(initial, config, Mistake::None);
    assert!(
        result.within_tolerance,
        "{what}: the FMA device failed the shadow check: {result:#?}"
    );
    eprintln!(
        "{what}: worst gradient {:.3}, loss {:.3}, state {:.3} of their bounds",
        result.gradients.ratio, result.losses.ratio, result.states.ratio
    );
}

fn assert_caught(mistake: Mistake, initial: &Model, config: &TrainConfig) {
    let result = check(initial, config, mistake);
    assert!(
        !result.within_tolerance,
        "{mistake:?} was not caught: {result:#?}"
    );
}

#[test]
fn fma_device_passes_the_seed_job_for_many_seeds() {
    for seed in (0..=9).chain([42]) {
        let (initial, config) = seed_job(seed);
        assert_passes(&format!("seed job, seed {seed}"), &initial, &config);
    }
}

#[test]
fn fma_device_passes_exact_fit_data_at_both_learning_rates() {
    for samples in [8, 200] {
        for learning_rate in [0.1, 0.01] {
            let initial = Model::glorot_uniform(Architecture::seed(), 3);
            let config = TrainConfig {
                data: Dataset::from_formula(samples, 3),
                learning_rate,
                ..TrainConfig::seed()
            };
            let what = format!("--samples {samples} --learning-rate {learning_rate}");
            assert_passes(&what, &initial, &config);
        }
    }
}

#[test]
fn fma_device_passes_mini_batches_and_wide_layers() {
    let cases: [(&[usize], usize, Option<usize>, usize); 4] = [
        (&[3, 3], 100, Some(10), 30),
        (&[17, 5], 300, Some(64), 10),
        (&[64], 50, None, 100),
        (&[64, 64], 40, Some(16), 5),
    ];
    for (hidden, samples, batch_size, epochs) in cases {
        let initial = Model::glorot_uniform(Architecture::new(hidden).unwrap(), 5);
        let config = TrainConfig {
            data: Dataset::from_formula(samples as u64, 5),
            epochs,
            learning_rate: 0.01,
            batch_size,
            ..TrainConfig::seed()
        };
        let what = format!("hidden {hidden:?}, {samples} samples, batch {batch_size:?}");
        assert_passes(&what, &initial, &config);
    }
}

#[test]
fn doubled_gradients_are_caught() {
    let (initial, config) = seed_job(42);
    assert_caught(Mistake::GradientScale(2.0), &initial, &config);
}

#[test]
fn halved_gradients_are_caught() {
    let (initial, config) = seed_job(42);
    assert_caught(Mistake::GradientScale(0.5), &initial, &config);
}

#[test]
fn a_dropped_bias_gradient_is_caught() {
    let (initial, config) = seed_job(42);
    assert_caught(Mistake::DroppedBiasGradient, &initial, &config);
}

#[test]
fn epsilon_on_sqrt_v_hat_is_caught() {
    // Epsilon's place matters where sqrt(v) is near epsilon (1e-7): data a
    // million times smaller than the tutorial's, whose gradients are tiny.
    let (initial, mut config) = seed_job(42);
    for value in config.data.x.iter_mut().chain(&mut config.data.y) {
        *value *= 1e-6;
    }
    assert_caught(Mistake::EpsilonOnVHat, &initial, &config);
}

#[test]
fn adams_t_off_by_one_is_caught() {
    let (initial, config) = seed_job(42);
    assert_caught(Mistake::AdamTOffByOne, &initial, &config);
}

#[test]
fn a_wrong_sample_in_the_shuffle_is_caught() {
    let initial = Model::glorot_uniform(Architecture::seed(), 42);
    let config = TrainConfig {
        data: Dataset::from_formula(100, 1),
        epochs: 3,
        batch_size: Some(10),
        ..TrainConfig::seed()
    };
    assert_caught(Mistake::ShuffleKey, &initial, &config);
}

#[test]
fn one_wrong_sample_in_one_batch_is_caught() {
    let initial = Model::glorot_uniform(Architecture::seed(), 42);
    let config = TrainConfig {
        data: Dataset::from_formula(100, 1),
        epochs: 3,
        batch_size: Some(10),
        ..TrainConfig::seed()
    };
    let result = check(&initial, &config, Mistake::OneWrongSample);
    assert!(!result.within_tolerance, "{result:#?}");
    assert_eq!(result.gradients.step, 5, "{result:#?}");
}

fn correct_run(initial: &Model, config: &TrainConfig) -> SimulatedRun {
    Simulated::correct(Order::Fused).train(initial, config)
}

#[test]
fn a_broken_hand_over_between_steps_is_caught() {
    let (initial, config) = seed_job(42);
    let mut run = correct_run(&initial, &config);
    run.records[500].before.v[3] *= 1.0 + f32::EPSILON;
    let result = check_steps(&initial, &config, run.device());
    assert!(
        !result.within_tolerance && result.chain_breaks.len() == 1,
        "{result:#?}"
    );
    assert!(result.chain_breaks[0].contains("step 501"), "{result:#?}");
}

#[test]
fn a_loss_history_that_does_not_follow_the_steps_is_caught() {
    let initial = Model::glorot_uniform(Architecture::seed(), 42);
    let config = TrainConfig {
        data: Dataset::from_formula(100, 1),
        epochs: 3,
        batch_size: Some(10),
        ..TrainConfig::seed()
    };
    let mut run = correct_run(&initial, &config);
    // The last batch's loss counted twice in epoch 2.
    let last = run.records[19].loss;
    run.history.loss[1] += last * 10.0 / 100.0;
    let result = check_steps(&initial, &config, run.device());
    assert!(
        !result.within_tolerance && result.losses.index == 1,
        "{result:#?}"
    );
}

/// A one-hidden-layer network of `activation` on `samples` points of a
/// sine (targets in (0, 1) for a squashing output, 0/1 for a
/// cross-entropy), with `inputs` inputs (the others x^2 / 9 and 1 / (1 + x^2))
/// and `outputs` targets (the others cos x and x / 3).
fn nonlinear_job(
    (hidden, output): (Activation, Activation),
    loss: Loss,
    (inputs, outputs): (usize, usize),
    samples: usize,
) -> (Model, TrainConfig) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for k in 0..samples {
        let t = -3.0 + 6.0 * k as f32 / (samples - 1) as f32;
        x.extend([t, t * t / 9.0, 1.0 / (1.0 + t * t)].iter().take(inputs));
        let targets = [t.sin(), t.cos(), t / 3.0];
        y.extend(targets.iter().take(outputs).map(|&v| {
            if loss.needs_probabilities() {
                (v > 0.0) as u8 as f32
            } else if output.is_linear() {
                v
            } else {
                0.5 * v + 0.5
            }
        }));
    }
    let architecture = Architecture::with_layers(&[(6, hidden), (4, hidden)], output)
        .and_then(|a| a.with_io(inputs, outputs))
        .unwrap();
    let config = TrainConfig {
        data: Dataset {
            x,
            y,
            x_width: inputs,
            y_width: outputs,
        },
        epochs: 4,
        learning_rate: 0.05,
        batch_size: Some(16),
        loss,
        metrics: ["mse", "mae", "accuracy"]
            .iter()
            .map(|name| NamedMetric::from_name(name).unwrap())
            .collect(),
        ..TrainConfig::seed()
    };
    (Model::glorot_uniform(architecture, 21), config)
}

/// 1-6tanh-4tanh-1 on the sine, mean squared error, three metrics.
fn tanh_job() -> (Model, TrainConfig) {
    nonlinear_job(
        (Activation::Tanh, Activation::Linear),
        Loss::MeanSquaredError,
        (1, 1),
        70,
    )
}

/// The correct simulated device in both orders passes; the worst ratios
/// are printed.
fn assert_both_orders_pass(what: &str, initial: &Model, config: &TrainConfig) {
    for order in [Order::Fused, Order::Reversed] {
        let run = Simulated::correct(order).train(initial, config);
        let result = check_steps(initial, config, run.device());
        assert!(
            result.within_tolerance,
            "{what}, {order:?}: the FMA device failed the shadow check: {result:#?}"
        );
        eprintln!(
            "{what}, {order:?}: worst gradient {:.3}, loss {:.3}, metric {:.3}, state {:.3}",
            result.gradients.ratio,
            result.losses.ratio,
            result.metrics.unwrap_or_default().ratio,
            result.states.ratio
        );
    }
}

#[test]
fn fma_device_passes_every_activation_with_its_worst_exp_log_and_tanh() {
    for hidden in Activation::ALL {
        for output in [Activation::Linear, Activation::Sigmoid, Activation::Tanh] {
            let (initial, config) =
                nonlinear_job((hidden, output), Loss::MeanSquaredError, (1, 1), 70);
            assert_both_orders_pass(&format!("{hidden:?} -> {output:?}"), &initial, &config);
        }
    }
}

#[test]
fn fma_device_passes_every_loss() {
    for loss in Loss::ALL {
        let output = match loss {
            Loss::BinaryCrossentropy => Activation::Sigmoid,
            _ => Activation::Linear,
        };
        let (initial, config) = nonlinear_job((Activation::Tanh, output), loss, (1, 1), 70);
        assert_both_orders_pass(&format!("{loss:?}"), &initial, &config);
    }
}

#[test]
fn fma_device_passes_several_inputs_and_outputs() {
    for (inputs, outputs) in [(3, 1), (1, 3), (3, 2)] {
        for activation in [Activation::Relu, Activation::Gelu] {
            let (initial, config) = nonlinear_job(
                (activation, Activation::Linear),
                Loss::Huber,
                (inputs, outputs),
                90,
            );
            let what = format!("{inputs} inputs, {outputs} outputs, {activation:?}");
            assert_both_orders_pass(&what, &initial, &config);
        }
    }
}

/// The sine job with a validation split and early stopping that stops
/// within its 40 epochs.
fn stopping_job(restore_best_weights: bool, min_delta: f32) -> (Model, TrainConfig) {
    let (initial, mut config) = nonlinear_job(
        (Activation::Relu, Activation::Linear),
        Loss::MeanSquaredError,
        (2, 2),
        80,
    );
    config.epochs = 40;
    config.learning_rate = 0.02;
    config.validation_split = 0.25;
    config.early_stopping = Some(EarlyStopping {
        patience: 2,
        min_delta,
        restore_best_weights,
    });
    (initial, config)
}

#[test]
fn fma_device_passes_validation_and_early_stopping() {
    for restore in [false, true] {
        for min_delta in [0.0, 0.01] {
            let (initial, config) = stopping_job(restore, min_delta);
            let run = correct_run(&initial, &config);
            assert!(
                run.history.len() < config.epochs,
                "the job stops early ({} epochs), or this test shows little",
                run.history.len()
            );
            let what = format!("restore {restore}, min_delta {min_delta}");
            assert_both_orders_pass(&what, &initial, &config);
        }
    }
}

#[test]
fn subtle_mistakes_are_caught_on_nonlinear_jobs() {
    let (initial, config) = tanh_job();
    for mistake in [
        Mistake::GradientScale(1.01),
        Mistake::OneUnitDerivative,
        Mistake::MetricWithoutAbs,
        Mistake::EverySecondUpdate,
    ] {
        assert_caught(mistake, &initial, &config);
    }
    let result = check(&initial, &config, Mistake::MetricWithoutAbs);
    let metrics = result.metrics.expect("metrics checked");
    assert!(
        metrics.ratio > 1.0 && metrics.index == 1,
        "the mae metric: {result:#?}"
    );
}

#[test]
fn early_stopping_that_ignores_min_delta_is_caught() {
    // With min_delta 0.01 the run stops after 18 epochs; without, after 26.
    let (initial, config) = stopping_job(true, 0.01);
    let result = check(&initial, &config, Mistake::StoppingIgnoresMinDelta);
    assert!(!result.within_tolerance, "{result:#?}");
    assert!(
        result
            .chain_breaks
            .iter()
            .any(|b| b.contains("early stopping")),
        "{result:#?}"
    );
}

#[test]
fn a_run_fed_a_submission_at_a_time_checks_the_same_as_whole() {
    let (initial, config) = stopping_job(true, 0.0);
    let run = correct_run(&initial, &config);
    let whole = check_steps(&initial, &config, run.device());
    // Submissions of 7 steps: records first, then the epochs they finished.
    let per_epoch = config.batching().steps_per_epoch as usize;
    let mut check = StepCheck::new(&initial, &config);
    let mut fed_epochs = 0;
    for chunk in run.records.chunks(7) {
        let done = chunk.last().unwrap().step as usize + 1;
        let epochs = (done / per_epoch).min(run.history.len());
        let rows = EpochRows {
            first: fed_epochs,
            loss: run.history.loss[fed_epochs..epochs].to_vec(),
            val_loss: run.history.val_loss[fed_epochs..epochs].to_vec(),
            metrics: run
                .history
                .metrics
                .iter()
                .map(|s| s[fed_epochs..epochs].to_vec())
                .collect(),
            val_metrics: (run.history.val_metrics.iter())
                .map(|s| s[fed_epochs..epochs].to_vec())
                .collect(),
        };
        fed_epochs = epochs;
        check.take(DeviceSteps {
            records: chunk.to_vec(),
            epochs: rows,
        });
    }
    let streamed = check.finish(&run.history, &run.trained);
    assert!(streamed.within_tolerance, "{streamed:#?}");
    assert_eq!(format!("{streamed:?}"), format!("{whole:?}"));
}

#[test]
fn a_run_recorded_in_part_is_not_passed() {
    // Every second step left out, as a one-in-two record would: the steps
    // checked pass, but the verdict says what was not seen.
    let (initial, config) = seed_job(42);
    let mut run = correct_run(&initial, &config);
    run.records.retain(|record| record.step % 2 == 0);
    let result = check_steps(&initial, &config, run.device());
    assert_eq!(result.steps_checked, 500);
    assert_eq!(result.steps_expected, 1000);
    assert!(!result.within_tolerance, "{result:#?}");
    let why = verdict(&result).unwrap_err();
    assert!(why.contains("step 2 was not recorded"), "{why}");
    // Nothing recorded at all: not passed either.
    run.records.clear();
    let result = check_steps(&initial, &config, run.device());
    assert!(
        verdict(&result)
            .unwrap_err()
            .contains("none of the 1000 steps")
    );
}

#[test]
fn a_device_that_stops_early_unasked_is_caught() {
    // Half the run, recorded and checked step by step: without early
    // stopping the job's 1000 epochs are the run's length.
    let (initial, config) = seed_job(42);
    let mut run = correct_run(&initial, &config);
    run.records.truncate(500);
    run.history.loss.truncate(500);
    run.trained = Model::from_params(
        initial.architecture().clone(),
        run.records[499].after.weights.clone(),
    )
    .unwrap();
    let result = check_steps(&initial, &config, run.device());
    assert_eq!((result.steps_checked, result.steps_expected), (500, 1000));
    assert!(!result.within_tolerance, "{result:#?}");
    assert!(
        result
            .chain_breaks
            .iter()
            .any(|b| b.contains("ran 500 epochs, the job 1000")),
        "{result:#?}"
    );
}

#[test]
fn a_trained_model_that_is_not_the_last_step_is_caught() {
    let (initial, config) = seed_job(42);
    let mut run = correct_run(&initial, &config);
    run.trained = Model::from_params(
        initial.architecture().clone(),
        run.records[998].after.weights.clone(),
    )
    .unwrap();
    let result = check_steps(&initial, &config, run.device());
    assert!(
        result
            .chain_breaks
            .iter()
            .any(|b| b.contains("not the weights after step 1000")),
        "{result:#?}"
    );
}

#[test]
fn replaying_on_several_threads_gives_the_verdict_of_one() {
    // All of a run's records at once, on 1 and on 3 threads (runs of
    // consecutive steps each): the same worst values at the same steps.
    // A gradient of the last step is off, so the worst is in the last
    // thread's run.
    let (initial, config) = tanh_job();
    let mut run = Simulated::correct(Order::Reversed).train(&initial, &config);
    assert!(run.records.len() >= 16, "enough steps for two threads");
    run.records.last_mut().unwrap().gradients[0] *= 1.5;
    let verdicts: Vec<String> = [1, 3]
        .iter()
        .map(|&threads| {
            let mut check = StepCheck::with_threads(&initial, &config, threads);
            check.take(DeviceSteps {
                records: run.records.clone(),
                epochs: run.history.clone(),
            });
            format!("{:?}", check.finish(&run.history, &run.trained))
        })
        .collect();
    assert!(
        verdicts[0].contains("within_tolerance: false"),
        "{}",
        verdicts[0]
    );
    assert_eq!(verdicts[0], verdicts[1]);
}
