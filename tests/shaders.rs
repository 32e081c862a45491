//! Every WGSL file in shaders/ parses and validates with naga, the compiler
//! wgpu itself uses, without needing a GPU.

use wgpu::naga;

#[test]
fn every_wgsl_file_parses_and_validates() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut checked = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
        checked += 1;
    }
    assert!(checked >= 1, "no WGSL files found in {}", folder.display());
}

#[test]
fn the_embedded_training_shader_declares_every_kernel_the_host_uses() {
    let module = naga::front::wgsl::parse_str(gpu_c2f::gpu::TRAIN_SHADER).unwrap();
    for kernel in gpu_c2f::gpu::pipelines::Kernel::ALL {
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
