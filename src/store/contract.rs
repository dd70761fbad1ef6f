//! The behaviour every [`Store`] backend must have. The memory backend runs it in unit tests; the
//! Redis backend runs it in `tests/redis_store.rs` against a real `redis-server`.

use std::time::Duration;

use super::{Guard, GuardCopies, Store};

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
}
