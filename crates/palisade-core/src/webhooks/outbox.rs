//! The transactional outbox (WHK-2): a change's event and its deliveries are written in the
//! change's own transaction, so an event exists if and only if its change committed. Nothing is
//! written when no enabled endpoint may receive the event.

use serde_json::Value;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::catalog;
use super::model::{Delivery, DeliveryStatus, OutboxEvent};
use crate::app::Services;
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, WebhookEventId, WorkspaceId};
use crate::keys::{OwnerKeys, SecretSite};
use crate::store::WebhooksTx;

/// What a change tells the endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// A catalog name.
    pub event_type: &'static str,
    /// The collection of a record or collection event.
    pub collection: Option<String>,
    /// A draft record: only endpoints that may read drafts receive it.
    pub draft: bool,
    pub data: Value,
}

impl Change {
    pub fn new(event_type: &'static str, data: Value) -> Self {
        Self {
            event_type,
            collection: None,
            draft: false,
            data,
        }
    }

    pub fn about(mut self, collection: &str) -> Self {
        self.collection = Some(collection.to_owned());
        self
    }

    pub fn draft(mut self, draft: bool) -> Self {
        self.draft = draft;
        self
    }
}

/// Where an event's payload is sealed: bound to its workspace (the key's owner) and its id.
pub(crate) fn payload_site(id: &WebhookEventId) -> SecretSite<'_> {
    SecretSite {
        table: "webhook_events",
        row: id.as_str(),
        field: "payload",
    }
}

impl Services {
    /// Writes `change` to the outbox of `workspace` in `tx` (the change's transaction), with
    /// one delivery, due at once, per enabled endpoint subscribed to its type that may receive
    /// it; then wakes this node's dispatcher.
    pub(crate) async fn emit(
        &self,
        tx: &mut dyn WebhooksTx,
        keys: &OwnerKeys,
        workspace: &WorkspaceId,
        change: Change,
        now: OffsetDateTime,
    ) -> Result<()> {
        if write_event(tx, keys, workspace, change, now).await? {
            self.webhook_wake.notify_one();
        }
        Ok(())
    }
}

/// The outbox write of [`Services::emit`]: `true` if an event was written.
async fn write_event(
    tx: &mut dyn WebhooksTx,
    keys: &OwnerKeys,
    workspace: &WorkspaceId,
    change: Change,
    now: OffsetDateTime,
) -> Result<bool> {
    let kind = catalog::find(change.event_type).ok_or_else(|| {
        Error::Internal(format!("{} is not in the event catalog", change.event_type).into())
    })?;
    let endpoints = tx.webhooks_enabled().await?;
    let targets: Vec<_> = endpoints
        .iter()
        .filter(|e| e.events.iter().any(|t| t == kind.name))
        .filter(|e| {
            kind.family
                .may_receive(&e.grants, change.collection.as_deref(), change.draft)
        })
        .collect();
    if targets.is_empty() {
        return Ok(false);
    }
    let id = WebhookEventId::generate();
    let plaintext = Zeroizing::new(serde_json::to_vec(&change.data).map_err(Error::internal)?);
    let event = OutboxEvent {
        payload: keys.seal(payload_site(&id), &plaintext)?,
        id,
        workspace_id: workspace.clone(),
        event_type: kind.name.to_owned(),
        collection: change.collection,
        draft: change.draft,
        created_at: now,
    };
    let deliveries: Vec<Delivery> = targets
        .into_iter()
        .map(|endpoint| Delivery {
            id: DeliveryId::generate(),
            workspace_id: workspace.clone(),
            webhook_id: endpoint.id.clone(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            schedule_step: 0,
            next_attempt_at: Some(now),
            created_at: now,
            updated_at: now,
        })
        .collect();
    tx.webhook_event_insert(&event, &deliveries).await?;
    Ok(true)
}
