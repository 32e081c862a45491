//! Keras 3's `.keras` archive (keras/src/saving/saving_lib.py,
//! `save_model`/`load_model`): a zip of `metadata.json`, `config.json` (the
//! model's `serialize_keras_object`: a `Sequential` of an `InputLayer` and
//! `Dense` layers, with its `compile_config`: Adam, the loss) and
//! `model.weights.h5` (`weights_h5.rs`: the layers' weights and Adam's
//! variables), stored uncompressed as Keras writes it. The zip is the `zip`
//! crate's; the JSON is written here, as no crate writes Keras configs.
//!
//! On load, what gpu-c2f cannot train is refused by name: a model other
//! than a `Sequential`, a layer other than `Dense`, `use_bias=False`, a
//! dtype other than float32, an activation gpu-c2f lacks. Adam's saved
//! state is resumed when the compiled optimizer is Adam with Keras's
//! default betas and epsilon (the ones gpu-c2f runs); otherwise Adam starts
//! fresh and [`super::Loaded::optimizer_note`] says why.

use super::weights_h5;
use super::{Loaded, SavedModel, layer_name, model_file_error};
use crate::activation::Activation;
use crate::error::Result;
use crate::loss::Loss;
use crate::optimizer::Adam;
use serde_json::{Value, json};
use std::io::{Cursor, Read, Write};
use zip::write::SimpleFileOptions;

/// The Keras release whose files this layout follows (checked in CI with
/// tests/python/check_keras.py).
pub const KERAS_VERSION: &str = "3.15.1";

/// The largest archive member read: the weights and Adam's m and v of the
/// largest network gpu-c2f trains (`MAX_PARAMS` floats, three times), with
/// room for HDF5's and JSON's own bytes.
const MOST_MEMBER_BYTES: u64 = 3 * 4 * crate::model::MAX_PARAMS as u64 + (1 << 20);

const METADATA: &str = "metadata.json";
const CONFIG: &str = "config.json";
const WEIGHTS: &str = "model.weights.h5";

/// The archive's bytes: the three members, stored.
pub(super) fn to_bytes(saved: &SavedModel) -> Result<Vec<u8>> {
    let weights = weights_h5::to_bytes(&saved.model, saved.optimizer.as_ref())?;
    let config = config(saved);
    // No date: the same model gives the same bytes (Keras's `date_saved`
    // is informational; its loader reads only the config and weights).
    let metadata = json!({"keras_version": KERAS_VERSION, "date_saved": null,
                          "producer": concat!("gpu-c2f ", env!("CARGO_PKG_VERSION"))});
    let members: [(&str, Vec<u8>); 3] = [
        (METADATA, metadata.to_string().into_bytes()),
        (CONFIG, config.to_string().into_bytes()),
        (WEIGHTS, weights),
    ];
    let error = |error: zip::result::ZipError| {
        model_file_error(format!("cannot write the .keras archive: {error}"))
    };
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    for (name, bytes) in members {
        zip.start_file(name, options).map_err(error)?;
        zip.write_all(&bytes)
            .map_err(|e| model_file_error(format!("cannot write the .keras archive: {e}")))?;
    }
    Ok(zip.finish().map_err(error)?.into_inner())
}

/// Keras's float32 dtype policy, as every layer's `dtype` serializes.
fn float32_policy() -> Value {
    json!({"module": "keras", "class_name": "DTypePolicy",
           "config": {"name": "float32"}, "registered_name": null})
}

/// An initializer's serialization.
fn initializer(class_name: &str, config: Value) -> Value {
    json!({"module": "keras.initializers", "class_name": class_name,
           "config": config, "registered_name": null})
}

/// `config.json`: the model as Keras's `serialize_keras_object` writes a
/// `Sequential` of Dense layers, compiled with Adam and the loss.
fn config(saved: &SavedModel) -> Value {
    let widths = saved.model.architecture().widths();
    let mut layers = vec![json!({
        "module": "keras.layers", "class_name": "InputLayer",
        "config": {"batch_shape": [null, widths[0]], "dtype": "float32", "sparse": false,
                   "ragged": false, "name": "input_layer", "optional": false},
        "registered_name": null})];
    for (index, layer) in saved.model.architecture().layers().iter().enumerate() {
        layers.push(json!({
            "module": "keras.layers", "class_name": "Dense",
            "config": {
                "name": layer_name("dense", index), "trainable": true,
                "dtype": float32_policy(), "units": layer.units,
                "activation": layer.activation.name(), "use_bias": true,
                "kernel_initializer": initializer("GlorotUniform", json!({"seed": null})),
                "bias_initializer": initializer("Zeros", json!({})),
                "kernel_regularizer": null, "bias_regularizer": null,
                "kernel_constraint": null, "bias_constraint": null,
                "quantization_config": null},
            "registered_name": null,
            "build_config": {"input_shape": [null, layer.inputs]}}));
    }
    // Without a state to save (a library caller's choice), Keras's default
    // rate, as `Adam()` would have.
    let adam = Adam::keras(saved.optimizer.as_ref().map_or(0.001, |a| a.learning_rate));
    json!({
        "module": "keras", "class_name": "Sequential",
        "config": {"name": "sequential", "trainable": true, "dtype": float32_policy(),
                   "layers": layers},
        "registered_name": null,
        "build_config": {"input_shape": [null, widths[0]]},
        "compile_config": {
            "optimizer": {"module": "keras.optimizers", "class_name": "Adam",
                "config": {"name": "adam", "learning_rate": adam.learning_rate,
                    "weight_decay": null, "clipnorm": null, "global_clipnorm": null,
                    "clipvalue": null, "use_ema": false, "ema_momentum": 0.99,
                    "ema_overwrite_frequency": null, "loss_scale_factor": null,
                    "gradient_accumulation_steps": null, "beta_1": adam.beta_1,
                    "beta_2": adam.beta_2, "epsilon": adam.epsilon, "amsgrad": false},
                "registered_name": null},
            "loss": keras_loss(saved.loss), "loss_weights": null, "metrics": null,
            "weighted_metrics": null, "run_eagerly": false, "steps_per_execution": 1,
            "jit_compile": "auto"}
    })
}

/// The loss as `compile(loss=...)` serializes it: Keras's function name,
/// or for the logits form the `BinaryCrossentropy` object that says so.
fn keras_loss(loss: Loss) -> Value {
    match loss {
        Loss::BinaryCrossentropyFromLogits => json!({
            "module": "keras.losses", "class_name": "BinaryCrossentropy",
            "config": {"name": "binary_crossentropy", "reduction": "sum_over_batch_size",
                       "from_logits": true, "label_smoothing": 0.0, "axis": -1},
            "registered_name": null}),
        other => json!(other.name()),
    }
}

/// The model (and Adam's state) of a `.keras` archive's bytes.
pub(super) fn parse(bytes: &[u8]) -> Result<Loaded> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|error| model_file_error(format!("not a .keras archive (a zip): {error}")))?;
    let mut member = |name: &str| -> Result<Vec<u8>> {
        let mut file = archive
            .by_name(name)
            .map_err(|error| model_file_error(format!("no {name} in the archive: {error}")))?;
        // A member larger than any model gpu-c2f trains is refused before it
        // is inflated (a zip bomb would otherwise fill the memory).
        if file.size() > MOST_MEMBER_BYTES {
            return Err(model_file_error(format!(
                "{name} would inflate to {} bytes, more than any model gpu-c2f trains",
                file.size()
            )));
        }
        let mut bytes = Vec::new();
        (file
            .by_ref()
            .take(MOST_MEMBER_BYTES)
            .read_to_end(&mut bytes))
        .map_err(|error| model_file_error(format!("cannot read {name}: {error}")))?;
        Ok(bytes)
    };
    let config: Value = serde_json::from_slice(&member(CONFIG)?)
        .map_err(|error| model_file_error(format!("{CONFIG} is not JSON: {error}")))?;
    let activations = dense_activations(&config)?;
    let weights = weights_h5::open(&member(WEIGHTS)?)?;
    let model = weights_h5::read_layers(&weights, Some(&activations))
        .map_err(|error| model_file_error(format!("{WEIGHTS}: {error}")))?;
    // Keras itself skips an optimizer state it cannot take, with a warning:
    // so does gpu-c2f, saying why in the report's start line.
    let (optimizer, optimizer_note) = match adam_settings(&config) {
        Ok(()) => match weights_h5::read_adam(&weights, &model) {
            Ok(Some(adam)) => (Some(adam), None),
            Ok(None) => (None, Some("the file's Adam had not taken a step".into())),
            Err(error) => (None, Some(format!("its Adam state is unusable: {error}"))),
        },
        Err(why) => (None, Some(why)),
    };
    Ok(Loaded {
        model,
        optimizer,
        has_activations: true,
        optimizer_note,
    })
}

/// The class name and `config` of a serialized Keras object.
fn class_and_config(object: &Value) -> (&str, &Value) {
    let class = object["class_name"].as_str().unwrap_or("(no class_name)");
    (class, &object["config"])
}

/// Each Dense layer's activation, refusing what gpu-c2f cannot train.
fn dense_activations(config: &Value) -> Result<Vec<Activation>> {
    let (class, model) = class_and_config(config);
    if class != "Sequential" {
        return Err(model_file_error(format!(
            "{CONFIG}: a {class} model is not supported; gpu-c2f trains a Sequential of Dense \
             layers"
        )));
    }
    let Some(layers) = model["layers"].as_array() else {
        return Err(model_file_error(format!(
            "{CONFIG}: the Sequential has no layers list"
        )));
    };
    let mut activations = Vec::new();
    for layer in layers {
        let (class, config) = class_and_config(layer);
        let name = config["name"].as_str().unwrap_or("(unnamed)");
        let unsupported =
            |what: String| model_file_error(format!("{CONFIG}: layer {name:?}: {what}"));
        match class {
            "InputLayer" => continue,
            "Dense" => {}
            other => {
                return Err(unsupported(format!(
                    "a {other} layer is not supported; gpu-c2f trains Dense layers only"
                )));
            }
        }
        if config["use_bias"] == json!(false) {
            return Err(unsupported(
                "use_bias=False is not supported; every Dense layer has a bias here".into(),
            ));
        }
        let dtype = match &config["dtype"] {
            Value::String(name) => name.as_str(),
            policy => policy["config"]["name"].as_str().unwrap_or("float32"),
        };
        if dtype != "float32" {
            return Err(unsupported(format!(
                "dtype {dtype} is not supported; gpu-c2f trains float32"
            )));
        }
        let activation = match &config["activation"] {
            Value::Null => Activation::Linear,
            Value::String(name) => Activation::from_name(name)
                .map_err(|error| unsupported(format!("activation: {error}")))?,
            other => {
                return Err(unsupported(format!(
                    "activation {other} is not supported; gpu-c2f knows activations by name"
                )));
            }
        };
        activations.push(activation);
    }
    Ok(activations)
}

/// Whether the compiled optimizer is the Adam gpu-c2f runs; why not if not.
fn adam_settings(config: &Value) -> std::result::Result<(), String> {
    let optimizer = &config["compile_config"]["optimizer"];
    if optimizer.is_null() {
        return Err("the model was saved uncompiled (no optimizer)".into());
    }
    let (class, settings) = class_and_config(optimizer);
    if class != "Adam" {
        return Err(format!("the file's optimizer is {class}, not Adam"));
    }
    let keras = Adam::keras(0.0);
    let expected = [
        ("beta_1", keras.beta_1),
        ("beta_2", keras.beta_2),
        ("epsilon", keras.epsilon),
    ];
    for (key, value) in expected {
        if settings[key].as_f64() != Some(value) {
            return Err(format!(
                "the file's Adam has {key}={}, gpu-c2f runs Keras's default {value}",
                settings[key]
            ));
        }
    }
    for key in ["amsgrad", "use_ema"] {
        if settings[key] == json!(true) {
            return Err(format!(
                "the file's Adam has {key}=True, which gpu-c2f does not run"
            ));
        }
    }
    let extras = ["weight_decay", "clipnorm", "clipvalue", "global_clipnorm"];
    if let Some(key) = extras.into_iter().find(|key| !settings[key].is_null()) {
        return Err(format!(
            "the file's Adam has {key}={}, which gpu-c2f does not run",
            settings[key]
        ));
    }
    if !settings["learning_rate"].is_number() {
        return Err("the file's learning rate is a schedule, not a number".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Architecture, Model};
    use crate::model_file::SavedAdam;
    use crate::optimizer::AdamState;

    /// What a broken config's error must say, and how to break it.
    type Breakage = (&'static str, fn(&mut Value));

    fn saved() -> SavedModel {
        let architecture =
            Architecture::with_layers(&[(3, Activation::Relu)], Activation::Sigmoid).unwrap();
        let model = Model::glorot_uniform(architecture, 2);
        let count = model.params().len();
        SavedModel {
            optimizer: Some(SavedAdam {
                learning_rate: 0.05,
                state: AdamState {
                    iterations: 12,
                    m: vec![0.5; count],
                    v: vec![0.25; count],
                },
            }),
            model,
            loss: Loss::BinaryCrossentropy,
        }
    }

    #[test]
    fn an_archive_loads_back_with_its_activations_and_adam() {
        let saved = saved();
        let bytes = to_bytes(&saved).unwrap();
        assert_eq!(
            to_bytes(&saved).unwrap(),
            bytes,
            "the same model, the same bytes"
        );
        let loaded = parse(&bytes).unwrap();
        assert_eq!(loaded.model, saved.model);
        assert_eq!(loaded.optimizer, saved.optimizer);
        assert_eq!(loaded.optimizer_note, None);
        let config = config(&saved);
        assert_eq!(config["compile_config"]["loss"], "binary_crossentropy");
        assert_eq!(
            config["config"]["layers"][2]["config"]["activation"],
            "sigmoid"
        );
    }

    #[test]
    fn what_gpu_c2f_cannot_train_is_refused_by_name() {
        let good = config(&saved());
        let cases: [Breakage; 6] = [
            ("a Functional model", |c| {
                c["class_name"] = json!("Functional")
            }),
            ("a Dropout layer", |c| {
                c["config"]["layers"][2]["class_name"] = json!("Dropout")
            }),
            ("use_bias=False", |c| {
                c["config"]["layers"][1]["config"]["use_bias"] = json!(false)
            }),
            ("dtype float64", |c| {
                c["config"]["layers"][1]["config"]["dtype"]["config"]["name"] = json!("float64")
            }),
            ("unknown activation \"softmax\"", |c| {
                c["config"]["layers"][1]["config"]["activation"] = json!("softmax")
            }),
            ("layer \"dense_1\"", |c| {
                c["config"]["layers"][2]["config"]["activation"] = json!({"class_name": "X"})
            }),
        ];
        assert!(dense_activations(&good).is_ok());
        for (words, break_it) in cases {
            let mut config = good.clone();
            break_it(&mut config);
            let error = dense_activations(&config).unwrap_err().to_string();
            assert!(error.contains(words), "{words}: {error}");
        }
    }

    #[test]
    fn adam_resumes_only_with_the_settings_gpu_c2f_runs() {
        let good = config(&saved());
        assert_eq!(adam_settings(&good), Ok(()));
        let cases: [Breakage; 5] = [
            ("SGD, not Adam", |c| {
                c["compile_config"]["optimizer"]["class_name"] = json!("SGD")
            }),
            ("beta_1=0.8", |c| {
                c["compile_config"]["optimizer"]["config"]["beta_1"] = json!(0.8)
            }),
            ("amsgrad=True", |c| {
                c["compile_config"]["optimizer"]["config"]["amsgrad"] = json!(true)
            }),
            ("uncompiled", |c| c["compile_config"] = json!(null)),
            ("clipnorm=1.0", |c| {
                c["compile_config"]["optimizer"]["config"]["clipnorm"] = json!(1.0)
            }),
        ];
        for (words, break_it) in cases {
            let mut config = good.clone();
            break_it(&mut config);
            let why = adam_settings(&config).unwrap_err();
            assert!(why.contains(words), "{words}: {why}");
        }
    }
}
