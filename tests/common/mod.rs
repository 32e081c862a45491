//! Shared by the GPU integration tests: one device per test process.

use gpu_c2f::gpu::{AdapterSelector, BackendChoice, Gpu};
use std::sync::OnceLock;

/// The adapter `--adapter auto` would pick. There is no skip: in CI this is
/// lavapipe, and a machine without any adapter fails the GPU tests.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::new(&AdapterSelector::Auto, BackendChoice::All)
            .unwrap_or_else(|e| panic!("the GPU tests need an adapter: {e:#}"))
    })
}
