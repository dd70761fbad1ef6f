//! Reads the ErrorInfo metadata keys each `billpay.v1.ErrorReason` value documents in
//! proto/billpay/v1/common.proto, in the fixed form the enum's comment defines: a sentence
//! `Metadata: k1, k2.` (keys always sent; `Metadata: none.` for none) and, where some keys come
//! only in some cases, `Optional metadata: k3.`. Shared by the unit tests of `api::status` and
//! tests/error_details.rs, so that the contract's words are what both check the code against.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

/// The contract file that defines `ErrorReason`.
pub const COMMON_PROTO: &str = include_str!("../../proto/billpay/v1/common.proto");

/// The metadata keys one reason documents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentedKeys {
    /// Keys every status with this reason carries.
    pub always: BTreeSet<String>,
    /// Keys it carries only in the cases its comment names.
    pub optional: BTreeSet<String>,
}

impl DocumentedKeys {
    /// `Err` says how `sent` differs from the documented keys.
    pub fn check(&self, sent: &BTreeSet<String>) -> Result<(), String> {
        let missing: Vec<&String> = self.always.difference(sent).collect();
        let undocumented: Vec<&String> = sent
            .iter()
            .filter(|k| !self.always.contains(*k) && !self.optional.contains(*k))
            .collect();
        if missing.is_empty() && undocumented.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "documented {:?} (optional {:?}); sent {sent:?}: missing {missing:?}, \
                 undocumented {undocumented:?}",
                self.always, self.optional
            ))
        }
    }
}

/// Every reason (the value name without `ERROR_REASON_`) but UNSPECIFIED, with its documented
/// keys. Panics, naming the reason, when a value's comment lacks the `Metadata:` sentence or
/// lists something that is not a key.
pub fn documented_metadata(proto: &str) -> BTreeMap<String, DocumentedKeys> {
    let body = proto
        .split_once("enum ErrorReason {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .expect("common.proto defines enum ErrorReason");
    let mut reasons = BTreeMap::new();
    let mut comment: Vec<&str> = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("//") {
            comment.push(text.trim());
            continue;
        }
        if let Some(value) = line.strip_prefix("ERROR_REASON_") {
            let name = value.split([' ', '=']).next().unwrap_or_default();
            if name != "UNSPECIFIED" {
                let text = comment.join(" ");
                reasons.insert(name.to_owned(), parse_keys(name, &text));
            }
        }
        comment.clear();
    }
    reasons
}

/// The keys of one value's comment text.
fn parse_keys(reason: &str, text: &str) -> DocumentedKeys {
    const OPTIONAL: &str = "Optional metadata:";
    let (rest, optional) = match text.split_once(OPTIONAL) {
        Some((before, after)) => (before.to_owned(), key_list(reason, after)),
        None => (text.to_owned(), BTreeSet::new()),
    };
    let always = match rest.split_once("Metadata:") {
        Some((_, after)) => key_list(reason, after),
        None => panic!("ErrorReason {reason}: its comment has no `Metadata: ...` sentence"),
    };
    DocumentedKeys { always, optional }
}

/// `k1, k2.` (up to the first full stop) as keys; `none.` as no key.
fn key_list(reason: &str, text: &str) -> BTreeSet<String> {
    let list = text
        .split_once('.')
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("ErrorReason {reason}: a metadata list must end with `.`"));
    if list.trim() == "none" {
        return BTreeSet::new();
    }
    list.split(',')
        .map(|k| {
            let k = k.trim();
            assert!(
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "ErrorReason {reason}: {k:?} is not a metadata key (lower_snake_case)"
            );
            k.to_owned()
        })
        .collect()
}
