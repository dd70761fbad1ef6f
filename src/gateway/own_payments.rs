//! A caller's listing of its own journal payments (`PaymentService.ListOwnPayments`), newest
//! first, filtered like the operators' listing ([`JournalFilter`]) and read from the same
//! journal index (`billpay:v1:journal`, payment id -> creation time). The index holds every
//! caller's payments and knows nothing of callers, so the caller filter reads each entry's
//! record: a page reads at most [`OWN_SCAN_LIMIT`] index entries (plus the rest of the
//! millisecond it stops in) and one record per entry, [`LOAD_CONCURRENCY`] at a time. A caller
//! whose payments are a small share of the journal therefore gets short pages, even empty ones,
//! with a continuation while older entries remain.
//!
//! Pages resume by position in the index, not by offset: a page ends after an index entry
//! (its creation time and payment id) or after a whole millisecond, and the next page reads
//! what lies after it. Payments created while a caller pages, and index entries removed
//! meanwhile (expired records), move nothing: every payment in the range is listed once. A
//! continuation names only a payment the page returned, never another caller's. Entries
//! whose record is absent (expired, or claimed a moment from now) are passed over and left to
//! the index trim pass ([`super::journal`]).

use futures_util::StreamExt;

use super::{operator::JournalFilter, Gateway};
use crate::domain::PaymentRecord;
use crate::error::GatewayError;
use crate::store::keys;

/// Index entries one page reads at most before it answers with a continuation (it finishes
/// the millisecond it is in first).
pub const OWN_SCAN_LIMIT: usize = 2_000;
/// Index entries read per store call.
const SCAN_BATCH: usize = 200;
/// Payment records read at once.
pub const LOAD_CONCURRENCY: usize = 16;

/// Where a listing of own payments resumes: with the index entries older than
/// (`before_ms`, `before_id`) in newest-first order, that is created before `before_ms`, or at
/// `before_ms` with a payment id below `before_id`. Without `before_id`: every entry created
/// before `before_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCursor {
    /// Creation time, unix ms.
    pub before_ms: i64,
    /// A payment id the previous page returned.
    pub before_id: Option<String>,
}

impl Gateway {
    /// Up to `limit` journal payments matching `filter` (its `caller` is the owner; `None`:
    /// every caller's), newest first, from `cursor` (`None`: the newest), and where the next
    /// page resumes (`None`: nothing older is left in the filter's time range).
    pub async fn list_own_payments(
        &self,
        filter: &JournalFilter,
        cursor: Option<OwnCursor>,
        limit: usize,
    ) -> Result<(Vec<PaymentRecord>, Option<OwnCursor>), GatewayError> {
        let index = keys::journal_index();
        // The index is read with both ends included: created_before is exclusive.
        let oldest = filter.from_ms.unwrap_or(i64::MIN);
        let newest = filter
            .to_ms
            .map_or(i64::MAX, |before| before.saturating_sub(1));
        // Read entries at or below `at_ms`; of those at exactly `at_ms`, only payment ids
        // below `below_id` (the ones at or above it were passed already).
        let (mut at_ms, mut below_id) = match cursor {
            None => (newest, None),
            Some(OwnCursor {
                before_ms,
                before_id: Some(id),
            }) if before_ms <= newest => (before_ms, Some(id)),
            Some(OwnCursor { before_ms, .. }) => (before_ms.saturating_sub(1).min(newest), None),
        };
        let mut found = Vec::new();
        let mut scanned = 0;
        // Entries at `at_ms` the last read passed over again: the next read asks for as many
        // more, so a millisecond with many entries cannot stall the walk.
        let mut passed_again = 0;
        loop {
            if at_ms < oldest {
                return Ok((found, None));
            }
            let wanted = SCAN_BATCH + passed_again;
            let entries = self
                .store
                .range_newest_first(&index, at_ms, oldest, wanted)
                .await?;
            let last_read = entries.len() < wanted;
            let created_times: Vec<i64> = entries.iter().map(|(_, created)| *created).collect();
            let fresh: Vec<(String, i64)> = entries
                .into_iter()
                .filter(|(id, created)| {
                    *created != at_ms || below_id.as_ref().is_none_or(|below| id < below)
                })
                .collect();
            let mut records = futures_util::stream::iter(fresh)
                .map(|(id, created)| async move {
                    let record = self.load_raw(&id).await?.map(|(record, _)| record);
                    Ok::<_, GatewayError>((id, created, record))
                })
                .buffered(LOAD_CONCURRENCY);
            while let Some(entry) = records.next().await {
                let (id, created, record) = entry?;
                if scanned >= OWN_SCAN_LIMIT && created < at_ms {
                    // Enough read, and the millisecond `at_ms` is finished: continue before it.
                    return Ok((
                        found,
                        Some(OwnCursor {
                            before_ms: at_ms,
                            before_id: None,
                        }),
                    ));
                }
                scanned += 1;
                at_ms = created;
                below_id = Some(id);
                let Some(record) = record.filter(|r| filter.matches(r)) else {
                    continue;
                };
                found.push(record);
                if found.len() == limit {
                    return Ok((
                        found,
                        Some(OwnCursor {
                            before_ms: at_ms,
                            before_id: below_id,
                        }),
                    ));
                }
            }
            if last_read {
                return Ok((found, None));
            }
            // The next read starts at `at_ms` again: this read's entries there come first.
            passed_again = created_times.iter().filter(|t| **t == at_ms).count();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::{
        payment::PaymentKind, Currency, Money, PaymentOrder, PaymentState, ProviderId,
    };
    use crate::store::{memory::MemoryStore, Store};

    /// Writes a journal record of `caller` created at `at_ms`, and its index entry.
    async fn record(store: &MemoryStore, id: &str, caller: &str, at_ms: i64, state: PaymentState) {
        let order = PaymentOrder::new(
            ProviderId::Interswitch,
            PaymentKind::Bill,
            "90101",
            "0000000000",
            Money::new(Currency::Ngn, 100_000),
        );
        let record = PaymentRecord {
            payment_id: id.to_owned(),
            caller: caller.to_owned(),
            state,
            ..PaymentRecord::claimed(format!("r-{id}"), order, "ref".into(), at_ms)
        };
        store
            .set(
                &keys::payment(id),
                &serde_json::to_vec(&record).unwrap(),
                None,
            )
            .await
            .unwrap();
        index(store, id, at_ms).await;
    }

    async fn index(store: &MemoryStore, id: &str, at_ms: i64) {
        store
            .schedule_if_absent(&keys::journal_index(), id, at_ms)
            .await
            .unwrap();
    }

    fn gateway(store: Arc<MemoryStore>) -> Arc<Gateway> {
        Gateway::new(
            Default::default(),
            store,
            Default::default(),
            Default::default(),
            false,
        )
    }

    fn owned_by(caller: &str) -> JournalFilter {
        JournalFilter {
            caller: Some(caller.to_owned()),
            ..Default::default()
        }
    }

    /// Every page of a walk: the ids of each.
    async fn walk(gateway: &Gateway, filter: &JournalFilter, limit: usize) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let (found, next) = gateway
                .list_own_payments(filter, cursor, limit)
                .await
                .unwrap();
            pages.push(found.into_iter().map(|r| r.payment_id).collect());
            match next {
                Some(next) => cursor = Some(next),
                None => return pages,
            }
        }
    }

    /// The shop's payments among many of another caller's, in runs longer than a page's
    /// scan and in milliseconds that hold many entries (more than one store read), with
    /// index entries whose records are gone: a walk lists each of the shop's payments once,
    /// newest first, and no page reads past its bound without answering.
    #[tokio::test]
    async fn a_walk_lists_every_own_payment_once_newest_first_with_bounded_pages() {
        let store = Arc::new(MemoryStore::default());
        let mut expected = Vec::new();
        let mut at = 1_000;
        for run in 0..3 {
            // The shop's: two in one millisecond, one alone.
            for id in [format!("shop-{run}-a"), format!("shop-{run}-b")] {
                record(&store, &id, "shop", at, PaymentState::Succeeded).await;
                expected.push((at, id));
            }
            at += 1;
            record(
                &store,
                &format!("shop-{run}-c"),
                "shop",
                at,
                PaymentState::Failed,
            )
            .await;
            expected.push((at, format!("shop-{run}-c")));
            at += 1;
            // Another caller's: a long run, then 450 in one millisecond (over two store reads),
            // with a shop payment inside that millisecond.
            for n in 0..(OWN_SCAN_LIMIT + 300) {
                record(
                    &store,
                    &format!("other-{run}-{n:05}"),
                    "other",
                    at,
                    PaymentState::Succeeded,
                )
                .await;
                at += 1;
            }
            for n in 0..450 {
                record(
                    &store,
                    &format!("other-{run}-same-{n:03}"),
                    "other",
                    at,
                    PaymentState::Succeeded,
                )
                .await;
            }
            record(
                &store,
                &format!("other-{run}-same-shop"),
                "shop",
                at,
                PaymentState::Succeeded,
            )
            .await;
            expected.push((at, format!("other-{run}-same-shop")));
            // Index entries whose records are gone (expired): passed over, left in place.
            index(&store, &format!("gone-{run}"), at).await;
            index(&store, &format!("gone-{run}-later"), at + 1).await;
            at += 2;
        }
        expected.sort_by(|a, b| b.cmp(a));
        let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
        let gateway = gateway(store.clone());

        for limit in [1, 2, 5, 100] {
            let pages = walk(&gateway, &owned_by("shop"), limit).await;
            let listed: Vec<String> = pages.iter().flatten().cloned().collect();
            assert_eq!(listed, expected, "page size {limit}");
            assert!(pages.iter().all(|p| p.len() <= limit));
            // The runs of another caller's payments are longer than a page reads: some
            // pages come back empty, with a continuation.
            assert!(
                pages[..pages.len() - 1].iter().any(|p| p.is_empty()),
                "page size {limit}: a page stopped at its scan bound"
            );
        }
        // The other caller sees none of the shop's; the anonymous caller (no owner) sees all.
        let others: Vec<String> = walk(&gateway, &owned_by("other"), 1000).await.concat();
        assert_eq!(others.len(), 3 * (OWN_SCAN_LIMIT + 300 + 450));
        assert!(others.iter().all(|id| !id.starts_with("shop")));
        let everyone = walk(&gateway, &JournalFilter::default(), 1000)
            .await
            .concat();
        assert_eq!(everyone.len(), others.len() + expected.len());
        // Filters: state and creation time (start included, end excluded).
        let failed = walk(
            &gateway,
            &JournalFilter {
                state: Some(PaymentState::Failed),
                ..owned_by("shop")
            },
            10,
        )
        .await
        .concat();
        assert_eq!(failed, ["shop-2-c", "shop-1-c", "shop-0-c"]);
        let first_run = walk(
            &gateway,
            &JournalFilter {
                from_ms: Some(1_000),
                to_ms: Some(1_001),
                ..owned_by("shop")
            },
            1,
        )
        .await
        .concat();
        assert_eq!(first_run, ["shop-0-b", "shop-0-a"]);
        // Expired entries are not removed by a listing (the trim pass does that).
        assert_eq!(
            store
                .range(&keys::journal_index(), i64::MIN, i64::MAX, 0, usize::MAX)
                .await
                .unwrap()
                .iter()
                .filter(|id| id.starts_with("gone"))
                .count(),
            6
        );
    }

    /// A page that reaches its bound inside a millisecond reads the rest of it before it
    /// answers: its continuation is "before this millisecond", which must leave nothing of the
    /// millisecond behind (here the shop's payment, last of 301 entries in it).
    #[tokio::test]
    async fn a_page_finishes_the_millisecond_it_reaches_its_bound_in() {
        let store = Arc::new(MemoryStore::default());
        record(&store, "newest", "shop", 10_000, PaymentState::Succeeded).await;
        for n in 0..(OWN_SCAN_LIMIT - 100) {
            record(
                &store,
                &format!("o-{n:05}"),
                "other",
                9_999 - n as i64,
                PaymentState::Succeeded,
            )
            .await;
        }
        for n in 100..400 {
            record(
                &store,
                &format!("m-{n}"),
                "other",
                5_000,
                PaymentState::Succeeded,
            )
            .await;
        }
        record(&store, "a-own", "shop", 5_000, PaymentState::Succeeded).await;
        let gateway = gateway(store);
        let pages = walk(&gateway, &owned_by("shop"), 1).await;
        assert_eq!(pages, [vec!["newest"], vec!["a-own"], vec![]]);
    }

    /// Payments created while a caller pages, and index entries removed meanwhile, shift
    /// nothing: the walk continues after the last entry it read.
    #[tokio::test]
    async fn pages_continue_after_their_last_entry_whatever_changes_meanwhile() {
        let store = Arc::new(MemoryStore::default());
        for (id, at) in [("p5", 50), ("p4", 40), ("p3", 30), ("p2", 20), ("p1", 10)] {
            record(&store, id, "shop", at, PaymentState::Succeeded).await;
        }
        record(&store, "x35", "other", 35, PaymentState::Succeeded).await;
        let gateway = gateway(store.clone());
        let filter = owned_by("shop");
        let (first, next) = gateway.list_own_payments(&filter, None, 2).await.unwrap();
        let ids = |records: &[PaymentRecord]| -> Vec<String> {
            records.iter().map(|r| r.payment_id.clone()).collect()
        };
        assert_eq!(ids(&first), ["p5", "p4"]);
        let next = next.expect("more follow");
        assert_eq!(
            next,
            OwnCursor {
                before_ms: 40,
                before_id: Some("p4".into()),
            },
            "the continuation names the shop's own last payment"
        );
        // A new payment, and the removal of entries already passed and of another caller's.
        record(&store, "p6", "shop", 60, PaymentState::Succeeded).await;
        store
            .unschedule(&keys::journal_index(), "p5")
            .await
            .unwrap();
        store
            .unschedule(&keys::journal_index(), "x35")
            .await
            .unwrap();
        let (second, next) = gateway
            .list_own_payments(&filter, Some(next), 2)
            .await
            .unwrap();
        assert_eq!(ids(&second), ["p3", "p2"]);
        let (third, next) = gateway.list_own_payments(&filter, next, 2).await.unwrap();
        assert_eq!(ids(&third), ["p1"]);
        assert_eq!(next, None);
    }
}
