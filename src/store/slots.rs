//! Redis Cluster hash slots, for the store's guard (the store identity): on a cluster the guard
//! is kept once per slot, in a key whose hash tag puts it in that slot, so that a claim's Lua
//! script touches two keys of one slot (see the [`super`] module docs). This module computes a
//! key's slot (CRC16/XMODEM of the key, or of its `{hash tag}`, modulo 16384: the Redis Cluster
//! spec) and, once per process, a short tag for each slot.

use std::sync::LazyLock;

/// Hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The slot of `key`: CRC16 of its hash tag (the first non-empty `{...}`) or of the whole key.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// For each slot, the shortest tag (lowercase base 36, searched in order) that hashes to it.
/// Computed once (some 160,000 CRCs, a few milliseconds); the same on every replica.
static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags = vec![String::new(); SLOTS as usize];
    let mut missing = SLOTS as usize;
    let mut n: u64 = 0;
    while missing > 0 {
        let tag = base36(n);
        let s = slot(tag.as_bytes()) as usize;
        if tags[s].is_empty() {
            tags[s] = tag;
            missing -= 1;
        }
        n += 1;
    }
    tags
});

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// The copy of guard `key` that lives in `slot`: `<key>:{<tag>}`.
pub fn guard_copy(key: &str, slot: u16) -> String {
    format!("{key}:{{{}}}", TAGS[slot as usize])
}

/// Every copy of guard `key`, slot 0 first.
pub fn guard_copies(key: &str) -> impl Iterator<Item = String> + '_ {
    (0..SLOTS).map(move |s| guard_copy(key, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn slots_match_the_redis_crate_and_every_copy_lands_in_its_slot() {
        for key in [
            "billpay:v1:payment:abc",
            "a{tag}b",
            "{}x",
            "x{}{y}",
            "{user1000}.following",
        ] {
            assert_eq!(
                Slot::new(slot(key.as_bytes())),
                Some(Slot::for_key(key)),
                "{key}"
            );
        }
        // Redis's own examples: `{user1000}.following` and `.followers` share a slot.
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        for s in 0..SLOTS {
            let copy = guard_copy("billpay:v1:store:identity", s);
            assert_eq!(slot(copy.as_bytes()), s, "{copy}");
            assert_eq!(Slot::new(s), Some(Slot::for_key(&copy)));
        }
        assert!(TAGS.iter().all(|t| t.len() <= 4));
    }
}
