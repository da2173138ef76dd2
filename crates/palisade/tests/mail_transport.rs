//! Email transport end to end (IDN-10): the worker's SMTP mailer in a real SMTP exchange with
//! the test sink (envelope, AUTH, headers, quoted-printable bodies that decode to exactly what
//! was sent), its failures (a refused recipient is permanent, an unreachable relay transient),
//! and the file outbox, whose `.eml` files read back with the same helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::smtp::{self, REFUSED_DOMAIN, SmtpSink};
use palisade_core::mail::{Email, Mailer};
use palisade_worker::mail::{FileOutbox, SmtpMailer, SmtpSecurity, SmtpSettings};
use secrecy::SecretString;

const USER: &str = "relay-user@palisade.test";
const RELAY_PASSWORD: &str = "relay pässword 9f8e7d";
const FROM: &str = "Palisade <noreply@palisade.test>";
/// 43 characters, like a real sign-in token.
const TOKEN: &str = "Zx8_kP3-qR7vL2mN9bT4wY6cF1hJ5dS0aE8gU3iO7lK";
const WAIT: Duration = Duration::from_secs(10);

fn settings(port: u16) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".to_owned(),
        port: Some(port),
        security: SmtpSecurity::None,
        username: Some(USER.to_owned()),
        password: Some(SecretString::from(RELAY_PASSWORD)),
        from: FROM.to_owned(),
        timeout: Duration::from_secs(5),
    }
}

fn link() -> String {
    format!(
        "https://palisade.example.com/sign-in/magic-link?token={TOKEN}&redirect=%2Fworkspaces%2Facme-corporation%2Fsettings%2Fmembers%2Finvitations%3Fpage%3D2%26per_page%3D50%26sort%3Dcreated_at"
    )
}

fn sign_in_email(to: &str, subject: &str) -> Email {
    let link = link();
    Email {
        to: to.to_owned(),
        subject: subject.to_owned(),
        text: format!(
            "Hello,\n\nUse this link to sign in. It works once, for 15 minutes:\n\n{link}\n\n.a line that starts with a dot\nIf you did not ask for it, ignore this message. — Palisade\n"
        ),
        html: format!(
            "<!doctype html>\n<html><body>\n<p>Hello,</p>\n<p><a href=\"{link}\" style=\"color:#1a56db\">Sign in to Palisade</a></p>\n<p>— Palisade</p>\n</body></html>\n"
        ),
        kind: "magic_link",
    }
}

#[tokio::test]
async fn smtp_mailer_delivers_through_a_real_smtp_exchange() {
    let sink = SmtpSink::start().await;
    let mailer = SmtpMailer::new(settings(sink.port())).unwrap();
    let email = sign_in_email("alice@example.com", "Sign in to Palisade");
    assert!(
        link().len() > 200,
        "the test needs a line longer than 200 characters"
    );

    let place = mailer.send(&email).await.unwrap();

    assert_eq!(place, format!("smtp 127.0.0.1:{} (250)", sink.port()));
    let got = sink.wait_for(|m| m.to == ["alice@example.com"], WAIT).await;
    assert_eq!(got.from, "noreply@palisade.test");
    assert_eq!(got.auth, Some((USER.to_owned(), RELAY_PASSWORD.to_owned())));
    assert_eq!(got.header("from").as_deref(), Some(FROM));
    assert_eq!(got.header("to").as_deref(), Some("alice@example.com"));
    assert_eq!(
        got.header("subject").as_deref(),
        Some("Sign in to Palisade")
    );
    assert_eq!(got.header("mime-version").as_deref(), Some("1.0"));
    assert!(got.header("date").is_some());
    let message_id = got.header("message-id").unwrap();
    assert!(message_id.starts_with('<') && message_id.ends_with('>') && message_id.contains('@'));
    let content_type = got.header("content-type").unwrap();
    assert!(
        content_type.starts_with("multipart/alternative;"),
        "{content_type}"
    );

    // 7-bit clean, short lines: the long link is quoted-printable with soft line breaks …
    assert!(got.data.is_ascii());
    assert!(got.data.split("\r\n").all(|line| line.len() <= 78));
    assert!(!got.data.contains(TOKEN), "the link was not wrapped");
    assert_eq!(
        got.data
            .matches("Content-Transfer-Encoding: quoted-printable")
            .count(),
        2
    );
    // … which decodes to exactly what was sent (dot-stuffing undone too).
    assert_eq!(got.text_body(), email.text);
    assert_eq!(got.html_body(), email.html);
}

#[tokio::test]
async fn non_ascii_subject_is_sent_as_encoded_words() {
    let sink = SmtpSink::start().await;
    let mailer = SmtpMailer::new(settings(sink.port())).unwrap();
    let subject = "Willkommen bei Palisade — Grüße an Zoë 👋";

    // Two messages on the pooled connection: the second reuses it.
    mailer
        .send(&sign_in_email("bob@example.com", "first"))
        .await
        .unwrap();
    mailer
        .send(&sign_in_email("bob@example.com", subject))
        .await
        .unwrap();

    let got = sink
        .wait_for(|m| m.subject().as_deref() == Some(subject), WAIT)
        .await;
    let raw = got.header("subject").unwrap();
    assert!(raw.is_ascii() && raw.contains("=?utf-8?"), "{raw}");
    assert_eq!(sink.messages().len(), 2);
    assert!(sink.messages().iter().all(|m| m.to == ["bob@example.com"]));
}

#[tokio::test]
async fn refused_recipient_is_a_permanent_error_that_does_not_name_them() {
    let sink = SmtpSink::start().await;
    let mailer = SmtpMailer::new(settings(sink.port())).unwrap();
    let to = format!("carol{REFUSED_DOMAIN}");

    let e = mailer
        .send(&sign_in_email(&to, "Sign in"))
        .await
        .unwrap_err();

    assert!(e.permanent, "{e}");
    assert!(e.message.contains("550"), "{e}");
    assert!(
        !e.message.contains("carol"),
        "the error names the recipient: {e}"
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn unreachable_relay_is_a_transient_error() {
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let mailer = SmtpMailer::new(settings(port)).unwrap();

    let e = mailer
        .send(&sign_in_email("dave@example.com", "Sign in"))
        .await
        .unwrap_err();

    assert!(!e.permanent, "{e}");
    for secret in ["dave", TOKEN, RELAY_PASSWORD] {
        assert!(
            !e.message.contains(secret),
            "the error shows {secret:?}: {e}"
        );
    }
}

#[tokio::test]
async fn file_outbox_output_reads_back_to_the_same_text() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path().join("outbox"), FROM).unwrap();
    let subject = "Grüße from Palisade";
    let email = sign_in_email("erin@example.com", subject);

    let place = outbox.send(&email).await.unwrap();

    assert!(!place.contains("erin") && !place.contains(TOKEN), "{place}");
    let raw = std::fs::read_to_string(&place).unwrap();
    assert_eq!(
        smtp::header(&raw, "to").as_deref(),
        Some("erin@example.com")
    );
    assert_eq!(smtp::header(&raw, "from").as_deref(), Some(FROM));
    let encoded = smtp::header(&raw, "subject").unwrap();
    assert_eq!(smtp::decode_words(&encoded), subject);
    assert_eq!(smtp::text_body(&raw), email.text);
    assert_eq!(smtp::html_body(&raw), email.html);
}
