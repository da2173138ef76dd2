//! A real SMTP server for tests, on `127.0.0.1:0`: speaks enough ESMTP for lettre (EHLO, AUTH
//! PLAIN and LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), accepts every message and keeps it, so
//! a test can wait for the message a request caused and read its link or code (recipients in
//! [`REFUSED_DOMAIN`] are refused, for the permanent-failure path). The MIME helpers
//! ([`header`], [`text_body`], [`html_body`]) read the raw text of a received message or of an
//! `.eml` file from the outbox alike.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Recipients in this domain are refused at `RCPT TO` (550), as a relay refuses a mailbox that
/// does not exist.
pub const REFUSED_DOMAIN: &str = "@refused.test";

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-stuffing undone, CRLF line ends, ending in CRLF.
    pub data: String,
    /// `(user, password)` from the connection's AUTH PLAIN or LOGIN, if it authenticated.
    pub auth: Option<(String, String)>,
}

impl Received {
    /// The unfolded header `name`, as in [`header`].
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.data, name)
    }

    /// The `Subject`, RFC 2047 encoded-words decoded.
    pub fn subject(&self) -> Option<String> {
        self.header("subject").map(|s| decode_words(&s))
    }

    /// The plain-text part, decoded, as in [`text_body`].
    pub fn text_body(&self) -> String {
        text_body(&self.data)
    }

    /// The HTML part, decoded, as in [`html_body`].
    pub fn html_body(&self) -> String {
        html_body(&self.data)
    }
}

/// The running sink; stops (with every connection) when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    port: u16,
    received: watch::Receiver<Vec<Received>>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Listens on `127.0.0.1` on a free port and serves until dropped.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, received) = watch::channel(Vec::new());
        let sender = Arc::new(sender);
        let task = tokio::spawn(async move {
            // Owned here so that stopping the sink also ends its open connections.
            let mut sessions = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while sessions.try_join_next().is_some() {}
                let sender = Arc::clone(&sender);
                sessions.spawn(async move {
                    // A client that hangs up or sends garbage just ends its session.
                    let _ = session(stream, &sender).await;
                });
            }
        });
        Self {
            port,
            received,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<Received> {
        self.received.borrow().clone()
    }

    /// The first message (already received or still to come) that satisfies `predicate`;
    /// panics if none arrived within `timeout`.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&Received) -> bool,
        timeout: Duration,
    ) -> Received {
        let mut received = self.received.clone();
        let found = tokio::time::timeout(timeout, async {
            let all = received
                .wait_for(|all| all.iter().any(&predicate))
                .await
                .expect("the SMTP sink stopped");
            all.iter().find(|m| predicate(m)).cloned()
        })
        .await;
        match found {
            Ok(Some(message)) => message,
            _ => {
                let seen: Vec<String> = self
                    .messages()
                    .iter()
                    .map(|m| format!("{} -> {:?}: {:?}", m.from, m.to, m.subject()))
                    .collect();
                panic!(
                    "no matching message reached the SMTP sink within {timeout:?}; it received {}: {seen:#?}",
                    seen.len()
                )
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection until QUIT or until the client goes away.
async fn session(stream: TcpStream, sink: &watch::Sender<Vec<Received>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut auth: Option<(String, String)> = None;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    reply(&mut write, "220 sink.test ESMTP test sink").await?;
    while let Some(line) = read_line(&mut read).await? {
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" => {
                reply(
                    &mut write,
                    "250-sink.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8",
                )
                .await?;
            }
            "HELO" => reply(&mut write, "250 sink.test").await?,
            "AUTH" => {
                let (mechanism, initial) = match arg.split_once(' ') {
                    Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_owned())),
                    None => (arg.to_ascii_uppercase(), None),
                };
                let credentials = match mechanism.as_str() {
                    "PLAIN" => {
                        let response = match initial {
                            Some(i) => i,
                            None => {
                                reply(&mut write, "334 ").await?;
                                read_line(&mut read).await?.unwrap_or_default()
                            }
                        };
                        decode_plain(&response)
                    }
                    "LOGIN" => {
                        let user = match initial {
                            Some(i) => i,
                            None => {
                                reply(&mut write, "334 VXNlcm5hbWU6").await?;
                                read_line(&mut read).await?.unwrap_or_default()
                            }
                        };
                        reply(&mut write, "334 UGFzc3dvcmQ6").await?;
                        let password = read_line(&mut read).await?.unwrap_or_default();
                        decode_b64_text(&user).zip(decode_b64_text(&password))
                    }
                    _ => {
                        reply(&mut write, "504 5.5.4 mechanism not supported").await?;
                        continue;
                    }
                };
                match credentials {
                    Some(c) => {
                        auth = Some(c);
                        reply(&mut write, "235 2.7.0 authenticated").await?;
                    }
                    None => reply(&mut write, "501 5.5.2 cannot decode the response").await?,
                }
            }
            "MAIL" => match path_arg(arg, "FROM:") {
                Some(sender) => {
                    from = Some(sender);
                    to.clear();
                    reply(&mut write, "250 2.1.0 OK").await?;
                }
                None => reply(&mut write, "501 5.5.4 syntax: MAIL FROM:<address>").await?,
            },
            "RCPT" => match (&from, path_arg(arg, "TO:")) {
                (None, _) => reply(&mut write, "503 5.5.1 MAIL first").await?,
                (Some(_), Some(recipient)) if recipient.ends_with(REFUSED_DOMAIN) => {
                    // Real relays quote the address in their refusal; so does this one.
                    let refusal = format!("550 5.1.1 <{recipient}>: recipient address rejected");
                    reply(&mut write, &refusal).await?;
                }
                (Some(_), Some(recipient)) => {
                    to.push(recipient);
                    reply(&mut write, "250 2.1.5 OK").await?;
                }
                (Some(_), None) => reply(&mut write, "501 5.5.4 syntax: RCPT TO:<address>").await?,
            },
            "DATA" => {
                let Some(sender) = from.clone().filter(|_| !to.is_empty()) else {
                    reply(&mut write, "503 5.5.1 MAIL and RCPT first").await?;
                    continue;
                };
                reply(&mut write, "354 end data with <CR><LF>.<CR><LF>").await?;
                let data = read_data(&mut read).await?;
                from = None;
                let message = Received {
                    from: sender,
                    to: std::mem::take(&mut to),
                    data,
                    auth: auth.clone(),
                };
                sink.send_modify(|all| all.push(message));
                reply(&mut write, "250 2.0.0 OK queued").await?;
            }
            "RSET" => {
                from = None;
                to.clear();
                reply(&mut write, "250 2.0.0 OK").await?;
            }
            "NOOP" => reply(&mut write, "250 2.0.0 OK").await?,
            "QUIT" => {
                reply(&mut write, "221 2.0.0 bye").await?;
                return Ok(());
            }
            _ => reply(&mut write, "502 5.5.2 command not recognized").await?,
        }
    }
    Ok(())
}

async fn reply(write: &mut OwnedWriteHalf, text: &str) -> std::io::Result<()> {
    write.write_all(text.as_bytes()).await?;
    write.write_all(b"\r\n").await?;
    write.flush().await
}

/// One command line without its line end; `None` at end of stream.
async fn read_line(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    if read.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&line);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// The message after DATA, up to the lone `.` line, with the leading dot of stuffed lines removed.
async fn read_data(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            break;
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(line);
    }
    Ok(String::from_utf8_lossy(&data).into_owned())
}

/// `FROM:<a@example.com> BODY=8BITMIME` → `a@example.com`.
fn path_arg(arg: &str, keyword: &str) -> Option<String> {
    let rest = arg.get(..keyword.len())?;
    if !rest.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let path = arg[keyword.len()..].trim_start();
    let path = path.strip_prefix('<')?;
    let end = path.find('>')?;
    Some(path[..end].to_owned())
}

/// SASL PLAIN: base64 of `authzid NUL authcid NUL password`.
fn decode_plain(response: &str) -> Option<(String, String)> {
    let text = decode_b64_text(response)?;
    let mut fields = text.split('\0');
    let _authzid = fields.next()?;
    let user = fields.next()?.to_owned();
    let password = fields.next()?.to_owned();
    fields.next().is_none().then_some((user, password))
}

fn decode_b64_text(text: &str) -> Option<String> {
    let text = text.trim();
    if text == "=" {
        return Some(String::new());
    }
    String::from_utf8(STANDARD.decode(text).ok()?).ok()
}

/// The header `name` (case-insensitive) of a raw message (CRLF or LF line ends), unfolded;
/// encoded-words are left as they are (see [`decode_words`]).
pub fn header(raw: &str, name: &str) -> Option<String> {
    let raw = raw.replace("\r\n", "\n");
    let (headers, _) = split_entity(&raw);
    headers
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The `text/plain` part of a raw message, transfer encoding undone, line ends as `\n`.
pub fn text_body(raw: &str) -> String {
    find_part(raw, "text/plain")
}

/// The `text/html` part of a raw message, transfer encoding undone, line ends as `\n`.
pub fn html_body(raw: &str) -> String {
    find_part(raw, "text/html")
}

fn find_part(raw: &str, mime_type: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    match part_of(&raw, mime_type) {
        Some(body) => body,
        None => panic!("the message has no {mime_type} part:\n{raw}"),
    }
}

/// Searches one MIME entity (and, if it is multipart, its parts) for a `mime_type` part.
fn part_of(entity: &str, mime_type: &str) -> Option<String> {
    let (headers, body) = split_entity(entity);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let content_type = get("content-type").unwrap_or_else(|| "text/plain".to_owned());
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.starts_with("multipart/") {
        let boundary = param(&content_type, "boundary")?;
        return multipart_parts(body, &boundary)
            .into_iter()
            .find_map(|part| part_of(&part, mime_type));
    }
    if essence != mime_type {
        return None;
    }
    let encoding = get("content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            STANDARD
                .decode(compact)
                .expect("the base64 part does not decode")
        }
        _ => body.as_bytes().to_vec(),
    };
    let text = String::from_utf8(bytes).expect("the part is not UTF-8");
    Some(text.replace("\r\n", "\n"))
}

/// Headers (unfolded, in order) and body of an entity with `\n` line ends.
fn split_entity(entity: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = if let Some(rest) = entity.strip_prefix('\n') {
        ("", rest)
    } else {
        entity.split_once("\n\n").unwrap_or((entity, ""))
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split('\n') {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    for (_, value) in &mut headers {
        *value = value.trim().to_owned();
    }
    (headers, body)
}

/// The parameter `name` of a structured header value (`multipart/alternative; boundary="x"`).
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (n, v) = p.split_once('=')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The parts between `--boundary` lines (the line end before a delimiter belongs to it).
fn multipart_parts(body: &str, boundary: &str) -> Vec<String> {
    let delimiter = format!("--{boundary}");
    let closing = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.split('\n') {
        let trimmed = line.trim_end();
        if trimmed == closing {
            parts.extend(current.take().map(|lines| lines.join("\n")));
            break;
        }
        if trimmed == delimiter {
            parts.extend(current.take().map(|lines| lines.join("\n")));
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    parts
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` escapes and `=` soft line breaks; expects `\n` ends.
fn decode_quoted_printable(body: &str) -> Vec<u8> {
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'=' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        // A soft line break: `=` and optional trailing whitespace before the line end.
        let rest = &body[i + 1..];
        let after_space = rest.trim_start_matches([' ', '\t']);
        if let Some(next) = after_space.strip_prefix('\n') {
            i = bytes.len() - next.len();
            continue;
        }
        if after_space.is_empty() {
            break;
        }
        match rest
            .get(..2)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    out
}

/// Decodes RFC 2047 encoded-words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) in a header value;
/// whitespace between two adjacent encoded-words is dropped, as the RFC says.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut between = String::new();
    let mut rest = value;
    while !rest.is_empty() {
        if let Some((decoded, after)) = encoded_word(rest) {
            if pending.is_empty() {
                out.push_str(&std::mem::take(&mut between));
            } else {
                between.clear();
            }
            pending.extend(decoded);
            rest = after;
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        if c == ' ' || c == '\t' {
            between.push(c);
        } else {
            if !pending.is_empty() {
                out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut pending)));
            }
            out.push_str(&std::mem::take(&mut between));
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push_str(&String::from_utf8_lossy(&pending));
    out.push_str(&between);
    out
}

/// One encoded-word at the start of `text`: its bytes and the text after it.
fn encoded_word(text: &str) -> Option<(Vec<u8>, &str)> {
    let inner = text.strip_prefix("=?")?;
    let (_charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let (payload, after) = (&inner[..end], &inner[end + 2..]);
    let decoded = match encoding {
        "b" | "B" => STANDARD.decode(payload).ok()?,
        "q" | "Q" => decode_quoted_printable(&payload.replace('_', " ")),
        _ => return None,
    };
    Some((decoded, after))
}
