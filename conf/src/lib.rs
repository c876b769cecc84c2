//! What every yunwei file format shares, so that rule files, contracts and calendars report
//! problems the same way: a YAML tree that remembers where each node starts ([`yaml`]), a serde
//! deserializer over it that names the position of a wrong value ([`yaml_de`]), the
//! `file:line:col: message` [`Diagnostic`], and the one Prometheus duration grammar
//! ([`parse_duration_ms`]), every input size and nesting limit ([`limits`]) and whether a
//! configured host is loopback ([`host`]). Pure: no I/O.

mod diagnostic;
mod duration;
pub mod host;
pub mod limits;
pub mod yaml;
pub mod yaml_de;

pub use diagnostic::Diagnostic;
pub use duration::parse_duration_ms;
pub use yaml::Pos;
