//! Finding an adapter, opening a device on it, and turning every way that
//! can fail into an error that says what was found and what to do.

use super::abi::STORAGE_BUFFERS_PER_STAGE;
use super::pipelines::PipelineCache;
use crate::error::{Error, Result, fail};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which wgpu backends to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum BackendChoice {
    /// Every backend compiled in (or `WGPU_BACKEND` when it is set).
    All,
    /// Vulkan only.
    Vulkan,
    /// OpenGL ES (wgpu's GL backend) only.
    Gl,
    /// Metal only (Apple platforms).
    Metal,
    /// Direct3D 12 only (Windows).
    Dx12,
}

impl BackendChoice {
    /// The wgpu backends this choice stands for.
    pub fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::All => wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all()),
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Gl => wgpu::Backends::GL,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
        }
    }
}

/// How to pick an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterSelector {
    /// The best one found: discrete > integrated > virtual > CPU, and on a
    /// tie Vulkan/Metal/DX12 before GL (one device often shows up under
    /// several backends, and GL is the slowest road to it).
    Auto,
    /// The adapter with this index in `--list-adapters`.
    Index(usize),
    /// The first adapter (in `Auto`'s order) whose name contains this text,
    /// case-insensitive.
    Name(String),
}

impl AdapterSelector {
    /// `auto`, a list index, or a piece of the adapter's name.
    pub fn parse(text: &str) -> Self {
        if text.eq_ignore_ascii_case("auto") {
            AdapterSelector::Auto
        } else if let Ok(index) = text.parse() {
            AdapterSelector::Index(index)
        } else {
            AdapterSelector::Name(text.to_string())
        }
    }

    /// `flag` parsed (`--adapter`), else [`ADAPTER_NAME_VARIABLE`] as a part
    /// of a name (as wgpu's own tools read it), else `auto`.
    pub fn from_flag_or_env(flag: Option<&str>) -> Self {
        match (flag, std::env::var(ADAPTER_NAME_VARIABLE)) {
            (Some(flag), _) => AdapterSelector::parse(flag),
            (None, Ok(name)) if !name.is_empty() => AdapterSelector::Name(name),
            _ => AdapterSelector::Auto,
        }
    }
}

/// The environment variable wgpu's tools read an adapter name from.
pub const ADAPTER_NAME_VARIABLE: &str = "WGPU_ADAPTER_NAME";

/// What the report says about the adapter that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuInfo {
    /// The adapter's name, as the driver reports it.
    pub name: String,
    /// The wgpu backend it was found on, such as `vulkan`.
    pub backend: String,
    /// `discrete GPU`, `integrated GPU`, `virtual GPU`, `CPU (software)` or
    /// `other`.
    pub device_type: String,
    /// Driver name and driver info, joined by a space; empty when the adapter
    /// reports neither.
    pub driver: String,
}

impl GpuInfo {
    /// The report's summary of wgpu's adapter info.
    pub fn from_adapter(info: &wgpu::AdapterInfo) -> Self {
        let driver = [info.driver.as_str(), info.driver_info.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            name: info.name.clone(),
            backend: info.backend.to_str().to_string(),
            device_type: device_type_name(info.device_type).to_string(),
            driver,
        }
    }
}

fn device_type_name(device_type: wgpu::DeviceType) -> &'static str {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "CPU (software)",
        wgpu::DeviceType::Other => "other",
    }
}

/// Lower is better: the order `--adapter auto` prefers.
fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    (device, backend)
}

/// An opened device, its queue, and what went wrong on it so far.
pub struct Gpu {
    /// The logical device the run's buffers and pipelines are created on.
    pub device: wgpu::Device,
    /// The device's queue: uploads and training submissions go through it.
    pub queue: wgpu::Queue,
    /// What the report says about the adapter.
    pub info: GpuInfo,
    /// Software adapters get a narrower fused workgroup.
    pub device_type: wgpu::DeviceType,
    errors: Arc<Mutex<Vec<String>>>,
    /// Why the device was lost, once it was.
    lost: Arc<Mutex<Option<String>>>,
    /// The pipelines of the modules compiled on this device last, so a
    /// run of a shape trained before compiles nothing.
    pub(crate) pipeline_cache: PipelineCache,
}

/// How long one wait on the GPU may take before the run is abandoned.
pub const GPU_WAIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A wgpu instance over the chosen backends, without a window.
pub fn create_instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends = backends;
    // The release build's flags in every build, then `WGPU_VALIDATION` and
    // `WGPU_DEBUG`: wgpu would turn the validation layer on in debug builds
    // (the tests), so the layer, where installed, would run or not by build
    // profile rather than by choice.
    descriptor.flags = wgpu::InstanceFlags::VALIDATION_INDIRECT_CALL.with_env();
    wgpu::Instance::new(descriptor)
}

/// Every adapter on the chosen backends, in enumeration order (the indices
/// `--list-adapters` prints and `--adapter N` takes).
pub async fn enumerate_adapters(backend: BackendChoice) -> Vec<wgpu::Adapter> {
    enumerate_on(backend.backends()).await
}

/// Every adapter on `backends`, from an instance of those backends only.
async fn enumerate_on(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let instance = create_instance(backends);
    instance.enumerate_adapters(backends).await
}

/// One line per adapter: index, name, backend, device type, driver.
pub fn describe_adapters(adapters: &[wgpu::Adapter]) -> Vec<String> {
    adapters
        .iter()
        .enumerate()
        .map(|(index, adapter)| {
            let info = GpuInfo::from_adapter(&adapter.get_info());
            format!(
                "[{index}] {} | backend {} | {} | driver {}",
                info.name,
                info.backend,
                info.device_type,
                if info.driver.is_empty() {
                    "unknown"
                } else {
                    &info.driver
                }
            )
        })
        .collect()
}

#[cfg(not(target_arch = "wasm32"))]
const REMEDIES: &str = "To train on a GPU, install a driver for it; on a machine without one, \
Mesa's software Vulkan driver (lavapipe) works: `sudo apt-get install mesa-vulkan-drivers` on \
Debian/Ubuntu. Or train on the CPU with `--cpu-reference`.";

#[cfg(target_arch = "wasm32")]
const REMEDIES: &str = "The browser gave no WebGPU adapter: WebGPU may be switched off in it, \
or its GPU driver blocked.";

/// The error for an empty adapter list: what was tried and what to do.
pub(crate) fn no_adapter_error(backend: BackendChoice) -> Error {
    let tried: Vec<&str> = [
        (wgpu::Backends::VULKAN, "vulkan"),
        (wgpu::Backends::METAL, "metal"),
        (wgpu::Backends::DX12, "dx12"),
        (wgpu::Backends::GL, "gl"),
        (wgpu::Backends::BROWSER_WEBGPU, "webgpu"),
    ]
    .into_iter()
    // A browser has its WebGPU and nothing else.
    .filter(|(flag, _)| !cfg!(target_arch = "wasm32") || *flag == wgpu::Backends::BROWSER_WEBGPU)
    .filter(|(flag, _)| backend.backends().contains(*flag))
    .map(|(_, name)| name)
    .collect();
    Error::NoAdapter(format!(
        "no GPU adapter found (backends tried: {}). {REMEDIES}",
        tried.join(", ")
    ))
}

/// Picks an adapter from `adapters` as `selector` says.
pub(crate) fn select_adapter(
    adapters: Vec<wgpu::Adapter>,
    selector: &AdapterSelector,
    backend: BackendChoice,
) -> Result<wgpu::Adapter> {
    if adapters.is_empty() {
        return Err(no_adapter_error(backend));
    }
    let found = describe_adapters(&adapters).join("\n  ");
    let mut ranked: Vec<(usize, wgpu::Adapter)> = adapters.into_iter().enumerate().collect();
    ranked.sort_by_key(|(index, adapter)| (preference(&adapter.get_info()), *index));
    let chosen = match selector {
        AdapterSelector::Auto => ranked.into_iter().next(),
        AdapterSelector::Index(wanted) => ranked.into_iter().find(|(index, _)| index == wanted),
        AdapterSelector::Name(text) => {
            let text = text.to_lowercase();
            ranked
                .into_iter()
                .find(|(_, adapter)| adapter.get_info().name.to_lowercase().contains(&text))
        }
    };
    chosen.map(|(_, adapter)| adapter).ok_or_else(|| {
        let what = match selector {
            AdapterSelector::Index(index) => format!("no adapter has index {index}"),
            AdapterSelector::Name(text) => format!("no adapter name contains {text:?}"),
            AdapterSelector::Auto => unreachable!("auto picks from a non-empty list"),
        };
        Error::AdapterNotFound(format!(
            "{what}. Adapters found:\n  {found}\nUse --adapter auto, a name from this list, or \
             its index. {REMEDIES}"
        ))
    })
}

/// The limits to ask a device for: wgpu's downlevel defaults (what GLES 3.1
/// and old mobile GPUs give) raised only where the kernels need more, the
/// storage buffers per stage, and the adapter's own buffer sizes (large
/// datasets need all of it; a run that still does not fit is refused with
/// the sizes by its memory plan). An adapter that cannot give the kernels'
/// storage buffers is refused with the limit named.
pub fn required_limits(supported: &wgpu::Limits) -> Result<wgpu::Limits> {
    check_storage_buffers(supported)?;
    Ok(wgpu::Limits {
        max_storage_buffers_per_shader_stage: STORAGE_BUFFERS_PER_STAGE,
        max_storage_buffer_binding_size: supported.max_storage_buffer_binding_size,
        max_buffer_size: supported.max_buffer_size,
        ..wgpu::Limits::downlevel_defaults()
    })
}

/// Fails when `limits` allow fewer storage buffers per shader stage than
/// the kernels bind, naming the limit.
fn check_storage_buffers(limits: &wgpu::Limits) -> Result<()> {
    let has = limits.max_storage_buffers_per_shader_stage;
    if has < STORAGE_BUFFERS_PER_STAGE {
        fail!(
            AdapterUnsuitable,
            "its limit max_storage_buffers_per_shader_stage is {has}, and the training kernels \
             bind {STORAGE_BUFFERS_PER_STAGE} storage buffers"
        );
    }
    Ok(())
}

impl Gpu {
    /// Finds an adapter and opens a device on it.
    ///
    /// With [`BackendChoice::All`] (and no `WGPU_BACKEND`), Vulkan, Metal
    /// and DX12 are looked at first, and GL (whose start, EGL, costs 11-16 ms
    /// on lavapipe) only when they cannot settle the choice: for `auto`, when
    /// their best adapter is not a discrete GPU (a GPU that only GL reaches,
    /// as under WSL or virgl, ranks above an integrated or software one);
    /// for a name, when none of theirs matches. An index refers to
    /// `--list-adapters`, which lists every backend.
    pub async fn request(selector: &AdapterSelector, backend: BackendChoice) -> Result<Self> {
        // A browser has one backend, WebGPU: nothing to look at second.
        let native_first = backend == BackendChoice::All
            && !cfg!(target_arch = "wasm32")
            && wgpu::Backends::from_env().is_none()
            && !matches!(selector, AdapterSelector::Index(_));
        if !native_first {
            let adapter = select_adapter(enumerate_adapters(backend).await, selector, backend)?;
            return Self::from_adapter(adapter).await;
        }
        let mut adapters = enumerate_on(wgpu::Backends::PRIMARY).await;
        let settled = select_adapter(adapters.clone(), selector, backend)
            .ok()
            .filter(|adapter| match selector {
                AdapterSelector::Auto => {
                    adapter.get_info().device_type == wgpu::DeviceType::DiscreteGpu
                }
                _ => true,
            });
        let adapter = match settled {
            Some(adapter) => adapter,
            None => {
                adapters.extend(enumerate_on(wgpu::Backends::GL).await);
                select_adapter(adapters, selector, backend)?
            }
        };
        Self::from_adapter(adapter).await
    }

    /// [`Gpu::request`], blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(selector: &AdapterSelector, backend: BackendChoice) -> Result<Self> {
        pollster::block_on(Self::request(selector, backend))
    }

    /// Opens a device with the adapter's own buffer-size limits (large
    /// datasets need more than WebGPU's defaults) and installs handlers that
    /// turn validation errors and device loss into errors of the run.
    pub async fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let info = GpuInfo::from_adapter(&adapter.get_info());
        let required_limits = required_limits(&adapter.limits()).map_err(|error| {
            Error::AdapterUnsuitable(format!(
                "adapter {} cannot run the training kernels: {error}",
                info.name
            ))
        })?;
        // Timestamps let the report give the GPU's own training time.
        let required_features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("gpu-c2f device"),
                required_features,
                required_limits,
                ..Default::default()
            })
            .await
            .map_err(|error| {
                Error::AdapterUnsuitable(format!(
                    "cannot open a device on adapter {}: {error}",
                    info.name
                ))
            })?;
        Self::from_device(device, queue)
    }

    /// Trains on a device an application opened itself. It must allow the
    /// kernels' storage buffers per stage ([`required_limits`]); buffers
    /// beyond its limits are refused by each run's memory plan. Installs
    /// the handlers that turn validation errors and device loss into errors
    /// of the run (replacing the device's own uncaptured-error handler).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        let adapter_info = device.adapter_info();
        let info = GpuInfo::from_adapter(&adapter_info);
        check_storage_buffers(&device.limits()).map_err(|error| {
            Error::AdapterUnsuitable(format!(
                "the device on {} cannot run the training kernels: {error}; request it with \
                 gpu_c2f::gpu::required_limits(&adapter.limits())",
                info.name
            ))
        })?;

        // What the driver log kept so far came from probing the backends
        // (it was printed); from here on its errors belong to this device.
        drop(super::driver_log::take_errors());
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            sink.lock().expect("error list").push(error.to_string());
        }));
        let lost = Arc::new(Mutex::new(None));
        let sink = lost.clone();
        // Destroyed too: an application may destroy its own device while
        // this `Gpu` still trains on it. (Dropping the `Gpu` fires it as
        // well, when nobody reads the flag any more.)
        device.set_device_lost_callback(move |reason, message| {
            *sink.lock().expect("lost flag") = Some(format!("{reason:?}: {message}"));
        });
        Ok(Self {
            device,
            queue,
            info,
            device_type: adapter_info.device_type,
            errors,
            lost,
            pipeline_cache: PipelineCache::default(),
        })
    }

    /// Fails with every GPU error reported since the last check: wgpu's
    /// uncaptured errors and device loss, and the error-level messages of the
    /// driver or the validation layer (when [`super::driver_log`] is installed).
    pub fn check_errors(&self) -> Result<()> {
        let adapter = self.info.name.clone();
        if let Some(message) = self.lost.lock().expect("lost flag").clone() {
            return Err(Error::DeviceLost { adapter, message });
        }
        let mut errors = self.errors.lock().expect("error list");
        errors.extend(super::driver_log::take_errors());
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.drain(..).collect::<Vec<_>>().join("\n");
        Err(Error::Gpu { adapter, message })
    }

    /// Submits `commands` to the queue. In a browser, where only the event
    /// loop moves the GPU's callbacks, the returned submission also listens
    /// for the queue's work so far to finish, from this moment, so waiting
    /// for it never waits for work submitted after it.
    pub(crate) fn submit(&self, commands: wgpu::CommandBuffer) -> Submission {
        let index = self.queue.submit([commands]);
        #[cfg(target_arch = "wasm32")]
        let done = {
            let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
            self.queue.on_submitted_work_done(move || {
                sender.send(()).ok();
            });
            receiver
        };
        Submission {
            index,
            #[cfg(target_arch = "wasm32")]
            done,
        }
    }

    /// Waits for `submission` (which fills `buffer`), maps `buffer` and
    /// returns its bytes: the one way results come back to the host, so
    /// `readbacks` (the caller's count) counts every round trip.
    pub(crate) async fn read_mapped(
        &self,
        buffer: &wgpu::Buffer,
        submission: Submission,
        readbacks: &mut usize,
    ) -> Result<Vec<u8>> {
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        buffer
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |result| {
                sender.send(result).ok();
            });
        *readbacks += 1;
        self.wait(submission).await?;
        let gpu_error = |message: String| Error::Gpu {
            adapter: self.info.name.clone(),
            message,
        };
        receiver
            .receive()
            .await
            .ok_or_else(|| gpu_error("the GPU dropped the readback request".into()))?
            .map_err(|error| gpu_error(format!("cannot map the readback buffer: {error}")))?;
        let bytes = buffer
            .slice(..)
            .get_mapped_range()
            .map_err(|error| gpu_error(format!("cannot read the readback buffer: {error}")))?
            .to_vec();
        buffer.unmap();
        Ok(bytes)
    }

    /// Waits until `submission` has finished: natively by polling the
    /// device, at most [`GPU_WAIT_TIMEOUT`]; in a browser by awaiting the
    /// callback its submission registered.
    pub(crate) async fn wait(&self, submission: Submission) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission.index),
                timeout: Some(GPU_WAIT_TIMEOUT),
            })
            .map_err(|error| match error {
                wgpu::PollError::Timeout => Error::Timeout {
                    adapter: self.info.name.clone(),
                    seconds: GPU_WAIT_TIMEOUT.as_secs(),
                },
                other => Error::Gpu {
                    adapter: self.info.name.clone(),
                    message: format!("waiting for it failed: {other}"),
                },
            })?;
        #[cfg(target_arch = "wasm32")]
        {
            let _ = submission.index;
            submission.done.receive().await;
        }
        self.check_errors()
    }
}

/// Work handed to the queue ([`Gpu::submit`]), to be waited for once.
pub(crate) struct Submission {
    index: wgpu::SubmissionIndex,
    /// Fires once the queue's work up to this submission is done.
    #[cfg(target_arch = "wasm32")]
    done: futures_intrusive::channel::shared::OneshotReceiver<()>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parses_auto_index_and_name() {
        assert_eq!(AdapterSelector::parse("AUTO"), AdapterSelector::Auto);
        assert_eq!(AdapterSelector::parse("2"), AdapterSelector::Index(2));
        assert_eq!(
            AdapterSelector::parse("llvmpipe"),
            AdapterSelector::Name("llvmpipe".into())
        );
    }

    #[test]
    fn limits_are_the_downlevel_defaults_plus_what_the_kernels_need() {
        let downlevel = wgpu::Limits::downlevel_defaults();
        let error = required_limits(&downlevel).unwrap_err().to_string();
        assert!(
            error.contains("max_storage_buffers_per_shader_stage is 4")
                && error.contains("bind 6 storage buffers"),
            "{error}"
        );
        let adapter = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 16,
            max_storage_buffer_binding_size: 1 << 30,
            max_buffer_size: 1 << 31,
            ..wgpu::Limits::default()
        };
        let asked = required_limits(&adapter).unwrap();
        assert_eq!(asked.max_storage_buffers_per_shader_stage, 6);
        assert_eq!(asked.max_storage_buffer_binding_size, 1 << 30);
        assert_eq!(asked.max_buffer_size, 1 << 31);
        assert_eq!(
            asked.max_uniform_buffer_binding_size,
            downlevel.max_uniform_buffer_binding_size
        );
    }

    #[test]
    fn discrete_beats_software_and_vulkan_beats_gl() {
        let info = wgpu::AdapterInfo::new;
        let discrete_gl = preference(&info(wgpu::DeviceType::DiscreteGpu, wgpu::Backend::Gl));
        let cpu_vulkan = preference(&info(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan));
        let discrete_vulkan =
            preference(&info(wgpu::DeviceType::DiscreteGpu, wgpu::Backend::Vulkan));
        assert!(discrete_vulkan < discrete_gl);
        assert!(discrete_gl < cpu_vulkan);
    }
}
