//! The statutory working-day calendar (法定节假日 and 调休上班) in the format of
//! `cn-calendar-2025-2026.yaml`: per year, holiday ranges and make-up working days. A small
//! internal reader, kept behind [`Calendar::is_working_day`] so that the rules crate's calendar
//! can replace it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Deserialize;

/// The shipped calendar's text.
pub const BUILTIN: &str = include_str!("../../calendars/cn-2025-2026.yaml");

/// Holidays and make-up working days by date.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calendar {
    years: BTreeSet<i32>,
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYear {
    #[serde(default)]
    #[allow(dead_code)]
    source: Option<String>,
    #[serde(default)]
    holidays: Vec<RawHoliday>,
    #[serde(default)]
    workdays: Vec<NaiveDate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    #[allow(dead_code)]
    name: String,
    from: NaiveDate,
    to: NaiveDate,
}

impl Calendar {
    /// Parses the calendar YAML; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Calendar, String> {
        let raw: BTreeMap<i32, RawYear> = serde_yaml::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("{origin}:{}:{}", l.line(), l.column()))
                .unwrap_or_else(|| origin.to_string());
            format!("{at}: {e}")
        })?;
        let mut c = Calendar::default();
        for (year, y) in raw {
            c.years.insert(year);
            for h in y.holidays {
                if h.to < h.from || h.to.signed_duration_since(h.from).num_days() > 31 {
                    return Err(format!(
                        "{origin}: {year}: holiday {}..{} is not a range of at most a month",
                        h.from, h.to
                    ));
                }
                c.holidays
                    .extend(h.from.iter_days().take_while(|d| *d <= h.to));
            }
            c.workdays.extend(y.workdays);
        }
        Ok(c)
    }

    /// The calendar shipped with the server (`server/calendars/cn-2025-2026.yaml`).
    pub fn builtin() -> Calendar {
        Calendar::parse(BUILTIN, "server/calendars/cn-2025-2026.yaml")
            .expect("the shipped calendar parses")
    }

    /// Whether the calendar has the notice for `year`.
    pub fn covers(&self, year: i32) -> bool {
        self.years.contains(&year)
    }

    /// A working day: a make-up working day, or a Monday–Friday that is not a holiday. Years the
    /// calendar does not cover count Monday–Friday.
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cal() -> Calendar {
        Calendar::builtin()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn holidays_and_makeup_days_of_the_2025_and_2026_notices() {
        let c = cal();
        assert!(c.covers(2025) && c.covers(2026) && !c.covers(2027));
        for (day, working) in [
            ("2025-10-08", false), // Wednesday inside 国庆节
            ("2025-10-09", true),  // ordinary Thursday
            ("2025-10-11", true),  // Saturday make-up day
            ("2025-10-12", false), // ordinary Sunday
            ("2026-02-14", true),  // Saturday make-up day before 春节
            ("2026-02-16", false), // Monday in 春节
            ("2026-01-01", false),
            ("2026-01-04", true), // Sunday make-up day
            ("2027-03-01", true), // uncovered year: Monday
        ] {
            assert_eq!(c.is_working_day(d(day)), working, "{day}");
        }
    }

    #[test]
    fn a_bad_calendar_names_file_and_line() {
        let e = Calendar::parse("2025:\n  holidayz: []\n", "cal.yaml").unwrap_err();
        assert!(e.starts_with("cal.yaml:2:"), "{e}");
    }
}
