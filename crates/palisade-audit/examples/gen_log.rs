//! Writes a signed synthetic log for the verification benchmark: `jwks.json`,
//! `checkpoint.json` and `entries.ndjson` in DIR, N entries shaped like real request-born
//! entries (diff, IP and user-agent commitments with their openings).
//!
//! Usage: cargo run --release -p palisade-audit --example gen_log -- DIR [N]

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_audit::checkpoint::{Checkpoint, Jwk, sign_jws, sign_note};
use palisade_audit::entry::Entry;
use palisade_audit::merkle::Frontier;
use palisade_audit::{b64url, genesis, leaf_hash, pii_commitment};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: gen_log DIR [N]"));
    let n: u64 = args.next().map_or(1_000_000, |v| v.parse().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let ws = "ws_06f1x9k2m3n4p5q6r7s8t9v0wx";
    let origin = format!("bench.example.com/ws/{ws}");
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(dir.join("entries.ndjson")).unwrap(),
    );
    let mut frontier = Frontier::default();
    let mut prev = genesis(ws);
    let extra = Map::new();
    for seq in 0..n {
        let salt_ip: [u8; 32] = Sha256::digest(seq.to_le_bytes()).into();
        let salt_ua: [u8; 32] = Sha256::digest(salt_ip).into();
        let ip = Value::String(format!("203.0.113.{}", seq % 250));
        let ua = Value::String("Mozilla/5.0 (X11; Linux x86_64) Palisade-bench/1.0".into());
        let mut pii = BTreeMap::new();
        pii.insert(
            "/ip".to_owned(),
            b64url(&pii_commitment(&salt_ip, ip.to_string().as_bytes())),
        );
        pii.insert(
            "/user_agent".to_owned(),
            b64url(&pii_commitment(&salt_ua, ua.to_string().as_bytes())),
        );
        let diff = json!({"/name": [format!("Name {seq}"), format!("Name {}", seq + 1)]});
        let ts = format!(
            "2026-11-20T10:{:02}:{:02}.{:06}Z",
            (seq / 60) % 60,
            seq % 60,
            seq % 1_000_000
        );
        let target = format!("rec_{seq:012}");
        let request = format!("req_{seq:020}");
        let bytes = Entry {
            ws,
            seq,
            prev,
            ts: &ts,
            action: "record.update",
            result: "success",
            actor: ("user", "usr_06f1x9k2m3n4p5q6r7s8t9v0wx"),
            target: ("record", &target),
            request_id: Some(&request),
            diff: &diff,
            pii: &pii,
            extra: &extra,
        }
        .encode()
        .unwrap();
        prev = leaf_hash(&bytes);
        frontier.push_with(prev, |_, _| {});
        let line = json!({
            "seq": seq,
            "entry": URL_SAFE_NO_PAD.encode(&bytes),
            "pii": [
                {"pointer": "/ip", "salt": URL_SAFE_NO_PAD.encode(salt_ip), "value": ip},
                {"pointer": "/user_agent", "salt": URL_SAFE_NO_PAD.encode(salt_ua), "value": ua},
            ],
            "redacted": [],
        });
        writeln!(out, "{line}").unwrap();
    }
    out.flush().unwrap();
    let body = Checkpoint {
        origin: origin.clone(),
        size: n,
        root: frontier.root(),
    }
    .body();
    let cp = json!({"body": body, "jws": sign_jws(&key, &body), "note": sign_note(&key, &origin, &body)});
    std::fs::write(dir.join("checkpoint.json"), cp.to_string()).unwrap();
    let jwks = json!({"keys": [Jwk::ed25519(&key.verifying_key())], "audit_log": {"origin": origin, "daily": [], "min_index": 0}});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
    println!("wrote {n} entries to {}", dir.display());
}
