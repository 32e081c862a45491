//! Shared by the GPU integration tests: one device per test process.

use gpu_c2f::gpu::{AdapterSelector, BackendChoice, Gpu};
use std::sync::OnceLock;

/// The adapter the binary would pick without `--adapter`: the one
/// `WGPU_ADAPTER_NAME` names (and `WGPU_BACKEND` allows), else `auto`'s, so
/// CI runs these tests once per driver. There is no skip: a machine without
/// any adapter fails the GPU tests.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        // Driver and validation-layer messages reach the test output, and
        // their errors fail the run that caused them.
        let _ = gpu_c2f::gpu::driver_log::install();
        let gpu = Gpu::new(&AdapterSelector::from_flag_or_env(None), BackendChoice::All)
            .unwrap_or_else(|e| panic!("the GPU tests need an adapter: {e:#}"));
        let chosen = format!("{} ({})", gpu.info.name, gpu.info.backend);
        eprintln!("GPU tests on {chosen}, driver {}", gpu.info.driver);
        // CI names the driver each pass must run on, so a pass that fell
        // back to another adapter fails instead of testing the wrong one.
        if let Ok(expected) = std::env::var("GPU_C2F_EXPECT_ADAPTER") {
            assert!(
                chosen.contains(&expected),
                "GPU_C2F_EXPECT_ADAPTER={expected:?}, but the tests got {chosen}"
            );
        }
        gpu
    })
}
