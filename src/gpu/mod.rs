//! The GPU path: adapter choice and device ([`context`]), the training
//! kernels' pipelines ([`pipelines`]), the buffers of one run ([`buffers`])
//! and the epoch loop that records, submits and reads back ([`trainer`]).

pub mod buffers;
pub mod context;
pub mod pipelines;
pub mod trainer;

pub use context::{AdapterSelector, BackendChoice, Gpu, GpuInfo};
pub use pipelines::Schedule;
pub use trainer::{GpuOptions, ScheduleChoice, train, train_with};

/// The WGSL source of every training kernel.
pub const TRAIN_SHADER: &str = include_str!("../../shaders/train.wgsl");
