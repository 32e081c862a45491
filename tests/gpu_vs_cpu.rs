//! The GPU kernels held to the CPU reference through the shadow check
//! (src/shadow/): every training step the GPU ran, replayed on the CPU
//! from the GPU's own state, within its rounding bounds, on the seed job and
//! on other data sizes, widths, batchings and schedules.
mod common;

use gpu_c2f::gpu::{CheckedRun, GpuOptions, Schedule, ScheduleChoice};
use gpu_c2f::training::NamedMetric;
use gpu_c2f::{Activation, Architecture, Dataset, EarlyStopping, Loss, Model, TrainConfig, gpu};

/// A GPU run of `config` on `schedule`, every step checked as it runs.
fn train_recorded(initial: &Model, config: &TrainConfig, schedule: ScheduleChoice) -> CheckedRun {
    let options = GpuOptions {
        schedule,
        ..GpuOptions::default()
    };
    gpu::train_checked(common::gpu(), initial, config, &options, |_| {})
        .unwrap_or_else(|e| panic!("GPU ({schedule:?}) trains: {e:#}"))
}

fn assert_gpu_matches_cpu(initial: &Model, config: &TrainConfig, schedules: &[ScheduleChoice]) {
    for &schedule in schedules {
        let on_gpu = train_recorded(initial, config, schedule);
        assert_eq!(on_gpu.run.output.loss_history.len(), config.epochs);
        assert_shadow_check_passes(initial, config, &on_gpu);
    }
}

/// Every training step the GPU ran, replayed on the CPU reference from the
/// GPU's own state as the run went on, within its rounding bounds
/// (src/shadow), from the initial weights to the trained model.
fn assert_shadow_check_passes(initial: &Model, config: &TrainConfig, checked: &CheckedRun) {
    let (on_gpu, check) = (&checked.run, &checked.check);
    let epochs = on_gpu.output.loss_history.len() as u64;
    let steps = epochs * config.batching().steps_per_epoch as u64;
    assert_eq!(check.steps_checked, steps, "every step checked");
    assert_eq!(check.steps_expected, steps);
    assert!(
        check.within_tolerance,
        "{} on {} samples, {:?} schedule: the shadow check failed: {check:#?}",
        initial.architecture().describe(),
        config.data.len(),
        on_gpu.timings.schedule,
    );
    // CI's software drivers fuse nothing in these kernels: there every
    // value must be equal, unless an activation calls exp, log or tanh,
    // whose WGSL and Rust versions differ by an ULP or two, or the network
    // takes several inputs, where lavapipe was seen to contract the
    // multiply-adds of every sum whose length is a constant of the module:
    // the fused and samples schedules' (a 1-ULP difference in layer 0's
    // gradients, where the CPU's order reproduced by hand gives the CPU's
    // value), and the validation pass's in every schedule (a 1-ULP
    // difference in a val_loss); the shadow check allows any fused
    // multiply-add.
    let architecture = initial.architecture();
    let exact_activations = architecture.activations().iter().all(|a| {
        matches!(
            a,
            Activation::Linear | Activation::Relu | Activation::LeakyRelu
        )
    });
    let several_inputs = architecture.widths()[0] > 1;
    let constant_sums =
        on_gpu.timings.schedule != Schedule::Dispatch || config.validation_split > 0.0;
    let exact = exact_activations && !(several_inputs && constant_sums);
    if exact && std::env::var_os("GPU_C2F_EXPECT_BIT_EXACT").is_some() {
        let metrics = check.metrics.unwrap_or_default();
        for (what, worst) in [
            ("gradients", check.gradients),
            ("losses", check.losses),
            ("metrics", metrics),
            ("states", check.states),
        ] {
            assert_eq!(
                worst.ratio,
                0.0,
                "{what} not bit-exact, {} {:?}: {worst:?}",
                initial.architecture().describe(),
                on_gpu.timings.schedule
            );
        }
    }
}

const ALL: &[ScheduleChoice] = &[
    ScheduleChoice::Fused,
    ScheduleChoice::Samples,
    ScheduleChoice::Dispatch,
];
/// The schedules that run any size of data.
const LARGE: &[ScheduleChoice] = &[ScheduleChoice::Samples, ScheduleChoice::Dispatch];

#[test]
fn seed_job_agrees_every_epoch_and_in_the_final_weights() {
    let initial = Model::glorot_uniform(Architecture::seed(), gpu_c2f::cli::DEFAULT_SEED);
    assert_gpu_matches_cpu(&initial, &TrainConfig::seed(), ALL);
}

/// y = sin(x) on [-3, 3]: a curve, so nonlinear layers have work to do.
fn sine(samples: usize) -> Dataset {
    let celsius: Vec<f32> = (0..samples)
        .map(|k| -3.0 + 6.0 * k as f32 / (samples - 1) as f32)
        .collect();
    let sines = celsius.iter().map(|x| x.sin()).collect();
    Dataset::new(celsius, sines)
}

#[test]
fn every_activation_agrees_on_every_schedule() {
    // Two hidden layers of the activation (so its derivative is taken at
    // both), shuffled mini-batches with a short last one; then the output
    // layer's activations that squash (targets 0.5 sin x + 0.5 in (0, 1)).
    let mut cases: Vec<(Activation, Activation)> = Activation::ALL
        .iter()
        .map(|&hidden| (hidden, Activation::Linear))
        .collect();
    cases.extend([
        (Activation::Relu, Activation::Sigmoid),
        (Activation::Tanh, Activation::Softplus),
        (Activation::Gelu, Activation::Tanh),
    ]);
    for (hidden, output) in cases {
        let architecture = Architecture::with_layers(&[(5, hidden), (4, hidden)], output).unwrap();
        let initial = Model::glorot_uniform(architecture, 11);
        let mut data = sine(70);
        if !output.is_linear() {
            data.y.iter_mut().for_each(|y| *y = 0.5 * *y + 0.5);
        }
        let config = TrainConfig {
            data,
            epochs: 4,
            learning_rate: 0.05,
            batch_size: Some(16),
            ..TrainConfig::seed()
        };
        assert_gpu_matches_cpu(&initial, &config, ALL);
    }
}

#[test]
fn every_loss_agrees_on_every_schedule() {
    // Regression losses on the sine, the cross-entropies on 0/1 labels of
    // its sign and on probabilities, through a sigmoid (Keras's logits
    // shortcut), a linear layer (logits), and a softplus (clipped
    // probabilities).
    let cases = [
        (Activation::Linear, Loss::MeanAbsoluteError),
        (Activation::Linear, Loss::Huber),
        (Activation::Tanh, Loss::Huber),
        (Activation::Sigmoid, Loss::BinaryCrossentropy),
        (Activation::Softplus, Loss::BinaryCrossentropy),
        (Activation::Linear, Loss::BinaryCrossentropyFromLogits),
    ];
    for (output, loss) in cases {
        let architecture =
            Architecture::with_layers(&[(6, Activation::Relu), (4, Activation::Tanh)], output)
                .unwrap();
        let initial = Model::glorot_uniform(architecture, 13);
        let mut data = sine(70);
        if loss.needs_probabilities() {
            let labels = data.y.iter().map(|&y| if y > 0.0 { 1.0 } else { 0.0 });
            data.y = labels.collect();
            data.y[3] = 0.25;
        }
        let config = TrainConfig {
            data,
            epochs: 4,
            learning_rate: 0.05,
            batch_size: Some(16),
            loss,
            ..TrainConfig::seed()
        };
        assert_gpu_matches_cpu(&initial, &config, ALL);
    }
}

#[test]
fn validation_losses_agree_on_every_schedule() {
    // The last 30 % of the rows held out (Keras's validation_split): a
    // short last training batch, and validation rows past one block of
    // 256; every epoch's val_loss checked from the GPU's own updated
    // weights by the shadow check, on the curve and on labels.
    for (samples, split, loss, output) in [
        (70, 0.3, Loss::MeanSquaredError, Activation::Linear),
        (900, 0.3, Loss::Huber, Activation::Linear),
        (70, 0.25, Loss::BinaryCrossentropy, Activation::Sigmoid),
    ] {
        let architecture =
            Architecture::with_layers(&[(6, Activation::Tanh), (4, Activation::Relu)], output)
                .unwrap();
        let initial = Model::glorot_uniform(architecture, 17);
        let mut data = sine(samples);
        if loss.needs_probabilities() {
            data.y.iter_mut().for_each(|y| *y = (*y > 0.0) as u8 as f32);
        }
        let config = TrainConfig {
            data,
            epochs: 3,
            learning_rate: 0.05,
            batch_size: Some(32),
            loss,
            validation_split: split,
            ..TrainConfig::seed()
        };
        for &schedule in ALL {
            let run = train_recorded(&initial, &config, schedule);
            assert_eq!(run.run.output.val_loss_history.len(), 3, "{schedule:?}");
            assert_shadow_check_passes(&initial, &config, &run);
        }
        // And the CPU reference's history has one per epoch too.
        let cpu_run = gpu_c2f::cpu::train(&initial, &config).unwrap();
        assert_eq!(cpu_run.val_loss_history.len(), 3);
    }
}

#[test]
fn early_stopping_stops_on_the_gpu_and_keeps_the_best_weights() {
    // A min_delta no loss can beat: epoch 1 is the best, and with patience
    // P training stops after epoch max(P, 1) + 1 (Keras stops from the
    // second epoch on);
    // then the same on the validation loss with min_delta 0, where the
    // verdict depends on the curve. The shadow check replays each stop
    // from the GPU's own history and holds the trained model to the kept
    // step's weights.
    let architecture = Architecture::with_layers(
        &[(8, Activation::Relu), (8, Activation::Relu)],
        Activation::Linear,
    )
    .unwrap();
    let initial = Model::glorot_uniform(architecture, 23);
    for (patience, min_delta, split, restore) in [
        (0, 1e9, 0.0, false),
        (3, 1e9, 0.0, true),
        (3, 1e9, 0.2, true),
        (4, 0.0, 0.2, true),
        (4, 0.0, 0.2, false),
    ] {
        let config = TrainConfig {
            data: sine(100),
            epochs: 60,
            learning_rate: 0.05,
            batch_size: Some(16),
            validation_split: split,
            early_stopping: Some(EarlyStopping {
                patience,
                min_delta,
                restore_best_weights: restore,
            }),
            ..TrainConfig::seed()
        };
        let cpu_run = gpu_c2f::cpu::train(&initial, &config).unwrap();
        for &schedule in ALL {
            let checked = train_recorded(&initial, &config, schedule);
            let run = &checked.run;
            let stop = run.output.early_stop.expect("early stopping reports");
            let epochs = run.output.loss_history.len();
            if min_delta > 0.0 {
                assert_eq!(
                    stop.stopped_epoch,
                    Some(patience.max(1) + 1),
                    "{schedule:?}"
                );
                assert_eq!(stop.best_epoch, 1);
            }
            assert_eq!(stop.stopped_epoch.unwrap_or(60), epochs, "{schedule:?}");
            assert_eq!(stop.monitor, if split > 0.0 { "val_loss" } else { "loss" });
            assert_eq!(stop.restored, restore);
            assert_shadow_check_passes(&initial, &config, &checked);
            // relu and linear layers agree bit for bit here: so does the stop.
            if std::env::var_os("GPU_C2F_EXPECT_BIT_EXACT").is_some() {
                assert_eq!(run.output.early_stop, cpu_run.early_stop, "{schedule:?}");
                assert_eq!(run.output.model, cpu_run.model, "{schedule:?}");
            }
        }
    }
}

#[test]
fn after_an_early_stop_nothing_more_is_submitted_streamed_or_counted() {
    // min_delta 1e9: nothing improves after epoch 1, so patience 2 stops
    // after epoch 3 of 200; one epoch a submission.
    let architecture =
        Architecture::with_layers(&[(8, Activation::Relu)], Activation::Linear).unwrap();
    let initial = Model::glorot_uniform(architecture, 5);
    let config = TrainConfig {
        data: sine(64),
        epochs: 200,
        batch_size: Some(16),
        early_stopping: Some(EarlyStopping {
            patience: 2,
            min_delta: 1e9,
            restore_best_weights: false,
        }),
        ..TrainConfig::seed()
    };
    for &schedule in ALL {
        for stream_losses in [false, true] {
            let options = GpuOptions {
                schedule,
                epochs_per_submit: Some(1),
                stream_losses,
                ..GpuOptions::default()
            };
            let (mut reported, mut streamed) = (Vec::new(), Vec::new());
            let run = gpu::train_with(common::gpu(), &initial, &config, &options, |done| {
                reported.push(done.epochs);
                streamed.extend_from_slice(done.new_losses);
            })
            .unwrap();
            let context = format!("{schedule:?}, streamed: {stream_losses}");
            let stopped = run.output.early_stop.unwrap().stopped_epoch;
            assert_eq!(stopped, Some(3), "{context}");
            assert_eq!(run.output.loss_history.len(), 3, "{context}");
            // The stop is heard with the submission that made it; the one
            // queued behind it is the last.
            assert!(
                run.timings.submits <= 3 + 1,
                "{context}: {} submits",
                run.timings.submits
            );
            assert_eq!(reported.last(), Some(&3), "{context}: {reported:?}");
            assert!(
                reported.iter().all(|&epochs| epochs <= 3),
                "{context}: {reported:?}"
            );
            if stream_losses {
                assert_eq!(streamed, run.output.loss_history, "{context}");
            } else {
                assert!(streamed.is_empty(), "{context}");
            }
        }
    }
}

/// Two inputs and two targets a row: (sin a) b and a - b on a grid.
fn two_by_two(samples: usize) -> Dataset {
    let mut data = Dataset::new(Vec::new(), Vec::new());
    (data.x_width, data.y_width) = (2, 2);
    for k in 0..samples {
        let (a, b) = (-2.0 + 0.37 * (k % 11) as f32, -1.0 + 0.29 * (k / 11) as f32);
        data.x.extend([a, b]);
        data.y.extend([a.sin() * b, a - b]);
    }
    data
}

#[test]
fn several_inputs_and_outputs_agree_on_every_schedule() {
    // 2 inputs -> 2 outputs: the gather copies whole rows, the output error
    // and loss run per unit (a sample's loss the mean of its units'), the
    // validation rows too; with mse, huber, and a sigmoid output under
    // binary cross-entropy (targets squashed into [0, 1]).
    for (hidden, output, loss, split) in [
        (
            Activation::Tanh,
            Activation::Linear,
            Loss::MeanSquaredError,
            0.0,
        ),
        (Activation::Relu, Activation::Linear, Loss::Huber, 0.25),
        (
            Activation::Gelu,
            Activation::Sigmoid,
            Loss::BinaryCrossentropy,
            0.25,
        ),
    ] {
        let architecture = Architecture::with_layers(&[(6, hidden), (5, hidden)], output)
            .unwrap()
            .with_io(2, 2)
            .unwrap();
        let initial = Model::glorot_uniform(architecture, 29);
        let mut data = two_by_two(77);
        if loss.needs_probabilities() {
            data.y
                .iter_mut()
                .for_each(|y| *y = 1.0 / (1.0 + (-*y).exp()));
        }
        let config = TrainConfig {
            data,
            epochs: 3,
            learning_rate: 0.05,
            batch_size: Some(16),
            loss,
            validation_split: split,
            ..TrainConfig::seed()
        };
        assert_gpu_matches_cpu(&initial, &config, ALL);
    }
}

#[test]
fn metrics_agree_on_every_schedule_and_with_the_cpu_reference() {
    // Keras's per-epoch metrics beside the loss, on the training batches
    // (before each update) and on the validation rows, for a regression
    // and a classification. On the software drivers that fuse nothing
    // (GPU_C2F_EXPECT_BIT_EXACT) every value equals the CPU reference's;
    // elsewhere two runs part by rounding only over these 3 epochs of 5
    // steps, so 1e-3 relative is ample and still catches a wrong metric.
    let regression = (
        Activation::Linear,
        Loss::Huber,
        vec!["mse", "mae"],
        sine(90),
    );
    let mut labels = sine(90);
    labels
        .y
        .iter_mut()
        .for_each(|y| *y = (*y > 0.0) as u8 as f32);
    let classification = (
        Activation::Sigmoid,
        Loss::BinaryCrossentropy,
        vec!["accuracy", "binary_crossentropy", "mae"],
        labels,
    );
    let exact = std::env::var_os("GPU_C2F_EXPECT_BIT_EXACT").is_some();
    for (output, loss, names, data) in [regression, classification] {
        let architecture =
            Architecture::with_layers(&[(8, Activation::Relu), (4, Activation::Relu)], output)
                .unwrap();
        let initial = Model::glorot_uniform(architecture, 31);
        let metrics = names
            .iter()
            .map(|n| NamedMetric::from_name(n).unwrap())
            .collect();
        let config = TrainConfig {
            data,
            epochs: 3,
            learning_rate: 0.05,
            batch_size: Some(16),
            loss,
            validation_split: 0.2,
            metrics,
            ..TrainConfig::seed()
        };
        let cpu_run = gpu_c2f::cpu::train(&initial, &config).unwrap();
        let keys: Vec<&str> = cpu_run
            .metric_history
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        let expected: Vec<String> = names
            .iter()
            .map(|n| n.to_string())
            .chain(names.iter().map(|n| format!("val_{n}")))
            .collect();
        assert_eq!(keys, expected);
        for &schedule in ALL {
            let checked = train_recorded(&initial, &config, schedule);
            assert_shadow_check_passes(&initial, &config, &checked);
            let run = &checked.run;
            assert_eq!(
                run.output.metric_history.len(),
                cpu_run.metric_history.len()
            );
            for ((name, gpu), (_, cpu)) in run
                .output
                .metric_history
                .iter()
                .zip(&cpu_run.metric_history)
            {
                assert_eq!(gpu.len(), 3, "{name}");
                for (g, c) in gpu.iter().zip(cpu) {
                    let close = (g - c).abs() <= 1e-3 * c.abs().max(1e-3);
                    assert!(
                        if exact { g == c } else { close },
                        "{schedule:?} {name}: GPU {gpu:?}, CPU {cpu:?}"
                    );
                }
            }
        }
        // Accuracy is a count of hits over the rows: a whole number of them.
        if let Some((_, accuracy)) = cpu_run.metric_history.iter().find(|(k, _)| k == "accuracy") {
            let rows = config.training_len() as f32;
            for a in accuracy {
                assert!(
                    ((a * rows) - (a * rows).round()).abs() < 1e-3,
                    "{a} of {rows} rows"
                );
            }
        }
    }
}

#[test]
fn the_mse_metric_is_the_mse_loss() {
    // Keras computes the same quantity two ways: the loss tracker as the
    // batch losses weighted by size, the metric as the sum of the samples'
    // values over the samples; in f32 they agree to rounding (1e-5).
    let initial = Model::glorot_uniform(Architecture::seed(), 3);
    let config = TrainConfig {
        data: common::noisy_formula(100),
        epochs: 5,
        learning_rate: 0.05,
        batch_size: Some(32),
        metrics: vec![NamedMetric::from_name("mse").unwrap()],
        ..TrainConfig::seed()
    };
    let run = train_recorded(&initial, &config, ScheduleChoice::Auto).run;
    let (name, mse) = &run.output.metric_history[0];
    assert_eq!(name, "mse");
    for (loss, metric) in run.output.loss_history.iter().zip(mse) {
        assert!(
            (loss - metric).abs() <= 1e-5 * loss,
            "loss {loss}, mse {metric}"
        );
    }
}

#[test]
fn fused_schedule_splits_long_runs_into_dispatches_correctly() {
    // 5000 epochs of a 1-17-17-1 network: dozens of fused dispatches, each
    // under llvmpipe's per-invocation loop limit, and a remainder dispatch.
    let initial = Model::glorot_uniform(Architecture::new(&[17, 17]).unwrap(), 5);
    let config = TrainConfig {
        epochs: 5000,
        learning_rate: 0.01,
        ..TrainConfig::seed()
    };
    assert_gpu_matches_cpu(&initial, &config, &[ScheduleChoice::Fused]);
}

#[test]
fn other_sample_counts_and_widths_agree() {
    // Sample counts: one, the seed's 7, one reduction block and one more
    // (256, 257: a block boundary), several blocks (5000), and enough for a
    // third reduction level (70 000 > 256 * 256). Widths 1, 3, 17, 64.
    // The fused schedule runs where one epoch fits a fused dispatch, the
    // samples schedule where the network has at most 512 parameters.
    let cases: [(usize, &[usize], usize, &[ScheduleChoice]); 9] = [
        (1, &[3, 3], 6, ALL),
        (7, &[1], 6, ALL),
        (7, &[], 6, ALL),
        (256, &[17], 4, ALL),
        (257, &[3, 17], 4, LARGE),
        (300, &[64], 4, LARGE),
        (5000, &[3, 3], 3, LARGE),
        (5000, &[64, 17], 3, &[ScheduleChoice::Dispatch]),
        (70_000, &[3], 3, LARGE),
    ];
    for (samples, hidden, epochs, schedules) in cases {
        let architecture = Architecture::new(hidden).unwrap();
        let initial = Model::glorot_uniform(architecture, samples as u64);
        // One full batch, so every size above is a single sum over samples.
        let config = TrainConfig {
            data: common::noisy_formula(samples),
            epochs,
            learning_rate: 0.01,
            batch_size: None,
            ..TrainConfig::seed()
        };
        assert_gpu_matches_cpu(&initial, &config, schedules);
    }
}

type MiniBatchCase = (
    usize,
    usize,
    &'static [usize],
    usize,
    &'static [ScheduleChoice],
);

#[test]
fn shuffled_mini_batches_agree() {
    // Batches that divide the data, that leave a small last batch, of one
    // sample, and larger than one reduction block (257 of 1000 samples).
    // (samples, batch size, hidden widths, epochs, schedules)
    let cases: [MiniBatchCase; 5] = [
        (100, 32, &[3, 3], 5, ALL),
        (7, 2, &[3], 20, ALL),
        (300, 1, &[], 3, ALL),
        (96, 32, &[17], 5, ALL),
        (1000, 257, &[8], 4, LARGE),
    ];
    for (samples, batch_size, hidden, epochs, schedules) in cases {
        let initial = Model::glorot_uniform(Architecture::new(hidden).unwrap(), 4);
        let config = TrainConfig {
            data: common::noisy_formula(samples),
            epochs,
            learning_rate: 0.01,
            batch_size: Some(batch_size),
            shuffle_seed: 77,
            shuffle: true,
            loss: Default::default(),
            validation_split: 0.0,
            early_stopping: None,
            metrics: Vec::new(),
            adam_state: None,
        };
        assert_gpu_matches_cpu(&initial, &config, schedules);
    }
}

#[test]
fn unshuffled_mini_batches_agree_and_take_the_samples_in_order() {
    // Keras's fit(shuffle=False): every epoch the same batches, in order,
    // gathered without the permutation: 31 batches of 32 and a last of 8;
    // then 3 of 300 and a last of 100, each over two chunks of 256 where the
    // schedule chunks.
    for (batch_size, max_chunk) in [(32, None), (300, Some(256))] {
        let config = TrainConfig {
            data: common::noisy_formula(1000),
            epochs: 3,
            learning_rate: 0.01,
            batch_size: Some(batch_size),
            shuffle_seed: 77,
            shuffle: false,
            loss: Default::default(),
            validation_split: 0.0,
            early_stopping: None,
            metrics: Vec::new(),
            adam_state: None,
        };
        assert!(!config.batching().shuffle);
        let initial = Model::glorot_uniform(Architecture::new(&[5]).unwrap(), 4);
        let reference = gpu_c2f::cpu::train(&initial, &config).unwrap();
        let shuffled = gpu_c2f::cpu::train(
            &initial,
            &TrainConfig {
                shuffle: true,
                ..config.clone()
            },
        )
        .unwrap();
        assert_ne!(
            reference.loss_history, shuffled.loss_history,
            "the order must matter, or this test shows nothing"
        );
        for &schedule in ALL {
            let options = GpuOptions {
                schedule,
                max_chunk_samples: max_chunk,
                ..GpuOptions::default()
            };
            let run = gpu::train_checked(common::gpu(), &initial, &config, &options, |_| {});
            let run = run.unwrap();
            assert_shadow_check_passes(&initial, &config, &run);
        }
    }
}

#[test]
fn batches_larger_than_a_buffer_run_in_chunks_with_the_same_results() {
    // Chunks of 256 samples (the smallest allowed): a full batch of 1000 in
    // 4 chunks (the last of 232), and shuffled batches of 300 in 2 chunks.
    let initial = Model::glorot_uniform(Architecture::new(&[5, 3]).unwrap(), 8);
    let cases = [None, Some(300)]
        .into_iter()
        .flat_map(|batch_size| LARGE.iter().map(move |&schedule| (schedule, batch_size)));
    for (schedule, batch_size) in cases {
        let config = TrainConfig {
            data: common::noisy_formula(1000),
            epochs: 4,
            learning_rate: 0.01,
            batch_size,
            shuffle_seed: 5,
            shuffle: true,
            loss: Default::default(),
            validation_split: 0.0,
            early_stopping: None,
            metrics: Vec::new(),
            adam_state: None,
        };
        let options = GpuOptions {
            schedule,
            epochs_per_submit: None,
            max_chunk_samples: Some(256),
            fused_workgroup_size: None,
            record_steps: true,
            stream_losses: false,
        };
        let chunked = gpu::train_checked(common::gpu(), &initial, &config, &options, |_| {});
        let chunked = chunked.unwrap();
        assert_shadow_check_passes(&initial, &config, &chunked);
        let chunked = chunked.run;
        let whole = gpu::train_with(
            common::gpu(),
            &initial,
            &config,
            &GpuOptions {
                max_chunk_samples: None,
                ..options
            },
            |_| {},
        )
        .unwrap();
        // Chunking changes where the sums happen, not their order.
        assert_eq!(
            chunked.output.loss_history, whole.output.loss_history,
            "{schedule:?} {batch_size:?}"
        );
        assert_eq!(
            chunked.output.model, whole.output.model,
            "{schedule:?} {batch_size:?}"
        );
    }
}

#[test]
fn seed_run_submits_once_and_reads_back_once_and_auto_fuses_it() {
    let initial = Model::glorot_uniform(Architecture::seed(), 1);
    let run = gpu::train(common::gpu(), &initial, &TrainConfig::seed()).unwrap();
    assert_eq!(run.timings.schedule, Schedule::Fused);
    assert_eq!((run.timings.submits, run.timings.readbacks), (1, 1));
    for &schedule in LARGE {
        let options = GpuOptions {
            schedule,
            ..GpuOptions::default()
        };
        let run = gpu::train_with(
            common::gpu(),
            &initial,
            &TrainConfig::seed(),
            &options,
            |_| {},
        )
        .unwrap();
        assert_eq!(
            (run.timings.submits, run.timings.readbacks),
            (1, 1),
            "{schedule:?}"
        );
    }
}

#[test]
fn submitting_in_chunks_changes_nothing_but_the_submit_count() {
    let initial = Model::glorot_uniform(Architecture::seed(), 2);
    let config = TrainConfig {
        epochs: 450,
        ..TrainConfig::seed()
    };
    for &schedule in ALL {
        let whole = GpuOptions {
            schedule,
            epochs_per_submit: None,
            max_chunk_samples: None,
            fused_workgroup_size: None,
            record_steps: false,
            stream_losses: false,
        };
        let chunked = GpuOptions {
            schedule,
            epochs_per_submit: Some(100),
            max_chunk_samples: None,
            fused_workgroup_size: None,
            record_steps: false,
            stream_losses: true,
        };
        let a = gpu::train_with(common::gpu(), &initial, &config, &whole, |_| {}).unwrap();
        let (mut reported, mut streamed) = (Vec::new(), Vec::new());
        let b = gpu::train_with(common::gpu(), &initial, &config, &chunked, |done| {
            reported.push(done.epochs);
            streamed.extend_from_slice(done.new_losses);
            // Each report brings exactly the epochs finished since the last.
            assert_eq!(streamed.len(), done.epochs);
        })
        .unwrap();
        assert_eq!(a.output.loss_history, b.output.loss_history, "{schedule:?}");
        assert_eq!(a.output.model, b.output.model, "{schedule:?}");
        assert_eq!(a.timings.submits, 1);
        // The streamed losses are the history, one readback per submission
        // plus the final one.
        assert_eq!(streamed, b.output.loss_history, "{schedule:?}");
        assert_eq!(b.timings.readbacks, b.timings.submits + 1, "{schedule:?}");
        assert_eq!(a.timings.readbacks, 1, "{schedule:?}");
        // Progress comes once per submission, in whole chunks of 100 epochs
        // (fused chunks round up to whole dispatches, which the loop budget
        // may make shorter than 100 epochs: then more than 100 a chunk).
        assert_eq!(b.timings.submits, reported.len(), "{schedule:?}");
        assert_eq!(reported.last(), Some(&450), "{schedule:?}");
        assert!(reported.windows(2).all(|w| w[1] > w[0]), "{reported:?}");
        match schedule {
            ScheduleChoice::Fused => {
                assert!(reported.len() >= 2 && reported.len() <= 5, "{reported:?}");
                assert!(reported[0] >= 100, "{reported:?}");
            }
            _ => assert_eq!(reported, [100, 200, 300, 400, 450], "{schedule:?}"),
        }
    }
}

#[test]
fn gpu_runs_are_reproducible_bit_for_bit() {
    let initial = Model::glorot_uniform(Architecture::new(&[17, 5]).unwrap(), 3);
    // 600 samples in Keras's default batches of 32: shuffled every epoch.
    let config = TrainConfig {
        data: common::noisy_formula(600),
        epochs: 20,
        learning_rate: 0.05,
        ..TrainConfig::seed()
    };
    let first = gpu::train(common::gpu(), &initial, &config).unwrap().output;
    let second = gpu::train(common::gpu(), &initial, &config).unwrap().output;
    assert_eq!(first.loss_history, second.loss_history);
    assert_eq!(first.model, second.model);
}

#[test]
fn runs_of_more_passes_than_one_query_set_holds_train_and_time_every_pass() {
    // wgpu caps a query set at 4096 queries, two timestamps a pass: a run
    // of more than 2048 passes used to fail its first wait. One epoch a
    // submission on the dispatch schedule makes 2100 passes cheaply.
    let initial = Model::glorot_uniform(Architecture::seed(), 3);
    let config = TrainConfig {
        epochs: 2100,
        ..TrainConfig::seed()
    };
    let options = GpuOptions {
        schedule: ScheduleChoice::Dispatch,
        epochs_per_submit: Some(1),
        max_chunk_samples: None,
        fused_workgroup_size: None,
        record_steps: true,
        stream_losses: false,
    };
    let checked = gpu::train_checked(common::gpu(), &initial, &config, &options, |_| {})
        .unwrap_or_else(|e| panic!("a 2100-pass run trains: {e:#}"));
    let run = &checked.run;
    assert_eq!(run.timings.submits, 2100);
    // Each submission's records, then the results.
    assert_eq!(run.timings.readbacks, 2101);
    let timestamps = common::gpu()
        .device
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY);
    if timestamps {
        assert_eq!(run.timings.timed_submits, 2100, "every pass is timed");
        assert!(run.timings.gpu_train.is_some_and(|t| !t.is_zero()));
    } else {
        assert_eq!(run.timings.timed_submits, 0);
    }
    assert_shadow_check_passes(&initial, &config, &checked);
}

#[test]
fn fused_schedule_sums_over_several_reduction_blocks() {
    // A full batch of 500 samples: two 256-sample blocks, then a second
    // reduction level, inside the fused dispatch (what `auto` picks for 500
    // samples with hidden 3).
    let initial = Model::glorot_uniform(Architecture::new(&[3]).unwrap(), 11);
    let config = TrainConfig {
        data: common::noisy_formula(500),
        epochs: 30,
        learning_rate: 0.01,
        batch_size: None,
        ..TrainConfig::seed()
    };
    let plan_steps = config.batching().batch_size as usize;
    assert!(
        plan_steps > gpu_c2f::step::REDUCE_BLOCK,
        "more than one block"
    );
    assert_gpu_matches_cpu(&initial, &config, &[ScheduleChoice::Fused]);
}

#[test]
fn runs_past_the_end_of_adams_step_size_table_agree() {
    // The step-size table stops once alpha_t has settled (~17 300 steps for
    // beta_2 = 0.999); later steps read its last entry. 64 one-sample
    // batches an epoch for 300 epochs: 19 200 steps.
    let initial = Model::glorot_uniform(Architecture::new(&[3]).unwrap(), 12);
    let config = TrainConfig {
        data: common::noisy_formula(64),
        epochs: 300,
        learning_rate: 0.001,
        batch_size: Some(1),
        ..TrainConfig::seed()
    };
    let steps = config.epochs as u64 * config.batching().steps_per_epoch as u64;
    let table = config.adam().step_size_table(steps);
    assert!(
        (table.len() as u64) < steps,
        "{} table entries for {steps} steps",
        table.len()
    );
    assert_gpu_matches_cpu(&initial, &config, &[ScheduleChoice::Fused]);
}

#[test]
fn the_fused_workgroup_a_real_gpu_gets_runs_here_too() {
    // A GPU gets a 64-thread fused workgroup (a software adapter gets 8):
    // run that size on this adapter, on the seed job and on 300 samples
    // (more than one block, mini-batches), against the CPU reference.
    for (data, batch_size, hidden) in [
        (Dataset::seed(), Some(32), vec![3, 3]),
        (common::noisy_formula(300), None, vec![17]),
        (common::noisy_formula(300), Some(50), vec![3, 3]),
    ] {
        let initial = Model::glorot_uniform(Architecture::new(&hidden).unwrap(), 13);
        let config = TrainConfig {
            data,
            epochs: 40,
            learning_rate: 0.01,
            batch_size,
            ..TrainConfig::seed()
        };
        let options = GpuOptions {
            schedule: ScheduleChoice::Fused,
            fused_workgroup_size: Some(64),
            ..GpuOptions::default()
        };
        let run = gpu::train_checked(common::gpu(), &initial, &config, &options, |_| {})
            .unwrap_or_else(|e| panic!("64 threads: {e:#}"));
        assert_eq!(run.run.timings.schedule, Schedule::Fused);
        assert_shadow_check_passes(&initial, &config, &run);
    }
}

#[test]
fn a_wide_run_streams_its_records_over_several_submissions_and_every_step_is_checked() {
    // 1-64-64-1: 4353 parameters, 122 kB a step record; a submission runs
    // no more steps than its 16 MiB ring of records holds (137), so the 300
    // steps take three submissions, each read back and checked as the next
    // runs. Every step is checked, none twice.
    let initial = Model::glorot_uniform(Architecture::new(&[64, 64]).unwrap(), 5);
    let config = TrainConfig {
        epochs: 300,
        learning_rate: 0.01,
        ..TrainConfig::seed()
    };
    for schedule in [ScheduleChoice::Fused, ScheduleChoice::Dispatch] {
        let run = train_recorded(&initial, &config, schedule);
        let timings = &run.run.timings;
        assert!(timings.submits >= 3, "{schedule:?}: {timings:?}");
        assert_eq!(timings.readbacks, timings.submits + 1, "{schedule:?}");
        assert_shadow_check_passes(&initial, &config, &run);
    }
}
