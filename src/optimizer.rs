//! Keras's Adam, as `keras/src/optimizers/adam.py` (Keras 3) implements it.
//!
//! For each step t = 1, 2, ... and each parameter w with gradient g:
//!
//! ```text
//! alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
//! m    <- m + (g - m) * (1 - beta_1)
//! v    <- v + (g * g - v) * (1 - beta_2)
//! w    <- w - (m * alpha) / (sqrt(v) + epsilon)
//! ```
//!
//! Bias correction is folded into `alpha`; epsilon is added to the square
//! root of the raw `v` ("epsilon hat"). PyTorch instead adds its epsilon to
//! `sqrt(v_hat)`, a different formula. The same code path computes `alpha`
//! for the CPU reference and the GPU (as a table uploaded once), and
//! [`adam_update`] is the exact per-parameter arithmetic of the WGSL kernel.

use serde::Serialize;

/// Adam's hyper-parameters; the defaults are Keras's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Adam {
    /// Keras's `learning_rate`: the step size before bias correction.
    pub learning_rate: f32,
    /// Decay rate of the first moment (the running mean of the gradient).
    pub beta_1: f64,
    /// Decay rate of the second moment (the running mean of its square).
    pub beta_2: f64,
    /// Added to `sqrt(v)` in the update's denominator ("epsilon hat").
    pub epsilon: f64,
}

/// The constants the update uses, rounded to f32 once. Keras computes
/// `1 - beta` in Python's f64 before casting; `1.0f32 - 0.9f32` would differ
/// in the last bits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConstants {
    /// `1 - beta_1`, computed in f64.
    pub one_minus_beta_1: f32,
    /// `1 - beta_2`, computed in f64.
    pub one_minus_beta_2: f32,
    /// `epsilon` as f32.
    pub epsilon: f32,
}

impl Adam {
    /// Keras's defaults (beta_1 0.9, beta_2 0.999, epsilon 1e-7) with the given rate.
    pub fn keras(learning_rate: f32) -> Self {
        Self {
            learning_rate,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }

    /// The update's constants, rounded to f32 once, as Keras rounds them.
    pub fn constants(&self) -> AdamConstants {
        AdamConstants {
            one_minus_beta_1: (1.0 - self.beta_1) as f32,
            one_minus_beta_2: (1.0 - self.beta_2) as f32,
            epsilon: self.epsilon as f32,
        }
    }

    /// `alpha_t` for step `t` (1-based), in f32 as a float32 Keras model
    /// computes it: `lr * sqrt(1 - b2^t) / (1 - b1^t)` with `b^t = pow(f32(b), f32(t))`.
    pub fn step_size(&self, t: u64) -> f32 {
        let t = t as f32;
        let beta_1_power = (self.beta_1 as f32).powf(t);
        let beta_2_power = (self.beta_2 as f32).powf(t);
        self.learning_rate * (1.0 - beta_2_power).sqrt() / (1.0 - beta_1_power)
    }

    /// `alpha_t` for t = 1, 2, ..., the table both paths read; step t uses
    /// entry `min(t, len) - 1`. It stops once `1 - beta^t` is exactly 1 in
    /// f32 for both betas (t ~ 17 300 for 0.999): from there on every step
    /// size is the learning rate, so a run of millions of steps needs no
    /// table of millions of entries.
    pub fn step_size_table(&self, steps: u64) -> Vec<f32> {
        self.step_size_table_after(0, steps)
    }

    /// [`Adam::step_size_table`] for a run that resumes after `iterations`
    /// steps: its step t is Adam's `iterations + t`.
    pub fn step_size_table_after(&self, iterations: u64, steps: u64) -> Vec<f32> {
        let mut table = Vec::new();
        let first = iterations.saturating_add(1).min(u64::MAX - 1);
        for t in first..=first.saturating_add(steps.max(1) - 1) {
            table.push(self.step_size(t));
            let settled = |beta: f64| 1.0 - (beta as f32).powf(t as f32) == 1.0;
            if settled(self.beta_1) && settled(self.beta_2) {
                break;
            }
        }
        table
    }
}

/// The most steps a saved Adam state may have taken: 2^53, up to which
/// every count is exact in the f64 a file may hold it as, and a run's
/// steps (fewer than 2^64 - 2^53) can be added without overflowing.
pub const MOST_ITERATIONS: u64 = 1 << 53;

/// Adam's state between two steps, as a saved model carries it (Keras's
/// optimizer variables `iterations`, and m and v for each trainable
/// variable): what a run resumes from and ends with.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    /// Steps taken so far (Keras's `optimizer.iterations`): the next step is
    /// Adam's `t = iterations + 1`.
    pub iterations: u64,
    /// Each parameter's first moment, in the model's flat order.
    pub m: Vec<f32>,
    /// Each parameter's second moment, in the model's flat order.
    pub v: Vec<f32>,
}

impl AdamState {
    /// A fresh Adam for `params` parameters: no step taken, m = v = 0.
    pub fn fresh(params: usize) -> Self {
        Self {
            iterations: 0,
            m: vec![0.0; params],
            v: vec![0.0; params],
        }
    }
}

/// One parameter's update, in the same f32 operations and order as the
/// `adam_step` WGSL kernel. Returns the new weight.
pub fn adam_update(
    weight: f32,
    gradient: f32,
    m: &mut f32,
    v: &mut f32,
    alpha: f32,
    c: &AdamConstants,
) -> f32 {
    *m += (gradient - *m) * c.one_minus_beta_1;
    *v += (gradient * gradient - *v) * c.one_minus_beta_2;
    weight - (*m * alpha) / (v.sqrt() + c.epsilon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_rounded_from_f64_like_keras() {
        let c = Adam::keras(0.1).constants();
        assert_eq!(c.one_minus_beta_1.to_bits(), 0x3DCC_CCCD);
        assert_eq!(c.one_minus_beta_2.to_bits(), 0x3A83_126F);
        assert_eq!(c.epsilon, 1e-7f32);
    }

    #[test]
    fn epsilon_goes_on_sqrt_of_raw_v_as_in_keras_not_on_v_hat() {
        // A tiny gradient is where the two formulas part: at t = 1 with
        // g = 1e-6, Keras divides by sqrt(v) + eps = 3.16e-8 + 1e-7, PyTorch
        // by sqrt(v_hat) + eps = 1e-6 + 1e-7. Expected values in f64.
        let adam = Adam::keras(0.1);
        let g = 1e-6f64;
        let m = 0.1 * g;
        let v = 0.001 * g * g;
        let alpha = 0.1 * (1.0 - 0.999f64).sqrt() / (1.0 - 0.9);
        let keras = 1.0 - m * alpha / (v.sqrt() + 1e-7);
        let pytorch = 1.0 - 0.1 * (m / 0.1) / ((v / 0.001).sqrt() + 1e-7);
        let (mut m32, mut v32) = (0.0, 0.0);
        let w = adam_update(
            1.0,
            g as f32,
            &mut m32,
            &mut v32,
            adam.step_size(1),
            &adam.constants(),
        );
        // A few f32 ULP at 1.0 (ULP 6e-8 below 1): the f32 chain of 4 operations.
        assert!((w as f64 - keras).abs() < 3e-7, "{w} vs keras {keras}");
        assert!(
            (w as f64 - pytorch).abs() > 0.05,
            "{w} vs pytorch {pytorch}"
        );
    }

    #[test]
    fn step_size_table_settles_at_the_learning_rate() {
        let adam = Adam::keras(0.1);
        let table = adam.step_size_table(u64::MAX);
        let last = *table.last().unwrap();
        assert_eq!(last, 0.1);
        assert!(
            table.len() > 10_000 && table.len() < 20_000,
            "{}",
            table.len()
        );
        // Every later step computes to the same value the table ends with.
        for t in [table.len() as u64 + 1, 50_000, 10_000_000] {
            assert_eq!(adam.step_size(t), last, "t = {t}");
        }
        assert_eq!(adam.step_size_table(5).len(), 5);
        // A resumed run's table starts at the step after the saved ones.
        let resumed = adam.step_size_table_after(3, 2);
        assert_eq!(resumed, [adam.step_size(4), adam.step_size(5)]);
        let settled = adam.step_size_table_after(table.len() as u64 + 7, 1000);
        assert_eq!(settled, [last]);
    }

    #[test]
    fn first_step_moves_each_weight_by_about_the_learning_rate() {
        // At t = 1, m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1, so
        // the step is lr * g / (|g| + eps / sqrt(0.001)) ~= lr * sign(g).
        let adam = Adam::keras(0.1);
        let (mut m, mut v) = (0.0, 0.0);
        let w = adam_update(
            1.0,
            2.5,
            &mut m,
            &mut v,
            adam.step_size(1),
            &adam.constants(),
        );
        assert!((w - 0.9).abs() < 1e-6, "{w}");
    }
}
