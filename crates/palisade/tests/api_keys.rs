//! End-to-end tests of workspace API keys (issue 7, KEY-1 and KEY-2): the secret's format and
//! storage, scopes, revocation and rotation on one node and across nodes, isolation between
//! workspaces, errors, audit, last use and suspension: the real server over real HTTP, on
//! SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::audit::{pair, workspace_audit};

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    ADMIN, Reply, Server, assert_status, contains, database_image, id, join, servers, ws_path,
};
use palisade_core::ids::ApiKeyId;
use palisade_store::testing::databases;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

// ---------------------------------------------------------------------------------------------
// The documented contract, encoded here independently of the server.

const READ: &[&str] = &[
    "workspace.read",
    "members.read",
    "records.read",
    "audit.read",
];
const READ_DRAFT: &[&str] = &["records.read_draft"];
const WRITE: &[&str] = &["records.write", "audit.write", "quotas.consume"];
const MANAGEMENT: &[&str] = &[
    "workspace.update",
    "auth_policy.manage",
    "members.manage",
    "roles.manage",
    "api_keys.manage",
    "webhooks.manage",
    "collections.manage",
];
/// Powers no scope ever grants.
const OWNER_POWERS: &[&str] = &[
    "workspace.delete",
    "owners.manage",
    "children.manage",
    "billing.manage",
];
const SCOPES: [&str; 4] = ["read", "read_draft", "write", "management"];

fn scope_permissions(scope: &str) -> &'static [&'static str] {
    match scope {
        "read" => READ,
        "read_draft" => READ_DRAFT,
        "write" => WRITE,
        "management" => MANAGEMENT,
        other => panic!("no scope {other}"),
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The union of the scopes' permissions.
fn union_of(scopes: &[&str]) -> BTreeSet<String> {
    scopes
        .iter()
        .flat_map(|s| scope_permissions(s).iter())
        .map(|p| (*p).to_owned())
        .collect()
}

/// A key's `permissions`, as a set.
fn permissions_of(key: &Value) -> BTreeSet<String> {
    key["permissions"]
        .as_array()
        .unwrap_or_else(|| panic!("no permissions in {key}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// CRC-32 (IEEE 802.3, as zlib), bit by bit.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The 6-character checksum of a 43-character body: CRC32, big-endian base62, '0'-padded.
fn checksum(body: &str) -> String {
    let mut n = u64::from(crc32(body.as_bytes()));
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    assert_eq!(n, 0, "a CRC32 fits in 6 base62 digits");
    String::from_utf8(out.to_vec()).unwrap()
}

/// `^pal_[0-9A-Za-z]{49}$` with a valid checksum.
fn assert_key_format(key: &str, context: &str) {
    assert_eq!(key.len(), 53, "{context}: {key}");
    assert!(key.starts_with("pal_"), "{context}: {key}");
    assert!(
        key[4..].bytes().all(|b| b.is_ascii_alphanumeric()),
        "{context}: {key}"
    );
    assert_eq!(
        &key[47..],
        checksum(&key[4..47]),
        "{context}: the checksum of {key}"
    );
}

/// The 43 random characters of a key.
fn body_of(key: &str) -> &str {
    &key[4..47]
}

/// A key no server issued, with a valid checksum.
fn well_formed_unknown_key(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut body = String::new();
    let mut round = 0u32;
    while body.len() < 43 {
        let digest = Sha256::digest(format!("{seed}/{round}/{:?}", Instant::now()).as_bytes());
        for byte in digest.iter() {
            if body.len() < 43 {
                body.push(char::from(ALPHABET[usize::from(*byte % 62)]));
            }
        }
        round += 1;
    }
    let key = format!("pal_{body}{}", checksum(&body));
    assert_key_format(&key, "generated");
    key
}

// ---------------------------------------------------------------------------------------------
// Helpers.

async fn delete(s: &Server, path: &str, token: &str) -> Reply {
    s.call(Method::DELETE, path, Some(token), None).await
}

async fn post_empty(s: &Server, path: &str, token: &str) -> Reply {
    s.call(Method::POST, path, Some(token), None).await
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn parse_time(v: &Value, context: &str) -> OffsetDateTime {
    OffsetDateTime::parse(
        v.as_str()
            .unwrap_or_else(|| panic!("{context}: not a time: {v}")),
        &Rfc3339,
    )
    .unwrap_or_else(|e| panic!("{context}: {v}: {e}"))
}

/// `POST …/api-keys`, which must be 201; returns the created key (with `key`).
async fn create_key(s: &Server, token: &str, ws: &str, name: &str, scopes: &[&str]) -> Value {
    let r = s
        .post(
            &ws_path(ws, "/api-keys"),
            Some(token),
            json!({"name": name, "scopes": scopes}),
        )
        .await;
    assert_status(
        &r,
        201,
        &format!("{}: create key {name} {scopes:?}", s.backend()),
    );
    r.body
}

fn secret(key: &Value) -> String {
    key["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key in {key}"))
        .to_owned()
}

/// `data` of a list answer that must be 200.
async fn list(s: &Server, token: &str, path: &str) -> Vec<Value> {
    let r = s.get(path, Some(token)).await;
    assert_status(&r, 200, &format!("{}: GET {path}", s.backend()));
    r.body["data"].as_array().unwrap().clone()
}

async fn key_ids(s: &Server, token: &str, ws: &str) -> Vec<String> {
    list(s, token, &ws_path(ws, "/api-keys?limit=200"))
        .await
        .iter()
        .map(id)
        .collect()
}

/// `n` sequential requests that must all succeed.
async fn warm(s: &Server, path: &str, key: &str, n: usize, context: &str) {
    for i in 0..n {
        let r = s.get(path, Some(key)).await;
        assert_status(&r, 200, &format!("{context}: warm-up request {i}"));
    }
}

/// The member id of `user_id` in `ws`.
async fn member_id(s: &Server, token: &str, ws: &str, user_id: &str) -> String {
    let members = list(s, token, &ws_path(ws, "/members?limit=200")).await;
    id(members
        .iter()
        .find(|m| m["user_id"] == user_id)
        .unwrap_or_else(|| panic!("{user_id} is not a member of {ws}")))
}

/// One request's outcome, with when it was sent.
#[derive(Debug, Clone)]
struct Hit {
    started: Instant,
    status: u16,
    code: String,
    challenge: bool,
}

async fn hit(client: &reqwest::Client, url: &str, key: &str) -> Hit {
    let started = Instant::now();
    let r = client.get(url).bearer_auth(key).send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().is_ok_and(|v| v.starts_with("Bearer")));
    let text = r.text().await.unwrap();
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Hit {
        started,
        status,
        code,
        challenge,
    }
}

/// `n` GETs of `path` with `key`, `concurrency` at a time.
async fn hammer(s: &Server, path: &str, key: &str, n: usize, concurrency: usize) -> Vec<Hit> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, key, next) = (
            s.client.clone(),
            format!("{}{path}", s.base),
            key.to_owned(),
            next.clone(),
        );
        tasks.spawn(async move {
            let mut hits = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                hits.push(hit(&client, &url, &key).await);
            }
            hits
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.unwrap());
    }
    assert_eq!(all.len(), n);
    all
}

/// Requests sent without pause by `workers` tasks until [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<Vec<Hit>>,
}

impl Load {
    fn start(s: &Server, path: &str, key: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (client, url, key, stop) = (
                s.client.clone(),
                format!("{}{path}", s.base),
                key.to_owned(),
                stop.clone(),
            );
            tasks.spawn(async move {
                let mut hits = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    hits.push(hit(&client, &url, &key).await);
                }
                hits
            });
        }
        Load { stop, tasks }
    }

    async fn finish(mut self) -> Vec<Hit> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            all.extend(done.unwrap());
        }
        all
    }
}

/// Every hit refused with 401 `code` and a `WWW-Authenticate` challenge.
fn assert_all_refused(hits: &[Hit], code: &str, context: &str) {
    let succeeded = hits.iter().filter(|h| h.status < 400).count();
    assert_eq!(
        succeeded,
        0,
        "{context}: {succeeded} of {} requests succeeded",
        hits.len()
    );
    let other: Vec<&Hit> = hits
        .iter()
        .filter(|h| h.status != 401 || h.code != code || !h.challenge)
        .take(5)
        .collect();
    assert!(
        other.is_empty(),
        "{context}: expected 401 {code} with a challenge, got {other:?}"
    );
}

/// A load that ran across an acknowledgement at `acked`: before it, successes or refusals;
/// from it on, refusals only.
fn assert_nothing_after(hits: &[Hit], acked: Instant, context: &str) {
    let late: Vec<Hit> = hits
        .iter()
        .filter(|h| h.started >= acked)
        .cloned()
        .collect();
    assert_all_refused(
        &late,
        "invalid_api_key",
        &format!("{context} (sent after the ack)"),
    );
    let odd: Vec<&Hit> = hits
        .iter()
        .filter(|h| h.status != 200 && !(h.status == 401 && h.code == "invalid_api_key"))
        .take(5)
        .collect();
    assert!(odd.is_empty(), "{context}: unexpected answers {odd:?}");
    assert!(
        hits.iter().any(|h| h.started < acked && h.status == 200),
        "{context}: the key was in use right up to the change ({} hits)",
        hits.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Shown once; only a hash is stored.

#[tokio::test]
async fn a_key_is_shown_once_and_the_database_never_holds_its_secret() {
    // The checksum helper itself: the standard CRC-32 check value and a known base62 width.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    for s in servers().await {
        let b = s.backend();
        let (uid, o, _) = s.user("olga@example.com").await;
        let ws = id(&s.workspace(&o, "Keys", "keys").await);
        let started = OffsetDateTime::now_utc() - time::Duration::seconds(5);

        let r = s
            .post(
                &ws_path(&ws, "/api-keys"),
                Some(&o),
                json!({"name": "CI deploys", "scopes": ["read", "write"]}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: create"));
        let created = r.body.clone();
        let key = secret(&created);
        assert_key_format(&key, b);
        let kid = id(&created);
        assert!(kid.starts_with("key_"), "{b}: {kid}");
        assert_eq!(created["prefix"], key[..10], "{b}: {}", r.text);
        assert_eq!(created["name"], "CI deploys", "{b}");
        assert_eq!(created["scopes"], json!(["read", "write"]), "{b}");
        assert_eq!(
            permissions_of(&created),
            union_of(&["read", "write"]),
            "{b}"
        );
        assert_eq!(
            created["created_by"],
            json!({"type": "user", "id": uid}),
            "{b}"
        );
        let created_at = parse_time(&created["created_at"], b);
        assert!(
            created_at >= started && created_at <= OffsetDateTime::now_utc(),
            "{b}: {created_at}"
        );
        for field in ["expires_at", "last_used_at", "rotated_at", "revoked_at"] {
            assert_eq!(created[field], Value::Null, "{b}: {field}");
        }
        let fields: BTreeSet<&str> = created
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            BTreeSet::from([
                "id",
                "name",
                "prefix",
                "scopes",
                "permissions",
                "created_by",
                "created_at",
                "expires_at",
                "last_used_at",
                "rotated_at",
                "revoked_at",
                "key"
            ]),
            "{b}: {}",
            r.text
        );

        // Never again: the list and the key itself show everything but the secret.
        let mut shown = created.clone();
        shown.as_object_mut().unwrap().remove("key");
        let r = s.get(&ws_path(&ws, "/api-keys"), Some(&o)).await;
        assert_status(&r, 200, &format!("{b}: list"));
        assert_eq!(r.body["data"], json!([shown]), "{b}: {}", r.text);
        assert!(
            !r.text.contains(&key) && !r.text.contains(body_of(&key)),
            "{b}: the list shows the secret"
        );
        let r = s
            .get(&ws_path(&ws, &format!("/api-keys/{kid}")), Some(&o))
            .await;
        assert_status(&r, 200, &format!("{b}: get"));
        assert_eq!(r.body, shown, "{b}");
        assert!(
            !r.text.contains(&key) && !r.text.contains(body_of(&key)),
            "{b}: the key shows its secret"
        );

        // It works, by id and by slug.
        for target in [ws.as_str(), "keys"] {
            assert_status(
                &s.get(&ws_path(target, ""), Some(&key)).await,
                200,
                &format!("{b}: the key reads {target}"),
            );
        }

        // A rotated secret is shown once too, and is stored no more than the first.
        let r = post_empty(&s, &ws_path(&ws, &format!("/api-keys/{kid}/rotate")), &o).await;
        assert_status(&r, 200, &format!("{b}: rotate"));
        let rotated = secret(&r.body);
        assert_key_format(&rotated, b);
        assert_ne!(rotated, key, "{b}");
        let r = s
            .get(&ws_path(&ws, &format!("/api-keys/{kid}")), Some(&o))
            .await;
        assert!(r.body.get("key").is_none(), "{b}: {}", r.text);
        assert!(!r.text.contains(&rotated), "{b}");

        let image = database_image(&s).await;
        for (what, needle) in [
            ("the key", key.as_str()),
            ("the key's body", body_of(&key)),
            ("the rotated key", rotated.as_str()),
            ("the rotated key's body", body_of(&rotated)),
        ] {
            assert!(
                !contains(&image, needle),
                "{b}: the database holds {what} ({} bytes searched)",
                image.len()
            );
        }
        // The search looked where the key is: its id and its prefix are there.
        for (what, needle) in [("the key id", kid.as_str()), ("the prefix", &rotated[..10])] {
            assert!(
                contains(&image, needle),
                "{b}: {what} is not in the database image, so the search proves nothing"
            );
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn keys_are_paged_read_rotated_and_revoked_once() {
    for s in servers().await {
        let b = s.backend();
        let (uid, o, _) = s.user("paula@example.com").await;
        let ws = id(&s.workspace(&o, "Pages", "pages").await);
        let mut made = Vec::new();
        for n in 0..3 {
            made.push(create_key(&s, &o, &ws, &format!("Key {n}"), &["read"]).await);
        }
        let made_ids: BTreeSet<String> = made.iter().map(id).collect();

        // Pages of two.
        let r = s.get(&ws_path(&ws, "/api-keys?limit=2"), Some(&o)).await;
        assert_status(&r, 200, &format!("{b}: page 1"));
        let first = r.body["data"].as_array().unwrap().clone();
        assert_eq!(first.len(), 2, "{b}: {}", r.text);
        let cursor = r.body["next_cursor"].as_str().unwrap().to_owned();
        let r = s
            .get(
                &ws_path(&ws, &format!("/api-keys?limit=2&cursor={cursor}")),
                Some(&o),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: page 2"));
        let second = r.body["data"].as_array().unwrap().clone();
        assert_eq!(second.len(), 1, "{b}: {}", r.text);
        assert_eq!(r.body["next_cursor"], Value::Null, "{b}");
        let paged: Vec<String> = first.iter().chain(second.iter()).map(id).collect();
        assert_eq!(
            paged.iter().cloned().collect::<BTreeSet<_>>(),
            made_ids,
            "{b}: every key once"
        );
        assert!(
            !r.text.contains("\"key\""),
            "{b}: no secret in a list: {}",
            r.text
        );

        // Rotate: same key, new secret, the rest unchanged.
        let (k0, k1) = (id(&made[0]), id(&made[1]));
        let r = post_empty(&s, &ws_path(&ws, &format!("/api-keys/{k0}/rotate")), &o).await;
        assert_status(&r, 200, &format!("{b}: rotate"));
        let rotated = r.body.clone();
        let new_secret = secret(&rotated);
        assert_key_format(&new_secret, b);
        assert_ne!(new_secret, secret(&made[0]), "{b}");
        assert_eq!(id(&rotated), k0, "{b}");
        assert_eq!(rotated["prefix"], new_secret[..10], "{b}");
        assert!(rotated["rotated_at"].is_string(), "{b}: {}", r.text);
        assert_eq!(rotated["revoked_at"], Value::Null, "{b}");
        for field in ["name", "scopes", "permissions", "created_by", "created_at"] {
            assert_eq!(rotated[field], made[0][field], "{b}: {field}");
        }
        assert_eq!(rotated["created_by"]["id"], uid.as_str(), "{b}");
        let mut shown = rotated.clone();
        shown.as_object_mut().unwrap().remove("key");
        let r = s
            .get(&ws_path(&ws, &format!("/api-keys/{k0}")), Some(&o))
            .await;
        assert_eq!(r.body, shown, "{b}: the key after rotation");

        // Revoke: gone from the list, still readable with revoked_at; twice is a no-op.
        assert_status(
            &delete(&s, &ws_path(&ws, &format!("/api-keys/{k1}")), &o).await,
            204,
            &format!("{b}: revoke"),
        );
        let r = s
            .get(&ws_path(&ws, &format!("/api-keys/{k1}")), Some(&o))
            .await;
        assert_status(&r, 200, &format!("{b}: get revoked"));
        assert!(r.body["revoked_at"].is_string(), "{b}: {}", r.text);
        assert!(r.body.get("key").is_none(), "{b}");
        let revoked_at = r.body["revoked_at"].clone();
        let listed = key_ids(&s, &o, &ws).await;
        assert!(!listed.contains(&k1), "{b}: a revoked key is not listed");
        assert_eq!(listed.len(), 2, "{b}");
        let r = delete(&s, &ws_path(&ws, &format!("/api-keys/{k1}")), &o).await;
        assert_status(&r, 204, &format!("{b}: revoke again"));
        let r = s
            .get(&ws_path(&ws, &format!("/api-keys/{k1}")), Some(&o))
            .await;
        assert_eq!(
            r.body["revoked_at"], revoked_at,
            "{b}: the first revocation stands"
        );
        post_empty(&s, &ws_path(&ws, &format!("/api-keys/{k1}/rotate")), &o)
            .await
            .assert_problem(404, "api_key_not_found", &format!("{b}: rotate revoked"));

        // Unknown ids.
        let unknown = ApiKeyId::generate().to_string();
        for target in [unknown.as_str(), "nonsense"] {
            let path = ws_path(&ws, &format!("/api-keys/{target}"));
            s.get(&path, Some(&o)).await.assert_problem(
                404,
                "api_key_not_found",
                &format!("{b}: GET {target}"),
            );
            delete(&s, &path, &o).await.assert_problem(
                404,
                "api_key_not_found",
                &format!("{b}: DELETE {target}"),
            );
            post_empty(&s, &format!("{path}/rotate"), &o)
                .await
                .assert_problem(404, "api_key_not_found", &format!("{b}: rotate {target}"));
        }
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Revocation and rotation on one node.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_revocation_or_rotation_is_acknowledged_the_old_secret_never_works() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("rita@example.com").await;
        let ws = id(&s.workspace(&o, "Revoke", "revoke").await);
        let path = ws_path(&ws, "");

        // Looked up once, then served from memory.
        let doomed = create_key(&s, &o, &ws, "Doomed", &["read"]).await;
        let key = secret(&doomed);
        let lookups = s.services().api_key_lookups();
        warm(&s, &path, &key, 200, b).await;
        let looked = s.services().api_key_lookups() - lookups;
        assert!(
            (1..10).contains(&looked),
            "{b}: 200 requests looked the key up {looked} times"
        );

        let load = Load::start(&s, &path, &key, 4);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = delete(&s, &ws_path(&ws, &format!("/api-keys/{}", id(&doomed))), &o).await;
        let acked = Instant::now();
        assert_status(&r, 204, &format!("{b}: revoke"));
        let after = hammer(&s, &path, &key, 1000, 32).await;
        assert_all_refused(&after, "invalid_api_key", &format!("{b}: revoked"));
        assert_nothing_after(&load.finish().await, acked, &format!("{b}: revoked, load"));

        // Rotation: the old secret is dead, the new one works.
        let turned = create_key(&s, &o, &ws, "Turned", &["read"]).await;
        let old = secret(&turned);
        warm(&s, &path, &old, 20, b).await;
        let load = Load::start(&s, &path, &old, 4);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = post_empty(
            &s,
            &ws_path(&ws, &format!("/api-keys/{}/rotate", id(&turned))),
            &o,
        )
        .await;
        let acked = Instant::now();
        assert_status(&r, 200, &format!("{b}: rotate"));
        let new = secret(&r.body);
        let after = hammer(&s, &path, &old, 1000, 32).await;
        assert_all_refused(&after, "invalid_api_key", &format!("{b}: rotated"));
        assert_nothing_after(&load.finish().await, acked, &format!("{b}: rotated, load"));
        warm(&s, &path, &new, 20, &format!("{b}: the new secret")).await;
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Two nodes on one database.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_or_rotation_on_one_node_holds_on_the_other_at_once() {
    for a in servers().await {
        let b = a.backend();
        let node_b = a.second_node().await;
        let (_, o, _) = a.user("nina@example.com").await;
        let ws = id(&a.workspace(&o, "Nodes", "nodes").await);
        let path = ws_path(&ws, "/members");

        // Revoked on A while B serves it from its cache.
        let k = create_key(&a, &o, &ws, "Shared", &["read"]).await;
        let key = secret(&k);
        warm(&a, &path, &key, 30, &format!("{b}: node A")).await;
        warm(&node_b, &path, &key, 30, &format!("{b}: node B")).await;
        let load = Load::start(&node_b, &path, &key, 4);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = delete(&a, &ws_path(&ws, &format!("/api-keys/{}", id(&k))), &o).await;
        let acked = Instant::now();
        assert_status(&r, 204, &format!("{b}: revoke on A"));
        let after = hammer(&node_b, &path, &key, 300, 16).await;
        assert_all_refused(
            &after,
            "invalid_api_key",
            &format!("{b}: node B after revocation"),
        );
        assert_nothing_after(&load.finish().await, acked, &format!("{b}: node B load"));
        assert_all_refused(
            &hammer(&a, &path, &key, 50, 8).await,
            "invalid_api_key",
            &format!("{b}: node A after revocation"),
        );

        // Rotated on B while A serves the old secret from its cache.
        let k = create_key(&a, &o, &ws, "Turning", &["read"]).await;
        let old = secret(&k);
        warm(&a, &path, &old, 30, &format!("{b}: node A")).await;
        warm(&node_b, &path, &old, 30, &format!("{b}: node B")).await;
        let load = Load::start(&a, &path, &old, 4);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = post_empty(
            &node_b,
            &ws_path(&ws, &format!("/api-keys/{}/rotate", id(&k))),
            &o,
        )
        .await;
        let acked = Instant::now();
        assert_status(&r, 200, &format!("{b}: rotate on B"));
        let new = secret(&r.body);
        let after = hammer(&a, &path, &old, 300, 16).await;
        assert_all_refused(
            &after,
            "invalid_api_key",
            &format!("{b}: node A after rotation"),
        );
        assert_nothing_after(&load.finish().await, acked, &format!("{b}: node A load"));
        warm(&a, &path, &new, 10, &format!("{b}: new secret on A")).await;
        warm(&node_b, &path, &new, 10, &format!("{b}: new secret on B")).await;

        node_b.stop().await;
        a.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Scopes.

#[tokio::test]
async fn each_scope_allows_exactly_its_permissions_and_never_an_owner_power() {
    for s in servers().await {
        let b = s.backend();
        let (uid, o, _) = s.user("sofia@example.com").await;
        let (_, m, _) = s.user("marc@example.com").await;
        let ws = id(&s.workspace(&o, "Scopes", "scopes").await);
        let m_mem = join(&s, &o, &ws, "marc@example.com", &m, "member").await;
        let owner_mem = member_id(&s, &o, &ws, &uid).await;

        let read = create_key(&s, &o, &ws, "Reader", &["read"]).await;
        let draft = create_key(&s, &o, &ws, "Draft reader", &["read", "read_draft"]).await;
        let write = create_key(&s, &o, &ws, "Writer", &["write"]).await;
        let mgmt = create_key(&s, &o, &ws, "Manager", &["management"]).await;
        for (key, scopes) in [
            (&read, vec!["read"]),
            (&draft, vec!["read", "read_draft"]),
            (&write, vec!["write"]),
            (&mgmt, vec!["management"]),
        ] {
            // The owner holds every permission: the key holds exactly its scopes'.
            assert_eq!(permissions_of(key), union_of(&scopes), "{b}: {scopes:?}");
            assert!(
                permissions_of(key).is_disjoint(&set(OWNER_POWERS)),
                "{b}: {scopes:?} reaches an owner power"
            );
        }
        assert!(!permissions_of(&read).contains("records.read_draft"), "{b}");
        assert!(permissions_of(&draft).contains("records.read_draft"), "{b}");
        let write_id = id(&write);
        let (read, write, mgmt_id, mgmt) =
            (secret(&read), secret(&write), id(&mgmt), secret(&mgmt));
        let app_event =
            json!({"action": "invoice.approve", "target": {"type": "invoice", "id": "inv_1"}});
        let new_key = json!({"name": "Nested", "scopes": ["read"]});

        // read
        for path in ["", "/members", "/audit/events"] {
            assert_status(
                &s.get(&ws_path(&ws, path), Some(&read)).await,
                200,
                &format!("{b}: read GET {path}"),
            );
        }
        for (method, path, body) in [
            (Method::PATCH, "".to_owned(), Some(json!({"name": "No"}))),
            (
                Method::POST,
                "/audit/events".to_owned(),
                Some(app_event.clone()),
            ),
            (Method::POST, "/api-keys".to_owned(), Some(new_key.clone())),
            (Method::GET, "/api-keys".to_owned(), None),
            (
                Method::POST,
                "/quotas/ai/consume".to_owned(),
                Some(json!({})),
            ),
            (
                Method::PATCH,
                format!("/members/{m_mem}"),
                Some(json!({"role": "billing"})),
            ),
        ] {
            s.call(method.clone(), &ws_path(&ws, &path), Some(&read), body)
                .await
                .assert_problem(
                    403,
                    "permission_denied",
                    &format!("{b}: read {method} {path}"),
                );
        }

        // write
        let r = s
            .post(
                &ws_path(&ws, "/audit/events"),
                Some(&write),
                app_event.clone(),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: write records an event"));
        let r = s
            .post(&ws_path(&ws, "/quotas/ai/consume"), Some(&write), json!({}))
            .await;
        assert_status(&r, 200, &format!("{b}: write consumes quota"));
        for (method, path, body) in [
            (Method::GET, "".to_owned(), None),
            (Method::GET, "/members".to_owned(), None),
            (Method::POST, "/api-keys".to_owned(), Some(new_key.clone())),
            (
                Method::POST,
                "/invitations".to_owned(),
                Some(json!({"email": "x@example.com", "role": "member"})),
            ),
            (
                Method::PATCH,
                format!("/members/{m_mem}"),
                Some(json!({"role": "billing"})),
            ),
        ] {
            s.call(method.clone(), &ws_path(&ws, &path), Some(&write), body)
                .await
                .assert_problem(
                    403,
                    "permission_denied",
                    &format!("{b}: write {method} {path}"),
                );
        }

        // management
        let r = s
            .post(
                &ws_path(&ws, "/api-keys"),
                Some(&mgmt),
                json!({"name": "Made by a key", "scopes": ["management"]}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: a key creates a key"));
        assert_eq!(
            r.body["created_by"],
            json!({"type": "api_key", "id": mgmt_id}),
            "{b}"
        );
        assert_eq!(permissions_of(&r.body), set(MANAGEMENT), "{b}");
        let nested = secret(&r.body);
        assert_key_format(&nested, b);
        for (scopes, pointers) in [
            (json!(["read"]), vec!["/scopes/0"]),
            (json!(["management", "write"]), vec!["/scopes/1"]),
            (
                json!(["read_draft", "management", "read"]),
                vec!["/scopes/0", "/scopes/2"],
            ),
        ] {
            let r = s
                .post(
                    &ws_path(&ws, "/api-keys"),
                    Some(&mgmt),
                    json!({"name": "Beyond", "scopes": scopes}),
                )
                .await;
            r.assert_problem(422, "validation_failed", &format!("{b}: key asks {scopes}"));
            let mut got = r.pointers();
            got.sort();
            assert_eq!(got, pointers, "{b}: {scopes}");
        }
        let r = s
            .patch(
                &ws_path(&ws, ""),
                Some(&mgmt),
                json!({"name": "Renamed by a key"}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: management PATCH"));
        assert_eq!(r.body["name"], "Renamed by a key", "{b}");
        let r = s
            .patch(
                &ws_path(&ws, &format!("/members/{m_mem}")),
                Some(&mgmt),
                json!({"role": "billing"}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: management changes a member"));
        assert_eq!(r.body["role"], "billing", "{b}");
        // Owner powers: none.
        for (method, path, body) in [
            (
                Method::PATCH,
                format!("/members/{m_mem}"),
                Some(json!({"role": "owner"})),
            ),
            (
                Method::PATCH,
                format!("/members/{owner_mem}"),
                Some(json!({"role": "admin"})),
            ),
            (Method::DELETE, format!("/members/{owner_mem}"), None),
            (
                Method::POST,
                "/children".to_owned(),
                Some(json!({"name": "Spawn"})),
            ),
            (Method::GET, "/children".to_owned(), None),
            (Method::GET, "".to_owned(), None),
        ] {
            for (who, key) in [("management", &mgmt), ("nested", &nested)] {
                s.call(
                    method.clone(),
                    &ws_path(&ws, &path),
                    Some(key),
                    body.clone(),
                )
                .await
                .assert_problem(
                    403,
                    "permission_denied",
                    &format!("{b}: {who} {method} {path}"),
                );
            }
        }
        let r = s
            .get(&ws_path(&ws, &format!("/members/{owner_mem}")), Some(&o))
            .await;
        assert_eq!(r.body["role"], "owner", "{b}: the owner is untouched");

        let events = workspace_audit(&s, &ws).await;
        let app = events
            .iter()
            .find(|e| e.action == "invoice.approve")
            .expect("the application event");
        assert_eq!(app.actor.0, "api_key", "{b}: {}", app.raw_with_openings);
        assert_eq!(app.actor.1, write_id, "{b}");
        let update = events
            .iter()
            .rev()
            .find(|e| e.action == "workspace.update")
            .expect("the update");
        assert_eq!(
            update.actor,
            pair("api_key", &mgmt_id),
            "{b}: {}",
            update.raw_with_openings
        );
        let change = events
            .iter()
            .find(|e| e.action == "member.update")
            .expect("the member change");
        assert_eq!(change.actor, pair("api_key", &mgmt_id), "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Workspace isolation.

#[tokio::test]
async fn a_key_and_its_id_exist_only_in_their_own_workspace() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("ivan@example.com").await;
        let alpha = id(&s.workspace(&o, "Alpha", "alpha").await);
        let beta = id(&s.workspace(&o, "Beta", "beta").await);
        let ka = create_key(&s, &o, &alpha, "Alpha key", &["read", "management"]).await;
        let kb = create_key(&s, &o, &beta, "Beta key", &["read"]).await;
        let (ka_id, ka_secret, kb_id) = (id(&ka), secret(&ka), id(&kb));

        for target in [alpha.as_str(), "alpha"] {
            assert_status(
                &s.get(&ws_path(target, ""), Some(&ka_secret)).await,
                200,
                &format!("{b}: own workspace {target}"),
            );
        }
        for target in [beta.as_str(), "beta", "nowhere"] {
            for (method, path, body) in [
                (Method::GET, "", None),
                (Method::GET, "/members", None),
                (Method::GET, "/api-keys", None),
                (
                    Method::POST,
                    "/api-keys",
                    Some(json!({"name": "Pivot", "scopes": ["read"]})),
                ),
            ] {
                s.call(
                    method.clone(),
                    &ws_path(target, path),
                    Some(&ka_secret),
                    body,
                )
                .await
                .assert_problem(
                    404,
                    "workspace_not_found",
                    &format!("{b}: alpha's key {method} {target}{path}"),
                );
            }
        }

        // The ids: even their common owner cannot reach one through the other workspace.
        for (ws, foreign) in [(&alpha, &kb_id), (&beta, &ka_id)] {
            let path = ws_path(ws, &format!("/api-keys/{foreign}"));
            s.get(&path, Some(&o)).await.assert_problem(
                404,
                "api_key_not_found",
                &format!("{b}: GET {path}"),
            );
            post_empty(&s, &format!("{path}/rotate"), &o)
                .await
                .assert_problem(404, "api_key_not_found", &format!("{b}: rotate {path}"));
            delete(&s, &path, &o).await.assert_problem(
                404,
                "api_key_not_found",
                &format!("{b}: DELETE {path}"),
            );
        }
        // Nor can a key with `management`.
        let path = ws_path(&alpha, &format!("/api-keys/{kb_id}"));
        s.get(&path, Some(&ka_secret)).await.assert_problem(
            404,
            "api_key_not_found",
            &format!("{b}: alpha's key GET {path}"),
        );
        delete(&s, &path, &ka_secret).await.assert_problem(
            404,
            "api_key_not_found",
            &format!("{b}: alpha's key DELETE {path}"),
        );
        assert_eq!(key_ids(&s, &o, &alpha).await, [ka_id.as_str()], "{b}");
        assert_eq!(key_ids(&s, &o, &beta).await, [kb_id.as_str()], "{b}");
        for (ws, kid, before) in [(&alpha, &ka_id, &ka), (&beta, &kb_id, &kb)] {
            let r = s
                .get(&ws_path(ws, &format!("/api-keys/{kid}")), Some(&o))
                .await;
            assert_eq!(r.body["revoked_at"], Value::Null, "{b}");
            assert_eq!(r.body["rotated_at"], Value::Null, "{b}");
            assert_eq!(r.body["prefix"], before["prefix"], "{b}");
        }
        assert_status(
            &s.get(&ws_path(&alpha, "/members"), Some(&ka_secret)).await,
            200,
            &format!("{b}: alpha's key still works"),
        );
        assert_status(
            &s.get(&ws_path(&beta, ""), Some(&secret(&kb))).await,
            200,
            &format!("{b}: beta's key still works"),
        );

        // Slugs move: the key follows its workspace's new slug, and the old slug, once another
        // workspace takes it, is that workspace's.
        let r = s
            .patch(&ws_path(&alpha, ""), Some(&o), json!({"slug": "alpha-two"}))
            .await;
        assert_status(&r, 200, &format!("{b}: rename alpha"));
        assert_status(
            &s.get(&ws_path("alpha-two", ""), Some(&ka_secret)).await,
            200,
            &format!("{b}: alpha's key under the new slug"),
        );
        s.get(&ws_path("alpha", ""), Some(&ka_secret))
            .await
            .assert_problem(404, "workspace_not_found", &format!("{b}: the old slug"));
        let r = s
            .patch(&ws_path(&beta, ""), Some(&o), json!({"slug": "alpha"}))
            .await;
        assert_status(&r, 200, &format!("{b}: beta takes the old slug"));
        s.get(&ws_path("alpha", ""), Some(&ka_secret))
            .await
            .assert_problem(
                404,
                "workspace_not_found",
                &format!("{b}: the slug is beta's now"),
            );
        let r = s.get(&ws_path("alpha", ""), Some(&secret(&kb))).await;
        assert_status(&r, 200, &format!("{b}: beta's key under its new slug"));
        assert_eq!(r.body["id"], beta.as_str(), "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Errors.

#[tokio::test]
async fn malformed_keys_never_reach_the_database_and_unknown_ones_are_refused() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("eve@example.com").await;
        let ws = id(&s.workspace(&o, "Errors", "errors").await);
        let path = ws_path(&ws, "");
        let good = secret(&create_key(&s, &o, &ws, "Good", &["read"]).await);
        warm(&s, &path, &good, 3, b).await;

        let flip = |at: usize| {
            let mut bytes = good.clone().into_bytes();
            bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
            String::from_utf8(bytes).unwrap()
        };
        let mut dashed = good.clone();
        dashed.replace_range(20..21, "-");
        let malformed = [
            ("bare prefix", "pal_".to_owned()),
            ("a body character changed", flip(10)),
            ("the first body character changed", flip(4)),
            ("a checksum character changed", flip(50)),
            ("one character short", good[..52].to_owned()),
            ("one character long", format!("{good}0")),
            ("a dash", dashed),
            ("not alphanumeric", format!("pal_{}", "!".repeat(49))),
            ("all zeros", format!("pal_{}", "0".repeat(49))),
            (
                "a checksum of the wrong body",
                format!("pal_{}{}", "A".repeat(43), checksum(&"B".repeat(43))),
            ),
        ];
        assert_ne!(checksum(&"0".repeat(43)), "000000");
        assert_ne!(checksum(&"A".repeat(43)), checksum(&"B".repeat(43)));
        let before = s.services().api_key_lookups();
        for (what, key) in &malformed {
            assert_ne!(key, &good);
            for target in [path.clone(), ws_path(&ws, "/members")] {
                let r = s.get(&target, Some(key)).await;
                r.assert_problem(401, "invalid_api_key", &format!("{b}: {what}"));
                assert!(
                    r.header("www-authenticate").starts_with("Bearer"),
                    "{b}: {what}: a challenge"
                );
            }
        }
        assert_eq!(
            s.services().api_key_lookups(),
            before,
            "{b}: a malformed key reached the database"
        );

        // Well-formed, checksum right, but no such key: one lookup, then 401.
        let unknown = well_formed_unknown_key(b);
        let r = s.get(&path, Some(&unknown)).await;
        r.assert_problem(401, "invalid_api_key", &format!("{b}: unknown key"));
        assert!(r.header("www-authenticate").starts_with("Bearer"), "{b}");
        assert_eq!(
            s.services().api_key_lookups(),
            before + 1,
            "{b}: an unknown well-formed key is looked up (its checksum passed)"
        );

        // The good key was unaffected.
        warm(&s, &path, &good, 3, b).await;
        s.stop().await;
    }
}

#[tokio::test]
async fn guessing_keys_is_bounded_per_ip_and_a_refused_key_is_never_looked_up_twice() {
    for db in databases().await {
        let s = Server::start_with(db, |c| {
            c.rate_limits.auth.api_key_failures_per_ip = "3/1m".parse().unwrap();
        })
        .await;
        let b = s.backend();
        let (_, o, _) = s.user("gus@example.com").await;
        let ws = id(&s.workspace(&o, "Guess", "guess").await);
        let path = ws_path(&ws, "");
        let good = secret(&create_key(&s, &o, &ws, "Good", &["read"]).await);
        warm(&s, &path, &good, 3, b).await;

        // One unknown key: looked up once, then refused from memory however often it comes.
        let before = s.services().api_key_lookups();
        let first = well_formed_unknown_key("first");
        for i in 0..5 {
            s.get(&path, Some(&first)).await.assert_problem(
                401,
                "invalid_api_key",
                &format!("{b}: repeat {i}"),
            );
        }
        assert_eq!(
            s.services().api_key_lookups(),
            before + 1,
            "{b}: a refused hash is remembered"
        );

        // Two more distinct guesses spend the IP's budget of 3 failures; the next is 429.
        for seed in ["second", "third"] {
            s.get(&path, Some(&well_formed_unknown_key(seed)))
                .await
                .assert_problem(401, "invalid_api_key", &format!("{b}: {seed}"));
        }
        let r = s.get(&path, Some(&well_formed_unknown_key("fourth"))).await;
        r.assert_problem(429, "rate_limited", &format!("{b}: fourth guess"));
        assert_eq!(r.body["policy"], "api_key_failures_per_ip", "{b}");
        assert!(!r.header("retry-after").is_empty(), "{b}: Retry-After");
        let spent_at = s.services().api_key_lookups();
        for seed in ["fifth", "sixth", "seventh"] {
            let r = s.get(&path, Some(&well_formed_unknown_key(seed))).await;
            r.assert_problem(429, "rate_limited", &format!("{b}: {seed}"));
        }
        assert_eq!(
            s.services().api_key_lookups(),
            spent_at,
            "{b}: once the budget is spent, guesses never reach the database"
        );

        // A key this node already verified keeps working; one it has not seen waits for the
        // budget like any other unverified key from this address.
        warm(&s, &path, &good, 3, b).await;
        let fresh = secret(&create_key(&s, &o, &ws, "Fresh", &["read"]).await);
        s.get(&path, Some(&fresh)).await.assert_problem(
            429,
            "rate_limited",
            &format!("{b}: unverified key, spent IP"),
        );
        s.advance(time::Duration::minutes(2));
        assert_status(
            &s.get(&path, Some(&fresh)).await,
            200,
            &format!("{b}: refilled"),
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn bad_input_creates_nothing_and_an_expired_key_is_refused() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("vera@example.com").await;
        let ws = id(&s.workspace(&o, "Valid", "valid").await);
        let log_before = workspace_audit(&s, &ws).await.len();
        let past = rfc3339(OffsetDateTime::now_utc() - time::Duration::minutes(1));
        let cases = [
            (json!({"name": "", "scopes": ["read"]}), vec!["/name"]),
            (
                json!({"name": "x".repeat(101), "scopes": ["read"]}),
                vec!["/name"],
            ),
            (json!({"name": "ok", "scopes": []}), vec!["/scopes"]),
            (json!({"name": "ok"}), vec!["/scopes"]),
            (
                json!({"name": "ok", "scopes": ["read", "admin"]}),
                vec!["/scopes/1"],
            ),
            (
                json!({"name": "ok", "scopes": ["owner", "read", "READ"]}),
                vec!["/scopes/0", "/scopes/2"],
            ),
            (
                json!({"name": "ok", "scopes": ["read"], "expires_at": past}),
                vec!["/expires_at"],
            ),
            (
                json!({"name": "ok", "scopes": ["read"], "expires_at": "tomorrow"}),
                vec!["/expires_at"],
            ),
            (
                json!({"name": "ok", "scopes": ["read"], "permissions": ["workspace.delete"]}),
                vec!["/permissions"],
            ),
            (
                json!({"name": "", "scopes": ["nope"], "expires_at": past}),
                vec!["/expires_at", "/name", "/scopes/0"],
            ),
        ];
        for (body, pointers) in cases {
            let r = s
                .post(&ws_path(&ws, "/api-keys"), Some(&o), body.clone())
                .await;
            r.assert_problem(422, "validation_failed", &format!("{b}: {body}"));
            let mut got = r.pointers();
            got.sort();
            assert_eq!(got, pointers, "{b}: {body}: {}", r.text);
        }
        assert!(
            key_ids(&s, &o, &ws).await.is_empty(),
            "{b}: nothing created"
        );
        assert_eq!(
            workspace_audit(&s, &ws).await.len(),
            log_before,
            "{b}: no audit entry for a refused request"
        );

        // The limits themselves are fine.
        let r = s
            .post(
                &ws_path(&ws, "/api-keys"),
                Some(&o),
                json!({"name": "y".repeat(100), "scopes": ["read", "read"]}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: 100 characters"));
        assert_eq!(r.body["scopes"], json!(["read"]), "{b}: scopes once each");

        // Expiry.
        let expires =
            OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::hours(1);
        let r = s
            .post(
                &ws_path(&ws, "/api-keys"),
                Some(&o),
                json!({"name": "Short-lived", "scopes": ["read"], "expires_at": rfc3339(expires)}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: expiring key"));
        assert_eq!(parse_time(&r.body["expires_at"], b), expires, "{b}");
        let key = secret(&r.body);
        warm(&s, &ws_path(&ws, ""), &key, 3, b).await;
        s.advance(time::Duration::hours(2));
        for path in ["", "/members"] {
            let r = s.get(&ws_path(&ws, path), Some(&key)).await;
            r.assert_problem(401, "api_key_expired", &format!("{b}: expired {path}"));
            assert!(r.header("www-authenticate").starts_with("Bearer"), "{b}");
        }
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Who may create keys, and where a key is not a person.

#[tokio::test]
async fn only_key_managers_create_keys_and_a_key_never_exceeds_its_creator() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("omar@example.com").await;
        let (_, a, _) = s.user("ada@example.com").await;
        let (_, m, _) = s.user("max@example.com").await;
        let (_, bl, _) = s.user("bill@example.com").await;
        let (_, c, _) = s.user("cleo@example.com").await;
        let ws = id(&s.workspace(&o, "Who", "who").await);
        let a_mem = join(&s, &o, &ws, "ada@example.com", &a, "admin").await;
        join(&s, &o, &ws, "max@example.com", &m, "member").await;
        join(&s, &o, &ws, "bill@example.com", &bl, "billing").await;
        let c_mem = join(&s, &o, &ws, "cleo@example.com", &c, "admin").await;
        let some = create_key(&s, &o, &ws, "Someone's", &["read"]).await;
        let some_id = id(&some);

        for (who, token) in [("member", &m), ("billing", &bl)] {
            for (method, path, body) in [
                (
                    Method::POST,
                    "/api-keys".to_owned(),
                    Some(json!({"name": "Mine", "scopes": ["read"]})),
                ),
                (Method::GET, "/api-keys".to_owned(), None),
                (Method::GET, format!("/api-keys/{some_id}"), None),
                (Method::POST, format!("/api-keys/{some_id}/rotate"), None),
                (Method::DELETE, format!("/api-keys/{some_id}"), None),
            ] {
                s.call(method.clone(), &ws_path(&ws, &path), Some(token), body)
                    .await
                    .assert_problem(
                        403,
                        "permission_denied",
                        &format!("{b}: {who} {method} {path}"),
                    );
            }
        }

        // An admin: every scope's permissions, never an owner power.
        let all = create_key(&s, &a, &ws, "Everything", &SCOPES).await;
        assert_eq!(permissions_of(&all), union_of(&SCOPES), "{b}");
        let managing = create_key(&s, &a, &ws, "Managing", &["management"]).await;
        assert_eq!(permissions_of(&managing), set(MANAGEMENT), "{b}");
        for key in [&all, &managing] {
            for p in OWNER_POWERS {
                assert!(!permissions_of(key).contains(*p), "{b}: {p}");
            }
        }

        // A creator narrowed by a custom role: the key gets the intersection.
        let (_, admin, _) = s.user(ADMIN).await;
        let r = s
            .patch(
                &format!("/api/v1/admin/workspaces/{ws}"),
                Some(&admin),
                json!({"modules": ["advanced_rbac"]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: enable advanced_rbac"));
        let r = s
            .post(
                &ws_path(&ws, "/roles"),
                Some(&o),
                json!({"name": "Key clerk", "base_role": "admin",
                       "permissions": ["workspace.read", "members.read", "api_keys.manage"]}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: custom role"));
        let clerk = id(&r.body);
        let r = s
            .patch(
                &ws_path(&ws, &format!("/members/{c_mem}")),
                Some(&o),
                json!({"custom_role": clerk}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: assign the role"));
        let narrowed = create_key(&s, &c, &ws, "Narrowed", &["read", "write", "management"]).await;
        assert_eq!(
            permissions_of(&narrowed),
            set(&["workspace.read", "members.read", "api_keys.manage"]),
            "{b}: scopes ∩ creator"
        );
        let narrowed = secret(&narrowed);
        assert_status(
            &s.get(&ws_path(&ws, "/members"), Some(&narrowed)).await,
            200,
            &format!("{b}: narrowed key reads members"),
        );
        for (method, path, body) in [
            (Method::GET, "/audit/events", None),
            (
                Method::POST,
                "/audit/events",
                Some(
                    json!({"action": "invoice.approve", "target": {"type": "invoice", "id": "i"}}),
                ),
            ),
            (Method::PATCH, "", Some(json!({"name": "No"}))),
        ] {
            s.call(method.clone(), &ws_path(&ws, path), Some(&narrowed), body)
                .await
                .assert_problem(
                    403,
                    "permission_denied",
                    &format!("{b}: narrowed {method} {path}"),
                );
        }

        // The permissions are fixed at creation: demoting the creator later changes no key.
        let r = s
            .patch(
                &ws_path(&ws, &format!("/members/{a_mem}")),
                Some(&o),
                json!({"role": "member"}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: demote the admin"));
        let r = s
            .get(
                &ws_path(&ws, &format!("/api-keys/{}", id(&managing))),
                Some(&o),
            )
            .await;
        assert_eq!(permissions_of(&r.body), set(MANAGEMENT), "{b}: {}", r.text);
        let r = s
            .patch(
                &ws_path(&ws, ""),
                Some(&secret(&managing)),
                json!({"name": "Still managed"}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: the key keeps what it was given"));
        s.stop().await;
    }
}

#[tokio::test]
async fn a_key_is_refused_where_a_person_is_required() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("una@example.com").await;
        let ws = id(&s.workspace(&o, "Persons", "persons").await);
        let key = secret(&create_key(&s, &o, &ws, "Everything", &SCOPES).await);
        for (method, path, body) in [
            (Method::GET, "/api/v1/me".to_owned(), None),
            (Method::GET, "/api/v1/me/sessions".to_owned(), None),
            (Method::GET, "/api/v1/me/security-events".to_owned(), None),
            (Method::DELETE, "/api/v1/me/sessions".to_owned(), None),
            (Method::GET, "/api/v1/workspaces".to_owned(), None),
            (
                Method::POST,
                "/api/v1/workspaces".to_owned(),
                Some(json!({"name": "By a key"})),
            ),
            (
                Method::POST,
                "/api/v1/invitations/accept".to_owned(),
                Some(json!({"token": "whatever"})),
            ),
            (Method::POST, ws_path(&ws, "/leave"), None),
        ] {
            s.call(method.clone(), &path, Some(&key), body)
                .await
                .assert_problem(403, "user_required", &format!("{b}: key {method} {path}"));
        }
        // Nothing happened: the owner is still there, no workspace was created.
        let r = s.get("/api/v1/workspaces", Some(&o)).await;
        assert_eq!(
            r.body["data"].as_array().unwrap().len(),
            1,
            "{b}: {}",
            r.text
        );
        let r = s.get(&ws_path(&ws, ""), Some(&o)).await;
        assert_eq!(r.body["role"], "owner", "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Audit.

#[tokio::test]
async fn creating_rotating_and_revoking_are_audited_once_each_without_the_secret() {
    for s in servers().await {
        let b = s.backend();
        let (uid, o, _) = s.user("aude@example.com").await;
        let ws = id(&s.workspace(&o, "Trail", "trail").await);
        let k = create_key(&s, &o, &ws, "Traced", &["read", "write"]).await;
        let kid = id(&k);
        let first = secret(&k);
        let r = post_empty(&s, &ws_path(&ws, &format!("/api-keys/{kid}/rotate")), &o).await;
        assert_status(&r, 200, &format!("{b}: rotate"));
        let second = secret(&r.body);
        for n in 0..2 {
            assert_status(
                &delete(&s, &ws_path(&ws, &format!("/api-keys/{kid}")), &o).await,
                204,
                &format!("{b}: revoke {n}"),
            );
        }

        // A key acting: its own entries name it.
        let w = create_key(&s, &o, &ws, "Worker", &["write", "management"]).await;
        let (wid, w_secret) = (id(&w), secret(&w));
        let r = s
            .post(
                &ws_path(&ws, "/audit/events"),
                Some(&w_secret),
                json!({"action": "invoice.approve", "target": {"type": "invoice", "id": "inv_7"}}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: app event"));
        let x = create_key(&s, &w_secret, &ws, "Child of a key", &["write"]).await;
        let (xid, x_secret) = (id(&x), secret(&x));
        let r = post_empty(
            &s,
            &ws_path(&ws, &format!("/api-keys/{xid}/rotate")),
            &w_secret,
        )
        .await;
        assert_status(&r, 200, &format!("{b}: a key rotates a key"));
        let x_rotated = secret(&r.body);
        assert_status(
            &delete(&s, &ws_path(&ws, &format!("/api-keys/{xid}")), &w_secret).await,
            204,
            &format!("{b}: a key revokes a key"),
        );

        let events = workspace_audit(&s, &ws).await;
        let of = |target: &str| -> Vec<(&str, (String, String))> {
            events
                .iter()
                .filter(|e| e.target == pair("api_key", target))
                .map(|e| (e.action.as_str(), e.actor.clone()))
                .collect()
        };
        let by_owner = pair("user", &uid);
        assert_eq!(
            of(&kid),
            [
                ("api_key.create", by_owner.clone()),
                ("api_key.rotate", by_owner.clone()),
                ("api_key.revoke", by_owner.clone()),
            ],
            "{b}: one entry each, the second revocation none"
        );
        assert_eq!(of(&wid), [("api_key.create", by_owner.clone())], "{b}");
        let by_key = pair("api_key", &wid);
        assert_eq!(
            of(&xid),
            [
                ("api_key.create", by_key.clone()),
                ("api_key.rotate", by_key.clone()),
                ("api_key.revoke", by_key.clone()),
            ],
            "{b}"
        );
        let app: Vec<_> = events
            .iter()
            .filter(|e| e.action == "invoice.approve")
            .collect();
        assert_eq!(app.len(), 1, "{b}");
        assert_eq!(app[0].actor, by_key, "{b}");
        assert_eq!(app[0].target, pair("invoice", "inv_7"), "{b}");

        // No secret anywhere in the log: stored entries with their openings, and the API's view.
        let secrets = [&first, &second, &w_secret, &x_secret, &x_rotated];
        for e in &events {
            for key in secrets {
                assert!(
                    !e.raw_with_openings.contains(key.as_str())
                        && !e.raw_with_openings.contains(body_of(key)),
                    "{b}: {} holds a secret: {}",
                    e.action,
                    e.raw_with_openings
                );
            }
        }
        let r = s
            .get(&ws_path(&ws, "/audit/events?limit=200"), Some(&o))
            .await;
        assert_status(&r, 200, &format!("{b}: audit events"));
        assert!(
            r.text.contains(&kid),
            "{b}: the API shows the key's entries"
        );
        let r2 = s.get(&ws_path(&ws, "/audit/export"), Some(&o)).await;
        assert_status(&r2, 200, &format!("{b}: audit export"));
        for key in secrets {
            for text in [&r.text, &r2.text] {
                assert!(
                    !text.contains(key.as_str()) && !text.contains(body_of(key)),
                    "{b}: the audit API shows a secret"
                );
            }
        }
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Last use.

#[tokio::test]
async fn last_use_is_recorded_within_the_flush_interval() {
    for db in databases().await {
        let s = Server::start_with(db, |c| c.api_key_usage_flush_secs = 1).await;
        let b = s.backend();
        let (_, o, _) = s.user("lucy@example.com").await;
        let ws = id(&s.workspace(&o, "Usage", "usage").await);
        let k = create_key(&s, &o, &ws, "Used", &["read"]).await;
        let (kid, key) = (id(&k), secret(&k));
        let path = ws_path(&ws, &format!("/api-keys/{kid}"));
        assert_eq!(k["last_used_at"], Value::Null, "{b}");
        // Unused, nothing is recorded.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let r = s.get(&path, Some(&o)).await;
        assert_eq!(
            r.body["last_used_at"],
            Value::Null,
            "{b}: unused: {}",
            r.text
        );

        let before_use = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        assert_status(
            &s.get(&ws_path(&ws, ""), Some(&key)).await,
            200,
            &format!("{b}: use"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let last_used = loop {
            let r = s.get(&path, Some(&o)).await;
            assert_status(&r, 200, &format!("{b}: get"));
            if !r.body["last_used_at"].is_null() {
                break parse_time(&r.body["last_used_at"], b);
            }
            assert!(
                Instant::now() < deadline,
                "{b}: last_used_at still null after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            last_used >= before_use && last_used <= OffsetDateTime::now_utc(),
            "{b}: {last_used}"
        );
        let listed = list(&s, &o, &ws_path(&ws, "/api-keys")).await;
        assert_eq!(
            parse_time(&listed[0]["last_used_at"], b),
            last_used,
            "{b}: the list shows it too"
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Suspension.

#[tokio::test]
async fn a_suspended_childs_keys_are_refused_until_it_resumes() {
    for s in servers().await {
        let b = s.backend();
        let (_, p, _) = s.user("hera@example.com").await;
        let parent = id(&s.workspace(&p, "Holding", "holding").await);
        let r = s
            .post(
                &ws_path(&parent, "/children"),
                Some(&p),
                json!({"name": "Branch", "slug": "branch"}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: child"));
        let child = id(&r.body);
        let key = secret(&create_key(&s, &p, &child, "Branch key", &["read", "write"]).await);
        let event =
            json!({"action": "invoice.approve", "target": {"type": "invoice", "id": "inv_1"}});
        warm(&s, &ws_path(&child, ""), &key, 5, b).await;
        assert_status(
            &s.post(&ws_path(&child, "/audit/events"), Some(&key), event.clone())
                .await,
            201,
            &format!("{b}: event before suspension"),
        );
        // The child's key is nothing in the parent; the parent's keys do not manage children.
        s.get(&ws_path(&parent, ""), Some(&key))
            .await
            .assert_problem(
                404,
                "workspace_not_found",
                &format!("{b}: child key on parent"),
            );
        let parent_key =
            secret(&create_key(&s, &p, &parent, "Parent key", &["read", "management"]).await);
        post_empty(
            &s,
            &ws_path(&parent, &format!("/children/{child}/suspend")),
            &parent_key,
        )
        .await
        .assert_problem(403, "permission_denied", &format!("{b}: key suspends"));

        let r = post_empty(
            &s,
            &ws_path(&parent, &format!("/children/{child}/suspend")),
            &p,
        )
        .await;
        assert_status(&r, 200, &format!("{b}: suspend"));
        for path in ["", "/members"] {
            s.get(&ws_path(&child, path), Some(&key))
                .await
                .assert_problem(
                    403,
                    "workspace_suspended",
                    &format!("{b}: suspended GET {path}"),
                );
        }
        s.post(&ws_path(&child, "/audit/events"), Some(&key), event.clone())
            .await
            .assert_problem(403, "workspace_suspended", &format!("{b}: suspended POST"));

        let r = post_empty(
            &s,
            &ws_path(&parent, &format!("/children/{child}/resume")),
            &p,
        )
        .await;
        assert_status(&r, 200, &format!("{b}: resume"));
        warm(
            &s,
            &ws_path(&child, "/members"),
            &key,
            3,
            &format!("{b}: resumed"),
        )
        .await;
        assert_status(
            &s.post(&ws_path(&child, "/audit/events"), Some(&key), event.clone())
                .await,
            201,
            &format!("{b}: event after resumption"),
        );

        // Deleted: the workspace is gone for its keys too.
        assert_status(
            &delete(&s, &ws_path(&parent, &format!("/children/{child}")), &p).await,
            204,
            &format!("{b}: delete child"),
        );
        s.get(&ws_path(&child, ""), Some(&key))
            .await
            .assert_problem(404, "workspace_not_found", &format!("{b}: deleted child"));
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 11. The catalog.

#[tokio::test]
async fn the_permission_catalog_names_the_scopes_that_allow_each_permission() {
    let s = Server::start(palisade_store::testing::sqlite()).await;
    let r = s.get("/api/v1/permissions", None).await;
    assert_status(&r, 200, "catalog");
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 20, "{}", r.text);
    for p in data {
        let key = p["key"].as_str().unwrap();
        let expected: Vec<&str> = SCOPES
            .into_iter()
            .filter(|s| scope_permissions(s).contains(&key))
            .collect();
        assert_eq!(p["api_key_scopes"], json!(expected), "{key}");
        if OWNER_POWERS.contains(&key) {
            assert_eq!(p["api_key_scopes"], json!([]), "{key}");
        }
    }
    let by_key = |k: &str| {
        data.iter()
            .find(|p| p["key"] == k)
            .unwrap_or_else(|| panic!("{k} in the catalog"))["api_key_scopes"]
            .clone()
    };
    assert_eq!(by_key("records.read_draft"), json!(["read_draft"]));
    assert_eq!(by_key("workspace.delete"), json!([]));
    assert_eq!(by_key("api_keys.manage"), json!(["management"]));
    // Every scope's permission is in the catalog.
    let catalog: BTreeSet<String> = data
        .iter()
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect();
    assert!(union_of(&SCOPES).is_subset(&catalog));
    s.stop().await;
}
