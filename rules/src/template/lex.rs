//! The lexer: template text into text items and actions, actions into tokens.

use super::{TemplateError, error_at};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
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
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) pos: usize,
    pub(super) space_before: bool,
}

#[derive(Clone, Debug)]
pub(super) enum Item {
    Text(String),
    Action { toks: Vec<Token>, pos: usize },
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

pub(super) fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
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
