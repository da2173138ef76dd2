//! API key verification cost, for `scripts/bench-api-keys.sh` (KEY-1, issue 7): the server
//! time a request spends turning `Authorization: Bearer pal_…` into a workspace scope, against
//! the same request's work with no authentication at all.
//!
//! Starts the real server in-process on 127.0.0.1 (the worker included, so the key cache's lease
//! is renewed as in production), sets up a user, a workspace and keys over HTTP, then times the
//! services the HTTP layer calls:
//! - `no auth`: the workspace read with a ready-made scope (what the handler does);
//! - `api key`: the key check (`api_key_scope`: shape, checksum, SHA-256, cache, rate budgets)
//!   and then the same read;
//! - `jwt`: the access-token path (signature, session row, membership) and the same read;
//! - the key check alone, warm (cache) and cold (a key's first use: one database lookup).
//!
//! Usage: api_key_bench <database-url> [iterations]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::time::{Duration, Instant};

use common::Bench;
use palisade_core::principal::RequestMeta;

struct Stats {
    mean: f64,
    p50: f64,
    p99: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let total: f64 = samples.iter().copied().map(us).sum();
    Stats {
        mean: total / samples.len() as f64,
        p50: us(samples[samples.len() / 2]),
        p99: us(samples[samples.len() * 99 / 100]),
    }
}

fn report(name: &str, s: &Stats) {
    println!(
        "{name:<44} mean {:>8.1} µs   p50 {:>8.1} µs   p99 {:>8.1} µs",
        s.mean, s.p50, s.p99
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .expect("usage: api_key_bench <database-url> [iterations]");
    let n: usize = args.get(2).map_or(20_000, |v| v.parse().unwrap());
    let bench = Bench::start(common::config(url)).await;
    let services = bench.services.clone();
    let jwt = bench.jwt.clone();
    let key = bench.api_key("bench", &["read", "write"]).await;
    // The cache serves only under a lease the worker's sync renews every 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let meta = RequestMeta::default();
    let scope = services.api_key_scope(&key, "bench", &meta).await.unwrap();
    for _ in 0..1_000 {
        let s = services.api_key_scope(&key, "bench", &meta).await.unwrap();
        services.get_workspace(&s).await.unwrap();
    }

    let backend = Bench::backend(url);
    println!("backend {backend}, {n} sequential iterations each");
    let mut no_auth = Vec::with_capacity(n);
    let mut with_key = Vec::with_capacity(n);
    let mut check_only = Vec::with_capacity(n);
    let mut with_jwt = Vec::with_capacity(n);
    let lookups_before = services.api_key_lookups();
    // Interleaved, so drift (WAL growth, autovacuum) hits every variant alike.
    for _ in 0..n {
        let t = Instant::now();
        services.get_workspace(&scope).await.unwrap();
        no_auth.push(t.elapsed());

        let t = Instant::now();
        let s = services.api_key_scope(&key, "bench", &meta).await.unwrap();
        let checked = t.elapsed();
        services.get_workspace(&s).await.unwrap();
        with_key.push(t.elapsed());
        check_only.push(checked);

        let t = Instant::now();
        let principal = services.authenticate(&jwt).await.unwrap();
        let s = services
            .tenant_scope(&principal, "bench", &meta)
            .await
            .unwrap();
        services.get_workspace(&s).await.unwrap();
        with_jwt.push(t.elapsed());
    }
    let lookups = services.api_key_lookups() - lookups_before;
    let (a, b, c, j) = (
        stats(no_auth),
        stats(with_key),
        stats(check_only),
        stats(with_jwt),
    );
    report("GET workspace, no auth (scope given)", &a);
    report("GET workspace, API key", &b);
    report("GET workspace, JWT + session + membership", &j);
    report("API key check alone (warm)", &c);
    println!(
        "API key adds (mean, with key − no auth): {:.1} µs; database lookups during the run: {lookups}",
        b.mean - a.mean
    );

    // Cold: each key's first use reads the database once.
    let mut cold_keys = Vec::new();
    for i in 0..200 {
        cold_keys.push(
            bench
                .api_key(&format!("cold {i}"), &["read", "write"])
                .await,
        );
    }
    let mut cold = Vec::with_capacity(cold_keys.len());
    for k in &cold_keys {
        let t = Instant::now();
        services.api_key_scope(k, "bench", &meta).await.unwrap();
        cold.push(t.elapsed());
    }
    report("API key check, first use (database lookup)", &stats(cold));

    // Malformed keys are refused before any database work.
    let bad = format!("{}x", &key[..key.len() - 1]);
    let t = Instant::now();
    for _ in 0..n {
        assert!(services.api_key_scope(&bad, "bench", &meta).await.is_err());
    }
    println!(
        "{:<44} mean {:>8.2} µs",
        "bad checksum, refused",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    bench.stop().await;
}
