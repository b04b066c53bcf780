//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`; `deploy/test` installs them): the console's end-to-end tests
//! click through real pages. Screenshots land in `target/console-screenshots/`,
//! each path printed as it is taken (`deploy/test` lists them in the CI log).

use std::path::PathBuf;
use std::time::Duration;

use billing_tests::process::{Proc, free_port};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub struct Browser {
    pub client: Client,
    /// The driver, stopped when the browser is dropped.
    _driver: Proc,
    _profile: TempDir,
    shots: PathBuf,
    taken: usize,
}

/// A directory removed when dropped (Chromium's throwaway profile).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn driver_path() -> PathBuf {
    let path = std::env::var_os("CHROMEDRIVER").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromedriver".into());
    assert!(
        path.exists(),
        "{} is missing: install Debian's chromium and chromium-driver (deploy/test does)",
        path.display()
    );
    path
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session with a
    /// fresh profile (the flags this machine's closed network needs).
    pub async fn start(name: &str) -> Browser {
        let port = free_port();
        let driver = Proc::spawn(&driver_path(), &[&format!("--port={port}")], &[]);
        let profile = TempDir(std::env::temp_dir().join(format!("billing-chromium-{}", uuid::Uuid::new_v4())));
        let url = format!("http://127.0.0.1:{port}");
        let mut caps = serde_json::Map::new();
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.0.display())]}),
        );
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::rustls().expect("TLS roots").capabilities(caps.clone()).connect(&url).await {
                Ok(client) => {
                    let shots = target_dir().join("console-screenshots");
                    std::fs::create_dir_all(&shots).expect("screenshot dir");
                    return Browser { client, _driver: driver, _profile: profile, shots, taken: 0 }.named(name);
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a session: {last:?}");
    }

    fn named(mut self, name: &str) -> Self {
        self.shots = self.shots.join(name);
        std::fs::create_dir_all(&self.shots).expect("screenshot dir");
        self
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The text of the element `css` selects (the first), waiting up to 10 s for it.
    pub async fn text(&self, css: &str) -> String {
        match self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await {
            Ok(el) => el.text().await.expect("element text"),
            Err(e) => panic!("no {css} on {}: {e}", self.path().await),
        }
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.expect("current url").path().to_owned()
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        el.send_keys(value).await.expect("type");
    }

    /// Clicks what `locator` finds (a link or a form's button) and waits until the
    /// page it was on is gone: the next look is at the page the click led to.
    async fn click_away(&self, locator: Locator<'_>, what: &str) {
        let page = self.client.find(Locator::Css("html")).await.expect("the page");
        let el = self.client.find(locator).await.unwrap_or_else(|e| panic!("no {what}: {e}"));
        el.click().await.unwrap_or_else(|e| panic!("click {what}: {e}"));
        for _ in 0..200 {
            if page.tag_name().await.is_err_and(|e| e.is_stale_element_reference()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {what} did not leave {}", self.path().await);
    }

    /// Clicks the form button or link `css` selects and waits for the next page.
    pub async fn click(&self, css: &str) {
        self.click_away(Locator::Css(css), css).await;
    }

    /// Clicks the link with this text and waits for the next page.
    pub async fn click_link(&self, text: &str) {
        self.click_away(Locator::LinkText(text), text).await;
    }

    /// Saves a PNG of the page as `NN-label.png` and prints its path.
    pub async fn screenshot(&mut self, label: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        self.taken += 1;
        let path = self.shots.join(format!("{:02}-{label}.png", self.taken));
        std::fs::write(&path, &png).expect("write screenshot");
        eprintln!("screenshot: {} ({} bytes)", path.display(), png.len());
    }

    pub async fn close(self) {
        self.client.close().await.expect("close the browser");
    }
}

/// `target/` of the running test binary (`target/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors().nth(3).map(PathBuf::from).expect("target dir")
}
