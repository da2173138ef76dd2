//! Email delivery (IDN-10): the two [`Mailer`]s the core's outbox sends through.
//! [`SmtpMailer`] hands messages to an SMTP relay; [`FileOutbox`] writes them as `.eml` files
//! when no relay is configured. Both build the same MIME message in [`message`], so what a
//! developer opens from the outbox is byte for byte what a relay would have been given.
//!
//! Messages carry sign-in links and codes: nothing here logs, and neither the text these
//! mailers return nor their errors mention the recipient or the content.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use palisade_core::mail::{Email, MailError, Mailer};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required: a relay that does not offer
    /// it gets neither credentials nor messages (no downgrade).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption at all: only for a relay on the same host or a test sink.
    None,
}

impl SmtpSecurity {
    /// The port used when none is configured: 587 (submission), 465 (submissions) or 25.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Starttls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

/// Where and how to reach the SMTP relay.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    /// Defaults to [`SmtpSecurity::default_port`].
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    /// Credentials are sent (AUTH PLAIN or LOGIN) only when a username is set.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The `From` mailbox: `noreply@example.com` or `Palisade <noreply@example.com>`.
    pub from: String,
    /// For connecting and for each SMTP command.
    pub timeout: Duration,
}

/// Sends through an SMTP relay, keeping a small pool of open connections.
pub struct SmtpMailer {
    /// The pool spawns its upkeep task when it is built, which needs a Tokio runtime; building
    /// it on the first send lets [`SmtpMailer::new`] run anywhere (configuration checks too).
    builder: AsyncSmtpTransportBuilder,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    host: String,
    port: u16,
    security: SmtpSecurity,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// Checks the settings and prepares the transport; connects only when sending.
    pub fn new(settings: SmtpSettings) -> Result<Self, MailError> {
        let from = parse_from(&settings.from)?;
        if settings.host.trim().is_empty() {
            return Err(MailError::permanent("smtp `host` is empty"));
        }
        let port = settings
            .port
            .unwrap_or_else(|| settings.security.default_port());
        let host = settings.host;
        let builder = match settings.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host),
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host),
            SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host.as_str(),
            )),
        }
        .map_err(|e| MailError::permanent(format!("smtp TLS setup for {host} failed: {e}")))?;
        let mut builder = builder.port(port).timeout(Some(settings.timeout));
        match (settings.username, settings.password) {
            (Some(username), password) => {
                let password = password
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default();
                builder = builder.credentials(Credentials::new(username, password));
            }
            (None, Some(_)) => {
                return Err(MailError::permanent(
                    "smtp `password` is set without a `username`",
                ));
            }
            (None, None) => {}
        }
        Ok(Self {
            builder,
            transport: OnceLock::new(),
            from,
            host,
            port,
            security: settings.security,
        })
    }

    /// `host:port` of the relay.
    pub fn relay(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<String, MailError> {
        let message = message(&self.from, email)?;
        let transport = self.transport.get_or_init(|| self.builder.clone().build());
        match transport.send(message).await {
            Ok(response) => Ok(format!("smtp {} ({})", self.relay(), response.code())),
            Err(e) => {
                let what = smtp_failure(&e);
                let message = format!("smtp {}: {what}", self.relay());
                Err(if e.is_permanent() {
                    MailError::permanent(message)
                } else {
                    MailError::transient(message)
                })
            }
        }
    }
}

/// Describes an SMTP failure without the relay's reply text, which may quote the recipient.
fn smtp_failure(e: &lettre::transport::smtp::Error) -> String {
    if let Some(code) = e.status() {
        format!("relay refused ({code})")
    } else if e.is_response() {
        "unreadable reply from the relay".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else {
        // Connection, network, TLS and client errors: fixed texts and I/O or TLS causes.
        e.to_string()
    }
}

/// Writes each message as an `.eml` file: the delivery used when no SMTP relay is configured.
/// The files hold sign-in links, so they are readable by the owner only.
#[derive(Debug, Clone)]
pub struct FileOutbox {
    dir: PathBuf,
    from: Mailbox,
}

impl FileOutbox {
    /// Writes to `dir` (created with mode 0700 on the first message if missing), as `from`.
    pub fn new(dir: impl Into<PathBuf>, from: &str) -> Result<Self, MailError> {
        Ok(Self {
            dir: dir.into(),
            from: parse_from(from)?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait::async_trait]
impl Mailer for FileOutbox {
    async fn send(&self, email: &Email) -> Result<String, MailError> {
        let bytes = message(&self.from, email)?.formatted();
        let name = file_name(email.kind)?;
        let path = self.dir.join(&name);
        write_new(&self.dir, &name, &bytes).await.map_err(|e| {
            MailError::transient(format!("writing to outbox {}: {e}", self.dir.display()))
        })?;
        Ok(path.display().to_string())
    }
}

/// `<UTC timestamp>-<kind>-<8 random hex digits>.eml`: sorts by time, never collides.
fn file_name(kind: &str) -> Result<String, MailError> {
    const STAMP: &[time::format_description::FormatItem<'_>] = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:6]Z"
    );
    let stamp = time::OffsetDateTime::now_utc()
        .format(STAMP)
        .map_err(|e| MailError::transient(format!("formatting the outbox file name: {e}")))?;
    let mut random = [0u8; 4];
    getrandom::fill(&mut random)
        .map_err(|e| MailError::transient(format!("OS randomness failed: {e}")))?;
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let kind: String = kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(format!("{stamp}-{kind}-{random}.eml"))
}

/// Writes `bytes` under a hidden temporary name, then renames it to `name`, so a reader that
/// lists `*.eml` never sees half a message.
async fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;

    let mut dirs = tokio::fs::DirBuilder::new();
    dirs.recursive(true);
    #[cfg(unix)]
    dirs.mode(0o700);
    dirs.create(dir).await?;

    let temp = dir.join(format!(".{name}.tmp"));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let written = async {
        let mut file = options.open(&temp).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&temp, dir.join(name)).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    written
}

fn parse_from(from: &str) -> Result<Mailbox, MailError> {
    from.parse()
        .map_err(|e| MailError::permanent(format!("mail `from` {from:?} is not a mailbox: {e}")))
}

/// The MIME message for `email`: From, To, Subject, Date, Message-ID and a
/// `multipart/alternative` body of a `text/plain` and a `text/html` part, both UTF-8 and
/// quoted-printable (readable in the raw file, and no line over 76 characters however long
/// the links are).
fn message(from: &Mailbox, email: &Email) -> Result<Message, MailError> {
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|_| MailError::permanent("the recipient is not a valid email address"))?;
    let part = |content_type: ContentType, body: &str| {
        SinglePart::builder()
            .header(content_type)
            .header(ContentTransferEncoding::QuotedPrintable)
            .body(body.to_owned())
    };
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(email.subject.as_str())
        .date_now()
        .message_id(None)
        .multipart(
            MultiPart::alternative()
                .singlepart(part(ContentType::TEXT_PLAIN, &email.text))
                .singlepart(part(ContentType::TEXT_HTML, &email.html)),
        )
        .map_err(|e| MailError::permanent(format!("building the message failed: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn email(to: &str) -> Email {
        Email {
            to: to.to_owned(),
            subject: "Sign in to Palisade".to_owned(),
            text: format!(
                "Hello,\n\nsign in with this link:\nhttps://palisade.example.com/sign-in?token={}&next=%2Fworkspaces%2Fws_01hzzzzzzzzzzzzzzzzzzzzzzz\n\nIt expires in 15 minutes. Grüße.\n",
                "A".repeat(43)
            ),
            html: "<p>Sign in: <a href=\"https://palisade.example.com/sign-in?token=abc\">link</a> — Grüße</p>".to_owned(),
            kind: "magic_link",
        }
    }

    /// Headers (unfolded) and body of one MIME entity.
    fn split(raw: &str) -> (Vec<(String, String)>, &str) {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                headers.last_mut().unwrap().1.push_str(line);
            } else {
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        (headers, body)
    }

    fn get<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn file_outbox_writes_a_private_multipart_alternative_message() {
        let dir = tempfile::tempdir().unwrap();
        let outbox_dir = dir.path().join("outbox");
        let outbox =
            FileOutbox::new(&outbox_dir, "Palisade <noreply@palisade.example.com>").unwrap();
        let sent = email("alice@example.com");

        let place = outbox.send(&sent).await.unwrap();

        assert!(
            !place.contains("alice"),
            "the returned place names the recipient"
        );
        let path = PathBuf::from(&place);
        assert_eq!(path.parent().unwrap(), outbox_dir);
        let name = path.file_name().unwrap().to_str().unwrap();
        // `YYYYMMDDTHHMMSS.ffffffZ-magic_link-xxxxxxxx.eml`
        let (stamp, rest) = name.split_at(23);
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "99999999T999999.999999Z", "{name}");
        let random = rest
            .strip_prefix("-magic_link-")
            .and_then(|r| r.strip_suffix(".eml"))
            .unwrap();
        assert!(
            random.len() == 8 && random.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
        let entries: Vec<_> = std::fs::read_dir(&outbox_dir).unwrap().collect();
        assert_eq!(entries.len(), 1, "a temporary file was left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&outbox_dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }

        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(raw.is_ascii(), "the message is not 7-bit clean");
        assert!(
            raw.lines().all(|l| l.len() <= 78),
            "a line is over 78 characters"
        );
        let (headers, body) = split(&raw);
        assert_eq!(
            get(&headers, "from"),
            Some("Palisade <noreply@palisade.example.com>")
        );
        assert_eq!(get(&headers, "to"), Some("alice@example.com"));
        assert_eq!(get(&headers, "subject"), Some("Sign in to Palisade"));
        assert_eq!(get(&headers, "mime-version"), Some("1.0"));
        assert!(get(&headers, "date").is_some());
        let message_id = get(&headers, "message-id").unwrap();
        assert!(
            message_id.starts_with('<') && message_id.ends_with('>') && message_id.contains('@')
        );
        let content_type = get(&headers, "content-type").unwrap();
        assert!(
            content_type.starts_with("multipart/alternative;"),
            "{content_type}"
        );
        let boundary = content_type
            .split("boundary=")
            .nth(1)
            .unwrap()
            .trim_matches('"');

        let parts: Vec<&str> = body
            .split(&format!("--{boundary}"))
            .skip(1)
            .filter(|p| !p.starts_with("--"))
            .collect();
        assert_eq!(parts.len(), 2);
        for (part, (content_type, expected)) in parts.iter().zip([
            ("text/plain; charset=utf-8", &sent.text),
            ("text/html; charset=utf-8", &sent.html),
        ]) {
            let (headers, body) = split(part.trim_start_matches("\r\n"));
            assert_eq!(get(&headers, "content-type"), Some(content_type));
            assert_eq!(
                get(&headers, "content-transfer-encoding"),
                Some("quoted-printable")
            );
            let decoded = quoted_printable::decode(
                body.strip_suffix("\r\n").unwrap(),
                quoted_printable::ParseMode::Strict,
            )
            .unwrap();
            let decoded = String::from_utf8(decoded).unwrap().replace("\r\n", "\n");
            assert_eq!(&decoded, expected);
        }
    }

    #[tokio::test]
    async fn bad_recipient_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::new(dir.path(), "noreply@palisade.example.com").unwrap();
        for to in ["not an address", "", "a@b\r\nBcc: eve@example.com"] {
            let e = outbox.send(&email(to)).await.unwrap_err();
            assert!(e.permanent, "{to:?}: {e}");
            assert!(!e.message.contains("eve"), "{e}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let smtp = SmtpMailer::new(settings("noreply@palisade.example.com")).unwrap();
        let e = smtp.send(&email("not an address")).await.unwrap_err();
        assert!(e.permanent, "{e}");
    }

    fn settings(from: &str) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: None,
            security: SmtpSecurity::None,
            username: Some("mailer".to_owned()),
            password: Some(SecretString::from("hunter2-very-secret")),
            from: from.to_owned(),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn smtp_mailer_is_built_outside_a_runtime_and_hides_its_password() {
        let mailer = SmtpMailer::new(settings("noreply@palisade.example.com")).unwrap();
        assert_eq!(mailer.relay(), "127.0.0.1:25");
        let debug = format!("{mailer:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn bad_from_is_a_construction_error() {
        let e = SmtpMailer::new(settings("not a mailbox")).unwrap_err();
        assert!(e.message.contains("`from`"), "{e}");
        let e = FileOutbox::new("outbox", "").unwrap_err();
        assert!(e.message.contains("`from`"), "{e}");
    }

    #[test]
    fn password_without_username_is_refused() {
        let mut s = settings("noreply@palisade.example.com");
        s.username = None;
        let e = SmtpMailer::new(s).unwrap_err();
        assert!(!e.message.contains("hunter2"), "{e}");
    }

    #[test]
    fn security_names_and_default_ports() {
        for (security, name, port) in [
            (SmtpSecurity::Starttls, "\"starttls\"", 587),
            (SmtpSecurity::Tls, "\"tls\"", 465),
            (SmtpSecurity::None, "\"none\"", 25),
        ] {
            assert_eq!(serde_json::to_string(&security).unwrap(), name);
            assert_eq!(
                serde_json::from_str::<SmtpSecurity>(name).unwrap(),
                security
            );
            assert_eq!(security.default_port(), port);
        }
    }
}
