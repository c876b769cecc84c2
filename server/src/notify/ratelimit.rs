//! Sliding-window rate limits per robot, so yunwei stays inside what DingTalk (20 messages a
//! minute, then a 10-minute block), WeCom (20 a minute) and Feishu (100 a minute, 5 a second)
//! accept: a send that would exceed a limit is postponed to when it fits, and when more
//! messages are pending for a robot than its limit lets through, the last send that fits
//! carries them all as one digest ([`Limiter::plan`]). Pure; time is a parameter.

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

    /// How many more sends to `target` fit at `now` (not counted).
    pub fn room(&self, channel: &str, target: &str, now: i64) -> usize {
        let q = self.sent.get(target);
        limits(channel)
            .iter()
            .map(|&(max, window)| {
                let inside = q.map_or(0, |q| q.iter().filter(|t| **t > now - window).count());
                max.saturating_sub(inside)
            })
            .min()
            .unwrap_or(usize::MAX)
    }

    /// How `pending` messages due for `target` go at `now` (the sends are counted): one message
    /// each while the limit leaves room after them; the last send that fits carries all the
    /// rest as one digest; when nothing fits, all wait until the returned time (and are then
    /// planned again, so what piled up goes as one digest).
    pub fn plan(&mut self, channel: &str, target: &str, pending: usize, now: i64) -> Plan {
        let mut p = Plan::default();
        while p.singles < pending {
            let at = self.admit(channel, target, now);
            if at > now {
                p.postponed_to = Some(at);
                break;
            }
            let left = pending - p.singles;
            if left > 1 && self.room(channel, target, now) == 0 {
                p.digest = left;
                break;
            }
            p.singles += 1;
        }
        p
    }
}

/// What [`Limiter::plan`] decided for the pending messages of one target, in their order: the
/// first `singles` go one message each, the next `digest` (0, or 2 and more) as one digest
/// message, and the rest wait until `postponed_to`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plan {
    pub singles: usize,
    pub digest: usize,
    pub postponed_to: Option<i64>,
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
    fn over_the_limit_pending_messages_go_as_one_digest() {
        let mut l = Limiter::default();
        // A burst of 30 for a DingTalk robot: 18 single messages, the 19th carries the other 12.
        let p = l.plan("dingtalk", "r", 30, 1_000);
        assert_eq!(
            p,
            Plan {
                singles: 18,
                digest: 12,
                postponed_to: None
            }
        );
        // More arrive within the minute: they wait for the oldest send to leave the window...
        let p = l.plan("dingtalk", "r", 5, 20_000);
        assert_eq!((p.singles, p.digest, p.postponed_to), (0, 0, Some(61_000)));
        // ...when the window is free again, they go one each.
        let p = l.plan("dingtalk", "r", 5, 61_000);
        assert_eq!((p.singles, p.digest, p.postponed_to), (5, 0, None));
        // With room for one only, what is pending goes as one digest.
        assert_eq!(l.plan("dingtalk", "s", 18, 0).singles, 18);
        let p = l.plan("dingtalk", "s", 5, 10);
        assert_eq!((p.singles, p.digest, p.postponed_to), (0, 5, None));
        // Within the limit nothing is batched.
        assert_eq!(l.plan("dingtalk", "other", 3, 61_000).singles, 3);
        assert_eq!(l.plan("email", "x", 500, 0).singles, 500, "no limits");
    }

    #[test]
    fn wecom_and_feishu_digests() {
        let mut l = Limiter::default();
        let p = l.plan("wecom", "w", 25, 0);
        assert_eq!((p.singles, p.digest), (18, 7));
        // Feishu: 4 a second, then the per-minute limit of 95.
        let p = l.plan("feishu", "f", 10, 0);
        assert_eq!((p.singles, p.digest), (3, 7), "the per-second limit");
        assert_eq!(l.plan("feishu", "f", 2, 500).postponed_to, Some(1_000));
        let mut sent = 4;
        let mut t = 1_000;
        while sent < 95 {
            let p = l.plan("feishu", "f", 1, t);
            sent += p.singles;
            t += 250;
        }
        let p = l.plan("feishu", "f", 3, t);
        assert_eq!(p.postponed_to, Some(60_000), "the per-minute limit");
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
