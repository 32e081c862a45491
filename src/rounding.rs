//! The rounding model of the shadow check (src/shadow/): how far a
//! device's f32 result may be from the CPU reference's, for the arithmetic
//! WGSL allows a device (<https://www.w3.org/TR/WGSL/#floating-point-accuracy>)
//! and the correctly rounded arithmetic of the CPU, and [`Bounded`] values
//! that carry that distance through a formula ([`crate::activation`]'s).

use crate::activation::Scalar;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// The unit roundoff of f32.
pub const U: f64 = 1.0 / (1u64 << 24) as f64;

/// How far a quotient may be from the exact one on a device and on the CPU
/// together: WGSL allows 2.5 ULP for `x / y` (an ULP is at most 2u of the
/// value), Rust rounds correctly (u). WGSL's floating-point accuracy table:
/// <https://www.w3.org/TR/WGSL/#floating-point-accuracy>.
pub const DIVISION_APART: f64 = 2.5 * 2.0 * U + U;

/// The same for `sqrt`: WGSL inherits it from `1.0 / inverseSqrt(x)`, a
/// 2-ULP reciprocal square root through a 2.5-ULP division: at most 4.5 ULP
/// (9u, and a little more for the product of the two errors: 9.01u).
pub const SQRT_APART: f64 = 9.01 * U + U;

/// What one operation may lose on a device that flushes subnormal results
/// to zero, as WGSL allows: less than the smallest normal f32. Added per
/// operation, it matters only for values near 1e-38.
pub const FLUSH: f64 = f32::MIN_POSITIVE as f64;

/// How far a value computed with `n` roundings may be, on a device and on
/// the CPU together, relative to the magnitudes it was summed from: WGSL's
/// "correctly rounded" lets a device take either neighbour of the exact
/// result (an ULP, at most 2u), the CPU rounds to nearest (u), so gamma(2n)
/// + gamma(n).
pub fn apart(n: usize) -> f64 {
    gamma(2 * n) + gamma(n)
}

/// One rounding on each side: 2u on the device, u on the CPU.
pub const ONE_OP: f64 = 3.0 * U;

/// gamma(n) = n u / (1 - n u): the relative error bound of n roundings to nearest.
pub fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U;
    nu / (1.0 - nu)
}

/// How far a device's `exp(x)` may be from the CPU's, relative to the
/// value: WGSL allows `3 + 2 |x|` ULP, Rust's (the C library's `expf`) is
/// within 1 ULP, an ULP at most 2u of the value.
fn exp_apart(x: f64) -> f64 {
    (3.0 + 2.0 * x.abs()) * 2.0 * U + 2.0 * U
}

/// WGSL's `log` is within 2^-21 absolute on [0.5, 2] and 3 ULP elsewhere;
/// Rust's within 1 ULP.
const LOG_ABSOLUTE: f64 = 1.0 / (1u64 << 21) as f64;

/// WGSL's tanh may be this far off however small the value.
const TANH_ABSOLUTE: f64 = 1e-5;

/// A value of one sample's pass (f64, from the same f32 inputs and
/// constants as both sides) and a bound on how far the device's and the
/// CPU's f32 values of it may be apart. Arithmetic on `Bounded` values
/// carries the bound through each operation and adds the operation's own
/// rounding on both sides.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bounded {
    /// The value in f64.
    pub value: f64,
    /// How far the device's and the CPU's f32 values may be apart.
    pub apart: f64,
}

impl Bounded {
    /// A value both sides hold exactly (an input, a weight).
    pub fn exact(value: f64) -> Self {
        Self { value, apart: 0.0 }
    }

    /// A magnitude covering both f32 values (each within `apart` of the other,
    /// and the f64 value within that of the CPU's).
    pub fn magnitude(self) -> f64 {
        self.value.abs() + 2.0 * self.apart
    }

    /// The two sides' values both lie in `value -+ 2 apart`.
    fn low(self) -> f64 {
        self.value - 2.0 * self.apart
    }

    fn high(self) -> f64 {
        self.value + 2.0 * self.apart
    }

    /// A result `value`, `carried` apart from its operands' differences,
    /// and one rounding on each side (`relative` of its magnitude).
    fn rounded(value: f64, carried: f64, relative: f64) -> Self {
        // An unbounded operand times an exact 0 bounds nothing either.
        let carried = if carried.is_nan() {
            f64::INFINITY
        } else {
            carried
        };
        Self {
            value,
            apart: carried + relative * (value.abs() + 2.0 * carried) + 2.0 * FLUSH,
        }
    }
}

impl Add for Bounded {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self::rounded(self.value + other.value, self.apart + other.apart, ONE_OP)
    }
}

impl Sub for Bounded {
    type Output = Self;
    fn sub(self, other: Self) -> Self {
        Self::rounded(self.value - other.value, self.apart + other.apart, ONE_OP)
    }
}

impl Mul for Bounded {
    type Output = Self;
    fn mul(self, other: Self) -> Self {
        let carried = self.magnitude() * other.apart + other.magnitude() * self.apart;
        Self::rounded(self.value * other.value, carried, ONE_OP)
    }
}

impl Div for Bounded {
    type Output = Self;
    fn div(self, other: Self) -> Self {
        // The divisor's smallest magnitude on either side; a divisor that
        // may be 0 bounds nothing.
        let low = other.value.abs() - 2.0 * other.apart;
        if low <= 0.0 {
            return Self {
                value: self.value / other.value,
                apart: f64::INFINITY,
            };
        }
        let quotient = self.magnitude() / low;
        let carried = (self.apart + quotient * other.apart) / low;
        Self::rounded(self.value / other.value, carried, DIVISION_APART)
    }
}

impl Neg for Bounded {
    type Output = Self;
    fn neg(self) -> Self {
        Self {
            value: -self.value,
            apart: self.apart,
        }
    }
}

impl Scalar for Bounded {
    fn of(value: f64) -> Self {
        Self::exact(value as f32 as f64)
    }

    fn abs(self) -> Self {
        Self {
            value: self.value.abs(),
            apart: self.apart,
        }
    }

    fn max0(self) -> Self {
        Self {
            value: self.value.max(0.0),
            apart: self.apart,
        }
    }

    fn clamp(self, low: f64, high: f64) -> Self {
        let (low, high) = (low as f32 as f64, high as f32 as f64);
        // Where both sides are clamped to the same bound, they agree.
        let both_clamped = self.high() <= low || self.low() >= high;
        Self {
            value: self.value.clamp(low, high),
            apart: if both_clamped { 0.0 } else { self.apart },
        }
    }

    fn exp(self) -> Self {
        // exp's slope is at most exp(high) between the two sides' inputs.
        let largest = self.high().exp();
        let apart = largest * self.apart + exp_apart(self.magnitude()) * largest + 2.0 * FLUSH;
        Self {
            value: self.value.exp(),
            apart,
        }
    }

    fn ln(self) -> Self {
        let low = self.low();
        if low <= 0.0 {
            return Self {
                value: self.value.ln(),
                apart: f64::INFINITY,
            };
        }
        let carried = self.apart / low;
        let value = self.value.ln();
        // Either of WGSL's two accuracies, and the CPU's ULP.
        let largest = value.abs() + 2.0 * carried;
        let apart = carried + LOG_ABSOLUTE + (3.0 * 2.0 * U + 2.0 * U) * largest + 2.0 * FLUSH;
        Self { value, apart }
    }

    fn tanh(self) -> Self {
        // WGSL's tanh is within the worse of 1e-5 absolute and the accuracy
        // inherited from sinh(x) / cosh(x), both from exp(x) and exp(-x)
        // (each exp_apart off): a quotient within exp_apart (1 + |t|) +
        // (2 roundings + a division) |t|; the CPU's within 1 ULP. Its
        // slope is at most 1.
        let value = self.value.tanh();
        let t = value.abs() + 2.0 * self.apart;
        let inherited =
            exp_apart(self.magnitude()) * (1.0 + t) + (2.0 * ONE_OP + DIVISION_APART + 2.0 * U) * t;
        let evaluation = inherited.max(TANH_ABSOLUTE + 2.0 * U * t);
        Self {
            value,
            apart: self.apart + evaluation * 1.01 + 2.0 * FLUSH,
        }
    }

    fn if_positive(self, positive: impl Fn() -> Self, otherwise: impl Fn() -> Self) -> Self {
        if self.low() > 0.0 {
            return positive();
        }
        if self.high() <= 0.0 {
            return otherwise();
        }
        // The sides may branch apart: either branch, or one on each.
        let (p, o) = (positive(), otherwise());
        let value = if self.value > 0.0 { p.value } else { o.value };
        let straddle = (p.value - o.value).abs() + 2.0 * (p.apart + o.apart);
        Self {
            value,
            apart: p.apart.max(o.apart).max(straddle),
        }
    }
}
