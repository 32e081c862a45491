use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_mesa_device_select();
    let cli = gpu_c2f::cli::Cli::parse();
    // Driver and validation-layer messages reach stderr; their errors fail the run.
    let _ = gpu_c2f::gpu::driver_log::install();
    // Ctrl-C and SIGTERM exit 130 / 143 and leave no temporary file.
    match gpu_c2f::output::exit_on_interrupt().and_then(|()| gpu_c2f::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole chain of causes on one line, without
            // the backtrace anyhow would add when RUST_BACKTRACE is set.
            eprintln!("error: {error:#}");
            // Bad flags exit with 2, as clap's own errors do.
            if gpu_c2f::cli::is_flag_error(&error) {
                eprintln!("\nFor more information, try '--help'.");
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Mesa's Vulkan device-select layer (an implicit layer installed with
/// mesa-vulkan-drivers) connects to a Wayland display on every
/// `vkEnumeratePhysicalDevices`, because wgpu enables
/// `VK_KHR_wayland_surface`; without an absolute `XDG_RUNTIME_DIR` (SSH,
/// containers, cron) libwayland then prints "error: XDG_RUNTIME_DIR is
/// invalid or not set in the environment." twice, and no compositor could be
/// reached anyway. A compute-only run needs no window system: switch the
/// layer off there (its manifest's `disable_environment`), unless the user
/// steers it. gpu-c2f ranks adapters itself.
#[cfg(all(unix, not(target_vendor = "apple"), not(target_os = "android")))]
fn quiet_mesa_device_select() {
    let runtime_dir_ok = std::env::var_os("XDG_RUNTIME_DIR")
        .is_some_and(|dir| std::path::Path::new(&dir).is_absolute());
    let steered = [
        "NODEVICE_SELECT",
        "MESA_VK_DEVICE_SELECT",
        "DRI_PRIME",
        "WAYLAND_SOCKET",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some());
    if !runtime_dir_ok && !steered {
        // SAFETY: the first statement of main, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

#[cfg(not(all(unix, not(target_vendor = "apple"), not(target_os = "android"))))]
fn quiet_mesa_device_select() {}
