//! Fencing of the singletons' writes on PostgreSQL (issue 19): a store whose replica lost the
//! leader lease (another holder, a later epoch) refuses each kind of singleton write — alert
//! groups and acknowledgement records, incidents opened by the dispatcher, rollups, archives
//! of the report schedule, audit checkpoints, attempt records of lifecycle mail, claims of a
//! follower's acknowledgement — and writes nothing; people's writes through any replica (a
//! manual incident, a report generated through the API) are not fenced. Then the follower's
//! acknowledgement request round trip on the store: recorded, claimed by the leader's term,
//! finished with the acknowledgement's record in one transaction; withdrawn when no leader
//! claimed it.

mod common;

use sqlx::{Connection, Row};
use yunwei_server::store::{
    FENCED, Store,
    appeals::LifecycleMailRow,
    audit::CheckpointRow,
    ha::{AckRequest, AckRequestState},
    incidents::IncidentRow,
    notify::AckRow,
    reports::ReportRow,
};
use yunwei_tests::PgDatabase;

/// Makes `holder` the lease holder in term `epoch`, as an election would.
async fn lease(url: &str, holder: &str, epoch: i64) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(
        "UPDATE leader_lease SET holder = $1, epoch = $2, expires_ms = 9000000000000 \
         WHERE name = 'leader'",
    )
    .bind(holder)
    .bind(epoch)
    .execute(&mut c)
    .await
    .unwrap();
}

async fn count(url: &str, table: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0)
}

fn fenced<T: std::fmt::Debug>(r: sqlx::Result<T>, what: &str) {
    match r {
        Err(e) if e.to_string().contains(FENCED) => {}
        other => panic!("{what}: expected the fence to refuse it, got {other:?}"),
    }
}

fn incident(id: &str) -> IncidentRow {
    IncidentRow {
        id: id.into(),
        group_id: Some("g1".into()),
        title: "PortalDown".into(),
        level: 2,
        source: "alert".into(),
        labels: Default::default(),
        detected_ms: 1_000,
        notified_ms: None,
        acknowledged_ms: None,
        acknowledged_by: None,
        onsite_ms: None,
        restored_ms: None,
        rca: None,
        created_by: "system".into(),
        updated_ms: 1_000,
    }
}

fn report(origin: &str, version: i64) -> ReportRow {
    common::report_row(origin, version, "zh-CN")
}

fn ack(at: i64) -> AckRow {
    AckRow {
        group_id: "g1".into(),
        action: "ack".into(),
        actor: "张三".into(),
        via: "link".into(),
        at_ms: at,
    }
}

#[tokio::test]
async fn an_ex_leader_writes_nothing_a_singleton_writes() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let store = Store::open(&pg.url, true).await.unwrap();
    let me: std::sync::Arc<str> = "replica-a".into();
    lease(&pg.url, "replica-a", 5).await;
    store.set_fence(&me, 5);
    // While it leads, its singleton writes go through.
    store
        .insert_incident(&incident("i1"), true, None)
        .await
        .unwrap();
    store.notify_ack(&ack(10), None, None).await.unwrap();
    store
        .enqueue_lifecycle_mail(&LifecycleMailRow {
            id: 0,
            contract_id: "c1".into(),
            period: "2026-11".into(),
            step: "draft".into(),
            to_addrs: "[\"office@example.gov.cn\"]".into(),
            subject: "s".into(),
            body: "b".into(),
            created_ms: 1_000,
            status: "pending".into(),
            due_ms: 1_000,
            attempts: 0,
            sent_ms: None,
            last_error: None,
        })
        .await
        .unwrap();
    let mail = store.due_lifecycle_mail(1_000).await.unwrap()[0].id;
    assert!(
        store
            .lease_lifecycle_mail(mail, 1_000, 301_000)
            .await
            .unwrap()
    );

    // Another replica takes the lease (term 6): every kind is refused, nothing is written.
    lease(&pg.url, "replica-b", 6).await;
    fenced(
        store.notify_commit(&[], &[], &[], 20).await,
        "alert group state",
    );
    fenced(
        store.notify_ack(&ack(20), None, None).await,
        "acknowledgement record",
    );
    fenced(
        store.insert_incident(&incident("i2"), true, None).await,
        "incident opened by the dispatcher",
    );
    fenced(
        store.replace_rollup_hour(0, 1, None, &[]).await,
        "rollups of an hour",
    );
    fenced(
        store
            .insert_report(&report("schedule", 1), b"{}", &[])
            .await,
        "archive of the report schedule",
    );
    fenced(
        store
            .insert_audit_checkpoint(&CheckpointRow {
                seq: 1,
                hash: "h".into(),
                ts_ms: 20,
                key_id: "k".into(),
                signature: "s".into(),
            })
            .await,
        "audit checkpoint",
    );
    fenced(
        store.claim_ack_request(1).await,
        "claim of an acknowledgement request",
    );
    fenced(
        store
            .record_lifecycle_mail(mail, "sent", 20, Some(20), None)
            .await,
        "attempt record of a lifecycle mail",
    );
    // The lease runs out and the row is due again, untouched, for the new leader.
    let due = store.due_lifecycle_mail(301_000).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|m| (m.id, m.status.as_str(), m.attempts))
            .collect::<Vec<_>>(),
        vec![(mail, "pending", 0)]
    );
    assert_eq!(count(&pg.url, "incidents").await, 1);
    assert_eq!(count(&pg.url, "notify_acks").await, 1);
    assert_eq!(count(&pg.url, "reports").await, 0);
    assert_eq!(count(&pg.url, "audit_checkpoints").await, 0);

    // People's writes through any replica are not singleton writes.
    store
        .insert_incident(
            &IncidentRow {
                group_id: None,
                source: "manual".into(),
                created_by: "李四".into(),
                ..incident("i3")
            },
            false,
            None,
        )
        .await
        .unwrap();
    store
        .insert_report(&report("api", 2), b"{}", &[])
        .await
        .unwrap();
    assert_eq!(count(&pg.url, "incidents").await, 2);
    assert_eq!(count(&pg.url, "reports").await, 1);
    drop(pg);
}

#[tokio::test]
async fn a_followers_acknowledgement_request_is_claimed_finished_or_withdrawn() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let leader = Store::open(&pg.url, true).await.unwrap();
    let follower = Store::open(&pg.url, true).await.unwrap();
    lease(&pg.url, "replica-a", 3).await;
    leader.set_fence(&"replica-a".into(), 3);
    follower.set_fence(&"replica-b".into(), -1);
    let req = AckRequest {
        id: 0,
        group_id: "g1".into(),
        action: "ack".into(),
        actor: "张三".into(),
        via: "link".into(),
        episode_ms: Some(7),
        audit: Some((100, "{}".into())),
    };
    let id = follower
        .insert_ack_request(&req, "replica-b", 100, 10_100)
        .await
        .unwrap();
    assert_eq!(
        follower.ack_request_state(id).await.unwrap(),
        AckRequestState::Waiting
    );
    // A follower cannot claim it; the leader of term 3 does, once.
    fenced(follower.claim_ack_request(id).await, "a follower's claim");
    let open = leader.open_ack_requests(3, 200).await.unwrap();
    assert_eq!(open, vec![AckRequest { id, ..req.clone() }]);
    assert!(leader.claim_ack_request(id).await.unwrap());
    assert!(!leader.claim_ack_request(id).await.unwrap());
    assert_eq!(
        follower.ack_request_state(id).await.unwrap(),
        AckRequestState::Claimed
    );
    // Claimed: the follower can no longer withdraw it.
    assert!(!follower.withdraw_ack_request(id).await.unwrap());
    // Another term would apply it again while it has no outcome.
    assert_eq!(leader.open_ack_requests(4, 200).await.unwrap().len(), 1);
    assert!(leader.open_ack_requests(3, 200).await.unwrap().is_empty());
    // The record and the outcome commit together.
    leader
        .notify_ack(&ack(300), None, Some((id, "{\"Ok\":null}")))
        .await
        .unwrap();
    assert_eq!(
        follower.ack_request_state(id).await.unwrap(),
        AckRequestState::Done("{\"Ok\":null}".into())
    );
    assert!(leader.open_ack_requests(4, 300).await.unwrap().is_empty());
    follower.delete_ack_request(id).await.unwrap();
    assert_eq!(
        follower.ack_request_state(id).await.unwrap(),
        AckRequestState::Gone
    );

    // No leader claimed it in time: withdrawn, and no later leader applies it.
    let late = follower
        .insert_ack_request(&req, "replica-b", 400, 10_400)
        .await
        .unwrap();
    assert!(follower.withdraw_ack_request(late).await.unwrap());
    assert!(leader.open_ack_requests(5, 500).await.unwrap().is_empty());
    // Nor one whose requester stopped waiting (expired, never claimed); the purge drops it.
    let expired = follower
        .insert_ack_request(&req, "replica-b", 400, 1_000)
        .await
        .unwrap();
    assert!(leader.open_ack_requests(5, 2_000).await.unwrap().is_empty());
    assert_eq!(leader.purge_ack_requests(2_000).await.unwrap(), 1);
    assert_eq!(
        follower.ack_request_state(expired).await.unwrap(),
        AckRequestState::Gone
    );
    drop(pg);
}
