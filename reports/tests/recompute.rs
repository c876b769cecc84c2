//! The evidence file and the recomputation, pure: an evidence file holding every kind of row
//! validates against `schema/evidence.v1.json` and survives its bytes; the report made from it
//! recomputes with no difference; a changed figure, changed evidence and a foreign evidence
//! file are each caught, the figures named by their path.

mod common;

use std::collections::BTreeMap;

use common::validate;
use serde_json::Value;
use yunwei_reports::evidence_file::{self, AuditHead, EvidenceFile, SourceFile, Stated};
use yunwei_reports::model::{EvidenceFileRef, Report};
use yunwei_reports::recompute::{RecomputeError, recompute};
use yunwei_reports::{Fixed, Lang, from_assessment, integrity, schema};
use yunwei_sla::assess::{
    Evidence, Exclusion, ExclusionKind, ExclusionStatus, Incident, IncidentRequest,
    IncidentRequestKind, InspectionKind, InspectionRecord, ManualEvent, Membership, Pause,
    RequestStatus, ResourceHour, State, StatusInterval, Subject, SubjectKind,
};
use yunwei_sla::calendar::{SHIPPED_CALENDAR, SHIPPED_ORIGIN};
use yunwei_sla::contract::Cause;

const CONTRACT: &str = r#"
id: recompute
name: 复算合同
parties: { buyer: 甲方局, vendor: 乙方公司 }
period: { start: 2026-01-01, end: 2026-12-31 }
fee: { amount: 120000, per: year }
systems:
  - { id: web, name: 门户, tier: core, hosts: { system: web }, probes: { system: web } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
  incidents:
    - { id: P1, aliases: [一级], response: 15m, restore: 4h }
  resources:
    - { id: cpu, name: CPU, metric: cpu_usage_ratio, aggregate: max, below: 0.8 }
  inspections: { daily: ["09:00"], grace: 1h }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
    - { id: restore, name: 故障恢复超时, name_en: Restore overdue, kind: restore_late, points: 5 }
    - { id: resources, name: 资源超标, name_en: Resources over, kind: resource_breach, points: 1, cap: 5 }
  bonuses:
    - { id: extra, name: 合同外支持, name_en: Extra support, category: extra_support, points: 2, cap: 4 }
grades:
  - { id: excellent, name: 优秀, name_en: Excellent, min_score: 90, payment_percent: 100 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0, payment_percent: 70 }
"#;

/// Local Asia/Shanghai day of March 2026 at `h` o'clock, as UTC ms.
fn mar(day: u32, h: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(2026, 3, day)
        .unwrap()
        .and_hms_opt(h, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
        - 8 * 3_600_000
}

/// March 2026 with a row of every kind: one host, one probe down for two hours, an incident
/// restored late with a pause and a backdate request, an exclusion, an inspection, resource
/// hours, a bonus event, membership rows.
fn evidence() -> Evidence {
    let sys = BTreeMap::from([("system".to_string(), "web".to_string())]);
    let mut ev = Evidence::default();
    for (kind, id) in [(SubjectKind::Host, "h1"), (SubjectKind::Probe, "p1")] {
        ev.subjects.push(Subject {
            kind,
            id: id.into(),
            labels: sys.clone(),
        });
        ev.membership.get_or_insert_with(Vec::new).push(Membership {
            system: "web".into(),
            kind,
            subject: id.into(),
            from_ms: mar(1, 0),
            to_ms: None,
        });
    }
    let mut push = |id: &str, kind, subject: &str, from, to, state| {
        ev.intervals.push(StatusInterval {
            id: id.into(),
            kind,
            subject: subject.into(),
            start_ms: from,
            end_ms: to,
            state,
        })
    };
    push(
        "interval:1",
        SubjectKind::Host,
        "h1",
        mar(1, 0),
        mar(31, 0),
        State::Up,
    );
    push(
        "interval:2",
        SubjectKind::Probe,
        "p1",
        mar(1, 0),
        mar(10, 8),
        State::Up,
    );
    push(
        "interval:3",
        SubjectKind::Probe,
        "p1",
        mar(10, 8),
        mar(10, 10),
        State::Down,
    );
    push(
        "interval:4",
        SubjectKind::Probe,
        "p1",
        mar(10, 10),
        mar(31, 0),
        State::Up,
    );
    ev.incidents.push(Incident {
        id: "incident:1".into(),
        system: Some("web".into()),
        systems: None,
        labels: BTreeMap::new(),
        level: "P1".into(),
        detected_ms: mar(10, 8),
        acknowledged_ms: Some(mar(10, 8) + 20 * 60_000),
        on_site_ms: Some(mar(10, 9)),
        restored_ms: Some(mar(10, 13)),
        pauses: vec![Pause {
            from_ms: mar(10, 9),
            to_ms: mar(10, 9) + 600_000,
            state: "waiting_buyer".into(),
        }],
        cause: Cause::Vendor,
    });
    ev.incident_requests.push(IncidentRequest {
        id: "incident_request:1".into(),
        incident: "incident:1".into(),
        kind: IncidentRequestKind::Backdate,
        clock: Some("ack".into()),
        recorded_ms: mar(10, 8) + 20 * 60_000,
        claimed_ms: Some(mar(10, 8) + 10 * 60_000),
        level_from: None,
        level_to: None,
        requested_by: "vendor".into(),
        reason: "phone call".into(),
        status: RequestStatus::Pending,
        reviewed_by: None,
        reviewed_ms: None,
    });
    ev.exclusions.push(Exclusion {
        id: "exclusion:1".into(),
        kind: ExclusionKind::Maintenance,
        labels: BTreeMap::new(),
        from_ms: mar(20, 1),
        to_ms: mar(20, 2),
        status: ExclusionStatus::Approved,
        requested_at_ms: mar(19, 1),
        reason: "upgrade".into(),
    });
    ev.inspections.push(InspectionRecord {
        id: "inspection:1".into(),
        kind: InspectionKind::Daily,
        scheduled_ms: mar(2, 9),
        done_ms: Some(mar(2, 9) + 60_000),
        result: "ok".into(),
    });
    for h in 0..48 {
        let v = if h == 30 {
            0.95
        } else {
            0.31 + f64::from(h) / 1000.0
        };
        ev.resources.push(ResourceHour {
            id: format!("rollup:cpu_usage_ratio:h1:{h}"),
            host: "h1".into(),
            metric: "cpu_usage_ratio".into(),
            hour_ms: mar(5, 0) + i64::from(h) * 3_600_000,
            min: v,
            max: v,
            sum: v,
            count: 1,
            last: v,
        });
    }
    ev.events.push(ManualEvent {
        id: "event:1".into(),
        category: "extra_support".into(),
        at_ms: mar(15, 10),
        evidence: "函〔2026〕3号".into(),
    });
    ev.inspections_since_ms = Some(mar(1, 0));
    ev
}

fn file(lang: Lang) -> EvidenceFile {
    EvidenceFile {
        schema: evidence_file::SCHEMA.into(),
        contract: SourceFile {
            name: "recompute.yml".into(),
            text: CONTRACT.into(),
        },
        calendars: vec![SourceFile {
            name: SHIPPED_ORIGIN.into(),
            text: SHIPPED_CALENDAR.into(),
        }],
        period: "2026-03".into(),
        as_of_ms: mar(31, 0) + 86_400_000 * 2,
        stated: Stated {
            lang,
            version: 2,
            generated_at_ms: mar(31, 0) + 86_400_000 * 2,
            trend: Vec::new(),
            alerts: from_assessment::empty_alerts(),
            notes: vec!["复核".into()],
            audit_head: Some(AuditHead {
                seq: 12,
                sha256: "ab".repeat(32),
            }),
            lifecycle: None,
        },
        evidence: evidence(),
    }
}

/// The report as the server makes it: computed from the file, naming its bytes.
fn report_of(f: &EvidenceFile) -> (Report, Vec<u8>) {
    let bytes = evidence_file::to_bytes(f);
    let mut r = evidence_file::build_report(f).unwrap();
    r.evidence_file = Some(EvidenceFileRef {
        schema: evidence_file::SCHEMA.into(),
        name: "recompute-2026-03-v2.evidence.json".into(),
        bytes: bytes.len() as u64,
        sha256: integrity::sha256_hex(&bytes),
    });
    (r, bytes)
}

#[test]
fn a_report_recomputes_from_its_evidence_file_with_no_difference() {
    for lang in [Lang::ZhCn, Lang::En] {
        let (r, bytes) = report_of(&file(lang));
        // The file has a row of every kind, and the figures use them.
        assert!(r.summary.score.0 < 100_000, "{:?}", r.summary);
        assert!(r.availability[0].downtime_minutes.0 > 0);
        let out = recompute(&r, &bytes).unwrap();
        assert!(out.differences.is_empty(), "{:#?}", out.differences);
        assert!(out.compared > 100, "{}", out.compared);
        // The bytes round-trip to the same file.
        assert_eq!(evidence_file::parse(&bytes).unwrap(), file(lang));
    }
}

#[test]
fn changed_figures_and_changed_evidence_are_named() {
    let f = file(Lang::ZhCn);
    let (r, bytes) = report_of(&f);

    // A figure changed in the report (then signed, as a dishonest server would).
    let mut forged = r.clone();
    forged.availability[0].downtime_minutes = Fixed(0);
    forged.summary.score = Fixed(100_000);
    let out = recompute(&forged, &bytes).unwrap();
    let paths: Vec<&str> = out.differences.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        ["availability[web].downtime_minutes", "summary.score"],
        "{:#?}",
        out.differences
    );
    let d = &out.differences[0];
    assert_eq!(d.report, "0");
    assert_eq!(d.recomputed, r.availability[0].downtime_minutes.to_string());

    // Evidence changed under the report: not the file it names.
    let mut edited = f.clone();
    edited.evidence.intervals[2].state = State::Up;
    let edited_bytes = evidence_file::to_bytes(&edited);
    assert!(matches!(
        recompute(&r, &edited_bytes),
        Err(RecomputeError::EvidenceMismatch { .. })
    ));
    // ... and a report naming the edited file: every figure the outage gave is named.
    let mut named = r.clone();
    named.evidence_file = Some(EvidenceFileRef {
        bytes: edited_bytes.len() as u64,
        sha256: integrity::sha256_hex(&edited_bytes),
        ..r.evidence_file.clone().unwrap()
    });
    let out = recompute(&named, &edited_bytes).unwrap();
    let paths: Vec<&str> = out.differences.iter().map(|d| d.path.as_str()).collect();
    for want in [
        "availability[web].downtime_minutes",
        "availability[web].actual_pct",
        "summary.score",
    ] {
        assert!(paths.contains(&want), "{want} not in {paths:#?}");
    }

    // No reference, or a malformed file: refused with a reason.
    let mut bare = r.clone();
    bare.evidence_file = None;
    assert!(matches!(
        recompute(&bare, &bytes),
        Err(RecomputeError::NoEvidenceFile)
    ));
}

/// The evidence file as the server stores and serves it: gzip, deterministic, much smaller;
/// the report names the uncompressed bytes, and recomputation takes the file either way.
#[test]
fn a_compressed_evidence_file_recomputes_and_is_checked_by_its_uncompressed_hash() {
    let f = file(Lang::ZhCn);
    let (r, bytes) = report_of(&f);
    let gz = evidence_file::compress(&bytes);
    assert!(evidence_file::is_gzip(&gz) && !evidence_file::is_gzip(&bytes));
    assert_eq!(gz, evidence_file::compress(&bytes), "not deterministic");
    assert!(
        gz.len() * 3 < bytes.len(),
        "{} of {}",
        gz.len(),
        bytes.len()
    );
    // The hash the report names is not the compressed file's.
    let named = r.evidence_file.clone().unwrap();
    assert_ne!(integrity::sha256_hex(&gz), named.sha256);
    assert_eq!(
        &*evidence_file::decompress(&gz, named.bytes).unwrap(),
        &bytes[..]
    );
    for given in [&gz, &bytes] {
        let out = recompute(&r, given).unwrap();
        assert!(out.differences.is_empty(), "{:#?}", out.differences);
    }
    // Edited evidence compressed again: still not the file the report names.
    let mut edited = f.clone();
    edited.evidence.intervals[2].state = State::Up;
    let edited_gz = evidence_file::compress(&evidence_file::to_bytes(&edited));
    assert!(matches!(
        recompute(&r, &edited_gz),
        Err(RecomputeError::EvidenceMismatch { .. })
    ));
    // More than the named size once inflated (a decompression bomb, or another file): refused
    // without inflating the rest.
    let mut big = bytes.clone();
    big.extend(std::iter::repeat_n(b' ', 1 << 20));
    assert!(matches!(
        recompute(&r, &evidence_file::compress(&big)),
        Err(RecomputeError::Input(
            evidence_file::InputError::TooLarge { .. }
        ))
    ));
    // A truncated gzip stream: named as such.
    assert!(matches!(
        recompute(&r, &gz[..gz.len() / 2]),
        Err(RecomputeError::Input(evidence_file::InputError::Gzip(_)))
    ));
}

#[test]
fn a_contract_that_does_not_load_is_named_with_its_position() {
    let mut f = file(Lang::En);
    f.contract.text = f
        .contract
        .text
        .replace("target_percent: 99.9", "target_percent: x");
    let err = evidence_file::build_report(&f).unwrap_err().to_string();
    assert!(err.contains("recompute.yml:"), "{err}");
}

#[test]
fn the_evidence_file_validates_against_its_documented_schema() {
    let root: Value = serde_json::from_str(schema::EVIDENCE_V1).unwrap();
    let v: Value = serde_json::from_slice(&evidence_file::to_bytes(&file(Lang::ZhCn))).unwrap();
    let mut errors = Vec::new();
    validate(&root, &root, &v, "$", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    // Every kind of row was there to be checked.
    for k in [
        "subjects",
        "intervals",
        "incidents",
        "exclusions",
        "inspections",
        "resources",
        "events",
        "membership",
        "incident_requests",
    ] {
        assert!(
            !v["evidence"][k].as_array().unwrap().is_empty(),
            "{k} empty"
        );
    }
    // The validator is not blind: an unknown field and a mistyped one are caught.
    let mut bad = v.clone();
    bad["evidence"]["intervals"][0]["surprise"] = Value::Bool(true);
    bad["evidence"]["resources"][0]["count"] = Value::String("1".into());
    let mut errors = Vec::new();
    validate(&root, &root, &bad, "$", &mut errors);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    // Every property is documented, every object strict.
    for (name, def) in root["$defs"].as_object().unwrap() {
        assert_eq!(def["additionalProperties"], Value::Bool(false), "{name}");
        for (k, p) in def["properties"].as_object().unwrap() {
            assert!(
                p.get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.is_empty()),
                "{name}.{k} undocumented"
            );
        }
    }
}
