//! API key use cases: create, list, read, rotate, revoke, and the request-path check that turns
//! a `pal_…` bearer into a `TenantScope` (KEY-1, KEY-2).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::instrument;

use super::cache::{CHANGE_WINDOW, CachedKey, KeyCache, PROPAGATION};
use super::model::{ApiKey, ApiKeySecret, Creator, IssuedApiKey, NewApiKey, Scope};
use crate::acl::{Permission, authorize};
use crate::app::Services;
use crate::audit::{Actor, Target};
use crate::error::{Error, Resource, Result};
use crate::ids::{ApiKeyId, WorkspaceId};
use crate::limits::Check;
use crate::limits::limiter::Ledger;
use crate::principal::{Principal, RequestMeta};
use crate::store::Access;
use crate::tenancy::{SystemScope, TenantScope};
use crate::validate::Checks;
use crate::webhooks::outbox::Change;
use crate::workspaces::model::Page;
use crate::workspaces::service::{LIST_LIMIT_MAX, page_of, ws_event};

/// Change rows older than this are pruned; far past the sync window.
const CHANGE_RETENTION: time::Duration = time::Duration::hours(1);

/// The request path's state for API keys: verified keys under a lease, and last-use times
/// waiting to be written (at most once per flush interval per key).
#[derive(Debug, Default)]
pub struct KeyState {
    pub(crate) cache: KeyCache,
    usage: Mutex<HashMap<ApiKeyId, OffsetDateTime>>,
    /// Database lookups of a key by hash (cache misses), for operators and tests.
    lookups: AtomicU64,
}

impl KeyState {
    fn record_use(&self, key: &ApiKeyId, at: OffsetDateTime) {
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        usage.insert(key.clone(), at);
    }

    fn take_usage(&self) -> HashMap<ApiKeyId, OffsetDateTime> {
        std::mem::take(&mut *self.usage.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts back usage a failed flush could not write, keeping the newer time of each key.
    fn restore_usage(&self, pending: HashMap<ApiKeyId, OffsetDateTime>) {
        let mut usage = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, at) in pending {
            let slot = usage.entry(key).or_insert(at);
            *slot = (*slot).max(at);
        }
    }
}

fn key_target(id: &ApiKeyId) -> Target {
    Target {
        kind: "api_key".into(),
        id: id.to_string(),
    }
}

fn scopes_json(scopes: &[Scope]) -> Value {
    json!(scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>())
}

fn timestamp(at: Option<OffsetDateTime>) -> Value {
    at.map_or(Value::Null, |t| Value::String(crate::audit::format_ts(t)))
}

/// An API key event for webhooks: never its secret.
fn key_change(event_type: &'static str, key: &ApiKey) -> Change {
    Change::new(
        event_type,
        json!({
            "id": key.id,
            "name": key.name,
            "prefix": key.prefix,
            "scopes": scopes_json(&key.scopes),
            "expires_at": timestamp(key.expires_at),
        }),
    )
}

fn parse_id(id: &str) -> Result<ApiKeyId> {
    ApiKeyId::parse(id).ok_or(Error::NotFound(Resource::ApiKey))
}

impl Services {
    /// Creates a key (needs `api_keys.manage`). Its grants are the union of its scopes'
    /// permissions intersected with the caller's grants now; a key creating a key may only
    /// ask for scopes it has itself. The secret is returned here and never again.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn create_api_key(
        &self,
        scope: &TenantScope,
        input: NewApiKey,
        meta: &RequestMeta,
    ) -> Result<IssuedApiKey> {
        authorize(scope, Permission::ApiKeysManage)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let mut checks = Checks::new();
        checks.text("/name", &input.name, 1, 100);
        if input.scopes.is_empty() {
            checks.fail("/scopes", "must name at least one scope");
        }
        let mut scopes = Vec::new();
        for (i, text) in input.scopes.iter().enumerate() {
            match Scope::parse(text) {
                Some(s) => scopes.push(s),
                None => checks.fail(
                    &format!("/scopes/{i}"),
                    "is not a scope: read, read_draft, write or management",
                ),
            }
        }
        if let Some(at) = input.expires_at
            && at <= now
        {
            checks.fail("/expires_at", "must be in the future");
        }
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let creator = match scope.principal() {
            Principal::User { user_id, .. } => Creator::User(user_id.clone()),
            Principal::ApiKey { key_id, .. } => {
                let own = tx.api_key_get(key_id).await?.ok_or(Error::InvalidApiKey)?;
                for (i, s) in scopes.iter().enumerate() {
                    if !own.scopes.contains(s) {
                        checks.fail(
                            &format!("/scopes/{i}"),
                            "is a scope the API key making this request does not have",
                        );
                    }
                }
                Creator::ApiKey(key_id.clone())
            }
        };
        checks.finish()?;
        scopes.sort();
        scopes.dedup();
        let grants = scope
            .grants()
            .ok_or(Error::PermissionDenied(Permission::ApiKeysManage))?
            .restrict(Scope::union(&scopes));
        let secret = ApiKeySecret::generate()?;
        let key = ApiKey {
            id: ApiKeyId::generate(),
            workspace_id: scope.workspace_id().clone(),
            name: input.name,
            prefix: secret.display_prefix(),
            scopes,
            grants,
            created_by: creator,
            on_behalf_of: scope.principal().on_behalf_of().clone(),
            created_at: now,
            expires_at: input.expires_at,
            rotated_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        tx.api_key_insert(&key, &secret.hash()).await?;
        let mut event = ws_event(scope, "api_key.create", key_target(&key.id));
        event.diff_field("/name", Value::Null, json!(key.name));
        event.diff_field("/scopes", Value::Null, scopes_json(&key.scopes));
        event.diff_field(
            "/permissions",
            Value::Null,
            json!(key.grants.permissions().keys()),
        );
        event.diff_field("/expires_at", Value::Null, timestamp(key.expires_at));
        tx.audit_append(&event.seal(meta, now)?).await?;
        self.emit(
            &mut *tx,
            &keys,
            scope.workspace_id(),
            key_change("api_key.created", &key),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedApiKey { key, secret })
    }

    /// Keys not revoked, by id (never a secret).
    pub async fn list_api_keys(
        &self,
        scope: &TenantScope,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Page<ApiKey>> {
        authorize(scope, Permission::ApiKeysManage)?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let rows = tx.api_keys_list(after.as_ref(), limit + 1).await?;
        Ok(page_of(rows, limit, |k| k.id.to_string()))
    }

    /// One key, revoked or not.
    pub async fn get_api_key(&self, scope: &TenantScope, id: &str) -> Result<ApiKey> {
        authorize(scope, Permission::ApiKeysManage)?;
        let id = parse_id(id)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        tx.api_key_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::ApiKey))
    }

    /// Gives a live key a new secret, returned once; the old secret stops working on every
    /// node before this returns.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn rotate_api_key(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<IssuedApiKey> {
        authorize(scope, Permission::ApiKeysManage)?;
        let id = parse_id(id)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let secret = ApiKeySecret::generate()?;
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        if !tx
            .api_key_rotate(&id, &secret.hash(), &secret.display_prefix(), now)
            .await?
        {
            return Err(Error::NotFound(Resource::ApiKey));
        }
        let key = tx
            .api_key_get(&id)
            .await?
            .ok_or(Error::NotFound(Resource::ApiKey))?;
        tx.api_keys_changed(now).await?;
        let event = ws_event(scope, "api_key.rotate", key_target(&id));
        tx.audit_append(&event.seal(meta, now)?).await?;
        self.emit(
            &mut *tx,
            &keys,
            scope.workspace_id(),
            key_change("api_key.rotated", &key),
            now,
        )
        .await?;
        tx.commit().await?;
        self.propagate_key_change(scope.workspace_id()).await;
        Ok(IssuedApiKey { key, secret })
    }

    /// Revokes a key: the very next request with it fails, on every node, once this returns.
    /// Revoking a revoked key changes nothing.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn revoke_api_key(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        authorize(scope, Permission::ApiKeysManage)?;
        let id = parse_id(id)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        if !tx.api_key_revoke(&id, now).await? {
            return match tx.api_key_get(&id).await? {
                Some(_) => Ok(()),
                None => Err(Error::NotFound(Resource::ApiKey)),
            };
        }
        tx.api_keys_changed(now).await?;
        let mut event = ws_event(scope, "api_key.revoke", key_target(&id));
        event.diff_field("/revoked_at", Value::Null, timestamp(Some(now)));
        tx.audit_append(&event.seal(meta, now)?).await?;
        if let Some(key) = tx.api_key_get(&id).await? {
            self.emit(
                &mut *tx,
                &keys,
                scope.workspace_id(),
                key_change("api_key.revoked", &key),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        self.propagate_key_change(scope.workspace_id()).await;
        Ok(())
    }

    /// After a committed change recorded with `api_keys_changed`: drops this node's cached
    /// keys of the workspace. Other nodes drop theirs at their next sync (bounded staleness).
    pub(crate) fn invalidate_keys_locally(&self, workspace: &WorkspaceId) {
        self.keys
            .cache
            .invalidate(&HashSet::from([workspace.clone()]));
    }

    /// [`Services::invalidate_keys_locally`], then waits until every other node's lease has
    /// either seen the change or run out (see `cache`): for revocations and suspensions, which
    /// must hold on the very next request everywhere.
    pub(crate) async fn propagate_key_change(&self, workspace: &WorkspaceId) {
        self.invalidate_keys_locally(workspace);
        tokio::time::sleep(PROPAGATION).await;
    }

    /// The request-path check for `Authorization: Bearer pal_…` on a workspace endpoint:
    /// shape and checksum first (no database work for a malformed key), then the cache, else
    /// one lookup by SHA-256. A key works only in its own workspace (another: 404, as for a
    /// non-member); an expired key gets `api_key_expired`. The request is then charged to the
    /// workspace's and the key's `api` budgets.
    ///
    /// Guessing is bounded: a hash found unknown or revoked is remembered (refused again with
    /// no lookup) and charged to the client IP's `api_key_failures_per_ip` budget; once that is
    /// spent, keys this node has not verified yet are refused from memory (429) until it
    /// refills.
    pub async fn api_key_scope(
        &self,
        bearer: &str,
        workspace_key: &str,
        meta: &RequestMeta,
    ) -> Result<TenantScope> {
        let secret = ApiKeySecret::parse(bearer).ok_or(Error::InvalidApiKey)?;
        let hash = secret.hash();
        let key = match self.keys.cache.get(&hash) {
            Some(key) => key,
            None if self.keys.cache.is_refused(&hash) => return Err(Error::InvalidApiKey),
            None => {
                let failures = self.api_key_failures_check(meta);
                self.limiter
                    .refused_from_memory(failures.as_slice(), 1, meta)?;
                match self.load_api_key(hash).await {
                    Err(Error::InvalidApiKey) => {
                        self.keys.cache.refuse(hash);
                        self.limiter
                            .take_exact(
                                Ledger::Instance,
                                failures.as_slice(),
                                1,
                                &Actor::anonymous(),
                                meta,
                            )
                            .await?;
                        return Err(Error::InvalidApiKey);
                    }
                    other => other?,
                }
            }
        };
        if workspace_key != key.workspace_id.as_str() && workspace_key != key.workspace_slug {
            return Err(Error::NotFound(Resource::Workspace));
        }
        let now = self.now();
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::ApiKeyExpired);
        }
        self.keys.record_use(&key.key_id, now);
        let principal = Principal::ApiKey {
            key_id: key.key_id.clone(),
            workspace_id: key.workspace_id.clone(),
            on_behalf_of: key.on_behalf_of.clone(),
        };
        let scope = TenantScope::for_api_key(
            key.workspace_id.clone(),
            principal,
            key.grants.clone(),
            key.suspended,
        );
        self.limit_workspace_request(&scope, key.plan, meta).await?;
        Ok(scope)
    }

    fn api_key_failures_check(&self, meta: &RequestMeta) -> Option<Check> {
        let rate = self.settings.limits.auth.api_key_failures_per_ip;
        Check::for_ip("api_key_failures_per_ip", rate, meta.ip)
    }

    /// How many times this node looked an API key up in the database (cache misses).
    pub fn api_key_lookups(&self) -> u64 {
        self.keys.lookups.load(Ordering::Relaxed)
    }

    async fn load_api_key(&self, hash: [u8; 32]) -> Result<Arc<CachedKey>> {
        let generation = self.keys.cache.generation();
        self.keys.lookups.fetch_add(1, Ordering::Relaxed);
        let found = {
            let mut tx = self
                .store
                .system(&SystemScope::new("api key lookup by hash"), Access::Read)
                .await?;
            tx.api_key_by_hash(&hash).await?
        };
        let (key, workspace) = found.ok_or(Error::InvalidApiKey)?;
        if key.revoked_at.is_some() {
            return Err(Error::InvalidApiKey);
        }
        if workspace.deleted_at.is_some() {
            return Err(Error::NotFound(Resource::Workspace));
        }
        let cached = Arc::new(CachedKey {
            key_id: key.id,
            workspace_id: workspace.id,
            workspace_slug: workspace.slug,
            plan: workspace.plan,
            suspended: workspace.suspended_at.is_some(),
            on_behalf_of: key.on_behalf_of,
            grants: key.grants,
            expires_at: key.expires_at,
        });
        self.keys
            .cache
            .insert(hash, Arc::clone(&cached), generation);
        Ok(cached)
    }

    /// One sync of the key cache with the change list (the worker runs it every
    /// `SYNC_INTERVAL`); a failure leaves the lease to run out.
    pub async fn sync_api_keys(&self) -> Result<()> {
        let started = tokio::time::Instant::now();
        let since = self.now() - CHANGE_WINDOW;
        let changes = {
            let mut tx = self
                .store
                .system(&SystemScope::new("api key cache sync"), Access::Read)
                .await?;
            tx.api_key_changes_since(since).await?
        };
        self.keys.cache.apply_sync(started, changes);
        Ok(())
    }

    /// Writes the keys' last-use times gathered since the previous flush (one write per key)
    /// and prunes old change rows. Returns how many keys were written.
    pub async fn flush_api_key_usage(&self) -> Result<usize> {
        let pending = self.keys.take_usage();
        let now = self.now();
        let written = pending.len();
        let usage: Vec<_> = pending.iter().map(|(k, at)| (k.clone(), *at)).collect();
        let result = async {
            let mut tx = self
                .store
                .system(&SystemScope::new("api key usage flush"), Access::Write)
                .await?;
            if !usage.is_empty() {
                tx.api_key_usage_record(&usage).await?;
            }
            tx.api_key_changes_prune(now - CHANGE_RETENTION).await?;
            tx.commit().await?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = result {
            self.keys.restore_usage(pending);
            return Err(e);
        }
        Ok(written)
    }
}
