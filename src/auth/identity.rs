//! Who a request says its caller is, read strictly: the identity in a forwarded header (Envoy's
//! `x-forwarded-client-cert`, parsed by its documented grammar, or a plain identity in another
//! header) and the identity in a mutual-TLS client certificate. Anything that could be read as
//! two different identities is no identity at all: the auth layer then answers UNAUTHENTICATED.
//!
//! XFCC grammar, as Envoy documents it: the value is a list of elements separated by `,`, one
//! per proxy that appended one (the last is our own sidecar's, so the last element is the
//! caller); an element is a list of `key=value` pairs separated by `;`; keys are
//! case-insensitive and are `By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI` and `DNS`; a value
//! may be double-quoted, and inside quotes `,`, `;` and `=` are literal and `\"` and `\\` are
//! the escapes of `"` and `\`. Spaces and tabs around keys, values and separators are ignored.
//! The identity is the last element's `URI` (a SPIFFE id), else its `Subject`.
//!
//! Refused (no identity): an unterminated quote; a backslash in a quoted value not followed by
//! `"` or `\`; a `"`, `\` or `=` in an unquoted value, or text after a closing quote; a pair
//! without `=` (a bare value is not a key); an unknown or empty key; an empty element or pair;
//! a key given twice in one element, except `By` and `DNS`, which Envoy writes once per SAN;
//! several `URI` pairs in one element (Envoy writes one per URI SAN of the client certificate,
//! and a certificate with two names two identities); characters outside visible ASCII. Every
//! element must parse, not only the last, so no malformed earlier element can move where the
//! last one starts.
//!
//! Several header fields (HTTP joins them with `,`): each field must be a complete list of
//! elements on its own (no quoted value spans two fields), and the elements of all fields in
//! order are the list, so the caller is the last element of the last field.

use http::{header::GetAll, HeaderName, HeaderValue};

use super::DEFAULT_FORWARDED_HEADER;

/// A key of an XFCC element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XfccKey {
    /// A URI SAN of the proxy that appended the element (one pair per SAN).
    By,
    /// SHA-256 of the client certificate.
    Hash,
    /// The client certificate, URL-encoded PEM.
    Cert,
    /// The client certificate chain, URL-encoded PEM.
    Chain,
    /// The client certificate's subject.
    Subject,
    /// The client certificate's URI SAN.
    Uri,
    /// A DNS SAN of the client certificate (one pair per SAN).
    Dns,
}

impl XfccKey {
    const NAMES: [(&'static str, XfccKey); 7] = [
        ("By", Self::By),
        ("Hash", Self::Hash),
        ("Cert", Self::Cert),
        ("Chain", Self::Chain),
        ("Subject", Self::Subject),
        ("URI", Self::Uri),
        ("DNS", Self::Dns),
    ];

    fn parse(key: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, k)| *k)
    }

    /// The name Envoy writes.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("", |(name, _)| name)
    }

    /// Envoy writes these once per SAN, so one element may hold several.
    fn may_repeat(self) -> bool {
        matches!(self, Self::By | Self::Dns)
    }
}

/// Why a forwarded value gives no identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XfccError {
    /// No header, or an empty header field.
    Empty,
    /// Characters outside visible ASCII, space and tab.
    NotText,
    /// An element with no pairs (`a,,b`, a trailing `,`).
    EmptyElement,
    /// A pair without `=` (a bare value, a trailing `;`) or with an empty key.
    NotAPair,
    /// A key Envoy does not write.
    UnknownKey,
    /// A quoted value without its closing quote.
    UnterminatedQuote,
    /// A backslash in a quoted value not followed by `"` or `\`.
    BadEscape,
    /// A `"`, `\` or `=` in an unquoted value, or text after a closing quote.
    StrayCharacter,
    /// A key that may appear once given twice in one element.
    DuplicateKey(XfccKey),
    /// Several `URI` pairs in one element: two identities.
    SeveralUris,
    /// The caller's element has neither a non-empty `URI` nor a non-empty `Subject`.
    NoIdentity,
    /// A plain forwarded header given in several fields: which one is the caller's?
    SeveralFields,
}

impl std::fmt::Display for XfccError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("empty"),
            Self::NotText => f.write_str("not visible ASCII"),
            Self::EmptyElement => f.write_str("an empty element"),
            Self::NotAPair => f.write_str("a pair without a key and `=`"),
            Self::UnknownKey => f.write_str("an unknown key"),
            Self::UnterminatedQuote => f.write_str("an unterminated quote"),
            Self::BadEscape => f.write_str("a backslash not before `\"` or `\\`"),
            Self::StrayCharacter => f.write_str("a stray `\"`, `\\` or `=`"),
            Self::DuplicateKey(key) => write!(f, "{} given twice in one element", key.name()),
            Self::SeveralUris => f.write_str("several URI pairs in one element"),
            Self::NoIdentity => f.write_str("no URI or Subject in the caller's element"),
            Self::SeveralFields => f.write_str("several fields of a plain header"),
        }
    }
}

impl std::error::Error for XfccError {}

/// One XFCC element: its pairs in order, values unquoted and unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfccElement {
    pub pairs: Vec<(XfccKey, String)>,
}

impl XfccElement {
    /// The value of `key` (the first, for `By` and `DNS`).
    pub fn get(&self, key: XfccKey) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The identity this element gives: its `URI`, else its `Subject` (Envoy writes `URI=`
    /// empty when the certificate has no URI SAN).
    pub fn identity(&self) -> Option<&str> {
        let present = |key| self.get(key).filter(|v| !v.is_empty());
        present(XfccKey::Uri).or_else(|| present(XfccKey::Subject))
    }
}

/// How the configured forwarded header is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedFormat {
    /// `x-forwarded-client-cert`: Envoy's XFCC grammar (see the module doc).
    Xfcc,
    /// Any other header (a sidecar that forwards a bare identity, such as Linkerd's
    /// `l5d-client-id`): one field, its value as sent, trimmed.
    Plain,
}

impl ForwardedFormat {
    /// The format of `header`'s values.
    pub fn of(header: &HeaderName) -> Self {
        if header.as_str() == DEFAULT_FORWARDED_HEADER {
            Self::Xfcc
        } else {
            Self::Plain
        }
    }
}

/// The identity in the fields of the forwarded header `header` (see the module doc); `None`
/// when there is none or it is ambiguous.
pub fn forwarded_identity(header: &HeaderName, fields: GetAll<'_, HeaderValue>) -> Option<String> {
    let fields: Vec<&str> = fields
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<_, _>>()
        .ok()?;
    let identity = match ForwardedFormat::of(header) {
        ForwardedFormat::Xfcc => xfcc_identity(&fields),
        ForwardedFormat::Plain => plain_identity(&fields),
    };
    identity
        .map_err(|reason| tracing::debug!(header = %header, %reason, "forwarded identity refused"))
        .ok()
}

/// The identity in a plain header: exactly one field, non-empty once trimmed.
fn plain_identity(fields: &[&str]) -> Result<String, XfccError> {
    let field = match fields {
        [] => return Err(XfccError::Empty),
        [field] => field,
        _ => return Err(XfccError::SeveralFields),
    };
    if !is_text(field) {
        return Err(XfccError::NotText);
    }
    let value = field.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(XfccError::Empty);
    }
    Ok(value.to_owned())
}

/// The caller's identity in an XFCC header's fields: the last element's (see the module doc).
pub fn xfcc_identity(fields: &[&str]) -> Result<String, XfccError> {
    let elements = parse_xfcc(fields)?;
    elements
        .last()
        .and_then(XfccElement::identity)
        .map(str::to_owned)
        .ok_or(XfccError::NoIdentity)
}

/// The elements of an XFCC header's fields, in order.
pub fn parse_xfcc(fields: &[&str]) -> Result<Vec<XfccElement>, XfccError> {
    if fields.is_empty() {
        return Err(XfccError::Empty);
    }
    let mut elements = Vec::new();
    for field in fields {
        if !is_text(field) {
            return Err(XfccError::NotText);
        }
        if field.trim_matches([' ', '\t']).is_empty() {
            return Err(XfccError::Empty);
        }
        let mut cursor = Cursor {
            text: field.as_bytes(),
            at: 0,
        };
        loop {
            elements.push(cursor.element()?);
            match cursor.peek() {
                None => break,
                Some(b',') => cursor.at += 1,
                // element() stops only at `,` or the end.
                Some(_) => return Err(XfccError::StrayCharacter),
            }
        }
    }
    Ok(elements)
}

/// Visible ASCII, space and tab: what a header value may hold as text.
fn is_text(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (0x20..0x7F).contains(&b))
}

/// A position in one header field.
struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// One element, up to (not past) the `,` after it or the end.
    fn element(&mut self) -> Result<XfccElement, XfccError> {
        let mut pairs: Vec<(XfccKey, String)> = Vec::new();
        loop {
            self.skip_spaces();
            let start = self.at;
            while !matches!(self.peek(), None | Some(b'=' | b';' | b',' | b' ' | b'\t')) {
                self.at += 1;
            }
            let key = &self.text[start..self.at];
            self.skip_spaces();
            if key.is_empty() && pairs.is_empty() && matches!(self.peek(), None | Some(b',')) {
                return Err(XfccError::EmptyElement);
            }
            if key.is_empty() || self.peek() != Some(b'=') {
                return Err(XfccError::NotAPair);
            }
            self.at += 1;
            let key = std::str::from_utf8(key)
                .ok()
                .and_then(XfccKey::parse)
                .ok_or(XfccError::UnknownKey)?;
            self.skip_spaces();
            let value = if self.peek() == Some(b'"') {
                self.at += 1;
                self.quoted()?
            } else {
                self.unquoted()?
            };
            self.skip_spaces();
            if !matches!(self.peek(), None | Some(b';' | b',')) {
                return Err(XfccError::StrayCharacter);
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                if key == XfccKey::Uri {
                    return Err(XfccError::SeveralUris);
                }
                if !key.may_repeat() {
                    return Err(XfccError::DuplicateKey(key));
                }
            }
            pairs.push((key, value));
            if self.peek() != Some(b';') {
                return Ok(XfccElement { pairs });
            }
            self.at += 1;
        }
    }

    /// A quoted value after its opening quote, through its closing quote; unescaped.
    fn quoted(&mut self) -> Result<String, XfccError> {
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(XfccError::UnterminatedQuote),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(value);
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(escaped @ (b'"' | b'\\')) => value.push(char::from(escaped)),
                        None => return Err(XfccError::UnterminatedQuote),
                        Some(_) => return Err(XfccError::BadEscape),
                    }
                }
                Some(b) => value.push(char::from(b)),
            }
            self.at += 1;
        }
    }

    /// An unquoted value, up to the `;`, `,` or end after it; trailing spaces dropped.
    fn unquoted(&mut self) -> Result<String, XfccError> {
        let start = self.at;
        loop {
            match self.peek() {
                None | Some(b';' | b',') => break,
                Some(b'"' | b'\\' | b'=') => return Err(XfccError::StrayCharacter),
                Some(_) => self.at += 1,
            }
        }
        let value =
            std::str::from_utf8(&self.text[start..self.at]).map_err(|_| XfccError::NotText)?;
        Ok(value.trim_end_matches([' ', '\t']).to_owned())
    }
}

/// The identity in a client certificate (DER): its URI SAN (a SPIFFE id), else
/// `CN=<common name>` of its subject. A certificate with several URI SANs or several common
/// names has none (which would be the caller is a guess), nor has one whose common name is not
/// a UTF8String, PrintableString or IA5String. A small DER walk over the fields it needs, so
/// that no X.509 crate is pulled in; the TLS layer has already verified the certificate.
pub fn certificate_identity(der: &[u8]) -> Option<String> {
    let cert = der_children(der_value(der)?.1)?; // Certificate ::= SEQUENCE { tbs, alg, sig }
    let tbs = der_children(cert.first()?.1)?;
    // tbs: [0] version (optional), serial, signature, issuer, validity, subject, spki,
    // [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions
    let offset = usize::from(tbs.first()?.0 == 0xA0);
    let subject = tbs.get(offset + 4)?;
    let mut uris = Vec::new();
    for (tag, value) in tbs.get(offset + 5..)? {
        if *tag != 0xA3 {
            continue;
        }
        for extension in der_children(der_value(value)?.1)? {
            // Extension ::= SEQUENCE { extnID, critical BOOLEAN OPTIONAL, extnValue OCTET STRING }
            let fields = der_children(extension.1)?;
            // 2.5.29.17 subjectAltName
            if fields.first()?.1 != [0x55, 0x1D, 0x11] {
                continue;
            }
            let (octets_tag, octets) = fields.last()?;
            if *octets_tag != 0x04 {
                return None;
            }
            // GeneralNames ::= SEQUENCE OF GeneralName; [6] is uniformResourceIdentifier.
            for (tag, name) in der_children(der_value(octets)?.1)? {
                if tag == 0x86 {
                    uris.push(name);
                }
            }
        }
    }
    // Subject: SEQUENCE OF SET OF { oid, value }; 2.5.4.3 is the common name.
    let mut common_names = Vec::new();
    for rdn in der_children(subject.1)? {
        for (_, attribute) in der_children(rdn.1)? {
            let pair = der_children(attribute)?;
            if pair.first()?.1 == [0x55, 0x04, 0x03] {
                common_names.push(*pair.get(1)?);
            }
        }
    }
    if uris.len() > 1 || common_names.len() > 1 {
        return None;
    }
    if let Some(uri) = uris.first() {
        return std::str::from_utf8(uri)
            .ok()
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
    }
    // UTF8String, PrintableString, IA5String: their bytes are the text. Others (BMPString,
    // TeletexString, ...) would need decoding and are refused.
    let (tag, cn) = common_names.first()?;
    if !matches!(tag, 0x0C | 0x13 | 0x16) {
        return None;
    }
    let cn = std::str::from_utf8(cn).ok()?;
    Some(format!("CN={cn}"))
}

/// One DER element at the start of `input`: (tag, contents, rest).
fn der_value(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements inside a constructed DER value's contents: (tag, contents) each.
fn der_children(mut contents: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !contents.is_empty() {
        let (tag, value, rest) = der_value(contents)?;
        out.push((tag, value));
        contents = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use XfccError::*;

    fn one(value: &str) -> Result<String, XfccError> {
        xfcc_identity(&[value])
    }

    #[test]
    fn the_last_element_gives_its_uri_else_its_subject() {
        let v = r#"By=spiffe://gw;Hash=abc;Subject="CN=old, O=x";URI=spiffe://a,By=spiffe://gw;Hash=def;Subject="CN=shop, O=Example";URI=spiffe://example.org/ns/shop/sa/checkout"#;
        assert_eq!(
            one(v).as_deref(),
            Ok("spiffe://example.org/ns/shop/sa/checkout")
        );
        assert_eq!(
            one(r#"Hash=def;Subject="CN=shop, O=Example""#).as_deref(),
            Ok("CN=shop, O=Example")
        );
        // Envoy writes `URI=` empty when the certificate has no URI SAN.
        assert_eq!(
            one(r#"By=spiffe://gw;Hash=1;Subject="CN=ops,O=Example";URI=;DNS=a.example;DNS=b.example"#)
                .as_deref(),
            Ok("CN=ops,O=Example")
        );
        // Neither: no identity (the earlier element's is not ours).
        assert_eq!(one("URI=spiffe://a,Hash=1;URI="), Err(NoIdentity));
        assert_eq!(one(r#"Hash=1;Subject="""#), Err(NoIdentity));
    }

    #[test]
    fn quoted_values_keep_separators_and_unescape_quotes_and_backslashes() {
        let element = |v: &str| parse_xfcc(&[v]).map(|mut e| e.pop().unwrap());
        let e = element(r#"Subject="CN=a,b;c=d";URI="spiffe://x/y""#).unwrap();
        assert_eq!(e.get(XfccKey::Subject), Some("CN=a,b;c=d"));
        assert_eq!(e.get(XfccKey::Uri), Some("spiffe://x/y"));
        let e = element(r#"Subject="CN=say \"hi\", O=back\\slash""#).unwrap();
        assert_eq!(
            e.get(XfccKey::Subject),
            Some(r#"CN=say "hi", O=back\slash"#)
        );
        // An escaped quote does not end the value: the `,URI=` after it is part of the subject,
        // so there is one element and it has no URI.
        let tricky =
            r#"Hash=1;Subject="CN=x\",URI=spiffe://example.org/ns/shop/sa/checkout;O=\"y""#;
        let elements = parse_xfcc(&[tricky]).unwrap();
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0].get(XfccKey::Uri), None);
        assert_eq!(
            xfcc_identity(&[tricky]).as_deref(),
            Ok(r#"CN=x",URI=spiffe://example.org/ns/shop/sa/checkout;O="y"#)
        );
        // `\\` before the closing quote is a backslash; the quote then closes the value.
        let e = element(r#"Subject="CN=a\\";URI=spiffe://b"#).unwrap();
        assert_eq!(e.get(XfccKey::Subject), Some(r"CN=a\"));
        assert_eq!(e.get(XfccKey::Uri), Some("spiffe://b"));
    }

    #[test]
    fn keys_are_case_insensitive_and_spaces_around_tokens_are_ignored() {
        assert_eq!(
            one(r#" hash = 1 ; subject = "CN=a" ; uri = spiffe://x "#).as_deref(),
            Ok("spiffe://x")
        );
        assert_eq!(one("uri=spiffe://a;URI=spiffe://b"), Err(SeveralUris));
        assert_eq!(
            one("HASH=1;hash=2;URI=spiffe://b"),
            Err(DuplicateKey(XfccKey::Hash))
        );
    }

    #[test]
    fn several_elements_and_several_fields_give_the_last_element() {
        let elements = parse_xfcc(&["URI=spiffe://a, URI=spiffe://b", "URI=spiffe://c"]).unwrap();
        let uris: Vec<_> = elements.iter().map(|e| e.get(XfccKey::Uri)).collect();
        assert_eq!(
            uris,
            [Some("spiffe://a"), Some("spiffe://b"), Some("spiffe://c")]
        );
        assert_eq!(
            xfcc_identity(&["URI=spiffe://a", "By=spiffe://gw;URI=spiffe://b"]).as_deref(),
            Ok("spiffe://b")
        );
        // A quoted value may not span two fields, though their join would close it.
        assert_eq!(
            xfcc_identity(&[r#"Subject="CN=a"#, r#"b";URI=spiffe://c"#]),
            Err(UnterminatedQuote)
        );
        // An empty field is refused, whichever field it is.
        assert_eq!(xfcc_identity(&["URI=spiffe://a", " "]), Err(Empty));
        assert_eq!(xfcc_identity(&[]), Err(Empty));
    }

    #[test]
    fn by_and_dns_may_repeat_other_keys_may_not() {
        assert_eq!(
            one("By=spiffe://gw/1;By=spiffe://gw/2;Hash=1;URI=spiffe://a;DNS=a;DNS=b").as_deref(),
            Ok("spiffe://a")
        );
        for key in ["Hash", "Cert", "Chain", "Subject"] {
            let v = format!(r#"{key}="x";URI=spiffe://a;{key}="x""#);
            assert!(matches!(one(&v), Err(DuplicateKey(_))), "{key}");
        }
        // Several URI SANs: the certificate names two callers.
        assert_eq!(
            one("Hash=1;URI=spiffe://example.org/ns/shop/sa/checkout;URI=spiffe://example.org/ns/web/sa/catalog"),
            Err(SeveralUris)
        );
        assert_eq!(one("URI=;URI=spiffe://a"), Err(SeveralUris));
    }

    #[test]
    fn every_malformed_value_is_refused() {
        let cases: &[(&str, XfccError)] = &[
            ("", Empty),
            ("   ", Empty),
            // A bare value is not an identity in XFCC.
            ("spiffe://example.org/ns/shop/sa/checkout", NotAPair),
            ("checkout", NotAPair),
            ("Hash=1;URI", NotAPair),
            ("URI=spiffe://a;", NotAPair),
            ("URI=spiffe://a;;Hash=1", NotAPair),
            ("=spiffe://a", NotAPair),
            (r#""URI"=spiffe://a"#, UnknownKey),
            ("Uri2=spiffe://a", UnknownKey),
            ("Identity=spiffe://a", UnknownKey),
            ("URI=spiffe://a,", EmptyElement),
            ("URI=spiffe://a,,URI=spiffe://b", EmptyElement),
            (",URI=spiffe://a", EmptyElement),
            (r#"Subject="CN=a;URI=spiffe://a"#, UnterminatedQuote),
            (r#"Subject="CN=a\"#, UnterminatedQuote),
            (r#"Subject="CN=a\";URI=spiffe://a"#, UnterminatedQuote),
            (r#"Subject="CN=a\,b";URI=spiffe://a"#, BadEscape),
            (r#"Subject="CN=a\n";URI=spiffe://a"#, BadEscape),
            (r#"URI=spiffe://a"b""#, StrayCharacter),
            (r#"URI=spiffe://a\b"#, StrayCharacter),
            ("URI=spiffe://a=b", StrayCharacter),
            (r#"Subject="CN=a"x;URI=spiffe://a"#, StrayCharacter),
            (r#"Subject="CN=a" "O=b";URI=spiffe://a"#, StrayCharacter),
            ("URI=spiffe://caf\u{e9}", NotText),
            ("URI=spiffe://a\u{1}", NotText),
        ];
        for (value, expected) in cases {
            assert_eq!(one(value), Err(*expected), "{value:?}");
        }
        // A malformed earlier element refuses the whole value.
        assert_eq!(
            one(r#"Subject="CN=a\x",URI=spiffe://example.org/ns/shop/sa/checkout"#),
            Err(BadEscape)
        );
        assert_eq!(
            one("URI=spiffe://a;URI=spiffe://b,URI=spiffe://c"),
            Err(SeveralUris)
        );
    }

    /// DER of `tag` around `content`.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n @ 0..0x80 => out.push(n as u8),
            n @ 0x80..0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    /// A common name attribute of string type `tag`.
    fn cn(tag: u8, value: &str) -> Vec<u8> {
        seq(&[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(tag, value.as_bytes())])
    }

    /// An organization attribute.
    fn org(value: &str) -> Vec<u8> {
        seq(&[tlv(0x06, &[0x55, 0x04, 0x0A]), tlv(0x0C, value.as_bytes())])
    }

    /// A relative distinguished name (a SET) of `attributes`.
    fn rdn(attributes: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x31, &attributes.concat())
    }

    /// A subjectAltName extension with (tag, name) general names: 0x86 URI, 0x82 DNS.
    fn san(names: &[(u8, &str)]) -> Vec<u8> {
        let names: Vec<Vec<u8>> = names.iter().map(|(t, n)| tlv(*t, n.as_bytes())).collect();
        seq(&[tlv(0x06, &[0x55, 0x1D, 0x11]), tlv(0x04, &seq(&names))])
    }

    /// A certificate (unsigned; the walk reads no signature) with `rdns` as its subject.
    fn certificate(rdns: &[Vec<u8>], extensions: &[Vec<u8>]) -> Vec<u8> {
        let mut tbs = vec![
            tlv(0xA0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            seq(&[tlv(0x06, &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02])]),
            seq(&[rdn(&[cn(0x0C, "issuer")])]),
            seq(&[]),
            seq(rdns),
            seq(&[]),
        ];
        if !extensions.is_empty() {
            tbs.push(tlv(0xA3, &seq(extensions)));
        }
        seq(&[seq(&tbs), seq(&[]), tlv(0x03, &[0])])
    }

    #[test]
    fn a_certificate_names_one_uri_else_one_common_name_or_nobody() {
        const SHOP: &str = "spiffe://example.org/ns/shop/sa/checkout";
        let subject = [rdn(&[cn(0x0C, "checkout")]), rdn(&[org("Example")])];
        let identity = |rdns: &[Vec<u8>], extensions: &[Vec<u8>]| {
            certificate_identity(&certificate(rdns, extensions))
        };
        assert_eq!(
            identity(&subject, &[san(&[(0x86, SHOP)])]).as_deref(),
            Some(SHOP)
        );
        // DNS names beside the URI do not matter.
        assert_eq!(
            identity(
                &subject,
                &[san(&[(0x82, "a.example"), (0x86, SHOP), (0x82, "b")])]
            )
            .as_deref(),
            Some(SHOP)
        );
        assert_eq!(identity(&subject, &[]).as_deref(), Some("CN=checkout"));
        for string_type in [0x0C, 0x13, 0x16] {
            assert_eq!(
                identity(&[rdn(&[cn(string_type, "ops")])], &[]).as_deref(),
                Some("CN=ops")
            );
        }
        let refused = [
            (
                "two URI SANs",
                subject.to_vec(),
                vec![san(&[(0x86, SHOP), (0x86, "spiffe://example.org/other")])],
            ),
            (
                "two subjectAltName extensions",
                subject.to_vec(),
                vec![san(&[(0x86, SHOP)]), san(&[(0x86, "spiffe://x")])],
            ),
            (
                "two CNs in two RDNs",
                vec![rdn(&[cn(0x0C, "ops")]), rdn(&[cn(0x0C, "checkout")])],
                vec![],
            ),
            (
                "two CNs in one RDN",
                vec![rdn(&[cn(0x0C, "ops"), cn(0x0C, "checkout")])],
                vec![],
            ),
            (
                "two CNs beside one URI",
                vec![rdn(&[cn(0x0C, "ops")]), rdn(&[cn(0x0C, "checkout")])],
                vec![san(&[(0x86, SHOP)])],
            ),
            ("an empty URI", subject.to_vec(), vec![san(&[(0x86, "")])]),
            (
                "a BMPString CN",
                vec![rdn(&[cn(0x1E, "\0o\0p\0s")])],
                vec![],
            ),
            ("no name", vec![rdn(&[org("Example")])], vec![]),
        ];
        for (what, rdns, extensions) in refused {
            assert_eq!(identity(&rdns, &extensions), None, "{what}");
        }
        // Truncated or not DER.
        let whole = certificate(&subject, &[san(&[(0x86, SHOP)])]);
        assert_eq!(certificate_identity(&whole[..whole.len() - 1]), None);
        assert_eq!(certificate_identity(b"not a certificate"), None);
    }

    #[test]
    fn the_header_name_decides_the_format() {
        let header_map = |name: &'static str, values: &[&str]| {
            let mut map = http::HeaderMap::new();
            for v in values {
                map.append(name, HeaderValue::from_str(v).unwrap());
            }
            map
        };
        let xfcc = HeaderName::from_static(DEFAULT_FORWARDED_HEADER);
        let map = header_map(
            DEFAULT_FORWARDED_HEADER,
            &["URI=spiffe://a", "URI=spiffe://b"],
        );
        assert_eq!(
            forwarded_identity(&xfcc, map.get_all(&xfcc)).as_deref(),
            Some("spiffe://b")
        );
        let map = header_map(DEFAULT_FORWARDED_HEADER, &["spiffe://a"]);
        assert_eq!(forwarded_identity(&xfcc, map.get_all(&xfcc)), None);
        assert_eq!(
            forwarded_identity(&xfcc, http::HeaderMap::new().get_all(&xfcc)),
            None
        );
        // Another header: a plain identity, one field, as sent.
        let plain = HeaderName::from_static("x-client-id");
        let map = header_map("x-client-id", &[" spiffe://a "]);
        assert_eq!(
            forwarded_identity(&plain, map.get_all(&plain)).as_deref(),
            Some("spiffe://a")
        );
        let map = header_map("x-client-id", &["spiffe://a", "spiffe://b"]);
        assert_eq!(forwarded_identity(&plain, map.get_all(&plain)), None);
        let map = header_map("x-client-id", &[""]);
        assert_eq!(forwarded_identity(&plain, map.get_all(&plain)), None);
    }
}
