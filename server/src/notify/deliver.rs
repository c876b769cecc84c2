//! Delivery of one notification to one target: email through lettre (plain on loopback,
//! STARTTLS or implicit TLS; auth), the generic webhook with Alertmanager's v4 payload, and the
//! DingTalk, WeCom and Feishu robots with their signatures. Outbound URLs are checked against
//! loopback, link-local and private ranges unless allow-listed, and the checked address is the
//! one connected to.

use std::{net::IpAddr, time::Duration};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, Mac};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::authentication::Credentials,
};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    config::{Cidr, EmailTarget, Lang, NotifyConfig, RobotTarget, Smtp, SmtpTls, WebhookTarget},
    engine::{AlertEntry, Notification},
    fingerprint, message,
};

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub ok: bool,
    /// SMTP reply code or HTTP status.
    pub code: Option<i64>,
    pub error: Option<String>,
    /// Recipients or URL host (for the log; never a secret).
    pub target: String,
}

impl Attempt {
    pub fn fail(target: String, code: Option<i64>, error: impl Into<String>) -> Attempt {
        Attempt {
            ok: false,
            code,
            error: Some(error.into()),
            target,
        }
    }
}

/// Sends an email to whoever `t` names at `now` (on-call schedules resolve at that instant);
/// `ack_url` is put in the body.
pub async fn email(
    cfg: &NotifyConfig,
    t: &EmailTarget,
    n: &Notification,
    ack_url: Option<&str>,
    now: i64,
) -> Attempt {
    let to = cfg.resolve_recipients(&t.to, now);
    let cc = cfg.resolve_recipients(&t.cc, now);
    let target = to.iter().chain(&cc).cloned().collect::<Vec<_>>().join(",");
    if to.is_empty() {
        // Keep retrying: someone may come on call (the log names the schedule).
        return Attempt::fail(t.to.join(","), None, "nobody is on call");
    }
    let Some(smtp) = &cfg.smtp else {
        return Attempt::fail(target, None, "smtp is not configured");
    };
    let build = || -> Result<Message, String> {
        let mut b = Message::builder()
            .from(smtp.from.parse::<Mailbox>().map_err(|e| e.to_string())?)
            .subject(message::subject(n, t.language));
        for a in &to {
            b = b.to(a.parse::<Mailbox>().map_err(|e| e.to_string())?);
        }
        for a in &cc {
            b = b.cc(a.parse::<Mailbox>().map_err(|e| e.to_string())?);
        }
        b.multipart(MultiPart::alternative_plain_html(
            message::text_body(n, t.language, ack_url),
            message::html_body(n, t.language, ack_url),
        ))
        .map_err(|e| e.to_string())
    };
    let msg = match build() {
        Ok(m) => m,
        Err(e) => return Attempt::fail(target, None, e),
    };
    send_mail(smtp, msg, target).await
}

/// Sends a built message through `smtp` (none / STARTTLS / implicit TLS, with credentials when
/// configured); `target` names the recipients in the returned attempt. Also used for report
/// mail (`crate::report_mail`).
pub async fn send_mail(smtp: &Smtp, msg: Message, target: String) -> Attempt {
    let builder = match smtp.tls {
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &smtp.host,
        )),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
    };
    let mut builder = match builder {
        Ok(b) => b
            .port(smtp.port())
            .timeout(Some(Duration::from_secs(smtp.timeout_secs))),
        Err(e) => return Attempt::fail(target, None, e.to_string()),
    };
    if let (Some(u), Some(p)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    match builder.build().send(msg).await {
        Ok(r) => Attempt {
            ok: true,
            code: Some(i64::from(u16::from(r.code()))),
            error: None,
            target,
        },
        Err(e) => Attempt::fail(
            target,
            e.status().map(|c| i64::from(u16::from(c))),
            e.to_string(),
        ),
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(String::new, |t| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    })
}

fn am_alert(a: &AlertEntry, status: &str) -> Value {
    json!({
        "status": status,
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at_ms),
        "endsAt": if status == "resolved" { a.ends_at_ms.map(rfc3339).unwrap_or_default() } else { "0001-01-01T00:00:00Z".into() },
        "generatorURL": "",
        "fingerprint": fingerprint(&a.labels),
    })
}

/// Alertmanager's webhook payload (version 4).
pub fn webhook_payload(cfg: &NotifyConfig, n: &Notification) -> Value {
    let all: Vec<&AlertEntry> = n.firing.iter().chain(&n.resolved).collect();
    let common = |f: &dyn Fn(&AlertEntry) -> &std::collections::BTreeMap<String, String>| {
        let mut c = all.first().map(|a| f(a).clone()).unwrap_or_default();
        c.retain(|k, v| all.iter().all(|a| f(a).get(k) == Some(v)));
        c
    };
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": common(&|a| &a.labels),
        "commonAnnotations": common(&|a| &a.annotations),
        "externalURL": cfg.external_url,
        "alerts": n.firing.iter().map(|a| am_alert(a, "firing"))
            .chain(n.resolved.iter().map(|a| am_alert(a, "resolved"))).collect::<Vec<_>>(),
    })
}

/// Whether an address is loopback, link-local, private, unspecified or otherwise internal.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.octets()[0] == 100 && (64..128).contains(&a.octets()[1]) // CGNAT
                || a.octets()[0] == 0
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || (a.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (a.segments()[0] & 0xffc0) == 0xfe80 // link-local
                || a.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

/// Resolves `host` and refuses internal addresses that are not allow-listed (every address the
/// name resolves to is checked); returns the first, to connect to that one and no other.
pub async fn checked_addr(
    host: &str,
    port: u16,
    allow: &[Cidr],
) -> Result<std::net::SocketAddr, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![(ip, port).into()],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .collect(),
    };
    let addr = addrs
        .first()
        .copied()
        .ok_or_else(|| format!("{host} has no address"))?;
    for a in &addrs {
        if is_internal(a.ip()) && !allow.iter().any(|c| c.contains(a.ip())) {
            return Err(format!(
                "destination {} is internal and not in notify.allow_private_networks",
                a.ip()
            ));
        }
    }
    Ok(addr)
}

/// Resolves `url`'s host and refuses internal addresses that are not allow-listed; returns a
/// client pinned to the checked address.
pub async fn guarded_client(url: &str, allow: &[Cidr]) -> Result<reqwest::Client, String> {
    guarded_client_with(url, allow, Duration::from_secs(10), None).await
}

/// [`guarded_client`] with its timeout and, optionally, the local address to connect from.
pub async fn guarded_client_with(
    url: &str,
    allow: &[Cidr],
    timeout: Duration,
    local: Option<IpAddr>,
) -> Result<reqwest::Client, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad url: {e}"))?;
    let host = parsed.host_str().ok_or("url has no host")?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addr = checked_addr(&host, port, allow).await?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local)
        .resolve(bare, addr)
        .build()
        .map_err(|e| e.to_string())
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| {
                format!(
                    "{}{}",
                    h,
                    u.port().map_or(String::new(), |p| format!(":{p}"))
                )
            })
        })
        .unwrap_or_else(|| "invalid-url".into())
}

async fn post(url: &str, body: &Value, allow: &[Cidr], check_json_code: bool) -> Attempt {
    let target = host_of(url);
    let client = match guarded_client(url, allow).await {
        Ok(c) => c,
        Err(e) => return Attempt::fail(target, None, e),
    };
    match client.post(url).json(body).send().await {
        Ok(r) => {
            let status = i64::from(r.status().as_u16());
            let ok_status = r.status().is_success();
            let text = r.text().await.unwrap_or_default();
            if !ok_status {
                return Attempt::fail(target, Some(status), format!("HTTP {status}"));
            }
            if check_json_code && let Ok(v) = serde_json::from_str::<Value>(&text) {
                let code = v
                    .get("errcode")
                    .or_else(|| v.get("code"))
                    .and_then(Value::as_i64);
                if let Some(c) = code.filter(|c| *c != 0) {
                    let msg = v
                        .get("errmsg")
                        .or_else(|| v.get("msg"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .collect::<String>();
                    return Attempt::fail(target, Some(status), format!("robot error {c}: {msg}"));
                }
            }
            Attempt {
                ok: true,
                code: Some(status),
                error: None,
                target,
            }
        }
        Err(e) => Attempt::fail(target, None, e.without_url().to_string()),
    }
}

/// Posts Alertmanager's payload.
pub async fn webhook(cfg: &NotifyConfig, t: &WebhookTarget, n: &Notification) -> Attempt {
    post(
        &t.url,
        &webhook_payload(cfg, n),
        &cfg.allow_private_networks,
        false,
    )
    .await
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    B64.encode(m.finalize().into_bytes())
}

/// DingTalk's signature: urlencode(base64(HMAC-SHA256(secret, ts_ms "\n" secret))).
pub fn dingtalk_sign(secret: &str, ts_ms: i64) -> String {
    let b = hmac_b64(secret.as_bytes(), format!("{ts_ms}\n{secret}").as_bytes());
    b.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// Feishu's signature: base64(HMAC-SHA256(key = ts_s "\n" secret, message = empty)).
pub fn feishu_sign(secret: &str, ts_s: i64) -> String {
    hmac_b64(format!("{ts_s}\n{secret}").as_bytes(), b"")
}

fn lang_of(t: &RobotTarget) -> Lang {
    t.language
}

/// Posts to a DingTalk robot (markdown, signed).
pub async fn dingtalk(
    cfg: &NotifyConfig,
    t: &RobotTarget,
    n: &Notification,
    ack_url: Option<&str>,
    now_ms: i64,
) -> Attempt {
    let lang = lang_of(t);
    let title = message::subject(n, lang);
    dingtalk_post(
        cfg,
        t,
        &title,
        &message::robot_markdown(n, lang, ack_url),
        now_ms,
    )
    .await
}

async fn dingtalk_post(
    cfg: &NotifyConfig,
    t: &RobotTarget,
    title: &str,
    text: &str,
    now_ms: i64,
) -> Attempt {
    let sep = if t.url.contains('?') { '&' } else { '?' };
    let url = match &t.secret {
        Some(s) => format!(
            "{}{sep}timestamp={now_ms}&sign={}",
            t.url,
            dingtalk_sign(s, now_ms)
        ),
        None => t.url.clone(),
    };
    let body = json!({
        "msgtype": "markdown",
        "markdown": {"title": title, "text": text},
        "at": {"atMobiles": t.at_mobiles, "isAtAll": false},
    });
    post(&url, &body, &cfg.allow_private_networks, true).await
}

/// Posts to a WeCom group robot (markdown; the key is in the URL).
pub async fn wecom(
    cfg: &NotifyConfig,
    t: &RobotTarget,
    n: &Notification,
    ack_url: Option<&str>,
) -> Attempt {
    wecom_post(cfg, t, message::robot_markdown(n, lang_of(t), ack_url)).await
}

async fn wecom_post(cfg: &NotifyConfig, t: &RobotTarget, mut content: String) -> Attempt {
    if content.len() > 4000 {
        let mut cut = 4000;
        while !content.is_char_boundary(cut) {
            cut -= 1;
        }
        content.truncate(cut);
    }
    let body = json!({"msgtype": "markdown", "markdown": {"content": content}});
    post(&t.url, &body, &cfg.allow_private_networks, true).await
}

/// Posts to a Feishu custom bot (text, signed).
pub async fn feishu(
    cfg: &NotifyConfig,
    t: &RobotTarget,
    n: &Notification,
    ack_url: Option<&str>,
    now_ms: i64,
) -> Attempt {
    let mut text = message::text_body(n, lang_of(t), ack_url);
    text.insert_str(0, &format!("{}\n", message::subject(n, lang_of(t))));
    feishu_post(cfg, t, text, now_ms).await
}

async fn feishu_post(cfg: &NotifyConfig, t: &RobotTarget, text: String, now_ms: i64) -> Attempt {
    let ts = now_ms / 1000;
    let mut body = json!({"msg_type": "text", "content": {"text": text}});
    if let Some(s) = &t.secret {
        body["timestamp"] = json!(ts.to_string());
        body["sign"] = json!(feishu_sign(s, ts));
    }
    post(&t.url, &body, &cfg.allow_private_networks, true).await
}

/// Posts several notifications to one robot (`channel` is `dingtalk`, `wecom` or `feishu`) as
/// one digest message, each notification with its acknowledge link: what the rate limit lets
/// through when more are pending ([`super::ratelimit::Limiter::plan`]).
pub async fn robot_digest(
    cfg: &NotifyConfig,
    channel: &str,
    t: &RobotTarget,
    items: &[(Notification, Option<String>)],
    now_ms: i64,
) -> Attempt {
    let lang = lang_of(t);
    match channel {
        "dingtalk" => {
            let title = message::digest_title(items.len(), lang);
            dingtalk_post(
                cfg,
                t,
                &title,
                &message::digest_markdown(items, lang),
                now_ms,
            )
            .await
        }
        "wecom" => wecom_post(cfg, t, message::digest_markdown(items, lang)).await,
        "feishu" => feishu_post(cfg, t, message::digest_text(items, lang), now_ms).await,
        other => Attempt::fail(String::new(), None, format!("{other} is not a robot")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "2001:4860:4860::8888", "203.0.113.9"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allow_listed() {
        let e = guarded_client("http://127.0.0.1:9/hook", &[])
            .await
            .unwrap_err();
        assert!(e.contains("internal"), "{e}");
        let e = guarded_client("http://169.254.169.254/latest", &[])
            .await
            .unwrap_err();
        assert!(e.contains("internal"), "{e}");
        assert!(
            guarded_client(
                "http://127.0.0.1:9/hook",
                &[Cidr::parse("127.0.0.0/8").unwrap()]
            )
            .await
            .is_ok()
        );
    }
}
