//! A Bloom filter of one frozen key generation's event keys (issue 15, part 5).
//!
//! Outside a generation's first day a new event id's key is looked up in the
//! previous generation ([`super::usage::KeyGeneration`]); with tens of millions of
//! keys there that lookup is most of a batch's extra cost. Once the previous
//! generation takes no more keys, a filter of its keys tells which ids it cannot
//! hold: those skip the lookup. A Bloom filter has no false negatives, so no
//! duplicate is missed; about 1 % of new keys are false positives and are looked up
//! as before.

use fastbloom::BloomFilter;
use uuid::Uuid;

/// How a key maps to the filter's bits: fastbloom 0.14's `insert_hash` and
/// `contains_hash` of the key's first 8 bytes read little-endian (keys are SHA-256
/// prefixes, so those bytes are already uniform: no second hash). A replica uses a
/// stored filter only when its format is this one. The test
/// `the_bit_layout_is_pinned` fails when a dependency update moves bits; this name
/// must change with it.
pub const FORMAT: &str = "fastbloom-0.14/key-first-8-bytes-le";

/// Bits per key for about 1 % false positives: `-ln 0.01 / ln² 2` ≈ 9.59.
const BITS_PER_KEY: f64 = 9.6;
/// Hashes per key for 1 % false positives: `-log₂ 0.01` ≈ 6.64.
const HASHES: u32 = 7;
/// fastbloom places a bit from a hash's high 32 bits, so a filter holds at most
/// 2³² bits (512 MiB); past about 447 million keys the false positives exceed 1 %.
const MAX_BITS: u64 = 1 << 32;
/// The smallest filter: one 512-bit block.
const MIN_BITS: u64 = 512;

/// The filter of key generation `generation`: built empty for the keys it is to
/// hold, or read back from storage.
pub struct KeyFilter {
    generation: i32,
    keys: u64,
    bloom: BloomFilter,
}

impl KeyFilter {
    /// An empty filter sized for `expected` keys at about 1 % false positives
    /// (9.6 bits a key: 60 MB for 50 000 000 keys), 7 hashes per key.
    pub fn sized_for(generation: i32, expected: u64) -> Self {
        let wanted = (expected as f64 * BITS_PER_KEY).ceil() as u64;
        let bits = wanted.clamp(MIN_BITS, MAX_BITS).div_ceil(64) * 64;
        let words = vec![0u64; usize::try_from(bits / 64).unwrap_or(usize::MAX)];
        Self { generation, keys: 0, bloom: BloomFilter::from_vec(words).hashes(HASHES) }
    }

    /// Reads a stored filter back (`usage_key_filters`): `hashes` per key, `keys`
    /// inserted, `words` its bit vector ([`put_words`]). Errors: no words, or a
    /// count out of range.
    pub fn from_stored(generation: i32, hashes: i32, keys: i64, words: Vec<u64>) -> Result<Self, String> {
        let hashes = u32::try_from(hashes).ok().filter(|h| *h > 0);
        let keys = u64::try_from(keys).ok();
        let (Some(hashes), Some(keys)) = (hashes, keys) else {
            return Err(format!("key filter {generation}: {hashes:?} hashes, {keys:?} keys"));
        };
        if words.is_empty() {
            return Err(format!("key filter {generation}: no bits"));
        }
        Ok(Self { generation, keys, bloom: BloomFilter::from_vec(words).hashes(hashes) })
    }

    /// The bit vector as stored: 64-bit words, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bloom.as_slice().iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Adds a key of the generation.
    pub fn insert(&mut self, key: &Uuid) {
        self.bloom.insert_hash(source_hash(key));
        self.keys += 1;
    }

    /// False when the generation cannot hold `key`; true when it may.
    pub fn may_hold(&self, key: &Uuid) -> bool {
        self.bloom.contains_hash(source_hash(key))
    }

    /// Splits `keys` into those the generation may hold (to be looked up) and those
    /// it cannot hold, each in the order given.
    pub fn split(&self, keys: Vec<Uuid>) -> (Vec<Uuid>, Vec<Uuid>) {
        keys.into_iter().partition(|k| self.may_hold(k))
    }

    /// The key generation filtered.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Keys inserted.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Hashes (bits set) per key.
    pub fn hashes(&self) -> u32 {
        self.bloom.num_hashes()
    }
}

/// Writes a slice of a stored bit vector, `bytes` from byte `at` (0-based) on, into
/// `words` (the vector's 64-bit words, little-endian). Errors: a slice that does
/// not start and end on a whole word, or reaches past the vector's end.
pub fn put_words(words: &mut [u64], at: usize, bytes: &[u8]) -> Result<(), String> {
    let whole = at.is_multiple_of(8) && bytes.len().is_multiple_of(8);
    let Some(target) = words.get_mut(at / 8..(at + bytes.len()) / 8).filter(|_| whole) else {
        return Err(format!("key filter bits: {} bytes at byte {at} of {} words", bytes.len(), words.len()));
    };
    for (word, b) in target.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    }
    Ok(())
}

/// The hash fastbloom derives a key's bits from: its first 8 bytes, little-endian.
fn source_hash(key: &Uuid) -> u64 {
    let b = key.as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::TenantId;
    use crate::domain::usage::event_key;

    fn keys(prefix: &str, n: usize) -> Vec<Uuid> {
        let tenant = TenantId(Uuid::nil());
        (0..n).map(|i| event_key(tenant, &format!("{prefix}-{i}"))).collect()
    }

    #[test]
    fn every_key_put_in_is_looked_up_and_about_one_in_a_hundred_others_is() {
        let held = keys("held", 100_000);
        let mut filter = KeyFilter::sized_for(586, 100_000);
        held.iter().for_each(|k| filter.insert(k));
        assert_eq!((filter.keys(), filter.hashes()), (100_000, 7));
        assert_eq!(filter.to_bytes().len(), 120_000, "9.6 bits a key");
        let (looked_up, unseen) = filter.split(held.clone());
        assert_eq!((looked_up.len(), unseen.len()), (100_000, 0), "no false negatives");
        assert_eq!(looked_up, held, "order kept");
        let (false_positives, unseen) = filter.split(keys("new", 100_000));
        assert!((500..1_500).contains(&false_positives.len()), "{} of 100 000", false_positives.len());
        assert_eq!(unseen.len(), 100_000 - false_positives.len());
    }

    #[test]
    fn a_stored_filter_reads_back_the_same() {
        let held = keys("held", 1_000);
        let mut filter = KeyFilter::sized_for(587, 1_000);
        held.iter().for_each(|k| filter.insert(k));
        let bytes = filter.to_bytes();
        let mut words = vec![0; bytes.len() / 8];
        // Slices in any order, as the database may send them.
        for (i, slice) in bytes.chunks(64).enumerate().rev() {
            put_words(&mut words, i * 64, slice).unwrap();
        }
        let back = KeyFilter::from_stored(587, 7, 1_000, words).unwrap();
        assert_eq!((back.generation(), back.keys(), back.hashes()), (587, 1_000, 7));
        assert_eq!(back.to_bytes(), bytes);
        let probe = keys("probe", 10_000);
        assert_eq!(back.split(probe.clone()), filter.split(probe));
    }

    #[test]
    fn a_stored_filter_that_does_not_parse_is_an_error() {
        let error = |r: Result<KeyFilter, String>| r.err().unwrap_or_default();
        assert!(put_words(&mut [0; 4], 0, &[0; 12]).unwrap_err().contains("12 bytes at byte 0"));
        assert!(put_words(&mut [0; 4], 4, &[0; 8]).unwrap_err().contains("at byte 4"));
        assert!(put_words(&mut [0; 4], 24, &[0; 16]).unwrap_err().contains("of 4 words"));
        assert!(error(KeyFilter::from_stored(1, 7, 10, Vec::new())).contains("no bits"));
        assert!(error(KeyFilter::from_stored(1, 0, 10, vec![0; 8])).contains("None hashes"));
        assert!(error(KeyFilter::from_stored(1, 7, -1, vec![0; 8])).contains("None keys"));
    }

    #[test]
    fn an_empty_generation_gets_the_smallest_filter_and_rules_everything_out() {
        let filter = KeyFilter::sized_for(586, 0);
        assert_eq!(filter.to_bytes().len(), 64);
        assert_eq!(filter.split(keys("new", 1_000)).0, Vec::<Uuid>::new());
    }

    /// The stored bits of a filter must not move with a dependency update: a
    /// replica reading a filter laid out otherwise would miss duplicates. When this
    /// fails, change [`FORMAT`] (stored filters of the old one are then rebuilt).
    #[test]
    fn the_bit_layout_is_pinned() {
        let mut filter = KeyFilter::sized_for(1, 0);
        keys("pinned", 3).iter().for_each(|k| filter.insert(k));
        let set: Vec<usize> = filter
            .to_bytes()
            .iter()
            .enumerate()
            .flat_map(|(i, b)| (0..8).filter(move |bit| b & (1 << bit) != 0).map(move |bit| i * 8 + bit))
            .collect();
        let expected = [24, 30, 33, 70, 83, 99, 106, 117, 203, 217, 224, 247, 322, 338, 378, 396, 413, 430, 448, 499];
        assert_eq!(set, expected, "{FORMAT}");
    }
}
