//! Durations on the command line and in messages: `90s`, `10m`, `1h`.

use std::time::Duration;

/// Parses a number with a unit: `500ms`, `90s`, `10m`, `2h`.
///
/// A bare number is refused rather than guessed at, since `--timeout 5` could mean
/// seconds or minutes.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("'{text}' is not a duration: use a number with a unit, e.g. 90s, 10m or 1h"));
    }
    let n: u64 = number.parse().map_err(|_| format!("'{text}' is too large"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "" => return Err(format!("'{text}' has no unit: write {n}s, {n}m or {n}h")),
        _ => return Err(format!("'{text}' has an unknown unit '{unit}': use ms, s, m or h")),
    };
    seconds.map(Duration::from_secs).ok_or_else(|| format!("'{text}' is too large"))
}

/// Formats a duration for people: `59m 58s`, `2h 0m`, `12s`.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_it_would_have_to_guess() {
        assert!(parse("5").unwrap_err().contains("no unit"));
        assert!(parse("5d").unwrap_err().contains("unknown unit"));
        assert!(parse("m").unwrap_err().contains("not a duration"));
        assert!(parse("").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("99999999999999999999s").unwrap_err().contains("too large"));
        assert!(parse("999999999999999999h").unwrap_err().contains("too large"));
    }

    #[test]
    fn human_shows_the_two_largest_units() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(3598)), "59m 58s");
        assert_eq!(human(Duration::from_secs(7201)), "2h 0m");
    }
}
