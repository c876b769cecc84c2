//! Service-window spans: when a system's service is owed, as UTC millisecond spans, from the
//! contract's window definition, 重保 duty periods, the statutory calendar and the time zone.

use chrono::{Datelike, Days, NaiveDate};
use chrono_tz::Tz;

use super::period::local_ms;
use super::spans::{Spans, clip, normalize};
use crate::calendar::{Calendar, DayKind};
use crate::contract::{Contract, Day, HolidayRule, ServiceWindow};

/// The spans of `window` (for system `system_id`, so that its 重保 periods apply) within
/// `[from_ms, to_ms)`, and whether any day needed a year the calendar lacks (then Monday to
/// Friday were taken as working days and the result is provisional).
pub fn window_spans(
    contract: &Contract,
    calendar: &Calendar,
    window: &ServiceWindow,
    system_id: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> (Spans, bool) {
    if from_ms >= to_ms {
        return (Vec::new(), false);
    }
    if matches!(window, ServiceWindow::Always {}) {
        return (vec![(from_ms, to_ms)], false);
    }
    let tz = contract.time_zone;
    let first = local_date(from_ms, tz) - Days::new(1);
    let last = local_date(to_ms, tz) + Days::new(1);
    let (in_first, in_last) = (local_date(from_ms, tz), local_date(to_ms - 1, tz));
    let mut out = Vec::new();
    let mut guessed = false;
    for date in first.iter_days().take_while(|d| *d <= last) {
        let on_duty = contract.duty_periods.iter().any(|d| {
            d.from <= date
                && date <= d.to
                && (d.systems.is_empty()
                    || system_id.is_some_and(|s| d.systems.iter().any(|x| x == s)))
        });
        if on_duty {
            out.push((local_ms(date, 0, tz), local_ms(date, 1440, tz)));
            continue;
        }
        let kind = calendar.day_kind(date);
        // The day before and after the range are looked at only for clipping; a guess
        // about them does not make the result provisional.
        if kind.is_none() && (in_first..=in_last).contains(&date) {
            guessed = true;
        }
        let kind = kind.unwrap_or(match date.weekday() {
            chrono::Weekday::Sat | chrono::Weekday::Sun => DayKind::Weekend,
            _ => DayKind::Workday,
        });
        let hours: Vec<(u32, u32)> = match window {
            ServiceWindow::Always {} => vec![(0, 1440)],
            ServiceWindow::WorkingDays { hours } => {
                if kind.is_working_day() {
                    vec![(hours.start, hours.end)]
                } else {
                    Vec::new()
                }
            }
            ServiceWindow::Weekly {
                schedule,
                holidays,
                makeup_days_as,
            } => {
                let day = match (&kind, holidays) {
                    (DayKind::Holiday { .. }, HolidayRule::Closed) => None,
                    (DayKind::MakeupWorkday, _) => Some(*makeup_days_as),
                    _ => Some(Day::from_weekday(date.weekday())),
                };
                day.and_then(|d| schedule.get(&d))
                    .map(|hs| hs.iter().map(|h| (h.start, h.end)).collect())
                    .unwrap_or_default()
            }
        };
        for (s, e) in hours {
            out.push((local_ms(date, s, tz), local_ms(date, e, tz)));
        }
    }
    (clip(&normalize(out), from_ms, to_ms), guessed)
}

/// The local date of a UTC millisecond instant.
pub fn local_date(ms: i64, tz: Tz) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assess::period::Period;
    use crate::contract::{EXAMPLE_CONTRACT, parse_contract};

    #[test]
    fn office_hours_on_the_makeup_saturday_only() {
        let c = parse_contract(EXAMPLE_CONTRACT, "example.yml").unwrap();
        let tz = c.time_zone;
        let w = &c.service_windows["office-5x8"];
        // Sat 02-14 (make-up working day) to Mon 02-16 (春节): one span, 08:30-17:30 on 02-14.
        let p = Period::parse("2026-02-14..2026-02-16", tz).unwrap();
        let (spans, guessed) = window_spans(
            &c,
            &Calendar::shipped(),
            w,
            Some("oa"),
            p.start_ms,
            p.end_ms,
        );
        let d = "2026-02-14".parse().unwrap();
        assert_eq!(spans, vec![(local_ms(d, 510, tz), local_ms(d, 1050, tz))]);
        assert!(!guessed);
        // The last day of 2026 is known even though the next day (2027) is not.
        let p = Period::parse("2026-12-31..2026-12-31", tz).unwrap();
        let (spans, guessed) = window_spans(
            &c,
            &Calendar::shipped(),
            w,
            Some("oa"),
            p.start_ms,
            p.end_ms,
        );
        assert_eq!(spans.len(), 1);
        assert!(!guessed);
        let p = Period::parse("2027-01-04..2027-01-04", tz).unwrap();
        let (_, guessed) = window_spans(
            &c,
            &Calendar::shipped(),
            w,
            Some("oa"),
            p.start_ms,
            p.end_ms,
        );
        assert!(guessed);
    }
}
