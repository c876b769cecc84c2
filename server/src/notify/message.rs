//! Message text for a notification, in zh-CN and en: the email subject, plain-text and HTML
//! bodies, and robot markdown. Label values and annotations are text: CR/LF never reach a
//! header, HTML is escaped, and markdown/`@` mentions in robot messages are neutralised. Pure.

use std::fmt::Write as _;

use super::{
    config::Lang,
    engine::{AlertEntry, Notification, Reason},
};

/// Replaces control characters (CR, LF, tabs...) with spaces: for headers and one-line text.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Escapes `& < > " '` for HTML.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Makes text inert in robot markdown: markdown punctuation is backslash-escaped, `@` gets a
/// zero-width joiner so it mentions nobody, and line breaks become spaces.
pub fn markdown_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line(s).chars() {
        match c {
            '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '(' | ')' | '#' | '+' | '-' | '!'
            | '|' | '<' | '>' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '@' => out.push_str("@\u{200b}"),
            _ => out.push(c),
        }
    }
    out
}

/// `2025-10-09 10:00:00 +08:00`.
pub fn local_time(ms: i64) -> String {
    let tz = chrono::FixedOffset::east_opt(8 * 3600).expect("+8 is valid");
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .unwrap_or_default()
}

fn alertname(n: &Notification) -> String {
    n.firing
        .iter()
        .chain(&n.resolved)
        .find_map(|a| a.labels.get("alertname").cloned())
        .unwrap_or_else(|| "alert".into())
}

/// The subject line, e.g. `[告警 2] HostDown instance=web1` or `[RESOLVED] HostDown`.
pub fn subject(n: &Notification, lang: Lang) -> String {
    let zh = lang == Lang::ZhCn;
    let mut s = String::new();
    if n.reason == Reason::Escalation {
        if zh {
            let _ = write!(s, "[升级 第{}级] ", n.tier);
        } else {
            let _ = write!(s, "[ESCALATED tier {}] ", n.tier);
        }
    }
    if n.firing.is_empty() {
        s.push_str(if zh { "[已恢复] " } else { "[RESOLVED] " });
    } else if zh {
        let _ = write!(s, "[告警 {}] ", n.firing.len());
    } else {
        let _ = write!(s, "[FIRING:{}] ", n.firing.len());
    }
    s.push_str(&alertname(n));
    for (k, v) in &n.group_labels {
        if k != "alertname" {
            let _ = write!(s, " {k}={v}");
        }
    }
    one_line(&s)
}

struct Words {
    firing: &'static str,
    resolved: &'static str,
    since: &'static str,
    ended: &'static str,
    ack: &'static str,
    footer: &'static str,
}

fn words(lang: Lang) -> Words {
    match lang {
        Lang::ZhCn => Words {
            firing: "告警中",
            resolved: "已恢复",
            since: "开始时间",
            ended: "恢复时间",
            ack: "确认告警（认领处理）",
            footer: "此邮件由 yunwei 运维监控自动发送。",
        },
        Lang::En => Words {
            firing: "Firing",
            resolved: "Resolved",
            since: "Since",
            ended: "Resolved at",
            ack: "Acknowledge this alert",
            footer: "Sent automatically by yunwei monitoring.",
        },
    }
}

fn labels_text(a: &AlertEntry) -> String {
    a.labels
        .iter()
        .map(|(k, v)| format!("{k}={}", one_line(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn summary(a: &AlertEntry, lang: Lang) -> Option<&String> {
    let localized = match lang {
        Lang::ZhCn => ["summary_zh", "summary_zh_CN"],
        Lang::En => ["summary_en", "summary_en"],
    };
    localized
        .iter()
        .find_map(|k| a.annotations.get(*k))
        .or_else(|| a.annotations.get("summary"))
}

/// The plain-text body. `ack_url` is the signed acknowledge link, if any.
pub fn text_body(n: &Notification, lang: Lang, ack_url: Option<&str>) -> String {
    let w = words(lang);
    let mut s = String::new();
    for (title, list) in [(w.firing, &n.firing), (w.resolved, &n.resolved)] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(s, "{title} ({}):", list.len());
        for a in list {
            let _ = writeln!(s, "- {}", labels_text(a));
            if let Some(sum) = summary(a, lang) {
                let _ = writeln!(s, "  {}", one_line(sum));
            }
            if let Some(d) = a.annotations.get("description") {
                let _ = writeln!(s, "  {}", one_line(d));
            }
            let _ = writeln!(s, "  {}: {}", w.since, local_time(a.starts_at_ms));
            if list == &n.resolved
                && let Some(e) = a.ends_at_ms
            {
                let _ = writeln!(s, "  {}: {}", w.ended, local_time(e));
            }
        }
        s.push('\n');
    }
    if let Some(u) = ack_url {
        let _ = writeln!(s, "{}: {u}\n", w.ack);
    }
    s.push_str(w.footer);
    s.push('\n');
    s
}

/// The HTML body; every inserted value is escaped.
pub fn html_body(n: &Notification, lang: Lang, ack_url: Option<&str>) -> String {
    let w = words(lang);
    let mut s = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:sans-serif\">",
    );
    let _ = write!(s, "<h2>{}</h2>", html_escape(&subject(n, lang)));
    for (title, color, list) in [
        (w.firing, "#c0392b", &n.firing),
        (w.resolved, "#27ae60", &n.resolved),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(
            s,
            "<h3 style=\"color:{color}\">{title} ({})</h3><ul>",
            list.len()
        );
        for a in list {
            let _ = write!(s, "<li><code>{}</code>", html_escape(&labels_text(a)));
            if let Some(sum) = summary(a, lang) {
                let _ = write!(s, "<br>{}", html_escape(sum));
            }
            if let Some(d) = a.annotations.get("description") {
                let _ = write!(s, "<br>{}", html_escape(d));
            }
            let _ = write!(
                s,
                "<br>{}: {}</li>",
                w.since,
                html_escape(&local_time(a.starts_at_ms))
            );
        }
        s.push_str("</ul>");
    }
    if let Some(u) = ack_url {
        let _ = write!(s, "<p><a href=\"{}\">{}</a></p>", html_escape(u), w.ack);
    }
    let _ = write!(s, "<p style=\"color:#888\">{}</p></body></html>", w.footer);
    s
}

/// Robot markdown (DingTalk, WeCom), every value neutralised.
pub fn robot_markdown(n: &Notification, lang: Lang, ack_url: Option<&str>) -> String {
    let w = words(lang);
    let mut s = format!("### {}\n\n", markdown_text(&subject(n, lang)));
    for (title, list) in [(w.firing, &n.firing), (w.resolved, &n.resolved)] {
        for a in list {
            let _ = write!(s, "- **{title}** {}", markdown_text(&labels_text(a)));
            if let Some(sum) = summary(a, lang) {
                let _ = write!(s, " — {}", markdown_text(sum));
            }
            s.push('\n');
        }
    }
    if let Some(u) = ack_url {
        let _ = write!(s, "\n[{}]({u})\n", w.ack);
    }
    s
}

/// The title of a digest of `count` notifications to a rate-limited robot.
pub fn digest_title(count: usize, lang: Lang) -> String {
    match lang {
        Lang::ZhCn => format!("[汇总] {count} 条告警通知（机器人限流，合并发送）"),
        Lang::En => format!("[DIGEST] {count} notifications (robot rate limit, sent together)"),
    }
}

/// Robot markdown for several notifications in one message, each with its own acknowledge link.
pub fn digest_markdown(items: &[(Notification, Option<String>)], lang: Lang) -> String {
    let mut s = format!(
        "### {}

",
        markdown_text(&digest_title(items.len(), lang))
    );
    for (n, link) in items {
        s.push('#');
        s.push_str(&robot_markdown(n, lang, link.as_deref()));
        s.push('\n');
    }
    s
}

/// Plain text for several notifications in one message (Feishu).
pub fn digest_text(items: &[(Notification, Option<String>)], lang: Lang) -> String {
    let mut s = digest_title(items.len(), lang);
    for (n, link) in items {
        let _ = write!(
            s,
            "\n\n———\n{}\n{}",
            subject(n, lang),
            text_body(n, lang, link.as_deref())
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn note(value: &str) -> Notification {
        let labels: BTreeMap<String, String> = [
            ("alertname".to_string(), "HostDown".to_string()),
            ("instance".to_string(), value.to_string()),
        ]
        .into();
        Notification {
            group_key: "k".into(),
            group_id: "g".into(),
            receiver: "ops".into(),
            reason: Reason::Group,
            tier: 1,
            status: "firing".into(),
            group_labels: labels.clone(),
            firing: vec![AlertEntry {
                labels,
                annotations: [("summary".to_string(), format!("{value} is down"))].into(),
                starts_at_ms: 1_760_000_000_000,
                ends_at_ms: None,
                resolved: false,
            }],
            resolved: vec![],
            created_ms: 0,
            episode_ms: 0,
        }
    }

    #[test]
    fn subjects_in_both_languages() {
        let n = note("web1");
        assert_eq!(subject(&n, Lang::ZhCn), "[告警 1] HostDown instance=web1");
        assert_eq!(subject(&n, Lang::En), "[FIRING:1] HostDown instance=web1");
        let mut r = n.clone();
        r.resolved = std::mem::take(&mut r.firing);
        assert_eq!(subject(&r, Lang::En), "[RESOLVED] HostDown instance=web1");
        let mut e = n;
        e.reason = Reason::Escalation;
        e.tier = 2;
        assert!(subject(&e, Lang::ZhCn).starts_with("[升级 第2级] [告警 1]"));
    }

    #[test]
    fn a_digest_carries_every_notification_and_its_link() {
        let items = vec![
            (note("web1"), Some("http://h/ack/one".to_string())),
            (note("web2 **@all**"), None),
            (note("web3"), Some("http://h/ack/three".to_string())),
        ];
        let md = digest_markdown(&items, Lang::ZhCn);
        assert!(md.starts_with("### \\[汇总\\] 3 条告警通知"), "{md}");
        for needle in [
            "instance=web1",
            "instance=web3",
            "(http://h/ack/one)",
            "(http://h/ack/three)",
        ] {
            assert!(md.contains(needle), "{needle} in {md}");
        }
        assert!(!md.contains("**@all**"), "{md}");
        let text = digest_text(&items, Lang::En);
        assert!(text.starts_with("[DIGEST] 3 notifications"), "{text}");
        assert_eq!(text.matches("[FIRING:1] HostDown").count(), 3, "{text}");
        assert!(text.contains("http://h/ack/three"), "{text}");
    }

    #[test]
    fn hostile_label_values_stay_text() {
        let evil = "x\r\nBcc: victim@example.org\n<script>alert(1)</script> **@all** [a](http://e)";
        let n = note(evil);
        let subj = subject(&n, Lang::En);
        assert!(!subj.contains(['\r', '\n']), "{subj:?}");
        let html = html_body(&n, Lang::En, Some("http://h/ack/t?a=1&b=2"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("href=\"http://h/ack/t?a=1&amp;b=2\""));
        let text = text_body(&n, Lang::En, None);
        assert!(!text.contains("\nBcc:"), "{text}");
        let md = robot_markdown(&n, Lang::ZhCn, None);
        assert!(!md.contains("**@all**") && !md.contains("@all"), "{md}");
        assert!(md.contains("\\*\\*@\u{200b}all\\*\\*"), "{md}");
        assert!(!md.contains("[a](http://e)"), "{md}");
    }
}
