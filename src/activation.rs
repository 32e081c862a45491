//! Keras's activations, one per Dense layer: the function a layer applies to
//! its sums, and its derivative as Keras's backends take it.
//!
//! Each activation and its derivative is written once here, generically over
//! [`Scalar`]: the CPU reference runs it in f32 with the operations
//! shaders/activation.wgsl uses, in the same order (its `activate_<name>`
//! and `<name>_derivative`); the tests run it in f64; and the shadow check
//! runs it on [`crate::rounding::Bounded`] values, which carry how far a
//! device's result may be from the CPU's through every operation, WGSL's
//! `exp`, `log` and `tanh` included. Keras's formulas and the backends'
//! derivatives, with their source lines: docs/activations.md.

use crate::error::{Result, fail};
use serde::{Deserialize, Serialize};
use std::ops::{Add, Div, Mul, Neg, Sub};

/// A Dense layer's activation, by its Keras name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Activation {
    /// `linear(x) = x`: Keras's `Dense` default (`activation=None`).
    #[default]
    Linear,
    /// `relu(x) = max(x, 0)`; derivative 1 where x > 0, else 0 (0 at x = 0).
    Relu,
    /// `tanh(x)`; derivative `1 - tanh(x)^2`.
    Tanh,
    /// `sigmoid(x) = 1 / (1 + exp(-x))`; derivative `s (1 - s)`.
    Sigmoid,
    /// `softplus(x) = log(1 + exp(x))`, computed as
    /// `max(x, 0) + log(1 + exp(-|x|))`; derivative `sigmoid(x)`.
    Softplus,
    /// `elu(x) = x` where x > 0, else `exp(x) - 1` (Keras's alpha = 1);
    /// derivative 1 where x > 0, else `elu(x) + 1`.
    Elu,
    /// `leaky_relu(x) = x` where x > 0, else `0.2 x` (Keras's
    /// `negative_slope=0.2`); derivative 1 where x > 0, else 0.2.
    LeakyRelu,
    /// `gelu(x) = 0.5 x (1 + erf(x / sqrt 2))`, Keras's default
    /// (`approximate=False`), with erf as TensorFlow's CPU kernels compute
    /// it in f32 (Eigen's rational approximation); derivative
    /// `0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)`.
    Gelu,
    /// `silu(x) = x sigmoid(x)` (Keras's alias `swish`); derivative
    /// `s (1 + x (1 - s))`.
    #[serde(alias = "swish")]
    Silu,
}

impl Activation {
    /// Every activation.
    pub const ALL: [Activation; 9] = [
        Activation::Linear,
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
        Activation::Elu,
        Activation::LeakyRelu,
        Activation::Gelu,
        Activation::Silu,
    ];

    /// Keras's name (`"leaky_relu"`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Softplus => "softplus",
            Activation::Elu => "elu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Gelu => "gelu",
            Activation::Silu => "silu",
        }
    }

    /// The activation of a Keras name; an unknown name is an error that
    /// lists the known ones.
    pub fn from_name(name: &str) -> Result<Self> {
        // Keras's `activations.get` takes `swish` for silu.
        let name = if name == "swish" { "silu" } else { name };
        match Self::ALL.into_iter().find(|a| a.name() == name) {
            Some(activation) => Ok(activation),
            None => fail!(
                InvalidConfig,
                "unknown activation {name:?}; known: {}",
                Self::ALL.map(Activation::name).join(", ")
            ),
        }
    }

    /// Whether the layer's output is its sum: nothing to apply, no
    /// pre-activation to keep for the backward pass.
    pub fn is_linear(self) -> bool {
        self == Activation::Linear
    }

    /// The activation of `z`, with activation.wgsl's operations in its order.
    pub fn apply<S: Scalar>(self, z: S) -> S {
        match self {
            Activation::Linear => z,
            Activation::Relu => z.if_positive(|| z, || S::of(0.0)),
            Activation::Tanh => saturating_tanh(z),
            Activation::Sigmoid => sigmoid(z),
            Activation::Softplus => z.max0() + (S::of(1.0) + (-z.abs()).exp()).ln(),
            Activation::Elu => z.if_positive(|| z, || min0(z).exp() - S::of(1.0)),
            Activation::LeakyRelu => z.if_positive(|| z, || S::of(LEAKY_RELU_SLOPE) * z),
            Activation::Gelu => (S::of(0.5) * z) * (S::of(1.0) + erf(z / S::of(SQRT_2))),
            Activation::Silu => z * sigmoid(z),
        }
    }

    /// The derivative at `z`, as the backends take it (relu's at 0 is 0,
    /// leaky_relu's is the slope, elu's is 1), with activation.wgsl's operations.
    pub fn derivative<S: Scalar>(self, z: S) -> S {
        let one = S::of(1.0);
        match self {
            Activation::Linear => one,
            Activation::Relu => z.if_positive(|| one, || S::of(0.0)),
            Activation::Tanh => {
                let t = saturating_tanh(z);
                one - t * t
            }
            Activation::Sigmoid => {
                let s = sigmoid(z);
                s * (one - s)
            }
            Activation::Softplus => sigmoid(z),
            // TensorFlow's EluGrad works from the output: y + 1 where y < 0.
            Activation::Elu => z.if_positive(|| one, || Activation::Elu.apply(z) + one),
            Activation::LeakyRelu => z.if_positive(|| one, || S::of(LEAKY_RELU_SLOPE)),
            Activation::Gelu => {
                let cdf = S::of(0.5) * (one + erf(z / S::of(SQRT_2)));
                let density = (S::of(-0.5) * (z * z)).exp() * S::of(FRAC_1_SQRT_2PI);
                cdf + z * density
            }
            Activation::Silu => {
                let s = sigmoid(z);
                s * (one + z * (one - s))
            }
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Keras's `leaky_relu` default slope (`negative_slope=0.2`).
pub const LEAKY_RELU_SLOPE: f64 = 0.2;

const SQRT_2: f64 = std::f64::consts::SQRT_2;

/// 1 / sqrt(2 pi): the standard normal density's factor.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `tanh(clamp(x, -10, 10))`: the same in f32 (tanh is +-1 there), and no
/// device's `sinh / cosh` overflows into NaN (SwiftShader's does from |x|
/// ~ 45).
fn saturating_tanh<S: Scalar>(x: S) -> S {
    x.clamp(-10.0, 10.0).tanh()
}

/// `min(x, 0)`, exact: elu's `exp` never overflows on the branch it
/// discards.
fn min0<S: Scalar>(x: S) -> S {
    -(-x).max0()
}

/// `1 / (1 + exp(-x))` without overflow: with `e = exp(-|x|)`, `1 / (1 + e)`
/// for x >= 0 and `e / (1 + e)` below (the form `exp` never overflows in).
pub(crate) fn sigmoid<S: Scalar>(x: S) -> S {
    let e = (-x.abs()).exp();
    let d = S::of(1.0) + e;
    // x >= 0 is "not (-x > 0)".
    (-x).if_positive(|| e / d, || S::of(1.0) / d)
}

/// erf in f32 as TensorFlow's CPU kernels compute it: Eigen's
/// `generic_fast_erf_float`, `x p(x^2) / q(x^2)` on x clamped to [-4, 4]
/// (outside it erf is +-1 in f32), within a few ULP of erf.
fn erf<S: Scalar>(x: S) -> S {
    const ALPHA: [f64; 7] = [
        -2.726_142_258_013_06e-10,
        2.770_681_424_959_02e-08,
        -2.101_024_020_825_08e-06,
        -5.692_506_394_623_46e-05,
        -7.349_906_303_268_55e-04,
        -2.954_599_808_540_25e-03,
        -1.609_603_332_624_15e-02,
    ];
    const BETA: [f64; 5] = [
        -1.456_607_184_649_96e-05,
        -2.133_740_552_789_05e-04,
        -1.682_826_974_382_03e-03,
        -7.373_329_167_204_68e-03,
        -1.426_473_905_141_89e-02,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let horner = |coefficients: &[f64]| {
        let mut sum = S::of(coefficients[0]);
        for &c in &coefficients[1..] {
            sum = x2 * sum + S::of(c);
        }
        sum
    };
    (x * horner(&ALPHA)) / horner(&BETA)
}

/// The arithmetic an activation is written in: f32 (the CPU reference, as
/// the kernels compute), f64 (tests), or values with a bound on how far a
/// device's result may be from the CPU's (the shadow check).
pub trait Scalar:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// A constant, as a WGSL literal rounds it to f32.
    fn of(value: f64) -> Self;
    /// `abs(self)`, exact.
    fn abs(self) -> Self;
    /// `max(self, 0)`, exact.
    fn max0(self) -> Self;
    /// `clamp(self, low, high)` (bounds rounded to f32), exact.
    fn clamp(self, low: f64, high: f64) -> Self;
    /// WGSL's `exp`.
    fn exp(self) -> Self;
    /// WGSL's `log`.
    fn ln(self) -> Self;
    /// WGSL's `tanh`.
    fn tanh(self) -> Self;
    /// `positive()` where `self > 0`, else `otherwise()` (WGSL's `select`).
    fn if_positive(self, positive: impl Fn() -> Self, otherwise: impl Fn() -> Self) -> Self;
}

macro_rules! float_scalar {
    ($float:ty) => {
        impl Scalar for $float {
            fn of(value: f64) -> Self {
                value as f32 as $float
            }
            fn abs(self) -> Self {
                <$float>::abs(self)
            }
            fn max0(self) -> Self {
                if self > 0.0 { self } else { 0.0 }
            }
            fn clamp(self, low: f64, high: f64) -> Self {
                <$float>::clamp(self, Self::of(low), Self::of(high))
            }
            fn exp(self) -> Self {
                <$float>::exp(self)
            }
            fn ln(self) -> Self {
                <$float>::ln(self)
            }
            fn tanh(self) -> Self {
                <$float>::tanh(self)
            }
            fn if_positive(
                self,
                positive: impl Fn() -> Self,
                otherwise: impl Fn() -> Self,
            ) -> Self {
                if self > 0.0 { positive() } else { otherwise() }
            }
        }
    };
}

float_scalar!(f32);
float_scalar!(f64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known() {
        for activation in Activation::ALL {
            assert_eq!(
                Activation::from_name(activation.name()).unwrap(),
                activation
            );
            let json = serde_json::to_string(&activation).unwrap();
            assert_eq!(json, format!("\"{}\"", activation.name()));
        }
        // Keras's alias.
        assert_eq!(Activation::from_name("swish").unwrap(), Activation::Silu);
        let error = Activation::from_name("mish").unwrap_err().to_string();
        assert!(
            error.contains("\"mish\"") && error.contains("leaky_relu, gelu, silu"),
            "{error}"
        );
    }

    #[test]
    fn derivatives_at_the_kinks_are_the_backends() {
        // TensorFlow: ReluGrad masks x > 0; LeakyReluGrad gives the slope at
        // 0; EluGrad gives 1 where y = 0; the smooth ones their limits.
        let at_zero = |a: Activation| a.derivative(0.0f32);
        assert_eq!(at_zero(Activation::Relu), 0.0);
        assert_eq!(at_zero(Activation::LeakyRelu), 0.2);
        assert_eq!(at_zero(Activation::Elu), 1.0);
        assert_eq!(at_zero(Activation::Linear), 1.0);
        assert_eq!(at_zero(Activation::Tanh), 1.0);
        assert_eq!(at_zero(Activation::Sigmoid), 0.25);
        assert_eq!(at_zero(Activation::Softplus), 0.5);
        assert_eq!(at_zero(Activation::Gelu), 0.5);
        assert_eq!(at_zero(Activation::Silu), 0.5);
    }

    #[test]
    fn tails_stay_finite_and_take_their_limits() {
        for activation in Activation::ALL {
            for z in [-1e30f32, -100.0, 100.0, 1e30] {
                let (a, d) = (activation.apply(z), activation.derivative(z));
                assert!(
                    a.is_finite() && d.is_finite(),
                    "{activation} at {z}: {a}, {d}"
                );
            }
        }
        assert_eq!(Activation::Sigmoid.apply(-100.0f32), (-100.0f32).exp());
        assert_eq!(Activation::Softplus.apply(100.0f32), 100.0);
        assert_eq!(Activation::Gelu.apply(-10.0f32), 0.0);
        assert_eq!(Activation::Elu.apply(-100.0f32), -1.0);
    }

    #[test]
    fn f32_erf_is_within_a_few_ulp_of_erf() {
        // Eigen's approximation is accurate to a few ULP in f32; 4e-7
        // absolute is 3.4 ULP at 1 (erf's largest values).
        let worst = (-6000..=6000)
            .map(|k| k as f32 * 1e-3)
            .map(|x| (erf(x) as f64 - libm::erf(x as f64)).abs())
            .fold(0.0f64, f64::max);
        assert!(worst < 4e-7, "largest error {worst:e}");
    }
}
