//! gpu-c2f in the browser: the page (web/index.html, web/main.js) calls
//! these functions, compiled to wasm32 with wasm-bindgen. Everything the
//! CLI shares is the library's own code: the same WGSL kernels through
//! wgpu's WebGPU backend, the same CSV reader, model files, CPU reference
//! and shadow check. The page's requests and results cross the boundary as
//! JSON; the training core ([`train_request`]) is plain async Rust, so the
//! tests below run it natively too (`cargo test -p gpu-c2f-web`, on the
//! machine's own adapter).

use gpu_c2f::compare::against_cpu;
use gpu_c2f::gpu::{self, AdapterSelector, BackendChoice, Gpu, GpuOptions, Progress};
use gpu_c2f::job::{self, HiddenLayer, Start};
use gpu_c2f::shadow::{Certificate, ShadowCheck};
use gpu_c2f::{Dataset, DenseWeights, Error, Job, TrainConfig, model_file};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// Loss-curve updates a run sends while it trains: one readback per
/// `1/PROGRESS_CHUNKS` of the epochs, never one per epoch.
pub const PROGRESS_CHUNKS: usize = 25;

/// A run as the page asks for it: the job, and what its files hold (the
/// page reads them; the job names them).
#[derive(Debug, Clone, Default)]
pub struct TrainRequest {
    /// Every option of the run.
    pub job: Job,
    /// The CSV text of `job.data`'s file (the page's table is one too).
    pub csv: Option<String>,
    /// The bytes of `job.init`'s model file.
    pub init: Option<Vec<u8>>,
}

/// What a run gives the page.
#[derive(Debug, Clone, Serialize)]
pub struct TrainResult {
    pub loss_history: Vec<f32>,
    /// Empty without a validation split.
    pub val_loss_history: Vec<f32>,
    /// Each metric's history under its name (and `val_` + name).
    pub metric_history: Vec<(String, Vec<f32>)>,
    /// The epoch early stopping stopped after (1-based), when it did.
    pub stopped_epoch: Option<usize>,
    /// The best epoch whose weights were restored, when they were.
    pub restored_epoch: Option<usize>,
    pub final_loss: f32,
    /// The job's `predict` rows and what the trained model gives for each.
    pub predictions: Vec<(Vec<f32>, Vec<f32>)>,
    /// How Adam started (`fresh`, or resumed from the model file).
    pub adam_start: String,
    /// The layers' weights in Keras's `get_weights()` layout.
    pub layers: Vec<DenseWeights>,
    pub architecture: String,
    pub adapter: String,
    pub schedule: String,
    pub timings_ms: Timings,
    /// Progress reports the run sent before it ended.
    pub progress_updates: usize,
}

/// Where a run's time went, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timings {
    pub pipelines: f64,
    /// Whether the run compiled its module (`false`: the page's `Gpu` had
    /// it from an earlier run of the same shape).
    pub compiled: bool,
    pub upload: f64,
    pub train: f64,
    /// The GPU's own time for the training passes (timestamp queries),
    /// where the adapter has them.
    pub gpu_train: Option<f64>,
    pub readback: f64,
    pub submits: usize,
    pub readbacks: usize,
}

/// A finished run, kept for the CPU check, the downloads and `predict`.
pub struct LastRun {
    /// What ran.
    pub job: Job,
    /// Its starting model and Adam.
    pub start: Start,
    /// Its configuration, as the job planned it.
    pub config: TrainConfig,
    /// The GPU's output and timings.
    pub run: gpu::GpuTrainOutput,
    /// Its shadow check, taken as it ran.
    pub check: ShadowCheck,
    /// Where it ran.
    pub adapter: gpu::GpuInfo,
}

thread_local! {
    static GPU: RefCell<Option<Rc<Gpu>>> = const { RefCell::new(None) };
    static LAST: RefCell<Option<LastRun>> = const { RefCell::new(None) };
}

fn js_error(error: impl std::fmt::Display) -> JsError {
    JsError::new(&error.to_string())
}

/// The run's start and configuration: [`Job::plan`], the one call that
/// makes a run of a job, with the page's files.
pub fn plan_request(request: &TrainRequest) -> Result<(Start, TrainConfig), Error> {
    let (start, config) = (request.job).plan(request.csv.as_deref(), request.init.as_deref())?;
    if request.job.epochs == 0 {
        return Err(Error::InvalidConfig("train for at least 1 epoch".into()));
    }
    Ok((start, config))
}

/// The shadow check replays at most this much work (training rows x
/// parameters) between two submissions: the page's thread is the check's,
/// so this bounds how long the page stops responding (about 30 ms in
/// headless Chromium on SwiftShader, on a 2-core machine).
const CHECK_WORK_PER_SUBMIT: usize = 1 << 18;

/// Epochs per submission: [`PROGRESS_CHUNKS`] chunks a run, fewer epochs
/// where the check's work between them would exceed
/// [`CHECK_WORK_PER_SUBMIT`].
fn epochs_per_submit(config: &TrainConfig, model: &gpu_c2f::Model) -> usize {
    let epoch_work = config.training_len() * model.params().len();
    let by_work = CHECK_WORK_PER_SUBMIT / epoch_work.max(1);
    (config.epochs / PROGRESS_CHUNKS).min(by_work).max(1)
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Trains `request` on `gpu`, checking every step on the CPU as it runs
/// (the shadow check, between submissions) and streaming the losses in
/// [`PROGRESS_CHUNKS`] chunks to `on_progress`.
pub async fn train_request(
    gpu: &Gpu,
    request: &TrainRequest,
    mut on_progress: impl FnMut(Progress<'_>),
) -> Result<(TrainResult, LastRun), Error> {
    let (start, config) = plan_request(request)?;
    let initial = &start.model;
    let options = GpuOptions {
        schedule: request.job.schedule,
        epochs_per_submit: Some(epochs_per_submit(&config, initial)),
        record_steps: true,
        stream_losses: true,
        ..GpuOptions::default()
    };
    let mut updates = 0;
    let checked = gpu::train_checked_async(gpu, initial, &config, &options, |progress| {
        updates += 1;
        on_progress(progress)
    })
    .await?;
    let run = &checked.run;
    let output = &run.output;
    let timings = &run.timings;
    let early_stop = output.early_stop.as_ref();
    let result = TrainResult {
        loss_history: output.loss_history.clone(),
        val_loss_history: output.val_loss_history.clone(),
        metric_history: output.metric_history.clone(),
        stopped_epoch: early_stop.and_then(|stop| stop.stopped_epoch),
        restored_epoch: early_stop.filter(|s| s.restored).map(|s| s.best_epoch),
        final_loss: output.final_loss(),
        predictions: (request.job.predict.iter())
            .map(|row| (row.clone(), output.model.predict_row(row)))
            .collect(),
        adam_start: start.adam_start(),
        layers: output.model.dense_weights(),
        architecture: output.model.architecture().describe(),
        adapter: gpu.info.name.clone(),
        schedule: timings.schedule.name().to_string(),
        timings_ms: Timings {
            pipelines: ms(timings.pipelines),
            compiled: timings.compiled,
            upload: ms(timings.upload),
            train: ms(timings.train),
            gpu_train: timings.gpu_train.map(ms),
            readback: ms(timings.readback),
            submits: timings.submits,
            readbacks: timings.readbacks,
        },
        progress_updates: updates,
    };
    let last = LastRun {
        job: request.job.clone(),
        start,
        config,
        run: checked.run,
        check: checked.check,
        adapter: gpu.info.clone(),
    };
    Ok((result, last))
}

/// The CPU check of a run, as `--compare` makes it: the shadow check,
/// taken as the run went on, decides, as the certificate says
/// ([`Certificate`]); the whole-run comparison with the CPU reference is
/// information; a CPU reference that fails fails the check.
fn check_run(last: &LastRun, user_agent: Option<String>) -> String {
    let rows: Vec<Vec<f32>> = last.job.predict.clone();
    let mut certificate = Certificate::new(&last.job, &last.adapter, &last.check, user_agent);
    let reference = against_cpu(&last.start.model, &last.config, &last.run.output, &rows);
    let (comparison, cpu_predictions) = match &reference {
        Ok((reference, comparison)) => (
            Some(comparison),
            (rows.iter())
                .map(|row| reference.model.predict_row(row))
                .collect(),
        ),
        Err(error) => {
            certificate.passed = false;
            certificate.why = Some(format!("the CPU reference failed: {error}"));
            (None, Vec::new())
        }
    };
    serde_json::json!({
        "certificate": certificate,
        "shadow_check": last.check,
        "comparison": comparison,
        "cpu_predictions": cpu_predictions,
    })
    .to_string()
}

/// The adapter's name when wgpu has none (browsers often leave WebGPU's
/// `description` empty; the page knows vendor and architecture).
static FALLBACK_NAME: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Opens the browser's WebGPU adapter and says which it is, as JSON (`name`,
/// `backend`, `device_type`, `driver`); `fallback_name` names it when the
/// browser does not.
#[wasm_bindgen]
pub async fn open_gpu(fallback_name: String) -> Result<String, JsError> {
    *FALLBACK_NAME.lock().map_err(js_error)? = fallback_name;
    let gpu = open().await.map_err(js_error)?;
    serde_json::to_string(&gpu.info).map_err(js_error)
}

/// The open GPU, opening it (again, after a lost device) when there is none.
async fn open() -> Result<Rc<Gpu>, Error> {
    if let Some(gpu) = GPU.with(|slot| slot.borrow().clone()) {
        return Ok(gpu);
    }
    let mut gpu = Gpu::request(&AdapterSelector::Auto, BackendChoice::All).await?;
    if gpu.info.name.is_empty() {
        gpu.info.name = FALLBACK_NAME
            .lock()
            .map(|name| name.clone())
            .unwrap_or_default();
    }
    let gpu = Rc::new(gpu);
    GPU.with(|slot| *slot.borrow_mut() = Some(gpu.clone()));
    Ok(gpu)
}

/// Trains `job` (JSON, [`Job`]) on the opened GPU, `csv` the text of the
/// data file it names and `init` the bytes of its model file; calls
/// `on_progress(epochs, newLosses: Float32Array)` as chunks of epochs
/// finish. Returns the result as JSON ([`TrainResult`]).
#[wasm_bindgen]
pub async fn train(
    job: String,
    csv: Option<String>,
    init: Option<Vec<u8>>,
    on_progress: js_sys::Function,
) -> Result<String, JsError> {
    let request = TrainRequest {
        job: Job::from_json(&job).map_err(js_error)?,
        csv,
        init,
    };
    let gpu = open().await.map_err(js_error)?;
    let report = |progress: Progress<'_>| {
        let losses = js_sys::Float32Array::from(progress.new_losses);
        // A failing callback is the page's bug; training goes on.
        let _ = on_progress.call2(&JsValue::NULL, &progress.epochs.into(), &losses);
    };
    let (result, last) = match train_request(&gpu, &request, report).await {
        Ok(done) => done,
        Err(error @ Error::DeviceLost { .. }) => {
            // The next run opens the GPU anew.
            GPU.with(|slot| *slot.borrow_mut() = None);
            return Err(JsError::new(&format!(
                "{error}. Train again to open the GPU anew, or reload the page."
            )));
        }
        Err(error) => return Err(js_error(error)),
    };
    LAST.with(|slot| *slot.borrow_mut() = Some(last));
    serde_json::to_string(&result).map_err(js_error)
}

fn with_last<T>(f: impl FnOnce(&LastRun) -> Result<T, JsError>) -> Result<T, JsError> {
    LAST.with(|slot| match slot.borrow().as_ref() {
        Some(last) => f(last),
        None => Err(JsError::new("train first")),
    })
}

/// The last trained model's outputs for one input row.
#[wasm_bindgen]
pub fn predict(row: Vec<f32>) -> Result<Vec<f32>, JsError> {
    with_last(|last| {
        let inputs = last.start.model.architecture().widths()[0];
        if row.len() != inputs || row.iter().any(|x| !x.is_finite()) {
            return Err(JsError::new(&format!(
                "give {inputs} finite number(s), one per input column ({})",
                last.job.x.join(", ")
            )));
        }
        Ok(last.run.output.model.predict_row(&row))
    })
}

/// The CPU check of the last run (`check_run`) with the certificate, as
/// JSON; `user_agent` is the browser's, for the certificate.
#[wasm_bindgen]
pub fn check_against_cpu(user_agent: String) -> Result<String, JsError> {
    with_last(|last| Ok(check_run(last, Some(user_agent))))
}

/// The last trained model as `--save NAME` writes it, its format by the
/// name's extension (`.keras`, `.json`, `.weights.h5`, `.safetensors`,
/// `.onnx`), with the keys the CLI's file has.
#[wasm_bindgen]
pub fn model_file(name: String) -> Result<Vec<u8>, JsError> {
    with_last(|last| {
        let format = model_file::Format::of(std::path::Path::new(&name)).map_err(js_error)?;
        let output = &last.run.output;
        let keys = last.start.file_keys(&last.config, output, &last.adapter);
        let saved = model_file::SavedModel::of_run(&last.config, output);
        format.to_bytes(&saved, &keys).map_err(js_error)
    })
}

/// The last run's job as a Keras 3 program (Python): the same network,
/// starting weights and settings ([`gpu_c2f::keras_script`]).
#[wasm_bindgen]
pub fn keras_script() -> Result<String, JsError> {
    with_last(|last| {
        Ok(gpu_c2f::keras_script::keras_script(
            &last.job,
            &last.start,
            &last.config,
        ))
    })
}

/// What the page offers (activations, losses, metrics, schedules) and the
/// default job, as JSON ([`job::choices`]).
#[wasm_bindgen]
pub fn choices() -> String {
    serde_json::to_string(&job::choices()).expect("the choices serialise")
}

/// A job's JSON, checked as the CLI checks its flags; the error names what
/// is wrong.
#[wasm_bindgen]
pub fn check_job(job: String) -> Result<(), JsError> {
    Job::from_json(&job)
        .and_then(|job| job.check())
        .map_err(js_error)
}

/// `--hidden`'s text (`16:relu,8:tanh`, `none`) as the job's layers (JSON).
#[wasm_bindgen]
pub fn parse_hidden(text: String) -> Result<String, JsError> {
    let layers = HiddenLayer::parse_list(&text).map_err(|why| JsError::new(&why))?;
    serde_json::to_string(&layers).map_err(js_error)
}

/// A headerless CSV file's pairs, read as the CLI reads `--data`, as JSON
/// (`celsius`, `fahrenheit`); errors name the line and column.
#[wasm_bindgen]
pub fn parse_csv(text: String) -> Result<String, JsError> {
    let data = Dataset::from_csv_str(&text, None).map_err(js_error)?;
    Ok(serde_json::json!({"celsius": data.x, "fahrenheit": data.y}).to_string())
}

/// A CSV file's header (its column names, JSON), or `null` without one.
#[wasm_bindgen]
pub fn csv_columns(text: String) -> String {
    serde_json::to_string(&Dataset::csv_header(&text, None)).expect("names serialise")
}

/// A model file's network, checked as `--init` checks it (`name` says its
/// format): its architecture, hidden widths, whether it names its
/// activations, and how Adam would start, as JSON.
#[wasm_bindgen]
pub fn parse_model(name: String, bytes: Vec<u8>) -> Result<String, JsError> {
    let format = model_file::Format::of(std::path::Path::new(&name)).map_err(js_error)?;
    let loaded = format.parse(&bytes).map_err(js_error)?;
    let widths = loaded.model.architecture().widths();
    Ok(serde_json::json!({
        "architecture": loaded.model.architecture().describe(),
        "hidden": &widths[1..widths.len() - 1],
        "has_activations": loaded.has_activations,
        "resumes_adam": loaded.optimizer.is_some(),
    })
    .to_string())
}

/// The shipped examples (examples/data/, README.md's table), each its
/// data file and the job README.md runs on it.
const EXAMPLES: [(&str, &str, &str, &str); 4] = [
    (
        "sine, relu",
        "sine.csv",
        include_str!("../../examples/data/sine.csv"),
        r#"{"data": {"csv": "sine.csv"}, "x": ["x"], "y": ["y"], "learning_rate": 0.01,
            "hidden": [{"units": 16, "activation": "relu"}, {"units": 16, "activation": "relu"}],
            "predict": [[1.0]]}"#,
    ),
    (
        "sine, tanh + huber",
        "sine.csv",
        include_str!("../../examples/data/sine.csv"),
        r#"{"data": {"csv": "sine.csv"}, "x": ["x"], "y": ["y"], "learning_rate": 0.01,
            "hidden": [{"units": 16, "activation": "tanh"}, {"units": 16, "activation": "tanh"}],
            "loss": "huber", "predict": [[1.0]]}"#,
    ),
    (
        "wind chill (2 inputs)",
        "wind_chill.csv",
        include_str!("../../examples/data/wind_chill.csv"),
        r#"{"data": {"csv": "wind_chill.csv"}, "x": ["celsius", "wind_kmh"], "y": ["wind_chill"],
            "hidden": [{"units": 16, "activation": "relu"}, {"units": 16, "activation": "relu"}],
            "learning_rate": 0.003, "epochs": 1500, "predict": [[-20.0, 30.0]]}"#,
    ),
    (
        "warm days (sigmoid)",
        "warm.csv",
        include_str!("../../examples/data/warm.csv"),
        r#"{"data": {"csv": "warm.csv"}, "y": ["warm"], "hidden": [{"units": 8, "activation": "relu"}],
            "output_activation": "sigmoid", "loss": "binary_crossentropy", "learning_rate": 0.05,
            "epochs": 300, "metrics": ["accuracy"], "predict": [[10.0], [30.0]]}"#,
    ),
];

/// The shipped examples as JSON: each `{name, file, csv, job}`.
#[wasm_bindgen]
pub fn examples() -> Result<String, JsError> {
    let examples = (EXAMPLES.iter())
        .map(|&(name, file, csv, job)| {
            let job = Job::from_json(job)?;
            Ok(serde_json::json!({"name": name, "file": file, "csv": csv, "job": job}))
        })
        .collect::<Result<Vec<_>, Error>>()
        .map_err(js_error)?;
    serde_json::to_string(&examples).map_err(js_error)
}

/// The seed program's 7 pairs, as JSON (`celsius`, `fahrenheit`).
#[wasm_bindgen]
pub fn seed_pairs() -> String {
    let data = Dataset::seed();
    serde_json::json!({"celsius": data.x, "fahrenheit": data.y}).to_string()
}

/// The least-squares line's value at 100 °C for `celsius` -> `fahrenheit`
/// pairs (JSON): what every converged run lands on.
#[wasm_bindgen]
pub fn least_squares_at_100(pairs: String) -> Result<f64, JsError> {
    #[derive(Deserialize)]
    struct Pairs {
        celsius: Vec<f32>,
        fahrenheit: Vec<f32>,
    }
    let pairs: Pairs = serde_json::from_str(&pairs).map_err(js_error)?;
    let (slope, intercept) = Dataset::new(pairs.celsius, pairs.fahrenheit).least_squares_line();
    Ok(slope * 100.0 + intercept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpu_c2f::job::DataSource;

    fn seed_request() -> TrainRequest {
        TrainRequest {
            job: Job {
                predict: vec![vec![100.0]],
                ..Job::default()
            },
            ..TrainRequest::default()
        }
    }

    #[test]
    fn every_shipped_example_plans_with_its_data() {
        for (name, _, csv, job) in EXAMPLES {
            let job = Job::from_json(job).unwrap();
            let (start, config) = job.plan(Some(csv), None).unwrap();
            assert!(
                config.data.len() >= 120,
                "{name}: {} rows",
                config.data.len()
            );
            assert_eq!(
                start.model.architecture().widths()[0],
                job.x.len(),
                "{name}"
            );
        }
    }

    #[test]
    fn bad_requests_are_refused_before_any_gpu_work() {
        let mut request = seed_request();
        request.job.data = DataSource::Csv("pairs.csv".into());
        request.csv = Some("celsius,fahrenheit\n1,2\n3\n".into());
        assert!(matches!(plan_request(&request), Err(Error::Data { .. })));
        request.csv = None;
        let error = plan_request(&request).unwrap_err().to_string();
        assert!(error.contains("open that CSV file"), "{error}");
        let mut request = seed_request();
        request.job.epochs = 0;
        assert!(matches!(
            plan_request(&request),
            Err(Error::InvalidConfig(_))
        ));
        let mut request = seed_request();
        request.job.init = Some("model.json".into());
        request.init = Some(b"{}".to_vec());
        assert!(matches!(
            plan_request(&request),
            Err(Error::ModelFile { .. })
        ));
        let mut request = seed_request();
        request.job.loss = "hinge".into();
        assert!(matches!(
            plan_request(&request),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn the_page_trains_the_seed_job_streams_it_and_passes_the_cpu_check() {
        let gpu = pollster::block_on(Gpu::request(&AdapterSelector::Auto, BackendChoice::All))
            .expect("an adapter");
        let mut streamed = Vec::new();
        let request = seed_request();
        let (result, last) = pollster::block_on(train_request(&gpu, &request, |progress| {
            streamed.extend_from_slice(progress.new_losses)
        }))
        .unwrap();
        assert_eq!(streamed, result.loss_history);
        assert!(result.progress_updates >= 2, "{}", result.progress_updates);
        // tests/seed_job.rs explains the 0.01 F.
        let (slope, intercept) = Dataset::seed().least_squares_line();
        let at_100 = result.predictions[0].1[0] as f64;
        assert!((at_100 - (slope * 100.0 + intercept)).abs() < 0.01);
        let check: serde_json::Value =
            serde_json::from_str(&check_run(&last, Some("test".into()))).unwrap();
        let certificate = &check["certificate"];
        assert_eq!(certificate["passed"], true, "{check}");
        assert_eq!(certificate["steps_checked"], 1000);
        assert_eq!(certificate["job"]["epochs"], 1000);
        assert_eq!(certificate["user_agent"], "test");
    }
}
