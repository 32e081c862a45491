//! The shadow check (src/shadow/) against simulated devices: a CPU trainer
//! written apart from the reference, with the arithmetic WGSL allows a real
//! GPU, pushed to its limits: every `a * b + c` a compiler may fuse
//! contracted into `f32::mul_add`; the results of sums and of Adam's update
//! moved to the other neighbour of the exact value (WGSL's "correctly
//! rounded" allows either); divisions 2 ULP off the correctly rounded
//! result; square roots as `1.0 / inverseSqrt(x)` with both steps 2 ULP off;
//! subnormal results flushed to zero. It must pass; the same trainer with
//! one mistake planted must fail. The product code is never perturbed: only
//! this test's device.

use gpu_c2f::shadow::{DeviceRun, EpochRows, ShadowCheck, StepRecord, TrainState, check_steps};
use gpu_c2f::step::REDUCE_BLOCK;
use gpu_c2f::{Architecture, Dataset, Model, TrainConfig};

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

/// Sums `terms` in blocks of REDUCE_BLOCK, then the block sums, as the GPU,
/// each block a chain of fused multiply-adds `term(k) = (a, b)`.
fn fused_blocked_sum(count: usize, term: impl Fn(usize) -> (f32, f32)) -> f32 {
    let mut partials: Vec<f32> = (0..count)
        .step_by(REDUCE_BLOCK)
        .map(|first| {
            (first..(first + REDUCE_BLOCK).min(count)).fold(0.0f32, |sum, k| {
                let (a, b) = term(k);
                a.mul_add(b, sum)
            })
        })
        .collect();
    while partials.len() > 1 {
        partials = partials
            .chunks(REDUCE_BLOCK)
            .map(|block| block.iter().fold(0.0f32, |sum, v| sum + v))
            .collect();
    }
    partials.first().copied().unwrap_or(0.0)
}

/// Trains as a GPU that fuses multiply-adds would, recording every step.
fn simulated_device(
    initial: &Model,
    config: &TrainConfig,
    mistake: Mistake,
) -> (Vec<StepRecord>, Model, Vec<f32>) {
    let mut batching = config.batching();
    let true_batching = batching;
    if mistake == Mistake::ShuffleKey {
        batching.seed ^= 0x5eed;
    }
    let adam = config.adam();
    let c = adam.constants();
    let steps = config.epochs as u64 * batching.steps_per_epoch as u64;
    let table = adam.step_size_table(steps + 1);
    let layers = initial.architecture().layers();
    let mut state = TrainState::initial(initial);
    let mut records = Vec::new();
    let (mut loss_history, mut epoch_total) = (Vec::new(), 0.0f32);
    for step in 0..steps {
        let batch = true_batching.batch(step);
        let mut samples: Vec<usize> = (batch.first..batch.first + batch.size)
            .map(|p| batching.sample_index(batch.epoch, p) as usize)
            .collect();
        if mistake == Mistake::OneWrongSample && step == 5 {
            samples[0] = (samples[0] + 1) % config.data.len();
        }
        let n = samples.len();
        let w = &state.weights;
        // Forward and backward per sample, every sum a chain of FMAs.
        let mut activations: Vec<Vec<Vec<f32>>> = Vec::new(); // [sample][layer][unit]
        let mut errors: Vec<Vec<Vec<f32>>> = Vec::new(); // [sample][layer][unit]: output errors
        let mut residuals = Vec::new();
        for &s in &samples {
            let mut a = vec![vec![config.data.x[s]]];
            for layer in &layers {
                let input = a.last().unwrap();
                let out = (0..layer.units)
                    .map(|j| {
                        let sum = (0..layer.inputs).fold(0.0f32, |sum, i| {
                            input[i].mul_add(w[layer.kernel_offset + i * layer.units + j], sum)
                        });
                        let bias = w[layer.bias_offset + j];
                        other_neighbour(sum + bias, sum as f64 + bias as f64)
                    })
                    .collect();
                a.push(out);
            }
            let residual = a.last().unwrap()[0] - config.data.y[s];
            let mut e = vec![Vec::new(); layers.len()];
            e[layers.len() - 1] = vec![divide(2.0 * residual, n as f32)];
            for l in (1..layers.len()).rev() {
                let layer = &layers[l];
                e[l - 1] = (0..layer.inputs)
                    .map(|i| {
                        (0..layer.units).fold(0.0f32, |sum, j| {
                            e[l][j].mul_add(w[layer.kernel_offset + i * layer.units + j], sum)
                        })
                    })
                    .collect();
            }
            activations.push(a);
            errors.push(e);
            residuals.push(residual);
        }
        let mut gradients = vec![0.0f32; w.len()];
        for (l, layer) in layers.iter().enumerate() {
            for j in 0..layer.units {
                for i in 0..layer.inputs {
                    gradients[layer.kernel_offset + i * layer.units + j] =
                        fused_blocked_sum(n, |k| (activations[k][l][i], errors[k][l][j]));
                }
                gradients[layer.bias_offset + j] = match mistake {
                    Mistake::DroppedBiasGradient => 0.0,
                    _ => fused_blocked_sum(n, |k| (1.0, errors[k][l][j])),
                };
            }
        }
        if let Mistake::GradientScale(scale) = mistake {
            gradients.iter_mut().for_each(|g| *g *= scale);
        }
        let loss = divide(
            fused_blocked_sum(n, |k| (residuals[k], residuals[k])),
            n as f32,
        );

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
            let step_size = match mistake {
                Mistake::EpsilonOnVHat => {
                    let m_hat = m / (1.0 - (adam.beta_1 as f32).powf(t as f32));
                    let v_hat = v / (1.0 - (adam.beta_2 as f32).powf(t as f32));
                    adam.learning_rate * m_hat / (v_hat.sqrt() + c.epsilon)
                }
                _ => divide(m * alpha, square_root(v) + c.epsilon),
            };
            let w = state.weights[p];
            state.weights[p] = other_neighbour(w - step_size, w as f64 - step_size as f64);
            state.m[p] = m;
            state.v[p] = v;
        }
        // Keras's size-weighted mean of the batch losses, as the kernels
        // keep it (their `epoch_total += loss * size` may fuse).
        epoch_total = loss.mul_add(batch.size as f32, epoch_total);
        if batch.first + batch.size == true_batching.samples {
            loss_history.push(divide(epoch_total, true_batching.samples as f32));
            epoch_total = 0.0;
        }
        records.push(StepRecord {
            step,
            before,
            gradients,
            loss,
            after: state.clone(),
        });
    }
    let trained = Model::from_params(initial.architecture().clone(), state.weights).unwrap();
    (records, trained, loss_history)
}

fn check(initial: &Model, config: &TrainConfig, mistake: Mistake) -> ShadowCheck {
    let (records, trained, loss_history) = simulated_device(initial, config, mistake);
    let run = DeviceRun {
        records: &records,
        history: &EpochRows {
            loss: loss_history.clone(),
            ..EpochRows::default()
        },
        trained: &trained,
    };
    check_steps(initial, config, run)
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

#[test]
fn a_broken_hand_over_between_steps_is_caught() {
    let (initial, config) = seed_job(42);
    let (mut records, trained, loss_history) = simulated_device(&initial, &config, Mistake::None);
    records[500].before.v[3] *= 1.0 + f32::EPSILON;
    let run = DeviceRun {
        records: &records,
        history: &EpochRows {
            loss: loss_history.clone(),
            ..EpochRows::default()
        },
        trained: &trained,
    };
    let result = check_steps(&initial, &config, run);
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
    let (records, trained, mut loss_history) = simulated_device(&initial, &config, Mistake::None);
    // The last batch's loss counted twice in epoch 2.
    let last = &records[19];
    loss_history[1] += last.loss * 10.0 / 100.0;
    let run = DeviceRun {
        records: &records,
        history: &EpochRows {
            loss: loss_history.clone(),
            ..EpochRows::default()
        },
        trained: &trained,
    };
    let result = check_steps(&initial, &config, run);
    assert!(
        !result.within_tolerance && result.losses.index == 1,
        "{result:#?}"
    );
}
