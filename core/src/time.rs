//! Time as stores keep it: microsecond timestamps for records, millisecond deadlines for TTLs.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::{Error, Result};

/// The current time, truncated to microseconds: the finest precision every backend stores, so
/// a value reads back exactly as it was written.
#[must_use]
pub fn now() -> DateTime<Utc> {
    truncate(Utc::now())
}

/// Truncates a timestamp to microseconds, whatever its year (chrono's `duration_trunc` gives
/// up past 2262, when nanoseconds overflow 64 bits, and left such times untruncated).
#[must_use]
pub fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Checks a timestamp given by a caller: years 1 to 9999, the range every backend stores to
/// the microsecond (PostgreSQL's `timestamptz` ends earlier in the past than chrono does).
pub fn check_timestamp(what: &'static str, at: DateTime<Utc>) -> Result<()> {
    use chrono::Datelike as _;
    if !(1..=9999).contains(&at.year()) {
        return Err(Error::invalid(
            what,
            format!("{at} is outside the years 1 to 9999"),
        ));
    }
    Ok(())
}

/// The current time in milliseconds since the Unix epoch.
#[must_use]
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// The current time in Unix seconds with its milliseconds: the clock records' expiries
/// ([`crate::table::TableSchemaBuilder::ttl`]) are compared with, the same as kv's TTLs.
#[must_use]
#[allow(clippy::cast_precision_loss)] // Milliseconds since 1970 stay far below 2^53.
pub fn now_seconds() -> f64 {
    now_millis() as f64 / 1000.0
}

/// The deadline, in Unix milliseconds, of an item written now with `ttl`; `None` never expires.
///
/// A zero TTL is refused: it would store an item that can never be read.
pub fn expiry_millis(ttl: Option<Duration>) -> Result<Option<i64>> {
    let Some(ttl) = ttl else { return Ok(None) };
    if ttl.is_zero() {
        return Err(Error::invalid("ttl", "must be greater than zero"));
    }
    let millis = i64::try_from(ttl.as_millis())
        .ok()
        .and_then(|ms| now_millis().checked_add(ms.max(1)))
        .ok_or_else(|| Error::invalid("ttl", "is too long"))?;
    Ok(Some(millis))
}

/// The deadline (Unix ms) at or before which a purge at `now` may delete an item, when the
/// store keeps expired items for `keep_expired`.
#[must_use]
pub fn purge_horizon(now: i64, keep_expired: Duration) -> i64 {
    let keep = i64::try_from(keep_expired.as_millis()).unwrap_or(i64::MAX);
    now.saturating_sub(keep)
}

/// Parses a whole number of seconds given as a URL parameter (`keep_expired=3600`).
pub fn parse_seconds(what: &'static str, text: &str) -> Result<Duration> {
    text.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| Error::invalid(what, format!("{text:?} is not a whole number of seconds")))
}

/// True if an item with this deadline is still alive at `now` (milliseconds).
#[must_use]
pub fn is_live(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|at| at > now)
}

/// Converts stored microseconds since the epoch back to a timestamp.
pub fn from_micros(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::invalid("timestamp", format!("{micros} is out of range")))
}

/// True if something created at `created_at` is younger than `max_age` (always, without one).
#[must_use]
pub fn is_younger_than(created_at: DateTime<Utc>, max_age: Option<Duration>) -> bool {
    let Some(max_age) = max_age else { return true };
    match TimeDelta::from_std(max_age) {
        Ok(max_age) => Utc::now().signed_duration_since(created_at) < max_age,
        Err(_) => true,
    }
}
