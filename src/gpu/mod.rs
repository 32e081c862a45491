//! The GPU path. A run is planned (`plan.rs`: the step's operations from
//! [`crate::step`] lowered to dispatches over a memory layout), scheduled
//! (`schedule.rs`), written as one WGSL module for the job (`module.rs`
//! from the concept files in shaders/, `wgsl.rs`, with `fused.rs` and
//! `samples.rs` for their schedules), compiled once per module
//! (`pipelines.rs`), given its buffers (`buffers.rs`), recorded and
//! submitted (`record.rs`, `timer.rs`) and read back once (`readback.rs`),
//! by the driver in `trainer.rs` ([`train_async`]); `checked.rs` runs the
//! shadow check beside it as the step records stream back. `abi.rs` holds what the
//! host and the kernels share; [`context`] finds an adapter and opens a
//! device.

pub(crate) mod abi;
pub(crate) mod buffers;
pub mod checked;
pub mod context;
pub mod driver_log;
pub(crate) mod fused;
pub(crate) mod module;
pub(crate) mod pipelines;
pub(crate) mod plan;
pub(crate) mod readback;
pub(crate) mod record;
pub(crate) mod samples;
pub(crate) mod schedule;
#[cfg(test)]
mod tests;
pub(crate) mod timer;
pub(crate) mod trainer;
pub(crate) mod wgsl;

#[cfg(not(target_arch = "wasm32"))]
pub use checked::train_checked;
pub use checked::{CheckedRun, train_checked_async};
pub use context::{AdapterSelector, BackendChoice, Gpu, GpuInfo, required_limits};
pub use plan::largest_buffer;
pub use schedule::{Schedule, ScheduleChoice};
pub use trainer::{GpuOptions, GpuTimings, GpuTrainOutput, Progress, train_async};
#[cfg(not(target_arch = "wasm32"))]
pub use trainer::{train, train_with};
/// The wgpu this crate is built on, for [`Gpu::from_device`].
pub use wgpu;
