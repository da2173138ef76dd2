//! Email (IDN-10): what the services send, and the port they send it through. Messages are
//! built here (plain text and HTML, branded); a [`Mailer`] delivers them (SMTP, or `.eml` files
//! in the outbox when no SMTP is configured; both live in `palisade-worker`). Delivery runs in
//! the background after the change committed, so a request's timing never depends on whether a
//! message went out (no account enumeration through response time), and a slow relay never
//! holds a request.

pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// One message to one recipient. Its bodies carry secrets (links, codes): `Debug` shows only
/// its kind, and nothing here is ever logged.
#[derive(Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body: the same content, branded.
    pub html: String,
    /// What it is (`verify_email`, `magic_link`, `password_reset_code`, …), for logs.
    pub kind: &'static str,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A delivery failure. `permanent` failures (a recipient the relay refuses) are not retried.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MailError {
    pub message: String,
    pub permanent: bool,
}

impl MailError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// Delivers one message. The returned text says where it went (a file path, the relay's
/// answer) for the log line; it must not contain the message's content.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    async fn send(&self, email: &Email) -> Result<String, MailError>;
}

/// Messages at once in flight; more wait for a place.
const IN_FLIGHT: u32 = 16;
/// Waits before the 2nd, 3rd and 4th attempt.
const RETRY_AFTER: [Duration; 3] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(60),
];

/// Sends in the background with retries; [`Outbox::drain`] waits for what is in flight.
#[derive(Debug, Clone)]
pub struct Outbox {
    mailer: Arc<dyn Mailer>,
    places: Arc<Semaphore>,
}

impl Outbox {
    pub fn new(mailer: Arc<dyn Mailer>) -> Self {
        Self {
            mailer,
            places: Arc::new(Semaphore::new(IN_FLIGHT as usize)),
        }
    }

    /// Queues `email` for delivery and returns at once.
    pub fn send(&self, email: Email) {
        let mailer = Arc::clone(&self.mailer);
        let places = Arc::clone(&self.places);
        tokio::spawn(async move {
            let Ok(_place) = places.acquire_owned().await else {
                return;
            };
            deliver(&*mailer, &email).await;
        });
    }

    /// Waits (up to `timeout`) until no message is in flight: at shutdown, so a message queued
    /// by the last requests still goes out.
    pub async fn drain(&self, timeout: Duration) {
        let all = tokio::time::timeout(timeout, self.places.acquire_many(IN_FLIGHT)).await;
        if all.is_err() {
            tracing::warn!("shutting down with email still in flight");
        }
    }
}

async fn deliver(mailer: &dyn Mailer, email: &Email) {
    let mut attempt = 0;
    loop {
        match mailer.send(email).await {
            Ok(place) => {
                tracing::info!(kind = email.kind, delivered = %place, "email sent");
                return;
            }
            Err(e) if e.permanent || attempt == RETRY_AFTER.len() => {
                tracing::error!(kind = email.kind, error = %e, attempts = attempt + 1, "email not delivered");
                return;
            }
            Err(e) => {
                tracing::warn!(kind = email.kind, error = %e, "email delivery failed; retrying");
                tokio::time::sleep(RETRY_AFTER[attempt]).await;
                attempt += 1;
            }
        }
    }
}
