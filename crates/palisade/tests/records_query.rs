//! End-to-end tests of record list queries (DAT-4): `filter[field][op]=`, `sort=`, `fields=` and
//! their cursors. Every sortable type is walked page by page against a reference order computed
//! here in Rust over the records the server returned (nulls, ties, descending and multi-key
//! sorts); every filter operator of every type is checked against a reference predicate
//! (decimal exactness, datetime instants, `ne` matching missing values, case-sensitive
//! `contains`); refusals name the exact query parameter (422 `validation_failed`, 403
//! `field_not_readable`, encrypted fields) and change nothing; drafts stay hidden without
//! `records.read_draft`; and nothing crosses workspaces — the real server over real HTTP, on
//! SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::audit::audit_head;

use common::records::{collection, create, create_key, member, record, records};

use std::cmp::Ordering;
use std::collections::BTreeSet;

use common::{ADMIN, Reply, Server, assert_status, enable_modules, give_custom_role, id, servers};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

// ---------------------------------------------------------------------------------------------
// Helpers: requests.

/// Query parameters, in the order they are sent.
type Params = Vec<(String, String)>;

fn q(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A query value, percent-encoded (`+` as `%2B`, a space as `%20`; commas and colons kept
/// readable, as RFC 3986 allows in a query).
fn enc(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
        .replace("%2C", ",")
        .replace("%3A", ":")
}

/// `?k=v&…` (names are sent as written: `filter[qty][gt]`), or nothing.
fn query(params: &[(String, String)]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"[]_-".contains(&b)),
                "parameter names are sent unencoded: {k}"
            );
            format!("{k}={}", enc(v))
        })
        .collect();
    format!("?{}", parts.join("&"))
}

/// `GET …/records?…`: the path sent and the reply.
async fn list(
    s: &Server,
    token: &str,
    ws: &str,
    col: &str,
    params: &[(String, String)],
) -> (String, Reply) {
    let path = format!("{}{}", records(ws, col), query(params));
    let r = s.get(&path, Some(token)).await;
    (path, r)
}

/// Every page of a query with `limit`, following `next_cursor` until it is null; the records in
/// the order the pages gave them.
async fn walk(
    s: &Server,
    token: &str,
    ws: &str,
    col: &str,
    params: &[(String, String)],
    limit: usize,
) -> Vec<Value> {
    walk_from(s, token, ws, col, params, limit, None).await
}

/// [`walk`] from a page's `next_cursor` (from the first page when `None`).
async fn walk_from(
    s: &Server,
    token: &str,
    ws: &str,
    col: &str,
    params: &[(String, String)],
    limit: usize,
    mut cursor: Option<String>,
) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..500 {
        let mut all = params.to_vec();
        all.push(("limit".into(), limit.to_string()));
        if let Some(c) = &cursor {
            all.push(("cursor".into(), c.clone()));
        }
        let (path, r) = list(s, token, ws, col, &all).await;
        assert_status(&r, 200, &format!("{}: GET {path}", s.backend()));
        let page = r.body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: GET {path}: no data: {}", s.backend(), r.text))
            .clone();
        assert!(
            page.len() <= limit,
            "{}: GET {path}: {} records on a page of {limit}",
            s.backend(),
            page.len()
        );
        out.extend(page);
        match &r.body["next_cursor"] {
            Value::String(c) => cursor = Some(c.clone()),
            Value::Null => return out,
            other => panic!("{}: GET {path}: next_cursor {other}", s.backend()),
        }
    }
    panic!("{}: more than 500 pages for {params:?}", s.backend())
}

/// One page, which must be 200; returns (data, next_cursor).
async fn page(
    s: &Server,
    token: &str,
    ws: &str,
    col: &str,
    params: &[(String, String)],
) -> (Vec<Value>, Option<String>) {
    let (path, r) = list(s, token, ws, col, params).await;
    assert_status(&r, 200, &format!("{}: GET {path}", s.backend()));
    (
        r.body["data"].as_array().unwrap().clone(),
        r.body["next_cursor"].as_str().map(str::to_owned),
    )
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter().map(id).collect()
}

/// The query parameters a problem names, sorted.
fn parameters(r: &Reply) -> Vec<String> {
    let mut out: Vec<String> = r.body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["parameter"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The message of the error naming `parameter`.
fn message_for<'a>(r: &'a Reply, parameter: &str) -> &'a str {
    r.body["errors"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["parameter"] == parameter))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_else(|| panic!("no error for {parameter}: {}", r.text))
}

/// Asserts a problem with this status and code whose `errors` name exactly these query
/// parameters (each with a message, none with a body pointer).
fn assert_params(r: &Reply, status: u16, code: &str, names: &[&str], context: &str) {
    r.assert_problem(status, code, context);
    let mut want: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    want.sort();
    assert_eq!(parameters(r), want, "{context}: {}", r.text);
    for e in r.body["errors"].as_array().unwrap() {
        assert!(e.get("pointer").is_none(), "{context}: {}", r.text);
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{context}: {}",
            r.text
        );
    }
}

/// A record's own attributes, always returned whatever `fields` asks.
const META: [&str; 9] = [
    "id",
    "collection",
    "status",
    "version",
    "created_at",
    "updated_at",
    "published_at",
    "created_by",
    "updated_by",
];

/// The record as `fields=<fields>` should show it: its meta and those of its fields it holds.
fn project(full: &Value, fields: &[&str]) -> Value {
    let m: serde_json::Map<String, Value> = full
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| META.contains(&k.as_str()) || fields.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Helpers: the reference order and predicates, computed here over the records as returned.

/// How a field's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Code point (byte) order: text, dates (`YYYY-MM-DD`), enum values, relation and record
    /// ids.
    Text,
    Int,
    /// Exact numeric order of decimal strings.
    Dec,
    Bool,
    /// Instants (RFC 3339 with any precision).
    Time,
}

/// The kind of every field these tests sort on (`tasks`' fields, the built-ins, and the
/// fields of the smaller collections).
fn kind(field: &str) -> Kind {
    match field {
        "qty" | "rank" => Kind::Int,
        "price" => Kind::Dec,
        "done" => Kind::Bool,
        "at" | "created_at" | "updated_at" => Kind::Time,
        // name, note, title, due, level, owner, id, …
        _ => Kind::Text,
    }
}

fn instant(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A decimal string's (negative, integer digits without leading zeros, fraction digits without
/// trailing zeros); zero is never negative.
fn dec_parts(s: &str) -> (bool, String, String) {
    let (neg, unsigned) = match s.strip_prefix('-') {
        Some(u) => (true, u),
        None => (false, s),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    assert!(
        int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) && !int.is_empty(),
        "not a decimal: {s}"
    );
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let zero = int.is_empty() && frac.is_empty();
    (neg && !zero, int.to_owned(), frac.to_owned())
}

/// Exact numeric comparison of two decimal strings.
fn dec_cmp(a: &str, b: &str) -> Ordering {
    let (an, ai, af) = dec_parts(a);
    let (bn, bi, bf) = dec_parts(b);
    let magnitude = ai
        .len()
        .cmp(&bi.len())
        .then_with(|| ai.cmp(&bi))
        .then_with(|| af.cmp(&bf));
    match (an, bn) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

fn cmp_values(kind: Kind, a: &Value, b: &Value) -> Ordering {
    let s = |v: &Value| {
        v.as_str()
            .unwrap_or_else(|| panic!("not a string: {v}"))
            .to_owned()
    };
    match kind {
        Kind::Text => s(a).as_bytes().cmp(s(b).as_bytes()),
        Kind::Int => a.as_i64().unwrap().cmp(&b.as_i64().unwrap()),
        Kind::Dec => dec_cmp(&s(a), &s(b)),
        Kind::Bool => a.as_bool().unwrap().cmp(&b.as_bool().unwrap()),
        Kind::Time => instant(&s(a)).cmp(&instant(&s(b))),
    }
}

/// A field's value; `None` when missing or null.
fn value<'a>(rec: &'a Value, field: &str) -> Option<&'a Value> {
    rec.get(field).filter(|v| !v.is_null())
}

fn text<'a>(rec: &'a Value, field: &str) -> Option<&'a str> {
    value(rec, field).and_then(Value::as_str)
}

fn int(rec: &Value, field: &str) -> Option<i64> {
    value(rec, field).and_then(Value::as_i64)
}

fn boolean(rec: &Value, field: &str) -> Option<bool> {
    value(rec, field).and_then(Value::as_bool)
}

/// The comparison of a decimal field's value with `against` (`None` when missing).
fn dec(rec: &Value, field: &str, against: &str) -> Option<Ordering> {
    text(rec, field).map(|v| dec_cmp(v, against))
}

/// The comparison of a datetime field's value with the instant `against` (`None` when missing).
fn when(rec: &Value, field: &str, against: &str) -> Option<Ordering> {
    text(rec, field).map(|v| instant(v).cmp(&instant(against)))
}

fn tags(rec: &Value, field: &str) -> Vec<String> {
    value(rec, field)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// `sort=` as (field, descending) keys.
fn sort_keys(spec: &str) -> Vec<(String, bool)> {
    spec.split(',')
        .map(|k| match k.strip_prefix('-') {
            Some(f) => (f.to_owned(), true),
            None => (k.to_owned(), false),
        })
        .collect()
}

/// The contract's order: each key in turn, missing values last ascending and first descending;
/// ties by id ascending.
fn compare(a: &Value, b: &Value, keys: &[(String, bool)]) -> Ordering {
    for (field, desc) in keys {
        let o = match (value(a, field), value(b, field)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => cmp_values(kind(field), x, y),
        };
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    id(a).cmp(&id(b))
}

/// The ids `keep` selects from `all`, in `sort`'s order (id ascending without one).
fn reference(all: &[Value], keep: &dyn Fn(&Value) -> bool, sort: Option<&str>) -> Vec<String> {
    let mut chosen: Vec<&Value> = all.iter().filter(|r| keep(r)).collect();
    let keys = sort.map(sort_keys).unwrap_or_default();
    chosen.sort_by(|a, b| compare(a, b, &keys));
    chosen.into_iter().map(id).collect()
}

/// The records of `ids` with the values of `fields`, one a line (for failure messages).
fn show(all: &[Value], ids: &[String], fields: &[String]) -> String {
    ids.iter()
        .map(|i| {
            let rec = all.iter().find(|r| id(r) == *i);
            let values: Vec<String> = fields
                .iter()
                .map(|f| {
                    let v = rec
                        .and_then(|r| value(r, f))
                        .cloned()
                        .unwrap_or(Value::Null);
                    format!("{f}={v}")
                })
                .collect();
            format!("  {i} {}", values.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts `got` is exactly the records `want` (ids, in order), each as the full record of
/// `all` (nothing left out without `fields`).
fn assert_records(all: &[Value], got: &[Value], want: &[String], fields: &[String], what: &str) {
    let got_ids = ids(got);
    assert!(
        got_ids == want,
        "{what}\nexpected ({}):\n{}\nactual ({}):\n{}",
        want.len(),
        show(all, want, fields),
        got_ids.len(),
        show(all, &got_ids, fields)
    );
    for rec in got {
        let full = all.iter().find(|r| id(r) == id(rec)).unwrap();
        assert_eq!(rec, full, "{what}: the record as listed");
    }
}

#[test]
fn the_reference_compares_as_the_contract_says() {
    use Ordering::{Equal, Greater, Less};
    for (a, b, want) in [
        ("10.5", "9.75", Greater),
        ("-2", "-1.5", Less),
        ("1.50", "1.5", Equal),
        ("0.1", "0.10", Equal),
        ("10", "9.99", Greater),
        ("0", "-0.00", Equal),
        ("0.5", "0.49", Greater),
        ("0.05", "0.5", Less),
        ("-0.5", "0", Less),
        (
            "12345678901234567890.000000000000000001",
            "12345678901234567890",
            Greater,
        ),
        ("-100.25", "-1234567890123456789012345678.5", Greater),
    ] {
        assert_eq!(dec_cmp(a, b), want, "{a} vs {b}");
        assert_eq!(dec_cmp(b, a), want.reverse(), "{b} vs {a}");
    }
    let t = |s: &str| json!(s);
    assert_eq!(
        cmp_values(
            Kind::Time,
            &t("2026-01-01T00:00:00Z"),
            &t("2026-01-01T00:00:00.5Z")
        ),
        Less
    );
    assert_eq!(
        cmp_values(
            Kind::Time,
            &t("2026-01-01T00:00:00.5Z"),
            &t("2026-01-01T00:00:01Z")
        ),
        Less
    );
    assert_eq!(
        cmp_values(Kind::Text, &t("Zebra"), &t("apple")),
        Less,
        "byte order"
    );
    assert_eq!(
        cmp_values(Kind::Text, &t("～"), &t("😀")),
        Less,
        "code points"
    );
    let a = json!({"id": "rec_a", "qty": 1});
    let b = json!({"id": "rec_b"});
    let keys = sort_keys("qty");
    assert_eq!(compare(&a, &b, &keys), Less, "missing last ascending");
    assert_eq!(
        compare(&a, &b, &sort_keys("-qty")),
        Greater,
        "missing first descending"
    );
    let c = json!({"id": "rec_c", "qty": 1});
    assert_eq!(compare(&c, &a, &sort_keys("-qty")), Greater, "ties by id");
}

// ---------------------------------------------------------------------------------------------
// The data most tests share: `tasks`, 25 records with every sortable type, ties and gaps.

const TASKS: &str = "tasks";
const N: usize = 25;

const NAMES: [Option<&str>; N] = [
    Some("apple"),
    Some("Apple"),
    Some("banana"),
    Some("apple"),
    None,
    Some(""),
    Some("Äpfel"),
    Some("émile"),
    Some("zebra"),
    Some("Zebra"),
    Some("a b"),
    Some("ab"),
    Some("a"),
    Some("😀"),
    Some("～"),
    Some("100% cotton"),
    Some("snake_case"),
    Some("apple pie"),
    None,
    Some("banana"),
    Some("cherry"),
    Some("Cherry"),
    Some("snakeXcase"),
    Some("100 cotton"),
    None,
];

const QTYS: [Option<i64>; N] = [
    Some(5),
    Some(-3),
    None,
    Some(5),
    Some(0),
    Some(i64::MAX),
    Some(i64::MIN),
    Some(10),
    Some(9),
    Some(100),
    None,
    Some(2),
    Some(2),
    Some(-10),
    Some(7),
    Some(5),
    Some(1),
    None,
    Some(3),
    Some(20),
    Some(9),
    Some(-1),
    Some(4),
    Some(6),
    Some(8),
];

const PRICES: [Option<&str>; N] = [
    Some("10.5"),
    Some("9.75"),
    Some("-2"),
    Some("-1.5"),
    Some("1.50"),
    Some("1.5"),
    Some("0.1"),
    Some("0.10"),
    Some("10"),
    Some("9.99"),
    Some("12345678901234567890.000000000000000001"),
    Some("12345678901234567890"),
    Some("0"),
    Some("-0.5"),
    None,
    Some("100"),
    Some("2.000001"),
    Some("-0.00"),
    None,
    Some("0.01"),
    Some("-100.25"),
    Some("-1234567890123456789012345678.5"),
    Some("1234567890123456789012345678.123456789012345678"),
    Some("7"),
    None,
];

const DUES: [Option<&str>; N] = [
    Some("2024-02-29"),
    Some("2023-12-31"),
    None,
    Some("2024-01-01"),
    Some("2024-02-29"),
    Some("2025-06-15"),
    Some("2000-01-01"),
    None,
    Some("2024-01-01"),
    Some("2024-12-31"),
    Some("2024-03-01"),
    Some("2024-02-28"),
    None,
    Some("2030-01-01"),
    Some("2024-02-29"),
    Some("1999-12-31"),
    Some("2024-06-01"),
    None,
    Some("2024-01-02"),
    Some("2024-01-01"),
    Some("2025-01-01"),
    Some("2023-01-01"),
    None,
    Some("2024-07-04"),
    Some("2024-02-29"),
];

/// As sent: offsets and precisions vary; several are the same instant.
const ATS: [Option<&str>; N] = [
    Some("2026-01-01T00:00:00Z"),
    Some("2026-01-01T00:00:00.5Z"),
    Some("2026-01-01T00:00:01Z"),
    Some("2026-01-01T01:00:00+01:00"),
    Some("2025-12-31T23:59:59.999999Z"),
    Some("2026-01-01T00:00:00.25+00:00"),
    Some("2026-01-01T00:00:00.123456Z"),
    Some("2025-12-31T20:00:00-05:00"),
    Some("2026-06-30T12:00:00Z"),
    None,
    Some("1999-12-31T23:59:59Z"),
    Some("2026-01-01T00:00:00.5Z"),
    None,
    Some("2026-01-01T00:00:00.05Z"),
    Some("2026-01-01T09:00:00+09:00"),
    Some("2026-06-30T14:00:00+02:00"),
    Some("2030-01-01T00:00:00Z"),
    None,
    Some("2026-01-01T00:00:00.999Z"),
    Some("2026-01-01T00:00:00.1Z"),
    Some("2025-01-01T00:00:00Z"),
    Some("2026-01-01T00:00:00.500001Z"),
    None,
    Some("2026-01-01T00:00:00.4999Z"),
    Some("2026-01-01T00:59:59.9Z"),
];

/// Declared in code point order, so option order and value order agree.
const LEVELS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Records created as drafts, and those the member creates.
const DRAFTS: [usize; 2] = [6, 13];
const BY_MEMBER: usize = 20;

struct Fixture {
    owner: String,
    owner_id: String,
    member_id: String,
    ws: String,
    /// Ids of the `people` records `owner` relates to.
    people: Vec<String>,
    /// Every record as the owner lists it, by id.
    all: Vec<Value>,
}

async fn seed(s: &Server, slug: &str) -> Fixture {
    let b = s.backend();
    let (owner_id, owner, _) = s.user("owner@example.com").await;
    let ws = id(&s.workspace(&owner, "Query", slug).await);
    let (member_id, member, _) = member(s, &owner, &ws, "member@example.com", "member").await;
    collection(
        s,
        &owner,
        &ws,
        "people",
        json!([{"name": "name", "type": "text"}]),
    )
    .await;
    collection(
        s,
        &owner,
        &ws,
        TASKS,
        json!([
            {"name": "name", "type": "text"},
            {"name": "qty", "type": "integer"},
            {"name": "price", "type": "decimal"},
            {"name": "done", "type": "boolean"},
            {"name": "due", "type": "date"},
            {"name": "at", "type": "datetime"},
            {"name": "level", "type": "enum", "options": {"values": LEVELS}},
            {"name": "owner", "type": "relation", "options": {"collection": "people"}},
            {"name": "labels", "type": "tags"},
            {"name": "note", "type": "text"},
            {"name": "meta", "type": "json"},
            {"name": "receipt", "type": "file"},
        ]),
    )
    .await;
    let mut people = Vec::new();
    for name in ["Pat", "Sam", "Kim"] {
        people.push(id(
            &create(s, &owner, &ws, "people", json!({"name": name})).await
        ));
    }
    let labels: [Option<Value>; 6] = [
        Some(json!(["red"])),
        Some(json!(["Red", "blue"])),
        None,
        Some(json!(["blue", "red"])),
        Some(json!([])),
        Some(json!(["green"])),
    ];
    let mut made = Vec::new();
    for i in 0..N {
        let mut body = serde_json::Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                body.insert(k.to_owned(), v);
            }
        };
        put("name", NAMES[i].map(Value::from));
        put("qty", QTYS[i].map(Value::from));
        put("price", PRICES[i].map(Value::from));
        put(
            "done",
            [Some(true), Some(false), None][i % 3].map(Value::from),
        );
        put("due", DUES[i].map(Value::from));
        put("at", ATS[i].map(Value::from));
        put("level", LEVELS.get(i % 4).map(|l| Value::from(*l)));
        let owner_of = [Some(0), None, Some(1), Some(2), Some(0)][i % 5];
        put(
            "owner",
            owner_of.map(|p: usize| Value::from(people[p].clone())),
        );
        put("labels", labels[i % 6].clone());
        put("meta", Some(json!({"i": i, "odd": i % 2 == 1})));
        put("note", (i == 0).then(|| json!("x")));
        if DRAFTS.contains(&i) {
            body.insert("status".into(), json!("draft"));
        }
        let token = if i >= BY_MEMBER { &member } else { &owner };
        made.push(id(&create(s, token, &ws, TASKS, Value::Object(body)).await));
    }
    // Later changes, out of creation order, by both: `updated_at` and `updated_by` differ from
    // `created_*`, and `note` is set on a few records only.
    for (i, note, token) in [
        (17, "x", &owner),
        (22, "x", &owner),
        (4, "a", &owner),
        (3, "b", &member),
        (11, "Z", &owner),
    ] {
        let r = s
            .patch(
                &record(&ws, TASKS, &made[i]),
                Some(token),
                json!({"note": note}),
            )
            .await;
        assert_status(&r, 200, &format!("{b}: PATCH note of #{i}"));
    }
    let all = walk(s, &owner, &ws, TASKS, &[], 200).await;
    assert_eq!(all.len(), N, "{b}: the owner lists every record");
    let mut by_id = ids(&all);
    by_id.sort();
    assert_eq!(ids(&all), by_id, "{b}: listed by id by default");
    // The stored forms the reference works on.
    let at_of = |i: usize| {
        all.iter()
            .find(|r| id(r) == made[i])
            .map(|r| r["at"].clone())
            .unwrap()
    };
    assert_eq!(at_of(3), json!("2026-01-01T00:00:00Z"), "{b}: UTC");
    assert_eq!(at_of(14), json!("2026-01-01T00:00:00Z"), "{b}: UTC");
    Fixture {
        owner,
        owner_id,
        member_id,
        ws,
        people,
        all,
    }
}

/// The sort keys shown on failure for a query.
fn shown(sort: Option<&str>, extra: &[&str]) -> Vec<String> {
    let mut fields: Vec<String> = sort
        .map(|s| sort_keys(s).into_iter().map(|(f, _)| f).collect())
        .unwrap_or_default();
    fields.extend(extra.iter().map(|f| (*f).to_owned()));
    fields
}

// ---------------------------------------------------------------------------------------------
// 1. Sorting: every sortable type, both directions, several keys, walked page by page.

#[tokio::test]
async fn sort_and_paginate_every_sortable_type() {
    for s in servers().await {
        let b = s.backend();
        let f = seed(&s, "sorting").await;
        let mut specs: Vec<String> = Vec::new();
        for field in [
            "name",
            "qty",
            "price",
            "done",
            "due",
            "at",
            "level",
            "owner",
            "note",
            "id",
            "created_at",
            "updated_at",
        ] {
            specs.push(field.to_owned());
            specs.push(format!("-{field}"));
        }
        specs.extend(
            [
                "-qty,due",
                "done,-price",
                "level,-done,name",
                "-note,at",
                "owner,-level,-qty",
                "-done,-due,id",
                "note,-updated_at",
            ]
            .map(String::from),
        );
        for spec in &specs {
            let got = walk(&s, &f.owner, &f.ws, TASKS, &q(&[("sort", spec)]), 3).await;
            let want = reference(&f.all, &|_| true, Some(spec));
            assert_records(
                &f.all,
                &got,
                &want,
                &shown(Some(spec), &[]),
                &format!("{b}: sort={spec}, limit=3"),
            );
        }
        // One record a page, and one page of them all (the default limit is 50).
        for spec in ["-qty,due", "price", "-at"] {
            let want = reference(&f.all, &|_| true, Some(spec));
            let got = walk(&s, &f.owner, &f.ws, TASKS, &q(&[("sort", spec)]), 1).await;
            assert_records(
                &f.all,
                &got,
                &want,
                &shown(Some(spec), &[]),
                &format!("{b}: sort={spec}, limit=1"),
            );
            let (data, next) = page(&s, &f.owner, &f.ws, TASKS, &q(&[("sort", spec)])).await;
            assert_records(
                &f.all,
                &data,
                &want,
                &shown(Some(spec), &[]),
                &format!("{b}: sort={spec}, one page"),
            );
            assert_eq!(next, None, "{b}: sort={spec}: nothing more");
        }
        // A walk with limit 200 is one page.
        let got = walk(
            &s,
            &f.owner,
            &f.ws,
            TASKS,
            &q(&[("sort", "-created_at")]),
            200,
        )
        .await;
        let want = reference(&f.all, &|_| true, Some("-created_at"));
        assert_records(
            &f.all,
            &got,
            &want,
            &shown(Some("-created_at"), &[]),
            &format!("{b}: sort=-created_at, limit=200"),
        );

        // Instants that differ below the microsecond, created out of order.
        collection(
            &s,
            &f.owner,
            &f.ws,
            "instants",
            json!([{"name": "at", "type": "datetime"}]),
        )
        .await;
        for at in [
            "2026-01-01T00:00:00.1234567Z",
            "2026-01-01T00:00:00.1234561Z",
            "2026-01-01T00:00:00.12345605Z",
            "2026-01-01T00:00:00.123456Z",
            "2026-01-01T01:00:00.1234565+01:00",
            "2026-01-01T00:00:00.123457Z",
        ] {
            create(&s, &f.owner, &f.ws, "instants", json!({"at": at})).await;
        }
        let instants = walk(&s, &f.owner, &f.ws, "instants", &[], 200).await;
        for (params, keep, sort) in [
            (
                q(&[("sort", "at")]),
                Box::new(|_: &Value| true) as Box<dyn Fn(&Value) -> bool>,
                Some("at"),
            ),
            (
                q(&[("sort", "-at")]),
                Box::new(|_: &Value| true),
                Some("-at"),
            ),
            (
                q(&[("filter[at][gt]", "2026-01-01T00:00:00.123456Z")]),
                Box::new(|r: &Value| {
                    when(r, "at", "2026-01-01T00:00:00.123456Z") == Some(Ordering::Greater)
                }),
                None,
            ),
            (
                q(&[
                    ("filter[at][lt]", "2026-01-01T01:00:00.1234565+01:00"),
                    ("sort", "-at"),
                ]),
                Box::new(|r: &Value| {
                    when(r, "at", "2026-01-01T00:00:00.1234565Z") == Some(Ordering::Less)
                }),
                Some("-at"),
            ),
            (
                q(&[("filter[at][eq]", "2026-01-01T00:00:00.12345650Z")]),
                Box::new(|r: &Value| {
                    when(r, "at", "2026-01-01T00:00:00.1234565Z") == Some(Ordering::Equal)
                }),
                None,
            ),
        ] {
            let got = walk(&s, &f.owner, &f.ws, "instants", &params, 2).await;
            let want = reference(&instants, &*keep, sort);
            assert!(!want.is_empty(), "{b}: {params:?}");
            assert_records(
                &instants,
                &got,
                &want,
                &shown(Some("at"), &[]),
                &format!("{b}: instants: {}", query(&params)),
            );
        }

        // A walk goes on from its cursor when the record it stopped at, and one further on,
        // are gone.
        let spec = "-qty,due";
        let params = q(&[("sort", spec)]);
        let want = reference(&f.all, &|_| true, Some(spec));
        let mut first = params.clone();
        first.push(("limit".into(), "3".into()));
        let (data, next) = page(&s, &f.owner, &f.ws, TASKS, &first).await;
        assert_eq!(ids(&data), want[..3], "{b}: first page of sort={spec}");
        for gone in [&want[2], &want[6]] {
            let r = s
                .call(
                    reqwest::Method::DELETE,
                    &record(&f.ws, TASKS, gone),
                    Some(&f.owner),
                    None,
                )
                .await;
            assert_status(&r, 204, &format!("{b}: delete {gone}"));
        }
        let rest = walk_from(&s, &f.owner, &f.ws, TASKS, &params, 3, next).await;
        let expected: Vec<String> = want[3..]
            .iter()
            .filter(|i| **i != want[6])
            .cloned()
            .collect();
        assert_records(
            &f.all,
            &rest,
            &expected,
            &shown(Some(spec), &[]),
            &format!("{b}: sort={spec}, the rest after deletes"),
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Filters: every operator of every type against a reference predicate.

/// A filter query and the records it should select.
struct Case {
    params: Params,
    keep: Box<dyn Fn(&Value) -> bool>,
}

fn case(pairs: &[(&str, &str)], keep: impl Fn(&Value) -> bool + 'static) -> Case {
    Case {
        params: q(pairs),
        keep: Box::new(keep),
    }
}

fn filter_cases(f: &Fixture) -> Vec<Case> {
    use Ordering::{Equal, Greater, Less};
    let by_created = reference(&f.all, &|_| true, Some("created_at"));
    let created = |i: usize| {
        let rid = &by_created[i];
        f.all.iter().find(|r| id(r) == *rid).unwrap()["created_at"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (c10, c15) = (created(10), created(15));
    let by_updated = reference(&f.all, &|_| true, Some("-updated_at"));
    let u2 = f.all.iter().find(|r| id(r) == by_updated[2]).unwrap()["updated_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let all_ids = ids(&f.all);
    let (r5, r1, r7, r24) = (
        all_ids[5].clone(),
        all_ids[1].clone(),
        all_ids[7].clone(),
        all_ids[24].clone(),
    );
    let (p0, p1, p2) = (
        f.people[0].clone(),
        f.people[1].clone(),
        f.people[2].clone(),
    );
    let (oid, mid) = (f.owner_id.clone(), f.member_id.clone());
    let name = |r: &Value| text(r, "name").map(str::to_owned);
    let dt = |r: &Value, at: &str| when(r, "at", at);
    let mut cases = vec![
        // text
        case(&[("filter[name]", "apple")], move |r| {
            name(r).as_deref() == Some("apple")
        }),
        case(&[("filter[name][eq]", "Apple")], move |r| {
            name(r).as_deref() == Some("Apple")
        }),
        case(&[("filter[name][ne]", "apple")], move |r| {
            name(r).as_deref() != Some("apple")
        }),
        case(&[("filter[name][lt]", "a")], move |r| {
            name(r).is_some_and(|n| n.as_str() < "a")
        }),
        case(&[("filter[name][lte]", "apple")], move |r| {
            name(r).is_some_and(|n| n.as_str() <= "apple")
        }),
        case(&[("filter[name][gt]", "zebra")], move |r| {
            name(r).is_some_and(|n| n.as_str() > "zebra")
        }),
        case(&[("filter[name][gte]", "Zebra")], move |r| {
            name(r).is_some_and(|n| n.as_str() >= "Zebra")
        }),
        case(&[("filter[name][in]", "apple,Cherry,nothing")], move |r| {
            matches!(name(r).as_deref(), Some("apple" | "Cherry" | "nothing"))
        }),
        case(&[("filter[name][contains]", "pple")], move |r| {
            name(r).is_some_and(|n| n.contains("pple"))
        }),
        case(&[("filter[name][contains]", "App")], move |r| {
            name(r).is_some_and(|n| n.contains("App"))
        }),
        case(&[("filter[name][contains]", "%")], move |r| {
            name(r).is_some_and(|n| n.contains('%'))
        }),
        case(&[("filter[name][contains]", "_")], move |r| {
            name(r).is_some_and(|n| n.contains('_'))
        }),
        case(&[("filter[name][contains]", "a b")], move |r| {
            name(r).is_some_and(|n| n.contains("a b"))
        }),
        case(&[("filter[name][contains]", "😀")], move |r| {
            name(r).is_some_and(|n| n.contains('😀'))
        }),
        case(
            &[("filter[name][gte]", "a"), ("filter[name][lt]", "b")],
            move |r| name(r).is_some_and(|n| n.as_str() >= "a" && n.as_str() < "b"),
        ),
        // integer
        case(&[("filter[qty][eq]", "5")], |r| int(r, "qty") == Some(5)),
        case(&[("filter[qty]", "5")], |r| int(r, "qty") == Some(5)),
        case(&[("filter[qty][ne]", "5")], |r| int(r, "qty") != Some(5)),
        case(&[("filter[qty][lt]", "0")], |r| {
            int(r, "qty").is_some_and(|v| v < 0)
        }),
        case(&[("filter[qty][lte]", "2")], |r| {
            int(r, "qty").is_some_and(|v| v <= 2)
        }),
        case(&[("filter[qty][gt]", "9")], |r| {
            int(r, "qty").is_some_and(|v| v > 9)
        }),
        case(&[("filter[qty][gte]", "9223372036854775807")], |r| {
            int(r, "qty") == Some(i64::MAX)
        }),
        case(&[("filter[qty][eq]", "-9223372036854775808")], |r| {
            int(r, "qty") == Some(i64::MIN)
        }),
        case(&[("filter[qty][in]", "2,5,-10,12345")], |r| {
            matches!(int(r, "qty"), Some(2 | 5 | -10 | 12345))
        }),
        case(
            &[("filter[qty][gte]", "2"), ("filter[qty][lt]", "10")],
            |r| int(r, "qty").is_some_and(|v| (2..10).contains(&v)),
        ),
        // decimal: exact, whatever the scale
        case(&[("filter[price][eq]", "1.5")], |r| {
            dec(r, "price", "1.5") == Some(Equal)
        }),
        case(&[("filter[price][eq]", "0.10")], |r| {
            dec(r, "price", "0.10") == Some(Equal)
        }),
        case(&[("filter[price][eq]", "-0")], |r| {
            dec(r, "price", "0") == Some(Equal)
        }),
        case(&[("filter[price][ne]", "1.5")], |r| {
            dec(r, "price", "1.5") != Some(Equal)
        }),
        case(&[("filter[price][gt]", "9.99")], |r| {
            dec(r, "price", "9.99") == Some(Greater)
        }),
        case(&[("filter[price][lt]", "10")], |r| {
            dec(r, "price", "10") == Some(Less)
        }),
        case(&[("filter[price][lte]", "-1.5")], |r| {
            matches!(dec(r, "price", "-1.5"), Some(Less | Equal))
        }),
        case(&[("filter[price][gte]", "12345678901234567890")], |r| {
            matches!(
                dec(r, "price", "12345678901234567890"),
                Some(Greater | Equal)
            )
        }),
        case(&[("filter[price][gt]", "12345678901234567890")], |r| {
            dec(r, "price", "12345678901234567890") == Some(Greater)
        }),
        case(
            &[("filter[price][lt]", "-1234567890123456789012345678.4")],
            |r| dec(r, "price", "-1234567890123456789012345678.4") == Some(Less),
        ),
        case(&[("filter[price][in]", "1.5,-2,100.00,0.1")], |r| {
            ["1.5", "-2", "100.00", "0.1"]
                .iter()
                .any(|v| dec(r, "price", v) == Some(Equal))
        }),
        case(
            &[("filter[price][gte]", "0"), ("filter[price][lt]", "2")],
            |r| {
                matches!(dec(r, "price", "0"), Some(Greater | Equal))
                    && dec(r, "price", "2") == Some(Less)
            },
        ),
        // boolean
        case(&[("filter[done]", "true")], |r| {
            boolean(r, "done") == Some(true)
        }),
        case(&[("filter[done][eq]", "false")], |r| {
            boolean(r, "done") == Some(false)
        }),
        case(&[("filter[done][ne]", "true")], |r| {
            boolean(r, "done") != Some(true)
        }),
        case(&[("filter[done][ne]", "false")], |r| {
            boolean(r, "done") != Some(false)
        }),
        // date
        case(&[("filter[due][eq]", "2024-02-29")], |r| {
            text(r, "due") == Some("2024-02-29")
        }),
        case(&[("filter[due][ne]", "2024-02-29")], |r| {
            text(r, "due") != Some("2024-02-29")
        }),
        case(&[("filter[due][lt]", "2024-01-01")], |r| {
            text(r, "due").is_some_and(|d| d < "2024-01-01")
        }),
        case(&[("filter[due][lte]", "2024-01-01")], |r| {
            text(r, "due").is_some_and(|d| d <= "2024-01-01")
        }),
        case(&[("filter[due][gt]", "2024-12-31")], |r| {
            text(r, "due").is_some_and(|d| d > "2024-12-31")
        }),
        case(
            &[
                ("filter[due][gte]", "2024-02-29"),
                ("filter[due][lt]", "2024-03-01"),
            ],
            |r| text(r, "due").is_some_and(|d| ("2024-02-29".."2024-03-01").contains(&d)),
        ),
        case(&[("filter[due][in]", "2024-01-01,2030-01-01")], |r| {
            matches!(text(r, "due"), Some("2024-01-01" | "2030-01-01"))
        }),
        // datetime: instants, offsets normalised to UTC
        case(
            &[("filter[at][eq]", "2026-01-01T01:00:00+01:00")],
            move |r| dt(r, "2026-01-01T00:00:00Z") == Some(Equal),
        ),
        case(
            &[("filter[at][eq]", "2026-01-01T00:00:00.000Z")],
            move |r| dt(r, "2026-01-01T00:00:00Z") == Some(Equal),
        ),
        case(&[("filter[at][ne]", "2026-01-01T00:00:00Z")], move |r| {
            dt(r, "2026-01-01T00:00:00Z") != Some(Equal)
        }),
        case(&[("filter[at][gt]", "2026-01-01T00:00:00Z")], move |r| {
            dt(r, "2026-01-01T00:00:00Z") == Some(Greater)
        }),
        case(
            &[("filter[at][gte]", "2026-01-01T09:00:00+09:00")],
            move |r| matches!(dt(r, "2026-01-01T00:00:00Z"), Some(Greater | Equal)),
        ),
        case(&[("filter[at][lt]", "2026-01-01T00:00:00.5Z")], move |r| {
            dt(r, "2026-01-01T00:00:00.5Z") == Some(Less)
        }),
        case(&[("filter[at][lte]", "2026-01-01T00:00:00.5Z")], move |r| {
            matches!(dt(r, "2026-01-01T00:00:00.5Z"), Some(Less | Equal))
        }),
        case(
            &[("filter[at][gt]", "2025-12-31T19:00:00.5-05:00")],
            move |r| dt(r, "2026-01-01T00:00:00.5Z") == Some(Greater),
        ),
        case(
            &[(
                "filter[at][in]",
                "2026-01-01T00:00:00Z,2026-06-30T14:00:00+02:00",
            )],
            move |r| {
                dt(r, "2026-01-01T00:00:00Z") == Some(Equal)
                    || dt(r, "2026-06-30T12:00:00Z") == Some(Equal)
            },
        ),
        case(
            &[
                ("filter[at][gte]", "2026-01-01T00:00:00Z"),
                ("filter[at][lt]", "2026-01-01T00:00:01Z"),
            ],
            move |r| {
                matches!(dt(r, "2026-01-01T00:00:00Z"), Some(Greater | Equal))
                    && dt(r, "2026-01-01T00:00:01Z") == Some(Less)
            },
        ),
        // enum
        case(&[("filter[level][eq]", "beta")], |r| {
            text(r, "level") == Some("beta")
        }),
        case(&[("filter[level][ne]", "beta")], |r| {
            text(r, "level") != Some("beta")
        }),
        case(&[("filter[level][in]", "alpha,gamma")], |r| {
            matches!(text(r, "level"), Some("alpha" | "gamma"))
        }),
        // tags: case-sensitive membership
        case(&[("filter[labels][contains]", "red")], |r| {
            tags(r, "labels").iter().any(|t| t == "red")
        }),
        case(&[("filter[labels][contains]", "Red")], |r| {
            tags(r, "labels").iter().any(|t| t == "Red")
        }),
        case(&[("filter[labels][contains]", "blue")], |r| {
            tags(r, "labels").iter().any(|t| t == "blue")
        }),
        case(&[("filter[labels][contains]", "re")], |r| {
            tags(r, "labels").iter().any(|t| t == "re")
        }),
        // built-ins
        case(&[("filter[status][eq]", "draft")], |r| {
            r["status"] == "draft"
        }),
        case(&[("filter[status]", "published")], |r| {
            r["status"] == "published"
        }),
        case(&[("filter[status][ne]", "draft")], |r| {
            r["status"] != "draft"
        }),
        case(&[("filter[status][in]", "draft,published")], |_| true),
        case(&[("filter[created_by][eq]", &mid)], {
            let mid = mid.clone();
            move |r| r["created_by"] == mid.as_str()
        }),
        case(&[("filter[created_by][ne]", &mid)], {
            let mid = mid.clone();
            move |r| r["created_by"] != mid.as_str()
        }),
        case(
            &[("filter[created_by][in]", &format!("{oid},{mid}"))],
            |_| true,
        ),
        case(&[("filter[updated_by][eq]", &mid)], {
            let mid = mid.clone();
            move |r| r["updated_by"] == mid.as_str()
        }),
        case(&[("filter[updated_by][ne]", &oid)], {
            let oid = oid.clone();
            move |r| r["updated_by"] != oid.as_str()
        }),
        case(&[("filter[created_at][gt]", &c10)], {
            let c = c10.clone();
            move |r| when(r, "created_at", &c) == Some(Greater)
        }),
        case(&[("filter[created_at][lte]", &c10)], {
            let c = c10.clone();
            move |r| matches!(when(r, "created_at", &c), Some(Less | Equal))
        }),
        case(&[("filter[created_at][eq]", &c10)], {
            let c = c10.clone();
            move |r| when(r, "created_at", &c) == Some(Equal)
        }),
        case(&[("filter[created_at][ne]", &c10)], {
            let c = c10.clone();
            move |r| when(r, "created_at", &c) != Some(Equal)
        }),
        case(
            &[
                ("filter[created_at][gte]", &c10),
                ("filter[created_at][lt]", &c15),
            ],
            {
                let (lo, hi) = (c10.clone(), c15.clone());
                move |r| {
                    matches!(when(r, "created_at", &lo), Some(Greater | Equal))
                        && when(r, "created_at", &hi) == Some(Less)
                }
            },
        ),
        case(&[("filter[updated_at][gte]", &u2)], {
            let u = u2.clone();
            move |r| matches!(when(r, "updated_at", &u), Some(Greater | Equal))
        }),
        case(&[("filter[updated_at][lt]", &u2)], {
            let u = u2.clone();
            move |r| when(r, "updated_at", &u) == Some(Less)
        }),
        case(&[("filter[id][eq]", &r5)], {
            let r5 = r5.clone();
            move |r| id(r) == r5
        }),
        case(&[("filter[id]", &r5)], {
            let r5 = r5.clone();
            move |r| id(r) == r5
        }),
        case(&[("filter[id][ne]", &r5)], {
            let r5 = r5.clone();
            move |r| id(r) != r5
        }),
        case(&[("filter[id][in]", &format!("{r1},{r7},{r24}"))], {
            let set = [r1.clone(), r7.clone(), r24.clone()];
            move |r| set.contains(&id(r))
        }),
        // relation
        case(&[("filter[owner][eq]", &p0)], {
            let p = p0.clone();
            move |r| text(r, "owner") == Some(p.as_str())
        }),
        case(&[("filter[owner][ne]", &p0)], {
            let p = p0.clone();
            move |r| text(r, "owner") != Some(p.as_str())
        }),
        case(&[("filter[owner][in]", &format!("{p1},{p2}"))], {
            let set = [p1.clone(), p2.clone()];
            move |r| text(r, "owner").is_some_and(|o| set.iter().any(|p| p == o))
        }),
        // several fields at once
        case(
            &[
                ("filter[qty][gte]", "0"),
                ("filter[done][ne]", "false"),
                ("filter[name][contains]", "a"),
            ],
            |r| {
                int(r, "qty").is_some_and(|v| v >= 0)
                    && boolean(r, "done") != Some(false)
                    && text(r, "name").is_some_and(|n| n.contains('a'))
            },
        ),
    ];
    // At most 100 values for `in`.
    let hundred: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    cases.push(case(&[("filter[qty][in]", &hundred.join(","))], |r| {
        int(r, "qty").is_some_and(|v| (0..100).contains(&v))
    }));
    cases
}

#[tokio::test]
async fn filters_per_type_match_the_reference() {
    for s in servers().await {
        let b = s.backend();
        let f = seed(&s, "filters").await;
        let cases = filter_cases(&f);
        let mut nonempty = 0;
        for c in &cases {
            let want = reference(&f.all, &*c.keep, None);
            nonempty += usize::from(!want.is_empty());
            let fields: Vec<&str> = c
                .params
                .iter()
                .filter_map(|(k, _)| k.strip_prefix("filter[").and_then(|k| k.split(']').next()))
                .collect();
            let what = format!("{b}: {}", query(&c.params));
            // One page (the default limit covers them all), and pages of 4.
            let (data, next) = page(&s, &f.owner, &f.ws, TASKS, &c.params).await;
            assert_records(&f.all, &data, &want, &shown(None, &fields), &what);
            assert_eq!(next, None, "{what}: one page");
            let got = walk(&s, &f.owner, &f.ws, TASKS, &c.params, 4).await;
            assert_records(
                &f.all,
                &got,
                &want,
                &shown(None, &fields),
                &format!("{what} (pages of 4)"),
            );
        }
        assert!(
            nonempty > cases.len() * 3 / 4,
            "{b}: most cases select something"
        );

        // Filters with sorts, across pages.
        for (pairs, sort, limit, keep) in [
            (
                vec![("filter[qty][gte]", "0")],
                "-price,name",
                2,
                Box::new(|r: &Value| int(r, "qty").is_some_and(|v| v >= 0))
                    as Box<dyn Fn(&Value) -> bool>,
            ),
            (
                vec![("filter[name][gt]", "a"), ("filter[done][ne]", "true")],
                "due",
                3,
                Box::new(|r: &Value| {
                    text(r, "name").is_some_and(|n| n > "a") && boolean(r, "done") != Some(true)
                }),
            ),
            (
                vec![("filter[status][eq]", "published")],
                "-at",
                4,
                Box::new(|r: &Value| r["status"] == "published"),
            ),
            (
                vec![
                    ("filter[price][lt]", "10"),
                    ("filter[at][gte]", "2026-01-01T00:00:00Z"),
                ],
                "at,-qty",
                3,
                Box::new(|r: &Value| {
                    dec(r, "price", "10") == Some(Ordering::Less)
                        && matches!(
                            when(r, "at", "2026-01-01T00:00:00Z"),
                            Some(Ordering::Greater | Ordering::Equal)
                        )
                }),
            ),
            (
                vec![("filter[labels][contains]", "red")],
                "-name",
                1,
                Box::new(|r: &Value| tags(r, "labels").iter().any(|t| t == "red")),
            ),
            (
                vec![("filter[level][ne]", "alpha")],
                "level,-done,price",
                2,
                Box::new(|r: &Value| text(r, "level") != Some("alpha")),
            ),
        ] {
            let mut params = q(&pairs);
            params.push(("sort".into(), sort.into()));
            let want = reference(&f.all, &*keep, Some(sort));
            assert!(!want.is_empty(), "{b}: {params:?} selects something");
            let got = walk(&s, &f.owner, &f.ws, TASKS, &params, limit).await;
            assert_records(
                &f.all,
                &got,
                &want,
                &shown(Some(sort), &[]),
                &format!("{b}: {} (pages of {limit})", query(&params)),
            );
        }
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Refusals: 422 naming the exact parameter, nothing changed, never a 500.

#[tokio::test]
async fn bad_parameters_get_422_naming_the_parameter_and_change_nothing() {
    for s in servers().await {
        let b = s.backend();
        let f = seed(&s, "refusals").await;
        let (o, ws) = (&f.owner, &f.ws);
        let head = audit_head(&s, ws).await;

        // Cursors of one sort are no cursors of another.
        let cursor_of = |params: Params| {
            let s = &s;
            async move {
                let mut p = params;
                p.push(("limit".into(), "3".into()));
                let (_, next) = page(s, o, ws, TASKS, &p).await;
                next.expect("a next page")
            }
        };
        let by_qty = cursor_of(q(&[("sort", "qty")])).await;
        let plain = cursor_of(q(&[])).await;
        let by_qty_desc = cursor_of(q(&[("sort", "-qty")])).await;
        // They work where they belong.
        for (sort, cursor) in [
            (Some("qty"), &by_qty),
            (None, &plain),
            (Some("-qty"), &by_qty_desc),
        ] {
            let mut p = q(&[("limit", "3"), ("cursor", cursor)]);
            if let Some(sort) = sort {
                p.push(("sort".into(), sort.into()));
            }
            let (data, _) = page(&s, o, ws, TASKS, &p).await;
            let want = reference(&f.all, &|_| true, sort);
            assert_eq!(
                ids(&data),
                want[3..6],
                "{b}: {} is the second page",
                query(&p)
            );
        }

        let hundred_one: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let hundred_one = hundred_one.join(",");
        let p0 = f.people[0].clone();
        let rid = id(&f.all[0]);
        let bad: Vec<(Params, Vec<&str>)> = vec![
            // limit
            (q(&[("limit", "0")]), vec!["limit"]),
            (q(&[("limit", "201")]), vec!["limit"]),
            (q(&[("limit", "-1")]), vec!["limit"]),
            (q(&[("limit", "abc")]), vec!["limit"]),
            (q(&[("limit", "")]), vec!["limit"]),
            // cursor
            (q(&[("cursor", "garbage")]), vec!["cursor"]),
            (q(&[("sort", "qty"), ("cursor", "garbage")]), vec!["cursor"]),
            (q(&[("sort", "-qty"), ("cursor", &by_qty)]), vec!["cursor"]),
            (q(&[("cursor", &by_qty)]), vec!["cursor"]),
            (
                q(&[("sort", "qty,name"), ("cursor", &by_qty)]),
                vec!["cursor"],
            ),
            (q(&[("sort", "price"), ("cursor", &by_qty)]), vec!["cursor"]),
            (q(&[("sort", "qty"), ("cursor", &plain)]), vec!["cursor"]),
            (
                q(&[("sort", "qty"), ("cursor", &by_qty_desc)]),
                vec!["cursor"],
            ),
            // unknown parameters
            (q(&[("foo", "1")]), vec!["foo"]),
            (q(&[("filter", "1")]), vec!["filter"]),
            (q(&[("sort", "qty"), ("order", "desc")]), vec!["order"]),
            // filters: unknown fields and operators
            (q(&[("filter[nope][eq]", "1")]), vec!["filter[nope][eq]"]),
            (q(&[("filter[nope]", "1")]), vec!["filter[nope]"]),
            (
                q(&[("filter[qty][bogus]", "1")]),
                vec!["filter[qty][bogus]"],
            ),
            // values that are not of the field's type
            (q(&[("filter[qty][gt]", "abc")]), vec!["filter[qty][gt]"]),
            (q(&[("filter[qty][gt]", "")]), vec!["filter[qty][gt]"]),
            (q(&[("filter[qty][in]", "1,,3")]), vec!["filter[qty][in]"]),
            (q(&[("filter[qty][eq]", "1.5")]), vec!["filter[qty][eq]"]),
            (
                q(&[("filter[qty][lt]", "9223372036854775808")]),
                vec!["filter[qty][lt]"],
            ),
            (q(&[("filter[qty][in]", "1,x,3")]), vec!["filter[qty][in]"]),
            (
                q(&[("filter[price][gt]", "1e3")]),
                vec!["filter[price][gt]"],
            ),
            (
                q(&[("filter[price][eq]", "abc")]),
                vec!["filter[price][eq]"],
            ),
            (q(&[("filter[done][eq]", "yes")]), vec!["filter[done][eq]"]),
            (q(&[("filter[done]", "1")]), vec!["filter[done]"]),
            (
                q(&[("filter[due][eq]", "2024-02-30")]),
                vec!["filter[due][eq]"],
            ),
            (
                q(&[("filter[due][gt]", "yesterday")]),
                vec!["filter[due][gt]"],
            ),
            (
                q(&[("filter[at][gt]", "2026-01-01")]),
                vec!["filter[at][gt]"],
            ),
            (
                q(&[("filter[at][eq]", "2026-01-01T00:00:00")]),
                vec!["filter[at][eq]"],
            ),
            (
                q(&[("filter[level][eq]", "zeta")]),
                vec!["filter[level][eq]"],
            ),
            (
                q(&[("filter[level][in]", "alpha,zeta")]),
                vec!["filter[level][in]"],
            ),
            (
                q(&[("filter[owner][eq]", "nope")]),
                vec!["filter[owner][eq]"],
            ),
            (
                q(&[("filter[status][eq]", "archived")]),
                vec!["filter[status][eq]"],
            ),
            (q(&[("filter[id][eq]", "nope")]), vec!["filter[id][eq]"]),
            (
                q(&[("filter[created_at][gt]", "yesterday")]),
                vec!["filter[created_at][gt]"],
            ),
            (
                q(&[("filter[qty][in]", &hundred_one)]),
                vec!["filter[qty][in]"],
            ),
            // operators the type does not have
            (
                q(&[("filter[qty][contains]", "1")]),
                vec!["filter[qty][contains]"],
            ),
            (
                q(&[("filter[price][contains]", "1")]),
                vec!["filter[price][contains]"],
            ),
            (q(&[("filter[done][lt]", "true")]), vec!["filter[done][lt]"]),
            (
                q(&[("filter[done][in]", "true,false")]),
                vec!["filter[done][in]"],
            ),
            (
                q(&[("filter[due][contains]", "2024")]),
                vec!["filter[due][contains]"],
            ),
            (
                q(&[("filter[at][contains]", "2026")]),
                vec!["filter[at][contains]"],
            ),
            (
                q(&[("filter[level][lt]", "beta")]),
                vec!["filter[level][lt]"],
            ),
            (
                q(&[("filter[level][contains]", "a")]),
                vec!["filter[level][contains]"],
            ),
            (q(&[("filter[owner][gt]", &p0)]), vec!["filter[owner][gt]"]),
            (
                q(&[("filter[labels][eq]", "red")]),
                vec!["filter[labels][eq]"],
            ),
            (q(&[("filter[labels]", "red")]), vec!["filter[labels]"]),
            (
                q(&[("filter[labels][in]", "red")]),
                vec!["filter[labels][in]"],
            ),
            (
                q(&[("filter[status][lt]", "draft")]),
                vec!["filter[status][lt]"],
            ),
            (q(&[("filter[id][gt]", &rid)]), vec!["filter[id][gt]"]),
            (
                q(&[("filter[created_at][in]", "2026-01-01T00:00:00Z")]),
                vec!["filter[created_at][in]"],
            ),
            (
                q(&[("filter[created_at][contains]", "2026")]),
                vec!["filter[created_at][contains]"],
            ),
            (
                q(&[("filter[created_by][gt]", &f.owner_id)]),
                vec!["filter[created_by][gt]"],
            ),
            // fields that are not filterable
            (q(&[("filter[meta][eq]", "1")]), vec!["filter[meta][eq]"]),
            (
                q(&[("filter[meta][contains]", "i")]),
                vec!["filter[meta][contains]"],
            ),
            (
                q(&[("filter[receipt][eq]", "x")]),
                vec!["filter[receipt][eq]"],
            ),
            // sort
            (q(&[("sort", "nope")]), vec!["sort"]),
            (q(&[("sort", "-nope")]), vec!["sort"]),
            (q(&[("sort", "meta")]), vec!["sort"]),
            (q(&[("sort", "labels")]), vec!["sort"]),
            (q(&[("sort", "-receipt")]), vec!["sort"]),
            (q(&[("sort", "qty,labels")]), vec!["sort"]),
            (q(&[("sort", "name,qty,price,due")]), vec!["sort"]),
            // fields
            (q(&[("fields", "nope")]), vec!["fields"]),
            (q(&[("fields", "name,nope")]), vec!["fields"]),
            // several at once: each named (the parameters' syntax, then their meaning)
            (
                q(&[("limit", "0"), ("foo", "1"), ("filter", "x")]),
                vec!["filter", "foo", "limit"],
            ),
            (
                q(&[
                    ("sort", "nope"),
                    ("filter[qty][gt]", "abc"),
                    ("filter[done][lt]", "true"),
                    ("fields", "name,nope"),
                ]),
                vec!["fields", "filter[done][lt]", "filter[qty][gt]", "sort"],
            ),
        ];
        for (params, names) in &bad {
            let (path, r) = list(&s, o, ws, TASKS, params).await;
            assert_params(
                &r,
                422,
                "validation_failed",
                names,
                &format!("{b}: GET {path}"),
            );
        }
        // Accepted at the edges.
        let hundred: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        for params in [
            q(&[("limit", "1")]),
            q(&[("limit", "200")]),
            q(&[("sort", "name,qty,-price")]),
            q(&[("filter[qty][in]", &hundred.join(","))]),
            q(&[("fields", "meta,labels")]),
        ] {
            let (path, r) = list(&s, o, ws, TASKS, &params).await;
            assert_status(&r, 200, &format!("{b}: GET {path}"));
        }
        assert_eq!(audit_head(&s, ws).await, head, "{b}: reads write nothing");
        assert_eq!(
            walk(&s, o, ws, TASKS, &[], 200).await,
            f.all,
            "{b}: nothing changed"
        );
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Encrypted fields: no filter, no sort (422); projection works.

#[tokio::test]
async fn encrypted_fields_cannot_be_filtered_or_sorted() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("vault@example.com").await;
        let ws = id(&s.workspace(&o, "Vault", "vault").await);
        collection(
            &s,
            &o,
            &ws,
            "patients",
            json!([
                {"name": "name", "type": "text"},
                {"name": "ssn", "type": "text", "encrypted": true},
                {"name": "pay", "type": "decimal", "encrypted": true},
            ]),
        )
        .await;
        let secrets = ["SSN-CANARY-111", "SSN-CANARY-222", "SSN-CANARY-333"];
        for (i, ssn) in secrets.iter().enumerate() {
            create(
                &s,
                &o,
                &ws,
                "patients",
                json!({"name": format!("p{}", 3 - i), "ssn": ssn, "pay": format!("{}000.50", i + 1)}),
            )
            .await;
        }
        create(&s, &o, &ws, "patients", json!({"name": "p0"})).await;
        let all = walk(&s, &o, &ws, "patients", &[], 200).await;
        assert_eq!(all.len(), 4, "{b}");
        let head = audit_head(&s, &ws).await;

        for (params, parameter) in [
            (
                q(&[("filter[ssn][eq]", "SSN-CANARY-111")]),
                "filter[ssn][eq]",
            ),
            (q(&[("filter[ssn]", "SSN-CANARY-111")]), "filter[ssn]"),
            (q(&[("filter[ssn][ne]", "x")]), "filter[ssn][ne]"),
            (
                q(&[("filter[ssn][contains]", "CANARY")]),
                "filter[ssn][contains]",
            ),
            (q(&[("filter[ssn][in]", "a,b")]), "filter[ssn][in]"),
            (q(&[("filter[pay][gt]", "1")]), "filter[pay][gt]"),
            (q(&[("filter[pay][eq]", "1000.50")]), "filter[pay][eq]"),
            (q(&[("sort", "ssn")]), "sort"),
            (q(&[("sort", "-pay")]), "sort"),
            (q(&[("sort", "name,ssn")]), "sort"),
            (q(&[("filter[name][eq]", "p1"), ("sort", "-ssn")]), "sort"),
        ] {
            let (path, r) = list(&s, &o, &ws, "patients", &params).await;
            let what = format!("{b}: GET {path}");
            assert_params(&r, 422, "validation_failed", &[parameter], &what);
            assert!(
                message_for(&r, parameter).contains("encrypted"),
                "{what}: the message says why: {}",
                r.text
            );
            for secret in secrets {
                assert!(!r.text.contains(secret), "{what}");
            }
        }
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: nothing written");

        // Projection of encrypted fields works for whoever may read them (owner, read key).
        let (_, read_key) = create_key(&s, &o, &ws, &["read"]).await;
        for (who, token) in [("owner", &o), ("read key", &read_key)] {
            for (fields, extra, limit) in [
                (vec!["ssn"], vec![], 200),
                (vec!["name", "pay"], vec![("sort", "name")], 1),
                (vec!["ssn", "pay"], vec![("filter[name][ne]", "p2")], 2),
            ] {
                let joined = fields.join(",");
                let mut params = q(&extra);
                params.push(("fields".into(), joined.clone()));
                let got = walk(&s, token, &ws, "patients", &params, limit).await;
                let sort = extra.iter().find(|(k, _)| *k == "sort").map(|(_, v)| *v);
                let want = reference(
                    &all,
                    &|r: &Value| {
                        !extra.contains(&("filter[name][ne]", "p2"))
                            || text(r, "name") != Some("p2")
                    },
                    sort,
                );
                let what = format!("{b}: {who}: {}", query(&params));
                assert_eq!(ids(&got), want, "{what}");
                for rec in &got {
                    let full = all.iter().find(|r| id(r) == id(rec)).unwrap();
                    assert_eq!(*rec, project(full, &fields), "{what}");
                }
            }
        }
        let (data, _) = page(&s, &o, &ws, "patients", &q(&[("fields", "ssn")])).await;
        let shown: BTreeSet<&str> = data.iter().filter_map(|r| text(r, "ssn")).collect();
        assert_eq!(shown, secrets.into_iter().collect(), "{b}: decrypted");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Field grants: what may not be read may not be filtered, sorted or projected either.

#[tokio::test]
async fn unreadable_fields_cannot_be_filtered_sorted_or_projected() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("boss@example.com").await;
        let ws = id(&s.workspace(&o, "Grants", "grants").await);
        let (_, admin, _) = s.user(ADMIN).await;
        enable_modules(&s, &admin, &ws, &["advanced_rbac"]).await;
        let (_, narrow, narrow_member) = member(&s, &o, &ws, "narrow@example.com", "member").await;
        give_custom_role(&s, &o, &ws, &narrow_member, json!({"name": "Clerk", "base_role": "member",
                "permissions": ["workspace.read", "records.read", "records.read_draft", "records.write"],
                "fields": [
                    {"collection": "staff", "field": "title", "read": true, "write": true},
                    {"collection": "staff", "field": "note", "read": true, "write": false},
                    {"collection": "staff", "field": "rank", "read": true, "write": false},
                    {"collection": "staff", "field": "salary", "read": false, "write": false},
                ]})).await;
        collection(
            &s,
            &o,
            &ws,
            "staff",
            json!([
                {"name": "title", "type": "text"},
                {"name": "note", "type": "text"},
                {"name": "rank", "type": "integer"},
                {"name": "salary", "type": "decimal"},
                // No grant at all: unreadable too.
                {"name": "email", "type": "text"},
            ]),
        )
        .await;
        let salaries = ["5001.17", "5002.29", "5003.31", "5004.43", "5005.59"];
        let emails = [
            "CANARY-MAIL-1@x.org",
            "CANARY-MAIL-2@x.org",
            "CANARY-MAIL-3@x.org",
            "CANARY-MAIL-4@x.org",
            "CANARY-MAIL-5@x.org",
        ];
        let titles = ["Engineer", "Clerk", "Engineer II", "Manager", "Intern"];
        for i in 0..5 {
            let mut body = json!({"title": titles[i], "rank": (i as i64 * 7) % 5,
                "salary": salaries[i], "email": emails[i]});
            if i % 2 == 0 {
                body["note"] = json!(format!("note {i}"));
            }
            create(&s, &o, &ws, "staff", body).await;
        }
        let all = walk(&s, &o, &ws, "staff", &[], 200).await;
        let visible: Vec<Value> = all
            .iter()
            .map(|r| project(r, &["title", "note", "rank"]))
            .collect();
        let head = audit_head(&s, &ws).await;
        let leaks = |r: &Reply, what: &str| {
            for secret in salaries.iter().chain(emails.iter()) {
                assert!(
                    !r.text.contains(secret),
                    "{what}: {secret} leaked: {}",
                    r.text
                );
            }
        };

        for (params, names) in [
            (
                q(&[("filter[salary][eq]", "5001.17")]),
                vec!["filter[salary][eq]"],
            ),
            (
                q(&[("filter[salary][gt]", "0")]),
                vec!["filter[salary][gt]"],
            ),
            (q(&[("filter[salary]", "5001.17")]), vec!["filter[salary]"]),
            (
                q(&[("filter[email][contains]", "CANARY")]),
                vec!["filter[email][contains]"],
            ),
            (
                q(&[("filter[email]", "CANARY-MAIL-1@x.org")]),
                vec!["filter[email]"],
            ),
            (q(&[("sort", "salary")]), vec!["sort"]),
            (q(&[("sort", "title,-salary")]), vec!["sort"]),
            (q(&[("sort", "-email")]), vec!["sort"]),
            (q(&[("fields", "salary")]), vec!["fields"]),
            (q(&[("fields", "title,email")]), vec!["fields"]),
            (
                q(&[("filter[title][ne]", "x"), ("sort", "salary")]),
                vec!["sort"],
            ),
            (
                q(&[("filter[salary][gt]", "0"), ("sort", "email")]),
                vec!["filter[salary][gt]", "sort"],
            ),
        ] {
            let (path, r) = list(&s, &narrow, &ws, "staff", &params).await;
            let what = format!("{b}: narrow GET {path}");
            assert_params(&r, 403, "field_not_readable", &names, &what);
            leaks(&r, &what);
        }
        assert_eq!(audit_head(&s, &ws).await, head, "{b}: nothing written");

        // The readable fields work, and the unreadable ones never show.
        for (params, keep, sort, fields, limit) in [
            (
                q(&[]),
                Box::new(|_: &Value| true) as Box<dyn Fn(&Value) -> bool>,
                None,
                None,
                2,
            ),
            (
                q(&[("filter[title][contains]", "Eng"), ("sort", "-note")]),
                Box::new(|r: &Value| text(r, "title").is_some_and(|t| t.contains("Eng"))),
                Some("-note"),
                None,
                1,
            ),
            (
                q(&[("sort", "rank,-title"), ("fields", "title")]),
                Box::new(|_: &Value| true),
                Some("rank,-title"),
                Some(vec!["title"]),
                2,
            ),
            (
                q(&[("filter[rank][gte]", "2"), ("fields", "title,note")]),
                Box::new(|r: &Value| int(r, "rank").is_some_and(|v| v >= 2)),
                None,
                Some(vec!["title", "note"]),
                3,
            ),
            (
                q(&[("filter[note][ne]", "note 2"), ("sort", "note")]),
                Box::new(|r: &Value| text(r, "note") != Some("note 2")),
                Some("note"),
                None,
                2,
            ),
        ] {
            let what = format!("{b}: narrow {}", query(&params));
            let want = reference(&visible, &*keep, sort);
            let mut full = params.clone();
            full.push(("limit".into(), limit.to_string()));
            let (path, r) = list(&s, &narrow, &ws, "staff", &full).await;
            assert_status(&r, 200, &format!("{what}: GET {path}"));
            leaks(&r, &what);
            let got = walk(&s, &narrow, &ws, "staff", &params, limit).await;
            assert_eq!(ids(&got), want, "{what}");
            for rec in &got {
                let seen = visible.iter().find(|r| id(r) == id(rec)).unwrap();
                let expected = match &fields {
                    Some(fields) => project(seen, fields),
                    None => seen.clone(),
                };
                assert_eq!(*rec, expected, "{what}");
                assert!(
                    rec.get("salary").is_none() && rec.get("email").is_none(),
                    "{what}"
                );
            }
        }
        // The owner may use them all.
        let got = walk(
            &s,
            &o,
            &ws,
            "staff",
            &q(&[("filter[salary][gt]", "5002.29"), ("sort", "-email")]),
            2,
        )
        .await;
        let want = reference(
            &all,
            &|r| dec(r, "salary", "5002.29") == Some(Ordering::Greater),
            Some("-email"),
        );
        assert_eq!(ids(&got), want, "{b}: owner filters and sorts on them");
        assert_eq!(got.len(), 3, "{b}");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Projection.

#[tokio::test]
async fn projection_returns_only_the_asked_fields_plus_meta() {
    for s in servers().await {
        let b = s.backend();
        let f = seed(&s, "projection").await;
        for (fields, extra, limit) in [
            (vec!["name"], vec![], 4),
            (vec!["name", "qty", "labels"], vec![("sort", "-qty")], 3),
            (vec!["meta", "labels"], vec![], 5),
            (vec!["note"], vec![("filter[qty][gt]", "5")], 2),
            (
                vec!["price", "at", "done", "due", "level", "owner"],
                vec![("sort", "at")],
                7,
            ),
            (vec!["name"], vec![("filter[status][eq]", "draft")], 1),
            (
                vec!["qty", "name"],
                vec![("sort", "name"), ("filter[done]", "true")],
                2,
            ),
        ] {
            let mut params = q(&extra);
            params.push(("fields".into(), fields.join(",")));
            let what = format!("{b}: {}", query(&params));
            let sort = extra.iter().find(|(k, _)| *k == "sort").map(|(_, v)| *v);
            let keep = |r: &Value| {
                extra.iter().all(|(k, v)| match *k {
                    "filter[qty][gt]" => int(r, "qty").is_some_and(|q| q > v.parse().unwrap()),
                    "filter[status][eq]" => r["status"] == *v,
                    "filter[done]" => boolean(r, "done") == Some(*v == "true"),
                    _ => true,
                })
            };
            let want = reference(&f.all, &keep, sort);
            assert!(!want.is_empty(), "{what}: selects something");
            let got = walk(&s, &f.owner, &f.ws, TASKS, &params, limit).await;
            assert_eq!(ids(&got), want, "{what}");
            for rec in &got {
                for attr in META {
                    assert!(
                        rec.get(attr).is_some(),
                        "{what}: {attr} is always there: {rec}"
                    );
                }
                let full = f.all.iter().find(|r| id(r) == id(rec)).unwrap();
                assert_eq!(*rec, project(full, &fields), "{what}");
            }
        }
        // Without `fields`, everything; one record's GET is unchanged.
        let (data, _) = page(&s, &f.owner, &f.ws, TASKS, &q(&[("fields", "name")])).await;
        assert!(data.iter().all(|r| r.get("qty").is_none()), "{b}");
        let one = &f.all[0];
        let r = s.get(&record(&f.ws, TASKS, &id(one)), Some(&f.owner)).await;
        assert_status(&r, 200, b);
        assert_eq!(r.body, *one, "{b}: GET one record");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Drafts stay hidden without `records.read_draft`, whatever the filter says.

#[tokio::test]
async fn drafts_with_status_filter() {
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("editor@example.com").await;
        let ws = id(&s.workspace(&o, "Drafts", "drafts").await);
        collection(
            &s,
            &o,
            &ws,
            "posts",
            json!([{"name": "title", "type": "text"}, {"name": "rank", "type": "integer"}]),
        )
        .await;
        for (i, status) in [
            "draft",
            "published",
            "draft",
            "published",
            "draft",
            "published",
        ]
        .into_iter()
        .enumerate()
        {
            create(
                &s,
                &o,
                &ws,
                "posts",
                json!({"title": format!("{status} {i}"), "rank": (i * 5) % 4, "status": status}),
            )
            .await;
        }
        let all = walk(&s, &o, &ws, "posts", &[], 200).await;
        assert_eq!(all.len(), 6, "{b}");
        let drafts: Vec<Value> = all
            .iter()
            .filter(|r| r["status"] == "draft")
            .cloned()
            .collect();
        let draft_ids = ids(&drafts);
        let (_, read_key) = create_key(&s, &o, &ws, &["read"]).await;
        let (_, draft_key) = create_key(&s, &o, &ws, &["read", "read_draft"]).await;

        type Keep = fn(&Value) -> bool;
        let published: Keep = |r| r["status"] == "published";
        let draft: Keep = |r| r["status"] == "draft";
        let any: Keep = |_| true;
        let none: Keep = |_| false;
        let cases: Vec<(Params, Option<&str>, Keep, Keep)> = vec![
            // (query, sort, what a read key sees, what a read_draft key sees)
            (q(&[("filter[status][eq]", "draft")]), None, none, draft),
            (q(&[("filter[status]", "draft")]), None, none, draft),
            (
                q(&[("filter[status][eq]", "published")]),
                None,
                published,
                published,
            ),
            (q(&[("filter[status][ne]", "published")]), None, none, draft),
            (
                q(&[("filter[status][ne]", "draft")]),
                None,
                published,
                published,
            ),
            (
                q(&[("filter[status][in]", "draft,published")]),
                None,
                published,
                any,
            ),
            (q(&[("filter[status][in]", "draft")]), None, none, draft),
            (
                q(&[("filter[status][eq]", "draft"), ("sort", "-rank")]),
                Some("-rank"),
                none,
                draft,
            ),
            (
                q(&[("sort", "-rank,title")]),
                Some("-rank,title"),
                published,
                any,
            ),
            (
                q(&[("filter[title][contains]", "draft")]),
                None,
                none,
                draft,
            ),
            (q(&[("fields", "title")]), None, published, any),
        ];
        for (params, sort, for_read, for_draft) in &cases {
            for (who, token, keep) in [
                ("read key", &read_key, for_read),
                ("read_draft key", &draft_key, for_draft),
                ("owner", &o, for_draft),
            ] {
                let what = format!("{b}: {who}: {}", query(params));
                let want = reference(&all, keep, *sort);
                let got = walk(&s, token, &ws, "posts", params, 2).await;
                assert_eq!(ids(&got), want, "{what}");
                let (data, next) = page(&s, token, &ws, "posts", params).await;
                assert_eq!(ids(&data), want, "{what}: one page");
                assert_eq!(next, None, "{what}: nothing more");
            }
        }
        // A draft's id does not find it either.
        for rid in &draft_ids {
            let (data, _) = page(&s, &read_key, &ws, "posts", &q(&[("filter[id][eq]", rid)])).await;
            assert!(data.is_empty(), "{b}: read key, filter[id][eq]={rid}");
            let (data, _) =
                page(&s, &draft_key, &ws, "posts", &q(&[("filter[id][eq]", rid)])).await;
            assert_eq!(ids(&data), std::slice::from_ref(rid), "{b}: read_draft key");
        }
        let (data, _) = page(
            &s,
            &read_key,
            &ws,
            "posts",
            &q(&[("filter[id][in]", &draft_ids.join(","))]),
        )
        .await;
        assert!(data.is_empty(), "{b}: read key, drafts by id");
        s.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Isolation: queries and cursors never reach another workspace.

#[tokio::test]
async fn queries_and_cursors_do_not_cross_workspaces() {
    for s in servers().await {
        let b = s.backend();
        let (alice_id, alice, _) = s.user("alice@example.com").await;
        let (_, bob, _) = s.user("bob@example.com").await;
        let a = id(&s.workspace(&alice, "Alpha", "alpha").await);
        let bw = id(&s.workspace(&bob, "Beta", "beta").await);
        for (token, ws) in [(&alice, &a), (&bob, &bw)] {
            collection(
                &s,
                token,
                ws,
                "items",
                json!([
                    {"name": "name", "type": "text"},
                    {"name": "qty", "type": "integer"},
                    {"name": "labels", "type": "tags"},
                    {"name": "link", "type": "relation", "options": {"collection": "items"}},
                ]),
            )
            .await;
        }
        let mut a_ids = Vec::new();
        for i in 0..6 {
            let rec = create(
                &s,
                &alice,
                &a,
                "items",
                json!({"name": format!("alpha-{i}"), "qty": 100 + i, "labels": ["a-only"]}),
            )
            .await;
            a_ids.push(id(&rec));
        }
        let mut b_ids = Vec::new();
        for i in 0..4 {
            let rec = create(
                &s,
                &bob,
                &bw,
                "items",
                json!({"name": format!("beta-{i}"), "qty": i, "labels": ["b"]}),
            )
            .await;
            b_ids.push(id(&rec));
        }
        let b_all = walk(&s, &bob, &bw, "items", &[], 200).await;
        assert_eq!(ids(&b_all), b_ids, "{b}: B's records");

        let a_list = a_ids.join(",");
        let empty: Vec<Params> = vec![
            q(&[("filter[name][contains]", "alpha")]),
            q(&[("filter[name][eq]", "alpha-1")]),
            q(&[("filter[qty][gte]", "100")]),
            q(&[("filter[labels][contains]", "a-only")]),
            q(&[("filter[id][eq]", &a_ids[0])]),
            q(&[("filter[id][in]", &a_list)]),
            q(&[("filter[created_by][eq]", &alice_id)]),
            q(&[("filter[updated_by][in]", &alice_id)]),
            q(&[("filter[name][lt]", "b"), ("sort", "-qty")]),
        ];
        for params in &empty {
            let what = format!("{b}: bob in B: {}", query(params));
            let got = walk(&s, &bob, &bw, "items", params, 2).await;
            assert!(got.is_empty(), "{what}: {:?}", ids(&got));
        }
        // Relations to A's records: nothing (or refused by name), never A's data.
        let (path, r) = list(
            &s,
            &bob,
            &bw,
            "items",
            &q(&[("filter[link][eq]", &a_ids[0])]),
        )
        .await;
        match r.status.as_u16() {
            200 => assert_eq!(r.body["data"], json!([]), "{b}: GET {path}"),
            _ => assert_params(
                &r,
                422,
                "validation_failed",
                &["filter[link][eq]"],
                &format!("{b}: GET {path}"),
            ),
        }
        assert!(!r.text.contains("alpha-"), "{b}: GET {path}");
        // What matches in B is B's only.
        for (params, want) in [
            (q(&[("filter[id][ne]", &a_ids[0])]), b_ids.clone()),
            (q(&[("filter[name][ne]", "alpha-1")]), b_ids.clone()),
            (
                q(&[("sort", "-qty")]),
                b_ids.iter().rev().cloned().collect::<Vec<_>>(),
            ),
        ] {
            let got = walk(&s, &bob, &bw, "items", &params, 3).await;
            assert_eq!(ids(&got), want, "{b}: bob in B: {}", query(&params));
        }

        // A's cursors in B: nothing of A's (an empty or B-only page, or a refused cursor).
        let mut cursors = Vec::new();
        for params in [q(&[]), q(&[("sort", "name")]), q(&[("sort", "-qty")])] {
            let mut p = params.clone();
            p.push(("limit".into(), "2".into()));
            let (data, next) = page(&s, &alice, &a, "items", &p).await;
            assert_eq!(data.len(), 2, "{b}");
            cursors.push((params, next.expect("A has more pages")));
        }
        for (params, cursor) in &cursors {
            let mut p = params.clone();
            p.push(("limit".into(), "200".into()));
            p.push(("cursor".into(), cursor.clone()));
            let (path, r) = list(&s, &bob, &bw, "items", &p).await;
            let what = format!("{b}: bob in B with A's cursor: GET {path}");
            match r.status.as_u16() {
                200 => {
                    let got = ids(r.body["data"].as_array().unwrap());
                    assert!(got.iter().all(|i| b_ids.contains(i)), "{what}: {}", r.text);
                }
                _ => assert_params(&r, 422, "validation_failed", &["cursor"], &what),
            }
            assert!(!r.text.contains("alpha-"), "{what}: {}", r.text);
        }

        // Nor do they reach another collection of the same workspace.
        collection(
            &s,
            &alice,
            &a,
            "others",
            json!([{"name": "name", "type": "text"}, {"name": "qty", "type": "integer"}]),
        )
        .await;
        let mut other_ids = Vec::new();
        for i in 0..3 {
            let rec = create(
                &s,
                &alice,
                &a,
                "others",
                json!({"name": format!("other-{i}"), "qty": i}),
            )
            .await;
            other_ids.push(id(&rec));
        }
        for (params, cursor) in &cursors {
            let mut p = params.clone();
            p.push(("limit".into(), "200".into()));
            p.push(("cursor".into(), cursor.clone()));
            let (path, r) = list(&s, &alice, &a, "others", &p).await;
            let what = format!("{b}: items' cursor in others: GET {path}");
            match r.status.as_u16() {
                200 => {
                    let got = ids(r.body["data"].as_array().unwrap());
                    assert!(
                        got.iter().all(|i| other_ids.contains(i)),
                        "{what}: {}",
                        r.text
                    );
                }
                _ => assert_params(&r, 422, "validation_failed", &["cursor"], &what),
            }
            assert!(!r.text.contains("alpha-"), "{what}: {}", r.text);
        }

        // Alice's token and key do not reach B's records at all.
        let (_, a_key) = create_key(&s, &alice, &a, &["read"]).await;
        for token in [&alice, &a_key] {
            let (path, r) = list(
                &s,
                token,
                &bw,
                "items",
                &q(&[("filter[name][contains]", "beta")]),
            )
            .await;
            assert!(
                matches!(r.status.as_u16(), 401 | 403 | 404),
                "{b}: outsider GET {path}: {}",
                r.text
            );
            assert!(!r.text.contains("beta-"), "{b}: {}", r.text);
        }
        s.stop().await;
    }
}

/// A cursor carries the last record's sort values, which may be personal: it is sealed, so
/// neither the value nor any encoding of it shows, and a cursor changed by one character is
/// refused like any other bad cursor.
#[tokio::test]
async fn cursors_are_sealed_and_tamper_evident() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for s in servers().await {
        let b = s.backend();
        let (_, o, _) = s.user("sealed@example.com").await;
        let ws = id(&s.workspace(&o, "Sealed", "sealed").await);
        collection(
            &s,
            &o,
            &ws,
            "people",
            json!([{"name": "email", "type": "text", "pii": true}]),
        )
        .await;
        for email in ["ada.lovelace@example.com", "grace.hopper@example.com"] {
            create(&s, &o, &ws, "people", json!({"email": email})).await;
        }
        let params = q(&[("sort", "email"), ("limit", "1")]);
        let (first, cursor) = page(&s, &o, &ws, "people", &params).await;
        assert_eq!(first[0]["email"], "ada.lovelace@example.com", "{b}");
        let cursor = cursor.expect("a second page");
        let decoded = URL_SAFE_NO_PAD.decode(&cursor).unwrap_or_default();
        for needle in ["ada.lovelace", "sort", "email"] {
            assert!(!cursor.contains(needle), "{b}: {needle} in the cursor");
            assert!(
                !common::contains(&decoded, needle),
                "{b}: {needle} in the decoded cursor"
            );
        }
        let mut next = params.clone();
        next.push(("cursor".into(), cursor.clone()));
        let (second, _) = page(&s, &o, &ws, "people", &next).await;
        assert_eq!(second[0]["email"], "grace.hopper@example.com", "{b}");
        let mut chars: Vec<char> = cursor.chars().collect();
        let last = chars.len() - 5;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let mut forged = params.clone();
        forged.push(("cursor".into(), chars.into_iter().collect()));
        let (_, r) = list(&s, &o, &ws, "people", &forged).await;
        r.assert_problem(422, "validation_failed", &format!("{b}: a changed cursor"));
        assert_eq!(r.body["errors"][0]["parameter"], "cursor", "{b}");
    }
}
