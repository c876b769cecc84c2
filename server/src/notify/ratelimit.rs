//! Sliding-window rate limits per robot, so yunwei stays inside what DingTalk (20 messages a
//! minute, then a 10-minute block), WeCom (20 a minute) and Feishu (100 a minute, 5 a second)
//! accept: a send that would exceed a limit is postponed to when it fits. Pure; time is a
//! parameter.

use std::collections::{BTreeMap, VecDeque};

/// `(max messages, per window ms)` limits of a channel; empty for channels without limits.
pub fn limits(channel: &str) -> &'static [(usize, i64)] {
    match channel {
        // One below the published limits, for clock skew between us and them.
        "dingtalk" | "wecom" => &[(19, 60_000)],
        "feishu" => &[(95, 60_000), (4, 1_000)],
        _ => &[],
    }
}

/// Recent sends per target.
#[derive(Debug, Default)]
pub struct Limiter {
    sent: BTreeMap<String, VecDeque<i64>>,
}

impl Limiter {
    /// When a send to `target` on `channel` may go: `now` if it fits (and it is counted), else
    /// the earliest later time (not counted).
    pub fn admit(&mut self, channel: &str, target: &str, now: i64) -> i64 {
        let lim = limits(channel);
        if lim.is_empty() {
            return now;
        }
        let longest = lim.iter().map(|l| l.1).max().unwrap_or(0);
        let q = self.sent.entry(target.to_string()).or_default();
        while q.front().is_some_and(|t| *t <= now - longest) {
            q.pop_front();
        }
        let mut at = now;
        for &(max, window) in lim {
            let inside: Vec<i64> = q.iter().copied().filter(|t| *t > now - window).collect();
            if inside.len() >= max {
                at = at.max(inside[inside.len() - max] + window);
            }
        }
        if at == now {
            q.push_back(now);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_gets_19_a_minute_then_waits() {
        let mut l = Limiter::default();
        for i in 0..19 {
            assert_eq!(l.admit("dingtalk", "robot-a", 1_000 + i), 1_000 + i);
        }
        assert_eq!(
            l.admit("dingtalk", "robot-a", 2_000),
            61_000,
            "waits for the oldest"
        );
        assert_eq!(l.admit("dingtalk", "robot-b", 2_000), 2_000, "per robot");
        assert_eq!(l.admit("dingtalk", "robot-a", 61_000), 61_000);
        assert_eq!(l.admit("email", "x", 5), 5, "email has no limit");
    }

    #[test]
    fn feishu_per_second_limit() {
        let mut l = Limiter::default();
        for _ in 0..4 {
            assert_eq!(l.admit("feishu", "f", 10_000), 10_000);
        }
        assert_eq!(l.admit("feishu", "f", 10_500), 11_000);
    }
}
