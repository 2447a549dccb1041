//! The one hash function of the system, and the two ways it is used: ring positions
//! (`hash_key`, `point_hash`) and home shards inside a node (`shard_of`).

use xxhash_rust::xxh3::xxh3_64;

/// Hashes a key (a user id, a room name, a queue name) to its position on the ring.
///
/// xxh3-64 with no seed: this is the ONE hash used by gateway, control and loadgen, so a
/// key lands on the same node and the same shard whoever computes it.
#[inline]
pub fn hash_key(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The home shard of `user` inside a node with `shard_count` shards:
/// `hash_key(user) % shard_count`.
///
/// Why modulo and not a multiply-shift range reduction: the ring places users by the whole
/// hash (its high bits decide which arc a user falls in), so the users one node owns share
/// high-bit patterns. The low bits that `%` uses are independent of that, so a node's users
/// still spread evenly over its shards. A `shard_count` of 0 is treated as 1 (returns 0)
/// rather than panicking.
#[inline]
pub fn shard_of(user: &str, shard_count: usize) -> usize {
    let n = shard_count.max(1) as u64;
    (hash_key(user.as_bytes()) % n) as usize
}

/// Appends the ring points of one node to `out`: `count` hashes of `"{id}#{i}"` for
/// `i in 0..count`, each tagged with the node's index.
///
/// The key format is part of the ring's definition (another implementation must hash the
/// same bytes to agree on ownership), so it is documented in the crate doc.
pub(crate) fn push_node_points(id: &str, count: u32, index: u32, out: &mut Vec<(u64, u32)>) {
    // id + '#' + at most 10 decimal digits of a u32.
    let mut buf = Vec::with_capacity(id.len() + 11);
    buf.extend_from_slice(id.as_bytes());
    buf.push(b'#');
    let base = buf.len();
    out.reserve(count as usize);
    for i in 0..count {
        buf.truncate(base);
        push_decimal(&mut buf, i);
        out.push((xxh3_64(&buf), index));
    }
}

/// The ring position of point `i` of node `id` (the same bytes `push_node_points` hashes).
pub fn point_hash(id: &str, i: u32) -> u64 {
    let mut buf = Vec::with_capacity(id.len() + 11);
    buf.extend_from_slice(id.as_bytes());
    buf.push(b'#');
    push_decimal(&mut buf, i);
    xxh3_64(&buf)
}

/// Writes `n` in decimal without going through `fmt` (ring builds hash millions of these).
fn push_decimal(buf: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend(digits[..len].iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_keys_are_id_hash_index() {
        assert_eq!(point_hash("node-a", 0), xxh3_64(b"node-a#0"));
        assert_eq!(
            point_hash("node-a", 4_294_967_295),
            xxh3_64(b"node-a#4294967295")
        );
        let mut out = Vec::new();
        push_node_points("n1", 12, 7, &mut out);
        assert_eq!(out.len(), 12);
        for (i, (h, idx)) in out.iter().enumerate() {
            assert_eq!(*h, xxh3_64(format!("n1#{i}").as_bytes()));
            assert_eq!(*idx, 7);
        }
    }

    #[test]
    fn shard_of_is_hash_modulo_and_never_panics() {
        for user in ["alice", "bob", "u:1", ""] {
            assert_eq!(shard_of(user, 7), (hash_key(user.as_bytes()) % 7) as usize);
            assert_eq!(shard_of(user, 0), 0);
            assert_eq!(shard_of(user, 1), 0);
        }
    }

    #[test]
    fn shard_of_spreads_users() {
        let mut counts = [0u32; 4];
        for i in 0..40_000 {
            counts[shard_of(&format!("user-{i}"), 4)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
