//! gpu-c2f's JSON model file: `layers` holds one `{"kernel", "bias",
//! "activation"}` per Dense layer, the weights in Keras's `get_weights()`
//! layout (`kernel[input][unit]`), so weights exported from Keras load
//! directly; `activation` is a Keras name, linear when absent or null.
//! `optimizer`, when present, is Adam's state: its `learning_rate`,
//! `iterations` (steps taken) and the moments `m` and `v`, each cut into
//! layers as the weights are. Other keys are ignored on load; gpu-c2f
//! writes a few for people reading the file.

use super::{Loaded, SavedAdam, SavedModel, flatten_like, model_file_error, per_layer};
use crate::error::{Error, Result};
use crate::model::{DenseWeights, Model};
use crate::optimizer::{AdamState, MOST_ITERATIONS};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct ModelFile {
    layers: Vec<DenseWeights>,
    #[serde(default)]
    optimizer: Option<Optimizer>,
}

/// Adam's state in the file.
#[derive(Debug, Serialize, Deserialize)]
struct Optimizer {
    /// Always `adam`.
    name: String,
    learning_rate: f32,
    iterations: u64,
    m: Vec<Moments>,
    v: Vec<Moments>,
}

/// One layer's share of a moment, shaped as its kernel and bias.
#[derive(Debug, Serialize, Deserialize)]
struct Moments {
    kernel: Vec<Vec<f32>>,
    bias: Vec<f32>,
}

impl Moments {
    fn of(layers: Vec<DenseWeights>) -> Vec<Self> {
        (layers.into_iter())
            .map(|l| Moments {
                kernel: l.kernel,
                bias: l.bias,
            })
            .collect()
    }

    fn dense(moments: Vec<Self>) -> Vec<DenseWeights> {
        (moments.into_iter())
            .map(|m| DenseWeights {
                kernel: m.kernel,
                bias: m.bias,
                activation: Default::default(),
            })
            .collect()
    }
}

#[derive(Serialize)]
struct SavedFile<'a> {
    format: &'static str,
    architecture: String,
    loss: &'static str,
    #[serde(flatten)]
    extra: &'a serde_json::Value,
    layers: Vec<DenseWeights>,
    #[serde(skip_serializing_if = "Option::is_none")]
    optimizer: Option<Optimizer>,
}

/// Parses model-file JSON text to its model (any optimizer state it holds
/// is checked and dropped: [`super::Format::parse`] keeps it).
pub fn parse(text: &str) -> Result<Model> {
    Ok(parse_text(text)?.model)
}

/// The model and Adam's state in JSON bytes.
pub(super) fn parse_bytes(bytes: &[u8]) -> Result<Loaded> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_text(text),
        Err(_) => Err(model_file_error(
            "not a model file: not JSON text (not UTF-8)".into(),
        )),
    }
}

fn parse_text(text: &str) -> Result<Loaded> {
    let file: ModelFile = serde_json::from_str(text).map_err(|error| {
        model_file_error(format!(
            "not a model file: expected JSON like {{\"layers\": [{{\"kernel\": [[...]], \
             \"bias\": [...]}}, ...]}}: {error}"
        ))
    })?;
    let model = Model::from_dense_weights(&file.layers)
        .map_err(|error| model_file_error(error.to_string()))?;
    let optimizer = match file.optimizer {
        Some(adam) => Some(adam_of(&model, adam)?),
        None => None,
    };
    Ok(Loaded {
        model,
        optimizer,
        has_activations: true,
        optimizer_note: None,
    })
}

fn adam_of(model: &Model, file: Optimizer) -> Result<SavedAdam> {
    if file.name != "adam" {
        return Err(model_file_error(format!(
            "optimizer {:?}: gpu-c2f resumes only \"adam\"",
            file.name
        )));
    }
    if file.iterations > MOST_ITERATIONS {
        return Err(model_file_error(format!(
            "optimizer.iterations is {}; at most {MOST_ITERATIONS} are supported",
            file.iterations
        )));
    }
    if !(file.learning_rate.is_finite() && file.learning_rate > 0.0) {
        return Err(model_file_error(format!(
            "optimizer.learning_rate is {}: not a number above 0",
            file.learning_rate
        )));
    }
    let m = flatten_like(model, &Moments::dense(file.m), "optimizer.m")?;
    let v = flatten_like(model, &Moments::dense(file.v), "optimizer.v")?;
    Ok(SavedAdam {
        learning_rate: file.learning_rate,
        state: AdamState {
            iterations: file.iterations,
            m,
            v,
        },
    })
}

/// The JSON text of `saved` plus `extra` (an object of descriptive keys
/// such as the seed and final loss).
pub(super) fn to_bytes(saved: &SavedModel, extra: &serde_json::Value) -> Result<Vec<u8>> {
    let optimizer = match &saved.optimizer {
        Some(adam) => Some(Optimizer {
            name: "adam".into(),
            learning_rate: adam.learning_rate,
            iterations: adam.state.iterations,
            m: Moments::of(per_layer(&saved.model, &adam.state.m)?),
            v: Moments::of(per_layer(&saved.model, &adam.state.v)?),
        }),
        None => None,
    };
    let file = SavedFile {
        format: "gpu-c2f model v1",
        architecture: saved.model.architecture().describe(),
        loss: saved.loss.name(),
        extra,
        layers: saved.model.dense_weights(),
        optimizer,
    };
    let json = serde_json::to_string_pretty(&file)
        .map_err(|error| Error::InvalidModel(format!("cannot write the model as JSON: {error}")))?;
    Ok((json + "\n").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Architecture;

    #[test]
    fn saved_json_loads_back_to_the_same_model() {
        let model = Model::glorot_uniform(Architecture::new(&[5, 2]).unwrap(), 9);
        let saved = SavedModel {
            model: model.clone(),
            optimizer: None,
            loss: Default::default(),
        };
        let bytes = to_bytes(&saved, &serde_json::json!({"seed": 9})).unwrap();
        let json = String::from_utf8(bytes).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["seed"], 9);
        assert_eq!(value["architecture"], "1-5-2-1");
        assert_eq!(parse(&json).unwrap(), model);
    }

    #[test]
    fn adams_state_travels_in_the_layers_shapes() {
        let model = Model::glorot_uniform(Architecture::new(&[2]).unwrap(), 3);
        let count = model.params().len();
        let state = AdamState {
            iterations: 41,
            m: (0..count).map(|i| i as f32).collect(),
            v: (0..count).map(|i| 0.5 * i as f32).collect(),
        };
        let saved = SavedModel {
            model: model.clone(),
            optimizer: Some(SavedAdam {
                learning_rate: 0.01,
                state: state.clone(),
            }),
            loss: Default::default(),
        };
        let bytes = to_bytes(&saved, &serde_json::json!({})).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        // The first layer's kernel is [1][2], its bias [2]: m's first values.
        assert_eq!(
            value["optimizer"]["m"][0]["kernel"],
            serde_json::json!([[0.0, 1.0]])
        );
        assert_eq!(
            value["optimizer"]["m"][0]["bias"],
            serde_json::json!([2.0, 3.0])
        );
        let loaded = parse_bytes(&bytes).unwrap();
        assert_eq!(loaded.model, model);
        assert_eq!(loaded.optimizer, saved.optimizer);
        // A moment cut for another network is refused, naming it.
        let mut value = value;
        value["optimizer"]["v"][0]["bias"] = serde_json::json!([1.0]);
        let error = parse_bytes(value.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("optimizer.v"), "{error}");
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
            (
                r#"{"layers": [{"kernel": [[1]], "bias": [0]}], "optimizer": {"name": "sgd",
                   "learning_rate": 0.1, "iterations": 1, "m": [], "v": []}}"#,
                "resumes only",
            ),
        ];
        for (text, words) in cases {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(words), "{text}: {err}");
        }
    }
}
