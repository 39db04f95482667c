//! Owns payload masking (RFC 6455 §5.3): XOR with the 4-byte masking key, resumable at any key
//! offset so a payload can be unmasked piece by piece as it arrives. Sans-IO, no allocation.
//! Must not: allocate, or depend on the payload being contiguous or aligned.

/// Bytes processed per step of the fast path.
const WORD: usize = std::mem::size_of::<u64>();

/// XOR `buf` in place with `key`, starting at byte `offset` (0..4) of the key; returns the
/// offset for the next byte, `(offset + buf.len()) % 4`.
///
/// §5.3: octet i of the payload is XORed with octet `i % 4` of the key. A payload often arrives
/// in several reads, so the caller keeps the returned offset and passes it to the next call.
///
/// Fast path: the key rotated to the current offset is repeated into a `u64` and XORed a word
/// at a time. Because the word is built in native byte order from the same byte pattern it is
/// applied to, no endianness handling is needed, and `chunks_exact_mut` keeps it free of
/// `unsafe`.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let mut offset = offset % 4;

    // Short buffers: the setup of the word path costs more than it saves.
    if buf.len() < 2 * WORD {
        return apply_mask_bytewise(buf, key, offset);
    }

    // Unaligned head: bring the word loop onto an 8-byte boundary so its loads and stores are
    // aligned (cheaper on some targets; harmless elsewhere). `align_offset` may return
    // usize::MAX in theory, hence the `min`.
    let head_len = buf.as_ptr().align_offset(WORD).min(buf.len());
    let (head, rest) = buf.split_at_mut(head_len);
    offset = apply_mask_bytewise(head, key, offset);

    // The key rotated so that its byte 0 applies to the first byte of `rest`; a word is a
    // multiple of 4 bytes long, so the rotation stays the same for every word.
    let rotated = [
        key[offset],
        key[(offset + 1) % 4],
        key[(offset + 2) % 4],
        key[(offset + 3) % 4],
    ];
    let mut pattern = [0u8; WORD];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = rotated[i % 4];
    }
    let mask_word = u64::from_ne_bytes(pattern);

    let mut words = rest.chunks_exact_mut(WORD);
    for chunk in &mut words {
        let mut bytes = [0u8; WORD];
        bytes.copy_from_slice(chunk);
        let masked = u64::from_ne_bytes(bytes) ^ mask_word;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }

    // Unaligned tail: fewer than 8 bytes, and the word loop consumed a multiple of 4, so the
    // offset into the key is still `offset`.
    apply_mask_bytewise(words.into_remainder(), key, offset)
}

/// Byte-at-a-time reference implementation of [`apply_mask`] (same contract), used by tests
/// and benches and for short pieces.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let mut offset = offset % 4;
    for b in buf.iter_mut() {
        *b ^= key[offset];
        offset = (offset + 1) % 4;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: masked "Hello" with key 37 fa 21 3d.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(apply_mask(&mut payload, KEY, 0), 1);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn bytewise_matches_definition() {
        let mut buf = vec![0u8; 9];
        let next = apply_mask_bytewise(&mut buf, [1, 2, 3, 4], 2);
        assert_eq!(buf, [3, 4, 1, 2, 3, 4, 1, 2, 3]);
        assert_eq!(next, 3);
    }

    #[test]
    fn fast_matches_bytewise_all_lengths_offsets_alignments() {
        // A backing buffer larger than any test slice so the slice start can be moved to
        // exercise every head length of the aligned word loop.
        let backing = pattern(130 + 16);
        for start in 0..9 {
            for len in 0..=130 {
                for offset in 0..4 {
                    let mut fast = backing.clone();
                    let mut slow = backing.clone();
                    let a = apply_mask(&mut fast[start..start + len], KEY, offset);
                    let b = apply_mask_bytewise(&mut slow[start..start + len], KEY, offset);
                    assert_eq!(a, b, "start {start} len {len} offset {offset}");
                    assert_eq!(a, (offset + len) % 4);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn split_application_equals_whole() {
        let original = pattern(100);
        for offset in 0..4 {
            let mut whole = original.clone();
            apply_mask(&mut whole, KEY, offset);
            for split in 0..=original.len() {
                let mut pieces = original.clone();
                let (a, b) = pieces.split_at_mut(split);
                let next = apply_mask(a, KEY, offset);
                let end = apply_mask(b, KEY, next);
                assert_eq!(pieces, whole, "offset {offset} split {split}");
                assert_eq!(end, (offset + original.len()) % 4);
            }
        }
    }

    #[test]
    fn masking_twice_restores() {
        let original = pattern(77);
        let mut buf = original.clone();
        apply_mask(&mut buf, KEY, 1);
        assert_ne!(buf, original);
        apply_mask(&mut buf, KEY, 1);
        assert_eq!(buf, original);
    }
}
