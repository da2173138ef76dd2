//! The audit event every mutating service method produces, and the record handed to the store's
//! one audit sink inside the same transaction (AUD-1). Personal values (IP, user agent) become
//! salted commitments here; their openings are stored beside the log, never in it.

pub mod service;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::crypto::random;
use crate::error::{Error, FieldError, Result};
use crate::ids::WorkspaceId;
use crate::principal::{Principal, RequestMeta};

/// Which log an event belongs to: a workspace's, or the instance log for account events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditLog {
    Workspace(WorkspaceId),
    Instance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditResult {
    Success,
    Denied,
    Error,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Denied => "denied",
            AuditResult::Error => "error",
        }
    }
}

/// `{type, id}` of the actor: opaque ids only, never an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: &'static str,
    pub id: String,
}

impl Actor {
    pub fn of(principal: &Principal) -> Self {
        match principal {
            Principal::User { user_id, .. } => Actor {
                kind: "user",
                id: user_id.to_string(),
            },
            Principal::ApiKey { key_id, .. } => Actor {
                kind: "api_key",
                id: key_id.to_string(),
            },
        }
    }

    /// Palisade itself, acting on a rule (a lockout, a scheduled job).
    pub fn system() -> Self {
        Actor {
            kind: "system",
            id: "palisade".to_owned(),
        }
    }

    /// A caller not yet identified (e.g. a failed sign-in for an unknown address).
    pub fn anonymous() -> Self {
        Actor {
            kind: "anonymous",
            id: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Cow<'static, str>,
    pub id: String,
}

/// What happened, as the service describes it.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub log: AuditLog,
    pub action: Cow<'static, str>,
    pub result: AuditResult,
    pub actor: Actor,
    pub target: Target,
    /// `{"/field": [before, after]}` for non-personal values only.
    pub diff: BTreeMap<String, [Value; 2]>,
    /// Personal values beyond IP and user agent: committed in the entry, opened beside it.
    pub personal: Vec<(String, Value)>,
    /// Further entry members (`data` of application events).
    pub extra: Map<String, Value>,
    /// The data subject the personal values belong to (a user id), for erasure.
    pub subject: Option<String>,
}

impl AuditEvent {
    pub fn new(
        log: AuditLog,
        action: impl Into<Cow<'static, str>>,
        actor: Actor,
        target: Target,
    ) -> Self {
        Self {
            log,
            action: action.into(),
            result: AuditResult::Success,
            actor,
            target,
            diff: BTreeMap::new(),
            personal: Vec::new(),
            extra: Map::new(),
            subject: None,
        }
    }

    /// Adds a personal value: only its commitment enters the entry.
    pub fn personal(mut self, pointer: &str, value: Value) -> Self {
        self.personal.push((pointer.to_owned(), value));
        self
    }

    /// Names the data subject of the personal values.
    pub fn subject(mut self, id: impl Into<String>) -> Self {
        self.subject = Some(id.into());
        self
    }

    /// Why it ended as it did (`wrong_password`, `locked`, …): a `reason` member.
    pub fn reason(mut self, reason: &'static str) -> Self {
        self.extra.insert("reason".into(), Value::from(reason));
        self
    }

    pub fn with_result(mut self, result: AuditResult) -> Self {
        self.result = result;
        self
    }

    /// Records a change of one field when the value actually changed.
    pub fn diff_field(&mut self, pointer: &str, before: Value, after: Value) {
        if before != after {
            self.diff.insert(pointer.to_owned(), [before, after]);
        }
    }

    /// Seals the event with time, request facts and commitments: what the sink stores.
    pub fn seal(self, meta: &RequestMeta, at: OffsetDateTime) -> Result<AuditRecord> {
        let mut openings = Vec::new();
        if let Some(ip) = meta.ip {
            openings.push(Opening::new("/ip".into(), Value::String(ip.to_string()))?);
        }
        if let Some(ua) = &meta.user_agent {
            openings.push(Opening::new(
                "/user_agent".into(),
                Value::String(ua.clone()),
            )?);
        }
        for (pointer, value) in self.personal {
            openings.push(Opening::new(pointer, value)?);
        }
        let diff = self
            .diff
            .into_iter()
            .map(|(k, v)| (k, Value::Array(v.to_vec())))
            .collect();
        Ok(AuditRecord {
            log: self.log,
            at,
            action: self.action,
            result: self.result,
            actor: self.actor,
            target: self.target,
            request_id: meta.request_id.clone(),
            diff: Value::Object(diff),
            openings,
            extra: self.extra,
            subject: self.subject,
        })
    }
}

/// A personal value with its salt; the log holds only `commitment`.
#[derive(Clone)]
pub struct Opening {
    pub pointer: String,
    pub salt: [u8; 32],
    pub value: Value,
    pub commitment: String,
}

impl Opening {
    fn new(pointer: String, value: Value) -> Result<Self> {
        let salt = random::bytes::<32>()?;
        let canonical = palisade_audit::jcs::canonical(&value)
            .map_err(|e| Error::Validation(vec![FieldError::new(&pointer, e.to_string())]))?;
        let commitment = palisade_audit::b64url(&palisade_audit::pii_commitment(&salt, &canonical));
        Ok(Self {
            pointer,
            salt,
            value,
            commitment,
        })
    }
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening")
            .field("pointer", &self.pointer)
            .field("commitment", &self.commitment)
            .finish()
    }
}

/// The sealed event the store's audit sink appends.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub log: AuditLog,
    pub at: OffsetDateTime,
    pub action: Cow<'static, str>,
    pub result: AuditResult,
    pub actor: Actor,
    pub target: Target,
    pub request_id: Option<String>,
    pub diff: Value,
    pub openings: Vec<Opening>,
    pub extra: Map<String, Value>,
    pub subject: Option<String>,
}

impl AuditRecord {
    pub fn gdpr(&self) -> bool {
        !self.openings.is_empty()
    }

    /// The log this record goes to: a workspace id, or `instance`.
    pub fn log_id(&self) -> &str {
        match &self.log {
            AuditLog::Workspace(ws) => ws.as_str(),
            AuditLog::Instance => palisade_audit::entry::INSTANCE_LOG,
        }
    }

    /// The canonical entry bytes at position `seq` after `prev` (AUDIT-SPEC §2).
    pub fn entry_bytes(
        &self,
        seq: u64,
        prev: palisade_audit::Hash,
    ) -> std::result::Result<Vec<u8>, palisade_audit::entry::EntryError> {
        let pii = self
            .openings
            .iter()
            .map(|o| (o.pointer.clone(), o.commitment.clone()))
            .collect();
        let ts = format_ts(self.at);
        palisade_audit::entry::Entry {
            ws: self.log_id(),
            seq,
            prev,
            ts: &ts,
            action: &self.action,
            result: self.result.as_str(),
            actor: (self.actor.kind, &self.actor.id),
            target: (&self.target.kind, &self.target.id),
            request_id: self.request_id.as_deref(),
            diff: &self.diff,
            pii: &pii,
            extra: &self.extra,
        }
        .encode()
    }
}

/// RFC 3339 UTC with microseconds and `Z`: `2026-11-20T10:00:00.000000Z`.
pub fn format_ts(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}
