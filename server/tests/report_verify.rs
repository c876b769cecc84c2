//! `yunwei-server report verify`: accepts untouched reports in every format signed with the
//! data directory's key, and rejects a changed figure or a report signed by another key.

use std::path::Path;
use std::process::{Command, Output};

use yunwei_reports::{Lang, fixture, html, integrity, json, xlsx};
use yunwei_server::report_keys;

fn verify(file: &Path, data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_yunwei-server"))
        .args(["report", "verify"])
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

#[test]
fn verify_accepts_untouched_files_and_rejects_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = report_keys::load_or_create(&data).unwrap();
    let signed = integrity::sign(fixture::scenario(Lang::ZhCn), &key);

    let html_file = dir.path().join("r.html");
    let json_file = dir.path().join("r.json");
    let xlsx_file = dir.path().join("r.xlsx");
    std::fs::write(&html_file, html::render_string(&signed)).unwrap();
    std::fs::write(&json_file, json::render(&signed)).unwrap();
    std::fs::write(&xlsx_file, xlsx::render(&signed).unwrap()).unwrap();
    let mut files = vec![html_file.clone(), json_file, xlsx_file];
    let font = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";
    if let Ok(bytes) = std::fs::read(font) {
        let font = yunwei_reports::pdf::PdfFont::new(
            std::sync::Arc::new(bytes),
            yunwei_reports::pdf::PdfFont::NOTO_CJK_SC_INDEX,
        )
        .unwrap();
        let pdf_file = dir.path().join("r.pdf");
        std::fs::write(
            &pdf_file,
            yunwei_reports::pdf::render(&signed, &font).unwrap(),
        )
        .unwrap();
        files.push(pdf_file);
    } else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "font {font} missing with CI=true");
        eprintln!("SKIP: PDF part, font {font} missing");
    }
    for f in &files {
        let out = verify(f, &data);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout} {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("OK")
                && stdout.contains("ZWY-2026-017")
                && stdout.contains(&signed.integrity.sha256)
        );
    }

    // With the font, the PDF's pages are compared too.
    if let Some(pdf) = files.get(3) {
        let out = verify(pdf, &data);
        assert!(String::from_utf8_lossy(&out.stdout).contains("the figures shown match"));
        // `--font` takes a single-face font as `report generate` does: here the collection's
        // simplified-Chinese face written out on its own.
        let ttc = std::fs::read(font).unwrap();
        let single = dir.path().join("NotoSansCJKsc-Regular.otf");
        std::fs::write(
            &single,
            one_face(
                &ttc,
                yunwei_reports::pdf::PdfFont::NOTO_CJK_SC_INDEX as usize,
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_yunwei-server"))
            .args(["report", "verify"])
            .arg(pdf)
            .arg("--data-dir")
            .arg(&data)
            .arg("--font")
            .arg(&single)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("the figures shown match"),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Without a font (`--no-font`: as on a machine without it) the PDF's pages cannot be
    // compared: not verified (exit 1) unless the caller accepts the embedded data alone, and
    // then the output says the pages were not compared.
    if let Some(pdf) = files.get(3) {
        let run = |extra: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_yunwei-server"))
                .args(["report", "verify", "--no-font"])
                .args(extra)
                .arg(pdf)
                .arg("--data-dir")
                .arg(&data)
                .output()
                .unwrap()
        };
        let out = run(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("NOT VERIFIED") && stderr.contains("--allow-uncompared-pages"),
            "{stderr}"
        );
        let out = run(&["--allow-uncompared-pages"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("PAGES NOT COMPARED"), "{stdout}");
        assert!(!stdout.contains("the figures shown match"), "{stdout}");
    }

    // A changed figure in the HTML.
    let text = std::fs::read_to_string(&html_file).unwrap();
    let forged = text.replace(">99.731%<", ">99.951%<");
    assert_ne!(forged, text);
    std::fs::write(&html_file, forged).unwrap();
    let out = verify(&html_file, &data);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT VERIFIED"));

    // Another server's key.
    let other = dir.path().join("other");
    report_keys::load_or_create(&other).unwrap();
    let out = verify(&files[1], &other);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("signed by key"));
}

/// Face `index` of a font collection (TTC) as a font file of its own: its offset table and
/// its tables copied, each at a new 4-byte aligned offset.
fn one_face(ttc: &[u8], index: usize) -> Vec<u8> {
    let u16_at = |o: usize| u16::from_be_bytes([ttc[o], ttc[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_be_bytes(ttc[o..o + 4].try_into().unwrap()) as usize;
    assert_eq!(&ttc[..4], b"ttcf", "a font collection");
    let face = u32_at(12 + 4 * index);
    let tables = u16_at(face + 4);
    let mut out = ttc[face..face + 12].to_vec();
    let mut data = Vec::new();
    let data_start = 12 + 16 * tables;
    for t in 0..tables {
        let rec = face + 12 + 16 * t;
        let (offset, len) = (u32_at(rec + 8), u32_at(rec + 12));
        out.extend_from_slice(&ttc[rec..rec + 8]); // tag, checksum
        out.extend_from_slice(&((data_start + data.len()) as u32).to_be_bytes());
        out.extend_from_slice(&(len as u32).to_be_bytes());
        data.extend_from_slice(&ttc[offset..offset + len]);
        data.resize(data.len().next_multiple_of(4), 0);
    }
    out.extend_from_slice(&data);
    out
}
