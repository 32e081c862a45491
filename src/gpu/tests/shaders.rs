//! Every WGSL module the program compiles parses and validates with naga,
//! the compiler wgpu itself uses, without needing a GPU: the module of each
//! schedule for a matrix of jobs that, together, turn on every section of
//! every source file. The seed job's modules are kept in tests/golden/, so
//! a change to what a job compiles shows in review as a diff of WGSL
//! (`GPU_C2F_UPDATE_GOLDEN=1 cargo test --lib shaders` rewrites them).

use gpu_c2f::gpu::abi::FUSED_ENTRY_POINT;
use gpu_c2f::gpu::module::{module_source, selection};
use gpu_c2f::gpu::plan::GpuPlan;
use gpu_c2f::gpu::schedule::{Schedule, plan_for};
use gpu_c2f::gpu::wgsl::{ModuleSource, SOURCES};
use gpu_c2f::training::{EarlyStopping, NamedMetric};
use gpu_c2f::{Activation, Architecture, Dataset, Loss, Model, TrainConfig};
use std::collections::BTreeSet;
use std::path::Path;
use wgpu::naga;

fn validate(name: &str, source: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    module
}

#[test]
fn the_binary_embeds_every_wgsl_file() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wgsl"))
        .collect();
    names.sort();
    let embedded: Vec<&str> = SOURCES.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, embedded, "a new shader file must join wgsl::SOURCES");
    for (name, text) in SOURCES {
        let file = std::fs::read_to_string(folder.join(name)).unwrap();
        assert_eq!(file, text, "{name}");
    }
}

/// A job: `hidden` layers (and the output) with their activations.
struct Job {
    layers: Vec<(usize, Activation)>,
    output: Activation,
    samples: usize,
    config: fn(TrainConfig) -> TrainConfig,
    records: bool,
    max_chunk: Option<usize>,
}

impl Job {
    fn seed() -> Self {
        Job {
            layers: vec![(3, Activation::Linear), (3, Activation::Linear)],
            output: Activation::Linear,
            samples: 7,
            config: |config| config,
            records: false,
            max_chunk: None,
        }
    }

    fn plan(&self, schedule: Schedule) -> GpuPlan {
        let hidden: Vec<usize> = self.layers.iter().map(|(units, _)| *units).collect();
        let mut activations: Vec<Activation> = self.layers.iter().map(|(_, a)| *a).collect();
        activations.push(self.output);
        let architecture = Architecture::new(&hidden)
            .unwrap()
            .with_activations(activations)
            .unwrap();
        let model = Model::glorot_uniform(architecture, 1);
        let x: Vec<f32> = (0..self.samples).map(|i| i as f32 / 7.0).collect();
        let y: Vec<f32> = x.iter().map(|x| (x > &0.5) as u8 as f32).collect();
        let config = (self.config)(TrainConfig {
            data: Dataset::new(x, y),
            ..TrainConfig::seed()
        });
        let mut plan = plan_for(schedule, &model, &config, 1 << 30, self.max_chunk).unwrap();
        if self.records {
            plan.record_ring(4);
        }
        plan
    }
}

/// Jobs that between them use every activation, loss, metric and feature.
fn jobs() -> Vec<Job> {
    use Activation::*;
    vec![
        Job::seed(),
        Job {
            layers: vec![(17, Relu), (5, Tanh), (2, Elu)],
            output: Sigmoid,
            samples: 300,
            config: |c| TrainConfig {
                loss: Loss::BinaryCrossentropy,
                batch_size: Some(32),
                metrics: ["accuracy", "bce", "mae", "mse"]
                    .iter()
                    .map(|name| NamedMetric::from_name(name).unwrap())
                    .collect(),
                ..c
            },
            records: true,
            max_chunk: None,
        },
        Job {
            layers: vec![(4, Softplus), (3, LeakyRelu)],
            output: Gelu,
            samples: 70_000,
            config: |c| TrainConfig {
                loss: Loss::Huber,
                validation_split: 0.2,
                shuffle: false,
                batch_size: Some(60_000),
                early_stopping: Some(EarlyStopping {
                    patience: 3,
                    min_delta: 0.0,
                    restore_best_weights: true,
                }),
                ..c
            },
            records: false,
            max_chunk: Some(1024),
        },
        Job {
            layers: vec![(9, Silu)],
            output: Linear,
            samples: 50,
            config: |c| TrainConfig {
                loss: Loss::MeanAbsoluteError,
                validation_split: 0.2,
                early_stopping: Some(EarlyStopping {
                    patience: 3,
                    min_delta: 0.1,
                    restore_best_weights: false,
                }),
                ..c
            },
            records: true,
            max_chunk: None,
        },
        Job {
            layers: vec![],
            output: Tanh,
            samples: 1,
            config: |c| TrainConfig {
                loss: Loss::BinaryCrossentropyFromLogits,
                validation_split: 0.0,
                ..c
            },
            records: false,
            max_chunk: None,
        },
        Job {
            layers: vec![(2, Sigmoid)],
            output: Sigmoid,
            samples: 40,
            config: |c| TrainConfig {
                loss: Loss::BinaryCrossentropyFromLogits,
                validation_split: 0.5,
                ..c
            },
            records: false,
            max_chunk: None,
        },
        Job {
            layers: vec![(3, Relu)],
            output: Linear,
            samples: 20,
            config: |c| TrainConfig {
                metrics: vec![
                    NamedMetric::from_name("mae").unwrap(),
                    NamedMetric::from_name("bce").unwrap(),
                ],
                validation_split: 0.25,
                ..c
            },
            records: false,
            max_chunk: None,
        },
    ]
}

const SCHEDULES: [Schedule; 3] = [Schedule::Fused, Schedule::Dispatch, Schedule::Samples];

#[test]
fn every_jobs_module_validates_with_its_entry_points() {
    for job in jobs() {
        for schedule in SCHEDULES {
            let plan = job.plan(schedule);
            for workgroup_size in [8, 64] {
                let source = module_source(schedule, &plan, workgroup_size);
                let module = validate(&source.label, &source.text);
                for entry_point in &source.entry_points {
                    assert!(
                        module.entry_points.iter().any(|e| &e.name == entry_point),
                        "{}: no entry point {entry_point}",
                        source.label
                    );
                }
                if schedule == Schedule::Fused {
                    assert_eq!(source.entry_points, [FUSED_ENTRY_POINT]);
                }
                // Every kernel binds the storage buffers the device is asked
                // for (gpu::context::required_limits) and no more.
                let storage = module
                    .global_variables
                    .iter()
                    .filter(|(_, g)| matches!(g.space, naga::AddressSpace::Storage { .. }))
                    .count();
                assert_eq!(storage as u32, gpu_c2f::gpu::abi::STORAGE_BUFFERS_PER_STAGE);
            }
        }
    }
}

/// Every `// if NAME {` condition and `// for each NAME {` list of the sources.
fn sections() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (_, text) in SOURCES {
        for line in text.lines() {
            let line = line.trim();
            for prefix in ["// if ", "// for each "] {
                if let Some(name) = line.strip_prefix(prefix).and_then(|r| r.strip_suffix(" {")) {
                    names.insert(name.trim_start_matches('!').to_string());
                }
            }
        }
    }
    names
}

#[test]
fn the_jobs_turn_every_section_on_and_the_seed_job_turns_them_off() {
    // So every line of every source is in a module validated above, and a
    // misspelt condition (which no job would ever turn on) fails here.
    let mut used = BTreeSet::new();
    for job in jobs() {
        for schedule in SCHEDULES {
            let selection = selection(&job.plan(schedule));
            used.extend(selection.features.iter().cloned());
            for (name, values) in &selection.lists {
                if !values.is_empty() {
                    used.insert(name.clone());
                }
            }
        }
    }
    let every = sections();
    let never: Vec<&String> = every.difference(&used).collect();
    assert!(never.is_empty(), "sections no job turns on: {never:?}");
    let seed = selection(&Job::seed().plan(Schedule::Fused));
    assert_eq!(
        seed.features,
        ["mean_squared_error".to_string()].into_iter().collect(),
        "the seed job's fused module takes only its loss"
    );
}

/// The seed job's module for `schedule`, as the trainer builds it (the
/// fused schedule with a software adapter's 8 threads).
fn seed_module(schedule: Schedule) -> ModuleSource {
    module_source(schedule, &Job::seed().plan(schedule), 8)
}

/// A module's functions and statements: its text without comments and
/// without the declarations of the buffers' structs (which the host's
/// mirrors fix for every module).
fn code(text: &str) -> String {
    let mut code = String::new();
    let mut in_struct = false;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").trim_end();
        if line.starts_with("struct ") {
            in_struct = true;
        }
        if !in_struct && !line.trim().is_empty() {
            code.push_str(line);
            code.push('\n');
        }
        if line == "}" {
            in_struct = false;
        }
    }
    code
}

#[test]
fn the_seed_jobs_fused_module_has_nothing_it_does_not_use() {
    let module = seed_module(Schedule::Fused);
    let text = code(&module.text).to_lowercase();
    for absent in [
        "switch",
        "metric",
        "validation",
        "early",
        "stopped",
        "best",
        "record",
        "activate_",
        "_derivative",
        "sample_index",
        "gather",
        "wide",
    ] {
        assert!(
            !text.contains(absent),
            "the seed job's fused module contains {absent:?}"
        );
    }
    // Its kernels' sizes are constants: the seed data's 7 samples.
    assert!(module.text.contains("const SAMPLES: u32 = 7u;"));
    // The check itself: a job with metrics and early stopping has them.
    let plan = jobs().remove(2).plan(Schedule::Fused);
    let other = code(&module_source(Schedule::Fused, &plan, 8).text);
    assert!(other.contains("watch_epoch") && other.contains("validation_mean"));
    assert!(other.contains("activate_gelu") && other.contains("huber("));
    // Its epoch-end kernels' items run only at an epoch's end.
    let validation = other.find("validation_losses_at(index").unwrap();
    assert!(other[..validation].ends_with(&format!(
        "if ends_epoch(batch) {{\n        for (var index = local; index < {}u; index += 8u) {{\n            ",
        plan.shape.validation_samples
    )));
}

#[test]
fn the_seed_jobs_modules_match_their_golden_files() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("GPU_C2F_UPDATE_GOLDEN").is_some();
    for schedule in SCHEDULES {
        let module = seed_module(schedule);
        let path = folder.join(format!("{}.wgsl", module.label));
        if update {
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(&path, &module.text).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e}; GPU_C2F_UPDATE_GOLDEN=1 writes it", path.display())
        });
        assert!(
            golden == module.text,
            "the {} module differs from {}; review the change and rerun with \
             GPU_C2F_UPDATE_GOLDEN=1 to accept it",
            schedule.name(),
            path.display()
        );
    }
}

#[test]
fn modules_are_labelled_by_schedule_architecture_and_features() {
    assert_eq!(
        seed_module(Schedule::Fused).label,
        "fused-1-3-3-1-n7-b7-wg8"
    );
    assert_eq!(
        seed_module(Schedule::Samples).label,
        "samples-1-3-3-1-n7-b7"
    );
    assert_eq!(
        seed_module(Schedule::Dispatch).label,
        "dispatch-1-3-3-1-n7-b7-tile4x4"
    );
    let plan = jobs().remove(1).plan(Schedule::Dispatch);
    assert_eq!(
        module_source(Schedule::Dispatch, &plan, 8).label,
        "dispatch-1-17relu-5tanh-2elu-1sigmoid-n300-b32-tile8x8-binary_crossentropy-m4-shuffled-records"
    );
}
