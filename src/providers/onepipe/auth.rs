//! OnePipe request authentication: the `Signature` header (lower-case hex MD5 of
//! `request_ref;client_secret`) and the encrypted `auth.secure` field (3DES-EDE CBC, zero IV,
//! key = MD5(UTF-16LE(secret)) extended to 24 bytes, UTF-16LE plaintext, PKCS#5 padding,
//! standard Base64), with the plaintext layout of each funding type. Sources: OnePipe
//! "Encryption in OnePipe" and the plugin and sample code summarised in docs/providers.md §4.3-4.4.

use base64::{engine::general_purpose::STANDARD, Engine};
use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use crate::domain::options::FundingSecret;

type TdesCbcEnc = cbc::Encryptor<des::TdesEde3>;
type TdesCbcDec = cbc::Decryptor<des::TdesEde3>;

/// DES block size in bytes.
const BLOCK: usize = 8;

/// `Signature` header for one request: lower-case hex MD5 of `request_ref;client_secret`.
/// Binds only the `request_ref`, so every HTTP call needs a fresh one.
pub fn signature(request_ref: &str, client_secret: &str) -> String {
    hex(&Md5::digest(format!("{request_ref};{client_secret}")))
}

/// The 24-byte two-key 3DES key: `k16 || k16[0..8]` with `k16 = MD5(UTF-16LE(secret))`.
fn key(client_secret: &str) -> [u8; 24] {
    let k16 = Md5::digest(utf16le(client_secret));
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&k16);
    key[16..].copy_from_slice(&k16[..8]);
    key
}

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Encrypts `plaintext` for `auth.secure`. PKCS#7 on 8-byte blocks is PKCS#5.
/// The plaintext's UTF-16LE copy is wiped before returning.
pub fn encrypt_secure(plaintext: &str, client_secret: &str) -> String {
    let mut buffer = utf16le(plaintext);
    let length = buffer.len();
    buffer.resize(length + BLOCK, 0);
    let cipher = TdesCbcEnc::new(&key(client_secret).into(), &[0u8; BLOCK].into());
    let sealed = STANDARD.encode(
        cipher
            .encrypt_padded_mut::<Pkcs7>(&mut buffer, length)
            .expect("the buffer has room for one block of padding"),
    );
    buffer.zeroize();
    sealed
}

/// Decrypts an `auth.secure` value (the simulator and the tests check what was sent).
/// `None` when it is not Base64, not a whole number of blocks, badly padded or not UTF-16LE.
pub fn decrypt_secure(secure: &str, client_secret: &str) -> Option<String> {
    let mut data = STANDARD.decode(secure).ok()?;
    let cipher = TdesCbcDec::new(&key(client_secret).into(), &[0u8; BLOCK].into());
    let plain = cipher.decrypt_padded_mut::<Pkcs7>(&mut data).ok()?;
    if plain.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = plain
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// OnePipe `auth.type` and the `auth.secure` plaintext of a funding source (documented
/// layouts: card `pan;cvv;expdate;pin`, bank.account `account;bankcode`, wallet
/// `walletNumber;providerCode`, airtime `phone;telco`, voucher `code;provider`). The plaintext
/// is secret: it only goes to [`encrypt_secure`].
pub fn funding_plaintext(funding: &FundingSecret) -> (&'static str, SecretString) {
    let join = |parts: &[&str]| SecretString::from(parts.join(";"));
    match funding {
        FundingSecret::Card {
            pan,
            cvv,
            expiry_mmyy,
            pin,
        } => (
            "card",
            join(&[
                pan.expose_secret(),
                cvv.expose_secret(),
                expiry_mmyy.expose_secret(),
                pin.expose_secret(),
            ]),
        ),
        FundingSecret::BankAccount {
            account_number,
            bank_cbn_code,
        } => (
            "bank.account",
            join(&[account_number.expose_secret(), bank_cbn_code]),
        ),
        FundingSecret::Wallet {
            wallet_number,
            provider_code,
        } => (
            "wallet",
            join(&[wallet_number.expose_secret(), provider_code]),
        ),
        FundingSecret::Airtime {
            phone_number,
            telco_code,
        } => ("airtime", join(&[phone_number.expose_secret(), telco_code])),
        FundingSecret::Voucher {
            voucher_code,
            provider_code,
        } => (
            "voucher",
            join(&[voucher_code.expose_secret(), provider_code]),
        ),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "onepipe-kat-secret";

    /// Known answers made with the command line, independently of this code:
    ///
    /// ```sh
    /// secret='onepipe-kat-secret'
    /// k16=$(printf '%s' "$secret" | iconv -t UTF-16LE | openssl dgst -md5 -binary | xxd -p)
    /// k24="$k16${k16:0:16}"
    /// printf '%s' "$plain" | iconv -t UTF-16LE \
    ///   | openssl enc -des-ede3-cbc -K "$k24" -iv 0000000000000000 | base64 -w0
    /// ```
    const KNOWN: &[(&str, &str)] = &[
        // One block (3 UTF-16 units = 6 bytes + 2 bytes padding).
        ("abc", "LhZWRWpfRag="),
        // A card: 68 bytes of UTF-16LE, nine blocks (CBC chaining across blocks).
        (
            "5060990580000217499;111;2203;1234",
            "YJX/f2T40KkH5MGpJk3b9dJhm2H9Xg/aNG9PYT5QXZ3LtkB9Ry3rQ6adk5ZMCYtzLqF3jsZalx9jOPkkwMY5e0sGVewCIPbF",
        ),
        // A bank account, more than one block.
        ("0123456789;058", "6XzT1chfBJlO4Xk2U56HlOcEmG5x/mNKx/1RAt3xVzc="),
        // Non-ASCII characters (U+1ECC, U+00E1), two blocks.
        ("Ọlá;MTN", "Yx4CpB7SAiPc1TJRhRq3Bg=="),
    ];

    #[test]
    fn secure_matches_openssl_known_answers() {
        for (plain, expected) in KNOWN {
            assert_eq!(&encrypt_secure(plain, SECRET), expected, "{plain}");
            assert_eq!(decrypt_secure(expected, SECRET).as_deref(), Some(*plain));
        }
    }

    #[test]
    fn key_is_md5_of_utf16le_secret_extended_to_24_bytes() {
        // printf '%s' onepipe-kat-secret | iconv -t UTF-16LE | openssl dgst -md5
        assert_eq!(
            hex(&key(SECRET)),
            "197a1dd25d35959cdba4e1c6a207831b197a1dd25d35959c"
        );
    }

    #[test]
    fn signature_is_lower_hex_md5_of_ref_and_secret() {
        // printf '%s' 'REF-1;onepipe-kat-secret' | md5sum
        assert_eq!(
            signature("REF-1", SECRET),
            "5f506f87ab4bf0469f838cf49e7d16b0"
        );
    }

    #[test]
    fn bad_secure_values_do_not_decrypt() {
        assert_eq!(decrypt_secure("not base64!", SECRET), None);
        assert_eq!(decrypt_secure("AAAA", SECRET), None);
        assert_eq!(decrypt_secure("LhZWRWpfRag=", "another secret"), None);
    }

    #[test]
    fn each_funding_type_has_its_documented_plaintext() {
        let s = |v: &str| SecretString::from(v.to_owned());
        let cases = [
            (
                FundingSecret::Card {
                    pan: s("5060990580000217499"),
                    cvv: s("111"),
                    expiry_mmyy: s("2203"),
                    pin: s("1234"),
                },
                "card",
                "5060990580000217499;111;2203;1234",
            ),
            (
                FundingSecret::BankAccount {
                    account_number: s("0123456789"),
                    bank_cbn_code: "058".into(),
                },
                "bank.account",
                "0123456789;058",
            ),
            (
                FundingSecret::Wallet {
                    wallet_number: s("W123"),
                    provider_code: "OPAY".into(),
                },
                "wallet",
                "W123;OPAY",
            ),
            (
                FundingSecret::Airtime {
                    phone_number: s("2348030000000"),
                    telco_code: "MTN".into(),
                },
                "airtime",
                "2348030000000;MTN",
            ),
            (
                FundingSecret::Voucher {
                    voucher_code: s("V-999"),
                    provider_code: "VPRO".into(),
                },
                "voucher",
                "V-999;VPRO",
            ),
        ];
        for (funding, kind, plain) in cases {
            let (t, p) = funding_plaintext(&funding);
            assert_eq!((t, p.expose_secret()), (kind, plain));
        }
    }
}
