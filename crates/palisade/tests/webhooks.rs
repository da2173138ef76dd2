//! End-to-end tests of webhooks (issue 10, WHK-1 … WHK-5): endpoints and their audit, the event
//! catalog, the transactional outbox, signatures checked by a real receiver process with the
//! Python `standardwebhooks` package, retries on schedule, redelivery, dead letters, disabling,
//! field permissions in payloads, SSRF refusals, and a server killed mid-load: the real server
//! over real HTTP, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use common::audit::{pair, workspace_audit};
use common::records::{collection, create, create_key, record, records};
use common::webhooks::{
    Receiver, assert_all_verified, create_webhook, deliveries, deliveries_when, delivery,
    webhook_to,
};
use common::{Server, assert_status, id, join, ws_path};
use palisade_store::testing::databases;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ALL_RECORD_EVENTS: &[&str] = &["record.created", "record.updated", "record.deleted"];

/// A server that may deliver to 127.0.0.1 (and nothing else non-public), with `schedule` as
/// its retry waits in seconds.
async fn server_with(db: palisade_store::testing::TestDb, schedule: &[u64]) -> Server {
    let schedule = schedule.to_vec();
    Server::start_with(db, move |c| {
        c.webhooks.allow_cidrs = vec!["127.0.0.1/32".into()];
        c.webhooks.retry_schedule_secs = schedule;
        c.webhooks.timeout_secs = 3;
    })
    .await
}

fn parse_time(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

/// A collection `notes` with one text field `title`.
async fn notes(s: &Server, token: &str, ws: &str) {
    collection(
        s,
        token,
        ws,
        "notes",
        json!([{"name": "title", "type": "text"}]),
    )
    .await;
}

/// Owner `email` with workspace `slug`: (token, workspace id).
async fn owner_with_workspace(s: &Server, email: &str, slug: &str) -> (String, String) {
    let (_, token, _) = s.user(email).await;
    let ws = id(&s.workspace(&token, slug, slug).await);
    (token, ws)
}

#[tokio::test]
async fn endpoints_are_managed_audited_and_isolated_and_the_catalog_lists_every_event() {
    for db in databases().await {
        let s = server_with(db, &[1]).await;
        let b = s.backend();
        let (token, ws) = owner_with_workspace(&s, "owner@example.com", "acme").await;
        let (other_token, other_ws) = owner_with_workspace(&s, "other@example.com", "globex").await;

        let catalog = s.get("/api/v1/webhook-events", None).await;
        assert_status(&catalog, 200, b);
        let names: BTreeSet<&str> = catalog.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        for name in [
            "record.created",
            "record.updated",
            "record.deleted",
            "collection.created",
            "collection.updated",
            "collection.deleted",
            "member.added",
            "member.updated",
            "member.removed",
            "api_key.created",
            "api_key.rotated",
            "api_key.revoked",
        ] {
            assert!(names.contains(name), "{b}: catalog lacks {name}");
        }
        for t in catalog.body["data"].as_array().unwrap() {
            assert_eq!(t["schema"]["type"], "object", "{b}: {t}");
        }

        // Bad input: every problem named, nothing created.
        let r = s
            .post(
                &ws_path(&ws, "/webhooks"),
                Some(&token),
                json!({"url": "ftp://example.com/x", "events": ["record.created", "record.nope"]}),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        let pointers = r.pointers();
        assert!(pointers.contains(&"/url".to_owned()), "{b}: {pointers:?}");
        assert!(
            pointers.contains(&"/events/1".to_owned()),
            "{b}: {pointers:?}"
        );
        let r = s
            .post(
                &ws_path(&ws, "/webhooks"),
                Some(&token),
                json!({"url": "http://127.0.0.1:9/x", "events": []}),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        assert_eq!(r.pointers(), ["/events"], "{b}");
        let r = s
            .post(
                &ws_path(&ws, "/webhooks"),
                Some(&token),
                json!({"url": "http://127.0.0.1:9/x", "events": ["record.created"], "secret": "mine"}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 422, "{b}: unknown member: {}", r.text);
        let list = s.get(&ws_path(&ws, "/webhooks"), Some(&token)).await;
        assert_eq!(list.body["data"], json!([]), "{b}: nothing created");

        // Create, read, list, change, rotate, delete.
        let receiver = Receiver::start(&[]);
        let (hook, secret) = webhook_to(&s, &token, &ws, &receiver, &["record.created"]).await;
        let got = s
            .get(&ws_path(&ws, &format!("/webhooks/{hook}")), Some(&token))
            .await;
        assert_status(&got, 200, b);
        assert_eq!(got.body["url"], receiver.url(), "{b}");
        assert_eq!(got.body["enabled"], true, "{b}");
        assert!(
            got.body.get("secret").is_none(),
            "{b}: the secret is shown once"
        );
        assert!(!got.text.contains(&secret[6..]), "{b}");
        let list = s.get(&ws_path(&ws, "/webhooks"), Some(&token)).await;
        assert_eq!(list.body["data"].as_array().unwrap().len(), 1, "{b}");
        assert!(!list.text.contains(&secret[6..]), "{b}");

        let r = s
            .patch(
                &ws_path(&ws, &format!("/webhooks/{hook}")),
                Some(&token),
                json!({"events": ["record.updated", "record.created"], "description": "changed"}),
            )
            .await;
        assert_status(&r, 200, b);
        assert_eq!(
            r.body["events"],
            json!(["record.created", "record.updated"]),
            "{b}"
        );
        let r = s
            .patch(
                &ws_path(&ws, &format!("/webhooks/{hook}")),
                Some(&token),
                json!({"url": "http://10.0.0.1/x"}),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        assert_eq!(r.pointers(), ["/url"], "{b}");
        let after = s
            .get(&ws_path(&ws, &format!("/webhooks/{hook}")), Some(&token))
            .await;
        assert_eq!(
            after.body["url"],
            receiver.url(),
            "{b}: a refused patch changes nothing"
        );

        let rotated = s
            .post(
                &ws_path(&ws, &format!("/webhooks/{hook}/rotate-secret")),
                Some(&token),
                json!({}),
            )
            .await;
        assert_status(&rotated, 200, b);
        let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
        assert_ne!(new_secret, secret, "{b}");
        let overlap =
            parse_time(&rotated.body["previous_secret_expires_at"]) - OffsetDateTime::now_utc();
        assert!(
            overlap > time::Duration::hours(23) && overlap <= time::Duration::hours(24),
            "{b}: {overlap}"
        );

        // One delivery, to reach its endpoints too.
        notes(&s, &token, &ws).await;
        create(&s, &token, &ws, "notes", json!({"title": "t"})).await;
        receiver
            .wait(Duration::from_secs(30), |l| !l.is_empty())
            .await;
        let dlv = deliveries(&s, &token, &ws, &hook).await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();

        // Another workspace's owner reaches none of it; a plain member may not manage it.
        for (method, path) in [
            ("GET", format!("/webhooks/{hook}")),
            ("PATCH", format!("/webhooks/{hook}")),
            ("DELETE", format!("/webhooks/{hook}")),
            ("POST", format!("/webhooks/{hook}/rotate-secret")),
            ("GET", format!("/webhooks/{hook}/deliveries")),
            ("GET", format!("/webhooks/{hook}/deliveries/{dlv}")),
            (
                "POST",
                format!("/webhooks/{hook}/deliveries/{dlv}/redeliver"),
            ),
        ] {
            let r = s
                .call(
                    method.parse().unwrap(),
                    &ws_path(&other_ws, &path),
                    Some(&other_token),
                    (method == "PATCH").then(|| json!({"description": "x"})),
                )
                .await;
            r.assert_problem(404, "webhook_not_found", &format!("{b}: {method} {path}"));
            let r = s
                .call(
                    method.parse().unwrap(),
                    &ws_path(&ws, &path),
                    Some(&other_token),
                    (method == "PATCH").then(|| json!({"description": "x"})),
                )
                .await;
            r.assert_problem(404, "workspace_not_found", &format!("{b}: {method} {path}"));
        }
        let other_list = s
            .get(&ws_path(&other_ws, "/webhooks"), Some(&other_token))
            .await;
        assert_eq!(other_list.body["data"], json!([]), "{b}");
        // Nor through an endpoint of its own.
        let other_receiver = Receiver::start(&[]);
        let (other_hook, _) = webhook_to(
            &s,
            &other_token,
            &other_ws,
            &other_receiver,
            &["record.created"],
        )
        .await;
        let r = s
            .get(
                &ws_path(
                    &other_ws,
                    &format!("/webhooks/{other_hook}/deliveries/{dlv}"),
                ),
                Some(&other_token),
            )
            .await;
        r.assert_problem(404, "delivery_not_found", b);
        let r = s
            .post(
                &ws_path(
                    &other_ws,
                    &format!("/webhooks/{other_hook}/deliveries/{dlv}/redeliver"),
                ),
                Some(&other_token),
                json!({}),
            )
            .await;
        r.assert_problem(404, "delivery_not_found", b);
        assert!(
            deliveries(&s, &other_token, &other_ws, &other_hook)
                .await
                .is_empty(),
            "{b}"
        );
        assert!(
            other_receiver.lines().is_empty(),
            "{b}: nothing of another workspace"
        );
        let (_, member, _) = s.user("member@example.com").await;
        join(&s, &token, &ws, "member@example.com", &member, "member").await;
        let r = s.get(&ws_path(&ws, "/webhooks"), Some(&member)).await;
        r.assert_problem(403, "permission_denied", b);

        let r = s
            .call(
                reqwest::Method::DELETE,
                &ws_path(&ws, &format!("/webhooks/{hook}")),
                Some(&token),
                None,
            )
            .await;
        assert_status(&r, 204, b);
        let r = s
            .get(&ws_path(&ws, &format!("/webhooks/{hook}")), Some(&token))
            .await;
        r.assert_problem(404, "webhook_not_found", b);

        // Each change is one entry of the workspace's log, never with a secret.
        let log = workspace_audit(&s, &ws).await;
        let target = pair("webhook", &hook);
        let actions: Vec<&str> = log
            .iter()
            .filter(|e| e.target == target)
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(
            actions,
            [
                "webhook.create",
                "webhook.update",
                "webhook.rotate_secret",
                "webhook.delete"
            ],
            "{b}"
        );
        let raw: Vec<String> = s
            .workspace_log(&ws)
            .await
            .into_iter()
            .map(|e| String::from_utf8_lossy(&e.bytes).into_owned())
            .collect();
        for secret in [&secret, &new_secret] {
            assert!(
                !raw.iter().any(|e| e.contains(&secret[6..])),
                "{b}: a secret in the log"
            );
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn every_delivery_verifies_with_standard_webhooks_and_payloads_follow_field_permissions() {
    for db in databases().await {
        let s = server_with(db, &[1]).await;
        let b = s.backend();
        let (token, ws) = owner_with_workspace(&s, "owner@example.com", "acme").await;
        collection(
            &s,
            &token,
            &ws,
            "notes",
            json!([
                {"name": "title", "type": "text"},
                {"name": "secret", "type": "text", "encrypted": true},
            ]),
        )
        .await;
        let receiver = Receiver::start(&[]);
        let (hook, secret) = webhook_to(
            &s,
            &token,
            &ws,
            &receiver,
            &[
                "record.created",
                "record.updated",
                "record.deleted",
                "collection.updated",
                "api_key.created",
            ],
        )
        .await;

        let a = create(
            &s,
            &token,
            &ws,
            "notes",
            json!({"title": "first", "secret": "s3cret-value"}),
        )
        .await;
        let draft = create(
            &s,
            &token,
            &ws,
            "notes",
            json!({"title": "draft", "status": "draft"}),
        )
        .await;
        let r = s
            .patch(
                &record(&ws, "notes", &id(&a)),
                Some(&token),
                json!({"title": "renamed"}),
            )
            .await;
        assert_status(&r, 200, b);
        let r = s
            .call(
                reqwest::Method::DELETE,
                &record(&ws, "notes", &id(&draft)),
                Some(&token),
                None,
            )
            .await;
        assert_status(&r, 204, b);
        create_key(&s, &token, &ws, &["read"]).await;
        // Not subscribed: no delivery.
        collection(
            &s,
            &token,
            &ws,
            "other",
            json!([{"name": "x", "type": "text"}]),
        )
        .await;

        let lines = receiver
            .wait(Duration::from_secs(30), |l| l.len() >= 5)
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let lines = {
            let more = receiver.lines();
            assert_eq!(
                more.len(),
                lines.len(),
                "{b}: nothing beyond the subscribed events"
            );
            more
        };
        assert_all_verified(&lines, b);
        let types: BTreeMap<String, usize> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
            *m.entry(l["body"]["type"].as_str().unwrap().to_owned())
                .or_default() += 1;
            m
        });
        assert_eq!(
            types,
            BTreeMap::from([
                ("api_key.created".to_owned(), 1),
                ("record.created".to_owned(), 2),
                ("record.deleted".to_owned(), 1),
                ("record.updated".to_owned(), 1),
            ]),
            "{b}"
        );
        let ids: HashSet<&str> = lines
            .iter()
            .map(|l| l["webhook_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), lines.len(), "{b}: one webhook-id per event");
        let created = lines
            .iter()
            .find(|l| l["body"]["type"] == "record.created" && l["body"]["data"]["id"] == id(&a))
            .unwrap();
        assert_eq!(created["body"]["data"]["title"], "first", "{b}");
        assert_eq!(
            created["body"]["data"]["secret"], "s3cret-value",
            "{b}: opened for the owner"
        );
        assert_eq!(created["body"]["workspace_id"], ws.as_str(), "{b}");
        assert_eq!(created["body"]["data"]["collection"], "notes", "{b}");
        let updated = lines
            .iter()
            .find(|l| l["body"]["type"] == "record.updated")
            .unwrap();
        assert_eq!(updated["body"]["data"]["title"], "renamed", "{b}");
        assert_eq!(updated["body"]["data"]["version"], 2, "{b}");
        for l in &lines {
            let key = &l["body"]["data"];
            assert!(key.get("key").is_none(), "{b}: never an API key secret");
        }

        // Deliveries and their attempts are visible; the payload shown is the one sent.
        let list = deliveries(&s, &token, &ws, &hook).await;
        assert_eq!(list.len(), 5, "{b}");
        for d in &list {
            assert_eq!(d["status"], "succeeded", "{b}: {d}");
            assert_eq!(d["attempts"], 1, "{b}");
            let detail = delivery(&s, &token, &ws, &hook, d["id"].as_str().unwrap()).await;
            let attempts = detail["attempt_history"].as_array().unwrap();
            assert_eq!(attempts.len(), 1, "{b}");
            assert_eq!(attempts[0]["status_code"], 204, "{b}");
            assert_eq!(attempts[0]["error"], Value::Null, "{b}");
            assert_eq!(attempts[0]["trigger"], "schedule", "{b}");
            assert!(attempts[0]["latency_ms"].as_i64().unwrap() >= 0, "{b}");
            let sent = lines
                .iter()
                .find(|l| l["webhook_id"] == detail["event_id"])
                .unwrap();
            assert_eq!(detail["payload"], sent["body"], "{b}");
        }

        // A second endpoint made by an admin whose custom role cannot read `secret`.
        let (_, admin, _) = s.user(common::ADMIN).await;
        common::enable_modules(&s, &admin, &ws, &["advanced_rbac"]).await;
        let (_, limited, _) = s.user("limited@example.com").await;
        let limited_member = join(&s, &token, &ws, "limited@example.com", &limited, "admin").await;
        common::give_custom_role(
            &s,
            &token,
            &ws,
            &limited_member,
            json!({"name": "No secrets", "base_role": "admin",
                   "permissions": ["workspace.read", "webhooks.manage", "records.read", "records.write"],
                   "fields": [{"collection": "notes", "field": "title", "read": true, "write": true}]}),
        )
        .await;
        // Events it could never receive are refused by name.
        let r = s
            .post(
                &ws_path(&ws, "/webhooks"),
                Some(&limited),
                json!({"url": "http://127.0.0.1:9/x", "events": ["record.created", "member.added", "audit.checkpoint.signed"]}),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        assert_eq!(r.pointers(), ["/events/1", "/events/2"], "{b}");
        let limited_receiver = Receiver::start(&[]);
        webhook_to(&s, &limited, &ws, &limited_receiver, &["record.created"]).await;
        let c = create(
            &s,
            &token,
            &ws,
            "notes",
            json!({"title": "third", "secret": "hidden-value"}),
        )
        .await;
        let got = limited_receiver
            .wait(Duration::from_secs(30), |l| !l.is_empty())
            .await;
        assert_all_verified(&got, b);
        assert_eq!(got[0]["body"]["data"]["id"], id(&c), "{b}");
        assert_eq!(got[0]["body"]["data"]["title"], "third", "{b}");
        assert!(
            got[0]["body"]["data"].get("secret").is_none(),
            "{b}: {}",
            got[0]["body"]
        );
        assert!(
            !serde_json::to_string(&got)
                .unwrap()
                .contains("hidden-value"),
            "{b}"
        );
        let full = receiver
            .wait(Duration::from_secs(30), |l| {
                l.iter().any(|x| x["body"]["data"]["id"] == id(&c))
            })
            .await;
        let full = full
            .iter()
            .find(|x| x["body"]["data"]["id"] == id(&c))
            .unwrap();
        assert_eq!(full["body"]["data"]["secret"], "hidden-value", "{b}");

        // Rotation: both secrets sign for the overlap, so a receiver holding either verifies.
        let r = s
            .post(
                &ws_path(&ws, &format!("/webhooks/{hook}/rotate-secret")),
                Some(&token),
                json!({}),
            )
            .await;
        assert_status(&r, 200, b);
        let rotated = r.body["secret"].as_str().unwrap().to_owned();
        let new_only = Receiver::start(&[&rotated]);
        let old_only = Receiver::start(&[&secret]);
        for rx in [&new_only, &old_only] {
            let r = s
                .patch(
                    &ws_path(&ws, &format!("/webhooks/{hook}")),
                    Some(&token),
                    json!({"url": rx.url()}),
                )
                .await;
            assert_status(&r, 200, b);
            create(&s, &token, &ws, "notes", json!({"title": "after rotation"})).await;
            let got = rx.wait(Duration::from_secs(30), |l| !l.is_empty()).await;
            assert_all_verified(&got, b);
            let sigs = got[0]["signatures"].as_str().unwrap();
            assert_eq!(sigs.split(' ').count(), 2, "{b}: both secrets sign: {sigs}");
            let palisade = got[0]["palisade_signature"].as_str().unwrap();
            assert_eq!(palisade.split(' ').count(), 2, "{b}: {palisade}");
        }

        // The history shows a payload only as far as its reader may read it: a key with the
        // `management` scope (webhooks.manage, no records.read) sees none, the admin whose
        // role hides `secret` sees the record without it.
        let third = deliveries(&s, &token, &ws, &hook)
            .await
            .into_iter()
            .find(|d| d["event_id"] == full["webhook_id"])
            .unwrap();
        let third_id = third["id"].as_str().unwrap();
        let (_, manager) = create_key(&s, &token, &ws, &["management"]).await;
        let seen = delivery(&s, &manager, &ws, &hook, third_id).await;
        assert_eq!(seen["payload"], Value::Null, "{b}: {seen}");
        assert_eq!(seen["attempt_history"].as_array().unwrap().len(), 1, "{b}");
        let seen = delivery(&s, &limited, &ws, &hook, third_id).await;
        assert_eq!(seen["payload"]["data"]["title"], "third", "{b}");
        assert!(
            seen["payload"]["data"].get("secret").is_none(),
            "{b}: {seen}"
        );
        let seen = delivery(&s, &token, &ws, &hook, third_id).await;
        assert_eq!(seen["payload"]["data"]["secret"], "hidden-value", "{b}");

        // Grants are checked again at every attempt: once the admin who cannot read API keys
        // has changed the endpoint, a redelivered `api_key.created` is not sent.
        let key_delivery = deliveries(&s, &token, &ws, &hook)
            .await
            .into_iter()
            .find(|d| d["event_type"] == "api_key.created")
            .unwrap();
        let r = s
            .patch(
                &ws_path(&ws, &format!("/webhooks/{hook}")),
                Some(&limited),
                json!({"description": "changed by a narrower admin", "url": receiver.url()}),
            )
            .await;
        assert_status(&r, 200, b);
        let before = receiver.lines().len();
        let kid = key_delivery["id"].as_str().unwrap();
        let r = s
            .post(
                &ws_path(&ws, &format!("/webhooks/{hook}/deliveries/{kid}/redeliver")),
                Some(&token),
                json!({}),
            )
            .await;
        assert_status(&r, 202, b);
        let settled = deliveries_when(&s, &token, &ws, &hook, |l| {
            l.iter().any(|d| d["id"] == kid && d["status"] == "failed")
        })
        .await;
        assert!(settled.iter().any(|d| d["id"] == kid), "{b}");
        let detail = delivery(&s, &token, &ws, &hook, kid).await;
        let last = detail["attempt_history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert!(
            last["error"]
                .as_str()
                .unwrap()
                .contains("may no longer receive"),
            "{b}: {last}"
        );
        assert_eq!(last["status_code"], Value::Null, "{b}");
        assert_eq!(receiver.lines().len(), before, "{b}: nothing was sent");
        s.stop().await;
    }
}

#[tokio::test]
async fn a_receiver_down_then_up_gets_everything_on_schedule_and_dead_letters_can_be_redelivered() {
    for db in databases().await {
        let schedule = [1u64, 2, 3, 4, 5];
        let s = server_with(db, &schedule).await;
        let b = s.backend();
        let (token, ws) = owner_with_workspace(&s, "owner@example.com", "acme").await;
        notes(&s, &token, &ws).await;
        let receiver = Receiver::start(&[]);
        let (hook, secret) = webhook_to(&s, &token, &ws, &receiver, ALL_RECORD_EVENTS).await;
        // Down: the process is gone and its port refuses connections.
        let (port, dir) = receiver.stop();
        let mut made = Vec::new();
        for i in 0..5 {
            made.push(id(&create(
                &s,
                &token,
                &ws,
                "notes",
                json!({"title": format!("n{i}")}),
            )
            .await));
        }
        // Two failed attempts each (at 0 s and about 1 s) while down.
        deliveries_when(&s, &token, &ws, &hook, |l| {
            l.len() == 5 && l.iter().all(|d| d["attempts"].as_i64() >= Some(2))
        })
        .await;
        // Back on the same port but answering 503 for one more attempt each, then up.
        let down = Receiver::start_on(port, &[&secret], Some(dir));
        down.answer(Some(503));
        down.wait(Duration::from_secs(30), |l| {
            l.iter()
                .map(|x| x["webhook_id"].as_str().unwrap())
                .collect::<HashSet<_>>()
                .len()
                == 5
        })
        .await;
        down.answer(None);
        let lines = down
            .wait(Duration::from_secs(60), |l| {
                let ok: HashSet<&str> = l
                    .iter()
                    .filter(|x| x["status"] == 204)
                    .map(|x| x["webhook_id"].as_str().unwrap())
                    .collect();
                ok.len() == 5
            })
            .await;
        assert_all_verified(&lines, b);
        let delivered: BTreeSet<String> = lines
            .iter()
            .filter(|x| x["status"] == 204)
            .map(|x| x["body"]["data"]["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(delivered, made.iter().cloned().collect(), "{b}: none lost");

        // Every attempt is in the history, spaced by the schedule (±10 % jitter, plus the
        // dispatcher's poll and the attempt's own time).
        let list = deliveries(&s, &token, &ws, &hook).await;
        assert_eq!(list.len(), 5, "{b}");
        for d in &list {
            assert_eq!(d["status"], "succeeded", "{b}: {d}");
            let detail = delivery(&s, &token, &ws, &hook, d["id"].as_str().unwrap()).await;
            let attempts = detail["attempt_history"].as_array().unwrap();
            assert!(attempts.len() >= 4, "{b}: {attempts:?}");
            assert_eq!(d["attempts"], attempts.len(), "{b}");
            for a in &attempts[..2] {
                assert_eq!(a["status_code"], Value::Null, "{b}: {a}");
                assert!(
                    a["error"].as_str().unwrap().contains("connection refused"),
                    "{b}: {a}"
                );
            }
            assert!(
                attempts[2..attempts.len() - 1]
                    .iter()
                    .all(|a| a["status_code"] == 503 && a["error"] == "HTTP 503"),
                "{b}: {attempts:?}"
            );
            for (i, pair) in attempts.windows(2).enumerate() {
                let gap = (parse_time(&pair[1]["attempted_at"])
                    - parse_time(&pair[0]["attempted_at"]))
                .as_seconds_f64();
                let wait = schedule[i] as f64;
                assert!(
                    gap >= wait * 0.9 - 0.05 && gap <= wait * 1.1 + 1.5,
                    "{b}: attempt {} came {gap:.2}s after the one before, the schedule says {wait}s",
                    i + 2
                );
            }
            let last = attempts.last().unwrap();
            assert_eq!(last["status_code"], 204, "{b}");
            assert_eq!(last["error"], Value::Null, "{b}");
        }

        // Past the schedule: failed (dead letter), then redelivered by hand. While it is
        // pending, a redelivery is refused.
        down.answer(Some(500));
        let dead = id(&create(&s, &token, &ws, "notes", json!({"title": "dead"})).await);
        let pending = deliveries(&s, &token, &ws, &hook)
            .await
            .into_iter()
            .find(|d| d["status"] == "pending")
            .unwrap();
        let r = s
            .post(
                &ws_path(
                    &ws,
                    &format!(
                        "/webhooks/{hook}/deliveries/{}/redeliver",
                        pending["id"].as_str().unwrap()
                    ),
                ),
                Some(&token),
                json!({}),
            )
            .await;
        r.assert_problem(409, "delivery_pending", b);
        let failed = deliveries_when(&s, &token, &ws, &hook, |l| {
            l.iter().any(|d| d["status"] == "failed")
        })
        .await
        .into_iter()
        .find(|d| d["status"] == "failed")
        .unwrap();
        assert_eq!(failed["id"], pending["id"], "{b}");
        assert_eq!(
            failed["attempts"], 6,
            "{b}: the first attempt and five retries: {failed}"
        );
        assert_eq!(failed["next_attempt_at"], Value::Null, "{b}");
        let detail = delivery(&s, &token, &ws, &hook, failed["id"].as_str().unwrap()).await;
        assert_eq!(detail["payload"]["data"]["id"], dead, "{b}");
        down.answer(None);
        let r = s
            .post(
                &ws_path(
                    &ws,
                    &format!(
                        "/webhooks/{hook}/deliveries/{}/redeliver",
                        failed["id"].as_str().unwrap()
                    ),
                ),
                Some(&token),
                json!({}),
            )
            .await;
        assert_status(&r, 202, b);
        down.wait(Duration::from_secs(30), |l| {
            l.iter()
                .any(|x| x["status"] == 204 && x["body"]["data"]["id"] == dead.as_str())
        })
        .await;
        let mut detail = Value::Null;
        for _ in 0..100 {
            detail = delivery(&s, &token, &ws, &hook, failed["id"].as_str().unwrap()).await;
            if detail["status"] == "succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(detail["status"], "succeeded", "{b}: {detail}");
        let attempts = detail["attempt_history"].as_array().unwrap();
        assert_eq!(attempts.len(), 7, "{b}");
        assert_eq!(attempts[6]["trigger"], "redeliver", "{b}");
        // The redelivery is audited; the deliveries themselves are not.
        let log = workspace_audit(&s, &ws).await;
        assert_eq!(
            log.iter()
                .filter(|e| e.action == "webhook.redeliver")
                .count(),
            1,
            "{b}"
        );
        assert!(!log.iter().any(|e| e.action.starts_with("delivery")), "{b}");
        s.stop().await;
    }
}

#[tokio::test]
async fn a_thousand_events_are_a_thousand_deliveries_each_attempt_in_the_history() {
    for db in databases().await {
        let s = server_with(db, &[1]).await;
        let b = s.backend();
        let (token, ws) = owner_with_workspace(&s, "owner@example.com", "acme").await;
        notes(&s, &token, &ws).await;
        let receiver = Receiver::start(&[]);
        let (hook, _) = webhook_to(&s, &token, &ws, &receiver, &["record.created"]).await;
        let mut tasks = Vec::new();
        for w in 0..8 {
            let client = s.client.clone();
            let url = format!("{}{}", s.base, records(&ws, "notes"));
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..125 {
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"title": format!("{w}-{i}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let lines = receiver
            .wait(Duration::from_secs(120), |l| {
                l.iter()
                    .map(|x| x["webhook_id"].as_str().unwrap())
                    .collect::<HashSet<_>>()
                    .len()
                    >= 1000
            })
            .await;
        assert_all_verified(&lines, b);
        let titles: HashSet<&str> = lines
            .iter()
            .map(|x| x["body"]["data"]["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles.len(), 1000, "{b}");
        let list = deliveries_when(&s, &token, &ws, &hook, |l| {
            l.iter().all(|d| d["status"] == "succeeded")
        })
        .await;
        assert_eq!(list.len(), 1000, "{b}");
        let events: HashSet<&str> = list
            .iter()
            .map(|d| d["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(events.len(), 1000, "{b}");
        for d in &list {
            assert_eq!(d["status"], "succeeded", "{b}: {d}");
        }
        // Every attempt visible: the history's attempts add up to what the receiver saw.
        let mut attempts = 0;
        for d in &list {
            let detail = delivery(&s, &token, &ws, &hook, d["id"].as_str().unwrap()).await;
            let history = detail["attempt_history"].as_array().unwrap();
            assert_eq!(history.len() as u64, d["attempts"].as_u64().unwrap(), "{b}");
            assert_eq!(history.last().unwrap()["status_code"], 204, "{b}");
            attempts += history.len();
        }
        assert_eq!(
            attempts,
            receiver.lines().len(),
            "{b}: each attempt recorded once"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn private_loopback_and_link_local_targets_are_refused_and_never_contacted() {
    for db in databases().await {
        // No allow-list: the defaults.
        let s = Server::start_with(db, |c| c.webhooks.timeout_secs = 3).await;
        let b = s.backend();
        let (token, ws) = owner_with_workspace(&s, "owner@example.com", "acme").await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        for url in [
            format!("http://127.0.0.1:{port}/x"),
            format!("http://[::1]:{port}/x"),
            "http://10.1.2.3/x".to_owned(),
            "http://172.16.0.1/x".to_owned(),
            "http://192.168.1.1/x".to_owned(),
            "http://169.254.169.254/latest/meta-data".to_owned(),
            format!("http://[::ffff:127.0.0.1]:{port}/x"),
            format!("http://2130706433:{port}/x"),
            format!("http://0177.0.0.1:{port}/x"),
            format!("http://0x7f.0.0.1:{port}/x"),
            format!("http://localhost:{port}/x"),
            "http://0.0.0.0/x".to_owned(),
            "http://[fe80::1]/x".to_owned(),
            "http://[fd00::1]/x".to_owned(),
            "http://224.0.0.1/x".to_owned(),
        ] {
            let r = s
                .post(
                    &ws_path(&ws, "/webhooks"),
                    Some(&token),
                    json!({"url": url, "events": ["record.created"]}),
                )
                .await;
            r.assert_problem(422, "validation_failed", &format!("{b}: {url}"));
            assert_eq!(r.pointers(), ["/url"], "{b}: {url}");
        }
        let list = s.get(&ws_path(&ws, "/webhooks"), Some(&token)).await;
        assert_eq!(list.body["data"], json!([]), "{b}");

        // At connect time too: an endpoint made while loopback was allowed gets nothing once
        // it is not, and no connection reaches the listener.
        let mut s = s
            .restart_with(|c| c.webhooks.allow_cidrs = vec!["127.0.0.1/32".into()])
            .await;
        notes(&s, &token, &ws).await;
        let (hook, _) = create_webhook(
            &s,
            &token,
            &ws,
            &format!("http://127.0.0.1:{port}/x"),
            &["record.created"],
        )
        .await;
        s = s
            .restart_with(|c| c.webhooks.allow_cidrs = Vec::new())
            .await;
        create(&s, &token, &ws, "notes", json!({"title": "t"})).await;
        let attempted = deliveries_when(&s, &token, &ws, &hook, |l| {
            l.first().is_some_and(|d| d["attempts"].as_i64() >= Some(1))
        })
        .await;
        let attempt = delivery(&s, &token, &ws, &hook, attempted[0]["id"].as_str().unwrap()).await
            ["attempt_history"][0]
            .clone();
        assert_eq!(attempt["status_code"], Value::Null, "{b}: {attempt}");
        let error = attempt["error"].as_str().unwrap();
        assert!(
            error.contains("refused") && error.contains("127.0.0.1"),
            "{b}: {error}"
        );
        assert!(
            listener.accept().is_err(),
            "{b}: a refused target must never be connected to"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn an_endpoint_failing_for_five_days_is_disabled_and_its_admins_are_emailed() {
    for db in databases().await {
        let s = server_with(db, &[1]).await;
        let b = s.backend();
        let (token, ws) = owner_with_workspace(&s, "owner@example.com", "acme").await;
        notes(&s, &token, &ws).await;
        let receiver = Receiver::start(&[]);
        receiver.answer(Some(500));
        let (hook, _) = webhook_to(&s, &token, &ws, &receiver, &["record.created"]).await;
        create(&s, &token, &ws, "notes", json!({"title": "t"})).await;
        receiver
            .wait(Duration::from_secs(30), |l| l.len() >= 2)
            .await;
        let mut failing = Value::Null;
        for _ in 0..100 {
            failing = s
                .get(&ws_path(&ws, &format!("/webhooks/{hook}")), Some(&token))
                .await
                .body;
            if !failing["failing_since"].is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!failing["failing_since"].is_null(), "{b}: {failing}");
        // Four days on: still enabled.
        s.advance(time::Duration::days(4));
        assert_eq!(
            s.services().disable_failing_webhooks().await.unwrap(),
            0,
            "{b}"
        );
        // Past five days: disabled, audited, the owner emailed.
        s.advance(time::Duration::days(1) + time::Duration::hours(1));
        assert_eq!(
            s.services().disable_failing_webhooks().await.unwrap(),
            1,
            "{b}"
        );
        assert_eq!(
            s.services().disable_failing_webhooks().await.unwrap(),
            0,
            "{b}: once"
        );
        let (token, _) = s.login("owner@example.com").await;
        let got = s
            .get(&ws_path(&ws, &format!("/webhooks/{hook}")), Some(&token))
            .await;
        assert_eq!(got.body["enabled"], false, "{b}");
        assert_eq!(got.body["disabled_reason"], "failing", "{b}");
        let mail = s.mail("owner@example.com", "webhook_disabled").await;
        assert!(mail.contains("127.0.0.1"), "{b}: {mail}");
        assert!(!mail.contains("/hooks"), "{b}: only the origin is shown");
        let log = workspace_audit(&s, &ws).await;
        let entry = log.iter().find(|e| e.action == "webhook.disable").unwrap();
        assert_eq!(entry.actor, pair("system", "palisade"), "{b}");
        // A disabled endpoint gets no new deliveries; enabling it starts a fresh window.
        let before = deliveries(&s, &token, &ws, &hook).await.len();
        create(&s, &token, &ws, "notes", json!({"title": "while disabled"})).await;
        assert_eq!(
            deliveries(&s, &token, &ws, &hook).await.len(),
            before,
            "{b}"
        );
        receiver.answer(None);
        let r = s
            .patch(
                &ws_path(&ws, &format!("/webhooks/{hook}")),
                Some(&token),
                json!({"enabled": true}),
            )
            .await;
        assert_status(&r, 200, b);
        assert_eq!(r.body["failing_since"], Value::Null, "{b}");
        assert_eq!(r.body["disabled_reason"], Value::Null, "{b}");
        s.stop().await;
    }
}

#[tokio::test]
async fn refused_and_failed_changes_produce_no_event() {
    for db in databases().await {
        let s = server_with(db, &[1]).await;
        let b = s.backend();
        let (token, ws) = owner_with_workspace(&s, "owner@example.com", "acme").await;
        collection(
            &s,
            &token,
            &ws,
            "notes",
            json!([{"name": "title", "type": "text", "unique": true, "required": true}]),
        )
        .await;
        let receiver = Receiver::start(&[]);
        let (hook, _) = webhook_to(&s, &token, &ws, &receiver, ALL_RECORD_EVENTS).await;
        let a = create(&s, &token, &ws, "notes", json!({"title": "one"})).await;
        // A unique conflict, a missing required field, a stale If-Match: all rolled back.
        let r = s
            .post(
                &records(&ws, "notes"),
                Some(&token),
                json!({"title": "one"}),
            )
            .await;
        r.assert_problem(422, "validation_failed", b);
        let r = s
            .post(&records(&ws, "notes"), Some(&token), json!({}))
            .await;
        assert_eq!(r.status.as_u16(), 422, "{b}: {}", r.text);
        let r = s
            .call(
                reqwest::Method::PATCH,
                &record(&ws, "notes", &id(&a)),
                Some(&token),
                Some(json!({"title": "two"})),
            )
            .await;
        assert_status(&r, 200, b);
        let stale = s
            .client
            .patch(format!("{}{}", s.base, record(&ws, "notes", &id(&a))))
            .bearer_auth(&token)
            .header("If-Match", "\"1\"")
            .json(&json!({"title": "three"}))
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status().as_u16(), 412, "{b}");
        let lines = receiver
            .wait(Duration::from_secs(30), |l| l.len() >= 2)
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lines = {
            let again = receiver.lines();
            assert_eq!(again.len(), lines.len(), "{b}: {again:?}");
            again
        };
        // Deliveries run concurrently: their order is not promised (the body's `timestamp`
        // and a record's `version` order them).
        let types: BTreeSet<&str> = lines
            .iter()
            .map(|l| l["body"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            BTreeSet::from(["record.created", "record.updated"]),
            "{b}"
        );
        assert_eq!(lines.len(), 2, "{b}");
        assert_eq!(deliveries(&s, &token, &ws, &hook).await.len(), 2, "{b}");
        s.stop().await;
    }
}

/// `palisade serve` on `db_url`, its configuration in `data`, listening on `port`.
fn palisade_serve(db_url: &str, data: &std::path::Path, port: u16) -> std::process::Child {
    common::palisade()
        .arg("serve")
        .env("PALISADE_CONFIG", data.join("palisade.toml"))
        .env("PALISADE_DATA_DIR", data)
        .env("PALISADE_DATABASE_URL", db_url)
        .env("PALISADE_MASTER_KEY", common::TEST_MASTER_KEY)
        .env("PALISADE_LISTEN", format!("127.0.0.1:{port}"))
        .env("PALISADE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("palisade serve did not become healthy at {base}");
}

#[tokio::test]
async fn a_server_killed_mid_load_still_delivers_the_event_of_every_committed_change() {
    for db in databases().await {
        // Set up in-process: an owner, a collection, a key and an endpoint at the receiver.
        let mut s = server_with(db, &[1]).await;
        let b = s.backend();
        let (token, ws) = owner_with_workspace(&s, "owner@example.com", "acme").await;
        notes(&s, &token, &ws).await;
        let (_, key) = create_key(&s, &token, &ws, &["read", "write"]).await;
        let receiver = Receiver::start(&[]);
        webhook_to(&s, &token, &ws, &receiver, &["record.created"]).await;
        let shared = s.db.shared();
        let db = std::mem::replace(&mut s.db, shared);
        s.stop().await;

        // The real binary, under load from four writers, killed with SIGKILL.
        let data = tempfile::tempdir().unwrap();
        std::fs::write(
            data.path().join("palisade.toml"),
            "[webhooks]\ntimeout_secs = 2\nretry_schedule_secs = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nallow_cidrs = [\"127.0.0.1/32\"]\n\
             [rate_limits.plans.starter.api]\nper_workspace = \"1000000/1s\"\nper_key = \"1000000/1s\"\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut child = palisade_serve(&db.url, data.path(), port);
        wait_healthy(&client, &base).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4 {
            let (client, key, stop) = (client.clone(), key.clone(), stop.clone());
            let url = format!("{base}{}", records(&ws, "notes"));
            writers.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let sent = client
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json!({"title": format!("{w}-{i}")}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().as_u16() == 201 => {
                            let body: Value = r.json().await.unwrap();
                            acknowledged.push(id(&body));
                        }
                        Ok(r) => panic!("unexpected {}", r.status()),
                        Err(_) => break,
                    }
                }
                acknowledged
            }));
        }
        receiver
            .wait(Duration::from_secs(60), |l| l.len() >= 40)
            .await;
        child.kill().unwrap();
        child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acknowledged = BTreeSet::new();
        for w in writers {
            acknowledged.extend(w.await.unwrap());
        }

        // Restarted: every committed record has its event delivered, and only those.
        let mut child = palisade_serve(&db.url, data.path(), port);
        wait_healthy(&client, &base).await;
        let mut committed = BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let r: Value = client
                .get(format!("{base}{}?limit=200{cursor}", records(&ws, "notes")))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            committed.extend(r["data"].as_array().unwrap().iter().map(id));
            match r["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        assert!(
            acknowledged.is_subset(&committed),
            "{b}: an acknowledged write is missing"
        );
        assert!(
            committed.len() >= 40,
            "{b}: the load ran ({} records)",
            committed.len()
        );
        let delivered = |lines: &[Value]| -> BTreeSet<String> {
            lines
                .iter()
                .filter(|l| l["status"] == 204)
                .map(|l| l["body"]["data"]["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let lines = receiver
            .wait(Duration::from_secs(90), |l| {
                delivered(l).is_superset(&committed)
            })
            .await;
        assert_all_verified(&lines, b);
        assert_eq!(
            delivered(&lines),
            committed,
            "{b}: an event for every committed record, and only those"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        drop(db);
    }
}

#[tokio::test]
async fn signed_audit_checkpoints_reach_subscribers_as_independent_witnesses() {
    for db in databases().await {
        let s = Server::start_with(db, |c| {
            c.webhooks.allow_cidrs = vec!["127.0.0.1/32".into()];
            c.audit_checkpoint_interval_secs = 1;
        })
        .await;
        let b = s.backend();
        let (token, ws) = owner_with_workspace(&s, "owner@example.com", "acme").await;
        let receiver = Receiver::start(&[]);
        webhook_to(&s, &token, &ws, &receiver, &["audit.checkpoint.signed"]).await;
        // The endpoint's own creation is an entry: the next checkpoint covers it.
        let size = common::audit::audit_head(&s, &ws).await;
        let lines = receiver
            .wait(Duration::from_secs(30), |l| {
                l.iter()
                    .any(|x| x["body"]["data"]["tree_size"].as_u64() >= Some(size))
            })
            .await;
        assert_all_verified(&lines, b);
        let event = lines
            .iter()
            .find(|x| x["body"]["data"]["tree_size"].as_u64() >= Some(size))
            .unwrap();
        assert_eq!(event["body"]["type"], "audit.checkpoint.signed", "{b}");
        let data = &event["body"]["data"];
        assert_eq!(data["kind"], "latest", "{b}");
        assert!(
            data["origin"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/ws/{ws}")),
            "{b}: {data}"
        );
        // It is the checkpoint the API serves (nothing was appended since), signature and all.
        let api = s
            .get(&ws_path(&ws, "/audit/checkpoint"), Some(&token))
            .await;
        assert_status(&api, 200, b);
        for field in ["tree_size", "root", "jws", "note", "origin"] {
            assert_eq!(api.body[field], data[field], "{b}: {field}");
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn a_disabled_endpoint_keeps_its_deliveries_paused_and_a_deleted_workspace_sends_nothing() {
    for db in databases().await {
        let s = server_with(db, &[30]).await;
        let b = s.backend();
        let (token, parent) = owner_with_workspace(&s, "owner@example.com", "holding").await;
        let r = s
            .post(
                &ws_path(&parent, "/children"),
                Some(&token),
                json!({"name": "Branch", "slug": "branch"}),
            )
            .await;
        assert_status(&r, 201, b);
        let ws = id(&r.body);
        notes(&s, &token, &ws).await;
        let receiver = Receiver::start(&[]);
        receiver.answer(Some(500));
        let (hook, _) = webhook_to(&s, &token, &ws, &receiver, &["record.created"]).await;
        let first = id(&create(&s, &token, &ws, "notes", json!({"title": "one"})).await);
        receiver
            .wait(Duration::from_secs(30), |l| !l.is_empty())
            .await;
        let pending = deliveries_when(&s, &token, &ws, &hook, |l| {
            l.first()
                .is_some_and(|d| d["attempts"] == 1 && d["status"] == "pending")
        })
        .await[0]
            .clone();
        assert_eq!(pending["status"], "pending", "{b}: {pending}");
        let dlv = pending["id"].as_str().unwrap().to_owned();

        // Disabled: the delivery waits, paused; nothing new is written; no redelivery.
        let path = ws_path(&ws, &format!("/webhooks/{hook}"));
        assert_status(
            &s.patch(&path, Some(&token), json!({"enabled": false}))
                .await,
            200,
            b,
        );
        let d = delivery(&s, &token, &ws, &hook, &dlv).await;
        assert_eq!(d["status"], "paused", "{b}: {d}");
        assert_eq!(d["next_attempt_at"], Value::Null, "{b}");
        create(&s, &token, &ws, "notes", json!({"title": "while disabled"})).await;
        assert_eq!(deliveries(&s, &token, &ws, &hook).await.len(), 1, "{b}");
        s.post(
            &ws_path(&ws, &format!("/webhooks/{hook}/deliveries/{dlv}/redeliver")),
            Some(&token),
            json!({}),
        )
        .await
        .assert_problem(409, "webhook_disabled", b);
        let paused = deliveries(&s, &token, &ws, &hook).await;
        let only_paused = s
            .get(
                &ws_path(&ws, &format!("/webhooks/{hook}/deliveries?status=paused")),
                Some(&token),
            )
            .await;
        assert_eq!(
            only_paused.body["data"].as_array().unwrap().len(),
            1,
            "{b}: {paused:?}"
        );
        let bad = s
            .get(
                &ws_path(
                    &ws,
                    &format!("/webhooks/{hook}/deliveries?status=nope&limit=0&bogus=1"),
                ),
                Some(&token),
            )
            .await;
        bad.assert_problem(422, "validation_failed", b);
        let named: Vec<&str> = bad.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["parameter"].as_str().unwrap())
            .collect();
        assert_eq!(named, ["status", "limit", "bogus"], "{b}");

        // Enabled again: it goes out at once (not 30 s later), and succeeds.
        receiver.answer(None);
        assert_status(
            &s.patch(&path, Some(&token), json!({"enabled": true})).await,
            200,
            b,
        );
        receiver
            .wait(Duration::from_secs(10), |l| {
                l.iter()
                    .any(|x| x["status"] == 204 && x["body"]["data"]["id"] == first.as_str())
            })
            .await;

        // Deleting the workspace disables its endpoints and pauses what is pending.
        receiver.answer(Some(500));
        create(&s, &token, &ws, "notes", json!({"title": "last"})).await;
        let seen = receiver
            .wait(Duration::from_secs(30), |l| l.len() >= 3)
            .await
            .len();
        let r = s
            .call(
                reqwest::Method::DELETE,
                &ws_path(&parent, &format!("/children/{ws}")),
                Some(&token),
                None,
            )
            .await;
        assert!(r.status.is_success(), "{b}: {}", r.text);
        let mut tx = s.tenant_read(&ws).await;
        let endpoint = tx
            .webhook_get(&palisade_core::ids::WebhookId::parse(&hook).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(!endpoint.enabled, "{b}");
        assert_eq!(
            endpoint.disabled_reason.as_deref(),
            Some("workspace_deleted"),
            "{b}"
        );
        let states: Vec<_> = tx
            .webhook_deliveries_list(&endpoint.id, None, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.status.as_str())
            .collect();
        assert!(!states.contains(&"pending"), "{b}: {states:?}");
        drop(tx);
        receiver.answer(None);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            receiver.lines().len(),
            seen,
            "{b}: nothing leaves a deleted workspace"
        );
        s.stop().await;
    }
}
