//! Encryption of the OAuth2 tokens kept in the control schema: the token
//! key (`ATLAS_TOKEN_KEY` or `ATLAS_TOKEN_KEY_FILE`, 32 bytes) and
//! XChaCha20-Poly1305 sealing, each value bound to its client and field so
//! a sealed value cannot be moved to another row or column.

use crate::exit::usage;
use crate::textfile;
use anyhow::Result;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;
use std::path::Path;

/// Bytes of the random nonce stored in front of each ciphertext.
const NONCE_LEN: usize = 24;

/// The key stored tokens are sealed with. Never printed.
#[derive(Clone)]
pub struct TokenKey(chacha20poly1305::Key);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(***)")
    }
}

impl TokenKey {
    /// The key from `ATLAS_TOKEN_KEY` (the key itself) or
    /// `ATLAS_TOKEN_KEY_FILE` (a file holding it); neither is a usage error
    /// naming both. Errors never echo the key.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<TokenKey> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = set("ATLAS_TOKEN_KEY") {
            return TokenKey::parse(&v).map_err(|m| usage(format!("ATLAS_TOKEN_KEY: {m}")));
        }
        if let Some(path) = set("ATLAS_TOKEN_KEY_FILE") {
            let text = textfile::read(Path::new(&path)).map_err(|e| {
                usage(format!(
                    "cannot read the token key file {path} (ATLAS_TOKEN_KEY_FILE): {e}"
                ))
            })?;
            return TokenKey::parse(&text)
                .map_err(|m| usage(format!("token key file {path} (ATLAS_TOKEN_KEY_FILE): {m}")));
        }
        Err(usage(
            "ATLAS_TOKEN_KEY is not set: oauth2 clients keep their tokens encrypted in the \
             database and need a 32-byte key in ATLAS_TOKEN_KEY (or a file named by \
             ATLAS_TOKEN_KEY_FILE); make one with `openssl rand -hex 32`",
        ))
    }

    /// 64 hex digits, or 32 bytes in base64.
    pub fn parse(text: &str) -> Result<TokenKey, String> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| "not hex".to_string())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| "not 64 hex digits nor base64".to_string())?
        };
        if bytes.len() != 32 {
            return Err(format!(
                "must be 32 bytes (64 hex digits or 44 base64 characters), got {} bytes",
                bytes.len()
            ));
        }
        Ok(TokenKey(*chacha20poly1305::Key::from_slice(&bytes)))
    }

    /// `plaintext` sealed for (`client`, `field`): nonce, then ciphertext and tag.
    pub fn seal(&self, plaintext: &str, client: &str, field: &str) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(&self.0);
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = format!("atlas/{client}/{field}");
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message under 256 GiB");
        let mut out = nonce.to_vec();
        out.extend(ct);
        out
    }

    /// The plaintext of a value sealed for (`client`, `field`); `None` when
    /// it was sealed with another key, for another row, or altered.
    pub fn open(&self, sealed: &[u8], client: &str, field: &str) -> Option<String> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let aad = format!("atlas/{client}/{field}");
        let plain = XChaCha20Poly1305::new(&self.0)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes() {
        let hex = TokenKey::parse(HEX).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode((0u8..32).collect::<Vec<_>>());
        let same = TokenKey::parse(&format!("{b64}\n")).unwrap();
        let sealed = hex.seal("t", "c", "f");
        assert_eq!(same.open(&sealed, "c", "f").as_deref(), Some("t"));
        for bad in ["", "abc", &HEX[..62], &"zz".repeat(32)] {
            assert!(TokenKey::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{hex:?}"), "TokenKey(***)");
    }

    #[test]
    fn sealed_values_open_only_with_their_key_client_and_field() {
        let k = TokenKey::parse(HEX).unwrap();
        let a = k.seal("refresh-123", "2151", "refresh");
        let b = k.seal("refresh-123", "2151", "refresh");
        assert_ne!(a, b, "a fresh nonce each time");
        assert!(!String::from_utf8_lossy(&a).contains("refresh-123"));
        assert_eq!(
            k.open(&a, "2151", "refresh").as_deref(),
            Some("refresh-123")
        );
        assert_eq!(k.open(&a, "2152", "refresh"), None);
        assert_eq!(k.open(&a, "2151", "access"), None);
        let other = TokenKey::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(other.open(&a, "2151", "refresh"), None);
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(k.open(&tampered, "2151", "refresh"), None);
        assert_eq!(k.open(&a[..10], "2151", "refresh"), None);
    }

    #[test]
    fn no_key_names_the_variable() {
        let e = TokenKey::from_env(&|_| None).unwrap_err();
        assert!(format!("{e}").contains("ATLAS_TOKEN_KEY"), "{e}");
        let e = TokenKey::from_env(&|k| (k == "ATLAS_TOKEN_KEY").then(|| "s3cr3t-short".into()))
            .unwrap_err();
        assert!(!format!("{e}").contains("s3cr3t"), "{e}");
        let ok = TokenKey::from_env(&|k| (k == "ATLAS_TOKEN_KEY").then(|| HEX.into()));
        assert!(ok.is_ok());
    }
}
