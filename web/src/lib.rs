//! gpu-c2f in the browser: the page (web/index.html, web/main.js) calls
//! these functions, compiled to wasm32 with wasm-bindgen. Everything the
//! CLI shares is the library's own code: the same WGSL kernels through
//! wgpu's WebGPU backend, the same CSV reader, model files, CPU reference
//! and shadow check. The page's requests and results cross the boundary as
//! JSON; the training core ([`train_request`]) is plain async Rust, so the
//! tests below run it natively too (`cargo test -p gpu-c2f-web`, on the
//! machine's own adapter).

use gpu_c2f::compare::{GPU_CPU_TOLERANCE, compare};
use gpu_c2f::gpu::{self, AdapterSelector, BackendChoice, Gpu, GpuOptions, Progress};
use gpu_c2f::shadow::{self, ShadowCheck};
use gpu_c2f::{Architecture, Dataset, DenseWeights, Error, Model, TrainConfig, cpu, model_file};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// Loss-curve updates a run sends while it trains: one readback per
/// `1/PROGRESS_CHUNKS` of the epochs, never one per epoch.
pub const PROGRESS_CHUNKS: usize = 25;

/// A training run as the page asks for it (the CLI's flags, by name).
#[derive(Debug, Clone, Deserialize)]
pub struct TrainRequest {
    /// `--epochs`.
    pub epochs: usize,
    /// `--learning-rate`.
    pub learning_rate: f32,
    /// `--hidden`: the hidden layers' widths (ignored with `init_model`).
    pub hidden: Vec<usize>,
    /// `--batch-size` (`None`: the whole dataset).
    pub batch_size: Option<usize>,
    /// `--seed`: the initial weights' and the shuffle's.
    pub seed: u64,
    /// `--shuffle` (default true).
    #[serde(default = "shuffle_by_default")]
    pub shuffle: bool,
    /// `--schedule`: auto, fused, samples or dispatch.
    pub schedule: String,
    /// The training pairs.
    pub celsius: Vec<f32>,
    pub fahrenheit: Vec<f32>,
    /// `--init`: a model file's text to start from instead of fresh weights.
    pub init_model: Option<String>,
    /// That file's name, for the saved model's `init` key.
    #[serde(default)]
    pub init_model_name: Option<String>,
}

fn shuffle_by_default() -> bool {
    true
}

/// What a run gives the page.
#[derive(Debug, Clone, Serialize)]
pub struct TrainResult {
    pub loss_history: Vec<f32>,
    pub final_loss: f32,
    pub prediction_100: f32,
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

/// The last run, kept for the CPU check, the model download and `predict`.
struct LastRun {
    initial: Model,
    config: TrainConfig,
    run: gpu::GpuTrainOutput,
    /// Its shadow check, taken as it ran.
    check: ShadowCheck,
    /// The initialisation seed (none with a model file), as the CLI reports it.
    init_seed: Option<u64>,
    /// Where the weights came from: "glorot_uniform" or the model file's name.
    init: String,
    adapter: gpu::GpuInfo,
}

thread_local! {
    static GPU: RefCell<Option<Rc<Gpu>>> = const { RefCell::new(None) };
    static LAST: RefCell<Option<LastRun>> = const { RefCell::new(None) };
}

fn js_error(error: impl std::fmt::Display) -> JsError {
    JsError::new(&error.to_string())
}

/// The run's initial model and configuration, checked as the CLI checks them.
pub fn plan_request(request: &TrainRequest) -> Result<(Model, TrainConfig), Error> {
    let data = Dataset::new(request.celsius.clone(), request.fahrenheit.clone());
    if data.x.len() != data.y.len() {
        return Err(Error::data(
            None,
            None,
            "every row needs a celsius and a fahrenheit value",
        ));
    }
    let initial = match &request.init_model {
        Some(text) => model_file::parse(text)?,
        None => Model::glorot_uniform(Architecture::new(&request.hidden)?, request.seed),
    };
    let config = TrainConfig {
        data,
        epochs: request.epochs,
        learning_rate: request.learning_rate,
        batch_size: request.batch_size,
        shuffle_seed: request.seed,
        shuffle: request.shuffle,
        loss: Default::default(),
        validation_split: 0.0,
        early_stopping: None,
        metrics: Vec::new(),
        // The page starts Adam fresh, also from a model file with Adam's
        // state (the page's own issue, #22, brings resuming).
        adam_state: None,
    };
    config.validate()?;
    if request.epochs == 0 {
        return Err(Error::InvalidConfig("train for at least 1 epoch".into()));
    }
    Ok((initial, config))
}

fn schedule_choice(name: &str) -> Result<gpu::ScheduleChoice, Error> {
    gpu::ScheduleChoice::from_name(name).ok_or_else(|| {
        Error::InvalidConfig(format!(
            "unknown schedule {name:?}: auto, fused, samples or dispatch"
        ))
    })
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
) -> Result<(TrainResult, Model, TrainConfig, gpu::CheckedRun), Error> {
    let (initial, config) = plan_request(request)?;
    let options = GpuOptions {
        schedule: schedule_choice(&request.schedule)?,
        epochs_per_submit: Some((config.epochs / PROGRESS_CHUNKS).max(1)),
        record_steps: true,
        stream_losses: true,
        ..GpuOptions::default()
    };
    let mut updates = 0;
    let checked = gpu::train_checked_async(gpu, &initial, &config, &options, |progress| {
        updates += 1;
        on_progress(progress)
    })
    .await?;
    let run = &checked.run;
    let output = &run.output;
    let timings = &run.timings;
    let result = TrainResult {
        loss_history: output.loss_history.clone(),
        final_loss: output.final_loss(),
        prediction_100: output.model.predict(100.0),
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
    Ok((result, initial, config, checked))
}

/// The CPU check of a run, as `--compare` makes it: the shadow check,
/// taken as the run went on, decides ([`shadow::verdict`]); the whole-run
/// comparison is information; a CPU reference that fails fails the check.
pub fn check_run(
    initial: &Model,
    config: &TrainConfig,
    run: &gpu::GpuTrainOutput,
    check: &ShadowCheck,
) -> String {
    let reference = cpu::train(initial, config);
    let (comparison, cpu_prediction_100, verdict) = match &reference {
        Ok(reference) => {
            let comparison = compare(reference, &run.output, &[vec![100.0]], GPU_CPU_TOLERANCE);
            let verdict = shadow::verdict(check);
            (
                Some(comparison),
                Some(reference.model.predict(100.0)),
                verdict,
            )
        }
        Err(error) => (
            None,
            None,
            Err(format!("the CPU reference failed: {error}")),
        ),
    };
    serde_json::json!({
        "passed": verdict.is_ok(),
        "why": verdict.err(),
        "shadow_check": check,
        "comparison": comparison,
        "cpu_prediction_100": cpu_prediction_100,
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

/// Trains the request (JSON, [`TrainRequest`]) on the opened GPU; calls
/// `on_progress(epochs, newLosses: Float32Array)` as chunks of epochs finish.
/// Returns the result as JSON ([`TrainResult`]).
#[wasm_bindgen]
pub async fn train(request: String, on_progress: js_sys::Function) -> Result<String, JsError> {
    let request: TrainRequest = serde_json::from_str(&request).map_err(js_error)?;
    let gpu = open().await.map_err(js_error)?;
    let report = |progress: Progress<'_>| {
        let losses = js_sys::Float32Array::from(progress.new_losses);
        // A failing callback is the page's bug; training goes on.
        let _ = on_progress.call2(&JsValue::NULL, &progress.epochs.into(), &losses);
    };
    let (result, initial, config, checked) = match train_request(&gpu, &request, report).await {
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
    LAST.with(|slot| {
        *slot.borrow_mut() = Some(LastRun {
            initial,
            config,
            run: checked.run,
            check: checked.check,
            init_seed: request.init_model.is_none().then_some(request.seed),
            init: match &request.init_model {
                Some(_) => request
                    .init_model_name
                    .clone()
                    .unwrap_or_else(|| "a model file".into()),
                None => "glorot_uniform".into(),
            },
            adapter: gpu.info.clone(),
        })
    });
    serde_json::to_string(&result).map_err(js_error)
}

fn with_last<T>(f: impl FnOnce(&LastRun) -> Result<T, JsError>) -> Result<T, JsError> {
    LAST.with(|slot| match slot.borrow().as_ref() {
        Some(last) => f(last),
        None => Err(JsError::new("train first")),
    })
}

/// The last trained model's prediction for `celsius`.
#[wasm_bindgen]
pub fn predict(celsius: f32) -> Result<f32, JsError> {
    with_last(|last| Ok(last.run.output.model.predict(celsius)))
}

/// The CPU check of the last run ([`check_run`]), as JSON.
#[wasm_bindgen]
pub fn check_against_cpu() -> Result<String, JsError> {
    with_last(|last| {
        let check = check_run(&last.initial, &last.config, &last.run, &last.check);
        Ok(check)
    })
}

/// The last trained model as the CLI's `--save` writes it.
#[wasm_bindgen]
pub fn model_json() -> Result<String, JsError> {
    with_last(|last| {
        // The keys the CLI's --save writes (Report::model_file_keys).
        let extra = serde_json::json!({
            "seed": last.init_seed,
            "init": last.init,
            "epochs": last.config.epochs,
            "learning_rate": last.config.learning_rate,
            "final_loss": last.run.output.final_loss(),
            "device": last.adapter,
        });
        model_file::to_json(&last.run.output.model, &extra).map_err(js_error)
    })
}

/// A CSV file's pairs, read as the CLI reads `--data`, as JSON
/// (`celsius`, `fahrenheit`); errors name the line and column.
#[wasm_bindgen]
pub fn parse_csv(text: String) -> Result<String, JsError> {
    let data = Dataset::from_csv_str(&text, None).map_err(js_error)?;
    Ok(serde_json::json!({"celsius": data.x, "fahrenheit": data.y}).to_string())
}

/// A model file's network, checked as `--init` checks it: its hidden widths
/// as JSON.
#[wasm_bindgen]
pub fn parse_model(text: String) -> Result<String, JsError> {
    let model = model_file::parse(&text).map_err(js_error)?;
    let widths = model.architecture().widths();
    Ok(serde_json::json!({
        "architecture": model.architecture().describe(),
        "hidden": &widths[1..widths.len() - 1],
    })
    .to_string())
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

    fn seed_request() -> TrainRequest {
        let data = Dataset::seed();
        TrainRequest {
            epochs: 1000,
            learning_rate: 0.1,
            hidden: vec![3, 3],
            batch_size: Some(32),
            seed: 42,
            shuffle: true,
            schedule: "auto".into(),
            celsius: data.x,
            fahrenheit: data.y,
            init_model: None,
            init_model_name: None,
        }
    }

    #[test]
    fn bad_requests_are_refused_before_any_gpu_work() {
        let mut request = seed_request();
        request.fahrenheit.pop();
        assert!(matches!(plan_request(&request), Err(Error::Data { .. })));
        let request = TrainRequest {
            epochs: 0,
            ..seed_request()
        };
        assert!(matches!(
            plan_request(&request),
            Err(Error::InvalidConfig(_))
        ));
        let request = TrainRequest {
            init_model: Some("{}".into()),
            ..seed_request()
        };
        assert!(matches!(
            plan_request(&request),
            Err(Error::ModelFile { .. })
        ));
        assert!(schedule_choice("fastest").is_err());
    }

    #[test]
    fn the_page_trains_the_seed_job_streams_it_and_passes_the_cpu_check() {
        let gpu = pollster::block_on(Gpu::request(&AdapterSelector::Auto, BackendChoice::All))
            .expect("an adapter");
        let mut streamed = Vec::new();
        let (result, initial, config, checked) =
            pollster::block_on(train_request(&gpu, &seed_request(), |progress| {
                streamed.extend_from_slice(progress.new_losses)
            }))
            .unwrap();
        assert_eq!(streamed, result.loss_history);
        assert!(result.progress_updates >= 2, "{}", result.progress_updates);
        // tests/seed_job.rs explains the 0.01 F.
        let (slope, intercept) = Dataset::seed().least_squares_line();
        assert!((result.prediction_100 as f64 - (slope * 100.0 + intercept)).abs() < 0.01);
        let check: serde_json::Value =
            serde_json::from_str(&check_run(&initial, &config, &checked.run, &checked.check))
                .unwrap();
        assert_eq!(check["passed"], true, "{check}");
        assert_eq!(check["shadow_check"]["steps_checked"], 1000);
    }
}
