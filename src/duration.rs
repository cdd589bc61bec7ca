//! Durations on the command line, one style for every flag: humantime's
//! (`150ms`, `2s`, `2.5s`, `1m30s`, `1h`). A bare number other than `0`
//! is refused, since it would be ambiguous. The older flags that named
//! their unit (`--heartbeat-ms 50`, `--retry-secs 60`) stay as hidden
//! aliases and take a whole number in that unit ([`millis`], [`secs`]).

use std::time::Duration;

/// `150ms`, `2s`, `2.5s`, `1m30s`; `0` alone is zero.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.parse::<f64>().is_ok() {
        return if t.parse::<f64>() == Ok(0.0) {
            Ok(Duration::ZERO)
        } else {
            Err(format!("{text:?} has no unit: write {t}s or {t}ms"))
        };
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{text:?} is not a duration like 150ms, 2s or 1m30s ({e})"))
}

/// A whole number of milliseconds (the old `--…-ms` flags).
pub fn millis(text: &str) -> Result<Duration, String> {
    whole(text, "milliseconds").map(Duration::from_millis)
}

/// A whole number of seconds (the old `--…-secs` flags).
pub fn secs(text: &str) -> Result<Duration, String> {
    whole(text, "seconds").map(Duration::from_secs)
}

fn whole(text: &str, unit: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| format!("{text:?} is not a whole number of {unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humantime_style_with_units() {
        assert_eq!(parse("150ms"), Ok(Duration::from_millis(150)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn a_bare_number_or_junk_is_refused_with_a_hint() {
        let e = parse("10").unwrap_err();
        assert!(e.contains("has no unit: write 10s or 10ms"), "{e}");
        assert!(parse("fast").is_err());
        assert!(parse("-1s").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn the_old_spellings_take_whole_numbers() {
        assert_eq!(millis("50"), Ok(Duration::from_millis(50)));
        assert_eq!(secs("60"), Ok(Duration::from_secs(60)));
        assert!(millis("50ms").is_err());
        assert!(secs("1.5").is_err());
    }
}
