//! API keys (KEY-1, KEY-2): the secret's format, scopes and the stored key.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::acl::{Grants, Permission, PermissionSet};
use crate::crypto::{random, sha256};
use crate::error::Result;
use crate::ids::{ApiKeyId, UserId, WorkspaceId};

/// What an API key may be used for. Each scope maps to catalog permissions; a key holds the
/// union of its scopes' permissions intersected with its creator's at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    ReadDraft,
    Write,
    Management,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::Read,
        Scope::ReadDraft,
        Scope::Write,
        Scope::Management,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::ReadDraft => "read_draft",
            Scope::Write => "write",
            Scope::Management => "management",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The catalog permissions this scope allows. Owner-only powers (deleting the workspace,
    /// owners, child workspaces, billing changes) are in no scope: a leaked key can never take
    /// a workspace away from its owners.
    pub fn permissions(self) -> PermissionSet {
        use Permission as P;
        let list: &[Permission] = match self {
            Scope::Read => &[
                P::WorkspaceRead,
                P::MembersRead,
                P::RecordsRead,
                P::AuditRead,
            ],
            Scope::ReadDraft => &[P::RecordsReadDraft],
            Scope::Write => &[P::RecordsWrite, P::AuditWrite, P::QuotasConsume],
            Scope::Management => &[
                P::WorkspaceUpdate,
                P::AuthPolicyManage,
                P::MembersManage,
                P::RolesManage,
                P::ApiKeysManage,
                P::WebhooksManage,
                P::CollectionsManage,
            ],
        };
        list.iter().copied().collect()
    }

    /// The union of the scopes' permissions.
    pub fn union(scopes: &[Scope]) -> PermissionSet {
        scopes
            .iter()
            .fold(PermissionSet::EMPTY, |acc, s| acc.union(s.permissions()))
    }
}

/// The key's secret: `pal_` + 43 base62 characters (32 random bytes) + 6 base62 characters of
/// CRC32 over those 43. A secret scanner matches `pal_[0-9A-Za-z]{49}` and checks the checksum
/// offline; the server rejects a bad one before touching the database.
pub struct ApiKeySecret(SecretString);

pub const KEY_PREFIX: &str = "pal_";
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl ApiKeySecret {
    pub fn generate() -> Result<Self> {
        let random = zeroize::Zeroizing::new(random::bytes::<32>()?);
        let body = base62(&*random, BODY_LEN);
        let checksum = base62(
            &crc32fast::hash(body.as_bytes()).to_be_bytes(),
            CHECKSUM_LEN,
        );
        Ok(Self(SecretString::from(format!(
            "{KEY_PREFIX}{body}{checksum}"
        ))))
    }

    /// Checks the shape and the checksum; `None` for anything else. No database is involved.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(KEY_PREFIX)?;
        if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return None;
        }
        let (body, checksum) = rest.split_at(BODY_LEN);
        let expected = base62(
            &crc32fast::hash(body.as_bytes()).to_be_bytes(),
            CHECKSUM_LEN,
        );
        // Not secret (anyone can compute it), so an ordinary comparison is fine.
        (checksum == expected).then(|| Self(SecretString::from(text.to_owned())))
    }

    /// Whether a bearer token looks like an API key rather than an access token.
    pub fn looks_like(text: &str) -> bool {
        text.starts_with(KEY_PREFIX)
    }

    /// What is stored and looked up: SHA-256 of the whole key.
    pub fn hash(&self) -> [u8; 32] {
        sha256(self.0.expose_secret().as_bytes())
    }

    /// What lists show: `pal_` and the first 6 characters of the body.
    pub fn display_prefix(&self) -> String {
        self.0.expose_secret()[..KEY_PREFIX.len() + 6].to_owned()
    }

    /// The key in clear, for the one response that shows it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// Big-endian base62 of `bytes`, left-padded with '0' to `width` characters.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut number: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::with_capacity(width);
    while number.iter().any(|b| *b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    number.iter_mut().for_each(|b| *b = 0);
    String::from_utf8(digits).unwrap_or_default()
}

/// Who created a key: a user, or another key with the `management` scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creator {
    User(UserId),
    ApiKey(ApiKeyId),
}

impl Creator {
    pub fn as_str(&self) -> &str {
        match self {
            Creator::User(id) => id.as_str(),
            Creator::ApiKey(id) => id.as_str(),
        }
    }

    /// From the stored text (an id with its prefix).
    pub fn from_stored(text: String) -> Self {
        if text.starts_with(ApiKeyId::PREFIX) {
            Creator::ApiKey(ApiKeyId::from_trusted(text))
        } else {
            Creator::User(UserId::from_trusted(text))
        }
    }
}

/// A workspace API key as stored. Nothing here could recompute the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    /// `pal_` + the first 6 characters of the body.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    /// The key's effective grants: its scopes intersected with the creator's at creation.
    pub grants: Grants,
    pub created_by: Creator,
    /// The person answerable for the key (the creating user, or the creating key's person).
    pub on_behalf_of: UserId,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub rotated_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    /// Read from the usage table (flushed at most once a minute per key); never written with
    /// the key row.
    pub last_used_at: Option<OffsetDateTime>,
}

impl ApiKey {
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A new key as the caller sends it.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<OffsetDateTime>,
}

/// A key with its secret, returned by create and rotate only.
#[derive(Debug)]
pub struct IssuedApiKey {
    pub key: ApiKey,
    pub secret: ApiKeySecret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape_and_parse_back() {
        for _ in 0..200 {
            let key = ApiKeySecret::generate().unwrap();
            let text = key.expose().to_owned();
            assert_eq!(text.len(), 4 + 43 + 6);
            assert!(text.starts_with("pal_"));
            assert!(text[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
            let parsed = ApiKeySecret::parse(&text).unwrap();
            assert_eq!(parsed.hash(), key.hash());
            assert_eq!(key.display_prefix(), text[..10]);
        }
    }

    #[test]
    fn a_changed_character_or_length_fails_the_checksum() {
        let key = ApiKeySecret::generate().unwrap();
        let text = key.expose();
        for i in 4..text.len() {
            let mut bytes = text.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(ApiKeySecret::parse(&changed).is_none(), "position {i}");
        }
        assert!(ApiKeySecret::parse(&text[..text.len() - 1]).is_none());
        assert!(ApiKeySecret::parse(&format!("{text}0")).is_none());
        assert!(ApiKeySecret::parse(&text.replacen("pal_", "pak_", 1)).is_none());
        let mut dashed = text.to_owned();
        dashed.replace_range(10..11, "-");
        assert!(ApiKeySecret::parse(&dashed).is_none());
        assert!(ApiKeySecret::parse("").is_none());
    }

    #[test]
    fn base62_matches_known_values() {
        assert_eq!(base62(&[0, 0, 0, 0], 6), "000000");
        assert_eq!(base62(&[0, 0, 0, 61], 6), "00000z");
        assert_eq!(base62(&[0, 0, 0, 62], 6), "000010");
        // u32::MAX in base62, as Python computes it.
        assert_eq!(base62(&u32::MAX.to_be_bytes(), 6), "4gfFC3");
        assert_eq!(base62(&[0xff; 32], 43).len(), 43);
    }

    #[test]
    fn scopes_never_reach_owner_powers() {
        let all = Scope::union(&Scope::ALL);
        for p in [
            Permission::WorkspaceDelete,
            Permission::OwnersManage,
            Permission::ChildrenManage,
            Permission::BillingManage,
        ] {
            assert!(!all.contains(p), "{}", p.key());
        }
        assert!(
            !Scope::Read
                .permissions()
                .contains(Permission::RecordsReadDraft)
        );
        assert!(
            !Scope::Write
                .permissions()
                .contains(Permission::ApiKeysManage)
        );
        assert!(
            !Scope::Write
                .permissions()
                .contains(Permission::MembersManage)
        );
    }
}
