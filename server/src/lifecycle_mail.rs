//! Mail to the party that must act next in an assessment's lifecycle (contracts with
//! `lifecycle.mail`): the vendor when the draft is issued and when an appeal is decided, the
//! office when an appeal awaits review, a party whose signature is due. Each message is
//! zh-CN then English with a link to the console's appeals page
//! (`{notify.external_url}/#/appealsPage/{contract}/{period}`). Messages are queued in
//! `lifecycle_mail` and sent by the report loop ([`deliver_due`]) through `notify.smtp`, retried with `notify.retry`'s
//! backoff for [`crate::report_mail::GIVE_UP_MS`], so a restart neither loses nor repeats one.
//! `now` is a parameter.

use lettre::{
    Message,
    message::{Mailbox, header::ContentType},
};
use yunwei_sla::contract::SignOffRole;

use crate::{
    contracts::LoadedContract,
    notify::{deliver, message::one_line},
    reports::Reports,
    store::{Store, appeals::LifecycleMailRow},
};

/// What happened, for the subject and the row's `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The draft was issued: the vendor may appeal.
    Draft,
    /// An appeal was filed: the office reviews it.
    Appeal,
    /// An appeal was decided: the vendor is told.
    Decision,
    /// A signature is due.
    SignOff,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Draft => "draft",
            Step::Appeal => "appeal",
            Step::Decision => "decision",
            Step::SignOff => "sign_off",
        }
    }

    fn title(self) -> (&'static str, &'static str) {
        match self {
            Step::Draft => ("考核初稿已发布，可申诉", "draft issued, open for appeal"),
            Step::Appeal => ("新申诉待复核", "an appeal awaits review"),
            Step::Decision => ("申诉已复核", "an appeal was decided"),
            Step::SignOff => ("请签认考核结果", "your sign-off is due"),
        }
    }
}

/// The console page a message links to.
pub fn console_link(external_url: &str, contract_id: &str, period: &str) -> String {
    format!("{external_url}/#/appealsPage/{contract_id}/{period}")
}

/// Queues a message to `party` of `c` about `period` (nothing when the party has no
/// addresses); `zh` and `en` say what happened and what to do.
#[allow(clippy::too_many_arguments)]
pub async fn notify(
    store: &Store,
    external_url: &str,
    c: &LoadedContract,
    period: &str,
    step: Step,
    party: SignOffRole,
    zh: &str,
    en: &str,
    now_ms: i64,
) -> sqlx::Result<()> {
    let Some(l) = &c.contract.lifecycle else {
        return Ok(());
    };
    let to = l.mail.of(party);
    if to.is_empty() {
        return Ok(());
    }
    let (tzh, ten) = step.title();
    let name = one_line(&c.contract.name);
    let period = one_line(period);
    let link = console_link(external_url, &c.contract.id, &period);
    let subject = format!("【考核流程】{name} {period}：{tzh} / Assessment {period}: {ten}");
    let body = format!(
        "{name} {period}：{tzh}。\n{zh}\n请在控制台处理：{link}\n\n\
         {name} {period}: {ten}.\n{en}\nOpen the console: {link}\n"
    );
    store
        .enqueue_lifecycle_mail(&LifecycleMailRow {
            id: 0,
            contract_id: c.contract.id.clone(),
            period,
            step: step.name().into(),
            to_addrs: serde_json::to_string(to).expect("strings serialize"),
            subject,
            body,
            created_ms: now_ms,
            status: "pending".into(),
            due_ms: now_ms,
            attempts: 0,
            sent_ms: None,
            last_error: None,
        })
        .await
}

/// Sends the lifecycle mail due at `now_ms`; returns how many were accepted by the server.
/// Without `notify.smtp` the rows wait.
pub async fn deliver_due(state: &Reports, now_ms: i64) -> anyhow::Result<usize> {
    let Some(smtp) = &state.config.notify.smtp else {
        return Ok(0);
    };
    let mut sent = 0;
    for r in state.store.due_lifecycle_mail(now_ms).await? {
        // A lease past any send's timeout: another replica skips the row meanwhile.
        if !state
            .store
            .lease_lifecycle_mail(r.id, r.due_ms, now_ms + 300_000)
            .await?
        {
            continue;
        }
        let to: Vec<String> = serde_json::from_str(&r.to_addrs).unwrap_or_default();
        let attempt = match message(smtp, &to, &r) {
            Ok(msg) => deliver::send_mail(smtp, msg, to.join(",")).await,
            Err(e) => deliver::Attempt::fail(to.join(","), None, format!("{e:#}")),
        };
        let n = r.attempts + 1;
        let (status, due, sent_ms) = if attempt.ok {
            sent += 1;
            ("sent", now_ms, Some(now_ms))
        } else if now_ms - r.created_ms >= crate::report_mail::GIVE_UP_MS {
            ("failed", now_ms, None)
        } else {
            (
                "pending",
                now_ms
                    + state
                        .config
                        .notify
                        .retry
                        .backoff_ms(u32::try_from(n).unwrap_or(u32::MAX)),
                None,
            )
        };
        if !attempt.ok {
            tracing::warn!(
                id = r.id,
                step = %r.step,
                attempt = n,
                status,
                error = attempt.error.as_deref().unwrap_or(""),
                "lifecycle mail failed"
            );
        }
        if let Err(e) = state
            .store
            .record_lifecycle_mail(r.id, status, due, sent_ms, attempt.error.as_deref())
            .await
        {
            if attempt.ok {
                // The one in-flight send that can repeat: the lease runs out and whoever
                // leads then sends it again.
                tracing::warn!(
                    id = r.id,
                    step = %r.step,
                    error = %e,
                    "lifecycle mail was sent but its record was refused; it will be sent again"
                );
            }
            return Err(e.into());
        }
    }
    Ok(sent)
}

fn message(
    smtp: &crate::notify::config::Smtp,
    to: &[String],
    r: &LifecycleMailRow,
) -> anyhow::Result<Message> {
    let mut b = Message::builder()
        .from(smtp.from.parse::<Mailbox>()?)
        .subject(r.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        b = b.to(t.parse::<Mailbox>()?);
    }
    Ok(b.body(r.body.clone())?)
}
