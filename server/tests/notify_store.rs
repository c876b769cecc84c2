//! The notification tables on SQLite and PostgreSQL alike: groups and queue rows are written
//! together and survive reopening the store; the queue leases, retries and falls back; every
//! attempt is logged; acknowledgements, silences and the link secret round-trip.

use yunwei_server::store::{
    Store,
    incidents::{Clock, IncidentRow},
    notify::{AckRow, LogRow, Outcome, QueueRow, SilenceRow},
};
use yunwei_tests::PgDatabase;

struct Db {
    url: String,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

async fn db(backend: &str) -> Option<Db> {
    let dir = tempfile::tempdir().unwrap();
    let pg = if backend == "postgres" {
        Some(PgDatabase::create().await?)
    } else {
        None
    };
    let url = pg.as_ref().map_or_else(
        || format!("sqlite://{}", dir.path().join("n.db").display()),
        |p| p.url.clone(),
    );
    Some(Db {
        url,
        _dir: dir,
        _pg: pg,
    })
}

fn row(group: &str, receiver: &str, due: i64) -> QueueRow {
    QueueRow {
        id: 0,
        group_id: group.into(),
        receiver: receiver.into(),
        channel: "email".into(),
        target_index: 0,
        payload: "{}".into(),
        created_ms: due,
        due_ms: due,
        attempts: 0,
        fallback_done: false,
    }
}

fn log(q: &QueueRow, attempt: i64, at: i64, ok: bool) -> LogRow {
    LogRow {
        id: 0,
        queue_id: q.id,
        group_id: q.group_id.clone(),
        receiver: q.receiver.clone(),
        channel: q.channel.clone(),
        target: "ops@example.org".into(),
        tier: 1,
        status: "firing".into(),
        attempt,
        attempted_ms: at,
        ok,
        code: ok.then_some(250),
        error: (!ok).then(|| "connection refused".into()),
    }
}

yunwei_tests::both_backends!(
    groups_and_queue_commit_together_and_survive_reopening,
    retries_fallback_and_the_log_of_every_attempt,
    acks_silences_and_the_secret_round_trip,
    incident_clocks_are_stamped_once_and_every_change_is_an_event,
);

async fn groups_and_queue_commit_together_and_survive_reopening(backend: &str) {
    let Some(d) = db(backend).await else { return };
    let s = Store::open(&d.url, true).await.unwrap();
    s.notify_commit(
        &[("k1".into(), "g1".into(), "{\"a\":1}".into())],
        &[],
        &[row("g1", "ops", 100), row("g1", "ops", 50)],
        100,
    )
    .await
    .unwrap();
    s.close().await;
    let s = Store::open(&d.url, true).await.unwrap();
    assert_eq!(
        s.notify_groups().await.unwrap(),
        [("k1".to_string(), "{\"a\":1}".to_string())]
    );
    assert_eq!(s.notify_next_due().await.unwrap(), Some(50));
    let due = s.notify_due(60, 10).await.unwrap();
    assert_eq!(due.len(), 1, "only the row due by 60");
    assert!(!s.notify_lease(due[0].id, 1_000, true).await.unwrap());
    assert_eq!(
        s.notify_next_due().await.unwrap(),
        Some(100),
        "a leased row waits"
    );
    // The process stopped with that send in flight: the next one's lease says it may repeat
    // it (and the dispatcher logs so); its own later leases, or one after an attempt was
    // recorded, do not.
    s.close().await;
    let s = Store::open(&d.url, true).await.unwrap();
    assert!(s.notify_lease(due[0].id, 1_100, true).await.unwrap());
    assert!(!s.notify_lease(due[0].id, 1_200, true).await.unwrap());
    // Upsert and removal.
    s.notify_commit(
        &[("k1".into(), "g1".into(), "{\"a\":2}".into())],
        &[],
        &[],
        200,
    )
    .await
    .unwrap();
    assert_eq!(s.notify_groups().await.unwrap()[0].1, "{\"a\":2}");
    s.notify_commit(&[], &["k1".into()], &[], 300)
        .await
        .unwrap();
    assert!(s.notify_groups().await.unwrap().is_empty());
    s.close().await;
}

async fn retries_fallback_and_the_log_of_every_attempt(backend: &str) {
    let Some(d) = db(backend).await else { return };
    let s = Store::open(&d.url, true).await.unwrap();
    s.notify_commit(&[], &[], &[row("g1", "ops", 0)], 0)
        .await
        .unwrap();
    let q = s.notify_due(0, 10).await.unwrap().remove(0);
    s.notify_attempt(
        &log(&q, 1, 10, false),
        &Outcome::Retry { due_ms: 1_010 },
        &[],
    )
    .await
    .unwrap();
    let q = s.notify_queue().await.unwrap().remove(0);
    assert_eq!((q.attempts, q.due_ms, q.fallback_done), (1, 1_010, false));
    assert!(!s.notify_lease(q.id, 1_010, true).await.unwrap());
    s.close().await;
    let s = Store::open(&d.url, true).await.unwrap();
    // The second failure queues the fallback receiver, once.
    s.notify_attempt(
        &log(&q, 2, 1_010, false),
        &Outcome::Retry { due_ms: 3_010 },
        &[row("g1", "office", 1_010)],
    )
    .await
    .unwrap();
    let queue = s.notify_queue().await.unwrap();
    assert_eq!(queue.len(), 2);
    assert!(queue[0].fallback_done);
    assert_eq!(queue[1].receiver, "office");
    s.notify_attempt(&log(&queue[0], 3, 3_010, true), &Outcome::Done, &[])
        .await
        .unwrap();
    assert_eq!(
        s.notify_queue().await.unwrap().len(),
        1,
        "delivered rows go"
    );
    let l = s.notify_log(Some("g1"), 10).await.unwrap();
    assert_eq!(
        l.iter()
            .map(|r| (r.attempt, r.ok, r.code))
            .collect::<Vec<_>>(),
        [(3, true, Some(250)), (2, false, None), (1, false, None)],
        "newest first, each attempt kept"
    );
    assert_eq!(l[2].error.as_deref(), Some("connection refused"));
    assert!(s.notify_log(Some("other"), 10).await.unwrap().is_empty());
    assert_eq!(s.notify_log(None, 2).await.unwrap().len(), 2);
    s.close().await;
}

async fn acks_silences_and_the_secret_round_trip(backend: &str) {
    let Some(d) = db(backend).await else { return };
    let s = Store::open(&d.url, true).await.unwrap();
    for (action, at) in [("ack", 5), ("unack", 7)] {
        s.notify_ack(
            &AckRow {
                group_id: "g1".into(),
                action: action.into(),
                actor: "张三".into(),
                via: "api".into(),
                at_ms: at,
            },
            None,
            None,
        )
        .await
        .unwrap();
    }
    let acks = s.notify_acks("g1").await.unwrap();
    assert_eq!(
        acks.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["ack", "unack"]
    );
    assert_eq!(acks[0].actor, "张三");
    let mut si = SilenceRow {
        id: "s1".into(),
        matchers: vec!["instance=\"web1\"".into()],
        starts_ms: 0,
        ends_ms: 100,
        created_by: "ops".into(),
        comment: "upgrade".into(),
        created_ms: 0,
        updated_ms: 0,
    };
    s.put_silence(&si, None).await.unwrap();
    si.ends_ms = 50;
    s.put_silence(&si, None).await.unwrap();
    assert_eq!(s.silences().await.unwrap(), [si]);
    let a = s.notify_secret("ack_link", "first", 0).await.unwrap();
    let b = s.notify_secret("ack_link", "second", 1).await.unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("first", "first"));
    s.close().await;
}

async fn incident_clocks_are_stamped_once_and_every_change_is_an_event(backend: &str) {
    let Some(d) = db(backend).await else { return };
    let s = Store::open(&d.url, true).await.unwrap();
    let row = IncidentRow {
        id: "i1".into(),
        group_id: Some("g1".into()),
        title: "DbDown".into(),
        level: 3,
        source: "alert".into(),
        labels: [("instance".to_string(), "db1".to_string())].into(),
        detected_ms: 1_000,
        notified_ms: None,
        acknowledged_ms: None,
        acknowledged_by: None,
        onsite_ms: None,
        restored_ms: None,
        rca: None,
        created_by: "system".into(),
        updated_ms: 1_000,
    };
    s.insert_incident(&row, false, None).await.unwrap();
    assert!(
        s.stamp_incident("i1", Clock::Notified, 1_500, "ops", 1_500, false, None)
            .await
            .unwrap()
    );
    assert!(
        s.stamp_incident("i1", Clock::Acknowledged, 2_000, "张三", 2_000, false, None)
            .await
            .unwrap()
    );
    assert!(
        !s.stamp_incident("i1", Clock::Acknowledged, 3_000, "李四", 3_000, false, None)
            .await
            .unwrap()
    );
    assert!(
        s.set_incident_level("i1", 2, "system", "overdue", 4_000, false, None)
            .await
            .unwrap()
    );
    assert!(
        !s.set_incident_level("nope", 2, "system", "x", 4_000, false, None)
            .await
            .unwrap()
    );
    s.incident_text("i1", "rca", "张三", "电源故障", 5_000, None)
        .await
        .unwrap();
    assert_eq!(
        s.open_incident_of_group("g1").await.unwrap().unwrap().id,
        "i1"
    );
    assert!(
        s.stamp_incident("i1", Clock::Restored, 6_000, "system", 6_000, false, None)
            .await
            .unwrap()
    );
    assert!(s.open_incident_of_group("g1").await.unwrap().is_none());
    assert!(s.incidents(true).await.unwrap().is_empty());
    let i = s.incident("i1").await.unwrap().unwrap();
    assert_eq!(
        (
            i.level,
            i.notified_ms,
            i.acknowledged_ms,
            i.acknowledged_by.as_deref(),
            i.restored_ms
        ),
        (2, Some(1_500), Some(2_000), Some("张三"), Some(6_000))
    );
    assert_eq!(i.rca.as_deref(), Some("电源故障"));
    assert_eq!(i.labels["instance"], "db1");
    let kinds: Vec<(String, String)> = s
        .incident_events("i1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.detail))
        .collect();
    assert_eq!(
        kinds,
        [
            ("opened".to_string(), "level 3".to_string()),
            ("notified".into(), "".into()),
            ("ack".into(), "".into()),
            ("level".into(), "3 -> 2: overdue".into()),
            ("rca".into(), "电源故障".into()),
            ("restored".into(), "".into()),
        ]
    );
    s.close().await;
}
