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
