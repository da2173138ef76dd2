//! Randomness from the OS CSPRNG, and the opaque tokens built from it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RngError(getrandom::Error);

/// `N` bytes from the OS CSPRNG.
pub fn bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::internal(RngError(e)))?;
    Ok(buf)
}

/// 32 random bytes, base64url: an opaque bearer secret.
pub fn token() -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(bytes::<32>()?))
}

/// A short lowercase alphanumeric suffix (for de-duplicating generated slugs; not a secret).
pub fn suffix(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let raw = bytes::<16>()?;
    Ok(raw
        .iter()
        .take(len)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}
