//! Backprop and Adam checked against an independent f64 computation:
//! gradients by central finite differences of the loss (no backprop code
//! shared), and Keras's Adam formula written out again in f64. Both the CPU
//! reference and the GPU must land on it, so they cannot share one mistake.

mod common;

use gpu_c2f::cpu::Backprop;
use gpu_c2f::{Architecture, Dataset, Loss, Model, TrainConfig, cpu, gpu};

/// A 1-2-1 network with hand-picked weights (no symmetry, gradients of
/// order 1..100 so epsilon is negligible and magnitudes matter from step 2).
fn known_model() -> Model {
    // layer 0: kernel [[0.5, -0.25]], bias [0.1, -0.2]
    // layer 1: kernel [[1.5], [-0.75]], bias [0.3]
    let params = vec![0.5, -0.25, 0.1, -0.2, 1.5, -0.75, 0.3];
    Model::from_params(Architecture::new(&[2]).unwrap(), params).unwrap()
}

fn data() -> Dataset {
    Dataset::new(vec![-2.0, 0.5, 3.0], vec![1.0, 2.5, 4.0])
}

/// The network in f64: (x * k0 + b0) * k1 + b1 for the 1-2-1 layout above.
fn predict_f64(p: &[f64], x: f64) -> f64 {
    let h0 = x * p[0] + p[2];
    let h1 = x * p[1] + p[3];
    h0 * p[4] + h1 * p[5] + p[6]
}

fn loss_f64(p: &[f64], data: &Dataset) -> f64 {
    let n = data.len() as f64;
    data.x
        .iter()
        .zip(&data.y)
        .map(|(&x, &y)| (predict_f64(p, x as f64) - y as f64).powi(2))
        .sum::<f64>()
        / n
}

fn gradient_f64(p: &[f64], data: &Dataset) -> Vec<f64> {
    common::central_differences(|p| loss_f64(p, data), p)
}

/// Keras's Adam (adam.py), f64: alpha = lr sqrt(1 - b2^t) / (1 - b1^t);
/// m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= m alpha / (sqrt(v) + eps).
fn adam_f64(steps: usize, lr: f64, data: &Dataset) -> (Vec<f64>, Vec<f64>) {
    let mut p: Vec<f64> = known_model().params().iter().map(|&w| w as f64).collect();
    let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
    let mut losses = Vec::new();
    for t in 1..=steps as i32 {
        losses.push(loss_f64(&p, data));
        let g = gradient_f64(&p, data);
        let alpha = lr * (1.0 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t));
        for i in 0..p.len() {
            m[i] += (g[i] - m[i]) * (1.0 - 0.9);
            v[i] += (g[i] * g[i] - v[i]) * (1.0 - 0.999);
            p[i] -= m[i] * alpha / (v[i].sqrt() + 1e-7);
        }
    }
    (p, losses)
}

#[test]
fn backprop_gradients_match_finite_differences() {
    let model = known_model();
    let data = data();
    let mut gradients = vec![0.0f32; model.params().len()];
    let loss = Backprop::new(model.architecture(), Loss::MeanSquaredError, data.len())
        .loss_and_gradients(model.params(), &data.x, &data.y, &mut gradients);
    let p: Vec<f64> = model.params().iter().map(|&w| w as f64).collect();
    // f32 forward/backward over 3 samples: a few ULP (~1e-7 relative) per
    // value; central differences with h = 1e-6 in f64 are exact to ~1e-9.
    // 1e-5 relative (of the largest gradient) is far above both.
    let expected = gradient_f64(&p, &data);
    let scale = expected.iter().fold(0.0f64, |s, g| s.max(g.abs()));
    for (i, (&got, want)) in gradients.iter().zip(&expected).enumerate() {
        assert!(
            ((got as f64 - want) / scale).abs() < 1e-5,
            "parameter {i}: {got} vs {want}"
        );
    }
    assert!(((loss as f64 - loss_f64(&p, &data)) / loss_f64(&p, &data)).abs() < 1e-6);
}

#[test]
fn three_adam_steps_match_keras_formula_in_f64_on_cpu_and_gpu() {
    let data = data();
    let lr = 0.01;
    for steps in 1..=3 {
        let (expected, expected_losses) = adam_f64(steps, lr, &data);
        let config = TrainConfig {
            data: data.clone(),
            epochs: steps,
            learning_rate: lr as f32,
            ..TrainConfig::seed()
        };
        let cpu_run = cpu::train(&known_model(), &config).unwrap();
        let gpu_run = gpu::train(common::gpu(), &known_model(), &config)
            .unwrap()
            .output;
        for (path, run) in [("cpu", &cpu_run), ("gpu", &gpu_run)] {
            // Each step moves a weight by ~lr = 0.01; f32 rounding of the
            // weights (~6e-8 at magnitude 1) and of the step (1e-7 relative
            // of 0.01) keep the difference below 1e-6. A wrong formula is far
            // outside: without bias correction step 1 would move each weight
            // by lr * sqrt(0.001) / 0.1 ~= 0.0032 instead of ~0.01.
            for (i, (&got, want)) in run.model.params().iter().zip(&expected).enumerate() {
                assert!(
                    (got as f64 - want).abs() < 1e-6,
                    "{path}, step {steps}, parameter {i}: {got} vs {want}"
                );
            }
            // The loss moves by dL/dw * dw: weights 1e-6 apart and gradients
            // up to ~5 give ~1e-6 relative (measured: 1.0e-6 at step 3).
            for (epoch, (&got, want)) in run.loss_history.iter().zip(&expected_losses).enumerate() {
                assert!(
                    ((got as f64 - want) / want).abs() < 1e-5,
                    "{path}, epoch {}: loss {got} vs {want}",
                    epoch + 1
                );
            }
        }
    }
}
