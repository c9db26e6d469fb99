//! The hidden `pushwire worker-process`: one worker, spawned by `serve`'s master.

use std::process::ExitCode;

use anyhow::Context;

pub(super) async fn run() -> anyhow::Result<ExitCode> {
    crate::cluster::run_worker_process()
        .await
        .context("worker")?;
    Ok(ExitCode::SUCCESS)
}
