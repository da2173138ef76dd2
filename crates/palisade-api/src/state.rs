//! What every handler can reach: the services and the HTTP-level settings.

use std::sync::Arc;

use palisade_core::Services;

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The public base URL (issuer of tokens, canonical URLs, HSTS when https).
    pub public_url: url::Url,
    /// `Contact:` of `/.well-known/security.txt` (a `mailto:` or `https:` URI).
    pub security_contact: String,
    /// Send `Strict-Transport-Security` (serving TLS, or the public URL is https).
    pub hsts: bool,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Where the magic-link page sends the browser after signing in, with the tokens in the
    /// fragment (`#access_token=…&refresh_token=…`); none: the page just says so.
    pub after_sign_in_url: Option<url::Url>,
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub services: Services,
    pub settings: Arc<ApiSettings>,
}
