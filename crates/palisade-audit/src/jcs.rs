//! RFC 8785 (JCS) canonical JSON for the values an entry may hold: objects, arrays, strings,
//! integers, booleans and null. Floats are refused: an entry holds no floats (AUDIT-SPEC §2).

use serde_json::Value;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    #[error("floating-point numbers are not allowed in audit entries (at {0})")]
    Float(String),
}

/// The canonical bytes of `value`.
pub fn canonical(value: &Value) -> Result<Vec<u8>, CanonError> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value, &mut String::new())?;
    Ok(out)
}

fn write(out: &mut Vec<u8>, value: &Value, path: &mut String) -> Result<(), CanonError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(CanonError::Float(pointer_or_root(path)));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                write(out, item, path)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            // JCS orders members by their UTF-16 code units, not by UTF-8 bytes.
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                write(out, &map[key], path)?;
                path.truncate(len);
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn pointer_or_root(path: &str) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

/// ECMAScript `JSON.stringify` string escaping, which RFC 8785 adopts: `"` `\` and the short
/// escapes, other controls as lowercase `\u00xx`, everything else as literal UTF-8.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: Value) -> String {
        String::from_utf8(canonical(&v).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            c(json!({"b": 1, "a": [true, null, "x"]})),
            r#"{"a":[true,null,"x"],"b":1}"#
        );
    }

    #[test]
    fn sorts_by_utf16_code_units() {
        // U+1F600 is D83D DE00 in UTF-16, which sorts before U+E000; in UTF-8 it sorts after.
        let v = json!({"\u{e000}": 1, "\u{1f600}": 2});
        assert_eq!(c(v), "{\"\u{1f600}\":2,\"\u{e000}\":1}");
    }

    #[test]
    fn escapes_like_ecmascript() {
        let v = json!("a\"\\\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}é\u{2028}/");
        assert_eq!(
            c(v),
            "\"a\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}é\u{2028}/\""
        );
    }

    #[test]
    fn integers_pass_and_floats_are_refused() {
        assert_eq!(c(json!([-5, 0, u64::MAX])), "[-5,0,18446744073709551615]");
        assert_eq!(
            canonical(&json!({"a": {"b": 1.5}})),
            Err(CanonError::Float("/a/b".into()))
        );
    }

    #[test]
    fn agrees_with_serde_json_for_ascii_objects() {
        let v = json!({"z": {"y": "q\u{0}"}, "a": -1, "m": [1, "two", {"k": false}]});
        assert_eq!(c(v.clone()), serde_json::to_string(&v).unwrap());
    }
}
