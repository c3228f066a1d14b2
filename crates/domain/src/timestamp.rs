//! RFC 3339 timestamps as they arrive in JSON: exactly the `date-time`
//! production of RFC 3339 section 5.6 (what JSON Schema's `date-time` format
//! means), no more (chrono alone also reads a space for the `T`, and a leap
//! second at any minute) and no less.

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};
use serde_json::Value;

use crate::error::ValidationError;

/// Fewest and most years a client's timestamp may be written with: any
/// offset then keeps its UTC form within RFC 3339's four-digit years, which
/// is how it is stored and answered.
pub const MIN_CLIENT_YEAR: i32 = 1;
pub const MAX_CLIENT_YEAR: i32 = 9998;

/// Parses `full-date "T" full-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`,
/// `T` and `Z` in either case, a real calendar date, hours 00–23, minutes
/// 00–59, an offset within ±23:59, and a leap second (`:60`) only where the
/// UTC time is 23:59.
pub(crate) fn parse_rfc3339(raw: &str) -> Option<DateTime<FixedOffset>> {
    let b = raw.as_bytes();
    let digits = |at: usize, n: usize| {
        b.get(at..at + n)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let shape = digits(0, 4)
        && b.get(4) == Some(&b'-')
        && digits(5, 2)
        && b.get(7) == Some(&b'-')
        && digits(8, 2)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11, 2)
        && b.get(13) == Some(&b':')
        && digits(14, 2)
        && b.get(16) == Some(&b':')
        && digits(17, 2);
    if !shape {
        return None;
    }
    let mut zone = 19;
    if b.get(zone) == Some(&b'.') {
        zone += 1;
        let first = zone;
        while b.get(zone).is_some_and(u8::is_ascii_digit) {
            zone += 1;
        }
        if zone == first {
            return None;
        }
    }
    let two = |high: u8, low: u8| (high - b'0') * 10 + (low - b'0');
    let zone_ok = match &b[zone..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
                && two(*h1, *h2) <= 23
                && two(*m1, *m2) <= 59
        }
        _ => false,
    };
    if !zone_ok {
        return None;
    }
    // The shape is RFC 3339's; chrono checks the calendar and the clock.
    let parsed = DateTime::parse_from_rfc3339(raw).ok()?;
    let utc = parsed.naive_utc();
    if &b[17..19] == b"60" && (utc.hour(), utc.minute()) != (23, 59) {
        return None;
    }
    Some(parsed)
}

/// A timestamp a client sent as `field`: RFC 3339 ([`parse_rfc3339`]),
/// written with a year from [`MIN_CLIENT_YEAR`] to [`MAX_CLIENT_YEAR`];
/// kept as the UTC instant.
pub(crate) fn client_timestamp(
    value: &Value,
    field: &str,
) -> Result<DateTime<Utc>, ValidationError> {
    value
        .as_str()
        .and_then(parse_rfc3339)
        .filter(|t| (MIN_CLIENT_YEAR..=MAX_CLIENT_YEAR).contains(&t.year()))
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            ValidationError::new(
                field,
                format!(
                    "{field} must be an RFC 3339 timestamp with a year from 0001 to 9998, \
                     such as 2026-11-22T10:00:00Z"
                ),
            )
        })
}

/// A timestamp the service wrote itself (UTC, any four-digit year).
pub(crate) fn stored_timestamp(
    value: &Value,
    field: &str,
) -> Result<DateTime<Utc>, ValidationError> {
    value
        .as_str()
        .and_then(parse_rfc3339)
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            ValidationError::new(
                field,
                format!("{field} must be an RFC 3339 timestamp such as 2026-11-22T10:00:00Z"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn utc(raw: &str) -> Option<String> {
        parse_rfc3339(raw).map(|t| t.with_timezone(&Utc).to_rfc3339())
    }

    #[test]
    fn every_rfc_3339_date_time_is_read() {
        for (raw, expected) in [
            ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00+00:00"),
            ("2026-11-22t10:00:00z", "2026-11-22T10:00:00+00:00"),
            ("2026-11-22T12:00:00+02:00", "2026-11-22T10:00:00+00:00"),
            ("2020-01-01T00:00:00-00:19", "2020-01-01T00:19:00+00:00"),
            ("2020-01-01T00:00:00-00:00", "2020-01-01T00:00:00+00:00"),
            ("2020-01-01T00:00:00+23:59", "2019-12-31T00:01:00+00:00"),
            ("2020-01-01T00:00:00.5Z", "2020-01-01T00:00:00.500+00:00"),
            (
                "2020-01-01T00:00:00.123456789123Z",
                "2020-01-01T00:00:00.123456789+00:00",
            ),
            ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00+00:00"),
            ("0000-01-01T00:00:00-00:19", "0000-01-01T00:19:00+00:00"),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:60+00:00"),
            ("2016-12-31T15:59:60-08:00", "2016-12-31T23:59:60+00:00"),
            (
                "2017-01-01T00:59:60.5+01:00",
                "2016-12-31T23:59:60.500+00:00",
            ),
        ] {
            assert_eq!(utc(raw).as_deref(), Some(expected), "{raw}");
        }
    }

    #[test]
    fn what_rfc_3339_does_not_allow_is_refused() {
        for raw in [
            "",
            "yesterday",
            "2026-11-22 10:00:00Z",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00Z",
            "2026-11-22T10:00:00.Z",
            "2026-11-22T10:00:00+0200",
            "2026-11-22T10:00:00+02",
            "2026-11-22T10:00:00+24:00",
            "2026-11-22T10:00:00+02:60",
            "2026-11-22T24:00:00Z",
            "2026-11-22T10:60:00Z",
            "2026-11-22T10:59:60Z",
            "2016-12-31T23:59:60+01:00",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "20260-11-22T10:00:00Z",
            "+2026-11-22T10:00:00Z",
            "2026-11-22T10:00:00Z ",
            "2026-11-22T10:00:00Z\n",
            "２026-11-22T10:00:00Z",
            "2026-11-22T10:00:00.٣Z",
        ] {
            assert_eq!(utc(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn a_client_timestamp_needs_a_year_from_0001_to_9998() {
        let field = "last_date";
        for raw in ["0001-01-01T00:00:00+23:59", "9998-12-31T23:59:59-23:59"] {
            assert!(client_timestamp(&Value::from(raw), field).is_ok(), "{raw}");
        }
        for raw in [
            "0000-01-01T00:00:00+00:19",
            "9999-12-31T23:59:59-00:19",
            "9999-01-01T00:00:00Z",
        ] {
            let err = client_timestamp(&Value::from(raw), field).unwrap_err();
            assert_eq!(err.field, field);
            assert_eq!(
                err.message,
                "last_date must be an RFC 3339 timestamp with a year from 0001 to 9998, \
                 such as 2026-11-22T10:00:00Z"
            );
        }
        assert!(client_timestamp(&Value::from(20261122), field).is_err());
        // What the service stored may have moved into year 0000.
        let stored = Utc.with_ymd_and_hms(0, 12, 31, 0, 1, 0).unwrap();
        let json = serde_json::to_value(stored).unwrap();
        assert_eq!(stored_timestamp(&json, field), Ok(stored));
    }

    proptest! {
        /// Every instant of four-digit years reads back from how it is
        /// written (what the service stores), to the nanosecond.
        #[test]
        fn a_stored_instant_reads_back(
            secs in -62_167_219_200i64..253_402_300_800, nanos in 0u32..1_000_000_000,
        ) {
            let at = DateTime::from_timestamp(secs, nanos).unwrap();
            let json = serde_json::to_value(at).unwrap();
            prop_assert_eq!(stored_timestamp(&json, "t"), Ok(at));
        }

        /// Any offset of a client's timestamp keeps its UTC form storable.
        #[test]
        fn a_client_timestamp_is_storable_whatever_its_offset(
            year in MIN_CLIENT_YEAR..=MAX_CLIENT_YEAR,
            day in 0u32..365,
            secs in 0u32..86_400,
            offset in -(23 * 3600 + 59 * 60)..=(23 * 3600 + 59 * 60),
        ) {
            let offset = offset / 60 * 60;
            let local = chrono::NaiveDate::from_yo_opt(year, day + 1).unwrap()
                .and_hms_opt(secs / 3600, secs / 60 % 60, secs % 60).unwrap();
            let zone = FixedOffset::east_opt(offset).unwrap();
            let raw = zone.from_local_datetime(&local).unwrap().to_rfc3339();
            let at = client_timestamp(&Value::from(raw.as_str()), "t").unwrap();
            let json = serde_json::to_value(at).unwrap();
            prop_assert_eq!(stored_timestamp(&json, "t"), Ok(at), "{}", raw);
        }
    }
}
