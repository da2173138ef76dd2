//! Webhooks as stored (WHK-1 … WHK-4): endpoints, outbox events, deliveries and their attempts.

use time::OffsetDateTime;

use crate::acl::Grants;
use crate::ids::{DeliveryId, WebhookEventId, WebhookId, WorkspaceId};

/// A workspace's webhook endpoint. Its signing secrets are stored only sealed under the
/// workspace's data key (`SecretSite { table: "webhooks", row: id, field: "secret" |
/// "previous_secret" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: WebhookId,
    pub workspace_id: WorkspaceId,
    pub url: String,
    pub description: String,
    /// Event types it receives (catalog names); never empty.
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why it is disabled when Palisade disabled it (`failing`); `None` when an admin did.
    pub disabled_reason: Option<String>,
    /// What its payloads may show: its creator's read grants when it was created or last
    /// changed (like an API key's).
    pub grants: Grants,
    /// The actor id (user or API key) that created it.
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The sealed signing secret (`whsec_…` once opened).
    pub secret: Vec<u8>,
    /// The secret before the last rotation, sealed; it signs alongside until
    /// `previous_secret_expires_at`.
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    /// Start of the current run of failed attempts; `None` after a success.
    pub failing_since: Option<OffsetDateTime>,
}

/// An outbox event: written in the transaction of the change it describes (WHK-2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub id: WebhookEventId,
    pub workspace_id: WorkspaceId,
    /// Catalog name, e.g. `record.created`.
    pub event_type: String,
    /// The collection a record or collection event is about: its field permissions filter the
    /// payload per endpoint.
    pub collection: Option<String>,
    /// A draft record's event: only endpoints that may read drafts receive it (checked when it
    /// is written and again at every attempt).
    pub draft: bool,
    /// The sealed JSON of the event's `data` (`SecretSite { table: "webhook_events", row: id,
    /// field: "payload" }`): it may hold encrypted fields' values.
    pub payload: Vec<u8>,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Succeeded,
    /// Every scheduled attempt failed (the dead letter); `redeliver` tries again.
    Failed,
    /// Its endpoint is disabled: attempted again, due at once, when it is enabled.
    Paused,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Paused => "paused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed, Self::Paused]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub workspace_id: WorkspaceId,
    pub webhook_id: WebhookId,
    pub event_id: WebhookEventId,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    /// Retries of the schedule used so far; a redelivery sets it past the schedule's end, so a
    /// failed redelivery is not retried by itself.
    pub schedule_step: i64,
    /// When it is due (pending only).
    pub next_attempt_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivery_id: DeliveryId,
    /// 1, 2, … within the delivery.
    pub number: i64,
    pub attempted_at: OffsetDateTime,
    /// The response's status; `None` when none came (refused, timeout, connection error).
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// The first 4 KB of the response body (lossy UTF-8).
    pub response_body: String,
    /// What went wrong, in words (never a secret); `None` on a 2xx.
    pub error: Option<String>,
    /// `schedule` or `redeliver`.
    pub trigger: String,
}

/// A due delivery claimed by a dispatcher, with all it needs to be sent.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub event: OutboxEvent,
    pub endpoint: Endpoint,
    /// The claim's token: only its holder may record the outcome.
    pub claim: String,
}

/// What one attempt changed: the attempt, the delivery after it, and the endpoint's failure
/// run.
#[derive(Debug, Clone)]
pub struct DeliveryOutcome {
    pub attempt: Attempt,
    pub workspace_id: WorkspaceId,
    pub claim: String,
    pub status: DeliveryStatus,
    pub schedule_step: i64,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub webhook_id: WebhookId,
    /// The endpoint's `failing_since` after this attempt (`None` after a success).
    pub failing_since: Option<OffsetDateTime>,
}
