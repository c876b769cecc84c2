//! Systems and probes as the console shows them: every probe the agents run with its current
//! state and the last 24 hours, and every system of the loaded contracts with the hosts and
//! probes its selectors pick and its current state under the contract's `down_when` rule.
//!
//! Current states come from the stored status intervals (the same rows the SLA engine reads):
//! a subject is up or down when a stored span covers now, and unknown otherwise, so a system's
//! state here is the state its contract assessment will record for this moment.

use std::collections::BTreeMap;

use serde::Serialize;
use yunwei_sla::assess;

use crate::{
    contracts::{Contracts, host_labels, selected},
    ingest::{KIND_HOST, KIND_PROBE, KIND_SERVER_PROBE},
    store::membership::MembershipRow,
    timeline::{Span, State},
};

const DAY_MS: i64 = 86_400_000;

/// Hostnames reported by more than one agent, with those agents' ids. Each agent stays its own
/// host (membership and status are per agent id); the API and `yunwei_hostnames_duplicated`
/// flag the clash.
pub fn shared_hostnames(agents: &[crate::store::AgentRow]) -> BTreeMap<&str, Vec<String>> {
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in agents {
        by_name
            .entry(a.hostname.as_str())
            .or_default()
            .push(a.agent_id.clone());
    }
    by_name.retain(|_, ids| ids.len() > 1);
    by_name
}

/// A probe's recent history in the API.
#[derive(Serialize)]
pub struct ProbeView {
    /// `agent` (a probe of the vendor's agents) or `server` (a contract's `server_probes`
    /// entry, probed by the server itself; `agent_id` and `hostname` are empty).
    pub source: &'static str,
    /// `<agent id>/<probe name>` (source `server`: `<contract id>/<probe name>`), the subject
    /// of its status intervals.
    pub subject: String,
    pub agent_id: String,
    pub hostname: String,
    pub probe: String,
    /// The labels contract selectors see: the host's labels plus `probe`.
    pub labels: BTreeMap<String, String>,
    pub state: State,
    /// Start of the current state (the run of touching spans with that state, or the end of the
    /// last span when unknown); `None` when nothing was ever stored in the last 24 hours.
    pub since: Option<i64>,
    /// Up time over up + down time in the last 24 hours (unknown time left out), in percent;
    /// `None` without any up or down time.
    pub availability_24h_percent: Option<f64>,
    pub down_ms_24h: i64,
    pub unknown_ms_24h: i64,
    /// Contract systems this probe is a member of now, as `contract/system`.
    pub systems: Vec<String>,
}

/// The current state and the start of that state from a subject's sorted spans.
fn current(spans: &[Span], now: i64) -> (State, Option<i64>) {
    let Some(i) = spans.iter().rposition(|s| s.start <= now) else {
        return (State::Unknown, None);
    };
    if spans[i].end <= now {
        return (State::Unknown, Some(spans[i].end));
    }
    let st = spans[i].state;
    let mut since = spans[i].start;
    for s in spans[..i].iter().rev() {
        if s.state != st || s.end < since {
            break;
        }
        since = s.start;
    }
    (st, Some(since))
}

/// Milliseconds per stored state in `[from, to)`, and the unknown rest.
fn totals(spans: &[Span], from: i64, to: i64) -> (i64, i64, i64) {
    let (mut up, mut down) = (0, 0);
    for s in spans {
        let d = (s.end.min(to) - s.start.max(from)).max(0);
        match s.state {
            State::Up => up += d,
            State::Down => down += d,
            State::Unknown => {}
        }
    }
    (up, down, (to - from - up - down).max(0))
}

/// Spans of `kind` by subject, from a week before `now` (so a state that began earlier still
/// shows when it began) up to `now`.
async fn spans_by_subject(
    state: &Contracts,
    kind: &str,
    now: i64,
) -> sqlx::Result<BTreeMap<String, Vec<Span>>> {
    let mut out: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for (subject, span) in state
        .store
        .intervals_between(kind, now - 7 * DAY_MS, now + 1)
        .await?
    {
        out.entry(subject).or_default().push(span);
    }
    Ok(out)
}

struct Inventory {
    /// Agent id → (hostname, selector labels).
    hosts: BTreeMap<String, (String, BTreeMap<String, String>)>,
    host_spans: BTreeMap<String, Vec<Span>>,
    probes: Vec<ProbeView>,
    /// Per loaded contract (in order), the membership rows in force now.
    members: Vec<Vec<MembershipRow>>,
}

async fn inventory(state: &Contracts, now: i64) -> sqlx::Result<Inventory> {
    let agents = state.store.agents().await?;
    let hosts: BTreeMap<String, (String, BTreeMap<String, String>)> = agents
        .iter()
        .map(|a| {
            (
                a.agent_id.clone(),
                (
                    a.hostname.clone(),
                    host_labels(&a.agent_id, &a.hostname, &a.labels),
                ),
            )
        })
        .collect();
    let contracts = state.list();
    // Membership in force now, per contract (`crate::membership`), after the membership pass.
    let mut members: Vec<Vec<MembershipRow>> = Vec::new();
    for c in &contracts {
        crate::membership::sync(
            &state.store,
            c,
            now,
            state.config.contracts.auto_assign_from_labels,
        )
        .await?;
        let rows = state.store.memberships(&c.contract.id).await?;
        members.push(
            rows.into_iter()
                .filter(|r| crate::membership::in_force(r, now))
                .collect(),
        );
    }
    let mut probes = Vec::new();
    for (subject, spans) in spans_by_subject(state, KIND_PROBE, now).await? {
        let Some((agent, probe)) = subject.split_once('/') else {
            continue;
        };
        let Some((hostname, host)) = hosts.get(agent) else {
            continue;
        };
        if spans.last().is_none_or(|s| s.end <= now - DAY_MS) {
            // Not seen for a day: a probe taken out of the agent's configuration.
            continue;
        }
        let mut labels = host.clone();
        labels.insert("probe".into(), probe.to_string());
        let (st, since) = current(&spans, now);
        let (up, down, unknown) = totals(&spans, now - DAY_MS, now);
        let systems = contracts
            .iter()
            .zip(&members)
            .flat_map(|(c, rows)| {
                rows.iter()
                    .filter(|r| r.kind == KIND_PROBE && r.subject == subject)
                    .map(|r| format!("{}/{}", c.contract.id, r.system_id))
            })
            .collect();
        probes.push(ProbeView {
            source: "agent",
            agent_id: agent.to_string(),
            hostname: hostname.clone(),
            probe: probe.to_string(),
            subject: subject.clone(),
            labels,
            state: st,
            since,
            availability_24h_percent: (up + down > 0)
                .then(|| 100.0 * up as f64 / (up + down) as f64),
            down_ms_24h: down,
            unknown_ms_24h: unknown,
            systems,
        });
    }
    // The contracts' own probes, beside the agents'.
    let server_spans = spans_by_subject(state, KIND_SERVER_PROBE, now).await?;
    for c in &contracts {
        for sys in &c.contract.systems {
            for p in &sys.server_probes {
                let subject = format!("{}/{}", c.contract.id, p.name);
                let spans = server_spans.get(&subject).map_or(&[][..], Vec::as_slice);
                let (st, since) = current(spans, now);
                let (up, down, unknown) = totals(spans, now - DAY_MS, now);
                probes.push(ProbeView {
                    source: "server",
                    agent_id: String::new(),
                    hostname: String::new(),
                    probe: p.name.clone(),
                    subject,
                    labels: BTreeMap::from([("probe".to_string(), p.name.clone())]),
                    state: st,
                    since,
                    availability_24h_percent: (up + down > 0)
                        .then(|| 100.0 * up as f64 / (up + down) as f64),
                    down_ms_24h: down,
                    unknown_ms_24h: unknown,
                    systems: vec![format!("{}/{}", c.contract.id, sys.id)],
                });
            }
        }
    }
    Ok(Inventory {
        hosts,
        host_spans: spans_by_subject(state, KIND_HOST, now).await?,
        probes,
        members,
    })
}

/// Every probe seen in the last 24 hours before `now`.
pub async fn probes(state: &Contracts, now: i64) -> sqlx::Result<Vec<ProbeView>> {
    Ok(inventory(state, now).await?.probes)
}

#[derive(Serialize)]
pub struct Member {
    id: String,
    name: String,
    state: State,
}

/// A contract's system as the inventory sees it now.
#[derive(Serialize)]
pub struct SystemView {
    contract_id: String,
    contract_name: String,
    id: String,
    name: String,
    tier: String,
    window: String,
    down_when: yunwei_sla::contract::DownWhen,
    host_selector: Option<BTreeMap<String, String>>,
    probe_selector: Option<BTreeMap<String, String>>,
    /// Now, under the contract's `down_when` rule over the hosts and probes below.
    state: State,
    /// Members now (`crate::membership`): the selectors above only propose.
    hosts: Vec<Member>,
    probes: Vec<Member>,
    /// Hosts (agent ids) and probes the selectors pick now that are not members now: pending
    /// assignment by the office.
    pending: Vec<String>,
}

fn count(members: &[Member]) -> [usize; 3] {
    let mut c = [0; 3];
    for m in members {
        c[match m.state {
            State::Up => 0,
            State::Down => 1,
            State::Unknown => 2,
        }] += 1;
    }
    c
}

/// The systems of every loaded contract, with their hosts and probes, at `now`.
pub async fn systems(state: &Contracts, now: i64) -> sqlx::Result<Vec<SystemView>> {
    let inv = inventory(state, now).await?;
    let contracts = state.list();
    let mut out = Vec::new();
    for (ci, c) in contracts.iter().enumerate() {
        for s in &c.contract.systems {
            let rows = inv.members[ci]
                .iter()
                .filter(|r| r.system_id == s.id)
                .collect::<Vec<_>>();
            let hosts: Vec<Member> = rows
                .iter()
                .filter(|r| r.kind == KIND_HOST)
                .map(|r| Member {
                    id: r.subject.clone(),
                    name: inv
                        .hosts
                        .get(&r.subject)
                        .map_or_else(|| r.subject.clone(), |(hostname, _)| hostname.clone()),
                    state: current(
                        inv.host_spans
                            .get(&r.subject)
                            .map(Vec::as_slice)
                            .unwrap_or_default(),
                        now,
                    )
                    .0,
                })
                .collect();
            let probes: Vec<Member> = rows
                .iter()
                .filter(|r| r.kind == KIND_PROBE)
                .map(
                    |r| match inv.probes.iter().find(|p| p.subject == r.subject) {
                        Some(p) => Member {
                            id: p.subject.clone(),
                            name: format!("{} / {}", p.hostname, p.probe),
                            state: p.state,
                        },
                        None => Member {
                            id: r.subject.clone(),
                            name: r.subject.clone(),
                            state: State::Unknown,
                        },
                    },
                )
                .collect();
            // Proposed by the selectors now, not a member now.
            let is_member =
                |kind: &str, id: &str| rows.iter().any(|r| r.kind == kind && r.subject == id);
            let mut pending: Vec<String> = inv
                .hosts
                .iter()
                .filter(|(id, (_, labels))| {
                    selected(s.hosts.as_ref(), labels) && !is_member(KIND_HOST, id)
                })
                .map(|(id, _)| id.clone())
                .collect();
            pending.extend(
                inv.probes
                    .iter()
                    .filter(|p| {
                        selected(s.probes.as_ref(), &p.labels) && !is_member(KIND_PROBE, &p.subject)
                    })
                    .map(|p| p.subject.clone()),
            );
            let st = match assess::system_state(s.down_when, count(&hosts), count(&probes)) {
                assess::State::Up => State::Up,
                assess::State::Down => State::Down,
                assess::State::Unknown => State::Unknown,
            };
            out.push(SystemView {
                contract_id: c.contract.id.clone(),
                contract_name: c.contract.name.clone(),
                id: s.id.clone(),
                name: s.name.clone(),
                tier: s.tier.clone(),
                window: s.window.clone(),
                down_when: s.down_when,
                host_selector: s.hosts.clone(),
                probe_selector: s.probes.clone(),
                state: st,
                hosts,
                probes,
                pending,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(state: State, start: i64, end: i64) -> Span {
        Span {
            id: None,
            state,
            start,
            end,
        }
    }

    #[test]
    fn current_state_runs_back_over_touching_spans_of_the_same_state() {
        let spans = [
            span(State::Up, 0, 10),
            span(State::Down, 10, 20),
            span(State::Down, 20, 30),
        ];
        assert_eq!(current(&spans, 25), (State::Down, Some(10)));
        assert_eq!(current(&spans, 5), (State::Up, Some(0)));
        // After the last span: unknown since it ended.
        assert_eq!(current(&spans, 30), (State::Unknown, Some(30)));
        assert_eq!(current(&[], 30), (State::Unknown, None));
        // A gap breaks the run.
        let gap = [span(State::Up, 0, 10), span(State::Up, 12, 30)];
        assert_eq!(current(&gap, 20), (State::Up, Some(12)));
    }

    #[test]
    fn totals_clip_to_the_range_and_leave_the_rest_unknown() {
        let spans = [span(State::Up, -5, 10), span(State::Down, 10, 15)];
        assert_eq!(totals(&spans, 0, 20), (10, 5, 5));
    }
}
