//! The behaviour every [`Store`] backend must have. The memory backend runs it in unit tests; the
//! Redis backend runs it in `tests/redis_store.rs` against a real `redis-server`.

use std::time::Duration;

use super::{EventRead, EventWrite, Guard, GuardCopies, NewEvent, RecordWrite, Store, StoredEvent};

/// Runs the whole contract against `store`. Uses unique keys, so a shared server is fine.
pub async fn run(store: &dyn Store) {
    let ns = format!("test:{}", uuid::Uuid::new_v4().simple());
    let k = |s: &str| format!("{ns}:{s}");

    store.ping().await.unwrap();
    assert_eq!(store.get(&k("missing")).await.unwrap(), None);

    store.set(&k("a"), b"1", None).await.unwrap();
    assert_eq!(
        store.get(&k("a")).await.unwrap().as_deref(),
        Some(&b"1"[..])
    );

    assert!(!store.set_if_absent(&k("a"), b"2", None).await.unwrap());
    assert_eq!(
        store.get(&k("a")).await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert!(store.set_if_absent(&k("b"), b"2", None).await.unwrap());

    assert!(!store.compare_and_swap(&k("a"), b"x", b"3").await.unwrap());
    assert!(store.compare_and_swap(&k("a"), b"1", b"3").await.unwrap());
    assert_eq!(
        store.get(&k("a")).await.unwrap().as_deref(),
        Some(&b"3"[..])
    );
    assert!(!store
        .compare_and_swap(&k("nope"), b"1", b"3")
        .await
        .unwrap());

    store.delete(&k("a")).await.unwrap();
    assert_eq!(store.get(&k("a")).await.unwrap(), None);

    let set = k("sched");
    store.schedule(&set, "late", 300).await.unwrap();
    store.schedule(&set, "early", 100).await.unwrap();
    store.schedule(&set, "moved", 50).await.unwrap();
    store.schedule(&set, "moved", 200).await.unwrap();
    // Only a new member is added; an existing one keeps its due time.
    assert!(!store
        .schedule_if_absent(&set, "moved", 10_000)
        .await
        .unwrap());
    assert_eq!(store.due(&set, 99, 10).await.unwrap(), Vec::<String>::new());
    assert_eq!(
        store.due(&set, 250, 10).await.unwrap(),
        vec!["early", "moved"]
    );
    assert_eq!(store.due(&set, 1000, 1).await.unwrap(), vec!["early"]);
    // A due entry is claimed once; the claim moves it to its lease.
    assert!(store.claim_due(&set, "early", 250, 5_000).await.unwrap());
    assert!(!store.claim_due(&set, "early", 250, 5_000).await.unwrap());
    assert!(
        !store.claim_due(&set, "late", 250, 5_000).await.unwrap(),
        "not due yet"
    );
    assert!(!store.claim_due(&set, "absent", 250, 5_000).await.unwrap());
    assert_eq!(
        store.due(&set, 4_999, 10).await.unwrap(),
        vec!["moved", "late"]
    );
    store.unschedule(&set, "early").await.unwrap();
    assert_eq!(
        store.due(&set, 1000, 10).await.unwrap(),
        vec!["moved", "late"]
    );
    let index = k("index");
    for (member, at) in [("a", 10), ("b", 20), ("c", 20), ("d", 30)] {
        assert!(store.schedule_if_absent(&index, member, at).await.unwrap());
    }
    assert_eq!(
        store.range(&index, 10, 30, 0, 10).await.unwrap(),
        vec!["a", "b", "c"],
        "end excluded"
    );
    assert_eq!(
        store.range(&index, 15, 100, 1, 2).await.unwrap(),
        vec!["c", "d"]
    );
    assert!(store
        .range(&index, 31, 100, 0, 10)
        .await
        .unwrap()
        .is_empty());
    // Newest first, both ends included, equal due times by member descending, with due times.
    let scored = |pairs: &[(&str, i64)]| -> Vec<(String, i64)> {
        pairs.iter().map(|(m, at)| (m.to_string(), *at)).collect()
    };
    assert_eq!(
        store.range_newest_first(&index, 30, 10, 10).await.unwrap(),
        scored(&[("d", 30), ("c", 20), ("b", 20), ("a", 10)])
    );
    assert_eq!(
        store.range_newest_first(&index, 29, 11, 10).await.unwrap(),
        scored(&[("c", 20), ("b", 20)])
    );
    assert_eq!(
        store
            .range_newest_first(&index, i64::MAX, i64::MIN, 2)
            .await
            .unwrap(),
        scored(&[("d", 30), ("c", 20)])
    );
    assert!(store
        .range_newest_first(&index, 9, i64::MIN, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .range_newest_first(&k("no-such-set"), i64::MAX, i64::MIN, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.schedule_if_absent(&set, "fresh", 50).await.unwrap());
    assert_eq!(store.due(&set, 60, 10).await.unwrap(), vec!["fresh"]);

    // Both sets at once, each only where the member is absent.
    let (first, second) = (k("both-1"), k("both-2"));
    store.schedule(&first, "m", 5).await.unwrap();
    store
        .schedule_all_if_absent(&[(&first, 70), (&second, 80)], "m")
        .await
        .unwrap();
    assert_eq!(store.due(&first, 5, 10).await.unwrap(), vec!["m"]);
    assert!(store.due(&second, 79, 10).await.unwrap().is_empty());
    assert_eq!(store.due(&second, 80, 10).await.unwrap(), vec!["m"]);

    store
        .set(&k("ttl"), b"v", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(store.get(&k("ttl")).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.get(&k("ttl")).await.unwrap(), None);
    assert!(store.set_if_absent(&k("ttl"), b"w", None).await.unwrap());

    // A guarded claim writes only while the guard holds, and only once. The guard is written
    // through its own methods: on a cluster it has a copy in every slot.
    let guard = k("guard");
    for copies in [GuardCopies::OnePerRange, GuardCopies::Every] {
        assert_eq!(
            store.read_guard(&guard, copies).await.unwrap(),
            Guard::Absent
        );
    }
    assert_eq!(
        store
            .set_if_absent_guarded(&guard, b"g1", &k("claim"), b"v", None)
            .await
            .unwrap(),
        super::GuardedWrite::GuardFailed,
        "no guard, no write"
    );
    assert_eq!(store.get(&k("claim")).await.unwrap(), None);
    assert!(store.init_guard(&guard, b"g1").await.unwrap());
    assert!(!store.init_guard(&guard, b"g0").await.unwrap(), "kept");
    for copies in [GuardCopies::OnePerRange, GuardCopies::Every] {
        assert_eq!(
            store.read_guard(&guard, copies).await.unwrap(),
            Guard::Held(b"g1".to_vec())
        );
    }
    assert_eq!(
        store
            .set_if_absent_guarded(&guard, b"g2", &k("claim"), b"v", None)
            .await
            .unwrap(),
        super::GuardedWrite::GuardFailed,
        "another guard value"
    );
    assert_eq!(
        store
            .set_if_absent_guarded(&guard, b"g1", &k("claim"), b"v", None)
            .await
            .unwrap(),
        super::GuardedWrite::Written
    );
    assert_eq!(
        store
            .set_if_absent_guarded(&guard, b"g1", &k("claim"), b"w", None)
            .await
            .unwrap(),
        super::GuardedWrite::Exists
    );
    assert_eq!(
        store.get(&k("claim")).await.unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(
        store
            .set_if_absent_guarded(
                &guard,
                b"g1",
                &k("claim-ttl"),
                b"v",
                Some(Duration::from_secs(1))
            )
            .await
            .unwrap(),
        super::GuardedWrite::Written
    );

    // A replaced guard: claims under the old value fail, under the new one succeed.
    store.replace_guard(&guard, b"g3").await.unwrap();
    assert_eq!(
        store.read_guard(&guard, GuardCopies::Every).await.unwrap(),
        Guard::Held(b"g3".to_vec())
    );
    assert_eq!(
        store
            .set_if_absent_guarded(&guard, b"g1", &k("claim-2"), b"v", None)
            .await
            .unwrap(),
        super::GuardedWrite::GuardFailed
    );
    assert_eq!(
        store
            .set_if_absent_guarded(&guard, b"g3", &k("claim-2"), b"v", None)
            .await
            .unwrap(),
        super::GuardedWrite::Written
    );

    // Counters move only while the guard holds (on a cluster: its copy in the counter's slot).
    use super::Increment;
    const NO_CEILING: u64 = u64::MAX / 2;
    assert_eq!(
        store
            .increment_guarded(&k("no-guard"), b"g3", &k("seq"), 0, NO_CEILING)
            .await
            .unwrap(),
        Increment::GuardFailed,
        "no guard, no counter"
    );
    assert_eq!(store.get(&k("seq")).await.unwrap(), None);
    for want in [1, 2] {
        assert_eq!(
            store
                .increment_guarded(&guard, b"g3", &k("seq"), 0, NO_CEILING)
                .await
                .unwrap(),
            Increment::Issued {
                value: want,
                previous: want - 1
            }
        );
    }
    assert_eq!(
        store
            .increment_guarded(&guard, b"g1", &k("seq"), 0, NO_CEILING)
            .await
            .unwrap(),
        Increment::GuardFailed,
        "another guard value"
    );
    assert_eq!(
        store.get(&k("seq")).await.unwrap().as_deref(),
        Some(&b"2"[..]),
        "unchanged"
    );
    // The floor lifts a missing or lagging counter; it never lowers one.
    for (floor, want, previous) in [(1000, 1000, 0), (500, 1001, 1000), (5000, 5000, 1001)] {
        assert_eq!(
            store
                .increment_guarded(&guard, b"g3", &k("floored"), floor, NO_CEILING)
                .await
                .unwrap(),
            Increment::Issued {
                value: want,
                previous
            }
        );
    }
    // Past the ceiling: refused, nothing changed. Large values stay exact (Lua doubles).
    assert_eq!(
        store
            .increment_guarded(&guard, b"g3", &k("floored"), 0, 5000)
            .await
            .unwrap(),
        Increment::AboveCeiling(5000)
    );
    let big = 4_000_000_000_123u64;
    assert_eq!(
        store
            .increment_guarded(&guard, b"g3", &k("floored"), big, big)
            .await
            .unwrap(),
        Increment::Issued {
            value: big,
            previous: 5000
        }
    );
    assert_eq!(
        store.get(&k("floored")).await.unwrap(),
        Some(big.to_string().into_bytes())
    );

    // Keys by prefix.
    let prefixed = k("pre");
    store
        .set(&format!("{prefixed}:1"), b"x", None)
        .await
        .unwrap();
    store
        .set(&format!("{prefixed}:2"), b"x", None)
        .await
        .unwrap();
    assert_eq!(
        store
            .keys_with_prefix(&format!("{prefixed}:"))
            .await
            .unwrap(),
        vec![format!("{prefixed}:1"), format!("{prefixed}:2")]
    );

    // Counters are raised, never lowered.
    assert_eq!(store.raise_counter(&k("raised"), 500).await.unwrap(), 500);
    assert_eq!(store.raise_counter(&k("raised"), 100).await.unwrap(), 500);
    assert_eq!(
        store
            .increment_guarded(&guard, b"g3", &k("raised"), 0, NO_CEILING)
            .await
            .unwrap(),
        Increment::Issued {
            value: 501,
            previous: 500
        }
    );
    assert_eq!(store.raise_counter(&k("raised"), 900).await.unwrap(), 900);
    assert_eq!(
        store
            .increment_guarded(&guard, b"g3", &k("raised"), 0, NO_CEILING)
            .await
            .unwrap(),
        Increment::Issued {
            value: 901,
            previous: 900
        }
    );

    // A swap with a TTL sets it; one without makes the key permanent again.
    store
        .set(&k("cas-ttl"), b"1", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(!store
        .compare_and_swap_with_ttl(&k("cas-ttl"), b"x", b"2", None)
        .await
        .unwrap());
    assert!(store
        .compare_and_swap_with_ttl(&k("cas-ttl"), b"1", b"2", None)
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        store.get(&k("cas-ttl")).await.unwrap().as_deref(),
        Some(&b"2"[..]),
        "made permanent"
    );
    assert!(store
        .compare_and_swap_with_ttl(&k("cas-ttl"), b"2", b"3", Some(Duration::from_secs(1)))
        .await
        .unwrap());
    assert!(store.get(&k("cas-ttl")).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.get(&k("cas-ttl")).await.unwrap(), None, "expired");
    assert_eq!(store.get(&k("claim-ttl")).await.unwrap(), None, "expired");

    events(store, &ns).await;
}

/// Reads every event after `after` until none is left.
async fn read_all(store: &dyn Store, mut after: Option<String>) -> Vec<StoredEvent> {
    let mut all = Vec::new();
    loop {
        match store.read_events(after.as_deref(), 7).await.unwrap() {
            EventRead::Events(page) if page.is_empty() => return all,
            EventRead::Events(page) => {
                after = page.last().map(|e| e.id.clone());
                all.extend(page);
            }
            other => panic!("reading from {after:?}: {other:?}"),
        }
    }
}

/// The payment events outbox: each record write with its event, both or neither; events read
/// in order from any resume point, never skipped, even while writers race; retention trims
/// and says so. The events log is one per store: the trim at the end deletes every event.
async fn events(store: &dyn Store, ns: &str) {
    let k = |s: &str| format!("{ns}:ev:{s}");
    if store.keeps_events().is_err() {
        let write = RecordWrite::IfAbsent {
            key: &k("x"),
            value: b"1",
            ttl: None,
        };
        assert!(store
            .write_with_event(write, event("x", b"e"))
            .await
            .is_err());
        assert_eq!(store.get(&k("x")).await.unwrap(), None);
        return;
    }
    let ours = |events: Vec<StoredEvent>| -> Vec<StoredEvent> {
        events
            .into_iter()
            .filter(|e| e.payment_id.starts_with(ns))
            .collect()
    };
    let start = store.last_event_id().await.unwrap();
    let guard = k("guard");
    store.set(&guard, b"g", None).await.unwrap();
    let (p1, p2) = (k("p1"), k("p2"));
    let claim = |value: &'static [u8], guard_value: &'static [u8]| RecordWrite::GuardedClaim {
        guard_key: &guard,
        guard_value,
        key: &p1,
        value,
        ttl: None,
    };
    // Refused writes append nothing.
    assert_eq!(
        store
            .write_with_event(claim(b"c", b"other"), event(&p1, b"no"))
            .await
            .unwrap(),
        EventWrite::GuardFailed
    );
    assert_eq!(store.get(&p1).await.unwrap(), None);
    let EventWrite::Written(first) = store
        .write_with_event(claim(b"c", b"g"), event(&p1, b"created"))
        .await
        .unwrap()
    else {
        panic!("claim not written")
    };
    assert_eq!(
        store
            .write_with_event(claim(b"d", b"g"), event(&p1, b"no"))
            .await
            .unwrap(),
        EventWrite::Refused
    );
    let swap = |expected: &'static [u8], new: &'static [u8]| RecordWrite::Swap {
        key: &p1,
        expected,
        new,
        ttl: Some(Duration::from_secs(60)),
    };
    assert_eq!(
        store
            .write_with_event(swap(b"x", b"s"), event(&p1, b"no"))
            .await
            .unwrap(),
        EventWrite::Refused
    );
    assert!(matches!(
        store
            .write_with_event(swap(b"c", b"s"), event(&p1, b"swapped"))
            .await
            .unwrap(),
        EventWrite::Written(_)
    ));
    assert_eq!(store.get(&p1).await.unwrap().as_deref(), Some(&b"s"[..]));
    let absent = RecordWrite::IfAbsent {
        key: &p1,
        value: b"z",
        ttl: None,
    };
    assert_eq!(
        store
            .write_with_event(absent, event(&p1, b"no"))
            .await
            .unwrap(),
        EventWrite::Refused
    );
    let absent = RecordWrite::IfAbsent {
        key: &p2,
        value: b"z",
        ttl: None,
    };
    let EventWrite::Written(last) = store
        .write_with_event(absent, event(&p2, b"restored"))
        .await
        .unwrap()
    else {
        panic!("put back not written")
    };
    assert_eq!(store.get(&p2).await.unwrap().as_deref(), Some(&b"z"[..]));

    // In order, each once, with what was written.
    let seen = ours(read_all(store, start.clone()).await);
    let bodies: Vec<&[u8]> = seen.iter().map(|e| e.body.as_slice()).collect();
    assert_eq!(bodies, [&b"created"[..], b"swapped", b"restored"]);
    assert_eq!(seen[0].id, first);
    assert_eq!(seen[2].id, last);
    assert_eq!(seen[0].caller, "caller-a");
    assert_eq!(seen[1].payment_id, p1);
    // Resumed after the first: the rest, exactly once.
    let resumed = ours(read_all(store, Some(first.clone())).await);
    assert_eq!(resumed, seen[1..].to_vec());
    assert!(store.last_event_id().await.unwrap().is_some());
    assert_eq!(
        store.read_events(Some("not an id"), 10).await.unwrap(),
        EventRead::Malformed
    );
    // An event already there: the wait returns at once (else this hangs for its minute).
    store
        .wait_for_events(Some(&first), Duration::from_secs(60))
        .await
        .unwrap();

    // Racing writers: a reader following along never passes over an event that commits
    // later (a PostgreSQL serial id would let it), and sees each once.
    let racing: Vec<String> = (0..24).map(|i| k(&format!("race{i}"))).collect();
    let from = store.last_event_id().await.unwrap();
    let writers = futures_util::future::join_all(racing.iter().map(|key| async move {
        let write = RecordWrite::IfAbsent {
            key,
            value: b"r",
            ttl: None,
        };
        let event = NewEvent {
            payment_id: key,
            caller: "caller-b",
            body: b"race",
            at_ms: now_ms(),
        };
        store.write_with_event(write, event).await.unwrap()
    }));
    let follower = async {
        let mut after = from.clone();
        let mut seen = Vec::new();
        for _ in 0..200 {
            if let EventRead::Events(page) = store.read_events(after.as_deref(), 5).await.unwrap() {
                if let Some(e) = page.last() {
                    after = Some(e.id.clone());
                }
                seen.extend(page);
            }
            tokio::task::yield_now().await;
        }
        (seen, after)
    };
    let (written, (mut followed, after)) = tokio::join!(writers, follower);
    assert!(written.iter().all(|w| matches!(w, EventWrite::Written(_))));
    followed.extend(read_all(store, after).await);
    let followed = ours(followed);
    let mut names: Vec<&str> = followed.iter().map(|e| e.payment_id.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = racing.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "every racing event once");

    // Retention: trimmed events are gone, and a resume point among them says so.
    store.trim_events(now_ms() + 60_000).await.unwrap();
    assert_eq!(
        store.read_events(Some(&first), 10).await.unwrap(),
        EventRead::Expired
    );
    let newest = store.last_event_id().await.unwrap().unwrap();
    assert_eq!(
        store.read_events(Some(&newest), 10).await.unwrap(),
        EventRead::Events(Vec::new()),
        "the newest, even trimmed, is a resume point with nothing missing"
    );
    assert_eq!(ours(read_all(store, None).await), Vec::new());
}

/// An event of `payment_id` by caller-a, now.
fn event<'a>(payment_id: &'a str, body: &'a [u8]) -> NewEvent<'a> {
    NewEvent {
        payment_id,
        caller: "caller-a",
        body,
        at_ms: now_ms(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
