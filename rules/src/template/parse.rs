//! The parse tree: nodes, pipelines and operands built from the tokens, the function
//! table, and the load-time checks (variables declared before use, labels-only reads).

use super::exec::parse_number;
use super::lex::{Item, Tok, Token};
use super::{TemplateError, error_at};

#[derive(Clone, Debug)]
pub(super) enum Node {
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
pub(super) struct Pipeline {
    pub(super) pos: usize,
    /// Variables declared (`:=`) or assigned (`=`).
    pub(super) decl: Vec<String>,
    pub(super) assign: bool,
    pub(super) cmds: Vec<Command>,
}

#[derive(Clone, Debug)]
pub(super) struct Command {
    pub(super) pos: usize,
    pub(super) args: Vec<Arg>,
}

#[derive(Clone, Debug)]
pub(super) enum Term {
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
pub(super) struct Arg {
    pub(super) pos: usize,
    pub(super) term: Term,
    /// Field chain after the term: `$x.a.b`, `(pipeline).a`.
    pub(super) chain: Vec<String>,
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

pub(super) struct TreeParser<'a> {
    pub(super) src: &'a str,
    pub(super) items: Vec<Item>,
    pub(super) i: usize,
}

type ListEnd = Option<(String, usize)>;

impl TreeParser<'_> {
    pub(super) fn err(&self, pos: usize, message: impl Into<String>) -> TemplateError {
        error_at(self.src, pos, message)
    }

    /// Parses nodes until `{{end}}` / `{{else ...}}` (returned with the rest of its tokens kept
    /// in `self.pending`) or the end of input.
    pub(super) fn list(&mut self) -> Result<(Vec<Node>, ListEnd), TemplateError> {
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

pub(super) fn nodes_read_labels_only(nodes: &[Node]) -> bool {
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

pub(super) fn check_nodes(
    nodes: &[Node],
    scope: &mut Vec<String>,
    src: &str,
) -> Result<(), TemplateError> {
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
