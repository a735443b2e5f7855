//! Go-style duration strings (`100ms`, `1.5s`, `1h30m`) for command-line flags.
//!
//! The tutorials and Istio's own tooling spell durations the Go way, so the CLI
//! accepts the same syntax instead of inventing a second one.

use std::time::Duration;

/// Nanoseconds per unit, longest suffixes first so `ms` wins over `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // micro sign, as Go accepts it
    ("\u{3bc}s", 1_000), // greek small mu, as Go accepts it
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
];

/// Parses a Go-style duration such as `300ms`, `1.5s` or `2h45m`.
///
/// Negative durations are rejected because every caller uses the value as a
/// timeout or delay; a bare `0` is allowed as Go allows it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let input = s.trim();
    if input.is_empty() {
        return Err("empty duration".to_string());
    }
    if input.starts_with('-') {
        return Err(format!("negative duration {s:?} is not allowed"));
    }
    let body = input.strip_prefix('+').unwrap_or(input);
    if body == "0" {
        return Ok(Duration::ZERO);
    }

    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (whole, frac, after_number) = split_number(rest)
            .ok_or_else(|| format!("invalid duration {s:?}: expected a number"))?;
        let (unit_ns, after_unit) = split_unit(after_number)
            .ok_or_else(|| format!("invalid duration {s:?}: missing or unknown unit"))?;
        let part = component_nanos(whole, frac, unit_ns)
            .ok_or_else(|| format!("invalid duration {s:?}: out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid duration {s:?}: out of range"))?;
        rest = after_unit;
    }

    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("invalid duration {s:?}: out of range"))?;
    // The remainder is below one second, so it always fits in u32.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// Splits a leading decimal number into its integer digits, fraction digits and
/// the remaining input; Go allows `.5` and `5.` so either side may be empty.
fn split_number(s: &str) -> Option<(&str, &str, &str)> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (whole, rest) = s.split_at(int_len);
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(after_dot) => {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            after_dot.split_at(frac_len)
        }
        None => ("", rest),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    Some((whole, frac, rest))
}

/// Matches the unit at the start of `s`, returning its size and the rest.
fn split_unit(s: &str) -> Option<(u128, &str)> {
    // Prefer the longest matching suffix so `ms` is not read as `m` + `s`.
    UNITS
        .iter()
        .filter(|(name, _)| s.starts_with(name))
        .max_by_key(|(name, _)| name.len())
        .map(|(name, ns)| (*ns, &s[name.len()..]))
}

/// Converts `whole.frac` of a unit into nanoseconds, truncating below 1ns.
fn component_nanos(whole: &str, frac: &str, unit_ns: u128) -> Option<u128> {
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole_value.checked_mul(unit_ns)?;
    // Digits past nanosecond precision cannot change the result, and capping
    // them keeps the scale factor from overflowing.
    let frac = &frac[..frac.len().min(30)];
    if !frac.is_empty() {
        let frac_value: u128 = frac.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        nanos = nanos.checked_add(frac_value.checked_mul(unit_ns)? / scale)?;
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn parses_simple_units() {
        assert_eq!(parse_duration("100ms"), Ok(ms(100)));
        assert_eq!(parse_duration("2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("15ns"), Ok(Duration::from_nanos(15)));
        assert_eq!(parse_duration("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse_duration("7μs"), Ok(Duration::from_micros(7)));
    }

    #[test]
    fn parses_decimals_and_combinations() {
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1.s"), Ok(ms(1000)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2h45m10.5s"), Ok(ms(9_910_500)));
        assert_eq!(parse_duration("1m500ms"), Ok(ms(60_500)));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse_duration("+1s"), Ok(ms(1000)));
    }

    #[test]
    fn accepts_bare_zero_only() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "  ", "s", "ms", "1x", "1.5", "abc", "1s2", ".s", "-1s", "1 s", "1d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_overflow() {
        assert!(parse_duration("99999999999999999999999999999999999999999h").is_err());
        assert!(parse_duration("9999999999999999999999h").is_err());
    }
}
