//! A final report (终稿) of a contract with a lifecycle: the appeals section (what, when, by
//! whom, decision, reason, effect) and the sign-off record appear in both languages in every
//! format, the JSON validates against the schema's definitions, and every format verifies.

use ed25519_dalek::SigningKey;
use yunwei_reports::{Lang, fixture, html, integrity, json, pdf, verify, verify_with_font, xlsx};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

#[test]
fn appeals_and_sign_offs_in_every_format_and_language() {
    for (lang, words) in [
        (
            Lang::ZhCn,
            [
                "终稿",
                "申诉与复核",
                "撤销扣分",
                "更正函属实",
                "签认记录",
                "甲方（考核单位）",
            ],
        ),
        (
            Lang::En,
            [
                "final report",
                "Appeals and review",
                "overturned",
                "the correction is genuine",
                "Sign-off record",
                "office (reviewer)",
            ],
        ),
    ] {
        let s = integrity::sign(fixture::scenario_final(lang), &key());
        let vk = key().verifying_key();
        let page = html::render_string(&s);
        for w in words {
            assert!(page.contains(w), "{lang:?} html lacks {w}");
        }
        assert!(page.contains("appeal:5f1c") && page.contains("+5.0"));
        verify(page.as_bytes(), &vk).unwrap();
        let j = json::render(&s);
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        let l = &v["report"]["lifecycle"];
        assert_eq!(l["stage"], "final");
        assert_eq!(l["appeals"][0]["status"], "overturned");
        assert_eq!(l["appeals"][0]["effect"], 5);
        assert_eq!(l["signoffs"][1]["role"], "reviewer");
        verify(&j, &vk).unwrap();
        let book = xlsx::render(&s).unwrap();
        let checked = verify(&book, &vk).unwrap();
        assert!(checked.content_checked);
        assert_eq!(checked.report.lifecycle.as_ref().unwrap().appeals.len(), 2);
    }
}

#[test]
fn the_pdf_has_the_appeals_and_the_sign_offs() {
    const FONT: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";
    let Ok(data) = std::fs::read(FONT) else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "font {FONT} is required with CI=true"
        );
        eprintln!("SKIP: font {FONT} (fonts-noto-cjk) not available");
        return;
    };
    let font =
        pdf::PdfFont::new(std::sync::Arc::new(data), pdf::PdfFont::NOTO_CJK_SC_INDEX).unwrap();
    for (lang, words) in [
        (Lang::ZhCn, ["（终稿）", "申诉与复核", "签认记录"]),
        (
            Lang::En,
            ["(FINAL)", "Appeals and review", "Sign-off record"],
        ),
    ] {
        let s = integrity::sign(fixture::scenario_final(lang), &key());
        let bytes = pdf::render(&s, &font).unwrap();
        let checked = verify_with_font(&bytes, &key().verifying_key(), Some(&font)).unwrap();
        assert!(checked.content_checked);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.pdf");
        std::fs::write(&path, &bytes).unwrap();
        let Ok(out) = std::process::Command::new("pdftotext")
            .arg(&path)
            .arg("-")
            .output()
        else {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "pdftotext is required with CI=true"
            );
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout).replace(' ', "");
        for w in words {
            assert!(text.contains(&w.replace(' ', "")), "{lang:?} pdf lacks {w}");
        }
    }
}

#[test]
fn reports_without_a_lifecycle_keep_their_bytes() {
    let s = integrity::sign(fixture::scenario(Lang::ZhCn), &key());
    let j = String::from_utf8(json::render(&s)).unwrap();
    assert!(!j.contains("lifecycle"));
}
