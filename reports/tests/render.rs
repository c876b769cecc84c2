//! Snapshots of the HTML and JSON formats for the fixed scenario, reproducibility, language
//! purity, and verification of untouched and tampered HTML / JSON files.

use ed25519_dalek::SigningKey;
use yunwei_reports::{
    Lang, SignedReport, VerifyError, fixture, html, integrity, json, verify, verify::Format,
};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn signed(lang: Lang) -> SignedReport {
    integrity::sign(fixture::scenario(lang), &key())
}

#[test]
fn json_snapshot_zh() {
    let bytes = json::render(&signed(Lang::ZhCn));
    let pretty: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    insta::assert_json_snapshot!("report_zh_json", pretty);
}

#[test]
fn html_snapshot_zh() {
    insta::assert_snapshot!("report_zh_html", html::render_string(&signed(Lang::ZhCn)));
}

#[test]
fn html_snapshot_en() {
    insta::assert_snapshot!("report_en_html", html::render_string(&signed(Lang::En)));
}

#[test]
fn same_inputs_give_identical_bytes() {
    let a = signed(Lang::ZhCn);
    let b = signed(Lang::ZhCn);
    assert_eq!(json::render(&a), json::render(&b));
    assert_eq!(html::render_string(&a), html::render_string(&b));
    // The JSON file is canonical: parsing and re-serializing it gives the same bytes.
    let bytes = json::render(&a);
    let back: SignedReport = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, a);
    assert_eq!(json::render(&back), bytes);
    assert!(!bytes.contains(&b'\n') && !bytes.starts_with(b"{ "));
}

fn has_cjk(s: &str) -> Option<char> {
    s.chars()
        .find(|c| matches!(*c as u32, 0x3000..=0x303f | 0x4e00..=0x9fff | 0xff00..=0xffef))
}

#[test]
fn english_html_has_no_chinese_left_over() {
    let out = html::render_string(&signed(Lang::En));
    // Exclude the embedded JSON (data, not labels) – it has none either with English data.
    assert_eq!(
        has_cjk(&out),
        None,
        "a Chinese label leaked into the English report"
    );
    assert!(out.contains("Availability per system") && out.contains("lang=\"en\""));
}

#[test]
fn chinese_html_has_the_headings_and_escapes_text() {
    let mut r = fixture::scenario(Lang::ZhCn);
    r.incidents[0].title = "<script>alert('x')</script> & co".into();
    let out = html::render_string(&integrity::sign(r, &key()));
    for heading in [
        "可用率",
        "考核得分",
        "甲方",
        "乙方",
        "故障处置",
        "扣分与加分明细",
        "附录",
    ] {
        assert!(out.contains(heading), "missing {heading}");
    }
    assert!(out.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
    assert!(!out.contains("<script>alert"));
    // No external resources: nothing is fetched when the file is opened.
    for needle in ["http://", "https://", "src=", "<link", "@import"] {
        let hits: Vec<_> = out.match_indices(needle).collect();
        let allowed = hits
            .iter()
            .all(|(i, _)| out[..*i].ends_with("xmlns=\"") && needle == "http://");
        assert!(allowed, "external reference {needle}");
    }
}

#[test]
fn verify_accepts_untouched_json_and_html() {
    let s = signed(Lang::ZhCn);
    let vk = key().verifying_key();
    let v = verify(&json::render(&s), &vk).unwrap();
    assert_eq!((v.format, v.content_checked), (Format::Json, true));
    assert_eq!(v.sha256, s.integrity.sha256);
    let v = verify(html::render_string(&s).as_bytes(), &vk).unwrap();
    assert_eq!((v.format, v.content_checked), (Format::Html, true));
    assert_eq!(v.report.summary.score, s.report.summary.score);
}

#[test]
fn verify_rejects_a_changed_figure_in_html() {
    let s = signed(Lang::ZhCn);
    let vk = key().verifying_key();
    let out = html::render_string(&s);
    // The visible score: 83.0 → 93.0, signed data untouched.
    let visible = "<span class=\"big\">83.0</span>";
    assert!(out.contains(visible));
    let forged = out.replace(visible, "<span class=\"big\">93.0</span>");
    assert!(matches!(
        verify(forged.as_bytes(), &vk),
        Err(VerifyError::ContentMismatch(Format::Html))
    ));
    // Changing the signed data too breaks the hash.
    let forged = forged.replace("\"score\":83,", "\"score\":93,");
    assert!(matches!(
        verify(forged.as_bytes(), &vk),
        Err(VerifyError::Integrity(_))
    ));
}

#[test]
fn verify_rejects_a_changed_figure_in_json_and_a_foreign_key() {
    let s = signed(Lang::ZhCn);
    let bytes = String::from_utf8(json::render(&s)).unwrap();
    let forged = bytes.replacen("\"actual_pct\":99.731", "\"actual_pct\":99.951", 1);
    assert_ne!(forged, bytes);
    assert!(matches!(
        verify(forged.as_bytes(), &key().verifying_key()),
        Err(VerifyError::Integrity(integrity::IntegrityError::Hash))
    ));
    let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(matches!(
        verify(bytes.as_bytes(), &other),
        Err(VerifyError::Integrity(
            integrity::IntegrityError::KeyId { .. }
        ))
    ));
    assert!(matches!(
        verify(b"hello", &other),
        Err(VerifyError::UnknownFormat)
    ));
}

/// Independent probes: each span where the agents and the server's own probe disagree is in
/// every format, with its minutes, in the report's language; the files verify.
#[test]
fn disagreements_are_listed_with_their_minutes_in_both_languages() {
    for (lang, heading, agents_up, decided) in [
        (
            Lang::ZhCn,
            "独立拨测与代理结论不一致",
            "正常",
            "可用性判定依据（合同 availability_from）：",
        ),
        (
            Lang::En,
            "Independent probes disagreeing with the agents",
            "up",
            "Availability decided by (the contract's availability_from): ",
        ),
    ] {
        let s = integrity::sign(fixture::scenario_disagreement(lang), &key());
        let out = html::render_string(&s);
        // Which vantage decided the portal, under the availability table.
        let name = &s.report.availability[0].name;
        let vantage =
            yunwei_reports::i18n::decided_by(lang, Some(yunwei_reports::model::DecidedBy::Both));
        assert!(
            out.contains(&html::esc(&format!("{decided}{name}: {vantage}"))),
            "{lang:?}: no vantage line"
        );
        assert!(out.contains(heading), "{lang:?}");
        let table = &out[out.find(heading).unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        for needle in [
            "office-home",
            "15.0",
            "6.5",
            "interval:server_probe:41",
            agents_up,
        ] {
            assert!(
                table.contains(needle),
                "{lang:?}: {needle} missing in {table}"
            );
        }
        if lang == Lang::En {
            assert_eq!(has_cjk(table), None, "{table}");
        }
        let vk = key().verifying_key();
        verify(out.as_bytes(), &vk).unwrap();
        verify(&json::render(&s), &vk).unwrap();
        let x = yunwei_reports::xlsx::render(&s).unwrap();
        verify(&x, &vk).unwrap();
    }
    // Without disagreements, nothing is rendered and the bytes are those of before.
    let plain = html::render_string(&signed(Lang::ZhCn));
    assert!(!plain.contains("独立拨测"));
    assert!(!plain.contains("判定依据"));
}
