//! Payload (un)masking, RFC 6455 §5.3: `payload[i] ^= mask[i % 4]`.

/// XORs `buf` in place with `mask`, starting at mask phase `phase` (the index, modulo 4, of
/// `buf[0]` within its frame's payload, so a payload can be unmasked in pieces as it arrives).
/// Masking and unmasking are the same operation.
///
/// Works on 32-byte blocks of four `u64` words, which the compiler turns into SIMD; no
/// `unsafe` and no alignment assumptions.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    let r = phase & 3;
    // Rotate so that m[0] applies to buf[0].
    let m = [
        mask[r],
        mask[(r + 1) & 3],
        mask[(r + 2) & 3],
        mask[(r + 3) & 3],
    ];
    let word = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        for lane in block.chunks_exact_mut(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(lane);
            lane.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
        }
    }
    // Blocks are a multiple of 4 bytes long, so the tail starts at phase 0 again.
    for (i, b) in blocks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(buf: &mut [u8], mask: [u8; 4], phase: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(i + phase) & 3];
        }
    }

    #[test]
    fn rfc_hello() {
        let mut p = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut p, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&p, b"Hello");
    }

    proptest! {
        #[test]
        fn matches_naive(data in proptest::collection::vec(any::<u8>(), 0..200),
                         mask in any::<[u8; 4]>(), phase in 0usize..8, split in 0usize..200) {
            let mut fast = data.clone();
            let mut slow = data.clone();
            naive(&mut slow, mask, phase);
            // Unmasking in two pieces with the right phase equals unmasking at once.
            let split = split.min(fast.len());
            let (a, b) = fast.split_at_mut(split);
            apply_mask(a, mask, phase);
            apply_mask(b, mask, phase + split);
            prop_assert_eq!(&fast, &slow);
            apply_mask(&mut fast, mask, phase);
            prop_assert_eq!(fast, data);
        }
    }
}
