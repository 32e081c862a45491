use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
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
            ExitCode::FAILURE
        }
    }
}
