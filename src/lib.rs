//! gpu-c2f: the classic Celsius-to-Fahrenheit Keras network, trained with
//! hand-written WGSL compute shaders through wgpu, and with a CPU reference
//! that follows the same math step by step.
//!
//! A training step is one typed list of operations ([`step`]); the GPU
//! lowers it to dispatches ([`gpu`]), the CPU reference walks it ([`cpu`]),
//! and the shadow check ([`shadow`]) holds the first to the second.
//!
//! Train the tutorial's job on the best adapter present and predict 100 °C
//! (the doc test runs on whatever adapter the machine has; CI's is lavapipe):
//!
//! ```
//! use gpu_c2f::gpu::{self, AdapterSelector, BackendChoice, Gpu};
//! use gpu_c2f::{Architecture, Dataset, Model, TrainConfig};
//!
//! # fn main() -> gpu_c2f::Result<()> {
//! let gpu = Gpu::new(&AdapterSelector::Auto, BackendChoice::All)?;
//! let initial = Model::glorot_uniform(Architecture::seed(), 42);
//! let run = gpu::train(&gpu, &initial, &TrainConfig::seed())?;
//! let fahrenheit = run.output.model.predict(100.0);
//! // Every converged run lands on the 7 pairs' least-squares line.
//! let (slope, intercept) = Dataset::seed().least_squares_line();
//! assert!((fahrenheit as f64 - (slope * 100.0 + intercept)).abs() < 0.01);
//! println!("100 °C is {fahrenheit} °F, learnt on {}", gpu.info.name);
//! # Ok(())
//! # }
//! ```
//!
//! The same on the CPU reference: `gpu_c2f::cpu::train(&initial, &config)`.
//! Without the default `cli` feature the crate is the library alone (no
//! clap, indicatif, plotters), and builds for `wasm32-unknown-unknown`,
//! where [`gpu::train_async`] is the entry point.

#![warn(missing_docs)]

// The tests inside the crate name it as the integration tests do.
#[cfg(test)]
extern crate self as gpu_c2f;

pub mod activation;
pub mod batching;
#[cfg(feature = "cli")]
pub mod cli;
pub mod compare;
pub mod cpu;
pub mod data;
pub mod error;
pub mod gpu;
pub mod job;
pub mod keras_script;
pub mod loss;
pub mod model;
pub mod model_file;
pub mod optimizer;
#[cfg(feature = "cli")]
pub mod output;
#[cfg(feature = "cli")]
pub mod plot;
#[cfg(feature = "cli")]
pub(crate) mod report;
pub mod rounding;
pub mod shadow;
pub mod step;
pub mod training;

pub use activation::Activation;
pub use data::Dataset;
pub use error::{Error, Result};
pub use job::Job;
pub use loss::{Loss, Metric};
pub use model::{Architecture, DenseWeights, Model};
pub use optimizer::Adam;
pub use training::{EarlyStopping, TrainConfig, TrainOutput};
