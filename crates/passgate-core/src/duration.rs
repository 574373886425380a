//! Human durations for the CLI: `90s`, `15m`, `1h`, `90d` (a bare number is seconds).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration; write it like 90s, 15m, 1h or 90d")]
pub struct DurationError(pub String);

/// Parses a duration into whole seconds.
pub fn parse_seconds(s: &str) -> Result<i64, DurationError> {
    let err = || DurationError(s.to_string());
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: i64 = digits.parse().map_err(|_| err())?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err()),
    };
    n.checked_mul(factor).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("15m"), Ok(900));
        assert_eq!(parse_seconds("1h"), Ok(3600));
        assert_eq!(parse_seconds("120"), Ok(120));
        assert_eq!(parse_seconds("90d"), Ok(90 * 86_400));
        assert_eq!(parse_seconds("0"), Ok(0));
        assert!(parse_seconds("5x").is_err());
        assert!(parse_seconds("m").is_err());
        assert!(parse_seconds("1.5m").is_err());
        assert!(parse_seconds("-5m").is_err());
        assert!(parse_seconds("5 minutes").is_err());
    }
}
