//! Field values (DAT-2): what each field type accepts on the wire and the one form it is stored
//! and returned in. Pure: records validate every incoming value here, naming the field of each
//! refusal. `null` is handled by the caller (absent and `null` both mean "no value"; `required`
//! is a record-level rule).

use std::cmp::Ordering;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use super::model::{Field, FieldType};
use crate::ids::RecordId;

/// Longest `text` value, in characters.
pub const TEXT_MAX: usize = 10_000;
/// Most tags on one record field, and the longest tag.
pub const TAGS_MAX: usize = 100;
pub const TAG_MAX: usize = 100;
/// Digits allowed before and after a decimal's point.
pub const DECIMAL_INTEGER_DIGITS: usize = 28;
pub const DECIMAL_FRACTION_DIGITS: usize = 18;

/// The stored form of `value` for `field`, or why it is refused (a sentence for the problem
/// body; the caller adds the pointer).
pub fn normalize(field: &Field, value: &Value) -> Result<Value, String> {
    match field.kind {
        FieldType::Text => text(value),
        FieldType::Integer => value.as_i64().map(Value::from).ok_or_else(|| {
            "must be a whole number between -9223372036854775808 and 9223372036854775807".to_owned()
        }),
        FieldType::Decimal => decimal(value),
        FieldType::Boolean => value
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| "must be true or false".to_owned()),
        FieldType::Date => date(value),
        FieldType::Datetime => datetime(value),
        FieldType::Enum => {
            let allowed = field.options.values.as_deref().unwrap_or_default();
            match value.as_str() {
                Some(v) if allowed.iter().any(|a| a == v) => Ok(value.clone()),
                _ => Err(format!("must be one of {}", allowed.join(", "))),
            }
        }
        FieldType::Json => {
            if has_nul(value) {
                Err("must not contain the NUL character (\\u0000)".to_owned())
            } else {
                Ok(value.clone())
            }
        }
        FieldType::Relation => value
            .as_str()
            .and_then(RecordId::parse)
            .map(|id| Value::String(id.to_string()))
            .ok_or_else(|| "must be a record id (rec_…)".to_owned()),
        FieldType::Tags => tags(value),
        FieldType::File => {
            Err("attachments are not available yet: leave this field empty".to_owned())
        }
    }
}

fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn text(value: &Value) -> Result<Value, String> {
    let Some(s) = value.as_str() else {
        return Err("must be a string".to_owned());
    };
    if s.chars().count() > TEXT_MAX {
        return Err(format!("must be at most {TEXT_MAX} characters"));
    }
    if s.contains('\0') {
        return Err("must not contain the NUL character (\\u0000)".to_owned());
    }
    Ok(value.clone())
}

/// `-?digits(.digits)?`, kept exactly as written (its scale is meaningful: `12.50`), except
/// that a negative zero is written without its sign.
pub(super) fn decimal(value: &Value) -> Result<Value, String> {
    let refuse = || {
        format!(
            "must be a decimal as a string, such as \"12.50\" (up to {DECIMAL_INTEGER_DIGITS} digits before the point and {DECIMAL_FRACTION_DIGITS} after; no exponent)"
        )
    };
    let Some(s) = value.as_str() else {
        return Err(refuse());
    };
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |d: &str, max: usize| {
        !d.is_empty() && d.len() <= max && d.bytes().all(|b| b.is_ascii_digit())
    };
    let int_ok = digits(int, DECIMAL_INTEGER_DIGITS) && (int == "0" || !int.starts_with('0'));
    let frac_ok = frac.is_none_or(|f| digits(f, DECIMAL_FRACTION_DIGITS));
    if !int_ok || !frac_ok {
        return Err(refuse());
    }
    let zero = int == "0" && frac.is_none_or(|f| f.bytes().all(|b| b == b'0'));
    if zero && s.starts_with('-') {
        Ok(Value::String(unsigned.to_owned()))
    } else {
        Ok(value.clone())
    }
}

fn date(value: &Value) -> Result<Value, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    value
        .as_str()
        .filter(|s| s.len() == 10)
        .and_then(|s| time::Date::parse(s, &format).ok())
        .map(|d| Value::String(d.to_string()))
        .ok_or_else(|| "must be a calendar date written YYYY-MM-DD".to_owned())
}

/// Any RFC 3339 date-time, stored and returned in UTC (`Z`).
fn datetime(value: &Value) -> Result<Value, String> {
    value
        .as_str()
        .and_then(|s| time::OffsetDateTime::parse(s, &Rfc3339).ok())
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok())
        .map(Value::String)
        .ok_or_else(|| {
            "must be an RFC 3339 date-time with an offset, such as 2026-11-22T09:30:00+01:00"
                .to_owned()
        })
}

/// The order of two decimals as numbers, exactly (`1.50` equals `1.5`; `-0` equals `0`).
/// A total order on all strings, as a SQLite collation must be: strings that are not decimals
/// sort after every decimal, by their bytes.
pub fn decimal_cmp(a: &str, b: &str) -> Ordering {
    match (DecimalParts::parse(a), DecimalParts::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// A decimal as sign, integer digits without leading zeros and fraction digits without
/// trailing zeros, so equal numbers have equal parts.
struct DecimalParts<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> DecimalParts<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let (negative, unsigned) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) || (unsigned.contains('.') && frac.is_empty())
        {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let zero = int.is_empty() && frac.is_empty();
        Some(Self {
            negative: negative && !zero,
            int,
            frac,
        })
    }

    fn magnitude_cmp(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }

    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.magnitude_cmp(other),
            (true, true) => other.magnitude_cmp(self),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }
}

/// A list of distinct strings (duplicates dropped, first occurrence kept).
fn tags(value: &Value) -> Result<Value, String> {
    let Some(items) = value.as_array() else {
        return Err("must be a list of strings".to_owned());
    };
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        let Some(tag) = item.as_str() else {
            return Err("must be a list of strings".to_owned());
        };
        let len = tag.chars().count();
        if len == 0 || len > TAG_MAX || tag.chars().any(char::is_control) {
            return Err(format!(
                "each tag must be 1 to {TAG_MAX} characters, without control characters"
            ));
        }
        if !out.iter().any(|t| t.as_str() == Some(tag)) {
            out.push(item.clone());
        }
    }
    if out.len() > TAGS_MAX {
        return Err(format!("must hold at most {TAGS_MAX} tags"));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::collections::model::FieldOptions;

    fn field(kind: FieldType) -> Field {
        Field {
            name: "f".into(),
            kind,
            required: false,
            unique: false,
            pii: false,
            encrypted: false,
            options: FieldOptions {
                values: (kind == FieldType::Enum).then(|| vec!["open".into(), "done".into()]),
                collection: None,
            },
        }
    }

    fn ok(kind: FieldType, input: Value) -> Value {
        normalize(&field(kind), &input).unwrap_or_else(|e| panic!("{input}: {e}"))
    }

    fn refused(kind: FieldType, input: Value) {
        assert!(
            normalize(&field(kind), &input).is_err(),
            "{} accepted {input}",
            kind.as_str()
        );
    }

    #[test]
    fn valid_values_keep_or_take_their_one_stored_form() {
        use FieldType as T;
        assert_eq!(ok(T::Text, json!("héllo\nworld")), json!("héllo\nworld"));
        assert_eq!(ok(T::Integer, json!(-42)), json!(-42));
        assert_eq!(ok(T::Integer, json!(i64::MAX)), json!(i64::MAX));
        assert_eq!(ok(T::Decimal, json!("12.50")), json!("12.50"));
        assert_eq!(ok(T::Decimal, json!("-0.00")), json!("0.00"));
        assert_eq!(
            ok(
                T::Decimal,
                json!("1234567890123456789012345678.123456789012345678")
            ),
            json!("1234567890123456789012345678.123456789012345678")
        );
        assert_eq!(ok(T::Boolean, json!(false)), json!(false));
        assert_eq!(ok(T::Date, json!("2024-02-29")), json!("2024-02-29"));
        assert_eq!(
            ok(T::Datetime, json!("2026-11-22T09:30:00+01:00")),
            json!("2026-11-22T08:30:00Z")
        );
        assert_eq!(
            ok(T::Datetime, json!("2026-11-22T23:30:00.123456-02:00")),
            json!("2026-11-23T01:30:00.123456Z")
        );
        assert_eq!(ok(T::Enum, json!("done")), json!("done"));
        assert_eq!(
            ok(T::Json, json!({"a": [1, 2.5, null, {"b": "c"}]})),
            json!({"a": [1, 2.5, null, {"b": "c"}]})
        );
        let id = RecordId::generate().to_string();
        assert_eq!(ok(T::Relation, json!(id)), json!(id));
        assert_eq!(ok(T::Tags, json!(["a", "b", "a"])), json!(["a", "b"]));
        assert_eq!(ok(T::Tags, json!([])), json!([]));
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        use FieldType as T;
        for v in [
            json!(1),
            json!(null),
            json!("a\u{0}b"),
            json!("x".repeat(TEXT_MAX + 1)),
        ] {
            refused(T::Text, v);
        }
        for v in [
            json!(1.5),
            json!("1"),
            json!(1e20),
            json!(u64::MAX),
            json!(true),
        ] {
            refused(T::Integer, v);
        }
        for v in [
            json!(12.5),
            json!("12,50"),
            json!("1e3"),
            json!("+1"),
            json!("01"),
            json!(".5"),
            json!("5."),
            json!(""),
            json!("-"),
            json!("1".repeat(DECIMAL_INTEGER_DIGITS + 1)),
            json!(format!("0.{}", "1".repeat(DECIMAL_FRACTION_DIGITS + 1))),
        ] {
            refused(T::Decimal, v);
        }
        for v in [json!("true"), json!(1)] {
            refused(T::Boolean, v);
        }
        for v in [
            json!("2023-02-29"),
            json!("2024-2-1"),
            json!("2024-02-01T00:00:00Z"),
        ] {
            refused(T::Date, v);
        }
        for v in [
            json!("2026-11-22T09:30:00"),
            json!("2026-11-22"),
            json!(1_700_000_000),
        ] {
            refused(T::Datetime, v);
        }
        for v in [json!("Done"), json!(["done"])] {
            refused(T::Enum, v);
        }
        refused(T::Json, json!({"k": "\u{0}"}));
        for v in [
            json!("usr_01m80bbg8bet59xtdzjd4dbxa8"),
            json!("rec_"),
            json!(5),
        ] {
            refused(T::Relation, v);
        }
        for v in [json!("a"), json!([1]), json!([""]), json!(["a\nb"])] {
            refused(T::Tags, v);
        }
        let many: Vec<String> = (0..=TAGS_MAX).map(|i| format!("t{i}")).collect();
        refused(T::Tags, json!(many));
        refused(T::File, json!("anything"));
    }

    #[test]
    fn decimals_compare_as_numbers_exactly() {
        use Ordering::{Equal, Greater, Less};
        for (a, b, want) in [
            ("1.5", "1.50", Equal),
            ("0", "-0.000", Equal),
            ("10", "9.99", Greater),
            ("9.75", "10.5", Less),
            ("-2", "-1.5", Less),
            ("-1.5", "0", Less),
            ("0.1", "0.10", Equal),
            ("0.1", "0.09", Greater),
            (
                "1234567890123456789012345678.000000000000000001",
                "1234567890123456789012345678",
                Greater,
            ),
            ("-0.000000000000000001", "0", Less),
            ("5", "abc", Less),
            ("abc", "abd", Less),
        ] {
            assert_eq!(decimal_cmp(a, b), want, "{a} vs {b}");
            assert_eq!(decimal_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn datetimes_are_stored_without_trailing_fraction_zeros() {
        assert_eq!(
            ok(FieldType::Datetime, json!("2026-01-01T00:00:00.500+00:00")),
            json!("2026-01-01T00:00:00.5Z")
        );
    }
}
