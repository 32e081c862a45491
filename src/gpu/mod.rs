//! The GPU path. A run is planned ([`plan`]: the step's operations from
//! [`crate::step`] lowered to dispatches over a memory layout), scheduled
//! ([`schedule`]), compiled ([`wgsl`], [`fused`], [`samples`],
//! [`pipelines`]), given its buffers ([`buffers`]), recorded and submitted
//! ([`record`], [`timer`]) and read back once ([`readback`]), by the driver
//! in [`trainer`]. [`abi`] holds what the host and train.wgsl share;
//! [`context`] finds an adapter and opens a device.

pub mod abi;
pub mod buffers;
pub mod context;
pub mod driver_log;
pub mod fused;
pub mod pipelines;
pub mod plan;
pub mod readback;
pub mod record;
pub mod samples;
pub mod schedule;
pub mod timer;
pub mod trainer;
pub mod wgsl;

pub use context::{AdapterSelector, BackendChoice, Gpu, GpuInfo, required_limits};
pub use schedule::{Schedule, ScheduleChoice};
pub use trainer::{GpuOptions, GpuTimings, GpuTrainOutput, train_async};
#[cfg(not(target_arch = "wasm32"))]
pub use trainer::{train, train_with};
