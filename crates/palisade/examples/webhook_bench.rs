//! Webhook delivery throughput, for `scripts/bench-webhooks.sh` (issue 10): how many deliveries
//! a second the dispatcher gets to a receiver on 127.0.0.1, server, receiver and load in one
//! process.
//!
//! Starts the real server in-process with its own dispatcher off (`webhooks.concurrency = 0`,
//! `127.0.0.1/32` allow-listed) and a receiver (axum, HTTP/1.1 keep-alive) that checks every
//! delivery's `X-Palisade-Signature` (HMAC-SHA256 of the raw body) and `webhook-signature`
//! (Standard Webhooks) under the endpoint's secret, counts verified and refused deliveries and
//! distinct `webhook-id`s, and answers 204. Then, each phase with an endpoint of its own:
//! - **drain**, once per dispatcher concurrency: `records` records created over HTTP by 16
//!   clients fill the outbox, then `run_webhooks` (as the server runs it) is started and timed
//!   until the receiver has every delivery and the store shows none pending; the store must
//!   hold `records` succeeded deliveries and none failed. Each delivery's attempt latency (the
//!   client's, as recorded) is read back afterwards;
//! - **live**: the dispatcher runs while the 16 clients create `records` records; the rate is
//!   end to end (first create to last delivery). The lag is the receiver's arrival time minus
//!   the event's timestamp (taken as the create starts, so it includes the create's own wait
//!   for the writer and its commit), and minus the time the creating client got its 201. Once
//!   with the server's idle poll (200 ms: how long a dispatcher that found nothing due waits),
//!   once with 20 ms;
//! - **steps**: the dispatcher's steps timed one at a time with nothing else running (a claim
//!   and a recording of 1, 16, 64 and 200 deliveries; preparing and POSTing one), to show where
//!   a delivery's time goes.
//!
//! Usage: webhook_bench <database-url> [records] [concurrency,…]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Bench, send};
use hmac::{KeyInit, Mac};
use palisade_core::webhooks::delivery::AttemptResult;
use palisade_worker::webhooks::client::{ClientConfig, TargetPolicy, WebhookClient};
use palisade_worker::webhooks::dispatch::{DispatchConfig, run_webhooks};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The allocator the `palisade` binary runs with (`src/main.rs`): under glibc's, a profile of
/// this benchmark spends a fifth of its time in `malloc` and `free`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Concurrent HTTP clients creating records.
const CREATORS: usize = 16;
/// Concurrent HTTP clients reading delivery details back.
const READERS: usize = 8;
/// Longest a phase may take before the benchmark gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(300);

/// What the receiver saw for one endpoint (one phase).
#[derive(Default)]
struct Phase {
    /// The signing key: base64-decoded `whsec_…`.
    key: Vec<u8>,
    verified: AtomicU64,
    refused: AtomicU64,
    duplicates: AtomicU64,
    ids: Mutex<HashSet<String>>,
    /// (arrival, µs from the event's timestamp to the arrival, the record's id).
    arrivals: Mutex<Vec<(Instant, i64, String)>>,
}

#[derive(Default)]
struct Receiver {
    phases: RwLock<HashMap<String, Arc<Phase>>>,
    /// Requests to a path no phase has.
    unknown: AtomicU64,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn mac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).unwrap()
}

/// Both signatures verify under `key`: `X-Palisade-Signature: sha256=<hex>` over the body and
/// `webhook-signature: v1,<base64>` over `id.timestamp.body`.
fn verified(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let palisade = header("x-palisade-signature").is_some_and(|sigs| {
        sigs.split(' ').any(|s| {
            s.strip_prefix("sha256=")
                .and_then(unhex)
                .is_some_and(|tag| {
                    let mut m = mac(key);
                    m.update(body);
                    m.verify_slice(&tag).is_ok()
                })
        })
    });
    let (Some(id), Some(ts), Some(sigs)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return false;
    };
    let standard = sigs.split(' ').any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|tag| {
                let mut m = mac(key);
                m.update(id.as_bytes());
                m.update(b".");
                m.update(ts.as_bytes());
                m.update(b".");
                m.update(body);
                m.verify_slice(&tag).is_ok()
            })
    });
    palisade && standard
}

async fn hook(
    State(receiver): State<Arc<Receiver>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let arrived = Instant::now();
    let wall = OffsetDateTime::now_utc();
    let phase = receiver.phases.read().unwrap().get(&name).cloned();
    let Some(phase) = phase else {
        receiver.unknown.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NOT_FOUND;
    };
    if !verified(&phase.key, &headers, &body) {
        phase.refused.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    if !phase.ids.lock().unwrap().insert(id) {
        phase.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let lag = parsed["timestamp"]
        .as_str()
        .and_then(|ts| OffsetDateTime::parse(ts, &Rfc3339).ok())
        .map_or(i64::MAX, |ts| {
            i64::try_from((wall - ts).whole_microseconds()).unwrap_or(i64::MAX)
        });
    let record = parsed["data"]["id"].as_str().unwrap_or_default().to_owned();
    phase.arrivals.lock().unwrap().push((arrived, lag, record));
    phase.verified.fetch_add(1, Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

/// Starts the receiver on 127.0.0.1; its base URL.
async fn start_receiver(receiver: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hooks/{phase}", axum::routing::post(hook))
        .with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The client as the server builds it (`palisade::run_with_clock`), with 127.0.0.1 allow-listed.
fn webhook_client() -> WebhookClient {
    WebhookClient::new(ClientConfig {
        policy: TargetPolicy {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        },
        timeout: Duration::from_secs(15),
        user_agent: "Palisade-Webhooks/bench".to_owned(),
    })
    .unwrap()
}

/// The benchmark's server, receiver and HTTP paths.
struct Setup {
    bench: Bench,
    receiver: Arc<Receiver>,
    receiver_base: String,
    /// A workspace API key with `read` and `write`, for the records.
    key: String,
    /// The enabled endpoint, if any: a new phase disables it.
    current: Option<String>,
}

impl Setup {
    fn ws(&self, path: &str) -> String {
        format!("{}/api/v1/workspaces/bench{path}", self.bench.base)
    }

    /// Disables the previous phase's endpoint and creates `name`'s at the receiver; its id.
    async fn endpoint(&mut self, name: &str) -> (String, Arc<Phase>) {
        let client = &self.bench.client;
        if let Some(old) = self.current.take() {
            send(
                client
                    .patch(self.ws(&format!("/webhooks/{old}")))
                    .bearer_auth(&self.bench.jwt)
                    .json(&json!({"enabled": false})),
            )
            .await;
        }
        let created = send(
            client
                .post(self.ws("/webhooks"))
                .bearer_auth(&self.bench.jwt)
                .json(&json!({
                    "url": format!("{}/hooks/{name}", self.receiver_base),
                    "events": ["record.created"],
                    "description": format!("webhook_bench {name}"),
                })),
        )
        .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let secret = created["secret"].as_str().unwrap();
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let phase = Arc::new(Phase {
            key,
            ..Phase::default()
        });
        self.receiver
            .phases
            .write()
            .unwrap()
            .insert(name.to_owned(), phase.clone());
        self.current = Some(id.clone());
        (id, phase)
    }

    /// Creates `n` records with `CREATORS` clients; seconds taken, and when each record's 201
    /// came back, by id.
    async fn create_records(&self, n: usize, tag: &str) -> (f64, HashMap<String, Instant>) {
        let url = self.ws("/collections/notes/records");
        let t = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..CREATORS {
            let (client, url, key) = (self.bench.client.clone(), url.clone(), self.key.clone());
            let tag = tag.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut created = Vec::new();
                for i in (w..n).step_by(CREATORS) {
                    let record = send(
                        client
                            .post(&url)
                            .bearer_auth(&key)
                            .json(&json!({"title": format!("{tag} {i}")})),
                    )
                    .await;
                    created.push((record["id"].as_str().unwrap().to_owned(), Instant::now()));
                }
                created
            }));
        }
        let mut created = HashMap::with_capacity(n);
        for t in tasks {
            created.extend(t.await.unwrap());
        }
        (t.elapsed().as_secs_f64(), created)
    }

    /// Every delivery of `webhook` with `status` (newest first), all pages.
    async fn deliveries(&self, webhook: &str, status: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let mut url = self.ws(&format!(
                "/webhooks/{webhook}/deliveries?limit=200&status={status}"
            ));
            if !cursor.is_empty() {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let page = send(self.bench.client.get(url).bearer_auth(&self.bench.jwt)).await;
            all.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => return all,
            }
        }
    }

    /// Whether `webhook` has a pending delivery (one row read).
    async fn any_pending(&self, webhook: &str) -> bool {
        let url = self.ws(&format!(
            "/webhooks/{webhook}/deliveries?limit=1&status=pending"
        ));
        let page = send(self.bench.client.get(url).bearer_auth(&self.bench.jwt)).await;
        !page["data"].as_array().unwrap().is_empty()
    }

    /// The first attempt's recorded latency (ms) of each delivery in `ids`.
    async fn attempt_latencies(&self, webhook: &str, ids: Vec<String>) -> Vec<f64> {
        let ids = Arc::new(ids);
        let mut tasks = Vec::new();
        for w in 0..READERS {
            let (client, jwt, ids) = (
                self.bench.client.clone(),
                self.bench.jwt.clone(),
                ids.clone(),
            );
            let base = self.ws(&format!("/webhooks/{webhook}/deliveries/"));
            tasks.push(tokio::spawn(async move {
                let mut ms = Vec::new();
                for id in ids.iter().skip(w).step_by(READERS) {
                    let d = send(client.get(format!("{base}{id}")).bearer_auth(&jwt)).await;
                    ms.push(d["attempt_history"][0]["latency_ms"].as_f64().unwrap());
                }
                ms
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    }

    /// The dispatcher as the server runs it, with `concurrency` places and, when given, another
    /// idle poll than the server's; stop it by sending.
    fn dispatcher(
        &self,
        concurrency: usize,
        idle_poll: Option<Duration>,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let client = webhook_client();
        let mut config = DispatchConfig {
            concurrency,
            ..DispatchConfig::for_timeout(Duration::from_secs(15))
        };
        if let Some(poll) = idle_poll {
            config.idle_poll = poll;
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(run_webhooks(
            self.bench.services.clone(),
            client,
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        (stop, handle)
    }

    /// Waits until the receiver has `n` verified deliveries, then until the store shows none
    /// pending; (seconds to the first, seconds to the second) since `t0`.
    async fn settled(&self, webhook: &str, phase: &Phase, n: u64, t0: Instant) -> (f64, f64) {
        while phase.verified.load(Ordering::Relaxed) < n {
            assert!(
                t0.elapsed() < PHASE_LIMIT,
                "only {} of {n} deliveries arrived ({} refused)",
                phase.verified.load(Ordering::Relaxed),
                phase.refused.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let received = t0.elapsed().as_secs_f64();
        while self.any_pending(webhook).await {
            assert!(t0.elapsed() < PHASE_LIMIT, "deliveries still pending");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (received, t0.elapsed().as_secs_f64())
    }

    /// What the store and the receiver hold at a phase's end: a line on failures and
    /// duplicates, which must be none.
    async fn check(&self, webhook: &str, phase: &Phase, n: usize) -> (String, Vec<Value>) {
        let succeeded = self.deliveries(webhook, "succeeded").await;
        let failed = self.deliveries(webhook, "failed").await.len();
        let pending = self.deliveries(webhook, "pending").await.len();
        let refused = phase.refused.load(Ordering::Relaxed);
        let duplicates = phase.duplicates.load(Ordering::Relaxed);
        let distinct = phase.ids.lock().unwrap().len();
        let unknown = self.receiver.unknown.load(Ordering::Relaxed);
        let line = format!(
            "store: {} succeeded, {failed} failed, {pending} pending; receiver: {distinct} distinct webhook-ids, {refused} refused, {duplicates} duplicates, {unknown} to unknown paths",
            succeeded.len()
        );
        let clean = succeeded.len() == n
            && failed == 0
            && pending == 0
            && refused == 0
            && duplicates == 0
            && distinct == n
            && unknown == 0;
        if !clean {
            println!("  NOT CLEAN: {line}");
        }
        (line, succeeded)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The longest pause between two arrivals at `phase` (ms), and how many pauses exceeded
/// 100 ms: a dispatcher waiting (its idle poll) shows here.
fn pauses(phase: &Phase) -> (f64, usize) {
    let mut at: Vec<Instant> = phase
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .map(|(a, _, _)| *a)
        .collect();
    at.sort();
    let gaps: Vec<f64> = at
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1e3)
        .collect();
    (
        gaps.iter().copied().fold(0.0, f64::max),
        gaps.iter().filter(|g| **g > 100.0).count(),
    )
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Fills the outbox with `n` records' deliveries, then times the dispatcher emptying it.
async fn drain(setup: &mut Setup, n: usize, concurrency: usize) {
    let name = format!("drain-{concurrency}");
    let (webhook, phase) = setup.endpoint(&name).await;
    let (secs, _) = setup.create_records(n, &name).await;
    println!(
        "outbox fill:   {n} records created in {secs:.2} s = {:.0} records/s ({CREATORS} clients, no dispatcher)",
        n as f64 / secs
    );
    let t0 = Instant::now();
    let (stop, dispatcher) = setup.dispatcher(concurrency, None);
    let (received, settled) = setup.settled(&webhook, &phase, n as u64, t0).await;
    let _ = stop.send(());
    dispatcher.await.unwrap();
    let first = phase
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .map(|(at, _, _)| at.duration_since(t0).as_secs_f64())
        .fold(f64::INFINITY, f64::min);
    println!(
        "drain, concurrency {concurrency:>3}: {n} deliveries in {settled:.2} s = {:.0} deliveries/s (the receiver had all at {received:.2} s = {:.0}/s; the first after {:.0} ms)",
        n as f64 / settled,
        n as f64 / received,
        first * 1e3,
    );
    let (longest, long) = pauses(&phase);
    let (line, succeeded) = setup.check(&webhook, &phase, n).await;
    let ids = succeeded
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let latency = sorted(setup.attempt_latencies(&webhook, ids).await);
    println!(
        "  attempt latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; longest pause between arrivals {longest:.0} ms, {long} over 100 ms",
        percentile(&latency, 0.5),
        percentile(&latency, 0.99),
        percentile(&latency, 1.0),
    );
    println!("  {line}");
}

/// Creates `n` records while the dispatcher runs (with `idle_poll` instead of the server's if
/// given): end-to-end rate and lag.
async fn live(setup: &mut Setup, n: usize, concurrency: usize, idle_poll: Option<Duration>) {
    let poll = idle_poll.unwrap_or(DispatchConfig::for_timeout(Duration::from_secs(15)).idle_poll);
    let name = format!("live-{concurrency}-{}", poll.as_millis());
    let (webhook, phase) = setup.endpoint(&name).await;
    let (stop, dispatcher) = setup.dispatcher(concurrency, idle_poll);
    // The dispatcher's first (empty) claim is behind it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let (created, responses) = setup.create_records(n, &name).await;
    let during = phase.verified.load(Ordering::Relaxed);
    let (received, settled) = setup.settled(&webhook, &phase, n as u64, t0).await;
    let _ = stop.send(());
    dispatcher.await.unwrap();
    let arrivals = phase.arrivals.lock().unwrap().clone();
    let lag = sorted(arrivals.iter().map(|(_, us, _)| *us as f64 / 1e3).collect());
    // From the 201 to the arrival; negative when the delivery beat the response.
    let after_201 = sorted(
        arrivals
            .iter()
            .map(|(at, _, id)| {
                let answered = responses[id];
                if *at >= answered {
                    at.duration_since(answered).as_secs_f64() * 1e3
                } else {
                    -(answered.duration_since(*at).as_secs_f64() * 1e3)
                }
            })
            .collect(),
    );
    let (longest, long) = pauses(&phase);
    let (line, _) = setup.check(&webhook, &phase, n).await;
    println!(
        "live, concurrency {concurrency:>3}, idle poll {:>3} ms: {n} records created in {created:.2} s = {:.0} records/s while {during} were delivered ({:.0}/s); all delivered at {received:.2} s, all recorded at {settled:.2} s = {:.0} deliveries/s end to end",
        poll.as_millis(),
        n as f64 / created,
        during as f64 / created,
        n as f64 / settled,
    );
    println!(
        "  lag from the event's timestamp p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; from the create's 201 p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&lag, 0.5),
        percentile(&lag, 0.99),
        percentile(&lag, 1.0),
        percentile(&after_201, 0.5),
        percentile(&after_201, 0.99),
        percentile(&after_201, 1.0),
    );
    println!("  longest pause between arrivals {longest:.0} ms, {long} over 100 ms");
    println!("  {line}");
}

/// The dispatcher's steps timed one at a time, nothing else running: a claim of `size`
/// deliveries, preparing each (payload opened and narrowed, secret opened, signed), its POST
/// (keep-alive, the receiver verifying), and recording the batch's outcomes.
async fn steps(setup: &mut Setup) {
    const SIZES: [usize; 4] = [1, 16, 64, 200];
    const ROUNDS: usize = 10;
    let n = ROUNDS * SIZES.iter().sum::<usize>();
    let (webhook, phase) = setup.endpoint("steps").await;
    let _ = setup.create_records(n, "steps").await;
    let services = setup.bench.services.clone();
    let client = webhook_client();
    let lease = Duration::from_secs(35);
    println!("steps, one at a time, {ROUNDS} batches of each size:");
    for size in SIZES {
        let mut took = [Duration::ZERO; 4];
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let claimed = services
                .webhook_claim(u32::try_from(size).unwrap(), lease)
                .await
                .unwrap();
            took[0] += t.elapsed();
            assert_eq!(claimed.len(), size);
            let mut outcomes = Vec::with_capacity(size);
            for c in &claimed {
                let at = services.now();
                let t = Instant::now();
                let prepared = services
                    .webhook_prepare(c, at)
                    .await
                    .unwrap()
                    .expect("the bench endpoint may receive every event");
                took[1] += t.elapsed();
                let t = Instant::now();
                let sent = client
                    .post(&prepared.url, &prepared.headers, prepared.body)
                    .await;
                took[2] += t.elapsed();
                assert_eq!(sent.error, None);
                let result = AttemptResult {
                    status: sent.status,
                    latency: sent.latency,
                    body: sent.body,
                    error: sent.error,
                    permanent: false,
                };
                outcomes.push(services.webhook_outcome(c, at, result).unwrap());
            }
            let t = Instant::now();
            let recorded = services.webhook_record(&outcomes).await.unwrap();
            took[3] += t.elapsed();
            assert_eq!(recorded, size as u64);
        }
        let us = |d: Duration, per: usize| d.as_secs_f64() * 1e6 / per as f64;
        let all = ROUNDS * size;
        println!(
            "  batch {size:>3}: claim {:>6.0} µs ({:>4.0} µs a delivery), record {:>6.0} µs ({:>4.0} µs a delivery); a delivery's prepare {:>3.0} µs, POST {:>4.0} µs",
            us(took[0], ROUNDS),
            us(took[0], all),
            us(took[3], ROUNDS),
            us(took[3], all),
            us(took[1], all),
            us(took[2], all),
        );
    }
    let (line, _) = setup.check(&webhook, &phase, n).await;
    println!("  {line}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .expect("usage: webhook_bench <database-url> [records] [concurrency,…]");
    let n: usize = args.get(2).map_or(5_000, |v| v.parse().unwrap());
    let concurrencies: Vec<usize> = args
        .get(3)
        .map_or("64,256", String::as_str)
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    let mut config = common::config(url);
    // The server's own dispatcher stays off; the benchmark runs and times one.
    config.webhooks.concurrency = 0;
    config.webhooks.allow_cidrs = vec!["127.0.0.1/32".into()];
    let bench = Bench::start(config).await;
    let receiver = Arc::new(Receiver::default());
    let receiver_base = start_receiver(receiver.clone()).await;
    send(
        bench
            .client
            .post(format!(
                "{}/api/v1/workspaces/bench/collections",
                bench.base
            ))
            .bearer_auth(&bench.jwt)
            .json(&json!({"name": "notes", "fields": [{"name": "title", "type": "text"}]})),
    )
    .await;
    let key = bench.api_key("bench", &["read", "write"]).await;
    let mut setup = Setup {
        bench,
        receiver,
        receiver_base,
        key,
        current: None,
    };
    println!(
        "backend {}: {n} records per phase, one endpoint subscribed to record.created",
        Bench::backend(url)
    );
    for &c in &concurrencies {
        drain(&mut setup, n, c).await;
    }
    live(&mut setup, n, concurrencies[0], None).await;
    // What a shorter idle poll does to the lag (the server's is 200 ms).
    live(
        &mut setup,
        n,
        concurrencies[0],
        Some(Duration::from_millis(20)),
    )
    .await;
    steps(&mut setup).await;
    setup.bench.stop().await;
}
