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
    pub created_at: String,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email,
            name: u.name,
            created_at: rfc3339(u.created_at),
        }
    }
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
        (status = 201, description = "Account created", body = UserOut),
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
            },
            &meta,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Sign in with email and password. Unknown email and wrong password get the same answer.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginIn,
    responses(
        (status = 200, description = "Signed in", body = TokenOut),
        (status = 401, description = "`invalid_credentials`", body = Problem, content_type = "application/problem+json"),
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
