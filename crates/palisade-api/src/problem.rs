//! `application/problem+json` (RFC 9457) for every error. The one exhaustive mapping from domain
//! errors to HTTP statuses lives here. 5xx bodies are generic; the cause rides in a response
//! extension and is logged once, with the request id, by the middleware that finishes problems.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_core::error::{ConflictKind, Error, FieldError, Resource};
use serde::Serialize;
use utoipa::ToSchema;

/// Where an invalid input was found.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ProblemField {
    /// JSON Pointer (RFC 6901) into the request body, e.g. `/email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Query parameter name, e.g. `limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    pub message: String,
}

/// A field error names a body member by JSON pointer (`/name`), or a query or path parameter
/// by its bare name (`seq`).
impl From<FieldError> for ProblemField {
    fn from(e: FieldError) -> Self {
        if e.pointer.starts_with('/') {
            Self {
                pointer: Some(e.pointer),
                parameter: None,
                message: e.message,
            }
        } else {
            Self {
                pointer: None,
                parameter: Some(e.pointer),
                message: e.message,
            }
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:palisade:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request id (also in the `X-Request-Id` header).
    pub instance: Option<String>,
    /// Stable machine code, snake_case.
    pub code: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// `rate_limited`: seconds to wait (also the `Retry-After` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// `rate_limited`: the policy that refused (named in the `RateLimit` header too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// The cause of a 5xx, for the log line only.
#[derive(Debug, Clone)]
pub struct InternalCause(pub Arc<dyn std::error::Error + Send + Sync>);

/// Every error a handler or extractor can return.
#[derive(Debug)]
pub enum ApiError {
    Domain(Error),
    MalformedJson(String),
    UnsupportedMediaType,
    PayloadTooLarge,
    RouteNotFound,
    MethodNotAllowed,
    InvalidParameters(Vec<ProblemField>),
    Unavailable,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Domain(e)
    }
}

struct Parts {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<ProblemField>,
    cause: Option<InternalCause>,
    limited: Option<(u64, &'static str)>,
}

impl Parts {
    fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            cause: None,
            limited: None,
        }
    }
}

fn domain(e: Error) -> Parts {
    let code = e.code();
    match e {
        Error::Validation(fields) => Parts {
            errors: fields.into_iter().map(ProblemField::from).collect(),
            ..Parts::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                "Validation failed",
                "The request has invalid fields; see errors.",
            )
        },
        Error::Unauthenticated => Parts::new(
            StatusCode::UNAUTHORIZED,
            code,
            "Authentication required",
            "Send a valid access token as `Authorization: Bearer …`.",
        ),
        Error::InvalidCredentials => Parts::new(
            StatusCode::UNAUTHORIZED,
            code,
            "Invalid credentials",
            "The email or password is incorrect.",
        ),
        Error::InvalidApiKey => Parts::new(
            StatusCode::UNAUTHORIZED,
            code,
            "Invalid API key",
            "The API key is malformed, fails its checksum, or is unknown or revoked.",
        ),
        Error::ApiKeyExpired => Parts::new(
            StatusCode::UNAUTHORIZED,
            code,
            "API key expired",
            "The API key has passed its expiry; create or rotate a key.",
        ),
        Error::UserRequired => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Signed-in user required",
            "This endpoint acts for a person: use an access token, not an API key. API keys work on the endpoints of their own workspace.",
        ),
        Error::InvalidRefreshToken => Parts::new(
            StatusCode::UNAUTHORIZED,
            code,
            "Invalid refresh token",
            "The refresh token is invalid, expired, revoked or already used; sign in again.",
        ),
        Error::EmailNotVerified => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Email not verified",
            "Confirm your email address with the link we sent (POST /api/v1/auth/verify-email/resend sends a new one), then sign in.",
        ),
        Error::SignupClosed => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Sign-up closed",
            "This instance does not accept new accounts.",
        ),
        Error::InvitationRequired => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Invitation required",
            "This instance accepts new accounts only through an invitation.",
        ),
        Error::InvalidToken => Parts::new(
            StatusCode::BAD_REQUEST,
            code,
            "Invalid or expired link",
            "The link is invalid, expired or was already used; ask for a new one.",
        ),
        Error::InvalidResetCode => Parts::new(
            StatusCode::BAD_REQUEST,
            code,
            "Invalid or expired code",
            "The code is wrong, expired, replaced by a newer one or used up (5 attempts); ask for a new one.",
        ),
        Error::NotFound(Resource::Session) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Session not found",
            "You have no session with this id.",
        ),
        Error::NotFound(Resource::Workspace) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Workspace not found",
            "No workspace with this id or slug exists for you.",
        ),
        Error::NotFound(Resource::User) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "User not found",
            "The user does not exist.",
        ),
        Error::NotFound(Resource::Checkpoint) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Checkpoint not found",
            "No checkpoint has been signed for this log (or for that date) yet; the latest one is signed within a minute of the log growing.",
        ),
        Error::NotFound(Resource::Member) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Member not found",
            "This workspace has no member with this id.",
        ),
        Error::NotFound(Resource::Invitation) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Invitation not found",
            "This workspace has no open invitation with this id.",
        ),
        Error::NotFound(Resource::Team) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Team not found",
            "This workspace has no team with this id.",
        ),
        Error::NotFound(Resource::CustomRole) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Role not found",
            "This workspace has no custom role with this id.",
        ),
        Error::NotFound(Resource::ApiKey) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "API key not found",
            "This workspace has no API key with this id.",
        ),
        Error::NotFound(Resource::Collection) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Collection not found",
            "This workspace has no collection with this name.",
        ),
        Error::NotFound(Resource::Record) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Record not found",
            "This collection has no record with this id that you may see.",
        ),
        Error::NotFound(Resource::Webhook) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Webhook not found",
            "This workspace has no webhook endpoint with this id.",
        ),
        Error::NotFound(Resource::Delivery) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Delivery not found",
            "This webhook endpoint has no delivery with this id.",
        ),
        Error::PreconditionFailed => Parts::new(
            StatusCode::PRECONDITION_FAILED,
            code,
            "Precondition failed",
            "The record changed since the version in If-Match; read it again and retry.",
        ),
        Error::FieldsNotReadable(fields) => Parts {
            errors: fields.into_iter().map(ProblemField::from).collect(),
            ..Parts::new(
                StatusCode::FORBIDDEN,
                code,
                "Fields not readable",
                "You may not filter, sort or select the fields named in errors.",
            )
        },
        Error::FieldsNotWritable(fields) => Parts {
            errors: fields.into_iter().map(ProblemField::from).collect(),
            ..Parts::new(
                StatusCode::FORBIDDEN,
                code,
                "Fields not writable",
                "You may not write the fields named in errors; nothing was written.",
            )
        },
        Error::NotFound(Resource::Child) => Parts::new(
            StatusCode::NOT_FOUND,
            code,
            "Child workspace not found",
            "This workspace has no child with this id or slug.",
        ),
        Error::ModuleDisabled(module) => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Module not enabled",
            format!(
                "This needs the module {module}, which this workspace's plan does not include."
            ),
        ),
        Error::WorkspaceSuspended => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Workspace suspended",
            "The workspace is suspended by its parent; only its owners can still read its settings.",
        ),
        Error::MembershipInactive => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Membership deactivated",
            "Your membership of this workspace is deactivated; ask one of its admins.",
        ),
        Error::ReauthenticationRequired(why) => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Sign in again",
            match why {
                "sign_in_method" => {
                    "This workspace does not allow the way this session was signed in; sign in with an allowed method."
                }
                _ => "This workspace limits how long a session may last; sign in again.",
            },
        ),
        Error::InvitationMismatch => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Invitation addressed to someone else",
            "The invitation was sent to another address; sign in with the invited address.",
        ),
        Error::PermissionDenied(p) => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Permission denied",
            format!("This needs the permission {}.", p.key()),
        ),
        Error::InstanceAdminRequired => Parts::new(
            StatusCode::FORBIDDEN,
            code,
            "Instance administrator required",
            "Only instance administrators (config `admins`) may do this.",
        ),
        Error::Conflict(ConflictKind::EmailTaken) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Email already registered",
            "An account with this email already exists.",
        ),
        Error::Conflict(ConflictKind::SlugTaken) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Slug taken",
            "Another workspace already uses this slug.",
        ),
        Error::Conflict(ConflictKind::AlreadyMember) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Already a member",
            "This person is already a member of the workspace.",
        ),
        Error::Conflict(ConflictKind::NameTaken) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Name taken",
            "Another team or role of this workspace already has this name.",
        ),
        Error::Conflict(ConflictKind::LastOwner) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Last owner",
            "This would leave the workspace without an active owner; make someone else an owner first.",
        ),
        Error::Conflict(ConflictKind::RoleInUse) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Role in use",
            "Members or open invitations still hold this role; assign them another first.",
        ),
        Error::Conflict(ConflictKind::CollectionInUse) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Collection in use",
            "A relation field of another collection points to this one; remove that field first.",
        ),
        Error::Conflict(ConflictKind::DeliveryPending) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Delivery pending",
            "This delivery is still pending: it will be attempted on its schedule.",
        ),
        Error::Conflict(ConflictKind::WebhookDisabled) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Webhook disabled",
            "Enable the endpoint first: its paused deliveries go out then.",
        ),
        Error::Conflict(ConflictKind::HasChildren) => Parts::new(
            StatusCode::CONFLICT,
            code,
            "Workspace has children",
            "Delete or move this workspace's own children first.",
        ),
        Error::RateLimited(limited) => {
            let wait = limited.retry_after_secs();
            Parts {
                limited: Some((wait, limited.policy())),
                ..Parts::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    code,
                    "Too many requests",
                    format!(
                        "The budget `{}` is spent; retry in {wait} s. The RateLimit header shows every budget.",
                        limited.policy()
                    ),
                )
            }
        }
        Error::Internal(source) => Parts {
            cause: Some(InternalCause(Arc::from(source))),
            ..Parts::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                code,
                "Internal error",
                "Something went wrong on our side; the request id identifies it in our logs.",
            )
        },
    }
}

impl ApiError {
    fn parts(self) -> Parts {
        match self {
            ApiError::Domain(e) => domain(e),
            ApiError::MalformedJson(detail) => Parts::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "Malformed JSON",
                detail,
            ),
            ApiError::UnsupportedMediaType => Parts::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "Send the body as `Content-Type: application/json`.",
            ),
            ApiError::PayloadTooLarge => Parts::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                "The request body exceeds the size limit.",
            ),
            ApiError::RouteNotFound => Parts::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                "No such route; see /api/docs/.",
            ),
            ApiError::MethodNotAllowed => Parts::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                "This route does not accept this method.",
            ),
            ApiError::InvalidParameters(errors) => Parts {
                errors,
                ..Parts::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    "Validation failed",
                    "The request has invalid fields or parameters; see errors.",
                )
            },
            ApiError::Unavailable => Parts::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Unavailable",
                "The service is not ready.",
            ),
        }
    }
}

/// A problem response; `instance` is filled in by the request-id middleware.
pub fn problem_response(status: StatusCode, problem: Problem) -> Response {
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response.extensions_mut().insert(problem);
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let parts = self.parts();
        let problem = Problem {
            kind: format!("urn:palisade:problem:{}", parts.code),
            title: parts.title.to_owned(),
            status: parts.status.as_u16(),
            detail: parts.detail,
            instance: None,
            code: parts.code.to_owned(),
            errors: parts.errors,
            retry_after: parts.limited.map(|(wait, _)| wait),
            policy: parts.limited.map(|(_, policy)| policy.to_owned()),
        };
        let mut response = problem_response(parts.status, problem);
        if let Some((wait, _)) = parts.limited {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        if parts.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"palisade\""),
            );
        }
        if let Some(cause) = parts.cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::acl::Permission;

    #[test]
    fn domain_errors_map_to_statuses_and_stable_codes() {
        let rows: Vec<(Error, u16, &str)> = vec![
            (Error::field("/email", "bad"), 422, "validation_failed"),
            (Error::Unauthenticated, 401, "unauthenticated"),
            (Error::InvalidCredentials, 401, "invalid_credentials"),
            (Error::InvalidApiKey, 401, "invalid_api_key"),
            (Error::ApiKeyExpired, 401, "api_key_expired"),
            (Error::UserRequired, 403, "user_required"),
            (Error::NotFound(Resource::ApiKey), 404, "api_key_not_found"),
            (Error::NotFound(Resource::Record), 404, "record_not_found"),
            (Error::NotFound(Resource::Webhook), 404, "webhook_not_found"),
            (
                Error::NotFound(Resource::Delivery),
                404,
                "delivery_not_found",
            ),
            (
                Error::Conflict(ConflictKind::DeliveryPending),
                409,
                "delivery_pending",
            ),
            (
                Error::Conflict(ConflictKind::WebhookDisabled),
                409,
                "webhook_disabled",
            ),
            (Error::PreconditionFailed, 412, "precondition_failed"),
            (
                Error::FieldsNotReadable(vec![FieldError::new("sort", "no")]),
                403,
                "field_not_readable",
            ),
            (
                Error::FieldsNotWritable(vec![FieldError::new("/a", "no")]),
                403,
                "field_not_writable",
            ),
            (
                Error::NotFound(Resource::Collection),
                404,
                "collection_not_found",
            ),
            (
                Error::Conflict(ConflictKind::CollectionInUse),
                409,
                "collection_in_use",
            ),
            (Error::InvalidRefreshToken, 401, "invalid_refresh_token"),
            (Error::EmailNotVerified, 403, "email_not_verified"),
            (Error::SignupClosed, 403, "signup_closed"),
            (Error::InvitationRequired, 403, "invitation_required"),
            (Error::InvalidToken, 400, "invalid_token"),
            (Error::InvalidResetCode, 400, "invalid_reset_code"),
            (Error::NotFound(Resource::Session), 404, "session_not_found"),
            (
                Error::NotFound(Resource::Workspace),
                404,
                "workspace_not_found",
            ),
            (
                Error::PermissionDenied(Permission::WorkspaceUpdate),
                403,
                "permission_denied",
            ),
            (Error::InstanceAdminRequired, 403, "instance_admin_required"),
            (
                Error::RateLimited(palisade_core::limits::Limited {
                    decisions: Vec::new(),
                }),
                429,
                "rate_limited",
            ),
            (Error::Conflict(ConflictKind::SlugTaken), 409, "slug_taken"),
            (
                Error::Conflict(ConflictKind::EmailTaken),
                409,
                "email_taken",
            ),
            (
                Error::internal(std::io::Error::other("db password=hunter2")),
                500,
                "internal",
            ),
        ];
        for (error, status, code) in rows {
            let p = ApiError::Domain(error).parts();
            assert_eq!((p.status.as_u16(), p.code), (status, code));
            assert!(
                !p.detail.contains("hunter2"),
                "5xx detail carries no internal text"
            );
        }
    }
}
