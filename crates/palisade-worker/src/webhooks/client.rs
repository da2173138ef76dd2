//! The HTTP client webhook deliveries go through (WHK-5), safe against server-side request
//! forgery: it only ever connects to addresses the [`TargetPolicy`] permits, which are public
//! unicast addresses plus the CIDRs the operator allow-listed.
//!
//! A URL is checked twice. [`TargetPolicy::check_url`] runs when an endpoint is created or
//! changed, so a bad URL is refused with a clear reason. [`WebhookClient::post`] checks again at
//! connect time, because DNS answers change: an IP-literal host is judged before anything is
//! sent (reqwest never asks a resolver about it), and a host name is resolved by
//! [`PolicyResolver`], which hands reqwest only the permitted addresses of that very lookup.
//! A name that resolved to a public address when the endpoint was saved and to `127.0.0.1` now
//! (DNS rebinding) therefore gets no connection at all.
//!
//! The client never follows redirects (a `3xx` could point anywhere), never uses a proxy from
//! the environment, and never puts header values or the request body into an error: those carry
//! signatures and customer data.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;
use tracing::debug;
use url::{Host, Url};

/// How much of a response body is read and kept; the rest is never read.
pub const MAX_RESPONSE_BODY: usize = 4096;

/// How long [`TargetPolicy::check_url`] waits for a host name to resolve.
const CHECK_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which targets the client may reach: everything public, plus `allow` (CIDRs the operator
/// allow-listed).
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    pub allow: Vec<IpNet>,
}

impl TargetPolicy {
    /// Whether Palisade may connect to `ip`: public unicast, or inside an allow-listed CIDR.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.refusal(ip).is_none()
    }

    /// Checks a webhook URL when an endpoint is created or changed: scheme http or https, a
    /// host, no userinfo (`user:pass@`), and an IP-literal host must be permitted; a host name
    /// is resolved (2 s timeout) and refused if any address it resolves to is not permitted.
    /// A resolution failure is accepted: the connect-time check still applies. `Err` is a short
    /// sentence naming the problem, e.g. "resolves to a loopback address, which is
    /// not allowed"; it never repeats the userinfo.
    pub async fn check_url(&self, url: &Url) -> Result<(), String> {
        if let Some(problem) = shape_problem(url) {
            return Err(problem);
        }
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_literal(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_literal(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => {
                let port = url.port_or_known_default().unwrap_or(0);
                let lookup = tokio::net::lookup_host((name, port));
                let Ok(Ok(addrs)) = tokio::time::timeout(CHECK_RESOLVE_TIMEOUT, lookup).await
                else {
                    return Ok(());
                };
                for addr in addrs {
                    if let Some(refusal) = self.refusal(addr.ip()) {
                        // The kind only: the address a name resolves to inside the operator's
                        // network is not the caller's to learn.
                        return Err(format!(
                            "resolves to {}, which is not allowed",
                            refusal.kind
                        ));
                    }
                }
                Ok(())
            }
            None => Err("the URL has no host".to_owned()),
        }
    }

    fn check_literal(&self, ip: IpAddr) -> Result<(), String> {
        match self.refusal(ip) {
            None => Ok(()),
            Some(refusal) => Err(format!(
                "points to {}, which is not allowed",
                refusal.described()
            )),
        }
    }

    /// Why `ip` may not be reached, or `None` when it may. An allow-list entry matches the
    /// address itself or, for an IPv4-mapped IPv6 address, the IPv4 address it stands for
    /// (both reach the same socket).
    fn refusal(&self, ip: IpAddr) -> Option<Refusal> {
        let canonical = ip.to_canonical();
        if self
            .allow
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return None;
        }
        let (kind, embedded) = match ip {
            IpAddr::V4(v4) => (classify_v4(v4)?, None),
            IpAddr::V6(v6) => classify_v6(v6)?,
        };
        Some(Refusal { ip, kind, embedded })
    }
}

/// Why an address was refused: the kind of range it is in, and for IPv6 forms that carry an
/// IPv4 address (mapped, compatible, NAT64, 6to4) the embedded address it was judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    ip: IpAddr,
    kind: &'static str,
    embedded: Option<Ipv4Addr>,
}

impl Refusal {
    /// "a loopback address (127.0.0.1)", for sentences about a URL.
    fn described(&self) -> String {
        match self.embedded {
            None => format!("{} ({})", self.kind, self.ip),
            Some(v4) => format!("{} ({}, which embeds {v4})", self.kind, self.ip),
        }
    }
}

impl fmt::Display for Refusal {
    /// "127.0.0.1 is a loopback address", for delivery errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}", self.ip, self.kind)?;
        if let Some(v4) = self.embedded {
            write!(f, " (it embeds {v4})")?;
        }
        Ok(())
    }
}

const fn v4net(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6net(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

const PRIVATE: &str = "a private address";
const RESERVED: &str = "a reserved address";
const DOCUMENTATION: &str = "a documentation address";

/// IPv4 ranges that are not public (RFC 6890's special-purpose registry); the first match
/// names the kind, so the broadcast address comes before the reserved 240/4 it sits in.
const V4_BLOCKED: &[(Ipv4Net, &str)] = &[
    (v4net(0, 0, 0, 0, 8), "an unspecified address"),
    (v4net(10, 0, 0, 0, 8), PRIVATE),
    (
        v4net(100, 64, 0, 0, 10),
        "a shared (carrier-grade NAT) address",
    ),
    (v4net(127, 0, 0, 0, 8), "a loopback address"),
    (v4net(169, 254, 0, 0, 16), "a link-local address"),
    (v4net(172, 16, 0, 0, 12), PRIVATE),
    (v4net(192, 0, 0, 0, 24), RESERVED),
    (v4net(192, 0, 2, 0, 24), DOCUMENTATION),
    (v4net(192, 88, 99, 0, 24), RESERVED),
    (v4net(192, 168, 0, 0, 16), PRIVATE),
    (v4net(198, 18, 0, 0, 15), "a benchmarking address"),
    (v4net(198, 51, 100, 0, 24), DOCUMENTATION),
    (v4net(203, 0, 113, 0, 24), DOCUMENTATION),
    (v4net(224, 0, 0, 0, 4), "a multicast address"),
    (v4net(255, 255, 255, 255, 32), "a broadcast address"),
    (v4net(240, 0, 0, 0, 4), RESERVED),
];

/// IPv6 ranges inside global unicast 2000::/3 that are not public, and those outside it worth
/// naming; everything else outside 2000::/3 is reserved.
const V6_BLOCKED: &[(Ipv6Net, &str)] = &[
    (
        v6net([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "a link-local address",
    ),
    (
        v6net([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "a site-local address",
    ),
    (
        v6net([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "a unique local address",
    ),
    (
        v6net([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "a multicast address",
    ),
    (v6net([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), DOCUMENTATION),
    (v6net([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), DOCUMENTATION),
    // IETF protocol assignments: Teredo, benchmarking (2001:2::/48), ORCHID and the like.
    (v6net([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), RESERVED),
];

const V6_GLOBAL_UNICAST: Ipv6Net = v6net([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);
const V6_NAT64: Ipv6Net = v6net([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
const V6_6TO4: Ipv6Net = v6net([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

/// The kind of non-public range `ip` is in, or `None` for a public address.
fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    V4_BLOCKED
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|&(_, kind)| kind)
}

/// Like [`classify_v4`]; an address carrying an IPv4 address is judged by that address.
fn classify_v6(ip: Ipv6Addr) -> Option<(&'static str, Option<Ipv4Addr>)> {
    if ip.is_unspecified() {
        return Some(("an unspecified address", None));
    }
    if ip.is_loopback() {
        return Some(("a loopback address", None));
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4).map(|kind| (kind, Some(v4)));
    }
    if let Some(&(_, kind)) = V6_BLOCKED.iter().find(|(net, _)| net.contains(&ip)) {
        return Some((kind, None));
    }
    if !V6_GLOBAL_UNICAST.contains(&ip) {
        return Some((RESERVED, None));
    }
    None
}

/// The IPv4 address an IPv6 address stands for: `::ffff:a.b.c.d` (mapped), `::a.b.c.d`
/// (compatible, deprecated), `64:ff9b::a.b.c.d` (NAT64) or `2002:AABB:CCDD::/48` (6to4).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = ip.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let mapped_or_compatible = o[..10] == [0; 10] && matches!(o[10..12], [0xff, 0xff] | [0, 0]);
    if mapped_or_compatible || V6_NAT64.contains(&ip) {
        Some(last)
    } else if V6_6TO4.contains(&ip) {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else {
        None
    }
}

/// What is wrong with a URL before any address is looked at: scheme, host, userinfo.
fn shape_problem(url: &Url) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Some(format!(
            "the URL scheme must be http or https, not {}",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("the URL must not contain a user name or password".to_owned());
    }
    if url.host().is_none() {
        return Some("the URL has no host".to_owned());
    }
    None
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub policy: TargetPolicy,
    /// The whole exchange, connect to last body byte read (15 s in production).
    pub timeout: Duration,
    pub user_agent: String,
}

/// Posts webhook payloads. Cheap to clone; clones share one connection pool.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
    timeout: Duration,
}

/// What one POST produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    /// `None` when no response came.
    pub status: Option<u16>,
    /// From the start of the attempt to the end of reading the (kept part of the) body.
    pub latency: Duration,
    /// The first [`MAX_RESPONSE_BODY`] bytes of the response body, lossy UTF-8.
    pub body: String,
    /// `None` on 2xx; else "HTTP 503", "timed out after 15s", "refused: 127.0.0.1 is a
    /// loopback address", "connection refused", "redirect (302) not followed", …
    pub error: Option<String>,
}

impl WebhookClient {
    /// Builds the client: no redirects, no proxy, names resolved through the policy.
    pub fn new(config: ClientConfig) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(config.policy);
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(PolicyResolver {
                policy: Arc::clone(&policy),
            })
            .http1_only()
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(Self {
            client,
            policy,
            timeout: config.timeout,
        })
    }

    /// POSTs `body` with `headers` to `url`; the content type is always `application/json`.
    /// Never follows redirects (a 3xx is a failure whose error says so), never uses a proxy from
    /// the environment, gives up after the configured timeout, and refuses any target address
    /// the policy does not permit without opening a connection.
    pub async fn post(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> SendOutcome {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let failed = |error: String| SendOutcome {
            status: None,
            latency: start.elapsed(),
            body: String::new(),
            error: Some(error),
        };

        let url = match Url::parse(url) {
            Ok(url) => url,
            Err(e) => return failed(format!("invalid URL: {e}")),
        };
        if let Some(problem) = shape_problem(&url) {
            return failed(problem);
        }
        // reqwest connects to an IP-literal host without asking the resolver, so judge it here.
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(refusal) = literal.and_then(|ip| self.policy.refusal(ip)) {
            return failed(format!("refused: {refusal}"));
        }
        let headers = match header_map(headers) {
            Ok(headers) => headers,
            Err(e) => return failed(e),
        };

        let request = self.client.post(url).headers(headers).body(body).send();
        let mut response = match tokio::time::timeout_at(deadline, request).await {
            Err(_) => return failed(self.timed_out()),
            Ok(Err(e)) => return failed(self.send_error(&e)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let body = read_prefix(&mut response, deadline).await;
        let error = if status.is_success() {
            None
        } else if status.is_redirection() {
            Some(format!("redirect ({}) not followed", status.as_u16()))
        } else {
            Some(format!("HTTP {}", status.as_u16()))
        };
        SendOutcome {
            status: Some(status.as_u16()),
            latency: start.elapsed(),
            body,
            error,
        }
    }

    fn timed_out(&self) -> String {
        let t = self.timeout;
        if t.subsec_nanos() == 0 {
            format!("timed out after {}s", t.as_secs())
        } else {
            format!("timed out after {}ms", t.as_millis())
        }
    }

    /// A short reason for a failed send. reqwest's own `Display` names the URL, whose query may
    /// hold a token, so the reason comes from the causes underneath it.
    fn send_error(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return self.timed_out();
        }
        let mut innermost: Option<&(dyn StdError + 'static)> = None;
        let mut cause = e.source();
        while let Some(err) = cause {
            if let Some(resolve) = err.downcast_ref::<ResolveError>() {
                return resolve.to_string();
            }
            if let Some(io) = err.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                    io::ErrorKind::ConnectionReset => return "connection reset".to_owned(),
                    io::ErrorKind::TimedOut => return "connection timed out".to_owned(),
                    _ => {}
                }
            }
            innermost = Some(err);
            cause = err.source();
        }
        let what = if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        match innermost {
            Some(err) => format!("{what}: {err}"),
            None => what.to_owned(),
        }
    }
}

/// The request headers; an error names the bad header but never repeats a value.
fn header_map(headers: &[(&str, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len() + 1);
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header {header}"))?;
        // Keeps signatures out of any debug output of the HTTP stack.
        value.set_sensitive(true);
        map.append(header, value);
    }
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(map)
}

/// Reads at most [`MAX_RESPONSE_BODY`] bytes of the body, until `deadline`; whatever arrived is
/// kept if reading fails or runs out of time, since the status already says how it went.
async fn read_prefix(response: &mut reqwest::Response, deadline: Instant) -> String {
    let mut kept = Vec::new();
    while kept.len() < MAX_RESPONSE_BODY {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let take = chunk.len().min(MAX_RESPONSE_BODY - kept.len());
                kept.extend_from_slice(&chunk[..take]);
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// Resolves host names for the client, and hands reqwest only the addresses the policy
/// permits, so the connection goes to an address checked in the same lookup.
#[derive(Debug)]
struct PolicyResolver {
    policy: Arc<TargetPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_permitted(
            Arc::clone(&self.policy),
            name.as_str().to_owned(),
        ))
    }
}

async fn resolve_permitted(policy: Arc<TargetPolicy>, host: String) -> Result<Addrs, BoxError> {
    let lookup = tokio::net::lookup_host((host.as_str(), 0)).await;
    let found: Vec<SocketAddr> = match lookup.map(Iterator::collect) {
        Ok(found) => found,
        Err(error) => return Err(ResolveError::Lookup { host, error }.into()),
    };
    let mut refused = None;
    let permitted: Vec<SocketAddr> = found
        .into_iter()
        .filter(|addr| match policy.refusal(addr.ip()) {
            None => true,
            Some(refusal) => {
                refused.get_or_insert(refusal);
                false
            }
        })
        .collect();
    match (permitted.is_empty(), refused) {
        (true, Some(refusal)) => Err(ResolveError::Refused { host, refusal }.into()),
        (true, None) => Err(ResolveError::NoAddresses { host }.into()),
        (false, refused) => {
            if let Some(refusal) = refused {
                debug!(%host, %refusal, "skipping addresses the webhook policy refuses");
            }
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        }
    }
}

/// Why [`PolicyResolver`] gave reqwest no address; its `Display` is the delivery error.
#[derive(Debug)]
enum ResolveError {
    Refused { host: String, refusal: Refusal },
    Lookup { host: String, error: io::Error },
    NoAddresses { host: String },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The kind of address only, as in `check_url`.
            Self::Refused { host, refusal } => write!(
                f,
                "refused: {host} resolves only to addresses that are not allowed ({})",
                refusal.kind
            ),
            Self::Lookup { host, error } => write!(f, "could not resolve {host}: {error}"),
            Self::NoAddresses { host } => write!(f, "could not resolve {host}: no addresses"),
        }
    }
}

impl StdError for ResolveError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Lookup { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn loopback_only() -> TargetPolicy {
        TargetPolicy {
            allow: vec!["127.0.0.1/32".parse().unwrap()],
        }
    }

    fn client(policy: TargetPolicy, timeout: Duration) -> WebhookClient {
        WebhookClient::new(ClientConfig {
            policy,
            timeout,
            user_agent: "Palisade-Webhooks/test".to_owned(),
        })
        .unwrap()
    }

    #[test]
    fn permits_follows_the_special_purpose_ranges() {
        let policy = TargetPolicy::default();
        #[rustfmt::skip]
        let rows: &[(&str, bool)] = &[
            // IPv4 public
            ("8.8.8.8", true), ("1.1.1.1", true), ("93.184.215.14", true),
            ("100.63.255.255", true), ("100.128.0.0", true), ("172.15.255.255", true),
            ("172.32.0.0", true), ("198.17.255.255", true), ("198.20.0.0", true),
            ("223.255.255.255", true), ("11.0.0.1", true), ("169.253.255.255", true),
            // IPv4 refused
            ("127.0.0.1", false), ("127.255.255.254", false),
            ("10.0.0.1", false), ("10.255.255.255", false),
            ("172.16.0.1", false), ("172.31.255.255", false),
            ("192.168.0.1", false), ("192.168.255.255", false),
            ("169.254.0.1", false), ("169.254.169.254", false),
            ("100.64.0.1", false), ("100.127.255.255", false),
            ("0.0.0.0", false), ("0.1.2.3", false),
            ("255.255.255.255", false),
            ("224.0.0.1", false), ("239.255.255.255", false),
            ("240.0.0.1", false), ("254.255.255.255", false),
            ("192.0.2.1", false), ("198.51.100.7", false), ("203.0.113.9", false),
            ("198.18.0.1", false), ("198.19.255.255", false),
            ("192.0.0.8", false), ("192.88.99.1", false),
            // IPv6 public
            ("2606:4700:4700::1111", true), ("2001:4860:4860::8888", true),
            ("2a00:1450:4001::200e", true),
            // IPv6 refused
            ("::1", false), ("::", false),
            ("fe80::1", false), ("febf:ffff::1", false),
            ("fc00::1", false), ("fd12:3456::1", false),
            ("ff02::1", false), ("ff0e::1", false),
            ("2001:db8::1", false), ("3fff::1", false),
            ("2001::1", false), ("fec0::1", false), ("100::1", false), ("64:ff9b:1::1", false),
            // IPv4 embedded in IPv6: judged by the IPv4 address
            ("::ffff:127.0.0.1", false), ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false), ("::ffff:8.8.8.8", true),
            ("::127.0.0.1", false), ("::10.1.2.3", false), ("::8.8.8.8", true),
            ("64:ff9b::127.0.0.1", false), ("64:ff9b::192.168.1.1", false),
            ("64:ff9b::8.8.8.8", true),
            ("2002:7f00:1::", false), ("2002:a9fe:a9fe::1", false), ("2002:808:808::1", true),
        ];
        for &(addr, expected) in rows {
            assert_eq!(policy.permits(ip(addr)), expected, "{addr}");
        }
    }

    #[test]
    fn an_allow_list_entry_permits_exactly_its_cidr() {
        let policy = loopback_only();
        #[rustfmt::skip]
        let rows: &[(&str, bool)] = &[
            ("127.0.0.1", true), ("::ffff:127.0.0.1", true),
            ("127.0.0.2", false), ("127.1.0.1", false), ("::1", false),
            ("10.0.0.1", false), ("169.254.169.254", false), ("8.8.8.8", true),
        ];
        for &(addr, expected) in rows {
            assert_eq!(policy.permits(ip(addr)), expected, "{addr}");
        }
        let wide = TargetPolicy {
            allow: vec!["10.1.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
        };
        assert!(wide.permits(ip("10.1.200.3")));
        assert!(!wide.permits(ip("10.2.0.1")));
        assert!(wide.permits(ip("fd00::5")));
        assert!(!wide.permits(ip("fc00::5")));
    }

    async fn check(policy: &TargetPolicy, url: &str) -> Result<(), String> {
        policy.check_url(&Url::parse(url).unwrap()).await
    }

    #[tokio::test]
    async fn check_url_refuses_internal_targets_in_every_spelling() {
        let policy = TargetPolicy::default();
        let rows: &[(&str, &str)] = &[
            (
                "http://127.0.0.1/hook",
                "points to a loopback address (127.0.0.1)",
            ),
            ("http://[::1]:8080/", "points to a loopback address (::1)"),
            (
                "https://10.0.0.1/",
                "points to a private address (10.0.0.1)",
            ),
            (
                "http://169.254.169.254/latest/meta-data/",
                "points to a link-local address (169.254.169.254)",
            ),
            (
                "http://[::ffff:127.0.0.1]/",
                "points to a loopback address (::ffff:127.0.0.1, which embeds 127.0.0.1)",
            ),
            (
                "http://2130706433/",
                "points to a loopback address (127.0.0.1)",
            ),
            (
                "http://0177.0.0.1/",
                "points to a loopback address (127.0.0.1)",
            ),
            ("http://0x7f.1/", "points to a loopback address (127.0.0.1)"),
            ("http://127.1/", "points to a loopback address (127.0.0.1)"),
            (
                "http://127.0.0.1./",
                "points to a loopback address (127.0.0.1)",
            ),
            ("http://0/", "points to an unspecified address (0.0.0.0)"),
            ("http://localhost/", "resolves to a loopback address"),
            ("http://LOCALHOST:9000/", "resolves to a loopback address"),
            (
                "ftp://example.com/",
                "scheme must be http or https, not ftp",
            ),
            (
                "file:///etc/passwd",
                "scheme must be http or https, not file",
            ),
            (
                "https://user:hunter2@example.com/",
                "must not contain a user name",
            ),
            ("https://user@example.com/", "must not contain a user name"),
        ];
        for &(url, expected) in rows {
            let err = check(&policy, url).await.unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(
                err.ends_with("which is not allowed") || !err.contains("points to"),
                "{url}: {err}"
            );
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn check_url_accepts_public_and_allow_listed_addresses() {
        let public = TargetPolicy::default();
        check(&public, "https://93.184.215.14/hooks?x=1")
            .await
            .unwrap();
        check(&public, "http://[2606:4700:4700::1111]:8443/")
            .await
            .unwrap();
        check(&loopback_only(), "http://127.0.0.1:8080/hook")
            .await
            .unwrap();
        let err = check(&loopback_only(), "http://[::1]:8080/")
            .await
            .unwrap_err();
        assert!(err.contains("loopback"), "{err}");
    }

    /// A minimal HTTP/1.1 server on 127.0.0.1 that answers every request with `response` and
    /// passes each raw request (head and body) to the returned channel.
    async fn serve(response: Vec<u8>) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let request = read_request(&mut socket).await;
                let _ = tx.send(request);
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            }
        });
        (addr, rx)
    }

    async fn read_request(socket: &mut TcpStream) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = socket.read(&mut chunk).await.unwrap();
            if n == 0 {
                return buf;
            }
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                return buf;
            }
        }
    }

    fn response(status_line: &str, extra: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status_line}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Whether `listener` has a connection waiting, giving a refused attempt time to show up.
    async fn accepted_anything(listener: &TcpListener) -> bool {
        tokio::time::timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn refused_targets_get_no_connection() {
        let client = client(TargetPolicy::default(), Duration::from_secs(2));
        let localhost = "refused: localhost resolves only to addresses that are not allowed \
                         (a loopback address)";
        let rows: &[(&str, &str)] = &[
            ("127.0.0.1", "refused: 127.0.0.1 is a loopback address"),
            ("localhost", localhost),
            (
                "[::ffff:127.0.0.1]",
                "refused: ::ffff:127.0.0.1 is a loopback address (it embeds 127.0.0.1)",
            ),
            ("2130706433", "refused: 127.0.0.1 is a loopback address"),
            ("0177.0.0.1", "refused: 127.0.0.1 is a loopback address"),
            ("0x7f.1", "refused: 127.0.0.1 is a loopback address"),
            ("[::1]", "refused: ::1 is a loopback address"),
        ];
        for &(host, expected) in rows {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{host}:{}/", listener.local_addr().unwrap().port());
            let outcome = client
                .post(
                    &url,
                    &[("x-token", "tok-secret".to_owned())],
                    b"{}".to_vec(),
                )
                .await;
            assert!(!accepted_anything(&listener).await, "{url} connected");
            assert_eq!(outcome.status, None, "{url}");
            assert_eq!(outcome.error.as_deref(), Some(expected), "{url}");
        }
    }

    #[tokio::test]
    async fn allow_listed_target_gets_the_request_and_its_answer_comes_back() {
        let (addr, mut requests) = serve(response("201 Created", "", br#"{"ok":true}"#)).await;
        let client = client(loopback_only(), Duration::from_secs(5));
        let outcome = client
            .post(
                &format!("http://{addr}/hook?a=1"),
                &[
                    ("webhook-id", "msg_1".to_owned()),
                    ("x-palisade-signature", "sha256=abc".to_owned()),
                ],
                br#"{"type":"ping"}"#.to_vec(),
            )
            .await;
        assert_eq!(outcome.status, Some(201));
        assert_eq!(outcome.error, None);
        assert_eq!(outcome.body, r#"{"ok":true}"#);

        let request = String::from_utf8(requests.recv().await.unwrap()).unwrap();
        let lower = request.to_ascii_lowercase();
        assert!(
            request.starts_with("POST /hook?a=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            lower.contains("content-type: application/json\r\n"),
            "{request}"
        );
        assert!(
            lower.contains("user-agent: palisade-webhooks/test\r\n"),
            "{request}"
        );
        assert!(lower.contains("webhook-id: msg_1\r\n"), "{request}");
        assert!(
            lower.contains("x-palisade-signature: sha256=abc\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with("\r\n\r\n{\"type\":\"ping\"}"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn allow_listed_host_name_connects_to_its_permitted_address() {
        let (addr, mut requests) = serve(response("204 No Content", "", b"")).await;
        let client = client(loopback_only(), Duration::from_secs(5));
        let url = format!("http://localhost:{}/", addr.port());
        let outcome = client.post(&url, &[], b"{}".to_vec()).await;
        assert_eq!((outcome.status, outcome.error), (Some(204), None));
        assert!(requests.recv().await.is_some());
    }

    #[tokio::test]
    async fn error_statuses_are_failures_that_keep_the_body() {
        let (addr, _requests) = serve(response(
            "503 Service Unavailable",
            "",
            br#"{"error":"down"}"#,
        ))
        .await;
        let client = client(loopback_only(), Duration::from_secs(5));
        let outcome = client
            .post(&format!("http://{addr}/"), &[], b"{}".to_vec())
            .await;
        assert_eq!(outcome.status, Some(503));
        assert_eq!(outcome.error.as_deref(), Some("HTTP 503"));
        assert_eq!(outcome.body, r#"{"error":"down"}"#);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let elsewhere = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let location = format!("Location: http://{}/\r\n", elsewhere.local_addr().unwrap());
        let (addr, _requests) = serve(response("302 Found", &location, b"")).await;
        let client = client(loopback_only(), Duration::from_secs(5));
        let outcome = client
            .post(&format!("http://{addr}/"), &[], b"{}".to_vec())
            .await;
        assert_eq!(outcome.status, Some(302));
        assert_eq!(
            outcome.error.as_deref(),
            Some("redirect (302) not followed")
        );
        assert!(!accepted_anything(&elsewhere).await);
    }

    #[tokio::test]
    async fn a_target_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and holds connections without ever answering.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let client = client(loopback_only(), Duration::from_secs(1));
        let outcome = client
            .post(&format!("http://{addr}/"), &[], b"{}".to_vec())
            .await;
        assert_eq!(outcome.status, None);
        assert_eq!(outcome.error.as_deref(), Some("timed out after 1s"));
        assert!(
            outcome.latency >= Duration::from_secs(1),
            "{:?}",
            outcome.latency
        );
    }

    #[tokio::test]
    async fn a_large_response_body_is_cut_to_4096_bytes() {
        let big = vec![b'a'; 10 * 1024];
        let (addr, _requests) = serve(response("200 OK", "", &big)).await;
        let client = client(loopback_only(), Duration::from_secs(5));
        let outcome = client
            .post(&format!("http://{addr}/"), &[], b"{}".to_vec())
            .await;
        assert_eq!((outcome.status, outcome.error), (Some(200), None));
        assert_eq!(outcome.body.len(), MAX_RESPONSE_BODY);
        assert!(outcome.body.bytes().all(|b| b == b'a'));
    }

    #[tokio::test]
    async fn a_closed_port_is_connection_refused_and_errors_hold_no_secrets() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = client(loopback_only(), Duration::from_secs(5));
        let url = format!("http://127.0.0.1:{port}/hook?token=query-secret");
        let headers = [("x-palisade-signature", "sha256=header-secret".to_owned())];
        let outcome = client
            .post(&url, &headers, b"{\"card\":\"body-secret\"}".to_vec())
            .await;
        assert_eq!(outcome.status, None);
        assert_eq!(outcome.error.as_deref(), Some("connection refused"));

        let bad = [("x-palisade-signature", "sha256=header-secret\n".to_owned())];
        let outcome = client.post(&url, &bad, b"body-secret".to_vec()).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some("invalid value for header x-palisade-signature")
        );

        let refused = TargetPolicy::default();
        let outcome = self::client(refused, Duration::from_secs(5))
            .post(&url, &headers, b"body-secret".to_vec())
            .await;
        let error = outcome.error.unwrap();
        for secret in ["query-secret", "header-secret", "body-secret"] {
            assert!(!error.contains(secret), "{error}");
        }
    }

    #[tokio::test]
    async fn malformed_urls_are_failures_before_any_request() {
        let client = client(loopback_only(), Duration::from_secs(5));
        let rows: &[(&str, &str)] = &[
            ("not a url", "invalid URL"),
            ("ftp://127.0.0.1/", "scheme must be http or https"),
            ("http://u:p@127.0.0.1/", "must not contain a user name"),
        ];
        for &(url, expected) in rows {
            let outcome = client.post(url, &[], Vec::new()).await;
            let error = outcome.error.unwrap();
            assert!(error.contains(expected), "{url}: {error}");
            assert_eq!(outcome.status, None);
        }
    }
}
