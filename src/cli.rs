//! The command line: flags, and the thin glue from them to the library.

use crate::compare::{GPU_CPU_TOLERANCE, compare};
use crate::cpu;
use crate::data::Dataset;
use crate::gpu::{self, AdapterSelector, BackendChoice, Gpu, GpuOptions, ScheduleChoice};
use crate::model::{Architecture, Model};
use crate::model_file::{self, OutputFile};
use crate::plot;
use crate::report::{DeviceReport, Report, millis};
use crate::training::{DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE, TrainConfig, TrainOutput};
use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::training::DEFAULT_SEED;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendFlag {
    All,
    Vulkan,
    Gl,
    Metal,
    Dx12,
}

impl From<BackendFlag> for BackendChoice {
    fn from(flag: BackendFlag) -> Self {
        match flag {
            BackendFlag::All => BackendChoice::All,
            BackendFlag::Vulkan => BackendChoice::Vulkan,
            BackendFlag::Gl => BackendChoice::Gl,
            BackendFlag::Metal => BackendChoice::Metal,
            BackendFlag::Dx12 => BackendChoice::Dx12,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleFlag {
    /// Fused for small jobs; samples for large ones on small networks
    /// (at most 128 parameters), dispatch for wider networks.
    Auto,
    /// One workgroup loops over the epochs: few dispatches.
    Fused,
    /// A thread per block of 256 samples runs the whole network, from a
    /// kernel written out for it (small networks, at most 512 parameters).
    Samples,
    /// One dispatch per kernel per step, spread over the whole GPU.
    Dispatch,
}

impl From<ScheduleFlag> for ScheduleChoice {
    fn from(flag: ScheduleFlag) -> Self {
        match flag {
            ScheduleFlag::Auto => ScheduleChoice::Auto,
            ScheduleFlag::Fused => ScheduleChoice::Fused,
            ScheduleFlag::Samples => ScheduleChoice::Samples,
            ScheduleFlag::Dispatch => ScheduleChoice::Dispatch,
        }
    }
}

/// Train the Celsius-to-Fahrenheit network of the classic Keras tutorial
/// (Dense(3), Dense(3), Dense(1), Adam(0.1), mean squared error, 1000 epochs)
/// with WGSL compute shaders on a GPU, or with the CPU reference.
#[derive(Debug, Parser)]
#[command(name = "gpu-c2f", version, about)]
pub struct Cli {
    /// Adapter to train on: `auto` (the best found), an index from
    /// --list-adapters, or part of an adapter's name (case-insensitive).
    #[arg(long, default_value = "auto", value_name = "auto|INDEX|TEXT")]
    pub adapter: String,

    /// Limit the wgpu backends tried (`all` honours WGPU_BACKEND when set).
    #[arg(long, value_enum, default_value_t = BackendFlag::All)]
    pub backend: BackendFlag,

    /// How the GPU runs the epochs.
    #[arg(long, value_enum, default_value_t = ScheduleFlag::Auto)]
    pub schedule: ScheduleFlag,

    /// Print every adapter found (index, name, backend, type, driver) and exit.
    #[arg(long)]
    pub list_adapters: bool,

    /// Train with the plain-Rust CPU reference instead of a GPU.
    #[arg(long)]
    pub cpu_reference: bool,

    /// Hidden layer widths, comma-separated (`none` for a single Dense(1)).
    #[arg(long, value_name = "W1,W2,...|none", value_parser = parse_hidden, conflicts_with = "init")]
    pub hidden: Option<HiddenWidths>,

    /// Training epochs (0 reports the untrained model).
    #[arg(long, default_value_t = DEFAULT_EPOCHS, allow_negative_numbers = true)]
    pub epochs: usize,

    /// Adam's learning rate.
    #[arg(long, default_value_t = DEFAULT_LEARNING_RATE, value_parser = parse_learning_rate, allow_hyphen_values = true)]
    pub learning_rate: f32,

    /// Seed of the glorot_uniform initialisation.
    #[arg(long, default_value_t = DEFAULT_SEED, conflicts_with = "init")]
    pub seed: u64,

    /// CSV of celsius,fahrenheit rows (an optional header line) instead of the seed's 7 pairs.
    #[arg(long, value_name = "FILE.csv")]
    pub data: Option<PathBuf>,

    /// Also predict this many degrees Celsius (repeatable).
    // Hyphen values too: clap's negative-number test misses `-1e-7`.
    #[arg(long, value_name = "CELSIUS", value_parser = parse_finite, allow_hyphen_values = true)]
    pub predict: Vec<f32>,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Write the trained model to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,

    /// Start from a model file's weights (its architecture too) instead of random ones.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,

    /// Samples per Adam step, as Keras's `fit(batch_size=...)`; `all` for one
    /// full batch per epoch. Batches are reshuffled every epoch from --seed.
    #[arg(long, value_name = "N|all", default_value = "32", value_parser = parse_batch_size)]
    pub batch_size: BatchSize,

    /// Train on N points of the exact formula (celsius uniform in [-50, 150], drawn from --seed).
    #[arg(long, value_name = "N", conflicts_with = "data", value_parser = clap::value_parser!(u64).range(1..=u32::MAX as u64))]
    pub samples: Option<u64>,

    /// Draw the loss history to FILE (.svg or .png); with --compare, both curves.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Use a logarithmic loss axis in --plot.
    #[arg(long, requires = "plot")]
    pub plot_log: bool,

    /// Also train with the CPU reference from the same weights, report the
    /// differences, and fail when they exceed the tests' tolerance.
    #[arg(long, conflicts_with = "cpu_reference")]
    pub compare: bool,

    /// No start line and no progress bar.
    #[arg(long)]
    pub quiet: bool,
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

/// `--hidden`'s widths (a newtype, so clap takes the list as one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenWidths(pub Vec<usize>);

fn parse_hidden(text: &str) -> Result<HiddenWidths, String> {
    parse_widths(text).map(HiddenWidths)
}

fn parse_widths(text: &str) -> Result<Vec<usize>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',')
        .enumerate()
        .map(|(index, part)| match part.trim().parse::<usize>() {
            Ok(0) => Err(format!(
                "width {} is 0; every width must be at least 1",
                index + 1
            )),
            Ok(width) => Ok(width),
            Err(_) => Err(format!(
                "width {} ({:?}) is not a positive whole number; expected e.g. 3,3 or none",
                index + 1,
                part
            )),
        })
        .collect()
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
        return list_adapters(cli.backend.into());
    }
    let (initial, config, mut report) = job_from_flags(&cli)?;
    // Check the outputs before the work, so a bad path fails now.
    let save = cli
        .save
        .as_deref()
        .map(|p| OutputFile::create(p, "--save"))
        .transpose()?;
    if let Some(path) = &cli.plot {
        plot::check_target(path).context("--plot")?;
    }

    let gpu = if cli.cpu_reference {
        None
    } else {
        let started = Instant::now();
        let gpu = Gpu::new(&AdapterSelector::parse(&cli.adapter), cli.backend.into())?;
        report.timings_ms.setup = millis(started.elapsed());
        report.device = DeviceReport::Gpu(gpu.info.clone());
        Some(gpu)
    };
    let chatty = !(cli.json || cli.quiet);
    if chatty {
        print_stdout(&format!("{}\n", report.start_line()))?;
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
                schedule: cli.schedule.into(),
                epochs_per_submit: progress
                    .shown()
                    .then(|| (config.epochs / PROGRESS_CHUNKS).max(1)),
                max_chunk_samples: None,
            };
            let run = gpu::train_with(gpu, &initial, &config, &options, |done| {
                progress.update(done)
            })
            .with_context(|| format!("training on {} failed", gpu.info.name))?;
            report.record_gpu_timings(&run.timings);
            run.output
        }
        None => {
            let output = cpu::train_with_progress(&initial, &config, |done| progress.update(done))?;
            report.timings_ms.train = millis(output.train_time);
            output
        }
    };
    progress.finish();
    report.record_results(&output, &cli.predict);

    let reference = if cli.compare && gpu.is_some() {
        let reference = cpu::train(&initial, &config)?;
        let celsius: Vec<f32> = report.predictions.iter().map(|p| p.celsius).collect();
        report.comparison = Some(compare(&reference, &output, &celsius, GPU_CPU_TOLERANCE));
        Some(reference)
    } else {
        None
    };

    if let Some(file) = save {
        file.commit(model_file::to_json(&output.model, &report.model_file_keys())?.as_bytes())?;
    }
    if let Some(path) = &cli.plot {
        draw_plot(path, &report, &output, reference.as_ref(), cli.plot_log)?;
    }

    let mut text = if cli.json {
        report.to_json() + "\n"
    } else {
        report.to_text()
    };
    if !cli.json {
        for (what, path) in [("Saved:      ", &cli.save), ("Plot:       ", &cli.plot)] {
            if let Some(path) = path {
                text += &format!("{what} {}\n", path.display());
            }
        }
    }
    print_stdout(&text)?;
    match &report.comparison {
        Some(comparison) if !comparison.within_tolerance => bail!(
            "the GPU and the CPU reference differ beyond the tolerance ({} relative loss, {} weight)",
            comparison.tolerance.loss_relative,
            comparison.tolerance.weight
        ),
        _ => Ok(()),
    }
}

/// The starting weights, the training job and its report, from the flags:
/// the data (`--data`, `--samples` or the seed's pairs), the weights
/// (`--init`, or glorot_uniform from `--seed`) and the training settings.
fn job_from_flags(cli: &Cli) -> Result<(Model, TrainConfig, Report)> {
    let data = match (&cli.data, cli.samples) {
        (Some(path), _) => Dataset::from_csv_file(path)?,
        (None, Some(samples)) => Dataset::from_formula(samples, cli.seed),
        (None, None) => Dataset::seed(),
    };
    let (initial, seed, init) = match &cli.init {
        Some(path) => (model_file::load(path)?, None, path.display().to_string()),
        None => {
            let hidden = cli.hidden.clone().map_or_else(|| vec![3, 3], |h| h.0);
            let architecture = Architecture::new(&hidden)?;
            let model = Model::glorot_uniform(architecture, cli.seed);
            (model, Some(cli.seed), "glorot_uniform".to_string())
        }
    };
    let config = TrainConfig {
        data,
        epochs: cli.epochs,
        learning_rate: cli.learning_rate,
        batch_size: cli.batch_size.0,
        shuffle_seed: cli.seed,
    };
    config.validate()?;
    let report = Report::new(&initial, &config, seed, init);
    Ok((initial, config, report))
}

/// `--plot`: the run's loss curve, and the CPU reference's with `--compare`.
fn draw_plot(
    path: &std::path::Path,
    report: &Report,
    output: &TrainOutput,
    reference: Option<&TrainOutput>,
    log_scale: bool,
) -> Result<()> {
    let mut series = vec![plot::Series {
        label: report.device.short_name(),
        losses: &output.loss_history,
    }];
    if let Some(reference) = reference {
        series.push(plot::Series {
            label: "CPU reference",
            losses: &reference.loss_history,
        });
    }
    plot::write_loss_plot(path, &report.plot_title(), &series, log_scale)
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

fn list_adapters(backend: BackendChoice) -> Result<()> {
    let adapters = gpu::context::enumerate_adapters(backend);
    if adapters.is_empty() {
        return Err(gpu::context::no_adapter_error(backend));
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
    fn hidden_accepts_lists_and_none_and_rejects_the_rest() {
        assert_eq!(parse_widths("3,3"), Ok(vec![3, 3]));
        assert_eq!(parse_widths(" 64 , 17 "), Ok(vec![64, 17]));
        assert_eq!(parse_widths("none"), Ok(vec![]));
        for bad in [",", "0", "3,,3", "three", "", "-1", "3,0"] {
            assert!(parse_widths(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn learning_rate_must_be_finite_and_positive() {
        assert_eq!(parse_learning_rate("0.1"), Ok(0.1));
        for bad in ["0", "-0.1", "NaN", "inf", "fast"] {
            assert!(parse_learning_rate(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
