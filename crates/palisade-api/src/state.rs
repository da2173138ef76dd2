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
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub services: Services,
    pub settings: Arc<ApiSettings>,
}
