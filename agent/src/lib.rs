//! The yunwei host agent: collects host metrics from `/proc` and pushes them to the server as
//! protocol v1 batches (see `yunwei-proto`).
//!
//! [`run`] is the whole program; `main.rs` only parses the command line. The modules are the
//! steps of one cycle: [`config`] says what to do, [`collect`] and [`facts`] read the host,
//! [`queue`] holds batches until the server has them, [`state`] keeps the agent's identity and
//! sequence number across restarts.

pub mod collect;
pub mod config;
pub mod facts;
pub mod queue;
pub mod state;

mod push;

pub use config::{AgentConfig, ConfigError, load_config, parse_config};
pub use push::run;
