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
/// `unsafe`. The compiler turns the word loop into SIMD: 16-byte SSE2 registers on any x86-64,
/// 32-byte AVX2 ones where the CPU has AVX2 (checked at run time, `xor_words_avx2`).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let mut offset = offset % 4;

    // Short buffers: the setup of the word path costs more than it saves.
    if buf.len() < 2 * WORD {
        return apply_mask_bytewise(buf, key, offset);
    }

    // Short payloads (most chat and echo messages): unaligned words at once — aligning first
    // cost more than the whole XOR at this size (callgrind, docs/benchmarks.md, "Against
    // uWebSockets"). A word is a multiple of 4 bytes, so the tail keeps `offset`.
    if buf.len() < ALIGN_FROM {
        let (words, tail) = buf.split_at_mut(buf.len() - buf.len() % WORD);
        xor_words(words, word_of(key, offset));
        return apply_mask_bytewise(tail, key, offset);
    }

    // Unaligned head: bring the word loop onto an 8-byte boundary so its loads and stores are
    // aligned (cheaper on some targets; harmless elsewhere). `align_offset` may return
    // usize::MAX in theory, hence the `min`.
    let head_len = buf.as_ptr().align_offset(WORD).min(buf.len());
    let (head, rest) = buf.split_at_mut(head_len);
    offset = apply_mask_bytewise(head, key, offset);

    // The key rotated so that its byte 0 applies to the first byte of `rest`; a word is a
    // multiple of 4 bytes long, so the rotation stays the same for every word.
    let mask_word = word_of(key, offset);

    // Whole words: 8 bytes at a time, and the word loop consumes a multiple of 4, so the
    // offset into the key for the unaligned tail (under 8 bytes) is still `offset`.
    let (words, tail) = rest.split_at_mut(rest.len() - rest.len() % WORD);
    #[cfg(target_arch = "x86_64")]
    if words.len() >= WIDE_FROM && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `xor_words_avx2` only asks for AVX2, which the CPU has (checked above).
        unsafe { xor_words_avx2(words, mask_word) };
        return apply_mask_bytewise(tail, key, offset);
    }
    xor_words(words, mask_word);
    apply_mask_bytewise(tail, key, offset)
}

/// Payloads from this size are aligned before the word loop.
const ALIGN_FROM: usize = 64;

/// The key rotated so that its byte `offset` comes first, repeated to fill a word: XORed with
/// a word of the payload that starts where key byte `offset` applies. Both halves are the same
/// four bytes, so native byte order needs no care.
fn word_of(key: [u8; 4], offset: usize) -> u64 {
    // Rotating the integer, not the byte array: a slice rotation is a call, and this runs
    // once per frame. Byte `offset` comes first in memory, so it is the low byte on a
    // little-endian target and the high byte on a big-endian one.
    let bits = 8 * (offset % 4) as u32;
    let word = u32::from_ne_bytes(key);
    let half = u64::from(if cfg!(target_endian = "little") {
        word.rotate_right(bits)
    } else {
        word.rotate_left(bits)
    });
    half << 32 | half
}

/// Bytes from which the AVX2 loop is worth the feature check (an atomic load).
#[cfg(target_arch = "x86_64")]
const WIDE_FROM: usize = 256;

/// `xor_words` compiled for AVX2: the same loop, vectorised to 32-byte registers (half the
/// instructions of the SSE2 build per byte; what unmasking costs the server at 64 KiB is in
/// docs/perf-history.md, "Unmasking with AVX2").
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn xor_words_avx2(words: &mut [u8], mask: u64) {
    xor_words(words, mask);
}

/// The word loop. Inlined into each caller so that each is vectorised for its own target
/// features.
#[inline(always)]
fn xor_words(words: &mut [u8], mask: u64) {
    for chunk in words.chunks_exact_mut(WORD) {
        let mut bytes = [0u8; WORD];
        bytes.copy_from_slice(chunk);
        let masked = u64::from_ne_bytes(bytes) ^ mask;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
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
        // A backing buffer larger than the test slice so the slice start can be moved to
        // exercise every head length of the aligned word loop. Lengths from 256 take the
        // AVX2 loop where the CPU has it (`WIDE_FROM`), around that bound too.
        let long = [250, 255, 256, 257, 263, 264, 265, 300, 1024, 4099, 65_539];
        for len in (0..=130).chain(long) {
            let backing = pattern(len + 16);
            for start in 0..9 {
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_word_loop_matches_the_plain_one() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return; // nothing to compare on this CPU; the dispatch never calls it
        }
        let mask = u64::from_ne_bytes([1, 2, 3, 4, 1, 2, 3, 4]);
        for words in [0, 1, 3, 4, 5, 31, 32, 33, 1000] {
            let (mut wide, mut plain) = (pattern(words * WORD), pattern(words * WORD));
            // SAFETY: AVX2 is present (checked above).
            unsafe { xor_words_avx2(&mut wide, mask) };
            xor_words(&mut plain, mask);
            assert_eq!(wide, plain, "{words} words");
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
