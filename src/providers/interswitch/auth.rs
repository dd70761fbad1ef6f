//! InterswitchAuth request signing (Interswitch Services API security headers).
//!
//! `Signature = base64(H(METHOD & urlencode(https-url) & timestamp & nonce & clientId & secret))`
//! where the URL is the full absolute URL with its query, `http://` is replaced by `https://`
//! before signing, and the encoding is Java `URLEncoder` (form encoding: `A-Za-z0-9.-*_` kept,
//! space as `+`, everything else `%XX` upper-case), as in Interswitch's reference Java SDK.
//! H is SHA-1, SHA-256 or SHA-512 as configured, named in the `SignatureMethod` header.

use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

/// The hash of the signature, and the `SignatureMethod` header value that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SignatureMethod {
    #[serde(rename = "SHA1")]
    Sha1,
    #[serde(rename = "SHA256")]
    Sha256,
    #[serde(rename = "SHA512")]
    Sha512,
}

impl SignatureMethod {
    /// The `SignatureMethod` header value.
    pub fn header_value(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Parses a header value; accepts the hyphenated spellings some Interswitch SDKs send.
    pub fn from_header(value: &str) -> Option<Self> {
        match value.to_ascii_uppercase().as_str() {
            "SHA1" | "SHA-1" => Some(Self::Sha1),
            "SHA256" | "SHA-256" => Some(Self::Sha256),
            "SHA512" | "SHA-512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// The security headers of one request.
pub struct SignedHeaders {
    pub authorization: String,
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub signature_method: &'static str,
}

/// The `Authorization` header value: `InterswitchAuth base64(clientId)`.
pub fn authorization(client_id: &str) -> String {
    format!("InterswitchAuth {}", BASE64.encode(client_id.as_bytes()))
}

/// The URL as it is signed: `http://` becomes `https://`, nothing else changes.
pub fn signed_url(url: &str) -> String {
    match url.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => url.to_owned(),
    }
}

/// Computes the signature. Pure, so tests and the sandbox simulator verify with the same rule.
pub fn signature(
    method: SignatureMethod,
    http_method: &str,
    url: &str,
    timestamp: &str,
    nonce: &str,
    client_id: &str,
    client_secret: &str,
) -> String {
    let encoded_url: String = form_urlencoded::byte_serialize(signed_url(url).as_bytes()).collect();
    let canonical =
        format!("{http_method}&{encoded_url}&{timestamp}&{nonce}&{client_id}&{client_secret}");
    BASE64.encode(method.digest(canonical.as_bytes()))
}

/// Credentials that sign requests.
pub struct Signer {
    pub client_id: String,
    pub client_secret: SecretString,
    pub method: SignatureMethod,
}

impl Signer {
    /// Signs one request with a fresh timestamp (unix seconds) and a fresh nonce.
    pub fn sign(&self, http_method: &str, url: &str) -> SignedHeaders {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
            .to_string();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let signature = signature(
            self.method,
            http_method,
            url,
            &timestamp,
            &nonce,
            &self.client_id,
            self.client_secret.expose_secret(),
        );
        SignedHeaders {
            authorization: authorization(&self.client_id),
            timestamp,
            nonce,
            signature,
            signature_method: self.method.header_value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_matches_the_documented_sample() {
        // From Interswitch's security-headers documentation.
        assert_eq!(
            authorization("IKIAEE38C24A363E4FC01DEBFBFE9F8DC1F4BCB2BC48"),
            "InterswitchAuth SUtJQUVFMzhDMjRBMzYzRTRGQzAxREVCRkJGRTlGOERDMUY0QkNCMkJDNDg="
        );
    }

    #[test]
    fn url_is_signed_as_https_and_form_encoded() {
        assert_eq!(
            signed_url("http://127.0.0.1:9/a?b=c"),
            "https://127.0.0.1:9/a?b=c"
        );
        assert_eq!(signed_url("https://x/http://y"), "https://x/http://y");
        let encoded: String = form_urlencoded::byte_serialize(b"https://h/p?a=1&b=x y~*").collect();
        // Java URLEncoder: ':' '/' '?' '=' '&' '~' encoded, space as '+', '*' kept.
        assert_eq!(encoded, "https%3A%2F%2Fh%2Fp%3Fa%3D1%26b%3Dx+y%7E*");
    }

    #[test]
    fn signature_matches_an_independent_computation() {
        // Vectors computed with Python's hashlib and urllib.parse.quote_plus(url, safe='*')
        // (Java URLEncoder rules) for:
        // GET & https://sandbox.interswitchng.com/api/v2/quickteller/transactions?requestreference=145600000001
        //     & 1700000000 & abc123 & IKIATEST & s3cret
        let url = "http://sandbox.interswitchng.com/api/v2/quickteller/transactions?requestreference=145600000001";
        let sig = |m| signature(m, "GET", url, "1700000000", "abc123", "IKIATEST", "s3cret");
        assert_eq!(
            sig(SignatureMethod::Sha1),
            include_str!("testdata/sha1.txt").trim()
        );
        assert_eq!(
            sig(SignatureMethod::Sha256),
            include_str!("testdata/sha256.txt").trim()
        );
        assert_eq!(
            sig(SignatureMethod::Sha512),
            include_str!("testdata/sha512.txt").trim()
        );
    }

    #[test]
    fn signature_method_header_spellings() {
        assert_eq!(
            SignatureMethod::from_header("SHA-512"),
            Some(SignatureMethod::Sha512)
        );
        assert_eq!(
            SignatureMethod::from_header("sha1"),
            Some(SignatureMethod::Sha1)
        );
        assert_eq!(SignatureMethod::from_header("MD5"), None);
    }
}
