//! JSON Schemas compiled once at load: the dialect (2020-12, draft 7,
//! OpenAPI 3.0), unknown properties refused unless allowed, patterns on a
//! linear-time engine, and errors that name the failing value by JSON
//! pointer and the rule by keyword, without quoting the input.
//!
//! ```
//! use portcullis::gates::validate::schema::{Dialect, Schema};
//! let schema = serde_json::json!({
//!     "type": "object",
//!     "properties": {"name": {"type": "string"}, "price": {"type": "number", "minimum": 0}},
//!     "required": ["name"]
//! });
//! let schema = Schema::compile(&schema, Dialect::Draft202012, true).unwrap();
//! assert!(schema.errors(&serde_json::json!({"name": "widget", "price": 1})).is_empty());
//! let errors = schema.errors(&serde_json::json!({"price": -1, "is_admin": true}));
//! let rules: Vec<&str> = errors.iter().map(|e| e.rule.as_str()).collect();
//! assert_eq!(rules, ["required", "unevaluatedProperties", "minimum"]);
//! ```

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, PatternOptions, Validator};
use serde::Serialize;
use serde_json::{Map, Value};

/// Most errors reported for one request.
pub const MAX_ERRORS: usize = 10;

/// Which JSON Schema dialect a schema is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// JSON Schema draft 2020-12 (also OpenAPI 3.1).
    #[default]
    Draft202012,
    /// JSON Schema draft 7.
    Draft7,
    /// OpenAPI 3.0's schema objects (`nullable`, boolean `exclusiveMinimum`).
    OpenApi30,
}

impl Dialect {
    /// Parses `2020-12`, `draft7` or `openapi-3.0`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "2020-12" => Some(Self::Draft202012),
            "draft7" | "draft-07" => Some(Self::Draft7),
            "openapi-3.0" => Some(Self::OpenApi30),
            _ => None,
        }
    }
}

/// One failed rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer of the failing value (`/items/0/price`; `""` is the whole value).
    pub pointer: String,
    /// The schema keyword that failed (`minimum`, `required`…).
    pub rule: String,
    /// What is wrong, without the value itself.
    pub message: String,
}

/// A compiled schema.
#[derive(Debug)]
pub struct Schema {
    validator: Validator,
    /// The schema as compiled (after dialect conversion and strictness).
    pub document: Value,
}

impl Schema {
    /// Compiles `schema`; `strict` refuses object properties the schema does
    /// not declare wherever the schema says nothing about extra properties.
    pub fn compile(schema: &Value, dialect: Dialect, strict: bool) -> Result<Self, String> {
        let mut document = schema.clone();
        if dialect == Dialect::OpenApi30 {
            from_openapi30(&mut document);
        }
        let draft = if dialect == Dialect::Draft7 { Draft::Draft7 } else { Draft::Draft202012 };
        if strict {
            refuse_unknown_properties(&mut document, draft);
        }
        let validator = jsonschema::options()
            .with_draft(draft)
            .with_pattern_options(PatternOptions::regex())
            .should_validate_formats(true)
            .build(&document)
            .map_err(|error| schema_error(&error))?;
        Ok(Self { validator, document })
    }

    /// The errors of `value` (at most [`MAX_ERRORS`]), empty when valid.
    pub fn errors(&self, value: &Value) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = self
            .validator
            .iter_errors(value)
            .take(MAX_ERRORS)
            .map(|error| FieldError {
                pointer: sanitize_pointer(error.instance_path().as_str()),
                rule: error.kind().keyword().to_owned(),
                message: describe(error.kind()),
            })
            .collect();
        errors.sort_by(|a, b| (&a.pointer, &a.rule).cmp(&(&b.pointer, &b.rule)));
        errors
    }

    /// Whether `value` is valid.
    pub fn is_valid(&self, value: &Value) -> bool {
        self.validator.is_valid(value)
    }
}

/// A schema compile error, for `check` (the schema is the operator's, so
/// quoting it is fine; a pattern the linear-time engine cannot run is
/// explained).
fn schema_error(error: &jsonschema::ValidationError<'_>) -> String {
    let text = error.to_string();
    let at = error.schema_path().as_str();
    let hint = if text.contains("look-around") || text.contains("backreference") || text.contains("regex") {
        " (patterns run on a linear-time engine, which has no look-around or backreferences: they could be used for ReDoS)"
    } else {
        ""
    };
    if at.is_empty() {
        format!("invalid schema: {text}{hint}")
    } else {
        format!("invalid schema at {at}: {text}{hint}")
    }
}

/// A pointer cut to 200 characters with control characters replaced, so a
/// hostile key cannot fill the answer or the log.
fn sanitize_pointer(pointer: &str) -> String {
    pointer.chars().take(200).map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn describe(kind: &ValidationErrorKind) -> String {
    use ValidationErrorKind as K;
    match kind {
        K::Required { property } => match property.as_str() {
            Some(name) => format!("`{name}` is required"),
            None => "a required property is missing".to_owned(),
        },
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            format!(
                "{} propert{} not allowed here",
                unexpected.len(),
                if unexpected.len() == 1 { "y is" } else { "ies are" }
            )
        }
        K::Type { .. } => format!("must be of type {}", type_name(kind)),
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        K::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        K::MinLength { limit } => format!("must be at least {limit} characters long"),
        K::MaxLength { limit } => format!("must be at most {limit} characters long"),
        K::MinItems { limit } => format!("must have at least {limit} items"),
        K::MaxItems { limit } => format!("must have at most {limit} items"),
        K::MinProperties { limit } => format!("must have at least {limit} properties"),
        K::MaxProperties { limit } => format!("must have at most {limit} properties"),
        K::Pattern { pattern } => format!("must match the pattern {pattern}"),
        K::Format { format } => format!("must be a valid {format}"),
        K::Enum { .. } => "must be one of the allowed values".to_owned(),
        K::Constant { .. } => "must be the one allowed value".to_owned(),
        K::UniqueItems => "must not contain duplicate items".to_owned(),
        K::MultipleOf { multiple_of } => format!("must be a multiple of {multiple_of}"),
        K::FalseSchema => "is not allowed".to_owned(),
        other => format!("does not satisfy `{}`", other.keyword()),
    }
}

fn type_name(kind: &ValidationErrorKind) -> String {
    match kind {
        ValidationErrorKind::Type { kind: jsonschema::error::TypeKind::Single(t) } => t.to_string(),
        ValidationErrorKind::Type { kind: jsonschema::error::TypeKind::Multiple(set) } => {
            set.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" or ")
        }
        _ => "another type".to_owned(),
    }
}

/// Keywords whose subschemas describe other values (children).
const CHILD_MAPS: &[&str] = &["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"];
const CHILD_SCHEMAS: &[&str] = &["items", "additionalItems", "additionalProperties", "contains", "propertyNames"];
/// Keywords whose subschemas describe the same value (branches).
const BRANCH_LISTS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
const BRANCH_SCHEMAS: &[&str] = &["not", "if", "then", "else"];

/// Adds "no other properties" to every object schema that says nothing
/// about extra properties, except inside `allOf`/`anyOf`/`oneOf`/`not`/
/// `if` branches (which see only part of the object).
fn refuse_unknown_properties(schema: &mut Value, draft: Draft) {
    visit(schema, draft, true);
}

fn visit(schema: &mut Value, draft: Draft, own_value: bool) {
    let Value::Object(map) = schema else { return };
    let describes_object =
        |m: &Map<String, Value>| m.contains_key("properties") || m.get("type").is_some_and(|t| t == "object");
    // An object schema, or one composed of object branches (`allOf: [{properties…}, …]`).
    let is_object_schema = describes_object(map)
        || ["allOf", "anyOf", "oneOf"].iter().any(|k| {
            map.get(*k)
                .and_then(Value::as_array)
                .is_some_and(|branches| branches.iter().any(|b| b.as_object().is_some_and(&describes_object)))
        });
    let open =
        ["additionalProperties", "unevaluatedProperties", "patternProperties"].iter().any(|k| map.contains_key(*k));
    let composed = ["allOf", "anyOf", "oneOf", "$ref"].iter().any(|k| map.contains_key(*k));
    if own_value && is_object_schema && !open {
        match draft {
            Draft::Draft7 if composed => {}
            Draft::Draft7 => {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            _ => {
                map.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
        }
    }
    for (key, value) in map.iter_mut() {
        let key = key.as_str();
        if CHILD_MAPS.contains(&key) {
            if let Value::Object(children) = value {
                children.values_mut().for_each(|child| visit(child, draft, true));
            }
        } else if CHILD_SCHEMAS.contains(&key) {
            match value {
                Value::Array(items) => items.iter_mut().for_each(|child| visit(child, draft, true)),
                child => visit(child, draft, true),
            }
        } else if BRANCH_LISTS.contains(&key) {
            if let Value::Array(branches) = value {
                let own = key == "prefixItems";
                branches.iter_mut().for_each(|branch| visit(branch, draft, own));
            }
        } else if BRANCH_SCHEMAS.contains(&key) {
            visit(value, draft, false);
        }
    }
}

/// Follows a local `$ref` (`#/components/schemas/User`) within `root`, up to
/// 16 hops; returns `value` itself when it is no reference, and the last
/// reference reached when it points nowhere.
pub fn resolve<'a>(value: &'a Value, root: &'a Value) -> &'a Value {
    let mut current = value;
    for _ in 0..16 {
        match current.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => match root.pointer(pointer) {
                Some(target) => current = target,
                None => return current,
            },
            None => return current,
        }
    }
    current
}

/// Rewrites OpenAPI 3.0 schema objects into draft 2020-12: `nullable: true`
/// adds `null` to the type, boolean `exclusiveMinimum`/`exclusiveMaximum`
/// become numbers, `example` and `discriminator` are dropped.
pub fn from_openapi30(schema: &mut Value) {
    let Value::Object(map) = schema else {
        if let Value::Array(items) = schema {
            items.iter_mut().for_each(from_openapi30);
        }
        return;
    };
    if map.remove("nullable") == Some(Value::Bool(true)) {
        nullable(map);
    }
    for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        if let Some(Value::Bool(exclusive)) = map.get(flag).cloned() {
            map.remove(flag);
            if exclusive && let Some(limit) = map.remove(bound) {
                map.insert(flag.into(), limit);
            }
        }
    }
    map.remove("example");
    map.remove("discriminator");
    map.remove("xml");
    map.remove("externalDocs");
    for value in map.values_mut() {
        from_openapi30(value);
    }
}

fn nullable(map: &mut Map<String, Value>) {
    match map.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            map.insert("type".into(), Value::Array(vec![Value::String(t), Value::String("null".into())]));
        }
        Some(Value::Array(types)) if !types.iter().any(|t| t == "null") => types.push(Value::String("null".into())),
        _ => {}
    }
    if let Some(Value::Array(options)) = map.get_mut("enum")
        && !options.contains(&Value::Null)
    {
        options.push(Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patterns_run_on_a_linear_time_engine() {
        let redos = json!({"type": "string", "pattern": "^(a+)+$"});
        let schema = Schema::compile(&redos, Dialect::Draft202012, true).unwrap();
        let hostile = Value::String(format!("{}!", "a".repeat(100_000)));
        assert_eq!(schema.errors(&hostile)[0].rule, "pattern", "answers at once, no catastrophic backtracking");
        let lookahead = json!({"type": "string", "pattern": "^(?=.*[0-9]).+$"});
        let error = Schema::compile(&lookahead, Dialect::Draft202012, true).unwrap_err();
        assert!(error.contains("linear-time engine"), "{error}");
    }

    #[test]
    fn unknown_properties_are_refused_except_where_allowed() {
        let schema = json!({
            "type": "object",
            "properties": {
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "owner": {"allOf": [{"properties": {"id": {}}}, {"properties": {"name": {}}}]}
            }
        });
        let schema = Schema::compile(&schema, Dialect::Draft202012, true).unwrap();
        assert!(schema.is_valid(&json!({"tags": {"any": "thing"}, "owner": {"id": 1, "name": "x"}})));
        assert!(!schema.is_valid(&json!({"owner": {"id": 1, "role": "admin"}})));
        assert!(!schema.is_valid(&json!({"is_admin": true})));
        let lax = Schema::compile(&json!({"type": "object"}), Dialect::Draft202012, false).unwrap();
        assert!(lax.is_valid(&json!({"anything": 1})));
    }

    #[test]
    fn openapi30_nullable_and_boolean_exclusive_bounds() {
        let schema = json!({"type": "object", "properties": {
            "note": {"type": "string", "nullable": true, "example": "x"},
            "price": {"type": "number", "minimum": 0, "exclusiveMinimum": true}
        }});
        let schema = Schema::compile(&schema, Dialect::OpenApi30, true).unwrap();
        assert!(schema.is_valid(&json!({"note": null, "price": 1})));
        let errors = schema.errors(&json!({"price": 0}));
        assert_eq!(
            errors,
            [FieldError {
                pointer: "/price".into(),
                rule: "exclusiveMinimum".into(),
                message: "must be greater than 0".into()
            }]
        );
    }

    proptest::proptest! {
        /// Random JSON never panics the validator; a value with no errors is
        /// valid, and the errors are bounded.
        #[test]
        fn random_json_is_decided_consistently(value in super::super::arbitrary_json()) {
            let schema = json!({
                "type": "object",
                "required": ["a"],
                "properties": {
                    "a": {"type": "string", "maxLength": 5, "pattern": "^[a-z]*$"},
                    "b": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "c": {"type": "object", "properties": {"d": {"type": "boolean"}}}
                }
            });
            let schema = Schema::compile(&schema, Dialect::Draft202012, true).unwrap();
            let errors = schema.errors(&value);
            proptest::prop_assert_eq!(errors.is_empty(), schema.is_valid(&value));
            proptest::prop_assert!(errors.len() <= MAX_ERRORS);
        }
    }

    #[test]
    fn messages_never_quote_the_value() {
        let schema =
            json!({"type": "object", "properties": {"q": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5}}});
        let schema = Schema::compile(&schema, Dialect::Draft202012, true).unwrap();
        let errors = schema.errors(&json!({"q": "' OR 1=1 --", "secret-key": "x"}));
        let text = serde_json::to_string(&errors).unwrap();
        assert!(!text.contains("OR 1=1") && !text.contains("secret-key"), "{text}");
        assert_eq!(errors.len(), 3, "{text}");
    }
}
