//! The command line: flags, and the thin glue from them to the library.

use crate::activation::Activation;
use crate::compare::against_cpu;
use crate::cpu;
use crate::data::{ColumnNames, Dataset};
use crate::gpu::context::ADAPTER_NAME_VARIABLE;
use crate::gpu::largest_buffer;
use crate::gpu::{self, AdapterSelector, BackendChoice, Gpu, GpuOptions, ScheduleChoice};
use crate::job::{DataSource, HiddenLayer, Job};
use crate::keras_script;
use crate::loss::Loss;
use crate::model::Architecture;
use crate::model_file;
use crate::output::OutputFile;
use crate::plot;
use crate::report::{DeviceReport, Report, millis};
use crate::shadow::{self, Certificate};
use crate::training::{DEFAULT_EPOCHS, NamedMetric, TrainOutput};
use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use crate::training::DEFAULT_SEED;

/// `bail!` for an error that is the flags' fault (exit 2).
macro_rules! flag_bail {
    ($($message:tt)+) => {
        return Err(flag_error(anyhow::anyhow!($($message)+)))
    };
}

/// The flags a job file sets (`--job`), refused beside it.
const JOB_FLAGS: [&str; 22] = [
    "hidden",
    "output_activation",
    "epochs",
    "learning_rate",
    "batch_size",
    "loss",
    "validation_split",
    "metrics",
    "patience",
    "min_delta",
    "restore_best_weights",
    "from_logits",
    "shuffle",
    "seed",
    "init",
    "data",
    "x",
    "y",
    "delimiter",
    "samples",
    "predict",
    "schedule",
];

const EXAMPLES: &str = "\
Examples:
  gpu-c2f                                   train the tutorial's job on the best GPU
  gpu-c2f --compare --plot loss.png         also check it against the CPU reference, draw the loss
  gpu-c2f --data temps.csv --predict 37     your own celsius,fahrenheit pairs
  gpu-c2f --samples 100000 --hidden 8,8     100 000 points of the formula, a wider network
  gpu-c2f --save model.json && gpu-c2f --init model.json --epochs 200 --seed 7
  gpu-c2f --list-adapters --json            the adapters found, as JSON";

/// Train the Celsius-to-Fahrenheit network of the classic Keras tutorial
/// (Dense(3), Dense(3), Dense(1), Adam(0.1), mean squared error, 1000 epochs)
/// with WGSL compute shaders on a GPU, or with the CPU reference.
#[derive(Debug, Parser)]
#[command(name = "gpu-c2f", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Hidden layers, comma-separated: each a width, linear as Keras's
    /// default, or `width:activation` (`16:relu,16:tanh`); `none` for a
    /// single Dense(1). Activations: linear, relu, tanh, sigmoid, softplus,
    /// elu, leaky_relu, gelu, silu.
    /// With --init FILE.weights.h5, which names no activations, the widths
    /// must be the file's.
    #[arg(long, value_name = "W[:ACT],...|none", value_parser = parse_hidden, help_heading = "Training")]
    pub hidden: Option<HiddenLayers>,

    /// The output layer's activation (e.g. sigmoid for a probability)
    /// [default: linear].
    #[arg(long, value_name = "ACT", value_parser = parse_activation, help_heading = "Training")]
    pub output_activation: Option<Activation>,

    /// Training epochs (0 reports the untrained model).
    #[arg(long, default_value_t = DEFAULT_EPOCHS, allow_negative_numbers = true, help_heading = "Training")]
    pub epochs: usize,

    /// Adam's learning rate [default: 0.1, or the one of the Adam state
    /// --init resumes].
    #[arg(long, value_parser = parse_learning_rate, allow_hyphen_values = true, help_heading = "Training")]
    pub learning_rate: Option<f32>,

    /// Samples per Adam step, as Keras's `fit(batch_size=...)`; `all` (or any
    /// size beyond the data) for one full batch per epoch. Batches are
    /// reshuffled every epoch from --seed unless --shuffle false.
    #[arg(long, value_name = "N|all", default_value = "32", value_parser = parse_batch_size, help_heading = "Training")]
    pub batch_size: BatchSize,

    /// The loss to minimise: mse (mean_squared_error), mae
    /// (mean_absolute_error), huber (delta 1), or binary_crossentropy (bce)
    /// for targets in [0, 1], as Keras computes them.
    #[arg(long, value_name = "NAME", default_value = "mse", value_parser = parse_loss, help_heading = "Training")]
    pub loss: Loss,

    /// Hold out this fraction of the data, its last rows before any
    /// shuffling, and report each epoch's loss on them after the epoch's
    /// updates (`val_loss`), as Keras's `fit(validation_split=...)`.
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.0,
        allow_negative_numbers = true,
        help_heading = "Training"
    )]
    pub validation_split: f64,

    /// Keras metrics to track per epoch, comma-separated: mse, mae,
    /// binary_crossentropy, accuracy (binary_accuracy); each also on the
    /// validation rows (`val_` + name) with --validation-split.
    #[arg(long, value_name = "NAME[,NAME...]", value_parser = parse_metric, value_delimiter = ',', help_heading = "Training")]
    pub metrics: Vec<NamedMetric>,

    /// Stop once the monitored loss (val_loss with --validation-split, else
    /// loss) has not improved for N epochs, as Keras's EarlyStopping:
    /// decided on the GPU, whose later steps then do nothing.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        help_heading = "Training"
    )]
    pub patience: Option<usize>,

    /// How much lower than the best the monitored loss must be to count as
    /// an improvement (EarlyStopping's min_delta).
    #[arg(
        long,
        value_name = "D",
        default_value_t = 0.0,
        requires = "patience",
        allow_negative_numbers = true,
        help_heading = "Training"
    )]
    pub min_delta: f32,

    /// End with the weights of the best epoch, not the last (EarlyStopping's
    /// restore_best_weights).
    #[arg(long, requires = "patience", help_heading = "Training")]
    pub restore_best_weights: bool,

    /// binary_crossentropy of logits (Keras's `from_logits=True`): the
    /// output layer gives a logit, not a probability.
    #[arg(long, help_heading = "Training")]
    pub from_logits: bool,

    /// Draw each epoch's batches from a new permutation of the samples
    /// (Keras's `fit(shuffle=True)`), or take them in the data's order
    /// (`false`, as `fit(shuffle=False)`, for step-by-step comparisons).
    #[arg(long, value_name = "true|false", default_value_t = true, action = clap::ArgAction::Set, help_heading = "Training")]
    pub shuffle: bool,

    /// Seed of the glorot_uniform initialisation, the shuffle and --samples
    /// [default: 42]. With --init it seeds only the shuffle (and --samples).
    #[arg(long, help_heading = "Training")]
    pub seed: Option<u64>,

    /// Run the job a JSON file describes: every training and data option at
    /// once (the web page's URL job, or a certificate, whose `job` it
    /// reruns); the flags that set them are refused beside it.
    #[arg(long, value_name = "FILE.json", help_heading = "Training", conflicts_with_all = JOB_FLAGS)]
    pub job: Option<PathBuf>,

    /// Start from a model file's weights (its architecture too) instead of
    /// random ones: .json, .keras, .weights.h5 or .safetensors, by the
    /// extension. A .keras or .json file's Adam state is resumed.
    #[arg(long, value_name = "FILE", help_heading = "Training")]
    pub init: Option<PathBuf>,

    /// CSV of celsius and fahrenheit columns instead of the seed's 7 pairs:
    /// taken by name from a header (any case and order), else celsius first.
    #[arg(long, value_name = "FILE.csv", help_heading = "Data")]
    pub data: Option<PathBuf>,

    /// The --data header's input columns, comma-separated, in place of
    /// celsius: the network's inputs, in this order.
    #[arg(long, value_name = "COLUMN[,COLUMN...]", default_value = "celsius", value_parser = parse_columns, requires = "data", help_heading = "Data")]
    pub x: Columns,

    /// The --data header's target columns, in place of fahrenheit: the
    /// network's output units.
    #[arg(long, value_name = "COLUMN[,COLUMN...]", default_value = "fahrenheit", value_parser = parse_columns, requires = "data", help_heading = "Data")]
    pub y: Columns,

    /// The --data file's cell separator: `,` `;` `tab` or any one character
    /// [default: `;` if the first line has one, else `,`, else a tab].
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter, requires = "data", help_heading = "Data")]
    pub delimiter: Option<u8>,

    /// Train on N points of the exact formula (celsius uniform in [-50, 150], drawn from --seed).
    #[arg(long, value_name = "N", conflicts_with = "data", value_parser = clap::value_parser!(u64).range(1..=u32::MAX as u64), help_heading = "Data")]
    pub samples: Option<u64>,

    /// Also predict the outputs for this input (repeatable): one value per
    /// input column, comma-separated (`37`, or `1.5,2` for two --x columns).
    // Hyphen values too: clap's negative-number test misses `-1e-7`.
    #[arg(long, value_name = "X[,X...]", value_parser = parse_row, allow_hyphen_values = true, help_heading = "Data")]
    pub predict: Vec<Vec<f32>>,

    /// Adapter to train on: `auto` (the best found), an index from
    /// --list-adapters, or part of an adapter's name (case-insensitive)
    /// [default: WGPU_ADAPTER_NAME as a part of a name when set, else auto].
    #[arg(long, value_name = "auto|INDEX|TEXT", help_heading = "GPU")]
    pub adapter: Option<String>,

    /// Limit the wgpu backends tried (`all`: WGPU_BACKEND when set, else
    /// Vulkan, Metal and DX12 first, and GL unless they found a discrete GPU).
    #[arg(long, value_enum, default_value_t = BackendChoice::All, help_heading = "GPU")]
    pub backend: BackendChoice,

    /// How the GPU runs the epochs.
    #[arg(long, value_enum, default_value_t = ScheduleChoice::Auto, help_heading = "GPU")]
    pub schedule: ScheduleChoice,

    /// Print every adapter found (index, name, backend, type, driver) and exit.
    #[arg(long, help_heading = "GPU")]
    pub list_adapters: bool,

    /// Train with the plain-Rust CPU reference instead of a GPU.
    #[arg(long, help_heading = "GPU")]
    pub cpu_reference: bool,

    /// Record the GPU's training steps and replay them on the CPU reference
    /// from the GPU's own state (the shadow check); fail when a value is
    /// beyond its rounding bound. Also reports the whole-run differences.
    #[arg(long, conflicts_with = "cpu_reference", help_heading = "GPU")]
    pub compare: bool,

    /// Print the report as one JSON object instead of text.
    #[arg(long, help_heading = "Output")]
    pub json: bool,

    /// Write the trained model to FILE, its format by its extension: .json,
    /// .keras (Adam's state included), .weights.h5, .safetensors or .onnx
    /// (`-`: JSON on standard output, the report then on
    /// standard error). Links are written through; nothing is written when
    /// training or the shadow check fails.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub save: Option<PathBuf>,

    /// Draw the loss history to FILE (.svg or .png; `-`: SVG on standard
    /// output); with --compare, both curves.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub plot: Option<PathBuf>,

    /// Use a logarithmic loss axis in --plot.
    #[arg(long, requires = "plot", help_heading = "Output")]
    pub plot_log: bool,

    /// Write the job as a Keras 3 program (Python) to FILE: the same
    /// network, starting weights, Adam, loss, metrics and fit settings; it
    /// prints Keras's history and predictions as JSON, to compare with this
    /// run.
    #[arg(long, value_name = "FILE.py", help_heading = "Output")]
    pub keras_script: Option<PathBuf>,

    /// No start line and no progress bar.
    #[arg(long, help_heading = "Output")]
    pub quiet: bool,
}

/// `--delimiter`: one ASCII character other than a quote or a line break,
/// or `tab`.
fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ => match text.as_bytes() {
            [byte] if byte.is_ascii() && !matches!(byte, b'"' | b'\n' | b'\r') => Ok(*byte),
            _ => Err(format!(
                "{text:?} is not a delimiter: give one character such as , or ; (or `tab`), \
                 not a quote or a line break"
            )),
        },
    }
}

/// `--batch-size`: `None` is `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize(pub Option<usize>);

fn parse_batch_size(text: &str) -> Result<BatchSize, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("all") {
        return Ok(BatchSize(None));
    }
    match text.parse::<usize>() {
        Ok(0) => Err("the batch size must be at least 1 (or `all`)".to_string()),
        Ok(size) => Ok(BatchSize(Some(size))),
        Err(_) => Err(format!("{text:?} is not a positive whole number or `all`")),
    }
}

/// `--hidden`'s layers, each a width and an activation (a newtype, so clap
/// takes the list as one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenLayers(pub Vec<HiddenLayer>);

impl HiddenLayers {
    /// The layers' widths.
    pub fn widths(&self) -> Vec<usize> {
        self.0.iter().map(|layer| layer.units).collect()
    }
}

fn parse_hidden(text: &str) -> Result<HiddenLayers, String> {
    HiddenLayer::parse_list(text).map(HiddenLayers)
}

/// `--x`/`--y`'s column names (a newtype, so clap takes the list as one
/// value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns(pub Vec<String>);

fn parse_columns(text: &str) -> Result<Columns, String> {
    let names: Vec<String> = text
        .split(',')
        .map(|name| name.trim().to_string())
        .collect();
    if let Some(position) = names.iter().position(String::is_empty) {
        return Err(format!(
            "column {} is empty; expected names such as x1,x2",
            position + 1
        ));
    }
    Ok(Columns(names))
}

/// One `--predict` row: finite numbers, comma-separated.
fn parse_row(text: &str) -> Result<Vec<f32>, String> {
    text.split(',')
        .map(|value| parse_finite(value.trim()))
        .collect()
}

fn parse_metric(text: &str) -> Result<NamedMetric, String> {
    NamedMetric::from_name(text.trim()).map_err(|e| e.to_string())
}

fn parse_loss(text: &str) -> Result<Loss, String> {
    Loss::from_name(text.trim(), false).map_err(|e| e.to_string())
}

fn parse_activation(text: &str) -> Result<Activation, String> {
    Activation::from_name(text.trim()).map_err(|e| e.to_string())
}

fn parse_finite(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err(format!("{text:?} is not a finite number")),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}

fn parse_learning_rate(text: &str) -> Result<f32, String> {
    let value = parse_finite(text)?;
    if value > 0.0 {
        Ok(value)
    } else {
        Err(format!("{text:?} must be greater than 0"))
    }
}

/// Above this much work (epochs x samples x parameters, ~1 s on lavapipe)
/// a run on an interactive terminal submits in chunks and shows progress.
pub const PROGRESS_MIN_WORK: u64 = 100_000_000;

/// Progress chunks per run: few enough that waiting between them costs
/// nothing measurable, enough for a smooth bar.
const PROGRESS_CHUNKS: usize = 100;

/// Runs the command line: train, report, save, plot.
pub fn run(cli: Cli) -> Result<()> {
    if cli.list_adapters {
        return list_adapters(cli.backend, cli.json);
    }
    // Check the outputs before the work, so a bad path fails now; nothing
    // is created until the results are ready.
    let save = cli
        .save
        .as_deref()
        .map(|path| {
            let format = model_file::Format::of(path)
                .map_err(|error| flag_error(anyhow::anyhow!("--save: {error}")))?;
            Ok::<_, anyhow::Error>((OutputFile::check(path, "--save")?, format))
        })
        .transpose()?;
    let plot_file = match &cli.plot {
        Some(path) => {
            plot::check_format(path).map_err(flag_error)?;
            Some(plot::check_target(path)?)
        }
        None => None,
    };
    let keras_script = (cli.keras_script.as_deref())
        .map(|path| OutputFile::check(path, "--keras-script"))
        .transpose()?;
    let files: Vec<&OutputFile> = (save.iter().map(|(file, _)| file))
        .chain(&plot_file)
        .chain(&keras_script)
        .collect();
    for (k, file) in files.iter().enumerate() {
        for other in &files[k + 1..] {
            file.check_distinct(other).map_err(flag_error)?;
        }
    }
    // Everything that can be wrong with the flags and their files, before
    // the GPU.
    let job = job_of(&cli)?;
    job.check().map_err(settings_error)?;
    let columns = job.columns();
    let start = job.start(load_init(&job)?).map_err(settings_error)?;
    let initial = start.model.clone();
    let init = start.init.clone();
    let delimiter = job.delimiter.map(|c| c as u8);
    let (csv, samples) = match &job.data {
        DataSource::Csv(path) => {
            let data = Dataset::from_csv_file_with(Path::new(path), delimiter, &columns)?;
            (Some(data), None)
        }
        DataSource::Samples(samples) => (None, Some(*samples)),
        DataSource::Seed => (None, None),
    };
    let widths = initial.architecture().widths();
    let (inputs, outputs) = (widths[0], widths[widths.len() - 1]);
    if (inputs, outputs) != (columns.x.len(), columns.y.len()) {
        bail!(
            "{}: the {} network takes {inputs} input(s) and gives {outputs} output(s), but the \
             data has {} input column(s) ({}) and {} target column(s) ({}); choose them with \
             --x and --y",
            init,
            initial.architecture().describe(),
            columns.x.len(),
            columns.x.join(","),
            columns.y.len(),
            columns.y.join(",")
        );
    }

    // The job as far as the flags and files give it, checked before the
    // GPU is opened (all of it but --samples data, made for the device).
    let config_for = |data: Dataset| job.config(data, &start).map_err(settings_error);
    let known = match (csv, samples) {
        (Some(data), _) => Some(config_for(data)?),
        (None, None) => Some(config_for(Dataset::seed())?),
        (None, Some(_)) => None,
    };

    let mut setup = Duration::ZERO;
    let gpu = if cli.cpu_reference {
        None
    } else {
        let started = Instant::now();
        let selector = AdapterSelector::from_flag_or_env(cli.adapter.as_deref());
        let gpu = Gpu::new(&selector, cli.backend).map_err(|error| {
            let error = anyhow::Error::from(error);
            match (&cli.adapter, &selector) {
                (None, AdapterSelector::Name(name)) => error.context(format!(
                    "{ADAPTER_NAME_VARIABLE} is set to {name:?} (unset it, or choose with --adapter)"
                )),
                _ => error,
            }
        })?;
        setup = started.elapsed();
        Some(gpu)
    };
    let memory = |samples, made| MemoryCheck {
        samples,
        data_made: made,
        job: &job,
        cpu_reference: cli.cpu_reference || cli.compare,
        architecture: initial.architecture(),
        gpu: gpu.as_ref(),
    };
    let config = match (known, samples) {
        (Some(config), _) => {
            memory(config.data.len() as u64, true).check()?;
            config
        }
        (None, None) => unreachable!("without --samples the data is known before the GPU"),
        (None, Some(samples)) => {
            memory(samples, false).check()?;
            config_for(Dataset::from_formula(samples, job.seed))?
        }
    };
    let mut report = Report::new(&initial, &config, start.seed, start.init.clone());
    report.adam_start = start.adam_start();
    report.columns = columns;
    if let Some(gpu) = &gpu {
        report.timings_ms.setup = millis(setup);
        report.device = DeviceReport::Gpu(gpu.info.clone());
    }
    let chatty = !(cli.json || cli.quiet);
    // An output on stdout (`-`) leaves the report to stderr.
    let stdout_taken = (save.iter().map(|(file, _)| file))
        .chain(&plot_file)
        .any(OutputFile::is_stdout);
    if chatty {
        let line = format!("{}\n", report.start_line());
        match stdout_taken {
            true => eprint!("{line}"),
            false => print_stdout(&line)?,
        }
    }

    let work = config.epochs as u64
        * config.data.len() as u64
        * initial.architecture().param_count() as u64;
    let progress = Progress::new(
        config.epochs,
        chatty && work >= PROGRESS_MIN_WORK && std::io::stdout().is_terminal(),
    );
    let output = match &gpu {
        Some(gpu) => {
            let options = GpuOptions {
                schedule: job.schedule,
                epochs_per_submit: progress
                    .shown()
                    .then(|| (config.epochs / PROGRESS_CHUNKS).max(1)),
                max_chunk_samples: None,
                fused_workgroup_size: None,
                record_steps: false,
                stream_losses: false,
            };
            let on_progress = |done: gpu::Progress<'_>| progress.update(done.epochs);
            let run = match cli.compare {
                true => gpu::train_checked(gpu, &initial, &config, &options, on_progress)
                    .map(|checked| (checked.run, Some(checked.check))),
                false => gpu::train_with(gpu, &initial, &config, &options, on_progress)
                    .map(|run| (run, None)),
            };
            let (run, check) = run.map_err(|error| match error {
                // A divergence reads the same on every path; other
                // failures name the adapter.
                crate::Error::Diverged(diverged) => named_divergence(diverged, &report.columns),
                other => anyhow::Error::from(other)
                    .context(format!("training on {} failed", gpu.info.name)),
            })?;
            report.record_gpu_timings(&run.timings);
            report.certificate =
                (check.as_ref()).map(|c| Certificate::new(&job, &gpu.info, c, None));
            report.shadow_check = check;
            run.output
        }
        None => {
            let output = cpu::train_with_progress(&initial, &config, |done| progress.update(done))
                .map_err(|error| match error {
                    crate::Error::Diverged(diverged) => named_divergence(diverged, &report.columns),
                    other => other.into(),
                })?;
            report.timings_ms.train = millis(output.train_time);
            output
        }
    };
    progress.finish();
    report.record_results(&output, &job.predict);

    let reference = if cli.compare && gpu.is_some() {
        let inputs: Vec<Vec<f32>> = report.predictions.iter().map(|p| p.input.clone()).collect();
        let (reference, comparison) = against_cpu(&initial, &config, &output, &inputs)?;
        report.comparison = Some(comparison);
        Some(reference)
    } else {
        None
    };

    let verdict = match &report.shadow_check {
        Some(check) => shadow::verdict(check)
            .map_err(|why| format!("{why} (see the Shadow check lines of the report)")),
        None => Ok(()),
    };
    let mut outputs = Vec::new();
    if let Some((file, format)) = save {
        let keys = start.file_keys(&config, &output, &report.device);
        let bytes = format.to_bytes(&model_file::SavedModel::of_run(&config, &output), &keys)?;
        outputs.push(("Saved:      ", file, bytes));
    }
    if let Some(file) = keras_script {
        let program = keras_script::keras_script(&job, &start, &config);
        outputs.push(("Keras:      ", file, program.into_bytes()));
    }
    if let Some(file) = plot_file {
        let picture = render_plot(
            file.path(),
            &report,
            &output,
            reference.as_ref(),
            cli.plot_log,
        )?;
        outputs.push(("Plot:       ", file, picture));
    }
    let text = if cli.json {
        report.to_json() + "\n"
    } else {
        report.to_text()
    };
    deliver(&text, !cli.json, &outputs, verdict)
}

/// Writes the outputs, then shows the report (on stderr when an output
/// took stdout), with a line per output file in text. A run whose check
/// failed writes none of them: its model and curve are not to be trusted.
fn deliver(
    report: &str,
    text: bool,
    outputs: &[(&str, OutputFile, Vec<u8>)],
    verdict: Result<(), String>,
) -> Result<()> {
    let mut report = report.to_string();
    for (what, file, bytes) in outputs {
        if verdict.is_ok() {
            file.write(bytes)?;
        }
        if text {
            let path = match file.is_stdout() {
                true => "standard output".to_string(),
                false => file.path().display().to_string(),
            };
            report += &match verdict {
                Ok(()) => format!("{what} {path}\n"),
                Err(_) => format!("Not written: {path} (the shadow check failed)\n"),
            };
        }
    }
    if outputs.iter().any(|(_, file, _)| file.is_stdout()) {
        eprint!("{report}");
    } else {
        print_stdout(&report)?;
    }
    verdict.map_err(anyhow::Error::msg)
}

/// A divergence, its data columns named as the user named them.
fn named_divergence(diverged: crate::training::Diverged, columns: &ColumnNames) -> anyhow::Error {
    anyhow::anyhow!(diverged.describe(Some((&columns.x, &columns.y))))
}

/// A flag's value, or flags together, that no run can take: the binary
/// exits with 2 for it, as for the errors clap finds while parsing.
#[derive(Debug)]
pub struct FlagError(pub anyhow::Error);

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for FlagError {}

/// Marks an error as the flags' fault (exit 2).
fn flag_error(error: impl Into<anyhow::Error>) -> anyhow::Error {
    FlagError(error.into()).into()
}

/// A settings error of the library (a value no run can take) is the
/// flags' fault; others (data, devices, limits of this machine) are not.
fn settings_error(error: crate::Error) -> anyhow::Error {
    match error {
        crate::Error::InvalidConfig(_) => flag_error(error),
        other => other.into(),
    }
}

/// Whether the command line's error is the flags' fault: exit 2.
pub fn is_flag_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<FlagError>()
            || matches!(
                cause.downcast_ref::<crate::Error>(),
                Some(crate::Error::InvalidConfig(_))
            )
    })
}

/// The job: `--job`'s file, or the one the flags describe.
fn job_of(cli: &Cli) -> Result<Job> {
    let Some(path) = &cli.job else {
        return Ok(flags_job(cli));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --job {}", path.display()))?;
    // A certificate names its job under `job`, and a `--compare --json`
    // report its certificate: rerun what was certified.
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| flag_error(anyhow!("--job {}: not JSON: {error}", path.display())))?;
    if value.get("loss_history").is_some() && value.get("certificate").is_none() {
        flag_bail!(
            "--job {}: a report without a certificate names no job; make it with --compare \
             --json, or give a job file",
            path.display()
        );
    }
    let certificate = value.get("certificate").unwrap_or(&value);
    let job = match (certificate.get("passed"), certificate.get("job")) {
        (Some(_), Some(job)) => job,
        _ => &value,
    };
    Job::from_json(&job.to_string())
        .map_err(|error| flag_error(anyhow!("--job {}: {error}", path.display())))
}

/// The job the flags describe.
fn flags_job(cli: &Cli) -> Job {
    let hidden = cli
        .hidden
        .as_ref()
        .map(|HiddenLayers(layers)| layers.clone());
    let data = match (&cli.data, cli.samples) {
        (Some(path), _) => DataSource::Csv(path.display().to_string()),
        (None, Some(samples)) => DataSource::Samples(samples),
        (None, None) => DataSource::Seed,
    };
    Job {
        hidden,
        output_activation: cli.output_activation,
        loss: cli.loss.name().into(),
        from_logits: cli.from_logits,
        metrics: cli.metrics.iter().map(|m| m.name.clone()).collect(),
        epochs: cli.epochs,
        learning_rate: cli.learning_rate,
        batch_size: cli.batch_size.0,
        shuffle: cli.shuffle,
        seed: cli.seed.unwrap_or(DEFAULT_SEED),
        validation_split: cli.validation_split,
        patience: cli.patience,
        min_delta: cli.min_delta,
        restore_best_weights: cli.restore_best_weights,
        schedule: cli.schedule,
        data,
        x: cli.x.0.clone(),
        y: cli.y.0.clone(),
        delimiter: cli.delimiter.map(char::from),
        init: cli.init.as_ref().map(|path| path.display().to_string()),
        predict: cli.predict.clone(),
    }
}

/// The job's model file (`--init`), read: a name gpu-c2f cannot read is
/// the flag's fault; what is wrong inside the file is the file's.
fn load_init(job: &Job) -> Result<Option<model_file::Loaded>> {
    let Some(path) = job.init.as_deref().map(Path::new) else {
        return Ok(None);
    };
    let format = model_file::Format::of(path).map_err(|e| flag_error(anyhow!("--init: {e}")))?;
    if !format.can_load() {
        flag_bail!(
            "--init {}: gpu-c2f writes this format for other runtimes but does not read it; \
             start from a .keras, .weights.h5, .safetensors or .json file",
            path.display()
        );
    }
    Ok(Some(model_file::load(path)?))
}

/// What a run will hold in the host's memory, checked on every path
/// before the work (and before `--samples` data is made).
struct MemoryCheck<'a> {
    samples: u64,
    /// Whether the dataset is already in memory (a CSV, the seed's pairs).
    data_made: bool,
    job: &'a Job,
    /// Whether the CPU reference runs too (`--cpu-reference`, `--compare`).
    cpu_reference: bool,
    architecture: &'a Architecture,
    gpu: Option<&'a Gpu>,
}

impl MemoryCheck<'_> {
    /// Refuses a run that would not fit: in one of the device's storage
    /// buffers (where the kernels read the dataset), or in the host's free
    /// memory: the dataset, the upload's staging copy, a software adapter's
    /// device buffers, the CPU reference's per-sample buffers of one batch,
    /// and the loss history (the trainer's, the readback's, the report's).
    fn check(&self) -> Result<()> {
        let (samples, job) = (self.samples, self.job);
        let per_sample = 4 * (job.x.len() + job.y.len()) as u64;
        let dataset = samples.saturating_mul(per_sample);
        if let Some(gpu) = self.gpu {
            let most = largest_buffer(&gpu.device.limits());
            if dataset > most {
                bail!(
                    "--samples {samples} needs {} of GPU memory in one buffer for the dataset \
                     ({per_sample} bytes a sample), more than {} allows in one buffer ({}); use \
                     at most {} samples, or --cpu-reference",
                    bytes(dataset),
                    gpu.info.name,
                    bytes(most),
                    most / per_sample
                );
            }
        }
        let software = self
            .gpu
            .is_some_and(|gpu| gpu.device_type == wgpu::DeviceType::Cpu);
        let mut data_parts = Vec::new();
        if !self.data_made {
            data_parts.push(("the dataset", dataset));
        }
        if self.gpu.is_some() {
            data_parts.push(("its upload's staging copy", dataset));
        }
        if software {
            data_parts.push(("the software adapter's copy", dataset));
        }
        if self.cpu_reference {
            let batch = (job.batch_size).map_or(samples, |b| (b as u64).min(samples));
            let widths: u64 = self.architecture.widths().iter().map(|&w| w as u64).sum();
            let per_batch_sample = 4 * (2 * widths + 1) + per_sample;
            data_parts.push((
                "the CPU reference's buffers for a batch",
                batch.saturating_mul(per_batch_sample),
            ));
        }
        // The loss, each metric, and with a validation split each again:
        // f32 each, held by the trainer and copied into the report; on a
        // GPU also by the readback (and a software adapter's buffer).
        let series = (1 + job.metrics.len() as u64) * (1 + (job.validation_split > 0.0) as u64);
        let copies = 2 + self.gpu.is_some() as u64 + software as u64;
        let per_epoch = 4 * series * copies;
        let history = (
            "the loss history and its copies",
            (job.epochs as u64).saturating_mul(per_epoch),
        );
        let sum = |parts: &[(&str, u64)]| {
            parts
                .iter()
                .fold(0u64, |sum, (_, b)| sum.saturating_add(*b))
        };
        let needed = sum(&data_parts).saturating_add(history.1);
        let Some((available, source)) = available_host_memory() else {
            return Ok(());
        };
        if needed <= available {
            return Ok(());
        }
        let listed: Vec<String> = data_parts
            .iter()
            .chain([&history])
            // The parts that matter.
            .filter(|(_, b)| *b >= needed / 100)
            .map(|(what, b)| format!("{what} {}", bytes(*b)))
            .collect();
        let (what, remedy) = if sum(&data_parts) < available && history.1 > available / 2 {
            let fitting = (available - sum(&data_parts)) / per_epoch;
            (
                format!("--epochs {}", job.epochs),
                format!("use at most {fitting} --epochs"),
            )
        } else if self.data_made {
            (
                format!("the data ({samples} samples)"),
                "use fewer samples".to_string(),
            )
        } else {
            (
                format!("--samples {samples}"),
                "use fewer samples".to_string(),
            )
        };
        bail!(
            "{what} needs about {} of memory ({}), more than the {} available ({source}); \
             {remedy}",
            bytes(needed),
            listed.join(", "),
            bytes(available)
        )
    }
}

/// Bytes as people read them, exact count included: `34359738368 bytes (32.0 GiB)`.
fn bytes(count: u64) -> String {
    let (unit, size) = if count >= 1 << 30 {
        ("GiB", 1u64 << 30)
    } else {
        ("MiB", 1 << 20)
    };
    format!("{count} bytes ({:.1} {unit})", count as f64 / size as f64)
}

/// The memory this process may still take, in bytes, and where that
/// figure comes from: Linux's MemAvailable, or less when a cgroup (v2) limit
/// leaves less. `None` where neither can be read (then the allocation
/// itself is the check).
fn available_host_memory() -> Option<(u64, &'static str)> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    let available = (kib * 1024, "MemAvailable in /proc/meminfo");
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    // memory.max is "max" (no limit) or a byte count.
    match (read("memory.max"), read("memory.current")) {
        (Some(max), Some(current)) if max.saturating_sub(current) < available.0 => Some((
            max.saturating_sub(current),
            "this cgroup's memory.max less memory.current",
        )),
        _ => Some(available),
    }
}

/// `--plot`: the run's loss curve, drawn in memory, and the CPU reference's with `--compare`.
fn render_plot(
    path: &std::path::Path,
    report: &Report,
    output: &TrainOutput,
    reference: Option<&TrainOutput>,
    log_scale: bool,
) -> Result<Vec<u8>> {
    let mut series = vec![plot::Series {
        label: report.device.short_name(),
        losses: &output.loss_history,
    }];
    if !output.val_loss_history.is_empty() {
        series.push(plot::Series {
            label: "val_loss",
            losses: &output.val_loss_history,
        });
    }
    if let Some(reference) = reference {
        series.push(plot::Series {
            label: "CPU reference",
            losses: &reference.loss_history,
        });
    }
    plot::render(path, &report.plot_title(), &series, log_scale)
}

/// A progress bar on stderr for long runs on a terminal. It stays hidden
/// for the first second, so quick runs never flash one.
struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    fn new(epochs: usize, wanted: bool) -> Self {
        let bar = wanted.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(epochs as u64), ProgressDrawTarget::hidden());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} epochs, {per_sec}, {elapsed} elapsed, ~{eta} left",
                )
                .expect("a valid progress template"),
            );
            bar
        });
        Self {
            bar,
            started: Instant::now(),
        }
    }

    fn shown(&self) -> bool {
        self.bar.is_some()
    }

    fn update(&self, epochs_done: usize) {
        if let Some(bar) = &self.bar {
            if bar.is_hidden() && self.started.elapsed() > Duration::from_secs(1) {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
            bar.set_position(epochs_done as u64);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_stdout(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

fn list_adapters(backend: BackendChoice, json: bool) -> Result<()> {
    let adapters = pollster::block_on(gpu::context::enumerate_adapters(backend));
    if adapters.is_empty() {
        return Err(gpu::context::no_adapter_error(backend).into());
    }
    if json {
        let listed: Vec<serde_json::Value> = adapters
            .iter()
            .enumerate()
            .map(|(index, adapter)| {
                let info = gpu::GpuInfo::from_adapter(&adapter.get_info());
                serde_json::json!({
                    "index": index,
                    "name": info.name,
                    "backend": info.backend,
                    "device_type": info.device_type,
                    "driver": info.driver,
                })
            })
            .collect();
        let text = serde_json::to_string(&serde_json::json!({ "adapters": listed }))?;
        return print_stdout(&(text + "\n"));
    }
    let lines = gpu::context::describe_adapters(&adapters);
    print_stdout(&(lines.join("\n") + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn delimiter_is_one_character_or_tab() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter("\t"), Ok(b'\t'));
        for bad in ["", ";;", "\"", "\n", "é"] {
            assert!(parse_delimiter(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_run_that_failed_its_check_writes_no_output() {
        let folder = std::env::temp_dir().join(format!("gpu-c2f-deliver-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let (model, picture) = (folder.join("model.json"), folder.join("loss.svg"));
        std::fs::write(&picture, "old picture").unwrap();
        let outputs = vec![
            (
                "Saved:      ",
                OutputFile::check(&model, "--save").unwrap(),
                b"{}".to_vec(),
            ),
            (
                "Plot:       ",
                OutputFile::check(&picture, "--plot").unwrap(),
                b"<svg/>".to_vec(),
            ),
        ];
        let failed = Err("the shadow check failed".to_string());
        let error = deliver("report\n", true, &outputs, failed).unwrap_err();
        assert!(error.to_string().contains("shadow check failed"), "{error}");
        assert!(!model.exists());
        assert_eq!(std::fs::read_to_string(&picture).unwrap(), "old picture");
        deliver("report\n", true, &outputs, Ok(())).unwrap();
        assert_eq!(std::fs::read_to_string(&model).unwrap(), "{}");
        assert_eq!(std::fs::read_to_string(&picture).unwrap(), "<svg/>");
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn learning_rate_must_be_finite_and_positive() {
        assert_eq!(parse_learning_rate("0.1"), Ok(0.1));
        for bad in ["0", "-0.1", "NaN", "inf", "fast"] {
            assert!(parse_learning_rate(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
