//! The Prometheus duration grammar, the one every yunwei file and API uses.

use regex::Regex;

/// Parses a Prometheus duration (`1h30m`, `50m`, `8000s`, `1ms`, `0`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    // Compiled once: rule files, unit tests and `humanizeDuration`-style template calls parse
    // durations often, and compiling the pattern costs far more than matching it.
    static DURATION: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(
            r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$",
        )
        .expect("the duration pattern is valid")
    });
    let caps = DURATION.captures(s)?;
    if s.is_empty() {
        return None;
    }
    const UNITS: [i64; 7] = [
        365 * 86_400_000,
        7 * 86_400_000,
        86_400_000,
        3_600_000,
        60_000,
        1000,
        1,
    ];
    let mut total: i64 = 0;
    for (i, unit) in UNITS.iter().enumerate() {
        if let Some(m) = caps.get(i + 1) {
            let n: i64 = m.as_str().parse().ok()?;
            total = total.checked_add(n.checked_mul(*unit)?)?;
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("0m"), Some(0));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("1d12h"), Some(36 * 3_600_000));
        assert_eq!(parse_duration_ms("1ms"), Some(1));
        assert_eq!(parse_duration_ms("2w"), Some(14 * 86_400_000));
        // Units in descending order only, integers only, a unit on every number.
        for bad in ["", "x", "5", "m", "5x", "1.5h", "30m1h", "-1s", " 1s"] {
            assert_eq!(parse_duration_ms(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration_ms("99999999999999999y"), None);
    }
}
