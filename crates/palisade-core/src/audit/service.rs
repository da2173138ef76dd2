//! Audit-log use cases: the per-log signing keys, reads (events, entries, checkpoints, proofs,
//! JWKS, export), application events (AUD-9), a user's own security events, and checkpoint
//! signing for the worker (AUDIT-SPEC §4), which never signs two inconsistent checkpoints.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use palisade_audit::checkpoint::{self, Checkpoint, Jwk};
use palisade_audit::entry::INSTANCE_LOG;
use palisade_audit::merkle::{self, Frontier, NodeId, NodeReader};
use palisade_audit::verify::{AuditLogInfo, DailyCheckpointRef, Jwks};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tracing::{error, instrument};
use zeroize::Zeroizing;

use super::{Actor, AuditEvent, AuditLog, AuditResult, Target, format_ts};
use crate::acl::{Permission, authorize};
use crate::app::Services;
use crate::crypto::random;
use crate::error::{Error, FieldError, Resource, Result, StoreError};
use crate::ids::WorkspaceId;
use crate::keys::{OwnerKeys, SecretSite};
use crate::principal::{Principal, RequestMeta};
use crate::store::{
    Access, AuditFilter, AuditLogTx, AuditQuery, StoredAuditKey, StoredCheckpoint, StoredEntry,
    WorkspaceSystemTx,
};
use crate::tenancy::{SystemScope, TenantScope};
use crate::validate::Checks;
use crate::webhooks::outbox::Change;
use crate::workspaces::model::Page;

pub const EVENTS_LIMIT_DEFAULT: u32 = 50;
pub const EVENTS_LIMIT_MAX: u32 = 200;
/// Most entries one `entries` request returns.
pub const ENTRIES_MAX: u64 = 10_000;
/// Daily checkpoints listed in the JWKS.
const JWKS_DAILY: u32 = 7;
/// Resources Palisade itself logs; application events use their own.
const RESERVED_RESOURCES: &[&str] = &[
    "workspace",
    "member",
    "auth",
    "user",
    "audit",
    "privacy",
    "api_key",
    "collection",
    "record",
    "webhook",
    "team",
    "role",
    "invitation",
    "key",
    "session",
    "rate_limit",
];

/// Where a log's signing seed is stored (its owner is the log's workspace, or `instance`).
pub(crate) fn key_site(kid: &str) -> SecretSite<'_> {
    SecretSite {
        table: "audit_keys",
        row: kid,
        field: "sealed_seed",
    }
}

/// A decoded entry as `GET …/audit/events` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventView {
    pub seq: u64,
    /// The entry, decoded from its exact bytes.
    pub entry: Value,
    /// `{pointer: value}` of the openings still held.
    pub openings: Map<String, Value>,
}

/// One NDJSON line of `entries` (AUDIT-SPEC §8).
#[derive(Debug, Clone, PartialEq)]
pub struct EntryLine {
    pub seq: u64,
    pub bytes: Vec<u8>,
    pub openings: Vec<(String, [u8; 32], Value)>,
}

impl EntryLine {
    pub fn to_json(&self) -> Value {
        let pii: Vec<Value> = self
            .openings
            .iter()
            .map(|(pointer, salt, value)| {
                serde_json::json!({"pointer": pointer, "salt": URL_SAFE_NO_PAD.encode(salt), "value": value})
            })
            .collect();
        serde_json::json!({
            "seq": self.seq,
            "entry": URL_SAFE_NO_PAD.encode(&self.bytes),
            "pii": pii,
            "redacted": [],
        })
    }
}

/// A signed checkpoint as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointView {
    pub origin: String,
    pub tree_size: u64,
    pub root: String,
    pub body: String,
    pub jws: String,
    pub note: String,
    pub kind: String,
    pub date: Option<String>,
    pub signed_at: OffsetDateTime,
}

impl CheckpointView {
    fn of(origin: &str, c: StoredCheckpoint) -> Self {
        Self {
            origin: origin.to_owned(),
            tree_size: c.size,
            root: STANDARD.encode(c.root),
            body: c.body,
            jws: c.jws,
            note: c.note,
            kind: c.kind,
            date: c.day,
            signed_at: c.signed_at,
        }
    }
}

/// `{leaf_index, tree_size, leaf, hashes}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf: String,
    pub hashes: Vec<String>,
}

/// `{first, second, hashes}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub hashes: Vec<String>,
}

/// Everything an offline verifier needs.
#[derive(Debug, Clone)]
pub struct AuditExport {
    pub log_id: String,
    pub entries: Vec<EntryLine>,
    pub checkpoint: Option<CheckpointView>,
    pub daily: Vec<CheckpointView>,
    pub jwks: Jwks,
}

/// An application-defined event (AUD-9).
#[derive(Debug, Clone, Default)]
pub struct NewAppEvent {
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub result: Option<String>,
    /// Non-personal details; integers and strings only (no floats).
    pub data: Option<Value>,
    /// Personal values by JSON pointer: committed in the entry, opened beside it.
    pub personal: Map<String, Value>,
}

fn hashes_b64(hashes: &[palisade_audit::Hash]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

fn to_view(e: StoredEntry) -> Result<EventView> {
    let entry: Value = serde_json::from_slice(&e.bytes)
        .map_err(|_| Error::Internal(format!("audit entry {} is not JSON", e.seq).into()))?;
    let openings = e
        .openings
        .into_iter()
        .map(|o| (o.pointer, o.value))
        .collect();
    Ok(EventView {
        seq: e.seq,
        entry,
        openings,
    })
}

fn to_line(e: StoredEntry) -> Result<EntryLine> {
    let openings = e
        .openings
        .into_iter()
        .map(|o| {
            let salt: [u8; 32] = o.salt.try_into().map_err(|_| {
                Error::Internal(format!("audit opening of entry {} has a bad salt", e.seq).into())
            })?;
            Ok((o.pointer, salt, o.value))
        })
        .collect::<Result<_>>()?;
    Ok(EntryLine {
        seq: e.seq,
        bytes: e.bytes,
        openings,
    })
}

fn is_action(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (2..=4).contains(&parts.len())
        && s.len() <= 128
        && parts.iter().all(|p| {
            let b = p.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_lowercase()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        })
}

async fn page_of(tx: &mut dyn AuditLogTx, mut query: AuditQuery) -> Result<Page<EventView>> {
    let limit = query.limit.clamp(1, EVENTS_LIMIT_MAX);
    query.limit = limit + 1;
    let mut rows = tx.audit_query(&query).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|e| e.seq.to_string())
    } else {
        None
    };
    Ok(Page {
        data: rows.into_iter().map(to_view).collect::<Result<_>>()?,
        next_cursor,
    })
}

fn parse_cursor(cursor: Option<&str>) -> Result<Option<u64>> {
    cursor
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                Error::Validation(vec![FieldError::new(
                    "cursor",
                    "not a cursor this list returned",
                )])
            })
        })
        .transpose()
}

impl Services {
    /// `<public host>/ws/<id>`, or `<public host>/instance`.
    pub fn audit_origin(&self, log_id: &str) -> String {
        if log_id == INSTANCE_LOG {
            format!("{}/instance", self.settings.public_host)
        } else {
            format!("{}/ws/{log_id}", self.settings.public_host)
        }
    }

    /// A fresh Ed25519 key for a log, its seed sealed under the log owner's data key (`keys`:
    /// taken before the caller's write transaction, since a first data key is written in its
    /// own).
    pub(crate) fn new_audit_key(
        &self,
        keys: &OwnerKeys,
        now: OffsetDateTime,
    ) -> Result<StoredAuditKey> {
        let seed = Zeroizing::new(random::bytes::<32>()?);
        let key = SigningKey::from_bytes(&seed);
        let public_key = key.verifying_key().to_bytes();
        let kid = Jwk::ed25519(&key.verifying_key()).kid;
        let sealed_seed = keys.seal(key_site(&kid), seed.as_slice())?;
        Ok(StoredAuditKey {
            kid,
            public_key,
            sealed_seed,
            created_at: now,
        })
    }

    async fn open_audit_key(&self, log_id: &str, stored: &StoredAuditKey) -> Result<SigningKey> {
        let unopenable =
            || Error::Internal(format!("audit key {} does not open", stored.kid).into());
        let seed = self
            .open_secret(log_id, key_site(&stored.kid), &stored.sealed_seed)
            .await
            .map_err(|_| unopenable())?;
        let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| unopenable())?;
        let key = SigningKey::from_bytes(seed);
        if key.verifying_key().to_bytes() != stored.public_key {
            return Err(unopenable());
        }
        Ok(key)
    }

    /// Creates the instance log on first start (idempotent; racing nodes agree on one).
    pub async fn ensure_instance_log(&self) -> Result<()> {
        let now = self.now();
        let keys = self.owner_keys(INSTANCE_LOG).await?;
        let mut tx = self.store.accounts(None, Access::Write).await?;
        if tx.audit_head(true).await?.is_some() {
            return Ok(());
        }
        let key = self.new_audit_key(&keys, now)?;
        match tx
            .audit_log_create(&self.audit_origin(INSTANCE_LOG), &key, now)
            .await
        {
            Err(StoreError::Conflict(_)) => return Ok(()),
            other => other?,
        }
        tx.commit().await?;
        Ok(())
    }

    /// `GET …/audit/events`: decoded entries, newest first, with openings.
    #[instrument(skip(self, scope, filter), fields(workspace = %scope.workspace_id()))]
    pub async fn audit_events(
        &self,
        scope: &TenantScope,
        filter: AuditFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<EventView>> {
        authorize(scope, Permission::AuditRead)?;
        let query = AuditQuery {
            filter,
            subject: None,
            before_seq: parse_cursor(cursor)?,
            limit,
        };
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        page_of(&mut *tx, query).await
    }

    /// `GET /api/v1/me/security-events`: the caller's own account events, newest first.
    pub async fn security_events(
        &self,
        principal: &Principal,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<EventView>> {
        let query = AuditQuery {
            subject: Some(principal.user_id()?.to_string()),
            before_seq: parse_cursor(cursor)?,
            limit,
            ..AuditQuery::default()
        };
        let mut tx = self
            .store
            .accounts(Some(principal.user_id()?), Access::Read)
            .await?;
        page_of(&mut *tx, query).await
    }

    /// `POST …/audit/events`: an application-defined event in the workspace's log.
    #[instrument(skip(self, scope, input, meta), fields(workspace = %scope.workspace_id()))]
    pub async fn audit_record_event(
        &self,
        scope: &TenantScope,
        input: NewAppEvent,
        meta: &RequestMeta,
    ) -> Result<EventView> {
        authorize(scope, Permission::AuditWrite)?;
        let mut checks = Checks::default();
        if !is_action(&input.action) {
            checks.fail(
                "/action",
                "must be `<resource>.<verb>`: 2 to 4 lowercase dot-separated words",
            );
        } else if let Some(resource) = input.action.split('.').next()
            && RESERVED_RESOURCES.contains(&resource)
        {
            checks.fail(
                "/action",
                format!("the resource `{resource}` is reserved for Palisade's own events"),
            );
        }
        checks.text("/target/type", &input.target_type, 1, 64);
        checks.text("/target/id", &input.target_id, 1, 256);
        let result = match input.result.as_deref() {
            None | Some("success") => AuditResult::Success,
            Some("denied") => AuditResult::Denied,
            Some("error") => AuditResult::Error,
            Some(_) => {
                checks.fail("/result", "must be success, denied or error");
                AuditResult::Success
            }
        };
        if let Some(data) = &input.data {
            if !data.is_object() {
                checks.fail("/data", "must be an object");
            } else if let Err(e) = palisade_audit::jcs::canonical(data) {
                checks.fail("/data", e.to_string());
            }
        }
        for pointer in input.personal.keys() {
            if !pointer.starts_with('/') || pointer.len() > 128 {
                checks.fail(
                    &format!("/personal/{pointer}"),
                    "must be a JSON pointer starting with `/`, at most 128 characters",
                );
            } else if pointer == "/ip" || pointer == "/user_agent" {
                checks.fail(
                    &format!("/personal/{pointer}"),
                    "is recorded by Palisade itself",
                );
            }
        }
        checks.finish()?;

        let mut event = AuditEvent::new(
            AuditLog::Workspace(scope.workspace_id().clone()),
            input.action,
            Actor::of(scope.principal()),
            Target {
                kind: input.target_type.into(),
                id: input.target_id,
            },
        )
        .with_result(result);
        if let Some(data) = input.data {
            event.extra.insert("data".into(), data);
        }
        for (pointer, value) in input.personal {
            event = event.personal(&pointer, value);
        }
        let record = event.seal(meta, self.now())?;
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let appended = match tx.audit_append(&record).await {
            Err(StoreError::Invalid(message)) => {
                return Err(Error::Validation(vec![FieldError::new("/data", message)]));
            }
            other => other?,
        };
        let entries = tx.audit_entries(appended.seq, appended.seq + 1).await?;
        tx.commit().await?;
        let entry = entries
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal("appended entry not found".into()))?;
        to_view(entry)
    }

    /// `GET …/audit/entries?start=&end=`: exact bytes with openings, `[start, end)`.
    pub async fn audit_entries(
        &self,
        scope: &TenantScope,
        start: u64,
        end: Option<u64>,
    ) -> Result<Vec<EntryLine>> {
        authorize(scope, Permission::AuditRead)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let head = self.head(&mut *tx).await?;
        let end = end.unwrap_or(head.0).min(head.0);
        if start > end {
            return Err(Error::Validation(vec![FieldError::new(
                "start",
                "must not be after end",
            )]));
        }
        if end - start > ENTRIES_MAX {
            return Err(Error::Validation(vec![FieldError::new(
                "end",
                format!("at most {ENTRIES_MAX} entries per request; page with start and end"),
            )]));
        }
        let rows = tx.audit_entries(start, end).await?;
        rows.into_iter().map(to_line).collect()
    }

    async fn head(&self, tx: &mut dyn AuditLogTx) -> Result<(u64, String)> {
        let head = tx
            .audit_head(false)
            .await?
            .ok_or_else(|| Error::Internal("workspace has no audit log".into()))?;
        Ok((head.size, head.origin))
    }

    /// `GET …/audit/checkpoint`: the largest signed checkpoint.
    pub async fn audit_checkpoint(&self, scope: &TenantScope) -> Result<CheckpointView> {
        authorize(scope, Permission::AuditRead)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let (_, origin) = self.head(&mut *tx).await?;
        let c = tx
            .audit_checkpoint_latest()
            .await?
            .ok_or(Error::NotFound(Resource::Checkpoint))?;
        Ok(CheckpointView::of(&origin, c))
    }

    /// `GET …/audit/checkpoints/{date}`.
    pub async fn audit_checkpoint_day(
        &self,
        scope: &TenantScope,
        day: &str,
    ) -> Result<CheckpointView> {
        authorize(scope, Permission::AuditRead)?;
        let valid = time::Date::parse(
            day,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_ok();
        if !valid {
            return Err(Error::Validation(vec![FieldError::new(
                "date",
                "must be YYYY-MM-DD",
            )]));
        }
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let (_, origin) = self.head(&mut *tx).await?;
        let c = tx
            .audit_checkpoint_day(day)
            .await?
            .ok_or(Error::NotFound(Resource::Checkpoint))?;
        Ok(CheckpointView::of(&origin, c))
    }

    /// `GET …/audit/proof/inclusion?seq=&tree_size=`.
    pub async fn audit_inclusion_proof(
        &self,
        scope: &TenantScope,
        seq: u64,
        tree_size: u64,
    ) -> Result<InclusionProof> {
        authorize(scope, Permission::AuditRead)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let (size, _) = self.head(&mut *tx).await?;
        if tree_size > size {
            return Err(Error::Validation(vec![FieldError::new(
                "tree_size",
                format!("the log has {size} entries"),
            )]));
        }
        if seq >= tree_size {
            return Err(Error::Validation(vec![FieldError::new(
                "seq",
                "must be below tree_size",
            )]));
        }
        let mut ids = merkle::nodes_needed(|r| merkle::inclusion_proof(seq, tree_size, r));
        ids.push(NodeId::new(0, seq));
        let nodes = tx.audit_nodes(&ids).await?;
        let hashes = merkle::inclusion_proof(seq, tree_size, &nodes).map_err(Error::internal)?;
        let leaf = nodes.node(NodeId::new(0, seq)).map_err(Error::internal)?;
        Ok(InclusionProof {
            leaf_index: seq,
            tree_size,
            leaf: STANDARD.encode(leaf),
            hashes: hashes_b64(&hashes),
        })
    }

    /// `GET …/audit/proof/consistency?first=&second=`.
    pub async fn audit_consistency_proof(
        &self,
        scope: &TenantScope,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof> {
        authorize(scope, Permission::AuditRead)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let (size, _) = self.head(&mut *tx).await?;
        if second > size {
            return Err(Error::Validation(vec![FieldError::new(
                "second",
                format!("the log has {size} entries"),
            )]));
        }
        if first > second {
            return Err(Error::Validation(vec![FieldError::new(
                "first",
                "must not exceed second",
            )]));
        }
        let ids = merkle::nodes_needed(|r| merkle::consistency_proof(first, second, r));
        let nodes = tx.audit_nodes(&ids).await?;
        let hashes = merkle::consistency_proof(first, second, &nodes).map_err(Error::internal)?;
        Ok(ConsistencyProof {
            first,
            second,
            hashes: hashes_b64(&hashes),
        })
    }

    /// `GET …/audit/jwks.json`: the log's public keys and the `audit_log` member.
    pub async fn audit_jwks(&self, scope: &TenantScope) -> Result<Jwks> {
        authorize(scope, Permission::AuditRead)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        self.jwks_in(&mut *tx).await
    }

    async fn jwks_in(&self, tx: &mut dyn AuditLogTx) -> Result<Jwks> {
        let (_, origin) = self.head(tx).await?;
        let keys = tx
            .audit_keys()
            .await?
            .iter()
            .filter_map(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.public_key).ok())
            .map(|k| serde_json::to_value(Jwk::ed25519(&k)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Internal(Box::new(e)))?;
        let daily = tx
            .audit_checkpoints_daily(JWKS_DAILY)
            .await?
            .into_iter()
            .map(|c| DailyCheckpointRef {
                date: c.day.unwrap_or_default(),
                tree_size: c.size,
                jws: c.jws,
            })
            .collect();
        Ok(Jwks {
            keys,
            audit_log: Some(AuditLogInfo {
                origin,
                daily,
                min_index: 0,
            }),
        })
    }

    /// `GET …/audit/export`: entries, checkpoints and JWKS, read in one transaction.
    pub async fn audit_export(&self, scope: &TenantScope) -> Result<AuditExport> {
        authorize(scope, Permission::AuditRead)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        self.export_in(&mut *tx, scope.workspace_id().to_string())
            .await
    }

    /// Any log's export (`instance` or a workspace id), for the operator's backup verification:
    /// no member's permission applies, so it is reached through a named `SystemScope` only.
    pub async fn audit_export_log(&self, log_id: &str) -> Result<AuditExport> {
        let scope = SystemScope::new("backup verification");
        let mut tx = self.store.audit_log(&scope, log_id, Access::Read).await?;
        self.export_in(&mut *tx, log_id.to_owned()).await
    }

    /// Every audit log's id (`instance` and each workspace's), for backup verification.
    pub async fn audit_log_ids(&self) -> Result<Vec<String>> {
        let scope = SystemScope::new("backup verification");
        let mut tx = self.store.system(&scope, Access::Read).await?;
        Ok(tx.audit_log_ids().await?)
    }

    async fn export_in(&self, tx: &mut dyn AuditLogTx, log_id: String) -> Result<AuditExport> {
        let jwks = self.jwks_in(&mut *tx).await?;
        let (size, origin) = self.head(&mut *tx).await?;
        let checkpoint = tx
            .audit_checkpoint_latest()
            .await?
            .map(|c| CheckpointView::of(&origin, c));
        let daily = tx
            .audit_checkpoints_daily(u32::MAX)
            .await?
            .into_iter()
            .map(|c| CheckpointView::of(&origin, c))
            .collect();
        let mut entries = Vec::new();
        let mut start = 0;
        while start < size {
            let end = (start + ENTRIES_MAX).min(size);
            for e in tx.audit_entries(start, end).await? {
                entries.push(to_line(e)?);
            }
            start = end;
        }
        Ok(AuditExport {
            log_id,
            entries,
            checkpoint,
            daily,
            jwks,
        })
    }

    /// Worker: signs a `latest` checkpoint for every log that grew, at most once per interval.
    pub async fn sign_latest_checkpoints(&self) -> Result<u32> {
        let scope = SystemScope::new("audit checkpoints");
        let logs = {
            let mut tx = self.store.system(&scope, Access::Read).await?;
            tx.audit_logs_grown().await?
        };
        let mut signed = 0;
        for log in logs {
            if self.sign_checkpoint(&scope, &log, None).await? {
                signed += 1;
            }
        }
        Ok(signed)
    }

    /// Worker: signs today's daily checkpoint (everything appended before 00:00 UTC) for every
    /// log that has none yet.
    pub async fn sign_daily_checkpoints(&self) -> Result<u32> {
        let scope = SystemScope::new("audit daily checkpoints");
        let now = self.now();
        let midnight = now.replace_time(time::Time::MIDNIGHT);
        let day = format!(
            "{:04}-{:02}-{:02}",
            midnight.year(),
            u8::from(midnight.month()),
            midnight.day()
        );
        let logs = {
            let mut tx = self.store.system(&scope, Access::Read).await?;
            tx.audit_logs_without_daily(&day, midnight).await?
        };
        let mut signed = 0;
        for log in logs {
            if self
                .sign_checkpoint(&scope, &log, Some((&day, midnight)))
                .await?
            {
                signed += 1;
            }
        }
        Ok(signed)
    }

    /// Signs one checkpoint under the log's head lock, so nodes racing for it sign once. Refuses
    /// (and reports) when the stored hashes no longer reproduce the last signed root.
    async fn sign_checkpoint(
        &self,
        scope: &SystemScope,
        log_id: &str,
        daily: Option<(&str, OffsetDateTime)>,
    ) -> Result<bool> {
        let now = self.now();
        // A workspace's checkpoint is also a webhook event, written in the same transaction.
        let mut signing = match WorkspaceId::parse(log_id) {
            Some(ws) => {
                let keys = self.owner_keys(ws.as_str()).await?;
                let tx = self
                    .store
                    .workspace_system(scope, &ws, Access::Write)
                    .await?;
                SigningTx::Workspace(ws, keys, tx)
            }
            None => SigningTx::Log(self.store.audit_log(scope, log_id, Access::Write).await?),
        };
        let tx = signing.log();
        let Some(head) = tx.audit_head(true).await? else {
            return Ok(false);
        };
        let size = match daily {
            Some((day, before)) => {
                if tx.audit_checkpoint_day(day).await?.is_some() {
                    return Ok(false);
                }
                tx.audit_size_before(before).await?.min(head.size)
            }
            None => {
                if let Some(last) = tx.audit_checkpoint_last_signed().await?
                    && (last.size >= head.size
                        || now - last.signed_at < self.settings.checkpoint_interval)
                {
                    return Ok(false);
                }
                head.size
            }
        };
        if size == 0 {
            return Ok(false);
        }
        let last = tx.audit_checkpoint_latest().await?;
        let mut ids = Frontier::ids(size);
        if let Some(last) = &last {
            ids.extend(merkle::nodes_needed(|r| merkle::root(last.size, r)));
        }
        let nodes = tx.audit_nodes(&ids).await?;
        if let Some(last) = &last {
            let again = merkle::root(last.size, &nodes).map_err(Error::internal)?;
            if again != last.root {
                error!(
                    log = log_id,
                    size = last.size,
                    "stored audit hashes no longer reproduce the last signed root; refusing to sign"
                );
                return Err(Error::Internal(
                    "audit log does not reproduce its last signed checkpoint".into(),
                ));
            }
        }
        let root = merkle::root(size, &nodes).map_err(Error::internal)?;
        // Appends build on the head's frontier: for a `latest` checkpoint it must give the
        // same root as the stored hashes.
        let head_root = Frontier::from_hashes(head.size, head.frontier).map(|f| f.root());
        if daily.is_none() && head_root != Some(root) {
            error!(
                log = log_id,
                "audit head frontier disagrees with stored hashes; refusing to sign"
            );
            return Err(Error::Internal("audit head disagrees with its tree".into()));
        }
        let stored_key = tx
            .audit_keys()
            .await?
            .into_iter()
            .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
            .ok_or_else(|| Error::Internal("audit log has no key".into()))?;
        let key = self.open_audit_key(log_id, &stored_key).await?;
        let cp = Checkpoint {
            origin: head.origin.clone(),
            size,
            root,
        };
        let body = cp.body();
        let stored = StoredCheckpoint {
            kind: if daily.is_some() { "daily" } else { "latest" }.to_owned(),
            day: daily.map(|(d, _)| d.to_owned()),
            size,
            root,
            jws: checkpoint::sign_jws(&key, &body),
            note: checkpoint::sign_note(&key, &head.origin, &body),
            body,
            kid: stored_key.kid,
            signed_at: now,
        };
        match tx.audit_checkpoint_insert(&stored).await {
            Err(StoreError::Conflict(_)) => return Ok(false),
            other => other?,
        }
        match signing {
            SigningTx::Workspace(ws, keys, mut tx) => {
                let view = CheckpointView::of(&head.origin, stored);
                let change = Change::new(
                    "audit.checkpoint.signed",
                    serde_json::json!({
                        "origin": view.origin,
                        "kind": view.kind,
                        "date": view.date,
                        "tree_size": view.tree_size,
                        "root": view.root,
                        "signed_at": format_ts(view.signed_at),
                        "jws": view.jws,
                        "note": view.note,
                    }),
                );
                self.emit(&mut *tx, &keys, &ws, change, now).await?;
                tx.commit().await?;
            }
            SigningTx::Log(tx) => tx.commit().await?,
        }
        Ok(true)
    }
}

/// The transaction a checkpoint is signed in: a workspace's (which can write its webhook
/// event), or the instance log's.
enum SigningTx {
    Workspace(WorkspaceId, OwnerKeys, Box<dyn WorkspaceSystemTx>),
    Log(Box<dyn AuditLogTx>),
}

impl SigningTx {
    fn log(&mut self) -> &mut dyn AuditLogTx {
        match self {
            SigningTx::Workspace(_, _, tx) => &mut **tx,
            SigningTx::Log(tx) => &mut **tx,
        }
    }
}
