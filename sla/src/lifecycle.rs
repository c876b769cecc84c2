//! Deadlines of an assessment's lifecycle (初稿 → 申诉 → 复核 → 签认 → 终稿), counted in
//! working days of the statutory calendar in the contract's time zone. Pure: the instants are
//! parameters.
//!
//! A deadline of `n` working days after an instant is the end (24:00, local) of the `n`th
//! working day after that instant's local day: a draft issued on Friday 2026-02-13 with a
//! window of 3 working days may be appealed until Wednesday 2026-02-25 24:00 (02-14 is a
//! make-up working day; 02-15..02-23 is 春节).

use chrono::{Days, NaiveDate};
use chrono_tz::Tz;
use serde::Serialize;

use crate::assess::{local_date, local_midnight_ms};
use crate::calendar::Calendar;
use crate::contract::{Contract, Lifecycle};

/// A deadline: the last day counted and the first instant after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Deadline {
    /// The last working day (local date).
    pub date: NaiveDate,
    /// The end of that day, UTC ms: acting at or after this instant is too late.
    pub at_ms: i64,
    /// A day counted lies in a year the calendar has no data for, where Monday to Friday were
    /// taken as working days.
    pub guessed: bool,
}

/// The end of the `n`th working day after the local day of `from_ms` (`n` = 0: the end of
/// that day).
pub fn working_days_after(calendar: &Calendar, tz: Tz, from_ms: i64, n: u32) -> Deadline {
    let mut d = local_date(from_ms, tz);
    let mut left = n;
    let mut guessed = false;
    while left > 0 {
        d = d + Days::new(1);
        let (working, guess) = calendar.is_working_day(d);
        guessed |= guess;
        if working {
            left -= 1;
        }
    }
    Deadline {
        date: d,
        at_ms: local_midnight_ms(d + Days::new(1), tz),
        guessed,
    }
}

/// When the appeal window of a draft issued at `issued_ms` closes.
pub fn appeal_deadline(
    contract: &Contract,
    lifecycle: &Lifecycle,
    calendar: &Calendar,
    issued_ms: i64,
) -> Deadline {
    working_days_after(
        calendar,
        contract.time_zone,
        issued_ms,
        lifecycle.appeal_window_working_days,
    )
}

/// When review and sign-off of a draft issued at `issued_ms` are due: `review_working_days`
/// working days after the appeal window closed.
pub fn review_deadline(
    contract: &Contract,
    lifecycle: &Lifecycle,
    calendar: &Calendar,
    issued_ms: i64,
) -> Deadline {
    let appeal = appeal_deadline(contract, lifecycle, calendar, issued_ms);
    // The window's last instant lies on its last day; count from there.
    let mut d = working_days_after(
        calendar,
        contract.time_zone,
        appeal.at_ms - 1,
        lifecycle.review_working_days,
    );
    d.guessed |= appeal.guessed;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::parse_contract;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn at(date: &str, tz: Tz) -> i64 {
        // 10:00 local on `date`.
        local_midnight_ms(d(date), tz) + 10 * 3_600_000
    }

    #[test]
    fn windows_skip_weekends_and_holidays_and_count_make_up_days() {
        let cal = Calendar::shipped();
        let tz = chrono_tz::Asia::Shanghai;
        for (issued, n, last) in [
            // Friday before 春节: 02-14 (Sat) is a make-up working day, then 9 days off.
            ("2026-02-13", 3, "2026-02-25"),
            ("2026-02-13", 1, "2026-02-14"),
            // An ordinary week: Wednesday + 3 → Monday.
            ("2026-03-04", 3, "2026-03-09"),
            // Issued on a holiday: counting starts the next day.
            ("2026-10-03", 1, "2026-10-08"),
            ("2026-03-04", 0, "2026-03-04"),
        ] {
            let got = working_days_after(&cal, tz, at(issued, tz), n);
            assert_eq!(got.date, d(last), "{issued} + {n}");
            assert_eq!(got.at_ms, local_midnight_ms(d(last) + Days::new(1), tz));
            assert!(!got.guessed);
        }
        // 2027 has no data: Monday to Friday, and said so.
        let got = working_days_after(&cal, tz, at("2027-01-01", tz), 1);
        assert_eq!(got.date, d("2027-01-04"));
        assert!(got.guessed);
    }

    #[test]
    fn review_follows_the_appeal_window() {
        let text = format!(
            "{}\nlifecycle:\n  appeal_window_working_days: 3\n  review_working_days: 2\n",
            crate::contract::EXAMPLE_CONTRACT
                .split("\nreport:")
                .next()
                .unwrap()
        );
        let c = parse_contract(&text, "c.yml").unwrap_or_else(|e| panic!("{e}"));
        let l = c.lifecycle.clone().unwrap();
        let cal = Calendar::shipped();
        let issued = at("2026-02-13", c.time_zone);
        assert_eq!(appeal_deadline(&c, &l, &cal, issued).date, d("2026-02-25"));
        assert_eq!(review_deadline(&c, &l, &cal, issued).date, d("2026-02-27"));
    }
}
