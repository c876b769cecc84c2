//! The yunwei host agent: collects host metrics from `/proc` and pushes them to the server as
//! protocol v1 batches (see `yunwei-proto`).
//!
//! [`run`] is the whole program; `main.rs` only parses the command line. The modules are the
//! steps of one cycle: [`config`] says what to do, [`collect`] and [`facts`] read the host,
//! [`spool`] keeps batches on disk until the server has them, [`state`] keeps the agent's
//! identity across restarts, [`metrics`] counts what the agent itself does.

pub mod collect;
pub mod config;
pub mod expose;
pub mod facts;
pub mod metrics;
pub mod probe;
pub mod spool;
pub mod state;
pub mod tls;

pub(crate) mod push;

pub use config::{AgentConfig, ConfigError, load_config, parse_config};
pub use push::{Control, once, run, run_with};
