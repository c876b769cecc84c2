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
        if kind.is_none() && (date < local_date(from_ms, tz) || date > local_date(to_ms - 1, tz)) {
            // Neighbouring days outside the range only matter for clipping.
        } else if kind.is_none() {
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
