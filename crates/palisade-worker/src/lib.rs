//! Palisade's background jobs (checkpoint signing, rate-limit upkeep and the API key cache now;
//! key rotation; webhook delivery and retention later), each claiming its work through the database so several nodes never do it
//! twice: a checkpoint is signed under its log's head lock, after re-checking that no other
//! node signed one within the interval. `mail` holds the two ways email leaves: an SMTP relay,
//! or `.eml` files in an outbox directory.

pub mod mail;
pub mod webhooks;

use std::time::Duration;

use palisade_core::app::Services;
use tracing::{debug, warn};

/// How often the checkpoint job looks for work: the interval, but at least every 5 seconds so
/// the daily checkpoint follows 00:00 UTC closely.
pub fn checkpoint_tick(interval: Duration) -> Duration {
    interval.clamp(Duration::from_millis(200), Duration::from_secs(5))
}

/// Signs `latest` checkpoints for logs that grew (at most once per interval each) and the daily
/// checkpoint after 00:00 UTC, until `shutdown` resolves.
pub async fn run_checkpoints(
    services: Services,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(checkpoint_tick(interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        match services.sign_daily_checkpoints().await {
            Ok(0) => {}
            Ok(n) => debug!(logs = n, "signed daily audit checkpoints"),
            Err(e) => warn!(error = %e, "daily audit checkpoints failed; retrying next tick"),
        }
        match services.sign_latest_checkpoints().await {
            Ok(0) => {}
            Ok(n) => debug!(logs = n, "signed latest audit checkpoints"),
            Err(e) => warn!(error = %e, "audit checkpoints failed; retrying next tick"),
        }
    }
}

/// Keeps this node's API key cache honest and records key usage: syncs the cache with the
/// change list every `SYNC_INTERVAL` (each sync renews the cache's lease; without syncs the
/// request path reads the database), and writes `last_used_at` once per `flush_every`, and at
/// shutdown.
pub async fn run_api_keys(
    services: Services,
    flush_every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut sync = tokio::time::interval(palisade_core::api_keys::cache::SYNC_INTERVAL);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush =
        tokio::time::interval_at(tokio::time::Instant::now() + flush_every, flush_every);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = sync.tick() => {
                if let Err(e) = services.sync_api_keys().await {
                    warn!(error = %e, "API key cache sync failed; keys are checked in the database until one succeeds");
                }
            }
            _ = flush.tick() => {
                match services.flush_api_key_usage().await {
                    Ok(0) => {}
                    Ok(n) => debug!(keys = n, "recorded API key usage"),
                    Err(e) => warn!(error = %e, "recording API key usage failed; retrying"),
                }
            }
        }
    }
    if let Err(e) = services.flush_api_key_usage().await {
        warn!(error = %e, "recording API key usage at shutdown failed");
    }
}

/// Keeps rate-limit state honest: every 200 ms gives back leased `api` budget unused for a
/// second (so a node that goes quiet strands nothing), hourly-idle keys are pruned every
/// minute, and at shutdown every lease goes back.
pub async fn run_limits(services: Services, shutdown: impl Future<Output = ()>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u32 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        if let Err(e) = services.limiter().flush(false).await {
            warn!(error = %e, "giving back leased rate-limit budget failed; retrying");
        }
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(300) {
            match services.limiter().prune().await {
                Ok(0) => {}
                Ok(n) => debug!(keys = n, "pruned idle rate-limit keys"),
                Err(e) => warn!(error = %e, "pruning rate-limit keys failed"),
            }
        }
    }
    if let Err(e) = services.limiter().flush(true).await {
        warn!(error = %e, "giving back leased rate-limit budget at shutdown failed");
    }
}

/// How often every node reloads data keys (new versions, other nodes' workspaces) and looks
/// for rotation work (KMS-3). A new data-key version waits longer than this before it seals
/// anything (`keys.propagation_secs`), so every node has loaded it by then.
pub const KEY_TICK: Duration = Duration::from_secs(5);

/// Reloads data keys every [`KEY_TICK`] and, beside it, starts scheduled data-key rotations and
/// re-encrypts for open rotation jobs, until `shutdown` resolves. The reload runs apart from
/// the work, which can take long, so keys keep arriving while a job runs.
pub async fn run_key_rotations(services: Services, shutdown: impl Future<Output = ()>) {
    let worker = services.clone();
    let work = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(KEY_TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match worker.run_key_rotations().await {
                Ok(0) => {}
                Ok(n) => debug!(jobs = n, "data key rotations finished"),
                Err(e) => warn!(error = %e, "key rotation work failed; retrying next tick"),
            }
        }
    });
    let mut ticker = tokio::time::interval(KEY_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {
                if let Err(e) = services.refresh_keys().await {
                    warn!(error = %e, "reloading data keys failed; retrying next tick");
                }
            }
        }
    }
    // A page in flight is one transaction: stopping between statements rolls it back.
    work.abort();
    let _ = work.await;
}
