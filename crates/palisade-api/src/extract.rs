//! The project's own extractors, so every rejection is a problem+json naming what was wrong:
//! JSON bodies (with the JSON Pointer of the bad field), list parameters, the authenticated
//! principal, the tenant scope, and the request facts for the audit log.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{
    ConnectInfo, FromRef, FromRequest, FromRequestParts, RawPathParams, RawQuery, Request,
};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use palisade_core::api_keys::model::ApiKeySecret;
use palisade_core::collections::query::{ListRequest, RawFilter};
use palisade_core::ids::{
    ApiKeyId, CollectionId, CustomRoleId, DeliveryId, InvitationId, MemberId, SessionId, TeamId,
    WebhookId, WorkspaceId,
};
use palisade_core::limits::LimitReport;
use palisade_core::principal::{Principal, RequestMeta};
use palisade_core::tenancy::TenantScope;
use palisade_core::webhooks::model::DeliveryStatus;
use palisade_core::workspaces::service::{LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};
use serde::de::DeserializeOwned;

use crate::middleware::RequestId;
use crate::problem::{ApiError, ProblemField};
use crate::state::AppState;

/// A JSON request body. Syntax errors are 400 `malformed_json`; shape and type errors are 422
/// `validation_failed` with the pointer of the field.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn pointer_of(path: &serde_path_to_error::Path, message: &str) -> String {
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            serde_path_to_error::Segment::Map { key } => {
                pointer.push_str(&format!("/{}", escape(key)))
            }
            serde_path_to_error::Segment::Enum { variant } => {
                pointer.push_str(&format!("/{}", escape(variant)))
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    // serde reports missing and unknown fields at the parent; name the field itself.
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some(field) = rest.split('`').next()
        {
            let suffix = format!("/{}", escape(field));
            if !pointer.ends_with(&suffix) {
                pointer.push_str(&suffix);
            }
        }
    }
    pointer
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Parses JSON bytes into `T`, mapping errors as described on [`JsonBody`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    if value.is_ok()
        && let Err(trailing) = de.end()
    {
        return Err(ApiError::MalformedJson(format!(
            "The body is not valid JSON ({trailing})."
        )));
    }
    value.map_err(|err| {
        let inner = err.inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                // serde's message ends with " at line L column C"; the pointer says where.
                let message = inner.to_string();
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_owned();
                let pointer = pointer_of(err.path(), &message);
                ApiError::InvalidParameters(vec![ProblemField {
                    pointer: Some(pointer),
                    parameter: None,
                    message,
                }])
            }
            _ => ApiError::MalformedJson(format!("The body is not valid JSON ({inner}).")),
        }
    })
}

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::MalformedJson("The body could not be read.".into())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// An id that pages a list (`next_cursor`).
pub trait CursorId: Sized {
    fn parse_cursor(text: &str) -> Option<Self>;
}

impl CursorId for WorkspaceId {
    fn parse_cursor(text: &str) -> Option<Self> {
        WorkspaceId::parse(text)
    }
}

macro_rules! cursor_ids {
    ($($id:ty),*) => {$(
        impl CursorId for $id {
            fn parse_cursor(text: &str) -> Option<Self> {
                <$id>::parse(text)
            }
        }
    )*};
}

cursor_ids!(
    SessionId,
    MemberId,
    InvitationId,
    TeamId,
    CustomRoleId,
    ApiKeyId,
    CollectionId,
    WebhookId,
    DeliveryId
);

/// `?limit=&cursor=&status=` of a webhook's delivery list.
#[derive(Debug)]
pub struct DeliveryListParams {
    pub list: ListParams<DeliveryId>,
    pub status: Option<DeliveryStatus>,
}

impl<S: Send + Sync> FromRequestParts<S> for DeliveryListParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = raw_query(parts, state).await?;
        let mut status = None;
        let list = list_params(&query, |key, value| {
            (key == "status").then(|| {
                status = Some(
                    DeliveryStatus::parse(value)
                        .ok_or("must be pending, succeeded, failed or paused")?,
                );
                Ok(())
            })
        })?;
        Ok(Self { list, status })
    }
}

/// `?limit=&cursor=` of list endpoints. Unknown parameters are refused by name.
#[derive(Debug)]
pub struct ListParams<C = WorkspaceId> {
    pub limit: u32,
    pub after: Option<C>,
}

impl<S: Send + Sync, C: CursorId + Send> FromRequestParts<S> for ListParams<C> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        list_params(&raw_query(parts, state).await?, |_, _| None)
    }
}

/// `limit` and `cursor` from `query`; any other parameter goes to `extra`, which answers
/// `None` for one it does not know (refused as unknown) or whether its value is good.
fn list_params<C: CursorId>(
    query: &str,
    mut extra: impl FnMut(&str, &str) -> Option<Result<(), &'static str>>,
) -> Result<ListParams<C>, ApiError> {
    let mut params = ListParams {
        limit: LIST_LIMIT_DEFAULT,
        after: None,
    };
    let mut errors = Vec::new();
    let mut fail = |name: &str, message: String| errors.push(parameter_problem(name, message));
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => match parse_limit(&value) {
                Ok(n) => params.limit = n,
                Err(message) => fail("limit", message),
            },
            "cursor" => match C::parse_cursor(&value) {
                Some(id) => params.after = Some(id),
                None => fail(
                    "cursor",
                    "must be a next_cursor value from a previous page".into(),
                ),
            },
            other => match extra(other, &value) {
                Some(Ok(())) => {}
                Some(Err(message)) => fail(other, message.into()),
                None => fail(other, "unknown parameter".into()),
            },
        }
    }
    if errors.is_empty() {
        Ok(params)
    } else {
        Err(ApiError::InvalidParameters(errors))
    }
}

/// The request's query string (empty when there is none).
async fn raw_query<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<String, ApiError> {
    let RawQuery(query) = RawQuery::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::RouteNotFound)?;
    Ok(query.unwrap_or_default())
}

/// A problem with the query parameter `name`.
fn parameter_problem(name: &str, message: String) -> ProblemField {
    ProblemField {
        pointer: None,
        parameter: Some(name.to_owned()),
        message,
    }
}

/// A list's `limit`: 1 to `LIST_LIMIT_MAX`.
fn parse_limit(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if (1..=LIST_LIMIT_MAX).contains(&n) => Ok(n),
        _ => Err(format!("must be an integer from 1 to {LIST_LIMIT_MAX}")),
    }
}

/// The query of a record list: `limit`, `cursor`, `sort`, `fields` and any number of
/// `filter[field]` / `filter[field][op]`, as received (checked against the schema in core).
/// Unknown or repeated parameters are refused by name.
#[derive(Debug)]
pub struct RecordListParams(pub ListRequest);

impl<S: Send + Sync> FromRequestParts<S> for RecordListParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = raw_query(parts, state).await?;
        let mut request = ListRequest {
            limit: LIST_LIMIT_DEFAULT,
            ..ListRequest::default()
        };
        let mut errors = Vec::new();
        let mut fail = |name: &str, message: String| errors.push(parameter_problem(name, message));
        let mut seen = std::collections::HashSet::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if !seen.insert(key.clone()) {
                fail(&key, "is given more than once".into());
                continue;
            }
            let once = |slot: &mut Option<String>| *slot = Some(value.clone().into_owned());
            match key.as_ref() {
                "limit" => match parse_limit(&value) {
                    Ok(n) => request.limit = n,
                    Err(message) => fail("limit", message),
                },
                "cursor" => once(&mut request.cursor),
                "sort" => once(&mut request.sort),
                "fields" => once(&mut request.fields),
                other => match filter_key(other) {
                    Some((field, op)) => request.filters.push(RawFilter {
                        parameter: other.to_owned(),
                        field: field.to_owned(),
                        op: op.map(str::to_owned),
                        value: value.into_owned(),
                    }),
                    None if other.starts_with("filter") => fail(
                        other,
                        "must be written filter[field] or filter[field][op]".into(),
                    ),
                    None => fail(other, "unknown parameter".into()),
                },
            }
        }
        if errors.is_empty() {
            Ok(RecordListParams(request))
        } else {
            Err(ApiError::InvalidParameters(errors))
        }
    }
}

/// `filter[field]` → (field, None); `filter[field][op]` → (field, Some(op)).
fn filter_key(key: &str) -> Option<(&str, Option<&str>)> {
    let rest = key.strip_prefix("filter[")?;
    let (field, rest) = rest.split_once(']')?;
    if field.is_empty() || field.contains('[') {
        return None;
    }
    if rest.is_empty() {
        return Some((field, None));
    }
    let op = rest.strip_prefix('[')?.strip_suffix(']')?;
    if op.is_empty() || op.contains(['[', ']']) {
        return None;
    }
    Some((field, Some(op)))
}

/// `Authorization: Bearer <token>`.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Domain(palisade_core::Error::Unauthenticated))
}

/// The authenticated caller, from `Authorization: Bearer <access token>`, charged to its
/// instance `api` budget (routes outside a workspace; [`Tenant`] charges the workspace's).
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

impl<S> FromRequestParts<S> for Auth
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let principal = state.services.authenticate(bearer(parts)?).await?;
        state
            .services
            .limit_account_request(&principal, &request_meta(parts))
            .await?;
        Ok(Auth(principal))
    }
}

/// The caller's scope in the `{workspace}` of the path (id or slug), after the membership
/// check, charged to the workspace's `api` budgets. A non-member gets 404, as if the
/// workspace did not exist.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantScope);

impl<S> FromRequestParts<S> for Tenant
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let key = workspace_param(parts, state).await?;
        let state = AppState::from_ref(state);
        let bearer = bearer(parts)?;
        let meta = request_meta(parts);
        let scope = if ApiKeySecret::looks_like(bearer) {
            state.services.api_key_scope(bearer, &key, &meta).await?
        } else {
            let principal = state.services.authenticate(bearer).await?;
            state.services.tenant_scope(&principal, &key, &meta).await?
        };
        Ok(Tenant(scope))
    }
}

/// The raw `{workspace}` path parameter (id or slug), for routes that resolve it themselves.
#[derive(Debug, Clone)]
pub struct WorkspaceKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for WorkspaceKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        workspace_param(parts, state).await.map(WorkspaceKey)
    }
}

/// The `{workspace}` path parameter.
pub async fn workspace_param<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::RouteNotFound)?;
    params
        .iter()
        .find(|(name, _)| *name == "workspace")
        .map(|(_, value)| value.to_owned())
        .ok_or(ApiError::RouteNotFound)
}

/// Request id, client IP and user agent, for audit entries (committed there, never in clear).
#[derive(Debug, Clone)]
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Meta(request_meta(parts)))
    }
}

fn request_meta(parts: &Parts) -> RequestMeta {
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(512).collect());
    RequestMeta {
        request_id,
        ip,
        user_agent,
        limits: parts
            .extensions
            .get::<LimitReport>()
            .cloned()
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct In {
        email: String,
        nested: Option<Nested>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        count: u32,
    }

    fn pointer(body: &str) -> Option<String> {
        match parse_json::<In>(body.as_bytes()) {
            Err(ApiError::InvalidParameters(f)) => f[0].pointer.clone(),
            _ => None,
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(pointer("{}").as_deref(), Some("/email"));
        assert_eq!(pointer(r#"{"email": 5}"#).as_deref(), Some("/email"));
        assert_eq!(
            pointer(r#"{"email": "a", "extra": 1}"#).as_deref(),
            Some("/extra")
        );
        assert_eq!(
            pointer(r#"{"email": "a", "nested": {"count": "x"}}"#).as_deref(),
            Some("/nested/count")
        );
        assert!(matches!(
            parse_json::<In>(b"{\"email\": "),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<In>(b"{\"email\": \"a\"} trailing"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            parse_json::<In>(b""),
            Err(ApiError::MalformedJson(_))
        ));
    }
}
