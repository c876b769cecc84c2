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
use std::fmt::{self, Write as _};
use std::rc::Rc;

use regex::Regex;

use crate::promql::Labels;

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
    let items = lex(text)?;
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

fn error_at(src: &str, pos: usize, message: impl Into<String>) -> TemplateError {
    let (line, col) = line_col(src, pos);
    TemplateError {
        line,
        col,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Field(String),
    Dot,
    Var(String),
    Str(String),
    Num(String),
    Bool(bool),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: usize,
    space_before: bool,
}

#[derive(Clone, Debug)]
enum Item {
    Text(String),
    Action { toks: Vec<Token>, pos: usize },
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    while pos <= src.len() {
        let rest = &src[pos..];
        let Some(open) = rest.find("{{") else {
            let mut t = rest;
            if trim_next {
                t = t.trim_start_matches(is_space);
            }
            if !t.is_empty() {
                items.push(Item::Text(t.to_string()));
            }
            break;
        };
        let action_start = pos + open;
        let after = &src[action_start + 2..];
        let left_trim = after.starts_with('-') && after[1..].starts_with(is_space);
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start_matches(is_space);
        }
        if left_trim {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let mut p = action_start + 2 + if left_trim { 2 } else { 0 };
        // A comment: `{{/* ... */}}`, possibly with trim markers.
        if src[p..].starts_with("/*") {
            let Some(end) = src[p + 2..].find("*/") else {
                return Err(error_at(src, action_start, "unclosed comment"));
            };
            let mut q = p + 2 + end + 2;
            let right_trim = src[q..].starts_with(" -}}");
            if right_trim {
                q += 4;
            } else if src[q..].starts_with("}}") {
                q += 2;
            } else {
                return Err(error_at(src, q, "comment ends before closing delimiter"));
            }
            trim_next = right_trim;
            pos = q;
            continue;
        }
        let mut toks = Vec::new();
        let mut space = true;
        loop {
            let r = &src[p..];
            if r.is_empty() {
                return Err(error_at(src, action_start, "unclosed action"));
            }
            if let Some(s) = r.strip_prefix('-')
                && s.starts_with("}}")
                && space
            {
                // ` -}}`
                trim_next = true;
                p += 3;
                break;
            }
            if r.starts_with("}}") {
                trim_next = false;
                p += 2;
                break;
            }
            let c = r.chars().next().unwrap_or(' ');
            if is_space(c) {
                p += c.len_utf8();
                space = true;
                continue;
            }
            let start = p;
            let tok = match c {
                '|' => {
                    p += 1;
                    Tok::Pipe
                }
                '(' => {
                    p += 1;
                    Tok::LParen
                }
                ')' => {
                    p += 1;
                    Tok::RParen
                }
                ',' => {
                    p += 1;
                    Tok::Comma
                }
                '=' => {
                    p += 1;
                    Tok::Assign
                }
                ':' => {
                    if r.starts_with(":=") {
                        p += 2;
                        Tok::Declare
                    } else {
                        return Err(error_at(src, p, "expected :="));
                    }
                }
                '"' | '`' => {
                    let (s, len) = lex_string(r).map_err(|m| error_at(src, p, m))?;
                    p += len;
                    Tok::Str(s)
                }
                '\'' => {
                    // A character constant is an integer in Go.
                    let (s, len) = lex_string(r).map_err(|m| error_at(src, p, m))?;
                    p += len;
                    let mut cs = s.chars();
                    match (cs.next(), cs.next()) {
                        (Some(ch), None) => Tok::Num((ch as u32).to_string()),
                        _ => return Err(error_at(src, start, "malformed character constant")),
                    }
                }
                '$' => {
                    let n = ident_len(&r[1..]);
                    p += 1 + n;
                    Tok::Var(r[..1 + n].to_string())
                }
                '.' => {
                    let n = ident_len(&r[1..]);
                    if n == 0 {
                        if r[1..].starts_with(|c: char| c.is_ascii_digit()) {
                            let n = number_len(r);
                            p += n;
                            Tok::Num(r[..n].to_string())
                        } else {
                            p += 1;
                            Tok::Dot
                        }
                    } else {
                        p += 1 + n;
                        Tok::Field(r[1..1 + n].to_string())
                    }
                }
                c if c.is_ascii_digit() || ((c == '-' || c == '+') && r.len() > 1) => {
                    let n = number_len(r);
                    if n == 0 {
                        return Err(error_at(src, p, format!("unexpected {c:?} in command")));
                    }
                    p += n;
                    Tok::Num(r[..n].to_string())
                }
                c if c.is_alphabetic() || c == '_' => {
                    let n = ident_len(r);
                    p += n;
                    match &r[..n] {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        w => Tok::Ident(w.to_string()),
                    }
                }
                c => return Err(error_at(src, p, format!("unexpected {c:?} in command"))),
            };
            toks.push(Token {
                tok,
                pos: start,
                space_before: space,
            });
            space = false;
        }
        items.push(Item::Action {
            toks,
            pos: action_start,
        });
        pos = p;
    }
    Ok(items)
}

fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits_start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
        // Exponent signs: 1e+3, 0x1p-2.
        if (b[i] == b'e' || b[i] == b'E' || b[i] == b'p' || b[i] == b'P')
            && i + 1 < b.len()
            && (b[i + 1] == b'+' || b[i + 1] == b'-')
        {
            i += 2;
            continue;
        }
        i += 1;
    }
    if i == digits_start { 0 } else { i }
}

/// Lexes a Go string literal (`"..."` with escapes, `` `raw` ``, or `'c'`); returns the value
/// and the length in bytes.
fn lex_string(s: &str) -> Result<(String, usize), String> {
    let q = s.chars().next().ok_or("unterminated quoted string")?;
    let mut out = String::new();
    let mut it = s.char_indices().skip(1);
    while let Some((i, c)) = it.next() {
        if c == q {
            return Ok((out, i + 1));
        }
        if c == '\n' && q != '`' {
            return Err("unterminated quoted string".into());
        }
        if c == '\\' && q != '`' {
            let (_, e) = it.next().ok_or("unterminated quoted string")?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                '\\' | '"' | '\'' => out.push(e),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let mut code = 0u32;
                    for _ in 0..n {
                        let (_, h) = it.next().ok_or("invalid escape")?;
                        code = code * 16 + h.to_digit(16).ok_or("invalid escape")?;
                    }
                    out.push(char::from_u32(code).ok_or("invalid escape")?);
                }
                _ => return Err(format!("unknown escape sequence \\{e}")),
            }
        } else {
            out.push(c);
        }
    }
    Err("unterminated quoted string".into())
}

// ---------------------------------------------------------------------------------------------
// Parse tree

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action(Pipeline),
    If {
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Clone, Debug)]
struct Pipeline {
    pos: usize,
    /// Variables declared (`:=`) or assigned (`=`).
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Command>,
}

#[derive(Clone, Debug)]
struct Command {
    pos: usize,
    args: Vec<Arg>,
}

#[derive(Clone, Debug)]
enum Term {
    Func(String),
    Dot,
    /// `.A.B` on the dot.
    Field(Vec<String>),
    Var(String),
    Str(String),
    Num(String),
    Bool(bool),
    Nil,
    Pipe(Box<Pipeline>),
}

#[derive(Clone, Debug)]
struct Arg {
    pos: usize,
    term: Term,
    /// Field chain after the term: `$x.a.b`, `(pipeline).a`.
    chain: Vec<String>,
}

/// Prometheus's functions that read a query engine or a URL; refused at compile time.
const UNSUPPORTED_FUNCS: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "sortByLabel",
    "graphLink",
    "tableLink",
    "externalURL",
    "pathPrefix",
    "toTime",
    "html",
    "js",
    "urlquery",
    "call",
    "slice",
];

const FUNCS: &[&str] = &[
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "printf",
    "print",
    "println",
    "toUpper",
    "toLower",
    "title",
    "reReplaceAll",
    "match",
    "stripPort",
    "parseDuration",
    "safeHtml",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "and",
    "or",
    "not",
    "len",
    "index",
];

struct TreeParser<'a> {
    src: &'a str,
    items: Vec<Item>,
    i: usize,
}

type ListEnd = Option<(String, usize)>;

impl TreeParser<'_> {
    fn err(&self, pos: usize, message: impl Into<String>) -> TemplateError {
        error_at(self.src, pos, message)
    }

    /// Parses nodes until `{{end}}` / `{{else ...}}` (returned with the rest of its tokens kept
    /// in `self.pending`) or the end of input.
    fn list(&mut self) -> Result<(Vec<Node>, ListEnd), TemplateError> {
        let mut nodes = Vec::new();
        while self.i < self.items.len() {
            let item = self.items[self.i].clone();
            self.i += 1;
            match item {
                Item::Text(t) => nodes.push(Node::Text(t)),
                Item::Action { toks, pos } => {
                    let kw = match toks.first() {
                        Some(Token {
                            tok: Tok::Ident(w), ..
                        }) => w.clone(),
                        None => return Err(self.err(pos, "missing value for command")),
                        _ => String::new(),
                    };
                    match kw.as_str() {
                        "end" => {
                            if toks.len() > 1 {
                                return Err(self.err(toks[1].pos, "unexpected token in end"));
                            }
                            return Ok((nodes, Some(("end".into(), pos))));
                        }
                        "else" => {
                            // Hand the rest (`if ...` or nothing) back to the caller.
                            self.i -= 1;
                            return Ok((nodes, Some(("else".into(), pos))));
                        }
                        "if" | "with" | "range" => {
                            nodes.push(self.control(&kw, &toks[1..], pos)?);
                        }
                        "define" | "template" | "block" => {
                            return Err(self.err(
                                pos,
                                format!("{{{{{kw}}}}} is not supported in alert templates"),
                            ));
                        }
                        "break" | "continue" => {
                            return Err(self.err(pos, format!("{{{{{kw}}}}} is not supported")));
                        }
                        _ => nodes.push(Node::Action(self.pipeline(&toks, pos, false)?)),
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    fn control(&mut self, kw: &str, toks: &[Token], pos: usize) -> Result<Node, TemplateError> {
        let pipe = self.pipeline(toks, pos, kw == "range")?;
        if pipe.cmds.is_empty() {
            return Err(self.err(pos, format!("missing value for {kw}")));
        }
        let (body, end) = self.list()?;
        let mut otherwise = Vec::new();
        let mut branches = vec![(pipe, body)];
        let mut end = end;
        loop {
            match end {
                Some((ref e, _)) if e == "end" => break,
                Some((ref e, epos)) if e == "else" => {
                    let Item::Action { toks: etoks, .. } = self.items[self.i].clone() else {
                        return Err(self.err(epos, "internal error: else"));
                    };
                    self.i += 1;
                    let rest = &etoks[1..];
                    if kw == "if"
                        && matches!(rest.first(), Some(Token { tok: Tok::Ident(w), .. }) if w == "if")
                    {
                        let p = self.pipeline(&rest[1..], epos, false)?;
                        if p.cmds.is_empty() {
                            return Err(self.err(epos, "missing value for if"));
                        }
                        let (b, e2) = self.list()?;
                        branches.push((p, b));
                        end = e2;
                        continue;
                    }
                    if !rest.is_empty() {
                        return Err(self.err(rest[0].pos, "unexpected token in else"));
                    }
                    let (b, e2) = self.list()?;
                    otherwise = b;
                    match e2 {
                        Some((ref e, _)) if e == "end" => break,
                        Some((_, p)) => return Err(self.err(p, "expected end; found else")),
                        None => return Err(self.err(pos, format!("unexpected EOF in {kw}"))),
                    }
                }
                _ => return Err(self.err(pos, format!("unexpected EOF in {kw}"))),
            }
        }
        Ok(match kw {
            "if" => Node::If {
                branches,
                otherwise,
            },
            "with" => {
                let (pipe, body) = branches.remove(0);
                Node::With {
                    pipe,
                    body,
                    otherwise,
                }
            }
            _ => {
                let (pipe, body) = branches.remove(0);
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                }
            }
        })
    }

    fn pipeline(
        &self,
        toks: &[Token],
        pos: usize,
        allow_two: bool,
    ) -> Result<Pipeline, TemplateError> {
        let mut i = 0;
        let mut decl = Vec::new();
        let mut assign = false;
        // `$x :=`, `$x =`, `$k, $v :=` (range only)
        if let Some(Token {
            tok: Tok::Var(v), ..
        }) = toks.first()
        {
            match toks.get(1).map(|t| &t.tok) {
                Some(Tok::Declare) => {
                    decl.push(v.clone());
                    i = 2;
                }
                Some(Tok::Assign) => {
                    decl.push(v.clone());
                    assign = true;
                    i = 2;
                }
                Some(Tok::Comma) if allow_two => {
                    if let (
                        Some(Token {
                            tok: Tok::Var(v2), ..
                        }),
                        Some(Token {
                            tok: Tok::Declare | Tok::Assign,
                            ..
                        }),
                    ) = (toks.get(2), toks.get(3))
                    {
                        decl.push(v.clone());
                        decl.push(v2.clone());
                        assign = matches!(toks[3].tok, Tok::Assign);
                        i = 4;
                    } else {
                        return Err(self.err(toks[1].pos, "too many declarations"));
                    }
                }
                _ => {}
            }
        }
        let (p, used) = self.pipe_tokens(&toks[i..], pos, false)?;
        if used != toks.len() - i {
            return Err(self.err(toks[i + used].pos, "unexpected right paren"));
        }
        Ok(Pipeline {
            pos,
            decl,
            assign,
            cmds: p.cmds,
        })
    }

    /// Parses commands separated by `|` until the end or an unmatched `)`.
    fn pipe_tokens(
        &self,
        toks: &[Token],
        pos: usize,
        in_paren: bool,
    ) -> Result<(Pipeline, usize), TemplateError> {
        let mut cmds = Vec::new();
        let mut i = 0;
        let mut cmd = Command {
            pos: toks.first().map_or(pos, |t| t.pos),
            args: Vec::new(),
        };
        while i < toks.len() {
            let t = &toks[i];
            match &t.tok {
                Tok::Pipe => {
                    if cmd.args.is_empty() {
                        return Err(self.err(t.pos, "missing value for command"));
                    }
                    cmds.push(std::mem::replace(
                        &mut cmd,
                        Command {
                            pos: toks.get(i + 1).map_or(t.pos, |t| t.pos),
                            args: Vec::new(),
                        },
                    ));
                    i += 1;
                }
                Tok::RParen => {
                    if !in_paren {
                        return Err(self.err(t.pos, "unexpected right paren"));
                    }
                    break;
                }
                Tok::Declare | Tok::Assign | Tok::Comma => {
                    return Err(self.err(t.pos, "unexpected token in operand"));
                }
                _ => {
                    if !cmd.args.is_empty() && !t.space_before {
                        return Err(self.err(t.pos, "missing space between operands"));
                    }
                    let (arg, n) = self.operand(&toks[i..])?;
                    cmd.args.push(arg);
                    i += n;
                }
            }
        }
        if !cmd.args.is_empty() {
            cmds.push(cmd);
        } else if !cmds.is_empty() {
            return Err(self.err(pos, "missing value for command"));
        }
        for (n, c) in cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0].term,
                Term::Bool(_) | Term::Dot | Term::Nil | Term::Num(_) | Term::Str(_)
            ) {
                return Err(self.err(
                    c.pos,
                    format!("non executable command in pipeline stage {}", n + 1),
                ));
            }
        }
        Ok((
            Pipeline {
                pos,
                decl: Vec::new(),
                assign: false,
                cmds,
            },
            i,
        ))
    }

    fn operand(&self, toks: &[Token]) -> Result<(Arg, usize), TemplateError> {
        let t = &toks[0];
        let mut n = 1;
        let term = match &t.tok {
            Tok::Ident(f) => {
                if UNSUPPORTED_FUNCS.contains(&f.as_str()) {
                    return Err(self.err(
                        t.pos,
                        format!("function {f:?} is not supported in yunwei's alert templates"),
                    ));
                }
                if !FUNCS.contains(&f.as_str()) {
                    return Err(self.err(t.pos, format!("function {f:?} not defined")));
                }
                Term::Func(f.clone())
            }
            Tok::Dot => Term::Dot,
            Tok::Field(f) => {
                let mut chain = vec![f.clone()];
                while let Some(Token {
                    tok: Tok::Field(g),
                    space_before: false,
                    ..
                }) = toks.get(n)
                {
                    chain.push(g.clone());
                    n += 1;
                }
                return Ok((
                    Arg {
                        pos: t.pos,
                        term: Term::Field(chain),
                        chain: Vec::new(),
                    },
                    n,
                ));
            }
            Tok::Var(v) => Term::Var(v.clone()),
            Tok::Str(s) => Term::Str(s.clone()),
            Tok::Num(s) => {
                parse_number(s).map_err(|m| self.err(t.pos, m))?;
                Term::Num(s.clone())
            }
            Tok::Bool(b) => Term::Bool(*b),
            Tok::Nil => Term::Nil,
            Tok::LParen => {
                let (p, used) = self.pipe_tokens(&toks[1..], t.pos, true)?;
                if !matches!(toks.get(1 + used).map(|t| &t.tok), Some(Tok::RParen)) {
                    return Err(self.err(t.pos, "unclosed left paren"));
                }
                if p.cmds.is_empty() {
                    return Err(self.err(t.pos, "missing value for parenthesized pipeline"));
                }
                n = used + 2;
                Term::Pipe(Box::new(p))
            }
            other => return Err(self.err(t.pos, format!("unexpected {other:?} in operand"))),
        };
        let mut chain = Vec::new();
        while let Some(Token {
            tok: Tok::Field(g),
            space_before: false,
            ..
        }) = toks.get(n)
        {
            chain.push(g.clone());
            n += 1;
        }
        if !chain.is_empty() && matches!(term, Term::Func(_) | Term::Bool(_) | Term::Num(_)) {
            return Err(self.err(toks[1].pos, "unexpected . after term"));
        }
        Ok((
            Arg {
                pos: t.pos,
                term,
                chain,
            },
            n,
        ))
    }
}

fn nodes_read_labels_only(nodes: &[Node]) -> bool {
    nodes.iter().all(|n| match n {
        Node::Text(_) => true,
        Node::Action(p) => pipe_reads_labels_only(p),
        Node::If {
            branches,
            otherwise,
        } => {
            branches
                .iter()
                .all(|(p, body)| pipe_reads_labels_only(p) && nodes_read_labels_only(body))
                && nodes_read_labels_only(otherwise)
        }
        Node::With {
            pipe,
            body,
            otherwise,
        }
        | Node::Range {
            pipe,
            body,
            otherwise,
        } => {
            pipe_reads_labels_only(pipe)
                && nodes_read_labels_only(body)
                && nodes_read_labels_only(otherwise)
        }
    })
}

fn pipe_reads_labels_only(p: &Pipeline) -> bool {
    p.cmds.iter().flat_map(|c| &c.args).all(|a| match &a.term {
        // The dot: the whole data at the top level.
        Term::Dot => false,
        Term::Field(chain) => chain.first().is_some_and(|f| f == "Labels"),
        Term::Var(v) => match v.as_str() {
            "$labels" => true,
            "$" => a.chain.first().is_some_and(|f| f == "Labels"),
            "$value" | "$externalLabels" | "$externalURL" => false,
            // Declared by the template from a pipeline checked here.
            _ => true,
        },
        Term::Pipe(inner) => pipe_reads_labels_only(inner),
        Term::Func(_) | Term::Str(_) | Term::Num(_) | Term::Bool(_) | Term::Nil => true,
    })
}

fn check_nodes(nodes: &[Node], scope: &mut Vec<String>, src: &str) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Text(_) => {}
            Node::Action(p) => check_pipe(p, scope, src, true)?,
            Node::If {
                branches,
                otherwise,
            } => {
                let mark = scope.len();
                for (p, body) in branches {
                    check_pipe(p, scope, src, true)?;
                    check_nodes(body, scope, src)?;
                }
                check_nodes(otherwise, scope, src)?;
                scope.truncate(mark);
            }
            Node::With {
                pipe,
                body,
                otherwise,
            }
            | Node::Range {
                pipe,
                body,
                otherwise,
            } => {
                let mark = scope.len();
                check_pipe(pipe, scope, src, true)?;
                check_nodes(body, scope, src)?;
                check_nodes(otherwise, scope, src)?;
                scope.truncate(mark);
            }
        }
    }
    Ok(())
}

fn check_pipe(
    p: &Pipeline,
    scope: &mut Vec<String>,
    src: &str,
    declare: bool,
) -> Result<(), TemplateError> {
    for c in &p.cmds {
        for a in &c.args {
            match &a.term {
                Term::Var(v) if !scope.contains(v) => {
                    return Err(error_at(src, a.pos, format!("undefined variable {v:?}")));
                }
                Term::Pipe(inner) => check_pipe(inner, scope, src, false)?,
                _ => {}
            }
        }
    }
    for v in &p.decl {
        if p.assign {
            if !scope.contains(v) {
                return Err(error_at(src, p.pos, format!("undefined variable {v:?}")));
            }
        } else if declare {
            scope.push(v.clone());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Values and execution

#[derive(Debug)]
struct Root {
    labels: Rc<BTreeMap<String, String>>,
    external_labels: Rc<BTreeMap<String, String>>,
    external_url: String,
    value: f64,
}

#[derive(Clone, Debug)]
enum Val {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Map(Rc<BTreeMap<String, String>>),
    Root(Rc<Root>),
}

impl Val {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "<nil>",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::Map(_) => "map[string]string",
            Val::Root(_) => "*template.tmplData",
        }
    }

    fn truth(&self) -> bool {
        match self {
            Val::Nil => false,
            Val::Bool(b) => *b,
            Val::Int(i) => *i != 0,
            Val::Float(f) => *f != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Map(m) => !m.is_empty(),
            Val::Root(_) => true,
        }
    }
}

/// What an action prints for a value (Go's text/template: a missing value is `<no value>`).
fn format_output(v: &Val) -> String {
    match v {
        Val::Nil => "<no value>".into(),
        other => format_v(other),
    }
}

/// Go's `%v` for the values a template can hold.
fn format_v(v: &Val) -> String {
    match v {
        Val::Nil => "<nil>".into(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => format_g(*f, None),
        Val::Str(s) => s.clone(),
        Val::Map(m) => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", items.join(" "))
        }
        Val::Root(r) => format!(
            "{{{} {} {} {}}}",
            format_v(&Val::Map(r.labels.clone())),
            format_v(&Val::Map(r.external_labels.clone())),
            r.external_url,
            format_g(r.value, None)
        ),
    }
}

fn parse_number(s: &str) -> Result<Val, String> {
    let clean = s.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Ok(Val::Int(if neg { -i } else { i }));
    }
    if !lower.contains(['.', 'e']) {
        return Err(format!("illegal number syntax: {s:?}"));
    }
    match lower.parse::<f64>() {
        Ok(f) => Ok(Val::Float(if neg { -f } else { f })),
        Err(_) => Err(format!("illegal number syntax: {s:?}")),
    }
}

struct Exec<'a> {
    src: &'a str,
    vars: Vec<(String, Val)>,
    out: String,
}

impl Exec<'_> {
    fn err(&self, pos: usize, message: impl Into<String>) -> TemplateError {
        error_at(self.src, pos, message)
    }

    fn var(&self, name: &str, pos: usize) -> Result<Val, TemplateError> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.err(pos, format!("undefined variable: {name}")))
    }

    fn walk(&mut self, nodes: &[Node], dot: &Val) -> Result<(), TemplateError> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.decl.is_empty() {
                        let s = format_output(&v);
                        self.out.push_str(&s);
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let mut done = false;
                    for (p, body) in branches {
                        if self.pipeline(p, dot)?.truth() {
                            self.walk(body, dot)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.walk(otherwise, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::With {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let v = self.pipeline(pipe, dot)?;
                    if v.truth() {
                        self.walk(body, &v)?;
                    } else {
                        self.walk(otherwise, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let mut p = pipe.clone();
                    let decl = std::mem::take(&mut p.decl);
                    let v = self.pipeline(&p, dot)?;
                    let entries: Vec<(Val, Val)> = match &v {
                        Val::Map(m) => m
                            .iter()
                            .map(|(k, v)| (Val::Str(k.clone()), Val::Str(v.clone())))
                            .collect(),
                        Val::Nil => Vec::new(),
                        other => {
                            return Err(self.err(
                                pipe.pos,
                                format!("range can't iterate over {}", format_v(other)),
                            ));
                        }
                    };
                    if entries.is_empty() {
                        self.walk(otherwise, dot)?;
                    }
                    for (k, elem) in entries {
                        let inner = self.vars.len();
                        match decl.as_slice() {
                            [] => {}
                            [v] => self.vars.push((v.clone(), elem.clone())),
                            [kv, vv, ..] => {
                                self.vars.push((kv.clone(), k.clone()));
                                self.vars.push((vv.clone(), elem.clone()));
                            }
                        }
                        self.walk(body, &elem)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Val) -> Result<Val, TemplateError> {
        let mut val: Option<Val> = None;
        for c in &p.cmds {
            val = Some(self.command(c, dot, val)?);
        }
        let v = val.unwrap_or(Val::Nil);
        for name in &p.decl {
            if p.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn command(&mut self, c: &Command, dot: &Val, last: Option<Val>) -> Result<Val, TemplateError> {
        let first = &c.args[0];
        if let Term::Func(name) = &first.term {
            let mut args = Vec::with_capacity(c.args.len());
            for a in &c.args[1..] {
                args.push(self.arg(a, dot)?);
            }
            if let Some(l) = last {
                args.push(l);
            }
            return self.call(name, args, first.pos);
        }
        if matches!(first.term, Term::Nil) {
            return Err(self.err(first.pos, "nil is not a command"));
        }
        if c.args.len() > 1 || last.is_some() {
            let what = match &first.term {
                Term::Field(f) => format!("field {}", f.join(".")),
                _ => "a non-function".to_string(),
            };
            return Err(self.err(first.pos, format!("can't give argument to {what}")));
        }
        self.arg(first, dot)
    }

    fn arg(&mut self, a: &Arg, dot: &Val) -> Result<Val, TemplateError> {
        let base = match &a.term {
            Term::Func(name) => self.call(name, Vec::new(), a.pos)?,
            Term::Dot => dot.clone(),
            Term::Field(chain) => return self.fields(dot.clone(), chain, a.pos),
            Term::Var(v) => self.var(v, a.pos)?,
            Term::Str(s) => Val::Str(s.clone()),
            Term::Num(n) => parse_number(n).map_err(|m| self.err(a.pos, m))?,
            Term::Bool(b) => Val::Bool(*b),
            Term::Nil => Val::Nil,
            Term::Pipe(p) => self.pipeline(p, dot)?,
        };
        self.fields(base, &a.chain, a.pos)
    }

    fn fields(&self, mut v: Val, chain: &[String], pos: usize) -> Result<Val, TemplateError> {
        for f in chain {
            v = match &v {
                Val::Map(m) => Val::Str(m.get(f).cloned().unwrap_or_default()),
                Val::Root(r) => match f.as_str() {
                    "Labels" => Val::Map(r.labels.clone()),
                    "ExternalLabels" => Val::Map(r.external_labels.clone()),
                    "ExternalURL" => Val::Str(r.external_url.clone()),
                    "Value" => Val::Float(r.value),
                    _ => {
                        return Err(self.err(
                            pos,
                            format!("can't evaluate field {f} in type *template.tmplData"),
                        ));
                    }
                },
                Val::Nil => {
                    return Err(self.err(pos, format!("nil pointer evaluating interface {{}}.{f}")));
                }
                other => {
                    return Err(self.err(
                        pos,
                        format!("can't evaluate field {f} in type {}", other.type_name()),
                    ));
                }
            };
        }
        Ok(v)
    }

    fn call(&mut self, name: &str, args: Vec<Val>, pos: usize) -> Result<Val, TemplateError> {
        call_func(name, args).map_err(|m| self.err(pos, format!("error calling {name}: {m}")))
    }
}

fn want_args(args: &[Val], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!("wrong number of args: want {n} got {}", args.len()));
    }
    Ok(())
}

fn to_float(v: &Val) -> Result<f64, String> {
    match v {
        Val::Float(f) => Ok(*f),
        Val::Int(i) => Ok(*i as f64),
        Val::Str(s) => crate::promql::parse_go_float(s)
            .ok_or_else(|| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

fn to_str(v: &Val) -> Result<String, String> {
    match v {
        Val::Str(s) => Ok(s.clone()),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
    }
}

fn call_func(name: &str, args: Vec<Val>) -> Result<Val, String> {
    let one_float = |args: &[Val]| -> Result<f64, String> {
        want_args(args, 1)?;
        to_float(&args[0])
    };
    Ok(match name {
        "humanize" => Val::Str(humanize(one_float(&args)?)),
        "humanize1024" => Val::Str(humanize_1024(one_float(&args)?)),
        "humanizeDuration" => Val::Str(humanize_duration(one_float(&args)?)),
        "humanizePercentage" => Val::Str(humanize_percentage(one_float(&args)?)),
        "humanizeTimestamp" => Val::Str(humanize_timestamp(one_float(&args)?)?),
        "printf" => {
            let Some((f, rest)) = args.split_first() else {
                return Err("wrong number of args: want at least 1 got 0".into());
            };
            Val::Str(sprintf(&to_str(f)?, rest))
        }
        "print" => {
            let mut s = String::new();
            for (i, a) in args.iter().enumerate() {
                let is_str = |v: &Val| matches!(v, Val::Str(_));
                if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
                    s.push(' ');
                }
                s.push_str(&format_v(a));
            }
            Val::Str(s)
        }
        "println" => {
            let parts: Vec<String> = args.iter().map(format_v).collect();
            Val::Str(parts.join(" ") + "\n")
        }
        "toUpper" => {
            want_args(&args, 1)?;
            Val::Str(to_str(&args[0])?.to_uppercase())
        }
        "toLower" => {
            want_args(&args, 1)?;
            Val::Str(to_str(&args[0])?.to_lowercase())
        }
        "title" => {
            want_args(&args, 1)?;
            Val::Str(title(&to_str(&args[0])?))
        }
        "safeHtml" => {
            want_args(&args, 1)?;
            Val::Str(to_str(&args[0])?)
        }
        "reReplaceAll" => {
            want_args(&args, 3)?;
            let re = Regex::new(&to_str(&args[0])?).map_err(|e| e.to_string())?;
            let repl = to_str(&args[1])?;
            Val::Str(
                re.replace_all(&to_str(&args[2])?, repl.as_str())
                    .into_owned(),
            )
        }
        "match" => {
            want_args(&args, 2)?;
            let re = Regex::new(&to_str(&args[0])?).map_err(|e| e.to_string())?;
            Val::Bool(re.is_match(&to_str(&args[1])?))
        }
        "stripPort" => {
            want_args(&args, 1)?;
            Val::Str(strip_port(&to_str(&args[0])?))
        }
        "parseDuration" => {
            want_args(&args, 1)?;
            let s = to_str(&args[0])?;
            let ms = crate::promql::promqltest::parse_duration_ms(&s)
                .ok_or_else(|| format!("not a valid duration string: {s:?}"))?;
            Val::Float(ms as f64 / 1000.0)
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let mut any = false;
            for b in &args[1..] {
                any |= compare(&args[0], b)? == Some(std::cmp::Ordering::Equal);
            }
            Val::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want_args(&args, 2)?;
            if name != "ne" && matches!(args[0], Val::Bool(_)) {
                return Err("invalid type for comparison".into());
            }
            let ord = compare(&args[0], &args[1])?;
            use std::cmp::Ordering::*;
            Val::Bool(match name {
                "ne" => ord != Some(Equal),
                "lt" => ord == Some(Less),
                "le" => matches!(ord, Some(Less | Equal)),
                "gt" => ord == Some(Greater),
                _ => matches!(ord, Some(Greater | Equal)),
            })
        }
        "and" => {
            if args.is_empty() {
                return Err("wrong number of args: want at least 1 got 0".into());
            }
            let n = args.len();
            args.into_iter()
                .enumerate()
                .find(|(i, a)| !a.truth() || *i == n - 1)
                .map(|(_, a)| a)
                .unwrap_or(Val::Nil)
        }
        "or" => {
            if args.is_empty() {
                return Err("wrong number of args: want at least 1 got 0".into());
            }
            let n = args.len();
            args.into_iter()
                .enumerate()
                .find(|(i, a)| a.truth() || *i == n - 1)
                .map(|(_, a)| a)
                .unwrap_or(Val::Nil)
        }
        "not" => {
            want_args(&args, 1)?;
            Val::Bool(!args[0].truth())
        }
        "len" => {
            want_args(&args, 1)?;
            Val::Int(match &args[0] {
                Val::Str(s) => s.len() as i64,
                Val::Map(m) => m.len() as i64,
                other => return Err(format!("len of type {}", other.type_name())),
            })
        }
        "index" => {
            if args.is_empty() {
                return Err("wrong number of args: want at least 1 got 0".into());
            }
            let mut v = args[0].clone();
            for k in &args[1..] {
                v = match (&v, k) {
                    (Val::Map(m), Val::Str(k)) => Val::Str(m.get(k).cloned().unwrap_or_default()),
                    (Val::Str(s), Val::Int(i)) => {
                        let b = s
                            .as_bytes()
                            .get(usize::try_from(*i).unwrap_or(usize::MAX))
                            .ok_or_else(|| format!("index out of range: {i}"))?;
                        Val::Int(i64::from(*b))
                    }
                    (a, _) => return Err(format!("can't index item of type {}", a.type_name())),
                };
            }
            v
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

/// Go's comparison rules: both operands of one basic kind (integers of either sign compare).
fn compare(a: &Val, b: &Val) -> Result<Option<std::cmp::Ordering>, String> {
    Ok(match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Nil, Val::Nil) => Some(std::cmp::Ordering::Equal),
        (Val::Map(_) | Val::Root(_), _) | (_, Val::Map(_) | Val::Root(_)) => {
            return Err("non-comparable type".into());
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn title(s: &str) -> String {
    // Go's strings.Title: upper-case the first letter of each word.
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        };
    }
    out
}

fn strip_port(host_port: &str) -> String {
    // net.SplitHostPort; on error the input is returned.
    if let Some(rest) = host_port.strip_prefix('[') {
        if let Some(end) = rest.find("]:") {
            return rest[..end].to_string();
        }
        return host_port.to_string();
    }
    match host_port.rsplit_once(':') {
        Some((h, _)) if !h.contains(':') => h.to_string(),
        _ => host_port.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus's humanize functions and Go number formatting

/// Prometheus's `humanize`: SI prefixes with four significant digits (`1.235M`, `12.35m`).
pub fn humanize(v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus's `humanize1024`: binary prefixes (`1ki`, `1.5Mi`).
pub fn humanize_1024(v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus's `humanizeDuration` of seconds (`1m 30s`, `1d 2h 0m 0s`, `1.5s`, `12ms`).
pub fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let (sign, v) = if v < 0.0 { ("-", -v) } else { ("", v) };
        let d = v as i64;
        let (seconds, minutes, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", format_g(v, Some(4)));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, Some(4)))
}

/// Prometheus's `humanizePercentage` of a ratio (`12.34%`).
pub fn humanize_percentage(v: f64) -> String {
    format!("{}%", format_g(v * 100.0, Some(4)))
}

/// Prometheus's `humanizeTimestamp` of Unix seconds, printed like Go's `time.Time` in UTC
/// (`2023-01-02 03:04:05.123 +0000 UTC`), at millisecond precision.
pub fn humanize_timestamp(v: f64) -> Result<String, String> {
    if v.is_nan() || v.is_infinite() {
        return Ok(format_g(v, Some(4)));
    }
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_g(v, None)
        ));
    }
    let ms = (ns as i64).div_euclid(1_000_000);
    Ok(format_utc(ms))
}

/// Formats Unix milliseconds like Go's `time.Time.String()` in UTC.
pub(crate) fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The decimal digits of `|v|` (no trailing zeros) and the position of the decimal point, for
/// `sig` significant digits or the shortest representation (`None`).
fn decimal_digits(v: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    if v == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        Some(p) => format!("{:.*e}", p.saturating_sub(1), v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exp + 1)
}

fn special(v: f64, plus: bool) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v == f64::INFINITY {
        Some(if plus { "+Inf" } else { "Inf" }.into())
    } else if v == f64::NEG_INFINITY {
        Some("-Inf".into())
    } else {
        None
    }
}

/// Go's `%e` body for digits: `d.ddde±XX` with `prec` digits after the point.
fn fmt_e(digits: &[u8], dp: i32, prec: usize, upper: bool) -> String {
    let mut s = String::new();
    s.push(*digits.first().unwrap_or(&b'0') as char);
    if prec > 0 {
        s.push('.');
        for i in 1..=prec {
            s.push(*digits.get(i).unwrap_or(&b'0') as char);
        }
    }
    let exp = if digits.is_empty() { 0 } else { dp - 1 };
    s.push(if upper { 'E' } else { 'e' });
    s.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        s.push('0');
    }
    s.push_str(&e.to_string());
    s
}

/// Go's `%f` body for digits with `prec` digits after the point.
fn fmt_f(digits: &[u8], dp: i32, prec: usize) -> String {
    let mut s = String::new();
    if dp > 0 {
        for i in 0..dp as usize {
            s.push(*digits.get(i).unwrap_or(&b'0') as char);
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for i in 0..prec as i32 {
            let j = dp + i;
            let c = if j < 0 {
                b'0'
            } else {
                *digits.get(j as usize).unwrap_or(&b'0')
            };
            s.push(c as char);
        }
    }
    s
}

/// Go's `%g` (`strconv.FormatFloat(v, 'g', prec, 64)`): `prec` significant digits, or the
/// shortest representation that reads back exactly when `None`. Infinity prints as `+Inf`.
pub fn format_g(v: f64, prec: Option<usize>) -> String {
    format_g_flags(v, prec, true, false)
}

fn format_g_flags(v: f64, prec: Option<usize>, plus_inf: bool, upper: bool) -> String {
    if let Some(s) = special(v, plus_inf) {
        return s;
    }
    let neg = v.is_sign_negative();
    let prec_n = prec.map(|p| p.max(1));
    let (digits, dp) = decimal_digits(v, prec_n);
    let nd = digits.len() as i32;
    let shortest = prec_n.is_none();
    let mut p = prec_n.map_or(nd, |p| p as i32);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    let body = if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        fmt_e(&digits, dp, (p - 1).max(0) as usize, upper)
    } else {
        if p > dp {
            p = nd;
        }
        fmt_f(&digits, dp, (p - dp).max(0) as usize)
    };
    if neg { format!("-{body}") } else { body }
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)` (`1E+00`, `6.1E+01`), as promtool prints values.
pub fn format_go_e(v: f64) -> String {
    if let Some(s) = special(v, true) {
        return s;
    }
    let (digits, dp) = decimal_digits(v, None);
    let body = fmt_e(&digits, dp, digits.len().saturating_sub(1), true);
    if v.is_sign_negative() {
        format!("-{body}")
    } else {
        body
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(w) = spec.width else { return s };
    let n = s.chars().count();
    if n >= w {
        return s;
    }
    let fill = w - n;
    if spec.minus {
        return s + &" ".repeat(fill);
    }
    if spec.zero && numeric {
        let (sign, rest) = match s.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), s[1..].to_string()),
            _ => (String::new(), s.clone()),
        };
        return sign + &"0".repeat(fill) + &rest;
    }
    " ".repeat(fill) + &s
}

fn bad_verb(verb: char, v: &Val) -> String {
    match v {
        Val::Nil => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", v.type_name(), format_v(v)),
    }
}

fn signed(s: String, neg: bool, spec: &Spec) -> String {
    if neg {
        format!("-{s}")
    } else if spec.plus {
        format!("+{s}")
    } else if spec.space {
        format!(" {s}")
    } else {
        s
    }
}

fn format_float_verb(f: f64, verb: char, spec: &Spec) -> String {
    if let Some(s) = special(f, false) {
        let s = if s == "Inf" {
            if spec.plus {
                "+Inf".to_string()
            } else if spec.space {
                " Inf".to_string()
            } else {
                "+Inf".to_string()
            }
        } else {
            s
        };
        // Go pads infinities and NaN with spaces, never zeros.
        let sp = Spec {
            zero: false,
            ..*spec
        };
        return pad(s, &sp, false);
    }
    let neg = f.is_sign_negative();
    let body = match verb {
        'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), f.abs()),
        'e' | 'E' => {
            let p = spec.prec.unwrap_or(6);
            let (digits, dp) = decimal_digits(f, Some(p + 1));
            fmt_e(&digits, dp, p, verb == 'E')
        }
        _ => {
            // 'g', 'G', 'v'
            let s = format_g_flags(f.abs(), spec.prec, false, verb == 'G');
            if spec.sharp {
                s
            } else {
                s.trim_start_matches('+').to_string()
            }
        }
    };
    pad(signed(body, neg, spec), spec, true)
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %f %F %e %E %g %G %x %X %t %%`
/// with flags, width and precision; wrong types print Go's `%!d(float64=1.5)` forms.
fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let s = match (verb, arg) {
            ('v', Val::Float(f)) => format_float_verb(*f, 'g', &spec),
            ('v', Val::Int(i)) | ('d', Val::Int(i)) => {
                let body = match spec.prec {
                    Some(p) => format!("{:0p$}", i.unsigned_abs(), p = p),
                    None => i.unsigned_abs().to_string(),
                };
                pad(signed(body, *i < 0, &spec), &spec, spec.prec.is_none())
            }
            ('v' | 's', Val::Str(s)) => {
                let s = match spec.prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.clone(),
                };
                pad(s, &spec, false)
            }
            ('v' | 's', Val::Map(_) | Val::Root(_) | Val::Nil) | ('v' | 't', Val::Bool(_)) => {
                pad(format_v(arg), &spec, false)
            }
            ('q', Val::Str(s)) => pad(go_quote(s), &spec, false),
            ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Val::Float(f)) => {
                format_float_verb(*f, verb, &spec)
            }
            ('x' | 'X', Val::Int(i)) => {
                let body = if verb == 'x' {
                    format!("{:x}", i.unsigned_abs())
                } else {
                    format!("{:X}", i.unsigned_abs())
                };
                let body = if spec.sharp {
                    format!("0{verb}{body}")
                } else {
                    body
                };
                pad(signed(body, *i < 0, &spec), &spec, true)
            }
            ('x' | 'X', Val::Str(s)) => {
                let mut h = String::new();
                for b in s.bytes() {
                    if verb == 'x' {
                        let _ = write!(h, "{b:02x}");
                    } else {
                        let _ = write!(h, "{b:02X}");
                    }
                }
                pad(h, &spec, false)
            }
            ('c', Val::Int(i)) => u32::try_from(*i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}')
                .to_string(),
            _ => bad_verb(verb, arg),
        };
        out.push_str(&s);
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), format_v(a)))
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
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
    fn humanize_matches_prometheus() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1234567.0, "1.235M"),
            (1000.0, "1k"),
            (999.0, "999"),
            (0.0012, "1.2m"),
            (123.456, "123.5"),
            (1.0, "1"),
            (-1234.0, "-1.234k"),
            (1e30, "1e+06Y"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (12345.0, "12.35k"),
        ];
        for (v, want) in cases {
            assert_eq!(humanize(*v), *want, "humanize({v})");
        }
        assert_eq!(humanize_1024(1024.0), "1ki");
        assert_eq!(humanize_1024(1.5 * 1024.0 * 1024.0), "1.5Mi");
        assert_eq!(humanize_1024(0.5), "0.5");
        assert_eq!(humanize_percentage(0.1234), "12.34%");
        assert_eq!(humanize_percentage(0.5), "50%");
        assert_eq!(humanize_percentage(1.0 / 3.0), "33.33%");
        assert_eq!(humanize_duration(90.0), "1m 30s");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.012), "12ms");
        assert_eq!(humanize_duration(93784.0), "1d 2h 3m 4s");
        assert_eq!(humanize_duration(3600.0), "1h 0m 0s");
        assert_eq!(humanize_duration(-90.0), "-1m 30s");
        assert_eq!(
            humanize_timestamp(0.0).unwrap(),
            "1970-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            humanize_timestamp(1_679_000_000.5).unwrap(),
            "2023-03-16 20:53:20.5 +0000 UTC"
        );
    }

    #[test]
    fn go_float_formats() {
        assert_eq!(format_g(1234567.0, None), "1.234567e+06");
        assert_eq!(format_g(100.0, None), "100");
        assert_eq!(format_g(0.1, None), "0.1");
        assert_eq!(format_g(1e-5, None), "1e-05");
        assert_eq!(format_g(123456.0, None), "123456");
        assert_eq!(format_g(1e21, None), "1e+21");
        assert_eq!(format_g(0.0, Some(4)), "0");
        assert_eq!(format_g(1.0, Some(4)), "1");
        assert_eq!(format_g(1234567.0, Some(4)), "1.235e+06");
        assert_eq!(format_g(-0.5, None), "-0.5");
        assert_eq!(sprintf("%.2f", &[Val::Float(1.23456)]), "1.23");
        assert_eq!(
            sprintf(
                "%5.1f|%-5d|%05d",
                &[Val::Float(2.25), Val::Int(3), Val::Int(-42)]
            ),
            "  2.2|3    |-0042"
        );
        assert_eq!(sprintf("%d", &[Val::Float(1.5)]), "%!d(float64=1.5)");
        assert_eq!(
            sprintf("%s %q", &[Val::Str("a".into()), Val::Str("b\"".into())]),
            "a \"b\\\"\""
        );
        assert_eq!(sprintf("%e", &[Val::Float(1234.5678)]), "1.234568e+03");
        assert_eq!(
            sprintf("%g %v", &[Val::Float(0.000012), Val::Float(2.0)]),
            "1.2e-05 2"
        );
        assert_eq!(sprintf("%d%%", &[Val::Int(5)]), "5%");
        assert_eq!(sprintf("%s", &[]), "%!s(MISSING)");
        assert_eq!(sprintf("x", &[Val::Int(1)]), "x%!(EXTRA int=1)");
        assert_eq!(sprintf("%.1f", &[Val::Float(f64::INFINITY)]), "+Inf");
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
