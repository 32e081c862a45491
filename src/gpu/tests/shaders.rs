//! Every WGSL module the program compiles parses and validates with naga,
//! the compiler wgpu itself uses, without needing a GPU: train.wgsl alone
//! (the dispatch schedule), and for several plans and networks train.wgsl
//! with the fused schedule's template filled in, or the samples schedule's.
//! The seed job's generated code (what follows train.wgsl in its modules) is
//! kept in tests/golden/, so a change to what the host writes shows in
//! review as a diff of WGSL
//! (`GPU_C2F_UPDATE_GOLDEN=1 cargo test --lib shaders` rewrites them).

use gpu_c2f::gpu::abi::{FUSED_ENTRY_POINT, Kernel};
use gpu_c2f::gpu::fused::fused_module;
use gpu_c2f::gpu::pipelines::module_source;
use gpu_c2f::gpu::plan::{GpuPlan, Tile};
use gpu_c2f::gpu::samples::samples_module;
use gpu_c2f::gpu::schedule::Schedule;
use gpu_c2f::gpu::wgsl::{TRAIN_SHADER, WIDE_TILES_BEGIN, WIDE_TILES_END, train_shader};
use gpu_c2f::step::SampleWork;
use gpu_c2f::{Architecture, Dataset, Model, TrainConfig};
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
fn every_wgsl_file_is_covered_and_valid() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wgsl"))
        .collect();
    names.sort();
    // A new shader file must be added to the checks below.
    assert_eq!(
        names,
        ["fused_steps.wgsl", "sample_partials.wgsl", "train.wgsl"]
    );
    let train = std::fs::read_to_string(folder.join("train.wgsl")).unwrap();
    assert_eq!(train, TRAIN_SHADER, "the binary embeds shaders/train.wgsl");
    validate("train.wgsl", &train);
    // The two templates are checked filled in, below.
}

#[test]
fn the_dispatch_schedule_has_every_kernel_the_host_uses() {
    let module = validate("train.wgsl", TRAIN_SHADER);
    for kernel in Kernel::ALL {
        if kernel == Kernel::SamplePartials {
            continue; // generated per network: checked below
        }
        assert!(
            module
                .entry_points
                .iter()
                .any(|e| e.name == kernel.entry_point()),
            "train.wgsl has no entry point {}",
            kernel.entry_point()
        );
    }
}

#[test]
fn the_fused_module_validates_for_several_plans() {
    for (samples, hidden) in [
        (7, vec![3, 3]),
        (1, vec![]),
        (300, vec![17, 5, 2]),
        (70_000, vec![3]),
    ] {
        let model = Model::glorot_uniform(Architecture::new(&hidden).unwrap(), 1);
        let config = TrainConfig {
            data: Dataset::new(vec![1.0; samples], vec![2.0; samples]),
            ..TrainConfig::seed()
        };
        let plan = GpuPlan::new(&model, &config, SampleWork::Layers, Tile::SINGLE, None).unwrap();
        for workgroup_size in [8, 64] {
            let name = format!("fused module, {samples} samples, hidden {hidden:?}");
            let module = validate(&name, &fused_module(&plan, workgroup_size).text);
            assert!(
                module
                    .entry_points
                    .iter()
                    .any(|e| e.name == FUSED_ENTRY_POINT)
            );
        }
    }
}

#[test]
fn the_samples_module_validates_for_several_networks() {
    for hidden in [vec![], vec![1], vec![3, 3], vec![17, 5, 2], vec![16, 16]] {
        let architecture = Architecture::new(&hidden).unwrap();
        let name = format!("samples module, hidden {hidden:?}");
        let module = validate(&name, &samples_module(&architecture).text);
        let entry_point = Kernel::SamplePartials.entry_point();
        assert!(module.entry_points.iter().any(|e| e.name == entry_point));
    }
}

#[test]
fn narrow_tile_modules_drop_only_the_marked_wide_tile_code_and_validate() {
    let full = TRAIN_SHADER;
    let begins = full.matches(WIDE_TILES_BEGIN).count();
    assert_eq!(
        begins,
        full.matches(WIDE_TILES_END).count(),
        "unpaired markers"
    );
    assert!(
        begins >= 7,
        "the wide-tile code is marked ({begins} regions)"
    );
    let wide = train_shader(Tile {
        samples: 8,
        units: 8,
    });
    assert_eq!(wide, full, "8 x 8 tiles keep everything");
    let odd = train_shader(Tile {
        samples: 4,
        units: 5,
    });
    assert_eq!(odd, full, "one side over 4 keeps everything");
    for tile in [Tile::SINGLE, Tile::blocked(4)] {
        let narrow = train_shader(tile);
        assert!(narrow.len() < full.len());
        assert!(!narrow.contains(WIDE_TILES_BEGIN) && !narrow.contains(WIDE_TILES_END));
        // Only the marked code goes: no line touching a second tile half
        // (`[1]` of a Row, or a column or row from 4 on) is left.
        for needle in ["values[1]", "k - 4u", "q - 4u", "c - 4u", "2u * q + 1u"] {
            assert!(!narrow.contains(needle), "{needle} left in {tile:?}");
            assert!(full.contains(needle), "{needle} not in train.wgsl");
        }
        let module = validate(&format!("train.wgsl for {tile:?}"), &narrow);
        for kernel in Kernel::ALL {
            if kernel != Kernel::SamplePartials {
                assert!(
                    module
                        .entry_points
                        .iter()
                        .any(|e| e.name == kernel.entry_point())
                );
            }
        }
    }
}

#[test]
fn the_kernels_bind_as_many_storage_buffers_as_the_device_is_asked_for() {
    // The device is asked for exactly this many (gpu::context::required_limits).
    let module = validate("train.wgsl", TRAIN_SHADER);
    let storage = module
        .global_variables
        .iter()
        .filter(|(_, g)| matches!(g.space, naga::AddressSpace::Storage { .. }))
        .count();
    assert_eq!(storage as u32, gpu_c2f::gpu::abi::STORAGE_BUFFERS_PER_STAGE);
}

/// The seed job's module for `schedule`, as the trainer builds it (the
/// fused schedule with a software adapter's 8 threads).
fn seed_module(schedule: Schedule) -> gpu_c2f::gpu::wgsl::ModuleSource {
    let model = Model::glorot_uniform(Architecture::seed(), 1);
    let config = TrainConfig::seed();
    let plan = gpu_c2f::gpu::schedule::plan_for(schedule, &model, &config, 1 << 30, None).unwrap();
    module_source(schedule, &plan, 8)
}

#[test]
fn the_seed_jobs_generated_modules_match_their_golden_files() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("GPU_C2F_UPDATE_GOLDEN").is_some();
    for schedule in [Schedule::Fused, Schedule::Samples] {
        let module = seed_module(schedule);
        validate(&module.label, &module.text);
        // Both modules are train.wgsl's narrow-tile form with generated code
        // after it: the golden file keeps what is generated.
        let generated = module
            .text
            .strip_prefix(train_shader(Tile::SINGLE).as_ref())
            .expect("the module starts with train.wgsl");
        let path = folder.join(format!("{}.wgsl", module.label));
        if update {
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(&path, generated).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e}; GPU_C2F_UPDATE_GOLDEN=1 writes it", path.display())
        });
        assert!(
            golden == generated,
            "the {} module differs from {}; review the change and rerun with \
             GPU_C2F_UPDATE_GOLDEN=1 to accept it",
            schedule.name(),
            path.display()
        );
    }
}

#[test]
fn modules_are_labelled_by_schedule_and_architecture() {
    assert_eq!(
        seed_module(Schedule::Fused).label,
        "fused-1-3-3-1-n7-b7-wg8"
    );
    assert_eq!(seed_module(Schedule::Samples).label, "samples-1-3-3-1");
    assert_eq!(
        seed_module(Schedule::Dispatch).label,
        "dispatch-1-3-3-1-tile4x4"
    );
}
