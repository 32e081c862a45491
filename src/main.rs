use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    match gpu_c2f::cli::run(gpu_c2f::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole chain of causes on one line, without
            // the backtrace anyhow would add when RUST_BACKTRACE is set.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
