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
use serde_json::value::RawValue;

use crate::checkpoint::{self, Checkpoint, Jwk};
use crate::entry::{EntryView, INSTANCE_LOG, MAX_ENTRY_BYTES, VERSION};
use crate::merkle::Frontier;
use crate::{Hash, genesis, jcs, leaf_hash, pii_commitment};

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
    #[serde(default, borrow)]
    pii: Vec<LineOpening<'a>>,
    #[serde(default, borrow)]
    redacted: Vec<LineRedaction<'a>>,
}

#[derive(Debug, Deserialize)]
struct LineOpening<'a> {
    #[serde(borrow)]
    pointer: Cow<'a, str>,
    #[serde(borrow)]
    salt: Cow<'a, str>,
    #[serde(borrow)]
    value: &'a RawValue,
}

#[derive(Debug, Deserialize)]
struct LineRedaction<'a> {
    #[serde(borrow)]
    pointer: Cow<'a, str>,
    by: u64,
}

/// JCS of an opening's value. A JSON string with no escape sequence is already canonical
/// (JCS escapes only what JSON forbids raw), so its raw bytes serve; anything else is parsed.
fn canonical_raw(raw: &RawValue) -> Result<Cow<'_, [u8]>, String> {
    let text = raw.get();
    if text.len() >= 2 && text.starts_with('"') && !text[1..text.len() - 1].contains(['\\', '"']) {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    jcs::canonical(&value)
        .map(Cow::Owned)
        .map_err(|e| e.to_string())
}

/// What one line says, checked on its own: runs on any thread, in any order.
#[derive(Debug)]
struct Prepared {
    line_seq: u64,
    leaf: Hash,
    ws: String,
    prev: Hash,
    erasure: Option<Vec<(u64, String)>>,
    verified: u64,
    /// `(by, pointer)` of openings explained by a later erasure entry.
    redactions: Vec<(u64, String)>,
}

fn decode_hash(text: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut out) {
        Ok(32) => Some(out),
        _ => None,
    }
}

/// Blank lines prepare to `None`.
fn prepare(line: &[u8]) -> Result<Option<Prepared>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let line: Line =
        serde_json::from_slice(line).map_err(|e| format!("entries line is not valid: {e}"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(line.entry.as_bytes())
        .or_else(|_| URL_SAFE.decode(line.entry.as_bytes()))
        .map_err(|_| "entry is not base64url".to_owned())?;
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err("entry is larger than 65,535 bytes".into());
    }
    let leaf = leaf_hash(&bytes);
    let e: EntryView = serde_json::from_slice(&bytes)
        .map_err(|e| format!("entry is not a valid v1 entry: {e}"))?;
    if e.v != VERSION {
        return Err(format!("unknown format version {}", e.v));
    }
    if e.seq != line.seq {
        return Err(format!(
            "entry says seq {}, its line says {}",
            e.seq, line.seq
        ));
    }
    if !matches!(e.result.as_ref(), "success" | "denied" | "error") {
        return Err("result is not success, denied or error".into());
    }
    if e.gdpr == e.pii.is_empty() {
        return Err("gdpr flag disagrees with pii".into());
    }
    let prev = decode_hash(&e.prev).ok_or("prev is not a base64url hash")?;
    let mut verified = 0;
    for o in &line.pii {
        let Some(commitment) = e.pii.get(o.pointer.as_ref()) else {
            return Err(format!(
                "opening for {} which the entry does not commit",
                o.pointer
            ));
        };
        let salt: [u8; 32] =
            decode_hash(&o.salt).ok_or_else(|| format!("salt of {} is not 32 bytes", o.pointer))?;
        let canonical = canonical_raw(o.value)?;
        if decode_hash(commitment) != Some(pii_commitment(&salt, &canonical)) {
            return Err(format!(
                "opening of {} does not match its commitment",
                o.pointer
            ));
        }
        verified += 1;
    }
    let mut redactions = Vec::new();
    for pointer in e.pii.keys() {
        if line.pii.iter().any(|o| o.pointer == *pointer) {
            continue;
        }
        match line.redacted.iter().find(|r| r.pointer == *pointer) {
            Some(r) if r.by > line.seq => redactions.push((r.by, pointer.to_string())),
            _ => {
                return Err(format!(
                    "opening of {pointer} is missing and no erasure explains it"
                ));
            }
        }
    }
    let erasure = (e.action == "privacy.erasure").then(|| {
        e.erased
            .iter()
            .map(|x| (x.seq, x.pointer.to_string()))
            .collect()
    });
    Ok(Some(Prepared {
        line_seq: line.seq,
        leaf,
        ws: e.ws.into_owned(),
        prev,
        erasure,
        verified,
        redactions,
    }))
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
            failure: None,
        };
        v.check_targets().map_err(|f| f.clone())?;
        Ok(v)
    }

    /// Feeds one NDJSON line. After the first failure, further lines are ignored.
    pub fn feed(&mut self, line: &[u8]) -> Result<(), &Failure> {
        if self.failure.is_none() {
            let prepared = prepare(line);
            self.apply(prepared);
        }
        match &self.failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Feeds many lines at once: each line's own checks (decoding, hashing, commitments) run on
    /// all cores, the chain and the tree advance in order.
    pub fn feed_batch(&mut self, lines: &[&[u8]]) -> Result<(), &Failure> {
        if self.failure.is_none() {
            let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            let prepared: Vec<Result<Option<Prepared>, String>> = if threads < 2
                || lines.len() < 512
            {
                lines.iter().map(|l| prepare(l)).collect()
            } else {
                let chunk = lines.len().div_ceil(threads);
                std::thread::scope(|scope| {
                    let handles: Vec<_> = lines
                        .chunks(chunk)
                        .map(|c| {
                            scope.spawn(move || c.iter().map(|l| prepare(l)).collect::<Vec<_>>())
                        })
                        .collect();
                    handles
                        .into_iter()
                        .flat_map(|h| {
                            h.join()
                                .unwrap_or_else(|_| vec![Err("verifier thread failed".to_owned())])
                        })
                        .collect()
                })
            };
            for p in prepared {
                self.apply(p);
                if self.failure.is_some() {
                    break;
                }
            }
        }
        match &self.failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn apply(&mut self, prepared: Result<Option<Prepared>, String>) {
        let seq = self.frontier.size();
        let result = match prepared {
            Ok(None) => Ok(()),
            Ok(Some(p)) => self.apply_entry(seq, p),
            Err(reason) => Err(Failure::at(seq, reason)),
        };
        if let Err(f) = result {
            self.failure = Some(f);
        }
    }

    fn apply_entry(&mut self, seq: u64, p: Prepared) -> Result<(), Failure> {
        if p.line_seq != seq {
            return Err(Failure::at(
                seq,
                format!("expected seq {seq}, the log has {}", p.line_seq),
            ));
        }
        match &self.ws {
            None => {
                let expected = if p.ws == INSTANCE_LOG {
                    "/instance".to_owned()
                } else {
                    format!("/ws/{}", p.ws)
                };
                if !self.origin.ends_with(&expected) {
                    return Err(Failure::at(
                        seq,
                        format!("log {:?} does not belong to origin {:?}", p.ws, self.origin),
                    ));
                }
                self.expected_prev = genesis(&p.ws);
                self.ws = Some(p.ws);
            }
            Some(ws) if *ws != p.ws => {
                return Err(Failure::at(seq, "entry belongs to another log"));
            }
            Some(_) => {}
        }
        if p.prev != self.expected_prev {
            return Err(Failure::at(
                seq,
                "prev does not match the previous entry's hash",
            ));
        }
        self.pii.verified += p.verified;
        for (by, pointer) in p.redactions {
            self.pending.entry(by).or_default().push((seq, pointer));
            self.pii.redacted += 1;
        }
        if let Some(waiting) = self.pending.remove(&seq) {
            let Some(erased) = &p.erasure else {
                return Err(Failure::at(
                    seq,
                    "named as an erasure entry but is not privacy.erasure",
                ));
            };
            for (s, ptr) in waiting {
                if !erased.iter().any(|(es, ep)| *es == s && *ep == ptr) {
                    return Err(Failure::at(
                        s,
                        format!(
                            "opening {ptr} is missing and erasure entry {seq} does not list it"
                        ),
                    ));
                }
            }
        }
        self.expected_prev = p.leaf;
        self.frontier.push_with(p.leaf, |_, _| {});
        self.check_targets()
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
