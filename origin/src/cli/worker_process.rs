//! The hidden `pushwire worker-process`: one worker, spawned by `serve`'s master.

use std::process::ExitCode;

use anyhow::Context;

use crate::cluster::ClusterError;

pub(super) async fn run() -> anyhow::Result<ExitCode> {
    match crate::cluster::run_worker_process().await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The master has the reason and logs it once, however often it retries:
        // printing it here too would repeat it at every attempt.
        Err(ClusterError::StartFailed(_)) => Ok(ExitCode::FAILURE),
        Err(e) => Err(e).context("worker"),
    }
}
