//! XLSX: the workbook read back by an independent reader (openpyxl under `/usr/bin/python3`)
//! holds the JSON's numbers as numbers; rendering is reproducible; `verify` accepts an
//! untouched workbook and rejects one with a changed figure.

use std::io::{Read, Write};
use std::process::Command;

use ed25519_dalek::SigningKey;
use yunwei_reports::{Lang, VerifyError, fixture, integrity, verify, verify::Format, xlsx};

fn signed(lang: Lang) -> yunwei_reports::SignedReport {
    integrity::sign(fixture::scenario(lang), &SigningKey::from_bytes(&[7; 32]))
}

/// Missing tools fail under CI and skip locally.
fn tool_missing(what: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required with CI=true");
    }
    eprintln!("SKIP: {what} not available");
    true
}

const DUMP: &str = r#"
import json, sys, datetime, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
out = {"hidden": [ws.title for ws in wb.worksheets if ws.sheet_state != "visible"], "sheets": {}}
for ws in wb.worksheets:
    rows = []
    for row in ws.iter_rows(values_only=True):
        rows.append([v.isoformat(sep=" ") if isinstance(v, datetime.datetime) else v for v in row])
    out["sheets"][ws.title] = {"rows": rows, "freeze": ws.freeze_panes,
        "formats": [c.number_format for c in (ws[2] if ws.max_row > 1 else [])]}
print(json.dumps(out, ensure_ascii=False))
"#;

fn close(a: &serde_json::Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Dumps a workbook through openpyxl; None when the reader is missing (and not under CI).
fn dump(bytes: &[u8]) -> Option<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.xlsx");
    std::fs::write(&path, bytes).unwrap();
    let out = match Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(DUMP)
        .arg(&path)
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'openpyxl'") => {
            if tool_missing("python3-openpyxl") {
                return None;
            }
            unreachable!()
        }
        Ok(o) => panic!("openpyxl failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => {
            if tool_missing("/usr/bin/python3") {
                return None;
            }
            unreachable!()
        }
    };
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn english_workbook_has_no_chinese_left_over() {
    let Some(book) = dump(&xlsx::render(&signed(Lang::En)).unwrap()) else {
        return;
    };
    let text = book.to_string();
    let cjk = text
        .chars()
        .find(|c| matches!(*c as u32, 0x3000..=0x303f | 0x4e00..=0x9fff | 0xff00..=0xffef));
    assert_eq!(
        cjk, None,
        "a Chinese label leaked into the English workbook"
    );
    assert!(book["sheets"]["Availability"]["rows"][0][5] == "Availability");
}

#[test]
fn openpyxl_reads_the_same_numbers_as_the_json() {
    let s = signed(Lang::ZhCn);
    let Some(book) = dump(&xlsx::render(&s).unwrap()) else {
        return;
    };

    let sheets = &book["sheets"];
    let r = &s.report;
    assert_eq!(book["hidden"], serde_json::json!([xlsx::DATA_SHEET]));

    // Summary: score is a number equal to the JSON's.
    let summary = sheets["考核摘要"]["rows"].as_array().unwrap();
    let score = summary.iter().find(|row| row[0] == "考核得分").unwrap();
    assert!(close(&score[1], r.summary.score.to_f64()), "{score:?}");
    let payable = summary
        .iter()
        .find(|row| row[0] == "应付金额（元）")
        .unwrap();
    assert!(close(&payable[1], 398_400.0));

    // Availability: percentages stored as fractions with a percent format.
    let avail = &sheets["可用率"];
    assert_eq!(avail["freeze"], "A2");
    assert_eq!(avail["formats"][5], "0.000%");
    let rows = avail["rows"].as_array().unwrap();
    assert_eq!(rows.len(), r.availability.len() + 1);
    for (row, a) in rows[1..].iter().zip(&r.availability) {
        assert_eq!(row[0], a.system_id.as_str());
        assert!(close(&row[4], a.target_pct.to_f64() / 100.0));
        assert!(
            close(&row[5], a.actual_pct.unwrap().to_f64() / 100.0),
            "{row:?}"
        );
        assert!(close(&row[8], a.downtime_minutes.to_f64()));
        assert!(close(&row[10], a.missing_minutes.to_f64()));
    }
    // Daily series, a column per day: a day without data is an empty cell, not 0.
    let daily = sheets["每日可用率"]["rows"].as_array().unwrap();
    let header = daily[0].as_array().unwrap();
    let col = header.iter().position(|h| h == "2026-10-20").unwrap();
    let oa = daily.iter().find(|row| row[0] == "oa").unwrap();
    assert!(oa[col].is_null());
    assert!(close(&oa[col + 1], 0.97));
    let portal = daily.iter().find(|row| row[0] == "gov-portal").unwrap();
    assert!(close(&portal[col - 6], 0.91667));

    // Incidents: clocks are numbers, times are date-times in the contract's zone.
    let inc = sheets["故障"]["rows"].as_array().unwrap();
    assert_eq!(inc[1][4], "2026-10-14 09:12:00");
    assert!(close(&inc[1][6], 27.0) && close(&inc[1][7], 15.0));

    // Deductions are negative numbers, bonuses positive; they add up to the summary.
    let adj = sheets["扣分与加分"]["rows"].as_array().unwrap();
    let total: f64 = adj[1..].iter().map(|row| row[2].as_f64().unwrap()).sum();
    assert!(
        (total - (r.summary.bonuses_total.to_f64() - r.summary.deductions_total.to_f64())).abs()
            < 1e-9
    );

    // Resources and alerts.
    let res = sheets["资源使用"]["rows"].as_array().unwrap();
    assert!(close(&res[2][2], 0.817));
    let alerts = sheets["告警统计"]["rows"].as_array().unwrap();
    assert!(close(&alerts[1][1], r.alerts.total as f64));
}

#[test]
fn rendering_is_reproducible() {
    let s = signed(Lang::En);
    assert_eq!(xlsx::render(&s).unwrap(), xlsx::render(&s).unwrap());
}

/// Rewrites one entry of the zip through `edit`.
fn rezip(bytes: &[u8], entry: &str, edit: impl Fn(String) -> String) -> Vec<u8> {
    let mut src = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        if name == entry {
            data = edit(String::from_utf8(data).unwrap()).into_bytes();
        }
        out.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

#[test]
fn verify_accepts_untouched_and_rejects_a_changed_figure() {
    let s = signed(Lang::ZhCn);
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let bytes = xlsx::render(&s).unwrap();
    let v = verify(&bytes, &key).unwrap();
    assert_eq!((v.format, v.content_checked), (Format::Xlsx, true));
    assert_eq!(v.report.summary.score, s.report.summary.score);

    // The summary sheet (sheet2) holds the score 83 as a number; make it 93.
    let forged = rezip(&bytes, "xl/worksheets/sheet2.xml", |x| {
        let score = if x.contains("<v>83.0</v>") {
            "<v>83.0</v>"
        } else {
            "<v>83</v>"
        };
        assert!(x.contains(score), "{x}");
        x.replacen(score, "<v>93</v>", 1)
    });
    assert!(matches!(
        verify(&forged, &key),
        Err(VerifyError::ContentMismatch(Format::Xlsx))
    ));
    // A workbook without the hidden data sheet is not a signed report.
    let stripped = rezip(&bytes, "xl/sharedStrings.xml", |x| {
        x.replace("yunwei-report-v1:", "removed:")
    });
    assert!(matches!(
        verify(&stripped, &key),
        Err(VerifyError::NoEnvelope(Format::Xlsx))
    ));
}

/// A zip holding `entries` (name, content), each deflated.
fn zip_of(entries: &[(String, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    for (name, content) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(content).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Issue 17 (hostile callers): a zip bomb (an XLSX whose shared strings decompress to far
/// more than any report) filled the verifier's memory. Now decompression stops at
/// `MAX_XLSX_DECOMPRESSED_BYTES` and a zip with more than `MAX_XLSX_ENTRIES` entries is refused
/// before anything is decompressed, each with a clear error.
#[test]
fn verify_refuses_an_xlsx_zip_bomb_without_decompressing_it() {
    use yunwei_conf::limits::{MAX_XLSX_DECOMPRESSED_BYTES, MAX_XLSX_ENTRIES};
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let zeros = vec![b' '; (MAX_XLSX_DECOMPRESSED_BYTES + 1024 * 1024) as usize];
    let bomb = zip_of(&[("xl/sharedStrings.xml".to_string(), &zeros)]);
    drop(zeros);
    assert!(bomb.len() < 1024 * 1024, "{} bytes", bomb.len());
    let e = verify(&bomb, &key).unwrap_err();
    assert!(matches!(e, VerifyError::Malformed(Format::Xlsx, _)), "{e}");
    assert!(
        e.to_string().contains("decompresses to more than 64 MiB"),
        "{e}"
    );

    let many: Vec<(String, &[u8])> = (0..=MAX_XLSX_ENTRIES)
        .map(|i| (format!("xl/e{i}.xml"), &b"x"[..]))
        .collect();
    let e = verify(&zip_of(&many), &key).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("more than the {MAX_XLSX_ENTRIES}")),
        "{e}"
    );
}
