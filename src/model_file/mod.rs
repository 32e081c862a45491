//! Model files, their format picked by the file name's extension
//! ([`Format`]):
//! - JSON (`json.rs`), gpu-c2f's own, the weights in Keras's
//!   `get_weights()` layout;
//! - Keras 3's `.keras` archive (`keras.rs`) and `.weights.h5` weights
//!   file (`weights_h5.rs`), in Keras's own layout;
//! - safetensors (`safetensors.rs`), the tensors named after Keras's layers;
//! - ONNX (`onnx.rs`), an inference graph, written but not read.
//!
//! A file holds a [`SavedModel`]: the weights and activations, and Adam's
//! state where the format carries it (JSON and `.keras`). docs/model-files.md
//! describes each format with its sources. [`crate::output`] writes them.

use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::{DenseWeights, Model};
use crate::optimizer::AdamState;
use crate::training::{TrainConfig, TrainOutput};
use std::path::Path;

mod json;
mod keras;
mod onnx;
mod safetensors;
mod weights_h5;

pub use json::parse;

/// A model file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json` (and standard output, `-`).
    Json,
    /// `.keras`: Keras 3's whole-model archive, optimizer state included.
    Keras,
    /// `.weights.h5`: Keras's `save_weights` file; it names no activations.
    WeightsH5,
    /// `.safetensors`.
    Safetensors,
    /// `.onnx`: written for ONNX runtimes, not read back.
    Onnx,
}

impl Format {
    /// Every format, with the end of its file names.
    pub const ALL: [(Format, &'static str); 5] = [
        (Format::Json, ".json"),
        (Format::Keras, ".keras"),
        (Format::WeightsH5, ".weights.h5"),
        (Format::Safetensors, ".safetensors"),
        (Format::Onnx, ".onnx"),
    ];

    /// The format of `path` by the end of its name; a name without an
    /// extension (`-`, standard output, a device file such as /dev/stdout)
    /// is JSON, and an unknown ending is an error that lists the known.
    pub fn of(path: &Path) -> Result<Format> {
        if path.extension().is_none() {
            return Ok(Format::Json);
        }
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if let Some(&(format, _)) = Self::ALL.iter().find(|(_, end)| name.ends_with(end)) {
            return Ok(format);
        }
        let known: Vec<&str> = Self::ALL.iter().map(|(_, end)| *end).collect();
        // Keras 2's whole-model `.h5` is a different layout (model_weights/,
        // training_config attributes), which Keras 3 itself only reads.
        let legacy = if name.ends_with(".h5") {
            " (a plain .h5 is Keras 2's legacy format: save as .keras or .weights.h5)"
        } else {
            ""
        };
        Err(Error::ModelFile {
            file: Some(path.into()),
            message: format!(
                "unknown model file format; the name must end in one of {}{legacy}",
                known.join(", ")
            ),
        })
    }

    /// Whether gpu-c2f reads this format back (`--init`).
    pub fn can_load(self) -> bool {
        self != Format::Onnx
    }

    /// The bytes of `saved` in this format, with `extra`'s descriptive keys
    /// (the seed, the final loss: what `--save` adds).
    pub fn to_bytes(self, saved: &SavedModel, extra: &serde_json::Value) -> Result<Vec<u8>> {
        saved.check_finite()?;
        match self {
            Format::Json => json::to_bytes(saved, extra),
            Format::Keras => keras::to_bytes(saved),
            // As `save_weights` of a model never compiled: the layers only
            // (Adam's state travels in `.keras` and `.json`).
            Format::WeightsH5 => weights_h5::to_bytes(&saved.model, None),
            Format::Safetensors => self::safetensors::to_bytes(&saved.model, extra),
            Format::Onnx => onnx::to_bytes(&saved.model),
        }
    }

    /// The model in `bytes` of this format.
    pub fn parse(self, bytes: &[u8]) -> Result<Loaded> {
        match self {
            Format::Json => json::parse_bytes(bytes),
            Format::Keras => keras::parse(bytes),
            Format::WeightsH5 => weights_h5::parse(bytes),
            Format::Safetensors => self::safetensors::parse(bytes).map(Loaded::without_optimizer),
            Format::Onnx => Err(model_file_error(
                "gpu-c2f writes .onnx files for ONNX runtimes but does not read them; start \
                 from a .keras, .weights.h5, .safetensors or .json file"
                    .into(),
            )),
        }
    }
}

/// What a model file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedModel {
    /// The weights and each layer's activation.
    pub model: Model,
    /// Adam's state, where there is one to save or the file carried one.
    pub optimizer: Option<SavedAdam>,
    /// The loss the model was trained with (Keras's `compile(loss=...)`).
    pub loss: Loss,
}

/// Adam's state as a model file carries it, with the learning rate it ran at.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedAdam {
    /// Keras's `learning_rate`.
    pub learning_rate: f32,
    /// The step count and each parameter's moments.
    pub state: AdamState,
}

impl SavedModel {
    /// The model file of a run's `output`: its weights, Adam's state after
    /// its last step, the loss.
    pub fn of_run(config: &TrainConfig, output: &TrainOutput) -> Self {
        Self {
            model: output.model.clone(),
            optimizer: Some(SavedAdam {
                learning_rate: config.learning_rate,
                state: output.adam.clone(),
            }),
            loss: config.loss,
        }
    }

    /// Refuses a model (or Adam state) with a value that is not finite.
    fn check_finite(&self) -> Result<()> {
        if self.model.params().iter().any(|p| !p.is_finite()) {
            return Err(Error::InvalidModel(
                "refusing to save a model with non-finite weights".into(),
            ));
        }
        if let Some(adam) = &self.optimizer {
            let moments = adam.state.m.iter().chain(&adam.state.v);
            if !moments.chain([&adam.learning_rate]).all(|x| x.is_finite()) {
                return Err(Error::InvalidModel(
                    "refusing to save an Adam state with non-finite moments".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A model file as read: what it holds, and what it left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The model, its layers linear where the file names no activations.
    pub model: Model,
    /// Adam's state, when the file carried a resumable one.
    pub optimizer: Option<SavedAdam>,
    /// Whether the file names its layers' activations (a `.weights.h5`
    /// does not: they come from the flags).
    pub has_activations: bool,
    /// Why Adam starts fresh though the file carried an optimizer (not
    /// Adam, or Adam with other settings); `None` otherwise.
    pub optimizer_note: Option<String>,
}

impl Loaded {
    /// A file that carries activations and no optimizer state.
    fn without_optimizer(model: Model) -> Self {
        Self {
            model,
            optimizer: None,
            has_activations: true,
            optimizer_note: None,
        }
    }
}

/// A model-file error of no file yet (the caller names it).
fn model_file_error(message: String) -> Error {
    Error::ModelFile {
        file: None,
        message,
    }
}

/// Keras 3's name of the `index`-th layer of class `class` (snake case:
/// `dense`) in a model: `dense`, `dense_1`, `dense_2`, ..., as Keras names
/// a fresh `Sequential`'s layers and the groups of its weights files.
fn layer_name(class: &str, index: usize) -> String {
    match index {
        0 => class.to_string(),
        index => format!("{class}_{index}"),
    }
}

/// A flat per-parameter vector (Adam's m or v) of `model`'s network, cut
/// as its weights are: each layer's kernel `[input][unit]` and bias.
fn per_layer(model: &Model, flat: &[f32]) -> Result<Vec<DenseWeights>> {
    let shaped = Model::from_params(model.architecture().clone(), flat.to_vec())?;
    Ok(shaped.dense_weights())
}

/// The flat vector of per-layer tensors shaped as `model`'s weights, or an
/// error naming `what` when a shape differs.
fn flatten_like(model: &Model, layers: &[DenseWeights], what: &str) -> Result<Vec<f32>> {
    let flat = Model::from_dense_weights(layers)
        .map_err(|error| model_file_error(format!("{what}: {error}")))?;
    if flat.architecture().widths() != model.architecture().widths() {
        return Err(model_file_error(format!(
            "{what} has the shapes of a {} network, but the weights are a {} network",
            flat.architecture().describe(),
            model.architecture().describe()
        )));
    }
    Ok(flat.params().to_vec())
}

/// Reads a model file in the format its name says; errors name the file
/// and, for shape problems, the layer.
pub fn load(path: &Path) -> Result<Loaded> {
    let format = Format::of(path)?;
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        what: format!("cannot read model file {}", path.display()),
        source,
    })?;
    format.parse(&bytes).map_err(|error| in_file(error, path))
}

/// A model-file error named after its file, `path`.
pub fn in_file(error: Error, path: &Path) -> Error {
    match error {
        Error::ModelFile { message, .. } | Error::InvalidModel(message) => Error::ModelFile {
            file: Some(path.into()),
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_go_by_the_end_of_the_name() {
        let of = |name: &str| Format::of(Path::new(name));
        assert_eq!(of("m.json").unwrap(), Format::Json);
        assert_eq!(of("-").unwrap(), Format::Json);
        assert_eq!(of("/dev/stdout").unwrap(), Format::Json);
        assert_eq!(of("dir.v2/M.KERAS").unwrap(), Format::Keras);
        assert_eq!(of("m.weights.h5").unwrap(), Format::WeightsH5);
        assert_eq!(of("m.safetensors").unwrap(), Format::Safetensors);
        assert_eq!(of("m.onnx").unwrap(), Format::Onnx);
        let unknown = of("m.txt").unwrap_err().to_string();
        assert!(unknown.contains(".json, .keras, .weights.h5"), "{unknown}");
        let legacy = of("m.h5").unwrap_err().to_string();
        assert!(legacy.contains("Keras 2's legacy format"), "{legacy}");
        assert!(!Format::Onnx.can_load());
    }
}
