//! A real webhook receiver for the tests: `tests/webhooks/receiver.py`, a separate Python
//! process on 127.0.0.1 that verifies every delivery with the `standardwebhooks` package and
//! the `X-Palisade-Signature` header, and logs each one as a JSON line.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::audit::python;
use super::{Server, assert_status, id, ws_path};

pub struct Receiver {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/webhooks/receiver.py")
}

impl Receiver {
    /// Starts a receiver trusting `secrets` (`whsec_…`), on a free port.
    pub fn start(secrets: &[&str]) -> Receiver {
        Self::start_on(0, secrets, None)
    }

    /// Starts a receiver on `port` (0: any) sharing `dir`'s log and status file if given.
    pub fn start_on(port: u16, secrets: &[&str], dir: Option<tempfile::TempDir>) -> Receiver {
        let python = python().expect("PALISADE_TEST_PYTHON (scripts/test.sh sets it)");
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let mut cmd = Command::new(python);
        cmd.arg(script())
            .arg("--port")
            .arg(port.to_string())
            .arg("--log")
            .arg(dir.path().join("log.jsonl"))
            .arg("--status-file")
            .arg(dir.path().join("status"))
            .arg("--secrets-file")
            .arg(dir.path().join("secrets"));
        for s in secrets {
            cmd.arg("--secret").arg(s);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {line:?}"));
        Receiver { port, dir, child }
    }

    /// Trusts `secret` too from the next request on (the secret a new endpoint got).
    pub fn trust(&self, secret: &str) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("secrets"))
            .unwrap();
        writeln!(f, "{secret}").unwrap();
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    /// Answers `status` to every request from now on (`None`: verified requests get 204).
    pub fn answer(&self, status: Option<u16>) {
        let path = self.dir.path().join("status");
        match status {
            Some(s) => std::fs::write(path, s.to_string()).unwrap(),
            None => {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Every request received so far, in order.
    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The requests answered with a 2xx.
    pub fn accepted(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| {
                l["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s))
            })
            .collect()
    }

    /// Waits until `done(lines)` holds (up to `within`), returning the lines then.
    pub async fn wait(&self, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            assert!(
                start.elapsed() < within,
                "receiver: condition not met within {within:?}; {} requests: {:?}",
                lines.len(),
                lines.iter().rev().take(3).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process (a receiver that is down), keeping the log and status for a restart
    /// on the same port.
    pub fn stop(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (port, dir)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every request verified by both signature schemes.
pub fn assert_all_verified(lines: &[Value], context: &str) {
    for l in lines {
        assert_eq!(
            l["std_ok"],
            json!(true),
            "{context}: standardwebhooks refused {l}"
        );
        assert_eq!(
            l["palisade_ok"],
            json!(true),
            "{context}: X-Palisade-Signature refused {l}"
        );
    }
}

/// Creates an endpoint at `receiver` (201), which then trusts its secret; returns (id, secret).
pub async fn webhook_to(
    s: &Server,
    token: &str,
    ws: &str,
    receiver: &Receiver,
    events: &[&str],
) -> (String, String) {
    let (hook, secret) = create_webhook(s, token, ws, &receiver.url(), events).await;
    receiver.trust(&secret);
    (hook, secret)
}

/// Creates an endpoint (201) and returns (id, secret).
pub async fn create_webhook(
    s: &Server,
    token: &str,
    ws: &str,
    url: &str,
    events: &[&str],
) -> (String, String) {
    let r = s
        .post(
            &ws_path(ws, "/webhooks"),
            Some(token),
            json!({"url": url, "events": events, "description": "tests"}),
        )
        .await;
    assert_status(&r, 201, &format!("{}: create webhook", s.backend()));
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (id(&r.body), secret)
}

/// Every delivery of an endpoint, all pages.
pub async fn deliveries(s: &Server, token: &str, ws: &str, webhook: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = ws_path(
            ws,
            &format!("/webhooks/{webhook}/deliveries?limit=200{cursor}"),
        );
        let r = s.get(&path, Some(token)).await;
        assert_status(&r, 200, "list deliveries");
        out.extend(r.body["data"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// An endpoint's deliveries once `done` holds for them (polled for up to 30 s).
pub async fn deliveries_when(
    s: &Server,
    token: &str,
    ws: &str,
    webhook: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let list = deliveries(s, token, ws, webhook).await;
        if done(&list) {
            return list;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}: deliveries never reached the state awaited: {:?}",
            s.backend(),
            list.iter().take(3).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One delivery with its attempts.
pub async fn delivery(s: &Server, token: &str, ws: &str, webhook: &str, id: &str) -> Value {
    let r = s
        .get(
            &ws_path(ws, &format!("/webhooks/{webhook}/deliveries/{id}")),
            Some(token),
        )
        .await;
    assert_status(&r, 200, "get delivery");
    r.body
}
