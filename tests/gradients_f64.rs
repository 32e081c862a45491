//! Every activation's and every loss's gradients checked against an
//! independent f64 computation: the network and the loss written out again
//! in f64 with the textbook formulas (erf from the libm crate for gelu, not
//! our f32 approximation),
//! differentiated by central finite differences, so no backprop or
//! derivative code is shared with the CPU reference. The GPU is held to the
//! CPU reference by the shadow check (tests/gpu_vs_cpu.rs), so a derivative
//! that is wrong on both sides is caught here.

use gpu_c2f::cpu::Backprop;
use gpu_c2f::{Activation, Architecture, Dataset, Loss, Model};

/// The activations in f64, from their definitions.
fn activate_f64(activation: Activation, x: f64) -> f64 {
    match activation {
        Activation::Linear => x,
        Activation::Relu => x.max(0.0),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Softplus => x.exp().ln_1p(),
        Activation::Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        Activation::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                0.2 * x
            }
        }
        Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        Activation::Silu => x / (1.0 + (-x).exp()),
        other => panic!("no f64 formula for {other}"),
    }
}

/// A 1-3-2-1 network: every hidden layer `hidden`, the output `output`.
fn architecture(hidden: Activation, output: Activation) -> Architecture {
    Architecture::with_layers(&[(3, hidden), (2, hidden)], output).unwrap()
}

/// Hand-picked weights (no symmetry, every sum well away from 0 on the data
/// below, so central differences never straddle a kink: checked in
/// `forward_f64`).
const PARAMS: [f32; 17] = [
    0.9, -0.7, 0.45, 0.15, 0.2, -0.35, // layer 0: kernel 1x3, bias 3
    0.6, -0.5, 0.8, 0.3, -0.9, 0.4, 0.25, -0.15, // layer 1: kernel 3x2, bias 2
    1.1, -0.8, 0.05, // layer 2: kernel 2x1, bias 1
];

fn data() -> Dataset {
    Dataset {
        celsius: vec![-2.1, -0.9, 0.45, 1.3, 2.6],
        fahrenheit: vec![0.3, -0.4, 0.9, 0.2, 0.7],
    }
}

/// Keras's losses in f64, from their definitions (keras/src/losses/losses.py).
fn loss_of(loss: Loss, output: f64, y: f64) -> f64 {
    let e = output - y;
    match loss {
        Loss::MeanSquaredError => e * e,
        Loss::MeanAbsoluteError => e.abs(),
        Loss::Huber => {
            if e.abs() <= 1.0 {
                0.5 * e * e
            } else {
                e.abs() - 0.5
            }
        }
        Loss::BinaryCrossentropy => {
            // The clip's bounds in f32, as Keras computes them in float32
            // (1 - 1e-7 rounds to 1 - 2^-23: log(1 - p) is -15.9, not -16.1).
            let p = output.clamp(1e-7f32 as f64, (1.0f32 - 1e-7f32) as f64);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        }
        Loss::BinaryCrossentropyFromLogits => {
            output.max(0.0) - output * y + (-output.abs()).exp().ln_1p()
        }
        other => panic!("no f64 formula for {other}"),
    }
}

/// The network's output in f64, and the smallest |z| of any unit.
fn forward_f64(p: &[f64], x: f64, hidden: Activation, output: Activation) -> (f64, f64) {
    let layers = architecture(hidden, output).layers();
    let mut values = vec![x];
    let mut nearest_kink = f64::INFINITY;
    for layer in &layers {
        values = (0..layer.units)
            .map(|j| {
                let z = (0..layer.inputs)
                    .map(|i| values[i] * p[layer.kernel_offset + i * layer.units + j])
                    .sum::<f64>()
                    + p[layer.bias_offset + j];
                nearest_kink = nearest_kink.min(z.abs());
                activate_f64(layer.activation, z)
            })
            .collect();
    }
    (values[0], nearest_kink)
}

/// What one check trains: the hidden layers' and the output layer's
/// activations, the loss, and the data.
#[derive(Clone, Copy)]
struct Case {
    hidden: Activation,
    output: Activation,
    loss: Loss,
    data: fn() -> Dataset,
}

fn loss_f64(p: &[f64], case: Case) -> f64 {
    let data = (case.data)();
    let n = data.len() as f64;
    data.celsius
        .iter()
        .zip(&data.fahrenheit)
        .map(|(&x, &y)| {
            let output = forward_f64(p, x as f64, case.hidden, case.output).0;
            loss_of(case.loss, output, y as f64)
        })
        .sum::<f64>()
        / n
}

fn gradient_f64(p: &[f64], case: Case) -> Vec<f64> {
    let h = 1e-6;
    (0..p.len())
        .map(|i| {
            let (mut up, mut down) = (p.to_vec(), p.to_vec());
            up[i] += h;
            down[i] -= h;
            (loss_f64(&up, case) - loss_f64(&down, case)) / (2.0 * h)
        })
        .collect()
}

/// Targets in [0, 1] for the cross-entropies: 0, 1 and between.
fn probabilities() -> Dataset {
    Dataset {
        celsius: vec![-2.1, -0.9, 0.45, 1.3, 2.6],
        fahrenheit: vec![0.0, 1.0, 0.3, 1.0, 0.8],
    }
}

/// Checks the CPU reference's loss and gradients of `case` against the f64
/// ones (see the module's notes).
fn check(case: Case) {
    let Case {
        hidden,
        output,
        loss: which,
        ..
    } = case;
    let data = (case.data)();
    let architecture = architecture(hidden, output);
    let model = Model::from_params(architecture, PARAMS.to_vec()).unwrap();
    let p: Vec<f64> = model.params().iter().map(|&w| w as f64).collect();
    for (&x, &y) in data.celsius.iter().zip(&data.fahrenheit) {
        let (out, nearest) = forward_f64(&p, x as f64, hidden, output);
        assert!(nearest > 1e-3, "a sum lies {nearest} from a kink");
        // mae's and huber's kinks: the error at 0 and at +-1.
        let e = (out - y as f64).abs();
        assert!(
            e > 1e-3 && (e - 1.0).abs() > 1e-3,
            "an error of {e} is at a kink"
        );
    }
    let mut gradients = vec![0.0f32; PARAMS.len()];
    let loss = Backprop::new(model.architecture(), which, data.len()).loss_and_gradients(
        model.params(),
        &data.celsius,
        &data.fahrenheit,
        &mut gradients,
    );
    // f32 forward and backward through a few layers: each value within
    // a few ULP (1e-7 relative) of its f64 twin, the f32 erf of gelu
    // within a few ULP of erf, exp, log and tanh within an ULP; central
    // differences with h = 1e-6 are exact to ~1e-9 where no kink is
    // within h. 2e-5 of the largest gradient is far above both, and far
    // below any wrong derivative (a derivative off by its own size at
    // one unit moves gradients by ~1e-1).
    let expected = gradient_f64(&p, case);
    let scale = expected.iter().fold(0.0f64, |s, g| s.max(g.abs()));
    for (i, (&got, want)) in gradients.iter().zip(&expected).enumerate() {
        assert!(
            ((got as f64 - want) / scale).abs() < 2e-5,
            "{hidden} hidden, {output} output, {which}, parameter {i}: {got} vs {want}"
        );
    }
    let want = loss_f64(&p, case);
    assert!(
        ((loss as f64 - want) / want).abs() < 1e-5,
        "{hidden} hidden, {output} output, {which}: loss {loss} vs {want}"
    );
}

#[test]
fn every_activations_gradients_match_finite_differences() {
    let case = |hidden, output| Case {
        hidden,
        output,
        loss: Loss::MeanSquaredError,
        data,
    };
    for activation in Activation::ALL {
        check(case(activation, Activation::Linear));
        check(case(Activation::Tanh, activation));
    }
}

#[test]
fn every_losss_gradients_match_finite_differences() {
    let case = |output, loss, data| Case {
        hidden: Activation::Tanh,
        output,
        loss,
        data,
    };
    check(case(Activation::Linear, Loss::MeanSquaredError, data));
    check(case(Activation::Linear, Loss::MeanAbsoluteError, data));
    check(case(Activation::Linear, Loss::Huber, data));
    check(case(Activation::Tanh, Loss::Huber, data));
    // Probabilities from a sigmoid (Keras's logits shortcut: the same
    // gradient as the clipped formula, which the f64 side computes), from a
    // linear layer whose outputs stay inside the clip, and logits.
    check(case(
        Activation::Sigmoid,
        Loss::BinaryCrossentropy,
        probabilities,
    ));
    check(case(
        Activation::Softplus,
        Loss::BinaryCrossentropy,
        probabilities,
    ));
    check(case(
        Activation::Linear,
        Loss::BinaryCrossentropyFromLogits,
        probabilities,
    ));
}
