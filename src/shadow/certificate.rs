//! "Check my GPU": the shadow check's verdict as a document a user keeps or
//! sends, the same from the CLI (`--compare --json`, its `certificate`) and
//! the page (its download): the device, the job, how much was checked, the
//! worst difference of each kind against its bound, the verdict, and the
//! build that made it.

use super::{ShadowCheck, verdict};
use crate::gpu::GpuInfo;
use crate::job::Job;
use serde::Serialize;

/// One run's check, as a certificate.
#[derive(Debug, Clone, Serialize)]
pub struct Certificate {
    /// Whether every step agreed within its bounds ([`verdict`]).
    pub passed: bool,
    /// Why not, when it did not.
    pub why: Option<String>,
    /// The adapter, its backend and driver.
    pub adapter: GpuInfo,
    /// The browser's user agent (the page's; `None` from the CLI).
    pub user_agent: Option<String>,
    /// The job that ran.
    pub job: Job,
    /// Training steps replayed on the CPU, of those the run should take.
    pub steps_checked: u64,
    /// The steps the run should take.
    pub steps_expected: u64,
    /// The worst |device - CPU| / bound of each kind (`null`: not finite).
    pub worst: WorstRatios,
    /// gpu-c2f's version.
    pub version: &'static str,
    /// The commit it was built from (`unknown` outside a git checkout).
    pub commit: &'static str,
}

/// The worst ratio of each kind of value the check compares.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct WorstRatios {
    /// Gradients.
    pub gradients: f64,
    /// Batch and epoch losses.
    pub losses: f64,
    /// Metrics, when the job has any.
    pub metrics: Option<f64>,
    /// Weights and Adam's moments after each step.
    pub states: f64,
}

impl Certificate {
    /// The certificate of `check`, a run of `job` on `adapter`.
    pub fn new(
        job: &Job,
        adapter: &GpuInfo,
        check: &ShadowCheck,
        user_agent: Option<String>,
    ) -> Self {
        let outcome = verdict(check);
        Self {
            passed: outcome.is_ok(),
            why: outcome.err(),
            adapter: adapter.clone(),
            user_agent,
            job: job.clone(),
            steps_checked: check.steps_checked,
            steps_expected: check.steps_expected,
            worst: WorstRatios {
                gradients: check.gradients.ratio,
                losses: check.losses.ratio,
                metrics: check.metrics.map(|m| m.ratio),
                states: check.states.ratio,
            },
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("GPU_C2F_COMMIT"),
        }
    }
}
