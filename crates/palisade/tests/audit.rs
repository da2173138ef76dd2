//! The audit log end to end (AUDIT-SPEC): real API calls on both backends produce a log that
//! `palisade audit verify` and the independent Python verifier both accept; the tamper matrix
//! is caught by both; proofs verify against signed checkpoints; personal data stays committed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::audit::{python, run};
use common::{ADMIN, Server};
use palisade_audit::checkpoint::{self, Checkpoint, Jwk};
use palisade_audit::merkle::{self, MemoryTree};
use palisade_audit::{Hash, genesis, leaf_hash};
use palisade_store::testing::databases;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn servers() -> Vec<Server> {
    let mut out = Vec::new();
    for db in databases().await {
        out.push(Server::start_with(db, |c| c.audit_checkpoint_interval_secs = 1).await);
    }
    out
}

/// Polls until the workspace has a checkpoint of at least `size` entries.
async fn checkpoint_at_least(s: &Server, token: &str, ws: &str, size: u64) -> Value {
    for _ in 0..200 {
        let r = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/checkpoint"),
                Some(token),
            )
            .await;
        if r.status == StatusCode::OK && r.body["tree_size"].as_u64().unwrap() >= size {
            return r.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{}: no checkpoint of size {size}", s.backend());
}

async fn text(s: &Server, token: &str, path: &str) -> String {
    let r = s
        .client
        .get(format!("{}{path}", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.text().await.unwrap()
}

/// A log as a verifier receives it: three files in a directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(jwks: &Value, checkpoint: &Value, entries: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
        std::fs::write(dir.path().join("checkpoint.json"), checkpoint.to_string()).unwrap();
        std::fs::write(dir.path().join("entries.ndjson"), entries).unwrap();
        Self { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn add(&self, name: &str, v: &Value) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    }
}

fn verify_args(f: &Files, trusted: &[&Path]) -> Vec<String> {
    let mut args = vec![
        "--jwks".into(),
        f.path("jwks.json").display().to_string(),
        "--checkpoint".into(),
        f.path("checkpoint.json").display().to_string(),
        "--entries".into(),
        f.path("entries.ndjson").display().to_string(),
        "--json".into(),
    ];
    for t in trusted {
        args.push("--trusted-checkpoint".into());
        args.push(t.display().to_string());
    }
    args
}

/// Both verifiers on the same files: (Rust exit, Rust JSON, Python exit, Python JSON).
async fn both(f: &Files, trusted: &[&Path]) -> (i32, Value, Option<(i32, Value)>) {
    let mut rust_args = vec!["audit".to_owned(), "verify".to_owned()];
    rust_args.extend(verify_args(f, trusted));
    let (code, json) = run(env!("CARGO_BIN_EXE_palisade").into(), rust_args).await;
    let py = match python() {
        Some(python) => {
            let mut args = vec![
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../tests/verifier/verify.py"
                )
                .to_owned(),
            ];
            args.extend(verify_args(f, trusted));
            Some(run(python, args).await)
        }
        None => None,
    };
    (code, json, py)
}

async fn assert_verified(f: &Files, trusted: &[&Path], context: &str) -> Value {
    let (code, json, py) = both(f, trusted).await;
    assert_eq!(code, 0, "{context}: palisade audit verify: {json}");
    assert_eq!(json["status"], "verified", "{context}");
    if let Some((py_code, py_json)) = py {
        assert_eq!(py_code, 0, "{context}: verify.py: {py_json}");
        for k in ["status", "origin", "tree_size", "root", "entries"] {
            assert_eq!(json[k], py_json[k], "{context}: verifiers disagree on {k}");
        }
    }
    json
}

async fn assert_tampered(f: &Files, trusted: &[&Path], context: &str) {
    let (code, json, py) = both(f, trusted).await;
    assert_eq!(
        code, 1,
        "{context}: palisade audit verify must find tampering: {json}"
    );
    assert_eq!(json["status"], "tampered", "{context}");
    if let Some((py_code, py_json)) = py {
        assert_eq!(
            py_code, 1,
            "{context}: verify.py must find tampering: {py_json}"
        );
    }
}

/// Owner token, workspace id, and a log with a few real entries.
async fn busy_workspace(s: &Server, email: &str, slug: &str) -> (String, String) {
    let (_, token, _) = s.user(email).await;
    let ws = s.workspace(&token, "Audited", slug).await;
    let id = ws["id"].as_str().unwrap().to_owned();
    let r = s
        .patch(
            &format!("/api/v1/workspaces/{id}"),
            Some(&token),
            json!({"name": "Audited Ltd", "timezone": "Europe/Brussels"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .post(
            &format!("/api/v1/workspaces/{id}/audit/events"),
            Some(&token),
            json!({"action": "invoice.approve", "target": {"type": "invoice", "id": "inv_42"},
                   "data": {"amount_cents": 1250, "currency": "EUR"},
                   "personal": {"/customer_email": "buyer@example.org"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    (token, id)
}

async fn download(s: &Server, token: &str, ws: &str, size: u64) -> (Value, Value, String) {
    let cp = checkpoint_at_least(s, token, ws, size).await;
    let jwks = s
        .get(
            &format!("/api/v1/workspaces/{ws}/audit/jwks.json"),
            Some(token),
        )
        .await
        .body;
    let entries = text(s, token, &format!("/api/v1/workspaces/{ws}/audit/entries")).await;
    (jwks, cp, entries)
}

#[tokio::test]
async fn real_api_calls_produce_a_log_both_verifiers_accept() {
    for s in servers().await {
        let b = s.backend();
        let (token, ws) = busy_workspace(&s, "owner@example.com", "audited").await;
        let (_, admin, _) = s.user(ADMIN).await;
        let r = s
            .patch(
                &format!("/api/v1/admin/workspaces/{ws}"),
                Some(&admin),
                json!({"plan": "pro"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);

        // Every mutation is there, in order, decoded from the exact bytes.
        let r = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/events"),
                Some(&token),
            )
            .await;
        let actions: Vec<&str> = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|e| e["entry"]["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "workspace.create",
                "member.create",
                "workspace.update",
                "invoice.approve",
                "workspace.admin_update"
            ],
            "{b}"
        );
        let app = &r.body["data"][1];
        assert_eq!(
            app["entry"]["data"],
            json!({"amount_cents": 1250, "currency": "EUR"}),
            "{b}"
        );
        assert_eq!(
            app["openings"]["/customer_email"], "buyer@example.org",
            "{b}: opening beside the entry"
        );
        assert!(
            app["entry"]["pii"]["/customer_email"].is_string(),
            "{b}: commitment in the entry"
        );

        let (jwks, cp, entries) = download(&s, &token, &ws, 5).await;
        assert_eq!(
            cp["origin"],
            format!("{}/ws/{ws}", s.base.trim_start_matches("http://")),
            "{b}"
        );
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "{b}: no private key in the JWKS"
        );
        assert_eq!(jwks["audit_log"]["origin"], cp["origin"], "{b}");
        for line in entries.lines() {
            let raw = URL_SAFE_NO_PAD
                .decode(
                    serde_json::from_str::<Value>(line).unwrap()["entry"]
                        .as_str()
                        .unwrap(),
                )
                .unwrap();
            let raw = String::from_utf8(raw).unwrap();
            for secret in ["owner@example.com", "buyer@example.org", "127.0.0.1"] {
                assert!(
                    !raw.contains(secret),
                    "{b}: {secret} in clear in an entry: {raw}"
                );
            }
        }
        let files = Files::new(&jwks, &cp, &entries);
        let report = assert_verified(&files, &[], b).await;
        assert_eq!(report["entries"], 5, "{b}");
        assert!(
            report["pii"]["verified"].as_u64().unwrap() >= 5,
            "{b}: openings checked: {report}"
        );

        // The export verifies offline; the URLs verify online with a token.
        let tar = s
            .client
            .get(format!("{}/api/v1/workspaces/{ws}/audit/export", s.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(tar.headers()["content-type"], "application/x-tar");
        let export = files.path("export.tar");
        std::fs::write(&export, tar.bytes().await.unwrap()).unwrap();
        let (code, json) = run(
            env!("CARGO_BIN_EXE_palisade").into(),
            vec![
                "audit".into(),
                "verify".into(),
                "--export".into(),
                export.display().to_string(),
                "--json".into(),
            ],
        )
        .await;
        assert_eq!(
            (code, &json["status"]),
            (0, &json!("verified")),
            "{b}: export: {json}"
        );
        let base = format!("{}/api/v1/workspaces/{ws}/audit", s.base);
        let (code, json) = run(
            env!("CARGO_BIN_EXE_palisade").into(),
            vec![
                "audit".into(),
                "verify".into(),
                "--jwks".into(),
                format!("{base}/jwks.json"),
                "--checkpoint".into(),
                format!("{base}/checkpoint"),
                "--entries".into(),
                format!("{base}/entries"),
                "--token".into(),
                token.clone(),
                "--json".into(),
            ],
        )
        .await;
        assert_eq!(
            (code, &json["status"]),
            (0, &json!("verified")),
            "{b}: online: {json}"
        );
        let (code, _) = run(
            env!("CARGO_BIN_EXE_palisade").into(),
            vec![
                "audit".into(),
                "verify".into(),
                "--export".into(),
                "/nonexistent.tar".into(),
            ],
        )
        .await;
        assert_eq!(code, 2, "{b}: I/O error is exit 2");

        // The checkpoint's JWS verifies with PyJWT against the workspace JWKS.
        if let Some(python) = python() {
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/verifier/jws_pyjwt.py"
            )
            .to_owned();
            let (code, out) = run(
                python,
                vec![
                    script,
                    files.path("jwks.json").display().to_string(),
                    files.path("checkpoint.json").display().to_string(),
                ],
            )
            .await;
            assert_eq!(code, 0, "{b}: PyJWT: {out}");
        }
        s.stop().await;
    }
}

fn lines(entries: &str) -> Vec<Value> {
    entries
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// A JWS over `body` with an arbitrary header and signature bytes.
fn forged_jws(header: &Value, body: &str, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(body),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// Rebuilds a whole log from `entries` (re-chained) and signs it with a new key: what an
/// operator replacing history would serve.
fn replaced_log(entries: &[Value], origin: &str) -> (Value, Value, String) {
    let key = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let mut prev: Hash = [0; 32];
    let mut tree = MemoryTree::default();
    let mut out = Vec::new();
    for (i, line) in entries.iter().enumerate() {
        let raw = URL_SAFE_NO_PAD
            .decode(line["entry"].as_str().unwrap())
            .unwrap();
        let mut e: Value = serde_json::from_slice(&raw).unwrap();
        if i == 0 {
            prev = genesis(e["ws"].as_str().unwrap());
        }
        if i == 2 {
            e["diff"] = json!({"/name": ["Audited", "Something else"]});
        }
        e["prev"] = json!(palisade_audit::b64url(&prev));
        let bytes = palisade_audit::jcs::canonical(&e).unwrap();
        prev = leaf_hash(&bytes);
        tree.push(prev);
        let mut l = line.clone();
        l["entry"] = json!(URL_SAFE_NO_PAD.encode(&bytes));
        out.push(l);
    }
    let cp = Checkpoint {
        origin: origin.to_owned(),
        size: tree.size(),
        root: tree.root(),
    };
    let body = cp.body();
    let signed = json!({"body": body, "jws": checkpoint::sign_jws(&key, &body), "note": checkpoint::sign_note(&key, origin, &body)});
    let jwks = json!({"keys": [Jwk::ed25519(&key.verifying_key())], "audit_log": {"origin": origin, "daily": [], "min_index": 0}});
    (jwks, signed, ndjson(&out))
}

#[tokio::test]
async fn tamper_matrix_is_detected_by_both_verifiers() {
    for s in servers().await {
        let b = s.backend();
        let (token, ws) = busy_workspace(&s, "owner@example.com", "tampered").await;
        // An archived checkpoint, then more history and a newer one.
        let (_, archived, _) = download(&s, &token, &ws, 4).await;
        for i in 0..4 {
            let r = s
                .patch(
                    &format!("/api/v1/workspaces/{ws}"),
                    Some(&token),
                    json!({"name": format!("Name {i}")}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{b}");
        }
        let (jwks, cp, entries) = download(&s, &token, &ws, 8).await;
        let files = Files::new(&jwks, &cp, &entries);
        let archived_path = files.add("archived.json", &archived);
        assert_verified(
            &files,
            &[&archived_path],
            &format!("{b}: untouched, with the archived checkpoint"),
        )
        .await;
        let original = lines(&entries);

        let case = |name: &str, lines: Vec<Value>| {
            (name.to_owned(), Files::new(&jwks, &cp, &ndjson(&lines)))
        };
        let mut cases = Vec::new();
        let mut deleted = original.clone();
        deleted.remove(3);
        cases.push(case("an entry deleted", deleted));
        let mut inserted = original.clone();
        let mut extra = original[2].clone();
        extra["seq"] = json!(3);
        inserted.insert(3, extra);
        cases.push(case("an entry inserted", inserted));
        let mut reordered = original.clone();
        reordered.swap(2, 3);
        cases.push(case("two entries reordered", reordered));
        let mut altered = original.clone();
        let opened = altered
            .iter_mut()
            .find(|l| !l["pii"].as_array().unwrap().is_empty())
            .unwrap();
        opened["pii"][0]["value"] = json!("198.51.100.1");
        cases.push(case("an opening altered", altered));
        let mut unexplained = original.clone();
        unexplained[1]["pii"] = json!([]);
        cases.push(case("an opening removed without an erasure", unexplained));
        for (name, f) in &cases {
            assert_tampered(f, &[], &format!("{b}: {name}")).await;
        }

        // Truncated below the archived checkpoint, presented with an older genuine checkpoint.
        let truncated = Files::new(&jwks, &archived, &ndjson(&original[..4]));
        let newer = truncated.add("newer.json", &cp);
        assert_tampered(
            &truncated,
            &[&newer],
            &format!("{b}: truncated below an archived checkpoint"),
        )
        .await;

        // The whole log replaced and re-signed with another key: it verifies on its own,
        // and fails against the checkpoint the customer archived.
        let (fake_jwks, fake_cp, fake_entries) =
            replaced_log(&original, cp["origin"].as_str().unwrap());
        let replaced = Files::new(&fake_jwks, &fake_cp, &fake_entries);
        assert_verified(
            &replaced,
            &[],
            &format!("{b}: a replaced log is self-consistent"),
        )
        .await;
        let archived_in = replaced.add("archived.json", &archived);
        assert_tampered(
            &replaced,
            &[&archived_in],
            &format!("{b}: replaced and re-signed"),
        )
        .await;

        // Checkpoints signed with `alg: none` or HS256 (keyed with the public key).
        let body = cp["body"].as_str().unwrap();
        let kid = jwks["keys"][0]["kid"].as_str().unwrap();
        let none = forged_jws(&json!({"alg": "none", "kid": kid}), body, b"");
        let x = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        let hs_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": kid}).to_string()),
            URL_SAFE_NO_PAD.encode(body)
        );
        let mac = hmac_sha256(&x, hs_input.as_bytes());
        let hs256 = format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(mac));
        for (name, jws) in [("alg none", none), ("HS256", hs256)] {
            let forged = json!({"body": body, "jws": jws});
            assert_tampered(
                &Files::new(&jwks, &forged, &entries),
                &[],
                &format!("{b}: checkpoint signed with {name}"),
            )
            .await;
        }

        // An entry's bytes modified in the database itself (the attacker drops the guard).
        modify_entry_in_database(&s, &ws).await;
        let entries = text(
            &s,
            &token,
            &format!("/api/v1/workspaces/{ws}/audit/entries"),
        )
        .await;
        assert_tampered(
            &Files::new(&jwks, &cp, &entries),
            &[],
            &format!("{b}: entry bytes modified in the database"),
        )
        .await;
        s.stop().await;
    }
}

/// HMAC-SHA256 (RustCrypto), for forging an HS256 checkpoint keyed with the public key.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Rewrites entry 2's bytes (its action) straight in the database, as someone with file or
/// superuser access would: the application role cannot.
async fn modify_entry_in_database(s: &Server, ws: &str) {
    use sqlx::Connection as _;
    if s.backend() == "sqlite" {
        let path = s.db.url.strip_prefix("sqlite:").unwrap();
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER audit_entries_no_update")
            .execute(&mut conn)
            .await
            .unwrap();
        let n = sqlx::query("UPDATE audit_entries SET entry = CAST(replace(CAST(entry AS TEXT), 'workspace.update', 'workspace.viewed') AS BLOB) WHERE log_id = $1 AND seq = 2")
            .bind(ws)
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(n.rows_affected(), 1);
    } else {
        let mut conn = sqlx::PgConnection::connect(&s.db.url).await.unwrap();
        sqlx::query("ALTER TABLE audit_entries DISABLE ROW LEVEL SECURITY")
            .execute(&mut conn)
            .await
            .unwrap();
        let n = sqlx::query("UPDATE audit_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'), 'workspace.update', 'workspace.viewed'), 'UTF8') WHERE log_id = $1 AND seq = 2")
            .bind(ws)
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(n.rows_affected(), 1);
        sqlx::query("ALTER TABLE audit_entries ENABLE ROW LEVEL SECURITY")
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn inclusion_and_consistency_proofs_verify_against_signed_checkpoints() {
    for s in servers().await {
        let b = s.backend();
        let (token, ws) = busy_workspace(&s, "owner@example.com", "proofs").await;
        let (_, first, _) = download(&s, &token, &ws, 4).await;
        for i in 0..13 {
            s.patch(
                &format!("/api/v1/workspaces/{ws}"),
                Some(&token),
                json!({"name": format!("Name {i}")}),
            )
            .await;
        }
        let (jwks, cp, entries) = download(&s, &token, &ws, 17).await;
        let keys: Vec<Jwk> = serde_json::from_value(jwks["keys"].clone()).unwrap();
        let signed = |c: &Value| {
            let (body, _) = checkpoint::verify_jws(c["jws"].as_str().unwrap(), &keys).unwrap();
            Checkpoint::parse(&body).unwrap()
        };
        let (old, new) = (signed(&first), signed(&cp));
        let leaves: Vec<Hash> = lines(&entries)
            .iter()
            .map(|l| {
                leaf_hash(
                    &URL_SAFE_NO_PAD
                        .decode(l["entry"].as_str().unwrap())
                        .unwrap(),
                )
            })
            .collect();
        let decode = |v: &Value| -> Vec<Hash> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    STANDARD
                        .decode(h.as_str().unwrap())
                        .unwrap()
                        .try_into()
                        .unwrap()
                })
                .collect()
        };
        for seq in [0, 1, new.size / 2, new.size - 1] {
            let r = s
                .get(
                    &format!(
                        "/api/v1/workspaces/{ws}/audit/proof/inclusion?seq={seq}&tree_size={}",
                        new.size
                    ),
                    Some(&token),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
            let proof = decode(&r.body["hashes"]);
            assert!(
                merkle::verify_inclusion(seq, new.size, &leaves[seq as usize], &proof, &new.root),
                "{b}: inclusion of {seq}"
            );
            assert!(
                !merkle::verify_inclusion(seq, new.size, &leaf_hash(b"forged"), &proof, &new.root),
                "{b}"
            );
        }
        for (m, n) in [
            (old.size, new.size),
            (1, new.size),
            (3, 9),
            (new.size, new.size),
        ] {
            let r = s
                .get(
                    &format!(
                        "/api/v1/workspaces/{ws}/audit/proof/consistency?first={m}&second={n}"
                    ),
                    Some(&token),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
            let proof = decode(&r.body["hashes"]);
            let mut tree = MemoryTree::default();
            leaves[..m as usize].iter().for_each(|l| tree.push(*l));
            let m_root = if m == old.size { old.root } else { tree.root() };
            let mut tree = MemoryTree::default();
            leaves[..n as usize].iter().for_each(|l| tree.push(*l));
            let n_root = if n == new.size { new.root } else { tree.root() };
            assert!(
                merkle::verify_consistency(m, n, &proof, &m_root, &n_root),
                "{b}: consistency {m}..{n}"
            );
        }
        // Bad parameters are named; nothing beyond the log is proved.
        let r = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/proof/inclusion?seq=x"),
                Some(&token),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        assert_eq!(r.body["errors"][0]["parameter"], "seq", "{b}: {}", r.text);
        let r = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/proof/inclusion?seq=1&tree_size=9999"),
                Some(&token),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        assert_eq!(r.body["errors"][0]["parameter"], "tree_size", "{b}");
        s.stop().await;
    }
}

#[tokio::test]
async fn audit_endpoints_are_tenant_scoped_and_app_events_are_validated() {
    for s in servers().await {
        let b = s.backend();
        let (token, ws) = busy_workspace(&s, "owner@example.com", "mine").await;
        let (_, other, _) = s.user("other@example.com").await;
        checkpoint_at_least(&s, &token, &ws, 4).await;
        for path in [
            "events",
            "entries",
            "checkpoint",
            "checkpoints/2026-11-21",
            "proof/inclusion?seq=0&tree_size=1",
            "proof/consistency?first=1&second=2",
            "jwks.json",
            "export",
        ] {
            let r = s
                .get(
                    &format!("/api/v1/workspaces/{ws}/audit/{path}"),
                    Some(&other),
                )
                .await;
            r.assert_problem(404, "workspace_not_found", &format!("{b}: {path}"));
        }
        let r = s
            .post(
                &format!("/api/v1/workspaces/{ws}/audit/events"),
                Some(&other),
                json!({"action": "a.b", "target": {"type": "t", "id": "1"}}),
            )
            .await;
        r.assert_problem(404, "workspace_not_found", b);

        let before = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/events"),
                Some(&token),
            )
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .len();
        for (body, pointer) in [
            (
                json!({"action": "workspace.delete", "target": {"type": "t", "id": "1"}}),
                "/action",
            ),
            (
                json!({"action": "Bad Action", "target": {"type": "t", "id": "1"}}),
                "/action",
            ),
            (
                json!({"action": "invoice.pay", "target": {"type": "", "id": "1"}}),
                "/target/type",
            ),
            (
                json!({"action": "invoice.pay", "target": {"type": "t", "id": "1"}, "data": {"total": 12.5}}),
                "/data",
            ),
            (
                json!({"action": "invoice.pay", "target": {"type": "t", "id": "1"}, "result": "maybe"}),
                "/result",
            ),
            (
                json!({"action": "invoice.pay", "target": {"type": "t", "id": "1"}, "personal": {"/ip": "1.2.3.4"}}),
                "/personal//ip",
            ),
            (
                json!({"action": "invoice.pay", "target": {"type": "t", "id": "1"}, "data": {"blob": "x".repeat(70_000)}}),
                "/data",
            ),
        ] {
            let r = s
                .post(
                    &format!("/api/v1/workspaces/{ws}/audit/events"),
                    Some(&token),
                    body,
                )
                .await;
            r.assert_problem(422, "validation_failed", b);
            assert!(
                r.pointers().contains(&pointer.to_owned()),
                "{b}: {pointer} in {}",
                r.text
            );
        }
        let after = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/events"),
                Some(&token),
            )
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(before, after, "{b}: refused events write nothing");

        // Filters.
        let r = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/events?action=invoice.approve&gdpr=true"),
                Some(&token),
            )
            .await;
        assert_eq!(
            r.body["data"].as_array().unwrap().len(),
            1,
            "{b}: {}",
            r.text
        );
        let r = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/events?limit=2"),
                Some(&token),
            )
            .await;
        let cursor = r.body["next_cursor"].as_str().unwrap().to_owned();
        let r2 = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/events?limit=2&cursor={cursor}"),
                Some(&token),
            )
            .await;
        assert!(
            r2.body["data"][0]["seq"].as_u64() < r.body["data"][1]["seq"].as_u64(),
            "{b}"
        );
        let r = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/events?since=yesterday"),
                Some(&token),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        assert_eq!(r.body["errors"][0]["parameter"], "since", "{b}");
        s.stop().await;
    }
}

#[tokio::test]
async fn sign_in_failures_land_in_the_instance_log_committed_and_users_see_their_own() {
    for s in servers().await {
        let b = s.backend();
        let (_, token, _) = s.user("me@example.com").await;
        for email in ["me@example.com", "nobody@example.com"] {
            let r = s
                .post(
                    "/api/v1/auth/login",
                    None,
                    json!({"email": email, "password": "wrong password here"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{b}");
        }
        let r = s.get("/api/v1/me/security-events", Some(&token)).await;
        assert_eq!(r.status, StatusCode::OK, "{b}: {}", r.text);
        let actions: Vec<&str> = r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["entry"]["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "auth.sign_in_failed",
                "auth.sign_in",
                "auth.email_verified",
                "user.sign_up"
            ],
            "{b}: only mine, newest first"
        );
        let failed = &r.body["data"][0];
        assert_eq!(failed["entry"]["result"], "denied", "{b}");
        assert_eq!(failed["entry"]["ws"], "instance", "{b}");
        assert!(
            failed["entry"]["pii"]["/ip"].is_string(),
            "{b}: IP committed"
        );
        assert_eq!(
            failed["openings"]["/ip"], "127.0.0.1",
            "{b}: and opened for its owner"
        );

        // In the store: the unknown address is only a commitment; no entry holds an email or IP.
        let store = s.store().await;
        let mut tx = store
            .accounts(None, palisade_core::store::Access::Read)
            .await
            .unwrap();
        let all = tx.audit_entries(0, 1000).await.unwrap();
        let unknown = all
            .iter()
            .find(|e| {
                e.openings
                    .iter()
                    .any(|o| o.value == json!("nobody@example.com"))
            })
            .expect("the unknown address is opened beside the log");
        let entry: Value = serde_json::from_slice(&unknown.bytes).unwrap();
        assert_eq!(entry["action"], "auth.sign_in_failed", "{b}");
        assert!(entry["pii"]["/email"].is_string(), "{b}");
        for e in &all {
            let raw = String::from_utf8(e.bytes.clone()).unwrap();
            for secret in ["@example.com", "127.0.0.1"] {
                assert!(!raw.contains(secret), "{b}: {secret} in clear: {raw}");
            }
        }
        let r = s
            .get("/api/v1/me/security-events?limit=0", Some(&token))
            .await;
        r.assert_problem(422, "validation_failed", b);
        s.stop().await;
    }
}

#[tokio::test]
async fn latest_checkpoint_is_signed_at_most_once_per_interval() {
    for db in databases().await {
        let s = Server::start_with(db, |c| c.audit_checkpoint_interval_secs = 3600).await;
        let b = s.backend();
        let (token, ws) = busy_workspace(&s, "owner@example.com", "slow").await;
        let first = checkpoint_at_least(&s, &token, &ws, 4).await;
        s.patch(
            &format!("/api/v1/workspaces/{ws}"),
            Some(&token),
            json!({"name": "Later"}),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let again = s
            .get(
                &format!("/api/v1/workspaces/{ws}/audit/checkpoint"),
                Some(&token),
            )
            .await
            .body;
        assert_eq!(
            again["tree_size"], first["tree_size"],
            "{b}: no second checkpoint within the interval"
        );
        assert_eq!(again["jws"], first["jws"], "{b}");
        s.stop().await;
    }
}
