//! Webhook signatures (WHK-3): the Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64>` over `id.timestamp.body`) and `X-Palisade-Signature:
//! sha256=<hex>` over the raw body, both HMAC-SHA256 under the endpoint's secret. During a
//! rotation both secrets sign, and each header carries both values, space-separated (as the
//! Standard Webhooks spec allows), so a receiver holding either secret verifies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use crate::crypto::{hex, random};
use crate::error::{Error, Result};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The prefix Standard Webhooks libraries expect on a secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's signing key: 32 random bytes, shown to its owner as `whsec_<base64>`.
#[derive(Debug)]
pub struct SigningSecret(SecretBox<[u8; 32]>);

impl SigningSecret {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self> {
        Ok(Self(SecretBox::new(Box::new(random::bytes::<32>()?))))
    }

    /// The key from its stored (opened) bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::Internal("a webhook secret is not 32 bytes".into()))?;
        Ok(Self(SecretBox::new(Box::new(key))))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    /// `whsec_<base64>`: what the endpoint's owner configures in their receiver.
    pub fn display(&self) -> SecretString {
        SecretString::from(format!(
            "{SECRET_PREFIX}{}",
            STANDARD.encode(self.0.expose_secret())
        ))
    }

    /// `v1,<base64>` over `id.timestamp.body` (Standard Webhooks).
    pub fn standard(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        standard_with(self.0.expose_secret(), id, timestamp, body)
    }

    /// `sha256=<hex>` over the raw body.
    pub fn palisade(&self, body: &[u8]) -> String {
        let mut mac = mac(self.0.expose_secret());
        mac.update(body);
        format!("sha256={}", hex(&mac.finalize().into_bytes()))
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => hmac_takes_any_key(),
    }
}

/// HMAC accepts keys of every length (RFC 2104 §2), so `new_from_slice` cannot fail.
#[allow(clippy::panic)]
fn hmac_takes_any_key() -> HmacSha256 {
    panic!("HMAC-SHA256 accepts keys of any length")
}

fn standard_with(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The two signature headers for one attempt, signed by every given secret (the current one
/// first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// `webhook-signature`.
    pub standard: String,
    /// `X-Palisade-Signature`.
    pub palisade: String,
}

pub fn sign(secrets: &[&SigningSecret], id: &str, timestamp: i64, body: &[u8]) -> Signatures {
    let standard: Vec<String> = secrets
        .iter()
        .map(|s| s.standard(id, timestamp, body))
        .collect();
    let palisade: Vec<String> = secrets.iter().map(|s| s.palisade(body)).collect();
    Signatures {
        standard: standard.join(" "),
        palisade: palisade.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector (standard-webhooks/spec, `libraries/python`).
    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let sig = standard_with(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn signs_with_every_secret_and_each_verifies_alone() {
        let a = SigningSecret::generate().expect("rng");
        let b = SigningSecret::generate().expect("rng");
        let body = br#"{"type":"record.created"}"#;
        let both = sign(&[&a, &b], "msg_1", 1_700_000_000, body);
        let parts: Vec<&str> = both.standard.split(' ').collect();
        assert_eq!(
            parts,
            [
                a.standard("msg_1", 1_700_000_000, body),
                b.standard("msg_1", 1_700_000_000, body)
            ]
        );
        assert_eq!(
            both.palisade,
            format!("{} {}", a.palisade(body), b.palisade(body))
        );
        assert!(a.palisade(body).starts_with("sha256="));
        assert_eq!(a.palisade(body).len(), "sha256=".len() + 64);
        assert_ne!(a.palisade(body), a.palisade(b"{}"), "the body is signed");
        assert_ne!(
            a.standard("msg_1", 1, body),
            a.standard("msg_1", 2, body),
            "the timestamp is signed"
        );
    }

    #[test]
    fn the_displayed_secret_round_trips_and_never_debugs_in_clear() {
        let a = SigningSecret::generate().expect("rng");
        let shown = a.display();
        let b64 = shown
            .expose_secret()
            .strip_prefix(SECRET_PREFIX)
            .expect("prefix");
        let back = SigningSecret::from_bytes(&STANDARD.decode(b64).expect("b64")).expect("32");
        assert_eq!(back.bytes(), a.bytes());
        assert!(!format!("{a:?}").contains(b64));
        assert!(SigningSecret::from_bytes(&[0; 31]).is_err());
    }
}
