//! `/api/v1/auth/*` and `/api/v1/me`: sign-up, sign-in, refresh, sign-out, the current user.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use palisade_core::accounts::model::{SignIn, SignUp, TokenPair, User};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{Auth, JsonBody, Meta};
use crate::problem::{ApiResult, Problem};
use crate::routes::rfc3339;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupIn {
    /// Stored lowercased.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 10 to 256 characters.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 256)]
    pub password: SecretString,
    #[schema(example = "Ada Lovelace", min_length = 1, max_length = 200)]
    pub name: String,
    /// The token of an invitation to this address: admits sign-up on an `invite_only`
    /// instance, and proves the address (no verification mail). Accept the invitation after
    /// signing in.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub invitation_token: Option<SecretString>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshIn {
    #[schema(value_type = String, format = Password)]
    pub refresh_token: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    #[schema(example = "usr_06f1x9k2m3n4p5q6r7s8t9v0wx")]
    pub id: String,
    pub email: String,
    pub name: String,
    /// Whether the address was confirmed (by its verification link, a reset code or a magic
    /// link). With `accounts.require_verified_email` (the default) password sign-in waits for it.
    pub email_verified: bool,
    pub created_at: String,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email,
            name: u.name,
            email_verified: u.email_verified_at.is_some(),
            created_at: rfc3339(u.created_at),
        }
    }
}

/// An address to send something to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailIn {
    #[schema(example = "ada@example.com")]
    pub email: String,
}

/// The token from an emailed link (the `token` in its `#token=` fragment).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    #[schema(value_type = String, format = Password)]
    pub token: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmIn {
    pub email: String,
    /// The 6-digit code from the email.
    #[schema(value_type = String, format = Password, example = "042917")]
    pub code: SecretString,
    /// 10 to 256 characters.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 256)]
    pub new_password: SecretString,
}

#[derive(Serialize, ToSchema)]
pub struct TokenOut {
    /// EdDSA JWT; verify with `/.well-known/jwks.json`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
    /// Opaque, single use: each refresh returns a new one.
    pub refresh_token: String,
}

impl std::fmt::Debug for TokenOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenOut")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl From<TokenPair> for TokenOut {
    fn from(p: TokenPair) -> Self {
        Self {
            access_token: p.access_token.expose_secret().to_owned(),
            token_type: "Bearer",
            expires_in: p.expires_in,
            refresh_token: p.refresh_token.expose_secret().to_owned(),
        }
    }
}

/// Create an account.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupIn,
    responses(
        (status = 201, description = "Account created; a verification link was emailed (none with an invitation token)", body = UserOut),
        (status = 400, description = "`invalid_token`: the invitation is unknown, used, revoked or expired", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`signup_closed` or `invitation_required` (config `accounts.signup_mode`); `invitation_mismatch`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: `errors` names each field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<SignupIn>,
) -> ApiResult<(StatusCode, Json<UserOut>)> {
    let user = state
        .services
        .sign_up(
            SignUp {
                email: input.email,
                password: input.password,
                name: input.name,
                invitation_token: input.invitation_token,
            },
            &meta,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Sign in with email and password. Unknown email, wrong password and a locked account get the
/// same answer; 5 failures in a row lock the account (15 minutes, doubling up to 24 hours).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginIn,
    responses(
        (status = 200, description = "Signed in", body = TokenOut),
        (status = 401, description = "`invalid_credentials`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`email_not_verified`: the password was right; confirm the address first", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<LoginIn>,
) -> ApiResult<Json<TokenOut>> {
    let pair = state
        .services
        .sign_in(
            SignIn {
                email: input.email,
                password: input.password,
            },
            &meta,
        )
        .await?;
    Ok(Json(pair.into()))
}

/// Exchange a refresh token for new tokens. Reusing a refresh token revokes its whole session.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshIn,
    responses(
        (status = 200, description = "New token pair", body = TokenOut),
        (status = 401, description = "`invalid_refresh_token`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn refresh(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<RefreshIn>,
) -> ApiResult<Json<TokenOut>> {
    let pair = state.services.refresh(&input.refresh_token, &meta).await?;
    Ok(Json(pair.into()))
}

/// Sign out: the session's refresh token and access tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Meta(meta): Meta,
) -> ApiResult<StatusCode> {
    state.services.sign_out(&principal, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The current user", body = UserOut),
        (status = 401, description = "`unauthenticated`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn me(State(state): State<AppState>, Auth(principal): Auth) -> ApiResult<Json<UserOut>> {
    Ok(Json(state.services.me(&principal).await?.into()))
}

/// Confirm an email address with the token of its verification link.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", request_body = TokenIn,
    responses(
        (status = 204, description = "Address verified"),
        (status = 400, description = "`invalid_token`: unknown, used or expired", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_email(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<TokenIn>,
) -> ApiResult<StatusCode> {
    state.services.verify_email(&input.token, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a new verification link. Answers 202 whether or not the address has an unverified
/// account.
#[utoipa::path(post, path = "/api/v1/auth/verify-email/resend", tag = "auth", request_body = EmailIn,
    responses(
        (status = 202, description = "If the address has an unverified account, a link is on its way"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resend_verification(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<EmailIn>,
) -> ApiResult<StatusCode> {
    state
        .services
        .resend_verification(&input.email, &meta)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Email a 6-digit password-reset code (valid 15 minutes, 5 attempts). Answers 202 whether or
/// not the address has an account.
#[utoipa::path(post, path = "/api/v1/auth/password-reset", tag = "auth", request_body = EmailIn,
    responses(
        (status = 202, description = "If the address has an account, a code is on its way"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn password_reset(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<EmailIn>,
) -> ApiResult<StatusCode> {
    state
        .services
        .request_password_reset(&input.email, &meta)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with the emailed code. Every session of the account is revoked.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirmIn,
    responses(
        (status = 204, description = "Password changed; sign in with it"),
        (status = 400, description = "`invalid_reset_code`: wrong, expired, replaced or out of attempts", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn password_reset_confirm(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<ResetConfirmIn>,
) -> ApiResult<StatusCode> {
    state
        .services
        .confirm_password_reset(&input.email, &input.code, &input.new_password, &meta)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Email a sign-in link (valid 15 minutes, single use). Answers 202 whether or not the address
/// has an account. The link opens `GET /auth/magic`, a confirmation page whose button consumes it.
#[utoipa::path(post, path = "/api/v1/auth/magic-link", tag = "auth", request_body = EmailIn,
    responses(
        (status = 202, description = "If the address has an account, a link is on its way"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn magic_link(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<EmailIn>,
) -> ApiResult<StatusCode> {
    state
        .services
        .request_magic_link(&input.email, &meta)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Sign in with a magic link's token. Single use: only the first call succeeds.
#[utoipa::path(post, path = "/api/v1/auth/magic-link/consume", tag = "auth", request_body = TokenIn,
    responses(
        (status = 200, description = "Signed in", body = TokenOut),
        (status = 400, description = "`invalid_token`: unknown, used or expired", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn magic_link_consume(
    State(state): State<AppState>,
    Meta(meta): Meta,
    JsonBody(input): JsonBody<TokenIn>,
) -> ApiResult<Json<TokenOut>> {
    let pair = state
        .services
        .consume_magic_link(&input.token, &meta)
        .await?;
    Ok(Json(pair.into()))
}
