//! Redis replies as Upstash REST JSON: `{"result": …}` or `{"error": "…"}`,
//! with strings base64-encoded when the request asked for `Upstash-Encoding: base64`.

use serde_json::{Value, json};

/// How strings are written into the JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// As text (non-UTF-8 bytes replaced).
    Plain,
    /// Base64 (standard alphabet, padded), so any bytes survive.
    Base64,
}

fn string(bytes: &[u8], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Plain => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        Encoding::Base64 => Value::String(base64(bytes)),
    }
}

/// Standard base64 with padding.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A reply value as JSON (`Err` for a Redis error reply).
pub(super) fn to_json(value: &redis::Value, encoding: Encoding) -> Result<Value, String> {
    use redis::Value as R;
    Ok(match value {
        R::Nil => Value::Null,
        R::Int(n) => json!(n),
        R::BulkString(bytes) => string(bytes, encoding),
        R::SimpleString(s) => string(s.as_bytes(), encoding),
        R::Okay => string(b"OK", encoding),
        R::Double(d) => json!(d),
        R::Boolean(b) => json!(if *b { 1 } else { 0 }),
        R::VerbatimString { text, .. } => string(text.as_bytes(), encoding),
        R::Array(items) | R::Set(items) => Value::Array(
            items
                .iter()
                .map(|v| to_json(v, encoding))
                .collect::<Result<_, _>>()?,
        ),
        R::Map(pairs) => Value::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [to_json(k, encoding), to_json(v, encoding)])
                .collect::<Result<_, _>>()?,
        ),
        R::Attribute { data, .. } => to_json(data, encoding)?,
        R::ServerError(e) => return Err(redis_error_text(e)),
        other => string(format!("{other:?}").as_bytes(), encoding),
    })
}

/// An error reply as Redis wrote it (`NOSCRIPT No matching script…`), as
/// Upstash passes it on; clients look for its code at the start.
fn redis_error_text(e: &redis::ServerError) -> String {
    match e.details() {
        Some(detail) => format!("{} {detail}", e.code()),
        None => e.code().to_owned(),
    }
}

/// A reply, or its text when it is Redis's error reply.
pub(super) fn of_value(value: redis::Value) -> Result<redis::Value, String> {
    match value {
        redis::Value::ServerError(e) => Err(redis_error_text(&e)),
        other => Ok(other),
    }
}

/// `{"result": …}` or `{"error": "…"}` for one reply.
pub(super) fn entry(reply: &Result<redis::Value, String>, encoding: Encoding) -> Value {
    match reply
        .as_ref()
        .map_err(String::clone)
        .and_then(|value| to_json(value, encoding))
    {
        Ok(result) => json!({ "result": result }),
        Err(error) => json!({ "error": error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        for (raw, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("PONG", "UE9ORw=="),
            ("OK", "T0s="),
        ] {
            assert_eq!(base64(raw.as_bytes()), encoded);
        }
    }

    #[test]
    fn replies_become_upstash_json() {
        use redis::Value as R;
        assert_eq!(
            entry(&Ok(R::Int(3)), Encoding::Base64),
            json!({"result": 3})
        );
        assert_eq!(
            entry(&Ok(R::Okay), Encoding::Plain),
            json!({"result": "OK"})
        );
        assert_eq!(
            entry(&Ok(R::Nil), Encoding::Base64),
            json!({"result": null})
        );
        let array = Ok(R::Array(vec![R::BulkString(b"a".to_vec()), R::Int(1)]));
        assert_eq!(
            entry(&array, Encoding::Base64),
            json!({"result": ["YQ==", 1]})
        );
        assert_eq!(entry(&array, Encoding::Plain), json!({"result": ["a", 1]}));
    }

    #[test]
    fn errors_keep_redis_wording() {
        for raw in [
            "NOSCRIPT No matching script. Please use EVAL.",
            "ERR wrong number of arguments for 'publish' command",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ] {
            let reply = redis::parse_redis_value(format!("-{raw}\r\n").as_bytes()).unwrap();
            let reply = of_value(reply);
            assert_eq!(reply, Err(raw.to_owned()));
            assert_eq!(entry(&reply, Encoding::Plain), json!({"error": raw}));
        }
    }
}
