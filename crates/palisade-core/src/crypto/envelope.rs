//! Envelope encryption (KMS-1, KMS-2). Master keys (KEKs) live outside the database; data keys
//! (DEKs) are stored only wrapped by a master key; secrets are sealed with a data key.
//!
//! Ciphertext format: `0x01 ‖ len(key id) ‖ key id ‖ 12-byte nonce ‖ AES-256-GCM ciphertext+tag`,
//! with associated data binding owner (workspace or instance), table, row and field, so a
//! ciphertext moved to another row or workspace fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox};

use super::random;
use crate::error::{Error, Result};

const FORMAT_V1: u8 = 0x01;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("a master key must be 32 bytes, base64-encoded")]
    BadMasterKey,
    #[error("ciphertext is malformed")]
    Malformed,
    #[error("ciphertext was sealed with key {0}, which is not available")]
    UnknownKey(String),
    #[error("ciphertext failed authentication (wrong key or moved between rows)")]
    Unauthentic,
}

/// What a ciphertext is bound to. Changing any part makes it fail to open.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    pub owner: &'a str,
    pub table: &'a str,
    pub row: &'a str,
    pub field: &'a str,
}

impl Aad<'_> {
    fn encode(&self, key_id: &str) -> Vec<u8> {
        let mut out = b"palisade/v1".to_vec();
        for part in [key_id, self.owner, self.table, self.row, self.field] {
            out.push(0);
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// A 256-bit AES key with an id; the bytes never print.
pub struct SymmetricKey {
    id: String,
    key: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymmetricKey")
            .field("id", &self.id)
            .field("key", &"****")
            .finish()
    }
}

impl SymmetricKey {
    /// A master key from its base64 form. Its id is derived from the key (`mk_` + 16 hex of a
    /// domain-separated SHA-256), so the database can name which master key wrapped what.
    pub fn master_from_base64(text: &str) -> Result<Self, EnvelopeError> {
        let raw = STANDARD
            .decode(text.trim())
            .map_err(|_| EnvelopeError::BadMasterKey)?;
        let key: [u8; 32] = raw.try_into().map_err(|_| EnvelopeError::BadMasterKey)?;
        let mut tagged = b"palisade/master-key-id/v1\0".to_vec();
        tagged.extend_from_slice(&key);
        let digest = super::sha256(&tagged);
        let id = format!("mk_{}", super::hex(&digest[..8]));
        Ok(Self {
            id,
            key: SecretBox::new(Box::new(key)),
        })
    }

    /// A fresh master key, base64-encoded, for the development key file.
    pub fn generate_master_base64() -> Result<String> {
        Ok(STANDARD.encode(random::bytes::<32>()?))
    }

    pub fn new(id: String, key: [u8; 32]) -> Self {
        Self {
            id,
            key: SecretBox::new(Box::new(key)),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Result<Aes256Gcm> {
        let key = Key::<Aes256Gcm>::try_from(&self.key.expose_secret()[..])
            .map_err(|_| Error::internal(EnvelopeError::Malformed))?;
        Ok(Aes256Gcm::new(&key))
    }

    /// Encrypts `plaintext` bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: Aad<'_>) -> Result<Vec<u8>> {
        let nonce_bytes = random::bytes::<NONCE_LEN>()?;
        let nonce = Nonce::try_from(&nonce_bytes[..])
            .map_err(|_| Error::internal(EnvelopeError::Malformed))?;
        let aad = aad.encode(&self.id);
        let ct = self
            .cipher()?
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::internal(EnvelopeError::Unauthentic))?;
        let id = self.id.as_bytes();
        let id_len =
            u8::try_from(id.len()).map_err(|_| Error::internal(EnvelopeError::Malformed))?;
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + ct.len());
        out.push(FORMAT_V1);
        out.push(id_len);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// This key's bytes sealed under `wrapping` (a data key wrapped by a master key).
    pub fn wrap_with(&self, wrapping: &SymmetricKey, aad: Aad<'_>) -> Result<Vec<u8>> {
        wrapping.seal(self.key.expose_secret(), aad)
    }

    /// Decrypts a ciphertext from [`seal`](Self::seal) bound to the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: Aad<'_>) -> Result<Vec<u8>, EnvelopeError> {
        let key_id = key_id_of(sealed)?;
        if key_id != self.id {
            return Err(EnvelopeError::UnknownKey(key_id.to_owned()));
        }
        let rest = &sealed[2 + key_id.len()..];
        if rest.len() < NONCE_LEN + 16 {
            return Err(EnvelopeError::Malformed);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| EnvelopeError::Malformed)?;
        let aad = aad.encode(&self.id);
        let cipher = self.cipher().map_err(|_| EnvelopeError::Malformed)?;
        cipher
            .decrypt(&nonce, Payload { msg: ct, aad: &aad })
            .map_err(|_| EnvelopeError::Unauthentic)
    }
}

/// The key id a ciphertext names, so the right key can be picked before opening.
pub fn key_id_of(sealed: &[u8]) -> Result<&str, EnvelopeError> {
    match sealed {
        [FORMAT_V1, len, rest @ ..] if rest.len() >= usize::from(*len) => {
            std::str::from_utf8(&rest[..usize::from(*len)]).map_err(|_| EnvelopeError::Malformed)
        }
        _ => Err(EnvelopeError::Malformed),
    }
}

/// The configured master keys: one active for wrapping, older ones for unwrapping.
#[derive(Debug)]
pub struct Keyring {
    active: SymmetricKey,
    retired: Vec<SymmetricKey>,
}

impl Keyring {
    pub fn new(active: SymmetricKey, retired: Vec<SymmetricKey>) -> Self {
        Self { active, retired }
    }

    pub fn active(&self) -> &SymmetricKey {
        &self.active
    }

    pub fn retired(&self) -> &[SymmetricKey] {
        &self.retired
    }

    pub fn get(&self, id: &str) -> Option<&SymmetricKey> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .find(|k| k.id == id)
    }

    /// A fresh data key, and its wrapped form under the active master key.
    pub fn new_data_key(&self, id: &str, aad: Aad<'_>) -> Result<(SymmetricKey, Vec<u8>)> {
        let raw = random::bytes::<32>()?;
        let wrapped = self.active.seal(&raw, aad)?;
        Ok((SymmetricKey::new(id.to_owned(), raw), wrapped))
    }

    /// Unwraps a stored data key with whichever master key wrapped it.
    pub fn unwrap_data_key(
        &self,
        id: &str,
        wrapped: &[u8],
        aad: Aad<'_>,
    ) -> Result<SymmetricKey, EnvelopeError> {
        let master_id = key_id_of(wrapped)?;
        let master = self
            .get(master_id)
            .ok_or_else(|| EnvelopeError::UnknownKey(master_id.to_owned()))?;
        let raw = master.open(wrapped, aad)?;
        let key: [u8; 32] = raw.try_into().map_err(|_| EnvelopeError::Malformed)?;
        Ok(SymmetricKey::new(id.to_owned(), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad<'a>(row: &'a str) -> Aad<'a> {
        Aad {
            owner: "instance",
            table: "signing_keys",
            row,
            field: "private_key",
        }
    }

    #[test]
    fn sealed_data_opens_only_with_the_same_key_and_binding() -> Result<()> {
        let master = SymmetricKey::master_from_base64(&SymmetricKey::generate_master_base64()?)
            .map_err(Error::internal)?;
        let ring = Keyring::new(master, vec![]);
        let (dek, wrapped) = ring.new_data_key("dek_1", aad("dek_1"))?;
        let sealed = dek.seal(b"canary-secret", aad("key_1"))?;
        assert!(!sealed.windows(13).any(|w| w == b"canary-secret"));
        assert_eq!(
            dek.open(&sealed, aad("key_1")).map_err(Error::internal)?,
            b"canary-secret"
        );
        // Moved to another row: refused.
        assert!(matches!(
            dek.open(&sealed, aad("key_2")),
            Err(EnvelopeError::Unauthentic)
        ));
        // The wrapped data key round-trips through the keyring, bound to its own row.
        let again = ring
            .unwrap_data_key("dek_1", &wrapped, aad("dek_1"))
            .map_err(Error::internal)?;
        assert_eq!(
            again.open(&sealed, aad("key_1")).map_err(Error::internal)?,
            b"canary-secret"
        );
        assert!(
            ring.unwrap_data_key("dek_1", &wrapped, aad("dek_2"))
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn unwrap_with_a_missing_master_key_names_it() -> Result<()> {
        let a = SymmetricKey::master_from_base64(&SymmetricKey::generate_master_base64()?)
            .map_err(Error::internal)?;
        let a_id = a.id().to_owned();
        let (_, wrapped) = Keyring::new(a, vec![]).new_data_key("dek_1", aad("dek_1"))?;
        let b = SymmetricKey::master_from_base64(&SymmetricKey::generate_master_base64()?)
            .map_err(Error::internal)?;
        match Keyring::new(b, vec![]).unwrap_data_key("dek_1", &wrapped, aad("dek_1")) {
            Err(EnvelopeError::UnknownKey(id)) => assert_eq!(id, a_id),
            other => {
                return Err(Error::internal(std::io::Error::other(format!(
                    "expected UnknownKey, got {other:?}"
                ))));
            }
        }
        Ok(())
    }

    #[test]
    fn master_key_must_be_32_bytes() {
        assert!(SymmetricKey::master_from_base64("c2hvcnQ=").is_err());
        assert!(SymmetricKey::master_from_base64("not base64!").is_err());
    }
}
