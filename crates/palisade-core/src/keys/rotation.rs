//! Key rotation (KMS-3).
//!
//! - **Master keys**: [`Services::rotate_master`] re-wraps every data key not wrapped by its
//!   region's active master key, in pages, each a compare-and-swap, so it can be stopped and
//!   run again (resumable, idempotent); it reports which configured master keys no longer wrap
//!   anything and can be retired.
//! - **Data keys**: [`Services::rotate_data_key`] stores the owner's next version (sealing
//!   nothing before `activates_at`, by when every node has loaded it) and a job;
//!   [`Services::run_key_rotations`] (the worker) re-encrypts every sealed column of the owner
//!   under it, page by page under the job row's lock, in passes, until a whole pass finds no
//!   value under an older version; then the older versions are marked retired (they still open
//!   stragglers). It also starts the scheduled rotation of keys older than the configured age.
//!
//! Every rotation is an audit entry in the owner's log (`instance` for master keys).

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::{debug, info};

use super::{INSTANCE, KeyringIds, OwnerKeys, SecretSite};
use crate::app::Services;
use crate::audit::service::key_site;
use crate::audit::{Actor, AuditEvent, AuditLog, Target};
use crate::collections::model::Collection;
use crate::collections::records::sealed_bytes;
use crate::crypto::envelope::key_id_of;
use crate::error::{Error, Result};
use crate::ids::{CollectionId, KeyRotationId, RecordId, WorkspaceId};
use crate::principal::RequestMeta;
use crate::store::{Access, KeyRotation, KeysTx};
use crate::tenancy::SystemScope;

/// Values re-sealed per transaction.
const PAGE: u32 = 200;
/// Data keys re-wrapped per transaction.
const REWRAP_PAGE: usize = 500;

/// Every column that holds sealed secrets, per owner kind. A feature that stores a secret adds
/// its column here, so rotation re-encrypts it (and says so in its pass order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedColumn {
    /// `records.data`: the values of a collection's `encrypted` fields (workspaces).
    RecordFields,
    /// `audit_keys.sealed_seed`: each log's Ed25519 seed (workspaces and the instance).
    AuditKeySeeds,
    /// `signing_keys.sealed_seed`: the access-token key's seed (the instance).
    SigningKeySeeds,
    /// `webhooks.secret` and `webhooks.previous_secret`: endpoints' signing secrets
    /// (workspaces).
    WebhookSecrets,
    /// `webhook_events.payload`: outbox events, which may hold encrypted fields' values
    /// (workspaces).
    WebhookPayloads,
}

impl SealedColumn {
    fn as_str(self) -> &'static str {
        match self {
            SealedColumn::RecordFields => "records",
            SealedColumn::AuditKeySeeds => "audit_keys",
            SealedColumn::SigningKeySeeds => "signing_keys",
            SealedColumn::WebhookSecrets => "webhooks",
            SealedColumn::WebhookPayloads => "webhook_events",
        }
    }

    /// The columns an owner's values live in, in pass order.
    fn of(owner: &str) -> &'static [SealedColumn] {
        if owner == INSTANCE {
            &[SealedColumn::SigningKeySeeds, SealedColumn::AuditKeySeeds]
        } else {
            &[
                SealedColumn::RecordFields,
                SealedColumn::AuditKeySeeds,
                SealedColumn::WebhookSecrets,
                SealedColumn::WebhookPayloads,
            ]
        }
    }

    fn parse(owner: &str, phase: &str) -> Option<SealedColumn> {
        Self::of(owner)
            .iter()
            .copied()
            .find(|c| c.as_str() == phase)
    }
}

/// What `palisade keys rotate-master` did.
#[derive(Debug, Clone, Serialize)]
pub struct MasterRotation {
    /// Data keys now wrapped by their region's active master key that were not before.
    pub rewrapped: u64,
    /// Data keys that already were.
    pub unchanged: u64,
    /// Configured master keys that still wrap some data key (the active ones, normally).
    pub in_use: Vec<String>,
    /// Configured master keys that wrap nothing any more: remove them from the configuration.
    pub retirable: Vec<String>,
}

/// One data key in `palisade keys status`.
#[derive(Debug, Clone, Serialize)]
pub struct DataKeyStatus {
    pub id: String,
    pub owner: String,
    pub region: Option<String>,
    pub version: i64,
    /// The master key that wraps it.
    pub wrapped_by: String,
    /// Whether that is its region's active master key (else `rotate-master` re-wraps it).
    pub wrapped_by_active: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub activates_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
}

/// One re-encryption job in `palisade keys status`.
#[derive(Debug, Clone, Serialize)]
pub struct RotationStatus {
    pub id: String,
    pub owner: String,
    pub to_version: i64,
    pub reason: String,
    /// `pending` (waiting for its version to activate, or for a worker), `running`, `done`.
    pub state: String,
    pub pass: i64,
    /// The sealed column the running pass is in.
    pub phase: String,
    /// Sealed values looked at over every pass, and re-sealed in the current pass.
    pub scanned: i64,
    pub resealed: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// `palisade keys status`.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    pub master_keys: Vec<KeyringIds>,
    pub data_keys: Vec<DataKeyStatus>,
    /// Data keys `rotate-master` would re-wrap.
    pub needs_rewrap: u64,
    /// Configured master keys that wrap nothing: they can be removed.
    pub retirable_master_keys: Vec<String>,
    /// The newest jobs first.
    pub rotations: Vec<RotationStatus>,
}

impl From<&KeyRotation> for RotationStatus {
    fn from(j: &KeyRotation) -> Self {
        Self {
            id: j.id.clone(),
            owner: j.owner.clone(),
            to_version: j.to_version,
            reason: j.reason.clone(),
            state: j.state.clone(),
            pass: j.pass,
            phase: j.phase.clone(),
            scanned: j.scanned,
            resealed: j.resealed,
            created_at: j.created_at,
            updated_at: j.updated_at,
            finished_at: j.finished_at,
        }
    }
}

fn log_of(owner: &str) -> AuditLog {
    if owner == INSTANCE {
        AuditLog::Instance
    } else {
        AuditLog::Workspace(WorkspaceId::from_trusted(owner.to_owned()))
    }
}

/// What one page of re-encryption saw.
#[derive(Debug, Default)]
struct PageOutcome {
    scanned: i64,
    found: i64,
    resealed: i64,
    /// Where the next page starts; `None`: the column is finished.
    next: Option<String>,
}

impl Services {
    /// Resolves `palisade keys rotate-workspace`'s argument: `instance`, or a workspace id or
    /// slug (not deleted).
    pub async fn key_owner(&self, key: &str) -> Result<String> {
        if key == INSTANCE {
            return Ok(INSTANCE.to_owned());
        }
        let scope = SystemScope::new("key owner lookup");
        let mut tx = self.store.system(&scope, Access::Read).await?;
        tx.workspace_resolve(key)
            .await?
            .map(|w| w.to_string())
            .ok_or(Error::NotFound(crate::error::Resource::Workspace))
    }

    /// Re-wraps every data key under its region's active master key (see the module docs).
    pub async fn rotate_master(&self) -> Result<MasterRotation> {
        let scope = SystemScope::new("master key rotation");
        let rows = {
            let mut tx = self.store.system(&scope, Access::Read).await?;
            tx.data_keys_all().await?
        };
        let masters = self.vault.masters();
        let mut rewrapped = 0;
        let mut unchanged = 0;
        for chunk in rows.chunks(REWRAP_PAGE) {
            let mut tx = self.store.system(&scope, Access::Write).await?;
            for (key, region) in chunk {
                match masters.rewrap(key, region.as_deref())? {
                    None => unchanged += 1,
                    Some(wrapped) => {
                        // Changed meanwhile (another run): the next run looks again.
                        if tx.data_key_rewrap(&key.id, &key.wrapped, &wrapped).await? {
                            rewrapped += 1;
                        }
                    }
                }
            }
            tx.commit().await?;
        }
        let (in_use, retirable) = self.master_key_use().await?;
        let report = MasterRotation {
            rewrapped,
            unchanged,
            in_use,
            retirable,
        };
        let mut event = AuditEvent::new(
            AuditLog::Instance,
            "keys.master_rotated",
            Actor::system(),
            Target {
                kind: "master_key".into(),
                id: masters.for_region(None).active().id().to_owned(),
            },
        );
        event.extra.insert(
            "keys".into(),
            json!({"rewrapped": report.rewrapped, "unchanged": report.unchanged,
                   "in_use": report.in_use, "retirable": report.retirable}),
        );
        self.append_key_event(INSTANCE, event).await?;
        info!(
            rewrapped = report.rewrapped,
            retirable = ?report.retirable,
            "master key rotation finished"
        );
        Ok(report)
    }

    /// Master keys that wrap some data key, and configured ones that wrap none.
    async fn master_key_use(&self) -> Result<(Vec<String>, Vec<String>)> {
        let used = super::master_ids_in_use(&*self.store).await?;
        let configured: BTreeSet<String> = self
            .vault
            .masters()
            .describe()
            .into_iter()
            .flat_map(|r| std::iter::once(r.active).chain(r.retired))
            .collect();
        let retirable = configured.difference(&used).cloned().collect();
        Ok((used.into_iter().collect(), retirable))
    }

    async fn append_key_event(&self, owner: &str, event: AuditEvent) -> Result<()> {
        let scope = SystemScope::new("key rotation audit");
        let mut tx = self.store.audit_log(&scope, owner, Access::Write).await?;
        tx.audit_append(&event.seal(&RequestMeta::default(), self.now())?)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts a rotation of `owner`'s data key (`reason`: `operator` or `schedule`): its next
    /// version and a re-encryption job, with an audit entry, in one transaction. If a job is
    /// already open, that job is returned and nothing changes.
    pub async fn rotate_data_key(&self, owner: &str, reason: &str) -> Result<KeyRotation> {
        let now = self.now();
        // The owner's keys exist (a first version is created if needed) before the write, and
        // its region is current (an administrator may have moved the workspace).
        self.owner_keys(owner).await?;
        self.vault.refresh(&*self.store).await?;
        let region = self.vault.region_of(owner);
        let scope = SystemScope::new("data key rotation");
        let mut tx = self.store.keys(&scope, owner, Access::Write).await?;
        if let Some(open) = tx.key_rotation_open().await? {
            return Ok(open);
        }
        let version = tx
            .owner_data_keys()
            .await?
            .iter()
            .map(|k| k.version)
            .max()
            .unwrap_or(0)
            + 1;
        let activates_at = now + self.settings.key_propagation;
        let (_, stored) = self.vault.masters().new_data_key(
            owner,
            region.as_deref(),
            version,
            now,
            activates_at,
        )?;
        tx.owner_data_key_insert(&stored).await?;
        let job = KeyRotation {
            id: KeyRotationId::generate().to_string(),
            owner: owner.to_owned(),
            to_version: version,
            reason: reason.to_owned(),
            state: "pending".to_owned(),
            pass: 1,
            phase: SealedColumn::of(owner)[0].as_str().to_owned(),
            cursor: String::new(),
            found: 0,
            resealed: 0,
            scanned: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
        };
        tx.key_rotation_insert(&job).await?;
        let mut event = AuditEvent::new(
            log_of(owner),
            "keys.data_key_rotated",
            Actor::system(),
            Target {
                kind: "data_key".into(),
                id: stored.id.to_string(),
            },
        );
        let activates = activates_at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(Error::internal)?;
        event.extra.insert(
            "keys".into(),
            json!({"version": version, "reason": reason, "job": job.id, "activates_at": activates}),
        );
        tx.audit_append(&event.seal(&RequestMeta::default(), now)?)
            .await?;
        tx.commit().await?;
        self.vault.refresh(&*self.store).await?;
        info!(owner, version, reason, "data key rotation started");
        Ok(job)
    }

    /// Reloads every data key: versions and workspaces other nodes created (the worker, every
    /// few seconds).
    pub async fn refresh_keys(&self) -> Result<()> {
        Ok(self.vault.refresh(&*self.store).await?)
    }

    /// The worker's rotation tick: starts scheduled rotations and works every open job whose
    /// version is active here. How many jobs it finished.
    pub async fn run_key_rotations(&self) -> Result<u32> {
        self.vault.refresh(&*self.store).await?;
        let now = self.now();
        if let Some(max_age) = self.settings.data_key_max_age {
            for keys in self.vault.owners_at(now) {
                let due = keys.newest_created().is_some_and(|at| at + max_age <= now);
                if due && !self.owner_gone(keys.owner()).await? {
                    self.rotate_data_key(keys.owner(), "schedule").await?;
                }
            }
        }
        let open: Vec<KeyRotation> = {
            let scope = SystemScope::new("key rotation jobs");
            let mut tx = self.store.system(&scope, Access::Read).await?;
            tx.key_rotations(1000)
                .await?
                .into_iter()
                .filter(|j| j.state != "done")
                .collect()
        };
        let mut finished = 0;
        for job in open {
            if self.work_rotation(&job.owner, &job.id).await? {
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// A workspace that is gone needs no scheduled rotation.
    async fn owner_gone(&self, owner: &str) -> Result<bool> {
        if owner == INSTANCE {
            return Ok(false);
        }
        let scope = SystemScope::new("key rotation schedule");
        let mut tx = self.store.system(&scope, Access::Read).await?;
        Ok(tx.workspace_resolve(owner).await?.is_none())
    }

    /// Works one job page by page until it is done (true) or its version is not active yet.
    async fn work_rotation(&self, owner: &str, job_id: &str) -> Result<bool> {
        let scope = SystemScope::new("key rotation");
        loop {
            let now = self.now();
            let keys = self.owner_keys(owner).await?;
            let mut tx = self.store.keys(&scope, owner, Access::Write).await?;
            // Locked until commit: nodes take turns, a page at a time.
            let Some(mut job) = tx.key_rotation_open().await? else {
                return Ok(false);
            };
            if job.id != job_id {
                return Ok(false);
            }
            if keys.active_version() < job.to_version {
                // Not active yet (or not loaded here yet): a later tick.
                return Ok(false);
            }
            let column = SealedColumn::parse(owner, &job.phase).ok_or_else(|| {
                Error::Internal(format!("key rotation {} has phase {}", job.id, job.phase).into())
            })?;
            let page = match column {
                SealedColumn::RecordFields => {
                    reseal_records(&mut tx, &keys, job.to_version, &job.cursor).await?
                }
                SealedColumn::AuditKeySeeds => {
                    reseal_audit_keys(&mut tx, &keys, job.to_version).await?
                }
                SealedColumn::SigningKeySeeds => {
                    reseal_signing_keys(&mut tx, &keys, job.to_version).await?
                }
                SealedColumn::WebhookSecrets => {
                    reseal_webhook_secrets(&mut tx, &keys, job.to_version, &job.cursor).await?
                }
                SealedColumn::WebhookPayloads => {
                    reseal_webhook_payloads(&mut tx, &keys, job.to_version, &job.cursor).await?
                }
            };
            job.state = "running".to_owned();
            job.scanned += page.scanned;
            job.found += page.found;
            job.resealed += page.resealed;
            job.updated_at = now;
            let mut done = false;
            match page.next {
                Some(cursor) => job.cursor = cursor,
                None => {
                    let columns = SealedColumn::of(owner);
                    let at = columns.iter().position(|c| *c == column).unwrap_or(0);
                    if let Some(next) = columns.get(at + 1) {
                        job.phase = next.as_str().to_owned();
                        job.cursor = String::new();
                    } else if job.found == 0 {
                        done = true;
                    } else {
                        // Something was under an older version this pass: look again, until
                        // a whole pass finds nothing (a write may have raced a re-seal).
                        debug!(
                            owner,
                            pass = job.pass,
                            found = job.found,
                            "key rotation pass"
                        );
                        job.pass += 1;
                        job.found = 0;
                        job.resealed = 0;
                        job.phase = columns[0].as_str().to_owned();
                        job.cursor = String::new();
                    }
                }
            }
            if done {
                job.state = "done".to_owned();
                job.finished_at = Some(now);
                for key in tx.owner_data_keys().await? {
                    if key.version < job.to_version && key.retired_at.is_none() {
                        tx.data_key_retire(&key.id, now).await?;
                    }
                }
                let mut event = AuditEvent::new(
                    log_of(owner),
                    "keys.data_key_reencrypted",
                    Actor::system(),
                    Target {
                        kind: "data_key".into(),
                        id: job.id.clone(),
                    },
                );
                event.extra.insert(
                    "keys".into(),
                    json!({"version": job.to_version, "passes": job.pass, "scanned": job.scanned}),
                );
                tx.audit_append(&event.seal(&RequestMeta::default(), now)?)
                    .await?;
            }
            tx.key_rotation_update(&job).await?;
            tx.commit().await?;
            if done {
                info!(
                    owner,
                    version = job.to_version,
                    passes = job.pass,
                    "re-encryption finished"
                );
                return Ok(true);
            }
        }
    }

    /// `palisade keys status`.
    pub async fn key_status(&self) -> Result<KeyStatus> {
        let scope = SystemScope::new("key status");
        let (rows, jobs) = {
            let mut tx = self.store.system(&scope, Access::Read).await?;
            (tx.data_keys_all().await?, tx.key_rotations(100).await?)
        };
        let masters = self.vault.masters();
        let data_keys: Vec<DataKeyStatus> = rows
            .iter()
            .map(|(k, region)| {
                let wrapped_by = key_id_of(&k.wrapped).unwrap_or("?").to_owned();
                DataKeyStatus {
                    id: k.id.to_string(),
                    owner: k.owner.clone(),
                    region: region.clone(),
                    version: k.version,
                    wrapped_by_active: wrapped_by
                        == masters.for_region(region.as_deref()).active().id(),
                    wrapped_by,
                    created_at: k.created_at,
                    activates_at: k.activates_at,
                    retired_at: k.retired_at,
                }
            })
            .collect();
        let needs_rewrap = data_keys.iter().filter(|k| !k.wrapped_by_active).count() as u64;
        let (_, retirable) = self.master_key_use().await?;
        Ok(KeyStatus {
            master_keys: masters.describe(),
            data_keys,
            needs_rewrap,
            retirable_master_keys: retirable,
            rotations: jobs.iter().map(RotationStatus::from).collect(),
        })
    }
}

/// Whether `sealed` needs re-sealing under `to_version`: sealed under an older version of the
/// owner's, or under the instance's keys from before the owner had its own.
fn stale(keys: &OwnerKeys, sealed: &[u8], to_version: i64) -> bool {
    keys.version_of(sealed).is_none_or(|v| v < to_version)
}

fn has_encrypted(c: &Collection) -> bool {
    c.fields.iter().any(|f| f.encrypted)
}

/// The first collection after `after` (by id) with an encrypted field.
async fn next_encrypted(
    tx: &mut Box<dyn KeysTx>,
    after: Option<&CollectionId>,
) -> Result<Option<Collection>> {
    let mut after = after.cloned();
    loop {
        let page = tx.collections_list(after.as_ref(), PAGE).await?;
        if let Some(c) = page.iter().find(|c| has_encrypted(c)) {
            return Ok(Some(c.clone()));
        }
        if page.len() < PAGE as usize {
            return Ok(None);
        }
        after = page.last().map(|c| c.id.clone());
    }
}

/// One page of a workspace's encrypted record values: up to `PAGE` records of one collection
/// with an encrypted field, after the cursor (`<collection>/<last record>`). The collection is
/// locked shared, like a record write, so its schema cannot change under the page.
async fn reseal_records(
    tx: &mut Box<dyn KeysTx>,
    keys: &OwnerKeys,
    to_version: i64,
    cursor: &str,
) -> Result<PageOutcome> {
    let (from, after) = match cursor.split_once('/') {
        Some((c, r)) => (
            Some(CollectionId::from_trusted(c.to_owned())),
            (!r.is_empty()).then(|| RecordId::from_trusted(r.to_owned())),
        ),
        None => (None, None),
    };
    let current = match &from {
        Some(id) => tx.collection_get(id).await?,
        None => None,
    };
    let (schema, after) = match current {
        Some(c) => (c, after),
        // The first collection, or the cursor's is gone: the next one.
        None => match next_encrypted(tx, from.as_ref()).await? {
            Some(c) => (c, None),
            None => return Ok(PageOutcome::default()),
        },
    };
    let schema = tx
        .collection_lock(&schema.name, false)
        .await?
        .unwrap_or(schema);
    let encrypted: Vec<&str> = schema
        .fields
        .iter()
        .filter(|f| f.encrypted)
        .map(|f| f.name.as_str())
        .collect();
    let records = tx
        .records_list(&schema.id, after.as_ref(), PAGE, true)
        .await?;
    let mut out = PageOutcome::default();
    for record in &records {
        let mut data = record.data.clone();
        let mut moved = 0;
        for field in &encrypted {
            let Some(stored) = record.data.get(*field) else {
                continue;
            };
            out.scanned += 1;
            let sealed = sealed_bytes(stored)?;
            if !stale(keys, &sealed, to_version) {
                continue;
            }
            out.found += 1;
            let site = SecretSite {
                table: "records",
                row: record.id.as_str(),
                field,
            };
            let plain = keys.open(site, &sealed).map_err(Error::internal)?;
            let fresh = keys.seal_with(to_version, site, &plain)?;
            data.insert(
                (*field).to_owned(),
                Value::String(URL_SAFE_NO_PAD.encode(fresh)),
            );
            moved += 1;
        }
        // A record written meanwhile keeps its write; the next pass looks again.
        if moved > 0 && tx.record_reseal(&record.id, record.version, &data).await? {
            out.resealed += moved;
        }
    }
    out.next = if records.len() >= PAGE as usize {
        records.last().map(|r| format!("{}/{}", schema.id, r.id))
    } else {
        next_encrypted(tx, Some(&schema.id))
            .await?
            .map(|c| format!("{}/", c.id))
    };
    Ok(out)
}

/// Every audit key seed of the owner's log (a handful).
async fn reseal_audit_keys(
    tx: &mut Box<dyn KeysTx>,
    keys: &OwnerKeys,
    to_version: i64,
) -> Result<PageOutcome> {
    let mut out = PageOutcome::default();
    for key in tx.audit_keys().await? {
        out.scanned += 1;
        if !stale(keys, &key.sealed_seed, to_version) {
            continue;
        }
        out.found += 1;
        let site = key_site(&key.kid);
        let seed = keys.open(site, &key.sealed_seed).map_err(Error::internal)?;
        let fresh = keys.seal_with(to_version, site, &seed)?;
        if tx
            .audit_key_reseal(&key.kid, &key.sealed_seed, &fresh)
            .await?
        {
            out.resealed += 1;
        }
    }
    Ok(out)
}

/// Every instance signing key seed.
async fn reseal_signing_keys(
    tx: &mut Box<dyn KeysTx>,
    keys: &OwnerKeys,
    to_version: i64,
) -> Result<PageOutcome> {
    let mut out = PageOutcome::default();
    for key in tx.signing_keys_all().await? {
        out.scanned += 1;
        if !stale(keys, &key.sealed_seed, to_version) {
            continue;
        }
        out.found += 1;
        let site = SecretSite {
            table: "signing_keys",
            row: &key.kid,
            field: "sealed_seed",
        };
        let seed = keys.open(site, &key.sealed_seed).map_err(Error::internal)?;
        let fresh = keys.seal_with(to_version, site, &seed)?;
        if tx
            .signing_key_reseal(&key.kid, &key.sealed_seed, &fresh)
            .await?
        {
            out.resealed += 1;
        }
    }
    Ok(out)
}

/// One page of a workspace's webhook secrets (current and previous).
async fn reseal_webhook_secrets(
    tx: &mut Box<dyn KeysTx>,
    keys: &OwnerKeys,
    to_version: i64,
    cursor: &str,
) -> Result<PageOutcome> {
    let rows = tx.webhook_secrets(cursor, PAGE).await?;
    let mut out = PageOutcome::default();
    for (id, secret, previous) in &rows {
        let columns = [
            ("secret", Some(secret)),
            ("previous_secret", previous.as_ref()),
        ];
        for (field, sealed) in columns {
            let Some(sealed) = sealed else {
                continue;
            };
            out.scanned += 1;
            if !stale(keys, sealed, to_version) {
                continue;
            }
            out.found += 1;
            let site = crate::webhooks::service::secret_site(id, field);
            let plain = keys.open(site, sealed).map_err(Error::internal)?;
            let fresh = keys.seal_with(to_version, site, &plain)?;
            if tx.webhook_secret_reseal(id, field, sealed, &fresh).await? {
                out.resealed += 1;
            }
        }
    }
    out.next = (rows.len() >= PAGE as usize)
        .then(|| rows.last().map(|(id, _, _)| id.to_string()))
        .flatten();
    Ok(out)
}

/// One page of a workspace's outbox payloads.
async fn reseal_webhook_payloads(
    tx: &mut Box<dyn KeysTx>,
    keys: &OwnerKeys,
    to_version: i64,
    cursor: &str,
) -> Result<PageOutcome> {
    let rows = tx.webhook_payloads(cursor, PAGE).await?;
    let mut out = PageOutcome::default();
    for (id, sealed) in &rows {
        out.scanned += 1;
        if !stale(keys, sealed, to_version) {
            continue;
        }
        out.found += 1;
        let site = crate::webhooks::outbox::payload_site(id);
        let plain = keys.open(site, sealed).map_err(Error::internal)?;
        let fresh = keys.seal_with(to_version, site, &plain)?;
        if tx.webhook_payload_reseal(id, sealed, &fresh).await? {
            out.resealed += 1;
        }
    }
    out.next = (rows.len() >= PAGE as usize)
        .then(|| rows.last().map(|(id, _)| id.to_string()))
        .flatten();
    Ok(out)
}
