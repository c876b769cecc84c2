//! A serde [`Deserializer`](serde::Deserializer) over the position-keeping YAML tree of [`crate::yaml`], so that
//! contract and calendar types can use `#[derive(Deserialize)]` (with `deny_unknown_fields`)
//! and still report every error at the `line:col` of the key or value it is about.
//!
//! Plain scalars are typed the YAML 1.2 core-schema way (`true`/`false`, integers, floats,
//! null); quoted scalars are always strings. Callers deserialize section by section and item by
//! item, so one document yields every independent mistake, not only the first.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use crate::yaml::{Kind, Node, Pos};

/// A deserialization error and, once known, where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeError {
    pub pos: Option<Pos>,
    pub message: String,
    /// The keys and indexes from the deserialized node down to the value at fault, as in
    /// `probes[2].interval_secs`; empty when it is the node itself. An unknown or missing field
    /// is about its mapping, so the path ends at the mapping.
    pub path: String,
}

impl DeError {
    fn at(mut self, pos: Pos) -> Self {
        if self.pos.is_none() {
            self.pos = Some(pos);
        }
        self
    }

    /// Puts `step` (`name` or `[3]`) in front of the path.
    fn under(mut self, step: &str) -> Self {
        let sep = if self.path.is_empty() || self.path.starts_with('[') || step.is_empty() {
            ""
        } else {
            "."
        };
        self.path = format!("{step}{sep}{}", self.path);
        self
    }

    /// The message after its path, as in `probes[2].interval_secs: invalid type: ...`.
    pub fn message_with_path(&self) -> String {
        if self.path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            pos: None,
            message: msg.to_string(),
            path: String::new(),
        }
    }
}

/// Deserializes `node` into `T`; the error carries the position of the innermost node at fault.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node)).map_err(|e| e.at(node.pos))
}

/// Parses `text` and deserializes its document into `T`, for callers that need no node
/// positions beyond the error's; an empty document is YAML's null.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, DeError> {
    let node = crate::yaml::parse(text)
        .map_err(|e| DeError {
            pos: Some(e.pos),
            message: e.message,
            path: String::new(),
        })?
        .unwrap_or(Node {
            pos: Pos { line: 1, col: 1 },
            kind: Kind::Scalar {
                value: String::new(),
                plain: true,
            },
        });
    from_node(&node)
}

/// Deserializer for one node.
pub struct NodeDe<'a>(pub &'a Node);

fn plain_number(v: &str) -> Option<Result<i64, f64>> {
    if let Ok(i) = v.parse::<i64>() {
        return Some(Ok(i));
    }
    // The core schema's hexadecimal and octal integers.
    for (prefix, radix) in [("0x", 16), ("0o", 8)] {
        if let Some(digits) = v.strip_prefix(prefix)
            && let Ok(i) = i64::from_str_radix(digits, radix)
            && !digits.starts_with(['+', '-'])
        {
            return Some(Ok(i));
        }
    }
    let looks_numeric = v
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && v.chars().any(|c| c.is_ascii_digit());
    if looks_numeric && let Ok(f) = v.parse::<f64>() {
        return Some(Err(f));
    }
    None
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.0;
        let r = match &node.kind {
            _ if node.is_null() => visitor.visit_unit(),
            Kind::Scalar { value, plain: true } => match value.as_str() {
                "true" | "True" | "TRUE" => visitor.visit_bool(true),
                "false" | "False" | "FALSE" => visitor.visit_bool(false),
                v => match plain_number(v) {
                    Some(Ok(i)) => visitor.visit_i64(i),
                    Some(Err(f)) => visitor.visit_f64(f),
                    None => visitor.visit_str(v),
                },
            },
            Kind::Scalar { value, .. } => visitor.visit_str(value),
            Kind::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter().enumerate(),
            }),
            Kind::Map(entries) => {
                let mut seen = std::collections::HashSet::new();
                for (k, _) in entries {
                    if let Some(key) = k.scalar()
                        && !seen.insert(key)
                    {
                        return Err(DeError {
                            pos: Some(k.pos),
                            message: format!("duplicate key `{key}`"),
                            path: String::new(),
                        });
                    }
                }
                visitor.visit_map(Map {
                    entries: entries.iter(),
                    value: None,
                })
            }
        };
        r.map_err(|e| e.at(node.pos))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            visitor.visit_none()
        } else {
            let pos = self.0.pos;
            visitor.visit_some(self).map_err(|e| e.at(pos))
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.scalar() {
            Some(s) => visitor.visit_str(s).map_err(|e: DeError| e.at(self.0.pos)),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let node = self.0;
        let r = match &node.kind {
            Kind::Scalar { value, .. } if !node.is_null() => {
                visitor.visit_enum(value.as_str().into_deserializer())
            }
            Kind::Map(entries) if entries.len() == 1 => visitor.visit_enum(Enum {
                key: &entries[0].0,
                value: &entries[0].1,
            }),
            _ => Err(de::Error::custom(format!(
                "expected a name or a mapping with one key, found a {}",
                node.type_name()
            ))),
        };
        r.map_err(|e| e.at(node.pos))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct ignored_any
    }
}

struct Seq<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
}

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, n)) => seed
                .deserialize(NodeDe(n))
                .map(Some)
                .map_err(|e| e.at(n.pos).under(&format!("[{i}]"))),
        }
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    /// The pending value and its key.
    value: Option<(&'a Node, &'a Node)>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.value = Some((k, v));
                seed.deserialize(NodeDe(k))
                    .map(Some)
                    .map_err(|e| e.at(k.pos))
            }
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (k, v) = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value without a key"))?;
        seed.deserialize(NodeDe(v))
            .map_err(|e| e.at(v.pos).under(k.scalar().unwrap_or("?")))
    }
}

struct Enum<'a> {
    key: &'a Node,
    value: &'a Node,
}

impl<'de, 'a> EnumAccess<'de> for Enum<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let v = seed
            .deserialize(NodeDe(self.key))
            .map_err(|e| e.at(self.key.pos))?;
        Ok((v, NodeDe(self.value)))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'_> {
    type Error = DeError;
    fn unit_variant(self) -> Result<(), DeError> {
        if self.0.is_null() {
            Ok(())
        } else {
            Err(DeError {
                pos: Some(self.0.pos),
                message: "this variant takes no value".into(),
                path: String::new(),
            })
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let pos = self.0.pos;
        seed.deserialize(self).map_err(|e| e.at(pos))
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct T {
        a: u32,
        #[serde(default)]
        b: Option<String>,
        c: Vec<f64>,
        d: BTreeMap<String, String>,
    }

    fn parse<X: DeserializeOwned>(s: &str) -> Result<X, DeError> {
        from_str(s)
    }

    #[test]
    fn deserializes_typed_values() {
        let t: T = parse("a: 3\nb: '7'\nc: [1, 2.5]\nd: {x: y}\n").unwrap();
        assert_eq!(t.a, 3);
        assert_eq!(t.b.as_deref(), Some("7"));
        assert_eq!(t.c, vec![1.0, 2.5]);
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct S {
            b: Vec<bool>,
            i: Vec<i64>,
        }
        let s: S =
            parse("b: [true, True, TRUE, false, False, FALSE]\ni: [10, 0x1F, 0o17, -3]\n").unwrap();
        assert_eq!(s.b, [true, true, true, false, false, false]);
        assert_eq!(s.i, [10, 31, 15, -3]);
        assert!(parse::<S>("b: [yes]\ni: []\n").is_err());
        assert!(parse::<S>("b: []\ni: ['0x1F']\n").is_err());
    }

    #[test]
    fn errors_point_at_the_offending_node() {
        let e = parse::<T>("a: 3\nc: [1, x]\nd: {}\n").unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 2, col: 8 }), "{e}");
        let e = parse::<T>("a: 3\nc: []\nd: {}\nzz: 1\n").unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 4, col: 1 }), "{e}");
        assert!(e.message.contains("unknown field `zz`"), "{e}");
        let e = parse::<T>("a: 3\nc: []\nd: {x: [y]}\n").unwrap_err();
        let col = "d: {x: [y]}".find('[').unwrap() + 1;
        assert_eq!(e.pos, Some(Pos { line: 3, col }), "{e}");
        assert_eq!(e.path, "d.x");
        assert!(
            e.message_with_path().starts_with("d.x: invalid type"),
            "{e}"
        );
        let e = parse::<T>("a: 3\nc: [1, x]\nd: {}\n").unwrap_err();
        assert_eq!(e.message_with_path(), format!("c[1]: {}", e.message));
        let e = parse::<T>("a: [3\n").unwrap_err();
        assert!(e.pos.is_some(), "{e}");
        assert_eq!(parse::<Option<T>>("").unwrap(), None);
        let e = parse::<T>("a: 3\nc: []\n").unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 1, col: 1 }), "{e}");
        assert!(e.message.contains("missing field `d`"), "{e}");
    }
}
