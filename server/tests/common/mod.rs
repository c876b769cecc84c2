//! The in-process server the server's test suites share: `127.0.0.1:0`, a temporary data
//! directory, SQLite or a fresh PostgreSQL database, and an agent client speaking to it.

#![allow(dead_code)]

use std::sync::Arc;

use yunwei_server::{
    AppState, Server,
    config::{Overrides, ServerConfig},
};
use yunwei_tests::{AgentClient, Enrolled, PgDatabase, SECRET, now_ms};

/// An admin API token for the read API, created directly in the store.
pub async fn admin_token(state: &AppState) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    yunwei_server::auth::users::create_token(
        &state.store,
        &format!("test-admin-{n}"),
        yunwei_server::auth::Role::Admin,
        &[],
        None,
        now_ms(),
    )
    .await
    .unwrap()
}

pub struct Harness {
    pub state: Arc<AppState>,
    pub client: AgentClient,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

impl Harness {
    pub async fn start(backend: &str, tweak: impl FnOnce(&mut ServerConfig)) -> Option<Harness> {
        let dir = tempfile::tempdir().unwrap();
        let pg = if backend == "postgres" {
            Some(PgDatabase::create().await?)
        } else {
            None
        };
        let mut config = ServerConfig::from_overrides(&Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().to_path_buf()),
            database_url: pg.as_ref().map(|p| p.url.clone()),
        })
        .unwrap();
        config.enrollment_secret = Some(SECRET.into());
        // Maintenance is driven by the tests with their own clock.
        config.retention.run_every_secs = 3600 * 24;
        tweak(&mut config);
        let server = Server::bind(config).await.unwrap();
        let state = server.state();
        let client = AgentClient::for_base(&format!("http://{}", server.local_addr()))
            .with_token(&admin_token(&state).await);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Some(Harness {
            state,
            client,
            stop: Some(stop),
            task: Some(task),
            dir,
            _pg: pg,
        })
    }

    /// Stops the server and starts a new one on the same store and data directory, with
    /// `tweak` applied to the running config (what a restarted server finds).
    pub async fn restart(mut self, tweak: impl FnOnce(&mut ServerConfig)) -> Harness {
        let mut config = (*self.state.config).clone();
        tweak(&mut config);
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        let server = Server::bind(config).await.unwrap();
        let state = server.state();
        let client = AgentClient::for_base(&format!("http://{}", server.local_addr()))
            .with_token(&admin_token(&state).await);
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Harness {
            state,
            client,
            stop: Some(stop),
            task: Some(task),
            dir: self.dir,
            _pg: self._pg.take(),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    pub async fn ok(&self, e: &Enrolled, b: &yunwei_proto::Batch) -> serde_json::Value {
        let (status, body) = self.client.push(&e.token, b).await.unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// An archived report version's row of contract `c1`, period `2026-11`, for store-level tests.
pub fn report_row(
    origin: &str,
    version: i64,
    lang: &str,
) -> yunwei_server::store::reports::ReportRow {
    yunwei_server::store::reports::ReportRow {
        id: 0,
        contract_id: "c1".into(),
        period: "2026-11".into(),
        start_ms: 0,
        end_ms: 1,
        version,
        lang: lang.into(),
        generated_ms: 2,
        score_milli: 99_000,
        grade: "A".into(),
        provisional: false,
        sha256: "00".into(),
        origin: origin.into(),
        formats: Vec::new(),
    }
}
