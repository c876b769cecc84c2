//! One problem in a file, printed `file:line:col: message`.

use std::fmt;

use crate::Pos;

/// One problem in a file (a rule file, a contract, a calendar).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or other origin) the text came from.
    pub origin: String,
    /// Where in the text, when known.
    pub pos: Option<Pos>,
    /// What is wrong, with the part of the file it concerns (e.g. the group and rule).
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(f, "{}:{}:{}: {}", self.origin, p.line, p.col, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}
