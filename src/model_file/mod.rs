//! Model files, their format picked by the file name's extension
//! ([`Format`]): JSON (here) whose `layers` holds one `{"kernel", "bias",
//! "activation"}` per Dense layer, the weights in Keras's `get_weights()`
//! layout (`kernel[input][unit]`), so weights exported from Keras load
//! directly; `activation` is a Keras name, linear when absent or null.
//! Other keys are ignored on load; gpu-c2f writes a few for people reading
//! the file. And safetensors (`safetensors.rs`). [`crate::output`] writes
//! them.

use crate::error::{Error, Result};
use crate::model::{DenseWeights, Model};
use serde::{Deserialize, Serialize};
use std::path::Path;

mod safetensors;

/// A model file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json` (and standard output, `-`).
    Json,
    /// `.safetensors`.
    Safetensors,
}

impl Format {
    /// Every format, with its extension.
    pub const ALL: [(Format, &'static str); 2] = [
        (Format::Json, ".json"),
        (Format::Safetensors, ".safetensors"),
    ];

    /// The format of `path` by its extension; a name without one (`-`,
    /// standard output, a device file such as /dev/stdout) is JSON, and an
    /// unknown extension is an error that lists the known.
    pub fn of(path: &Path) -> Result<Format> {
        let Some(extension) = path.extension() else {
            return Ok(Format::Json);
        };
        let extension = format!(".{}", extension.to_string_lossy().to_lowercase());
        Self::ALL
            .iter()
            .find(|&&(_, known)| known == extension)
            .map(|&(format, _)| format)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|(_, e)| *e).collect();
                Error::ModelFile {
                    file: Some(path.into()),
                    message: format!(
                        "unknown model file format; the name must end in one of {}",
                        known.join(", ")
                    ),
                }
            })
    }

    /// The bytes of `model` in this format, with `extra`'s descriptive keys.
    pub fn to_bytes(self, model: &Model, extra: &serde_json::Value) -> Result<Vec<u8>> {
        match self {
            Format::Json => to_json(model, extra).map(String::into_bytes),
            Format::Safetensors => {
                check_finite(model)?;
                self::safetensors::to_bytes(model, extra)
            }
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

#[derive(Debug, Serialize, Deserialize)]
struct ModelFile {
    layers: Vec<DenseWeights>,
}

#[derive(Serialize)]
struct SavedModel<'a> {
    format: &'static str,
    architecture: String,
    #[serde(flatten)]
    extra: &'a serde_json::Value,
    layers: Vec<DenseWeights>,
}

/// Reads a model file in the format its name says; errors name the file
/// and, for shape problems, the layer.
pub fn load(path: &Path) -> Result<Model> {
    let format = Format::of(path)?;
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        what: format!("cannot read model file {}", path.display()),
        source,
    })?;
    let model = match format {
        Format::Json => match String::from_utf8(bytes) {
            Ok(text) => parse(&text),
            Err(_) => Err(model_file_error(
                "not a model file: not JSON text (not UTF-8)".into(),
            )),
        },
        Format::Safetensors => self::safetensors::parse(&bytes),
    };
    model.map_err(|error| match error {
        Error::ModelFile { message, .. } => Error::ModelFile {
            file: Some(path.into()),
            message,
        },
        other => other,
    })
}

/// Parses model-file JSON text.
pub fn parse(text: &str) -> Result<Model> {
    let model_file = |message: String| Error::ModelFile {
        file: None,
        message,
    };
    let file: ModelFile = serde_json::from_str(text).map_err(|error| {
        model_file(format!(
            "not a model file: expected JSON like {{\"layers\": [{{\"kernel\": [[...]], \
             \"bias\": [...]}}, ...]}}: {error}"
        ))
    })?;
    Model::from_dense_weights(&file.layers).map_err(|error| model_file(error.to_string()))
}

/// The JSON text `save` writes: the layers plus `extra` (an object of
/// descriptive keys such as the seed and final loss).
pub fn to_json(model: &Model, extra: &serde_json::Value) -> Result<String> {
    check_finite(model)?;
    let saved = SavedModel {
        format: "gpu-c2f model v1",
        architecture: model.architecture().describe(),
        extra,
        layers: model.dense_weights(),
    };
    let json = serde_json::to_string_pretty(&saved)
        .map_err(|error| Error::InvalidModel(format!("cannot write the model as JSON: {error}")))?;
    Ok(json + "\n")
}

/// Refuses a model with a weight that is not finite.
fn check_finite(model: &Model) -> Result<()> {
    if model.params().iter().any(|p| !p.is_finite()) {
        return Err(Error::InvalidModel(
            "refusing to save a model with non-finite weights".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;

    #[test]
    fn saved_json_loads_back_to_the_same_model() {
        let model = Model::glorot_uniform(Architecture::new(&[5, 2]).unwrap(), 9);
        let json = to_json(&model, &serde_json::json!({"seed": 9})).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["seed"], 9);
        assert_eq!(value["architecture"], "1-5-2-1");
        assert_eq!(parse(&json).unwrap(), model);
    }

    #[test]
    fn keras_layout_is_kernel_input_by_unit() {
        let model = parse(
            r#"{"layers": [{"kernel": [[1, 2]], "bias": [0, 0]},
                                         {"kernel": [[3], [4]], "bias": [5]}]}"#,
        )
        .unwrap();
        // y = 3 * (1 x) + 4 * (2 x) + 5 = 11 x + 5
        assert_eq!(model.predict(2.0), 27.0);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("not json", "not a model file"),
            (r#"{"layers": []}"#, "no layers"),
            (
                r#"{"layers": [{"kernel": [[1, 2]], "bias": [0]}]}"#,
                "layer 0",
            ),
            (
                r#"{"layers": [{"kernel": [[1, 2]], "bias": [0, 0]}, {"kernel": [[1]], "bias": [0]}]}"#,
                "layer 1",
            ),
            (
                r#"{"layers": [{"kernel": [[1e999]], "bias": [0]}]}"#,
                "not a model file",
            ),
        ];
        for (text, words) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(words), "{text}: {err}");
        }
    }
}
