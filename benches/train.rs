//! `cargo bench --bench train`: device setup, pipeline creation, the seed
//! job on the GPU (each schedule) and on the CPU, and the per-epoch time of
//! full-batch training over N samples and two widths, printed as markdown.
//!
//! A plain `harness = false` binary, no criterion: every figure is the
//! median (min, max) of a few repetitions of the library's own calls, each
//! timed with `Instant` on the host and, where the adapter has timestamp
//! queries, with the GPU's own clock as well (`timings.gpu_train`).
//!
//! `BENCH_QUICK=1` (or `-- --quick`) runs a subset in well under a minute.
//! `BENCH_MAX_N=100000` drops the larger N of the per-epoch grid.

use gpu_c2f::gpu::{self, AdapterSelector, BackendChoice, Gpu, GpuOptions, ScheduleChoice};
use gpu_c2f::training::DEFAULT_SEED;
use gpu_c2f::{Architecture, Dataset, Model, TrainConfig, cpu};
use std::time::{Duration, Instant};

/// Median, min and max of a set of samples in milliseconds.
#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    count: usize,
}

impl Stat {
    fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            count: n,
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A number of milliseconds with about 3-4 significant digits.
fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else if v >= 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.6}")
    }
}

fn row(what: &str, stat: Option<Stat>, notes: &str) {
    match stat {
        Some(s) => println!(
            "| {what} | {} | {} | {} | {} | {notes} |",
            fmt_ms(s.median),
            fmt_ms(s.min),
            fmt_ms(s.max),
            s.count
        ),
        None => println!("| {what} | - | - | - | 0 | {notes} |"),
    }
}

fn first_line(error: &anyhow::Error) -> String {
    // The first line, and the next one too when the first only introduces it.
    let text = format!("{error:#}");
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut line = lines.next().unwrap_or("").to_string();
    if line.ends_with(':') {
        if let Some(next) = lines.next() {
            line = format!("{line} {next}");
        }
    }
    line.replace('|', "/")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unavailable".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

struct Settings {
    quick: bool,
    /// Repetitions of the setup, pipeline and seed-job measurements.
    reps: usize,
    /// Largest N of the per-epoch grid.
    max_n: u64,
    /// Wall-clock time one per-epoch cell aims to spend (all repetitions).
    cell_budget: Duration,
}

impl Settings {
    fn from_env() -> Self {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
            || std::env::args().any(|a| a == "--quick");
        let max_n = std::env::var("BENCH_MAX_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if quick { 100_000 } else { u64::MAX });
        Self {
            quick,
            reps: if quick { 3 } else { 11 },
            max_n,
            cell_budget: Duration::from_millis(if quick { 500 } else { 6000 }),
        }
    }
}

fn main() {
    let settings = Settings::from_env();
    let load_start = loadavg();
    let started = Instant::now();

    println!(
        "# gpu-c2f bench{}",
        if settings.quick { " (quick)" } else { "" }
    );
    println!();
    println!(
        "- date (UTC): {}",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M:%S"])
    );
    println!(
        "- CPU: {}, nproc {}",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("- kernel: {}", command_output("uname", &["-sr"]));
    println!(
        "- source: git {}",
        std::env::var("BENCH_SOURCE").unwrap_or_else(|_| command_output(
            "git",
            &["describe", "--always", "--dirty", "--abbrev=10"]
        ))
    );
    println!(
        "- LP_NUM_THREADS: {}; MESA_SHADER_CACHE_DISABLE: {}; MESA_SHADER_CACHE_DIR: {}",
        env_or("LP_NUM_THREADS", "unset"),
        env_or("MESA_SHADER_CACHE_DISABLE", "unset"),
        env_or(
            "MESA_SHADER_CACHE_DIR",
            "unset (~/.cache/mesa_shader_cache)"
        )
    );
    println!("- load average (1, 5, 15 min) at start: {load_start}");
    println!(
        "- note: shared, noisy machine: medians of a few repetitions; min/max show the spread"
    );

    // Device setup: the first in this process pays for loading the Vulkan
    // loader and the driver; later ones only for a new instance and device.
    let t = Instant::now();
    let first_gpu = Gpu::new(&AdapterSelector::Auto, BackendChoice::All);
    let first_setup = ms(t.elapsed());
    let gpu = match first_gpu {
        Ok(gpu) => gpu,
        Err(error) => {
            println!("- adapter: none ({})", first_line(&error.into()));
            println!();
            println!("No GPU adapter: only the CPU rows can run; skipping the GPU bench.");
            cpu_only(&settings);
            return;
        }
    };
    let timestamps = gpu.device.features().contains(wgpu_features_timestamp());
    let limits = gpu.device.limits();
    println!(
        "- adapter: {} ({}, {}, driver {})",
        gpu.info.name, gpu.info.backend, gpu.info.device_type, gpu.info.driver
    );
    println!(
        "- timestamp queries: {}; max storage buffer binding: {} MiB",
        if timestamps { "yes" } else { "no" },
        limits.max_storage_buffer_binding_size as u64 >> 20
    );
    println!();

    println!("## Setup and the seed job (1-3-3-1, 7 samples, 1000 epochs, seed {DEFAULT_SEED})");
    println!();
    println!("| what | median ms | min ms | max ms | reps | notes |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    row(
        "device setup, first in process",
        Stat::of(&[first_setup]),
        "`Gpu::new(Auto, All)`: loader, ICDs, adapters, device",
    );
    let mut setups = Vec::new();
    for _ in 0..settings.reps.min(5) {
        let t = Instant::now();
        let again = Gpu::new(&AdapterSelector::Auto, BackendChoice::All);
        setups.push(ms(t.elapsed()));
        drop(again);
    }
    row(
        "device setup, repeated",
        Stat::of(&setups),
        "new instance + device each time",
    );

    let initial = Model::glorot_uniform(Architecture::seed(), DEFAULT_SEED);
    let config = TrainConfig::seed();
    let mut fused_train = None;
    for (choice, name) in [
        (ScheduleChoice::Fused, "fused"),
        (ScheduleChoice::Samples, "samples"),
        (ScheduleChoice::Dispatch, "dispatch"),
    ] {
        let options = GpuOptions {
            schedule: choice,
            ..GpuOptions::default()
        };
        let mut pipelines = Vec::new();
        let mut upload = Vec::new();
        let mut train = Vec::new();
        let mut readback = Vec::new();
        let mut gpu_train = Vec::new();
        let mut total = Vec::new();
        let mut submits = 0;
        let mut first_pipelines = None;
        let mut failure = None;
        let mut prediction = f32::NAN;
        for _ in 0..settings.reps {
            let t = Instant::now();
            match gpu::train_with(&gpu, &initial, &config, &options, |_| {}) {
                Ok(run) => {
                    total.push(ms(t.elapsed()));
                    let timings = run.timings;
                    if first_pipelines.is_none() {
                        first_pipelines = Some(ms(timings.pipelines));
                    } else {
                        pipelines.push(ms(timings.pipelines));
                    }
                    upload.push(ms(timings.upload));
                    train.push(ms(timings.train));
                    readback.push(ms(timings.readback));
                    if let Some(g) = timings.gpu_train {
                        gpu_train.push(ms(g));
                    }
                    submits = timings.submits;
                    prediction = run.output.model.predict(100.0);
                }
                Err(error) => {
                    failure = Some(first_line(&error.into()));
                    break;
                }
            }
        }
        if let Some(failure) = failure {
            println!("| GPU {name}: seed job | refused: {failure} | | | | |");
            continue;
        }
        row(
            &format!("GPU {name}: pipelines, first"),
            first_pipelines.and_then(|p| Stat::of(&[p])),
            "shader module + pipelines (Mesa disk cache may be warm)",
        );
        row(
            &format!("GPU {name}: pipelines, repeated"),
            Stat::of(&pipelines),
            "same `Gpu`: its pipeline cache, nothing compiled",
        );
        row(
            &format!("GPU {name}: upload"),
            Stat::of(&upload),
            "buffers + writes",
        );
        row(
            &format!("GPU {name}: **train (host)**"),
            Stat::of(&train),
            &format!("record + submit + wait, {submits} submit(s)"),
        );
        row(
            &format!("GPU {name}: train (GPU timestamps)"),
            Stat::of(&gpu_train),
            if timestamps {
                "sum of the training passes' timestamps"
            } else {
                "no timestamp queries on this adapter"
            },
        );
        row(
            &format!("GPU {name}: readback"),
            Stat::of(&readback),
            "one map",
        );
        row(
            &format!("GPU {name}: train_with total"),
            Stat::of(&total),
            &format!("pipelines + upload + train + readback; 100 C -> {prediction:.5} F"),
        );
        if choice == ScheduleChoice::Fused {
            fused_train = Stat::of(&train);
        }
    }

    let (cpu_train, cpu_prediction) = seed_cpu(&initial, &config, settings.reps.max(5) * 3);
    row(
        "CPU reference: **train**",
        cpu_train,
        &format!("`cpu::train`, one thread; 100 C -> {cpu_prediction:.5} F"),
    );
    if let (Some(g), Some(c)) = (fused_train, cpu_train) {
        println!();
        println!(
            "Seed job: GPU fused train / CPU train = {:.0}x (medians {} ms / {} ms)",
            g.median / c.median,
            fmt_ms(g.median),
            fmt_ms(c.median)
        );
    }
    println!();
    println!("- load average after the seed job: {}", loadavg());
    println!();

    epoch_grid(Some(&gpu), &settings);

    println!();
    println!(
        "- load average at start: {load_start}; at end: {}",
        loadavg()
    );
    println!(
        "- bench wall time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn wgpu_features_timestamp() -> wgpu::Features {
    wgpu::Features::TIMESTAMP_QUERY
}

/// The seed job on the CPU: train times and the 100 C prediction.
fn seed_cpu(initial: &Model, config: &TrainConfig, reps: usize) -> (Option<Stat>, f32) {
    let mut times = Vec::new();
    let mut prediction = f32::NAN;
    for _ in 0..reps {
        let t = Instant::now();
        let out = cpu::train(initial, config).expect("the CPU reference trains the seed job");
        times.push(ms(t.elapsed()));
        prediction = out.model.predict(100.0);
    }
    (Stat::of(&times), prediction)
}

fn cpu_only(settings: &Settings) {
    let initial = Model::glorot_uniform(Architecture::seed(), DEFAULT_SEED);
    let (stat, prediction) = seed_cpu(&initial, &TrainConfig::seed(), 15);
    println!("| what | median ms | min ms | max ms | reps | notes |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    row(
        "CPU reference: train",
        stat,
        &format!("100 C -> {prediction:.5} F"),
    );
    println!();
    epoch_grid(None, settings);
}

/// One per-epoch measurement: ms per epoch over the repetitions.
struct Cell {
    per_epoch: Option<Stat>,
    gpu_per_epoch: Option<Stat>,
    epochs: usize,
    schedule: String,
    error: Option<String>,
}

impl Cell {
    fn refused(error: String) -> Self {
        Self {
            per_epoch: None,
            gpu_per_epoch: None,
            epochs: 0,
            schedule: String::new(),
            error: Some(error),
        }
    }

    fn text(&self) -> String {
        if let Some(error) = &self.error {
            return format!("refused: {error}");
        }
        match self.per_epoch {
            Some(s) => format!("{} ({}-{})", fmt_ms(s.median), fmt_ms(s.min), fmt_ms(s.max)),
            None => "-".into(),
        }
    }

    fn reps(&self) -> String {
        match self.per_epoch {
            Some(s) => format!("{} x {}", self.epochs, s.count),
            None => "-".into(),
        }
    }
}

/// Most epochs one per-epoch measurement runs.
const MAX_EPOCHS: usize = 100_000;

/// Runs `run(epochs)` (returning train time, optional GPU time, schedule):
/// twice with `probe_epochs` (the first run warms up), then with a growing
/// epoch count until one run takes about `budget / max_reps` (so the fixed
/// cost of a run, submission and wait, is spread over many epochs), then
/// `max_reps` repetitions (3 when that would overrun `budget`) at that size.
/// An epoch slower than 10 s is measured once, by the probe itself.
fn measure(
    budget: Duration,
    probe_epochs: usize,
    max_reps: usize,
    mut run: impl FnMut(usize) -> anyhow::Result<(Duration, Option<Duration>, String)>,
) -> Cell {
    let budget = budget.as_secs_f64();
    let target = budget / max_reps as f64;
    let mut epochs = probe_epochs;
    let mut sample = match run(epochs) {
        Ok(r) => r,
        Err(error) => return Cell::refused(first_line(&error)),
    };
    // The first run also pays for warm-up (page faults, first dispatch):
    // size the job on a second one unless an epoch is that slow anyway.
    if sample.0.as_secs_f64() / (epochs as f64) < 10.0 {
        sample = match run(epochs) {
            Ok(r) => r,
            Err(error) => return Cell::refused(first_line(&error)),
        };
    }
    while sample.0.as_secs_f64() < target * 0.5 && epochs < MAX_EPOCHS {
        let grow = (target / sample.0.as_secs_f64().max(1e-6)).clamp(2.0, 100.0);
        epochs = ((epochs as f64 * grow) as usize).min(MAX_EPOCHS);
        sample = match run(epochs) {
            Ok(r) => r,
            Err(error) => return Cell::refused(first_line(&error)),
        };
    }
    let per_epoch = sample.0.as_secs_f64() / epochs as f64;
    let mut host = Vec::new();
    let mut device = Vec::new();
    let mut schedule = sample.2.clone();
    let mut record =
        |epochs: usize, (train, gpu_time, _): &(Duration, Option<Duration>, String)| {
            host.push(ms(*train) / epochs as f64);
            if let Some(g) = gpu_time {
                device.push(ms(*g) / epochs as f64);
            }
        };
    if per_epoch > 10.0 {
        record(epochs, &sample);
    } else {
        let reps = if per_epoch * max_reps as f64 > budget {
            3
        } else {
            max_reps
        };
        epochs = ((budget / reps as f64 / per_epoch) as usize).clamp(1, MAX_EPOCHS);
        for _ in 0..reps {
            match run(epochs) {
                Ok(r) => {
                    record(epochs, &r);
                    schedule = r.2;
                }
                Err(error) => return Cell::refused(first_line(&error)),
            }
        }
    }
    Cell {
        per_epoch: Stat::of(&host),
        gpu_per_epoch: Stat::of(&device),
        epochs,
        schedule,
        error: None,
    }
}

/// Per-epoch time of full-batch training, N samples x hidden [w, w].
fn epoch_grid(gpu: Option<&Gpu>, settings: &Settings) {
    let all_n: [u64; 4] = [7, 1000, 100_000, 1_000_000];
    let ns: Vec<u64> = all_n.into_iter().filter(|&n| n <= settings.max_n).collect();
    let widths = [3usize, 64];
    println!("## Per-epoch time, full batch (ms per epoch: median (min-max))");
    println!();
    println!(
        "Data `Dataset::from_formula(N, {DEFAULT_SEED})`, hidden [w, w], Adam(0.1). GPU: auto \
         schedule (and dispatch too where auto picks samples), host time of `timings.train` / epochs (record, submit, wait; no pipelines, \
         upload or readback), and the GPU's timestamp time / epochs. CPU: `cpu::train`, one thread. \
         Each cell: probe runs that grow the epoch count until one run takes about 1/5 of \
         {:.1} s, then epochs x reps at that size (the fixed cost of a run is spread over its \
         epochs; an epoch over 10 s is timed once).",
        settings.cell_budget.as_secs_f64()
    );
    println!();
    println!(
        "| N | hidden | GPU schedule | GPU host ms/epoch | GPU timestamp ms/epoch | CPU ms/epoch | CPU / GPU | GPU epochs x reps | CPU epochs x reps |"
    );
    println!("| ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- |");
    for &n in &ns {
        let data = Dataset::from_formula(n, DEFAULT_SEED);
        for &w in &widths {
            let architecture = Architecture::new(&[w, w]).expect("valid widths");
            let initial = Model::glorot_uniform(architecture, DEFAULT_SEED);
            // Full batch: one Adam step per epoch over all N samples.
            let make_config = |epochs: usize| TrainConfig {
                data: data.clone(),
                epochs,
                batch_size: None,
                ..TrainConfig::seed()
            };
            // The big jobs: one epoch probes; small ones grow from 20.
            let probe = if n >= 100_000 { 1 } else { 20 };
            let gpu_cell = |schedule: ScheduleChoice| match gpu {
                Some(gpu) => measure(settings.cell_budget, probe, 5, |epochs| {
                    let config = make_config(epochs);
                    let options = GpuOptions {
                        schedule,
                        ..GpuOptions::default()
                    };
                    let run = gpu::train_with(gpu, &initial, &config, &options, |_| {})?;
                    Ok((
                        run.timings.train,
                        run.timings.gpu_train,
                        run.timings.schedule.name().to_string(),
                    ))
                }),
                None => Cell::refused("no adapter".into()),
            };
            let auto = gpu_cell(ScheduleChoice::Auto);
            let cpu_cell = measure(settings.cell_budget, probe, 5, |epochs| {
                let config = make_config(epochs);
                let out = cpu::train(&initial, &config)?;
                Ok((out.train_time, None, "cpu".into()))
            });
            grid_row(n, w, &auto, &cpu_cell);
            // Where auto runs the samples schedule, the layered kernels too,
            // for comparison.
            if auto.schedule == "samples" && n >= 1000 {
                grid_row(n, w, &gpu_cell(ScheduleChoice::Dispatch), &cpu_cell);
            }
        }
    }
    println!();
    println!("- load average after the per-epoch grid: {}", loadavg());
}

fn grid_row(n: u64, w: usize, gpu_cell: &Cell, cpu_cell: &Cell) {
    let ratio = match (gpu_cell.per_epoch, cpu_cell.per_epoch) {
        (Some(g), Some(c)) => format!("{:.2}", c.median / g.median),
        _ => "-".into(),
    };
    let gpu_ts = match gpu_cell.gpu_per_epoch {
        Some(s) => fmt_ms(s.median),
        None if gpu_cell.error.is_none() => "n/a".into(),
        None => "-".into(),
    };
    println!(
        "| {n} | {w},{w} | {} | {} | {gpu_ts} | {} | {ratio} | {} | {} |",
        if gpu_cell.schedule.is_empty() {
            "-"
        } else {
            &gpu_cell.schedule
        },
        gpu_cell.text(),
        cpu_cell.text(),
        gpu_cell.reps(),
        cpu_cell.reps(),
    );
}
