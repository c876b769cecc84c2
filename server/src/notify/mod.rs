//! Notifications: alerts from the rule evaluator are routed, grouped, muted and escalated by the
//! pure [`engine`] (configured by [`config`]), then delivered by the dispatcher through email
//! and webhooks with a persisted queue, retries and a log of every attempt.

pub mod config;
pub mod deliver;
pub mod dispatch;
pub mod engine;
pub mod incidents;
pub mod matcher;
pub mod message;
pub mod timeinterval;
pub mod token;

pub use engine::fingerprint;
pub mod cli;
pub mod oncall;
pub mod ratelimit;
