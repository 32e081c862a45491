//! A training job: every option a run takes, the one description both faces
//! fill, the CLI's flags and the web page's controls, and store (the page's
//! URL, the check's certificate). It becomes the run's starting model
//! ([`Job::start`]) and [`TrainConfig`] ([`Job::config`]) here and nowhere
//! else, so the same job gives the same run from either face.

use crate::activation::Activation;
use crate::data::{ColumnNames, Dataset};
use crate::error::{Error, Result, fail};
use crate::gpu::ScheduleChoice;
use crate::loss::{Loss, Metric};
use crate::model::{Architecture, Model};
use crate::model_file::{Format, Loaded, SavedAdam};
use crate::training::{
    DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE, DEFAULT_SEED, EarlyStopping, NamedMetric, TrainConfig,
    TrainOutput,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One hidden layer: Keras's `Dense(units, activation=...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiddenLayer {
    /// The layer's width.
    pub units: usize,
    /// Linear when not given, as Keras's `activation=None`.
    #[serde(default)]
    pub activation: Activation,
}

impl HiddenLayer {
    /// `--hidden`'s text: comma-separated widths, each linear or
    /// `width:activation` (`16:relu,16:tanh`), or `none` for no hidden
    /// layer; what is wrong is named by its position.
    pub fn parse_list(text: &str) -> std::result::Result<Vec<Self>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
        text.split(',')
            .enumerate()
            .map(|(index, part)| {
                let (width, activation) = match part.split_once(':') {
                    Some((width, name)) => {
                        let activation = Activation::from_name(name.trim())
                            .map_err(|why| format!("layer {}: {why}", index + 1))?;
                        (width, activation)
                    }
                    None => (part, Activation::Linear),
                };
                match width.trim().parse::<usize>() {
                    Ok(0) => Err(format!(
                        "width {} is 0; every width must be at least 1",
                        index + 1
                    )),
                    Ok(units) => Ok(HiddenLayer { units, activation }),
                    Err(_) => Err(format!(
                        "width {} ({:?}) is not a positive whole number; expected e.g. 3,3, \
                         16:relu,16:relu or none",
                        index + 1,
                        width
                    )),
                }
            })
            .collect()
    }
}

/// Where the samples come from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The seed program's 7 pairs.
    #[default]
    Seed,
    /// A CSV file, by name (its text is the face's to read).
    Csv(String),
    /// This many points of the exact formula, drawn from the job's seed.
    Samples(u64),
}

/// Every option of a run, with the CLI's defaults (the seed job's).
/// Unknown keys are refused, so a misspelt option is an error, not a
/// default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Job {
    /// `--hidden`: `None` for the seed's two linear layers of 3 (or, with
    /// `init`, the file's).
    pub hidden: Option<Vec<HiddenLayer>>,
    /// `--output-activation`: `None` for linear (or the file's).
    pub output_activation: Option<Activation>,
    /// `--loss`: a Keras name or alias (`mse`, `mean_absolute_error`, ...).
    pub loss: String,
    /// `--from-logits` (binary cross-entropy only).
    pub from_logits: bool,
    /// `--metrics`: Keras names, each tracked per epoch.
    pub metrics: Vec<String>,
    /// `--epochs`.
    pub epochs: usize,
    /// `--learning-rate`: `None` for 0.1, or the rate of the Adam state
    /// `init` resumes.
    pub learning_rate: Option<f32>,
    /// `--batch-size`: `None` for the whole dataset.
    pub batch_size: Option<usize>,
    /// `--shuffle`.
    pub shuffle: bool,
    /// `--seed`: the initial weights', the shuffle's and the formula's.
    pub seed: u64,
    /// `--validation-split`.
    pub validation_split: f64,
    /// `--patience`: early stopping when given.
    pub patience: Option<usize>,
    /// `--min-delta`.
    pub min_delta: f32,
    /// `--restore-best-weights`.
    pub restore_best_weights: bool,
    /// `--schedule`.
    pub schedule: ScheduleChoice,
    /// `--data` or `--samples`, else the seed's pairs.
    pub data: DataSource,
    /// `--x`: the input columns.
    pub x: Vec<String>,
    /// `--y`: the target columns.
    pub y: Vec<String>,
    /// `--delimiter`: the CSV's, when not detected.
    pub delimiter: Option<char>,
    /// `--init`: the model file to start from, by name.
    pub init: Option<String>,
    /// `--predict`: input rows to predict after training.
    pub predict: Vec<Vec<f32>>,
}

impl Default for Job {
    fn default() -> Self {
        let columns = ColumnNames::default();
        Self {
            hidden: None,
            output_activation: None,
            loss: Loss::default().name().into(),
            from_logits: false,
            metrics: Vec::new(),
            epochs: DEFAULT_EPOCHS,
            learning_rate: None,
            batch_size: Some(crate::batching::DEFAULT_BATCH_SIZE),
            shuffle: true,
            seed: DEFAULT_SEED,
            validation_split: 0.0,
            patience: None,
            min_delta: 0.0,
            restore_best_weights: false,
            schedule: ScheduleChoice::Auto,
            data: DataSource::Seed,
            x: columns.x,
            y: columns.y,
            delimiter: None,
            init: None,
            predict: Vec::new(),
        }
    }
}

/// What a face offers a user to choose from, all from the library: the
/// page's controls are built from it.
#[derive(Debug, Clone, Serialize)]
pub struct Choices {
    /// Every activation's Keras name.
    pub activations: Vec<&'static str>,
    /// Every loss's Keras name (`from_logits` is an option of its own).
    pub losses: Vec<&'static str>,
    /// Every metric's Keras name.
    pub metrics: Vec<&'static str>,
    /// `auto` and every GPU schedule.
    pub schedules: Vec<&'static str>,
    /// The default job.
    pub defaults: Job,
}

/// The choices every face offers.
pub fn choices() -> Choices {
    Choices {
        activations: Activation::ALL.iter().map(|a| a.name()).collect(),
        losses: Loss::KERAS_NAMES.to_vec(),
        metrics: Metric::KERAS_NAMES.to_vec(),
        schedules: ScheduleChoice::NAMES.to_vec(),
        defaults: Job::default(),
    }
}

/// Where a run starts: its weights and Adam.
#[derive(Debug, Clone)]
pub struct Start {
    /// The starting weights and activations.
    pub model: Model,
    /// The initialisation seed (none with `init`).
    pub seed: Option<u64>,
    /// Where the weights came from: `glorot_uniform` or the file's name.
    pub init: String,
    /// The Adam state the run resumes, from `init`'s file.
    pub adam: Option<SavedAdam>,
    /// Why Adam starts fresh though `init` was given, when it does.
    pub fresh_because: Option<String>,
}

impl Start {
    /// What a model file saved from this start's run keeps of it, from
    /// either face: the seed (`null` with a model file), where the weights
    /// came from, the epochs that ran, the learning rate, the final loss
    /// (`null` after 0 epochs) and the device.
    pub fn file_keys(
        &self,
        config: &TrainConfig,
        output: &TrainOutput,
        device: &impl Serialize,
    ) -> serde_json::Value {
        serde_json::json!({
            "seed": self.seed,
            "init": self.init,
            "epochs": output.loss_history.len(),
            "learning_rate": config.learning_rate,
            "final_loss": output.loss_history.last(),
            "device": device,
        })
    }

    /// The report's words for how Adam starts.
    pub fn adam_start(&self) -> String {
        match (&self.adam, &self.fresh_because) {
            (Some(adam), _) => format!(
                "resumed after {} steps from {}",
                adam.state.iterations, self.init
            ),
            (None, Some(why)) => format!("fresh: {why}"),
            (None, None) => "fresh".into(),
        }
    }
}

impl Job {
    /// The loss (`loss` with `from_logits`).
    pub fn loss(&self) -> Result<Loss> {
        Loss::from_name(self.loss.trim(), self.from_logits)
    }

    /// The metrics, each under its name.
    pub fn metrics(&self) -> Result<Vec<NamedMetric>> {
        (self.metrics.iter())
            .map(|name| NamedMetric::from_name(name.trim()))
            .collect()
    }

    /// The data's input and target columns.
    pub fn columns(&self) -> ColumnNames {
        ColumnNames {
            x: self.x.clone(),
            y: self.y.clone(),
        }
    }

    /// Early stopping, when `patience` asks for it.
    pub fn early_stopping(&self) -> Option<EarlyStopping> {
        self.patience.map(|patience| EarlyStopping {
            patience,
            min_delta: self.min_delta,
            restore_best_weights: self.restore_best_weights,
        })
    }

    /// Everything about the job that can be wrong before its files are
    /// read: the names of the loss and metrics, the columns, the rows to
    /// predict. [`TrainConfig::validate`] checks the rest with the data.
    pub fn check(&self) -> Result<()> {
        self.loss()?;
        self.metrics()?;
        if self.patience.is_none() && (self.min_delta != 0.0 || self.restore_best_weights) {
            fail!(
                InvalidConfig,
                "min_delta and restore_best_weights are early stopping's: give a patience \
                 (--patience) too"
            );
        }
        let lower = |n: &String| n.trim().to_lowercase();
        let names: Vec<String> = self.x.iter().chain(&self.y).map(lower).collect();
        if let Some(position) = names.iter().position(String::is_empty) {
            fail!(
                InvalidConfig,
                "column {} of --x and --y is empty; expected names such as x1,x2",
                position + 1
            );
        }
        if let Some(k) = (1..names.len()).find(|&k| names[..k].contains(&names[k])) {
            fail!(
                InvalidConfig,
                "the column {:?} is named twice in --x and --y; each input and target is its own \
                 column",
                names[k]
            );
        }
        if let Some(row) = self.predict.iter().find(|row| row.len() != self.x.len()) {
            fail!(
                InvalidConfig,
                "--predict {} has {} value(s), but the network takes {} input(s) ({}): give one \
                 value per --x column, comma-separated",
                row.iter().map(f32::to_string).collect::<Vec<_>>().join(","),
                row.len(),
                self.x.len(),
                self.x.join(",")
            );
        }
        if let Some(bad) = self.predict.iter().flatten().find(|v| !v.is_finite()) {
            fail!(InvalidConfig, "--predict {bad} is not a finite number");
        }
        Ok(())
    }

    /// The run's starting model and Adam: glorot_uniform from the seed, or
    /// `loaded`, the file `init` names (its activations from `hidden` and
    /// `output_activation` when it names none: a `.weights.h5`).
    pub fn start(&self, loaded: Option<Loaded>) -> Result<Start> {
        let Some(loaded) = loaded else {
            let seed_layers = [(3, Activation::Linear); 2];
            let hidden = match &self.hidden {
                Some(layers) => layers.iter().map(|l| (l.units, l.activation)).collect(),
                None => seed_layers.to_vec(),
            };
            let output = self.output_activation.unwrap_or_default();
            let architecture =
                Architecture::with_layers(&hidden, output)?.with_io(self.x.len(), self.y.len())?;
            return Ok(Start {
                model: Model::glorot_uniform(architecture, self.seed),
                seed: Some(self.seed),
                init: "glorot_uniform".into(),
                adam: None,
                fresh_because: None,
            });
        };
        let name = self.init.clone().unwrap_or_else(|| "a model file".into());
        let model = if loaded.has_activations {
            if self.hidden.is_some() || self.output_activation.is_some() {
                fail!(
                    InvalidConfig,
                    "--hidden and --output-activation cannot change the network of --init {name}, \
                     which names its layers and activations; they are for a .weights.h5 file, \
                     which names none"
                );
            }
            loaded.model
        } else {
            self.with_activations(&name, loaded.model)?
        };
        let fresh_because = match (&loaded.optimizer, loaded.optimizer_note) {
            (Some(_), _) => None,
            (None, Some(note)) => Some(note),
            (None, None) => Some(format!("{name} carries no optimizer state")),
        };
        Ok(Start {
            model,
            seed: None,
            init: name,
            adam: loaded.optimizer,
            fresh_because,
        })
    }

    /// A `.weights.h5` file's model with the job's activations; the widths
    /// must be the file's.
    fn with_activations(&self, name: &str, model: Model) -> Result<Model> {
        let widths = model.architecture().widths();
        let file_hidden = &widths[1..widths.len() - 1];
        let hidden: Vec<HiddenLayer> = match &self.hidden {
            Some(layers) => layers.clone(),
            None => (file_hidden.iter())
                .map(|&units| HiddenLayer {
                    units,
                    activation: Activation::Linear,
                })
                .collect(),
        };
        let job_hidden: Vec<usize> = hidden.iter().map(|l| l.units).collect();
        if job_hidden != file_hidden {
            let list = |w: &[usize]| match w {
                [] => "none".to_string(),
                w => w.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
            };
            fail!(
                InvalidConfig,
                "--hidden gives hidden widths {} but --init {name} has {} (a {} network); give \
                 the file's widths with the activations",
                list(&job_hidden),
                list(file_hidden),
                model.architecture().describe()
            );
        }
        let activations = (hidden.iter().map(|l| l.activation))
            .chain([self.output_activation.unwrap_or_default()])
            .collect();
        let architecture = model.architecture().clone().with_activations(activations)?;
        Model::from_params(architecture, model.params().to_vec())
    }

    /// The run's configuration on `data` from `start`, checked.
    pub fn config(&self, data: Dataset, start: &Start) -> Result<TrainConfig> {
        let resumed = start.adam.as_ref();
        let learning_rate = (self.learning_rate)
            .or(resumed.map(|adam| adam.learning_rate))
            .unwrap_or(DEFAULT_LEARNING_RATE);
        let config = TrainConfig {
            data,
            epochs: self.epochs,
            learning_rate,
            batch_size: self.batch_size,
            shuffle_seed: self.seed,
            shuffle: self.shuffle,
            loss: self.loss()?,
            validation_split: self.validation_split,
            early_stopping: self.early_stopping(),
            metrics: self.metrics()?,
            adam_state: resumed.map(|adam| adam.state.clone()),
        };
        config.validate()?;
        Ok(config)
    }

    /// The run's start and configuration from the job and what its files
    /// hold: `csv`, the text of the CSV file `data` names (the page's table
    /// is one too), and `init`, the bytes of the model file `init` names.
    /// The one call that makes a run of a job from its description alone;
    /// the CLI reads the same files from its paths.
    pub fn plan(&self, csv: Option<&str>, init: Option<&[u8]>) -> Result<(Start, TrainConfig)> {
        self.check()?;
        let loaded = match (&self.init, init) {
            (Some(name), Some(bytes)) => {
                let format = Format::of(Path::new(name))?;
                let named = |error: Error| match error {
                    Error::ModelFile { message, .. } | Error::InvalidModel(message) => {
                        Error::ModelFile {
                            file: Some(name.into()),
                            message,
                        }
                    }
                    other => other,
                };
                Some(format.parse(bytes).map_err(named)?)
            }
            (Some(name), None) => {
                fail!(
                    InvalidConfig,
                    "the job starts from {name}: open that model file"
                )
            }
            (None, _) => None,
        };
        let start = self.start(loaded)?;
        let data = match (&self.data, csv) {
            (DataSource::Seed, _) => Dataset::seed(),
            (DataSource::Samples(samples), _) => Dataset::from_formula(*samples, self.seed),
            (DataSource::Csv(name), Some(text)) => {
                let delimiter = self.delimiter.map(|c| c as u8);
                Dataset::from_csv_str_with(text, delimiter, &self.columns())
                    .map_err(|error| error.in_data_file(name.into()))?
            }
            (DataSource::Csv(name), None) => {
                fail!(
                    InvalidConfig,
                    "the job trains on {name}: open that CSV file"
                )
            }
        };
        let config = self.config(data, &start)?;
        Ok((start, config))
    }

    /// The job as JSON (what the page's URL and the certificate hold).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a job always serialises")
    }

    /// A job from JSON, refusing unknown keys by name.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|error| Error::InvalidConfig(format!("not a gpu-c2f job: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_accepts_lists_and_none_and_rejects_the_rest() {
        let linear = Activation::Linear;
        let layers = |pairs: &[(usize, Activation)]| -> Vec<HiddenLayer> {
            (pairs.iter())
                .map(|&(units, activation)| HiddenLayer { units, activation })
                .collect()
        };
        assert_eq!(
            HiddenLayer::parse_list("3,3"),
            Ok(layers(&[(3, linear), (3, linear)]))
        );
        assert_eq!(
            HiddenLayer::parse_list(" 64 , 17 "),
            Ok(layers(&[(64, linear), (17, linear)]))
        );
        assert_eq!(HiddenLayer::parse_list("none"), Ok(vec![]));
        assert_eq!(
            HiddenLayer::parse_list("16:relu, 8:leaky_relu,4"),
            Ok(layers(&[
                (16, Activation::Relu),
                (8, Activation::LeakyRelu),
                (4, linear)
            ]))
        );
        for bad in [
            ",", "0", "3,,3", "three", "", "-1", "3,0", "3:", "3:Relu", ":relu", "0:relu",
        ] {
            assert!(
                HiddenLayer::parse_list(bad).is_err(),
                "{bad:?} was accepted"
            );
        }
        let unknown = HiddenLayer::parse_list("8:relu,8:mish").unwrap_err();
        assert!(
            unknown.contains("layer 2") && unknown.contains("\"mish\"") && unknown.contains("gelu"),
            "{unknown}"
        );
    }

    #[test]
    fn the_default_job_is_the_seed_job() {
        let job = Job::default();
        let start = job.start(None).unwrap();
        let config = job.config(Dataset::seed(), &start).unwrap();
        let seed = TrainConfig::seed();
        assert_eq!(start.model, Model::glorot_uniform(Architecture::seed(), 42));
        assert_eq!(
            (config.epochs, config.learning_rate, config.batch_size),
            (seed.epochs, seed.learning_rate, seed.batch_size)
        );
        assert_eq!((config.loss, config.shuffle), (seed.loss, seed.shuffle));
        assert_eq!(Job::from_json(&job.to_json()).unwrap(), job);
        assert_eq!(Job::from_json("{}").unwrap(), job);
    }

    #[test]
    fn a_job_in_json_names_what_is_wrong() {
        let cases = [
            (r#"{"epoch": 3}"#, "unknown field `epoch`"),
            (
                r#"{"hidden": [{"units": 3, "activation": "mish"}]}"#,
                "mish",
            ),
            (r#"{"schedule": "fastest"}"#, "fastest"),
        ];
        for (text, words) in cases {
            let error = Job::from_json(text).unwrap_err().to_string();
            assert!(error.contains(words), "{text}: {error}");
        }
        let checks = [
            (
                Job {
                    loss: "hinge".into(),
                    ..Job::default()
                },
                "unknown loss",
            ),
            (
                Job {
                    metrics: vec!["f1".into()],
                    ..Job::default()
                },
                "unknown metric",
            ),
            (
                Job {
                    min_delta: 0.5,
                    ..Job::default()
                },
                "give a patience",
            ),
            (
                Job {
                    y: vec!["Celsius".into()],
                    ..Job::default()
                },
                "named twice",
            ),
            (
                Job {
                    predict: vec![vec![1.0, 2.0]],
                    ..Job::default()
                },
                "has 2 value(s)",
            ),
        ];
        for (job, words) in checks {
            let error = job.check().unwrap_err().to_string();
            assert!(error.contains(words), "{job:?}: {error}");
        }
    }
}
