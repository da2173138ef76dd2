//! Palisade's audit-log format (AUDIT-SPEC.md): the hashes every entry, chain link and personal
//! value commitment is built from. Pure: no database, no HTTP, no clock, so customers can use it
//! alone.
//!
//! - [`entry`]: canonical entries (RFC 8785) and their borrowed read view.
//! - [`merkle`]: RFC 6962 roots, inclusion and consistency proofs over stored subtree hashes.
//! - [`checkpoint`]: C2SP checkpoint bodies, their JWS and signed-note signatures, JWKs.
//! - [`verify`]: the streaming verifier behind `palisade audit verify`.

pub mod checkpoint;
pub mod entry;
pub mod jcs;
pub mod merkle;
pub mod verify;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// The `prev` value of entry 0: `SHA-256("audit-log/v1 genesis\n" ‖ origin_id)`.
pub fn genesis(log_id: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(b"audit-log/v1 genesis\n");
    h.update(log_id.as_bytes());
    h.finalize().into()
}

/// RFC 6962 leaf hash of the exact entry bytes: `SHA-256(0x00 ‖ entry)`. Also the chain link.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// Commitment to a personal value: `SHA-256("audit-pii/v1" ‖ 0x00 ‖ salt ‖ JCS(value))`.
/// `canonical_value` must already be the RFC 8785 form of the value.
pub fn pii_commitment(salt: &[u8; 32], canonical_value: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(b"audit-pii/v1");
    h.update([0x00]);
    h.update(salt);
    h.update(canonical_value);
    h.finalize().into()
}

/// base64url without padding, the encoding of hashes inside entries.
pub fn b64url(hash: &Hash) -> String {
    URL_SAFE_NO_PAD.encode(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // AUDIT-SPEC.md §10.
    #[test]
    fn genesis_matches_spec_vector() {
        assert_eq!(
            b64url(&genesis("ws_test")),
            "OGj4kKx0Nixp2iOWMMsVtJiXcWLD-JVxAEw9TCo7iI4"
        );
    }

    #[test]
    fn commitment_matches_spec_vector() {
        let salt: [u8; 32] = std::array::from_fn(|i| i as u8);
        let c = pii_commitment(&salt, b"\"203.0.113.7\"");
        assert_eq!(b64url(&c), "bKW654h1CDiVMHfzkGBPaIr-fOZwKsBneb3T4f8k8KE");
    }

    #[test]
    fn leaf_hash_matches_spec_vector_and_chains() {
        let entry0 = br#"{"action":"workspace.create","actor":{"id":"usr_1","type":"user"},"diff":{},"gdpr":false,"pii":{},"prev":"OGj4kKx0Nixp2iOWMMsVtJiXcWLD-JVxAEw9TCo7iI4","result":"success","seq":0,"target":{"id":"obj_0","type":"workspace"},"ts":"2026-11-20T10:00:00.000000Z","v":1,"ws":"ws_test"}"#;
        let leaf0 = leaf_hash(entry0);
        assert_eq!(
            hex(&leaf0),
            "33071d7cee4d4a6f537baa376252d02cf2562765539266874d04799bbadf1ba5"
        );
        // Entry 1's `prev` is entry 0's leaf hash.
        assert_eq!(
            b64url(&leaf0),
            "MwcdfO5NSm9Te6o3YlLQLPJWJ2VTkmaHTQR5m7rfG6U"
        );
    }
}
