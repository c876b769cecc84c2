//! End-to-end test support: building and starting the real `yunwei-server` and `yunwei-agent`
//! binaries as separate processes, giving each test its own PostgreSQL database, and talking
//! to the server over HTTP like an agent does.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

pub mod webdriver;

use anyhow::{Context, bail};
use sqlx::Connection;
use yunwei_proto::{Batch, HostFacts, PROTOCOL_VERSION, Sample};

/// Base URL of the PostgreSQL server used by the tests (trust auth).
pub fn pg_base_url() -> String {
    std::env::var("YUNWEI_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// True when running under CI, where a missing component fails instead of skipping.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

static BUILD: Mutex<bool> = Mutex::new(false);

/// Path of a workspace binary (`yunwei-server`, `yunwei-agent`) in the profile the tests were
/// built with, building it first if it is missing.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    let mut built = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "yunwei-server",
            "-p",
            "yunwei-agent",
            "--bins",
        ]);
        if release {
            cmd.arg("--release");
        }
        // The build runs on the real clock: `.ci/date-sweep` preloads libfaketime into the
        // tests, and rustc must not see a moved clock (it hangs under it).
        cmd.current_dir(workspace_root()).env_remove("LD_PRELOAD");
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building the binaries failed");
        *built = true;
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A free port on loopback (bind to 0 and release; the tiny race is acceptable in tests).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A PostgreSQL database of its own for one test, dropped with the guard.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

static PG_SEQ: AtomicU32 = AtomicU32::new(0);

impl PgDatabase {
    /// Creates a fresh database. `None` when PostgreSQL is unreachable outside CI; under CI an
    /// unreachable PostgreSQL is a failure.
    pub async fn create() -> Option<PgDatabase> {
        let base = pg_base_url();
        let mut conn = match sqlx::PgConnection::connect(&base).await {
            Ok(c) => c,
            Err(e) => {
                if ci() {
                    panic!("CI=true and PostgreSQL at {base} is unreachable: {e}");
                }
                eprintln!(
                    "SKIP: PostgreSQL at {base} is unreachable ({e}); set CI=true to make this a failure"
                );
                return None;
            }
        };
        let name = format!(
            "yunwei_t_{}_{}_{}",
            std::process::id(),
            PG_SEQ.fetch_add(1, Ordering::SeqCst),
            now_ms() % 100_000
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let (prefix, _) = base.rsplit_once('/').expect("url has a database");
        Some(PgDatabase {
            url: format!("{prefix}/{name}"),
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop in a separate thread with its own runtime: Drop cannot be async.
        let base = pg_base_url();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&base).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Which store a server process uses.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite,
    Postgres(String),
}

/// The enrollment secret test servers are configured with.
pub const SECRET: &str = "test-enrollment-secret-0123456789";

/// A `yunwei-server serve` child process; killed (by its PID) when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// An admin API token created with `yunwei-server token create` before the start.
    pub api_token: String,
}

impl ServerProcess {
    /// Starts a server on a free port with `extra` YAML appended to its config.
    pub async fn start(db: &Db, extra: &str) -> anyhow::Result<ServerProcess> {
        ServerProcess::start_replica(db, extra, "harness").await
    }

    /// Like [`ServerProcess::start`], its admin token's user named `name`: several replicas
    /// on one PostgreSQL each create their own.
    pub async fn start_replica(db: &Db, extra: &str, name: &str) -> anyhow::Result<ServerProcess> {
        let dir = tempfile::tempdir()?;
        let addr = free_addr();
        let db_line = match db {
            Db::Sqlite => String::new(),
            Db::Postgres(url) => format!("database_url: {url}\n"),
        };
        let config = format!(
            "listen: {addr}\ndata_dir: {}\nenrollment_secret: {SECRET}\n{db_line}{extra}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("server.yaml");
        std::fs::write(&config_path, config)?;
        let log_path = dir.path().join("server.log");
        if let Db::Postgres(url) = db {
            shared_report_key(url, &dir.path().join("data"), false)?;
        }
        let api_token = cli_token(&config_path, name, "admin")?;
        let mut s = ServerProcess {
            child: None,
            addr,
            dir,
            config_path,
            log_path,
            api_token,
        };
        s.spawn().await?;
        if let Db::Postgres(url) = db {
            shared_report_key(url, &s.dir.path().join("data"), true)?;
        }
        Ok(s)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(bin("yunwei-server"))
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning yunwei-server")?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("yunwei-server exited with {status}; log:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!("yunwei-server not ready after 30 s; log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `yunwei-server ARGS --config <this server's config>`; returns stdout, or the error
    /// with stderr.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        run_cli(&self.config_path, args)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills the server with SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY-free: use the kill(1) command rather than libc.
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Starts the same server (same config, same data) again.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn().await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The report-signing key files of the first replica started on each PostgreSQL database:
/// replicas must share one key (`report_keys::check_shared`), as an operator copies it.
static REPORT_KEYS: Mutex<BTreeMap<String, KeyFiles>> = Mutex::new(BTreeMap::new());

/// Key files by name, with their bytes.
type KeyFiles = Vec<(String, Vec<u8>)>;

/// Before a replica on `url` starts (`started` false): gives its data directory the key files
/// of the first replica on that database, if one started. After it started: remembers its
/// key files when it is the first.
fn shared_report_key(url: &str, data: &Path, started: bool) -> anyhow::Result<()> {
    const FILES: [&str; 2] = ["report-signing.key", "report-signing.pub"];
    let mut keys = REPORT_KEYS.lock().expect("keys lock");
    match (keys.get(url), started) {
        (Some(files), false) => {
            std::fs::create_dir_all(data)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))?;
            }
            for (name, bytes) in files {
                let path = data.join(name);
                std::fs::write(&path, bytes)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
                }
            }
        }
        (None, true) => {
            let mut files = Vec::new();
            for name in FILES {
                if let Ok(bytes) = std::fs::read(data.join(name)) {
                    files.push((name.to_string(), bytes));
                }
            }
            if files.len() == FILES.len() {
                keys.insert(url.to_string(), files);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Runs `yunwei-server ARGS --config CONFIG` with nothing on stdin.
pub fn run_cli(config: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(bin("yunwei-server"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .context("running yunwei-server")?;
    if !out.status.success() {
        bail!(
            "yunwei-server {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Creates an API token named `name` with `role` through the CLI; returns its secret.
pub fn cli_token(config: &Path, name: &str, role: &str) -> anyhow::Result<String> {
    let out = run_cli(config, &["token", "create", "--name", name, "--role", role])?;
    Ok(out.trim().to_string())
}

/// An agent identity enrolled with a server.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub agent_id: String,
    pub token: String,
}

/// HTTP client speaking the agent protocol.
#[derive(Clone)]
pub struct AgentClient {
    pub http: reqwest::Client,
    pub base: String,
    /// API token sent with the read API calls ([`AgentClient::get_json`], [`AgentClient::api`]).
    pub api_token: Option<String>,
}

impl AgentClient {
    /// A client for `server`, carrying its admin API token.
    pub fn new(server: &ServerProcess) -> AgentClient {
        AgentClient::for_base(&server.url("")).with_token(&server.api_token)
    }

    pub fn with_token(mut self, token: &str) -> AgentClient {
        self.api_token = Some(token.to_string());
        self
    }

    /// A request to the API at `path` with the client's API token.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// The server's base URL (`http://127.0.0.1:PORT`).
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn for_base(base: &str) -> AgentClient {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        AgentClient {
            http,
            base: base.to_string(),
            api_token: None,
        }
    }

    pub async fn enroll(&self, hostname: &str) -> anyhow::Result<Enrolled> {
        let r = self
            .http
            .post(format!("{}/api/v1/enroll", self.base))
            .json(&yunwei_proto::EnrollRequest {
                secret: SECRET.into(),
                host: facts(hostname),
            })
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("enroll: {} {}", r.status(), r.text().await?);
        }
        let e: yunwei_proto::EnrollResponse = r.json().await?;
        Ok(Enrolled {
            agent_id: e.agent_id,
            token: e.token,
        })
    }

    /// Sends an encoded body with the protocol's headers; returns status and body text.
    pub async fn push_body(&self, token: &str, body: Vec<u8>) -> anyhow::Result<(u16, String)> {
        let r = self
            .http
            .post(format!("{}/api/v1/ingest", self.base))
            .header("content-type", yunwei_proto::CONTENT_TYPE)
            .header("content-encoding", "gzip")
            .bearer_auth(token)
            .body(body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    pub async fn push(&self, token: &str, batch: &Batch) -> anyhow::Result<(u16, String)> {
        self.push_body(token, yunwei_proto::encode_batch(batch))
            .await
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let r = self.api(reqwest::Method::GET, path).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self
            .api(reqwest::Method::GET, path)
            .send()
            .await?
            .text()
            .await?)
    }
}

/// Host facts for a simulated host.
pub fn facts(hostname: &str) -> HostFacts {
    HostFacts {
        hostname: hostname.into(),
        os: "Kylin V10".into(),
        kernel: "4.19.90".into(),
        arch: "aarch64".into(),
        agent_version: "test".into(),
        labels: BTreeMap::from([
            ("department".to_string(), "数据局".to_string()),
            ("system".to_string(), "政务服务网".to_string()),
            ("environment".to_string(), "prod".to_string()),
        ]),
    }
}

/// A batch of `n` samples (metric `test_metric{i="k"}`, value `seq * 1000 + k`) at `ts_ms`.
pub fn batch(e: &Enrolled, hostname: &str, seq: u64, ts_ms: i64, n: usize) -> Batch {
    Batch {
        version: PROTOCOL_VERSION,
        agent_id: e.agent_id.clone(),
        seq,
        interval_ms: 15_000,
        collected_at_ms: ts_ms,
        age_ms: (now_ms() - ts_ms).max(0) as u64,
        host: facts(hostname),
        samples: (0..n)
            .map(|k| Sample {
                name: "test_metric".into(),
                labels: BTreeMap::from([("i".to_string(), k.to_string())]).into(),
                value: (seq * 1000 + k as u64) as f64,
                ts_ms,
            })
            .collect(),
        events: vec![],
        probe_intervals_ms: Default::default(),
    }
}

/// Reads a process's user + system CPU time in microseconds from `/proc/<pid>/stat`.
pub fn process_cpu_micros(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is state (field 3); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    // USER_HZ is 100 on every Linux platform yunwei targets.
    Ok((utime + stime) * 10_000)
}

/// Writes an agent config reporting to `server` every second, with its state under `dir`, plus
/// `extra` YAML; returns its path.
pub fn write_agent_config(dir: &Path, server: &ServerProcess, extra: &str) -> PathBuf {
    let path = dir.join("agent.yaml");
    std::fs::write(
        &path,
        format!(
            "server_url: {}\nenrollment_secret: {SECRET}\nstate_dir: state\ninterval_secs: 1\n\
             labels:\n  system: e2e\n{extra}",
            server.url("")
        ),
    )
    .expect("writing agent.yaml");
    path
}

/// Starts `yunwei-agent run --config <config>`, appending its output to `log`.
pub fn spawn_agent(config: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("agent log");
    Command::new(bin("yunwei-agent"))
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log handle"))
        .stderr(out)
        .spawn()
        .expect("spawning yunwei-agent")
}

/// Sends SIGTERM to `child` and waits (up to 20 s, then SIGKILL) for it to exit.
pub fn terminate_child(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().expect("waiting for the child")
}

/// A real SMTP server on loopback: Debian's aiosmtpd running `tests/helpers/smtp_sink.py`,
/// which stores each accepted message as `NNNNNN.eml` plus a decoded `NNNNNN.json` (envelope,
/// subject, to, cc, text, html and the attachments). Killed by its PID when dropped.
pub struct SmtpSink {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl SmtpSink {
    /// Starts the sink on `127.0.0.1:port` writing to `dir`, or `None` (SKIP) when aiosmtpd is
    /// missing and not on CI.
    pub fn start(port: u16, dir: &Path) -> Option<SmtpSink> {
        let ok = Command::new("/usr/bin/python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(!ci(), "python3-aiosmtpd is required on CI");
            eprintln!("SKIP: /usr/bin/python3 with aiosmtpd is not installed");
            return None;
        }
        let mut s = SmtpSink {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        s.spawn();
        Some(s)
    }

    /// Starts (again) on the same port and folder.
    pub fn spawn(&mut self) {
        use std::io::Read;
        let mut child = Command::new("/usr/bin/python3")
            .arg(workspace_root().join("tests/helpers/smtp_sink.py"))
            .arg(self.port.to_string())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the SMTP sink");
        let mut out = child.stdout.take().expect("piped stdout");
        let mut buf = [0u8; 6];
        out.read_exact(&mut buf).expect("the SMTP sink says ready");
        assert_eq!(&buf, b"ready\n");
        self.child = Some(child);
    }

    /// Stops the sink (its PID only).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message received so far, in order (the decoded JSON of each).
    pub fn mails(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("reading a mail"))
                    .expect("a mail's JSON")
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Declares each named `async fn NAME(backend: &str)` as two tokio tests, `sqlite::NAME` and
/// `postgres::NAME` (the PostgreSQL one returns early, or fails under `CI=true`, when the
/// database is not there: see [`PgDatabase::create`]).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name("sqlite").await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name("postgres").await })*
        }
    };
}
