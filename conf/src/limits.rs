//! Every size and nesting limit on text that reaches a parser or the audit log, in one place.
//!
//! The parsers involved (`promql-parser`, the template parser, the YAML tree, serde) and the
//! PromQL evaluator recurse once per level of nesting, so a deep enough input overflows a
//! thread's stack and aborts the whole process. Measured on a 2 MiB thread stack (tokio's
//! worker default) in a debug build, the PromQL evaluator overflows at about 200 levels of AST
//! depth and `promql-parser` alone between 10,000 and 30,000; the limits below keep a wide
//! margin while staying far above what real rules, templates and files use (rarely more than
//! 15 levels). Every check runs before the recursive parser sees the text, and its error
//! names the limit.

/// Longest PromQL query or selector, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Deepest PromQL nesting: levels of the parsed expression (each function call, aggregation,
/// parenthesis, unary sign, binary operator of a chain `a or b or c ...`, subquery counts one).
/// Before parsing, open brackets (`(`, `[`, `{`) plus a run of signs (`- - -`) are counted
/// against the same limit.
pub const MAX_QUERY_DEPTH: usize = 64;

/// Most operators (binary or unary, keywords `and`/`or`/`unless`/`atan2` included) in one
/// PromQL query, checked before parsing: a flat chain of operators nests as deep as it is long.
pub const MAX_QUERY_OPERATORS: usize = 1_000;

/// Longest alert template (a label or annotation value), in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// Deepest alert template nesting: `{{if}}` / `{{with}}` / `{{range}}` blocks plus
/// parenthesised pipelines inside one action.
pub const MAX_TEMPLATE_DEPTH: usize = 64;

/// Deepest nesting of YAML collections (rule files, contracts, calendars, configs).
pub const MAX_YAML_DEPTH: usize = 64;

/// Largest JSON request body of the API (ingest and enroll have their own limits). JSON
/// nesting is limited by serde_json's default recursion limit of 128.
pub const MAX_API_BODY_BYTES: usize = 1024 * 1024;

/// Longest login name accepted for a login attempt (the longest a user name may be).
pub const MAX_LOGIN_NAME_BYTES: usize = 64;

/// Most password hashes (argon2id, about 19 MiB and tens of milliseconds of CPU each) the
/// server computes at once for logins; a login beyond them is answered 429
/// `too_many_requests` with `Retry-After` instead of queueing memory and CPU.
pub const MAX_CONCURRENT_PASSWORD_CHECKS: usize = 4;

/// Most CPU-heavy computations (an assessment, building or rendering a report) the server runs
/// at once on blocking threads (`server/src/compute.rs`); more wait for a slot, within their
/// time limit (`contracts.compute_timeout_ms`).
pub const MAX_CONCURRENT_COMPUTE: usize = 2;

/// Most entries `report verify` accepts in an XLSX file (a real report has a few dozen); the
/// zip's directory is checked before anything is decompressed.
pub const MAX_XLSX_ENTRIES: usize = 1_000;

/// Most bytes `report verify` decompresses from an XLSX file (a real report's shared strings
/// are a few MiB), so a zip bomb is refused instead of filling memory.
pub const MAX_XLSX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024;

/// Longest assessment or report period, in local days: a year (leap years included). Longer
/// periods are refused (400, field `period`) before any evidence is read: a 1000-year period
/// would read and return hundreds of MB per request.
pub const MAX_ASSESSMENT_PERIOD_DAYS: i64 = 366;

/// Most points one series of `/api/v1/yunwei/series` may return (Prometheus's limit for
/// `query_range`); a `step` that would give more is refused (400, field `step`).
pub const MAX_SERIES_POINTS_PER_SERIES: usize = 11_000;

/// Most points one `/api/v1/yunwei/series` response may hold over all its series (about 30 bytes of
/// JSON each, so at most some 8 MB); refused (400, field `step`: raise it or narrow `match`).
pub const MAX_SERIES_RESPONSE_POINTS: usize = 250_000;

/// Longest range `/api/v1/yunwei/series` reads raw samples for without a `step` (every stored
/// point is returned then, so the range bounds the answer); longer ranges must give `step`.
pub const MAX_SERIES_RAW_RANGE_WITHOUT_STEP_MS: i64 = 6 * 3_600_000;

/// Most points one series of a Prometheus API range query (`/api/v1/query_range`) may have:
/// Prometheus's own limit, with its error (400 `bad_data`, "exceeded maximum resolution").
pub const MAX_QUERY_POINTS_PER_SERIES: usize = 11_000;

/// Most series one Prometheus API answer (`/api/v1/query`, `/query_range`, `/series`,
/// `/labels`) may hold; more are refused (422 `execution`: narrow the query).
pub const MAX_QUERY_RESULT_SERIES: usize = 10_000;

/// Most points one Prometheus API range answer may hold over all its series (about 30 bytes of
/// JSON each, so some 60 MB); more are refused (422 `execution`).
pub const MAX_QUERY_RESPONSE_POINTS: usize = 2_000_000;

/// Longest a Prometheus API query may evaluate (Prometheus's default `query.timeout` is 2 m);
/// the request's `timeout` parameter may lower it. Past it the answer is 503 `timeout`.
pub const MAX_QUERY_TIMEOUT_MS: i64 = 30_000;

/// Longest audit row field (actor, action, result, source); longer values are cut and end in
/// `…(+N bytes)`.
pub const MAX_AUDIT_FIELD_BYTES: usize = 256;

/// Longest audit row target (a request path, a user name).
pub const MAX_AUDIT_TARGET_BYTES: usize = 1024;

/// Longest string inside an audit row's detail, and longest detail as JSON text.
pub const MAX_AUDIT_DETAIL_STRING_BYTES: usize = 1024;
pub const MAX_AUDIT_DETAIL_BYTES: usize = 4096;

/// Anonymous refusals (no valid credentials, login attempts for no existing account) are
/// written as at most one audit row per source and kind in this window; the rest are counted
/// and written as one summary row once the window has passed.
pub const AUDIT_REFUSAL_WINDOW_MS: i64 = 60_000;

/// Cuts `s` to at most `max` bytes (on a character boundary), ending it in `…(+N bytes)`
/// naming how many bytes were cut; shorter strings are returned unchanged.
pub fn truncate_marked(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    // Leave room for the marker (at most 24 bytes: "…(+" 5, 20 digits, " bytes)" 7).
    let mut keep = max.saturating_sub(32);
    while !s.is_char_boundary(keep) {
        keep -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…(+{} bytes)", &s[..keep], s.len() - keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_is_marked_and_bounded() {
        assert_eq!(truncate_marked("short", 10), "short");
        let long = "é".repeat(1000);
        // 101 - 32 = 69 falls inside a character: the cut moves back to 68.
        let t = truncate_marked(&long, 101);
        assert!(t.len() <= 101, "{}", t.len());
        assert_eq!(t, format!("{}…(+1932 bytes)", "é".repeat(34)));
        let million = "x".repeat(1_000_000);
        let t = truncate_marked(&million, 256);
        assert!(t.len() <= 256);
        assert!(t.ends_with("…(+999776 bytes)"), "{t}");
    }
}
