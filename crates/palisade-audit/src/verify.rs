//! The streaming verifier (AUDIT-SPEC §9): checkpoint signatures against a JWKS, the origin,
//! contiguous `seq`, every `prev`, every opening against its commitment, every missing opening
//! against an erasure entry, the recomputed root against the checkpoint, and every trusted older
//! checkpoint. Memory stays O(log n) plus pending redactions; entries are never re-serialized.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::{self, Checkpoint, Jwk};
use crate::entry::{EntryView, INSTANCE_LOG, MAX_ENTRY_BYTES, VERSION};
use crate::merkle::Frontier;
use crate::{Hash, b64url, genesis, jcs, leaf_hash, pii_commitment};

/// A JWKS as served at `jwks.json`: keys plus the `audit_log` member.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Jwks {
    #[serde(default)]
    pub keys: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<AuditLogInfo>,
}

impl Jwks {
    /// The Ed25519 keys; anything else is skipped.
    pub fn ed25519_keys(&self) -> Vec<Jwk> {
        self.keys
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter(|k| k.verifying_key().is_some())
            .collect()
    }
}

/// The `audit_log` member of a workspace JWKS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditLogInfo {
    pub origin: String,
    #[serde(default)]
    pub daily: Vec<DailyCheckpointRef>,
    #[serde(default)]
    pub min_index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DailyCheckpointRef {
    pub date: String,
    pub tree_size: u64,
    pub jws: String,
}

/// A checkpoint as served and archived: the JWS is authoritative, the rest must agree with it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub tree_size: Option<u64>,
    #[serde(default)]
    pub root: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    pub jws: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// One NDJSON line of `entries`.
#[derive(Debug, Deserialize)]
struct Line<'a> {
    seq: u64,
    #[serde(borrow)]
    entry: Cow<'a, str>,
    #[serde(default)]
    pii: Vec<LineOpening<'a>>,
    #[serde(default)]
    redacted: Vec<LineRedaction<'a>>,
}

#[derive(Debug, Deserialize)]
struct LineOpening<'a> {
    #[serde(borrow)]
    pointer: Cow<'a, str>,
    #[serde(borrow)]
    salt: Cow<'a, str>,
    value: Value,
}

#[derive(Debug, Deserialize)]
struct LineRedaction<'a> {
    #[serde(borrow)]
    pointer: Cow<'a, str>,
    by: u64,
}

/// The first problem found: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub seq: Option<u64>,
    pub reason: String,
}

impl Failure {
    fn at(seq: u64, reason: impl Into<String>) -> Self {
        Self {
            seq: Some(seq),
            reason: reason.into(),
        }
    }
    fn log(reason: impl Into<String>) -> Self {
        Self {
            seq: None,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "at seq {seq}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// Personal fields by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PiiCounts {
    pub verified: u64,
    pub redacted: u64,
    pub unexplained: u64,
}

/// The outcome, in the `--json` shape both verifiers print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub status: &'static str,
    pub origin: Option<String>,
    pub tree_size: Option<u64>,
    pub root: Option<String>,
    pub entries: u64,
    pub failure: Option<Failure>,
    pub pii: PiiCounts,
}

struct Target {
    checkpoint: Checkpoint,
    label: String,
}

/// Verifies a log fed one NDJSON line at a time.
pub struct Verifier {
    origin: String,
    head: Checkpoint,
    targets: Vec<Target>,
    ws: Option<String>,
    expected_prev: Hash,
    frontier: Frontier,
    /// `(seq, pointer, by)` redactions not yet matched with their erasure entry.
    pending: BTreeMap<u64, Vec<(u64, String)>>,
    pii: PiiCounts,
    entry_buf: Vec<u8>,
    failure: Option<Failure>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("origin", &self.origin)
            .field("size", &self.frontier.size())
            .finish()
    }
}

/// Checks one signed checkpoint: the JWS against the keys, then the body, the note and the
/// convenience members against the signed payload.
pub fn check_signed(cp: &SignedCheckpoint, keys: &[Jwk]) -> Result<Checkpoint, String> {
    let (payload, jwk) = checkpoint::verify_jws(&cp.jws, keys).map_err(|e| e.to_string())?;
    let parsed = Checkpoint::parse(&payload).map_err(|e| e.to_string())?;
    if cp.body.as_deref().is_some_and(|b| b != payload) {
        return Err("checkpoint body differs from the signed payload".into());
    }
    if cp.origin.as_deref().is_some_and(|o| o != parsed.origin)
        || cp.tree_size.is_some_and(|s| s != parsed.size)
        || cp
            .root
            .as_deref()
            .is_some_and(|r| r != STANDARD.encode(parsed.root))
    {
        return Err("checkpoint members differ from the signed payload".into());
    }
    if let Some(note) = &cp.note {
        let key = jwk.verifying_key().ok_or("JWKS key is not Ed25519")?;
        let body =
            checkpoint::verify_note(note, &parsed.origin, &key).map_err(|e| e.to_string())?;
        if body != payload {
            return Err("signed note body differs from the JWS payload".into());
        }
    }
    Ok(parsed)
}

impl Verifier {
    /// Checks the checkpoint and every trusted older one against the JWKS. A bad signature or
    /// a mismatch is a [`Failure`]: tampering, not a usage error.
    pub fn new(
        jwks: &Jwks,
        checkpoint: &SignedCheckpoint,
        trusted: &[SignedCheckpoint],
    ) -> Result<Self, Failure> {
        let keys = jwks.ed25519_keys();
        let head = check_signed(checkpoint, &keys)
            .map_err(|e| Failure::log(format!("checkpoint: {e}")))?;
        if let Some(info) = &jwks.audit_log
            && info.origin != head.origin
        {
            return Err(Failure::log(format!(
                "checkpoint origin {:?} is not the JWKS origin {:?}",
                head.origin, info.origin
            )));
        }
        let mut targets = vec![Target {
            checkpoint: head.clone(),
            label: "checkpoint".into(),
        }];
        for (i, t) in trusted.iter().enumerate() {
            let cp = check_signed(t, &keys)
                .map_err(|e| Failure::log(format!("trusted checkpoint {}: {e}", i + 1)))?;
            if cp.origin != head.origin {
                return Err(Failure::log(format!(
                    "trusted checkpoint {} is for another origin",
                    i + 1
                )));
            }
            targets.push(Target {
                checkpoint: cp,
                label: format!("trusted checkpoint {}", i + 1),
            });
        }
        targets.sort_by_key(|t| std::cmp::Reverse(t.checkpoint.size));
        let mut v = Self {
            origin: head.origin.clone(),
            head,
            targets,
            ws: None,
            expected_prev: [0; 32],
            frontier: Frontier::default(),
            pending: BTreeMap::new(),
            pii: PiiCounts::default(),
            entry_buf: Vec::with_capacity(1024),
            failure: None,
        };
        v.check_targets().map_err(|f| f.clone())?;
        Ok(v)
    }

    /// Feeds one NDJSON line. After the first failure, further lines are ignored.
    pub fn feed(&mut self, line: &[u8]) -> Result<(), &Failure> {
        if self.failure.is_none()
            && let Err(f) = self.feed_inner(line)
        {
            self.failure = Some(f);
        }
        match &self.failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn feed_inner(&mut self, line: &[u8]) -> Result<(), Failure> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let seq = self.frontier.size();
        let line: Line = serde_json::from_slice(line)
            .map_err(|e| Failure::at(seq, format!("entries line is not valid: {e}")))?;
        if line.seq != seq {
            return Err(Failure::at(
                seq,
                format!("expected seq {seq}, the log has {}", line.seq),
            ));
        }
        self.entry_buf.clear();
        let decoded = URL_SAFE_NO_PAD
            .decode_vec(line.entry.as_bytes(), &mut self.entry_buf)
            .or_else(|_| {
                self.entry_buf.clear();
                URL_SAFE.decode_vec(line.entry.as_bytes(), &mut self.entry_buf)
            });
        if decoded.is_err() {
            return Err(Failure::at(seq, "entry is not base64url"));
        }
        let bytes = std::mem::take(&mut self.entry_buf);
        let result = self.check_entry(seq, &bytes, &line);
        self.entry_buf = bytes;
        result
    }

    fn check_entry(&mut self, seq: u64, bytes: &[u8], line: &Line<'_>) -> Result<(), Failure> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(Failure::at(seq, "entry is larger than 65,535 bytes"));
        }
        let leaf = leaf_hash(bytes);
        let e: EntryView = serde_json::from_slice(bytes)
            .map_err(|e| Failure::at(seq, format!("entry is not a valid v1 entry: {e}")))?;
        if e.v != VERSION {
            return Err(Failure::at(seq, format!("unknown format version {}", e.v)));
        }
        if e.seq != seq {
            return Err(Failure::at(
                seq,
                format!("entry says seq {}, found at position {seq}", e.seq),
            ));
        }
        match &self.ws {
            None => {
                let expected = if e.ws == INSTANCE_LOG {
                    "/instance".to_owned()
                } else {
                    format!("/ws/{}", e.ws)
                };
                if !self.origin.ends_with(&expected) {
                    return Err(Failure::at(
                        seq,
                        format!("log {:?} does not belong to origin {:?}", e.ws, self.origin),
                    ));
                }
                self.expected_prev = genesis(&e.ws);
                self.ws = Some(e.ws.clone().into_owned());
            }
            Some(ws) if *ws != e.ws => {
                return Err(Failure::at(seq, "entry belongs to another log"));
            }
            Some(_) => {}
        }
        if e.prev != b64url(&self.expected_prev) {
            return Err(Failure::at(
                seq,
                "prev does not match the previous entry's hash",
            ));
        }
        if !matches!(e.result.as_ref(), "success" | "denied" | "error") {
            return Err(Failure::at(seq, "result is not success, denied or error"));
        }
        if e.gdpr == e.pii.is_empty() {
            return Err(Failure::at(seq, "gdpr flag disagrees with pii"));
        }
        self.check_pii(seq, &e, line)?;
        if let Some(waiting) = self.pending.remove(&seq) {
            if e.action != "privacy.erasure" {
                return Err(Failure::at(
                    seq,
                    "named as an erasure entry but is not privacy.erasure",
                ));
            }
            for (s, p) in waiting {
                if !e.erased.iter().any(|x| x.seq == s && x.pointer == p) {
                    return Err(Failure::at(
                        s,
                        format!("opening {p} is missing and erasure entry {seq} does not list it"),
                    ));
                }
            }
        }
        self.expected_prev = leaf;
        self.frontier.push_with(leaf, |_, _| {});
        self.check_targets()
    }

    fn check_pii(&mut self, seq: u64, e: &EntryView<'_>, line: &Line<'_>) -> Result<(), Failure> {
        for o in &line.pii {
            let Some(commitment) = e.pii.get(o.pointer.as_ref()) else {
                return Err(Failure::at(
                    seq,
                    format!("opening for {} which the entry does not commit", o.pointer),
                ));
            };
            let salt: [u8; 32] = URL_SAFE_NO_PAD
                .decode(o.salt.as_bytes())
                .ok()
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| {
                    Failure::at(seq, format!("salt of {} is not 32 bytes", o.pointer))
                })?;
            let canonical =
                jcs::canonical(&o.value).map_err(|e| Failure::at(seq, e.to_string()))?;
            if b64url(&pii_commitment(&salt, &canonical)) != *commitment {
                return Err(Failure::at(
                    seq,
                    format!("opening of {} does not match its commitment", o.pointer),
                ));
            }
            self.pii.verified += 1;
        }
        for pointer in e.pii.keys() {
            if line.pii.iter().any(|o| o.pointer == *pointer) {
                continue;
            }
            match line.redacted.iter().find(|r| r.pointer == *pointer) {
                Some(r) if r.by > seq => {
                    self.pending
                        .entry(r.by)
                        .or_default()
                        .push((seq, pointer.to_string()));
                    self.pii.redacted += 1;
                }
                _ => {
                    self.pii.unexplained += 1;
                    return Err(Failure::at(
                        seq,
                        format!("opening of {pointer} is missing and no erasure explains it"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_targets(&mut self) -> Result<(), Failure> {
        while let Some(t) = self.targets.last() {
            if t.checkpoint.size != self.frontier.size() {
                break;
            }
            if self.frontier.root() != t.checkpoint.root {
                return Err(Failure {
                    seq: self.frontier.size().checked_sub(1),
                    reason: format!(
                        "root of the first {} entries does not match the {}",
                        t.checkpoint.size, t.label
                    ),
                });
            }
            self.targets.pop();
        }
        Ok(())
    }

    /// Ends the stream and reports.
    pub fn finish(mut self) -> Report {
        if self.failure.is_none() {
            if let Some(t) = self.targets.last() {
                self.failure = Some(Failure::log(format!(
                    "the log has {} entries, fewer than the {} size {} (truncated)",
                    self.frontier.size(),
                    t.label,
                    t.checkpoint.size
                )));
            } else if let Some((by, waiting)) = self.pending.first_key_value() {
                let seq = waiting.first().map(|w| w.0).unwrap_or(*by);
                self.failure = Some(Failure::at(
                    seq,
                    format!("erasure entry {by} named by a redaction does not exist"),
                ));
            }
        }
        Report {
            status: if self.failure.is_some() {
                "tampered"
            } else {
                "verified"
            },
            origin: Some(self.head.origin.clone()),
            tree_size: Some(self.head.size),
            root: Some(STANDARD.encode(self.head.root)),
            entries: self.frontier.size(),
            failure: self.failure,
            pii: self.pii,
        }
    }
}

/// A report for a log refused before any entry was read.
pub fn refused(failure: Failure) -> Report {
    Report {
        status: "tampered",
        origin: None,
        tree_size: None,
        root: None,
        entries: 0,
        failure: Some(failure),
        pii: PiiCounts::default(),
    }
}
