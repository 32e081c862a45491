//! The samples schedule's kernel, written out for one architecture
//! (shaders/samples.wgsl has the fixed part and says what it does).
//!
//! Why written out: with the widths known, every activation, error, weight
//! and sum is a named scalar, so a driver keeps them in registers. On
//! llvmpipe, where an invocation's memory accesses and loop-carried
//! variables are what cost, this is much faster than the layer-by-layer
//! kernels for narrow networks (BENCHMARKS.md). The code, and the driver's
//! time to compile it, grow with the parameter count, which is why `auto`
//! uses it only for small networks (`schedule::SAMPLES_AUTO_MAX_PARAMS`).
//!
//! Every value is computed with the arithmetic of the kernel function
//! named in the comment above it, in the same order: each dense sum starts
//! at 0 and adds its terms in index order, then the bias; each gradient
//! sum starts at 0 and adds its block's samples in order. That is the CPU
//! reference's order too, and the tests hold this kernel to it.

use super::module::{activate, times_derivative};
use super::wgsl::{SAMPLES_TEMPLATE, fill};
use crate::activation::Activation;
use crate::model::Architecture;
use std::fmt::Write;

/// `sample_partials_at` for `architecture` (and the run's metrics, when it
/// has any): the template's holes filled.
pub fn sample_partials_source(architecture: &Architecture, metrics: bool) -> String {
    let layers = architecture.layers();
    let param_count = architecture.param_count();
    let last = layers.len();
    let lines =
        |f: &dyn Fn(usize) -> String| (0..param_count).map(f).collect::<Vec<_>>().join("\n");
    let load_weights = lines(&|p| format!("    let w{p} = params[{p}u];"));
    let mut zero_sums = lines(&|p| format!("    var g{p} = 0.0;"));
    let mut store_sums = lines(&|p| format!("    reduce[column + {p}u * args.out_len] = g{p};"));
    let _ = write!(
        store_sums,
        "\n    reduce[column + LOSS_ROW * args.out_len] = loss_sum;"
    );
    if metrics {
        zero_sums.push_str("\n    var metric_sums = array<f32, METRIC_COUNT>();");
        let _ = write!(
            store_sums,
            "\n    for (var m = 0u; m < METRIC_COUNT; m++) {{\n        \
             reduce[column + (METRIC_ROW + m) * args.out_len] = metric_sums[m];\n    }}"
        );
    }
    let mut out = String::new();
    let inputs = layers[0].inputs;
    let _ = writeln!(
        out,
        "        // gather_batch_at's rows: the sample's inputs"
    );
    for i in 0..inputs {
        let _ = writeln!(
            out,
            "        let a0_{i} = tensors[INPUT_OFFSET + s * {inputs}u + {i}u];"
        );
    }
    for (l, layer) in layers.iter().enumerate() {
        let _ = writeln!(
            out,
            "        // dense_forward_at, layer {l} ({} -> {}{})",
            layer.inputs,
            layer.units,
            activation_note(layer.activation)
        );
        for j in 0..layer.units {
            let terms = (0..layer.inputs).map(|i| {
                (
                    format!("a{l}_{i}"),
                    layer.kernel_offset + i * layer.units + j,
                )
            });
            let sum = format!("({}) + w{}", dense_sum(terms), layer.bias_offset + j);
            let a = format!("a{}_{j}", l + 1);
            let _ = match layer.activation {
                Activation::Linear => writeln!(out, "        let {a} = {sum};"),
                activation => writeln!(
                    out,
                    "        let z{l1}_{j} = {sum};\n        let {a} = {};",
                    activate(activation, &format!("z{}_{j}", l + 1)),
                    l1 = l + 1,
                ),
            };
        }
    }
    let output = layers[last - 1].activation;
    let units = layers[last - 1].units;
    // The output layer's sum z of unit j: its output where it is linear.
    let output_sum = |j: usize| match output {
        Activation::Linear => format!("a{last}_{j}"),
        _ => format!("z{last}_{j}"),
    };
    let _ = writeln!(out, "        // output_error_at");
    let mut sample_loss = String::from("0.0");
    for j in 0..units {
        let z = output_sum(j);
        let _ = writeln!(
            out,
            "        let y_{j} = tensors[TARGET_OFFSET + s * {units}u + {j}u];\n        \
             let error_{j} = output_error_of(a{last}_{j}, {z}, y_{j}, batch.total * {units}u);\n        \
             let e{last}_{j} = error_{j}.delta;"
        );
        sample_loss = format!("({sample_loss} + error_{j}.loss)");
    }
    let _ = writeln!(
        out,
        "        let sample_loss = {sample_loss} / {}.0;",
        units
    );
    // Each metric: the mean over the units, added to the block's sum
    // (output_error_at's metric_sums, then gradient_partials_at's rows).
    if metrics {
        let _ = writeln!(out, "        var metric = array<f32, METRIC_COUNT>();");
        for j in 0..units {
            let z = output_sum(j);
            let _ = writeln!(
                out,
                "        let values_{j} = metric_values(a{last}_{j}, {z}, y_{j});\n        \
                 for (var m = 0u; m < METRIC_COUNT; m++) {{\n            \
                 metric[m] += values_{j}[m];\n        }}"
            );
        }
        let _ = writeln!(
            out,
            "        for (var m = 0u; m < METRIC_COUNT; m++) {{\n            \
             metric_sums[m] += metric[m] / {units}.0;\n        }}"
        );
    }
    for (l, layer) in layers.iter().enumerate().skip(1).rev() {
        let below = layers[l - 1].activation;
        let _ = writeln!(
            out,
            "        // dense_backward_at, layer {l}'s errors into its {} inputs{}",
            layer.inputs,
            activation_note(below)
        );
        for i in 0..layer.inputs {
            let terms = (0..layer.units).map(|j| {
                (
                    format!("e{}_{j}", l + 1),
                    layer.kernel_offset + i * layer.units + j,
                )
            });
            let error = times_derivative(&dense_sum(terms), below, &format!("z{l}_{i}"));
            let _ = writeln!(out, "        let e{l}_{i} = {error};");
        }
    }
    for (l, layer) in layers.iter().enumerate() {
        let _ = writeln!(
            out,
            "        // gradient_partials_at, layer {l}: kernel[i][j] += a[i] * err[j], bias[j] += err[j]"
        );
        for i in 0..layer.inputs {
            for j in 0..layer.units {
                let p = layer.kernel_offset + i * layer.units + j;
                let _ = writeln!(out, "        g{p} += a{l}_{i} * e{}_{j};", l + 1);
            }
        }
        for j in 0..layer.units {
            let _ = writeln!(out, "        g{} += e{}_{j};", layer.bias_offset + j, l + 1);
        }
    }
    out.truncate(out.trim_end().len());
    fill(
        SAMPLES_TEMPLATE,
        &[
            ("load_weights", &load_weights),
            ("zero_sums", &zero_sums),
            ("per_sample", &out),
            ("store_sums", &store_sums),
        ],
    )
}

/// ", relu" after a nonlinear layer's shape in a comment.
fn activation_note(activation: Activation) -> String {
    match activation {
        Activation::Linear => String::new(),
        other => format!(", {other}"),
    }
}

/// A dense sum as the kernels add it: `0.0 + value * w_p + ...`, each term
/// a named value times weight `p`, in the order given.
fn dense_sum(terms: impl Iterator<Item = (String, usize)>) -> String {
    let mut sum = String::from("0.0");
    for (value, p) in terms {
        let _ = write!(sum, " + {value} * w{p}");
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_gets_a_weight_a_sum_and_a_row() {
        let architecture = Architecture::new(&[2]).unwrap();
        let source = sample_partials_source(&architecture, false);
        // 1-2-1: kernel 0..2, bias 2..4, kernel 4..6, bias 6.
        for p in 0..7 {
            assert!(
                source.contains(&format!("let w{p} = params[{p}u];")),
                "{source}"
            );
            assert!(source.contains(&format!("= g{p};")), "{source}");
        }
        assert!(source.contains("reduce[column + LOSS_ROW * args.out_len] = loss_sum;"));
        // The forward sum of unit 1 of layer 0, then its bias.
        assert!(
            source.contains("let a1_1 = (0.0 + a0_0 * w1) + w3;"),
            "{source}"
        );
        // Layer 1's error into its input 0: one unit, kernel entry 4.
        assert!(source.contains("let e1_0 = 0.0 + e2_0 * w4;"), "{source}");
        assert!(source.contains("g4 += a1_0 * e2_0;"), "{source}");
        assert!(source.contains("g6 += e2_0;"), "{source}");
    }
}
