//! Encryption at rest (KMS-1 … KMS-4) on both backends: a stolen database holds no secret and
//! no encrypted value in any form; master keys rotate (re-wrap) and data keys rotate
//! (re-encrypt) under a load that never fails; a missing or wrong master key stops start-up,
//! named; regions have their own master keys; data keys rotate on schedule; every rotation is
//! audited.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use common::audit::{assert_log_verifies, workspace_audit};
use common::records::{collection, create, create_key, records};
use common::webhooks::{Receiver, webhook_to};
use common::{Server, TEST_MASTER_KEY, database_image, id, link_token, ws_path};
use palisade::config::{KeysConfig, RegionConfig, Regions};
use palisade_core::crypto::envelope::{Keyring, SymmetricKey};
use palisade_core::keys::{MasterKeys, SecretSite, Vault};
use palisade_core::store::Access;
use palisade_core::tenancy::SystemScope;
use palisade_store::testing::{TestDb, databases};
use secrecy::SecretString;
use serde_json::{Value, json};

/// A second and a third master key (the first is `TEST_MASTER_KEY`).
const MASTER_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const MASTER_US: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";

fn master_id(key: &str) -> String {
    SymmetricKey::master_from_base64(key)
        .unwrap()
        .id()
        .to_owned()
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

/// Every form a leaked value could take in a dump: as is, base64 (standard and URL-safe, with
/// and without padding) and hex (both cases).
fn forms(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("plain".into(), value.to_vec()),
        ("base64".into(), STANDARD.encode(value).into_bytes()),
        (
            "base64 unpadded".into(),
            STANDARD_NO_PAD.encode(value).into_bytes(),
        ),
        ("base64url".into(), URL_SAFE.encode(value).into_bytes()),
        (
            "base64url unpadded".into(),
            URL_SAFE_NO_PAD.encode(value).into_bytes(),
        ),
        ("hex".into(), hex.clone().into_bytes()),
        ("HEX".into(), hex.to_uppercase().into_bytes()),
    ]
}

fn find(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails naming every canary found, in whichever form.
fn assert_inert(image: &[u8], canaries: &[(String, Vec<u8>)], context: &str) {
    let mut hits = Vec::new();
    for (name, value) in canaries {
        for (form, bytes) in forms(value) {
            if find(image, &bytes) {
                hits.push(format!("{name} ({form})"));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "{context}: found in the database: {hits:?}"
    );
}

use common::palisade;

/// `palisade <args>` against the server's database and configuration, with `master` active
/// and `retired` retired; returns (success, stdout, stderr).
async fn cli(
    s: &Server,
    master: Option<&str>,
    retired: &[&str],
    args: &[&str],
) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("palisade.toml");
    std::fs::write(&file, "[keys]\npropagation_secs = 1\n").unwrap();
    let mut cmd = palisade();
    cmd.env("PALISADE_CONFIG", &file)
        .env("PALISADE_DATA_DIR", dir.path())
        .env("PALISADE_DATABASE_URL", &s.db.url)
        .env("PALISADE_LOG", "warn")
        .args(args);
    if let Some(m) = master {
        cmd.env("PALISADE_MASTER_KEY", m);
    }
    if !retired.is_empty() {
        cmd.env("PALISADE_RETIRED_MASTER_KEYS", retired.join(","));
    }
    let out = tokio::task::spawn_blocking(move || {
        let out = cmd.output().unwrap();
        drop(dir);
        out
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_json(s: &Server, master: &str, retired: &[&str], args: &[&str]) -> Value {
    let (ok, out, err) = cli(s, Some(master), retired, args).await;
    assert!(ok, "{}: palisade {args:?} failed: {err}", s.backend());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// Opens the server's stored secrets the way the server does, from outside it.
async fn vault(s: &Server, keys: &[&str]) -> Vault {
    let store = s.store().await;
    let mut all = keys
        .iter()
        .map(|k| SymmetricKey::master_from_base64(k).unwrap());
    let active = all.next().unwrap();
    let masters = MasterKeys::new(Keyring::new(active, all.collect()), Default::default());
    Vault::load(&*store, masters, time::OffsetDateTime::now_utc())
        .await
        .unwrap()
}

fn fast_keys(c: &mut palisade::Config) {
    c.keys = KeysConfig {
        rotation_days: 0,
        propagation_secs: 1,
    };
    c.audit_checkpoint_interval_secs = 1;
    c.webhooks.allow_cidrs = vec!["127.0.0.1/32".into()];
}

/// The secrets the instance itself holds, opened from the database with the master key: the
/// access-token seed and the audit-log seeds of `logs`.
async fn stored_seeds(s: &Server, logs: &[&str]) -> Vec<(String, Vec<u8>)> {
    let store = s.store().await;
    let vault = vault(s, &[TEST_MASTER_KEY, MASTER_B]).await;
    let now = time::OffsetDateTime::now_utc();
    let token_key = palisade_core::keys::load_access_token_key(&*store, &vault, now)
        .await
        .unwrap();
    let mut seeds = vec![("access-token seed".to_owned(), token_key.seed().to_vec())];
    for log in logs {
        let keys = vault.owner(&*store, log, now).await.unwrap();
        let mut tx = store
            .audit_log(&SystemScope::new("test"), log, Access::Read)
            .await
            .unwrap();
        for k in tx.audit_keys().await.unwrap() {
            let seed = keys
                .open(
                    SecretSite {
                        table: "audit_keys",
                        row: &k.kid,
                        field: "sealed_seed",
                    },
                    &k.sealed_seed,
                )
                .unwrap();
            seeds.push((format!("audit seed of {log}"), seed.to_vec()));
        }
    }
    seeds
}

#[tokio::test]
async fn a_stolen_database_reveals_no_secret_and_no_encrypted_value() {
    for db in databases().await {
        let s = Server::start_with(db, fast_keys).await;
        let b = s.backend();
        let password = "canary-Password-7f3a9c1e";
        let r = s
            .post(
                "/api/v1/auth/signup",
                None,
                json!({"email": "vault@example.com", "password": password, "name": "Vault"}),
            )
            .await;
        assert_eq!(r.status, 201, "{b}: {}", r.text);
        s.verify("vault@example.com").await;
        let r = s.sign_in("vault@example.com", password).await;
        assert_eq!(r.status, 200, "{b}: {}", r.text);
        let token = r.body["access_token"].as_str().unwrap().to_owned();
        let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
        let ws = id(&s.workspace(&token, "Vault", "vault").await);
        collection(
            &s,
            &token,
            &ws,
            "patients",
            json!([
                {"name": "label", "type": "text"},
                {"name": "diagnosis", "type": "text", "encrypted": true},
                {"name": "notes", "type": "json", "encrypted": true},
                {"name": "ssn", "type": "text", "encrypted": true, "pii": true},
                {"name": "code", "type": "integer", "encrypted": true}
            ]),
        )
        .await;
        let diagnosis = "canary-diagnosis-4b1d8e22";
        let note = "canary-note-9e0c77aa";
        let ssn = "canary-ssn-123-45-6789";
        let plain_label = "visible-label-5c3e1f0b";
        // A webhook endpoint: its secret, and the outbox event of the record below (whose
        // payload holds the encrypted values in clear before sealing), are stored sealed.
        let receiver = Receiver::start(&[]);
        let (_, webhook_secret) = webhook_to(&s, &token, &ws, &receiver, &["record.created"]).await;
        let rec = create(
            &s,
            &token,
            &ws,
            "patients",
            json!({"label": plain_label, "diagnosis": diagnosis,
                    "notes": {"text": note}, "ssn": ssn, "code": 918_273_645}),
        )
        .await;
        let rec_id = id(&rec);
        let (_, api_key) = create_key(&s, &token, &ws, &["read", "write"]).await;
        // An invitation's token, from its email.
        let r = s
            .post(
                &ws_path(&ws, "/invitations"),
                Some(&token),
                json!({"email": "invitee@example.com", "role": "member"}),
            )
            .await;
        assert_eq!(r.status, 201, "{b}: {}", r.text);
        let invitation = link_token(&s.mail("invitee@example.com", "invitation").await);
        let delivered = receiver
            .wait(Duration::from_secs(30), |l| !l.is_empty())
            .await;
        assert_eq!(delivered[0]["body"]["data"]["diagnosis"], diagnosis, "{b}");

        // The data key rotates, so values exist under two versions before the dump.
        s.services().rotate_data_key(&ws, "operator").await.unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        s.services().run_key_rotations().await.unwrap();
        let r = s
            .get(
                &format!("{}/{rec_id}", records(&ws, "patients")),
                Some(&token),
            )
            .await;
        assert_eq!(r.status, 200, "{b}: {}", r.text);
        assert_eq!(r.body["diagnosis"], diagnosis, "{b}");
        assert_eq!(r.body["notes"]["text"], note, "{b}");
        assert_eq!(r.body["code"], 918_273_645, "{b}");

        let mut canaries: Vec<(String, Vec<u8>)> = vec![
            ("password".into(), password.into()),
            ("encrypted text".into(), diagnosis.into()),
            ("encrypted json".into(), note.into()),
            ("personal encrypted text".into(), ssn.into()),
            ("encrypted integer".into(), b"918273645".to_vec()),
            ("API key".into(), api_key.clone().into_bytes()),
            ("refresh token".into(), refresh.clone().into_bytes()),
            ("access token".into(), token.clone().into_bytes()),
            ("invitation token".into(), invitation.into_bytes()),
            ("webhook secret".into(), webhook_secret.clone().into_bytes()),
            (
                "webhook secret (raw)".into(),
                STANDARD
                    .decode(webhook_secret.trim_start_matches("whsec_"))
                    .unwrap(),
            ),
            ("master key (base64)".into(), TEST_MASTER_KEY.into()),
            (
                "master key".into(),
                STANDARD.decode(TEST_MASTER_KEY).unwrap(),
            ),
        ];
        canaries.extend(stored_seeds(&s, &["instance", &ws]).await);
        let image = database_image(&s).await;
        // The search finds what is there: the plain label is stored in clear.
        assert!(
            find(&image, plain_label.as_bytes()),
            "{b}: the search works"
        );
        assert_inert(&image, &canaries, b);
        s.stop().await;
    }
}

/// `notes`: a plain `title` and an encrypted `body`.
async fn notes_collection(s: &Server, token: &str, ws: &str) {
    collection(
        s,
        token,
        ws,
        "notes",
        json!([{"name": "title", "type": "text"},
               {"name": "body", "type": "text", "encrypted": true}]),
    )
    .await;
}

/// Load: writers create and patch records with encrypted values, readers get and list them;
/// every answer must be a success with the value written.
struct Load {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(String, String)>>>,
}

impl Load {
    fn start(s: &Server, key: &str, ws: &str, seeded: &[(String, String)]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for worker in 0..6 {
            let (stop, requests, failures) = (stop.clone(), requests.clone(), failures.clone());
            let client = s.client.clone();
            let base = format!("{}{}", s.base, records(ws, "notes"));
            let key = key.to_owned();
            let seeded = seeded.to_vec();
            tasks.push(tokio::spawn(async move {
                let mut written = Vec::new();
                let mut n = 0u64;
                let fail = |what: String| failures.lock().unwrap().push(what);
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    requests.fetch_add(1, Ordering::Relaxed);
                    if worker < 3 {
                        // Writers: a new record, then a patch of a seeded one.
                        let value = format!("w{worker}-{n}-secret");
                        let r = client
                            .post(&base)
                            .bearer_auth(&key)
                            .json(&json!({"title": format!("t{n}"), "body": value}))
                            .send()
                            .await
                            .unwrap();
                        let status = r.status();
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        if status != 201 || body["body"] != value.as_str() {
                            fail(format!("create: {status} {body}"));
                            continue;
                        }
                        written.push((body["id"].as_str().unwrap().to_owned(), value));
                        let (rid, _) = &seeded[(n as usize + worker) % seeded.len()];
                        let patched = format!("seeded-{rid}");
                        let r = client
                            .patch(format!("{base}/{rid}"))
                            .bearer_auth(&key)
                            .json(&json!({"title": format!("p{n}")}))
                            .send()
                            .await
                            .unwrap();
                        let status = r.status();
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        if status != 200 || body["body"] != patched.as_str() {
                            fail(format!("patch: {status} {body}"));
                        }
                    } else {
                        // Readers: one seeded record, then a page of the list.
                        let (rid, value) = &seeded[(n as usize * 7 + worker) % seeded.len()];
                        let r = client
                            .get(format!("{base}/{rid}"))
                            .bearer_auth(&key)
                            .send()
                            .await
                            .unwrap();
                        let status = r.status();
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        if status != 200 || body["body"] != value.as_str() {
                            fail(format!("get: {status} {body}"));
                        }
                        let r = client
                            .get(format!("{base}?limit=20"))
                            .bearer_auth(&key)
                            .send()
                            .await
                            .unwrap();
                        let status = r.status();
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        let ok = status == 200
                            && body["data"].as_array().is_some_and(|rows| {
                                rows.iter().all(|r| r["body"].as_str().is_some())
                            });
                        if !ok {
                            fail(format!("list: {status} {body}"));
                        }
                    }
                }
                written
            }));
        }
        Load {
            stop,
            requests,
            failures,
            tasks,
        }
    }

    /// Stops the load; every value the writers wrote, by record id.
    async fn finish(self, context: &str) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut written = Vec::new();
        for t in self.tasks {
            written.extend(t.await.unwrap());
        }
        let failures = self.failures.lock().unwrap().clone();
        assert!(
            failures.is_empty(),
            "{context}: {} of {} requests failed: {:?}",
            failures.len(),
            self.requests.load(Ordering::Relaxed),
            &failures[..failures.len().min(5)]
        );
        assert!(
            self.requests.load(Ordering::Relaxed) > 50,
            "{context}: the load ran"
        );
        written
    }
}

/// Every record of `notes`, walked with cursors: (id, body).
async fn all_notes(s: &Server, token: &str, ws: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{}?limit=200", records(ws, "notes"));
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.get(&path, Some(token)).await;
        assert_eq!(r.status, 200, "{}: {}", s.backend(), r.text);
        for row in r.body["data"].as_array().unwrap() {
            out.push((
                row["id"].as_str().unwrap().to_owned(),
                row["body"].as_str().unwrap().to_owned(),
            ));
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn master_and_data_keys_rotate_under_load_with_no_failed_request() {
    for db in databases().await {
        // Data first written under master key A.
        let s = Server::start_with(db, fast_keys).await;
        let b = s.backend();
        let (_, token, _) = s.user("rotate@example.com").await;
        let ws = id(&s.workspace(&token, "Rotate", "rotate").await);
        notes_collection(&s, &token, &ws).await;
        // A webhook endpoint with a rotated secret (two sealed secrets), and an outbox event
        // per write below: sealed values rotation must move too.
        let receiver = Receiver::start(&[]);
        let (hook, _) = webhook_to(&s, &token, &ws, &receiver, &["record.created"]).await;
        let r = s
            .post(
                &ws_path(&ws, &format!("/webhooks/{hook}/rotate-secret")),
                Some(&token),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{b}: {}", r.text);
        receiver.trust(r.body["secret"].as_str().unwrap());
        let mut seeded = Vec::new();
        for i in 0..40 {
            let rid = format!("seed-{i}");
            let rec = create(&s, &token, &ws, "notes", json!({"title": rid, "body": "x"})).await;
            let rid = id(&rec);
            let body = format!("seeded-{rid}");
            let r = s
                .patch(
                    &format!("{}/{rid}", records(&ws, "notes")),
                    Some(&token),
                    json!({"body": body}),
                )
                .await;
            assert_eq!(r.status, 200, "{b}: {}", r.text);
            seeded.push((rid, body));
        }
        let (_, key) = create_key(&s, &token, &ws, &["read", "write"]).await;

        // The operator makes B the active master key and keeps A as retired.
        let s = s
            .restart_with(|c| {
                c.master_key = Some(secret(MASTER_B));
                c.retired_master_keys = vec![secret(TEST_MASTER_KEY)];
            })
            .await;
        let status = cli_json(
            &s,
            MASTER_B,
            &[TEST_MASTER_KEY],
            &["keys", "status", "--json"],
        )
        .await;
        assert!(
            status["needs_rewrap"].as_u64().unwrap() >= 2,
            "{b}: instance and workspace keys are still under A: {status}"
        );

        let load = Load::start(&s, &key, &ws, &seeded);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let master = cli_json(
            &s,
            MASTER_B,
            &[TEST_MASTER_KEY],
            &["keys", "rotate-master", "--json"],
        )
        .await;
        assert!(master["rewrapped"].as_u64().unwrap() >= 2, "{b}: {master}");
        assert_eq!(
            master["retirable"],
            json!([master_id(TEST_MASTER_KEY)]),
            "{b}: A wraps nothing any more: {master}"
        );
        // Idempotent: a second run has nothing to do.
        let again = cli_json(
            &s,
            MASTER_B,
            &[TEST_MASTER_KEY],
            &["keys", "rotate-master", "--json"],
        )
        .await;
        assert_eq!(again["rewrapped"], 0, "{b}: {again}");

        for owner in [ws.as_str(), "instance"] {
            let job = cli_json(
                &s,
                MASTER_B,
                &[TEST_MASTER_KEY],
                &[
                    "keys",
                    "rotate-workspace",
                    owner,
                    "--wait-secs",
                    "120",
                    "--json",
                ],
            )
            .await;
            assert_eq!(job["done"], true, "{b}: {owner}: {job}");
            assert_eq!(job["version"], 2, "{b}: {owner}: {job}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let written = load.finish(b).await;

        // Every value reads back, the seeded ones and everything written during the load.
        let notes: std::collections::HashMap<String, String> =
            all_notes(&s, &token, &ws).await.into_iter().collect();
        for (rid, body) in seeded.iter().chain(&written) {
            assert_eq!(notes.get(rid), Some(body), "{b}: record {rid}");
        }
        let status = cli_json(&s, MASTER_B, &[], &["keys", "status", "--json"]).await;
        assert_eq!(status["needs_rewrap"], 0, "{b}: {status}");
        for k in status["data_keys"].as_array().unwrap() {
            assert_eq!(k["wrapped_by"], master_id(MASTER_B), "{b}: {k}");
            let retired = !k["retired_at"].is_null();
            assert_eq!(retired, k["version"] == 1, "{b}: old versions retire: {k}");
        }
        for r in status["rotations"].as_array().unwrap() {
            assert_eq!(r["state"], "done", "{b}: {r}");
        }
        // Nothing stays sealed under version 1: every value in the database names version 2.
        let store = s.store().await;
        let v = vault(&s, &[MASTER_B]).await;
        let keys = v
            .owner(&*store, &ws, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        let mut tx = s.tenant_read(&ws).await;
        let col = tx.collection_by_name("notes").await.unwrap().unwrap();
        let rows = tx.records_list(&col.id, None, 1000, true).await.unwrap();
        assert!(rows.len() >= seeded.len(), "{b}");
        for row in rows {
            let sealed = URL_SAFE_NO_PAD
                .decode(row.data["body"].as_str().unwrap())
                .unwrap();
            assert_eq!(keys.version_of(&sealed), Some(2), "{b}: {}", row.id);
        }
        drop(tx);
        let scope = SystemScope::new("test");
        let mut tx = store.keys(&scope, &ws, Access::Read).await.unwrap();
        let secrets = tx.webhook_secrets("", 1000).await.unwrap();
        assert_eq!(secrets.len(), 1, "{b}");
        let (_, current, previous) = &secrets[0];
        assert_eq!(keys.version_of(current), Some(2), "{b}: webhook secret");
        assert_eq!(
            keys.version_of(previous.as_ref().unwrap()),
            Some(2),
            "{b}: previous secret"
        );
        let payloads = tx.webhook_payloads("", 10_000).await.unwrap();
        assert!(payloads.len() >= 40, "{b}: {} events", payloads.len());
        for (event, payload) in &payloads {
            assert_eq!(keys.version_of(payload), Some(2), "{b}: {event}");
        }
        drop(tx);
        // Deliveries went on through the rotation, every one verified.
        let lines = receiver
            .wait(Duration::from_secs(60), |l| l.len() >= 40)
            .await;
        common::webhooks::assert_all_verified(&lines, b);

        // Every rotation is an audit entry, and the log verifies.
        let rotated = entries_with_action(&s, &ws, "keys.data_key_rotated").await;
        assert_eq!(rotated.len(), 1, "{b}");
        assert_eq!(rotated[0]["keys"]["version"], 2, "{b}: {}", rotated[0]);
        assert_eq!(rotated[0]["keys"]["reason"], "operator", "{b}");
        let reencrypted = entries_with_action(&s, &ws, "keys.data_key_reencrypted").await;
        assert_eq!(reencrypted.len(), 1, "{b}");
        assert!(
            reencrypted[0]["keys"]["scanned"].as_u64().unwrap() >= 40,
            "{b}"
        );
        let instance = instance_actions(&s).await;
        assert!(
            instance.contains(&"keys.master_rotated".to_owned()),
            "{b}: {instance:?}"
        );
        assert!(
            instance.contains(&"keys.data_key_rotated".to_owned()),
            "{b}: {instance:?}"
        );
        let size = s.workspace_log(&ws).await[0].seq + 1;
        assert_log_verifies(&s, &token, &ws, size).await;

        // Master key A is gone from the configuration: everything still opens.
        let s = s.restart_with(|c| c.retired_master_keys.clear()).await;
        let (token, _) = s.login("rotate@example.com").await;
        let after: std::collections::HashMap<String, String> =
            all_notes(&s, &token, &ws).await.into_iter().collect();
        assert_eq!(after, notes, "{b}: after A is removed");
        s.stop().await;
    }
}

/// The workspace's entries with `action`, newest first.
async fn entries_with_action(s: &Server, ws: &str, action: &str) -> Vec<Value> {
    let mut tx = s.tenant_read(ws).await;
    let query = palisade_core::store::AuditQuery {
        filter: palisade_core::store::AuditFilter {
            action: Some(action.to_owned()),
            ..Default::default()
        },
        limit: 100,
        ..Default::default()
    };
    tx.audit_query(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|e| serde_json::from_slice(&e.bytes).unwrap())
        .collect()
}

/// The instance log's actions, oldest first.
async fn instance_actions(s: &Server) -> Vec<String> {
    let store = s.store().await;
    let mut tx = store
        .audit_log(&SystemScope::new("test"), "instance", Access::Read)
        .await
        .unwrap();
    let size = tx.audit_head(false).await.unwrap().unwrap().size;
    tx.audit_entries(0, size)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let v: Value = serde_json::from_slice(&e.bytes).unwrap();
            v["action"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// `palisade serve` as a real process: it must exit (not serve), and what it said.
async fn serve_fails(db: &TestDb, env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = palisade();
    cmd.arg("serve")
        .env("PALISADE_DATA_DIR", data.path())
        .env("PALISADE_DATABASE_URL", &db.url)
        .env("PALISADE_LISTEN", format!("127.0.0.1:{port}"))
        .env("PALISADE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{}: palisade serve did not stop", db.backend);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "{}: exit status {status}", db.backend);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        !err.contains(TEST_MASTER_KEY) && !err.contains(MASTER_B),
        "{}: a key in the message: {err}",
        db.backend
    );
    // It stopped before serving: the listener never started.
    assert!(
        !err.contains("listening"),
        "{}: it served: {err}",
        db.backend
    );
    err
}

#[tokio::test]
async fn start_up_names_a_missing_master_key_and_refuses_a_wrong_one() {
    for db in databases().await {
        let mut s = Server::start(db).await;
        let b = s.backend();
        let (_, token, _) = s.user("keys@example.com").await;
        s.workspace(&token, "Keys", "keys").await;
        // The database outlives the server (its handle owns the SQLite file).
        let shared = s.db.shared();
        let db = std::mem::replace(&mut s.db, shared);
        let mut config = s.config.clone();
        s.stop().await;
        let a = master_id(TEST_MASTER_KEY);

        // No master key at all (and no development key file): named, nothing generated.
        let err = serve_fails(&db, &[]).await;
        assert!(err.contains(&a), "{b}: names {a}: {err}");
        assert!(err.contains("no master key is configured"), "{b}: {err}");

        // The wrong key: refused before serving, naming the one that is needed.
        let err = serve_fails(&db, &[("PALISADE_MASTER_KEY", MASTER_B)]).await;
        assert!(err.contains(&a), "{b}: names {a}: {err}");
        assert!(err.contains("not configured"), "{b}: {err}");

        // A malformed key: refused, the setting named.
        let err = serve_fails(&db, &[("PALISADE_MASTER_KEY", "c2hvcnQ=")]).await;
        assert!(err.contains("PALISADE_MASTER_KEY"), "{b}: {err}");

        // In-process too: `build` fails before anything serves.
        config.master_key = Some(secret(MASTER_B));
        let Err(err) = palisade::build(&config).await else {
            panic!("{b}: started with the wrong key")
        };
        assert!(format!("{err:#}").contains(&a), "{b}: {err:#}");

        // With A as a retired key beside B, it starts.
        config.retired_master_keys = vec![secret(TEST_MASTER_KEY)];
        palisade::build(&config).await.expect("A retired opens");
    }
}

#[tokio::test]
async fn a_region_with_its_own_master_key_wraps_its_workspaces_keys() {
    for db in databases().await {
        let with_regions = |c: &mut palisade::Config, us_key: Option<&str>| {
            let mut table = std::collections::BTreeMap::new();
            table.insert(
                "eu".to_owned(),
                RegionConfig {
                    default: true,
                    ..RegionConfig::default()
                },
            );
            table.insert(
                "us".to_owned(),
                RegionConfig {
                    master_key: us_key.map(secret),
                    ..RegionConfig::default()
                },
            );
            c.regions = Regions::Keyed(table);
            fast_keys(c);
        };
        let s = Server::start_with(db, |c| with_regions(c, Some(MASTER_US))).await;
        let b = s.backend();
        let (_, admin, _) = s.user(common::ADMIN).await;
        let (_, token, _) = s.user("region@example.com").await;
        let ws = id(&s.workspace(&token, "Region", "region").await);
        notes_collection(&s, &token, &ws).await;
        let rec = create(
            &s,
            &token,
            &ws,
            "notes",
            json!({"title": "t", "body": "over the ocean"}),
        )
        .await;
        let status = s.services().key_status().await.unwrap();
        let wrapped_by = |status: &palisade_core::keys::rotation::KeyStatus| {
            status
                .data_keys
                .iter()
                .find(|k| k.owner == ws)
                .map(|k| (k.wrapped_by.clone(), k.wrapped_by_active))
                .unwrap()
        };
        assert_eq!(
            wrapped_by(&status),
            (master_id(TEST_MASTER_KEY), true),
            "{b}: eu uses the top-level key"
        );
        // The workspace moves to us: its key must be re-wrapped by us's master key.
        let r = s
            .patch(
                &format!("/api/v1/admin/workspaces/{ws}"),
                Some(&admin),
                json!({"region": "us"}),
            )
            .await;
        assert_eq!(r.status, 200, "{b}: {}", r.text);
        let status = s.services().key_status().await.unwrap();
        assert_eq!(
            wrapped_by(&status),
            (master_id(TEST_MASTER_KEY), false),
            "{b}"
        );
        assert_eq!(status.needs_rewrap, 1, "{b}");
        let report = s.services().rotate_master().await.unwrap();
        assert_eq!(report.rewrapped, 1, "{b}");
        let status = s.services().key_status().await.unwrap();
        assert_eq!(wrapped_by(&status), (master_id(MASTER_US), true), "{b}");
        // A new workspace version in us is wrapped by us's key too.
        s.services().rotate_data_key(&ws, "operator").await.unwrap();
        let status = s.services().key_status().await.unwrap();
        assert!(
            status
                .data_keys
                .iter()
                .filter(|k| k.owner == ws)
                .all(|k| k.wrapped_by == master_id(MASTER_US)),
            "{b}: {:?}",
            status.data_keys
        );
        let rec_path = format!("{}/{}", records(&ws, "notes"), id(&rec));
        assert_eq!(
            s.get(&rec_path, Some(&token)).await.body["body"],
            "over the ocean"
        );

        // Without us's key the instance does not start, and says which key it needs.
        let mut config = s.config.clone();
        with_regions(&mut config, None);
        let Err(err) = palisade::build(&config).await else {
            panic!("{b}: started without the us key")
        };
        assert!(
            format!("{err:#}").contains(&master_id(MASTER_US)),
            "{b}: {err:#}"
        );
        let s = s.restart_with(|c| with_regions(c, Some(MASTER_US))).await;
        let (token, _) = s.login("region@example.com").await;
        assert_eq!(
            s.get(&rec_path, Some(&token)).await.body["body"],
            "over the ocean"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn data_keys_rotate_on_schedule_and_the_rotation_is_audited() {
    for db in databases().await {
        let s = Server::start_with(db, |c| {
            fast_keys(c);
            c.keys.rotation_days = 90;
        })
        .await;
        let b = s.backend();
        let (_, token, _) = s.user("schedule@example.com").await;
        let ws = id(&s.workspace(&token, "Schedule", "schedule").await);
        notes_collection(&s, &token, &ws).await;
        let rec = create(
            &s,
            &token,
            &ws,
            "notes",
            json!({"title": "t", "body": "kept through rotations"}),
        )
        .await;
        // 89 days: not due.
        s.advance(time::Duration::days(89));
        s.services().run_key_rotations().await.unwrap();
        assert!(
            s.services()
                .key_status()
                .await
                .unwrap()
                .rotations
                .is_empty(),
            "{b}: nothing is due before 90 days"
        );
        // 91 days: every owner's key rotates, and the worker re-encrypts.
        s.advance(time::Duration::days(2));
        let mut done = false;
        for _ in 0..200 {
            let status = s.services().key_status().await.unwrap();
            let finished: Vec<&str> = status
                .rotations
                .iter()
                .filter(|r| r.state == "done" && r.reason == "schedule")
                .map(|r| r.owner.as_str())
                .collect();
            if finished.contains(&ws.as_str()) && finished.contains(&"instance") {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(done, "{b}: the worker rotated and re-encrypted on schedule");
        let (token, _) = s.login("schedule@example.com").await;
        let r = s
            .get(
                &format!("{}/{}", records(&ws, "notes"), id(&rec)),
                Some(&token),
            )
            .await;
        assert_eq!(r.body["body"], "kept through rotations", "{b}");
        let log = workspace_audit(&s, &ws).await;
        let rotated = log
            .iter()
            .find(|e| e.action == "keys.data_key_rotated")
            .expect("rotation audited");
        assert_eq!(rotated.entry["keys"]["reason"], "schedule", "{b}");
        assert_eq!(rotated.actor.0, "system", "{b}");
        assert!(
            log.iter().any(|e| e.action == "keys.data_key_reencrypted"),
            "{b}"
        );
        s.stop().await;
    }
}
