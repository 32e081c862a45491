//! Names the commit gpu-c2f was built from (`GPU_C2F_COMMIT`), for the
//! check's certificate (src/shadow/certificate.rs): `git rev-parse` of the
//! source tree, or `unknown` where there is no git (a packaged crate).

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GPU_C2F_COMMIT={commit}");
    // A new commit moves HEAD or the branch it names.
    for path in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
