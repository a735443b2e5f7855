//! Go-style durations (`500ms`, `1.5s`, `1h30m`) as Istio's protobuf Durations accept them.

use std::time::Duration;

/// Parses Go `time.ParseDuration` syntax (negative durations are rejected).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(format!("negative duration `{s}`"));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("invalid duration `{s}`: expected a number"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration `{s}`"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "invalid duration `{s}`: missing unit (e.g. `5s`, `500ms`)"
                ))
            }
            u => return Err(format!("invalid duration `{s}`: unknown unit `{u}`")),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(format!("duration `{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Validates a duration the way Istio's webhook does: at least 1 ms and a whole number of ms.
pub fn parse_istio_duration(s: &str) -> Result<Duration, String> {
    let d = parse_go_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err(format!("duration `{s}` must be at least 1ms"));
    }
    // Float parsing leaves sub-nanosecond noise; compare in microseconds rounded.
    let micros = (d.as_secs_f64() * 1e6).round() as u128;
    if !micros.is_multiple_of(1000) {
        return Err(format!(
            "duration `{s}` must be a whole number of milliseconds"
        ));
    }
    Ok(Duration::from_millis((micros / 1000) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5 s").is_err());
        assert!(parse_go_duration("abc").is_err());
        assert!(parse_go_duration("-1s").is_err());
    }

    #[test]
    fn istio_rules() {
        assert!(parse_istio_duration("0s").is_err());
        assert!(parse_istio_duration("1.0005s").is_err());
        assert_eq!(parse_istio_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_istio_duration("1ms"), Ok(Duration::from_millis(1)));
    }
}
