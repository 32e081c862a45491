//! How far two whole training runs of the same job are apart (the GPU
//! against the CPU reference). `--compare` reports it as information: the
//! verdict is the shadow check ([`crate::shadow`]), which compares step by
//! step from the GPU's own state, since the trajectories of two correct
//! devices may part in Adam's chaotic stretches.

use crate::cpu;
use crate::error::Result;
use crate::model::Model;
use crate::training::{TrainConfig, TrainOutput};
use serde::Serialize;

/// How far a GPU run may stray from the CPU reference over a whole run
/// before `--compare` calls it beyond this tolerance (information only).
///
/// On lavapipe (the CI device) the kernels reproduce the reference bit for
/// bit: same operations in the same order, IEEE f32, no FMA contraction. A
/// real GPU may contract `a * b + c` into an FMA or round division and sqrt
/// differently (WGSL allows 2.5 ULP), so each step can differ by about an
/// ULP. Measured on the seed job (seeds 42, 1, 3, 5, 6, 7) by jittering
/// every gradient of the CPU reference by +-1 ULP at random each epoch: the
/// loss history moved by at most 6.4e-5 relative (near convergence the
/// residuals, ~0.25, are differences of outputs ~100, so an ULP of the
/// output is ~3e-5 of the residual) and the final weights by at most
/// 2.9e-6. The tolerances are 4x those figures.
///
/// Some seeds (2 and 4 of 0..9) are chaotic late in training: Adam's
/// post-convergence loss spikes come at an epoch that an ULP can move, so
/// there even the jittered CPU reference differs from itself by far more.
/// That is why the shadow check, not this, is the verdict.
pub const GPU_CPU_TOLERANCE: Tolerance = Tolerance {
    loss_relative: 2.5e-4,
    weight: 1.2e-5,
};

/// The largest differences between two runs that `--compare` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Largest allowed `|a - b| / max(|a|, |b|)` of an epoch's loss.
    pub loss_relative: f32,
    /// Largest allowed `|a - b| / max(1, |a|)` of a weight: absolute for
    /// weights below 1, relative above.
    pub weight: f32,
}

/// The largest difference of one kind and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MaxDifference {
    /// `|a - b|` of the pair that ranks worst.
    pub absolute: f32,
    /// That pair's `|a - b| / max(|a|, |b|, floor)`, floor 0 for losses and 1
    /// for weights and predictions; NaN when either value is NaN.
    pub relative: f32,
    /// Epoch (1-based) for losses, parameter index for weights,
    /// prediction index for predictions.
    pub at: usize,
}

/// Differences between two runs (`a` is the reference).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Epoch losses (`at`: the 1-based epoch).
    pub loss: MaxDifference,
    /// Final parameters (`at`: the parameter index).
    pub weights: MaxDifference,
    /// The trained models' outputs at the given celsius inputs (information
    /// only, not part of the verdict).
    pub predictions: MaxDifference,
    /// The tolerance the runs were judged against.
    pub tolerance: Tolerance,
    /// Whether the runs have the same epochs and parameter count and their
    /// loss and weight differences are within `tolerance`.
    pub within_tolerance: bool,
}

fn relative(a: f32, b: f32, floor: f32) -> f32 {
    let scale = a.abs().max(b.abs()).max(floor);
    if scale == 0.0 {
        0.0
    } else {
        (a - b).abs() / scale
    }
}

/// The largest difference over pairs, ranked by `relative(a, b, floor)`;
/// NaN anywhere ranks above everything. `first_index` numbers the pairs.
fn max_difference(
    pairs: impl Iterator<Item = (f32, f32)>,
    floor: f32,
    first_index: usize,
) -> MaxDifference {
    let mut worst = MaxDifference {
        absolute: 0.0,
        relative: 0.0,
        at: first_index,
    };
    for (index, (a, b)) in pairs.enumerate() {
        let rel = relative(a, b, floor);
        if rel.is_nan() || rel > worst.relative {
            worst = MaxDifference {
                absolute: (a - b).abs(),
                relative: rel,
                at: index + first_index,
            };
            if rel.is_nan() {
                break;
            }
        }
    }
    worst
}

/// The CPU reference's whole run of a job the GPU ran from `initial`, and
/// its comparison with the GPU's `output` (predictions at `rows`): what
/// `--compare` and the page's "Check my GPU" show beside the shadow check's
/// verdict, from this one call. A CPU reference that fails is an error.
pub fn against_cpu(
    initial: &Model,
    config: &TrainConfig,
    output: &TrainOutput,
    rows: &[Vec<f32>],
) -> Result<(TrainOutput, Comparison)> {
    let reference = cpu::train(initial, config)?;
    let comparison = compare(&reference, output, rows, GPU_CPU_TOLERANCE);
    Ok((reference, comparison))
}

/// Compares run `b` with reference run `a`, predictions at `inputs` (one
/// row of the network's inputs each).
pub fn compare(
    a: &TrainOutput,
    b: &TrainOutput,
    inputs: &[Vec<f32>],
    tolerance: Tolerance,
) -> Comparison {
    let same_length = a.loss_history.len() == b.loss_history.len()
        && a.model.params().len() == b.model.params().len();
    let loss = max_difference(
        a.loss_history
            .iter()
            .copied()
            .zip(b.loss_history.iter().copied()),
        0.0,
        1,
    );
    let weights = max_difference(
        a.model
            .params()
            .iter()
            .copied()
            .zip(b.model.params().iter().copied()),
        1.0,
        0,
    );
    // Every output of every row; the index names the row.
    let units = a.model.architecture().widths().last().copied().unwrap_or(1);
    let mut predictions = max_difference(
        inputs.iter().flat_map(|row| {
            let (of_a, of_b) = (a.model.predict_row(row), b.model.predict_row(row));
            of_a.into_iter().zip(of_b)
        }),
        1.0,
        0,
    );
    predictions.at /= units;
    let within_tolerance = same_length
        && loss.relative <= tolerance.loss_relative
        && weights.relative <= tolerance.weight;
    Comparison {
        loss,
        weights,
        predictions,
        tolerance,
        within_tolerance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Architecture, Model};
    use crate::optimizer::AdamState;
    use std::time::Duration;

    fn run(losses: &[f32], params: Vec<f32>) -> TrainOutput {
        TrainOutput {
            val_loss_history: Vec::new(),
            metric_history: Vec::new(),
            early_stop: None,
            loss_history: losses.to_vec(),
            adam: AdamState::fresh(params.len()),
            model: Model::from_params(Architecture::new(&[]).unwrap(), params).unwrap(),
            train_time: Duration::ZERO,
        }
    }

    #[test]
    fn reports_the_worst_epoch_and_weight() {
        let a = run(&[100.0, 10.0, 1.0, 0.5], vec![2.0, 30.0]);
        let b = run(&[100.0, 10.001, 1.001, 0.5], vec![2.0, 30.0003]);
        let c = compare(&a, &b, &[vec![100.0]], GPU_CPU_TOLERANCE);
        assert_eq!(c.loss.at, 3, "epoch 3 differs most in relative terms");
        assert!((c.loss.relative - 0.001 / 1.001).abs() < 1e-6);
        assert_eq!(c.weights.at, 1);
        assert!((c.weights.relative - 1e-5).abs() < 1e-7);
        assert!(
            !c.within_tolerance,
            "1e-3 relative loss difference is beyond 2.5e-4"
        );
    }

    #[test]
    fn identical_runs_are_within_and_nan_is_not() {
        let a = run(&[4.0, 2.0], vec![1.0, 1.0]);
        assert!(compare(&a, &a, &[vec![100.0]], GPU_CPU_TOLERANCE).within_tolerance);
        let b = run(&[4.0, f32::NAN], vec![1.0, 1.0]);
        let c = compare(&a, &b, &[vec![100.0]], GPU_CPU_TOLERANCE);
        assert_eq!(c.loss.at, 2);
        assert!(!c.within_tolerance);
        let short = run(&[4.0], vec![1.0, 1.0]);
        assert!(!compare(&a, &short, &[], GPU_CPU_TOLERANCE).within_tolerance);
    }

    #[test]
    fn just_inside_and_just_outside_the_tolerance() {
        let a = run(&[1.0], vec![0.5, 0.5]);
        let inside = run(&[1.0 + 2.4e-4], vec![0.5 + 1.1e-5, 0.5]);
        let outside = run(&[1.0], vec![0.5 + 1.3e-5, 0.5]);
        assert!(compare(&a, &inside, &[], GPU_CPU_TOLERANCE).within_tolerance);
        assert!(!compare(&a, &outside, &[], GPU_CPU_TOLERANCE).within_tolerance);
    }
}
