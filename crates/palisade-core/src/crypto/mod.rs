//! Cryptography, all from maintained crates: OS randomness, Argon2id passwords, the AES-256-GCM
//! envelope under the master key, EdDSA access tokens, SHA-256 of long random secrets.

pub mod envelope;
pub mod password;
pub mod random;
pub mod tokens;

use sha2::{Digest, Sha256};

/// SHA-256, the storage form of long random secrets (refresh tokens, API keys).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lowercase hex, for digests shown in keys and audit entries.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
