//! A workspace's audit log as the test suites read it: stored entries decoded from their exact
//! bytes.

use palisade_core::store::StoredEntry;
use serde_json::Value;

use super::Server;

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
