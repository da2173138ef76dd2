//! EdDSA (Ed25519) access tokens: 15 minutes by default, `kid` = RFC 7638 thumbprint, verified
//! with the injected clock. Only `alg: EdDSA` is accepted.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::random;
use crate::error::{Error, Result};
use crate::ids::{SessionId, UserId};

/// The audience of every access token Palisade issues.
pub const AUDIENCE: &str = "palisade";

#[derive(Debug, thiserror::Error)]
#[error("token key error: {0}")]
struct KeyError(String);

/// An Ed25519 key pair for signing access tokens. The seed never prints.
pub struct TokenKey {
    signing: SigningKey,
    kid: String,
    x: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    pub fn generate() -> Result<Self> {
        Ok(Self::from_seed(&random::bytes::<32>()?))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
        Self {
            kid: thumbprint(&x),
            x,
            signing,
        }
    }

    /// The 32-byte seed, for sealing under the envelope; zeroed when dropped.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (`kty OKP, crv Ed25519, x, kid, use sig, alg EdDSA`), never `d`.
    pub fn public_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x: self.x.clone(),
            kid: self.kid.clone(),
            key_use: "sig",
            alg: "EdDSA",
        }
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key (`x` base64url).
pub use palisade_audit::checkpoint::thumbprint;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub key_use: &'static str,
    pub alg: &'static str,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    sid: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// The facts a verified access token carries. Only [`AccessTokens::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAccess {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub expires_at: OffsetDateTime,
}

/// Issues and verifies access tokens with the instance key.
pub struct AccessTokens {
    issuer: String,
    ttl: time::Duration,
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    jwks: Vec<Jwk>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    pub fn new(key: &TokenKey, issuer: String, ttl: time::Duration) -> Result<Self> {
        let der = key
            .signing
            .to_pkcs8_der()
            .map_err(|e| Error::internal(KeyError(e.to_string())))?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let decoding = DecodingKey::from_ed_components(&key.x).map_err(Error::internal)?;
        Ok(Self {
            issuer,
            ttl,
            kid: key.kid.clone(),
            encoding,
            decoding: HashMap::from([(key.kid.clone(), decoding)]),
            jwks: vec![key.public_jwk()],
        })
    }

    pub fn ttl(&self) -> time::Duration {
        self.ttl
    }

    /// The public keys that verify access tokens, for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &[Jwk] {
        &self.jwks
    }

    pub fn issue(
        &self,
        user_id: &UserId,
        session_id: &SessionId,
        now: OffsetDateTime,
    ) -> Result<String> {
        let iat = now.unix_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_owned(),
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            iat,
            exp: iat + self.ttl.whole_seconds(),
            jti: random::token()?,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".to_owned());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(Error::internal)
    }

    /// Verifies signature (EdDSA only, by `kid`), issuer, audience and expiry against `now`.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<VerifiedAccess> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::Unauthenticated)?;
        if header.alg != Algorithm::EdDSA {
            return Err(Error::Unauthenticated);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(Error::Unauthenticated)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is checked below against the injected clock, not the system clock.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[AUDIENCE]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|_| Error::Unauthenticated)?;
        let claims = data.claims;
        if claims.exp <= now.unix_timestamp() {
            return Err(Error::Unauthenticated);
        }
        let user_id = UserId::parse(&claims.sub).ok_or(Error::Unauthenticated)?;
        let session_id = SessionId::parse(&claims.sid).ok_or(Error::Unauthenticated)?;
        let expires_at =
            OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|_| Error::Unauthenticated)?;
        Ok(VerifiedAccess {
            user_id,
            session_id,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Result<AccessTokens> {
        AccessTokens::new(
            &TokenKey::generate()?,
            "https://palisade.test".into(),
            time::Duration::minutes(15),
        )
    }

    #[test]
    fn thumbprint_matches_rfc_8037_key() {
        // AUDIT-SPEC.md §10 / RFC 8037 A.1 public key and its RFC 7638 thumbprint.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn issued_token_verifies_until_it_expires() -> Result<()> {
        let t = tokens()?;
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).map_err(Error::internal)?;
        let (user, session) = (UserId::generate(), SessionId::generate());
        let jwt = t.issue(&user, &session, now)?;
        let v = t.verify(&jwt, now + time::Duration::minutes(14))?;
        assert_eq!((v.user_id, v.session_id), (user, session));
        assert!(matches!(
            t.verify(&jwt, now + time::Duration::minutes(15)),
            Err(Error::Unauthenticated)
        ));
        Ok(())
    }

    #[test]
    fn token_from_another_key_or_tampered_is_rejected() -> Result<()> {
        let (a, b) = (tokens()?, tokens()?);
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).map_err(Error::internal)?;
        let jwt = a.issue(&UserId::generate(), &SessionId::generate(), now)?;
        assert!(b.verify(&jwt, now).is_err());
        let mut tampered = jwt.clone();
        tampered.insert(jwt.len() / 2, 'A');
        assert!(a.verify(&tampered, now).is_err());
        assert!(a.verify("not.a.jwt", now).is_err());
        Ok(())
    }
}
