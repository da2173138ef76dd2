//! The outer layers of every response: request id (`X-Request-Id`, echoed as a problem's
//! `instance`), one access log line, the log line for a 5xx cause, security headers (PLT-5),
//! and panic capture.

use std::any::Any;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_core::ids::TraceId;
use palisade_core::limits::{Decision, LimitReport};
use tracing::Instrument as _;

use crate::problem::{ApiError, InternalCause, Problem, problem_response};
use crate::state::AppState;

/// The id of the request being served (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An incoming `X-Request-Id` is kept when it is short and plain, so callers can correlate.
fn incoming_id(req: &Request) -> Option<String> {
    let value = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| value.to_owned())
}

/// The API itself loads nothing; the documentation pages load their own scripts and styles.
const CSP_API: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const CSP_DOCS: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
     font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

fn set_security_headers(response: &mut Response, path: &str, hsts: bool) {
    let headers = response.headers_mut();
    let csp = if path.starts_with("/api/docs") || path.starts_with("/api/redoc") {
        CSP_DOCS
    } else {
        CSP_API
    };
    // A page that sets its own policy (the emailed-link pages allow their inline script by
    // hash) keeps it.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    // Tokens and tenant data must not sit in shared caches; public documents set their own.
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers): one list item per
/// budget the request was charged to, e.g. `"api_per_workspace";q=50;w=1` and
/// `"api_per_workspace";r=49;t=1`.
fn set_rate_limit_headers(response: &mut Response, decisions: &[Decision]) {
    if decisions.is_empty() {
        return;
    }
    let policies: Vec<String> = decisions
        .iter()
        .map(|d| format!("\"{}\";q={};w={}", d.policy, d.limit, d.window_secs))
        .collect();
    let states: Vec<String> = decisions
        .iter()
        .map(|d| format!("\"{}\";r={};t={}", d.policy, d.remaining, d.reset_secs))
        .collect();
    for (name, items) in [(RATELIMIT_POLICY, policies), (RATELIMIT, states)] {
        if let Ok(value) = HeaderValue::from_str(&items.join(", ")) {
            response.headers_mut().insert(name, value);
        }
    }
}

fn log_cause(request_id: &str, cause: &InternalCause) {
    let mut chain = cause.0.to_string();
    let mut source = cause.0.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    tracing::error!(request_id, error = %chain, "request failed");
}

pub async fn request_context(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = incoming_id(&req).unwrap_or_else(|| TraceId::generate().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let limits = LimitReport::default();
    req.extensions_mut().insert(limits.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(req).instrument(span).await;

    if let Some(mut problem) = response.extensions_mut().remove::<Problem>() {
        problem.instance = Some(id.clone());
        let status = response.status();
        let (mut parts, _) = response.into_parts();
        let finished = problem_response(status, problem);
        parts.headers.remove(header::CONTENT_LENGTH);
        let (new_parts, body) = finished.into_parts();
        parts.headers.extend(new_parts.headers);
        response = Response::from_parts(parts, body);
    }
    if let Some(cause) = response.extensions().get::<InternalCause>() {
        log_cause(&id, cause);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    set_security_headers(&mut response, &path, state.settings.hsts);
    set_rate_limit_headers(&mut response, &limits.decisions());
    tracing::info!(
        request_id = %id,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

/// A panicking handler becomes a generic 500 problem; the payload is logged, never sent.
pub fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned());
    ApiError::Domain(palisade_core::Error::internal(std::io::Error::other(
        format!("handler panicked: {message}"),
    )))
    .into_response()
}
