//! Label matchers in Alertmanager's text form (`severity="critical"`, `job=~"node|probe"`,
//! `env!=dev`, `team!~"a.*"`), used by routes, inhibit rules and silences. Regexes are anchored.

use std::{collections::BTreeMap, fmt};

use regex::Regex;

/// A label set: name → value.
pub type LabelSet = BTreeMap<String, String>;

/// The comparison a matcher makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "=~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        }
    }
}

/// One matcher. A missing label matches as the empty string, as in Alertmanager.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl Matcher {
    /// A matcher from its parts; fails on a bad label name or regex.
    pub fn new(name: &str, op: Op, value: &str) -> Result<Matcher, String> {
        if !yunwei_proto::valid_label_name(name) {
            return Err(format!("{name:?} is not a valid label name"));
        }
        let re = match op {
            Op::Re | Op::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regex {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Parses `name<op>value`; the value may be double-quoted (with `\"` and `\\` escapes).
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let t = text.trim();
        let i = t
            .find(['=', '!'])
            .ok_or_else(|| format!("{t:?} is not a matcher (name=\"value\")"))?;
        let name = t[..i].trim();
        let rest = &t[i..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::Ne, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Eq, v)
        } else {
            return Err(format!("{t:?} is not a matcher (name=\"value\")"));
        };
        let value = value.trim();
        let value = if let Some(q) = value.strip_prefix('"') {
            let q = q
                .strip_suffix('"')
                .ok_or_else(|| format!("{t:?}: unterminated quoted value"))?;
            let mut out = String::new();
            let mut chars = q.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => out.push('\n'),
                        Some(c) => out.push(c),
                        None => return Err(format!("{t:?}: dangling backslash")),
                    }
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            value.to_string()
        };
        Matcher::new(name, op, &value)
    }

    /// Whether `labels` satisfy the matcher.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            Op::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// Whether every matcher matches.
pub fn all_match(ms: &[Matcher], labels: &LabelSet) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

impl<'de> serde::Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Matcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_operator_matches_like_alertmanager() {
        let l = ls(&[("severity", "critical"), ("job", "node")]);
        for (m, want) in [
            (r#"severity="critical""#, true),
            ("severity=critical", true),
            (r#"severity!="critical""#, false),
            (r#"job=~"node|probe""#, true),
            (r#"job=~"no""#, false), // anchored
            (r#"job!~"pro.*""#, true),
            (r#"team="""#, true), // a missing label is the empty string
            (r#"team!="""#, false),
        ] {
            assert_eq!(Matcher::parse(m).unwrap().matches(&l), want, "{m}");
        }
    }

    #[test]
    fn bad_matchers_are_refused() {
        for m in ["severity", "1x=\"a\"", "a=~\"(\"", "a=\"open"] {
            assert!(Matcher::parse(m).is_err(), "{m}");
        }
    }

    #[test]
    fn display_round_trips_quotes() {
        let m = Matcher::parse(r#"msg="say \"hi\"""#).unwrap();
        assert_eq!(m.value, "say \"hi\"");
        assert_eq!(Matcher::parse(&m.to_string()).unwrap(), m);
    }
}
