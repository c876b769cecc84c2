//! The single access policy table: what every route requires. The [`super::authz`] middleware
//! applies it; a route without an entry is refused (fail closed) and a test fails.

use axum::http::Method;

use crate::auth::{Perm, Role};

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health checks, the login call, the console's static files).
    Public,
    /// Agents, with their own enrollment secret / agent token checked by the handler.
    Agent,
    /// Any logged-in user or valid token.
    Authenticated,
    /// A user or token holding this permission.
    Perm(Perm),
}

impl Access {
    /// The roles that pass.
    pub fn roles(self) -> Vec<Role> {
        match self {
            Access::Public | Access::Agent | Access::Authenticated => Role::ALL.to_vec(),
            Access::Perm(p) => Role::ALL
                .into_iter()
                .filter(|r| r.perms().contains(&p))
                .collect(),
        }
    }
}

/// One entry of the access policy.
#[derive(Debug, Clone, Copy)]
pub struct RoutePolicy {
    pub method: &'static str,
    /// The route template exactly as given to `Router::route`.
    pub path: &'static str,
    pub access: Access,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

const fn p(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
) -> RoutePolicy {
    RoutePolicy {
        method,
        path,
        access,
        summary,
    }
}

use Access::{Agent, Authenticated, Public};
const READ: Access = Access::Perm(Perm::Read);
const OPERATE: Access = Access::Perm(Perm::Operate);
const ADMIN: Access = Access::Perm(Perm::Admin);
const APPROVE: Access = Access::Perm(Perm::Approve);
const REPORTS: Access = Access::Perm(Perm::Reports);

/// Every route's access. Add a line here with each new route (a test fails otherwise).
pub const POLICY: &[RoutePolicy] = &[
    // Contracts and assessment.
    p("GET", "/api/v1/contracts", READ, "the O&M contracts loaded"),
    p(
        "GET",
        "/api/v1/contracts/{id}/status",
        READ,
        "a contract's month to date: availability, error budget, breaches, score",
    ),
    p(
        "GET",
        "/api/v1/contracts/{id}/assessment",
        READ,
        "the full assessment of a period (?period=2026-10|2026-Q3|2026|A..B)",
    ),
    p(
        "GET",
        "/api/v1/contracts/{id}/inspections",
        READ,
        "inspection (巡检) records of a contract",
    ),
    p(
        "GET",
        "/api/v1/contracts/{id}/events",
        READ,
        "events recorded against a contract (manual deductions, bonuses, vetoes)",
    ),
    p(
        "POST",
        "/api/v1/contracts/{id}/events",
        APPROVE,
        "the office records an event a manual deduction, bonus or veto scores",
    ),
    p(
        "GET",
        "/api/v1/contracts/{id}/membership",
        READ,
        "which hosts and probes count for which system since when: current, history, pending",
    ),
    p(
        "POST",
        "/api/v1/contracts/{id}/membership",
        APPROVE,
        "the office assigns or unassigns a host or probe to a system, effective from now on",
    ),
    // Assessment reports.
    p(
        "GET",
        "/api/v1/reports",
        REPORTS,
        "archived reports, every version (?contract=ID)",
    ),
    p(
        "POST",
        "/api/v1/reports",
        REPORTS,
        "generate and archive the next version of a period's report",
    ),
    p(
        "GET",
        "/api/v1/reports/{id}/{format}",
        REPORTS,
        "download an archived report (html, pdf, xlsx, json)",
    ),
    // The assessment's lifecycle: appeals (申诉) and their review (复核).
    p(
        "GET",
        "/api/v1/appeals",
        READ,
        "appeals against draft reports with decisions, attachments and deadlines (?contract=ID&period=P)",
    ),
    p(
        "POST",
        "/api/v1/appeals",
        OPERATE,
        "the vendor appeals a deduction, outage, incident clock or missed inspection of a draft report within the appeal window",
    ),
    p(
        "POST",
        "/api/v1/appeals/{id}/decision",
        APPROVE,
        "a reviewer other than the appellant upholds, overturns or adjusts an appeal",
    ),
    p(
        "POST",
        "/api/v1/reports/{id}/sign-off",
        REPORTS,
        "a party signs the period's latest version off (operator: vendor, reviewer: office); the last signature makes the final report",
    ),
    p(
        "GET",
        "/api/v1/appeals/{id}/attachments/{name}",
        READ,
        "download a file attached to an appeal, byte for byte",
    ),
    // Incidents.
    p(
        "GET",
        "/api/v1/incidents",
        READ,
        "incidents with their clocks",
    ),
    p(
        "POST",
        "/api/v1/incidents",
        OPERATE,
        "open an incident by hand (a fault reported by phone)",
    ),
    p(
        "GET",
        "/api/v1/incidents/{id}",
        READ,
        "one incident: its stamps (recorded when, by whom), requests, notes and level changes",
    ),
    p(
        "POST",
        "/api/v1/incidents/{id}/{action}",
        OPERATE,
        "acknowledge, on site, restore, note, RCA or level change (an earlier time than now, \
         beyond a few minutes, or a lower level is a request for review)",
    ),
    p(
        "GET",
        "/api/v1/incident-requests",
        READ,
        "requests to backdate an incident clock or lower its level (?status=pending)",
    ),
    p(
        "POST",
        "/api/v1/incident-requests/{id}/{decision}",
        APPROVE,
        "approve or reject a backdating or downgrade request (not the requester's own)",
    ),
    // Notifications, acknowledgements, silences, exclusions.
    p(
        "GET",
        "/ack/{token}",
        Public,
        "confirmation page of the signed acknowledge link in a notification",
    ),
    p(
        "POST",
        "/ack/{token}",
        Public,
        "acknowledge an alert group by the signed link (the confirmation page's form)",
    ),
    p(
        "GET",
        "/api/v1/notify/groups",
        READ,
        "alert groups and their state",
    ),
    p(
        "POST",
        "/api/v1/notify/groups/{id}/{action}",
        OPERATE,
        "acknowledge, unacknowledge or resolve an alert group",
    ),
    p(
        "GET",
        "/api/v1/notify/groups/{id}/acks",
        READ,
        "acknowledgements of an alert group",
    ),
    p(
        "GET",
        "/api/v1/notify/log",
        READ,
        "every notification attempt",
    ),
    p("GET", "/api/v1/notify/queue", READ, "pending notifications"),
    p("GET", "/api/v1/silences", READ, "silences"),
    p("POST", "/api/v1/silences", OPERATE, "create a silence"),
    p(
        "POST",
        "/api/v1/silences/{id}/expire",
        OPERATE,
        "expire a silence",
    ),
    p(
        "GET",
        "/api/v1/exclusions",
        READ,
        "maintenance windows and exclusion requests",
    ),
    p(
        "POST",
        "/api/v1/exclusions",
        OPERATE,
        "request a maintenance window or exclusion",
    ),
    p(
        "POST",
        "/api/v1/exclusions/{id}/{decision}",
        APPROVE,
        "approve or reject an exclusion request",
    ),
    p(
        "POST",
        "/api/v1/ingest",
        Agent,
        "agent: push a batch of samples (agent token)",
    ),
    p(
        "POST",
        "/api/v1/enroll",
        Agent,
        "agent: enroll with the enrollment secret",
    ),
    p(
        "POST",
        "/api/v1/write",
        Agent,
        "Prometheus remote write 1.0 (snappy protobuf; a remote-write sender's token)",
    ),
    p(
        "GET",
        "/api/v1/remote-write/senders",
        ADMIN,
        "remote-write senders with the hosts their feeds made",
    ),
    p(
        "POST",
        "/api/v1/remote-write/senders",
        ADMIN,
        "make a remote-write sender; its token is in the answer, once",
    ),
    p(
        "POST",
        "/api/v1/remote-write/senders/{name}/revoke",
        ADMIN,
        "revoke a remote-write sender's token",
    ),
    p(
        "GET",
        "/api/v1/hosts",
        READ,
        "hosts with up / down (silent) / unknown (never reported) status",
    ),
    p(
        "GET",
        "/api/v1/probes",
        READ,
        "every probe: current state, since when, last 24 hours, contract systems",
    ),
    p(
        "GET",
        "/api/v1/systems",
        READ,
        "contract systems with their hosts, probes and current state",
    ),
    p(
        "GET",
        "/api/v1/hosts/{id}",
        READ,
        "one host: timeline, probes, events",
    ),
    p(
        "GET",
        "/api/v1/yunwei/series",
        READ,
        "series values from the raw window or rollups",
    ),
    // Prometheus's HTTP query API, in Prometheus's JSON (Grafana, promtool).
    p(
        "GET",
        "/api/v1/query",
        READ,
        "Prometheus API: instant query",
    ),
    p(
        "POST",
        "/api/v1/query",
        READ,
        "Prometheus API: instant query (form body)",
    ),
    p(
        "GET",
        "/api/v1/query_range",
        READ,
        "Prometheus API: range query",
    ),
    p(
        "POST",
        "/api/v1/query_range",
        READ,
        "Prometheus API: range query (form body)",
    ),
    p(
        "GET",
        "/api/v1/series",
        READ,
        "Prometheus API: series by match[]",
    ),
    p(
        "POST",
        "/api/v1/series",
        READ,
        "Prometheus API: series by match[] (form body)",
    ),
    p("GET", "/api/v1/labels", READ, "Prometheus API: label names"),
    p(
        "POST",
        "/api/v1/labels",
        READ,
        "Prometheus API: label names (form body)",
    ),
    p(
        "GET",
        "/api/v1/label/{name}/values",
        READ,
        "Prometheus API: a label's values",
    ),
    p(
        "GET",
        "/api/v1/metadata",
        READ,
        "Prometheus API: metric metadata",
    ),
    p(
        "GET",
        "/api/v1/status/buildinfo",
        READ,
        "Prometheus API: build information",
    ),
    p(
        "GET",
        "/api/v1/rules",
        READ,
        "alerting and recording rules with state",
    ),
    p("GET", "/api/v1/alerts", READ, "active alerts"),
    p(
        "POST",
        "/api/v1/rules/reload",
        OPERATE,
        "re-read the rule files",
    ),
    p(
        "GET",
        "/metrics",
        Access::Perm(Perm::Metrics),
        "the server's Prometheus metrics",
    ),
    p("GET", "/healthz", Public, "liveness"),
    p(
        "GET",
        "/readyz",
        Public,
        "readiness (writer running, database reachable)",
    ),
    p(
        "POST",
        "/api/v1/auth/login",
        Public,
        "log in; sets the session cookie",
    ),
    p(
        "POST",
        "/api/v1/auth/logout",
        Authenticated,
        "end the current session",
    ),
    p(
        "GET",
        "/api/v1/auth/me",
        Authenticated,
        "the current user, role, permissions, CSRF token",
    ),
    p("GET", "/api/v1/users", ADMIN, "console users"),
    p("POST", "/api/v1/users", ADMIN, "add a user"),
    p(
        "POST",
        "/api/v1/users/{name}/password",
        ADMIN,
        "set a user's password",
    ),
    p(
        "POST",
        "/api/v1/users/{name}/disable",
        ADMIN,
        "disable a user and end their sessions",
    ),
    p(
        "POST",
        "/api/v1/users/{name}/enable",
        ADMIN,
        "re-enable a user",
    ),
    p(
        "POST",
        "/api/v1/users/{name}/unlock",
        ADMIN,
        "clear a login lockout",
    ),
    p(
        "GET",
        "/api/v1/audit",
        Access::Perm(Perm::Audit),
        "the audit log, newest first",
    ),
    p(
        "GET",
        "/api/v1/openapi.json",
        Authenticated,
        "this API's OpenAPI 3 document",
    ),
    p("GET", "/", Public, "the web console"),
    p(
        "GET",
        "/assets/{file}",
        Public,
        "the web console's static files",
    ),
];

/// POST routes that change nothing: Prometheus's query API takes its parameters as a form
/// body too (Grafana posts its queries). They are not audited as changes.
pub const READ_ONLY_POSTS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
];

/// The policy entry for a matched route.
pub fn policy_for(method: &Method, path: &str) -> Option<&'static RoutePolicy> {
    let m = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    POLICY.iter().find(|r| r.method == m && r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_get_exactly_the_documented_permissions() {
        assert_eq!(
            Access::Perm(Perm::Operate).roles(),
            vec![Role::Admin, Role::Operator]
        );
        assert_eq!(
            Access::Perm(Perm::Approve).roles(),
            vec![Role::Admin, Role::Reviewer]
        );
        assert_eq!(
            Access::Perm(Perm::Audit).roles(),
            vec![Role::Admin, Role::Auditor]
        );
        assert_eq!(Access::Perm(Perm::Admin).roles(), vec![Role::Admin]);
    }

    #[test]
    fn the_policy_has_no_duplicates() {
        for (i, a) in POLICY.iter().enumerate() {
            for b in &POLICY[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }
}
