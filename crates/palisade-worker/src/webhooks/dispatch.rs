//! The webhook dispatcher (WHK-4): claims due deliveries from the outbox (several nodes never
//! take the same one: `FOR UPDATE SKIP LOCKED` on PostgreSQL, one writer on SQLite), sends each
//! through the SSRF-safe client with up to `concurrency` in flight, and records the attempts in
//! batches. A delivery claimed by a node that dies is claimed again once its lease runs out, so
//! every committed event is delivered at least once.

use std::sync::Arc;
use std::time::Duration;

use palisade_core::app::Services;
use palisade_core::webhooks::delivery::AttemptResult;
use palisade_core::webhooks::model::{ClaimedDelivery, DeliveryOutcome};
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, warn};

use super::client::WebhookClient;

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How long a claim holds: longer than the client's timeout plus recording.
    pub lease: Duration,
    /// How often an idle dispatcher looks for due deliveries (events written on its own node
    /// wake it at once; this is for retries and other nodes' events).
    pub idle_poll: Duration,
    /// How often endpoints failing for days are disabled and settled events pruned.
    pub maintenance: Duration,
}

impl DispatchConfig {
    /// Defaults for a client timeout of `timeout`.
    pub fn for_timeout(timeout: Duration) -> Self {
        Self {
            concurrency: 64,
            // An attempt takes at most `timeout`; recording it, a few seconds more.
            lease: timeout * 2 + Duration::from_secs(5),
            idle_poll: Duration::from_millis(200),
            maintenance: Duration::from_secs(60),
        }
    }
}

/// Outcomes written per transaction at most.
const RECORD_BATCH: usize = 256;
/// How long a dispatcher woken by an event written on its node waits for that write's commit
/// before it claims (the poll catches a slower one).
const COMMIT_GRACE: Duration = Duration::from_millis(2);
/// Most deliveries claimed at once.
const CLAIM_BATCH: usize = 200;

/// Runs the dispatcher until `shutdown` resolves; then stops claiming, lets what is in flight
/// finish (each within the client's timeout) and records it.
pub async fn run_webhooks(
    services: Services,
    client: WebhookClient,
    config: DispatchConfig,
    shutdown: impl Future<Output = ()>,
) {
    let (outcomes, received) = mpsc::channel::<DeliveryOutcome>(RECORD_BATCH * 4);
    let recorder = tokio::spawn(record_outcomes(services.clone(), received));
    let places = Arc::new(Semaphore::new(config.concurrency.max(1)));
    // Beside the deliveries, busy or not; stopped (mid-transaction is a rollback) at shutdown.
    let maintenance = {
        let services = services.clone();
        let every = config.maintenance;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                maintain(&services).await;
            }
        })
    };
    let wake = services.webhook_wake();
    tokio::pin!(shutdown);
    // After a claim found nothing: look (a read, so an idle node takes no write lock) before
    // claiming again, unless woken by an event written here.
    let mut idle = false;
    loop {
        if idle {
            let due = match services.webhook_next_due().await {
                Ok(due) => due.is_some_and(|at| at <= services.now()),
                Err(e) => {
                    warn!(error = %e, "looking for due webhook deliveries failed; retrying");
                    false
                }
            };
            if !due {
                tokio::select! {
                    () = &mut shutdown => break,
                    woken = pause(&wake, config.idle_poll) => idle = !woken,
                }
                continue;
            }
        }
        // A free place first: claims are made only for deliveries that can be sent at once,
        // so none waits out its lease in a queue here.
        let first = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&places).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let free = 1 + places.available_permits().min(CLAIM_BATCH - 1);
        let limit = u32::try_from(free).unwrap_or(1);
        let claimed = tokio::select! {
            () = &mut shutdown => break,
            c = services.webhook_claim(limit, config.lease) => c,
        };
        let claimed = match claimed {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "claiming webhook deliveries failed; retrying");
                Vec::new()
            }
        };
        idle = claimed.is_empty();
        if idle {
            drop(first);
            // Due deliveries other nodes hold still count as due: wait before looking again.
            tokio::select! {
                () = &mut shutdown => break,
                woken = pause(&wake, config.idle_poll) => idle = !woken,
            }
            continue;
        }
        let mut first = Some(first);
        for delivery in claimed {
            let place = match first.take() {
                Some(p) => p,
                // Free when claimed: taken at once.
                None => match Arc::clone(&places).acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let services = services.clone();
            let client = client.clone();
            let outcomes = outcomes.clone();
            tokio::spawn(async move {
                if let Some(outcome) = deliver(&services, &client, &delivery).await {
                    let _ = outcomes.send(outcome).await;
                }
                drop(place);
            });
        }
    }
    maintenance.abort();
    // Every place back means nothing is in flight any more.
    let all = u32::try_from(config.concurrency.max(1)).unwrap_or(u32::MAX);
    let _ = places.acquire_many(all).await;
    drop(outcomes);
    let _ = recorder.await;
}

/// An idle dispatcher's wait: `poll`, or less when an event is written on this node (then a
/// moment for its commit). `true` when woken by an event.
async fn pause(wake: &tokio::sync::Notify, poll: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(poll) => false,
        () = wake.notified() => {
            tokio::time::sleep(COMMIT_GRACE).await;
            true
        }
    }
}

/// One attempt: the request prepared (payload narrowed, signed now), sent, and judged.
async fn deliver(
    services: &Services,
    client: &WebhookClient,
    delivery: &ClaimedDelivery,
) -> Option<DeliveryOutcome> {
    let at = services.now();
    let result = match services.webhook_prepare(delivery, at).await {
        Ok(None) => AttemptResult {
            status: None,
            latency: Duration::ZERO,
            body: String::new(),
            error: Some(
                "not sent: the endpoint may no longer receive this event (its permissions changed)"
                    .to_owned(),
            ),
            permanent: true,
        },
        Ok(Some(prepared)) => {
            let headers: Vec<(&str, String)> = prepared.headers;
            let sent = client.post(&prepared.url, &headers, prepared.body).await;
            AttemptResult {
                status: sent.status,
                latency: sent.latency,
                body: sent.body,
                error: sent.error,
                permanent: false,
            }
        }
        Err(e) => {
            warn!(error = %e, delivery = %delivery.delivery.id, "preparing a webhook delivery failed");
            AttemptResult {
                status: None,
                latency: Duration::ZERO,
                body: String::new(),
                error: Some("the delivery could not be prepared (internal error)".to_owned()),
                permanent: false,
            }
        }
    };
    match services.webhook_outcome(delivery, at, result) {
        Ok(outcome) => Some(outcome),
        Err(e) => {
            warn!(error = %e, "judging a webhook attempt failed; it is retried after the lease");
            None
        }
    }
}

/// Writes outcomes as they come, up to `RECORD_BATCH` per transaction.
async fn record_outcomes(services: Services, mut received: mpsc::Receiver<DeliveryOutcome>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while let Some(first) = received.recv().await {
        batch.push(first);
        while batch.len() < RECORD_BATCH {
            match received.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        for attempt in 1..=5u32 {
            match services.webhook_record(&batch).await {
                Ok(n) => {
                    debug!(attempts = n, "recorded webhook attempts");
                    break;
                }
                Err(e) => {
                    // Unrecorded attempts are made again once their lease runs out.
                    warn!(error = %e, attempt, "recording webhook attempts failed");
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                }
            }
        }
        batch.clear();
    }
}

async fn maintain(services: &Services) {
    match services.disable_failing_webhooks().await {
        Ok(0) => {}
        Ok(n) => debug!(endpoints = n, "disabled failing webhook endpoints"),
        Err(e) => warn!(error = %e, "disabling failing webhook endpoints failed"),
    }
    match services.prune_webhook_events().await {
        Ok(0) => {}
        Ok(n) => debug!(events = n, "pruned settled webhook events"),
        Err(e) => warn!(error = %e, "pruning webhook events failed"),
    }
}

/// The creation-time URL check of the core services, by the same policy the client enforces
/// at connect time.
#[async_trait::async_trait]
impl palisade_core::webhooks::service::TargetCheck for super::client::TargetPolicy {
    async fn check_url(&self, url: &url::Url) -> Result<(), String> {
        super::client::TargetPolicy::check_url(self, url).await
    }
}
