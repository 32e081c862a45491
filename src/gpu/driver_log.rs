//! wgpu's own log records, where the Vulkan validation layer's and the
//! drivers' messages arrive (wgpu-hal reports them through the `log`
//! crate, and with no logger installed they are dropped).
//!
//! [`install`] routes them: every warning or error of a `wgpu*` or `naga`
//! target is printed to stderr, and errors, and the validation layer's
//! warnings, are kept so that [`Gpu::check_errors`](super::Gpu::check_errors)
//! fails the run that caused them, as it does for wgpu's uncaptured errors.
//! (Messages logged before the device is opened come from probing the
//! backends, the chosen one and the others, and are only printed.) The
//! program calls it from `main`, the tests from their shared set-up: a
//! library does not choose the process's logger.
//!
//! The Vulkan validation layer reports through wgpu only when wgpu asks for
//! its debug messenger: `WGPU_VALIDATION=1 WGPU_DEBUG=1` (docs/agreement.md,
//! "Where this is proven", has the whole command).

use std::sync::Mutex;

/// Error-level records not yet taken by [`take_errors`].
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct DriverLog;

static LOGGER: DriverLog = DriverLog;

impl log::Log for DriverLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
            && (metadata.target().starts_with("wgpu") || metadata.target().starts_with("naga"))
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = format!(
            "{} ({}): {}",
            record.level(),
            record.target(),
            record.args()
        );
        eprintln!("gpu-c2f: driver message: {message}");
        let from_validation_layer = message.contains("VALIDATION [");
        if record.level() == log::Level::Error || from_validation_layer {
            ERRORS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(message);
        }
    }

    fn flush(&self) {}
}

/// Installs the logger for the process; fails if another one is installed.
pub fn install() -> Result<(), log::SetLoggerError> {
    log::set_logger(&LOGGER)?;
    log::set_max_level(log::LevelFilter::Warn);
    Ok(())
}

/// The error-level records logged since the last call.
pub fn take_errors() -> Vec<String> {
    std::mem::take(&mut *ERRORS.lock().unwrap_or_else(|p| p.into_inner()))
}
