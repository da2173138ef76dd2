//! Webhook endpoints, the event catalog and delivery history (WHK-1 … WHK-4).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use palisade_core::ids::WebhookId;
use palisade_core::webhooks::model::{Attempt, Delivery, Endpoint};
use palisade_core::webhooks::service::{
    DeliveryView, NewWebhook, WebhookPatch, WebhookWithSecret, event_catalog,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{DeliveryListParams, JsonBody, ListParams, Meta, Tenant};
use crate::problem::{ApiResult, Problem};
use crate::routes::{ListOut, rfc3339};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    /// Where events are POSTed: an absolute `http` or `https` URL whose host resolves to
    /// public addresses only (or to a range the operator allow-listed).
    #[schema(example = "https://example.com/hooks/palisade")]
    pub url: String,
    /// Event types from `GET /api/v1/webhook-events`.
    #[schema(example = json!(["record.created", "record.updated"]))]
    pub events: Vec<String>,
    /// For people, up to 500 characters.
    pub description: Option<String>,
    /// `true` unless said otherwise.
    pub enabled: Option<bool>,
}

/// Merge-patch: members left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatchIn {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    /// Disabling pauses its pending deliveries; enabling sends them at once, and gives an
    /// endpoint Palisade disabled a fresh failure window.
    pub enabled: Option<bool>,
}

/// An endpoint as lists show it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookOut {
    #[schema(example = "wh_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// Why Palisade disabled it: `failing` (five days of failed deliveries) or
    /// `workspace_deleted`; `null` when it is enabled or an admin disabled it.
    pub disabled_reason: Option<String>,
    /// When its current run of failed attempts began; `null` after a success.
    pub failing_since: Option<String>,
    /// Until when the secret before the last rotation still signs alongside.
    pub previous_secret_expires_at: Option<String>,
    /// The actor id (user or API key) that created it.
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Endpoint> for WebhookOut {
    fn from(e: Endpoint) -> Self {
        Self {
            id: e.id.to_string(),
            url: e.url,
            events: e.events,
            description: e.description,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since.map(rfc3339),
            previous_secret_expires_at: e.previous_secret_expires_at.map(rfc3339),
            created_by: e.created_by,
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

/// An endpoint with its signing secret: only creation and rotation show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecretOut {
    #[serde(flatten)]
    pub webhook: WebhookOut,
    /// `whsec_` + base64 of 32 random bytes, as Standard Webhooks libraries (`standardwebhooks`,
    /// `svix`) take it. Shown this once.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw…")]
    pub secret: String,
}

impl From<WebhookWithSecret> for WebhookSecretOut {
    fn from(w: WebhookWithSecret) -> Self {
        Self {
            secret: w.secret.expose_secret().to_owned(),
            webhook: w.endpoint.into(),
        }
    }
}

/// One event type of the catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeOut {
    #[schema(example = "record.created")]
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of the delivery body's `data`. Every body is
    /// `{"type", "timestamp", "workspace_id", "data"}`.
    #[schema(value_type = Object)]
    pub schema: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventCatalogOut {
    pub data: Vec<EventTypeOut>,
}

/// A delivery of one event to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    #[schema(example = "dlv_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    /// The `webhook-id` header: the same on every attempt, for de-duplication.
    #[schema(example = "msg_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `succeeded`, `failed` (every scheduled attempt failed) or `paused` (the
    /// endpoint is disabled; it goes out when the endpoint is enabled).
    pub status: &'static str,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type,
            status: d.status.as_str(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

/// One HTTP attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub number: i64,
    pub attempted_at: String,
    /// The response's status; `null` when none came.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// The first 4 KB of the response body.
    pub response_body: String,
    /// What went wrong (`HTTP 503`, `timed out after 15s`, a refused address …); `null` on
    /// success.
    pub error: Option<String>,
    /// `schedule` or `redeliver`.
    pub trigger: String,
}

impl From<Attempt> for AttemptOut {
    fn from(a: Attempt) -> Self {
        Self {
            number: a.number,
            attempted_at: rfc3339(a.attempted_at),
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response_body: a.response_body,
            error: a.error,
            trigger: a.trigger,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetailOut {
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    /// The body as this endpoint receives it, narrowed to what you may read too (fields left
    /// out; `null` when you may not receive this event at all).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Every attempt, first to last.
    pub attempt_history: Vec<AttemptOut>,
}

impl From<DeliveryView> for DeliveryDetailOut {
    fn from(v: DeliveryView) -> Self {
        Self {
            delivery: v.delivery.into(),
            payload: v.payload,
            attempt_history: v.attempts.into_iter().map(AttemptOut::from).collect(),
        }
    }
}

/// Every event type an endpoint may subscribe to, with the JSON Schema of its `data`.
#[utoipa::path(get, path = "/api/v1/webhook-events", tag = "webhooks",
    responses((status = 200, description = "The catalog", body = EventCatalogOut)))]
pub async fn list_event_types() -> Json<EventCatalogOut> {
    Json(EventCatalogOut {
        data: event_catalog()
            .iter()
            .map(|t| EventTypeOut {
                name: t.name,
                description: t.description,
                schema: t.family.schema(),
            })
            .collect(),
    })
}

/// Create a webhook endpoint (needs `webhooks.manage`); its signing secret is in this response
/// only. Its payloads show what the caller may read.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body = WebhookIn,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = WebhookSecretOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed` (a refused URL names `/url`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<WebhookIn>,
) -> ApiResult<(StatusCode, Json<WebhookSecretOut>)> {
    let input = NewWebhook {
        url: input.url,
        events: input.events,
        description: input.description,
        enabled: input.enabled,
    };
    let created = state.services.create_webhook(&scope, input, &meta).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// The workspace's webhook endpoints (needs `webhooks.manage`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<WebhookOut>),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    page: ListParams<WebhookId>,
) -> ApiResult<Json<ListOut<WebhookOut>>> {
    let page = state
        .services
        .list_webhooks(&scope, page.after, page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(WebhookOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One webhook endpoint (needs `webhooks.manage`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/webhooks/{webhook}", tag = "webhooks", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("webhook" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_webhook(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<WebhookOut>> {
    let (_, webhook) = path;
    Ok(Json(
        state.services.get_webhook(&scope, &webhook).await?.into(),
    ))
}

/// Change a webhook endpoint's URL, events, description or enabled state (needs
/// `webhooks.manage`); its payloads then show what the caller may read.
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace}/webhooks/{webhook}", tag = "webhooks", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("webhook" = String, Path, description = "Webhook id")),
    request_body = WebhookPatchIn,
    responses(
        (status = 200, description = "Changed", body = WebhookOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update_webhook(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
    JsonBody(input): JsonBody<WebhookPatchIn>,
) -> ApiResult<Json<WebhookOut>> {
    let (_, webhook) = path;
    let patch = WebhookPatch {
        url: input.url,
        events: input.events,
        description: input.description,
        enabled: input.enabled,
    };
    let updated = state
        .services
        .update_webhook(&scope, &webhook, patch, &meta)
        .await?;
    Ok(Json(updated.into()))
}

/// Delete a webhook endpoint with its delivery history (needs `webhooks.manage`).
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/webhooks/{webhook}", tag = "webhooks", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("webhook" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, webhook) = path;
    state
        .services
        .delete_webhook(&scope, &webhook, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give an endpoint a new signing secret, shown once. The previous secret keeps signing
/// alongside for 24 hours (both signatures are sent), so receivers switch without a gap.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/webhooks/{webhook}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("webhook" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "Rotated; `secret` is shown this once", body = WebhookSecretOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<WebhookSecretOut>> {
    let (_, webhook) = path;
    let rotated = state
        .services
        .rotate_webhook_secret(&scope, &webhook, &meta)
        .await?;
    Ok(Json(rotated.into()))
}

/// An endpoint's deliveries, newest first (needs `webhooks.manage`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/webhooks/{webhook}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("webhook" = String, Path, description = "Webhook id"),
        ("status" = Option<String>, Query, description = "`pending`, `succeeded`, `failed` or `paused`"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<DeliveryOut>),
        (status = 422, description = "`validation_failed` naming the parameter", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `webhook_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
    params: DeliveryListParams,
) -> ApiResult<Json<ListOut<DeliveryOut>>> {
    let (_, webhook) = path;
    let page = state
        .services
        .list_deliveries(
            &scope,
            &webhook,
            params.status,
            params.list.after,
            params.list.limit,
        )
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(DeliveryOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One delivery with every attempt (time, status code, latency, the first 4 KB of the
/// response, error) and the payload sent (needs `webhooks.manage`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/webhooks/{webhook}/deliveries/{delivery}", tag = "webhooks", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("webhook" = String, Path, description = "Webhook id"),
        ("delivery" = String, Path, description = "Delivery id"),
    ),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDetailOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `webhook_not_found`, `delivery_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_delivery(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String, String)>,
) -> ApiResult<Json<DeliveryDetailOut>> {
    let (_, webhook, delivery) = path;
    let view = state
        .services
        .get_delivery(&scope, &webhook, &delivery)
        .await?;
    Ok(Json(view.into()))
}

/// Send a succeeded or failed delivery once more, now (needs `webhooks.manage`).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/webhooks/{webhook}/deliveries/{delivery}/redeliver", tag = "webhooks", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("webhook" = String, Path, description = "Webhook id"),
        ("delivery" = String, Path, description = "Delivery id"),
    ),
    responses(
        (status = 202, description = "Due now", body = DeliveryOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `webhook_not_found`, `delivery_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`delivery_pending`, `webhook_disabled`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn redeliver(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<DeliveryOut>)> {
    let (_, webhook, delivery) = path;
    let delivery = state
        .services
        .redeliver(&scope, &webhook, &delivery, &meta)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}
