//! Alert templates: the subset of Go's `text/template` that Prometheus rule files use in
//! labels and annotations, with Prometheus's functions and Go's number formatting.
//!
//! A template is compiled once, when the rule file is loaded ([`compile`]), so syntax errors and
//! unknown functions are load-time errors; it is rendered for each alert ([`Template::render`])
//! with the alert's labels, the external labels and the sample value. As in Prometheus, these
//! variables are defined: `$labels`, `$externalLabels`, `$externalURL`, `$value`, and the dot
//! holds `.Labels`, `.ExternalLabels`, `.ExternalURL` and `.Value`. A missing label renders as
//! the empty string (Prometheus's `missingkey=zero`). Label values are data, never template
//! text: a value holding `{{ ... }}` is printed as it is.
//!
//! Supported: text, `{{/* comments */}}`, `{{-` / `-}}` trimming, pipelines (`{{ $value |
//! humanize }}`), function calls, parenthesised pipelines, variables (`$x := ...`, `$x = ...`),
//! `if` / `else if` / `else`, `with`, `range` over label maps, and the functions `humanize`,
//! `humanize1024`, `humanizeDuration`, `humanizePercentage`, `humanizeTimestamp`, `printf`,
//! `print`, `println`, `toUpper`, `toLower`, `title`, `reReplaceAll`, `match`, `stripPort`,
//! `parseDuration`, `safeHtml`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `and`, `or`, `not`, `len`,
//! `index`. Prometheus's `query` family (which would run PromQL while rendering) and
//! `define`/`template`/`block` are refused at compile time, naming the construct.

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use crate::promql::Labels;
use yunwei_conf::limits::{MAX_TEMPLATE_BYTES, MAX_TEMPLATE_DEPTH};

mod exec;
mod format;
mod lex;
mod parse;

use self::exec::{Exec, Root, Val};
use self::lex::{Item, lex};
use self::parse::{Node, TreeParser, check_nodes, nodes_read_labels_only};

pub(crate) use self::format::go_quote;
pub use self::format::{
    format_g, format_go_e, humanize, humanize_1024, humanize_duration, humanize_percentage,
    humanize_timestamp,
};

/// A template that could not be compiled or rendered. `line` and `col` (1-based) point into the
/// template text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template: {line}:{col}: {message}")]
pub struct TemplateError {
    /// 1-based line within the template text.
    pub line: usize,
    /// 1-based column within the template text.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// What a template is rendered with.
#[derive(Clone, Copy, Debug)]
pub struct TemplateData<'a> {
    /// The alert's labels (`$labels`, `.Labels`).
    pub labels: &'a Labels,
    /// The external labels (`$externalLabels`, `.ExternalLabels`).
    pub external_labels: &'a Labels,
    /// The external URL (`$externalURL`, `.ExternalURL`).
    pub external_url: &'a str,
    /// The sample value (`$value`, `.Value`).
    pub value: f64,
}

/// The data of [`TemplateData`] in the form templates read it, made once when the first
/// template that reads anything is rendered and then shared by the others.
pub struct TemplateEnv<'a> {
    data: &'a TemplateData<'a>,
    root: std::cell::OnceCell<Rc<Root>>,
}

impl<'a> TemplateEnv<'a> {
    /// An environment for rendering with `data`.
    pub fn new(data: &'a TemplateData<'a>) -> Self {
        TemplateEnv {
            data,
            root: std::cell::OnceCell::new(),
        }
    }
}

/// A compiled template.
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
    /// Whether the text has no actions at all (rendering is then a copy).
    literal: bool,
    /// See [`Template::reads_labels_only`].
    labels_only: bool,
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Compiles `text`.
pub fn compile(text: &str) -> Result<Template, TemplateError> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(error_at(
            text,
            0,
            format!(
                "the template is {} bytes long; the limit is {MAX_TEMPLATE_BYTES}",
                text.len()
            ),
        ));
    }
    let items = lex(text)?;
    check_depth(text, &items)?;
    let literal = items.iter().all(|i| matches!(i, Item::Text(_)));
    let mut p = TreeParser {
        src: text,
        items,
        i: 0,
    };
    let (nodes, end) = p.list()?;
    if let Some((kw, pos)) = end {
        return Err(p.err(pos, format!("unexpected {{{{{kw}}}}}")));
    }
    let t = Template {
        source: text.to_string(),
        labels_only: literal || nodes_read_labels_only(&nodes),
        nodes,
        literal,
    };
    t.check()?;
    Ok(t)
}

impl Template {
    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether rendering reads nothing but the labels, so that the same labels always render
    /// the same text. Decided from the parsed template, conservatively: every data access must
    /// be `$labels…` or `.Labels…` / `$.Labels…`; a bare `.` or `$` (which print everything,
    /// value included), the value, the external labels or URL make it `false`. Variables the
    /// template declares hold what their (checked) pipelines gave.
    pub fn reads_labels_only(&self) -> bool {
        self.labels_only
    }

    /// Renders the template.
    pub fn render(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        self.render_in(&TemplateEnv::new(data))
    }

    /// Renders the template in `env`, which several templates rendered with the same data
    /// (an alert's labels and annotations) share.
    pub fn render_in(&self, env: &TemplateEnv<'_>) -> Result<String, TemplateError> {
        if self.literal {
            return Ok(self.nodes.iter().fold(String::new(), |mut s, n| {
                if let Node::Text(t) = n {
                    s.push_str(t);
                }
                s
            }));
        }
        let data = env.data;
        let root = env
            .root
            .get_or_init(|| {
                Rc::new(Root {
                    labels: Rc::new(labels_map(data.labels)),
                    external_labels: Rc::new(labels_map(data.external_labels)),
                    external_url: data.external_url.to_string(),
                    value: data.value,
                })
            })
            .clone();
        let mut ex = Exec {
            src: &self.source,
            vars: vec![
                ("$".into(), Val::Root(root.clone())),
                ("$labels".into(), Val::Map(root.labels.clone())),
                (
                    "$externalLabels".into(),
                    Val::Map(root.external_labels.clone()),
                ),
                ("$externalURL".into(), Val::Str(root.external_url.clone())),
                ("$value".into(), Val::Float(root.value)),
            ],
            out: String::new(),
        };
        ex.walk(&self.nodes, &Val::Root(root))?;
        Ok(ex.out)
    }

    /// Renders, or gives Prometheus's `<error expanding template: ...>` text on failure.
    pub fn render_or_error(&self, data: &TemplateData<'_>) -> String {
        self.render_or_error_in(&TemplateEnv::new(data))
    }

    /// [`Template::render_or_error`] in a shared [`TemplateEnv`].
    pub fn render_or_error_in(&self, env: &TemplateEnv<'_>) -> String {
        self.render_in(env)
            .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
    }

    /// Checks variables are declared before use, as Go's parser does.
    fn check(&self) -> Result<(), TemplateError> {
        let mut scope: Vec<String> = ["$", "$labels", "$externalLabels", "$externalURL", "$value"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        check_nodes(&self.nodes, &mut scope, &self.source)
    }
}

fn labels_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src[..pos.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Refuses nesting deeper than [`MAX_TEMPLATE_DEPTH`] before the parser, which recurses once
/// per `{{if}}` / `{{with}}` / `{{range}}` block and per parenthesis, sees the template.
fn check_depth(src: &str, items: &[Item]) -> Result<(), TemplateError> {
    let mut blocks = 0usize;
    for item in items {
        let Item::Action { toks, pos } = item else {
            continue;
        };
        match toks.first().map(|t| &t.tok) {
            Some(lex::Tok::Ident(w)) if matches!(w.as_str(), "if" | "with" | "range") => {
                blocks += 1
            }
            Some(lex::Tok::Ident(w)) if w == "end" => blocks = blocks.saturating_sub(1),
            _ => {}
        }
        let mut parens = 0usize;
        for t in toks {
            match t.tok {
                lex::Tok::LParen => parens += 1,
                lex::Tok::RParen => parens = parens.saturating_sub(1),
                _ => {}
            }
            if blocks + parens > MAX_TEMPLATE_DEPTH {
                return Err(error_at(
                    src,
                    if parens > 0 { t.pos } else { *pos },
                    format!(
                        "the template is nested more than {MAX_TEMPLATE_DEPTH} levels deep \
                         (the limit)"
                    ),
                ));
            }
        }
        if blocks > MAX_TEMPLATE_DEPTH {
            return Err(error_at(
                src,
                *pos,
                format!(
                    "the template is nested more than {MAX_TEMPLATE_DEPTH} levels deep (the limit)"
                ),
            ));
        }
    }
    Ok(())
}

fn error_at(src: &str, pos: usize, message: impl Into<String>) -> TemplateError {
    let (line, col) = line_col(src, pos);
    TemplateError {
        line,
        col,
        message: message.into(),
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, labels: &[(&str, &str)], value: f64) -> String {
        let l = Labels::from_pairs(labels.iter().copied());
        let ext = Labels::from_pairs([("cluster", "prod")]);
        let t = compile(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        t.render(&TemplateData {
            labels: &l,
            external_labels: &ext,
            external_url: "http://yunwei.example",
            value,
        })
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn deep_nesting_and_long_templates_are_refused() {
        // Without the check these overflow the parser's stack and abort the process.
        let ifs = format!("{}x{}", "{{if 1}}".repeat(3000), "{{end}}".repeat(3000));
        let parens = format!("{{{{{}1{}}}}}", "(".repeat(30_000), ")".repeat(30_000));
        for t in [ifs, parens] {
            let e = compile(&t).unwrap_err();
            assert!(e.message.contains("nested more than 64 levels"), "{e}");
        }
        let e = compile(&"x".repeat(MAX_TEMPLATE_BYTES + 1)).unwrap_err();
        assert!(e.message.contains("the limit is 65536"), "{e}");
        // Up to the limit it compiles and renders.
        let n = MAX_TEMPLATE_DEPTH / 2;
        let ok = format!(
            "{}{{{{{}$value{}}}}}{}",
            "{{if 1}}".repeat(n),
            "(".repeat(n),
            ")".repeat(n),
            "{{end}}".repeat(n)
        );
        assert_eq!(render(&ok, &[], 7.0), "7");
    }

    fn check(text: &str, value: f64, expected: &str) {
        let got = render(text, &[("instance", "db1:9100"), ("job", "node")], value);
        assert_eq!(got, expected, "template {text:?}");
    }

    #[test]
    fn reading_only_the_labels_is_decided_from_the_parse() {
        let only = |t: &str| compile(t).unwrap().reads_labels_only();
        for t in [
            "critical",
            "{{ $labels.instance }}-oncall",
            "{{ .Labels.job }}",
            "{{ $.Labels.job | toUpper }}",
            "{{ if eq $labels.job \"node\" }}a{{ else }}b{{ end }}",
            "{{ $j := $labels.job }}{{ $j }}",
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }}{{ end }}",
            // Only a mention in text, not a read.
            "value of external",
        ] {
            assert!(only(t), "{t}");
        }
        for t in [
            "{{ $value }}",
            "{{ .Value }}",
            "{{ . }}",
            "{{ $ }}",
            "{{ print . }}",
            "{{ $x := $ }}{{ $x }}",
            "{{ $x := . }}{{ $x.Labels.job }}",
            "{{ $externalLabels.cluster }}",
            "{{ .ExternalURL }}",
            "{{ if gt $value 1.0 }}hot{{ end }}",
            "{{ with $labels.job }}{{ . }}{{ end }}",
            "{{ (printf \"%v\" $value) }}",
        ] {
            assert!(!only(t), "{t}");
        }
    }

    #[test]
    fn prometheus_template_usage() {
        check("{{ $labels.instance }} down", 0.0, "db1:9100 down");
        check("{{ .Labels.job }}/{{ .Value }}", 2.5, "node/2.5");
        check("{{ $value }}", 1234567.0, "1.234567e+06");
        check("{{ $value | humanize }}", 1234567.0, "1.235M");
        check("{{ humanize $value }}B", 2048.0, "2.048kB");
        check("{{ $value | humanizePercentage }}", 0.1234, "12.34%");
        check("{{ humanizeDuration $value }}", 90.0, "1m 30s");
        check("{{ printf \"%.2f\" $value }}", 1.23456, "1.23");
        check("{{ $value | printf \"%.1f%%\" }}", 93.25, "93.2%");
        check("{{ $externalLabels.cluster }}", 0.0, "prod");
        check("{{ $labels.missing }}|", 0.0, "|");
        check(
            "{{ toUpper $labels.job }} {{ title \"disk full\" }}",
            0.0,
            "NODE Disk Full",
        );
        check(
            "{{ reReplaceAll \":[0-9]+$\" \"\" $labels.instance }}",
            0.0,
            "db1",
        );
        check("{{ $labels.instance | stripPort }}", 0.0, "db1");
        check("a {{- /* gone */ -}} b", 0.0, "ab");
        check("a  {{- \"x\" }}  \n {{- \"y\" -}}  c", 0.0, "axyc");
        check(
            "{{ if gt $value 80.0 }}high{{ else if gt $value 50.0 }}mid{{ else }}low{{ end }}",
            60.0,
            "mid",
        );
        check("{{ if eq $labels.job \"node\" }}yes{{ end }}", 0.0, "yes");
        check(
            "{{ if and (ge $value 1.0) (le $value 2.0) }}in{{ end }}",
            1.0,
            "in",
        );
        check("{{ if not (lt $value 0.0) }}pos{{ end }}", 1.0, "pos");
        check("{{ $x := humanize $value }}[{{ $x }}]", 1500.0, "[1.5k]");
        check(
            "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
            0.0,
            "instance=db1:9100;job=node;",
        );
        check(
            "{{ with $labels.job }}job {{ . }}{{ end }}",
            0.0,
            "job node",
        );
        check(
            "{{ index $labels \"job\" }} {{ len $labels }}",
            0.0,
            "node 2",
        );
        check(
            "{{ toLower \"ABC\" }}{{ print 1 2 }}{{ print \"a\" \"b\" }}",
            0.0,
            "abc1 2ab",
        );
        check(
            "{{ if match \"^db\" $labels.instance }}db{{ end }}",
            0.0,
            "db",
        );
        check(
            "{{ humanizeTimestamp 1.5 }}",
            0.0,
            "1970-01-01 00:00:01.5 +0000 UTC",
        );
        check("{{ \"}}\" }}", 0.0, "}}");
    }

    #[test]
    fn arbitrary_text_never_panics() {
        const BITS: &[&str] = &[
            "{{",
            "}}",
            "{{- ",
            " -}}",
            "-",
            " ",
            "$value",
            "$labels",
            ".Labels",
            ".x",
            "|",
            "(",
            ")",
            "\"",
            "`",
            "'a'",
            "if",
            "else",
            "end",
            "range",
            "with",
            "$x :=",
            "$x",
            "=",
            ",",
            "humanize",
            "printf",
            "\"%5.2f%d%\"",
            "1.5",
            "-2",
            "0x1F",
            "é",
            "中",
            "/*",
            "*/",
            "eq",
            "gt",
            "index",
            "len",
            "nil",
            "true",
            "\n",
        ];
        let l = Labels::from_pairs([("x", "y")]);
        let data = TemplateData {
            labels: &l,
            external_labels: &l,
            external_url: "",
            value: f64::NAN,
        };
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(BITS[(seed % BITS.len() as u64) as usize]);
            }
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            if let Ok(t) = compile(&text) {
                let _ = t.render(&data);
            }
        }
    }

    #[test]
    fn label_values_are_text() {
        let got = render(
            "{{ $labels.x }}",
            &[("x", "{{ $value }} {{ query \"up\" }}")],
            1.0,
        );
        assert_eq!(got, "{{ $value }} {{ query \"up\" }}");
    }

    #[test]
    fn compile_errors_name_the_problem() {
        let cases = [
            (
                "{{ $value | nope }}",
                1,
                13,
                "function \"nope\" not defined",
            ),
            (
                "line\n{{ query \"up\" }}",
                2,
                4,
                "function \"query\" is not supported",
            ),
            ("{{ if $value }}x", 1, 1, "unexpected EOF in if"),
            ("{{ end }}", 1, 1, "unexpected {{end}}"),
            ("{{ $nope }}", 1, 4, "undefined variable \"$nope\""),
            ("{{ \"a }}", 1, 4, "unterminated quoted string"),
            ("{{ $value", 1, 1, "unclosed action"),
            (
                "{{/* x */ }}",
                1,
                10,
                "comment ends before closing delimiter",
            ),
            ("{{ template \"x\" }}", 1, 1, "not supported"),
            (
                "{{ $value | 1 }}",
                1,
                13,
                "non executable command in pipeline stage 2",
            ),
        ];
        for (text, line, col, msg) in cases {
            let e = compile(text).expect_err(text);
            assert_eq!((e.line, e.col), (line, col), "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn render_errors_follow_go() {
        let l = Labels::new();
        let data = TemplateData {
            labels: &l,
            external_labels: &l,
            external_url: "",
            value: 90.0,
        };
        // Go does not compare an untyped integer constant with a float64.
        let t = compile("{{ if gt $value 80 }}x{{ end }}").unwrap();
        let e = t.render(&data).unwrap_err();
        assert!(
            e.message.contains("incompatible types for comparison"),
            "{e}"
        );
        assert!(
            t.render_or_error(&data)
                .starts_with("<error expanding template: ")
        );
        let t = compile("{{ .Nope }}").unwrap();
        assert!(t.render(&data).is_err());
        let t = compile("{{ humanize \"abc\" }}").unwrap();
        assert!(t.render(&data).is_err());
        let t = compile("{{ humanize \"1234\" }}").unwrap();
        assert_eq!(t.render(&data).unwrap(), "1.234k");
    }
}
