//! Assessment periods: a month (`2026-10`), a quarter (`2026-Q3`), a year (`2026`) or a custom
//! range (`2026-02-01..2026-02-14`, inclusive), as local dates in the contract's time zone.

use chrono::{Datelike, Days, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::Serialize;

/// A period: inclusive local dates and the UTC milliseconds they span.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Period {
    /// How it was written, e.g. `2026-02`.
    pub label: String,
    /// First local day.
    pub start: NaiveDate,
    /// Last local day (inclusive).
    pub end: NaiveDate,
    /// Local midnight starting `start`, UTC ms.
    pub start_ms: i64,
    /// Local midnight after `end`, UTC ms (exclusive).
    pub end_ms: i64,
}

/// A period that cannot be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid period {0:?} (examples: 2026-10, 2026-Q3, 2026, 2026-02-01..2026-02-14)")]
pub struct PeriodError(pub String);

/// UTC milliseconds of local midnight starting `date` (the first instant of the day).
pub fn local_midnight_ms(date: NaiveDate, tz: Tz) -> i64 {
    local_ms(date, 0, tz)
}

/// UTC milliseconds of `minutes` after local midnight of `date` (`1440` is the next midnight).
pub fn local_ms(date: NaiveDate, minutes: u32, tz: Tz) -> i64 {
    let (date, minutes) = if minutes >= 1440 {
        (date + Days::new(1), minutes - 1440)
    } else {
        (date, minutes)
    };
    let naive = date
        .and_hms_opt(minutes / 60, minutes % 60, 0)
        .unwrap_or_default();
    match tz.from_local_datetime(&naive).earliest() {
        Some(t) => t.timestamp_millis(),
        // A local time skipped by a DST change: the instant an hour later exists.
        None => {
            tz.from_local_datetime(&(naive + chrono::Duration::hours(1)))
                .earliest()
                .map_or(naive.and_utc().timestamp_millis(), |t| t.timestamp_millis())
                - 3_600_000
        }
    }
}

impl Period {
    /// A custom inclusive range.
    pub fn custom(
        label: &str,
        start: NaiveDate,
        end: NaiveDate,
        tz: Tz,
    ) -> Result<Period, PeriodError> {
        if start > end {
            return Err(PeriodError(label.into()));
        }
        Ok(Period {
            label: label.into(),
            start,
            end,
            start_ms: local_midnight_ms(start, tz),
            end_ms: local_midnight_ms(end + Days::new(1), tz),
        })
    }

    /// A calendar month.
    pub fn month(year: i32, month: u32, tz: Tz) -> Result<Period, PeriodError> {
        let label = format!("{year:04}-{month:02}");
        let start =
            NaiveDate::from_ymd_opt(year, month, 1).ok_or_else(|| PeriodError(label.clone()))?;
        let next = start
            .checked_add_months(chrono::Months::new(1))
            .ok_or_else(|| PeriodError(label.clone()))?;
        Period::custom(&label, start, next.pred_opt().unwrap_or(start), tz)
    }

    /// A calendar quarter (1..=4).
    pub fn quarter(year: i32, q: u32, tz: Tz) -> Result<Period, PeriodError> {
        let label = format!("{year:04}-Q{q}");
        if !(1..=4).contains(&q) {
            return Err(PeriodError(label));
        }
        let start = NaiveDate::from_ymd_opt(year, 3 * q - 2, 1)
            .ok_or_else(|| PeriodError(label.clone()))?;
        let next = start
            .checked_add_months(chrono::Months::new(3))
            .ok_or_else(|| PeriodError(label.clone()))?;
        Period::custom(&label, start, next.pred_opt().unwrap_or(start), tz)
    }

    /// A calendar year.
    pub fn year(year: i32, tz: Tz) -> Result<Period, PeriodError> {
        let label = format!("{year:04}");
        let start =
            NaiveDate::from_ymd_opt(year, 1, 1).ok_or_else(|| PeriodError(label.clone()))?;
        let end =
            NaiveDate::from_ymd_opt(year, 12, 31).ok_or_else(|| PeriodError(label.clone()))?;
        Period::custom(&label, start, end, tz)
    }

    /// Parses `2026-10`, `2026-Q3`, `2026` or `2026-02-01..2026-02-14`.
    pub fn parse(s: &str, tz: Tz) -> Result<Period, PeriodError> {
        let bad = || PeriodError(s.into());
        if let Some((a, b)) = s.split_once("..") {
            let a: NaiveDate = a.trim().parse().map_err(|_| bad())?;
            let b: NaiveDate = b.trim().parse().map_err(|_| bad())?;
            return Period::custom(s, a, b, tz);
        }
        if let Some((y, q)) = s.split_once("-Q") {
            return Period::quarter(
                y.parse().map_err(|_| bad())?,
                q.parse().map_err(|_| bad())?,
                tz,
            );
        }
        if let Some((y, m)) = s.split_once('-') {
            if y.len() != 4 || m.len() != 2 {
                return Err(bad());
            }
            return Period::month(
                y.parse().map_err(|_| bad())?,
                m.parse().map_err(|_| bad())?,
                tz,
            );
        }
        if s.len() == 4 {
            return Period::year(s.parse().map_err(|_| bad())?, tz);
        }
        Err(bad())
    }

    /// Number of local days.
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    /// Every local date, in order.
    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let (start, end) = (self.start, self.end);
        start.iter_days().take_while(move |d| *d <= end)
    }

    /// The years the period touches.
    pub fn years(&self) -> std::ops::RangeInclusive<i32> {
        self.start.year()..=self.end.year()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SH: Tz = chrono_tz::Asia::Shanghai;

    #[test]
    fn february_2026_is_40320_minutes() {
        let p = Period::parse("2026-02", SH).unwrap();
        assert_eq!(p.days(), 28);
        assert_eq!((p.end_ms - p.start_ms) / 60_000, 40_320);
        // 2026-02-01 00:00 +08:00 = 2026-01-31 16:00 UTC.
        assert_eq!(p.start_ms, 1_769_875_200_000);
    }

    #[test]
    fn quarters_years_ranges() {
        let q = Period::parse("2026-Q3", SH).unwrap();
        assert_eq!(
            (q.start.to_string(), q.end.to_string()),
            ("2026-07-01".into(), "2026-09-30".into())
        );
        assert_eq!(Period::parse("2026", SH).unwrap().days(), 365);
        assert_eq!(
            Period::parse("2026-02-01..2026-02-14", SH).unwrap().days(),
            14
        );
        for bad in ["2026-13", "2026-Q5", "26", "2026-02-10..2026-02-01", "x"] {
            assert!(Period::parse(bad, SH).is_err(), "{bad}");
        }
    }
}
