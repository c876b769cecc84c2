//! A thin W3C WebDriver client over `reqwest`, driving headless Chromium through the Debian
//! `chromedriver`. Only what the console tests need: navigate, find, click, type, read text,
//! wait, screenshot.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::{ci, free_addr};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A chromedriver process and one browser session; both end on drop.
pub struct Browser {
    driver: Option<Child>,
    http: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session. `None` (with a SKIP
    /// line) when they are not installed, outside CI; under CI that is a failure.
    pub async fn start() -> Option<Browser> {
        let (Some(driver), Some(chromium)) = (
            which("chromedriver"),
            which("chromium").or_else(|| which("chromium-browser")),
        ) else {
            if ci() {
                panic!("CI=true and chromium or chromedriver is not installed");
            }
            eprintln!("SKIP: chromium/chromedriver not installed; set CI=true to fail instead");
            return None;
        };
        Some(
            Browser::launch(&driver, &chromium)
                .await
                .expect("starting chromedriver and chromium"),
        )
    }

    async fn launch(driver: &Path, chromium: &Path) -> anyhow::Result<Browser> {
        let addr = free_addr();
        // Chromium crashes under libfaketime (`.ci/date-sweep` preloads it into every test
        // process), so the browser keeps the real clock; the console takes the server's clock
        // from the responses' `Date` header, not the browser's.
        let child = Command::new(driver)
            .arg(format!("--port={}", addr.port()))
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning chromedriver")?;
        let profile = tempfile::tempdir()?;
        let mut b = Browser {
            driver: Some(child),
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = b.http.get(format!("{}/status", b.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not answer within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--lang=zh-CN",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", b._profile.path().display())])
        .collect::<Vec<_>>();
        let v = b
            .raw(
                reqwest::Method::POST,
                "/session",
                Some(json!({
                    "capabilities": { "alwaysMatch": {
                        "browserName": "chrome",
                        "goog:chromeOptions": { "binary": chromium, "args": args },
                    }}
                })),
            )
            .await?;
        let id = v["sessionId"]
            .as_str()
            .context("no sessionId in the new-session answer")?;
        b.base = format!("{}/session/{id}", b.base);
        Ok(b)
    }

    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut r = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        } else if method == reqwest::Method::POST {
            r = r.json(&json!({}));
        }
        let resp = r.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("webdriver {method} {path}: {status} {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.raw(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> anyhow::Result<Option<String>> {
        let v = self
            .raw(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        Ok(v.as_array()
            .and_then(|a| a.first())
            .and_then(|e| e[ELEMENT].as_str())
            .map(str::to_string))
    }

    /// Waits up to 15 s for an element matching `css`.
    pub async fn wait(&self, css: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(e) = self.find(css).await? {
                return Ok(e);
            }
            if Instant::now() > deadline {
                bail!("no element {css:?} after 15 s\n{}", self.debug().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to 15 s until the text of `css` contains `needle`; returns the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.text(css).await.unwrap_or_default();
            if text.contains(needle) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                bail!(
                    "{css:?} never contained {needle:?}; it reads:\n{text}\n{}",
                    self.debug().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The URL, page source and browser log, for failure messages.
    pub async fn debug(&self) -> String {
        let url = self.raw(reqwest::Method::GET, "/url", None).await;
        let source = self.raw(reqwest::Method::GET, "/source", None).await;
        let log = self
            .raw(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({ "type": "browser" })),
            )
            .await;
        format!("url: {url:?}\nsource: {source:?}\nbrowser log: {log:?}")
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let e = self.wait(css).await?;
        self.raw(reqwest::Method::POST, &format!("/element/{e}/click"), None)
            .await
            .map(drop)
    }

    /// Clears the input `css` and types `text`.
    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let e = self.wait(css).await?;
        self.raw(reqwest::Method::POST, &format!("/element/{e}/clear"), None)
            .await?;
        self.raw(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let e = self
            .find(css)
            .await?
            .with_context(|| format!("no {css:?}"))?;
        let v = self
            .raw(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Runs `script` in the page and returns its value.
    pub async fn exec(&self, script: &str) -> anyhow::Result<Value> {
        self.raw(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        use base64::Engine;
        let v = self.raw(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot is not a string")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session (closes Chromium), then stop this chromedriver by its PID.
        let session = self.base.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                reqwest::Client::new()
                    .delete(session)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .ok()
            })
        })
        .join();
        if let Some(mut c) = self.driver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
