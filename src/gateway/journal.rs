//! Keeps the journal index (`billpay:v1:journal`, payment id -> creation time, read by the
//! operators' and the callers' listings) from growing forever: a payment record expires
//! `payments.record_ttl_ms` after it became final, but its index entry has no TTL of its own
//! (a sorted-set member cannot have one).
//! A periodic pass removes the entries whose records are gone. Only entries created more than
//! `record_ttl_ms` ago are looked at (a younger record cannot have expired), and an entry is
//! removed only when its record is absent: a record that is not final never expires, so its
//! entry always stays.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;

use super::{ms, Gateway};
use crate::store::{keys, StoreError};

/// How often each replica runs a trim pass.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Index entries looked at per pass (at most): 100 per second per replica, above the
/// 12 per second that 1M payments a day add.
const TRIM_BATCH: usize = 1_000;

/// Records read at once during a pass.
const TRIM_CONCURRENCY: usize = 16;

/// Where the next pass starts among the old entries (entries kept are skipped), per process.
#[derive(Debug, Default)]
pub(crate) struct TrimCursor(AtomicUsize);

impl Gateway {
    /// Runs trim passes forever, one every 10 seconds.
    pub async fn run_journal_trim(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.trim_journal_index().await {
                tracing::warn!(error = %e, "journal index trim skipped");
            }
        }
    }

    /// One trim pass: removes up to 1,000 index entries whose payment records
    /// expired; returns how many it removed. Counted in `billpay_journal_index_trimmed_total`.
    pub async fn trim_journal_index(&self) -> Result<usize, StoreError> {
        let index = keys::journal_index();
        let before = self.clock.now_ms() - ms(self.payments.record_ttl_ms).as_millis() as i64;
        let offset = self.journal_trim.0.load(Ordering::Relaxed);
        let ids = self
            .store
            .range(&index, i64::MIN, before, offset, TRIM_BATCH)
            .await?;
        let looked_at = ids.len();
        let gone: Vec<String> = futures_util::stream::iter(ids)
            .map(|id| async move {
                let exists = self.store.get(&keys::payment(&id)).await?.is_some();
                Ok::<_, StoreError>((!exists).then_some(id))
            })
            .buffered(TRIM_CONCURRENCY)
            .filter_map(|r| async move { r.transpose() })
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        for id in &gone {
            self.store.unschedule(&index, id).await?;
        }
        // Kept entries (records still there) are skipped next time; at the end, start over.
        let kept = looked_at - gone.len();
        let next = if looked_at < TRIM_BATCH {
            0
        } else {
            offset + kept
        };
        self.journal_trim.0.store(next, Ordering::Relaxed);
        if !gone.is_empty() {
            crate::metrics::global()
                .journal_index_trimmed
                .inc_by(gone.len() as u64);
            tracing::debug!(
                removed = gone.len(),
                "journal index entries of expired records removed"
            );
        }
        Ok(gone.len())
    }
}
