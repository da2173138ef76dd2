//! Webhook endpoints and their delivery history (WHK-1, WHK-4): create, list, change, delete,
//! rotate the secret, list deliveries with every attempt, redeliver. Every change is audited in
//! the workspace's log (never the secret); deliveries have their own history.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::instrument;
use url::Url;

use super::catalog::{self, EventType};
use super::model::{Attempt, Delivery, DeliveryStatus, Endpoint};
use super::signature::SigningSecret;
use crate::acl::{Grants, Permission, authorize};
use crate::app::Services;
use crate::audit::{AuditEvent, Target};
use crate::error::{ConflictKind, Error, Resource, Result};
use crate::ids::{DeliveryId, WebhookId};
use crate::keys::{OwnerKeys, SecretSite};
use crate::principal::RequestMeta;
use crate::store::{Access, TenantTx, WebhooksTx};
use crate::tenancy::TenantScope;
use crate::validate::Checks;
use crate::workspaces::model::Page;
use crate::workspaces::service::{LIST_LIMIT_MAX, page_of, ws_event};

/// Checks a target URL when an endpoint is created or changed (WHK-5). The worker's SSRF-safe
/// client implements it with the operator's allow-list; the client checks again at connect
/// time, so this only spares a user an endpoint that can never work.
#[async_trait::async_trait]
pub trait TargetCheck: Send + Sync + std::fmt::Debug {
    /// `Err` names the problem in a sentence (never echoing credentials).
    async fn check_url(&self, url: &Url) -> std::result::Result<(), String>;
}

/// Webhook settings from the operator's configuration.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Waits before the 2nd, 3rd, … attempt; after the last, a delivery is `failed`.
    pub retry_schedule: Vec<time::Duration>,
    /// An endpoint failing without a success this long is disabled (5 days).
    pub disable_after: time::Duration,
    /// How long the secret before a rotation keeps signing alongside (24 hours).
    pub secret_overlap: time::Duration,
    /// Events and their delivery history are kept this long once settled (30 days).
    pub retention: time::Duration,
    pub targets: Arc<dyn TargetCheck>,
}

/// The longest URL accepted.
const URL_MAX: usize = 2048;
const DESCRIPTION_MAX: usize = 500;

/// An endpoint with its signing secret: returned by create and rotate only.
#[derive(Debug)]
pub struct WebhookWithSecret {
    pub endpoint: Endpoint,
    pub secret: SecretString,
}

#[derive(Debug, Clone, Default)]
pub struct NewWebhook {
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Merge-patch of an endpoint: absent members stay.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// One delivery with every attempt, and the payload as the endpoint receives it (as far as the
/// caller may read it: `null` when the caller may not receive the event at all).
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub delivery: Delivery,
    pub attempts: Vec<Attempt>,
    pub payload: Value,
}

pub(crate) fn webhook_target(id: &WebhookId) -> Target {
    Target {
        kind: "webhook".into(),
        id: id.to_string(),
    }
}

pub(crate) fn secret_site<'a>(id: &'a WebhookId, field: &'a str) -> SecretSite<'a> {
    SecretSite {
        table: "webhooks",
        row: id.as_str(),
        field,
    }
}

fn parse_webhook_id(id: &str) -> Result<WebhookId> {
    WebhookId::parse(id).ok_or(Error::NotFound(Resource::Webhook))
}

fn parse_delivery_id(id: &str) -> Result<DeliveryId> {
    DeliveryId::parse(id).ok_or(Error::NotFound(Resource::Delivery))
}

/// The catalog's event types, for `GET /webhook-events`.
pub fn event_catalog() -> &'static [EventType] {
    catalog::EVENT_TYPES
}

impl Services {
    fn webhook_settings(&self) -> &WebhookSettings {
        &self.settings.webhooks
    }

    /// Checks a URL's form and target; `Err` names `/url`.
    async fn check_webhook_url(&self, checks: &mut Checks, text: &str) -> Option<String> {
        let url = match Url::parse(text.trim()) {
            Ok(url) if text.len() <= URL_MAX => url,
            Ok(_) => {
                checks.fail("/url", "must be at most 2048 characters");
                return None;
            }
            Err(_) => {
                checks.fail("/url", "must be an absolute http or https URL");
                return None;
            }
        };
        match self.webhook_settings().targets.check_url(&url).await {
            Ok(()) => Some(url.to_string()),
            Err(reason) => {
                checks.fail("/url", &reason);
                None
            }
        }
    }

    /// Known event types the caller could receive (a workspace-wide family needs its
    /// permission; record and collection events are filtered per collection on delivery).
    fn check_events(checks: &mut Checks, grants: &Grants, events: &[String]) -> Vec<String> {
        if events.is_empty() {
            checks.fail("/events", "must name at least one event type");
        }
        let mut names = Vec::new();
        for (i, name) in events.iter().enumerate() {
            match catalog::find(name) {
                Some(t) => match t.family.needs() {
                    Some(p) if !grants.permissions().contains(p) => checks.fail(
                        &format!("/events/{i}"),
                        format!("needs the permission {}, which you do not have", p.key()),
                    ),
                    _ => names.push(t.name.to_owned()),
                },
                None => checks.fail(
                    &format!("/events/{i}"),
                    "is not an event type (see GET /api/v1/webhook-events)",
                ),
            }
        }
        names.sort();
        names.dedup();
        names
    }

    fn check_description(checks: &mut Checks, description: &str) {
        if description.chars().count() > DESCRIPTION_MAX {
            checks.fail("/description", "must be at most 500 characters");
        }
    }

    /// Creates an endpoint (needs `webhooks.manage`) with a fresh secret, shown here and on
    /// rotation only. Its payloads show what the caller may read now.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn create_webhook(
        &self,
        scope: &TenantScope,
        input: NewWebhook,
        meta: &RequestMeta,
    ) -> Result<WebhookWithSecret> {
        authorize(scope, Permission::WebhooksManage)?;
        let grants = scope
            .grants()
            .cloned()
            .ok_or(Error::PermissionDenied(Permission::WebhooksManage))?;
        let mut checks = Checks::default();
        let url = self.check_webhook_url(&mut checks, &input.url).await;
        let events = Self::check_events(&mut checks, &grants, &input.events);
        let description = input.description.unwrap_or_default();
        Self::check_description(&mut checks, &description);
        checks.finish()?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let id = WebhookId::generate();
        let secret = SigningSecret::generate()?;
        let endpoint = Endpoint {
            secret: keys.seal(secret_site(&id, "secret"), secret.bytes())?,
            id,
            workspace_id: scope.workspace_id().clone(),
            url: url.unwrap_or_default(),
            description,
            events,
            enabled: input.enabled.unwrap_or(true),
            disabled_reason: None,
            grants,
            created_by: crate::audit::Actor::of(scope.principal()).id,
            created_at: now,
            updated_at: now,
            previous_secret: None,
            previous_secret_expires_at: None,
            failing_since: None,
        };
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        tx.webhook_insert(&endpoint).await?;
        let mut event = ws_event(scope, "webhook.create", webhook_target(&endpoint.id));
        diff_endpoint(&mut event, None, &endpoint);
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(WebhookWithSecret {
            endpoint,
            secret: secret.display(),
        })
    }

    /// Endpoints by id (never a secret).
    pub async fn list_webhooks(
        &self,
        scope: &TenantScope,
        after: Option<WebhookId>,
        limit: u32,
    ) -> Result<Page<Endpoint>> {
        authorize(scope, Permission::WebhooksManage)?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let rows = tx.webhooks_list(after.as_ref(), limit + 1).await?;
        Ok(page_of(rows, limit, |e| e.id.to_string()))
    }

    pub async fn get_webhook(&self, scope: &TenantScope, id: &str) -> Result<Endpoint> {
        authorize(scope, Permission::WebhooksManage)?;
        let id = parse_webhook_id(id)?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        Self::webhook_in(&mut tx, &id).await
    }

    async fn webhook_in(tx: &mut Box<dyn TenantTx>, id: &WebhookId) -> Result<Endpoint> {
        tx.webhook_get(id)
            .await?
            .ok_or(Error::NotFound(Resource::Webhook))
    }

    /// The endpoint locked until commit, for a change.
    async fn webhook_for_change(tx: &mut Box<dyn TenantTx>, id: &WebhookId) -> Result<Endpoint> {
        tx.webhook_lock(id)
            .await?
            .ok_or(Error::NotFound(Resource::Webhook))
    }

    /// Changes URL, events, description or enabled (merge-patch). The payload grants become
    /// the caller's. Enabling clears a failure run, so an endpoint Palisade disabled gets five
    /// fresh days.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn update_webhook(
        &self,
        scope: &TenantScope,
        id: &str,
        patch: WebhookPatch,
        meta: &RequestMeta,
    ) -> Result<Endpoint> {
        authorize(scope, Permission::WebhooksManage)?;
        let id = parse_webhook_id(id)?;
        let grants = scope
            .grants()
            .cloned()
            .ok_or(Error::PermissionDenied(Permission::WebhooksManage))?;
        let mut checks = Checks::default();
        let url = match &patch.url {
            Some(u) => self.check_webhook_url(&mut checks, u).await,
            None => None,
        };
        let events = patch
            .events
            .as_ref()
            .map(|e| Self::check_events(&mut checks, &grants, e));
        if let Some(d) = &patch.description {
            Self::check_description(&mut checks, d);
        }
        checks.finish()?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let before = Self::webhook_for_change(&mut tx, &id).await?;
        let mut after = before.clone();
        if let Some(url) = url {
            after.url = url;
        }
        if let Some(events) = events {
            after.events = events;
        }
        if let Some(d) = patch.description {
            after.description = d;
        }
        if let Some(enabled) = patch.enabled {
            if enabled && !before.enabled {
                after.failing_since = None;
            }
            after.enabled = enabled;
            after.disabled_reason = None;
        }
        after.grants = grants;
        after.updated_at = now;
        if !write_endpoint(&mut *tx, before.enabled, &after, now).await? {
            return Err(Error::NotFound(Resource::Webhook));
        }
        let mut event = ws_event(scope, "webhook.update", webhook_target(&id));
        diff_endpoint(&mut event, Some(&before), &after);
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes an endpoint with its delivery history; nothing more is sent to it.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn delete_webhook(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<()> {
        authorize(scope, Permission::WebhooksManage)?;
        let id = parse_webhook_id(id)?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let before = Self::webhook_in(&mut tx, &id).await?;
        if !tx.webhook_delete(&id).await? {
            return Err(Error::NotFound(Resource::Webhook));
        }
        let mut event = ws_event(scope, "webhook.delete", webhook_target(&id));
        event.diff_field("/url", json!(before.url), Value::Null);
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the signing secret. The one it replaces keeps signing alongside for
    /// `secret_overlap` (24 hours), so receivers can switch without losing a delivery; a
    /// rotation within that time drops the older one.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn rotate_webhook_secret(
        &self,
        scope: &TenantScope,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<WebhookWithSecret> {
        authorize(scope, Permission::WebhooksManage)?;
        let id = parse_webhook_id(id)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let now = self.now();
        let secret = SigningSecret::generate()?;
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let mut endpoint = Self::webhook_for_change(&mut tx, &id).await?;
        let current = open_secret(&keys, &endpoint.id, "secret", &endpoint.secret)?;
        let overlap_until = now + self.webhook_settings().secret_overlap;
        endpoint.previous_secret =
            Some(keys.seal(secret_site(&id, "previous_secret"), current.bytes())?);
        endpoint.previous_secret_expires_at = Some(overlap_until);
        endpoint.secret = keys.seal(secret_site(&id, "secret"), secret.bytes())?;
        endpoint.updated_at = now;
        if !tx.webhook_update(&endpoint).await? {
            return Err(Error::NotFound(Resource::Webhook));
        }
        let mut event = ws_event(scope, "webhook.rotate_secret", webhook_target(&id));
        event.extra.insert(
            "previous_secret_expires_at".into(),
            json!(crate::audit::format_ts(overlap_until)),
        );
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(WebhookWithSecret {
            endpoint,
            secret: secret.display(),
        })
    }

    /// One endpoint's deliveries, newest first; `cursor` is the last id of the previous page.
    pub async fn list_deliveries(
        &self,
        scope: &TenantScope,
        webhook: &str,
        status: Option<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Page<Delivery>> {
        authorize(scope, Permission::WebhooksManage)?;
        let webhook = parse_webhook_id(webhook)?;
        let limit = limit.clamp(1, LIST_LIMIT_MAX);
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        Self::webhook_in(&mut tx, &webhook).await?;
        let rows = tx
            .webhook_deliveries_list(&webhook, status, before.as_ref(), limit + 1)
            .await?;
        Ok(page_of(rows, limit, |d| d.id.to_string()))
    }

    /// A delivery with every attempt and its payload as the endpoint receives it.
    pub async fn get_delivery(
        &self,
        scope: &TenantScope,
        webhook: &str,
        id: &str,
    ) -> Result<DeliveryView> {
        authorize(scope, Permission::WebhooksManage)?;
        let webhook = parse_webhook_id(webhook)?;
        let id = parse_delivery_id(id)?;
        let keys = self.owner_keys(scope.workspace_id().as_str()).await?;
        let mut tx = self.store.tenant(scope, Access::Read).await?;
        let endpoint = Self::webhook_in(&mut tx, &webhook).await?;
        let delivery = tx
            .webhook_delivery_get(&id)
            .await?
            .filter(|d| d.webhook_id == webhook)
            .ok_or(Error::NotFound(Resource::Delivery))?;
        let attempts = tx.webhook_attempts(&id).await?;
        let event = tx
            .webhook_event_get(&delivery.event_id)
            .await?
            .ok_or(Error::NotFound(Resource::Delivery))?;
        // What the endpoint receives, and only as far as the caller may read it too.
        let caller = scope
            .grants()
            .ok_or(Error::PermissionDenied(Permission::WebhooksManage))?;
        let payload = super::delivery::body_for(&keys, &[&endpoint.grants, caller], &event)?
            .unwrap_or(Value::Null);
        Ok(DeliveryView {
            delivery,
            attempts,
            payload,
        })
    }

    /// Sends a delivery that succeeded or failed once more, now (WHK-4). A failed redelivery
    /// is not retried by itself.
    #[instrument(skip_all, fields(workspace = %scope.workspace_id()))]
    pub async fn redeliver(
        &self,
        scope: &TenantScope,
        webhook: &str,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<Delivery> {
        authorize(scope, Permission::WebhooksManage)?;
        let webhook = parse_webhook_id(webhook)?;
        let id = parse_delivery_id(id)?;
        let now = self.now();
        let mut tx = self.store.tenant(scope, Access::Write).await?;
        let endpoint = Self::webhook_in(&mut tx, &webhook).await?;
        let delivery = tx
            .webhook_delivery_get(&id)
            .await?
            .filter(|d| d.webhook_id == webhook)
            .ok_or(Error::NotFound(Resource::Delivery))?;
        if !endpoint.enabled {
            return Err(Error::Conflict(ConflictKind::WebhookDisabled));
        }
        let step = super::delivery::redelivery_step(&self.webhook_settings().retry_schedule);
        if !tx.webhook_delivery_redeliver(&id, now, step).await? {
            return Err(Error::Conflict(ConflictKind::DeliveryPending));
        }
        let mut event = ws_event(scope, "webhook.redeliver", webhook_target(&webhook));
        event
            .extra
            .insert("delivery".into(), json!(delivery.id.to_string()));
        event
            .extra
            .insert("event".into(), json!(delivery.event_id.to_string()));
        tx.audit_append(&event.seal(meta, now)?).await?;
        tx.commit().await?;
        Ok(Delivery {
            status: DeliveryStatus::Pending,
            schedule_step: step,
            next_attempt_at: Some(now),
            updated_at: now,
            ..delivery
        })
    }
}

/// Writes `endpoint`, enabled or not before as `was_enabled` says: the one place where
/// disabling pauses its pending deliveries (they wait out of the dispatchers' way) and enabling
/// resumes them (they go out at once), so switching an endpoint off loses nothing. `false` if
/// the endpoint is gone.
pub(crate) async fn write_endpoint(
    tx: &mut dyn WebhooksTx,
    was_enabled: bool,
    endpoint: &Endpoint,
    now: OffsetDateTime,
) -> Result<bool> {
    if !tx.webhook_update(endpoint).await? {
        return Ok(false);
    }
    match (was_enabled, endpoint.enabled) {
        (true, false) => {
            tx.webhook_deliveries_pause(&endpoint.id, now).await?;
        }
        (false, true) => {
            tx.webhook_deliveries_resume(&endpoint.id, now).await?;
        }
        _ => {}
    }
    Ok(true)
}

/// Disables an enabled endpoint for `reason` (Palisade's own decision: `failing`,
/// `workspace_deleted`).
pub(crate) async fn disable_endpoint(
    tx: &mut dyn WebhooksTx,
    endpoint: &mut Endpoint,
    reason: &str,
    now: OffsetDateTime,
) -> Result<()> {
    let was_enabled = endpoint.enabled;
    endpoint.enabled = false;
    endpoint.disabled_reason = Some(reason.to_owned());
    endpoint.updated_at = now;
    write_endpoint(tx, was_enabled, endpoint, now).await?;
    Ok(())
}

/// Opens one of an endpoint's sealed secrets.
pub(crate) fn open_secret(
    keys: &OwnerKeys,
    id: &WebhookId,
    field: &str,
    sealed: &[u8],
) -> Result<SigningSecret> {
    let bytes = keys
        .open(secret_site(id, field), sealed)
        .map_err(Error::internal)?;
    SigningSecret::from_bytes(&bytes)
}

/// Records what changed on an endpoint (never its secret).
fn diff_endpoint(event: &mut AuditEvent, before: Option<&Endpoint>, after: &Endpoint) {
    let (url, events, description, enabled) = match before {
        Some(b) => (
            json!(b.url),
            json!(b.events),
            json!(b.description),
            json!(b.enabled),
        ),
        None => (Value::Null, Value::Null, Value::Null, Value::Null),
    };
    event.diff_field("/url", url, json!(after.url));
    event.diff_field("/events", events, json!(after.events));
    event.diff_field("/description", description, json!(after.description));
    event.diff_field("/enabled", enabled, json!(after.enabled));
}
