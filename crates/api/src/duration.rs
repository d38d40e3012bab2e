//! Durations as users write them (`30s`, `1m`, `1h30m`, `500ms`), parsed with jiff's friendly
//! duration format, which accepts every Go `time.ParseDuration` string Flagger users write.

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
    /// Negative durations make no sense for intervals and timeouts.
    #[error("{0:?} is negative; durations must be positive")]
    Negative(String),
}

/// Parses a duration such as `30s`, `1m`, `1h30m`, `1.5h` or `250ms`.
///
/// A bare number without a unit is refused (Go refuses it too, except `0`).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DurationError::Empty);
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(DurationError::Invalid(s.to_string()));
    }
    let d: jiff::SignedDuration = t
        .parse()
        .map_err(|_| DurationError::Invalid(s.to_string()))?;
    if d.is_negative() {
        return Err(DurationError::Negative(s.to_string()));
    }
    Ok(d.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        for (s, secs) in [
            ("30s", 30.0),
            ("1m", 60.0),
            ("1h30m", 5400.0),
            ("1h30m10s", 5410.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("0", 0.0),
            ("2m30s", 150.0),
        ] {
            assert_eq!(parse_duration(s).unwrap().as_secs_f64(), secs, "{s}");
        }
    }

    #[test]
    fn refuses_bad_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("  "), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("abc"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("1x"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_duration("-1m"),
            Err(DurationError::Negative(_))
        ));
    }
}
