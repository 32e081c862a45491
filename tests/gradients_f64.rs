//! Every activation's and every loss's gradients checked against an
//! independent f64 computation: the network and the loss written out again
//! in f64 with the textbook formulas (erf from the libm crate for gelu, not
//! our f32 approximation),
//! differentiated by central finite differences, so no backprop or
//! derivative code is shared with the CPU reference. The GPU is held to the
//! CPU reference by the shadow check (tests/gpu_vs_cpu.rs), so a derivative
//! that is wrong on both sides is caught here.

mod common;

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

/// A network of `inputs`, 3 and 2 hidden units (every hidden layer
/// `hidden`), and `outputs` units of `output` (1-3-2-1 or 2-3-2: 17
/// parameters either way).
fn architecture(case: Case) -> Architecture {
    let hidden = [(3, case.hidden), (2, case.hidden)];
    let (inputs, outputs) = case.io;
    let layers = if outputs == 1 {
        &hidden[..]
    } else {
        &hidden[..1]
    };
    Architecture::with_layers(layers, case.output)
        .unwrap()
        .with_io(inputs, outputs)
        .unwrap()
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
    Dataset::new(
        vec![-2.1, -0.9, 0.45, 1.3, 2.6],
        vec![0.3, -0.4, 0.9, 0.2, 0.7],
    )
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

/// The network's outputs in f64 for one row, and the smallest |z| of any
/// unit.
fn forward_f64(p: &[f64], x: &[f32], case: Case) -> (Vec<f64>, f64) {
    let layers = architecture(case).layers();
    let mut values: Vec<f64> = x.iter().map(|&v| v as f64).collect();
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
    (values, nearest_kink)
}

/// What one check trains: the hidden layers' and the output layer's
/// activations, the loss, and the data.
#[derive(Clone, Copy)]
struct Case {
    hidden: Activation,
    output: Activation,
    loss: Loss,
    data: fn() -> Dataset,
    /// Input and output columns.
    io: (usize, usize),
}

fn loss_f64(p: &[f64], case: Case) -> f64 {
    let data = (case.data)();
    let n = data.len() as f64;
    (0..data.len())
        .map(|s| {
            let outputs = forward_f64(p, data.x_row(s), case).0;
            let targets = data.y_row(s);
            let units = outputs.len() as f64;
            let sum: f64 = outputs
                .iter()
                .zip(targets)
                .map(|(&output, &y)| loss_of(case.loss, output, y as f64))
                .sum();
            // Keras's mean over the last axis, then over the batch.
            sum / units
        })
        .sum::<f64>()
        / n
}

fn gradient_f64(p: &[f64], case: Case) -> Vec<f64> {
    common::central_differences(|p| loss_f64(p, case), p)
}

/// Targets in [0, 1] for the cross-entropies: 0, 1 and between.
fn probabilities() -> Dataset {
    Dataset::new(
        vec![-2.1, -0.9, 0.45, 1.3, 2.6],
        vec![0.0, 1.0, 0.3, 1.0, 0.8],
    )
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
    let model = Model::from_params(architecture(case), PARAMS.to_vec()).unwrap();
    let p: Vec<f64> = model.params().iter().map(|&w| w as f64).collect();
    for s in 0..data.len() {
        let (outputs, nearest) = forward_f64(&p, data.x_row(s), case);
        assert!(nearest > 1e-3, "a sum lies {nearest} from a kink");
        // mae's and huber's kinks: the error at 0 and at +-1.
        for (out, &y) in outputs.iter().zip(data.y_row(s)) {
            let e = (out - y as f64).abs();
            assert!(
                e > 1e-3 && (e - 1.0).abs() > 1e-3,
                "an error of {e} is at a kink"
            );
        }
    }
    let mut gradients = vec![0.0f32; PARAMS.len()];
    let loss = Backprop::new(model.architecture(), which, data.len()).loss_and_gradients(
        model.params(),
        &data.x,
        &data.y,
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
        io: (1, 1),
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
        io: (1, 1),
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

/// Two inputs and two targets a row, away from every kink.
fn two_columns() -> Dataset {
    let mut data = Dataset::new(
        vec![-2.1, 0.7, -0.9, 1.6, 0.45, -1.2, 1.3, 0.2, 2.6, -0.4],
        vec![0.3, -0.8, -0.4, 0.6, 0.9, 0.1, 0.2, -0.5, 0.7, 0.35],
    );
    (data.x_width, data.y_width) = (2, 2);
    data
}

#[test]
fn several_outputs_gradients_match_finite_differences() {
    // 2-3-2: each sample's loss the mean of its two units' (Keras's mean
    // over the last axis), the error of each unit over N x 2.
    for (hidden, output, loss) in [
        (Activation::Tanh, Activation::Linear, Loss::MeanSquaredError),
        (Activation::Relu, Activation::Linear, Loss::Huber),
        (
            Activation::Silu,
            Activation::Linear,
            Loss::MeanAbsoluteError,
        ),
    ] {
        check(Case {
            hidden,
            output,
            loss,
            data: two_columns,
            io: (2, 2),
        });
    }
}
