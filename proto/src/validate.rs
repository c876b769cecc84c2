//! Value checks on a decoded batch. The first problem found is reported with the path of the
//! field, so an agent author (or an operator reading the server's counters) knows what to fix.

use std::collections::BTreeMap;

use crate::{Batch, Event, PROTOCOL_VERSION};

/// Most entries a batch's `probe_intervals_ms` may have.
pub const MAX_PROBE_INTERVALS: usize = 1_000;

/// Limits applied to every batch. The defaults are the server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_samples: usize,
    pub max_events: usize,
    pub max_labels: usize,
    pub max_label_name_len: usize,
    pub max_label_value_len: usize,
    /// How far ahead of the server's clock a timestamp may be.
    pub max_future_ms: i64,
    /// How far back a timestamp may be (backfill from a spool is accepted up to this age).
    pub max_age_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_samples: 20_000,
            max_events: 1_000,
            max_labels: 32,
            max_label_name_len: 128,
            max_label_value_len: 1_024,
            max_future_ms: 10 * 60 * 1000,
            max_age_ms: 14 * 24 * 3600 * 1000,
        }
    }
}

/// A validation failure: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn fail<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError {
        field: field.into(),
        message: message.into(),
    })
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `field` makes the path of the labels; it is called only for an error, so a valid batch
/// formats no paths.
fn check_labels(
    field: impl Fn() -> String,
    labels: &BTreeMap<String, String>,
    limits: &Limits,
) -> Result<(), FieldError> {
    if labels.len() > limits.max_labels {
        return fail(
            field(),
            format!(
                "{} labels exceed the limit of {}",
                labels.len(),
                limits.max_labels
            ),
        );
    }
    for (name, value) in labels {
        if !valid_label_name(name) || name.starts_with("__") {
            return fail(format!("{}.{name}", field()), "invalid label name");
        }
        if name.len() > limits.max_label_name_len {
            return fail(
                format!("{}.{name}", field()),
                format!("label name longer than {} bytes", limits.max_label_name_len),
            );
        }
        if value.len() > limits.max_label_value_len {
            return fail(
                format!("{}.{name}", field()),
                format!(
                    "label value longer than {} bytes",
                    limits.max_label_value_len
                ),
            );
        }
    }
    Ok(())
}

/// `field` makes the path of the timestamp, for an error only.
fn check_ts(
    field: impl Fn() -> String,
    ts_ms: i64,
    now_ms: i64,
    limits: &Limits,
) -> Result<(), FieldError> {
    if ts_ms > now_ms.saturating_add(limits.max_future_ms) {
        return fail(
            field(),
            format!(
                "timestamp {ts_ms} is more than {} s in the future",
                limits.max_future_ms / 1000
            ),
        );
    }
    if ts_ms < now_ms.saturating_sub(limits.max_age_ms) {
        return fail(
            field(),
            format!(
                "timestamp {ts_ms} is older than the accepted backfill age of {} h",
                limits.max_age_ms / 3_600_000
            ),
        );
    }
    Ok(())
}

/// Checks a decoded batch against `limits` at server time `now_ms`.
pub fn validate_batch(batch: &Batch, limits: &Limits, now_ms: i64) -> Result<(), FieldError> {
    if batch.version != PROTOCOL_VERSION {
        return fail(
            "version",
            format!(
                "unsupported protocol version {} (this server speaks {PROTOCOL_VERSION})",
                batch.version
            ),
        );
    }
    if batch.agent_id.is_empty() || batch.agent_id.len() > 64 {
        return fail("agent_id", "must be 1 to 64 bytes");
    }
    if batch.seq == 0 {
        return fail("seq", "sequence numbers start at 1");
    }
    if !(1_000..=3_600_000).contains(&batch.interval_ms) {
        return fail("interval_ms", "must be between 1000 and 3600000");
    }
    check_ts(
        || "collected_at_ms".into(),
        batch.collected_at_ms,
        now_ms,
        limits,
    )?;
    if batch.host.hostname.is_empty() || batch.host.hostname.len() > 255 {
        return fail("host.hostname", "must be 1 to 255 bytes");
    }
    for (name, value) in [
        ("host.os", &batch.host.os),
        ("host.kernel", &batch.host.kernel),
        ("host.arch", &batch.host.arch),
        ("host.agent_version", &batch.host.agent_version),
    ] {
        if value.len() > 255 {
            return fail(name, "longer than 255 bytes");
        }
    }
    check_labels(|| "host.labels".into(), &batch.host.labels, limits)?;
    if batch.probe_intervals_ms.len() > MAX_PROBE_INTERVALS {
        return fail(
            "probe_intervals_ms",
            format!(
                "{} entries exceed the limit of {MAX_PROBE_INTERVALS}",
                batch.probe_intervals_ms.len()
            ),
        );
    }
    for (probe, ms) in &batch.probe_intervals_ms {
        if probe.is_empty() || probe.len() > 128 {
            return fail(
                format!("probe_intervals_ms.{probe}"),
                "probe names must be 1 to 128 bytes",
            );
        }
        if !(1_000..=3_600_000).contains(ms) {
            return fail(
                format!("probe_intervals_ms.{probe}"),
                "must be between 1000 and 3600000",
            );
        }
    }
    if batch.samples.len() > limits.max_samples {
        return fail(
            "samples",
            format!(
                "{} samples exceed the limit of {}",
                batch.samples.len(),
                limits.max_samples
            ),
        );
    }
    for (i, s) in batch.samples.iter().enumerate() {
        if !valid_metric_name(&s.name) {
            return fail(
                format!("samples[{i}].name"),
                format!("invalid metric name {:?}", s.name),
            );
        }
        if !s.value.is_finite() {
            return fail(
                format!("samples[{i}].value"),
                format!("non-finite value {}", s.value),
            );
        }
        check_labels(|| format!("samples[{i}].labels"), &s.labels, limits)?;
        check_ts(|| format!("samples[{i}].ts_ms"), s.ts_ms, now_ms, limits)?;
    }
    if batch.events.len() > limits.max_events {
        return fail(
            "events",
            format!(
                "{} events exceed the limit of {}",
                batch.events.len(),
                limits.max_events
            ),
        );
    }
    for (i, e) in batch.events.iter().enumerate() {
        match e {
            Event::ProbeState {
                probe,
                labels,
                ts_ms,
                reason,
                ..
            } => {
                if probe.is_empty() || probe.len() > 128 {
                    return fail(format!("events[{i}].probe"), "must be 1 to 128 bytes");
                }
                check_labels(|| format!("events[{i}].labels"), labels, limits)?;
                check_ts(|| format!("events[{i}].ts_ms"), *ts_ms, now_ms, limits)?;
                if reason.as_ref().is_some_and(|r| r.len() > 1024) {
                    return fail(format!("events[{i}].reason"), "longer than 1024 bytes");
                }
            }
            Event::SpoolGap {
                from_ms,
                to_ms,
                reason,
                ..
            } => {
                if from_ms > to_ms {
                    return fail(format!("events[{i}].from_ms"), "after to_ms");
                }
                if reason.len() > 1024 {
                    return fail(format!("events[{i}].reason"), "longer than 1024 bytes");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostFacts, Sample};

    const NOW: i64 = 1_800_000_000_000;

    fn batch(samples: Vec<Sample>) -> Batch {
        Batch {
            version: 1,
            agent_id: "a1".into(),
            seq: 1,
            interval_ms: 15_000,
            collected_at_ms: NOW,
            age_ms: 0,
            host: HostFacts {
                hostname: "h".into(),
                ..Default::default()
            },
            samples,
            events: vec![],
            probe_intervals_ms: BTreeMap::new(),
        }
    }

    fn sample(value: f64, ts_ms: i64) -> Sample {
        Sample {
            name: "m".into(),
            labels: Default::default(),
            value,
            ts_ms,
        }
    }

    fn check(b: Batch, field: &str) {
        let err = validate_batch(&b, &Limits::default(), NOW).unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }

    #[test]
    fn good_batch_passes() {
        validate_batch(&batch(vec![sample(1.0, NOW)]), &Limits::default(), NOW).unwrap();
    }

    #[test]
    fn each_bad_value_names_its_field() {
        check(
            batch(vec![sample(1.0, NOW), sample(f64::NAN, NOW)]),
            "samples[1].value",
        );
        // 2100-01-01T00:00:00Z
        check(
            batch(vec![sample(1.0, 4_102_444_800_000)]),
            "samples[0].ts_ms",
        );
        check(
            batch(vec![sample(1.0, NOW - 30 * 86_400_000)]),
            "samples[0].ts_ms",
        );
        let mut many = sample(1.0, NOW);
        many.labels = (0..10_000).map(|i| (format!("l{i}"), "v".into())).collect();
        check(batch(vec![many]), "samples[0].labels");
        let mut bad_name = sample(1.0, NOW);
        bad_name.labels.insert("bad-name".into(), "v".into());
        check(batch(vec![bad_name]), "samples[0].labels.bad-name");
        let mut b = batch(vec![]);
        b.version = 2;
        check(b, "version");
        let mut b = batch(vec![]);
        b.seq = 0;
        check(b, "seq");
        let mut b = batch(vec![]);
        b.probe_intervals_ms.insert("portal".into(), 999);
        check(b, "probe_intervals_ms.portal");
        let mut b = batch(vec![]);
        b.probe_intervals_ms.insert(String::new(), 60_000);
        check(b, "probe_intervals_ms.");
    }

    #[test]
    fn name_rules_follow_prometheus() {
        assert!(valid_metric_name("node_cpu_seconds_total"));
        assert!(valid_metric_name("job:rate5m"));
        assert!(!valid_metric_name("5xx"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("_x9"));
        assert!(!valid_label_name("a:b"));
    }
}
