//! Operational and discovery endpoints: health, readiness, JWKS, security.txt, and the
//! documentation pages (Swagger UI and ReDoc, every asset served by the binary).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, ApiResult, Problem};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthOut {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive", body = HealthOut)))]
pub async fn healthz() -> Json<HealthOut> {
    Json(HealthOut { status: "ok" })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready", body = HealthOut),
    (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<HealthOut>> {
    state.services.ready().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::Unavailable
    })?;
    Ok(Json(HealthOut { status: "ok" }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JwkOut {
    #[schema(example = "OKP")]
    pub kty: &'static str,
    #[schema(example = "Ed25519")]
    pub crv: &'static str,
    pub x: String,
    /// RFC 7638 thumbprint.
    pub kid: String,
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub key_use: &'static str,
    #[schema(example = "EdDSA")]
    pub alg: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JwksOut {
    pub keys: Vec<JwkOut>,
}

/// The public keys that verify access tokens (EdDSA, Ed25519).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JSON Web Key Set", body = JwksOut)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let keys = state
        .services
        .tokens()
        .jwks()
        .iter()
        .map(|k| JwkOut {
            kty: k.kty,
            crv: k.crv,
            x: k.x.clone(),
            kid: k.kid.clone(),
            key_use: k.key_use,
            alg: k.alg,
        })
        .collect();
    let mut response = Json(JwksOut { keys }).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// RFC 9116 security contact, valid for a year from now.
#[utoipa::path(get, path = "/.well-known/security.txt", tag = "operations", responses((status = 200, description = "security.txt", content_type = "text/plain", body = String)))]
pub async fn security_txt(State(state): State<AppState>) -> Response {
    let expires = state.services.now() + time::Duration::days(365);
    let expires = expires.replace_nanosecond(0).unwrap_or(expires);
    let canonical = state
        .settings
        .public_url
        .join("/.well-known/security.txt")
        .map(|u| u.to_string())
        .unwrap_or_default();
    let body = format!(
        "Contact: {}\nExpires: {}\nPreferred-Languages: en\nCanonical: {}\n",
        state.settings.security_contact,
        super::rfc3339(expires),
        canonical
    );
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// ReDoc 3.0.1, vendored from npm (MIT, see assets/redoc/LICENSE): no CDN at run time.
const REDOC_JS: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

const REDOC_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Palisade API reference</title>
</head>
<body>
<redoc spec-url="/api/schema/" disable-telemetry="true" hide-download-button="false"></redoc>
<script type="module" src="/api/redoc/redoc.standalone.js"></script>
</body>
</html>
"#;

pub async fn redoc_page() -> Html<&'static str> {
    Html(REDOC_HTML)
}

pub async fn redoc_js() -> Response {
    let mut response = REDOC_JS.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}
