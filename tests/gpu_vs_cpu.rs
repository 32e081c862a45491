//! The GPU kernels held to the CPU reference: every epoch's loss and the
//! final weights, on the seed job and on other data sizes and widths.

mod common;

use gpu_c2f::compare::{GPU_CPU_TOLERANCE, compare};
use gpu_c2f::{Architecture, Dataset, Model, TrainConfig, cpu, gpu};

fn assert_gpu_matches_cpu(initial: &Model, config: &TrainConfig) {
    let reference = cpu::train(initial, config).expect("CPU reference trains");
    let on_gpu = gpu::train(common::gpu(), initial, config).expect("GPU trains");
    assert_eq!(on_gpu.output.loss_history.len(), config.epochs);
    let comparison = compare(&reference, &on_gpu.output, &[100.0], GPU_CPU_TOLERANCE);
    assert!(
        comparison.within_tolerance,
        "{} on {} samples: GPU differs from the CPU reference beyond {:?}: {comparison:#?}",
        initial.architecture().describe(),
        config.data.len(),
        GPU_CPU_TOLERANCE
    );
}

/// Points on the exact formula with a little noise, from a fixed LCG so
/// every run sees the same data.
fn noisy_formula(samples: usize) -> Dataset {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let celsius: Vec<f32> = (0..samples).map(|_| -50.0 + 200.0 * next()).collect();
    let fahrenheit = celsius
        .iter()
        .map(|c| c * 1.8 + 32.0 + (next() - 0.5))
        .collect();
    Dataset {
        celsius,
        fahrenheit,
    }
}

#[test]
fn seed_job_agrees_every_epoch_and_in_the_final_weights() {
    let initial = Model::glorot_uniform(Architecture::seed(), gpu_c2f::cli::DEFAULT_SEED);
    assert_gpu_matches_cpu(&initial, &TrainConfig::seed());
}

#[test]
fn other_sample_counts_and_widths_agree() {
    // Sample counts: one, the seed's 7, one reduction block and one more
    // (256, 257: a block boundary), several blocks (5000), and enough for a
    // third reduction level (70 000 > 256 * 256). Widths 1, 3, 17, 64.
    let cases: [(usize, &[usize], usize); 9] = [
        (1, &[3, 3], 6),
        (7, &[1], 6),
        (7, &[], 6),
        (256, &[17], 4),
        (257, &[3, 17], 4),
        (300, &[64], 4),
        (5000, &[3, 3], 3),
        (5000, &[64, 17], 3),
        (70_000, &[3], 3),
    ];
    for (samples, hidden, epochs) in cases {
        let architecture = Architecture::new(hidden).unwrap();
        let initial = Model::glorot_uniform(architecture, samples as u64);
        let config = TrainConfig {
            data: noisy_formula(samples),
            epochs,
            learning_rate: 0.01,
        };
        assert_gpu_matches_cpu(&initial, &config);
    }
}

#[test]
fn gpu_runs_are_reproducible_bit_for_bit() {
    let initial = Model::glorot_uniform(Architecture::new(&[17, 5]).unwrap(), 3);
    let config = TrainConfig {
        data: noisy_formula(600),
        epochs: 20,
        learning_rate: 0.05,
    };
    let first = gpu::train(common::gpu(), &initial, &config).unwrap().output;
    let second = gpu::train(common::gpu(), &initial, &config).unwrap().output;
    assert_eq!(first.loss_history, second.loss_history);
    assert_eq!(first.model, second.model);
}
