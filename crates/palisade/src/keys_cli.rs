//! `palisade keys …` (KMS-3): status, master-key re-wrapping, data-key rotation. Each opens the
//! database with the configured master keys (so a missing one is named first), acts through
//! the same services the server uses, and prints a summary (JSON with `--json`).

use std::time::Duration;

use anyhow::Context as _;
use palisade_core::keys::rotation::KeyStatus;

use crate::Config;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Master keys, every data key (owner, version, which master key wraps it) and rotation
    /// jobs with their progress.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Re-wrap every data key under its region's active master key (configure the new key as
    /// active and the old one as retired first). Resumable and idempotent: run it again after
    /// an interruption. Reports which master keys wrap nothing any more and can be removed.
    RotateMaster {
        #[arg(long)]
        json: bool,
    },
    /// Start a new data-key version for a workspace (id or slug) or `instance`; a running
    /// server re-encrypts its data in the background (`palisade keys status` shows progress).
    RotateWorkspace {
        /// A workspace id or slug, or `instance`.
        owner: String,
        /// Wait until the re-encryption is done (a server must be running), or at most this
        /// many seconds (0 = don't wait).
        #[arg(long, default_value_t = 0)]
        wait_secs: u64,
        #[arg(long)]
        json: bool,
    },
}

#[allow(clippy::print_stdout)]
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_status(status: &KeyStatus) {
    println!("master keys:");
    for ring in &status.master_keys {
        println!(
            "  {:<10} active {}  retired [{}]",
            ring.name,
            ring.active,
            ring.retired.join(", ")
        );
    }
    println!("data keys:");
    for k in &status.data_keys {
        println!(
            "  {:<32} v{:<3} wrapped by {}{}{}",
            k.owner,
            k.version,
            k.wrapped_by,
            if k.wrapped_by_active {
                ""
            } else {
                " (not the active master key: run rotate-master)"
            },
            if k.retired_at.is_some() {
                "  retired"
            } else {
                ""
            },
        );
    }
    if !status.retirable_master_keys.is_empty() {
        println!(
            "master keys wrapping nothing (can be removed): {}",
            status.retirable_master_keys.join(", ")
        );
    }
    println!("rotations:");
    for r in &status.rotations {
        println!(
            "  {} {:<32} v{} {:<8} pass {} in {} ({} scanned, {} re-sealed this pass) [{}]",
            r.id, r.owner, r.to_version, r.state, r.pass, r.phase, r.scanned, r.resealed, r.reason
        );
    }
}

/// Runs a `keys` command; the database and keys as `palisade serve` would open them.
pub async fn main(command: KeysCommand, config: &Config) -> anyhow::Result<()> {
    let state = crate::build(config).await?;
    let services = &state.services;
    match command {
        KeysCommand::Status { json } => {
            let status = services.key_status().await?;
            if json {
                print_json(&status)?;
            } else {
                print_status(&status);
            }
        }
        KeysCommand::RotateMaster { json } => {
            let report = services.rotate_master().await?;
            if json {
                print_json(&report)?;
            } else {
                #[allow(clippy::print_stdout)]
                {
                    println!(
                        "re-wrapped {} data keys ({} already under the active master key)",
                        report.rewrapped, report.unchanged
                    );
                    println!("master keys in use: {}", report.in_use.join(", "));
                    if report.retirable.is_empty() {
                        println!("no configured master key can be retired yet");
                    } else {
                        println!(
                            "these master keys wrap nothing any more and can be removed from the configuration: {}",
                            report.retirable.join(", ")
                        );
                    }
                }
            }
        }
        KeysCommand::RotateWorkspace {
            owner,
            wait_secs,
            json,
        } => {
            let owner = services
                .key_owner(&owner)
                .await
                .with_context(|| format!("no workspace {owner}"))?;
            let job = services.rotate_data_key(&owner, "operator").await?;
            let mut done = job.state == "done";
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
            while !done && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                done = services
                    .key_status()
                    .await?
                    .rotations
                    .iter()
                    .any(|r| r.id == job.id && r.state == "done");
            }
            if wait_secs > 0 && !done {
                anyhow::bail!(
                    "re-encryption job {} is not done after {wait_secs} s (is a server running?)",
                    job.id
                );
            }
            if json {
                print_json(&serde_json::json!({
                    "job": job.id, "owner": job.owner, "version": job.to_version, "done": done,
                }))?;
            } else {
                #[allow(clippy::print_stdout)]
                {
                    println!(
                        "data key of {} rotated to version {} (job {}); {}",
                        job.owner,
                        job.to_version,
                        job.id,
                        if done {
                            "its data is re-encrypted"
                        } else {
                            "a running server re-encrypts its data in the background: see `palisade keys status`"
                        }
                    );
                }
            }
        }
    }
    Ok(())
}
