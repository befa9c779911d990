//! Access-token secrets: how they are made and how they are hashed for storage.
//!
//! Stores keep only [`hash`] of a token, so a leaked table does not leak sessions.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Makes a new random token: 32 bytes from the operating system, URL-safe base64.
pub fn generate() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::backend("random", e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The form of a token that stores keep and look up by: SHA-256, lower-case hex.
///
/// A plain hash is enough because tokens are 256 random bits, not guessable passwords.
#[must_use]
pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() -> Result<()> {
        let (a, b) = (generate()?, generate()?);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        Ok(())
    }
}
