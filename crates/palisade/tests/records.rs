//! End-to-end tests of records (DAT-2 … DAT-5): typed values, required/unknown/unique rules,
//! field-level permissions, drafts, optimistic concurrency, isolation, encryption at rest,
//! the audit trail of every change (and its verification), schema changes over existing
//! records, and who may do what — the real server over real HTTP, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::audit::{Ev, assert_log_verifies, audit_head, pair, workspace_audit as audit};

use common::records::{col_path, collection, create, create_key, member, record, records};

use common::{
    ADMIN, Reply, Server, assert_status, contains, database_image, enable_modules,
    give_custom_role, id, servers,
};
use palisade_store::testing::databases;
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers.

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strings(v: &[&str]) -> Vec<String> {
    sorted(v.iter().map(|s| (*s).to_owned()).collect())
}

/// Any request, with an optional `If-Match` and JSON body.
async fn send(
    s: &Server,
    method: Method,
    path: &str,
    token: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = s
        .client
        .request(method, format!("{}{path}", s.base))
        .bearer_auth(token);
    if let Some(v) = if_match {
        req = req.header("If-Match", v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    s.raw(req).await
}

async fn delete(s: &Server, path: &str, token: &str) -> Reply {
    s.call(Method::DELETE, path, Some(token), None).await
}

/// `GET …/records/{id}`, which must be 200 with the version as ETag.
async fn fetch(s: &Server, token: &str, ws: &str, col: &str, rid: &str) -> Value {
    let r = s.get(&record(ws, col, rid), Some(token)).await;
    assert_status(&r, 200, &format!("{}: GET record {rid}", s.backend()));
    assert_eq!(
        r.header("etag"),
        format!("\"{}\"", r.body["version"]),
        "{}: ETag is the version",
        s.backend()
    );
    r.body
}

/// Every record of a collection the caller may see, page by page (pages of 2 to exercise the
/// cursor).
async fn list_all(s: &Server, token: &str, ws: &str, col: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{}?limit=2&cursor={c}", records(ws, col)),
            None => format!("{}?limit=2", records(ws, col)),
        };
        let r = s.get(&path, Some(token)).await;
        assert_status(&r, 200, &format!("{}: list {col}", s.backend()));
        let page = r.body["data"].as_array().unwrap().clone();
        assert!(page.len() <= 2, "{}: {}", s.backend(), r.text);
        out.extend(page);
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let ids: Vec<String> = out.iter().map(id).collect();
    assert_eq!(ids, sorted(ids.clone()), "{}: listed by id", s.backend());
    out
}

fn ids(list: &[Value]) -> Vec<String> {
    sorted(list.iter().map(id).collect())
}

/// The field members of a record (everything but its own attributes).
fn fields_of(rec: &Value) -> Value {
    let mut m = rec.as_object().unwrap().clone();
    for k in [
        "id",
        "collection",
        "status",
        "version",
        "created_at",
        "updated_at",
        "published_at",
        "created_by",
        "updated_by",
    ] {
        m.remove(k);
    }
    Value::Object(m)
}

/// Asserts a 422 `validation_failed` naming exactly these pointers.
fn assert_invalid(r: &Reply, pointers: &[&str], context: &str) {
    r.assert_problem(422, "validation_failed", context);
    assert_eq!(
        sorted(r.pointers()),
        strings(pointers),
        "{context}: {}",
        r.text
    );
}

/// The `record.*` entries of the workspace's log, oldest first.
async fn record_audit(s: &Server, ws: &str) -> Vec<Ev> {
    audit(s, ws)
        .await
        .into_iter()
        .filter(|e| e.action.starts_with("record."))
        .collect()
}

/// How many records the store holds for a collection id (read through a test scope).
async fn stored_records(s: &Server, ws: &str, collection_id: &str) -> u64 {
    use palisade_core::ids::CollectionId;
    let mut tx = s.tenant_read(ws).await;
    tx.records_count(&CollectionId::parse(collection_id).unwrap())
        .await
        .unwrap()
}

/// A record id that exists nowhere (a record created, then deleted).
async fn vanished_id(s: &Server, token: &str, ws: &str, col: &str, body: Value) -> String {
    let gone = id(&create(s, token, ws, col, body).await);
    assert_status(
        &delete(s, &record(ws, col, &gone), token).await,
        204,
        &format!("{}: delete", s.backend()),
    );
    gone
}

// ---------------------------------------------------------------------------------------------
// 1. Every field type: valid values round-trip exactly, invalid ones are refused by field.

#[tokio::test]
async fn every_field_type_round_trips_and_bad_values_are_refused_by_field() {
    for s in servers().await {
        let b = s.backend();
        let (uid, o, _) = s.user("types@example.com").await;
        let ws = id(&s.workspace(&o, "Types", "types").await);
        collection(
            &s,
            &o,
            &ws,
            "people",
            json!([{"name": "name", "type": "text"}]),
        )
        .await;
        collection(
            &s,
            &o,
            &ws,
            "things",
            json!([
                {"name": "title", "type": "text", "required": true},
                {"name": "count", "type": "integer"},
                {"name": "price", "type": "decimal"},
                {"name": "active", "type": "boolean"},
                {"name": "born", "type": "date"},
                {"name": "at", "type": "datetime"},
                {"name": "state", "type": "enum", "options": {"values": ["open", "done"]}},
                {"name": "extra", "type": "json"},
                {"name": "owner", "type": "relation", "options": {"collection": "people"}},
                {"name": "labels", "type": "tags"},
                {"name": "receipt", "type": "file"},
            ]),
        )
        .await;
        let person = id(&create(&s, &o, &ws, "people", json!({"name": "Pat"})).await);

        let extra = json!({"a": [1, 25, null, {"b": "c"}], "big": 9_007_199_254_740_993_u64,
                           "neg": -7, "s": "ünï ✓", "t": true, "o": {}});
        let title = "Hello, wörld ✓\nline two\t\"quoted\"";
        let sent = json!({
            "title": title,
            "count": i64::MIN,
            "price": "12.50",
            "active": false,
            "born": "2024-02-29",
            "at": "2026-11-22T09:30:00+01:00",
            "state": "done",
            "extra": extra,
            "owner": person,
            "labels": ["b", "a", "b"],
        });
        let made = create(&s, &o, &ws, "things", sent).await;
        let expected = json!({
            "title": title,
            "count": i64::MIN,
            "price": "12.50",
            "active": false,
            "born": "2024-02-29",
            "at": "2026-11-22T08:30:00Z",
            "state": "done",
            "extra": extra,
            "owner": person,
            "labels": ["b", "a"],
        });
        assert_eq!(fields_of(&made), expected, "{b}: {made}");
        let rid = id(&made);
        assert!(rid.starts_with("rec_"), "{b}: {rid}");
        assert_eq!(made["collection"], "things", "{b}");
        assert_eq!(made["status"], "published", "{b}");
        assert_eq!(made["created_by"], uid.as_str(), "{b}");
        assert_eq!(made["updated_by"], uid.as_str(), "{b}");
        assert!(made["created_at"].is_string(), "{b}: {made}");
        assert_eq!(made["created_at"], made["updated_at"], "{b}");
        assert_eq!(made["published_at"], made["created_at"], "{b}");
        assert_eq!(fetch(&s, &o, &ws, "things", &rid).await, made, "{b}: GET");

        // The limits, and the normal forms of zero and offsets.
        let long_title = "é".repeat(10_000);
        let many_tags: Vec<String> = (0..100)
            .map(|i| format!("{i:03}{}", "t".repeat(97)))
            .collect();
        let max_decimal = "1234567890123456789012345678.123456789012345678";
        let edge = create(
            &s,
            &o,
            &ws,
            "things",
            json!({"title": long_title, "count": i64::MAX, "price": "-0.00",
                   "at": "2026-11-22T23:30:00.123456-02:00", "labels": many_tags,
                   "extra": "just a string"}),
        )
        .await;
        assert_eq!(
            fields_of(&edge),
            json!({"title": long_title, "count": i64::MAX, "price": "0.00",
                   "at": "2026-11-23T01:30:00.123456Z", "labels": many_tags,
                   "extra": "just a string"}),
            "{b}: absent fields are left out"
        );
        let edge_id = id(&edge);
        assert_eq!(fetch(&s, &o, &ws, "things", &edge_id).await, edge, "{b}");
        let decimals = create(
            &s,
            &o,
            &ws,
            "things",
            json!({"title": "d", "price": max_decimal, "extra": [[], -1, 0, "x"]}),
        )
        .await;
        assert_eq!(decimals["price"], max_decimal, "{b}");
        let dec_id = id(&decimals);
        let got = fetch(&s, &o, &ws, "things", &dec_id).await;
        assert_eq!(got["price"], max_decimal, "{b}: exact");
        assert_eq!(got["extra"], json!([[], -1, 0, "x"]), "{b}");
        let small = create(
            &s,
            &o,
            &ws,
            "things",
            json!({"title": "s", "price": "-0.000000000000000001", "count": 0, "active": true}),
        )
        .await;
        assert_eq!(
            fetch(&s, &o, &ws, "things", &id(&small)).await["price"],
            "-0.000000000000000001",
            "{b}"
        );

        let listed = list_all(&s, &o, &ws, "things").await;
        assert_eq!(listed.len(), 4, "{b}");
        let from_list = listed.iter().find(|r| id(r) == rid).unwrap();
        assert_eq!(from_list, &made, "{b}: listed as read");

        // Invalid values, one field at a time: 422 naming that field, nothing written.
        let gone_person = vanished_id(&s, &o, &ws, "people", json!({"name": "Gone"})).await;
        let head = audit_head(&s, &ws).await;
        let too_many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
        let cases: Vec<(&str, Value)> = vec![
            ("title", json!("x".repeat(10_001))),
            ("title", json!("a\u{0}b")),
            ("title", json!(5)),
            ("count", json!(1.5)),
            ("count", json!("1")),
            ("count", json!(1e20)),
            ("count", json!(u64::MAX)),
            ("count", json!(true)),
            ("price", json!(12.5)),
            ("price", json!(12)),
            ("price", json!("1e3")),
            ("price", json!("01")),
            ("price", json!(".5")),
            ("price", json!("5.")),
            ("price", json!("+1")),
            ("price", json!("12,50")),
            ("price", json!("1".repeat(29))),
            ("price", json!(format!("0.{}", "1".repeat(19)))),
            ("active", json!("true")),
            ("active", json!(1)),
            ("born", json!("2023-02-29")),
            ("born", json!("2024-2-1")),
            ("born", json!("2024-02-01T00:00:00Z")),
            ("at", json!("2026-11-22T09:30:00")),
            ("at", json!("2026-11-22")),
            ("at", json!(1_700_000_000)),
            ("state", json!("Done")),
            ("state", json!(["done"])),
            ("extra", json!({"k": "a\u{0}b"})),
            ("owner", json!("usr_01m80bbg8bet59xtdzjd4dbxa8")),
            ("owner", json!("rec_")),
            ("owner", json!(rid)),
            ("owner", json!(gone_person)),
            ("labels", json!("a")),
            ("labels", json!([1])),
            ("labels", json!([""])),
            ("labels", json!(["x".repeat(101)])),
            ("labels", json!(too_many)),
            ("receipt", json!("anything")),
            ("receipt", json!({"id": "file_1"})),
        ];
        for (field, value) in &cases {
            let mut body = json!({"title": "ok"});
            body[*field] = value.clone();
            let r = s.post(&records(&ws, "things"), Some(&o), body).await;
            let what = format!(
                "{b}: {field} = {}",
                value.to_string().chars().take(60).collect::<String>()
            );
            assert_invalid(&r, &[&format!("/{field}")], &what);
        }
        // All at once: one error per bad field.
        let r = s
            .post(
                &records(&ws, "things"),
                Some(&o),
                json!({"title": 5, "count": "1", "price": 1.5, "active": "no", "born": "x",
                       "at": "y", "state": "z", "extra": "\u{0}", "owner": "nope",
                       "labels": [""], "receipt": "f"}),
            )
            .await;
        assert_invalid(
            &r,
            &[
                "/title", "/count", "/price", "/active", "/born", "/at", "/state", "/extra",
                "/owner", "/labels", "/receipt",
            ],
            &format!("{b}: everything wrong"),
        );
        let r = s
            .post(
                &records(&ws, "things"),
                Some(&o),
                json!({"title": "ok", "status": "archived"}),
            )
            .await;
        assert_invalid(&r, &["/status"], &format!("{b}: bad status"));
        // Bad values in a PATCH are refused the same way, and change nothing.
        for (field, value) in cases.iter().filter(|(f, _)| *f != "title") {
            let mut body = json!({"title": "changed"});
            body[*field] = value.clone();
            let r = s.patch(&record(&ws, "things", &rid), Some(&o), body).await;
            assert_invalid(&r, &[&format!("/{field}")], &format!("{b}: PATCH {field}"));
        }
        assert_eq!(
            audit_head(&s, &ws).await,
            head,
            "{b}: refusals write nothing"
        );
        assert_eq!(
            list_all(&s, &o, &ws, "things").await,
            listed,
            "{b}: unchanged"
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Required, unknown and unique.

#[tokio::test]
async fn required_unknown_and_unique_rules_hold_on_create_patch_and_delete() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("rules@example.com").await;
        let ws = id(&s.workspace(&o, "Rules", "rules").await);
        collection(
            &s,
            &o,
            &ws,
            "accounts",
            json!([
                {"name": "code", "type": "text", "required": true, "unique": true},
                {"name": "amount", "type": "decimal", "unique": true},
                {"name": "nickname", "type": "text"},
            ]),
        )
        .await;
        let path = records(&ws, "accounts");
        let head = audit_head(&s, &ws).await;
        assert_invalid(
            &s.post(&path, Some(&o), json!({})).await,
            &["/code"],
            &format!("{b}: required missing"),
        );
        let r = s.post(&path, Some(&o), json!({"code": null})).await;
        assert_invalid(&r, &["/code"], &format!("{b}: required null"));
        assert!(r.text.contains("is required"), "{b}: {}", r.text);
        assert_invalid(
            &s.post(
                &path,
                Some(&o),
                json!({"code": "A", "ghost": 1, "other": null}),
            )
            .await,
            &["/ghost", "/other"],
            &format!("{b}: unknown fields"),
        );
        assert_invalid(
            &s.post(&path, Some(&o), json!({"ghost": 1})).await,
            &["/ghost", "/code"],
            &format!("{b}: unknown and missing"),
        );
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: nothing written");

        let r1 = id(&create(
            &s,
            &o,
            &ws,
            "accounts",
            json!({"code": "A", "amount": "1.5"}),
        )
        .await);
        let head = audit_head(&s, &ws).await;
        let r = s.post(&path, Some(&o), json!({"code": "A"})).await;
        assert_invalid(&r, &["/code"], &format!("{b}: duplicate code"));
        assert_invalid(
            &s.post(&path, Some(&o), json!({"code": "B", "amount": "1.50"}))
                .await,
            &["/amount"],
            &format!("{b}: 1.50 is 1.5"),
        );
        assert_invalid(
            &s.post(&path, Some(&o), json!({"code": "A", "amount": "1.500"}))
                .await,
            &["/code", "/amount"],
            &format!("{b}: both taken"),
        );
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: nothing written");
        assert_eq!(list_all(&s, &o, &ws, "accounts").await.len(), 1, "{b}");
        // A refused create claimed nothing: B is still free.
        let r2 = id(&create(&s, &o, &ws, "accounts", json!({"code": "B", "amount": "2"})).await);

        // PATCH: a taken value, removing a required value, status, unknown fields.
        let p2 = record(&ws, "accounts", &r2);
        let head = audit_head(&s, &ws).await;
        for (body, pointers, what) in [
            (json!({"amount": "1.5"}), vec!["/amount"], "taken amount"),
            (
                json!({"amount": "1.5000", "nickname": "n"}),
                vec!["/amount"],
                "taken amount, scaled",
            ),
            (json!({"code": "A"}), vec!["/code"], "taken code"),
            (json!({"code": null}), vec!["/code"], "required removed"),
            (json!({"status": "draft"}), vec!["/status"], "status"),
            (
                json!({"ghost": 1, "nickname": "n"}),
                vec!["/ghost"],
                "unknown",
            ),
            (
                json!({"id": "rec_x", "version": 9}),
                vec!["/id", "/version"],
                "own attributes",
            ),
        ] {
            let r = s.patch(&p2, Some(&o), body).await;
            assert_invalid(&r, &pointers, &format!("{b}: PATCH {what}"));
        }
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: nothing written");
        let now = fetch(&s, &o, &ws, "accounts", &r2).await;
        assert_eq!(now["version"], 1, "{b}");
        assert_eq!(fields_of(&now), json!({"code": "B", "amount": "2"}), "{b}");

        // A value changed away by PATCH is free again; the new one is taken.
        let r = s
            .patch(
                &record(&ws, "accounts", &r1),
                Some(&o),
                json!({"code": "A2", "amount": "3"}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: PATCH r1"));
        assert_eq!(r.body["version"], 2, "{b}");
        assert_eq!(r.header("etag"), "\"2\"", "{b}");
        let r3 = id(&create(
            &s,
            &o,
            &ws,
            "accounts",
            json!({"code": "A", "amount": "1.50"}),
        )
        .await);
        assert_invalid(
            &s.post(&path, Some(&o), json!({"code": "A2", "amount": "3.0"}))
                .await,
            &["/code", "/amount"],
            &format!("{b}: the new values are taken"),
        );
        // Rewriting the same value in another scale keeps the claim.
        let r = s
            .patch(
                &record(&ws, "accounts", &r1),
                Some(&o),
                json!({"amount": "3.00"}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: rescale"));
        assert_eq!(r.body["amount"], "3.00", "{b}");
        assert_invalid(
            &s.post(&path, Some(&o), json!({"code": "Q", "amount": "3"}))
                .await,
            &["/amount"],
            &format!("{b}: still taken after a rescale"),
        );
        // A value removed with null is free.
        let r = s
            .patch(
                &record(&ws, "accounts", &r1),
                Some(&o),
                json!({"amount": null}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: remove amount"));
        assert!(r.body.get("amount").is_none(), "{b}: {}", r.text);
        create(&s, &o, &ws, "accounts", json!({"code": "C", "amount": "3"})).await;

        // Deleting frees every value the record held.
        assert_status(&delete(&s, &p2, &o).await, 204, &format!("{b}: delete r2"));
        s.get(&p2, Some(&o)).await.assert_problem(
            404,
            "record_not_found",
            &format!("{b}: deleted"),
        );
        delete(&s, &p2, &o).await.assert_problem(
            404,
            "record_not_found",
            &format!("{b}: deleted twice"),
        );
        create(
            &s,
            &o,
            &ws,
            "accounts",
            json!({"code": "B", "amount": "2.0"}),
        )
        .await;
        let all = list_all(&s, &o, &ws, "accounts").await;
        assert_eq!(all.len(), 4, "{b}");
        assert!(!ids(&all).contains(&r2), "{b}");
        assert!(ids(&all).contains(&r3), "{b}");

        s.stop().await;
    }
}

/// A merge patch's `null` on a name that is no field is an unknown field, as on create (and
/// `status` is never patchable, not even to null).
#[tokio::test]
async fn a_merge_patch_null_on_an_unknown_field_is_refused() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("ghost@example.com").await;
        let ws = id(&s.workspace(&o, "Ghost", "ghost").await);
        collection(
            &s,
            &o,
            &ws,
            "notes",
            json!([{"name": "title", "type": "text"}]),
        )
        .await;
        let rid = id(&create(&s, &o, &ws, "notes", json!({"title": "t"})).await);
        let path = record(&ws, "notes", &rid);
        assert_invalid(
            &s.post(&records(&ws, "notes"), Some(&o), json!({"ghost": null}))
                .await,
            &["/ghost"],
            &format!("{b}: create, unknown field null"),
        );
        for (body, pointer) in [
            (json!({"ghost": null}), "/ghost"),
            (json!({"title": "u", "ghost": null}), "/ghost"),
            (json!({"status": null}), "/status"),
        ] {
            let r = s.patch(&path, Some(&o), body.clone()).await;
            assert_invalid(&r, &[pointer], &format!("{b}: PATCH {body}"));
        }
        assert_eq!(
            fetch(&s, &o, &ws, "notes", &rid).await["version"],
            1,
            "{b}: unchanged"
        );
        s.stop().await;
    }
}

/// A `json` field holds any JSON, fractions included, and its changes are audited like any
/// other (the audit entry must not choke on a fraction).
#[tokio::test]
async fn json_values_with_fractions_are_stored_and_audited() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("floats@example.com").await;
        let ws = id(&s.workspace(&o, "Floats", "floats").await);
        collection(
            &s,
            &o,
            &ws,
            "readings",
            json!([{"name": "data", "type": "json"}]),
        )
        .await;
        let value = json!({"t": 21.5, "list": [0.1, -0.5, 1.0], "n": 3});
        let r = s
            .post(&records(&ws, "readings"), Some(&o), json!({"data": value}))
            .await;
        assert_status(&r, 201, &format!("{b}: a json value with fractions"));
        assert_eq!(r.body["data"], value, "{b}");
        let rid = id(&r.body);
        assert_eq!(
            fetch(&s, &o, &ws, "readings", &rid).await["data"],
            value,
            "{b}"
        );
        let r = s
            .patch(
                &record(&ws, "readings", &rid),
                Some(&o),
                json!({"data": 2.75}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: a bare fraction"));
        assert_eq!(r.body["data"], json!(2.75), "{b}");
        let trail = record_audit(&s, &ws).await;
        let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["record.create", "record.update"], "{b}");
        // Canonical entries carry no fractions: a JSON value is audited as its JSON text.
        let update = &trail[1];
        let diff = &update.entry["diff"]["/data/data"];
        let before: Value = serde_json::from_str(diff[0].as_str().unwrap()).unwrap();
        assert_eq!(before, value, "{b}: {}", update.raw);
        assert_eq!(diff[1], json!("2.75"), "{b}: {}", update.raw);
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Field-level permissions (DAT-4).

#[tokio::test]
async fn field_grants_hide_unreadable_fields_and_refuse_unwritable_ones() {
    for s in servers().await {
        let b = s.backend();
        let (owner_id, o, _) = s.user("boss@example.com").await;
        let ws = id(&s.workspace(&o, "Fields", "fields").await);
        let (_, admin, _) = s.user(ADMIN).await;
        enable_modules(&s, &admin, &ws, &["advanced_rbac"]).await;
        let (narrow_id, narrow, narrow_member) =
            member(&s, &o, &ws, "narrow@example.com", "member").await;
        give_custom_role(&s, &o, &ws, &narrow_member, json!({"name": "Clerk", "base_role": "member",
                "permissions": ["workspace.read", "records.read", "records.read_draft", "records.write"],
                "fields": [
                    {"collection": "staff", "field": "title", "read": true, "write": false},
                    {"collection": "staff", "field": "title", "read": false, "write": true},
                    {"collection": "staff", "field": "note", "read": true, "write": false},
                    {"collection": "staff", "field": "salary", "read": false, "write": false},
                ]})).await;

        collection(
            &s,
            &o,
            &ws,
            "staff",
            json!([
                {"name": "title", "type": "text", "required": true},
                {"name": "note", "type": "text"},
                {"name": "salary", "type": "decimal", "encrypted": true},
                {"name": "email", "type": "text", "pii": true},
            ]),
        )
        .await;
        // Another collection without field grants: every field open.
        collection(&s, &o, &ws, "open", json!([{"name": "x", "type": "text"}])).await;

        let full = create(
            &s,
            &o,
            &ws,
            "staff",
            json!({"title": "Engineer", "note": "n1", "salary": "5000.00", "email": "e@x.org"}),
        )
        .await;
        let rid = id(&full);
        let path = record(&ws, "staff", &rid);
        let visible = json!({"title": "Engineer", "note": "n1"});
        let seen = fetch(&s, &narrow, &ws, "staff", &rid).await;
        assert_eq!(fields_of(&seen), visible, "{b}: GET: {seen}");
        for attr in ["id", "version", "created_by", "status"] {
            assert_eq!(seen[attr], full[attr], "{b}: {attr}");
        }
        for secret in ["5000.00", "e@x.org"] {
            assert!(
                !s.get(&path, Some(&narrow)).await.text.contains(secret),
                "{b}"
            );
        }
        let listed = list_all(&s, &narrow, &ws, "staff").await;
        assert_eq!(listed.len(), 1, "{b}");
        assert_eq!(fields_of(&listed[0]), visible, "{b}: list");
        let schema = s.get(&col_path(&ws, "staff"), Some(&narrow)).await;
        let names: Vec<&str> = schema.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["title", "note"], "{b}: schema");

        // Writes: the writable field works; the answer leaves out what may not be read.
        let r = s
            .patch(&path, Some(&narrow), json!({"title": "Senior engineer"}))
            .await;
        assert_status(&r, 200, &format!("{b}: narrowed PATCH"));
        assert_eq!(
            fields_of(&r.body),
            json!({"title": "Senior engineer", "note": "n1"}),
            "{b}: PATCH answer"
        );
        assert_eq!(r.body["updated_by"], narrow_id.as_str(), "{b}");
        let mine = create(&s, &narrow, &ws, "staff", json!({"title": "Intern"})).await;
        assert_eq!(fields_of(&mine), json!({"title": "Intern"}), "{b}");
        assert_eq!(mine["created_by"], narrow_id.as_str(), "{b}");
        let r = s
            .post(&format!("{path}/unpublish"), Some(&narrow), json!({}))
            .await;
        assert_status(&r, 200, &format!("{b}: narrowed unpublish"));
        assert_eq!(
            fields_of(&r.body),
            json!({"title": "Senior engineer", "note": "n1"}),
            "{b}"
        );
        let r = s
            .post(&format!("{path}/publish"), Some(&narrow), json!({}))
            .await;
        assert_status(&r, 200, &format!("{b}: narrowed publish"));
        assert_eq!(
            fields_of(&r.body),
            json!({"title": "Senior engineer", "note": "n1"}),
            "{b}"
        );
        let open = create(&s, &narrow, &ws, "open", json!({"x": "free"})).await;
        assert_eq!(
            open["x"], "free",
            "{b}: collections without grants are open"
        );

        // Unwritable fields: 403 naming each, nothing written.
        let head = audit_head(&s, &ws).await;
        let before = fetch(&s, &o, &ws, "staff", &rid).await;
        let refused: Vec<(Method, String, Value, Vec<&str>)> = vec![
            (
                Method::POST,
                records(&ws, "staff"),
                json!({"title": "t", "salary": "1"}),
                vec!["/salary"],
            ),
            (
                Method::POST,
                records(&ws, "staff"),
                json!({"title": "t", "salary": "1", "email": "a@b.c", "note": "x"}),
                vec!["/salary", "/email", "/note"],
            ),
            (
                Method::PATCH,
                path.clone(),
                json!({"salary": "9999.99"}),
                vec!["/salary"],
            ),
            (
                Method::PATCH,
                path.clone(),
                json!({"salary": null}),
                vec!["/salary"],
            ),
            (
                Method::PATCH,
                path.clone(),
                json!({"title": "ok", "email": "new@x.org"}),
                vec!["/email"],
            ),
            (
                Method::PATCH,
                path.clone(),
                json!({"note": "mine"}),
                vec!["/note"],
            ),
        ];
        for (method, at, body, pointers) in refused {
            let what = format!("{b}: {method} {body}");
            let r = send(&s, method, &at, &narrow, None, Some(body)).await;
            r.assert_problem(403, "field_not_writable", &what);
            assert_eq!(
                sorted(r.pointers()),
                strings(&pointers),
                "{what}: {}",
                r.text
            );
            assert!(!r.text.contains("5000.00"), "{what}");
        }
        assert_eq!(
            audit_head(&s, &ws).await,
            head,
            "{b}: refusals write nothing"
        );
        assert_eq!(
            fetch(&s, &o, &ws, "staff", &rid).await,
            before,
            "{b}: unchanged"
        );
        assert_eq!(before["salary"], "5000.00", "{b}");
        assert_eq!(before["email"], "e@x.org", "{b}");
        assert_eq!(list_all(&s, &o, &ws, "staff").await.len(), 2, "{b}");
        // The owner still sees and writes everything.
        let r = s.patch(&path, Some(&o), json!({"salary": "6000.00"})).await;
        assert_status(&r, 200, &format!("{b}: owner PATCH"));
        assert_eq!(r.body["salary"], "6000.00", "{b}");
        assert_eq!(r.body["updated_by"], owner_id.as_str(), "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Drafts (DAT-3).

#[tokio::test]
async fn drafts_are_hidden_without_read_draft_and_publishing_is_audited() {
    for s in servers().await {
        let b = s.backend();
        let (uid, o, _) = s.user("editor@example.com").await;
        let ws = id(&s.workspace(&o, "Drafts", "drafts").await);
        let (_, m, _) = member(&s, &o, &ws, "writer@example.com", "member").await;
        collection(
            &s,
            &o,
            &ws,
            "posts",
            json!([{"name": "title", "type": "text", "required": true}]),
        )
        .await;
        let (_, read_key) = create_key(&s, &o, &ws, &["read"]).await;
        let (_, draft_key) = create_key(&s, &o, &ws, &["read", "read_draft"]).await;

        let draft = create(
            &s,
            &o,
            &ws,
            "posts",
            json!({"title": "Secret", "status": "draft"}),
        )
        .await;
        assert_eq!(draft["status"], "draft", "{b}");
        assert_eq!(draft["published_at"], Value::Null, "{b}");
        let public = create(
            &s,
            &o,
            &ws,
            "posts",
            json!({"title": "Public", "status": "published"}),
        )
        .await;
        let (did, pid) = (id(&draft), id(&public));
        let dpath = record(&ws, "posts", &did);

        s.get(&dpath, Some(&read_key)).await.assert_problem(
            404,
            "record_not_found",
            &format!("{b}: read key, draft"),
        );
        assert_eq!(
            ids(&list_all(&s, &read_key, &ws, "posts").await),
            std::slice::from_ref(&pid),
            "{b}"
        );
        assert_eq!(
            fetch(&s, &read_key, &ws, "posts", &pid).await,
            public,
            "{b}"
        );
        for (who, token) in [
            ("read_draft key", &draft_key),
            ("member", &m),
            ("owner", &o),
        ] {
            assert_eq!(
                fetch(&s, token, &ws, "posts", &did).await,
                draft,
                "{b}: {who}"
            );
            assert_eq!(
                ids(&list_all(&s, token, &ws, "posts").await),
                sorted(vec![did.clone(), pid.clone()]),
                "{b}: {who} lists drafts"
            );
        }

        // Publish: version + 1, visible to the read key; again is a no-op.
        let r = s
            .post(&format!("{dpath}/publish"), Some(&o), json!({}))
            .await;
        assert_status(&r, 200, &format!("{b}: publish"));
        assert_eq!(r.body["status"], "published", "{b}");
        assert_eq!(r.body["version"], 2, "{b}");
        assert_eq!(r.header("etag"), "\"2\"", "{b}");
        assert!(r.body["published_at"].is_string(), "{b}: {}", r.text);
        assert_eq!(r.body["title"], "Secret", "{b}");
        let published = r.body.clone();
        assert_eq!(
            fetch(&s, &read_key, &ws, "posts", &did).await,
            published,
            "{b}"
        );
        let head = audit_head(&s, &ws).await;
        let r = s
            .post(&format!("{dpath}/publish"), Some(&o), json!({}))
            .await;
        assert_status(&r, 200, &format!("{b}: publish again"));
        assert_eq!(r.body["version"], 2, "{b}: no-op");
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: no-op writes nothing");

        // Unpublish: hidden again.
        let r = s
            .post(&format!("{dpath}/unpublish"), Some(&m), json!({}))
            .await;
        assert_status(&r, 200, &format!("{b}: unpublish"));
        assert_eq!(r.body["status"], "draft", "{b}");
        assert_eq!(r.body["version"], 3, "{b}");
        s.get(&dpath, Some(&read_key)).await.assert_problem(
            404,
            "record_not_found",
            &format!("{b}: draft again"),
        );
        assert_eq!(
            ids(&list_all(&s, &read_key, &ws, "posts").await),
            std::slice::from_ref(&pid),
            "{b}"
        );
        let r = s
            .post(&format!("{dpath}/unpublish"), Some(&o), json!({}))
            .await;
        assert_eq!(r.body["version"], 3, "{b}: no-op");
        // A read-only key may not publish, nor see a draft to change it.
        s.post(&format!("{dpath}/publish"), Some(&read_key), json!({}))
            .await
            .assert_problem(
                403,
                "permission_denied",
                &format!("{b}: read key publishes"),
            );

        let trail: Vec<Ev> = record_audit(&s, &ws)
            .await
            .into_iter()
            .filter(|e| e.target == pair("record", &did))
            .collect();
        let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["record.create", "record.publish", "record.unpublish"],
            "{b}"
        );
        assert_eq!(
            trail[0].entry["diff"]["/status"],
            json!([null, "draft"]),
            "{b}: {}",
            trail[0].raw
        );
        assert_eq!(
            trail[1].entry["diff"]["/status"],
            json!(["draft", "published"]),
            "{b}"
        );
        assert_eq!(trail[1].entry["diff"]["/version"], json!([1, 2]), "{b}");
        assert_eq!(
            trail[2].entry["diff"]["/status"],
            json!(["published", "draft"]),
            "{b}"
        );
        assert_eq!(trail[2].entry["diff"]["/version"], json!([2, 3]), "{b}");
        for e in &trail {
            assert_eq!(e.entry["collection"], "posts", "{b}: {}", e.raw);
        }
        assert_eq!(trail[1].actor, pair("user", &uid), "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Optimistic concurrency.

#[tokio::test]
async fn if_match_guards_changes_and_the_etag_is_the_version() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("cas@example.com").await;
        let ws = id(&s.workspace(&o, "Cas", "cas").await);
        collection(
            &s,
            &o,
            &ws,
            "docs",
            json!([{"name": "title", "type": "text"}, {"name": "n", "type": "integer"}]),
        )
        .await;
        let rid = id(&create(&s, &o, &ws, "docs", json!({"title": "v1", "n": 1})).await);
        let path = record(&ws, "docs", &rid);

        let r = send(
            &s,
            Method::PATCH,
            &path,
            &o,
            Some("\"1\""),
            Some(json!({"title": "v2"})),
        )
        .await;
        assert_status(&r, 200, &format!("{b}: fresh If-Match"));
        assert_eq!(r.header("etag"), "\"2\"", "{b}");
        assert_eq!(r.body["version"], 2, "{b}");
        assert_eq!(r.body["title"], "v2", "{b}");
        assert_eq!(r.body["n"], 1, "{b}: untouched fields stay");
        assert_ne!(r.body["updated_at"], Value::Null, "{b}");

        let head = audit_head(&s, &ws).await;
        for stale in ["\"1\"", "W/\"1\"", "\"3\"", "garbage"] {
            let r = send(
                &s,
                Method::PATCH,
                &path,
                &o,
                Some(stale),
                Some(json!({"title": "lost", "n": 5})),
            )
            .await;
            r.assert_problem(
                412,
                "precondition_failed",
                &format!("{b}: If-Match {stale}"),
            );
        }
        let r = send(&s, Method::DELETE, &path, &o, Some("\"1\""), None).await;
        r.assert_problem(412, "precondition_failed", &format!("{b}: stale delete"));
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: nothing written");
        let now = s.get(&path, Some(&o)).await;
        assert_status(&now, 200, b);
        assert_eq!(now.header("etag"), "\"2\"", "{b}");
        assert_eq!(now.body["version"], 2, "{b}");
        assert_eq!(
            fields_of(&now.body),
            json!({"title": "v2", "n": 1}),
            "{b}: unchanged"
        );

        let r = send(
            &s,
            Method::PATCH,
            &path,
            &o,
            Some("W/\"2\""),
            Some(json!({"n": 2})),
        )
        .await;
        assert_status(&r, 200, &format!("{b}: weak If-Match"));
        assert_eq!(r.header("etag"), "\"3\"", "{b}");
        let r = send(
            &s,
            Method::PATCH,
            &path,
            &o,
            Some("*"),
            Some(json!({"n": 3})),
        )
        .await;
        assert_status(&r, 200, &format!("{b}: If-Match *"));
        assert_eq!(r.header("etag"), "\"4\"", "{b}");
        // The merge-patch media type works too; no If-Match means any version.
        let r = s
            .raw(
                s.client
                    .patch(format!("{}{path}", s.base))
                    .bearer_auth(&o)
                    .header("content-type", "application/merge-patch+json")
                    .body(json!({"title": null}).to_string()),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: merge-patch+json"));
        assert_eq!(r.header("etag"), "\"5\"", "{b}");
        assert_eq!(fields_of(&r.body), json!({"n": 3}), "{b}: null removes");
        let got = fetch(&s, &o, &ws, "docs", &rid).await;
        assert_eq!(got, r.body, "{b}");
        // The ETag read is the one to send back.
        let r = send(&s, Method::DELETE, &path, &o, Some("\"4\""), None).await;
        r.assert_problem(412, "precondition_failed", &format!("{b}: stale delete"));
        let r = send(
            &s,
            Method::DELETE,
            &path,
            &o,
            Some(&format!("\"{}\"", got["version"])),
            None,
        )
        .await;
        assert_status(&r, 204, &format!("{b}: delete at the version"));
        s.get(&path, Some(&o))
            .await
            .assert_problem(404, "record_not_found", &format!("{b}: gone"));
        let r = send(
            &s,
            Method::PATCH,
            &path,
            &o,
            Some("\"5\""),
            Some(json!({"n": 1})),
        )
        .await;
        r.assert_problem(404, "record_not_found", &format!("{b}: PATCH gone"));
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Isolation.

#[tokio::test]
async fn record_ids_do_not_cross_workspaces_or_collections() {
    for s in servers().await {
        let b = s.backend();
        let (_, alice, _) = s.user("alice@example.com").await;
        let (_, bob, _) = s.user("bob@example.com").await;
        let a = id(&s.workspace(&alice, "Alpha", "alpha").await);
        let bw = id(&s.workspace(&bob, "Beta", "beta").await);
        for (token, ws) in [(&alice, &a), (&bob, &bw)] {
            collection(
                &s,
                token,
                ws,
                "notes",
                json!([{"name": "title", "type": "text"}, {"name": "tags", "type": "tags"}]),
            )
            .await;
            collection(
                &s,
                token,
                ws,
                "links",
                json!([{"name": "to", "type": "relation", "options": {"collection": "notes"}}]),
            )
            .await;
        }
        collection(
            &s,
            &alice,
            &a,
            "other",
            json!([{"name": "title", "type": "text"}]),
        )
        .await;
        let mine = create(
            &s,
            &alice,
            &a,
            "notes",
            json!({"title": "Alice's", "tags": ["x"]}),
        )
        .await;
        let aid = id(&mine);
        let other = id(&create(&s, &alice, &a, "other", json!({"title": "elsewhere"})).await);
        create(&s, &bob, &bw, "notes", json!({"title": "Bob's"})).await;
        let head_a = audit_head(&s, &a).await;
        let head_b = audit_head(&s, &bw).await;

        let foreign = record(&bw, "notes", &aid);
        let cases: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, foreign.clone(), None),
            (
                Method::PATCH,
                foreign.clone(),
                Some(json!({"title": "stolen"})),
            ),
            (Method::DELETE, foreign.clone(), None),
            (Method::POST, format!("{foreign}/publish"), Some(json!({}))),
            (
                Method::POST,
                format!("{foreign}/unpublish"),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("{foreign}/tags"),
                Some(json!({"add": ["y"]})),
            ),
        ];
        for (method, path, body) in cases {
            let r = send(&s, method.clone(), &path, &bob, None, body).await;
            r.assert_problem(
                404,
                "record_not_found",
                &format!("{b}: bob {method} {path}"),
            );
        }
        // Another collection's record in the same workspace, and ids that are no ids.
        for rid in [
            other.as_str(),
            "nope",
            "rec_",
            "col_01m80bbg8bet59xtdzjd4dbxa8",
        ] {
            let path = record(&a, "notes", rid);
            s.get(&path, Some(&alice)).await.assert_problem(
                404,
                "record_not_found",
                &format!("{b}: {rid}"),
            );
            s.patch(&path, Some(&alice), json!({"title": "x"}))
                .await
                .assert_problem(404, "record_not_found", &format!("{b}: PATCH {rid}"));
            delete(&s, &path, &alice).await.assert_problem(
                404,
                "record_not_found",
                &format!("{b}: DELETE {rid}"),
            );
        }
        // Nor may a relation point across workspaces or collections.
        assert_invalid(
            &s.post(&records(&bw, "links"), Some(&bob), json!({"to": aid}))
                .await,
            &["/to"],
            &format!("{b}: relation to another workspace"),
        );
        assert_invalid(
            &s.post(&records(&a, "links"), Some(&alice), json!({"to": other}))
                .await,
            &["/to"],
            &format!("{b}: relation to another collection"),
        );
        assert_eq!(audit_head(&s, &a).await, head_a, "{b}: A unchanged");
        assert_eq!(audit_head(&s, &bw).await, head_b, "{b}: B unchanged");
        assert_eq!(fetch(&s, &alice, &a, "notes", &aid).await, mine, "{b}");
        assert_eq!(list_all(&s, &bob, &bw, "notes").await.len(), 1, "{b}");
        assert!(
            !ids(&list_all(&s, &bob, &bw, "notes").await).contains(&aid),
            "{b}"
        );
        // Bob cannot reach Alice's workspace at all.
        let r = s.get(&record(&a, "notes", &aid), Some(&bob)).await;
        assert!(
            matches!(r.status.as_u16(), 403 | 404),
            "{b}: outsider: {}",
            r.text
        );
        assert!(!r.text.contains("Alice's"), "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Encrypted and personal values at rest and in the log.

const ENC_1: &str = "CANARY-ENC-q7Zx3vKp";
const ENC_2: &str = "CANARY-ENC-m2Wd8rTy";
const PII_1: &str = "CANARY-PII-h4Jn6sLb";
const PII_2: &str = "CANARY-PII-c9Fg1kQe";

#[tokio::test]
async fn encrypted_values_never_reach_the_database_and_the_log_holds_no_secrets() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("vault@example.com").await;
        let ws = id(&s.workspace(&o, "Vault", "vault").await);
        collection(
            &s,
            &o,
            &ws,
            "vault",
            json!([
                {"name": "label", "type": "text"},
                {"name": "secret", "type": "text", "encrypted": true},
                {"name": "blob", "type": "json", "encrypted": true},
                {"name": "ssn", "type": "text", "pii": true},
            ]),
        )
        .await;
        let made = create(
            &s,
            &o,
            &ws,
            "vault",
            json!({"label": "plain", "secret": ENC_1, "blob": {"k": ENC_1}, "ssn": PII_1}),
        )
        .await;
        let rid = id(&made);
        assert_eq!(made["secret"], ENC_1, "{b}: the writer reads it back");
        assert_eq!(made["blob"], json!({"k": ENC_1}), "{b}");
        let r = s
            .patch(
                &record(&ws, "vault", &rid),
                Some(&o),
                json!({"secret": ENC_2, "ssn": PII_2, "label": "plain 2"}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: PATCH"));
        let got = fetch(&s, &o, &ws, "vault", &rid).await;
        assert_eq!(
            fields_of(&got),
            json!({"label": "plain 2", "secret": ENC_2, "blob": {"k": ENC_1}, "ssn": PII_2}),
            "{b}: readers get plaintext"
        );
        assert_eq!(
            list_all(&s, &o, &ws, "vault").await,
            std::slice::from_ref(&got),
            "{b}"
        );
        let other = create(&s, &o, &ws, "vault", json!({"secret": ENC_2})).await;
        assert_eq!(other["secret"], ENC_2, "{b}");
        assert_status(
            &delete(&s, &record(&ws, "vault", &id(&other)), &o).await,
            204,
            &format!("{b}: delete"),
        );

        let image = database_image(&s).await;
        assert!(
            contains(&image, "plain 2"),
            "{b}: the image is searchable (sanity)"
        );
        assert!(
            contains(&image, "CANARY-PII"),
            "{b}: personal values are kept beside the log (sanity)"
        );
        assert!(
            !contains(&image, "CANARY-ENC"),
            "{b}: an encrypted value in clear in the database"
        );

        let trail = record_audit(&s, &ws).await;
        let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "record.create",
                "record.update",
                "record.create",
                "record.delete"
            ],
            "{b}"
        );
        for e in &trail {
            assert!(
                !e.raw.contains("CANARY"),
                "{b}: a secret in an audit entry: {}",
                e.raw
            );
        }
        let create_entry = &trail[0].entry;
        assert_eq!(
            create_entry["diff"]["/data/secret"],
            json!([null, "(encrypted)"]),
            "{b}: {create_entry}"
        );
        assert_eq!(
            create_entry["diff"]["/data/blob"],
            json!([null, "(encrypted)"]),
            "{b}"
        );
        assert_eq!(
            create_entry["diff"]["/data/label"],
            json!([null, "plain"]),
            "{b}"
        );
        assert!(
            create_entry["diff"].get("/data/ssn").is_none(),
            "{b}: {create_entry}"
        );
        assert_eq!(create_entry["personal_fields"], json!(["ssn"]), "{b}");
        assert!(
            create_entry["pii"]["/data/ssn/after"].is_string(),
            "{b}: committed: {create_entry}"
        );
        assert_eq!(
            trail[0]
                .openings
                .iter()
                .filter(|p| p.starts_with("/data/"))
                .count(),
            1,
            "{b}"
        );
        let update_entry = &trail[1].entry;
        assert_eq!(
            update_entry["diff"]["/data/secret"],
            json!(["(encrypted)", "(encrypted)"]),
            "{b}: {update_entry}"
        );
        assert!(
            update_entry["diff"].get("/data/blob").is_none(),
            "{b}: unchanged"
        );
        assert_eq!(
            update_entry["diff"]["/data/label"],
            json!(["plain", "plain 2"]),
            "{b}"
        );
        assert_eq!(update_entry["personal_fields"], json!(["ssn"]), "{b}");
        assert!(update_entry["pii"]["/data/ssn/before"].is_string(), "{b}");
        assert!(update_entry["pii"]["/data/ssn/after"].is_string(), "{b}");
        assert_eq!(
            trail[3].entry["diff"]["/data/secret"],
            json!(["(encrypted)", null]),
            "{b}: delete"
        );
        s.stop().await;
    }
}

/// A field both personal and encrypted: its value is committed in the log, so its opening must
/// not store it in clear beside the log either.
#[tokio::test]
async fn a_personal_encrypted_value_is_not_in_clear_anywhere_in_the_database() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("both@example.com").await;
        let ws = id(&s.workspace(&o, "Both", "both").await);
        collection(
            &s,
            &o,
            &ws,
            "patients",
            json!([{"name": "diagnosis", "type": "text", "pii": true, "encrypted": true}]),
        )
        .await;
        let made = create(&s, &o, &ws, "patients", json!({"diagnosis": ENC_1})).await;
        assert_eq!(
            fetch(&s, &o, &ws, "patients", &id(&made)).await["diagnosis"],
            ENC_1,
            "{b}"
        );
        for e in record_audit(&s, &ws).await {
            assert!(!e.raw.contains("CANARY"), "{b}: {}", e.raw);
        }
        let image = database_image(&s).await;
        assert!(
            !contains(&image, ENC_1),
            "{b}: the plaintext of a pii + encrypted field is in the database (audit openings)"
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 8. The audit trail of records, and its verification.

#[tokio::test]
async fn every_record_change_is_audited_and_the_log_verifies() {
    let mut all = Vec::new();
    for db in databases().await {
        all.push(Server::start_with(db, |c| c.audit_checkpoint_interval_secs = 1).await);
    }
    for s in all {
        let b = s.backend();
        let (uid, o, _) = s.user("trail@example.com").await;
        let ws = id(&s.workspace(&o, "Trail", "trail").await);
        collection(
            &s,
            &o,
            &ws,
            "people",
            json!([{"name": "name", "type": "text"}]),
        )
        .await;
        collection(
            &s,
            &o,
            &ws,
            "tasks",
            json!([
                {"name": "title", "type": "text", "required": true},
                {"name": "done", "type": "boolean"},
                {"name": "labels", "type": "tags"},
                {"name": "assignee", "type": "relation", "options": {"collection": "people"}},
                {"name": "secret", "type": "text", "encrypted": true},
                {"name": "contact", "type": "text", "pii": true},
            ]),
        )
        .await;
        let p1 = id(&create(&s, &o, &ws, "people", json!({"name": "One"})).await);
        let p2 = id(&create(&s, &o, &ws, "people", json!({"name": "Two"})).await);
        let (key_id, key) = create_key(&s, &o, &ws, &["read", "write"]).await;
        let start = audit_head(&s, &ws).await;

        // Created by an API key, with tags and a relation.
        let made = create(
            &s,
            &key,
            &ws,
            "tasks",
            json!({"title": "Write tests", "labels": ["a", "b"], "assignee": p1,
                   "secret": ENC_1, "contact": PII_1}),
        )
        .await;
        let t = id(&made);
        assert_eq!(
            made["created_by"],
            key_id.as_str(),
            "{b}: the key is the actor"
        );
        let path = record(&ws, "tasks", &t);
        // Changed by the owner: a plain field, a new value, the relation moved.
        let r = s
            .patch(
                &path,
                Some(&o),
                json!({"title": "Write more tests", "done": true, "assignee": p2}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: PATCH"));
        assert_eq!(r.body["created_by"], key_id.as_str(), "{b}");
        assert_eq!(r.body["updated_by"], uid.as_str(), "{b}");
        // Tags through the tags endpoint (the only tags field needs no name).
        let r = s
            .post(
                &format!("{path}/tags"),
                Some(&o),
                json!({"add": ["c", "b"], "remove": ["a"]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: tags"));
        assert_eq!(r.body["labels"], json!(["b", "c"]), "{b}");
        assert_eq!(r.body["version"], 3, "{b}");
        let r = s
            .post(
                &format!("{path}/tags"),
                Some(&o),
                json!({"field": "labels", "add": ["d"]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: tags by name"));
        assert_eq!(r.body["labels"], json!(["b", "c", "d"]), "{b}");
        let r = s
            .post(
                &format!("{path}/tags"),
                Some(&o),
                json!({"field": "title", "add": ["x"]}),
            )
            .await;
        assert_invalid(&r, &["/field"], &format!("{b}: not a tags field"));
        let r = s
            .post(&format!("{path}/tags"), Some(&o), json!({"add": [""]}))
            .await;
        assert_invalid(&r, &["/labels"], &format!("{b}: empty tag"));
        // The relation cleared, the status toggled, then deleted.
        let r = s
            .patch(&path, Some(&o), json!({"assignee": null, "labels": ["d"]}))
            .await;
        assert_status(&r, 200, &format!("{b}: clear"));
        assert_eq!(r.body["version"], 5, "{b}");
        assert_status(
            &s.post(&format!("{path}/unpublish"), Some(&key), json!({}))
                .await,
            200,
            b,
        );
        assert_status(
            &s.post(&format!("{path}/publish"), Some(&o), json!({}))
                .await,
            200,
            b,
        );
        assert_status(&delete(&s, &path, &key).await, 204, &format!("{b}: delete"));

        let trail: Vec<Ev> = audit(&s, &ws)
            .await
            .into_iter()
            .filter(|e| e.seq > start)
            .collect();
        let user = pair("user", &uid);
        let api = pair("api_key", &key_id);
        let summary: Vec<(&str, (String, String), Value, Value)> = trail
            .iter()
            .map(|e| {
                (
                    e.action.as_str(),
                    e.actor.clone(),
                    e.entry.get("field").cloned().unwrap_or(Value::Null),
                    e.entry.get("data").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        let expected: Vec<(&str, (String, String), Value, Value)> = vec![
            ("record.create", api.clone(), Value::Null, Value::Null),
            (
                "record.tag_added",
                api.clone(),
                json!("labels"),
                json!({"tag": "a"}),
            ),
            (
                "record.tag_added",
                api.clone(),
                json!("labels"),
                json!({"tag": "b"}),
            ),
            (
                "record.relation_set",
                api.clone(),
                json!("assignee"),
                json!({"from": null, "to": p1}),
            ),
            ("record.update", user.clone(), Value::Null, Value::Null),
            (
                "record.relation_set",
                user.clone(),
                json!("assignee"),
                json!({"from": p1, "to": p2}),
            ),
            ("record.update", user.clone(), Value::Null, Value::Null),
            (
                "record.tag_added",
                user.clone(),
                json!("labels"),
                json!({"tag": "c"}),
            ),
            (
                "record.tag_removed",
                user.clone(),
                json!("labels"),
                json!({"tag": "a"}),
            ),
            ("record.update", user.clone(), Value::Null, Value::Null),
            (
                "record.tag_added",
                user.clone(),
                json!("labels"),
                json!({"tag": "d"}),
            ),
            ("record.update", user.clone(), Value::Null, Value::Null),
            (
                "record.tag_removed",
                user.clone(),
                json!("labels"),
                json!({"tag": "b"}),
            ),
            (
                "record.tag_removed",
                user.clone(),
                json!("labels"),
                json!({"tag": "c"}),
            ),
            (
                "record.relation_cleared",
                user.clone(),
                json!("assignee"),
                json!({"from": p2}),
            ),
            ("record.unpublish", api.clone(), Value::Null, Value::Null),
            ("record.publish", user.clone(), Value::Null, Value::Null),
            ("record.delete", api.clone(), Value::Null, Value::Null),
        ];
        assert_eq!(summary, expected, "{b}: {trail:#?}");
        for e in &trail {
            assert_eq!(e.target, pair("record", &t), "{b}: {}", e.raw);
            assert_eq!(e.entry["collection"], "tasks", "{b}: {}", e.raw);
            assert!(!e.raw.contains("CANARY"), "{b}: {}", e.raw);
        }
        let diff = |i: usize| trail[i].entry["diff"].clone();
        assert_eq!(
            diff(0),
            json!({"/status": [null, "published"], "/data/title": [null, "Write tests"],
                   "/data/labels": [null, ["a", "b"]], "/data/assignee": [null, p1],
                   "/data/secret": [null, "(encrypted)"]}),
            "{b}: create diff"
        );
        assert_eq!(trail[0].entry["personal_fields"], json!(["contact"]), "{b}");
        assert_eq!(
            diff(4),
            json!({"/version": [1, 2], "/data/title": ["Write tests", "Write more tests"],
                   "/data/done": [null, true], "/data/assignee": [p1, p2]}),
            "{b}: update diff"
        );
        assert_eq!(
            diff(6),
            json!({"/version": [2, 3], "/data/labels": [["a", "b"], ["b", "c"]]}),
            "{b}: tags diff"
        );
        assert_eq!(
            diff(11),
            json!({"/version": [4, 5], "/data/labels": [["b", "c", "d"], ["d"]],
                   "/data/assignee": [p2, null]}),
            "{b}: clear diff"
        );
        assert_eq!(
            diff(15),
            json!({"/status": ["published", "draft"], "/version": [5, 6]}),
            "{b}"
        );
        assert_eq!(
            diff(16),
            json!({"/status": ["draft", "published"], "/version": [6, 7]}),
            "{b}"
        );
        assert_eq!(
            diff(17),
            json!({"/status": ["published", null], "/data/title": ["Write more tests", null],
                   "/data/done": [true, null], "/data/labels": [["d"], null],
                   "/data/secret": ["(encrypted)", null]}),
            "{b}: delete diff"
        );
        assert_eq!(
            trail[17].entry["personal_fields"],
            json!(["contact"]),
            "{b}"
        );

        let size = s.workspace_log(&ws).await.len() as u64;
        let report = assert_log_verifies(&s, &o, &ws, size).await;
        assert!(report["entries"].as_u64().unwrap() >= size, "{b}: {report}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Schema changes over existing records.

#[tokio::test]
async fn schema_changes_respect_existing_records_and_deleting_a_collection_deletes_them() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("schema@example.com").await;
        let ws = id(&s.workspace(&o, "Schema", "schema").await);
        let items = collection(
            &s,
            &o,
            &ws,
            "items",
            json!([
                {"name": "name", "type": "text", "required": true},
                {"name": "code", "type": "text"},
                {"name": "qty", "type": "integer"},
                {"name": "old", "type": "text"},
                {"name": "sku", "type": "text", "unique": true},
            ]),
        )
        .await;
        let cpath = col_path(&ws, "items");
        let r1 = id(&create(
            &s,
            &o,
            &ws,
            "items",
            json!({"name": "a", "code": "X", "old": "legacy", "sku": "S1"}),
        )
        .await);
        let r2 = id(&create(
            &s,
            &o,
            &ws,
            "items",
            json!({"name": "b", "code": "X", "qty": 2}),
        )
        .await);
        let r3 = id(&create(
            &s,
            &o,
            &ws,
            "items",
            json!({"name": "c", "status": "draft"}),
        )
        .await);

        let head = audit_head(&s, &ws).await;
        for (patch, pointers, what) in [
            (
                json!({"update_fields": [{"name": "qty", "required": true}]}),
                vec!["/update_fields/0/required"],
                "required, values missing",
            ),
            (
                json!({"update_fields": [{"name": "code", "unique": true}]}),
                vec!["/update_fields/0/unique"],
                "unique, duplicates",
            ),
            (
                json!({"add_fields": [{"name": "must", "type": "text", "required": true}]}),
                vec!["/add_fields/0/required"],
                "new required field",
            ),
            (
                json!({"add_fields": [{"name": "ok", "type": "text"}], "update_fields": [{"name": "code", "unique": true}], "remove_fields": ["old"]}),
                vec!["/update_fields/0/unique"],
                "all or nothing",
            ),
        ] {
            let r = s.patch(&cpath, Some(&o), patch).await;
            assert_invalid(&r, &pointers, &format!("{b}: {what}"));
        }
        assert_eq!(
            audit_head(&s, &ws).await,
            head,
            "{b}: refusals write nothing"
        );
        let now = s.get(&cpath, Some(&o)).await;
        assert_eq!(now.body, items, "{b}: schema unchanged");
        assert_eq!(
            fetch(&s, &o, &ws, "items", &r1).await["old"],
            "legacy",
            "{b}: kept"
        );

        // Fix the data, then the same changes pass.
        for (rid, qty) in [(&r1, 1), (&r3, 3)] {
            assert_status(
                &s.patch(&record(&ws, "items", rid), Some(&o), json!({"qty": qty}))
                    .await,
                200,
                b,
            );
        }
        assert_status(
            &s.patch(&record(&ws, "items", &r2), Some(&o), json!({"code": "Y"}))
                .await,
            200,
            b,
        );
        let r = s
            .patch(&cpath, Some(&o), json!({"update_fields": [{"name": "qty", "required": true}, {"name": "code", "unique": true}]}))
            .await;
        assert_status(&r, 200, &format!("{b}: required and unique now hold"));
        assert_invalid(
            &s.post(
                &records(&ws, "items"),
                Some(&o),
                json!({"name": "d", "code": "X", "qty": 4}),
            )
            .await,
            &["/code"],
            &format!("{b}: the turned-on unique field claimed the existing values"),
        );
        assert_invalid(
            &s.post(&records(&ws, "items"), Some(&o), json!({"name": "d"}))
                .await,
            &["/qty"],
            &format!("{b}: now required"),
        );
        assert_invalid(
            &s.patch(&record(&ws, "items", &r2), Some(&o), json!({"qty": null}))
                .await,
            &["/qty"],
            &format!("{b}: now required on PATCH"),
        );

        // Removing a field strips its values (drafts too); re-adding shows none of them.
        let r = s
            .patch(&cpath, Some(&o), json!({"remove_fields": ["old", "sku"]}))
            .await;
        assert_status(&r, 200, &format!("{b}: remove fields"));
        let after = fetch(&s, &o, &ws, "items", &r1).await;
        assert!(
            after.get("old").is_none() && after.get("sku").is_none(),
            "{b}: {after}"
        );
        assert_eq!(
            fields_of(&after),
            json!({"name": "a", "code": "X", "qty": 1}),
            "{b}"
        );
        let r = s
            .patch(&cpath, Some(&o), json!({"add_fields": [{"name": "old", "type": "text"}, {"name": "sku", "type": "text", "unique": true}]}))
            .await;
        assert_status(&r, 200, &format!("{b}: re-add"));
        for rid in [&r1, &r2, &r3] {
            let got = fetch(&s, &o, &ws, "items", rid).await;
            assert!(
                got.get("old").is_none(),
                "{b}: an old value came back: {got}"
            );
            assert!(got.get("sku").is_none(), "{b}: {got}");
        }
        // The removed unique field's claims went with it.
        let r4 = create(
            &s,
            &o,
            &ws,
            "items",
            json!({"name": "e", "qty": 5, "sku": "S1"}),
        )
        .await;
        assert_eq!(r4["sku"], "S1", "{b}");
        // A new unique field added while records exist (they have no value) is fine.
        let r = s
            .patch(
                &cpath,
                Some(&o),
                json!({"add_fields": [{"name": "serial", "type": "integer", "unique": true}]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: new unique field"));

        // Deleting a collection deletes its records.
        let temp = collection(&s, &o, &ws, "temp", json!([{"name": "v", "type": "text"}])).await;
        let gone = id(&create(&s, &o, &ws, "temp", json!({"v": "one"})).await);
        create(&s, &o, &ws, "temp", json!({"v": "two", "status": "draft"})).await;
        assert_eq!(stored_records(&s, &ws, &id(&temp)).await, 2, "{b}");
        assert_status(
            &delete(&s, &col_path(&ws, "temp"), &o).await,
            204,
            &format!("{b}: delete collection"),
        );
        assert_eq!(
            stored_records(&s, &ws, &id(&temp)).await,
            0,
            "{b}: records deleted"
        );
        s.get(&record(&ws, "temp", &gone), Some(&o))
            .await
            .assert_problem(404, "collection_not_found", &format!("{b}: gone"));
        collection(&s, &o, &ws, "temp", json!([{"name": "v", "type": "text"}])).await;
        assert!(
            list_all(&s, &o, &ws, "temp").await.is_empty(),
            "{b}: a new collection starts empty"
        );
        s.get(&record(&ws, "temp", &gone), Some(&o))
            .await
            .assert_problem(404, "record_not_found", &format!("{b}: old id"));
        assert_eq!(
            list_all(&s, &o, &ws, "items").await.len(),
            4,
            "{b}: others untouched"
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Roles and scopes.

#[tokio::test]
async fn roles_and_scopes_decide_who_reads_and_writes_records() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("keys@example.com").await;
        let ws = id(&s.workspace(&o, "Perms", "perms").await);
        let (member_id, m, _) = member(&s, &o, &ws, "m@example.com", "member").await;
        let (_, billing, _) = member(&s, &o, &ws, "bill@example.com", "billing").await;
        let (_, admin, _) = member(&s, &o, &ws, "adm@example.com", "admin").await;
        collection(
            &s,
            &o,
            &ws,
            "posts",
            json!([{"name": "title", "type": "text"}]),
        )
        .await;
        let (write_id, write_key) = create_key(&s, &o, &ws, &["write"]).await;
        let (_, read_key) = create_key(&s, &o, &ws, &["read"]).await;
        let (rw_id, rw_key) = create_key(&s, &o, &ws, &["read", "write"]).await;
        let (_, mgmt_key) = create_key(&s, &o, &ws, &["management"]).await;
        let existing = create(&s, &o, &ws, "posts", json!({"title": "hello"})).await;
        let eid = id(&existing);
        let epath = record(&ws, "posts", &eid);

        // Billing sees no records and writes none; a management key neither.
        let head = audit_head(&s, &ws).await;
        for (who, token) in [("billing", &billing), ("management key", &mgmt_key)] {
            let what = format!("{b}: {who}");
            s.get(&records(&ws, "posts"), Some(token))
                .await
                .assert_problem(403, "permission_denied", &format!("{what} lists"));
            s.get(&epath, Some(token)).await.assert_problem(
                403,
                "permission_denied",
                &format!("{what} reads"),
            );
            s.post(&records(&ws, "posts"), Some(token), json!({"title": "x"}))
                .await
                .assert_problem(403, "permission_denied", &format!("{what} creates"));
            s.patch(&epath, Some(token), json!({"title": "x"}))
                .await
                .assert_problem(403, "permission_denied", &format!("{what} patches"));
            delete(&s, &epath, token).await.assert_problem(
                403,
                "permission_denied",
                &format!("{what} deletes"),
            );
        }
        // A read key reads, never writes.
        assert_eq!(
            fetch(&s, &read_key, &ws, "posts", &eid).await,
            existing,
            "{b}"
        );
        s.post(
            &records(&ws, "posts"),
            Some(&read_key),
            json!({"title": "x"}),
        )
        .await
        .assert_problem(403, "permission_denied", &format!("{b}: read key creates"));
        s.patch(&epath, Some(&read_key), json!({"title": "x"}))
            .await
            .assert_problem(403, "permission_denied", &format!("{b}: read key patches"));
        s.post(
            &format!("{epath}/tags"),
            Some(&read_key),
            json!({"add": ["x"]}),
        )
        .await
        .assert_problem(403, "permission_denied", &format!("{b}: read key tags"));
        delete(&s, &epath, &read_key).await.assert_problem(
            403,
            "permission_denied",
            &format!("{b}: read key deletes"),
        );
        assert_eq!(
            audit_head(&s, &ws).await,
            head,
            "{b}: refusals write nothing"
        );

        // A write key creates (and reads nothing back, not even in the answer).
        let r = s
            .post(
                &records(&ws, "posts"),
                Some(&write_key),
                json!({"title": "by key"}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: write key creates"));
        assert_eq!(r.body["created_by"], write_id.as_str(), "{b}");
        assert!(
            r.body.get("title").is_none(),
            "{b}: no read, no values: {}",
            r.text
        );
        let kid = id(&r.body);
        s.get(&record(&ws, "posts", &kid), Some(&write_key))
            .await
            .assert_problem(403, "permission_denied", &format!("{b}: write key reads"));
        s.get(&records(&ws, "posts"), Some(&write_key))
            .await
            .assert_problem(403, "permission_denied", &format!("{b}: write key lists"));
        assert_eq!(
            fetch(&s, &o, &ws, "posts", &kid).await["title"],
            "by key",
            "{b}"
        );
        // With read too, it reads.
        let r = s
            .post(
                &records(&ws, "posts"),
                Some(&rw_key),
                json!({"title": "rw"}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: rw key creates"));
        assert_eq!(r.body["title"], "rw", "{b}");
        assert_eq!(r.body["created_by"], rw_id.as_str(), "{b}");
        assert_eq!(
            fetch(&s, &rw_key, &ws, "posts", &id(&r.body)).await,
            r.body,
            "{b}"
        );

        // Members and admins create, read, change and delete.
        for (who, token) in [("member", &m), ("admin", &admin)] {
            let what = format!("{b}: {who}");
            let made = create(&s, token, &ws, "posts", json!({"title": who})).await;
            assert_eq!(
                fetch(&s, token, &ws, "posts", &id(&made)).await,
                made,
                "{what}"
            );
            assert_eq!(
                fetch(&s, token, &ws, "posts", &eid).await,
                existing,
                "{what}"
            );
            let p = record(&ws, "posts", &id(&made));
            assert_status(
                &s.patch(&p, Some(token), json!({"title": "changed"})).await,
                200,
                &what,
            );
            assert_status(&delete(&s, &p, token).await, 204, &what);
        }
        let made = create(&s, &m, &ws, "posts", json!({"title": "kept"})).await;
        assert_eq!(made["created_by"], member_id.as_str(), "{b}");
        assert_eq!(list_all(&s, &m, &ws, "posts").await.len(), 4, "{b}");
        // Unknown collections and query parameters.
        s.get(&records(&ws, "nope"), Some(&o)).await.assert_problem(
            404,
            "collection_not_found",
            &format!("{b}: no such collection"),
        );
        s.post(&records(&ws, "nope"), Some(&o), json!({}))
            .await
            .assert_problem(404, "collection_not_found", &format!("{b}: create in none"));
        let r = s
            .get(
                &format!("{}?filter[title]=x&bogus=1", records(&ws, "posts")),
                Some(&o),
            )
            .await;
        r.assert_problem(
            422,
            "validation_failed",
            &format!("{b}: an unknown list parameter"),
        );
        assert_eq!(r.body["errors"][0]["parameter"], "bogus", "{b}");
        s.stop().await;
    }
}

/// Concurrent tag changes on one record all take effect: each is made at the version it read
/// and made again if another change got there first.
#[tokio::test]
async fn concurrent_tag_changes_are_never_lost() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("tags-race@example.com").await;
        let ws = id(&s.workspace(&o, "Tag race", "tag-race").await);
        collection(
            &s,
            &o,
            &ws,
            "notes",
            json!([{"name": "title", "type": "text"}, {"name": "labels", "type": "tags"}]),
        )
        .await;
        let r = s
            .post(&records(&ws, "notes"), Some(&o), json!({"title": "one"}))
            .await;
        assert_status(&r, 201, b);
        let rid = id(&r.body);
        let path = format!("{}/tags", record(&ws, "notes", &rid));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (client, url, token) = (s.client.clone(), format!("{}{path}", s.base), o.clone());
            tasks.spawn(async move {
                let r = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"add": [format!("t{i}")]}))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            });
        }
        while let Some(status) = tasks.join_next().await {
            assert_eq!(status.unwrap(), 200, "{b}: a concurrent tag change");
        }
        let labels = fetch(&s, &o, &ws, "notes", &rid).await["labels"].clone();
        let mut got: Vec<String> = labels
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        got.sort();
        let want: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
        assert_eq!(got, want, "{b}: every tag added once");
        let added = record_audit(&s, &ws)
            .await
            .iter()
            .filter(|e| e.action == "record.tag_added")
            .count();
        assert_eq!(added, 8, "{b}: one entry per tag added");
        s.stop().await;
    }
}

/// A patch without `If-Match` asks for no version: concurrent ones all apply (on PostgreSQL a
/// lost version race is retried on the newer record), each a version and an entry of its own.
#[tokio::test]
async fn concurrent_patches_without_if_match_all_apply() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("patch-race@example.com").await;
        let ws = id(&s.workspace(&o, "Patch race", "patch-race").await);
        collection(
            &s,
            &o,
            &ws,
            "notes",
            json!([{"name": "title", "type": "text"}, {"name": "body", "type": "text", "encrypted": true}]),
        )
        .await;
        let r = s
            .post(
                &records(&ws, "notes"),
                Some(&o),
                json!({"title": "t", "body": "kept"}),
            )
            .await;
        assert_status(&r, 201, b);
        let rid = id(&r.body);
        let url = format!("{}{}", s.base, record(&ws, "notes", &rid));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12 {
            let (client, url, token) = (s.client.clone(), url.clone(), o.clone());
            tasks.spawn(async move {
                let r = client
                    .patch(url)
                    .bearer_auth(token)
                    .json(&json!({"title": format!("t{i}")}))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            });
        }
        while let Some(status) = tasks.join_next().await {
            assert_eq!(status.unwrap(), 200, "{b}: a concurrent patch");
        }
        let now = fetch(&s, &o, &ws, "notes", &rid).await;
        assert_eq!(now["version"], 13, "{b}: every patch is a version");
        assert_eq!(now["body"], "kept", "{b}");
        let updates = record_audit(&s, &ws)
            .await
            .iter()
            .filter(|e| e.action == "record.update")
            .count();
        assert_eq!(updates, 12, "{b}: one entry per patch");
        s.stop().await;
    }
}

/// Renames with care: a field rename moves every record's value (an encrypted one sealed again
/// under its new name, a unique one keeping its claims), a collection rename moves the records'
/// address; both are refused while a grant names the old or new name, and every rename is one
/// audit entry in a log that still verifies.
#[tokio::test]
async fn renames_move_values_and_claims_and_wait_for_grants_to_let_go() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("rename@example.com").await;
        let ws = id(&s.workspace(&o, "Rename", "rename").await);
        collection(
            &s,
            &o,
            &ws,
            "people",
            json!([
                {"name": "email", "type": "text", "unique": true},
                {"name": "ssn", "type": "text", "encrypted": true},
                {"name": "note", "type": "text"},
            ]),
        )
        .await;
        let ada = create(
            &s,
            &o,
            &ws,
            "people",
            json!({"email": "ada@example.com", "ssn": "078-05-1120", "note": "n1"}),
        )
        .await;
        let bob = create(
            &s,
            &o,
            &ws,
            "people",
            json!({"email": "bob@example.com", "note": "n2"}),
        )
        .await;

        // Field renames.
        let r = s
            .patch(
                &col_path(&ws, "people"),
                Some(&o),
                json!({"update_fields": [{"name": "email", "rename_to": "mail"},
                                         {"name": "ssn", "rename_to": "tax_id"}]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: rename fields"));
        let names: Vec<&str> = r.body["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["mail", "tax_id", "note"], "{b}");
        let got = fetch(&s, &o, &ws, "people", &id(&ada)).await;
        assert_eq!(got["mail"], "ada@example.com", "{b}: {got}");
        assert_eq!(
            got["tax_id"], "078-05-1120",
            "{b}: the encrypted value opens under its new name"
        );
        assert!(
            got.get("email").is_none() && got.get("ssn").is_none(),
            "{b}: {got}"
        );
        assert_eq!(got["version"], 2, "{b}: a moved value is a new version");
        let got = fetch(&s, &o, &ws, "people", &id(&bob)).await;
        assert!(got.get("tax_id").is_none(), "{b}: {got}");
        // The unique claims moved with the values.
        let r = s
            .post(
                &records(&ws, "people"),
                Some(&o),
                json!({"mail": "ada@example.com"}),
            )
            .await;
        assert_invalid(
            &r,
            &["/mail"],
            &format!("{b}: the renamed field is still unique"),
        );
        let r = s
            .post(
                &records(&ws, "people"),
                Some(&o),
                json!({"email": "x@example.com"}),
            )
            .await;
        assert_invalid(&r, &["/email"], &format!("{b}: the old name is unknown"));
        let r = s
            .get(
                &format!(
                    "{}?filter[mail][eq]=bob@example.com",
                    records(&ws, "people")
                ),
                Some(&o),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: filter on the new name"));
        assert_eq!(r.body["data"][0]["id"], bob["id"], "{b}");
        let image = database_image(&s).await;
        assert!(
            !contains(&image, "078-05-1120"),
            "{b}: the re-sealed value is not in clear"
        );

        // A collection rename.
        let r = s
            .patch(&col_path(&ws, "people"), Some(&o), json!({"name": "staff"}))
            .await;
        assert_status(&r, 200, &format!("{b}: rename the collection"));
        assert_eq!(r.body["name"], "staff", "{b}");
        assert_eq!(
            fetch(&s, &o, &ws, "staff", &id(&ada)).await["mail"],
            "ada@example.com",
            "{b}"
        );
        s.get(&record(&ws, "people", &id(&ada)), Some(&o))
            .await
            .assert_problem(404, "collection_not_found", &format!("{b}: the old name"));

        // A grant naming a field or the collection holds renames back.
        let (_, admin, _) = s.user(ADMIN).await;
        enable_modules(&s, &admin, &ws, &["advanced_rbac"]).await;
        let (_, _, clerk) = member(&s, &o, &ws, "clerk@example.com", "member").await;
        give_custom_role(
            &s,
            &o,
            &ws,
            &clerk,
            json!({"name": "Clerk", "base_role": "member",
                   "permissions": ["workspace.read", "records.read"],
                   "fields": [{"collection": "staff", "field": "note", "read": true, "write": false},
                              {"collection": "staff", "field": "phone", "read": true, "write": false}]}),
        )
        .await;
        let head = s.workspace_log(&ws).await.len();
        for (what, body, pointer) in [
            (
                "the granted field",
                json!({"update_fields": [{"name": "note", "rename_to": "remark"}]}),
                "/update_fields/0/rename_to",
            ),
            (
                "onto a granted name",
                json!({"update_fields": [{"name": "mail", "rename_to": "phone"}]}),
                "/update_fields/0/rename_to",
            ),
            ("the granted collection", json!({"name": "people"}), "/name"),
        ] {
            let r = s.patch(&col_path(&ws, "staff"), Some(&o), body).await;
            assert_invalid(&r, &[pointer], &format!("{b}: {what}"));
            assert!(
                r.text.contains("role "),
                "{b}: {what} names the role: {}",
                r.text
            );
        }
        assert_eq!(
            s.workspace_log(&ws).await.len(),
            head,
            "{b}: refusals write nothing"
        );
        assert_eq!(
            fetch(&s, &o, &ws, "staff", &id(&bob)).await["note"],
            "n2",
            "{b}"
        );

        // Each rename was one entry, and the log verifies.
        let renames: Vec<Ev> = audit(&s, &ws)
            .await
            .into_iter()
            .filter(|e| e.action == "collection.update")
            .collect();
        assert_eq!(renames.len(), 2, "{b}");
        assert_eq!(
            renames[0].entry["renamed_fields"],
            json!({"email": "mail", "ssn": "tax_id"}),
            "{b}: {}",
            renames[0].raw
        );
        assert_eq!(
            renames[1].entry["diff"]["/name"],
            json!(["people", "staff"]),
            "{b}: {}",
            renames[1].raw
        );
        let size = s.workspace_log(&ws).await.len() as u64;
        assert_log_verifies(&s, &o, &ws, size).await;
        s.stop().await;
    }
}
