//! The audit event every mutating service method produces, and the record handed to the store's
//! one audit sink inside the same transaction (AUD-1). Personal values (IP, user agent) become
//! salted commitments here; their openings are stored beside the log, never in it.

use std::collections::BTreeMap;

use serde_json::Value;
use time::OffsetDateTime;

use crate::crypto::random;
use crate::error::Result;
use crate::ids::{EventId, WorkspaceId};
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
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Denied => "denied",
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
    pub kind: &'static str,
    pub id: String,
}

/// What happened, as the service describes it.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub log: AuditLog,
    pub action: &'static str,
    pub result: AuditResult,
    pub actor: Actor,
    pub target: Target,
    /// `{"/field": [before, after]}` for non-personal values only.
    pub diff: BTreeMap<String, [Value; 2]>,
}

impl AuditEvent {
    pub fn new(log: AuditLog, action: &'static str, actor: Actor, target: Target) -> Self {
        Self {
            log,
            action,
            result: AuditResult::Success,
            actor,
            target,
            diff: BTreeMap::new(),
        }
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
            openings.push(Opening::new("/ip", Value::String(ip.to_string()))?);
        }
        if let Some(ua) = &meta.user_agent {
            openings.push(Opening::new("/user_agent", Value::String(ua.clone()))?);
        }
        let diff = self
            .diff
            .into_iter()
            .map(|(k, v)| (k, Value::Array(v.to_vec())))
            .collect();
        Ok(AuditRecord {
            id: EventId::generate(),
            log: self.log,
            at,
            action: self.action,
            result: self.result,
            actor: self.actor,
            target: self.target,
            request_id: meta.request_id.clone(),
            diff: Value::Object(diff),
            openings,
        })
    }
}

/// A personal value with its salt; the log holds only `commitment`.
#[derive(Clone)]
pub struct Opening {
    pub pointer: &'static str,
    pub salt: [u8; 32],
    pub value: Value,
    pub commitment: String,
}

impl Opening {
    fn new(pointer: &'static str, value: Value) -> Result<Self> {
        let salt = random::bytes::<32>()?;
        // JCS of a JSON string is serde_json's string encoding.
        let canonical = value.to_string();
        let commitment =
            palisade_audit::b64url(&palisade_audit::pii_commitment(&salt, canonical.as_bytes()));
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
    pub id: EventId,
    pub log: AuditLog,
    pub at: OffsetDateTime,
    pub action: &'static str,
    pub result: AuditResult,
    pub actor: Actor,
    pub target: Target,
    pub request_id: Option<String>,
    pub diff: Value,
    pub openings: Vec<Opening>,
}

impl AuditRecord {
    /// `{pointer: commitment}`: the only trace of personal values in the entry.
    pub fn pii_commitments(&self) -> Value {
        Value::Object(
            self.openings
                .iter()
                .map(|o| (o.pointer.to_owned(), Value::String(o.commitment.clone())))
                .collect(),
        )
    }

    pub fn gdpr(&self) -> bool {
        !self.openings.is_empty()
    }
}
