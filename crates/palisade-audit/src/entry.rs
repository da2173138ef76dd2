//! Entries: the exact bytes a log stores and hashes (AUDIT-SPEC §2). Written once, at append
//! time, in canonical form; read back without re-serializing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::jcs::{self, CanonError};
use crate::{Hash, b64url};

/// Format version of entries.
pub const VERSION: u64 = 1;
/// Largest entry, in bytes.
pub const MAX_ENTRY_BYTES: usize = 65_535;
/// Members every entry has; extra members may not reuse them.
pub const RESERVED: [&str; 13] = [
    "v",
    "ws",
    "seq",
    "prev",
    "ts",
    "action",
    "result",
    "actor",
    "target",
    "request_id",
    "diff",
    "pii",
    "gdpr",
];
/// Log id of the instance log (account events); its origin ends in `/instance`.
pub const INSTANCE_LOG: &str = "instance";

/// Why an entry cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Canon(#[from] CanonError),
    #[error("entry is {0} bytes, more than the 65,535 allowed")]
    TooLarge(usize),
    #[error("member {0:?} is reserved")]
    Reserved(String),
    #[error("{0} must be a JSON object")]
    NotObject(&'static str),
}

/// Everything an entry says, before it is serialized.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub ws: &'a str,
    pub seq: u64,
    pub prev: Hash,
    /// RFC 3339 UTC with microseconds and `Z`.
    pub ts: &'a str,
    pub action: &'a str,
    pub result: &'a str,
    pub actor: (&'a str, &'a str),
    pub target: (&'a str, &'a str),
    pub request_id: Option<&'a str>,
    /// `{"/field": [before, after]}`.
    pub diff: &'a Value,
    /// `{"<pointer>": "<commitment>"}`.
    pub pii: &'a BTreeMap<String, String>,
    /// Further members (`data` for application events, `erased` for erasures).
    pub extra: &'a Map<String, Value>,
}

impl Entry<'_> {
    /// The canonical bytes (RFC 8785), at most [`MAX_ENTRY_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        if !self.diff.is_object() {
            return Err(EntryError::NotObject("diff"));
        }
        let mut m = Map::new();
        for (k, v) in self.extra {
            if RESERVED.contains(&k.as_str()) {
                return Err(EntryError::Reserved(k.clone()));
            }
            m.insert(k.clone(), v.clone());
        }
        let pair = |kind: &str, id: &str| {
            let mut o = Map::new();
            o.insert("type".into(), Value::String(kind.into()));
            o.insert("id".into(), Value::String(id.into()));
            Value::Object(o)
        };
        m.insert("v".into(), VERSION.into());
        m.insert("ws".into(), self.ws.into());
        m.insert("seq".into(), self.seq.into());
        m.insert("prev".into(), b64url(&self.prev).into());
        m.insert("ts".into(), self.ts.into());
        m.insert("action".into(), self.action.into());
        m.insert("result".into(), self.result.into());
        m.insert("actor".into(), pair(self.actor.0, self.actor.1));
        m.insert("target".into(), pair(self.target.0, self.target.1));
        if let Some(id) = self.request_id {
            m.insert("request_id".into(), id.into());
        }
        m.insert("diff".into(), self.diff.clone());
        let pii: Map<String, Value> = self
            .pii
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().into()))
            .collect();
        m.insert("gdpr".into(), (!pii.is_empty()).into());
        m.insert("pii".into(), Value::Object(pii));
        let bytes = jcs::canonical(&Value::Object(m))?;
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }
}

/// The members a verifier reads, borrowed from the entry bytes where possible.
#[derive(Debug, Deserialize)]
pub struct EntryView<'a> {
    pub v: u64,
    #[serde(borrow)]
    pub ws: Cow<'a, str>,
    pub seq: u64,
    #[serde(borrow)]
    pub prev: Cow<'a, str>,
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    #[serde(borrow)]
    pub result: Cow<'a, str>,
    pub gdpr: bool,
    #[serde(borrow)]
    pub pii: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(default, borrow)]
    pub erased: Vec<Erased<'a>>,
}

/// One personal value removed by a `privacy.erasure` entry.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Erased<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub pointer: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{genesis, leaf_hash};

    fn spec_entry(
        seq: u64,
        prev: Hash,
        action: &str,
        target: &str,
        pii: &BTreeMap<String, String>,
    ) -> Vec<u8> {
        let ts = format!("2026-11-20T10:00:0{seq}.000000Z");
        let id = format!("obj_{seq}");
        Entry {
            ws: "ws_test",
            seq,
            prev,
            ts: &ts,
            action,
            result: "success",
            actor: ("user", "usr_1"),
            target: (target, &id),
            request_id: None,
            diff: &Value::Object(Map::new()),
            pii,
            extra: &Map::new(),
        }
        .encode()
        .unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // AUDIT-SPEC.md §10: the three entries, byte for byte, their leaves and the root.
    #[test]
    fn spec_entries_reproduce_byte_for_byte() {
        let none = BTreeMap::new();
        let e0 = spec_entry(
            0,
            genesis("ws_test"),
            "workspace.create",
            "workspace",
            &none,
        );
        assert_eq!(
            String::from_utf8(e0.clone()).unwrap(),
            r#"{"action":"workspace.create","actor":{"id":"usr_1","type":"user"},"diff":{},"gdpr":false,"pii":{},"prev":"OGj4kKx0Nixp2iOWMMsVtJiXcWLD-JVxAEw9TCo7iI4","result":"success","seq":0,"target":{"id":"obj_0","type":"workspace"},"ts":"2026-11-20T10:00:00.000000Z","v":1,"ws":"ws_test"}"#
        );
        let l0 = leaf_hash(&e0);
        assert_eq!(
            hex(&l0),
            "33071d7cee4d4a6f537baa376252d02cf2562765539266874d04799bbadf1ba5"
        );

        let salt: [u8; 32] = std::array::from_fn(|i| i as u8);
        let c = b64url(&crate::pii_commitment(&salt, br#""203.0.113.7""#));
        let pii = BTreeMap::from([("/ip".to_owned(), c)]);
        let e1 = spec_entry(1, l0, "user.invite", "user", &pii);
        assert_eq!(
            String::from_utf8(e1.clone()).unwrap(),
            r#"{"action":"user.invite","actor":{"id":"usr_1","type":"user"},"diff":{},"gdpr":true,"pii":{"/ip":"bKW654h1CDiVMHfzkGBPaIr-fOZwKsBneb3T4f8k8KE"},"prev":"MwcdfO5NSm9Te6o3YlLQLPJWJ2VTkmaHTQR5m7rfG6U","result":"success","seq":1,"target":{"id":"obj_1","type":"user"},"ts":"2026-11-20T10:00:01.000000Z","v":1,"ws":"ws_test"}"#
        );
        let l1 = leaf_hash(&e1);
        assert_eq!(
            hex(&l1),
            "3cd4a7806d03eb5755af1136d2d55c6fb5ba57b5f02fa8b22b100b652829373d"
        );

        let e2 = spec_entry(2, l1, "document.delete", "document", &none);
        assert_eq!(
            String::from_utf8(e2.clone()).unwrap(),
            r#"{"action":"document.delete","actor":{"id":"usr_1","type":"user"},"diff":{},"gdpr":false,"pii":{},"prev":"PNSngG0D61dVrxE20tVcb7W6V7XwL6iyKxALZSgpNz0","result":"success","seq":2,"target":{"id":"obj_2","type":"document"},"ts":"2026-11-20T10:00:02.000000Z","v":1,"ws":"ws_test"}"#
        );
        let l2 = leaf_hash(&e2);
        assert_eq!(
            hex(&l2),
            "8897b4f69697296b31c547823d51e6434c6356d24d31256d9b65fdd24e3ee2d9"
        );

        let mut f = crate::merkle::Frontier::default();
        for l in [l0, l1, l2] {
            f.push(l);
        }
        assert_eq!(
            hex(&f.root()),
            "06e6dee25936e82dc52fb1ea6cbf2cabc370fc97360411c795c00f0a2a4aa426"
        );
    }

    #[test]
    fn refuses_reserved_members_floats_and_oversized_entries() {
        let none = BTreeMap::new();
        let diff = Value::Object(Map::new());
        let base = |extra: &Map<String, Value>| {
            Entry {
                ws: "ws_test",
                seq: 0,
                prev: genesis("ws_test"),
                ts: "2026-11-20T10:00:00.000000Z",
                action: "note.create",
                result: "success",
                actor: ("system", "worker"),
                target: ("note", "n1"),
                request_id: Some("req_1"),
                diff: &diff,
                pii: &none,
                extra,
            }
            .encode()
        };
        let mut extra = Map::new();
        extra.insert("seq".into(), 5.into());
        assert_eq!(base(&extra), Err(EntryError::Reserved("seq".into())));
        let mut extra = Map::new();
        extra.insert("data".into(), serde_json::json!({"score": 0.5}));
        assert!(matches!(base(&extra), Err(EntryError::Canon(_))));
        let mut extra = Map::new();
        extra.insert("data".into(), "x".repeat(70_000).into());
        assert!(matches!(base(&extra), Err(EntryError::TooLarge(_))));
        let ok = base(&Map::new()).unwrap();
        let view: EntryView = serde_json::from_slice(&ok).unwrap();
        assert_eq!(
            (view.seq, view.ws.as_ref(), view.gdpr),
            (0, "ws_test", false)
        );
    }
}
