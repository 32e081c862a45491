// Keras's activations (src/activation.rs has each formula, its derivative
// as the backends take it, and the CPU reference's twin of this code,
// operation for operation; docs/activations.md the sources). A module holds
// the activations its layers use and no others (`linear` has no code: its
// sums are its outputs), each called by name: no kernel switches on an
// activation at run time.

// if relu {
fn activate_relu(z: f32) -> f32 {
    return select(0.0, z, z > 0.0);
}

// 0 at 0.
fn relu_derivative(z: f32) -> f32 {
    return select(0.0, 1.0, z > 0.0);
}
// } relu

// if tanh {
fn activate_tanh(z: f32) -> f32 {
    return saturating_tanh(z);
}

fn tanh_derivative(z: f32) -> f32 {
    let t = saturating_tanh(z);
    return 1.0 - t * t;
}

// tanh of x clamped to [-10, 10], where f32's tanh is already +-1: WGSL's
// tanh may be computed as sinh / cosh, which is inf / inf = NaN once exp
// overflows (SwiftShader's is, from |x| ~ 45).
fn saturating_tanh(x: f32) -> f32 {
    return tanh(clamp(x, -10.0, 10.0));
}
// } tanh

// if sigmoid {
fn activate_sigmoid(z: f32) -> f32 {
    return sigmoid(z);
}

fn sigmoid_derivative(z: f32) -> f32 {
    let s = sigmoid(z);
    return s * (1.0 - s);
}
// } sigmoid

// if softplus {
fn activate_softplus(z: f32) -> f32 {
    return select(0.0, z, z > 0.0) + log(1.0 + exp(-abs(z)));
}

fn softplus_derivative(z: f32) -> f32 {
    return sigmoid(z);
}
// } softplus

// if elu {
fn activate_elu(z: f32) -> f32 {
    return select(exp(min(z, 0.0)) - 1.0, z, z > 0.0);
}

// TensorFlow's EluGrad, from the output y: y + 1 where y < 0.
fn elu_derivative(z: f32) -> f32 {
    return select((exp(min(z, 0.0)) - 1.0) + 1.0, 1.0, z > 0.0);
}
// } elu

// if leaky_relu {
fn activate_leaky_relu(z: f32) -> f32 {
    return select(0.2 * z, z, z > 0.0);
}

fn leaky_relu_derivative(z: f32) -> f32 {
    return select(0.2, 1.0, z > 0.0);
}
// } leaky_relu

// if gelu {
fn activate_gelu(z: f32) -> f32 {
    return (0.5 * z) * (1.0 + erf(z / 1.4142135623730951));
}

fn gelu_derivative(z: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(z / 1.4142135623730951));
    let density = exp(-0.5 * (z * z)) * 0.3989422804014327;
    return cdf + z * density;
}

// erf as TensorFlow's CPU kernels compute it in f32 (Eigen's
// generic_fast_erf_float): x p(x^2) / q(x^2) on x clamped to [-4, 4].
fn erf(value: f32) -> f32 {
    let x = clamp(value, -4.0, 4.0);
    let x2 = x * x;
    var p = -2.72614225801306e-10;
    p = x2 * p + 2.77068142495902e-08;
    p = x2 * p + -2.10102402082508e-06;
    p = x2 * p + -5.69250639462346e-05;
    p = x2 * p + -7.34990630326855e-04;
    p = x2 * p + -2.95459980854025e-03;
    p = x2 * p + -1.60960333262415e-02;
    var q = -1.45660718464996e-05;
    q = x2 * q + -2.13374055278905e-04;
    q = x2 * q + -1.68282697438203e-03;
    q = x2 * q + -7.37332916720468e-03;
    q = x2 * q + -1.42647390514189e-02;
    return (x * p) / q;
}
// } gelu

// if silu {
fn activate_silu(z: f32) -> f32 {
    return z * sigmoid(z);
}

fn silu_derivative(z: f32) -> f32 {
    let s = sigmoid(z);
    return s * (1.0 + z * (1.0 - s));
}
// } silu

// if sigmoid_function {
// 1 / (1 + exp(-x)) as e / (1 + e) or 1 / (1 + e), e = exp(-|x|): exp
// never overflows. (Also the derivative of softplus and of the
// cross-entropy of logits.)
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    let d = 1.0 + e;
    if -x > 0.0 {
        return e / d;
    }
    return 1.0 / d;
}
// } sigmoid_function
