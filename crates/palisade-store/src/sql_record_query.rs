//! The SQL of a record list query (`RecordQuery`): filters, sort and the keyset cursor, in each
//! backend's dialect. Pure text building, tested without a database; values are always bound
//! parameters, and field names (already `^[a-z][a-z0-9_]*$` by schema rule) are checked again
//! before they are written into the statement.
//!
//! Both backends give the same total order: text by code point (`COLLATE "C"` on PostgreSQL,
//! SQLite's binary default), decimals numerically (`numeric`; SQLite's `palisade_decimal`
//! collation), datetimes as instants (UTC strings without the `Z`, whose fractions carry no
//! trailing zeros, so string order is time order), missing values last ascending and first
//! descending, ties by id.

use palisade_core::collections::query::{
    Column, FilterOp, Key, KeyKind, KeySource, KeyValue, RecordQuery,
};
use palisade_core::error::StoreError;

/// The name of the SQLite collation that orders decimal strings numerically.
pub(crate) const DECIMAL_COLLATION: &str = "palisade_decimal";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound parameter, in order: `$1` workspace, `$2` collection, `$3` drafts, then the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// A statement and its parameters; each parameter appears once, in order.
#[derive(Debug)]
pub(crate) struct Built {
    pub sql: String,
    pub binds: Vec<Bind>,
}

struct Builder {
    dialect: Dialect,
    binds: Vec<Bind>,
}

impl Builder {
    /// A new parameter for `value`, written as the right-hand side of a comparison with `key`.
    fn param(&mut self, key: &Key, value: &KeyValue) -> String {
        self.binds.push(match value {
            KeyValue::Text(s) => Bind::Text(s.clone()),
            KeyValue::Integer(n) => Bind::Int(*n),
            KeyValue::Boolean(b) => Bind::Bool(*b),
        });
        let p = format!("${}", self.binds.len() + 3);
        match (self.dialect, key.kind, &key.source) {
            (Dialect::Postgres, KeyKind::Decimal, _) => format!("{p}::numeric"),
            (Dialect::Postgres, KeyKind::Datetime, KeySource::Column(_)) => {
                format!("{p}::timestamptz")
            }
            (_, KeyKind::Datetime, _) => format!("rtrim({p}, 'Z')"),
            _ => p,
        }
    }

    fn param_text(&mut self, text: &str) -> String {
        self.binds.push(Bind::Text(text.to_owned()));
        format!("${}", self.binds.len() + 3)
    }
}

fn checked_name(name: &str) -> Result<&str, StoreError> {
    let mut bytes = name.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Invalid(format!("field name {name:?}")))
    }
}

/// A column's SQL name: the name lists use for it (`Column::as_str`) is the column's own.
fn column_sql(column: Column) -> &'static str {
    column.as_str()
}

/// The raw text of a field (`data ->> 'f'` / `json_extract`).
fn field_text(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("(data ->> '{name}')"),
        Dialect::Sqlite => format!("json_extract(data, '$.{name}')"),
    }
}

/// The left-hand side of a comparison: the key's value as the backend compares it.
fn lhs(dialect: Dialect, key: &Key) -> Result<String, StoreError> {
    Ok(match &key.source {
        KeySource::Column(c) => {
            let col = column_sql(*c);
            match (dialect, key.kind, c) {
                (Dialect::Postgres, KeyKind::Datetime, _) => col.to_owned(),
                (Dialect::Sqlite, KeyKind::Datetime, _) => format!("rtrim({col}, 'Z')"),
                (Dialect::Postgres, _, Column::Id) => col.to_owned(),
                (Dialect::Postgres, _, _) => format!("{col} COLLATE \"C\""),
                (Dialect::Sqlite, _, _) => col.to_owned(),
            }
        }
        KeySource::Field(name) => {
            let text = field_text(dialect, checked_name(name)?);
            match (dialect, key.kind) {
                (Dialect::Postgres, KeyKind::Text | KeyKind::Tags) => {
                    format!("{text} COLLATE \"C\"")
                }
                (Dialect::Postgres, KeyKind::Integer) => format!("{text}::bigint"),
                (Dialect::Postgres, KeyKind::Decimal) => format!("{text}::numeric"),
                (Dialect::Postgres, KeyKind::Boolean) => format!("{text}::boolean"),
                (Dialect::Postgres, KeyKind::Datetime) => {
                    format!("rtrim({text}, 'Z') COLLATE \"C\"")
                }
                (Dialect::Sqlite, KeyKind::Datetime) => format!("rtrim({text}, 'Z')"),
                (Dialect::Sqlite, KeyKind::Decimal) => {
                    format!("{text} COLLATE {DECIMAL_COLLATION}")
                }
                (Dialect::Sqlite, _) => text,
            }
        }
    })
}

/// One filter's condition.
fn filter_sql(
    b: &mut Builder,
    key: &Key,
    op: FilterOp,
    values: &[KeyValue],
) -> Result<String, StoreError> {
    let left = lhs(b.dialect, key)?;
    let first = values
        .first()
        .ok_or_else(|| StoreError::Invalid("a filter without a value".into()))?;
    Ok(match op {
        FilterOp::Eq => format!("{left} = {}", b.param(key, first)),
        FilterOp::Ne => format!("({left} <> {} OR {left} IS NULL)", b.param(key, first)),
        FilterOp::Lt => format!("{left} < {}", b.param(key, first)),
        FilterOp::Lte => format!("{left} <= {}", b.param(key, first)),
        FilterOp::Gt => format!("{left} > {}", b.param(key, first)),
        FilterOp::Gte => format!("{left} >= {}", b.param(key, first)),
        FilterOp::In => {
            let list: Vec<String> = values.iter().map(|v| b.param(key, v)).collect();
            format!("{left} IN ({})", list.join(", "))
        }
        FilterOp::Contains => {
            let KeySource::Field(name) = &key.source else {
                return Err(StoreError::Invalid("contains on a column".into()));
            };
            let name = checked_name(name)?;
            let KeyValue::Text(text) = first else {
                return Err(StoreError::Invalid("contains needs text".into()));
            };
            let p = b.param_text(text);
            match (b.dialect, key.kind) {
                (Dialect::Postgres, KeyKind::Tags) => {
                    format!("(data -> '{name}') @> jsonb_build_array({p}::text)")
                }
                (Dialect::Sqlite, KeyKind::Tags) => format!(
                    "EXISTS (SELECT 1 FROM json_each(records.data, '$.{name}') AS t WHERE t.value = {p})"
                ),
                (Dialect::Postgres, _) => {
                    format!("strpos({}, {p}) > 0", field_text(b.dialect, name))
                }
                (Dialect::Sqlite, _) => format!("instr({}, {p}) > 0", field_text(b.dialect, name)),
            }
        }
    })
}

/// The statement for `query` in `dialect`, selecting `columns` (the `RecordRow` list).
pub(crate) fn build(
    dialect: Dialect,
    columns: &str,
    query: &RecordQuery,
) -> Result<Built, StoreError> {
    let mut b = Builder {
        dialect,
        binds: Vec::new(),
    };
    let mut conditions = vec![
        "workspace_id = $1".to_owned(),
        "collection_id = $2".to_owned(),
        "($3 OR status = 'published')".to_owned(),
    ];
    for f in &query.filters {
        conditions.push(filter_sql(&mut b, &f.key, f.op, &f.values)?);
    }

    // The order: the sort keys, then the id (unless a key is the id, which is unique).
    let id_key = Key {
        source: KeySource::Column(Column::Id),
        kind: KeyKind::Text,
    };
    let mut order: Vec<(&Key, bool)> = query.sort.iter().map(|k| (&k.key, k.descending)).collect();
    if !order.iter().any(|(k, _)| k.source == id_key.source) {
        order.push((&id_key, false));
    }

    if let Some(after) = &query.after {
        // Position values for each key of `order`: the cursor's, and its id for the id key.
        let id_value = Some(KeyValue::Text(after.id.to_string()));
        let mut positions: Vec<Option<KeyValue>> = after.values.clone();
        if positions.len() + 1 == order.len() {
            positions.push(id_value);
        } else if positions.len() != order.len() {
            return Err(StoreError::Invalid("a cursor for another sort".into()));
        }
        // Rows after the position: for some key i, equal on every earlier key and after it on
        // key i (ascending: greater, or missing once the position has a value; descending:
        // smaller, or any value once the position is missing).
        let mut any = Vec::new();
        for i in 0..order.len() {
            let (key, descending) = order[i];
            if positions[i].is_none() && !descending {
                continue; // nothing sorts after a missing value, ascending
            }
            let mut parts = Vec::with_capacity(i + 1);
            for (j, (earlier, _)) in order.iter().enumerate().take(i) {
                let l = lhs(dialect, earlier)?;
                parts.push(match &positions[j] {
                    None => format!("{l} IS NULL"),
                    Some(v) => format!("{l} = {}", b.param(earlier, v)),
                });
            }
            let left = lhs(dialect, key)?;
            let never_null = key.source == id_key.source;
            parts.push(match (&positions[i], descending) {
                (None, _) => format!("{left} IS NOT NULL"),
                (Some(v), false) if never_null => format!("{left} > {}", b.param(key, v)),
                (Some(v), false) => format!("({left} > {} OR {left} IS NULL)", b.param(key, v)),
                (Some(v), true) => format!("{left} < {}", b.param(key, v)),
            });
            any.push(format!("({})", parts.join(" AND ")));
        }
        conditions.push(if any.is_empty() {
            "FALSE".to_owned()
        } else {
            format!("({})", any.join(" OR "))
        });
    }

    // The id is never null: plain `ASC`/`DESC` lets SQLite walk its index (a `NULLS LAST`
    // there would make it sort the collection).
    let mut order_sql = Vec::with_capacity(order.len());
    for (key, descending) in &order {
        let l = lhs(dialect, key)?;
        let never_null = key.source == id_key.source;
        order_sql.push(match (*descending, never_null) {
            (true, true) => format!("{l} DESC"),
            (false, true) => format!("{l} ASC"),
            (true, false) => format!("{l} DESC NULLS FIRST"),
            (false, false) => format!("{l} ASC NULLS LAST"),
        });
    }
    let limit = b.binds.len() + 4;
    b.binds.push(Bind::Int(i64::from(query.limit)));
    let sql = format!(
        "SELECT {columns} FROM records WHERE {} ORDER BY {} LIMIT ${limit}",
        conditions.join(" AND "),
        order_sql.join(", ")
    );
    Ok(Built {
        sql,
        binds: b.binds,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use palisade_core::collections::query::{After, Filter, SortKey};
    use palisade_core::ids::RecordId;

    use super::*;

    fn field(name: &str, kind: KeyKind) -> Key {
        Key {
            source: KeySource::Field(name.into()),
            kind,
        }
    }

    fn query() -> RecordQuery {
        RecordQuery {
            filters: Vec::new(),
            sort: Vec::new(),
            after: None,
            limit: 21,
            drafts: false,
        }
    }

    /// Every `$n` appears once, numbered in order of appearance, one per bind.
    fn params_in_order(built: &Built) {
        let mut seen = Vec::new();
        let bytes = built.sql.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                let end = (i + 1..bytes.len())
                    .find(|&j| !bytes[j].is_ascii_digit())
                    .unwrap_or(bytes.len());
                seen.push(built.sql[i + 1..end].parse::<usize>().unwrap());
                i = end;
            } else {
                i += 1;
            }
        }
        let want: Vec<usize> = (1..=built.binds.len() + 3).collect();
        assert_eq!(seen, want, "{}", built.sql);
    }

    #[test]
    fn parameters_are_numbered_in_order_of_appearance() {
        let mut q = query();
        q.filters = vec![
            Filter {
                key: field("amount", KeyKind::Decimal),
                op: FilterOp::Gte,
                values: vec![KeyValue::Text("1.5".into())],
            },
            Filter {
                key: field("state", KeyKind::Text),
                op: FilterOp::In,
                values: vec![KeyValue::Text("a".into()), KeyValue::Text("b".into())],
            },
            Filter {
                key: field("labels", KeyKind::Tags),
                op: FilterOp::Contains,
                values: vec![KeyValue::Text("x".into())],
            },
        ];
        q.sort = vec![
            SortKey {
                key: field("due", KeyKind::Datetime),
                descending: true,
            },
            SortKey {
                key: field("n", KeyKind::Integer),
                descending: false,
            },
        ];
        q.after = Some(After {
            values: vec![None, Some(KeyValue::Integer(4))],
            id: RecordId::generate(),
        });
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let built = build(dialect, "id", &q).unwrap();
            params_in_order(&built);
            assert!(built.sql.contains("DESC NULLS FIRST"), "{}", built.sql);
        }
    }

    #[test]
    fn the_default_order_is_the_plain_id_order_an_index_serves() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let built = build(dialect, "id", &query()).unwrap();
            assert!(
                built.sql.ends_with("ORDER BY id ASC LIMIT $4"),
                "{}",
                built.sql
            );
        }
    }

    #[test]
    fn a_field_name_outside_the_schema_rule_is_refused() {
        let mut q = query();
        q.sort = vec![SortKey {
            key: field("a'); DROP TABLE records; --", KeyKind::Text),
            descending: false,
        }];
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            assert!(build(dialect, "id", &q).is_err());
        }
    }
}
