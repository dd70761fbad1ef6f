//! Pagination. Offset pages over lists the gateway holds in full (cached catalogs) or a
//! provider pages ([`Page`]); keyset pages over the journal index, which resume after an
//! entry (its time and id) so that entries added or removed meanwhile shift nothing
//! ([`KeysetPage`]). A page token is opaque to callers: base64 of the offset (or the entry)
//! and a hash of the request's filter, so a token used with other filters is refused.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;

/// Page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page; larger requests are clamped.
pub const MAX_PAGE_SIZE: usize = 1000;

/// A validated page request: where to start and how many.
#[derive(Debug)]
pub struct Page {
    offset: usize,
    size: usize,
    filter: String,
}

impl Page {
    /// Checks `page_size` and `page_token` for a list selected by `filter`.
    pub fn parse(page_size: i32, page_token: &str, filter: String) -> Result<Self, GatewayError> {
        let size = checked_size(page_size)?;
        let offset = if page_token.is_empty() {
            0
        } else {
            decode(page_token, &filter)
                .ok_or_else(|| GatewayError::invalid("page_token", "not a token of this list"))?
        };
        Ok(Self {
            offset,
            size,
            filter,
        })
    }

    /// The same page as a request to a provider that pages its own list.
    pub fn provider_request(&self) -> crate::domain::ProviderPageRequest {
        crate::domain::ProviderPageRequest {
            offset: u32::try_from(self.offset).unwrap_or(u32::MAX),
            limit: self.size as u32,
        }
    }

    /// The token after a provider page of `returned` items; empty when the provider has no
    /// more.
    pub fn next_after(&self, returned: usize, more: bool) -> String {
        if more && returned > 0 {
            encode(self.offset + returned, &self.filter)
        } else {
            String::new()
        }
    }

    /// This page of `items` and the token of the next page (empty on the last).
    pub fn apply<T>(&self, items: Vec<T>) -> (Vec<T>, String) {
        let total = items.len();
        let page: Vec<T> = items
            .into_iter()
            .skip(self.offset)
            .take(self.size)
            .collect();
        let end = self.offset + page.len();
        let next = if end < total {
            encode(end, &self.filter)
        } else {
            String::new()
        };
        (page, next)
    }
}

/// The page size a request asks for: 0 is the default, more than the largest is clamped.
fn checked_size(page_size: i32) -> Result<usize, GatewayError> {
    if page_size < 0 {
        return Err(GatewayError::invalid("page_size", "must not be negative"));
    }
    Ok(match page_size as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    })
}

/// A validated keyset page request: how many, and (from the token) the entry the previous page
/// ended after.
#[derive(Debug)]
pub struct KeysetPage {
    size: usize,
    filter: String,
}

/// The entry a keyset page ends after: its time (unix ms) and, unless the page ended after
/// every entry of that millisecond, its id.
pub type KeysetPosition = (i64, Option<String>);

impl KeysetPage {
    /// Checks `page_size` and `page_token` for a list selected by `filter`; the position the
    /// token carries (`None` for the first page).
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filter: String,
    ) -> Result<(Self, Option<KeysetPosition>), GatewayError> {
        let size = checked_size(page_size)?;
        let position =
            if page_token.is_empty() {
                None
            } else {
                Some(decode_position(page_token, &filter).ok_or_else(|| {
                    GatewayError::invalid("page_token", "not a token of this list")
                })?)
            };
        Ok((Self { size, filter }, position))
    }

    /// At most this many items.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The token of the page that starts after `position`.
    pub fn token(&self, (at_ms, id): KeysetPosition) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{at_ms}:{}:{}",
            filter_tag(&self.filter),
            id.unwrap_or_default()
        ))
    }
}

fn decode_position(token: &str, filter: &str) -> Option<KeysetPosition> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let mut parts = text.splitn(3, ':');
    let at_ms = parts.next()?.parse().ok()?;
    (parts.next()? == filter_tag(filter)).then_some(())?;
    let id = parts.next()?;
    Some((at_ms, (!id.is_empty()).then(|| id.to_owned())))
}

#[cfg(test)]
fn paginate<T>(
    items: Vec<T>,
    page_size: i32,
    page_token: &str,
    filter: &str,
) -> Result<(Vec<T>, String), GatewayError> {
    Ok(Page::parse(page_size, page_token, filter.to_owned())?.apply(items))
}

fn filter_tag(filter: &str) -> String {
    Sha256::digest(filter.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn encode(offset: usize, filter: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{offset}:{}", filter_tag(filter)))
}

fn decode(token: &str, filter: &str) -> Option<usize> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (offset, tag) = text.split_once(':')?;
    (tag == filter_tag(filter)).then_some(())?;
    offset.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_pages_and_refuses_foreign_tokens() {
        let items: Vec<u32> = (0..5).collect();
        let (p1, t1) = paginate(items.clone(), 2, "", "f").unwrap();
        assert_eq!(p1, vec![0, 1]);
        let (p2, t2) = paginate(items.clone(), 2, &t1, "f").unwrap();
        assert_eq!(p2, vec![2, 3]);
        let (p3, t3) = paginate(items.clone(), 2, &t2, "f").unwrap();
        assert_eq!((p3, t3.as_str()), (vec![4], ""));
        assert!(paginate(items.clone(), 2, &t1, "other").is_err());
        assert!(paginate(items.clone(), 2, "garbage!", "f").is_err());
        assert!(paginate(items.clone(), -1, "", "f").is_err());
        let (all, t) = paginate(items, 0, "", "f").unwrap();
        assert_eq!((all.len(), t.as_str()), (5, ""));
    }

    #[test]
    fn keyset_tokens_carry_the_position_and_refuse_other_filters() {
        let (page, position) = KeysetPage::parse(0, "", "f".into()).unwrap();
        assert_eq!((page.size(), position), (DEFAULT_PAGE_SIZE, None));
        for position in [
            (1_700_000_000_123, Some("pay_0123abcd".to_owned())),
            (-5, None),
        ] {
            let token = page.token(position.clone());
            let (again, decoded) = KeysetPage::parse(5000, &token, "f".into()).unwrap();
            assert_eq!((again.size(), decoded), (MAX_PAGE_SIZE, Some(position)));
            assert!(KeysetPage::parse(1, &token, "other".into()).is_err());
        }
        assert!(KeysetPage::parse(1, "garbage!", "f".into()).is_err());
        assert!(KeysetPage::parse(1, &URL_SAFE_NO_PAD.encode("x:y"), "f".into()).is_err());
        assert!(KeysetPage::parse(-1, "", "f".into()).is_err());
    }
}
