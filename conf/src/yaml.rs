//! A YAML document as a tree that remembers where every node starts, so that diagnostics about
//! any yunwei file (rules, contracts, configs) can name the line and column of a key or value.
//!
//! Built from `saphyr-parser`'s event stream (YAML 1.2). Aliases are expanded; tags are kept
//! only to tell an explicitly tagged string (`!!str 1`) from a plain scalar.

use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::limits::MAX_YAML_DEPTH;

/// A position in a text: 1-based line and 1-based column (in characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

/// What a node holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A scalar; `plain` is false for quoted and block scalars, which are always strings.
    Scalar { value: String, plain: bool },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order (duplicate keys kept).
    Map(Vec<(Node, Node)>),
}

/// A YAML node and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

impl Node {
    /// Whether the node is YAML's null (`~`, `null`, or nothing at all).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The text of a scalar that is not null.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } if !self.is_null() => Some(value),
            _ => None,
        }
    }

    /// A short name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            Kind::Scalar { .. } => "scalar",
            Kind::Seq(_) => "sequence",
            Kind::Map(_) => "mapping",
        }
    }
}

impl Node {
    /// The value of `key` in a mapping (the first, should the key be written twice).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node of `key` in a mapping, for messages about the key itself.
    pub fn key(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(k, _)| k)
    }

    /// Item `index` of a sequence.
    pub fn item(&self, index: usize) -> Option<&Node> {
        match &self.kind {
            Kind::Seq(items) => items.get(index),
            _ => None,
        }
    }

    fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }
}

/// Lookups that chain through absent nodes: `root.get("probes").item(2).get("name")` is the
/// node of the third probe's name, or `None` when any step is not written.
pub trait Lookup<'a> {
    /// The value of `key`, when this is a mapping that has it.
    fn get(self, key: &str) -> Option<&'a Node>;
    /// The key node of `key`, when this is a mapping that has it.
    fn key(self, key: &str) -> Option<&'a Node>;
    /// Item `index`, when this is a sequence that long.
    fn item(self, index: usize) -> Option<&'a Node>;
}

impl<'a> Lookup<'a> for Option<&'a Node> {
    fn get(self, key: &str) -> Option<&'a Node> {
        self.and_then(|n| n.get(key))
    }
    fn key(self, key: &str) -> Option<&'a Node> {
        self.and_then(|n| n.key(key))
    }
    fn item(self, index: usize) -> Option<&'a Node> {
        self.and_then(|n| n.item(index))
    }
}

/// A document that is not valid YAML.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Frames of the containers being built: position, items, (pending key,) anchor id, and the
/// number of nodes below so far (aliases counted expanded).
enum Frame {
    Seq(Pos, Vec<Node>, usize, usize),
    Map(Pos, Vec<(Node, Node)>, Option<Node>, usize, usize),
}

/// The most nodes a document may expand to. Aliases are expanded by copying, so a few lines of
/// nested aliases ("billion laughs") could otherwise take all memory.
const MAX_NODES: usize = 1_000_000;

/// Parses the first document of `text`; `Ok(None)` for an empty stream. A second document is
/// an error, as rule files hold one.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    // Anchor id → (node, its node count).
    let mut anchors: std::collections::HashMap<usize, (Node, usize)> =
        std::collections::HashMap::new();
    let mut total = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0;
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(|e| YamlError {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        let pos = pos_of(&span);
        // The finished node, its anchor id and its node count; `added`: nodes it adds to the
        // document (an alias adds a copy of its anchor's nodes).
        let mut added = 1;
        let done: Option<(Node, usize, usize)> = match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        pos,
                        message: "the file holds one YAML document; a second one starts here"
                            .into(),
                    });
                }
                None
            }
            Event::Alias(id) => {
                let (node, n) = anchors.get(&id).ok_or_else(|| YamlError {
                    pos,
                    message: "unknown anchor".into(),
                })?;
                added = *n;
                Some((
                    Node {
                        pos,
                        ..node.clone()
                    },
                    0,
                    *n,
                ))
            }
            Event::Scalar(value, style, anchor, tag) => {
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let plain = style == ScalarStyle::Plain && !tagged_str;
                Some((
                    Node {
                        pos,
                        kind: Kind::Scalar {
                            value: value.into_owned(),
                            plain,
                        },
                    },
                    anchor,
                    1,
                ))
            }
            Event::SequenceStart(anchor, _) => {
                check_depth(stack.len(), pos)?;
                stack.push(Frame::Seq(pos, Vec::new(), anchor, 0));
                None
            }
            Event::MappingStart(anchor, _) => {
                check_depth(stack.len(), pos)?;
                stack.push(Frame::Map(pos, Vec::new(), None, anchor, 0));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, items, anchor, n)) => Some((
                    Node {
                        pos: p,
                        kind: Kind::Seq(items),
                    },
                    anchor,
                    n + 1,
                )),
                _ => return Err(unbalanced(pos)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, items, None, anchor, n)) => Some((
                    Node {
                        pos: p,
                        kind: Kind::Map(items),
                    },
                    anchor,
                    n + 1,
                )),
                _ => return Err(unbalanced(pos)),
            },
        };
        let Some((node, anchor, n)) = done else {
            continue;
        };
        total += added;
        if total > MAX_NODES {
            return Err(YamlError {
                pos,
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes (aliases are expanded)"
                ),
            });
        }
        if anchor != 0 {
            anchors.insert(anchor, (node.clone(), n));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, items, _, count)) => {
                *count += n;
                items.push(node)
            }
            Some(Frame::Map(_, items, key, _, count)) => {
                *count += n;
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => items.push((k, node)),
                }
            }
        }
    }
    Ok(root)
}

/// Refuses a collection nested deeper than [`MAX_YAML_DEPTH`]: the tree is built without
/// recursion, but reading, cloning and dropping it recurse once per level.
fn check_depth(open: usize, pos: Pos) -> Result<(), YamlError> {
    if open >= MAX_YAML_DEPTH {
        return Err(YamlError {
            pos,
            message: format!(
                "collections are nested more than {MAX_YAML_DEPTH} levels deep (the limit)"
            ),
        });
    }
    Ok(())
}

fn unbalanced(pos: Pos) -> YamlError {
    YamlError {
        pos,
        message: "unbalanced YAML events".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let doc = parse("groups:\n  - name: a\n    rules: [ {x: 1} ]\n")
            .unwrap()
            .unwrap();
        let Kind::Map(top) = &doc.kind else { panic!() };
        assert_eq!(top[0].0.pos, Pos { line: 1, col: 1 });
        let Kind::Seq(groups) = &top[0].1.kind else {
            panic!()
        };
        let Kind::Map(g) = &groups[0].kind else {
            panic!()
        };
        assert_eq!(g[0].0.pos, Pos { line: 2, col: 5 });
        assert_eq!(g[0].1.pos, Pos { line: 2, col: 11 });
        assert_eq!(g[1].1.pos, Pos { line: 3, col: 12 });
    }

    #[test]
    fn nulls_and_quoted_strings() {
        let doc = parse("a: ~\nb: 'null'\nc:\n").unwrap().unwrap();
        let Kind::Map(m) = &doc.kind else { panic!() };
        assert!(m[0].1.is_null());
        assert_eq!(m[1].1.scalar(), Some("null"));
        assert!(m[2].1.is_null());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        // Block sequences nest one level per "- ": refused with the limit named, long before
        // anything could recurse that deep. Flow collections ("[[[") stop at saphyr's own
        // limit of 255 ("recursion limit exceeded") when the scanner gets there first.
        let e = parse(&("- ".repeat(100_000) + "x")).unwrap_err();
        assert!(e.message.contains("nested more than 64 levels"), "{e}");
        assert!(parse(&"[".repeat(100_000)).is_err());
        let e = parse(&format!("{}x{}", "[".repeat(100), "]".repeat(100))).unwrap_err();
        assert!(e.message.contains("nested more than 64 levels"), "{e}");
        let ok = "- ".repeat(MAX_YAML_DEPTH) + "x";
        assert!(parse(&ok).unwrap().is_some());
    }

    #[test]
    fn nested_aliases_cannot_expand_without_bound() {
        // Nine levels of ten aliases each would be 10^9 nodes.
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&doc).unwrap_err();
        assert!(e.message.contains("more than 1000000 nodes"), "{e}");
        assert_eq!(e.pos.line, 6, "{e}");
        // A few levels are fine.
        let small: String = doc.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(parse(&small).is_ok());
    }

    #[test]
    fn lookups_chain_through_absent_nodes() {
        let doc = parse("a:\n  - {b: 1}\n  - c: 2\n").unwrap().unwrap();
        let root = Some(&doc);
        assert_eq!(
            root.get("a").item(1).get("c").unwrap().pos,
            Pos { line: 3, col: 8 }
        );
        assert_eq!(
            root.get("a").item(0).key("b").unwrap().pos,
            Pos { line: 2, col: 6 }
        );
        assert!(root.get("a").item(2).get("c").is_none());
        assert!(root.get("x").item(0).is_none());
    }

    #[test]
    fn aliases_expand() {
        let doc = parse("a: &x {k: v}\nb: *x\n").unwrap().unwrap();
        let Kind::Map(m) = &doc.kind else { panic!() };
        assert_eq!(m[0].1.kind, m[1].1.kind);
    }
}
