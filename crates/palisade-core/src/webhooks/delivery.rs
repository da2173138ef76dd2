//! The delivery rules the dispatcher in `palisade-worker` follows (WHK-3, WHK-4): what is sent
//! (the payload as the endpoint may see it, signed with every live secret), when a failed
//! attempt is retried (the schedule, with jitter), when a delivery is dead, and when an endpoint
//! failing for days is disabled. The HTTP exchange itself belongs to the worker.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::catalog;
use super::model::{Attempt, ClaimedDelivery, DeliveryOutcome, DeliveryStatus, OutboxEvent};
use super::outbox::payload_site;
use super::service::{disable_endpoint, open_secret, webhook_target};
use super::signature::{Signatures, sign};
use crate::acl::Grants;
use crate::app::Services;
use crate::audit::{Actor, AuditEvent, AuditLog};
use crate::crypto::random;
use crate::error::{Error, Result};
use crate::keys::OwnerKeys;
use crate::principal::RequestMeta;
use crate::store::Access;
use crate::tenancy::SystemScope;

/// What the worker sends for one claimed delivery.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub url: String,
    /// Header names (lowercase) and values, signatures included (the client sets
    /// `content-type: application/json`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// What the worker got back from one attempt.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub status: Option<u16>,
    pub latency: Duration,
    /// At most the first 4 KB of the response body.
    pub body: String,
    /// `None` means success (a 2xx).
    pub error: Option<String>,
    /// A failure no retry can cure (the endpoint may no longer receive the event): the
    /// delivery fails at once.
    pub permanent: bool,
}

/// The schedule step a redelivery gets: past the schedule's end, so it is tried once.
pub(crate) fn redelivery_step(schedule: &[time::Duration]) -> i64 {
    i64::try_from(schedule.len()).unwrap_or(i64::MAX - 1) + 1
}

/// `delay` moved by up to ±10 %, so endpoints that fail together do not retry together.
fn jittered(delay: time::Duration) -> Result<time::Duration> {
    let r = u16::from_le_bytes(random::bytes::<2>()?);
    let factor = 0.9 + 0.2 * f64::from(r) / f64::from(u16::MAX);
    Ok(delay * factor)
}

/// The body `grants` may see of `event`: `{type, timestamp, workspace_id, data}`, with `data`
/// narrowed to what each of `grants` may read; `None` if any of them may not receive the event
/// at all (grants change after an event is written: they are checked again at every attempt).
pub(crate) fn body_for(
    keys: &OwnerKeys,
    grants: &[&Grants],
    event: &OutboxEvent,
) -> Result<Option<Value>> {
    let kind = catalog::find(&event.event_type).ok_or_else(|| {
        Error::Internal(format!("{} is not in the event catalog", event.event_type).into())
    })?;
    let collection = event.collection.as_deref();
    if !grants
        .iter()
        .all(|g| kind.family.may_receive(g, collection, event.draft))
    {
        return Ok(None);
    }
    let plaintext = keys
        .open(payload_site(&event.id), &event.payload)
        .map_err(Error::internal)?;
    let mut data: Value = serde_json::from_slice(&plaintext).map_err(Error::internal)?;
    for g in grants {
        kind.family.filter(g, collection, &mut data);
    }
    Ok(Some(json!({
        "type": event.event_type,
        "timestamp": crate::audit::format_ts(event.created_at),
        "workspace_id": event.workspace_id,
        "data": data,
    })))
}

impl Services {
    /// Claims up to `limit` due deliveries for `lease` (WHK-4): another dispatcher takes them
    /// only once the lease has run out, so a node dying mid-delivery loses nothing.
    pub async fn webhook_claim(&self, limit: u32, lease: Duration) -> Result<Vec<ClaimedDelivery>> {
        let now = self.now();
        let claim = random::token()?;
        let scope = SystemScope::new("webhook dispatch");
        let mut tx = self.store.system(&scope, Access::Write).await?;
        let claimed = tx
            .webhook_deliveries_claim(now, now + lease, &claim, limit)
            .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// The request for a claimed delivery: its body as the endpoint may see it, signed at `at`
    /// with the current secret and, during a rotation's overlap, the previous one. `None` when
    /// the endpoint may no longer receive the event (its grants changed since): nothing is sent.
    pub async fn webhook_prepare(
        &self,
        c: &ClaimedDelivery,
        at: OffsetDateTime,
    ) -> Result<Option<Prepared>> {
        let keys = self.owner_keys(c.endpoint.workspace_id.as_str()).await?;
        let Some(body) = body_for(&keys, &[&c.endpoint.grants], &c.event)? else {
            return Ok(None);
        };
        let body = serde_json::to_vec(&body).map_err(Error::internal)?;
        let current = open_secret(&keys, &c.endpoint.id, "secret", &c.endpoint.secret)?;
        let previous = match (
            &c.endpoint.previous_secret,
            c.endpoint.previous_secret_expires_at,
        ) {
            (Some(sealed), Some(until)) if until > at => Some(open_secret(
                &keys,
                &c.endpoint.id,
                "previous_secret",
                sealed,
            )?),
            _ => None,
        };
        let mut secrets = vec![&current];
        secrets.extend(previous.as_ref());
        let timestamp = at.unix_timestamp();
        let Signatures { standard, palisade } =
            sign(&secrets, c.event.id.as_str(), timestamp, &body);
        Ok(Some(Prepared {
            url: c.endpoint.url.clone(),
            headers: vec![
                ("webhook-id", c.event.id.to_string()),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", standard),
                ("x-palisade-signature", palisade),
                ("x-palisade-event", c.event.event_type.clone()),
                ("x-palisade-delivery", c.delivery.id.to_string()),
            ],
            body,
        }))
    }

    /// What an attempt made at `at` means for its delivery: done on success; else the next
    /// attempt after the schedule's next wait (with jitter), or `failed` past its end.
    pub fn webhook_outcome(
        &self,
        c: &ClaimedDelivery,
        at: OffsetDateTime,
        result: AttemptResult,
    ) -> Result<DeliveryOutcome> {
        let schedule = &self.settings.webhooks.retry_schedule;
        let step = c.delivery.schedule_step;
        let trigger = if step >= redelivery_step(schedule) {
            "redeliver"
        } else {
            "schedule"
        };
        let wait = usize::try_from(step).ok().and_then(|s| schedule.get(s));
        let (status, schedule_step, next_attempt_at, failing_since) = match (&result.error, wait) {
            (None, _) => (DeliveryStatus::Succeeded, step, None, None),
            // The wait runs from the attempt's end, so a timeout does not eat it. The failure
            // is at `at`; the store keeps the earliest start of the endpoint's current run.
            (Some(_), Some(wait)) if !result.permanent => (
                DeliveryStatus::Pending,
                step + 1,
                Some(at + result.latency + jittered(*wait)?),
                Some(at),
            ),
            (Some(_), _) => (DeliveryStatus::Failed, step, None, Some(at)),
        };
        Ok(DeliveryOutcome {
            attempt: Attempt {
                delivery_id: c.delivery.id.clone(),
                number: c.delivery.attempts + 1,
                attempted_at: at,
                status_code: result.status.map(i64::from),
                latency_ms: i64::try_from(result.latency.as_millis()).unwrap_or(i64::MAX),
                response_body: result.body,
                error: result.error,
                trigger: trigger.to_owned(),
            },
            workspace_id: c.delivery.workspace_id.clone(),
            claim: c.claim.clone(),
            status,
            schedule_step,
            next_attempt_at,
            webhook_id: c.endpoint.id.clone(),
            failing_since,
        })
    }

    /// Records attempts in one transaction; returns how many still held their claim.
    pub async fn webhook_record(&self, outcomes: &[DeliveryOutcome]) -> Result<u64> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let scope = SystemScope::new("webhook dispatch");
        let mut tx = self.store.system(&scope, Access::Write).await?;
        let recorded = tx.webhook_outcomes_record(outcomes, self.now()).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// When the next delivery is due, if any.
    pub async fn webhook_next_due(&self) -> Result<Option<OffsetDateTime>> {
        let scope = SystemScope::new("webhook dispatch");
        let mut tx = self.store.system(&scope, Access::Read).await?;
        Ok(tx.webhook_next_due().await?)
    }

    /// Disables every endpoint failing without a success for `disable_after` (5 days), with an
    /// entry in its workspace's log and an email to the workspace's owners and admins. Returns
    /// how many were disabled.
    pub async fn disable_failing_webhooks(&self) -> Result<u32> {
        let now = self.now();
        let cutoff = now - self.settings.webhooks.disable_after;
        let scope = SystemScope::new("webhook failure check");
        let failing = {
            let mut tx = self.store.system(&scope, Access::Read).await?;
            tx.webhooks_failing_since(cutoff).await?
        };
        let mut disabled = 0;
        for (workspace, id) in failing {
            let mut tx = self
                .store
                .workspace_system(&scope, &workspace, Access::Write)
                .await?;
            // Locked, then checked again: another node's sweep may have disabled it first.
            let Some(mut endpoint) = tx.webhook_lock(&id).await? else {
                continue;
            };
            let Some(since) = endpoint.failing_since.filter(|s| *s <= cutoff) else {
                continue;
            };
            if !endpoint.enabled {
                continue;
            }
            disable_endpoint(&mut *tx, &mut endpoint, "failing", now).await?;
            let mut event = AuditEvent::new(
                AuditLog::Workspace(workspace.clone()),
                "webhook.disable",
                Actor::system(),
                webhook_target(&id),
            )
            .reason("failing");
            event.diff_field("/enabled", json!(true), json!(false));
            event.extra.insert(
                "failing_since".into(),
                json!(crate::audit::format_ts(since)),
            );
            tx.audit_append(&event.seal(&RequestMeta::default(), now)?)
                .await?;
            let admins = admin_emails(&mut *tx).await?;
            tx.commit().await?;
            for to in admins {
                self.outbox.send(crate::mail::templates::webhook_disabled(
                    &self.settings.brand,
                    &to,
                    &endpoint.url,
                    now - since,
                ));
            }
            tracing::warn!(webhook = %id, workspace = %workspace, "webhook endpoint disabled after failing");
            disabled += 1;
        }
        Ok(disabled)
    }

    /// Deletes settled events (and their history) older than the retention.
    pub async fn prune_webhook_events(&self) -> Result<u64> {
        let before = self.now() - self.settings.webhooks.retention;
        let scope = SystemScope::new("webhook retention");
        let mut tx = self.store.system(&scope, Access::Write).await?;
        let pruned = tx.webhook_events_prune(before).await?;
        tx.commit().await?;
        Ok(pruned)
    }
}

/// Active owners' and admins' emails.
async fn admin_emails(tx: &mut dyn crate::store::MembersTx) -> Result<Vec<String>> {
    use crate::acl::Role;
    let mut emails = Vec::new();
    let mut after = None;
    loop {
        let page = tx.members_list(after.as_ref(), 200).await?;
        let done = page.len() < 200;
        after = page.last().map(|m| m.member.id.clone());
        emails.extend(
            page.into_iter()
                .filter(|m| m.member.active && matches!(m.member.role, Role::Owner | Role::Admin))
                .map(|m| m.email),
        );
        if done {
            return Ok(emails);
        }
    }
}
