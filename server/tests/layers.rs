//! Layering of `server/src`, checked by scanning the sources (like `router_routes()` in
//! `tests/access.rs` scans for routes).
//!
//! The server crate is layered; each layer may use the ones below it, never the ones above:
//!
//! 1. `http/` — the HTTP layer, and the only module that knows axum: the router, the error
//!    type (`ApiError`), middleware, handlers and `http::serve`.
//! 2. services — `ingest`, `rules`, `notify`, `contracts`, `reports`, `report_mail`, `auth`,
//!    `inventory`, `audit`, `quickstart`, `demo`, ...: the behaviour, in plain Rust types.
//! 3. `store/` — all SQL.
//! 4. leaves — `timeline`, `selector`, `live`, `metrics`, `config`, ...: used by everybody.
//!
//! `lib.rs` (the composition root: it builds the state and calls `http::serve`) and `main.rs`
//! (the command line) sit beside the layers but get no exemption from the axum and SQL rules.
//!
//! The rules, each reported as `file:line: [rule] what`:
//!
//! * `axum-outside-http` — a file outside `src/http/` names the axum crate (an `axum::` path,
//!   `use axum`, any `axum` identifier in code). `lib.rs` calls `http::serve`, not `axum::serve`.
//! * `sql-outside-store` — a file outside `src/store/` runs SQL: a `sqlx::query*` path, a
//!   `query_as` / `query_scalar` (or `..._with`) identifier, `.execute(` in a file that names
//!   `sqlx`, or a string literal whose text starts (after whitespace) with one of the uppercase
//!   keywords `SELECT`, `INSERT INTO`, `UPDATE … SET`, `DELETE FROM`, `CREATE TABLE`,
//!   `ALTER TABLE` (case-sensitive, so prose like "select a host" is fine).
//! * `http-import-outside-http` — a file outside `src/http/` reaches into the HTTP layer: a
//!   path that resolves to the crate's `http` module, written `crate::http…`, `super::http…`
//!   (where `super` is the crate root), `yunwei_server::http…` (from `main.rs`), or an `http`
//!   item inside a `use crate::{ … }` group (multi-line and nested groups are parsed). `lib.rs`
//!   is exempt: it declares `pub mod http` and must call `http::serve`. `axum::http::…` is not
//!   this rule (it is `axum-outside-http`).
//! * `app-state-outside-http` — a file other than `lib.rs` and those in `src/http/` names
//!   `AppState`, the struct of all services: a service or background loop gets the service it
//!   needs (`rules::Engine`, `contracts::Contracts`, …), never the whole server.
//! * `store-imports-service` — a file in `src/store/` names a service module
//!   (`crate::ingest`, `use crate::{rules, …}`, …). Reading `crate::store`, `crate::timeline`,
//!   `crate::metrics`, other leaves and crate-root items (`crate::now_ms`) is fine.
//!
//! How the scan reads a file: comments (`//`, `///`, `//!`, `/* */`) are dropped, so docs may
//! mention axum or SQL; string and char literal contents are blanked for the path rules (an
//! error message saying "axum::serve" is fine) and only feed the SQL-literal check. A
//! `#[cfg(test)]` attribute at column 0 and the item after it (up to its matching `}`, or `;`)
//! are skipped for every rule: unit tests may build fixtures with SQL and do not ship. `super::`
//! is resolved from the file's module path (`foo/bar.rs` is `foo::bar`); inline `mod`s are
//! not tracked. In `main.rs` (its own crate) only `yunwei_server::` paths reach the library.
//!
//! [`KNOWN`] lists the violations that exist today (the code is being moved); it may only
//! shrink: an unlisted violation fails the test, and so does a listed one that is gone
//! ("remove X from KNOWN").

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
};

const AXUM: &str = "axum-outside-http";
const SQL: &str = "sql-outside-store";
const HTTP_IMPORT: &str = "http-import-outside-http";
const STORE_SERVICE: &str = "store-imports-service";
const APP_STATE: &str = "app-state-outside-http";

/// Service modules that `store/` must not name.
const SERVICES: &[&str] = &[
    "ingest",
    "rules",
    "notify",
    "contracts",
    "reports",
    "report_mail",
    "auth",
    "inventory",
    "audit",
    "quickstart",
    "demo",
];

/// Violations that exist today, as (file relative to `src`, rule). Only ever remove entries.
const KNOWN: &[(&str, &str)] = &[];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    /// Relative to `src`, with `/`.
    file: String,
    /// 1-based.
    line: usize,
    rule: &'static str,
    what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "src/{}:{}: [{}] {}",
            self.file, self.line, self.rule, self.what
        )
    }
}

/// A source file with comments dropped and literal contents blanked.
struct Lexed {
    /// Same length and line structure as the source (multi-byte chars become one space per
    /// byte), so byte offsets map to the same lines.
    code: String,
    /// (byte offset of the opening quote, text between the quotes).
    literals: Vec<(usize, String)>,
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Blanks `src[from..to]` into `out`, keeping newlines.
fn blank(out: &mut Vec<u8>, src: &[u8]) {
    out.extend(src.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
}

fn lex(src: &str) -> Lexed {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut literals = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
            blank(&mut out, &b[i..end]);
            i = end;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            let mut j = i;
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &b[i..j]);
            i = j;
        } else if !prev_ident && (c == b'r' || (c == b'b' && b.get(i + 1) == Some(&b'r'))) && {
            let k = if c == b'b' { i + 2 } else { i + 1 };
            let hashes = b[k..].iter().take_while(|&&h| h == b'#').count();
            b.get(k + hashes) == Some(&b'"')
        } {
            // Raw string: r"..", r#".."#, br"..".
            let k = if c == b'b' { i + 2 } else { i + 1 };
            let hashes = b[k..].iter().take_while(|&&h| h == b'#').count();
            let open = k + hashes + 1;
            let mut close = "\"".to_string();
            close.push_str(&"#".repeat(hashes));
            let end = src[open..]
                .find(&close)
                .map_or(b.len(), |n| open + n + close.len());
            literals.push((
                i,
                src[open..end.saturating_sub(close.len()).max(open)].to_string(),
            ));
            out.extend_from_slice(&b[i..open]);
            blank(&mut out, &b[open..end]);
            i = end;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            literals.push((i, src[i + 1..j.min(b.len())].to_string()));
            out.push(b'"');
            blank(&mut out, &b[i + 1..end]);
            i = end;
        } else if c == b'\'' {
            // A char literal ('a', '\n', '"', 'é') or a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                // Skip the escaped char: '\'' does not end at the escaped quote.
                b.get(i + 3..)
                    .and_then(|r| r.iter().position(|&x| x == b'\''))
                    .map(|n| i + 3 + n + 1)
            } else {
                src[i + 1..]
                    .chars()
                    .next()
                    .map(|ch| i + 1 + ch.len_utf8())
                    .filter(|&k| b.get(k) == Some(&b'\''))
                    .map(|k| k + 1)
            };
            match end {
                Some(end) => {
                    out.push(b'\'');
                    blank(&mut out, &b[i + 1..end]);
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(if c.is_ascii() { c } else { b' ' });
            i += 1;
        }
    }
    Lexed {
        code: String::from_utf8(out).expect("lexed code is ASCII"),
        literals,
    }
}

/// Byte ranges of `#[cfg(test)]` items (attribute at column 0), in the lexed code.
fn test_ranges(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut ranges = Vec::new();
    let mut line_start = 0;
    for line in code.split_inclusive('\n') {
        if line.trim_end() == "#[cfg(test)]" {
            let from = line_start;
            let mut depth = 0usize;
            let mut end = b.len();
            for (j, &c) in b.iter().enumerate().skip(from + line.len()) {
                match c {
                    b'{' => depth += 1,
                    b'}' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            end = j + 1;
                            break;
                        }
                    }
                    b';' if depth == 0 => {
                        end = j + 1;
                        break;
                    }
                    _ => {}
                }
            }
            ranges.push((from, end));
        }
        line_start += line.len();
    }
    ranges
}

/// Identifier tokens of `code` with their byte offsets.
fn idents(code: &str) -> Vec<(usize, &str)> {
    let b = code.as_bytes();
    let mut v = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_ident(b[i]) {
            let s = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            if !b[s].is_ascii_digit() {
                v.push((s, &code[s..i]));
            }
        } else {
            i += 1;
        }
    }
    v
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// If `::` follows offset `i` (after whitespace), the offset after it.
fn after_colons(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    b[i..].starts_with(b"::").then(|| skip_ws(b, i + 2))
}

fn ident_at(code: &str, i: usize) -> Option<&str> {
    let b = code.as_bytes();
    let n = b[i..].iter().take_while(|&&c| is_ident(c)).count();
    (n > 0).then(|| &code[i..i + n])
}

/// The first segments after a path prefix ending at `i` (just after `::`): one ident, or
/// the first ident of every top-level item of a `{ … }` group.
fn first_segments(code: &str, i: usize) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    if b.get(i) != Some(&b'{') {
        return ident_at(code, i)
            .map(|s| vec![(i, s.to_string())])
            .unwrap_or_default();
    }
    let mut found = Vec::new();
    let mut depth = 0;
    let mut expect_item = true;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'{' => {
                depth += 1;
                if depth == 1 {
                    expect_item = true;
                }
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expect_item = true,
            c if depth == 1 && expect_item && is_ident(c) => {
                let s = ident_at(code, j).expect("an ident starts here");
                found.push((j, s.to_string()));
                expect_item = false;
                j += s.len();
                continue;
            }
            c if !c.is_ascii_whitespace() => expect_item = false,
            _ => {}
        }
        j += 1;
    }
    found
}

/// The module path of a file relative to `src`: `None` for `main.rs` (another crate).
fn module_path(file: &str) -> Option<Vec<String>> {
    if file == "main.rs" {
        return None;
    }
    let stem = file.strip_suffix(".rs")?;
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    Some(parts)
}

/// Top-level modules of the library named by paths in `code`: (offset, module).
fn crate_modules(file: &str, code: &str, toks: &[(usize, &str)]) -> Vec<(usize, String)> {
    let b = code.as_bytes();
    let module = module_path(file);
    let mut found = Vec::new();
    for &(at, t) in toks {
        let prev = code[..at].trim_end();
        if prev.ends_with("::") {
            continue; // Not the start of a path.
        }
        let mut base: Vec<String> = match (t, &module) {
            ("yunwei_server", _) | ("crate", Some(_)) => Vec::new(),
            ("self", Some(m)) => m.clone(),
            ("super", Some(m)) => {
                let mut base = m.clone();
                base.pop();
                base
            }
            _ => continue,
        };
        let Some(mut i) = after_colons(b, at + t.len()) else {
            continue;
        };
        // Further `super::` segments.
        while t == "super" && ident_at(code, i) == Some("super") {
            base.pop();
            match after_colons(b, i + "super".len()) {
                Some(n) => i = n,
                None => break,
            }
        }
        match base.first() {
            Some(top) => found.push((at, top.clone())),
            None => found.extend(first_segments(code, i)),
        }
    }
    found
}

const SQL_STARTS: &[&str] = &[
    "SELECT",
    "INSERT INTO",
    "DELETE FROM",
    "CREATE TABLE",
    "ALTER TABLE",
];

fn is_sql(literal: &str) -> bool {
    let s = literal.trim_start();
    let word_end = |rest: &str| rest.is_empty() || rest.starts_with(|c: char| c.is_whitespace());
    if SQL_STARTS
        .iter()
        .any(|k| s.strip_prefix(k).is_some_and(word_end))
    {
        return true;
    }
    // UPDATE <table> SET
    s.strip_prefix("UPDATE")
        .filter(|r| word_end(r))
        .is_some_and(|r| {
            let mut w = r.split_whitespace();
            w.next().is_some() && w.next() == Some("SET")
        })
}

/// Every layering violation in `files`, given as (path relative to `src`, source text).
fn violations(files: &[(String, String)]) -> Vec<Violation> {
    // One report per file, line and rule: the first reason found.
    let mut found = BTreeMap::new();
    for (file, text) in files {
        let file = file.replace('\\', "/");
        let lexed = lex(text);
        let code = &lexed.code;
        let skip = test_ranges(code);
        let line_of = |at: usize| code[..at].matches('\n').count() + 1;
        let live = |at: usize| !skip.iter().any(|&(s, e)| s <= at && at < e);
        let mut report = |at: usize, rule: &'static str, what: String| {
            if live(at) {
                found
                    .entry((file.clone(), line_of(at), rule))
                    .or_insert(what);
            }
        };
        let in_http = file.starts_with("http/");
        let in_store = file.starts_with("store/");
        let toks = idents(code);
        let b = code.as_bytes();

        if !in_http {
            for &(at, t) in &toks {
                if t == "axum" {
                    report(at, AXUM, "uses axum".into());
                }
            }
        }

        if !in_store {
            let uses_sqlx = toks.iter().any(|&(_, t)| t == "sqlx");
            for (k, &(at, t)) in toks.iter().enumerate() {
                let sqlx_query = t == "sqlx"
                    && after_colons(b, at + t.len())
                        .is_some_and(|i| ident_at(code, i).is_some_and(|n| n.starts_with("query")));
                if sqlx_query {
                    report(at, SQL, "calls sqlx::query".into());
                } else if matches!(
                    t,
                    "query_as" | "query_scalar" | "query_as_with" | "query_scalar_with"
                ) && k
                    .checked_sub(1)
                    .and_then(|p| toks.get(p))
                    .is_none_or(|&(_, p)| p != "sqlx")
                {
                    report(at, SQL, format!("calls {t}"));
                } else if uses_sqlx
                    && t == "execute"
                    && code[..at].trim_end().ends_with('.')
                    && code[at + t.len()..].trim_start().starts_with('(')
                {
                    report(at, SQL, "runs a sqlx query with .execute(".into());
                }
            }
            for (at, lit) in &lexed.literals {
                if is_sql(lit) {
                    let words: Vec<&str> = lit.split_whitespace().filter(|w| *w != "\\").collect();
                    let head: String = words.join(" ").chars().take(40).collect();
                    report(*at, SQL, format!("SQL literal {head:?}"));
                }
            }
        }

        if !in_http && file != "lib.rs" {
            for &(at, t) in &toks {
                if t == "AppState" {
                    report(
                        at,
                        APP_STATE,
                        "names AppState (take the service it needs)".into(),
                    );
                }
            }
        }

        let modules = crate_modules(&file, code, &toks);
        if !in_http && file != "lib.rs" {
            for (at, m) in &modules {
                if m == "http" {
                    report(*at, HTTP_IMPORT, "imports the http layer".into());
                }
            }
        }
        if in_store {
            for (at, m) in &modules {
                if SERVICES.contains(&m.as_str()) {
                    report(*at, STORE_SERVICE, format!("imports service module {m}"));
                }
            }
        }
    }
    found
        .into_iter()
        .map(|((file, line, rule), what)| Violation {
            file,
            line,
            rule,
            what,
        })
        .collect()
}

/// All `.rs` files under `src`, relative to it.
fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                files.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_server_keeps_its_layers() {
    let files = sources();
    assert!(
        files.iter().any(|(f, _)| f == "http/mod.rs") && files.iter().any(|(f, _)| f == "lib.rs"),
        "the scan finds the sources: {:?}",
        files.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    let found = violations(&files);
    let mut problems = Vec::new();
    for v in &found {
        if !KNOWN.contains(&(v.file.as_str(), v.rule)) {
            problems.push(v.to_string());
        }
    }
    for &(file, rule) in KNOWN {
        if !found.iter().any(|v| v.file == file && v.rule == rule) {
            problems.push(format!(
                "src/{file} no longer breaks [{rule}]: remove (\"{file}\", \"{rule}\") from KNOWN"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layering violations (see the doc comment of tests/layers.rs):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_finds_each_kind_of_violation() {
    let file = |name: &str, text: &str| (name.to_string(), text.to_string());
    let files = vec![
        file(
            "clean.rs",
            "//! Mentions axum::Router, AppState and crate::http::ApiError in docs only.\n\
             // sqlx::query(\"SELECT 1\") in a comment\n\
             /* use axum; */\n\
             use crate::{store::Store, timeline::Span};\n\
             const URL: &str = \"http://localhost/axum::serve\";\n\
             const C: char = '\"';\n\
             const Q: (char, u8) = ('\\'', b'\\''); const A: &str = \"axum::x\";\n\
             fn f<'a>(s: &'a str) -> &'a str { println!(\"select a host\"); s }\n\
             fn g() { let _ = \"UPDATE the docs\"; }\n\
             #[cfg(test)]\n\
             mod tests {\n    \
                 fn fixture() { let _ = sqlx::query(\"CREATE TABLE t (a)\"); }\n\
             }\n",
        ),
        file("svc.rs", "fn f() {}\nuse axum::Json;\n"),
        file(
            "reports.rs",
            "use std::sync::Arc;\npub async fn run(s: Arc<crate::AppState>) {}\n",
        ),
        file(
            "lib.rs",
            "pub async fn run() {\n    axum::serve(l, r).await;\n}\n",
        ),
        file(
            "sql.rs",
            "fn f() {\n    sqlx::query(&q).fetch_all(p);\n    query_as::<_, (i64,)>(&q);\n    \
             q.execute(&mut *tx);\n    let s = \"\n  UPDATE t SET a = 1\";\n    \
             let r = r#\"DELETE FROM x\"#;\n}\n",
        ),
        file(
            "inventory.rs",
            "use crate::{\n    store::Store,\n    http::ApiError,\n};\n",
        ),
        file("notify/mod.rs", "use super::http::ApiError;\n"),
        file("ingest.rs", "fn f() -> crate::http::ApiError { todo() }\n"),
        file("main.rs", "use yunwei_server::http::router;\n"),
        file(
            "store/kpi.rs",
            "use super::Store;\nuse crate::{timeline::Span, metrics::Metrics};\n\
             fn f() { let _ = crate::now_ms(); sqlx::query(\"SELECT 1\"); }\n\
             fn g() -> i64 { crate::ingest::MAX }\n",
        ),
        file("store/mod.rs", "use super::{rules::RuleSet, store::X};\n"),
        file(
            "http/mod.rs",
            "use axum::Router;\nuse crate::{http::error::ApiError, AppState};\n",
        ),
    ];
    let found = violations(&files);
    let got: BTreeSet<(String, usize, &str)> = found
        .iter()
        .map(|v| (v.file.clone(), v.line, v.rule))
        .collect();
    let want: BTreeSet<(String, usize, &str)> = [
        ("svc.rs", 2, AXUM),
        ("reports.rs", 2, APP_STATE),
        ("lib.rs", 2, AXUM),
        ("sql.rs", 2, SQL),
        ("sql.rs", 3, SQL),
        ("sql.rs", 4, SQL),
        ("sql.rs", 5, SQL),
        ("sql.rs", 7, SQL),
        ("inventory.rs", 3, HTTP_IMPORT),
        ("notify/mod.rs", 1, HTTP_IMPORT),
        ("ingest.rs", 1, HTTP_IMPORT),
        ("main.rs", 1, HTTP_IMPORT),
        ("store/kpi.rs", 4, STORE_SERVICE),
        ("store/mod.rs", 1, STORE_SERVICE),
    ]
    .into_iter()
    .map(|(f, l, r)| (f.to_string(), l, r))
    .collect();
    assert_eq!(got, want, "found: {found:#?}");
    for v in &found {
        assert!(
            v.to_string()
                .starts_with(&format!("src/{}:{}: [{}]", v.file, v.line, v.rule)),
            "{v}"
        );
    }
}
