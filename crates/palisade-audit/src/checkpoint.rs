//! Checkpoints (C2SP tlog-checkpoint) and their two signatures: a compact JWS (EdDSA, RFC 8037)
//! and a C2SP signed note, both by the log's Ed25519 key (AUDIT-SPEC §4).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Hash;

/// `typ` of a checkpoint JWS.
pub const JWS_TYP: &str = "tlog-checkpoint+jws";

/// A signed tree head: the log's origin, its size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Why a checkpoint or its signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint body is malformed: {0}")]
    Body(&'static str),
    #[error("JWS is malformed: {0}")]
    Jws(&'static str),
    #[error("JWS algorithm {0:?} is not accepted (EdDSA only)")]
    Algorithm(String),
    #[error("no Ed25519 key with kid {0:?} in the JWKS")]
    UnknownKey(String),
    #[error("signature does not verify")]
    Signature,
    #[error("signed note is malformed: {0}")]
    Note(&'static str),
    #[error("signed note carries no signature by {0}")]
    NoteKey(String),
}

impl Checkpoint {
    /// `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a body with no extension lines.
    pub fn parse(body: &str) -> Result<Self, CheckpointError> {
        let Some(text) = body.strip_suffix('\n') else {
            return Err(CheckpointError::Body("must end with a newline"));
        };
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Body("must have exactly three lines"));
        };
        if origin.is_empty() {
            return Err(CheckpointError::Body("empty origin"));
        }
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(CheckpointError::Body("size is not a decimal number"));
        }
        let size = size
            .parse()
            .map_err(|_| CheckpointError::Body("size is out of range"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::Body(
                "root is not 32 bytes of padded base64",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key (`x` base64url).
pub fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// A public Ed25519 JWK: `kty OKP, crv Ed25519, x, kid, use sig, alg EdDSA`, never `d`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub crv: String,
    #[serde(default)]
    pub x: String,
    #[serde(default)]
    pub kid: String,
    #[serde(rename = "use", default, skip_serializing_if = "String::is_empty")]
    pub key_use: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alg: String,
}

impl Jwk {
    pub fn ed25519(key: &VerifyingKey) -> Self {
        let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            kid: thumbprint(&x),
            x,
            key_use: "sig".into(),
            alg: "EdDSA".into(),
        }
    }

    /// The verifying key, when this is an Ed25519 key.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return None;
        }
        let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(&self.x).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }
}

#[derive(Serialize, Deserialize)]
struct JwsHeader {
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

/// The compact JWS over `body`: header exactly `{"alg":"EdDSA","kid":…,"typ":"tlog-checkpoint+jws"}`.
pub fn sign_jws(key: &SigningKey, body: &str) -> String {
    let kid = Jwk::ed25519(&key.verifying_key()).kid;
    let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"{JWS_TYP}"}}"#);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(body)
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// Verifies a compact checkpoint JWS against `keys` and returns the signed body. Only `EdDSA`
/// (or `Ed25519`) is accepted; the key is found by `kid` among OKP/Ed25519 keys; `jku`, `jwk`
/// and `x5u` headers are ignored, never followed.
pub fn verify_jws<'a>(
    jws: &str,
    keys: impl IntoIterator<Item = &'a Jwk>,
) -> Result<(String, Jwk), CheckpointError> {
    let mut parts = jws.split('.');
    let (Some(h64), Some(p64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CheckpointError::Jws("not three dot-separated parts"));
    };
    let header: JwsHeader = URL_SAFE_NO_PAD
        .decode(h64)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(CheckpointError::Jws("header is not base64url JSON"))?;
    match header.alg.as_deref() {
        Some("EdDSA" | "Ed25519") => {}
        other => return Err(CheckpointError::Algorithm(other.unwrap_or("").to_owned())),
    }
    if header.typ.as_deref().is_some_and(|t| t != JWS_TYP) {
        return Err(CheckpointError::Jws("typ is not tlog-checkpoint+jws"));
    }
    let kid = header.kid.ok_or(CheckpointError::Jws("no kid"))?;
    let jwk = keys
        .into_iter()
        .find(|k| k.kid == kid && k.verifying_key().is_some())
        .ok_or_else(|| CheckpointError::UnknownKey(kid.clone()))?;
    let key = jwk
        .verifying_key()
        .ok_or_else(|| CheckpointError::UnknownKey(kid.clone()))?;
    let sig: [u8; 64] = URL_SAFE_NO_PAD
        .decode(s64)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(CheckpointError::Jws(
            "signature is not 64 bytes of base64url",
        ))?;
    let input_len = h64.len() + 1 + p64.len();
    key.verify_strict(&jws.as_bytes()[..input_len], &Signature::from_bytes(&sig))
        .map_err(|_| CheckpointError::Signature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(p64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(CheckpointError::Jws("payload is not base64url UTF-8"))?;
    Ok((payload, jwk.clone()))
}

/// C2SP signed-note key id: the first 4 bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`.
pub fn note_key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n\x01");
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The C2SP verifier key string `<name>+<hex key id>+<base64(0x01 ‖ key)>`.
pub fn note_vkey(name: &str, key: &VerifyingKey) -> String {
    let id = note_key_id(name, key);
    let mut raw = vec![0x01];
    raw.extend_from_slice(key.as_bytes());
    format!(
        "{name}+{:02x}{:02x}{:02x}{:02x}+{}",
        id[0],
        id[1],
        id[2],
        id[3],
        STANDARD.encode(raw)
    )
}

/// A signed note of `body` (which ends in a newline) by `key` under `name`.
pub fn sign_note(key: &SigningKey, name: &str, body: &str) -> String {
    let sig = key.sign(body.as_bytes());
    let mut raw = note_key_id(name, &key.verifying_key()).to_vec();
    raw.extend_from_slice(&sig.to_bytes());
    format!("{body}\n\u{2014} {name} {}\n", STANDARD.encode(raw))
}

/// Verifies that `note` carries a valid signature by `key` under `name`; returns the body.
pub fn verify_note<'a>(
    note: &'a str,
    name: &str,
    key: &VerifyingKey,
) -> Result<&'a str, CheckpointError> {
    let Some(split) = note.rfind("\n\n") else {
        return Err(CheckpointError::Note("no blank line before the signatures"));
    };
    let (body, sigs) = (&note[..split + 1], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(CheckpointError::Note(
            "signature block must end with a newline",
        ));
    }
    let want = note_key_id(name, key);
    let prefix = format!("\u{2014} {name} ");
    for line in sigs.lines() {
        let Some(b64) = line.strip_prefix(&prefix) else {
            continue;
        };
        let raw = STANDARD
            .decode(b64)
            .map_err(|_| CheckpointError::Note("signature is not base64"))?;
        if raw.len() != 68 || raw[..4] != want {
            continue;
        }
        let sig: [u8; 64] = raw[4..]
            .try_into()
            .map_err(|_| CheckpointError::Note("signature length"))?;
        return key
            .verify_strict(body.as_bytes(), &Signature::from_bytes(&sig))
            .map(|()| body)
            .map_err(|_| CheckpointError::Signature);
    }
    Err(CheckpointError::NoteKey(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_key() -> SigningKey {
        let d: [u8; 32] = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap()
            .try_into()
            .unwrap();
        SigningKey::from_bytes(&d)
    }

    const BODY: &str =
        "audit.example.com/ws/ws_test\n3\nBube4lk26C3FL7HqbL8sq8Nw/Jc2BBHHlcAPCipKpCY=\n";
    const JWS: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SXVvM3ZWeno3VHhIQ1R3WEJ5Z3JTNGsiLCJ0eXAiOiJ0bG9nLWNoZWNrcG9pbnQrandzIn0.YXVkaXQuZXhhbXBsZS5jb20vd3Mvd3NfdGVzdAozCkJ1YmU0bGsyNkMzRkw3SHFiTDhzcThOdy9KYzJCQkhIbGNBUENpcEtwQ1k9Cg.S_7Ev00igHo1tENoh4t_Wbo34N8xlKjHoPoXNNK3nG298UGZ2HCn7xfsvV3wHvSFRPPKvxTfZ_HlVkRAXvgHBQ";
    const ORIGIN: &str = "audit.example.com/ws/ws_test";

    #[test]
    fn body_jwk_jws_and_note_match_spec_vectors() {
        let root = hex_root("06e6dee25936e82dc52fb1ea6cbf2cabc370fc97360411c795c00f0a2a4aa426");
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: 3,
            root,
        };
        assert_eq!(cp.body(), BODY);
        assert_eq!(Checkpoint::parse(BODY).unwrap(), cp);

        let key = spec_key();
        let jwk = Jwk::ed25519(&key.verifying_key());
        assert_eq!(
            serde_json::to_string(&jwk).unwrap(),
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k","use":"sig","alg":"EdDSA"}"#
        );
        assert_eq!(sign_jws(&key, BODY), JWS);
        assert_eq!(verify_jws(JWS, [&jwk]).unwrap().0, BODY);

        assert_eq!(
            note_vkey(ORIGIN, &key.verifying_key()),
            "audit.example.com/ws/ws_test+3b5b7139+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea"
        );
        let note = sign_note(&key, ORIGIN, BODY);
        assert_eq!(
            note,
            format!(
                "{BODY}\n\u{2014} audit.example.com/ws/ws_test O1txOdue6IDJ1t+6xwiyFNGWoYJpM5UNL3N7DWa/wfN4Mb+UnJrXQ3U0yx3JkYs06+IMebXEWhtMsbShNbhJWWhPCgs=\n"
            )
        );
        assert_eq!(
            verify_note(&note, ORIGIN, &key.verifying_key()).unwrap(),
            BODY
        );
    }

    fn hex_root(s: &str) -> Hash {
        let v: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    #[test]
    fn refuses_none_hs256_unknown_kid_and_altered_payload() {
        let jwk = Jwk::ed25519(&spec_key().verifying_key());
        let parts: Vec<&str> = JWS.split('.').collect();
        for header in [
            r#"{"alg":"none","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"}"#,
            r#"{"alg":"HS256","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"}"#,
        ] {
            let forged = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                parts[1],
                parts[2]
            );
            assert!(matches!(
                verify_jws(&forged, [&jwk]),
                Err(CheckpointError::Algorithm(_))
            ));
        }
        let other = Jwk::ed25519(&SigningKey::from_bytes(&[7; 32]).verifying_key());
        assert!(matches!(
            verify_jws(JWS, [&other]),
            Err(CheckpointError::UnknownKey(_))
        ));
        let altered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(BODY.replace('3', "4")),
            parts[2]
        );
        assert_eq!(
            verify_jws(&altered, [&jwk]),
            Err(CheckpointError::Signature)
        );
        // A `jwk` header naming the attacker's key changes nothing: it is never used.
        let attacker = SigningKey::from_bytes(&[9; 32]);
        let header = format!(
            r#"{{"alg":"EdDSA","kid":"{}","jwk":{}}}"#,
            jwk.kid,
            serde_json::to_string(&Jwk::ed25519(&attacker.verifying_key())).unwrap()
        );
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), parts[1]);
        let sig = attacker.sign(input.as_bytes());
        let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        assert_eq!(verify_jws(&forged, [&jwk]), Err(CheckpointError::Signature));
    }

    #[test]
    fn body_parse_rejects_extensions_and_bad_numbers() {
        for bad in [
            "o\n3\nBube4lk26C3FL7HqbL8sq8Nw/Jc2BBHHlcAPCipKpCY=\next\n",
            "o\n03\nBube4lk26C3FL7HqbL8sq8Nw/Jc2BBHHlcAPCipKpCY=\n",
            "o\n3\nshort\n",
            "o\n3\nBube4lk26C3FL7HqbL8sq8Nw/Jc2BBHHlcAPCipKpCY=",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
