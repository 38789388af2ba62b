//! FNV-1a 64: the one stable hash of the workspace, for values that must be the same in every
//! process, platform and release (stored fingerprints, advisory lock keys, key spreading).
//!
//! std's `DefaultHasher` is neither fixed nor published, so it cannot be stored or shared between
//! processes. FNV-1a is a few lines with no dependency, and fast enough for short inputs.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hasher = Fnv1a64::new();
    hasher.write(bytes);
    hasher.finish()
}

/// FNV-1a 64 fed in pieces, for callers hashing several slices as one input (a service name, a
/// separator, a template) without joining them first. Feeding `a` then `b` gives
/// `fnv1a_64(a ++ b)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    pub const fn new() -> Self {
        Fnv1a64(OFFSET_BASIS)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(PRIME);
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_vectors() {
        // FNV-1a 64 of the empty input is its offset basis; the others are published vectors.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn feeding_in_pieces_hashes_the_concatenation() {
        let mut hasher = Fnv1a64::new();
        hasher.write(b"foo");
        hasher.write(b"");
        hasher.write(b"bar");
        assert_eq!(hasher.finish(), fnv1a_64(b"foobar"));
        assert_eq!(Fnv1a64::default().finish(), fnv1a_64(b""));
    }
}
