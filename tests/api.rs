//! The library as a Rust application uses it: typed errors a program can
//! match on, an application's own wgpu device, and the async core behind
//! the blocking calls.

mod common;

use gpu_c2f::gpu::{self, AdapterSelector, BackendChoice, Gpu, GpuOptions, wgpu};
use gpu_c2f::{Architecture, Dataset, Error, Model, TrainConfig, cpu, model_file};

fn seed_model() -> Model {
    Model::glorot_uniform(Architecture::seed(), 42)
}

#[test]
fn bad_settings_and_files_come_back_as_their_variants() {
    assert!(matches!(
        Architecture::new(&[0]),
        Err(Error::InvalidConfig(_))
    ));
    let config = TrainConfig {
        learning_rate: -1.0,
        ..TrainConfig::seed()
    };
    assert!(matches!(
        cpu::train(&seed_model(), &config),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        model_file::parse("{\"layers\": 3}"),
        Err(Error::ModelFile { file: None, .. })
    ));
    let missing = std::path::Path::new("/nonexistent/gpu-c2f/temps.csv");
    assert!(matches!(
        Dataset::from_csv_file(missing, None),
        Err(Error::Io { .. })
    ));
    match Dataset::from_csv_str("celsius,fahrenheit\n0,32\n1,oops\n", None) {
        Err(Error::Data {
            line: Some(3),
            column: Some(2),
            ..
        }) => {}
        other => panic!("expected a data error at line 3, column 2, got {other:?}"),
    }
}

#[test]
fn divergence_is_its_variant_on_both_paths_with_the_epoch() {
    // A learning rate this large overflows f32 within the first epochs.
    let config = TrainConfig {
        learning_rate: 1e30,
        ..TrainConfig::seed()
    };
    let diverged = |error| match error {
        Error::Diverged(diverged) => diverged,
        other => panic!("expected a divergence, got {other:?}"),
    };
    let on_cpu = diverged(cpu::train(&seed_model(), &config).unwrap_err());
    let on_gpu = diverged(gpu::train(common::gpu(), &seed_model(), &config).unwrap_err());
    // Both flag the same first step whose loss or weights are not finite.
    assert_eq!(on_cpu, on_gpu);
    // The first update leaves weights near 1e30, still finite; the second
    // epoch's forward pass overflows.
    assert_eq!(on_cpu.epoch, 2, "{on_cpu}");
}

#[test]
fn a_run_beyond_the_step_counter_is_refused_before_any_gpu_work() {
    // 70 000 samples in batches of 1 for 70 000 epochs: 4.9e9 steps, more
    // than the kernels' u32 step counter.
    let config = TrainConfig {
        data: Dataset::from_formula(70_000, 1),
        epochs: 70_000,
        batch_size: Some(1),
        ..TrainConfig::seed()
    };
    match gpu::train(common::gpu(), &seed_model(), &config) {
        Err(Error::LimitExceeded(message)) => assert!(message.contains("step counter")),
        other => panic!("expected LimitExceeded, got {:?}", other.err()),
    }
}

#[test]
fn an_adapter_no_one_has_is_adapter_not_found() {
    let selector = AdapterSelector::Name("no adapter is called this".into());
    assert!(matches!(
        Gpu::new(&selector, BackendChoice::All),
        Err(Error::AdapterNotFound(_))
    ));
}

/// A device opened by the application, as `Gpu::from_device` expects it.
fn own_device(limits: impl Fn(&wgpu::Adapter) -> wgpu::Limits) -> (wgpu::Device, wgpu::Queue) {
    let instance = gpu::context::create_instance(BackendChoice::All.backends());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .expect("an adapter");
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("application device"),
        required_limits: limits(&adapter),
        ..Default::default()
    }))
    .expect("a device")
}

#[test]
fn an_applications_own_device_trains_the_same_model() {
    let (device, queue) = own_device(|adapter| {
        gpu::required_limits(&adapter.limits()).expect("the adapter fits the kernels")
    });
    let own = Gpu::from_device(device, queue).expect("the device has the limits");
    let config = TrainConfig::seed();
    let on_own = gpu::train(&own, &seed_model(), &config).unwrap();
    let on_cpu = cpu::train(&seed_model(), &config).unwrap();
    // The tests' other device may be another adapter (WGPU_ADAPTER_NAME):
    // the prediction is held to the CPU reference's within tests/seed_job.rs's
    // 0.01 F, not bit for bit.
    let (own_prediction, cpu_prediction) = (
        on_own.output.model.predict(100.0),
        on_cpu.model.predict(100.0),
    );
    assert!(
        (own_prediction - cpu_prediction).abs() < 0.01,
        "{own_prediction} vs {cpu_prediction}"
    );
}

#[test]
fn a_device_without_the_kernels_storage_buffers_is_refused() {
    // wgpu's downlevel defaults allow 4 storage buffers a stage; the kernels bind 6.
    let (device, queue) = own_device(|_| wgpu::Limits::downlevel_defaults());
    match Gpu::from_device(device, queue) {
        Err(Error::AdapterUnsuitable(message)) => {
            assert!(message.contains("storage buffers"), "{message}")
        }
        other => panic!("expected AdapterUnsuitable, got {:?}", other.err()),
    }
}

#[test]
fn the_async_core_and_the_blocking_call_agree_bit_for_bit() {
    let config = TrainConfig::seed();
    let blocking = gpu::train(common::gpu(), &seed_model(), &config).unwrap();
    let options = GpuOptions::default();
    let mut progress = Vec::new();
    let awaited = pollster::block_on(gpu::train_async(
        common::gpu(),
        &seed_model(),
        &config,
        &options,
        |done| progress.push(done.epochs),
    ))
    .unwrap();
    assert_eq!(blocking.output.loss_history, awaited.output.loss_history);
    assert_eq!(
        blocking.output.model.params(),
        awaited.output.model.params()
    );
    assert_eq!(progress.last(), Some(&config.epochs));
}

/// The tests' own device, opened as an application would, for the tests
/// that break it.
fn breakable_gpu() -> (Gpu, wgpu::Device) {
    let (device, queue) = own_device(|adapter| {
        gpu::required_limits(&adapter.limits()).expect("the adapter fits the kernels")
    });
    let gpu = Gpu::from_device(device.clone(), queue).expect("the device has the limits");
    (gpu, device)
}

#[test]
fn a_gpu_validation_error_becomes_an_error_naming_the_adapter() {
    let (gpu, device) = breakable_gpu();
    // A buffer no device may create (MAP_READ with STORAGE): an error
    // nobody captured, reported by the device's uncaptured-error handler.
    let _bad = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("invalid on purpose"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    match gpu::train(&gpu, &seed_model(), &TrainConfig::seed()) {
        Err(error @ Error::Gpu { .. }) => {
            let text = error.to_string();
            assert!(text.contains(&gpu.info.name), "{text}");
            assert!(text.contains("invalid on purpose"), "{text}");
        }
        other => panic!("expected Error::Gpu, got {other:?}"),
    }
}

#[test]
fn a_lost_device_is_device_lost_naming_the_adapter_not_a_panic() {
    // wgpu 30 cannot make a driver lose a device; destroying it is the one
    // loss a program can cause. Once the device has told its callback, the
    // run fails up front as DeviceLost; before that (no poll yet), the
    // first allocations fail as GPU errors. Neither panics (wgpu's
    // create_buffer_init did).
    for told in [true, false] {
        let (gpu, device) = breakable_gpu();
        device.destroy();
        if told {
            let _ = device.poll(wgpu::PollType::Poll);
        }
        let error = gpu::train(&gpu, &seed_model(), &TrainConfig::seed())
            .expect_err("a destroyed device trains nothing");
        let text = error.to_string();
        assert!(text.contains(&gpu.info.name), "{error:?}");
        match (told, &error) {
            (true, Error::DeviceLost { .. }) | (false, Error::Gpu { .. }) => {}
            _ => panic!("told {told}: unexpected {error:?}"),
        }
    }
}

#[test]
fn a_gpu_compiles_a_shape_once_and_a_new_shape_again() {
    // 13 samples: a shape no other test of this binary trains, so the
    // first run compiles.
    let config = TrainConfig {
        data: Dataset::from_formula(13, 5),
        epochs: 3,
        ..TrainConfig::seed()
    };
    let run = |config: &TrainConfig| {
        gpu::train(common::gpu(), &seed_model(), config)
            .unwrap()
            .timings
            .compiled
    };
    assert!(run(&config), "the first run of a shape compiles");
    assert!(!run(&config), "the same job again compiles nothing");
    // What the module does not depend on: the seed, the learning rate, the
    // epochs.
    let values = TrainConfig {
        shuffle_seed: 7,
        learning_rate: 0.05,
        epochs: 5,
        ..config.clone()
    };
    assert!(!run(&values), "the run's values are not its shape");
    // What it does: the loss.
    let huber = TrainConfig {
        loss: gpu_c2f::Loss::Huber,
        ..config
    };
    assert!(run(&huber), "another loss is another module");
}
