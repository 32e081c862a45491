//! A job as a Keras 3 program: the same network, starting weights,
//! optimizer, loss, metrics and `fit` settings, so Keras's own run can be
//! compared with gpu-c2f's (`--keras-script FILE`, and the page's
//! download). Keras's shuffle and its float32 sums differ from gpu-c2f's,
//! so the two runs agree within Keras parity, not bit for bit
//! (docs/model-files.md measures it). The program prints its history and
//! predictions as JSON.

use crate::job::{DataSource, Job, Start};
use crate::loss::Loss;
use crate::training::TrainConfig;

/// Samples written into the program itself; a larger dataset is read from
/// its CSV file (or, for `--samples`, drawn again in numpy: other points of
/// the same line).
const EMBEDDED_VALUES: usize = 100_000;

/// A Python literal of `value` (JSON is Python for numbers, strings, lists;
/// `null`, `true` and `false` are defined by the program).
fn py(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("serialisable")
}

/// The Keras program of `job` started from `start`, as `config` runs it.
pub fn keras_script(job: &Job, start: &Start, config: &TrainConfig) -> String {
    let data = &config.data;
    let embedded = data.x.len() + data.y.len() <= EMBEDDED_VALUES;
    let data_code = match (&job.data, embedded) {
        (_, true) => format!(
            "x = np.array({}, dtype=np.float32).reshape(-1, {})\n\
             y = np.array({}, dtype=np.float32).reshape(-1, {})\n",
            py(&data.x),
            data.x_width,
            py(&data.y),
            data.y_width
        ),
        (DataSource::Csv(name), false) => format!(
            "# The CSV file, by the job's name or the first argument.\n\
             path = sys.argv[1] if len(sys.argv) > 1 else {name}\n\
             table = np.genfromtxt(path, delimiter={delimiter}, names=True, dtype=np.float32)\n\
             x = np.stack([table[c] for c in {x}], axis=1)\n\
             y = np.stack([table[c] for c in {y}], axis=1)\n",
            name = py(name),
            delimiter = py(&job.delimiter.map(String::from).unwrap_or(",".into())),
            x = py(&job.x),
            y = py(&job.y),
        ),
        (_, false) => format!(
            "# gpu-c2f's --samples points come from its own random stream: these are\n\
             # {samples} other points of the same line.\n\
             rng = np.random.default_rng({seed})\n\
             x = rng.uniform(-50, 150, ({samples}, 1)).astype(np.float32)\n\
             y = (x.astype(np.float64) * 1.8 + 32).astype(np.float32)\n",
            samples = data.len(),
            seed = job.seed
        ),
    };
    let layers: Vec<String> = (start.model.architecture().layers().iter())
        .map(|layer| {
            format!(
                "    keras.layers.Dense({}, activation={}),\n",
                layer.units,
                py(&layer.activation.name())
            )
        })
        .collect();
    let weights: Vec<Vec<serde_json::Value>> = (start.model.dense_weights().iter())
        .map(|layer| {
            vec![
                serde_json::json!(layer.kernel),
                serde_json::json!(layer.bias),
            ]
        })
        .collect();
    let resumes_keras = matches!((&job.init, &start.adam),
        (Some(name), Some(_)) if name.to_lowercase().ends_with(".keras"));
    let model_code = match &job.init {
        Some(name) if resumes_keras => format!(
            "# The model file's weights and Adam's state, as gpu-c2f resumed them\n\
             # (compiled again below with this same optimizer, its state kept).\n\
             model = keras.saving.load_model({})\n\
             model.optimizer.learning_rate.assign({})\n",
            py(name),
            config.learning_rate
        ),
        _ => format!(
            "model = keras.Sequential([\n    keras.Input(shape=({},)),\n{}])\n\
             # gpu-c2f's starting weights ({}), in Keras's get_weights() layout.\n\
             model.set_weights([np.array(w, dtype=np.float32) for layer in {} for w in layer])\n{}",
            start.model.architecture().widths()[0],
            layers.concat(),
            start.init,
            py(&weights),
            match start.adam {
                Some(_) =>
                    "# gpu-c2f resumed Adam's saved state; this program starts Adam fresh \
                            (only a .keras file carries the state into Keras).\n",
                None => "",
            }
        ),
    };
    let optimizer = match resumes_keras {
        true => "model.optimizer".to_string(),
        false => format!(
            "keras.optimizers.Adam(learning_rate={})",
            config.learning_rate
        ),
    };
    let loss = match config.loss {
        Loss::BinaryCrossentropyFromLogits => {
            "keras.losses.BinaryCrossentropy(from_logits=True)".to_string()
        }
        other => py(&other.name()),
    };
    let metrics: Vec<&str> = config.metrics.iter().map(|m| m.name.as_str()).collect();
    let callbacks = match config.early_stopping {
        Some(stopping) => format!(
            "[keras.callbacks.EarlyStopping(monitor={}, patience={}, min_delta={}, \
             restore_best_weights={})]",
            py(&config.monitor()),
            stopping.patience,
            stopping.min_delta,
            if stopping.restore_best_weights {
                "True"
            } else {
                "False"
            }
        ),
        None => "[]".into(),
    };
    // Keras's batch_size, as the job gives it (the whole training set for
    // `all`); Keras, like gpu-c2f, takes at most what there is.
    let batch_size = config.batch_size.unwrap_or(config.training_len());
    let predict = if job.predict.is_empty() {
        "[]".to_string()
    } else {
        format!(
            "model.predict(np.array({}, dtype=np.float32), verbose=0).tolist()",
            py(&job.predict)
        )
    };
    format!(
        r#"#!/usr/bin/env python3
"""A gpu-c2f job as a Keras 3 program, written by gpu-c2f {version}: the
same network, starting weights, Adam, loss, metrics and fit settings.
Keras shuffles with its own random stream and sums in its own order, so its
run agrees with gpu-c2f's within Keras parity, not bit for bit.

    pip install keras jax    # any Keras 3 backend
    python this_file.py      # prints the history and predictions as JSON

The job: {job}
"""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402
import numpy as np  # noqa: E402

null, true, false = None, True, False
keras.utils.set_random_seed({seed})

{data_code}
{model_code}model.compile(
    optimizer={optimizer},
    loss={loss},
    metrics={metrics},
)
history = model.fit(
    x, y,
    epochs={epochs},
    batch_size={batch_size},
    shuffle={shuffle},
    validation_split={validation_split},
    callbacks={callbacks},
    verbose=0,
)
print(json.dumps({{
    "loss_history": history.history["loss"],
    "val_loss_history": history.history.get("val_loss", []),
    "history": history.history,
    "predictions": {predict},
}}))
"#,
        version = env!("CARGO_PKG_VERSION"),
        job = job.to_json(),
        seed = job.seed,
        metrics = py(&metrics),
        epochs = config.epochs,
        shuffle = if config.shuffle { "True" } else { "False" },
        validation_split = config.validation_split,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_jobs_program_names_every_setting() {
        let job = Job {
            metrics: vec!["mae".into()],
            patience: Some(4),
            restore_best_weights: true,
            validation_split: 0.3,
            predict: vec![vec![100.0]],
            ..Job::default()
        };
        let (start, config) = job.plan(None, None).unwrap();
        let program = keras_script(&job, &start, &config);
        for words in [
            "keras.layers.Dense(3, activation=\"linear\")",
            "Adam(learning_rate=0.1)",
            "loss=\"mean_squared_error\"",
            "metrics=[\"mae\"]",
            "epochs=1000",
            "batch_size=32",
            "validation_split=0.3",
            "EarlyStopping(monitor=\"val_loss\", patience=4, min_delta=0, restore_best_weights=True)",
            "[-40.0,-10.0,0.0,8.0,15.0,22.0,38.0]",
            "keras.utils.set_random_seed(42)",
        ] {
            assert!(program.contains(words), "{words} not in:\n{program}");
        }
        // The starting weights, in the order Keras's set_weights takes.
        let first_kernel = serde_json::json!(start.model.dense_weights()[0].kernel).to_string();
        assert!(program.contains(&first_kernel), "{first_kernel}");
    }
}
