//! Prefixed, sortable identifiers (`ws_…`, `usr_…`): a UUIDv7 rendered in lowercase Crockford
//! base32, so ids sort by creation time and never travel as bare strings in signatures.

use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ENCODED_LEN: usize = 26;

fn encode(value: u128) -> String {
    let mut out = [0u8; ENCODED_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (ENCODED_LEN - 1 - i);
        // The first character carries the top 3 bits; masking keeps every index in range.
        *slot = ALPHABET[((value >> shift) & 0x1f) as usize];
    }
    out.iter().map(|&b| char::from(b)).collect()
}

fn decode(text: &str) -> Option<u128> {
    if text.len() != ENCODED_LEN {
        return None;
    }
    let mut value: u128 = 0;
    for (i, byte) in text.bytes().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == byte)? as u128;
        // 26 characters hold 130 bits; the first may only use the low 3 of its 5.
        if i == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | digit;
    }
    Some(value)
}

/// Declares a typed id with a fixed prefix.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id: UUIDv7 (millisecond timestamp + OS randomness).
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, encode(uuid::Uuid::now_v7().as_u128())))
            }

            /// Parses an id, checking prefix and body; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                let body = text.strip_prefix($prefix)?.strip_prefix('_')?;
                decode(body).map(|_| Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// For ids read back from our own database, which only ever stores valid ids.
            pub fn from_trusted(text: String) -> Self {
                Self(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        /// Only well-formed ids of this kind (stored JSON that names other rows).
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(concat!("not a ", $prefix, "_ id"))
                })
            }
        }
    };
}

id_type!(
    /// A workspace (tenant).
    WorkspaceId, "ws"
);
id_type!(
    /// A user account (instance-wide).
    UserId, "usr"
);
id_type!(
    /// A membership of a user in a workspace.
    MemberId, "mem"
);
id_type!(
    /// A sign-in session: the family of its rotating refresh tokens.
    SessionId, "ses"
);
id_type!(
    /// A password-reset code (the code itself is never stored).
    ResetCodeId, "rsc"
);
id_type!(
    /// An audit event.
    EventId, "evt"
);
id_type!(
    /// An HTTP request, for correlating responses, logs and audit entries.
    TraceId, "req"
);
id_type!(
    /// A data-encryption key version.
    DataKeyId, "dek"
);
id_type!(
    /// A data-key rotation's re-encryption job (KMS-3).
    KeyRotationId, "krot"
);
id_type!(
    /// A record of a collection (DAT-2).
    RecordId, "rec"
);
id_type!(
    /// A workspace's collection (DAT-1).
    CollectionId, "col"
);
id_type!(
    /// A workspace API key (KEY-1); the secret itself is never stored.
    ApiKeyId, "key"
);
id_type!(
    /// A team inside a workspace (ACL-4).
    TeamId, "team"
);
id_type!(
    /// A workspace's custom role (ACL-3).
    CustomRoleId, "role"
);
id_type!(
    /// An invitation to join a workspace (ACL-7); its token is never stored.
    InvitationId, "inv"
);
id_type!(
    /// A webhook endpoint of a workspace (WHK-1).
    WebhookId, "wh"
);
id_type!(
    /// One event in the webhook outbox (WHK-2); it is the `webhook-id` every endpoint receives,
    /// the same on every attempt, so receivers can de-duplicate.
    WebhookEventId, "msg"
);
id_type!(
    /// One event's delivery to one endpoint, with its attempts (WHK-4).
    DeliveryId, "dlv"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip_and_sort_by_creation() {
        let a = WorkspaceId::generate();
        let b = WorkspaceId::generate();
        assert!(a.as_str().starts_with("ws_"));
        assert_eq!(a.as_str().len(), 3 + ENCODED_LEN);
        assert_eq!(WorkspaceId::parse(a.as_str()), Some(a.clone()));
        assert!(a < b, "UUIDv7 ids sort by creation: {a} < {b}");
    }

    #[test]
    fn parse_rejects_wrong_prefix_length_and_alphabet() {
        let good = UserId::generate();
        assert!(WorkspaceId::parse(good.as_str()).is_none());
        assert!(UserId::parse("usr_").is_none());
        assert!(UserId::parse("usr_0000000000000000000000000u").is_none());
        assert!(UserId::parse("usr_80000000000000000000000000").is_none());
        assert!(UserId::parse("usr_7zzzzzzzzzzzzzzzzzzzzzzzzz").is_some());
    }

    #[test]
    fn encoding_is_big_endian_and_fixed_width() {
        assert_eq!(encode(0), "0".repeat(26));
        assert_eq!(decode(&encode(u128::MAX)), Some(u128::MAX));
        assert_eq!(decode(&encode(12345)), Some(12345));
    }
}
