//! The statutory working-day calendar (法定节假日 and 调休上班 make-up working days).
//!
//! The product ships the State Council's published arrangement for 2025–2026 in
//! `sla/calendars/cn-statutory.yaml` ([`Calendar::shipped`]). Operators extend it with more
//! years, or correct a year, in files of the same format ([`Calendar::parse`] then
//! [`Calendar::overlay`]): a year in a later file replaces that year entirely.
//!
//! ```yaml
//! 2026:
//!   source: "国务院办公厅关于2026年部分节假日安排的通知"
//!   holidays:
//!     - { name: 春节, from: 2026-02-15, to: 2026-02-23 }
//!   workdays: [2026-02-14, 2026-02-28]
//! ```
//!
//! [`Calendar::day_kind`] answers `None` for a year without data, so that callers can mark a
//! result *provisional* instead of guessing.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};

use yunwei_conf::Diagnostic;
use yunwei_conf::yaml::{self, Kind};
use yunwei_conf::yaml_de::from_node;

/// The shipped calendar file.
pub const SHIPPED_CALENDAR: &str = include_str!("../calendars/cn-statutory.yaml");

/// The name the shipped calendar file goes by in diagnostics and evidence files.
pub const SHIPPED_ORIGIN: &str = "cn-statutory.yaml";

/// What kind of day a date is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DayKind {
    /// Monday to Friday, not a holiday.
    Workday,
    /// Saturday or Sunday, not a make-up working day.
    Weekend,
    /// A statutory holiday (even on a weekday).
    Holiday {
        /// The holiday's name, e.g. 春节.
        name: String,
    },
    /// A weekend day that is a working day (调休上班).
    MakeupWorkday,
}

impl DayKind {
    /// Whether people work that day (a workday or a make-up working day).
    pub fn is_working_day(&self) -> bool {
        matches!(self, DayKind::Workday | DayKind::MakeupWorkday)
    }
}

/// A holiday block, inclusive dates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    /// The holiday's name.
    pub name: String,
    /// First day off.
    pub from: NaiveDate,
    /// Last day off.
    pub to: NaiveDate,
}

/// One year's arrangement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YearCalendar {
    /// Where the arrangement was published.
    #[serde(default)]
    pub source: String,
    /// The holiday blocks.
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    /// Make-up working days (weekend days that are working days).
    #[serde(default)]
    pub workdays: Vec<NaiveDate>,
}

/// The calendar: years with data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Calendar {
    years: BTreeMap<i32, YearCalendar>,
}

/// Errors in calendar files, each `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct CalendarErrors {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Calendar {
    /// The calendar shipped with the product (2025–2026).
    pub fn shipped() -> Calendar {
        // The shipped file is tested (`shipped_calendar_loads`); failing here is a build bug.
        Calendar::parse(SHIPPED_CALENDAR, SHIPPED_ORIGIN).expect("shipped calendar is valid")
    }

    /// The calendar of `files`, the `(origin, text)` of calendar files in overlay order: each
    /// is parsed and overlaid on the ones before it (a year in a later file replaces it).
    /// Every file's problems are reported.
    pub fn from_files(files: &[(&str, &str)]) -> Result<Calendar, CalendarErrors> {
        let mut cal = Calendar::default();
        let mut diagnostics = Vec::new();
        for (origin, text) in files {
            match Calendar::parse(text, origin) {
                Ok(c) => cal.overlay(c),
                Err(e) => diagnostics.extend(e.diagnostics),
            }
        }
        if diagnostics.is_empty() {
            Ok(cal)
        } else {
            Err(CalendarErrors { diagnostics })
        }
    }

    /// Parses a calendar file; `origin` names it in diagnostics.
    pub fn parse(text: &str, origin: &str) -> Result<Calendar, CalendarErrors> {
        let mut diags = Vec::new();
        let mut cal = Calendar::default();
        let err = |diags: &mut Vec<Diagnostic>, pos, message: String| {
            diags.push(Diagnostic {
                origin: origin.to_string(),
                pos: Some(pos),
                message,
            })
        };
        let root = match yaml::parse(text) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(cal),
            Err(e) => {
                err(&mut diags, e.pos, e.message);
                return Err(CalendarErrors { diagnostics: diags });
            }
        };
        let Kind::Map(entries) = &root.kind else {
            err(
                &mut diags,
                root.pos,
                format!(
                    "a calendar is a mapping of years, found a {}",
                    root.type_name()
                ),
            );
            return Err(CalendarErrors { diagnostics: diags });
        };
        for (k, v) in entries {
            let Some(year) = k
                .scalar()
                .and_then(|s| s.parse::<i32>().ok())
                .filter(|y| (1900..=9999).contains(y))
            else {
                err(
                    &mut diags,
                    k.pos,
                    format!("{:?} is not a year", k.scalar().unwrap_or("")),
                );
                continue;
            };
            if cal.years.contains_key(&year) {
                err(&mut diags, k.pos, format!("year {year} given twice"));
                continue;
            }
            let yc: YearCalendar = match from_node(v) {
                Ok(y) => y,
                Err(e) => {
                    err(
                        &mut diags,
                        e.pos.unwrap_or(v.pos),
                        format!("year {year}: {}", e.message),
                    );
                    continue;
                }
            };
            let before = diags.len();
            let item_pos = |path: &[&str], i: usize| -> yaml::Pos { item_pos(v, path, i) };
            for (i, h) in yc.holidays.iter().enumerate() {
                let p = item_pos(&["holidays"], i);
                if h.from > h.to {
                    err(
                        &mut diags,
                        p,
                        format!("holiday {}: from {} is after to {}", h.name, h.from, h.to),
                    );
                }
                if h.from.year() != year || h.to.year() != year {
                    err(
                        &mut diags,
                        p,
                        format!("holiday {}: dates must be in {year}", h.name),
                    );
                }
            }
            for (i, d) in yc.workdays.iter().enumerate() {
                let p = item_pos(&["workdays"], i);
                if d.year() != year {
                    err(
                        &mut diags,
                        p,
                        format!("make-up working day {d} is not in {year}"),
                    );
                } else if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
                    err(
                        &mut diags,
                        p,
                        format!(
                            "make-up working day {d} is a {}, not a weekend day",
                            d.weekday()
                        ),
                    );
                } else if yc.holidays.iter().any(|h| h.from <= *d && *d <= h.to) {
                    err(
                        &mut diags,
                        p,
                        format!("make-up working day {d} is inside a holiday"),
                    );
                }
            }
            if diags.len() == before {
                cal.years.insert(year, yc);
            }
        }
        if diags.is_empty() {
            Ok(cal)
        } else {
            Err(CalendarErrors { diagnostics: diags })
        }
    }

    /// Adds `other`'s years, replacing years this calendar already has.
    pub fn overlay(&mut self, other: Calendar) {
        self.years.extend(other.years);
    }

    /// Whether the calendar has data for `year`.
    pub fn has_year(&self, year: i32) -> bool {
        self.years.contains_key(&year)
    }

    /// The years with data.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// Every holiday block of every year, in date order.
    pub fn holidays(&self) -> impl Iterator<Item = &Holiday> + '_ {
        self.years.values().flat_map(|y| y.holidays.iter())
    }

    /// The kind of `date`, or `None` when the calendar has no data for its year.
    pub fn day_kind(&self, date: NaiveDate) -> Option<DayKind> {
        let y = self.years.get(&date.year())?;
        if let Some(h) = y.holidays.iter().find(|h| h.from <= date && date <= h.to) {
            return Some(DayKind::Holiday {
                name: h.name.clone(),
            });
        }
        if y.workdays.contains(&date) {
            return Some(DayKind::MakeupWorkday);
        }
        Some(match date.weekday() {
            Weekday::Sat | Weekday::Sun => DayKind::Weekend,
            _ => DayKind::Workday,
        })
    }

    /// Whether `date` is a working day, and whether that answer is a guess (no data for the
    /// year: Monday to Friday are taken as working days).
    pub fn is_working_day(&self, date: NaiveDate) -> (bool, bool) {
        match self.day_kind(date) {
            Some(k) => (k.is_working_day(), false),
            None => (!matches!(date.weekday(), Weekday::Sat | Weekday::Sun), true),
        }
    }
}

/// The position of item `i` of the sequence at `path` under `node`, or `node`'s own.
fn item_pos(node: &yaml::Node, path: &[&str], i: usize) -> yaml::Pos {
    let mut n = node;
    for key in path {
        let Kind::Map(entries) = &n.kind else {
            return n.pos;
        };
        match entries.iter().find(|(k, _)| k.scalar() == Some(key)) {
            Some((_, v)) => n = v,
            None => return n.pos,
        }
    }
    match &n.kind {
        Kind::Seq(items) => items.get(i).map_or(n.pos, |x| x.pos),
        _ => n.pos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn shipped_calendar_loads() {
        let c = Calendar::parse(SHIPPED_CALENDAR, "cn-statutory.yaml").unwrap();
        assert_eq!(c.years().collect::<Vec<_>>(), vec![2025, 2026]);
    }

    #[test]
    fn spring_festival_2026() {
        let c = Calendar::shipped();
        assert_eq!(c.day_kind(d("2026-02-13")), Some(DayKind::Workday));
        assert_eq!(c.day_kind(d("2026-02-14")), Some(DayKind::MakeupWorkday));
        for day in 15..=23 {
            let date = NaiveDate::from_ymd_opt(2026, 2, day).unwrap();
            assert_eq!(
                c.day_kind(date),
                Some(DayKind::Holiday {
                    name: "春节".into()
                }),
                "{date}"
            );
        }
        assert_eq!(c.day_kind(d("2026-02-24")), Some(DayKind::Workday));
        assert_eq!(c.day_kind(d("2026-02-28")), Some(DayKind::MakeupWorkday));
        assert_eq!(c.day_kind(d("2026-03-01")), Some(DayKind::Weekend));
        assert_eq!(c.day_kind(d("2027-01-04")), None);
        assert_eq!(c.is_working_day(d("2027-01-04")), (true, true));
    }

    #[test]
    fn operator_file_adds_and_replaces_years() {
        let mut c = Calendar::shipped();
        let extra = "2027:\n  holidays:\n    - {name: 元旦, from: 2027-01-01, to: 2027-01-03}\n  workdays: []\n\
                     2026:\n  holidays: []\n";
        c.overlay(Calendar::parse(extra, "extra.yml").unwrap());
        assert_eq!(
            c.day_kind(d("2027-01-01")),
            Some(DayKind::Holiday {
                name: "元旦".into()
            })
        );
        // 2026 was replaced: 02-16 (a Monday in 春节) is now an ordinary workday.
        assert_eq!(c.day_kind(d("2026-02-16")), Some(DayKind::Workday));
    }

    #[test]
    fn bad_calendar_reports_every_problem_with_positions() {
        let text = "2027:\n  holidays:\n    - {name: a, from: 2027-01-05, to: 2027-01-01}\n  workdays: [2027-01-06]\n  extra: 1\nnope:\n  holidays: []\n2028:\n  workdays: [2028-13-01]\n";
        let e = Calendar::parse(text, "cal.yml").unwrap_err();
        let got: Vec<String> = e.diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("cal.yml:5:3: year 2027: unknown field `extra`"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with("cal.yml:6:1: \"nope\" is not a year"),
            "{got:#?}"
        );
        assert!(got[2].starts_with("cal.yml:9:14: year 2028:"), "{got:#?}");
        let text = "2027:\n  holidays:\n    - {name: a, from: 2027-01-05, to: 2027-01-01}\n  workdays: [2027-01-06]\n";
        let e = Calendar::parse(text, "cal.yml").unwrap_err();
        let got: Vec<String> = e.diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].starts_with("cal.yml:3:7: holiday a: from"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with("cal.yml:4:14: make-up working day 2027-01-06 is a Wed"),
            "{got:#?}"
        );
    }
}
