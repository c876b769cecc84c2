//! Store access for seeding simulated history (`quickstart --demo`): what the demo service
//! writes besides agents, rollups and KPIs, which have their own store functions.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use super::{Store, labels_to_json, multi_row_insert};

/// A status interval to seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedInterval<'a> {
    pub kind: &'a str,
    pub subject: String,
    pub state: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Store {
    /// How many agents have a simulated (`sim-`) host name.
    pub async fn simulated_agent_count(&self) -> sqlx::Result<i64> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM agents WHERE hostname LIKE 'sim-%'")
                .fetch_one(&self.pool)
                .await?
                .get::<i64, _>(0),
        )
    }
}

/// Inserts status intervals, 500 to a statement.
pub async fn insert_intervals(
    conn: &mut AnyConnection,
    intervals: &[SeedInterval<'_>],
) -> sqlx::Result<()> {
    for chunk in intervals.chunks(500) {
        let sql = multi_row_insert(
            "INSERT INTO status_intervals (kind, subject, state, start_ms, end_ms) VALUES ",
            chunk.len(),
            5,
        );
        let mut q = sqlx::query(&sql);
        for i in chunk {
            q = q
                .bind(i.kind)
                .bind(&i.subject)
                .bind(i.state)
                .bind(i.start_ms)
                .bind(i.end_ms);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts a new series; returns its id.
pub async fn insert_series(
    conn: &mut AnyConnection,
    agent_id: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    created_ms: i64,
) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO series (agent_id, name, labels, created_ms) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(agent_id)
    .bind(name)
    .bind(labels_to_json(labels))
    .bind(created_ms)
    .fetch_one(&mut *conn)
    .await?
    .get(0))
}
