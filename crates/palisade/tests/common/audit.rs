//! A workspace's audit log as the test suites read it: stored entries decoded from their exact
//! bytes.

use std::path::PathBuf;

use palisade_core::store::StoredEntry;
use reqwest::StatusCode;
use serde_json::Value;

use super::{Server, ws_path};

/// An audit entry as stored.
#[derive(Debug, Clone)]
pub struct Ev {
    pub seq: u64,
    pub action: String,
    /// (type, id).
    pub actor: (String, String),
    pub target: (String, String),
    /// The whole entry, and its `diff`.
    pub entry: Value,
    pub diff: Value,
    /// The entry's exact bytes.
    pub raw: String,
    /// The exact bytes followed by the values of its openings (for secret searches).
    pub raw_with_openings: String,
    /// The pointers its openings hold values for.
    pub openings: Vec<String>,
}

pub fn pair(kind: &str, id: &str) -> (String, String) {
    (kind.to_owned(), id.to_owned())
}

pub fn ev(e: StoredEntry) -> Ev {
    let v: Value = serde_json::from_slice(&e.bytes).unwrap();
    let p = |x: &Value| {
        (
            x["type"].as_str().unwrap_or_default().to_owned(),
            x["id"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let raw = String::from_utf8(e.bytes).unwrap();
    let mut raw_with_openings = raw.clone();
    for o in &e.openings {
        raw_with_openings.push('\n');
        raw_with_openings.push_str(&o.value.to_string());
    }
    Ev {
        seq: e.seq,
        action: v["action"].as_str().unwrap().to_owned(),
        actor: p(&v["actor"]),
        target: p(&v["target"]),
        diff: v["diff"].clone(),
        entry: v,
        raw,
        raw_with_openings,
        openings: e.openings.iter().map(|o| o.pointer.clone()).collect(),
    }
}

/// The workspace's log as stored, oldest first.
pub async fn workspace_audit(s: &Server, ws: &str) -> Vec<Ev> {
    let mut events: Vec<Ev> = s.workspace_log(ws).await.into_iter().map(ev).collect();
    events.reverse();
    events
}

/// The newest seq of the workspace's log (0 when empty).
pub async fn audit_head(s: &Server, ws: &str) -> u64 {
    s.workspace_log(ws).await.first().map_or(0, |e| e.seq)
}

pub fn python() -> Option<String> {
    match std::env::var("PALISADE_TEST_PYTHON") {
        Ok(p) => Some(p),
        Err(_) if std::env::var("PALISADE_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("PALISADE_TEST_PYTHON is set by scripts/test.sh")
        }
        Err(_) => None,
    }
}

/// Runs a command off the runtime thread; returns (exit code, stdout as JSON).
pub async fn run(program: String, args: Vec<String>) -> (i32, Value) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(&program)
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::String(
            stdout + &String::from_utf8_lossy(&out.stderr),
        ));
        (out.status.code().unwrap_or(-1), json)
    })
    .await
    .unwrap()
}

/// Downloads the workspace's log once a checkpoint covers `size` entries, and has both
/// verifiers (`palisade audit verify` and the Python reference) check it.
pub async fn assert_log_verifies(s: &Server, token: &str, ws: &str, size: u64) -> Value {
    let b = s.backend();
    let mut checkpoint = Value::Null;
    for _ in 0..200 {
        let r = s.get(&ws_path(ws, "/audit/checkpoint"), Some(token)).await;
        if r.status == StatusCode::OK && r.body["tree_size"].as_u64().unwrap() >= size {
            checkpoint = r.body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(checkpoint.is_object(), "{b}: no checkpoint of size {size}");
    let jwks = s
        .get(&ws_path(ws, "/audit/jwks.json"), Some(token))
        .await
        .body;
    let r = s
        .client
        .get(format!("{}{}", s.base, ws_path(ws, "/audit/entries")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{b}: entries");
    let entries = r.text().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: String| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let args: Vec<String> = vec![
        "--jwks".into(),
        file("jwks.json", jwks.to_string()).display().to_string(),
        "--checkpoint".into(),
        file("checkpoint.json", checkpoint.to_string())
            .display()
            .to_string(),
        "--entries".into(),
        file("entries.ndjson", entries).display().to_string(),
        "--json".into(),
    ];
    let mut rust_args = vec!["audit".to_owned(), "verify".to_owned()];
    rust_args.extend(args.clone());
    let (code, report) = run(env!("CARGO_BIN_EXE_palisade").into(), rust_args).await;
    assert_eq!(code, 0, "{b}: palisade audit verify: {report}");
    assert_eq!(report["status"], "verified", "{b}: {report}");
    if let Some(python) = python() {
        let mut py_args = vec![
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/verifier/verify.py"
            )
            .to_owned(),
        ];
        py_args.extend(args);
        let (code, py) = run(python, py_args).await;
        assert_eq!(code, 0, "{b}: verify.py: {py}");
        for k in ["status", "tree_size", "root", "entries"] {
            assert_eq!(report[k], py[k], "{b}: verifiers disagree on {k}");
        }
    }
    report
}
