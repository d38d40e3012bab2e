//! Go-style durations (`500ms`, `10s`, `1m30s`, `1.5h`), as `hey -z` and Flagger's fields take
//! them.

use std::time::Duration;

use crate::error::{Error, invalid};

/// Parses a Go duration: one or more `<number><unit>` with units `ns`, `us`, `µs`, `ms`, `s`,
/// `m`, `h`. A bare `0` is zero. Negative durations are refused.
pub fn parse(text: &str) -> Result<Duration, Error> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || {
        invalid(format!(
            "invalid duration {text:?} (examples: 30s, 1m, 1m30s, 500ms)"
        ))
    };
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += n * scale;
        rest = &rest[unit_end..];
    }
    if !nanos.is_finite() || nanos > 1e9 * 86400.0 * 365.0 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("3us"), Ok(Duration::from_micros(3)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in ["", "10", "-1s", "1d", "s", "1m3", "1..2s", "ten seconds"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid duration"), "{bad:?}: {err}");
        }
    }
}
