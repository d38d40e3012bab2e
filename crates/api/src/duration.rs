//! Durations as users write them (`30s`, `1m`, `1h30m`, `1.5h`, `500ms`): Go's
//! `time.ParseDuration` grammar, which Flagger's fields, `hey -z` and the load tester's
//! parameters use. It is the one duration parser of the workspace: the API's fields, the
//! controller's flags, the load generator and the developer tasks all read durations here.
//!
//! The grammar: an optional sign, then one or more decimal numbers (`1`, `1.5`, `.5`, `5.`),
//! each followed by a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`); units may come in any order
//! and repeat (they add up). `0` alone needs no unit. The longest duration is Go's,
//! 2562047h47m16.854775807s; digits past the nanosecond are dropped. A negative duration is
//! read and refused ([`DurationError::Negative`]): no field takes one.
//!
//! Neither `jiff`'s friendly format (it also takes `1 hour`, `1h 30m` and ISO 8601 `PT1H`, and
//! refuses `1.5h30m` and `.5s`) nor `humantime` (no fractions) is this grammar, and the crate
//! that ports Go's function has not changed since 2021, so the grammar is written out here.

use std::time::Duration;

/// A duration string that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty string.
    #[error("is empty; write a duration such as 30s, 1m or 1h30m")]
    Empty,
    /// Not a duration at all.
    #[error("{0:?} is not a duration; write one such as 30s, 1m or 1h30m")]
    Invalid(String),
    /// A number without a unit (`10`, `1m30`).
    #[error(
        "{0:?} is not a duration; write one such as 30s, 1m or 1h30m (a number needs a unit: ns, us, ms, s, m or h)"
    )]
    MissingUnit(String),
    /// A unit Go does not know (`1d`, `5sec`).
    #[error(
        "{value:?} is not a duration; write one such as 30s, 1m or 1h30m ({unit:?} is not a unit: use ns, us, ms, s, m or h)"
    )]
    UnknownUnit {
        /// The duration as written.
        value: String,
        /// The unknown unit.
        unit: String,
    },
    /// Longer than Go's longest duration.
    #[error("{0:?} is too long; the longest duration is 2562047h47m16.854775807s")]
    TooLong(String),
    /// Negative durations make no sense for intervals and timeouts.
    #[error("{0:?} is negative; durations must be positive")]
    Negative(String),
}

/// The longest duration Go represents, in nanoseconds.
const MAX_NANOS: u64 = i64::MAX as u64;

/// Nanoseconds per unit.
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // Both the micro sign (U+00B5) and the Greek small letter mu (U+03BC), as Go.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a duration such as `30s`, `1m`, `1h30m`, `1.5h` or `250ms` (Go's grammar; see the
/// module). Surrounding white space is ignored.
///
/// A bare number without a unit is refused (Go refuses it too, except `0`).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let text = s.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = || DurationError::Invalid(s.to_string());
    let too_long = || DurationError::TooLong(s.to_string());
    let (negative, mut rest) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        // The whole part.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut whole: u64 = 0;
        for b in rest[..int_len].bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u64::from(b - b'0')))
                .filter(|w| *w <= MAX_NANOS)
                .ok_or_else(too_long)?;
        }
        rest = &rest[int_len..];
        // The fraction: digits past what 64 bits hold are dropped.
        let (mut frac, mut scale, mut frac_len) = (0u64, 1f64, 0usize);
        if let Some(after) = rest.strip_prefix('.') {
            frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflowed = false;
            for b in after[..frac_len].bytes() {
                match frac
                    .checked_mul(10)
                    .and_then(|f| f.checked_add(u64::from(b - b'0')))
                {
                    Some(f) if !overflowed && f <= MAX_NANOS => {
                        frac = f;
                        scale *= 10.0;
                    }
                    _ => overflowed = true,
                }
            }
            rest = &after[frac_len..];
        } else if int_len == 0 {
            return Err(invalid());
        }
        if int_len == 0 && frac_len == 0 {
            // `.` alone, or a sign or unit where a number belongs.
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(s.to_string()));
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let per = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            value: s.to_string(),
            unit: unit.to_string(),
        })?;
        let mut nanos = whole
            .checked_mul(per)
            .filter(|n| *n <= MAX_NANOS)
            .ok_or_else(too_long)?;
        if frac > 0 {
            // Go's rounding: the fraction's nanoseconds, truncated.
            nanos = nanos
                .checked_add((frac as f64 * (per as f64 / scale)) as u64)
                .filter(|n| *n <= MAX_NANOS)
                .ok_or_else(too_long)?;
        }
        total = total
            .checked_add(nanos)
            .filter(|n| *n <= MAX_NANOS)
            .ok_or_else(too_long)?;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(s.to_string()));
    }
    Ok(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nanos(s: &str) -> u128 {
        parse_duration(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .as_nanos()
    }

    #[test]
    fn parses_go_style_durations() {
        for (s, secs) in [
            ("30s", 30.0),
            ("1m", 60.0),
            ("1h30m", 5400.0),
            ("1h30m10s", 5410.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("300ms", 0.3),
            ("0", 0.0),
            ("-0", 0.0),
            ("+0", 0.0),
            ("0s", 0.0),
            ("-0s", 0.0),
            ("+5s", 5.0),
            ("2m30s", 150.0),
            (" 30s ", 30.0),
        ] {
            assert_eq!(parse_duration(s).unwrap().as_secs_f64(), secs, "{s}");
        }
    }

    #[test]
    fn every_unit_and_every_way_of_writing_a_number() {
        assert_eq!(nanos("7ns"), 7);
        assert_eq!(nanos("7us"), 7_000);
        assert_eq!(nanos("7\u{b5}s"), 7_000, "micro sign");
        assert_eq!(nanos("7\u{3bc}s"), 7_000, "Greek mu");
        assert_eq!(nanos("7ms"), 7_000_000);
        assert_eq!(nanos("7s"), 7_000_000_000);
        assert_eq!(nanos("7m"), 420_000_000_000);
        assert_eq!(nanos("7h"), 25_200_000_000_000);
        assert_eq!(nanos(".5s"), 500_000_000);
        assert_eq!(nanos("5.s"), 5_000_000_000);
        assert_eq!(nanos("5.250s"), 5_250_000_000);
        assert_eq!(nanos("1.004s"), 1_004_000_000);
        // A fraction on any unit, units in any order, repeated units adding up.
        assert_eq!(nanos("1.5h30m"), nanos("2h"));
        assert_eq!(nanos("10.5s4m"), nanos("4m10.5s"));
        assert_eq!(nanos("1s1s"), nanos("2s"));
        assert_eq!(nanos("1h2m3s4ms5us6ns"), 3_723_004_005_006);
        // Digits past the nanosecond are dropped.
        assert_eq!(nanos("1.0000000009s"), 1_000_000_000);
        assert_eq!(nanos("0.3333333333333333333h"), 1_200_000_000_000);
        // The longest duration, written three ways.
        let max = u128::from(MAX_NANOS);
        assert_eq!(nanos("9223372036854775807ns"), max);
        assert_eq!(nanos("9223372036854775.807us"), max);
        assert_eq!(nanos("2562047h47m16.854775807s"), max);
    }

    #[test]
    fn refuses_bad_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("  "), Err(DurationError::Empty));
        for bad in ["abc", "-", "+", ".", "s", ".s", "-.s", "PT1H", "- 1s"] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::Invalid(bad.into())),
                "{bad:?}"
            );
        }
        for bad in ["10", "1m30", "1.5"] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::MissingUnit(bad.into())),
                "{bad:?}"
            );
        }
        for (bad, unit) in [
            ("1x", "x"),
            ("1d", "d"),
            ("1hour", "hour"),
            ("1 h", " h"),
            ("1h 30m", "h "),
            ("1H", "H"),
            ("1,5s", ","),
            ("1s-1s", "s-"),
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::UnknownUnit {
                    value: bad.into(),
                    unit: unit.into()
                }),
                "{bad:?}"
            );
        }
        for bad in [
            "9223372036854775808ns",
            "9223372036854775.808us",
            "2562048h",
            "2562047h48m",
            "99999999999999999999s",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::TooLong(bad.into())),
                "{bad:?}"
            );
        }
        for bad in ["-1m", "-1s", "-.5s", "-1ns"] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::Negative(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let msg = |s: &str| parse_duration(s).unwrap_err().to_string();
        assert_eq!(
            msg("10"),
            "\"10\" is not a duration; write one such as 30s, 1m or 1h30m (a number needs a unit: ns, us, ms, s, m or h)"
        );
        assert_eq!(
            msg("1d"),
            "\"1d\" is not a duration; write one such as 30s, 1m or 1h30m (\"d\" is not a unit: use ns, us, ms, s, m or h)"
        );
        assert_eq!(
            msg("3000000h"),
            "\"3000000h\" is too long; the longest duration is 2562047h47m16.854775807s"
        );
        assert_eq!(
            msg("-1s"),
            "\"-1s\" is negative; durations must be positive"
        );
    }

    /// A duration written the way Go prints one (`1h2m3.5s`).
    fn go_string(d: Duration) -> String {
        let n = d.as_nanos();
        let (h, m) = (n / 3_600_000_000_000, n / 60_000_000_000 % 60);
        let (s, frac) = (n / 1_000_000_000 % 60, n % 1_000_000_000);
        let mut out = String::new();
        if h > 0 {
            out += &format!("{h}h");
        }
        if h > 0 || m > 0 {
            out += &format!("{m}m");
        }
        let frac = format!("{frac:09}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            out += &format!("{s}s");
        } else {
            out += &format!("{s}.{frac}s");
        }
        out
    }

    proptest! {
        /// What Go prints reads back as the same duration.
        #[test]
        fn a_printed_duration_reads_back(n in 0u64..=MAX_NANOS) {
            let d = Duration::from_nanos(n);
            prop_assert_eq!(parse_duration(&go_string(d)), Ok(d));
        }

        /// A sum of parts reads as the sum, in any unit order.
        #[test]
        fn parts_add_up(parts in proptest::collection::vec((0u64..100_000, 0usize..6), 1..6)) {
            const UNITS: [(&str, u64); 6] = [
                ("ns", 1),
                ("us", 1_000),
                ("ms", 1_000_000),
                ("s", 1_000_000_000),
                ("m", 60_000_000_000),
                ("h", 3_600_000_000_000),
            ];
            let text: String = parts.iter().map(|(v, u)| format!("{v}{}", UNITS[*u].0)).collect();
            let sum: u64 = parts.iter().map(|(v, u)| v * UNITS[*u].1).sum();
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_nanos(sum)));
        }

        /// Nothing panics.
        #[test]
        fn any_string_is_read_or_refused(s in "[-+0-9.a-z\u{b5} ]{0,12}") {
            let _ = parse_duration(&s);
        }
    }
}
