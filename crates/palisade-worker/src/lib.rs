//! Palisade's background jobs (checkpoint signing and rate-limit upkeep now; webhook delivery, retention and key
//! rotation later), each claiming its work through the database so several nodes never do it
//! twice: a checkpoint is signed under its log's head lock, after re-checking that no other
//! node signed one within the interval. `mail` holds the two ways email leaves: an SMTP relay,
//! or `.eml` files in an outbox directory.

pub mod mail;

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
