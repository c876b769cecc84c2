//! The Debian packages and the offline bundle (`deploy/deb/build`), installed on this machine:
//! built from the test profile's binaries, installed by the bundle's `install.sh` with dpkg,
//! files, users, conffiles and permissions checked; the server and the agent started the way
//! their units start them (the units' `ExecStartPre` and `ExecStart`, as the units' `User=`,
//! in the foreground: this test machine runs no systemd), the packaged agent enrolling with the
//! packaged server; then `dpkg -r` (config and data kept) and `dpkg --purge` (all gone, nothing
//! left running). Needs root and dpkg: with `CI=true` their absence is a failure, else a SKIP.

use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use yunwei_tests::{AgentClient, bin, ci, free_addr, terminate_child, workspace_root};

const PACKAGES: [&str; 2] = ["yunwei-agent", "yunwei-server"];
const SERVER_UNIT: &str = "/lib/systemd/system/yunwei-server.service";
const AGENT_UNIT: &str = "/lib/systemd/system/yunwei-agent.service";
const SERVER_CONFIG: &str = "/etc/yunwei/server.yaml";
const AGENT_CONFIG: &str = "/etc/yunwei/agent.yaml";

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Runs `cmd`, panicking with its output when it fails; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `dpkg ARGS`, waiting while another dpkg or apt holds the lock (this machine is shared).
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = output(
            Command::new("dpkg")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null()),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains("lock") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn dpkg_ok(args: &[&str]) -> String {
    let out = dpkg(args);
    assert!(
        out.status.success(),
        "dpkg {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dpkg's status of a package ("install ok installed", "deinstall ok config-files"), or ""
/// when dpkg does not know it.
fn status(package: &str) -> String {
    let out = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]));
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    if s.ends_with("not-installed") {
        String::new()
    } else {
        s
    }
}

/// Purges both packages if dpkg knows either (a failed earlier run, or the end of this one).
fn purge_if_known() {
    let known: Vec<&str> = PACKAGES
        .into_iter()
        .filter(|p| !status(p).is_empty())
        .collect();
    if !known.is_empty() {
        let mut args = vec!["--purge"];
        args.extend(known);
        let _ = dpkg(&args);
    }
}

/// `getent passwd NAME` as (uid, gid, home, shell).
fn passwd(name: &str) -> Option<(u32, u32, String, String)> {
    let out = output(Command::new("getent").args(["passwd", name]));
    let line = String::from_utf8(out.stdout).ok()?;
    let f: Vec<&str> = line.trim().split(':').collect();
    (f.len() == 7).then(|| {
        (
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
            f[5].to_string(),
            f[6].to_string(),
        )
    })
}

/// PIDs of the processes whose real uid is `uid`.
fn processes_of(uid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let real = text
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if real == Some(uid) {
            pids.push(pid);
        }
    }
    pids
}

/// What this test takes from an installed unit's `[Service]` section.
#[derive(Debug)]
struct Unit {
    user: String,
    group: String,
    umask: String,
    exec_start_pre: Vec<String>,
    exec_start: Vec<String>,
    keys: BTreeMap<String, Vec<String>>,
}

impl Unit {
    fn read(path: &str) -> Unit {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                keys.entry(k.into()).or_default().push(v.into());
            }
        }
        let one = |k: &str| -> String {
            let v = keys.get(k).unwrap_or_else(|| panic!("{path}: no {k}="));
            assert_eq!(v.len(), 1, "{path}: {k}= more than once");
            v[0].clone()
        };
        let words = |s: String| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        Unit {
            user: one("User"),
            group: one("Group"),
            umask: one("UMask"),
            exec_start_pre: words(one("ExecStartPre")),
            exec_start: words(one("ExecStart")),
            keys,
        }
    }

    fn has(&self, key: &str, value: &str) -> bool {
        self.keys
            .get(key)
            .is_some_and(|v| v.iter().any(|x| x == value))
    }

    /// `argv` run as the unit's user and group (with its supplementary groups, its umask and a
    /// clean environment), the way systemd would start it: `setpriv` execs, so the child is
    /// the program itself.
    fn command(&self, argv: &[String]) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &self.user,
            "--regid",
            &self.group,
            "--init-groups",
            "--",
            "/bin/sh",
            "-c",
            &format!("umask {} && exec \"$@\"", self.umask),
            "sh",
        ])
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .current_dir("/")
        .stdin(Stdio::null());
        c
    }
}

/// Kills what the test started (by PID) and purges the packages, also when an assertion fails.
struct Cleanup {
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        purge_if_known();
    }
}

/// Replaces the one line of `text` starting with `prefix` by `line`.
fn set_line(text: &str, prefix: &str, line: &str) -> String {
    let n = text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        n, 1,
        "one `{prefix}` line in the packaged agent.yaml:\n{text}"
    );
    text.lines()
        .map(|l| if l.starts_with(prefix) { line } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn meta(path: &str) -> std::fs::Metadata {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Usable here, or why not.
fn missing_requirement() -> Option<String> {
    let uid = run(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        return Some("not running as root".into());
    }
    for tool in ["dpkg-deb", "dpkg-shlibdeps", "strip", "setpriv", "adduser"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is missing (apt-get install dpkg-dev)"));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_packages_install_run_enroll_and_purge() {
    if let Some(why) = missing_requirement() {
        if ci() {
            panic!("CI=true and the package test cannot run: {why}");
        }
        eprintln!("SKIP: {why}; set CI=true to make this a failure");
        return;
    }
    // A failed earlier run may have left the packages installed, or their processes running.
    purge_if_known();
    for user in ["yunwei", "yunwei-agent"] {
        if let Some((uid, ..)) = passwd(user) {
            let left = processes_of(uid);
            assert!(
                left.is_empty(),
                "processes of {user} from an earlier run are still running: {left:?}"
            );
        }
    }
    // Data directories without their packages would be reused by the postinst: not this
    // test's to delete.
    for dir in ["/var/lib/yunwei", "/var/lib/yunwei-agent", "/etc/yunwei"] {
        assert!(
            !Path::new(dir).exists(),
            "{dir} exists although the packages are purged (left by an earlier run?); remove it"
        );
    }
    let mut cleanup = Cleanup {
        children: Vec::new(),
    };
    let started = Instant::now();
    let phase = |what: &str| {
        eprintln!(
            "packages: {what} after {:.1} s",
            started.elapsed().as_secs_f64()
        )
    };

    // Build from the binaries the tests use.
    let bin_dir = bin("yunwei-server").parent().unwrap().to_path_buf();
    bin("yunwei-agent");
    phase("binaries ready");
    let out = tempfile::tempdir().unwrap();
    let built = run(Command::new(workspace_root().join("deploy/deb/build"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(out.path())
        // xz takes minutes over a debug build's binaries.
        .args(["--compression", "zstd"]));
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let (version, arch) = (env!("CARGO_PKG_VERSION"), arch.trim());
    let deb = |p: &str| out.path().join(format!("{p}_{version}_{arch}.deb"));
    let bundle_name = format!("yunwei-offline_{version}_{arch}");
    let bundle = out.path().join(format!("{bundle_name}.tar.gz"));
    for path in [deb("yunwei-server"), deb("yunwei-agent"), bundle.clone()] {
        assert!(
            path.exists(),
            "{} not built; build said:\n{built}",
            path.display()
        );
    }
    phase("packages built");

    // Control fields: the workspace's version, this machine's architecture, Depends from the
    // binaries' libraries (libc6 at least) plus adduser for the postinst.
    for p in PACKAGES {
        let fields = run(Command::new("dpkg-deb").arg("-f").arg(deb(p)));
        assert!(
            fields.contains(&format!("\nVersion: {version}\n")),
            "{fields}"
        );
        assert!(
            fields.contains(&format!("\nArchitecture: {arch}\n")),
            "{fields}"
        );
        let depends = fields
            .lines()
            .find_map(|l| l.strip_prefix("Depends: "))
            .unwrap_or_else(|| panic!("{p}: no Depends:\n{fields}"));
        assert!(depends.starts_with("adduser, "), "{p}: {depends}");
        assert!(depends.contains("libc6 (>= "), "{p}: {depends}");
    }

    // The bundle: unpacked twice; a changed file makes install.sh refuse before dpkg runs.
    let unpacked = tempfile::tempdir().unwrap();
    let tampered = tempfile::tempdir().unwrap();
    for dir in [unpacked.path(), tampered.path()] {
        run(Command::new("tar")
            .arg("-xzf")
            .arg(&bundle)
            .arg("-C")
            .arg(dir));
    }
    let bundle_dir = unpacked.path().join(&bundle_name);
    let sums = std::fs::read_to_string(bundle_dir.join("SHA256SUMS")).unwrap();
    for f in [
        format!("yunwei-server_{version}_{arch}.deb"),
        format!("yunwei-agent_{version}_{arch}.deb"),
        "install.sh".into(),
        "README.md".into(),
    ] {
        assert!(
            sums.lines().any(|l| l.ends_with(&format!("  {f}"))),
            "{f} in SHA256SUMS:\n{sums}"
        );
    }
    let readme = std::fs::read_to_string(bundle_dir.join("README.md")).unwrap();
    assert!(
        readme.contains("## 中文") && readme.contains("## English"),
        "{readme}"
    );
    let bad = tampered.path().join(&bundle_name);
    std::fs::write(bad.join("README.md"), "changed\n").unwrap();
    let refused = output(Command::new(bad.join("install.sh")).args(["server", "agent"]));
    assert!(
        !refused.status.success(),
        "install.sh installed a tampered bundle"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("checksum mismatch"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    for p in PACKAGES {
        assert_eq!(status(p), "", "{p} installed from a tampered bundle");
    }

    // Install from the bundle.
    let installed = run(Command::new(bundle_dir.join("install.sh")).args(["server", "agent"]));
    for p in PACKAGES {
        assert_eq!(status(p), "install ok installed", "{p}:\n{installed}");
    }
    phase("installed from the bundle");

    // Files, users, permissions, conffiles.
    for path in [
        "/usr/bin/yunwei-server",
        "/usr/bin/yunwei-agent",
        SERVER_UNIT,
        AGENT_UNIT,
        "/usr/share/yunwei/rules/host.rules.yml",
        "/usr/share/doc/yunwei-server/examples/server.example.yaml",
        "/usr/share/doc/yunwei-agent/examples/agent.example.yaml",
    ] {
        assert!(Path::new(path).is_file(), "{path} not installed");
    }
    let version_line = run(Command::new("/usr/bin/yunwei-agent").arg("--version"));
    assert_eq!(version_line.trim(), format!("yunwei-agent {version}"));
    let mut uids = BTreeMap::new();
    for (package, user, state_dir, config) in [
        ("yunwei-server", "yunwei", "/var/lib/yunwei", SERVER_CONFIG),
        (
            "yunwei-agent",
            "yunwei-agent",
            "/var/lib/yunwei-agent",
            AGENT_CONFIG,
        ),
    ] {
        let (uid, gid, home, shell) =
            passwd(user).unwrap_or_else(|| panic!("{package} did not create the user {user}"));
        assert!(uid < 1000, "{user} is a system user: uid {uid}");
        assert_eq!(
            (home.as_str(), shell.as_str()),
            (state_dir, "/usr/sbin/nologin")
        );
        uids.insert(user, uid);
        let m = meta(state_dir);
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, gid, 0o700),
            "{state_dir}"
        );
        // The config: a conffile, readable by root and the service's group only.
        let m = meta(config);
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (0, gid, 0o640),
            "{config}"
        );
        let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", package]));
        assert!(
            conffiles.contains(&format!(" {config} ")),
            "{package}: {conffiles}"
        );
    }
    assert_eq!(meta("/etc/yunwei").permissions().mode() & 0o7777, 0o755);

    // The units: hardened, run as their own users, and valid for systemd when it is here.
    let server_unit = Unit::read(SERVER_UNIT);
    let agent_unit = Unit::read(AGENT_UNIT);
    assert_eq!(
        (server_unit.user.as_str(), agent_unit.user.as_str()),
        ("yunwei", "yunwei-agent")
    );
    for (unit, state) in [(&server_unit, "yunwei"), (&agent_unit, "yunwei-agent")] {
        for (k, v) in [
            ("StateDirectory", state),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert!(unit.has(k, v), "{k}={v} missing: {unit:?}");
        }
    }
    let have_analyze = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have_analyze {
        run(Command::new("systemd-analyze").args(["verify", SERVER_UNIT, AGENT_UNIT]));
    }

    // The packaged configs pass the units' own checks, run as the units' users.
    run(&mut server_unit.command(&server_unit.exec_start_pre));
    run(&mut agent_unit.command(&agent_unit.exec_start_pre));

    // Server side, as an operator would: an enrollment secret and an API token made in the
    // store by the management commands, run as the service user.
    let admin = |args: &[&str]| -> String {
        let mut argv: Vec<String> = vec!["/usr/bin/yunwei-server".into()];
        argv.extend(args.iter().map(|s| s.to_string()));
        argv.extend(["--config".into(), SERVER_CONFIG.into()]);
        run(&mut server_unit.command(&argv))
    };
    let secret = admin(&["enrollment", "rotate"]).trim().to_string();
    assert!(secret.len() >= 20, "enrollment secret: {secret:?}");
    let token = admin(&[
        "token",
        "create",
        "--name",
        "packages-test",
        "--role",
        "admin",
    ])
    .trim()
    .to_string();

    // Start the server: the unit's command line, on a port of this test's own.
    let logs = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let log = |name: &str| std::fs::File::create(logs.path().join(name)).unwrap();
    let read_log = |name: &str| std::fs::read_to_string(logs.path().join(name)).unwrap_or_default();
    let mut argv = server_unit.exec_start.clone();
    argv.extend(["--listen".into(), addr.to_string()]);
    let server = server_unit
        .command(&argv)
        .stdout(log("server.log"))
        .stderr(log("server.log"))
        .spawn()
        .unwrap();
    cleanup.children.push(server);
    let client = AgentClient::for_base(&format!("http://{addr}")).with_token(&token);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client
            .http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            break;
        }
        if let Ok(Some(s)) = cleanup.children[0].try_wait() {
            panic!(
                "the packaged server exited with {s}:\n{}",
                read_log("server.log")
            );
        }
        assert!(
            Instant::now() < deadline,
            "server not ready:\n{}",
            read_log("server.log")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The agent: its packaged config given the server's URL and secret (the two lines the
    // operator sets) and a /metrics port of this test's own; then the unit's command line.
    let packaged = std::fs::read_to_string(AGENT_CONFIG).unwrap();
    let mut edited = set_line(
        &packaged,
        "server_url:",
        &format!("server_url: http://{addr}"),
    );
    edited = set_line(
        &edited,
        "enrollment_secret:",
        &format!("enrollment_secret: {secret}"),
    );
    edited = set_line(
        &edited,
        "metrics_listen:",
        &format!("metrics_listen: {}", free_addr()),
    );
    std::fs::write(AGENT_CONFIG, &edited).unwrap();
    let agent = agent_unit
        .command(&agent_unit.exec_start)
        .stdout(log("agent.log"))
        .stderr(log("agent.log"))
        .spawn()
        .unwrap();
    cleanup.children.push(agent);

    // The agent enrolls and reports: the server lists its host as up.
    let deadline = Instant::now() + Duration::from_secs(90);
    let host = loop {
        if let Ok(v) = client.get_json("/api/v1/hosts").await
            && let Some(h) = v["hosts"].as_array().and_then(|a| a.first())
            && h["status"] == "up"
        {
            break h.clone();
        }
        if let Ok(Some(s)) = cleanup.children[1].try_wait() {
            panic!(
                "the packaged agent exited with {s}:\n{}",
                read_log("agent.log")
            );
        }
        assert!(
            Instant::now() < deadline,
            "the agent's host never came up\nagent:\n{}\nserver:\n{}",
            read_log("agent.log"),
            read_log("server.log")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let agent_id = host["agent_id"].as_str().unwrap().to_string();
    phase("the agent enrolled and reported");
    let listed = admin(&["agent", "list"]);
    assert!(
        listed.contains(&agent_id),
        "{agent_id} in `agent list`:\n{listed}"
    );
    // What each service wrote is its user's, in its state directory.
    for (path, user) in [
        ("/var/lib/yunwei/yunwei.db", "yunwei"),
        ("/var/lib/yunwei-agent/state.json", "yunwei-agent"),
    ] {
        let m = meta(path);
        assert_eq!((m.uid(), m.mode() & 0o077), (uids[user], 0), "{path}");
    }

    // Stop both (SIGTERM, as systemd does): each exits cleanly.
    for (i, name) in [(1, "agent"), (0, "server")] {
        let s = terminate_child(&mut cleanup.children[i]);
        assert!(
            s.success(),
            "{name} on SIGTERM: {s}\n{}",
            read_log(&format!("{name}.log"))
        );
    }

    // Installing the package again (an upgrade's path) keeps the operator's edited conffile,
    // its mode and group, and the agent's identity.
    let agent_deb = deb("yunwei-agent");
    dpkg_ok(&["-i", agent_deb.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(AGENT_CONFIG).unwrap(), edited);
    let m = meta(AGENT_CONFIG);
    let agent_gid = passwd("yunwei-agent").unwrap().1;
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, agent_gid, 0o640));
    assert!(Path::new("/var/lib/yunwei-agent/state.json").exists());

    // Remove: programs gone, configuration and data kept.
    dpkg_ok(&["-r", "yunwei-agent", "yunwei-server"]);
    for p in PACKAGES {
        assert_eq!(status(p), "deinstall ok config-files", "{p}");
    }
    for gone in [
        "/usr/bin/yunwei-server",
        "/usr/bin/yunwei-agent",
        SERVER_UNIT,
        AGENT_UNIT,
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after dpkg -r");
    }
    for kept in [
        SERVER_CONFIG,
        AGENT_CONFIG,
        "/var/lib/yunwei/yunwei.db",
        "/var/lib/yunwei-agent/state.json",
    ] {
        assert!(Path::new(kept).exists(), "{kept} removed by dpkg -r");
    }

    // Purge: configuration, data and the statoverrides gone; nothing of theirs still running.
    dpkg_ok(&["--purge", "yunwei-agent", "yunwei-server"]);
    for p in PACKAGES {
        assert_eq!(status(p), "", "{p} still known to dpkg after --purge");
    }
    for gone in [
        "/etc/yunwei",
        "/var/lib/yunwei",
        "/var/lib/yunwei-agent",
        "/usr/share/yunwei",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after dpkg --purge");
    }
    let overrides = output(Command::new("dpkg-statoverride").arg("--list"));
    let overrides = String::from_utf8_lossy(&overrides.stdout);
    assert!(!overrides.contains("/etc/yunwei/"), "{overrides}");
    for (user, uid) in &uids {
        assert_eq!(
            processes_of(*uid),
            Vec::<u32>::new(),
            "{user} still runs processes"
        );
        // The system users stay (Debian's advice: their uids may still own files elsewhere).
        assert!(passwd(user).is_some(), "{user} removed");
    }
    phase("purged");
}
