//! Re-encryption throughput, for `scripts/bench-keys.sh` (KMS-3, issue 9): how fast a data-key
//! rotation moves a workspace's encrypted values to the new version, idle and under a read and
//! write load.
//!
//! Starts the real server in-process on 127.0.0.1, creates a workspace with `records` records of
//! two encrypted fields over HTTP, then rotates the workspace's data key and times the
//! re-encryption (`run_key_rotations`, as the worker runs it) until the job is done: once with
//! no other traffic, once while 8 clients read and write records over HTTP (their request rate
//! and failures are reported too).
//!
//! Usage: reencrypt_bench <database-url> [records]

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Bench, send};
use palisade::config::KeysConfig;
use serde_json::json;

/// Rotates the workspace's data key and works the job to the end; (seconds, values looked at
/// over every pass, passes).
async fn rotate(services: &palisade_core::Services, ws: &str) -> (f64, i64, i64) {
    let t = Instant::now();
    let job = services.rotate_data_key(ws, "operator").await.unwrap();
    loop {
        services.run_key_rotations().await.unwrap();
        let status = services.key_status().await.unwrap();
        let done = status
            .rotations
            .iter()
            .find(|r| r.id == job.id && r.state == "done");
        if let Some(r) = done {
            return (t.elapsed().as_secs_f64(), r.scanned, r.pass);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .expect("usage: reencrypt_bench <database-url> [records]");
    let n: usize = args.get(2).map_or(20_000, |v| v.parse().unwrap());
    let mut config = common::config(url);
    config.keys = KeysConfig {
        rotation_days: 0,
        propagation_secs: 0,
    };
    let bench = Bench::start(config).await;
    let (services, client, ws) = (
        bench.services.clone(),
        bench.client.clone(),
        bench.workspace.clone(),
    );
    send(
        client
            .post(format!(
                "{}/api/v1/workspaces/bench/collections",
                bench.base
            ))
            .bearer_auth(&bench.jwt)
            .json(&json!({"name": "notes", "fields": [
                {"name": "title", "type": "text"},
                {"name": "body", "type": "text", "encrypted": true},
                {"name": "secret", "type": "text", "encrypted": true}
            ]})),
    )
    .await;
    let key = bench.api_key("bench", &["read", "write"]).await;
    let base = bench.base.clone();
    let records = format!("{base}/api/v1/workspaces/bench/collections/notes/records");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (client, records, key) = (client.clone(), records.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (w..n).step_by(8) {
                let v = send(client.post(&records).bearer_auth(&key).json(&json!({
                    "title": format!("note {i}"),
                    "body": format!("a private note, number {i}"),
                    "secret": format!("secret-{i}"),
                })))
                .await;
                ids.push(v["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let backend = Bench::backend(url);
    println!(
        "backend {backend}: {n} records with 2 encrypted fields created in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Every record's two values move; a last pass checks that none is left behind.
    let moved = 2 * n;
    let (secs, scanned, passes) = rotate(&services, &ws).await;
    println!(
        "idle:       {moved} values re-encrypted in {secs:.2} s = {:.0} values/s ({passes} passes, {scanned} values looked at)",
        moved as f64 / secs
    );

    // The same under load: 4 writers patching, 4 readers getting and listing.
    let stop_load = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(ids);
    let mut load = Vec::new();
    for w in 0..8usize {
        let (client, records, key) = (client.clone(), records.clone(), key.clone());
        let (stop_load, requests, failures, ids) = (
            stop_load.clone(),
            requests.clone(),
            failures.clone(),
            ids.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut i = w;
            while !stop_load.load(Ordering::Relaxed) {
                i += 8;
                let id = &ids[i % ids.len()];
                let req = if w < 4 {
                    client
                        .patch(format!("{records}/{id}"))
                        .json(&json!({"title": format!("edit {i}")}))
                } else if i % 2 == 0 {
                    client.get(format!("{records}/{id}"))
                } else {
                    client.get(format!("{records}?limit=20"))
                };
                let ok = req
                    .bearer_auth(&key)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                requests.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = requests.load(Ordering::Relaxed);
    let (secs, scanned, passes) = rotate(&services, &ws).await;
    let during = requests.load(Ordering::Relaxed) - before;
    stop_load.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    println!(
        "under load: {moved} values re-encrypted in {secs:.2} s = {:.0} values/s ({passes} passes, {scanned} looked at), while serving {:.0} requests/s, {} failed",
        moved as f64 / secs,
        during as f64 / secs,
        failures.load(Ordering::Relaxed)
    );
    bench.stop().await;
}
