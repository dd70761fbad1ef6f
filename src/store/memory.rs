//! The embedded store: one process, nothing to install. State is lost on restart, so it is for
//! `serve --sandbox`, development and single-replica tests; production sets `REDIS_URL`.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use tokio::time::Instant;

use super::{
    EventRead, EventWrite, GuardedWrite, Increment, NewEvent, RecordWrite, Store, StoreError,
    StoredEvent,
};

/// One schedule: members ordered by (due_ms, member), plus member -> due_ms.
type Schedule = (BTreeSet<(i64, String)>, HashMap<String, i64>);

#[derive(Default)]
struct State {
    values: HashMap<String, (Vec<u8>, Option<Instant>)>,
    schedules: HashMap<String, Schedule>,
    /// Writes since the last sweep of expired values.
    writes: usize,
    /// Payment events kept, oldest first, each with when it happened (unix ms); positions
    /// count from 1 without gaps.
    events: VecDeque<(u64, i64, StoredEvent)>,
    /// The position of the last event appended (0: none yet).
    last_event: u64,
    /// Every event at or below this position was trimmed.
    trimmed_through: u64,
}

/// Expired values are dropped when read, and all of them every this many writes, so keys that
/// are never read again do not pile up.
const SWEEP_EVERY: usize = 1024;

impl State {
    fn insert(&mut self, key: &str, value: Vec<u8>, expires: Option<Instant>) {
        self.writes += 1;
        if self.writes >= SWEEP_EVERY {
            self.writes = 0;
            let now = Instant::now();
            self.values
                .retain(|_, (_, at)| at.is_none_or(|at| at > now));
        }
        self.values.insert(key.to_owned(), (value, expires));
    }
}

/// An in-memory [`Store`]. It writes its own store identity when created: it cannot lose data
/// while its process lives, and a new process starts a new store.
pub struct MemoryStore {
    state: Mutex<State>,
    /// The position of the last event appended, for [`Store::wait_for_events`].
    appended: tokio::sync::watch::Sender<u64>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        let mut state = State::default();
        state.values.insert(
            super::keys::identity(),
            (super::identity::new_identity().into_bytes(), None),
        );
        Self {
            state: Mutex::new(state),
            appended: tokio::sync::watch::channel(0).0,
        }
    }
}

impl MemoryStore {
    fn live_value<'a>(state: &'a mut State, key: &str) -> Option<&'a mut Vec<u8>> {
        let expired = matches!(state.values.get(key), Some((_, Some(at))) if *at <= Instant::now());
        if expired {
            state.values.remove(key);
        }
        state.values.get_mut(key).map(|(v, _)| v)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-written: every critical
        // section is a single insert/remove. Recover the guard instead of poisoning the store.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A memory event id: its position, decimal.
fn position(id: &str) -> Option<u64> {
    id.parse().ok()
}

fn deadline(ttl: Option<Duration>) -> Option<Instant> {
    ttl.map(|t| Instant::now() + t)
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut state = self.lock();
        Ok(Self::live_value(&mut state, key).cloned())
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        self.lock().insert(key, value.to_vec(), deadline(ttl));
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if Self::live_value(&mut state, key).is_some() {
            return Ok(false);
        }
        state.insert(key, value.to_vec(), deadline(ttl));
        Ok(true)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        match Self::live_value(&mut state, key) {
            Some(current) if current.as_slice() == expected => {
                *current = new.to_vec();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn compare_and_swap_with_ttl(
        &self,
        key: &str,
        expected: &[u8],
        new: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        match Self::live_value(&mut state, key) {
            Some(current) if current.as_slice() == expected => {
                state
                    .values
                    .insert(key.to_owned(), (new.to_vec(), deadline(ttl)));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn set_if_absent_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<GuardedWrite, StoreError> {
        let mut state = self.lock();
        if Self::live_value(&mut state, guard_key).map(|v| v.as_slice()) != Some(guard_value) {
            return Ok(GuardedWrite::GuardFailed);
        }
        if Self::live_value(&mut state, key).is_some() {
            return Ok(GuardedWrite::Exists);
        }
        state.insert(key, value.to_vec(), deadline(ttl));
        Ok(GuardedWrite::Written)
    }

    async fn raise_counter(&self, key: &str, floor: u64) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let current = match Self::live_value(&mut state, key) {
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| StoreError(format!("{key} is not a counter")))?,
            None => 0,
        };
        let value = current.max(floor);
        state
            .values
            .insert(key.to_owned(), (value.to_string().into_bytes(), None));
        Ok(value)
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let now = Instant::now();
        let state = self.lock();
        let mut keys: Vec<String> = state
            .values
            .iter()
            .filter(|(k, (_, at))| k.starts_with(prefix) && at.is_none_or(|at| at > now))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock().values.remove(key);
        Ok(())
    }

    async fn increment_guarded(
        &self,
        guard_key: &str,
        guard_value: &[u8],
        key: &str,
        floor: u64,
        ceiling: u64,
    ) -> Result<Increment, StoreError> {
        let mut state = self.lock();
        if Self::live_value(&mut state, guard_key).map(|v| v.as_slice()) != Some(guard_value) {
            return Ok(Increment::GuardFailed);
        }
        let current = match Self::live_value(&mut state, key) {
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| StoreError(format!("{key} is not a counter")))?,
            None => 0,
        };
        let next = current.saturating_add(1).max(floor);
        if next > ceiling {
            return Ok(Increment::AboveCeiling(current));
        }
        state
            .values
            .insert(key.to_owned(), (next.to_string().into_bytes(), None));
        Ok(Increment::Issued {
            value: next,
            previous: current,
        })
    }

    async fn schedule(&self, set: &str, member: &str, due_ms: i64) -> Result<(), StoreError> {
        let mut state = self.lock();
        let (ordered, index) = state.schedules.entry(set.to_owned()).or_default();
        if let Some(old) = index.insert(member.to_owned(), due_ms) {
            ordered.remove(&(old, member.to_owned()));
        }
        ordered.insert((due_ms, member.to_owned()));
        Ok(())
    }

    async fn schedule_if_absent(
        &self,
        set: &str,
        member: &str,
        due_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let (ordered, index) = state.schedules.entry(set.to_owned()).or_default();
        if index.contains_key(member) {
            return Ok(false);
        }
        index.insert(member.to_owned(), due_ms);
        ordered.insert((due_ms, member.to_owned()));
        Ok(true)
    }

    async fn due(&self, set: &str, now_ms: i64, limit: usize) -> Result<Vec<String>, StoreError> {
        let state = self.lock();
        Ok(state
            .schedules
            .get(set)
            .map(|(ordered, _)| {
                ordered
                    .iter()
                    .take_while(|(due, _)| *due <= now_ms)
                    .take(limit)
                    .map(|(_, m)| m.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn range(
        &self,
        set: &str,
        min_ms: i64,
        max_ms: i64,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let state = self.lock();
        Ok(state
            .schedules
            .get(set)
            .map(|(ordered, _)| {
                ordered
                    .iter()
                    .skip_while(|(due, _)| *due < min_ms)
                    .take_while(|(due, _)| *due < max_ms)
                    .skip(offset)
                    .take(limit)
                    .map(|(_, m)| m.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn range_newest_first(
        &self,
        set: &str,
        max_ms: i64,
        min_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let state = self.lock();
        Ok(state
            .schedules
            .get(set)
            .map(|(ordered, _)| {
                ordered
                    .iter()
                    .rev()
                    .skip_while(|(due, _)| *due > max_ms)
                    .take_while(|(due, _)| *due >= min_ms)
                    .take(limit)
                    .map(|(due, m)| (m.clone(), *due))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn claim_due(
        &self,
        set: &str,
        member: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some((ordered, index)) = state.schedules.get_mut(set) else {
            return Ok(false);
        };
        match index.get(member).copied() {
            Some(due) if due <= now_ms => {
                ordered.remove(&(due, member.to_owned()));
                ordered.insert((lease_until_ms, member.to_owned()));
                index.insert(member.to_owned(), lease_until_ms);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn unschedule(&self, set: &str, member: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some((ordered, index)) = state.schedules.get_mut(set) {
            if let Some(due) = index.remove(member) {
                ordered.remove(&(due, member.to_owned()));
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn keeps_events(&self) -> Result<(), String> {
        Ok(())
    }

    async fn write_with_event(
        &self,
        write: RecordWrite<'_>,
        event: NewEvent<'_>,
    ) -> Result<EventWrite, StoreError> {
        // One lock over the record and the event log: both or neither, and no reader sees
        // one without the other.
        let mut state = self.lock();
        let (key, value, ttl) = match write {
            RecordWrite::Swap {
                key,
                expected,
                new,
                ttl,
            } => match Self::live_value(&mut state, key) {
                Some(current) if current.as_slice() == expected => (key, new, ttl),
                _ => return Ok(EventWrite::Refused),
            },
            RecordWrite::GuardedClaim {
                guard_key,
                guard_value,
                key,
                value,
                ttl,
            } => {
                if Self::live_value(&mut state, guard_key).map(|v| v.as_slice())
                    != Some(guard_value)
                {
                    return Ok(EventWrite::GuardFailed);
                }
                if Self::live_value(&mut state, key).is_some() {
                    return Ok(EventWrite::Refused);
                }
                (key, value, ttl)
            }
            RecordWrite::IfAbsent { key, value, ttl } => {
                if Self::live_value(&mut state, key).is_some() {
                    return Ok(EventWrite::Refused);
                }
                (key, value, ttl)
            }
        };
        state.insert(key, value.to_vec(), deadline(ttl));
        state.last_event += 1;
        let id = state.last_event;
        let stored = StoredEvent {
            id: id.to_string(),
            payment_id: event.payment_id.to_owned(),
            caller: event.caller.to_owned(),
            body: event.body.to_vec(),
        };
        state.events.push_back((id, event.at_ms, stored));
        drop(state);
        self.appended.send_replace(id);
        Ok(EventWrite::Written(id.to_string()))
    }

    async fn read_events(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<EventRead, StoreError> {
        let resume = match after {
            None => None,
            Some(id) => match position(id) {
                Some(p) => Some(p),
                None => return Ok(EventRead::Malformed),
            },
        };
        let state = self.lock();
        // Before the trimmed ones, or past the last one (an id of a process that is gone:
        // this store restarted from nothing).
        let after = resume.unwrap_or(0);
        if resume.is_some() && (after < state.trimmed_through || after > state.last_event) {
            return Ok(EventRead::Expired);
        }
        // Positions have no gaps, so the event after `after` sits at a known index.
        let first = state.events.front().map_or(state.last_event + 1, |e| e.0);
        let skip = (after + 1).saturating_sub(first) as usize;
        Ok(EventRead::Events(
            state
                .events
                .iter()
                .skip(skip)
                .take(limit)
                .map(|(_, _, e)| e.clone())
                .collect(),
        ))
    }

    async fn last_event_id(&self) -> Result<Option<String>, StoreError> {
        let last = self.lock().last_event;
        Ok((last > 0).then(|| last.to_string()))
    }

    async fn wait_for_events(
        &self,
        after: Option<&str>,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let after = after.and_then(position).unwrap_or(0);
        let mut appended = self.appended.subscribe();
        // Returns at once when an event is already past `after`.
        let _ = tokio::time::timeout(timeout, appended.wait_for(|last| *last > after)).await;
        Ok(())
    }

    async fn trim_events(&self, before_ms: i64) -> Result<(), StoreError> {
        let mut state = self.lock();
        while let Some((id, at_ms, _)) = state.events.front() {
            if *at_ms >= before_ms {
                break;
            }
            state.trimmed_through = *id;
            state.events.pop_front();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn memory_store_passes_the_store_contract() {
        crate::store::contract::run(&MemoryStore::default()).await;
    }
}
