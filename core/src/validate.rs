//! The input rules every backend shares: email normalisation and the size limits.
//!
//! They live here, and only here, so that every backend refuses the same inputs with the same
//! error, and so that case-insensitive email matching never depends on a database's own
//! `lower()` (SQLite's folds ASCII only).

use unicode_normalization::UnicodeNormalization;

use crate::{Error, Result};

/// Limits that are the same on every backend.
///
/// They are set by the strictest backend (DynamoDB, whose items are at most 400 KiB including
/// attribute names and whose sort keys are at most 1024 bytes), so that code tested on SQLite
/// never meets a new limit in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest key-value namespace, in UTF-8 bytes.
    pub max_namespace_bytes: usize,
    /// Longest key, in UTF-8 bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Longest email address, in UTF-8 bytes.
    pub max_email_bytes: usize,
    /// Largest user `extra` document, as serialized JSON.
    pub max_extra_bytes: usize,
    /// Longest string field (password hash, OAuth tokens), in UTF-8 bytes.
    pub max_field_bytes: usize,
    /// Longest OAuth provider name or account id, in UTF-8 bytes.
    pub max_oauth_id_bytes: usize,
}

/// The limits every backend enforces.
///
/// A value of 400,000 bytes plus the longest namespace and key and the attribute names still
/// fits in one DynamoDB item (409,600 bytes), so the limit is the same everywhere.
pub const LIMITS: Limits = Limits {
    max_namespace_bytes: 128,
    max_key_bytes: 512,
    max_value_bytes: 400_000,
    max_email_bytes: 320,
    max_extra_bytes: 64 * 1024,
    max_field_bytes: 8 * 1024,
    max_oauth_id_bytes: 256,
};

/// Returns the form of `email` used to compare addresses: trimmed, Unicode NFC, lower case.
///
/// `ÉLODIE@Example.com` and `élodie@example.COM` (composed or decomposed) give the same result.
/// Fails with [`Error::InvalidInput`] unless the address has one `@` with text on both sides and
/// no whitespace or control characters, or [`Error::ValueTooLarge`] if it is too long.
pub fn normalize_email(email: &str) -> Result<String> {
    let trimmed = check_email(email)?;
    Ok(trimmed.nfc().flat_map(char::to_lowercase).collect())
}

/// Checks an address as given and returns it trimmed (the case the user typed is kept).
pub fn check_email(email: &str) -> Result<&str> {
    let email = email.trim();
    if email.len() > LIMITS.max_email_bytes {
        return Err(Error::ValueTooLarge {
            what: "email",
            size: email.len(),
            limit: LIMITS.max_email_bytes,
        });
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(
            "email",
            "contains whitespace or control characters",
        ));
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(email)
        }
        _ => Err(Error::invalid(
            "email",
            "expected exactly one '@' with text on both sides",
        )),
    }
}

/// Checks a key-value namespace.
pub fn check_namespace(namespace: &str) -> Result<()> {
    check_name("namespace", namespace, LIMITS.max_namespace_bytes)
}

/// Checks a key.
pub fn check_key(key: &str) -> Result<()> {
    check_name("key", key, LIMITS.max_key_bytes)
}

/// Checks a key prefix for listing; the empty prefix lists everything.
pub fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_name("prefix", prefix, LIMITS.max_key_bytes)
}

/// Checks a value's size.
pub fn check_value(value: &[u8]) -> Result<()> {
    check_size("value", value.len(), LIMITS.max_value_bytes)
}

/// Checks a namespace, key and value about to be written.
pub fn check_entry(namespace: &str, key: &str, value: &[u8]) -> Result<()> {
    check_namespace(namespace)?;
    check_key(key)?;
    check_value(value)
}

/// Checks a namespace and every key of a batch.
pub fn check_keys(namespace: &str, keys: &[&str]) -> Result<()> {
    check_namespace(namespace)?;
    keys.iter().try_for_each(|key| check_key(key))
}

/// Checks a string field such as a password hash or an OAuth token.
pub fn check_field(what: &'static str, value: &str) -> Result<()> {
    check_size(what, value.len(), LIMITS.max_field_bytes)?;
    check_no_nul(what, value)
}

/// NUL cannot be stored in PostgreSQL text; refusing it everywhere keeps backends alike.
fn check_no_nul(what: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::invalid(what, "must not contain NUL"));
    }
    Ok(())
}

/// Deepest nesting of objects and arrays in a user's `extra`, the object itself counting as 1:
/// DynamoDB allows 32 levels in an item, and an item and an update expression around `extra`
/// take two of them (measured on DynamoDB Local: 30 passes, 31 is refused on update).
pub const MAX_EXTRA_DEPTH: usize = 30;
/// Largest magnitude of a number in `extra` (exclusive), and smallest non-zero one: the range
/// of DynamoDB's number type.
pub const EXTRA_NUMBER_RANGE: (f64, f64) = (1e-130, 1e126);

/// Checks a user's `extra` document and brings it to the form every backend reads back
/// identically.
///
/// Refused, as [`Error::InvalidInput`]: nesting deeper than [`MAX_EXTRA_DEPTH`], an empty
/// object key or one over [`MAX_FIELD_NAME_BYTES`], NUL in a key or string, and numbers outside [`EXTRA_NUMBER_RANGE`]. Changed: a
/// float with an integral value that fits an `i64` (such as `3.0` or `-0.0`) becomes that
/// integer, since DynamoDB keeps numbers by value and returns `3.0` as `3`; serde reads it
/// back into an `f64` field all the same.
pub fn normalize_extra(extra: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
    normalize_json("extra", extra)
}

/// The rules of [`normalize_extra`], for any JSON object stored as a DynamoDB map or item
/// (a user's `extra`, a table's document), reported as `what`. A float with an integral value
/// that only fits a `u64` (such as `1e19`) becomes that integer too, as DynamoDB returns it.
pub fn normalize_json(
    what: &'static str,
    object: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    for (key, value) in object.iter_mut() {
        check_json_key(what, key)?;
        normalize_json_value(what, value, 2)?;
    }
    Ok(())
}

/// The rules of [`normalize_json`] for any JSON value stored as one DynamoDB attribute (a kv
/// value written as JSON): an object or array counts as the first level of nesting.
pub fn normalize_json_value_at_top(
    what: &'static str,
    value: &mut serde_json::Value,
) -> Result<()> {
    normalize_json_value(what, value, 1)
}

/// Longest field name (object key) at any depth of a table's document or a user's `extra`, in
/// UTF-8 bytes.
///
/// DynamoDB documents 64 KB for an attribute name, but DynamoDB Local refuses a name over
/// 50,000 bytes (its JSON parser's limit on a name, measured at top level and nested alike),
/// and the SDK then retries an `InternalFailure` for seconds before a raw error. 32 KiB is
/// well below both, and far above any real field name; it holds on every backend.
pub const MAX_FIELD_NAME_BYTES: usize = 32 * 1024;

fn check_json_key(what: &'static str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid(what, "an object key is empty"));
    }
    if key.len() > MAX_FIELD_NAME_BYTES {
        return Err(Error::invalid(
            what,
            format!(
                "an object key is {} bytes, over the limit of {MAX_FIELD_NAME_BYTES} bytes",
                key.len()
            ),
        ));
    }
    check_no_nul(what, key)
}

fn normalize_json_value(
    what: &'static str,
    value: &mut serde_json::Value,
    depth: usize,
) -> Result<()> {
    use serde_json::Value;
    match value {
        Value::String(text) => check_no_nul(what, text),
        Value::Number(number) => {
            if let Some(integer) = integral(what, number)? {
                *number = integer;
            }
            Ok(())
        }
        Value::Array(items) => {
            check_depth(what, depth)?;
            items
                .iter_mut()
                .try_for_each(|item| normalize_json_value(what, item, depth + 1))
        }
        Value::Object(fields) => {
            check_depth(what, depth)?;
            fields.iter_mut().try_for_each(|(key, field)| {
                check_json_key(what, key)?;
                normalize_json_value(what, field, depth + 1)
            })
        }
        Value::Null | Value::Bool(_) => Ok(()),
    }
}

fn check_depth(what: &'static str, depth: usize) -> Result<()> {
    if depth > MAX_EXTRA_DEPTH {
        return Err(Error::invalid(
            what,
            format!("nests deeper than {MAX_EXTRA_DEPTH} levels"),
        ));
    }
    Ok(())
}

/// Checks a number's range; returns the integer a float with an integral value stands for.
fn integral(what: &'static str, number: &serde_json::Number) -> Result<Option<serde_json::Number>> {
    if number.is_i64() || number.is_u64() {
        // Integers have at most 20 digits, well inside the range.
        return Ok(None);
    }
    let Some(float) = number.as_f64() else {
        return Ok(None);
    };
    let (smallest, largest) = EXTRA_NUMBER_RANGE;
    let magnitude = float.abs();
    if magnitude >= largest || (magnitude != 0.0 && magnitude < smallest) {
        return Err(Error::invalid(
            what,
            format!("the number {float} is outside the range every backend stores"),
        ));
    }
    if float.fract() != 0.0 {
        return Ok(None);
    }
    // i64::MIN is -2^63, exactly a float; i64::MAX and u64::MAX are not, so the upper bounds
    // are exclusive.
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&float) {
        return Ok(Some((float as i64).into()));
    }
    Ok((0.0..18_446_744_073_709_551_616.0)
        .contains(&float)
        .then(|| (float as u64).into()))
}

/// Fails with [`Error::ValueTooLarge`] when `size` exceeds `limit`.
pub fn check_size(what: &'static str, size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(Error::ValueTooLarge { what, size, limit });
    }
    Ok(())
}

fn check_name(what: &'static str, name: &str, limit: usize) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(what, "must not be empty"));
    }
    if name.len() > limit {
        return Err(Error::invalid(
            what,
            format!("is {} bytes, over the limit of {limit} bytes", name.len()),
        ));
    }
    // NUL cannot be stored in PostgreSQL text; refusing it everywhere keeps backends alike.
    if name.contains('\0') {
        return Err(Error::invalid(what, "must not contain NUL"));
    }
    Ok(())
}

/// Checks an identifier that a backend splices into SQL or a table name (a prefix or schema).
///
/// Values are always bound as parameters; identifiers cannot be, so they are restricted to
/// ASCII letters, digits and `_`, start with a letter or `_`, and are at most 48 bytes.
pub fn check_identifier(what: &'static str, ident: &str) -> Result<()> {
    let valid_start = ident
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let valid_rest = ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_start || !valid_rest || ident.len() > 48 {
        return Err(Error::invalid(
            what,
            format!(
                "{ident:?} must be 1-48 ASCII letters, digits or '_', not starting with a digit"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(value: serde_json::Value) -> Result<serde_json::Value> {
        let serde_json::Value::Object(mut map) = value else {
            panic!("not an object")
        };
        normalize_extra(&mut map)?;
        Ok(serde_json::Value::Object(map))
    }

    #[test]
    fn integral_floats_in_extra_become_integers_and_others_stay() -> Result<()> {
        use serde_json::json;
        let two_63 = 9_223_372_036_854_775_808.0_f64;
        let out = normalized(json!({
            "a": 3.0, "b": -0.0, "c": 0.5, "d": [1e15, -2.0], "e": two_63, "f": -two_63, "g": 7,
            "h": 2.0 * two_63
        }))?;
        assert_eq!(out["a"], json!(3));
        assert_eq!(out["b"], json!(0));
        assert_eq!(out["c"], json!(0.5));
        assert_eq!(out["d"], json!([1_000_000_000_000_000_i64, -2]));
        // 2^63 does not fit an i64 but fits a u64, as DynamoDB returns it; 2^64 fits neither
        // and stays a float; -2^63 fits an i64.
        assert_eq!(out["e"], json!(9_223_372_036_854_775_808_u64));
        assert!(out["h"].is_f64());
        assert_eq!(out["f"], json!(i64::MIN));
        assert_eq!(out["g"], json!(7));
        Ok(())
    }

    #[test]
    fn extra_outside_what_every_backend_stores_is_refused() {
        use serde_json::json;
        let deep = |depth: usize| (1..depth).fold(json!(1), |inner, _| json!([inner]));
        assert!(normalized(json!({ "ok": deep(MAX_EXTRA_DEPTH) })).is_ok());
        for bad in [
            json!({ "deep": deep(MAX_EXTRA_DEPTH + 1) }),
            json!({"n": 1e126}),
            json!({"n": 1e-131}),
            json!({"": 1}),
            json!({"s": "a\0b"}),
            json!({"k\0": 1}),
        ] {
            assert!(
                matches!(
                    normalized(bad.clone()),
                    Err(Error::InvalidInput { what: "extra", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn email_normalisation_is_unicode_aware() -> Result<()> {
        let decomposed = "E\u{301}LODIE@Example.com";
        assert_eq!(normalize_email("ÉLODIE@Example.com")?, "élodie@example.com");
        assert_eq!(normalize_email(decomposed)?, "élodie@example.com");
        assert_eq!(
            normalize_email("  élodie@example.COM ")?,
            "élodie@example.com"
        );
        Ok(())
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a@b@c",
            "a b@c.d",
            "a\n@c.d",
        ] {
            assert!(
                matches!(
                    normalize_email(bad),
                    Err(Error::InvalidInput { what: "email", .. })
                ),
                "{bad:?} was accepted"
            );
        }
        let long = format!("{}@example.com", "a".repeat(320));
        assert!(matches!(
            normalize_email(&long),
            Err(Error::ValueTooLarge { .. })
        ));
    }

    #[test]
    fn identifiers_are_restricted() {
        assert!(check_identifier("prefix", "app_1").is_ok());
        for bad in ["", "1app", "a-b", "a;drop", "é", &"a".repeat(49)] {
            assert!(
                check_identifier("prefix", bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
