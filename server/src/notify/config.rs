//! The `notify:` section of the server config: SMTP, the route tree, receivers, inhibit rules,
//! time intervals, escalation policies and retry settings. Deserialized strictly with the rest of
//! the config (yunwei-conf's YAML tree and serde bridge: unknown keys and bad values fail with
//! `file:line:col`), then [`RawNotify::check`] resolves references (receivers, time intervals,
//! policies) and reports every dangling one at the node that names it.

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use serde::{Deserialize, Deserializer, de::Error as _};

use yunwei_conf::Diagnostic;
use yunwei_conf::yaml::{Lookup, Node};
use yunwei_sla::calendar::Calendar;

use super::{
    matcher::{LabelSet, Matcher, all_match},
    timeinterval::NamedIntervals,
};

/// A duration in milliseconds, written like Prometheus (`30s`, `5m`, `4h`, `1d`, `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub i64);

/// Parses a Prometheus duration (`30s`, `1h30m`, `0`) into milliseconds: the one grammar
/// every yunwei file and API uses ([`yunwei_conf::parse_duration_ms`]).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    yunwei_conf::parse_duration_ms(s)
        .ok_or_else(|| format!("{s:?} is not a duration like 30s, 5m, 4h or 1h30m"))
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Millis).map_err(D::Error::custom)
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text; only sensible to a relay on loopback.
    None,
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// Implicit TLS (SMTPS, usually port 465).
    Tls,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `From:` address, e.g. `yunwei <alerts@example.gov.cn>`.
    pub from: String,
    #[serde(default = "default_smtp_timeout")]
    pub timeout_secs: u64,
    /// Allows `tls: none` with a username and password to a host that is not loopback (the
    /// password then crosses the network in clear text); refused without it.
    #[serde(default)]
    pub insecure: bool,
}

fn default_smtp_timeout() -> u64 {
    10
}

impl Smtp {
    /// The configured port, or the usual one for the TLS mode.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }
}

/// Language of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
pub enum Lang {
    #[default]
    #[serde(rename = "zh-CN")]
    ZhCn,
    #[serde(rename = "en")]
    En,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTarget {
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub language: Lang,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: String,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotTarget {
    /// The robot's webhook URL (for WeCom it carries the key).
    pub url: String,
    /// Signing secret (DingTalk `SEC...`, Feishu); WeCom has none.
    pub secret: Option<String>,
    #[serde(default)]
    pub language: Lang,
    #[serde(default)]
    pub at_mobiles: Vec<String>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

/// A named set of destinations, all notified together.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    #[serde(default)]
    pub email: Vec<EmailTarget>,
    #[serde(default)]
    pub webhook: Vec<WebhookTarget>,
    #[serde(default)]
    pub dingtalk: Vec<RobotTarget>,
    #[serde(default)]
    pub wecom: Vec<RobotTarget>,
    #[serde(default)]
    pub feishu: Vec<RobotTarget>,
    /// Receiver to notify instead when delivery to this one keeps failing.
    pub fallback: Option<String>,
}

/// Which labels group alerts: a list, or `['...']` for every label (one group per alert).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum GroupBy {
    #[default]
    Nothing,
    Labels(Vec<String>),
    All,
}

impl<'de> Deserialize<'de> for GroupBy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        if v.iter().any(|s| s == "...") {
            if v.len() > 1 {
                return Err(D::Error::custom("'...' must be the only group_by entry"));
            }
            return Ok(GroupBy::All);
        }
        Ok(if v.is_empty() {
            GroupBy::Nothing
        } else {
            GroupBy::Labels(v)
        })
    }
}

impl GroupBy {
    /// The grouping labels of an alert.
    pub fn labels_of(&self, l: &LabelSet) -> LabelSet {
        match self {
            GroupBy::Nothing => LabelSet::new(),
            GroupBy::All => l.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| l.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

/// A node of the route tree as written; children inherit unset options.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub receiver: Option<String>,
    pub group_by: Option<GroupBy>,
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    pub group_wait: Option<Millis>,
    pub group_interval: Option<Millis>,
    pub repeat_interval: Option<Millis>,
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
    /// Escalation policy for groups this route forms.
    pub escalation: Option<String>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// A route with every option resolved (inherited from its parents or defaulted).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Position in the tree, e.g. `0`, `0.1`, `0.1.0`; part of the group key.
    pub id: String,
    pub receiver: String,
    pub group_by: GroupBy,
    pub matchers: Vec<Matcher>,
    pub continue_: bool,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
    pub mute_time_intervals: Vec<String>,
    pub active_time_intervals: Vec<String>,
    pub escalation: Option<String>,
    pub routes: Vec<Route>,
}

impl Route {
    fn resolve(raw: &RawRoute, parent: Option<&Route>, id: String) -> Route {
        let d = |v: Option<Millis>, p: Option<i64>, def: i64| v.map_or(p.unwrap_or(def), |m| m.0);
        let mut r = Route {
            receiver: raw
                .receiver
                .clone()
                .or_else(|| parent.map(|p| p.receiver.clone()))
                .unwrap_or_default(),
            group_by: raw
                .group_by
                .clone()
                .or_else(|| parent.map(|p| p.group_by.clone()))
                .unwrap_or_default(),
            matchers: raw.matchers.clone(),
            continue_: raw.continue_,
            group_wait_ms: d(raw.group_wait, parent.map(|p| p.group_wait_ms), 30_000),
            group_interval_ms: d(
                raw.group_interval,
                parent.map(|p| p.group_interval_ms),
                300_000,
            ),
            repeat_interval_ms: d(
                raw.repeat_interval,
                parent.map(|p| p.repeat_interval_ms),
                4 * 3_600_000,
            ),
            // Alertmanager does not inherit time intervals.
            mute_time_intervals: raw.mute_time_intervals.clone(),
            active_time_intervals: raw.active_time_intervals.clone(),
            escalation: raw
                .escalation
                .clone()
                .or_else(|| parent.and_then(|p| p.escalation.clone())),
            routes: Vec::new(),
            id,
        };
        r.routes = raw
            .routes
            .iter()
            .enumerate()
            .map(|(i, c)| Route::resolve(c, Some(&r), format!("{}.{i}", r.id)))
            .collect();
        r
    }

    /// The routes an alert with `labels` goes to, in Alertmanager's way: the deepest matching
    /// node of each matching branch; a node's later siblings are tried only when the matching
    /// one has `continue`. Assumes `self` matches (the root always does).
    pub fn matching<'a>(&'a self, labels: &LabelSet) -> Vec<&'a Route> {
        let mut out = Vec::new();
        for c in &self.routes {
            if !all_match(&c.matchers, labels) {
                continue;
            }
            out.extend(c.matching(labels));
            if !c.continue_ {
                break;
            }
        }
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    /// Every route of the tree, depth first.
    pub fn walk(&self) -> Vec<&Route> {
        let mut v = vec![self];
        for c in &self.routes {
            v.extend(c.walk());
        }
        v
    }

    /// The route with `id`.
    pub fn find(&self, id: &str) -> Option<&Route> {
        self.walk().into_iter().find(|r| r.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// One step of an escalation policy: `receiver` is notified once nobody has acknowledged the
/// group `after` its first notification.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    #[serde(default)]
    pub after: Millis,
    pub receiver: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    pub name: String,
    pub tiers: Vec<Tier>,
}

/// Which alerts open incidents at which level (first match wins; 1 = 一级 / P1, most severe).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelRule {
    pub matchers: Vec<Matcher>,
    pub level: i64,
}

/// An open incident at `level` not restored `after` its detection goes up one level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelEscalation {
    pub level: i64,
    pub after: Millis,
}

/// The `incidents:` part of `notify:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Incidents {
    #[serde(default)]
    pub levels: Vec<LevelRule>,
    #[serde(default)]
    pub escalate_if_not_restored: Vec<LevelEscalation>,
}

impl Incidents {
    /// The most severe level any of `alerts` maps to.
    pub fn level_of<'a>(&self, alerts: impl IntoIterator<Item = &'a LabelSet>) -> Option<i64> {
        alerts
            .into_iter()
            .filter_map(|l| {
                self.levels
                    .iter()
                    .find(|r| all_match(&r.matchers, l))
                    .map(|r| r.level)
            })
            .min()
    }
}

/// Delivery retries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    #[serde(default = "default_initial")]
    pub initial: Millis,
    #[serde(default = "default_max")]
    pub max: Millis,
    /// Attempts on one receiver before its fallback is notified (delivery to the receiver
    /// itself continues with backoff).
    #[serde(default = "default_attempts")]
    pub attempts_before_fallback: u32,
    /// Give up after this long.
    #[serde(default = "default_give_up")]
    pub give_up_after: Millis,
}

fn default_initial() -> Millis {
    Millis(1_000)
}
fn default_max() -> Millis {
    Millis(300_000)
}
fn default_attempts() -> u32 {
    3
}
fn default_give_up() -> Millis {
    Millis(86_400_000)
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial: default_initial(),
            max: default_max(),
            attempts_before_fallback: default_attempts(),
            give_up_after: default_give_up(),
        }
    }
}

impl Retry {
    /// Delay before attempt `n + 1` after `n` failed attempts: doubling from `initial`, capped.
    pub fn backoff_ms(&self, failed: u32) -> i64 {
        let f = failed.saturating_sub(1).min(30);
        self.initial.0.saturating_mul(1i64 << f).min(self.max.0)
    }
}

/// The `notify:` section as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// Base URL of the server as recipients reach it, for links in messages.
    pub external_url: Option<String>,
    pub smtp: Option<Smtp>,
    pub route: Option<RawRoute>,
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRule>,
    #[serde(default)]
    pub time_intervals: Vec<NamedIntervals>,
    #[serde(default)]
    pub escalation_policies: Vec<EscalationPolicy>,
    /// Calendar file in the format of `sla/calendars/cn-statutory.yaml`, laid over the shipped
    /// calendar (a year it names replaces the shipped one; another year is added).
    pub calendar_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub retry: Retry,
    #[serde(default)]
    pub incidents: Incidents,
    /// On-call schedules; an email `to`/`cc` entry `oncall:NAME` is whoever is on call.
    #[serde(default)]
    pub oncall_schedules: Vec<super::oncall::Schedule>,
    /// Webhook/robot destinations on loopback, link-local or private addresses that are
    /// allowed anyway (CIDR, e.g. `127.0.0.1/32`).
    #[serde(default)]
    pub allow_private_networks: Vec<String>,
    /// How long an acknowledge link stays valid (default 12h). A link also stops working once
    /// used, and when its alert episode is over.
    pub ack_link_ttl: Option<Millis>,
}

/// Validity of an acknowledge link unless `ack_link_ttl` says otherwise.
const DEFAULT_ACK_LINK_TTL_MS: i64 = 12 * 3_600_000;

/// The longest an acknowledge link may be valid.
const MAX_ACK_LINK_TTL_MS: i64 = 7 * 86_400_000;

/// A CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?} is not a CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse().map_err(|_| format!("{s:?} is not a CIDR"))?
        };
        if prefix > max {
            return Err(format!("{s:?}: prefix longer than {max}"));
        }
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let m = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(a) & m == u32::from(b) & m
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & m == u128::from(b) & m
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        Cidr::parse(s)
    }
}

/// The validated `notify:` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotifyConfig {
    pub external_url: String,
    pub smtp: Option<Smtp>,
    /// `None` when notifications are not configured.
    pub route: Option<Route>,
    pub receivers: Vec<Receiver>,
    pub inhibit_rules: Vec<InhibitRule>,
    pub time_intervals: Vec<NamedIntervals>,
    pub escalation_policies: Vec<EscalationPolicy>,
    pub calendar: Calendar,
    pub retry: Retry,
    pub incidents: Incidents,
    pub oncall_schedules: Vec<super::oncall::Schedule>,
    pub allow_private_networks: Vec<Cidr>,
    /// Validity of an acknowledge link, in ms.
    pub ack_link_ttl_ms: i64,
}

/// The names defined in `notify:` that other parts refer to.
struct Defined<'a> {
    receivers: BTreeSet<&'a str>,
    intervals: BTreeSet<&'a str>,
    policies: BTreeSet<&'a str>,
}

/// Checks the references and intervals of `route` (written at `node`) and its children; only
/// what a route writes itself is checked, so an inherited mistake is reported once, where it is
/// written.
fn check_route(
    route: &RawRoute,
    node: Option<&Node>,
    defined: &Defined<'_>,
    at: &dyn Fn(Option<&Node>, String) -> Diagnostic,
    errs: &mut Vec<Diagnostic>,
) {
    if let Some(r) = &route.receiver
        && !defined.receivers.contains(r.as_str())
    {
        errs.push(at(
            node.get("receiver"),
            format!("notify.route: receiver {r:?} is not defined"),
        ));
    }
    for key in ["mute_time_intervals", "active_time_intervals"] {
        let list = if key == "mute_time_intervals" {
            &route.mute_time_intervals
        } else {
            &route.active_time_intervals
        };
        for (i, name) in list.iter().enumerate() {
            if !defined.intervals.contains(name.as_str()) {
                errs.push(at(
                    node.get(key).item(i),
                    format!("notify.route: time interval {name:?} is not defined"),
                ));
            }
        }
    }
    if let Some(p) = &route.escalation
        && !defined.policies.contains(p.as_str())
    {
        errs.push(at(
            node.get("escalation"),
            format!("notify.route: escalation policy {p:?} is not defined"),
        ));
    }
    for (key, value) in [
        ("group_interval", route.group_interval),
        ("repeat_interval", route.repeat_interval),
    ] {
        if value.is_some_and(|m| m.0 <= 0) {
            errs.push(at(
                node.get(key),
                "notify.route: group_interval and repeat_interval must be positive".into(),
            ));
        }
    }
    for (i, child) in route.routes.iter().enumerate() {
        check_route(child, node.get("routes").item(i), defined, at, errs);
    }
}

impl RawNotify {
    /// Resolves and checks references; `node` is the `notify:` section as written, whose nodes
    /// give the positions of the problems, and `base` the folder relative paths are resolved
    /// against.
    pub fn check(
        self,
        node: Option<&Node>,
        origin: &str,
        base: &Path,
    ) -> Result<NotifyConfig, Vec<Diagnostic>> {
        // A problem at `at`, or at the section when `at` is not written.
        let at = |at: Option<&Node>, message: String| Diagnostic {
            origin: origin.to_string(),
            pos: at.or(node).map(|n| n.pos),
            message,
        };
        let mut errs = Vec::new();
        let mut names = BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let rn = node.get("receivers").item(i);
            if !names.insert(r.name.as_str()) {
                errs.push(at(
                    rn.get("name"),
                    format!("notify.receivers: duplicate receiver {:?}", r.name),
                ));
            }
            let n = r.email.len() + r.webhook.len() + r.dingtalk.len() + r.wecom.len();
            if n + r.feishu.len() == 0 {
                errs.push(at(
                    rn,
                    format!("notify.receivers: receiver {:?} has no destination", r.name),
                ));
            }
            if !r.email.is_empty() && self.smtp.is_none() {
                errs.push(at(
                    rn.get("email"),
                    format!(
                        "notify.receivers: receiver {:?} sends email but notify.smtp is not set",
                        r.name
                    ),
                ));
            }
            for (j, e) in r.email.iter().enumerate() {
                let en = rn.get("email").item(j);
                for (key, list) in [("to", &e.to), ("cc", &e.cc)] {
                    for (k, a) in list.iter().enumerate() {
                        let an = en.get(key).item(k);
                        if let Some(name) = a.strip_prefix("oncall:") {
                            if !self.oncall_schedules.iter().any(|o| o.name == name) {
                                errs.push(at(
                                    an,
                                    format!(
                                        "notify.receivers: on-call schedule {name:?} is not defined"
                                    ),
                                ));
                            }
                            continue;
                        }
                        if a.parse::<lettre::Address>().is_err() || a.contains(['\r', '\n']) {
                            errs.push(at(
                                an,
                                format!("notify.receivers: {a:?} is not an email address"),
                            ));
                        }
                    }
                }
                if e.to.is_empty() {
                    errs.push(at(
                        en.get("to").or(en),
                        format!(
                            "notify.receivers: receiver {:?}: email needs at least one `to`",
                            r.name
                        ),
                    ));
                }
            }
            let robots = [
                ("dingtalk", &r.dingtalk),
                ("wecom", &r.wecom),
                ("feishu", &r.feishu),
            ];
            let urls = r
                .webhook
                .iter()
                .map(|w| &w.url)
                .enumerate()
                .map(|u| ("webhook", u));
            let robot_urls = robots.iter().flat_map(|(kind, list)| {
                list.iter().map(|t| &t.url).enumerate().map(|u| (*kind, u))
            });
            for (kind, (j, u)) in urls.chain(robot_urls) {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    errs.push(at(
                        rn.get(kind).item(j).get("url"),
                        format!("notify.receivers: {u:?} is not an http(s) URL"),
                    ));
                }
            }
            for (kind, list) in [("dingtalk", &r.dingtalk), ("feishu", &r.feishu)] {
                if let Some(j) = list.iter().position(|t| t.secret.is_none()) {
                    errs.push(at(
                        rn.get(kind).item(j),
                        format!(
                            "notify.receivers: receiver {:?}: {kind} needs a signing secret",
                            r.name
                        ),
                    ));
                }
            }
        }
        for (i, r) in self.receivers.iter().enumerate() {
            if let Some(f) = &r.fallback
                && !names.contains(f.as_str())
            {
                errs.push(at(
                    node.get("receivers").item(i).get("fallback"),
                    format!("notify.receivers: fallback {f:?} is not a receiver"),
                ));
            }
        }
        if let Some(s) = &self.smtp {
            let sn = node.get("smtp");
            if s.from.parse::<lettre::message::Mailbox>().is_err() {
                errs.push(at(
                    sn.get("from"),
                    format!("notify.smtp.from: {:?} is not a mailbox", s.from),
                ));
            }
            if s.username.is_some() != s.password.is_some() {
                errs.push(at(
                    sn.key("username").or(sn.key("password")),
                    "notify.smtp: username and password go together".into(),
                ));
            }
            if s.tls == SmtpTls::None
                && s.password.is_some()
                && !s.insecure
                && !yunwei_conf::host::is_loopback_host(&s.host)
            {
                errs.push(at(
                    sn.get("tls"),
                    format!(
                        "notify.smtp: tls: none would send the password in clear text to {:?}, \
                         which is not loopback; use tls: starttls or tls, or set insecure: true \
                         in notify.smtp to accept that",
                        s.host
                    ),
                ));
            }
        }
        let mut intervals = BTreeSet::new();
        for (i, t) in self.time_intervals.iter().enumerate() {
            if !intervals.insert(t.name.as_str()) {
                errs.push(at(
                    node.get("time_intervals").item(i).get("name"),
                    format!("notify.time_intervals: duplicate {:?}", t.name),
                ));
            }
        }
        for (i, o) in self.oncall_schedules.iter().enumerate() {
            let on = node.get("oncall_schedules").item(i);
            for (j, l) in o.layers.iter().enumerate() {
                let ln = on.get("layers").item(j);
                if l.members.is_empty() || l.shift.0 <= 0 {
                    errs.push(at(
                        ln,
                        format!(
                            "notify.oncall_schedules: {:?}: a layer needs members and a positive shift",
                            o.name
                        ),
                    ));
                }
                if let Some(name) = &l.only_during
                    && !intervals.contains(name.as_str())
                {
                    errs.push(at(
                        ln.get("only_during"),
                        format!("notify.oncall_schedules: time interval {name:?} is not defined"),
                    ));
                }
            }
        }
        let mut policies = BTreeSet::new();
        for (i, p) in self.escalation_policies.iter().enumerate() {
            let pn = node.get("escalation_policies").item(i);
            if !policies.insert(p.name.as_str()) {
                errs.push(at(
                    pn.get("name"),
                    format!("notify.escalation_policies: duplicate {:?}", p.name),
                ));
            }
            if p.tiers.is_empty() || p.tiers.windows(2).any(|w| w[0].after >= w[1].after) {
                errs.push(at(
                    pn.get("tiers").or(pn),
                    format!(
                        "notify.escalation_policies: {:?} needs tiers with increasing `after`",
                        p.name
                    ),
                ));
            }
            for (k, t) in p.tiers.iter().enumerate() {
                if !names.contains(t.receiver.as_str()) {
                    errs.push(at(
                        pn.get("tiers").item(k).get("receiver"),
                        format!(
                            "notify.escalation_policies: receiver {:?} is not defined",
                            t.receiver
                        ),
                    ));
                }
            }
        }
        let route = self
            .route
            .as_ref()
            .map(|r| Route::resolve(r, None, "0".into()));
        if let Some(raw) = &self.route {
            let rn = node.get("route");
            if raw.receiver.is_none() {
                errs.push(at(
                    rn,
                    "notify.route: the root route needs a receiver".into(),
                ));
            }
            if !raw.matchers.is_empty() {
                errs.push(at(
                    rn.get("matchers"),
                    "notify.route: the root route cannot have matchers".into(),
                ));
            }
            let defined = Defined {
                receivers: names,
                intervals,
                policies,
            };
            check_route(raw, rn, &defined, &at, &mut errs);
        } else if !self.receivers.is_empty() {
            errs.push(at(
                node.key("receivers"),
                "notify: receivers are defined but there is no route".into(),
            ));
        }
        let incidents = node.get("incidents");
        for (key, levels) in [
            (
                "levels",
                self.incidents
                    .levels
                    .iter()
                    .map(|r| r.level)
                    .collect::<Vec<_>>(),
            ),
            (
                "escalate_if_not_restored",
                self.incidents
                    .escalate_if_not_restored
                    .iter()
                    .map(|e| e.level)
                    .collect(),
            ),
        ] {
            for (i, l) in levels.into_iter().enumerate() {
                if !(1..=4).contains(&l) {
                    errs.push(at(
                        incidents.get(key).item(i).get("level"),
                        format!("notify.incidents: level {l} is not 1..4 (一级..四级)"),
                    ));
                }
            }
        }
        let mut allow = Vec::new();
        for (i, c) in self.allow_private_networks.iter().enumerate() {
            match Cidr::parse(c) {
                Ok(c) => allow.push(c),
                Err(e) => errs.push(at(
                    node.get("allow_private_networks").item(i),
                    format!("notify.allow_private_networks: {e}"),
                )),
            }
        }
        let calendar = match &self.calendar_file {
            None => Calendar::shipped(),
            Some(f) => {
                let f = if f.is_relative() {
                    base.join(f)
                } else {
                    f.clone()
                };
                match std::fs::read_to_string(&f) {
                    Ok(t) => match Calendar::parse(&t, &f.display().to_string()) {
                        Ok(extra) => {
                            let mut c = Calendar::shipped();
                            c.overlay(extra);
                            c
                        }
                        Err(e) => {
                            errs.extend(e.diagnostics);
                            Calendar::default()
                        }
                    },
                    Err(e) => {
                        errs.push(at(
                            node.get("calendar_file"),
                            format!("notify.calendar_file: {}: {e}", f.display()),
                        ));
                        Calendar::default()
                    }
                }
            }
        };
        let external_url = self
            .external_url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:9470".into())
            .trim_end_matches('/')
            .to_string();
        if !(external_url.starts_with("http://") || external_url.starts_with("https://")) {
            errs.push(at(
                node.get("external_url"),
                "notify.external_url: must be an http(s) URL".into(),
            ));
        }
        let ack_link_ttl_ms = self.ack_link_ttl.map_or(DEFAULT_ACK_LINK_TTL_MS, |m| m.0);
        if !(60_000..=MAX_ACK_LINK_TTL_MS).contains(&ack_link_ttl_ms) {
            errs.push(at(
                node.get("ack_link_ttl"),
                "notify.ack_link_ttl: must be between 1m and 7d".into(),
            ));
        }
        if !errs.is_empty() {
            // File order; the calendar file's problems after this file's.
            errs.sort_by_key(|d| (d.origin != origin, d.pos));
            return Err(errs);
        }
        Ok(NotifyConfig {
            external_url,
            smtp: self.smtp,
            route,
            receivers: self.receivers,
            inhibit_rules: self.inhibit_rules,
            time_intervals: self.time_intervals,
            escalation_policies: self.escalation_policies,
            calendar,
            retry: self.retry,
            incidents: self.incidents,
            oncall_schedules: self.oncall_schedules,
            allow_private_networks: allow,
            ack_link_ttl_ms,
        })
    }
}

/// Parses `text` as the server does: the whole document is the section when `key` is `None`,
/// else its value of `key`.
#[cfg(test)]
pub(crate) fn from_yaml(
    text: &str,
    origin: &str,
    key: Option<&str>,
) -> Result<NotifyConfig, Vec<Diagnostic>> {
    let fail = |pos, message| {
        vec![Diagnostic {
            origin: origin.to_string(),
            pos,
            message,
        }]
    };
    let root = yunwei_conf::yaml::parse(text).map_err(|e| fail(Some(e.pos), e.message))?;
    let node = match key {
        None => root.as_ref(),
        Some(k) => root.as_ref().get(k),
    };
    let raw: RawNotify = match node {
        None => RawNotify::default(),
        Some(n) => {
            yunwei_conf::yaml_de::from_node(n).map_err(|e| fail(e.pos, e.message_with_path()))?
        }
    };
    raw.check(node, origin, Path::new("."))
}

impl NotifyConfig {
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }

    pub fn policy(&self, name: &str) -> Option<&EscalationPolicy> {
        self.escalation_policies.iter().find(|p| p.name == name)
    }

    /// Addresses with every `oncall:NAME` replaced by whoever is on call at `t_ms` (dropped when
    /// nobody is).
    pub fn resolve_recipients(&self, list: &[String], t_ms: i64) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in list {
            let who = match a.strip_prefix("oncall:") {
                Some(name) => self
                    .oncall_schedules
                    .iter()
                    .find(|o| o.name == name)
                    .and_then(|o| o.on_call(t_ms, &self.time_intervals, &self.calendar))
                    .map(str::to_string),
                None => Some(a.clone()),
            };
            if let Some(w) = who
                && !out.contains(&w)
            {
                out.push(w);
            }
        }
        out
    }

    /// Whether the named interval set contains `t_ms` (unknown names never do).
    pub fn interval_active(&self, name: &str, t_ms: i64) -> bool {
        self.time_intervals
            .iter()
            .find(|i| i.name == name)
            .is_some_and(|i| i.contains(t_ms, &self.calendar))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `yaml` as the `notify:` section of a config file: its lines start at line 2,
    /// indented by two.
    fn check(yaml: &str) -> Result<NotifyConfig, Vec<String>> {
        let text = format!("notify:\n{}", indent(yaml));
        from_yaml(&text, "s.yaml", Some("notify"))
            .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    /// `s.yaml:line:col: ` of occurrence `n` (from 0) of `needle` in `yaml` as [`check`] sees it.
    fn at(yaml: &str, needle: &str, n: usize) -> String {
        let text = format!("notify:\n{}", indent(yaml));
        let (offset, _) = text.match_indices(needle).nth(n).expect("needle in text");
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        format!(
            "s.yaml:{}:{}: ",
            before.matches('\n').count() + 1,
            before[line_start..].chars().count() + 1
        )
    }

    fn indent(s: &str) -> String {
        s.lines().map(|l| format!("  {l}\n")).collect()
    }

    const BASE: &str = "\
smtp: {host: 127.0.0.1, port: 2525, tls: none, from: 'yunwei <a@example.org>'}
receivers:
  - name: ops
    email: [{to: [ops@example.org]}]
  - name: dba
    email: [{to: [dba@example.org], language: en}]
    fallback: ops
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 10s
  routes:
    - matchers: ['team=\"db\"']
      receiver: dba
      continue: true
      group_interval: 1m
    - matchers: ['severity=~\"critical|page\"']
      routes:
        - matchers: ['env=\"prod\"']
";

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250);
        assert_eq!(parse_duration("0").unwrap(), 0);
        for bad in ["", "5", "m", "5x", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routes_inherit_and_match_with_continue() {
        let c = check(BASE).unwrap();
        let root = c.route.as_ref().unwrap();
        let ids = |l: &LabelSet| -> Vec<(String, String)> {
            root.matching(l)
                .iter()
                .map(|r| (r.id.clone(), r.receiver.clone()))
                .collect()
        };
        // No child matches: the root.
        assert_eq!(
            ids(&ls(&[("alertname", "X")])),
            [("0".into(), "ops".into())]
        );
        // team=db continues to the severity branch, whose prod child is deepest.
        assert_eq!(
            ids(&ls(&[
                ("team", "db"),
                ("severity", "page"),
                ("env", "prod")
            ])),
            [("0.0".into(), "dba".into()), ("0.1.0".into(), "ops".into())]
        );
        // severity matches but env does not: the severity node itself.
        assert_eq!(
            ids(&ls(&[("severity", "critical")])),
            [("0.1".into(), "ops".into())]
        );
        let dba = root.find("0.0").unwrap();
        assert_eq!(dba.group_wait_ms, 10_000); // inherited
        assert_eq!(dba.group_interval_ms, 60_000); // own
        assert_eq!(dba.group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(
            root.find("0.1.0").unwrap().repeat_interval_ms,
            4 * 3_600_000
        );
    }

    #[test]
    fn every_dangling_reference_is_reported_at_the_name() {
        let yaml = "receivers:\n  - name: ops\n    webhook: [{url: 'http://x'}]\n    fallback: nobody\nroute:\n  receiver: ghost\n  mute_time_intervals: [nights]\n";
        let e = check(yaml).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].starts_with(&at(yaml, "nobody", 0)) && e[0].contains("\"nobody\""),
            "{e:?}"
        );
        assert!(
            e[1].starts_with(&at(yaml, "ghost", 0)) && e[1].contains("\"ghost\""),
            "{e:?}"
        );
        assert!(
            e[2].starts_with(&at(yaml, "nights", 0)) && e[2].contains("\"nights\""),
            "{e:?}"
        );
    }

    #[test]
    fn problems_deep_in_the_section_name_line_and_column() {
        // A receiver defined twice, and a route three levels down naming one never defined.
        let yaml = "\
receivers:
  - name: ops
    webhook: [{url: 'http://x'}]
  - name: dba
    webhook: [{url: 'http://y'}]
  - name: ops
    webhook: [{url: 'http://z'}]
route:
  receiver: ops
  routes:
    - matchers: ['team=\"db\"']
      routes:
        - matchers: ['env=\"prod\"']
          receiver: dbas
";
        let e = check(yaml).unwrap_err();
        assert_eq!(
            e,
            [
                format!(
                    "{}notify.receivers: duplicate receiver \"ops\"",
                    at(yaml, "ops", 1)
                ),
                format!(
                    "{}notify.route: receiver \"dbas\" is not defined",
                    at(yaml, "dbas", 0)
                ),
            ]
        );
        // An inherited receiver is reported once, where it is written.
        let e = check(&yaml.replace("receiver: ops\n  routes", "receiver: nobody\n  routes"))
            .unwrap_err();
        assert_eq!(
            e.iter().filter(|m| m.contains("\"nobody\"")).count(),
            1,
            "{e:?}"
        );
    }

    #[test]
    fn bad_values_name_line_and_column() {
        // Deserialization errors are at the value, with its path.
        let yaml = "route:\n  receiver: ops\n  group_wait: soon\n";
        let e = check(yaml).unwrap_err();
        assert!(
            e[0].starts_with(&format!(
                "{}route.group_wait: \"soon\"",
                at(yaml, "soon", 0)
            )),
            "{e:?}"
        );
        let yaml = "route:\n  receiver: ops\n  routes:\n    - matchers: ['a=~\"(\"']\n";
        let e = check(yaml).unwrap_err();
        assert!(
            e[0].starts_with(&format!(
                "{}route.routes[0].matchers[0]: invalid regex",
                at(yaml, "'a=~", 0)
            )),
            "{e:?}"
        );
    }

    #[test]
    fn acknowledge_links_last_hours_not_weeks() {
        let yaml =
            "route: {receiver: ops}\nreceivers: [{name: ops, webhook: [{url: 'http://h'}]}]\n";
        assert_eq!(check(yaml).unwrap().ack_link_ttl_ms, 12 * 3_600_000);
        let yaml = "route: {receiver: ops}\nreceivers: [{name: ops, webhook: [{url: 'http://h'}]}]\nack_link_ttl: 2h30m\n";
        assert_eq!(check(yaml).unwrap().ack_link_ttl_ms, 150 * 60_000);
        let yaml = "route: {receiver: ops}\nreceivers: [{name: ops, webhook: [{url: 'http://h'}]}]\nack_link_ttl: 30d\n";
        let e = check(yaml).unwrap_err();
        assert!(
            e[0].starts_with(&format!(
                "{}notify.ack_link_ttl: must be between 1m and 7d",
                at(yaml, "30d", 0)
            )),
            "{e:?}"
        );
    }

    #[test]
    fn oncall_recipients_resolve_and_unknown_schedules_are_reported() {
        let yaml = "smtp: {host: h, from: 'a@example.org'}\nreceivers:\n  - name: ops\n    email: [{to: ['oncall:dba', boss@example.org]}]\nroute: {receiver: ops}\noncall_schedules:\n  - name: dba\n    layers: [{members: [a@example.org, b@example.org], start: '2026-01-05T09:00:00+08:00', shift: 1d}]\n";
        let c = check(yaml).unwrap();
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-06T10:00:00+08:00")
            .unwrap()
            .timestamp_millis();
        let to = &c.receivers[0].email[0].to;
        assert_eq!(
            c.resolve_recipients(to, t),
            ["b@example.org", "boss@example.org"]
        );
        assert_eq!(
            c.resolve_recipients(to, 0),
            ["boss@example.org"],
            "nobody before the start"
        );
        let yaml = yaml.replace("'oncall:dba'", "'oncall:web'");
        let e = check(&yaml).unwrap_err();
        assert!(
            e[0].starts_with(&at(&yaml, "'oncall:web'", 0)) && e[0].contains("\"web\""),
            "{e:?}"
        );
    }

    #[test]
    fn cidr() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.2.3.4".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry::default();
        let v: Vec<i64> = (1..=11).map(|n| r.backoff_ms(n)).collect();
        assert_eq!(&v[..4], &[1_000, 2_000, 4_000, 8_000]);
        assert_eq!(v[10], 300_000);
    }
}
