//! Prometheus's HTTP query API on yunwei (issue 20), checked with real Prometheus tools:
//! `promtool query instant|range|series|labels` against a running server, and a differential
//! test that loads the same hour of node_exporter- and blackbox-style data into yunwei (agent
//! ingest) and into a real Prometheus 2.42 (`promtool tsdb create-blocks-from openmetrics`),
//! runs every query of `tests/promapi/corpus.promql` against both HTTP APIs and compares the
//! answers. The data's timestamps are relative to a `t0` the test takes once, so nothing
//! depends on today's date, and they sit inside the live window (raw resolution).

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::Harness;
use serde_json::Value as J;
use yunwei_proto::{Batch, PROTOCOL_VERSION, Sample};
use yunwei_tests::{Enrolled, ci, facts, free_addr, now_ms};

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 241; // one hour of 15 s samples, both ends included

/// A Debian `prometheus` package binary, or `None` (a skip, a failure under `CI=true`).
fn tool(name: &str) -> Option<PathBuf> {
    match Command::new(name).arg("--version").output() {
        Ok(o) if o.status.success() => Some(PathBuf::from(name)),
        _ => {
            assert!(
                !ci(),
                "CI=true and {name} (Debian package prometheus) is not installed"
            );
            eprintln!("SKIP: {name} not installed; the test did not run");
            None
        }
    }
}

/// One series of the fixture: name, own labels, the host it belongs to, samples.
struct Fixture {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    host: &'static str,
    samples: Vec<(i64, f64)>,
}

const HOSTS: [&str; 2] = ["web-01", "db-01"];

/// One hour of data ending at `t0` for both hosts. Values are multiples of 1/64 (exact in
/// decimal text and binary alike); one counter resets; `node_load5` has a 10-minute gap.
fn fixture(t0: i64) -> Vec<Fixture> {
    let start = t0 - (POINTS - 1) * STEP_MS;
    let ts = |k: i64| start + k * STEP_MS;
    let mut out = Vec::new();
    let mut add = |name: &'static str,
                   labels: &[(&'static str, &str)],
                   host: &'static str,
                   f: &dyn Fn(i64) -> Option<f64>| {
        out.push(Fixture {
            name,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            host,
            samples: (0..POINTS)
                .filter_map(|k| f(k).map(|v| (ts(k), v)))
                .collect(),
        });
    };
    for (h, host) in HOSTS.iter().enumerate() {
        let hf = h as f64;
        add("node_load1", &[], host, &|k| {
            Some(1.0 + hf + (k % 20) as f64 / 8.0)
        });
        add("node_load5", &[], host, &|k| {
            (!(100..140).contains(&k)).then(|| 1.5 + hf / 2.0 + (k % 13) as f64 / 16.0)
        });
        let total = 8.0 * 1024.0 * 1024.0 * 1024.0 * (hf + 1.0);
        add("node_memory_MemTotal_bytes", &[], host, &|_| Some(total));
        add("node_memory_MemAvailable_bytes", &[], host, &|k| {
            Some(total / 2.0 + ((k * 37) % 100) as f64 * 1_048_576.0)
        });
        for cpu in ["0", "1"] {
            // Every host and CPU counts at its own pace, so topk and bottomk have no ties.
            let c = if cpu == "0" { 1.0 } else { 1.5 } * (1.0 + hf / 4.0);
            for (mode, inc) in [("idle", 11.25), ("user", 2.5), ("system", 1.25)] {
                let resets = h == 0 && cpu == "1" && mode == "system";
                add(
                    "node_cpu_seconds_total",
                    &[("cpu", cpu), ("mode", mode)],
                    host,
                    &move |k| {
                        let k = if resets && k >= 120 {
                            k - 120
                        } else {
                            k + 1000
                        };
                        Some(k as f64 * inc * c + (k % 7) as f64 / 4.0 * c)
                    },
                );
            }
        }
        let eth0 = [("device", "eth0")];
        add("node_network_receive_bytes_total", &eth0, host, &|k| {
            Some((k * k * 1024 + h as i64 * 5000) as f64)
        });
        add("node_network_transmit_bytes_total", &eth0, host, &|k| {
            Some((k * 3000 * (h as i64 + 1) + (k % 5) * 700) as f64)
        });
        let fs = [
            ("device", "/dev/vda1"),
            ("fstype", "ext4"),
            ("mountpoint", "/"),
        ];
        add("node_filesystem_avail_bytes", &fs, host, &|k| {
            Some(50e9 - (k * 10_000_000) as f64 * (hf + 1.0) + ((k % 9) * 4096) as f64)
        });
        add("node_filesystem_size_bytes", &fs, host, &|_| Some(100e9));
        add("probe_success", &[("probe", "portal")], host, &|k| {
            Some(if h == 0 && (k / 10) % 7 == 3 {
                0.0
            } else {
                1.0
            })
        });
        add("probe_success", &[("probe", "api")], host, &|k| {
            Some(if h == 1 && (150..170).contains(&k) {
                0.0
            } else {
                1.0
            })
        });
        for probe in ["portal", "api"] {
            let p = if probe == "api" { 0.5 } else { 0.0 };
            add(
                "probe_duration_seconds",
                &[("probe", probe)],
                host,
                &move |k| Some(0.125 + (k % 8) as f64 / 64.0 + p),
            );
        }
        for (code, per) in [("200", 50), ("500", 3)] {
            add(
                "http_requests_total",
                &[("code", code), ("method", "get")],
                host,
                &move |k| Some((k * per + (k % 4) * (h as i64 + 1)) as f64),
            );
        }
        for (le, per) in [("0.1", 2), ("0.25", 5), ("0.5", 8), ("1", 9), ("+Inf", 10)] {
            add(
                "http_request_duration_seconds_bucket",
                &[("le", le)],
                host,
                &move |k| Some((k * per * (h as i64 + 1) + (k % 3) * per) as f64),
            );
        }
    }
    out
}

/// The labels yunwei presents for a host's series: its own, `instance`, the host's inventory.
fn presented(f: &Fixture) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = facts(f.host).labels;
    l.insert("instance".into(), f.host.into());
    for (k, v) in &f.labels {
        l.insert(k.to_string(), v.clone());
    }
    l
}

/// The fixture as agent batches: one per host, all its samples.
async fn load_yunwei(h: &Harness, data: &[Fixture], t0: i64) {
    for host in HOSTS {
        let e: Enrolled = h.client.enroll(host).await.unwrap();
        let samples: Vec<Sample> = data
            .iter()
            .filter(|f| f.host == host)
            .flat_map(|f| {
                let labels: BTreeMap<String, String> = f
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                f.samples.iter().map(move |&(ts_ms, value)| Sample {
                    name: f.name.into(),
                    labels: labels.clone().into(),
                    value,
                    ts_ms,
                })
            })
            .collect();
        let b = Batch {
            version: PROTOCOL_VERSION,
            agent_id: e.agent_id.clone(),
            seq: 1,
            interval_ms: STEP_MS as u64,
            collected_at_ms: t0,
            age_ms: (now_ms() - t0).max(0) as u64,
            host: facts(host),
            samples,
            events: vec![],
            probe_intervals_ms: Default::default(),
        };
        h.ok(&e, &b).await;
    }
}

/// The fixture in the OpenMetrics text format, for `promtool tsdb create-blocks-from`.
fn openmetrics(data: &[Fixture]) -> String {
    let mut by_name: BTreeMap<&str, Vec<&Fixture>> = BTreeMap::new();
    for f in data {
        by_name.entry(f.name).or_default().push(f);
    }
    let mut out = String::new();
    for (name, series) in by_name {
        for f in series {
            let labels: Vec<String> = presented(f)
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            for (t, v) in &f.samples {
                out.push_str(&format!(
                    "{name}{{{}}} {v} {}.{:03}\n",
                    labels.join(","),
                    t / 1000,
                    t % 1000
                ));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A real Prometheus serving a data directory; killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped rule files, loaded into both servers so their rules APIs can be compared.
fn shipped_rules() -> Vec<PathBuf> {
    let root = yunwei_tests::workspace_root().join("rules");
    vec![root.join("host.rules.yml"), root.join("probe.rules.yml")]
}

async fn start_prometheus(data: &[Fixture]) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let om = dir.path().join("data.om");
    std::fs::write(&om, openmetrics(data)).unwrap();
    let tsdb = dir.path().join("tsdb");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&tsdb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool tsdb create-blocks-from: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("prometheus.yml");
    let rule_files: Vec<String> = shipped_rules()
        .iter()
        .map(|p| format!("  - {}\n", p.display()))
        .collect();
    std::fs::write(
        &config,
        format!(
            "global:\n  evaluation_interval: 1m\nrule_files:\n{}",
            rule_files.concat()
        ),
    )
    .unwrap();
    let addr = free_addr();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--storage.tsdb.retention.time=10y")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let p = Prometheus {
        child,
        base: format!("http://{addr}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{}/-/ready", p.base)).send().await
            && r.status().is_success()
        {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "prometheus did not become ready: {}",
        std::fs::read_to_string(p._dir.path().join("prometheus.log")).unwrap_or_default()
    );
}

/// GET `path` with `params` (and a bearer token) and the JSON answer, whatever the status.
async fn get(base: &str, token: Option<&str>, path: &str, params: &[(&str, String)]) -> J {
    let mut r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .query(params);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

fn parse_value(v: &J) -> f64 {
    let s = v.as_str().expect("a sample value is a string");
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        s => s.parse().expect("a float"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan())
        || a == b
        || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
        || (a - b).abs() <= 1e-9
}

type Points = Vec<(f64, f64)>;

/// An answer reduced to what both must agree on: series by label set (order aside), points.
fn normalize(answer: &J) -> Result<(String, BTreeMap<String, Points>), String> {
    if answer["status"] != "success" {
        return Err(format!("error {}", answer["errorType"]));
    }
    let data = &answer["data"];
    let kind = data["resultType"].as_str().unwrap_or("").to_string();
    let point = |p: &J| (p[0].as_f64().unwrap(), parse_value(&p[1]));
    let mut out = BTreeMap::new();
    match kind.as_str() {
        "scalar" | "string" => {
            let p = &data["result"];
            let v = if kind == "scalar" {
                parse_value(&p[1])
            } else {
                0.0
            };
            out.insert(String::new(), vec![(p[0].as_f64().unwrap(), v)]);
        }
        "vector" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(s["metric"].to_string(), vec![point(&s["value"])]);
            }
        }
        "matrix" => {
            for s in data["result"].as_array().unwrap() {
                out.insert(
                    s["metric"].to_string(),
                    s["values"].as_array().unwrap().iter().map(point).collect(),
                );
            }
        }
        other => return Err(format!("unknown resultType {other:?}")),
    }
    Ok((kind, out))
}

/// Why two answers differ, or `None` when they agree.
fn compare(yunwei: &J, prom: &J) -> Option<String> {
    match (normalize(yunwei), normalize(prom)) {
        (Err(_), Err(_)) => None,
        (Ok((ky, y)), Ok((kp, p))) => {
            if ky != kp {
                return Some(format!("resultType {ky} vs {kp}"));
            }
            if y.keys().ne(p.keys()) {
                let only_y: Vec<_> = y.keys().filter(|k| !p.contains_key(*k)).collect();
                let only_p: Vec<_> = p.keys().filter(|k| !y.contains_key(*k)).collect();
                return Some(format!(
                    "label sets differ: only yunwei {only_y:?}, only prometheus {only_p:?}"
                ));
            }
            for (labels, yp) in &y {
                let pp = &p[labels];
                if yp.len() != pp.len() {
                    return Some(format!("{labels}: {} points vs {}", yp.len(), pp.len()));
                }
                for (a, b) in yp.iter().zip(pp) {
                    if a.0 != b.0 || !close(a.1, b.1) {
                        return Some(format!("{labels}: {a:?} vs {b:?}"));
                    }
                }
            }
            None
        }
        (y, p) => Some(format!(
            "yunwei {:?} vs prometheus {:?}",
            y.err().unwrap_or_else(|| "success".into()),
            p.err().unwrap_or_else(|| "success".into())
        )),
    }
}

fn corpus() -> Vec<(char, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promapi/corpus.promql"),
    )
    .unwrap();
    text.lines()
        .filter_map(|l| {
            let (kind, q) = l.split_once(' ')?;
            matches!(kind, "i" | "r" | "b").then(|| (kind.chars().next().unwrap(), q.to_string()))
        })
        .collect()
}

fn secs(t_ms: i64) -> String {
    format!("{}.{:03}", t_ms / 1000, t_ms % 1000)
}

/// `t0`: a whole minute a minute ago, so the data ends in the past and sits in the live
/// window (70 minutes) with its hour.
fn t0() -> i64 {
    (now_ms() / 60_000) * 60_000 - 60_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_agree_with_prometheus_over_the_same_data() {
    if tool("promtool").is_none() || tool("prometheus").is_none() {
        return;
    }
    let t0 = t0();
    let data = fixture(t0);
    let h = Harness::start("sqlite", |c| c.rules.files = shipped_rules())
        .await
        .unwrap();
    load_yunwei(&h, &data, t0).await;
    let prom = start_prometheus(&data).await;
    let token = common::admin_token(&h.state).await;
    let yunwei = h.client.base().to_string();

    let corpus = corpus();
    assert!(
        corpus.len() >= 200,
        "the corpus has {} queries",
        corpus.len()
    );
    let instant_times = [t0, t0 - 450_000, t0 - 23 * 60_000 + 17_500];
    let ranges = [
        (t0 - 30 * 60_000, t0, "60"),
        (t0 - 20 * 60_000, t0 - 60_000, "37"),
    ];
    let mut runs = 0;
    let mut answered = 0;
    let mut failures: Vec<String> = Vec::new();
    for (kind, q) in &corpus {
        let mut cases: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
        if matches!(kind, 'i' | 'b') {
            for t in instant_times {
                cases.push((
                    "/api/v1/query",
                    vec![("query", q.clone()), ("time", secs(t))],
                ));
            }
        }
        if matches!(kind, 'r' | 'b') {
            for (start, end, step) in ranges {
                cases.push((
                    "/api/v1/query_range",
                    vec![
                        ("query", q.clone()),
                        ("start", secs(start)),
                        ("end", secs(end)),
                        ("step", step.to_string()),
                    ],
                ));
            }
        }
        for (path, params) in cases {
            runs += 1;
            let y = get(&yunwei, Some(&token), path, &params).await;
            let p = get(&prom.base, None, path, &params).await;
            if y["status"] == "success" {
                if y["data"]["result"].as_array().is_none_or(|r| !r.is_empty()) {
                    answered += 1;
                }
                assert_eq!(
                    y["infos"][0], "yunwei resolution: raw",
                    "{q}: the data sits in the live window"
                );
            }
            if let Some(why) = compare(&y, &p) {
                let cut = |v: &J| v.to_string().chars().take(600).collect::<String>();
                failures.push(format!(
                    "{path} {params:?}\n    {why}\n    yunwei:     {}\n    prometheus: {}",
                    cut(&y),
                    cut(&p)
                ));
            }
        }
    }
    let passed = runs - failures.len();
    println!(
        "differential test: {passed}/{runs} evaluations agree ({:.1} %), {} queries in the corpus",
        100.0 * passed as f64 / runs as f64,
        corpus.len()
    );
    for f in &failures {
        println!("FAILED {f}");
    }
    assert!(
        failures.is_empty(),
        "{} evaluations disagree",
        failures.len()
    );
    // The agreement is over data, not over empty answers.
    println!("{answered} evaluations with a non-empty result");
    assert!(
        answered * 10 >= runs * 9,
        "only {answered} of {runs} answers hold data"
    );

    // Series, label names and values agree too.
    let window = [("start", secs(t0 - 30 * 60_000)), ("end", secs(t0))];
    for (path, extra) in [
        (
            "/api/v1/series",
            vec![("match[]", "node_cpu_seconds_total{mode=\"idle\"}")],
        ),
        (
            "/api/v1/series",
            vec![("match[]", "probe_success"), ("match[]", "node_load5")],
        ),
        (
            "/api/v1/labels",
            vec![("match[]", "node_filesystem_avail_bytes")],
        ),
        (
            "/api/v1/label/mode/values",
            vec![("match[]", "node_cpu_seconds_total")],
        ),
        (
            "/api/v1/label/instance/values",
            vec![("match[]", "node_load1")],
        ),
    ] {
        let mut params: Vec<(&str, String)> = window.to_vec();
        params.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let y = get(&yunwei, Some(&token), path, &params).await;
        let p = get(&prom.base, None, path, &params).await;
        assert_eq!(y["status"], "success", "{path}: {y}");
        let sorted = |v: &J| {
            let mut a: Vec<String> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(J::to_string)
                .collect();
            a.sort();
            a
        };
        assert_eq!(sorted(&y), sorted(&p), "{path} {params:?}");
        assert!(!sorted(&y).is_empty(), "{path}");
    }

    // The rules and alerts APIs carry every field Prometheus's do, for the same rule files.
    let keys = |v: &J| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let y = get(&yunwei, Some(&token), "/api/v1/rules", &[]).await;
    let p = get(&prom.base, None, "/api/v1/rules", &[]).await;
    let pg = p["data"]["groups"].as_array().unwrap();
    assert!(!pg.is_empty(), "{p}");
    for g in pg {
        let yg = y["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|yg| yg["name"] == g["name"])
            .unwrap_or_else(|| panic!("group {} missing: {y}", g["name"]));
        let missing: Vec<_> = keys(g)
            .into_iter()
            .filter(|k| yg.get(k).is_none())
            .collect();
        assert!(missing.is_empty(), "group fields missing: {missing:?}");
        for r in g["rules"].as_array().unwrap() {
            let yr = yg["rules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|yr| yr["name"] == r["name"] && yr["type"] == r["type"])
                .unwrap_or_else(|| panic!("rule {} missing", r["name"]));
            let missing: Vec<_> = keys(r)
                .into_iter()
                .filter(|k| yr.get(k).is_none())
                .collect();
            assert!(missing.is_empty(), "rule {} lacks {missing:?}", r["name"]);
            // yunwei shows the rule's text, Prometheus its printed parse: same but for spaces.
            let squeeze = |v: &J| v.as_str().unwrap().replace(char::is_whitespace, "");
            assert_eq!(squeeze(&yr["query"]), squeeze(&r["query"]), "{}", r["name"]);
            assert_eq!(
                yr["duration"].as_f64(),
                r["duration"].as_f64(),
                "{}",
                r["name"]
            );
        }
    }
    let y = get(&yunwei, Some(&token), "/api/v1/alerts", &[]).await;
    assert_eq!(y["status"], "success");
    assert!(y["data"]["alerts"].is_array(), "{y}");
    h.stop().await;
}

/// Runs promtool and returns its standard output; fails on a non-zero exit.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_queries_the_server() {
    if tool("promtool").is_none() {
        return;
    }
    let t0 = t0();
    let h = Harness::start("sqlite", |_| {}).await.unwrap();
    load_yunwei(&h, &fixture(t0), t0).await;
    let token = common::admin_token(&h.state).await;
    // promtool 2.42 sends no headers of its own: the API token goes as the basic-auth
    // password in the URL.
    let addr = h.client.base().trim_start_matches("http://").to_string();
    let server = format!("http://promtool:{token}@{addr}");

    let out = promtool(&[
        "query",
        "instant",
        "--time",
        &secs(t0),
        &server,
        "sum by (instance) (node_load1)",
    ]);
    // At t0 (k = 240, 240 % 20 = 0): web-01 1, db-01 2.
    assert!(out.contains("{instance=\"web-01\"} => 1 @["), "{out}");
    assert!(out.contains("{instance=\"db-01\"} => 2 @["), "{out}");

    let out = promtool(&[
        "query",
        "range",
        "--start",
        &secs(t0 - 10 * 60_000),
        "--end",
        &secs(t0),
        "--step",
        "5m",
        &server,
        "node_load1{instance=\"web-01\"}",
    ]);
    // k = 200, 220, 240: 1 + (k % 20) / 8 = 1 each time.
    assert!(out.contains("node_load1{"), "{out}");
    assert_eq!(out.matches(" @[").count(), 3, "{out}");

    let out = promtool(&[
        "query",
        "series",
        "--match",
        "probe_success",
        "--start",
        &secs(t0 - 600_000),
        "--end",
        &secs(t0),
        &server,
    ]);
    assert_eq!(
        out.lines().filter(|l| l.contains("probe_success")).count(),
        4,
        "{out}"
    );
    assert!(out.contains("probe=\"portal\""), "{out}");

    let out = promtool(&["query", "labels", &server, "mode"]);
    assert_eq!(
        out.lines().map(str::trim).collect::<Vec<_>>(),
        ["idle", "system", "user"],
        "{out}"
    );

    // Without the token the server refuses promtool.
    let anonymous = format!("http://{addr}");
    let out = Command::new("promtool")
        .args(["query", "instant", &anonymous, "node_load1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_limits_and_resolution_follow_prometheus() {
    let h = Harness::start("sqlite", |_| {}).await.unwrap();
    let t0 = t0();
    load_yunwei(&h, &fixture(t0), t0).await;
    let token = common::admin_token(&h.state).await;
    let base = h.client.base().to_string();
    let q = |params: Vec<(&'static str, String)>, path: &'static str| {
        let base = base.clone();
        let token = token.clone();
        async move { get(&base, Some(&token), path, &params).await }
    };

    // Prometheus's error shape.
    let e = q(vec![("query", "sum(".into())], "/api/v1/query").await;
    assert_eq!(e["status"], "error");
    assert_eq!(e["errorType"], "bad_data");
    assert!(e["error"].as_str().unwrap().contains("parse error"), "{e}");
    let e = q(
        vec![
            ("query", "node_load1".into()),
            ("start", "1000".into()),
            ("end", "1000000".into()),
            ("step", "1".into()),
        ],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(e["errorType"], "bad_data");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("11000 points per timeseries"),
        "{e}"
    );
    let e = q(
        vec![
            ("query", "node_load1".into()),
            ("start", "2000".into()),
            ("end", "1000".into()),
            ("step", "1".into()),
        ],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(e["errorType"], "bad_data", "{e}");
    let e = q(
        vec![("query", "up".into()), ("time", "yesterday".into())],
        "/api/v1/query",
    )
    .await;
    assert_eq!(e["errorType"], "bad_data", "{e}");
    assert!(e["error"].as_str().unwrap().contains("\"time\""), "{e}");
    let e = q(vec![], "/api/v1/series").await;
    assert_eq!(e["error"], "no match[] parameter provided");

    // A form POST answers like a GET (Grafana posts its queries).
    let form = reqwest::Client::new()
        .post(format!("{base}/api/v1/query"))
        .bearer_auth(&token)
        .form(&[("query", "count(node_load1)"), ("time", &secs(t0))])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    assert_eq!(form.headers()["x-yunwei-resolution"], "raw");
    let body: J = form.json().await.unwrap();
    assert_eq!(body["data"]["result"][0]["value"][1], "2", "{body}");
    // A read-only POST writes no audit row; only a change does.
    let audit = h
        .client
        .get_json("/api/v1/audit")
        .await
        .unwrap()
        .to_string();
    assert!(!audit.contains("/api/v1/query"), "{audit}");

    // Anonymous callers get the access check's refusal.
    let anon = reqwest::get(format!("{base}/api/v1/query?query=up"))
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    // Older than the live window: the hourly rollups answer, and the answer says so.
    let hour = 3_600_000;
    let old = (t0 / hour - 5) * hour;
    let e = h.client.enroll("old-01").await.unwrap();
    let mut b = yunwei_tests::batch(&e, "old-01", 1, old + 45 * 60_000, 0);
    for (k, v) in [(10, 1.0), (20, 2.0), (70, 5.0), (80, 6.0)] {
        b.samples.push(Sample {
            name: "node_load15".into(),
            labels: Default::default(),
            value: v,
            ts_ms: old + k * 60_000,
        });
    }
    h.ok(&e, &b).await;
    yunwei_server::ingest::maintenance_pass(&h.state.store, &h.state.ingest.writer, now_ms())
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .get(format!("{base}/api/v1/query_range"))
        .bearer_auth(&token)
        .query(&[
            ("query", "node_load15".to_string()),
            ("start", secs(old)),
            ("end", secs(old + 3 * hour)),
            ("step", "3600".into()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-yunwei-resolution"], "rollup-1h");
    let body: J = r.json().await.unwrap();
    assert_eq!(body["infos"][0], "yunwei resolution: rollup-1h", "{body}");
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("hourly rollups")
    );
    // Each hour's last sample: 2 at 00:20 (seen at 01:00), 6 at 01:20 (seen at 02:00).
    let values: Vec<(f64, String)> = body["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
        .collect();
    let s = |ms: i64| ms as f64 / 1000.0;
    assert_eq!(
        values,
        [(s(old + hour), "2".into()), (s(old + 2 * hour), "6".into())],
        "{body}"
    );
    // Within the window the same query reads raw samples.
    let r = q(
        vec![("query", "node_load1".into()), ("time", secs(t0))],
        "/api/v1/query",
    )
    .await;
    assert_eq!(r["infos"][0], "yunwei resolution: raw");
    assert!(r.get("warnings").is_none(), "{r}");

    // Build information and metadata in Prometheus's shape.
    let b = q(vec![], "/api/v1/status/buildinfo").await;
    assert_eq!(b["data"]["version"], "2.42.0");
    let m = q(
        vec![("metric", "node_cpu_seconds_total".into())],
        "/api/v1/metadata",
    )
    .await;
    assert_eq!(
        m["data"]["node_cpu_seconds_total"][0]["type"], "counter",
        "{m}"
    );
    h.stop().await;
}

/// Every PromQL expression of a dashboard (panel targets) and its template variable queries.
fn dashboard_queries(d: &J) -> (Vec<String>, Vec<String>) {
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    let vars = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["query"]["query"].as_str().unwrap().to_string())
        .collect();
    (exprs, vars)
}

/// What Grafana puts in place of its variables before it sends a query.
fn grafana_substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
        .replace("$instance", ".*")
        .replace("$probe", ".*")
        .replace("$system", ".*")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_grafana_dashboards_run_against_the_api() {
    let root = yunwei_tests::workspace_root().join("deploy/grafana");
    let provisioning =
        std::fs::read_to_string(root.join("provisioning/datasources/yunwei.yml")).unwrap();
    for needle in [
        "type: prometheus",
        "uid: yunwei",
        "httpMethod: POST",
        "httpHeaderName1: Authorization",
        "httpHeaderValue1: Bearer $YUNWEI_GRAFANA_TOKEN",
    ] {
        assert!(
            provisioning.contains(needle),
            "the data source lacks {needle:?}"
        );
    }

    let t0 = t0();
    let h = Harness::start("sqlite", |_| {}).await.unwrap();
    load_yunwei(&h, &fixture(t0), t0).await;
    let token = common::admin_token(&h.state).await;
    let base = h.client.base().to_string();
    let mut names: Vec<String> = std::fs::read_dir(root.join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "contract-status.json",
            "fleet-overview.json",
            "host-detail.json",
            "probes.json"
        ]
    );
    let mut checked = 0;
    for name in &names {
        let d: J = serde_json::from_str(
            &std::fs::read_to_string(root.join("dashboards").join(name)).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (exprs, vars) = dashboard_queries(&d);
        assert!(!exprs.is_empty(), "{name} has no queries");
        for p in d["panels"].as_array().unwrap() {
            if p["type"] != "text" {
                assert_eq!(p["datasource"]["uid"], "yunwei", "{name}: {}", p["title"]);
            }
        }
        for expr in &exprs {
            let q = grafana_substitute(expr);
            // As Grafana sends them: form POSTs, instant and range.
            for (path, form) in [
                (
                    "/api/v1/query",
                    vec![("query", q.clone()), ("time", secs(t0))],
                ),
                (
                    "/api/v1/query_range",
                    vec![
                        ("query", q.clone()),
                        ("start", secs(t0 - 3_600_000)),
                        ("end", secs(t0)),
                        ("step", "60".into()),
                    ],
                ),
            ] {
                let r = reqwest::Client::new()
                    .post(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body = r.text().await.unwrap();
                assert_eq!(status, 200, "{name}: {path} {q}: {body}");
                checked += 1;
            }
        }
        for v in vars {
            let inner = v
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{name}: variable query {v}"));
            let (metric, label) = inner.split_once(", ").unwrap();
            let r = get(
                &base,
                Some(&token),
                &format!("/api/v1/label/{label}/values"),
                &[("match[]", metric.to_string())],
            )
            .await;
            assert_eq!(r["status"], "success", "{name}: {v}: {r}");
        }
    }
    println!("{checked} dashboard queries answered");
    // The host variable lists the hosts.
    let r = get(
        &base,
        Some(&token),
        "/api/v1/label/instance/values",
        &[("match[]", "node_load1".to_string())],
    )
    .await;
    assert_eq!(r["data"], serde_json::json!(["db-01", "web-01"]));
    h.stop().await;
}
