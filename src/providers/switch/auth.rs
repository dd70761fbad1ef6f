//! Switch authentication: the `SWI-CID` client id on every call, the user session token as
//! `Authorization: Bearer` (obtained by the configured login call, or given as a static token,
//! and kept in the shared [`crate::providers::token_cache::TokenCache`]), and the `SWI-CS`
//! payload checksum on POSTs.
//!
//! The `SWI-CS` algorithm is NOT published (docs/providers.md §2.3). It is therefore a named
//! strategy chosen in config, computed in exactly one function, [`checksum`], so the rule Switch
//! confirms drops in as one more variant. The default, `hmac-sha256-hex` (lower-case hex
//! HMAC-SHA256 of the exact body bytes keyed with `checksum_key`), is an ASSUMPTION.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How `SWI-CS` is computed over a POST body. Unconfirmed: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ChecksumStrategy {
    /// Lower-case hex HMAC-SHA256 of the exact body bytes, keyed with `checksum_key` (default;
    /// an assumption until Switch publishes the rule).
    #[serde(rename = "hmac-sha256-hex")]
    HmacSha256Hex,
    /// Lower-case hex SHA-256 of the key bytes followed by the body bytes (an empty key gives
    /// the plain SHA-256 of the body).
    #[serde(rename = "sha256-hex")]
    Sha256Hex,
    /// No `SWI-CS` header at all.
    #[serde(rename = "none")]
    None,
}

impl ChecksumStrategy {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha256Hex => "hmac-sha256-hex",
            Self::Sha256Hex => "sha256-hex",
            Self::None => "none",
        }
    }
}

/// The `SWI-CS` value of `body` under `strategy`; `None` when the strategy sends no header.
/// Pure, so the tests and the sandbox simulator verify with the same rule.
pub fn checksum(strategy: ChecksumStrategy, key: &SecretString, body: &[u8]) -> Option<String> {
    match strategy {
        ChecksumStrategy::HmacSha256Hex => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(body);
            Some(hex(&mac.finalize().into_bytes()))
        }
        ChecksumStrategy::Sha256Hex => {
            let mut hash = Sha256::new();
            hash.update(key.expose_secret().as_bytes());
            hash.update(body);
            Some(hex(&hash.finalize()))
        }
        ChecksumStrategy::None => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Authorization` header value for a session token.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> SecretString {
        SecretString::from(k.to_owned())
    }

    #[test]
    fn hmac_sha256_hex_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            checksum(
                ChecksumStrategy::HmacSha256Hex,
                &key("Jefe"),
                b"what do ya want for nothing?"
            )
            .as_deref(),
            Some("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn sha256_hex_hashes_key_then_body() {
        // SHA-256("abc"), the FIPS 180-2 example, as key "" + body "abc" and key "a" + "bc".
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            checksum(ChecksumStrategy::Sha256Hex, &key(""), b"abc").as_deref(),
            Some(abc)
        );
        assert_eq!(
            checksum(ChecksumStrategy::Sha256Hex, &key("a"), b"bc").as_deref(),
            Some(abc)
        );
    }

    #[test]
    fn none_sends_no_header_and_every_byte_counts() {
        assert_eq!(checksum(ChecksumStrategy::None, &key("k"), b"{}"), None);
        let a = checksum(ChecksumStrategy::HmacSha256Hex, &key("k"), b"{\"a\":1}");
        let b = checksum(ChecksumStrategy::HmacSha256Hex, &key("k"), b"{\"a\": 1}");
        assert_ne!(
            a, b,
            "the checksum covers the exact bytes, not the JSON value"
        );
    }

    #[test]
    fn strategies_parse_from_their_config_names() {
        for s in [
            ChecksumStrategy::HmacSha256Hex,
            ChecksumStrategy::Sha256Hex,
            ChecksumStrategy::None,
        ] {
            let parsed: ChecksumStrategy =
                serde_json::from_value(serde_json::json!(s.name())).unwrap();
            assert_eq!(parsed, s);
        }
    }
}
