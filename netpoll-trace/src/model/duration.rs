//! Durations as people write them on the command line and in the configuration.

use std::time::Duration;

/// The longest duration anything accepts (a year): beyond it a typo, not a plan, and
/// adding it to a clock reading could overflow.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// "30s", "5m", "500ms", "2h" or plain seconds, up to `MAX`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 5m, 500ms)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("`{s}` must be a positive duration"));
    }
    match Duration::try_from_secs_f64(secs) {
        // Positive as written but 0 once converted: "0s" in disguise.
        Ok(d) if d.is_zero() => Err(format!(
            "`{s}` is shorter than 1 ns (write a positive duration, e.g. 1ms)"
        )),
        Ok(d) if d <= MAX => Ok(d),
        _ => Err(format!("`{s}` is too long (at most 365 days)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        assert!(
            parse_duration("100000000000000000000s")
                .unwrap_err()
                .contains("too long")
        );
        assert!(parse_duration("1e400").is_err());
        assert!(parse_duration("366d").is_err());
        assert!(parse_duration("366h").is_ok());
        assert!(parse_duration("9000h").unwrap_err().contains("too long"));
    }

    #[test]
    fn a_duration_that_rounds_to_nothing_is_refused() {
        // Positive as written, 0 ns once converted: "0s" in disguise.
        let e = parse_duration("0.0000000001s").unwrap_err();
        assert!(e.contains("shorter than 1 ns"), "{e}");
        assert_eq!(parse_duration("0.001ms"), Ok(Duration::from_micros(1)));
    }
}
