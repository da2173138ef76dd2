//! The streaming verifier on logs built here: erasure-explained redactions, the parallel batch
//! path agreeing with line-by-line feeding, and the failures each check exists for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use palisade_audit::checkpoint::{Checkpoint, Jwk, sign_jws, sign_note};
use palisade_audit::entry::Entry;
use palisade_audit::merkle::Frontier;
use palisade_audit::verify::{Jwks, Report, SignedCheckpoint, Verifier};
use palisade_audit::{Hash, b64url, genesis, leaf_hash, pii_commitment};
use serde_json::{Map, Value, json};

const WS: &str = "ws_test";
const ORIGIN: &str = "audit.example.com/ws/ws_test";

struct Log {
    lines: Vec<Value>,
    frontier: Frontier,
    prev: Hash,
}

impl Log {
    fn new() -> Self {
        Self {
            lines: Vec::new(),
            frontier: Frontier::default(),
            prev: genesis(WS),
        }
    }

    /// Appends an entry; `ip` adds a committed, opened personal value; `extra` extra members.
    fn push(&mut self, action: &str, ip: Option<&str>, extra: Map<String, Value>) {
        let seq = self.frontier.size();
        let salt = [seq as u8; 32];
        let mut pii = BTreeMap::new();
        let mut openings = Vec::new();
        if let Some(ip) = ip {
            let value = json!(ip);
            pii.insert(
                "/ip".to_owned(),
                b64url(&pii_commitment(&salt, value.to_string().as_bytes())),
            );
            openings.push(
                json!({"pointer": "/ip", "salt": URL_SAFE_NO_PAD.encode(salt), "value": value}),
            );
        }
        let ts = format!("2026-11-20T10:00:{:02}.000000Z", seq % 60);
        let id = format!("obj_{seq}");
        let bytes = Entry {
            ws: WS,
            seq,
            prev: self.prev,
            ts: &ts,
            action,
            result: "success",
            actor: ("user", "usr_1"),
            target: ("thing", &id),
            request_id: None,
            diff: &json!({}),
            pii: &pii,
            extra: &extra,
        }
        .encode()
        .unwrap();
        self.prev = leaf_hash(&bytes);
        self.frontier.push(self.prev);
        self.lines.push(json!({"seq": seq, "entry": URL_SAFE_NO_PAD.encode(&bytes), "pii": openings, "redacted": []}));
    }

    fn verify(&self, lines: &[Value], batch: bool) -> Report {
        let key = SigningKey::from_bytes(&[5; 32]);
        let body = Checkpoint {
            origin: ORIGIN.into(),
            size: self.frontier.size(),
            root: self.frontier.root(),
        }
        .body();
        let cp = SignedCheckpoint {
            body: Some(body.clone()),
            jws: sign_jws(&key, &body),
            note: Some(sign_note(&key, ORIGIN, &body)),
            ..Default::default()
        };
        let jwks = Jwks {
            keys: vec![serde_json::to_value(Jwk::ed25519(&key.verifying_key())).unwrap()],
            audit_log: None,
        };
        let mut v = Verifier::new(&jwks, &cp, &[]).unwrap();
        let raw: Vec<Vec<u8>> = lines.iter().map(|l| l.to_string().into_bytes()).collect();
        if batch {
            let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
            let _ = v.feed_batch(&refs);
        } else {
            for l in &raw {
                if v.feed(l).is_err() {
                    break;
                }
            }
        }
        v.finish()
    }
}

fn erasure(seq: u64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("erased".into(), json!([{"pointer": "/ip", "seq": seq}]));
    m
}

#[test]
fn a_redaction_explained_by_a_later_erasure_verifies() {
    let mut log = Log::new();
    log.push("thing.create", Some("203.0.113.7"), Map::new());
    log.push("thing.update", Some("203.0.113.8"), Map::new());
    log.push("privacy.erasure", None, erasure(0));
    let mut lines = log.lines.clone();
    lines[0]["pii"] = json!([]);
    lines[0]["redacted"] = json!([{"pointer": "/ip", "by": 2}]);
    let r = log.verify(&lines, false);
    assert_eq!(r.status, "verified", "{r:?}");
    assert_eq!((r.pii.verified, r.pii.redacted), (1, 1));

    // The same redaction blamed on an entry that erased nothing else, or on a missing entry.
    let mut wrong = lines.clone();
    wrong[1]["pii"] = json!([]);
    wrong[1]["redacted"] = json!([{"pointer": "/ip", "by": 2}]);
    let r = log.verify(&wrong, false);
    assert_eq!((r.status, r.failure.unwrap().seq), ("tampered", Some(1)));
    let mut dangling = lines.clone();
    dangling[0]["redacted"] = json!([{"pointer": "/ip", "by": 9}]);
    assert_eq!(log.verify(&dangling, false).status, "tampered");
}

#[test]
fn batch_and_line_by_line_agree_on_valid_and_tampered_logs() {
    let mut log = Log::new();
    for i in 0..1500 {
        log.push(
            "thing.update",
            (i % 3 == 0).then_some("198.51.100.1"),
            Map::new(),
        );
    }
    let a = log.verify(&log.lines, true);
    assert_eq!(a, log.verify(&log.lines, false));
    assert_eq!(
        (a.status, a.entries, a.pii.verified),
        ("verified", 1500, 500)
    );

    let mut swapped = log.lines.clone();
    swapped.swap(1000, 1001);
    let b = log.verify(&swapped, true);
    assert_eq!(b, log.verify(&swapped, false));
    assert_eq!(
        (b.status, b.failure.as_ref().unwrap().seq),
        ("tampered", Some(1000))
    );

    let mut altered = log.lines.clone();
    altered[999]["pii"][0]["value"] = json!("198.51.100.2");
    let c = log.verify(&altered, true);
    assert_eq!((c.status, c.failure.unwrap().seq), ("tampered", Some(999)));

    let truncated = &log.lines[..1499];
    let d = log.verify(truncated, true);
    assert_eq!(d.status, "tampered");
    assert!(d.failure.unwrap().reason.contains("truncated"));
}
