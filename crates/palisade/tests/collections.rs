//! End-to-end tests of collection schemas (DAT-1): create, read, list, change and delete a
//! workspace's collections, their validation, audit entries, permissions, field-level schema
//! filtering and isolation between workspaces — the real server over real HTTP, on SQLite and
//! on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::audit::{Ev, audit_head, pair, workspace_audit};
use common::records::{col_path, collection as create};

use std::collections::BTreeSet;

use common::{
    ADMIN, Reply, Server, assert_status, enable_modules, give_custom_role, id, join, servers,
    ws_path,
};
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers.

async fn delete(s: &Server, path: &str, token: &str) -> Reply {
    s.call(Method::DELETE, path, Some(token), None).await
}

/// `data` of a list answer that must be 200.
async fn list(s: &Server, token: &str, path: &str) -> Vec<Value> {
    let r = s.get(path, Some(token)).await;
    assert_status(&r, 200, &format!("{}: GET {path}", s.backend()));
    r.body["data"].as_array().unwrap().clone()
}

/// The workspace's collections (one page of up to 200), as the caller sees them.
async fn collections(s: &Server, token: &str, ws: &str) -> Vec<Value> {
    list(s, token, &ws_path(ws, "/collections?limit=200")).await
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn field_names(collection: &Value) -> Vec<String> {
    collection["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields in {collection}"))
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET …/collections/{name}`, which must be 200.
async fn get(s: &Server, token: &str, ws: &str, name: &str) -> Value {
    let r = s.get(&col_path(ws, name), Some(token)).await;
    assert_status(&r, 200, &format!("{}: GET collection {name}", s.backend()));
    r.body
}

/// A field as the server answers it: every flag present (false unless given) and `options`
/// always an object.
fn out(field: &Value) -> Value {
    let mut f = field.as_object().unwrap().clone();
    for flag in ["required", "unique", "pii", "encrypted"] {
        f.entry(flag).or_insert(json!(false));
    }
    f.entry("options").or_insert(json!({}));
    Value::Object(f)
}

fn outs(fields: &Value) -> Value {
    Value::Array(fields.as_array().unwrap().iter().map(out).collect())
}

/// The fields as audited: as answered, but a relation's target by collection id.
fn stored(fields: &Value, ids: &[(&str, &str)]) -> Value {
    let mut fields = outs(fields);
    for f in fields.as_array_mut().unwrap() {
        if let Some(target) = f["options"]["collection"].as_str().map(str::to_owned) {
            let (_, target_id) = ids
                .iter()
                .find(|(n, _)| *n == target)
                .unwrap_or_else(|| panic!("no id for {target}"));
            f["options"]["collection"] = json!(target_id);
        }
    }
    fields
}

/// `POST …/api-keys`, which must be 201; returns (key id, secret).
async fn create_key(
    s: &Server,
    token: &str,
    ws: &str,
    name: &str,
    scopes: &[&str],
) -> (String, String) {
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
    (id(&r.body), r.body["key"].as_str().unwrap().to_owned())
}

/// The `collection.*` entries of the workspace's log, oldest first.
async fn collection_audit(s: &Server, ws: &str) -> Vec<Ev> {
    workspace_audit(s, ws)
        .await
        .into_iter()
        .filter(|e| e.action.starts_with("collection."))
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// 1. Every field type round-trips.

#[tokio::test]
async fn every_field_type_round_trips_through_create_and_get() {
    for s in servers().await {
        let b = s.backend();
        let (uid, o, _) = s.user("olive@example.com").await;
        let ws = id(&s.workspace(&o, "Shop", "shop").await);

        let customer_fields = json!([
            {"name": "full_name", "type": "text", "required": true, "pii": true},
        ]);
        let customers = create(&s, &o, &ws, "customers", customer_fields.clone()).await;
        let customers_id = id(&customers);

        let fields = json!([
            {"name": "title", "type": "text", "required": true, "unique": true},
            {"name": "quantity", "type": "integer", "unique": true, "pii": false},
            {"name": "amount", "type": "decimal", "required": true, "encrypted": true},
            {"name": "paid", "type": "boolean", "required": false},
            {"name": "due_on", "type": "date", "unique": true},
            {"name": "shipped_at", "type": "datetime", "pii": true, "encrypted": true},
            {"name": "state", "type": "enum", "required": true, "unique": true,
             "options": {"values": ["open", "paid", "void"]}},
            {"name": "meta", "type": "json", "encrypted": true, "pii": true},
            {"name": "customer", "type": "relation", "required": true,
             "options": {"collection": "customers"}},
            {"name": "parent", "type": "relation", "options": {"collection": "orders"}},
            {"name": "labels", "type": "tags", "pii": true},
            {"name": "receipt", "type": "file", "required": true},
            {"name": "notes_2", "type": "text", "pii": true, "encrypted": true, "options": {}},
        ]);
        let r = s
            .post(
                &ws_path(&ws, "/collections"),
                Some(&o),
                json!({"name": "orders", "fields": fields}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: create orders"));
        let created = r.body.clone();
        let orders_id = id(&created);
        assert!(orders_id.starts_with("col_"), "{b}: {orders_id}");
        assert_ne!(orders_id, customers_id, "{b}");
        let expected = outs(&fields);
        assert_eq!(created["name"], "orders", "{b}");
        assert_eq!(created["fields"], expected, "{b}: {}", r.text);
        assert_eq!(created["version"], 1, "{b}");
        assert!(created["created_at"].is_string(), "{b}: {}", r.text);
        assert_eq!(created["created_at"], created["updated_at"], "{b}");
        assert_eq!(
            created
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<BTreeSet<_>>(),
            [
                "created_at",
                "fields",
                "id",
                "name",
                "updated_at",
                "version"
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
            "{b}: exactly the documented members"
        );
        // The relation names its target; the self-relation names the collection itself.
        assert_eq!(
            created["fields"][8]["options"],
            json!({"collection": "customers"}),
            "{b}"
        );
        assert_eq!(
            created["fields"][9]["options"],
            json!({"collection": "orders"}),
            "{b}"
        );

        // GET answers exactly what create answered.
        assert_eq!(get(&s, &o, &ws, "orders").await, created, "{b}: GET orders");
        assert_eq!(
            get(&s, &o, &ws, "customers").await,
            customers,
            "{b}: GET customers"
        );
        assert_eq!(customers["fields"], outs(&customer_fields), "{b}");
        // And so does the list (by id).
        let listed = collections(&s, &o, &ws).await;
        assert_eq!(listed.len(), 2, "{b}: {listed:?}");
        let from_list = listed.iter().find(|c| id(c) == orders_id).unwrap();
        assert_eq!(from_list, &created, "{b}: listed orders");
        // By slug too.
        assert_eq!(get(&s, &o, "shop", "orders").await, created, "{b}: by slug");

        // One create entry each, with the name and the fields (relations by id).
        let trail = collection_audit(&s, &ws).await;
        assert_eq!(
            trail
                .iter()
                .map(|e| (e.action.as_str(), e.target.clone()))
                .collect::<Vec<_>>(),
            [
                ("collection.create", pair("collection", &customers_id)),
                ("collection.create", pair("collection", &orders_id)),
            ],
            "{b}: {trail:?}"
        );
        for e in &trail {
            assert_eq!(e.actor, pair("user", &uid), "{b}: {}", e.raw);
        }
        let entry = &trail[1];
        assert_eq!(
            entry.diff["/name"],
            json!([null, "orders"]),
            "{b}: {}",
            entry.raw
        );
        assert_eq!(
            entry.diff["/fields"],
            json!([
                null,
                stored(
                    &fields,
                    &[("customers", &customers_id), ("orders", &orders_id)]
                )
            ]),
            "{b}: {}",
            entry.raw
        );
        assert_eq!(
            trail[0].diff["/fields"],
            json!([null, outs(&customer_fields)]),
            "{b}: {}",
            trail[0].raw
        );

        // A collection may have no fields at all.
        let empty = create(&s, &o, &ws, "empty", json!([])).await;
        assert_eq!(empty["fields"], json!([]), "{b}");
        let r = s
            .post(
                &ws_path(&ws, "/collections"),
                Some(&o),
                json!({"name": "bare"}),
            )
            .await;
        assert_status(&r, 201, &format!("{b}: fields omitted"));
        assert_eq!(r.body["fields"], json!([]), "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Invalid schemas.

#[tokio::test]
async fn invalid_schemas_are_refused_with_pointers_and_leave_nothing_behind() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("vera@example.com").await;
        let ws = id(&s.workspace(&o, "Valid", "valid").await);
        create(
            &s,
            &o,
            &ws,
            "customers",
            json!([{"name": "full_name", "type": "text"}]),
        )
        .await;
        let before = collections(&s, &o, &ws).await;
        let head = audit_head(&s, &ws).await;

        let text = |name: &str| json!({"name": name, "type": "text"});
        let one = |f: Value| json!({"name": "things", "fields": [f]});
        let mut cases: Vec<(String, Value, Vec<&str>)> = vec![
            (
                "upper-case name".into(),
                json!({"name": "Invoices", "fields": []}),
                vec!["/name"],
            ),
            (
                "empty name".into(),
                json!({"name": "", "fields": []}),
                vec!["/name"],
            ),
            (
                "digit first".into(),
                json!({"name": "9lives", "fields": []}),
                vec!["/name"],
            ),
            (
                "underscore first".into(),
                json!({"name": "_x", "fields": []}),
                vec!["/name"],
            ),
            (
                "dash".into(),
                json!({"name": "line-items", "fields": []}),
                vec!["/name"],
            ),
            (
                "space".into(),
                json!({"name": "line items", "fields": []}),
                vec!["/name"],
            ),
            (
                "non-ascii".into(),
                json!({"name": "caf\u{e9}", "fields": []}),
                vec!["/name"],
            ),
            (
                "64-char name".into(),
                json!({"name": "a".repeat(64), "fields": []}),
                vec!["/name"],
            ),
            ("missing name".into(), json!({"fields": []}), vec!["/name"]),
            (
                "field name upper".into(),
                one(text("Amount")),
                vec!["/fields/0/name"],
            ),
            (
                "field name digit".into(),
                one(text("1st")),
                vec!["/fields/0/name"],
            ),
            (
                "field name empty".into(),
                one(text("")),
                vec!["/fields/0/name"],
            ),
            (
                "field name dot".into(),
                one(text("a.b")),
                vec!["/fields/0/name"],
            ),
            (
                "field name 64".into(),
                one(text(&"f".repeat(64))),
                vec!["/fields/0/name"],
            ),
            (
                "duplicate field".into(),
                json!({"name": "things", "fields": [text("a"), text("b"),
                       {"name": "a", "type": "integer"}]}),
                vec!["/fields/2/name"],
            ),
            (
                "unknown type".into(),
                one(json!({"name": "a", "type": "string"})),
                vec!["/fields/0/type"],
            ),
            (
                "type case".into(),
                one(json!({"name": "a", "type": "Text"})),
                vec!["/fields/0/type"],
            ),
            (
                "missing type".into(),
                one(json!({"name": "a"})),
                vec!["/fields/0/type"],
            ),
            (
                "enum without values".into(),
                one(json!({"name": "a", "type": "enum"})),
                vec!["/fields/0/options/values"],
            ),
            (
                "enum with no values".into(),
                one(json!({"name": "a", "type": "enum", "options": {"values": []}})),
                vec!["/fields/0/options/values"],
            ),
            (
                "enum with 501 values".into(),
                one(json!({"name": "a", "type": "enum",
                           "options": {"values": (0..501).map(|i| format!("v{i}")).collect::<Vec<_>>()}})),
                vec!["/fields/0/options/values"],
            ),
            (
                "enum empty value".into(),
                one(json!({"name": "a", "type": "enum", "options": {"values": ["x", ""]}})),
                vec!["/fields/0/options/values/1"],
            ),
            (
                "enum 201-char value".into(),
                one(
                    json!({"name": "a", "type": "enum", "options": {"values": ["x", "y".repeat(201)]}}),
                ),
                vec!["/fields/0/options/values/1"],
            ),
            (
                "enum duplicate value".into(),
                one(json!({"name": "a", "type": "enum", "options": {"values": ["x", "y", "x"]}})),
                vec!["/fields/0/options/values/2"],
            ),
            (
                "relation without target".into(),
                one(json!({"name": "a", "type": "relation"})),
                vec!["/fields/0/options/collection"],
            ),
            (
                "relation to nothing".into(),
                one(json!({"name": "a", "type": "relation", "options": {"collection": "nope"}})),
                vec!["/fields/0/options/collection"],
            ),
            (
                "collection on text".into(),
                one(json!({"name": "a", "type": "text", "options": {"collection": "customers"}})),
                vec!["/fields/0/options/collection"],
            ),
            (
                "values on text".into(),
                one(json!({"name": "a", "type": "text", "options": {"values": ["x"]}})),
                vec!["/fields/0/options/values"],
            ),
            (
                "values on relation".into(),
                one(json!({"name": "a", "type": "relation",
                           "options": {"collection": "customers", "values": ["x"]}})),
                vec!["/fields/0/options/values"],
            ),
            (
                "unique and encrypted".into(),
                one(json!({"name": "a", "type": "text", "unique": true, "encrypted": true})),
                vec!["/fields/0/unique"],
            ),
            (
                "unique and encrypted boolean".into(),
                one(json!({"name": "a", "type": "boolean", "unique": true, "encrypted": true})),
                vec!["/fields/0/unique", "/fields/0/encrypted"],
            ),
            (
                "201 fields".into(),
                json!({"name": "things",
                       "fields": (0..201).map(|i| text(&format!("f{i}"))).collect::<Vec<_>>()}),
                vec!["/fields"],
            ),
            (
                "unknown member".into(),
                json!({"name": "things", "fields": [], "colour": "red"}),
                vec!["/colour"],
            ),
            (
                "unknown field member".into(),
                one(json!({"name": "a", "type": "text", "index": true})),
                vec!["/fields/0/index"],
            ),
            (
                "unknown option".into(),
                one(json!({"name": "a", "type": "text", "options": {"max": 3}})),
                vec!["/fields/0/options/max"],
            ),
            (
                "several at once".into(),
                json!({"name": "Bad", "fields": [text("id"), {"name": "ok", "type": "nope"},
                       {"name": "tags", "type": "tags", "unique": true},
                       {"name": "e", "type": "enum", "options": {"values": ["a", "a"]}}]}),
                vec![
                    "/name",
                    "/fields/0/name",
                    "/fields/1/type",
                    "/fields/2/unique",
                    "/fields/3/options/values/1",
                ],
            ),
        ];
        for reserved in [
            "id",
            "collection",
            "status",
            "version",
            "created_at",
            "updated_at",
            "created_by",
            "updated_by",
            "published_at",
        ] {
            cases.push((
                format!("reserved {reserved}"),
                one(text(reserved)),
                vec!["/fields/0/name"],
            ));
        }
        for kind in ["boolean", "json", "relation", "tags", "file"] {
            cases.push((
                format!("unique {kind}"),
                one(json!({"name": "a", "type": kind, "unique": true,
                           "options": if kind == "relation" { json!({"collection": "customers"}) } else { json!({}) }})),
                vec!["/fields/0/unique"],
            ));
        }
        for kind in ["relation", "tags", "file", "boolean"] {
            cases.push((
                format!("encrypted {kind}"),
                one(json!({"name": "a", "type": kind, "encrypted": true,
                           "options": if kind == "relation" { json!({"collection": "customers"}) } else { json!({}) }})),
                vec!["/fields/0/encrypted"],
            ));
        }

        for (what, body, pointers) in &cases {
            let context = format!("{b}: {what}");
            let r = s
                .post(&ws_path(&ws, "/collections"), Some(&o), body.clone())
                .await;
            r.assert_problem(422, "validation_failed", &context);
            assert_eq!(
                sorted(r.pointers()),
                sorted(pointers.iter().map(|p| (*p).to_owned()).collect()),
                "{context}: {}",
                r.text
            );
        }
        // Nothing was created, nothing written.
        assert_eq!(
            collections(&s, &o, &ws).await,
            before,
            "{b}: list unchanged"
        );
        s.get(&col_path(&ws, "things"), Some(&o))
            .await
            .assert_problem(404, "collection_not_found", &format!("{b}: no things"));
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: no audit entry");

        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2b. The documented limits themselves are accepted, and such schemas stay changeable.

/// A field for each kind that may be unique or encrypted, then plain text fields up to 200.
fn fields_up_to_200(mut fields: Vec<Value>) -> Vec<Value> {
    for kind in ["text", "integer", "decimal", "date", "datetime"] {
        fields.push(json!({"name": format!("u_{kind}"), "type": kind, "unique": true}));
        fields.push(json!({"name": format!("e_{kind}"), "type": kind, "encrypted": true}));
    }
    fields.push(json!({"name": "e_json", "type": "json", "encrypted": true}));
    fields.push(json!({"name": "e_enum", "type": "enum", "encrypted": true,
                       "options": {"values": ["a"]}}));
    while fields.len() < 200 {
        let name = format!("f{}", fields.len());
        fields.push(json!({"name": name, "type": "text"}));
    }
    fields
}

/// `n` distinct enum values of 200 characters each.
fn long_values(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:0>200}")).collect()
}

#[tokio::test]
async fn schemas_at_the_documented_limits_are_accepted() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("lima@example.com").await;
        let ws = id(&s.workspace(&o, "Limits", "limits").await);
        let long = format!("a{}", "b".repeat(62));
        let long_field = format!("z{}", "9".repeat(62));

        // 63-character names, 200 fields, every type unique or encrypted where allowed.
        let fields = fields_up_to_200(vec![json!({"name": long_field, "type": "text"})]);
        let made = create(&s, &o, &ws, &long, json!(fields)).await;
        assert_eq!(made["name"], json!(long), "{b}");
        assert_eq!(made["fields"], outs(&json!(fields)), "{b}: round-trip");
        assert_eq!(get(&s, &o, &ws, &long).await, made, "{b}: GET");

        // An enum of 500 values of 200 characters (each limit at its maximum).
        let fields = json!([{"name": "grade", "type": "enum",
                             "options": {"values": long_values(500)}}]);
        let made = create(&s, &o, &ws, "graded", fields.clone()).await;
        assert_eq!(made["fields"], outs(&fields), "{b}: 500 values round-trip");

        // And both at once: 200 fields, one of them such an enum.
        let fields = fields_up_to_200(vec![json!({"name": "grade", "type": "enum",
                                                   "options": {"values": long_values(500)}})]);
        let made = create(&s, &o, &ws, "everything", json!(fields)).await;
        assert_eq!(
            made["fields"],
            outs(&json!(fields)),
            "{b}: all limits round-trip"
        );
        s.stop().await;
    }
}

#[tokio::test]
async fn a_large_valid_schema_can_still_be_changed() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("lars@example.com").await;
        let ws = id(&s.workspace(&o, "Large", "large").await);
        // Well within the limits: one enum of 200 values (of 500) of 200 characters.
        let fields = json!([{"name": "grade", "type": "enum",
                             "options": {"values": long_values(200)}}]);
        let made = create(&s, &o, &ws, "graded", fields.clone()).await;
        assert_eq!(made["fields"], outs(&fields), "{b}");
        let r = s
            .patch(
                &col_path(&ws, "graded"),
                Some(&o),
                json!({"add_fields": [{"name": "note", "type": "text"}]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: add a field to a large schema"));
        assert_eq!(r.body["version"], 2, "{b}");
        assert_eq!(field_names(&r.body), ["grade", "note"], "{b}");

        // The long value list is audited as its digest, so the entry stays within the
        // format's size; the short field is inline.
        let trail = collection_audit(&s, &ws).await;
        let update = trail
            .iter()
            .find(|e| e.action == "collection.update")
            .expect("an update entry");
        let after = &update.diff["/fields"][1];
        assert_eq!(after[1]["name"], "note", "{b}: {}", update.raw);
        let values = &after[0]["options"]["values"];
        assert_eq!(values["count"], 200, "{b}: {}", update.raw);
        let hex = values["sha256"].as_str().unwrap_or_default();
        assert!(
            hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_hexdigit()),
            "{b}: a SHA-256 digest: {}",
            update.raw
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Name uniqueness.

#[tokio::test]
async fn collection_names_are_unique_per_workspace() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("nina@example.com").await;
        let alpha = id(&s.workspace(&o, "Alpha", "alpha").await);
        let beta = id(&s.workspace(&o, "Beta", "beta").await);

        let first = create(
            &s,
            &o,
            &alpha,
            "tasks",
            json!([{"name": "title", "type": "text"}]),
        )
        .await;
        let head = audit_head(&s, &alpha).await;
        let r = s
            .post(
                &ws_path(&alpha, "/collections"),
                Some(&o),
                json!({"name": "tasks", "fields": [{"name": "other", "type": "integer"}]}),
            )
            .await;
        r.assert_problem(409, "name_taken", &format!("{b}: second tasks"));
        assert_eq!(audit_head(&s, &alpha).await, head, "{b}: nothing audited");
        assert_eq!(
            collections(&s, &o, &alpha).await,
            vec![first.clone()],
            "{b}: one tasks, unchanged"
        );

        // Another workspace may use the name; its relations resolve to its own collection.
        let second = create(
            &s,
            &o,
            &beta,
            "tasks",
            json!([{"name": "other", "type": "integer"}]),
        )
        .await;
        assert_ne!(id(&second), id(&first), "{b}");
        let links = create(
            &s,
            &o,
            &beta,
            "links",
            json!([{"name": "task", "type": "relation", "options": {"collection": "tasks"}}]),
        )
        .await;
        let trail = collection_audit(&s, &beta).await;
        let entry = trail.iter().find(|e| e.target.1 == id(&links)).unwrap();
        assert_eq!(
            entry.diff["/fields"][1][0]["options"]["collection"],
            json!(id(&second)),
            "{b}: beta's tasks, by id: {}",
            entry.raw
        );
        assert_eq!(
            get(&s, &o, &alpha, "tasks").await,
            first,
            "{b}: alpha's tasks"
        );
        assert_eq!(
            get(&s, &o, &beta, "tasks").await,
            second,
            "{b}: beta's tasks"
        );

        // A deleted collection's name is free again.
        assert_status(
            &delete(&s, &col_path(&alpha, "tasks"), &o).await,
            204,
            &format!("{b}: delete tasks"),
        );
        let again = create(&s, &o, &alpha, "tasks", json!([])).await;
        assert_ne!(id(&again), id(&first), "{b}: a new collection");
        assert_eq!(again["version"], 1, "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. PATCH.

#[tokio::test]
async fn patch_is_all_or_nothing_versioned_and_audited() {
    for s in servers().await {
        let b = s.backend();
        let (uid, o, _) = s.user("pat@example.com").await;
        let ws = id(&s.workspace(&o, "Patch", "patch").await);
        let fields = json!([
            {"name": "title", "type": "text", "required": true},
            {"name": "budget", "type": "decimal"},
            {"name": "stage", "type": "enum", "options": {"values": ["a", "b"]}},
            {"name": "notes", "type": "text"},
            {"name": "parent", "type": "relation", "options": {"collection": "projects"}},
            {"name": "code", "type": "text", "encrypted": true},
            {"name": "data", "type": "json"},
        ]);
        let original = create(&s, &o, &ws, "projects", fields.clone()).await;
        let pid = id(&original);
        create(&s, &o, &ws, "people", json!([])).await;
        let path = col_path(&ws, "projects");
        let head = audit_head(&s, &ws).await;

        let good_add = json!({"name": "extra", "type": "text"});
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "a bad addition among good ones",
                json!({"add_fields": [good_add, {"name": "bad", "type": "float"}],
                       "update_fields": [{"name": "budget", "required": true}],
                       "remove_fields": ["notes"]}),
                vec!["/add_fields/1/type"],
            ),
            (
                "unknown field updated",
                json!({"add_fields": [good_add], "update_fields": [{"name": "ghost", "required": true}]}),
                vec!["/update_fields/0/name"],
            ),
            (
                "unknown field removed",
                json!({"update_fields": [{"name": "budget", "pii": true}], "remove_fields": ["ghost"]}),
                vec!["/remove_fields/0"],
            ),
            (
                "removed and updated",
                json!({"update_fields": [{"name": "notes", "required": true}], "remove_fields": ["notes"]}),
                vec!["/remove_fields/0"],
            ),
            (
                "a rename onto another field",
                json!({"update_fields": [{"name": "notes", "rename_to": "title"}]}),
                vec!["/update_fields/0/rename_to"],
            ),
            (
                "a rename to a reserved name",
                json!({"update_fields": [{"name": "notes", "rename_to": "status"}]}),
                vec!["/update_fields/0/rename_to"],
            ),
            (
                "a rename with another change to the field",
                json!({"update_fields": [{"name": "notes", "rename_to": "remarks", "required": true}]}),
                vec!["/update_fields/0/rename_to"],
            ),
            (
                "a field added under a renamed field's old name",
                json!({"update_fields": [{"name": "notes", "rename_to": "remarks"}],
                       "add_fields": [{"name": "notes", "type": "text"}]}),
                vec!["/add_fields/0/name"],
            ),
            (
                "a collection renamed onto another",
                json!({"name": "people", "add_fields": [good_add]}),
                vec!["/name"],
            ),
            (
                "a collection renamed to a bad name",
                json!({"name": "Programmes"}),
                vec!["/name"],
            ),
            (
                "unique relation",
                json!({"update_fields": [{"name": "parent", "unique": true}]}),
                vec!["/update_fields/0/unique"],
            ),
            (
                "unique json",
                json!({"update_fields": [{"name": "data", "unique": true}]}),
                vec!["/update_fields/0/unique"],
            ),
            (
                "unique encrypted",
                json!({"update_fields": [{"name": "code", "unique": true}]}),
                vec!["/update_fields/0/unique"],
            ),
            (
                "reserved addition",
                json!({"add_fields": [{"name": "status", "type": "text"}]}),
                vec!["/add_fields/0/name"],
            ),
            (
                "existing name added",
                json!({"add_fields": [{"name": "title", "type": "integer"}]}),
                vec!["/add_fields/0/name"],
            ),
            (
                "the same name added twice",
                json!({"add_fields": [good_add, {"name": "extra", "type": "integer"}]}),
                vec!["/add_fields/1/name"],
            ),
            (
                "enum emptied",
                json!({"update_fields": [{"name": "stage", "options": {"values": []}}]}),
                vec!["/update_fields/0/options/values"],
            ),
            (
                "values on text",
                json!({"update_fields": [{"name": "notes", "options": {"values": ["x"]}}]}),
                vec!["/update_fields/0/options/values"],
            ),
            (
                "relation retargeted to nothing",
                json!({"update_fields": [{"name": "parent", "options": {"collection": "ghosts"}}]}),
                vec!["/update_fields/0/options/collection"],
            ),
            (
                "a field changed twice",
                json!({"update_fields": [{"name": "budget", "required": true}, {"name": "budget", "pii": true}]}),
                vec!["/update_fields/1/name"],
            ),
            (
                "an added relation to nothing",
                json!({"add_fields": [{"name": "lead", "type": "relation", "options": {"collection": "ghosts"}}]}),
                vec!["/add_fields/0/options/collection"],
            ),
            (
                "an encrypted tag list added",
                json!({"add_fields": [{"name": "labels", "type": "tags", "encrypted": true}]}),
                vec!["/add_fields/0/encrypted"],
            ),
            (
                "unknown member",
                json!({"add_fields": [good_add], "rename": "x"}),
                vec!["/rename"],
            ),
            (
                "unknown member of a change",
                json!({"update_fields": [{"name": "budget", "type": "integer"}]}),
                vec!["/update_fields/0/type"],
            ),
        ];
        for (what, body, pointers) in &cases {
            let context = format!("{b}: {what}");
            let r = s.patch(&path, Some(&o), body.clone()).await;
            r.assert_problem(422, "validation_failed", &context);
            assert_eq!(
                sorted(r.pointers()),
                sorted(pointers.iter().map(|p| (*p).to_owned()).collect()),
                "{context}: {}",
                r.text
            );
            assert_eq!(
                get(&s, &o, &ws, "projects").await,
                original,
                "{context}: nothing changed"
            );
        }
        assert_eq!(
            audit_head(&s, &ws).await,
            head,
            "{b}: no entry for refusals"
        );

        // No-op patches: 200, same version, nothing written.
        for (what, body) in [
            ("empty", json!({})),
            ("same name", json!({"name": "projects"})),
            (
                "empty lists",
                json!({"add_fields": [], "update_fields": [], "remove_fields": []}),
            ),
            (
                "same flags",
                json!({"update_fields": [{"name": "title", "required": true},
                                                    {"name": "budget", "pii": false}]}),
            ),
            (
                "same rename",
                json!({"update_fields": [{"name": "notes", "rename_to": "notes"}]}),
            ),
            (
                "same options",
                json!({"update_fields": [{"name": "stage", "options": {"values": ["a", "b"]}}]}),
            ),
        ] {
            let r = s.patch(&path, Some(&o), body).await;
            assert_status(&r, 200, &format!("{b}: no-op {what}"));
            assert_eq!(r.body, original, "{b}: no-op {what}");
        }
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: no entry for no-ops");

        // A real change: every kind at once.
        s.advance(time::Duration::minutes(5));
        let r = s
            .patch(
                &path,
                Some(&o),
                json!({
                    "add_fields": [{"name": "due_on", "type": "date", "unique": true},
                                   {"name": "lead", "type": "relation", "options": {"collection": "people"}}],
                    "update_fields": [{"name": "budget", "required": true, "pii": true, "unique": true},
                                      {"name": "stage", "options": {"values": ["a", "b", "c"]}},
                                      {"name": "title", "required": false}],
                    "remove_fields": ["notes"],
                }),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: patch"));
        let v2 = r.body.clone();
        let v2_fields = json!([
            {"name": "title", "type": "text"},
            {"name": "budget", "type": "decimal", "required": true, "pii": true, "unique": true},
            {"name": "stage", "type": "enum", "options": {"values": ["a", "b", "c"]}},
            {"name": "parent", "type": "relation", "options": {"collection": "projects"}},
            {"name": "code", "type": "text", "encrypted": true},
            {"name": "data", "type": "json"},
            {"name": "due_on", "type": "date", "unique": true},
            {"name": "lead", "type": "relation", "options": {"collection": "people"}},
        ]);
        assert_eq!(v2["fields"], outs(&v2_fields), "{b}: {}", r.text);
        assert_eq!(v2["version"], 2, "{b}");
        assert_eq!(id(&v2), pid, "{b}");
        assert_eq!(v2["name"], "projects", "{b}");
        assert_eq!(v2["created_at"], original["created_at"], "{b}");
        assert_ne!(
            v2["updated_at"], original["updated_at"],
            "{b}: updated_at moves"
        );
        assert_eq!(
            get(&s, &o, &ws, "projects").await,
            v2,
            "{b}: GET after patch"
        );

        // Removing a field and adding one of the same name (another type) in one patch.
        let r = s
            .patch(
                &path,
                Some(&o),
                json!({"remove_fields": ["due_on", "lead"],
                       "add_fields": [{"name": "due_on", "type": "datetime"}],
                       "update_fields": [{"name": "budget", "unique": false}]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: replace due_on"));
        let v3 = r.body.clone();
        let v3_fields = json!([
            {"name": "title", "type": "text"},
            {"name": "budget", "type": "decimal", "required": true, "pii": true},
            {"name": "stage", "type": "enum", "options": {"values": ["a", "b", "c"]}},
            {"name": "parent", "type": "relation", "options": {"collection": "projects"}},
            {"name": "code", "type": "text", "encrypted": true},
            {"name": "data", "type": "json"},
            {"name": "due_on", "type": "datetime"},
        ]);
        assert_eq!(v3["fields"], outs(&v3_fields), "{b}: {}", r.text);
        assert_eq!(v3["version"], 3, "{b}");

        // Refusals after a change leave version 3 alone.
        let r = s
            .patch(
                &path,
                Some(&o),
                json!({"add_fields": [good_add, {"name": "id", "type": "text"}]}),
            )
            .await;
        r.assert_problem(422, "validation_failed", &format!("{b}: late refusal"));
        assert_eq!(get(&s, &o, &ws, "projects").await, v3, "{b}");

        // Unknown collection.
        s.patch(
            &col_path(&ws, "ghosts"),
            Some(&o),
            json!({"add_fields": [good_add]}),
        )
        .await
        .assert_problem(404, "collection_not_found", &format!("{b}: patch ghosts"));

        // Two update entries, with the fields before and after and the version.
        let ids = [("projects", pid.as_str())];
        let people_id = id(&get(&s, &o, &ws, "people").await);
        let ids2 = [("projects", pid.as_str()), ("people", people_id.as_str())];
        let updates: Vec<Ev> = collection_audit(&s, &ws)
            .await
            .into_iter()
            .filter(|e| e.action == "collection.update")
            .collect();
        assert_eq!(updates.len(), 2, "{b}: {updates:?}");
        for e in &updates {
            assert_eq!(e.target, pair("collection", &pid), "{b}: {}", e.raw);
            assert_eq!(e.actor, pair("user", &uid), "{b}: {}", e.raw);
            assert!(e.diff.get("/name").is_none(), "{b}: {}", e.raw);
        }
        assert_eq!(
            updates[0].diff["/version"],
            json!([1, 2]),
            "{b}: {}",
            updates[0].raw
        );
        assert_eq!(
            updates[0].diff["/fields"],
            json!([stored(&fields, &ids), stored(&v2_fields, &ids2)]),
            "{b}: {}",
            updates[0].raw
        );
        assert_eq!(
            updates[1].diff["/version"],
            json!([2, 3]),
            "{b}: {}",
            updates[1].raw
        );
        assert_eq!(
            updates[1].diff["/fields"],
            json!([stored(&v2_fields, &ids2), stored(&v3_fields, &ids)]),
            "{b}: {}",
            updates[1].raw
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. DELETE.

#[tokio::test]
async fn delete_is_refused_while_referenced_and_audited() {
    for s in servers().await {
        let b = s.backend();
        let (uid, o, _) = s.user("dora@example.com").await;
        let ws = id(&s.workspace(&o, "Deletes", "deletes").await);
        let customer_fields = json!([{"name": "full_name", "type": "text", "pii": true}]);
        let customers = create(&s, &o, &ws, "customers", customer_fields.clone()).await;
        let orders = create(
            &s,
            &o,
            &ws,
            "orders",
            json!([{"name": "total", "type": "decimal"},
                   {"name": "customer", "type": "relation", "options": {"collection": "customers"}}]),
        )
        .await;
        let category_fields = json!([{"name": "label", "type": "text"},
            {"name": "parent", "type": "relation", "options": {"collection": "categories"}}]);
        let categories = create(&s, &o, &ws, "categories", category_fields.clone()).await;

        // In use by orders.
        let head = audit_head(&s, &ws).await;
        delete(&s, &col_path(&ws, "customers"), &o)
            .await
            .assert_problem(409, "collection_in_use", &format!("{b}: customers in use"));
        assert_eq!(
            get(&s, &o, &ws, "customers").await,
            customers,
            "{b}: still there"
        );
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: nothing audited");

        // A self-relation does not block.
        assert_status(
            &delete(&s, &col_path(&ws, "categories"), &o).await,
            204,
            &format!("{b}: delete categories"),
        );
        s.get(&col_path(&ws, "categories"), Some(&o))
            .await
            .assert_problem(
                404,
                "collection_not_found",
                &format!("{b}: categories gone"),
            );
        delete(&s, &col_path(&ws, "categories"), &o)
            .await
            .assert_problem(404, "collection_not_found", &format!("{b}: twice"));
        delete(&s, &col_path(&ws, "ghosts"), &o)
            .await
            .assert_problem(404, "collection_not_found", &format!("{b}: ghosts"));
        s.patch(&col_path(&ws, "categories"), Some(&o), json!({}))
            .await
            .assert_problem(404, "collection_not_found", &format!("{b}: patch deleted"));

        // Once the reference is gone, so may the target be.
        let r = s
            .patch(
                &col_path(&ws, "orders"),
                Some(&o),
                json!({"remove_fields": ["customer"]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: drop the relation"));
        assert_eq!(r.body["version"], 2, "{b}");
        assert_status(
            &delete(&s, &col_path(&ws, "customers"), &o).await,
            204,
            &format!("{b}: delete customers"),
        );
        s.get(&col_path(&ws, "customers"), Some(&o))
            .await
            .assert_problem(404, "collection_not_found", &format!("{b}: customers gone"));
        assert_eq!(names(&collections(&s, &o, &ws).await), ["orders"], "{b}");
        // A relation to a deleted collection cannot be declared.
        let r = s
            .patch(
                &col_path(&ws, "orders"),
                Some(&o),
                json!({"add_fields": [{"name": "buyer", "type": "relation",
                                       "options": {"collection": "customers"}}]}),
            )
            .await;
        r.assert_problem(
            422,
            "validation_failed",
            &format!("{b}: relation to deleted"),
        );
        assert_eq!(r.pointers(), ["/add_fields/0/options/collection"], "{b}");

        // Two delete entries, with what was deleted.
        let deletes: Vec<Ev> = collection_audit(&s, &ws)
            .await
            .into_iter()
            .filter(|e| e.action == "collection.delete")
            .collect();
        assert_eq!(
            deletes.iter().map(|e| e.target.clone()).collect::<Vec<_>>(),
            [
                pair("collection", &id(&categories)),
                pair("collection", &id(&customers))
            ],
            "{b}: {deletes:?}"
        );
        for e in &deletes {
            assert_eq!(e.actor, pair("user", &uid), "{b}: {}", e.raw);
        }
        assert_eq!(deletes[0].diff["/name"], json!(["categories", null]), "{b}");
        assert_eq!(
            deletes[0].diff["/fields"],
            json!([
                stored(&category_fields, &[("categories", &id(&categories))]),
                null
            ]),
            "{b}: {}",
            deletes[0].raw
        );
        assert_eq!(deletes[1].diff["/name"], json!(["customers", null]), "{b}");
        assert_eq!(
            deletes[1].diff["/fields"],
            json!([outs(&customer_fields), null]),
            "{b}: {}",
            deletes[1].raw
        );
        assert_eq!(get(&s, &o, &ws, "orders").await["id"], orders["id"], "{b}");

        // A relation retargeted elsewhere no longer holds its old target.
        create(&s, &o, &ws, "vendors", json!([])).await;
        let r = s
            .patch(
                &col_path(&ws, "orders"),
                Some(&o),
                json!({"add_fields": [{"name": "supplier", "type": "relation",
                                       "options": {"collection": "vendors"}}]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: add supplier"));
        delete(&s, &col_path(&ws, "vendors"), &o)
            .await
            .assert_problem(409, "collection_in_use", &format!("{b}: vendors in use"));
        let r = s
            .patch(
                &col_path(&ws, "orders"),
                Some(&o),
                json!({"update_fields": [{"name": "supplier", "options": {"collection": "orders"}}]}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: retarget supplier"));
        assert_eq!(
            r.body["fields"][1]["options"],
            json!({"collection": "orders"}),
            "{b}: {}",
            r.text
        );
        assert_status(
            &delete(&s, &col_path(&ws, "vendors"), &o).await,
            204,
            &format!("{b}: delete vendors"),
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Roles, scopes and field-level schemas.

#[tokio::test]
async fn roles_and_scopes_decide_and_field_grants_narrow_the_schema() {
    for s in servers().await {
        let b = s.backend();
        let (founder_id, o, _) = s.user("founder@example.com").await;
        let ws = id(&s.workspace(&o, "Matrix", "matrix").await);
        let (_, instance_admin, _) = s.user(ADMIN).await;
        enable_modules(&s, &instance_admin, &ws, &["advanced_rbac"]).await;

        let mut people = Vec::new();
        for role in ["admin", "member", "billing"] {
            let email = format!("as.{role}@example.com");
            let (uid, token, _) = s.user(&email).await;
            join(&s, &o, &ws, &email, &token, role).await;
            people.push((role, uid, token));
        }
        let (_, narrowed, _) = s.user("narrowed@example.com").await;
        let narrowed_member = join(&s, &o, &ws, "narrowed@example.com", &narrowed, "member").await;
        give_custom_role(
            &s,
            &o,
            &ws,
            &narrowed_member,
            json!({"name": "Staff readers", "base_role": "member",
            "permissions": ["workspace.read", "records.read"],
            "fields": [
                {"collection": "staff", "field": "full_name", "read": true, "write": false},
                {"collection": "staff", "field": "email", "read": true, "write": false},
            ]}),
        )
        .await;

        let (_, read_key) = create_key(&s, &o, &ws, "Reader", &["read"]).await;
        let (_, write_key) = create_key(&s, &o, &ws, "Writer", &["write"]).await;
        let (mgmt_id, mgmt_key) = create_key(&s, &o, &ws, "Manager", &["management"]).await;

        let staff_fields = json!([
            {"name": "full_name", "type": "text", "required": true},
            {"name": "email", "type": "text", "pii": true, "unique": true},
            {"name": "salary", "type": "decimal", "encrypted": true},
        ]);
        let staff = create(&s, &o, &ws, "staff", staff_fields.clone()).await;
        let teams = create(
            &s,
            &o,
            &ws,
            "teams",
            json!([{"name": "title", "type": "text"},
                   {"name": "lead", "type": "relation", "options": {"collection": "staff"}}]),
        )
        .await;

        let admin = people[0].2.clone();
        let member = people[1].2.clone();
        let billing = people[2].2.clone();

        // Readers see the whole schema (no field grants narrow them).
        for (who, token) in [
            ("admin", &admin),
            ("member", &member),
            ("read key", &read_key),
            ("management key", &mgmt_key),
        ] {
            let what = format!("{b}: {who}");
            assert_eq!(get(&s, token, &ws, "staff").await, staff, "{what}");
            assert_eq!(get(&s, token, &ws, "teams").await, teams, "{what}");
            assert_eq!(
                collections(&s, token, &ws).await,
                collections(&s, &o, &ws).await,
                "{what}: list"
            );
        }
        // The narrowed member sees only the granted fields of staff, all of teams.
        let seen = get(&s, &narrowed, &ws, "staff").await;
        assert_eq!(field_names(&seen), ["full_name", "email"], "{b}: {seen}");
        assert_eq!(
            seen["fields"],
            json!([staff["fields"][0], staff["fields"][1]]),
            "{b}: the visible fields are unchanged"
        );
        assert_eq!(
            (&seen["id"], &seen["name"], &seen["version"]),
            (&staff["id"], &staff["name"], &staff["version"]),
            "{b}"
        );
        assert_eq!(get(&s, &narrowed, &ws, "teams").await, teams, "{b}: teams");
        let listed = collections(&s, &narrowed, &ws).await;
        assert_eq!(names(&listed), ["staff", "teams"], "{b}");
        let listed_staff = listed.iter().find(|c| c["name"] == "staff").unwrap();
        assert_eq!(listed_staff, &seen, "{b}: the list narrows too");
        assert_eq!(
            get(&s, &o, &ws, "staff").await,
            staff,
            "{b}: the owner sees all"
        );

        // Without records.read nor collections.manage, nothing.
        for (who, token) in [("billing", &billing), ("write key", &write_key)] {
            let what = format!("{b}: {who}");
            s.get(&ws_path(&ws, "/collections"), Some(token))
                .await
                .assert_problem(403, "permission_denied", &format!("{what} lists"));
            s.get(&col_path(&ws, "staff"), Some(token))
                .await
                .assert_problem(403, "permission_denied", &format!("{what} reads"));
        }

        // Changes need collections.manage; a refusal writes nothing.
        let head = audit_head(&s, &ws).await;
        for (who, token) in [
            ("member", &member),
            ("billing", &billing),
            ("narrowed", &narrowed),
            ("read key", &read_key),
            ("write key", &write_key),
        ] {
            let what = format!("{b}: {who}");
            s.post(
                &ws_path(&ws, "/collections"),
                Some(token),
                json!({"name": "sneaky", "fields": []}),
            )
            .await
            .assert_problem(403, "permission_denied", &format!("{what} creates"));
            s.patch(
                &col_path(&ws, "staff"),
                Some(token),
                json!({"add_fields": [{"name": "sneaky", "type": "text"}]}),
            )
            .await
            .assert_problem(403, "permission_denied", &format!("{what} patches"));
            delete(&s, &col_path(&ws, "teams"), token)
                .await
                .assert_problem(403, "permission_denied", &format!("{what} deletes"));
        }
        assert_eq!(
            audit_head(&s, &ws).await,
            head,
            "{b}: refusals write nothing"
        );
        assert_eq!(
            get(&s, &o, &ws, "staff").await,
            staff,
            "{b}: staff unchanged"
        );
        assert_eq!(
            names(&collections(&s, &o, &ws).await),
            ["staff", "teams"],
            "{b}"
        );

        // An admin and a management key may.
        let admin_uid = people[0].1.clone();
        for (who, token, actor) in [
            ("admin", &admin, pair("user", &admin_uid)),
            ("management key", &mgmt_key, pair("api_key", &mgmt_id)),
        ] {
            let what = format!("{b}: {who}");
            let name = if who == "admin" { "by_admin" } else { "by_key" };
            let made = create(&s, token, &ws, name, json!([{"name": "x", "type": "text"}])).await;
            let r = s
                .patch(
                    &col_path(&ws, name),
                    Some(token),
                    json!({"add_fields": [{"name": "y", "type": "integer"}]}),
                )
                .await;
            assert_status(&r, 200, &format!("{what} patches"));
            assert_eq!(r.body["version"], 2, "{what}");
            assert_status(
                &delete(&s, &col_path(&ws, name), token).await,
                204,
                &format!("{what} deletes"),
            );
            let trail: Vec<(String, (String, String))> = collection_audit(&s, &ws)
                .await
                .into_iter()
                .filter(|e| e.target == pair("collection", &id(&made)))
                .map(|e| (e.action, e.actor))
                .collect();
            assert_eq!(
                trail,
                [
                    ("collection.create".to_owned(), actor.clone()),
                    ("collection.update".to_owned(), actor.clone()),
                    ("collection.delete".to_owned(), actor.clone()),
                ],
                "{what}"
            );
        }
        let founder_entries = collection_audit(&s, &ws)
            .await
            .into_iter()
            .filter(|e| e.actor == pair("user", &founder_id))
            .count();
        assert_eq!(founder_entries, 2, "{b}: staff and teams");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Isolation between workspaces.

#[tokio::test]
async fn collections_are_isolated_between_workspaces() {
    for s in servers().await {
        let b = s.backend();
        let (_, alice, _) = s.user("alice@example.com").await;
        let (_, bob, _) = s.user("bob@example.com").await;
        let (_, carol, _) = s.user("carol@example.com").await;
        let a = id(&s.workspace(&alice, "Alpha", "alpha").await);
        let bws = id(&s.workspace(&bob, "Beta", "beta").await);
        join(&s, &alice, &a, "carol@example.com", &carol, "member").await;

        let secrets = create(
            &s,
            &alice,
            &a,
            "secrets",
            json!([{"name": "code", "type": "text"}]),
        )
        .await;
        let shared_a = create(
            &s,
            &alice,
            &a,
            "shared",
            json!([{"name": "a_only", "type": "integer"}]),
        )
        .await;
        let shared_b = create(
            &s,
            &bob,
            &bws,
            "shared",
            json!([{"name": "b_only", "type": "date"}]),
        )
        .await;
        assert_ne!(id(&shared_a), id(&shared_b), "{b}");

        // B's owner, under B: A's collection does not exist.
        let head_a = audit_head(&s, &a).await;
        s.get(&col_path(&bws, "secrets"), Some(&bob))
            .await
            .assert_problem(
                404,
                "collection_not_found",
                &format!("{b}: bob GET secrets"),
            );
        s.patch(
            &col_path(&bws, "secrets"),
            Some(&bob),
            json!({"add_fields": [{"name": "x", "type": "text"}]}),
        )
        .await
        .assert_problem(
            404,
            "collection_not_found",
            &format!("{b}: bob PATCH secrets"),
        );
        delete(&s, &col_path(&bws, "secrets"), &bob)
            .await
            .assert_problem(
                404,
                "collection_not_found",
                &format!("{b}: bob DELETE secrets"),
            );
        let r = s
            .post(
                &ws_path(&bws, "/collections"),
                Some(&bob),
                json!({"name": "spy", "fields": [{"name": "s", "type": "relation",
                                                  "options": {"collection": "secrets"}}]}),
            )
            .await;
        r.assert_problem(422, "validation_failed", &format!("{b}: relation across"));
        assert_eq!(r.pointers(), ["/fields/0/options/collection"], "{b}");
        let listed = collections(&s, &bob, &bws).await;
        assert_eq!(listed, vec![shared_b.clone()], "{b}: only B's");
        assert!(
            !listed
                .iter()
                .any(|c| id(c) == id(&secrets) || id(c) == id(&shared_a)),
            "{b}"
        );
        assert_eq!(
            get(&s, &bob, &bws, "shared").await,
            shared_b,
            "{b}: B's shared"
        );

        // B's owner, under A: not a member.
        for (method, path, body) in [
            (Method::GET, ws_path(&a, "/collections"), None),
            (Method::GET, col_path(&a, "secrets"), None),
            (Method::GET, col_path("alpha", "secrets"), None),
            (
                Method::POST,
                ws_path(&a, "/collections"),
                Some(json!({"name": "x", "fields": []})),
            ),
            (Method::PATCH, col_path(&a, "secrets"), Some(json!({}))),
            (Method::DELETE, col_path(&a, "secrets"), None),
        ] {
            s.call(method.clone(), &path, Some(&bob), body)
                .await
                .assert_problem(
                    404,
                    "workspace_not_found",
                    &format!("{b}: bob {method} {path}"),
                );
        }
        // A member of A, under B: not a member either.
        for path in [ws_path(&bws, "/collections"), col_path(&bws, "shared")] {
            s.get(&path, Some(&carol)).await.assert_problem(
                404,
                "workspace_not_found",
                &format!("{b}: carol {path}"),
            );
        }
        assert_eq!(
            get(&s, &carol, &a, "secrets").await,
            secrets,
            "{b}: carol reads A"
        );
        // B's management key, under A.
        let (_, b_key) = create_key(&s, &bob, &bws, "B key", &["read", "management"]).await;
        for path in [ws_path(&a, "/collections"), col_path(&a, "secrets")] {
            let r = s.get(&path, Some(&b_key)).await;
            r.assert_problem(
                404,
                "workspace_not_found",
                &format!("{b}: B's key on {path}"),
            );
            assert!(!r.text.contains(&id(&secrets)), "{b}: {}", r.text);
        }
        s.post(
            &ws_path(&a, "/collections"),
            Some(&b_key),
            json!({"name": "planted", "fields": []}),
        )
        .await
        .assert_problem(
            404,
            "workspace_not_found",
            &format!("{b}: B's key creates in A"),
        );
        assert_eq!(
            audit_head(&s, &a).await,
            head_a,
            "{b}: nothing written in A"
        );

        // Deleting B's shared leaves A's.
        assert_status(
            &delete(&s, &col_path(&bws, "shared"), &bob).await,
            204,
            &format!("{b}: delete B's shared"),
        );
        assert_eq!(
            get(&s, &alice, &a, "shared").await,
            shared_a,
            "{b}: A's shared stays"
        );
        assert_eq!(
            collections(&s, &bob, &bws).await,
            Vec::<Value>::new(),
            "{b}"
        );
        assert!(
            collection_audit(&s, &a)
                .await
                .iter()
                .all(|e| e.action == "collection.create"),
            "{b}: A's log holds only its own creates"
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent schema changes.

/// Sends the requests at once; returns each answer's (status, body), in the order given.
async fn at_once(
    s: &Server,
    token: &str,
    requests: Vec<(Method, String, Option<Value>)>,
) -> Vec<(u16, Value)> {
    let mut tasks = Vec::new();
    for (method, path, body) in requests {
        let client = s.client.clone();
        let url = format!("{}{path}", s.base);
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut req = client.request(method, url).bearer_auth(token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::Null))
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn concurrent_schema_changes_serialize() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("cora@example.com").await;
        let ws = id(&s.workspace(&o, "Race", "race").await);

        // Six creates of one name: one wins, the others are told the name is taken.
        let answers = at_once(
            &s,
            &o,
            (0..6)
                .map(|i| {
                    (
                        Method::POST,
                        ws_path(&ws, "/collections"),
                        Some(json!({"name": "dup", "fields": [{"name": format!("f{i}"), "type": "text"}]})),
                    )
                })
                .collect(),
        )
        .await;
        let mut statuses: Vec<u16> = answers.iter().map(|(st, _)| *st).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409, 409, 409, 409, 409], "{b}: {answers:?}");
        for (st, body) in &answers {
            if *st == 409 {
                assert_eq!(body["code"], "name_taken", "{b}: {body}");
            }
        }
        assert_eq!(names(&collections(&s, &o, &ws).await), ["dup"], "{b}");

        // Six patches of one collection: each applies, one version each.
        let answers = at_once(
            &s,
            &o,
            (0..6)
                .map(|i| {
                    (
                        Method::PATCH,
                        col_path(&ws, "dup"),
                        Some(json!({"add_fields": [{"name": format!("added_{i}"), "type": "integer"}]})),
                    )
                })
                .collect(),
        )
        .await;
        let mut versions: Vec<i64> = answers
            .iter()
            .map(|(st, body)| {
                assert_eq!(*st, 200, "{b}: {body}");
                body["version"].as_i64().unwrap()
            })
            .collect();
        versions.sort_unstable();
        assert_eq!(versions, [2, 3, 4, 5, 6, 7], "{b}");
        let dup = get(&s, &o, &ws, "dup").await;
        assert_eq!(dup["version"], 7, "{b}");
        let mut added: Vec<String> = field_names(&dup)
            .into_iter()
            .filter(|n| n.starts_with("added_"))
            .collect();
        added.sort();
        assert_eq!(
            added,
            (0..6).map(|i| format!("added_{i}")).collect::<Vec<_>>(),
            "{b}: no lost update"
        );
        let updates = collection_audit(&s, &ws)
            .await
            .into_iter()
            .filter(|e| e.action == "collection.update")
            .count();
        assert_eq!(updates, 6, "{b}");

        // Deleting a collection while a relation to it is added: never both.
        for round in 0..4 {
            let target = format!("target_{round}");
            create(&s, &o, &ws, &target, json!([])).await;
            let answers = at_once(
                &s,
                &o,
                vec![
                    (
                        Method::PATCH,
                        col_path(&ws, "dup"),
                        Some(json!({"add_fields": [{"name": format!("link_{round}"), "type": "relation",
                                                    "options": {"collection": target}}]})),
                    ),
                    (Method::DELETE, col_path(&ws, &target), None),
                ],
            )
            .await;
            let (patched, deleted) = (answers[0].0, answers[1].0);
            assert!(
                (patched == 200 && deleted == 409) || (patched == 422 && deleted == 204),
                "{b}: round {round}: {answers:?}"
            );
            let exists = s
                .get(&col_path(&ws, &target), Some(&o))
                .await
                .status
                .as_u16()
                == 200;
            assert_eq!(exists, patched == 200, "{b}: round {round}");
            if patched == 200 {
                // The relation names the live target.
                let dup = get(&s, &o, &ws, "dup").await;
                let link = dup["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["name"] == format!("link_{round}"))
                    .unwrap()
                    .clone();
                assert_eq!(link["options"], json!({"collection": target}), "{b}");
            }
        }
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Pages.

#[tokio::test]
async fn collections_are_listed_in_pages_by_id() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("paige@example.com").await;
        let ws = id(&s.workspace(&o, "Pages", "pages").await);
        let mut made = BTreeSet::new();
        for name in ["epsilon", "delta", "gamma", "beta", "alpha"] {
            made.insert(id(&create(
                &s,
                &o,
                &ws,
                name,
                json!([{"name": "n", "type": "text"}]),
            )
            .await));
        }

        let mut paged = Vec::new();
        let mut sizes = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                None => ws_path(&ws, "/collections?limit=2"),
                Some(c) => ws_path(&ws, &format!("/collections?limit=2&cursor={c}")),
            };
            let r = s.get(&path, Some(&o)).await;
            assert_status(&r, 200, &format!("{b}: {path}"));
            let data = r.body["data"].as_array().unwrap().clone();
            sizes.push(data.len());
            paged.extend(data.iter().map(id));
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => {
                    assert_eq!(r.body["next_cursor"], Value::Null, "{b}");
                    break;
                }
            }
            assert!(sizes.len() <= 3, "{b}: too many pages: {sizes:?}");
        }
        assert_eq!(sizes, [2, 2, 1], "{b}");
        assert_eq!(paged.len(), 5, "{b}: {paged:?}");
        assert_eq!(
            paged.iter().cloned().collect::<BTreeSet<_>>(),
            made,
            "{b}: every collection once"
        );
        let ordered: Vec<String> = made.iter().cloned().collect();
        assert_eq!(paged, ordered, "{b}: by id");
        // One page of all, the same order.
        let all = collections(&s, &o, &ws).await;
        assert_eq!(all.iter().map(id).collect::<Vec<_>>(), ordered, "{b}");

        // A bad cursor or limit is a 422 on the parameter.
        for query in ["limit=0", "limit=201", "cursor=nonsense"] {
            s.get(&ws_path(&ws, &format!("/collections?{query}")), Some(&o))
                .await
                .assert_problem(422, "validation_failed", &format!("{b}: {query}"));
        }
        s.stop().await;
    }
}
