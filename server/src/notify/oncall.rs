//! On-call schedules: layers of rotations with hand-off times, optionally restricted to a time
//! interval, with later layers taking precedence where they have someone, and overrides on top.
//! [`Schedule::on_call`] answers "who is on call at t" — pure, `t` is a parameter. An email
//! receiver addresses the person on call as `oncall:SCHEDULE`.

use chrono::DateTime;
use serde::{Deserialize, Deserializer, de::Error as _};

use yunwei_sla::calendar::Calendar;

use super::{config::Millis, timeinterval::NamedIntervals};

/// An RFC 3339 instant, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant(pub i64);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| Instant(t.timestamp_millis()))
            .map_err(|_| {
                D::Error::custom(format!(
                    "{s:?} is not an RFC 3339 time like 2026-01-05T09:00:00+08:00"
                ))
            })
    }
}

/// One rotation: `members` take turns of `shift`, the first starting at `start`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub members: Vec<String>,
    pub start: Instant,
    pub shift: Millis,
    /// Only while this named time interval is active (e.g. working hours).
    pub only_during: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub who: String,
    pub from: Instant,
    pub to: Instant,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub name: String,
    pub layers: Vec<Layer>,
    #[serde(default)]
    pub overrides: Vec<Override>,
}

impl Layer {
    fn on_call(&self, t: i64, intervals: &[NamedIntervals], cal: &Calendar) -> Option<&str> {
        if self.members.is_empty() || self.shift.0 <= 0 || t < self.start.0 {
            return None;
        }
        if let Some(name) = &self.only_during
            && !intervals
                .iter()
                .find(|i| &i.name == name)
                .is_some_and(|i| i.contains(t, cal))
        {
            return None;
        }
        let turn = (t - self.start.0) / self.shift.0;
        Some(&self.members[(turn as usize) % self.members.len()])
    }
}

impl Schedule {
    /// Who is on call at `t`: the latest override covering `t`, else the last layer that has
    /// someone at `t`.
    pub fn on_call(&self, t: i64, intervals: &[NamedIntervals], cal: &Calendar) -> Option<&str> {
        if let Some(o) = self
            .overrides
            .iter()
            .rev()
            .find(|o| o.from.0 <= t && t < o.to.0)
        {
            return Some(&o.who);
        }
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.on_call(t, intervals, cal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    const SCHEDULE: &str = "
name: dba
layers:
  - members: [a@x.org, b@x.org, c@x.org]
    start: '2026-01-05T09:00:00+08:00'
    shift: 1w
  - members: [day@x.org]
    start: '2026-01-01T00:00:00+08:00'
    shift: 1d
    only_during: office
overrides:
  - {who: sub@x.org, from: '2026-01-13T00:00:00+08:00', to: '2026-01-14T00:00:00+08:00'}
";

    #[test]
    fn rotations_hand_off_layers_and_overrides() {
        let s: Schedule = yunwei_conf::yaml_de::from_str(SCHEDULE).unwrap();
        let intervals: Vec<NamedIntervals> = yunwei_conf::yaml_de::from_str(
            "- name: office\n  time_intervals: [{times: [{start_time: '09:00', end_time: '18:00'}], calendar: working_days}]\n",
        )
        .unwrap();
        let cal = Calendar::shipped();
        let who = |t: &str| s.on_call(at(t), &intervals, &cal);
        assert_eq!(
            who("2026-01-05T08:59:00+08:00"),
            None,
            "before the first hand-off"
        );
        assert_eq!(who("2026-01-05T20:00:00+08:00"), Some("a@x.org"));
        assert_eq!(who("2026-01-12T08:59:00+08:00"), Some("a@x.org"));
        assert_eq!(
            who("2026-01-12T09:00:00+08:00"),
            Some("day@x.org"),
            "office layer wins"
        );
        assert_eq!(
            who("2026-01-12T19:00:00+08:00"),
            Some("b@x.org"),
            "hand-off at 09:00"
        );
        assert_eq!(
            who("2026-01-13T19:00:00+08:00"),
            Some("sub@x.org"),
            "override"
        );
        assert_eq!(who("2026-01-19T09:00:00+08:00"), Some("day@x.org"));
        assert_eq!(
            who("2026-01-24T10:00:00+08:00"),
            Some("c@x.org"),
            "Saturday: no office layer"
        );
        assert_eq!(who("2026-01-26T10:00:00+08:00"), Some("day@x.org"));
        assert_eq!(
            who("2026-01-31T10:00:00+08:00"),
            Some("a@x.org"),
            "wraps around"
        );
        assert_eq!(
            who("2026-01-04T10:00:00+08:00"),
            Some("day@x.org"),
            "Sunday 4 Jan is a make-up working day"
        );
        assert_eq!(
            who("2026-01-03T10:00:00+08:00"),
            None,
            "a holiday before the rotation starts"
        );
    }

    #[test]
    fn bad_times_are_refused() {
        assert!(
            yunwei_conf::yaml_de::from_str::<Schedule>(
                &SCHEDULE.replace("2026-01-05T09:00:00+08:00", "next monday")
            )
            .is_err()
        );
    }
}
