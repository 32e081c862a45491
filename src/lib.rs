//! gpu-c2f: the classic Celsius-to-Fahrenheit Keras network, trained with
//! hand-written WGSL compute shaders through wgpu, and with a CPU reference
//! that follows the same math step by step.
//!
//! ```no_run
//! use gpu_c2f::{Model, Architecture, TrainConfig, cpu};
//! let initial = Model::glorot_uniform(Architecture::seed(), 42);
//! let output = cpu::train(&initial, &TrainConfig::seed()).unwrap();
//! println!("100 C -> {} F", output.model.predict(100.0));
//! ```

#![warn(missing_docs)]

// The tests inside the crate name it as the integration tests do.
#[cfg(test)]
extern crate self as gpu_c2f;

pub mod batching;
#[cfg(feature = "cli")]
pub mod cli;
pub mod compare;
pub mod cpu;
pub mod data;
pub mod error;
pub mod gpu;
pub mod model;
pub mod model_file;
pub mod optimizer;
#[cfg(feature = "cli")]
pub mod output;
#[cfg(feature = "cli")]
pub mod plot;
#[cfg(feature = "cli")]
pub(crate) mod report;
pub mod shadow;
pub mod step;
pub mod training;

pub use data::Dataset;
pub use error::{Error, Result};
pub use model::{Architecture, DenseWeights, Model};
pub use optimizer::Adam;
pub use training::{TrainConfig, TrainOutput};
