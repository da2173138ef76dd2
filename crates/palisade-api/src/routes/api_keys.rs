//! Workspace API keys (KEY-1, KEY-2).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use palisade_core::api_keys::model::{ApiKey, Creator, IssuedApiKey, NewApiKey};
use palisade_core::ids::ApiKeyId;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::extract::{JsonBody, ListParams, Meta, Tenant};
use crate::problem::{ApiResult, Problem};
use crate::routes::{ListOut, rfc3339};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    /// 1 to 100 characters, for people: where the key is used.
    #[schema(example = "CI deploys")]
    pub name: String,
    /// `read` (workspace, members, published records, audit log), `read_draft` (draft
    /// records), `write` (records, application audit events, quotas), `management` (settings,
    /// members, roles, keys, webhooks, collections). Never owner powers.
    #[schema(example = json!(["read", "write"]))]
    pub scopes: Vec<String>,
    /// RFC 3339; the key stops working then (`api_key_expired`).
    #[schema(example = "2027-06-30T00:00:00Z")]
    pub expires_at: Option<String>,
}

/// Who created the key: `{type: user | api_key, id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatorOut {
    #[serde(rename = "type")]
    #[schema(example = "user")]
    pub kind: &'static str,
    #[schema(example = "usr_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
}

/// A key as lists show it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    #[schema(example = "key_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub name: String,
    /// `pal_` and the first 6 characters of the secret, to recognise it.
    #[schema(example = "pal_3kTq9Z")]
    pub prefix: String,
    #[schema(example = json!(["read", "write"]))]
    pub scopes: Vec<&'static str>,
    /// What the key may do: its scopes intersected with its creator's permissions at creation.
    #[schema(example = json!(["workspace.read", "records.read", "records.write"]))]
    pub permissions: Vec<&'static str>,
    pub created_by: CreatorOut,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// Updated at most once a minute.
    pub last_used_at: Option<String>,
    pub rotated_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<ApiKey> for ApiKeyOut {
    fn from(k: ApiKey) -> Self {
        let created_by = match k.created_by {
            Creator::User(id) => CreatorOut {
                kind: "user",
                id: id.to_string(),
            },
            Creator::ApiKey(id) => CreatorOut {
                kind: "api_key",
                id: id.to_string(),
            },
        };
        Self {
            id: k.id.to_string(),
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes.iter().map(|s| s.as_str()).collect(),
            permissions: k.grants.permissions().keys(),
            created_by,
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            rotated_at: k.rotated_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

/// A key with its secret: the only response that ever shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeySecretOut {
    #[serde(flatten)]
    pub api_key: ApiKeyOut,
    /// The key in clear, shown once: `pal_` + 43 base62 characters + a 6-character checksum.
    /// Send it as `Authorization: Bearer pal_…`.
    #[schema(example = "pal_3kTq9Z…")]
    pub key: String,
}

impl From<IssuedApiKey> for ApiKeySecretOut {
    fn from(issued: IssuedApiKey) -> Self {
        Self {
            key: issued.secret.expose().to_owned(),
            api_key: issued.key.into(),
        }
    }
}

/// Create an API key (needs `api_keys.manage`); the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/api-keys", tag = "api-keys", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug")),
    request_body = ApiKeyIn,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = ApiKeySecretOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_api_key(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<ApiKeyIn>,
) -> ApiResult<(StatusCode, Json<ApiKeySecretOut>)> {
    let expires_at = match input.expires_at {
        None => None,
        Some(text) => Some(time::OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| {
            palisade_core::Error::field(
                "/expires_at",
                "must be an RFC 3339 date-time such as 2027-06-30T00:00:00Z",
            )
        })?),
    };
    let input = NewApiKey {
        name: input.name,
        scopes: input.scopes,
        expires_at,
    };
    let issued = state.services.create_api_key(&scope, input, &meta).await?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

/// The workspace's API keys that are not revoked (needs `api_keys.manage`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/api-keys", tag = "api-keys", security(("bearer" = [])),
    params(
        ("workspace" = String, Path, description = "Workspace id or slug"),
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<ApiKeyOut>),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    page: ListParams<ApiKeyId>,
) -> ApiResult<Json<ListOut<ApiKeyOut>>> {
    let page = state
        .services
        .list_api_keys(&scope, page.after, page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page.data.into_iter().map(ApiKeyOut::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One API key, revoked or not (needs `api_keys.manage`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/api-keys/{key}", tag = "api-keys", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("key" = String, Path, description = "API key id")),
    responses(
        (status = 200, description = "The key", body = ApiKeyOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `api_key_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_api_key(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<ApiKeyOut>> {
    let (_, key) = path;
    Ok(Json(state.services.get_api_key(&scope, &key).await?.into()))
}

/// Give a key a new secret, shown once; the old secret stops working on every node before
/// this answers.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/api-keys/{key}/rotate", tag = "api-keys", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("key" = String, Path, description = "API key id")),
    responses(
        (status = 200, description = "Rotated; `key` is shown this once", body = ApiKeySecretOut),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `api_key_not_found` (also for a revoked key)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn rotate_api_key(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<Json<ApiKeySecretOut>> {
    let (_, key) = path;
    let issued = state.services.rotate_api_key(&scope, &key, &meta).await?;
    Ok(Json(issued.into()))
}

/// Revoke a key: from this answer on, every request with it fails on every node. Revoking a
/// revoked key is a no-op.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/api-keys/{key}", tag = "api-keys", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "Workspace id or slug"), ("key" = String, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "`permission_denied`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workspace_not_found`, `api_key_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Tenant(scope): Tenant,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, key) = path;
    state.services.revoke_api_key(&scope, &key, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
