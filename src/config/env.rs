//! Configuration overrides from the environment.
//!
//! `PORTCULLIS_<SECTION>__<KEY>` sets `<section>.<key>`; a double underscore
//! separates levels because keys themselves contain single underscores, and a
//! number indexes an array of tables: `PORTCULLIS_ROUTE__0__UPSTREAM` sets the
//! first route's upstream. The value is read as a TOML value when it parses as
//! one (`500`, `true`, `["10.0.0.0/8"]`) and as a string otherwise.
//! Variables without `__` (secrets, `PORTCULLIS_LOG`, `PORTCULLIS_CONFIG`) are
//! never overrides, and any other `PORTCULLIS_` variable without `__` is an
//! error: a misspelled override must not be silently ignored.
//!
//! ```
//! use portcullis::config::env::apply_overrides;
//! use portcullis::config::secrets::Environment;
//! let env = Environment::from_pairs([("PORTCULLIS_LIMITS__MAX_BODY", "2MiB")]);
//! let (text, applied) = apply_overrides("[limits]\nmax_body = \"1MiB\"\n", &env).unwrap();
//! assert_eq!(text, "[limits]\nmax_body = \"2MiB\"\n");
//! assert_eq!(applied, ["PORTCULLIS_LIMITS__MAX_BODY"]);
//! ```

use toml_edit::{DocumentMut, Item, Table, Value};

use super::secrets::{ALL_SECRETS, Environment};

/// The prefix of every Portcullis variable.
pub const PREFIX: &str = "PORTCULLIS_";

/// Applies every override in `env` to the TOML `text`.
///
/// Returns the new text (unchanged lines keep their positions, so errors in
/// the file still point at the right line) and the variables applied.
pub fn apply_overrides(text: &str, env: &Environment) -> Result<(String, Vec<String>), String> {
    if let Some((unknown, _)) =
        env.with_prefix(PREFIX).find(|(name, _)| !name[PREFIX.len()..].contains("__") && !is_known_variable(name))
    {
        return Err(format!(
            "unknown variable {unknown}: configuration overrides are written PORTCULLIS_<SECTION>__<KEY> (two underscores)"
        ));
    }
    let overrides: Vec<(&str, &str)> =
        env.with_prefix(PREFIX).filter(|(name, _)| name[PREFIX.len()..].contains("__")).collect();
    if overrides.is_empty() {
        return Ok((text.to_owned(), Vec::new()));
    }
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| e.message().to_owned())?;
    let mut applied = Vec::new();
    for (name, raw) in overrides {
        let path: Vec<String> = name[PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
        set_path(doc.as_table_mut(), &path, parse_value(raw)).map_err(|e| format!("{name}: {e}"))?;
        applied.push(name.to_owned());
    }
    Ok((doc.to_string(), applied))
}

/// Variables without `__` that Portcullis reads: secrets (and their
/// `_FILE` forms), the log filter and the configuration path.
fn is_known_variable(name: &str) -> bool {
    let base = name.strip_suffix("_FILE").unwrap_or(name);
    ALL_SECRETS.contains(&base) || matches!(name, "PORTCULLIS_LOG" | "PORTCULLIS_CONFIG")
}

fn parse_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<DocumentMut>()
        .ok()
        .and_then(|doc| doc.get("v").and_then(Item::as_value).cloned())
        .unwrap_or_else(|| Value::from(raw))
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let Some((key, rest)) = path.split_first() else {
        return Err("empty key".into());
    };
    if key.is_empty() {
        return Err("empty key segment".into());
    }
    if rest.is_empty() {
        match table.get_mut(key) {
            Some(Item::Value(existing)) => {
                // Keep the existing decoration (spacing, comments) so positions do not move.
                let decor = existing.decor().clone();
                *existing = value;
                *existing.decor_mut() = decor;
            }
            _ => {
                table.insert(key, Item::Value(value));
            }
        }
        return Ok(());
    }
    let entry = table.entry(key).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    match entry {
        Item::Table(inner) => set_path(inner, rest, value),
        Item::ArrayOfTables(array) => {
            let (index, rest) = rest.split_first().ok_or("an array of tables needs an index")?;
            let index: usize = index.parse().map_err(|_| format!("`{index}` is not an index into `{key}`"))?;
            let inner = array.get_mut(index).ok_or_else(|| format!("`{key}` has no entry {index}"))?;
            set_path(inner, rest, value)
        }
        Item::Value(Value::InlineTable(inline)) => {
            let mut t = inline.clone().into_table();
            set_path(&mut t, rest, value)?;
            *entry = Item::Value(Value::InlineTable(t.into_inline_table()));
            Ok(())
        }
        _ => Err(format!("`{key}` is not a table")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str, pairs: &[(&str, &str)]) -> String {
        apply_overrides(text, &Environment::from_pairs(pairs.iter().copied())).unwrap().0
    }

    #[test]
    fn values_are_typed_when_they_parse() {
        let out = apply("", &[("PORTCULLIS_LIMITS__MAX_CONNECTIONS", "500")]);
        assert!(out.contains("max_connections = 500"), "{out}");
        let out = apply("", &[("PORTCULLIS_SERVER__HTTPS", "0.0.0.0:9443")]);
        assert!(out.contains("https = \"0.0.0.0:9443\""), "{out}");
        let out = apply("", &[("PORTCULLIS_SERVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]")]);
        assert!(out.contains("trusted_proxies = [\"10.0.0.0/8\"]"), "{out}");
    }

    #[test]
    fn routes_are_indexed_and_other_lines_keep_their_place() {
        let text = "[[route]]\npath = \"/a\"\nupstream = \"http://x\"\n\n[[route]]\npath = \"/b\"\n";
        let out = apply(text, &[("PORTCULLIS_ROUTE__0__UPSTREAM", "http://127.0.0.1:9")]);
        assert_eq!(out.lines().nth(2), Some("upstream = \"http://127.0.0.1:9\""));
        assert_eq!(out.lines().nth(5), Some("path = \"/b\""));
        let err = apply_overrides(text, &Environment::from_pairs([("PORTCULLIS_ROUTE__7__PATH", "/c")]));
        assert!(err.unwrap_err().contains("no entry 7"));
    }

    #[test]
    fn misspelled_variables_are_errors() {
        let env = Environment::from_pairs([("PORTCULLIS_LIMITS_MAX_BODY", "2MiB")]);
        let err = apply_overrides("", &env).unwrap_err();
        assert!(err.contains("PORTCULLIS_LIMITS_MAX_BODY"), "{err}");
        let env = Environment::from_pairs([("PORTCULLIS_STORE_PASSWORD_FILE", "/run/secrets/pw")]);
        assert!(apply_overrides("", &env).is_ok());
    }

    #[test]
    fn secrets_and_plain_variables_are_not_overrides() {
        let env = Environment::from_pairs([("PORTCULLIS_STORE_PASSWORD", "x"), ("PORTCULLIS_LOG", "debug")]);
        let (out, applied) = apply_overrides("", &env).unwrap();
        assert!(applied.is_empty());
        assert_eq!(out, "");
    }
}
