//! `/api/v1/me/sessions` and `/api/v1/me/password`: the signed-in user's own sessions (IDN-5).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use palisade_core::Error;
use palisade_core::accounts::model::Session;
use palisade_core::error::Resource;
use palisade_core::ids::SessionId;
use palisade_core::principal::Principal;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{Auth, JsonBody, ListParams, Meta};
use crate::problem::{ApiResult, Problem};
use crate::routes::{ListOut, rfc3339};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    #[schema(example = "ses_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub created_at: String,
    /// Sign-in or the last refresh (an access token's use is not tracked; a client refreshes
    /// at least every 15 minutes while active).
    pub last_used_at: String,
    pub expires_at: String,
    pub user_agent: Option<String>,
    /// The client's network, never its address: an IPv4 /24 or an IPv6 /48.
    #[schema(example = "203.0.113.0/24")]
    pub ip: Option<String>,
    /// The session of the access token making this request.
    pub current: bool,
}

impl SessionOut {
    fn new(s: Session, principal: &Principal) -> Self {
        Self {
            current: principal.session_id().is_ok_and(|id| *id == s.id),
            id: s.id.to_string(),
            created_at: rfc3339(s.created_at),
            last_used_at: rfc3339(s.last_used_at),
            expires_at: rfc3339(s.expires_at),
            user_agent: s.user_agent,
            ip: s.ip_prefix,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedOut {
    /// How many sessions were revoked.
    pub revoked: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeIn {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    /// 10 to 256 characters.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 256)]
    pub new_password: SecretString,
}

/// Your live sessions, newest first.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "auth", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "1 to 200, default 50"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page", body = ListOut<SessionOut>),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_sessions(
    State(state): State<AppState>,
    Auth(principal): Auth,
    page: ListParams<SessionId>,
) -> ApiResult<Json<ListOut<SessionOut>>> {
    let page = state
        .services
        .list_sessions(&principal, page.after.as_ref(), page.limit)
        .await?;
    Ok(Json(ListOut {
        data: page
            .sessions
            .into_iter()
            .map(|s| SessionOut::new(s, &principal))
            .collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}

/// Revoke every session but this one. Their refresh tokens fail at once, and so do their
/// access tokens.
#[utoipa::path(delete, path = "/api/v1/me/sessions", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked", body = RevokedOut),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Meta(meta): Meta,
) -> ApiResult<Json<RevokedOut>> {
    let revoked = state
        .services
        .revoke_other_sessions(&principal, &meta)
        .await?;
    Ok(Json(RevokedOut { revoked }))
}

/// Revoke one of your sessions (this one too: that signs you out).
#[utoipa::path(delete, path = "/api/v1/me/sessions/{session}", tag = "auth", security(("bearer" = [])),
    params(("session" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`session_not_found`: not yours, already revoked or expired", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn revoke_session(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Meta(meta): Meta,
    Path(session): Path<String>,
) -> ApiResult<StatusCode> {
    let id = SessionId::parse(&session).ok_or(Error::NotFound(Resource::Session))?;
    state
        .services
        .revoke_session(&principal, &id, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change your password. Every other session is revoked and you get an email.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", security(("bearer" = [])), request_body = PasswordChangeIn,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `/current_password` is wrong or `/new_password` breaks the rules", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<PasswordChangeIn>,
) -> ApiResult<StatusCode> {
    state
        .services
        .change_password(
            &principal,
            &input.current_password,
            &input.new_password,
            &meta,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
