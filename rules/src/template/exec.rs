//! Values and execution: walking the parse tree with an alert's data, and the template
//! functions.

use std::collections::BTreeMap;
use std::rc::Rc;

use regex::Regex;

use super::format::{
    format_g, humanize, humanize_1024, humanize_duration, humanize_percentage, humanize_timestamp,
    sprintf,
};
use super::parse::{Arg, Command, Node, Pipeline, Term};
use super::{TemplateError, error_at};

#[derive(Debug)]
pub(super) struct Root {
    pub(super) labels: Rc<BTreeMap<String, String>>,
    pub(super) external_labels: Rc<BTreeMap<String, String>>,
    pub(super) external_url: String,
    pub(super) value: f64,
}

#[derive(Clone, Debug)]
pub(super) enum Val {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Map(Rc<BTreeMap<String, String>>),
    Root(Rc<Root>),
}

impl Val {
    pub(super) fn type_name(&self) -> &'static str {
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
pub(super) fn format_v(v: &Val) -> String {
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

pub(super) fn parse_number(s: &str) -> Result<Val, String> {
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

pub(super) struct Exec<'a> {
    pub(super) src: &'a str,
    pub(super) vars: Vec<(String, Val)>,
    pub(super) out: String,
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

    pub(super) fn walk(&mut self, nodes: &[Node], dot: &Val) -> Result<(), TemplateError> {
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
