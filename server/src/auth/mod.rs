//! Who may do what: console users with roles, sessions and API tokens with scopes ([`users`]).
//! The HTTP side (the access policy table and the middleware applying it) is in `http/policy.rs`
//! and `http/authz.rs`.
//!
//! Roles (等保 2.0: separate administrator, operator and auditor duties):
//! - `admin`: everything;
//! - `operator` (the O&M vendor): read, operate alerts/silences/incidents/maintenance, reload rules;
//! - `reviewer` (the e-government office): read, approvals, report download;
//! - `auditor`: the audit log only.

pub mod users;

use serde::Serialize;

/// A console role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Reviewer,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Reviewer, Role::Auditor];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
        }
    }

    /// The permissions a role grants.
    pub fn perms(self) -> &'static [Perm] {
        match self {
            Role::Admin => &Perm::ALL,
            // The vendor produces the reports it is judged by, so it may generate and read them.
            Role::Operator => &[Perm::Read, Perm::Operate, Perm::Metrics, Perm::Reports],
            Role::Reviewer => &[Perm::Read, Perm::Approve, Perm::Reports],
            Role::Auditor => &[Perm::Audit],
        }
    }
}

/// A permission: what a route needs. API tokens may be limited to some of their role's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Perm {
    /// Read monitoring data: hosts, series, rules, alerts, incidents, contracts.
    Read,
    /// Act on alerts, silences, incidents, maintenance requests; reload rules.
    Operate,
    /// Approve maintenance and exclusion requests.
    Approve,
    /// List, download and verify reports.
    Reports,
    /// Read the audit log.
    Audit,
    /// Manage users and tokens.
    Admin,
    /// Scrape `/metrics`.
    Metrics,
}

impl Perm {
    pub const ALL: [Perm; 7] = [
        Perm::Read,
        Perm::Operate,
        Perm::Approve,
        Perm::Reports,
        Perm::Audit,
        Perm::Admin,
        Perm::Metrics,
    ];

    pub fn parse(s: &str) -> Option<Perm> {
        Perm::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Perm::Read => "read",
            Perm::Operate => "operate",
            Perm::Approve => "approve",
            Perm::Reports => "reports",
            Perm::Audit => "audit",
            Perm::Admin => "admin",
            Perm::Metrics => "metrics",
        }
    }
}
