//! The GPU path: adapter choice and device ([`context`]), the training
//! kernels' pipelines ([`pipelines`]), the buffers of one run ([`buffers`]),
//! the generated kernels of the fused and samples schedules ([`fused`],
//! [`network`]) and the epoch loop that records, submits and reads back
//! ([`trainer`]).

pub mod buffers;
pub mod context;
pub mod driver_log;
pub mod fused;
pub mod network;
pub mod pipelines;
pub mod trainer;

pub use context::{AdapterSelector, BackendChoice, Gpu, GpuInfo};
pub use pipelines::Schedule;
pub use trainer::{GpuOptions, ScheduleChoice, train, train_with};

/// The WGSL source of every training kernel.
pub const TRAIN_SHADER: &str = include_str!("../../shaders/train.wgsl");

/// The fused schedule's entry point, compiled after [`TRAIN_SHADER`] and a
/// generated `fused_step` (see [`fused`]).
pub const FUSED_ENTRY_SHADER: &str = include_str!("../../shaders/fused_entry.wgsl");
