//! The previous key generation's Bloom filter (issue 15, part 5;
//! [`crate::domain::usage_filter`]): built once by the worker's upkeep when that
//! generation is frozen, loaded by each API replica, and used by a batch's claim to
//! skip the lookup of ids the previous generation cannot hold.
//!
//! Exactness: a generation takes keys only while it is current and, within the next
//! one's first day, keys claimed in both (migration 000026). Those are in the next
//! generation too, where a retry meets them, so the filter needs only the keys
//! written while its generation was current. It is built two days into the next
//! generation (the overlap day, then a day's margin for a worker whose clock runs
//! ahead of the API's), and a claim uses it only outside the overlap day and only
//! for the generation right before its own. Until a filter exists every new id is
//! looked up, as before. (The test clock may be moved back into a generation whose
//! successor's filter exists; ids claimed then are not in that filter. Production
//! clocks do not run back by days.)

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use crate::db::in_transaction;
use crate::db::usage_key_filters as db;
use crate::db::usage_partitions::lead;
use crate::domain::usage::{KEY_GENERATION_SECONDS, KeyGeneration};
use crate::domain::usage_filter::{FORMAT, KeyFilter, put_words};
use crate::error::{ServiceError, ServiceResult};

/// Seconds into a generation before the previous one's filter is built: its
/// overlap day and a day's margin.
const BUILD_AFTER_SECONDS: i64 = 2 * 86_400;
/// Pages of the generation's partition read per statement (32 MiB, about 600 000
/// keys).
const PAGES_PER_READ: i64 = 4_096;
/// Keys a full page of `usage_event_keys` holds (a 48-byte tuple and its 4-byte
/// line pointer in 8 168 bytes): the filter is sized for a full partition, so its
/// keys are read once, without counting them first.
const KEYS_PER_PAGE: i64 = 157;
/// Bytes of a filter's bit vector per row read (4 MiB).
const SLICE_BYTES: i32 = 4 << 20;
/// How long a replica that found no usable filter waits before looking again.
const LOOK_AGAIN: Duration = Duration::from_secs(60);
/// How long the build waits for the upkeep's lock's statements, in milliseconds.
const LOCK_WAIT_MS: u32 = 2_000;

/// A filter built by [`build_due`].
#[derive(Debug, PartialEq, Eq)]
pub struct Built {
    pub generation: i32,
    /// Keys read from the generation's partition.
    pub keys: u64,
    /// Size of the stored bit vector.
    pub bytes: usize,
}

/// Builds and stores the filter of the generation before `now`'s once it is frozen
/// (two days into `now`'s generation), unless one of this release's format is
/// stored already; deletes filters of generations past the window. `None` when
/// there is nothing to build: too early, already built, the generation has no
/// partition of its own, or another replica holds the upkeep's lock. One
/// transaction under that lock: the partition read once, 32 MiB a statement (24 s
/// for 50 000 000 keys on the benchmark's host; memory: three times the filter's
/// 60 MB at the peak, while the statement storing it holds its copies). Errors:
/// database errors.
pub async fn build_due(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> ServiceResult<Option<Built>> {
    let current = KeyGeneration::at(now).current;
    db::forget_before(conn, current - 1).await?;
    if now.timestamp() - i64::from(current) * KEY_GENERATION_SECONDS < BUILD_AFTER_SECONDS {
        return Ok(None);
    }
    let frozen = current - 1;
    if db::is_stored(conn, frozen, FORMAT).await? {
        return Ok(None);
    }
    in_transaction(conn, async |c| -> ServiceResult<Option<Built>> {
        if !lead(c, LOCK_WAIT_MS).await? || db::is_stored(c, frozen, FORMAT).await? {
            return Ok(None);
        }
        let Some(blocks) = db::partition_blocks(c, frozen).await? else { return Ok(None) };
        let mut filter = KeyFilter::sized_for(frozen, u64::try_from(blocks * KEYS_PER_PAGE).unwrap_or(0));
        let mut from = 0;
        while from < blocks {
            let keys = db::keys_on_pages(c, frozen, from, from + PAGES_PER_READ).await?;
            keys.iter().for_each(|k| filter.insert(k));
            from += PAGES_PER_READ;
        }
        let bits = filter.to_bytes();
        let built = Built { generation: frozen, keys: filter.keys(), bytes: bits.len() };
        let (hashes, keys) = (stored_int(filter.hashes())?, stored_int(filter.keys())?);
        // Freed before the statement copies the bits: two copies at the peak, not three.
        drop(filter);
        db::store(c, frozen, FORMAT, hashes, keys, &bits, now).await?;
        Ok(Some(built))
    })
    .await
}

fn stored_int<T: TryFrom<u64>>(n: impl Into<u64>) -> ServiceResult<T> {
    let n = n.into();
    T::try_from(n).map_err(|_| ServiceError::Internal(format!("key filter count {n} out of the column's range")))
}

/// The filters an API replica has loaded: shared by its HTTP workers, holding at
/// most one (about 60 MB at 50 000 000 keys).
#[derive(Default)]
pub struct KeyFilters {
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    loaded: Option<Arc<KeyFilter>>,
    /// The generation last looked for and when, while none was found.
    looked: Option<(i32, Instant)>,
}

impl KeyFilters {
    /// The filter a claim at `at` may use: that of generation `at.current - 1`,
    /// outside the overlap day. Loaded on first need through `conn`, 4 MiB a row
    /// (the replica's other batches meanwhile look every id up); when none of this
    /// release's format is stored, looked for again after a minute. A stored filter
    /// that does not parse is logged as an error and not used (every id is then
    /// looked up). Errors: database errors.
    pub async fn for_claim(
        &self,
        conn: &mut AsyncPgConnection,
        at: KeyGeneration,
    ) -> ServiceResult<Option<Arc<KeyFilter>>> {
        if at.overlap {
            return Ok(None);
        }
        let wanted = at.current - 1;
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(f) = &cache.loaded {
                if f.generation() == wanted {
                    return Ok(Some(f.clone()));
                }
                cache.loaded = None;
            }
            if cache.looked.is_some_and(|(g, when)| g == wanted && when.elapsed() < LOOK_AGAIN) {
                return Ok(None);
            }
            cache.looked = Some((wanted, Instant::now()));
        }
        let mut words = Vec::new();
        let mut stored = None;
        let mut read = Ok(0);
        db::stream_filter(conn, wanted, FORMAT, SLICE_BYTES, |slice| {
            if stored.is_none() {
                words = vec![0; usize::try_from(slice.length / 8).unwrap_or(0)];
            }
            stored = Some((slice.hashes, slice.keys, slice.length));
            let at = usize::try_from(slice.at - 1).unwrap_or(usize::MAX);
            if let Ok(n) = read {
                read = put_words(&mut words, at, &slice.bits).map(|()| n + slice.bits.len());
            }
        })
        .await?;
        let Some((hashes, keys, length)) = stored else { return Ok(None) };
        let parsed = read
            .and_then(|n| match i64::try_from(n) {
                Ok(n) if n == length => Ok(()),
                _ => Err(format!("{n} bytes read of {length}")),
            })
            .and_then(|()| KeyFilter::from_stored(wanted, hashes, keys, words));
        // Stored bits that do not parse are an error in the log and the filter is
        // not used: every id is looked up, as without one.
        let filter = match parsed {
            Ok(filter) => filter,
            Err(e) => {
                tracing::error!(generation = wanted, error = %e, "usage key filter does not parse; not used");
                return Ok(None);
            }
        };
        tracing::info!(generation = wanted, keys = filter.keys(), bytes = length, "usage key filter loaded");
        let filter = Arc::new(filter);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.loaded = Some(filter.clone());
        cache.looked = None;
        Ok(Some(filter))
    }
}
