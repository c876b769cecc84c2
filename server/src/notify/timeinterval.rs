//! Time intervals in Alertmanager's shape (`times`, `weekdays`, `days_of_month`, `months`,
//! `years`, `location`) plus one extension, `calendar: working_days | non_working_days`, which
//! restricts an interval to the working days (or the other days) of the statutory calendar —
//! "working hours on working days" is `calendar: working_days` with `times`.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Timelike};
use serde::{Deserialize, Deserializer, de::Error as _};

use yunwei_sla::calendar::Calendar;

/// An inclusive range of integers (`"monday:friday"`, `"1:5"`, `"-1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: i32,
    pub end: i32,
}

/// Which days of the statutory calendar an interval covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarDays {
    WorkingDays,
    NonWorkingDays,
}

/// One time interval; every set field must match (an empty field matches everything).
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInterval {
    /// Minutes of the day, `[start, end)`.
    pub times: Vec<(u32, u32)>,
    /// 0 = Sunday .. 6 = Saturday.
    pub weekdays: Vec<Range>,
    /// 1..31, or negative from the month's end (-1 = last day).
    pub days_of_month: Vec<Range>,
    /// 1..12.
    pub months: Vec<Range>,
    pub years: Vec<Range>,
    pub location: FixedOffset,
    pub calendar: Option<CalendarDays>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeRange {
    start_time: String,
    end_time: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInterval {
    #[serde(default)]
    times: Vec<RawTimeRange>,
    #[serde(default)]
    weekdays: Vec<String>,
    #[serde(default)]
    days_of_month: Vec<String>,
    #[serde(default)]
    months: Vec<String>,
    #[serde(default)]
    years: Vec<String>,
    location: Option<String>,
    calendar: Option<CalendarDays>,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn parse_range(
    s: &str,
    names: &[&str],
    first: i32,
    min: i32,
    max: i32,
    what: &str,
) -> Result<Range, String> {
    let one = |p: &str| -> Result<i32, String> {
        let p = p.trim().to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == p) {
            return Ok(i as i32 + first);
        }
        let v: i32 = p.parse().map_err(|_| format!("{p:?} is not a {what}"))?;
        if v < min || v > max || v == 0 && min < 0 {
            return Err(format!("{what} {v} is out of range"));
        }
        Ok(v)
    };
    let r = match s.split_once(':') {
        Some((a, b)) => Range {
            start: one(a)?,
            end: one(b)?,
        },
        None => {
            let v = one(s)?;
            Range { start: v, end: v }
        }
    };
    if r.start.signum() == r.end.signum() && r.start > r.end {
        return Err(format!("{s:?}: start is after end"));
    }
    Ok(r)
}

fn parse_hhmm(s: &str) -> Result<u32, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HH:MM"))?;
    let (h, m): (u32, u32) = (
        h.parse().map_err(|_| format!("{s:?} is not HH:MM"))?,
        m.parse().map_err(|_| format!("{s:?} is not HH:MM"))?,
    );
    if m > 59 || h > 24 || h == 24 && m > 0 {
        return Err(format!("{s:?} is not a time of day"));
    }
    Ok(h * 60 + m)
}

/// Parses a location: `UTC`, `Asia/Shanghai` (and the other zones of China, which keep
/// +08:00 all year), or a fixed offset such as `+08:00`.
pub fn parse_location(s: &str) -> Result<FixedOffset, String> {
    match s {
        "UTC" | "Etc/UTC" => return Ok(FixedOffset::east_opt(0).expect("0 is valid")),
        "Asia/Shanghai" | "Asia/Chongqing" | "Asia/Harbin" | "Asia/Urumqi" | "PRC" => {
            return Ok(FixedOffset::east_opt(8 * 3600).expect("+8 is valid"));
        }
        _ => {}
    }
    s.parse::<FixedOffset>().map_err(|_| {
        format!("location {s:?} is not UTC, Asia/Shanghai or a fixed offset like +08:00")
    })
}

impl TimeInterval {
    fn from_raw(r: RawInterval) -> Result<TimeInterval, String> {
        let mut times = Vec::new();
        for t in r.times {
            let (a, b) = (parse_hhmm(&t.start_time)?, parse_hhmm(&t.end_time)?);
            if a >= b {
                return Err(format!(
                    "start_time {:?} is not before end_time {:?}",
                    t.start_time, t.end_time
                ));
            }
            times.push((a, b));
        }
        let list = |v: &[String], names: &[&str], first, min, max, what| {
            v.iter()
                .map(|s| parse_range(s, names, first, min, max, what))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(TimeInterval {
            times,
            weekdays: list(&r.weekdays, &WEEKDAYS, 0, 0, 6, "weekday")?,
            days_of_month: list(&r.days_of_month, &[], 1, -31, 31, "day of month")?,
            months: list(&r.months, &MONTHS, 1, 1, 12, "month")?,
            years: list(&r.years, &[], 0, 1970, 9999, "year")?,
            location: match r.location {
                Some(l) => parse_location(&l)?,
                None => FixedOffset::east_opt(8 * 3600).expect("+8 is valid"),
            },
            calendar: r.calendar,
        })
    }

    /// Whether the instant `t_ms` lies in the interval.
    pub fn contains(&self, t_ms: i64, cal: &Calendar) -> bool {
        let Some(t) = DateTime::from_timestamp_millis(t_ms) else {
            return false;
        };
        let t = t.with_timezone(&self.location);
        let minute = t.hour() * 60 + t.minute();
        if !self.times.is_empty() && !self.times.iter().any(|&(a, b)| a <= minute && minute < b) {
            return false;
        }
        let wd = t.weekday().num_days_from_sunday() as i32;
        if !self.weekdays.is_empty() && !self.weekdays.iter().any(|r| in_range(r, wd)) {
            return false;
        }
        if !self.days_of_month.is_empty() {
            let last = days_in_month(t.year(), t.month());
            let day = t.day() as i32;
            let ok = self.days_of_month.iter().any(|r| {
                let fix = |v: i32| if v < 0 { last + 1 + v } else { v };
                let (a, b) = (fix(r.start), fix(r.end));
                a <= day && day <= b
            });
            if !ok {
                return false;
            }
        }
        if !self.months.is_empty() && !self.months.iter().any(|r| in_range(r, t.month() as i32)) {
            return false;
        }
        if !self.years.is_empty() && !self.years.iter().any(|r| in_range(r, t.year())) {
            return false;
        }
        match self.calendar {
            Some(CalendarDays::WorkingDays) => cal.is_working_day(t.date_naive()).0,
            Some(CalendarDays::NonWorkingDays) => !cal.is_working_day(t.date_naive()).0,
            None => true,
        }
    }
}

impl TimeInterval {
    /// The maximal runs `[start, end)` of `[from_ms, to_ms)` that lie in the interval, found
    /// minute by minute (intervals are made of whole minutes in a whole-minute offset), for
    /// turning a recurring maintenance window into the concrete windows the SLA excludes.
    pub fn occurrences(&self, from_ms: i64, to_ms: i64, cal: &Calendar) -> Vec<(i64, i64)> {
        const MINUTE: i64 = 60_000;
        let mut out: Vec<(i64, i64)> = Vec::new();
        let mut t = from_ms.div_euclid(MINUTE) * MINUTE;
        while t < to_ms {
            let next = t + MINUTE;
            if self.contains(t, cal) {
                let (a, b) = (t.max(from_ms), next.min(to_ms));
                match out.last_mut() {
                    Some(last) if last.1 == a => last.1 = b,
                    _ => out.push((a, b)),
                }
            }
            t = next;
        }
        out
    }
}

fn in_range(r: &Range, v: i32) -> bool {
    r.start <= v && v <= r.end
}

fn days_in_month(y: i32, m: u32) -> i32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| d.day() as i32)
}

impl<'de> Deserialize<'de> for TimeInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TimeInterval::from_raw(RawInterval::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// A named list of intervals; it is active when any of them contains the instant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedIntervals {
    pub name: String,
    pub time_intervals: Vec<TimeInterval>,
}

impl NamedIntervals {
    pub fn contains(&self, t_ms: i64, cal: &Calendar) -> bool {
        self.time_intervals.iter().any(|i| i.contains(t_ms, cal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ti(yaml: &str) -> TimeInterval {
        yunwei_conf::yaml_de::from_str(yaml).unwrap()
    }

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn occurrences_are_the_runs_inside_the_range_on_working_days() {
        let cal = Calendar::shipped();
        let i = ti(
            "times: [{start_time: '02:00', end_time: '04:00'}]\ncalendar: working_days\nlocation: Asia/Shanghai\n",
        );
        // Wednesday 2025-10-08 is a 国庆 holiday, Saturday 2025-10-11 a make-up working day.
        let got = i.occurrences(
            at("2025-10-07T03:00:00+08:00"),
            at("2025-10-12T00:00:00+08:00"),
            &cal,
        );
        assert_eq!(
            got,
            vec![
                (
                    at("2025-10-09T02:00:00+08:00"),
                    at("2025-10-09T04:00:00+08:00")
                ),
                (
                    at("2025-10-10T02:00:00+08:00"),
                    at("2025-10-10T04:00:00+08:00")
                ),
                (
                    at("2025-10-11T02:00:00+08:00"),
                    at("2025-10-11T04:00:00+08:00")
                ),
            ]
        );
        // Clipped to the range, also mid-minute.
        let got = i.occurrences(
            at("2025-10-09T03:30:30+08:00"),
            at("2025-10-09T05:00:00+08:00"),
            &cal,
        );
        assert_eq!(
            got,
            vec![(
                at("2025-10-09T03:30:30+08:00"),
                at("2025-10-09T04:00:00+08:00")
            )]
        );
    }

    #[test]
    fn working_hours_on_statutory_working_days() {
        let cal = Calendar::shipped();
        let i = ti(
            "times: [{start_time: '09:00', end_time: '17:30'}]\ncalendar: working_days\nlocation: Asia/Shanghai\n",
        );
        for (t, want) in [
            ("2025-10-09T10:00:00+08:00", true),  // Thursday
            ("2025-10-09T17:30:00+08:00", false), // end is exclusive
            ("2025-10-09T08:59:00+08:00", false),
            ("2025-10-08T10:00:00+08:00", false), // 国庆 holiday on a Wednesday
            ("2025-10-11T10:00:00+08:00", true),  // make-up Saturday
            ("2025-10-09T01:30:00Z", true),       // 09:30 in Shanghai
            ("2025-10-09T00:30:00Z", false),      // 08:30 in Shanghai
        ] {
            assert_eq!(i.contains(at(t), &cal), want, "{t}");
        }
    }

    #[test]
    fn alertmanager_fields() {
        let cal = Calendar::default();
        let i = ti(
            "weekdays: ['monday:friday']\ndays_of_month: ['-1']\nmonths: ['october']\nlocation: UTC\n",
        );
        assert!(i.contains(at("2025-10-31T12:00:00Z"), &cal)); // last day, a Friday
        assert!(!i.contains(at("2025-10-30T12:00:00Z"), &cal));
        assert!(!i.contains(at("2025-11-30T12:00:00Z"), &cal));
        let i = ti("weekdays: [saturday, sunday]\nlocation: '+08:00'\n");
        assert!(i.contains(at("2025-10-10T17:00:00Z"), &cal)); // Saturday 01:00 in +08
    }

    #[test]
    fn bad_intervals_are_refused() {
        for y in [
            "weekdays: [funday]",
            "times: [{start_time: '18:00', end_time: '09:00'}]",
            "times: [{start_time: '25:00', end_time: '26:00'}]",
            "months: ['13']",
            "location: Mars/Base",
            "calendar: holidays",
            "weekday: [monday]",
        ] {
            assert!(
                yunwei_conf::yaml_de::from_str::<TimeInterval>(y).is_err(),
                "{y}"
            );
        }
    }
}
