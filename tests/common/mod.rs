//! Shared by the GPU integration tests: one device per test process.

use gpu_c2f::Dataset;
use gpu_c2f::gpu::{AdapterSelector, BackendChoice, Gpu};
use std::sync::OnceLock;

/// The adapter the binary would pick without `--adapter`: the one
/// `WGPU_ADAPTER_NAME` names (and `WGPU_BACKEND` allows), else `auto`'s, so
/// CI runs these tests once per driver. There is no skip: a machine without
/// any adapter fails the GPU tests.
#[allow(dead_code)]
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

/// Points on the exact formula with a little noise, from a fixed LCG so
/// every run sees the same data.
// Each test crate compiles this module; not all of them use every helper.
#[allow(dead_code)]
pub fn noisy_formula(samples: usize) -> Dataset {
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
    Dataset::new(celsius, fahrenheit)
}

/// The gradient of `loss` at `p` by central differences in f64 (h = 1e-6):
/// no backprop code shared with the crate.
#[allow(dead_code)]
pub fn central_differences(loss: impl Fn(&[f64]) -> f64, p: &[f64]) -> Vec<f64> {
    let h = 1e-6;
    (0..p.len())
        .map(|i| {
            let (mut up, mut down) = (p.to_vec(), p.to_vec());
            up[i] += h;
            down[i] -= h;
            (loss(&up) - loss(&down)) / (2.0 * h)
        })
        .collect()
}
