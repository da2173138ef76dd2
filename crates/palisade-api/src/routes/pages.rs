//! The pages emailed links open (IDN-1, IDN-4, ACL-7): small, self-contained HTML served by the
//! binary, with no third-party asset. The token travels in the link's fragment (`#token=…`),
//! which browsers never send to a server; the page reads it, drops it from the address bar and
//! POSTs it only when the person presses the button, so a link scanner that fetches the URL
//! consumes nothing. Inline script and style are allowed by their hashes in the page's own CSP.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use palisade_core::mail::templates::escape;

use crate::state::AppState;

const STYLE: &str = "body{margin:0;padding:48px 16px;background:#f4f5f7;font-family:system-ui,-apple-system,Segoe UI,sans-serif;color:#1b1d21}\
main{max-width:420px;margin:0 auto;background:#fff;border-radius:8px;padding:32px}\
h1{font-size:20px;margin:0 0 16px}p{line-height:1.5}\
button{background:#1f4fd8;color:#fff;border:0;border-radius:6px;padding:12px 20px;font-size:16px;font-weight:600;cursor:pointer}\
button:disabled{opacity:.5;cursor:default}#out{min-height:1.5em;color:#5b606b}";

const SCRIPT: &str = r#"(function () {
  var token = new URLSearchParams(location.hash.slice(1)).get('token');
  if (location.hash) { history.replaceState(null, '', location.pathname); }
  var data = document.body.dataset, button = document.getElementById('go'), out = document.getElementById('out');
  if (!token) { out.textContent = 'This link is incomplete. Open the link from the email again.'; button.disabled = true; return; }
  button.addEventListener('click', function () {
    button.disabled = true;
    if (data.kind === 'invite') {
      if (data.redirect) { location.replace(data.redirect + '#invitation_token=' + encodeURIComponent(token)); return; }
      out.textContent = 'Sign in to the app with the invited address, then accept with this invitation code: ' + token;
      return;
    }
    out.textContent = 'One moment…';
    var path = data.kind === 'magic' ? '/auth/magic-link/consume' : '/auth/verify-email';
    fetch(data.api + path, { method: 'POST', credentials: 'omit', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: token }) })
      .then(function (r) { return r.text().then(function (t) { var b = null; try { b = t ? JSON.parse(t) : null; } catch (e) {} return { ok: r.ok, body: b }; }); })
      .then(function (r) {
        if (!r.ok) { out.textContent = (r.body && r.body.detail) || 'This link did not work. Ask for a new one.'; return; }
        if (data.kind !== 'magic') { out.textContent = 'Your email address is confirmed. You can sign in now.'; return; }
        if (data.redirect) {
          location.replace(data.redirect + '#access_token=' + encodeURIComponent(r.body.access_token) + '&refresh_token=' + encodeURIComponent(r.body.refresh_token) + '&expires_in=' + r.body.expires_in + '&token_type=Bearer');
          return;
        }
        out.textContent = 'You are signed in. You can close this page.';
      })
      .catch(function () { out.textContent = 'The server could not be reached. Try again.'; button.disabled = false; });
  });
})();
"#;

fn hash(source: &str) -> String {
    format!(
        "'sha256-{}'",
        STANDARD.encode(palisade_core::crypto::sha256(source.as_bytes()))
    )
}

static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'",
        hash(SCRIPT),
        hash(STYLE)
    )
});

fn page(state: &AppState, kind: &str, title: &str, text: &str, button: &str) -> Response {
    let settings = &state.settings;
    let api = format!(
        "{}/api/v1",
        settings.public_url.as_str().trim_end_matches('/')
    );
    let redirect = settings
        .after_sign_in_url
        .as_ref()
        .map(|u| escape(u.as_str()))
        .unwrap_or_default();
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><meta name=\"robots\" content=\"noindex\">\
         <title>{title}</title><style>{STYLE}</style></head>\n\
         <body data-kind=\"{kind}\" data-api=\"{api}\" data-redirect=\"{redirect}\"><main>\
         <h1>{title}</h1><p>{text}</p><p><button id=\"go\" type=\"button\">{button}</button></p>\
         <p id=\"out\" role=\"status\"></p></main>\n<script>{SCRIPT}</script></body></html>\n",
        api = escape(&api),
    );
    let mut response = Html(html).into_response();
    if let Ok(csp) = HeaderValue::from_str(&CSP) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// `GET /auth/magic#token=…`: confirm, then sign in.
pub async fn magic_link(State(state): State<AppState>) -> Response {
    page(
        &state,
        "magic",
        "Sign in",
        "Press the button to finish signing in. The link works once.",
        "Sign in",
    )
}

/// `GET /auth/verify-email#token=…`: confirm the address.
pub async fn verify_email(State(state): State<AppState>) -> Response {
    page(
        &state,
        "verify",
        "Confirm your email address",
        "Press the button to confirm this email address.",
        "Confirm",
    )
}

/// `GET /auth/invitation#token=…`: hands the invitation to the app (`after_sign_in_url`,
/// as `#invitation_token=…`), which signs the person in or up and accepts it.
pub async fn invitation(State(state): State<AppState>) -> Response {
    page(
        &state,
        "invite",
        "You are invited",
        "Press the button to continue to the app, sign in or create an account with the invited address, and accept.",
        "Continue",
    )
}
