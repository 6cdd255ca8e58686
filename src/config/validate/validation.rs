//! `validate = { ... }` of a route: schemas compiled once at load, with
//! every error at the position of the schema that caused it.

use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;
use toml::Spanned;

use super::Validator;
use crate::config::file::ValidateSection;
use crate::gates::validate::ValidationPolicy;
use crate::gates::validate::filter::ResponseFilter;
use crate::gates::validate::json::BodyLimits;
use crate::gates::validate::schema::{Dialect, Schema};

/// Largest upstream answer the response filter reads.
const MAX_FILTERED_RESPONSE: usize = 8 << 20;

/// A schema written inline (a TOML table) or in a file (a path).
pub(super) fn load_schema(v: &mut Validator<'_>, value: &Spanned<toml::Value>, key: &str) -> Option<Value> {
    match value.get_ref() {
        toml::Value::Table(_) | toml::Value::Boolean(_) => match serde_json::to_value(value.get_ref()) {
            Ok(schema) => Some(schema),
            Err(e) => {
                v.error(value, format!("`{key}`: cannot read the schema: {e}"));
                None
            }
        },
        toml::Value::String(path) => match read_document(path) {
            Ok(schema) => Some(schema),
            Err(e) => {
                v.error(value, format!("`{key}`: {e}"));
                None
            }
        },
        _ => {
            v.error(value, format!("`{key}` must be a schema (a table) or the path of a .json or .yaml file"));
            None
        }
    }
}

/// Reads a JSON or YAML document.
pub(super) fn read_document(path: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if path.ends_with(".yaml") || path.ends_with(".yml") {
        serde_saphyr::from_str::<Value>(&text).map_err(|e| format!("{path} is not valid YAML: {e}"))
    } else {
        serde_json::from_str::<Value>(&text).map_err(|e| format!("{path} is not valid JSON: {e}"))
    }
}

/// A schema before compiling, and where errors about it point.
pub(super) type RawSchema = Option<(Value, Range<usize>)>;

/// Schemas of one route, before compiling.
#[derive(Default)]
pub(super) struct RawSchemas {
    pub(super) path: RawSchema,
    pub(super) query: RawSchema,
    pub(super) headers: RawSchema,
    pub(super) body: RawSchema,
    pub(super) response: RawSchema,
}

/// Validates a route's `validate` section.
pub(super) fn validate_section(
    v: &mut Validator<'_>,
    spanned: &Spanned<ValidateSection>,
    max_body: u64,
) -> Option<Arc<ValidationPolicy>> {
    let s = spanned.get_ref();
    let mut load = |value: &Option<Spanned<toml::Value>>, key: &str| {
        value.as_ref().and_then(|x| load_schema(v, x, key).map(|schema| (schema, x.span())))
    };
    let raw = RawSchemas {
        path: load(&s.path, "validate.path"),
        query: load(&s.query, "validate.query"),
        headers: load(&s.headers, "validate.headers"),
        body: load(&s.body, "validate.body"),
        response: load(&s.response, "validate.response"),
    };
    let dialect = match &s.dialect {
        None => Dialect::Draft202012,
        Some(value) => Dialect::parse(value.get_ref()).unwrap_or_else(|| {
            v.error(value, "`validate.dialect` must be \"2020-12\", \"draft7\" or \"openapi-3.0\"");
            Dialect::Draft202012
        }),
    };
    let refuse = match s.response_mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "remove")) => false,
        Some((_, "refuse")) => true,
        Some((value, _)) => {
            v.error(value, "`validate.response_mode` must be \"remove\" or \"refuse\"");
            false
        }
    };
    let limits = BodyLimits {
        max_depth: v.count(s.max_depth.as_ref(), "validate.max_depth", 1..=128, 32),
        max_string: v.count(s.max_string_length.as_ref(), "validate.max_string_length", 1..=100_000_000, 65_536),
        max_array: v.count(s.max_array_length.as_ref(), "validate.max_array_length", 1..=100_000_000, 10_000),
        max_keys: v.count(s.max_object_keys.as_ref(), "validate.max_object_keys", 1..=1_000_000, 1_000),
    };
    let content_types = match &s.content_types {
        None => vec!["application/json".to_owned()],
        Some(list) => {
            let types: Vec<String> = list.get_ref().iter().map(|t| t.trim().to_ascii_lowercase()).collect();
            if types.is_empty() || types.iter().any(|t| !(t == "application/json" || t.ends_with("+json"))) {
                v.error(
                    list,
                    "`validate.content_types` must list JSON media types (application/json, application/*+json)",
                );
            }
            types
        }
    };
    let options = PolicyOptions {
        dialect,
        strict: !s.allow_unknown_properties.unwrap_or(false),
        body_required: s.body_required.unwrap_or(true),
        content_types,
        limits,
        max_body,
        refuse,
    };
    Some(compile(v, raw, &options))
}

/// How a route's schemas are compiled and applied.
pub(super) struct PolicyOptions {
    pub(super) dialect: Dialect,
    pub(super) strict: bool,
    pub(super) body_required: bool,
    pub(super) content_types: Vec<String>,
    pub(super) limits: BodyLimits,
    pub(super) max_body: u64,
    pub(super) refuse: bool,
}

/// Compiles `raw` into a policy.
pub(super) fn compile(v: &mut Validator<'_>, raw: RawSchemas, options: &PolicyOptions) -> Arc<ValidationPolicy> {
    let mut compile_one = |schema: RawSchema, key: &str, strict: bool| {
        schema.and_then(|(schema, at)| match Schema::compile(&schema, options.dialect, strict) {
            Ok(compiled) => Some(compiled),
            Err(e) => {
                v.error(&Spanned::new(at, ()), format!("`{key}`: {e}"));
                None
            }
        })
    };
    // Undeclared headers are normal (browsers, proxies); parameters and
    // bodies follow `allow_unknown_properties`.
    let policy = ValidationPolicy {
        path: compile_one(raw.path, "validate.path", options.strict),
        query: compile_one(raw.query, "validate.query", options.strict),
        headers: compile_one(raw.headers, "validate.headers", false),
        body: compile_one(raw.body, "validate.body", options.strict),
        body_required: options.body_required,
        content_types: options.content_types.clone(),
        limits: options.limits,
        max_body: options.max_body,
        response: compile_one(raw.response, "validate.response", false).map(|schema| ResponseFilter {
            schema,
            refuse: options.refuse,
            max_bytes: MAX_FILTERED_RESPONSE,
        }),
    };
    Arc::new(policy)
}
