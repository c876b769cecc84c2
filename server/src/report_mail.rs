//! Email delivery of scheduled reports to each contract's `report:` recipients.
//!
//! When the schedule archives a report of a contract with recipients it queues one
//! `report_deliveries` row (the recipients as they are then; the report id is the key, so a
//! report is queued once however often the schedule runs). [`deliver_due`] sends due rows
//! through the server's `notify.smtp` with the archived files attached byte for byte, records
//! every attempt in `report_delivery_attempts` (time, SMTP code, error) and retries failures
//! with the notification backoff (`notify.retry`) for seven days. The queue lives in the
//! store, so a send that failed before a restart is retried after it, and a delivered report
//! is never sent again. A row is leased before sending (a crash mid-send retries it when the
//! lease ends, which can repeat that one send — as for alert mail). Without `notify.smtp` the
//! row waits, with a warning logged once and the reason shown in the report listing.

use std::collections::BTreeMap;

use lettre::{
    Message,
    message::{Attachment, Mailbox, MultiPart, SinglePart, header::ContentType},
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use yunwei_reports::{Fixed, Lang, i18n};

use crate::{
    notify::{deliver, message::one_line},
    reports::{self, ArchivedReport, ReportFormat, Reports},
    store::{Store, report_mail::DeliveryAttemptRow},
};

/// How long a send in progress holds its row; a crash mid-send retries it after this.
const LEASE_MS: i64 = 300_000;
/// Failed sends are retried for this long after the row was queued.
pub const GIVE_UP_MS: i64 = 7 * 86_400_000;
/// Shown while `notify.smtp` is missing.
pub const NO_SMTP: &str = "notify.smtp is not configured: the mail waits until it is";

/// One attempt at mailing a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRow {
    pub attempt: i64,
    pub attempted_ms: i64,
    pub ok: bool,
    /// SMTP reply code, when the server answered.
    pub code: Option<i64>,
    pub error: Option<String>,
    /// The recipients.
    pub target: String,
}

/// The mail of one archived report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub created_ms: i64,
    /// `pending`, `sent`, or `failed` (given up after [`GIVE_UP_MS`]).
    pub status: String,
    /// When the next attempt is due (while pending).
    pub due_ms: i64,
    pub sent_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptRow>,
}

/// Queues the mail of archived report `report_id`; `false` when it was queued before.
pub async fn enqueue(
    store: &Store,
    report_id: i64,
    contract_id: &str,
    to: &[String],
    cc: &[String],
    note: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<bool> {
    Ok(store
        .enqueue_report_delivery(
            report_id,
            contract_id,
            &serde_json::to_string(to)?,
            &serde_json::to_string(cc)?,
            note,
            now_ms,
        )
        .await?)
}

fn addrs(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Deliveries with their attempts, by report id; `only` restricts to one report.
pub async fn load(store: &Store, only: Option<i64>) -> anyhow::Result<BTreeMap<i64, Delivery>> {
    let rows = store.report_deliveries(only).await?;
    let mut out: BTreeMap<i64, Delivery> = rows
        .into_iter()
        .map(|r| {
            (
                r.report_id,
                Delivery {
                    to: addrs(&r.to_addrs),
                    cc: addrs(&r.cc_addrs),
                    created_ms: r.created_ms,
                    status: r.status,
                    due_ms: r.due_ms,
                    sent_ms: r.sent_ms,
                    last_error: r.last_error,
                    attempts: Vec::new(),
                },
            )
        })
        .collect();
    let attempts = store.report_delivery_attempts(only).await?;
    for r in attempts {
        if let Some(d) = out.get_mut(&r.report_id) {
            d.attempts.push(AttemptRow {
                attempt: r.attempt,
                attempted_ms: r.attempted_ms,
                ok: r.ok,
                code: r.code,
                error: r.error,
                target: r.target,
            });
        }
    }
    Ok(out)
}

/// Holds pending row `report_id` (due at `due_ms`) for a send; `false` when another sender
/// took it first.
async fn lease(store: &Store, report_id: i64, due_ms: i64, now_ms: i64) -> anyhow::Result<bool> {
    Ok(store
        .lease_report_delivery(report_id, due_ms, now_ms + LEASE_MS)
        .await?)
}

/// What one call of [`deliver_due`] did with one report.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub report_id: i64,
    pub attempt: deliver::Attempt,
}

/// Mails every queued report due at `now_ms` (nothing while `notify.smtp` is missing) and
/// records each attempt.
pub async fn deliver_due(state: &Reports, now_ms: i64) -> anyhow::Result<Vec<Sent>> {
    let Some(smtp) = &state.config.notify.smtp else {
        return Ok(Vec::new());
    };
    let due = state.store.due_report_deliveries(now_ms).await?;
    let mut done = Vec::new();
    for r in &due {
        let (report_id, created_ms, due_ms, attempts) =
            (r.report_id, r.created_ms, r.due_ms, r.attempts);
        if !lease(&state.store, report_id, due_ms, now_ms).await? {
            continue;
        }
        let (to, cc) = (addrs(&r.to_addrs), addrs(&r.cc_addrs));
        let target = to.iter().chain(&cc).cloned().collect::<Vec<_>>().join(",");
        let attempt = match build(state, smtp, report_id, &to, &cc).await {
            Ok(msg) => deliver::send_mail(smtp, msg, target).await,
            Err(e) => deliver::Attempt::fail(target, None, format!("{e:#}")),
        };
        let n = attempts + 1;
        let (status, next_due) = if attempt.ok {
            ("sent", now_ms)
        } else if now_ms - created_ms >= GIVE_UP_MS {
            ("failed", now_ms)
        } else {
            (
                "pending",
                now_ms + state.config.notify.retry.backoff_ms(n as u32),
            )
        };
        state
            .metrics
            .report_mail_attempts
            .with_label_values(&[if attempt.ok { "ok" } else { "error" }])
            .inc();
        if status == "failed" {
            state.metrics.report_mail_given_up.inc();
        }
        if attempt.ok {
            tracing::info!(report = report_id, to = %attempt.target, attempt = n, "report mailed");
        } else {
            tracing::warn!(
                report = report_id,
                to = %attempt.target,
                attempt = n,
                status,
                error = attempt.error.as_deref().unwrap_or(""),
                "report mail failed"
            );
        }
        record(
            &state.store,
            report_id,
            n,
            now_ms,
            &attempt,
            status,
            next_due,
        )
        .await?;
        done.push(Sent { report_id, attempt });
    }
    Ok(done)
}

async fn record(
    store: &Store,
    report_id: i64,
    attempt: i64,
    now_ms: i64,
    a: &deliver::Attempt,
    status: &str,
    due_ms: i64,
) -> anyhow::Result<()> {
    let row = DeliveryAttemptRow {
        report_id,
        attempt,
        attempted_ms: now_ms,
        ok: a.ok,
        code: a.code,
        error: a.error.clone(),
        target: a.target.clone(),
    };
    store
        .record_report_delivery_attempt(&row, status, due_ms)
        .await?;
    Ok(())
}

/// The archived report's mail: text body and every archived file attached.
async fn build(
    state: &Reports,
    smtp: &crate::notify::config::Smtp,
    report_id: i64,
    to: &[String],
    cc: &[String],
) -> anyhow::Result<Message> {
    let store = &state.store;
    let a = reports::get(store, report_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("report {report_id} is not in the archive"))?;
    let envelope = reports::envelope(store, report_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("report {report_id} has no envelope"))?;
    let envelope: serde_json::Value = serde_json::from_slice(&envelope)?;
    let mut files = Vec::new();
    for name in &a.formats {
        let Some(f) = ReportFormat::parse(name) else {
            continue;
        };
        let bytes = reports::file(store, report_id, f)
            .await?
            .ok_or_else(|| anyhow::anyhow!("report {report_id} has no {name} file"))?;
        files.push((f, bytes));
    }
    let cover = &envelope["report"]["cover"];
    let info = MailInfo {
        archived: &a,
        contract_name: cover["contract_name"].as_str().unwrap_or(&a.contract_id),
        utc_offset_minutes: cover["utc_offset_minutes"]
            .as_i64()
            .and_then(|m| i32::try_from(m).ok())
            .unwrap_or(480),
        files: files
            .iter()
            .map(|(f, b)| {
                (
                    reports::file_name(&a, *f),
                    b.len(),
                    hex::encode(Sha256::digest(b)),
                )
            })
            .collect(),
    };
    let lang = reports::parse_lang(&a.lang).unwrap_or(Lang::ZhCn);
    let mut b = Message::builder()
        .from(smtp.from.parse::<Mailbox>()?)
        .subject(subject(&info, lang));
    for t in to {
        b = b.to(t.parse::<Mailbox>()?);
    }
    for t in cc {
        b = b.cc(t.parse::<Mailbox>()?);
    }
    let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(text_body(&info, lang)));
    for (f, bytes) in files {
        let ct = ContentType::parse(f.content_type())?;
        parts = parts.singlepart(Attachment::new(reports::file_name(&a, f)).body(bytes, ct));
    }
    Ok(b.multipart(parts)?)
}

/// What the mail text says about a report.
pub struct MailInfo<'a> {
    pub archived: &'a ArchivedReport,
    pub contract_name: &'a str,
    pub utc_offset_minutes: i32,
    /// Attached files: name, size, SHA-256 (hex).
    pub files: Vec<(String, usize, String)>,
}

/// `【绩效考核报告】NAME 2026-10 / Performance assessment report`, or the English one.
pub fn subject(m: &MailInfo<'_>, lang: Lang) -> String {
    let a = m.archived;
    let name = one_line(m.contract_name);
    let v = if a.version > 1 {
        format!(" v{}", a.version)
    } else {
        String::new()
    };
    match lang {
        Lang::ZhCn => format!(
            "【绩效考核报告】{name} {}{v} / Performance assessment report",
            one_line(&a.period)
        ),
        Lang::En => format!(
            "[Performance assessment report] {name} {}{v}",
            one_line(&a.period)
        ),
    }
}

/// The plain-text body: period, score, grade, the attached files and how to verify them; in
/// zh-CN followed by English, or in English only.
pub fn text_body(m: &MailInfo<'_>, lang: Lang) -> String {
    let mut s = String::new();
    if lang == Lang::ZhCn {
        s.push_str(&body_in(m, Lang::ZhCn));
        s.push_str("\n----------------------------------------\n\n");
    }
    s.push_str(&body_in(m, Lang::En));
    s
}

fn body_in(m: &MailInfo<'_>, lang: Lang) -> String {
    use std::fmt::Write as _;
    let a = m.archived;
    let zh = lang == Lang::ZhCn;
    let off = m.utc_offset_minutes;
    let from = i18n::date(a.start_ms, off);
    let to = i18n::date(a.end_ms - 1, off);
    let grade = reports::grade_from_name(&a.grade).label(lang);
    let score = Fixed(a.score_milli);
    let name = one_line(m.contract_name);
    let mut s = String::new();
    if zh {
        let _ = writeln!(s, "您好：\n");
        let _ = writeln!(
            s,
            "附件为「{name}」{} 绩效考核报告（第 {} 版），由 yunwei 于考核期结束后按计划生成并归档。\n",
            a.period, a.version
        );
        let _ = writeln!(s, "考核期间：{from} 至 {to}（{}）", i18n::offset_label(off));
        let _ = writeln!(s, "得分：{score}");
        let _ = writeln!(s, "等级：{grade}");
        if a.provisional {
            let _ = writeln!(s, "状态：暂定（数据或申诉期尚未结束）");
        }
        let _ = writeln!(s, "生成时间：{}", i18n::datetime(a.generated_ms, off));
        let _ = writeln!(
            s,
            "\n报告数据 SHA-256（已签名，JSON 报告中 integrity.sha256）：\n  {}",
            a.sha256
        );
        let _ = writeln!(s, "\n附件（文件名、字节数、文件 SHA-256）：");
    } else {
        let _ = writeln!(s, "Hello,\n");
        let _ = writeln!(
            s,
            "Attached is the performance assessment report of \"{name}\" for {} (version {}), \
             made and archived by yunwei on schedule after the period closed.\n",
            a.period, a.version
        );
        let _ = writeln!(s, "Period: {from} to {to} ({})", i18n::offset_label(off));
        let _ = writeln!(s, "Score: {score}");
        let _ = writeln!(s, "Grade: {grade}");
        if a.provisional {
            let _ = writeln!(s, "Status: provisional (data or appeal window still open)");
        }
        let _ = writeln!(s, "Generated: {}", i18n::datetime(a.generated_ms, off));
        let _ = writeln!(
            s,
            "\nSHA-256 of the signed report data (integrity.sha256 in the JSON report):\n  {}",
            a.sha256
        );
        let _ = writeln!(s, "\nAttached (file name, bytes, SHA-256 of the file):");
    }
    for (n, size, sha) in &m.files {
        let _ = writeln!(s, "  {n}  {size}  {sha}");
    }
    let json = m
        .files
        .iter()
        .find(|(n, _, _)| n.ends_with(".json"))
        .or(m.files.first())
        .map_or("FILE", |(n, _, _)| n.as_str());
    if zh {
        let _ = writeln!(
            s,
            "\n校验：任一附件都带有签名。用服务器提供的报告公钥 report-signing.pub 执行\n  \
             yunwei-server report verify --public-key report-signing.pub {json}\n\
             输出 OK 表示签名有效、所示数据即签名数据；否则说明原因。"
        );
        let _ = writeln!(s, "\n此邮件由系统自动发送，请勿直接回复。");
    } else {
        let _ = writeln!(
            s,
            "\nVerify: every attached file carries the signature. With the server's report \
             public key report-signing.pub, run\n  \
             yunwei-server report verify --public-key report-signing.pub {json}\n\
             It prints OK when the signature holds and the figures shown are the signed ones; \
             otherwise it says why."
        );
        let _ = writeln!(
            s,
            "\nThis mail was sent automatically; please do not reply to it."
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archived() -> ArchivedReport {
        ArchivedReport {
            id: 7,
            contract_id: "c1".into(),
            period: "2026-02".into(),
            start_ms: 1_769_875_200_000, // 2026-02-01 00:00 +08:00
            end_ms: 1_772_294_400_000,   // 2026-03-01 00:00 +08:00
            version: 1,
            lang: "zh-CN".into(),
            generated_ms: 1_772_301_900_000,
            score_milli: 95_500,
            grade: "excellent".into(),
            provisional: false,
            sha256: "ab".repeat(32),
            origin: "schedule".into(),
            formats: vec!["json".into()],
            evidence_file: true,
            delivery: None,
            lifecycle: None,
        }
    }

    #[test]
    fn addresses_contracts_accept_are_mailboxes_to_lettre() {
        for a in [
            "a@example.org",
            "li.si+report@mail.example.gov.cn",
            "ops@intranet",
            "x@政务.cn",
        ] {
            assert!(yunwei_sla::contract::valid_email(a), "{a}");
            assert!(a.parse::<Mailbox>().is_ok(), "{a}");
        }
    }

    #[test]
    fn subject_and_body_name_the_period_score_and_how_to_verify() {
        let a = archived();
        let m = MailInfo {
            archived: &a,
            contract_name: "政务云\r\nBcc: x@example.com",
            utc_offset_minutes: 480,
            files: vec![("c1-2026-02-v1.json".into(), 10, "cd".repeat(32))],
        };
        let s = subject(&m, Lang::ZhCn);
        assert_eq!(
            s,
            "【绩效考核报告】政务云  Bcc: x@example.com 2026-02 / Performance assessment report"
        );
        let b = text_body(&m, Lang::ZhCn);
        for want in [
            "考核期间：2026-02-01 至 2026-02-28（UTC+08:00）",
            "得分：95.5",
            "等级：优秀",
            "Grade: Excellent",
            &"ab".repeat(32),
            "yunwei-server report verify --public-key report-signing.pub c1-2026-02-v1.json",
        ] {
            assert!(b.contains(want), "{want:?} not in\n{b}");
        }
        let en = text_body(&m, Lang::En);
        assert!(!en.contains("得分"), "{en}");
        assert!(subject(&m, Lang::En).starts_with("[Performance assessment report] "));
    }
}
