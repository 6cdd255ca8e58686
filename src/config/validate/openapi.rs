//! `[[openapi]]`: routes derived from an OpenAPI 3.0 or 3.1 spec, one per
//! operation, each with the schemas of its parameters, body and (when
//! filtering) 2xx JSON answer. `#/components/...` references are resolved
//! inside the spec; nothing is fetched.
//!
//! The policy of an operation (auth, roles, scopes, `allow_if`, rate
//! limits) comes from `[openapi.operations.<operationId>]`, else from the
//! operation's `x-portcullis` object, else from the section's defaults.
//! Every derived route then goes through the same checks as a `[[route]]`.

use std::ops::Range;

use serde_json::{Map, Value, json};
use toml::Spanned;

use super::Validator;
use super::route::{RouteDefaults, validate_route};
use super::validation::{PolicyOptions, RawSchemas, compile, read_document};
use crate::config::RouteConfig;
use crate::config::file::{FileConfig, OpenApiSection, OperationPolicy, RateRuleSection, RouteSection};
use crate::gates::validate::json::BodyLimits;
use crate::gates::validate::schema::{Dialect, resolve};

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

/// The routes of one `[[openapi]]` section.
pub(super) fn import(
    v: &mut Validator<'_>,
    section: &Spanned<OpenApiSection>,
    raw: &FileConfig,
    defaults: &RouteDefaults<'_>,
) -> Vec<RouteConfig> {
    let s = section.get_ref();
    let document = match read_document(s.spec.get_ref()) {
        Ok(document) => document,
        Err(e) => {
            v.error(&s.spec, format!("`spec`: {e}"));
            return Vec::new();
        }
    };
    let dialect = match document.get("openapi").and_then(Value::as_str) {
        Some(version) if version.starts_with("3.0") => Dialect::OpenApi30,
        Some(version) if version.starts_with("3.1") => Dialect::Draft202012,
        _ => {
            v.error(&s.spec, "`spec`: not an OpenAPI 3.0 or 3.1 document (no `openapi: 3.x` field)");
            return Vec::new();
        }
    };
    let mut defs = document.pointer("/components/schemas").cloned().unwrap_or_else(|| json!({}));
    rewrite_refs(&mut defs);
    let refuse = match s.response_filter.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "off")) => None,
        Some((_, "remove")) => Some(false),
        Some((_, "refuse")) => Some(true),
        Some((value, _)) => {
            v.error(value, "`response_filter` must be \"off\", \"remove\" or \"refuse\"");
            None
        }
    };
    let prefix = s.prefix.as_ref().map_or("", |p| p.get_ref().trim_end_matches('/'));
    let span = s.spec.span();
    let mut routes = Vec::new();
    let Some(paths) = document.get("paths").and_then(Value::as_object) else {
        v.error(&s.spec, "`spec`: the document has no `paths`");
        return routes;
    };
    for (path, item) in paths {
        let item = resolve(item, &document);
        for method in METHODS {
            let Some(operation) = item.get(*method).filter(|o| o.is_object()) else { continue };
            let name = format!("{} {path}", method.to_ascii_uppercase());
            let Some(policy) = operation_policy(v, s, operation, &name) else { continue };
            let route = RouteSection {
                path: at(&span, format!("{prefix}{path}")),
                methods: Some(at(&span, vec![method.to_ascii_uppercase()])),
                upstream: Some(s.upstream.clone()),
                auth: policy.auth.map(|x| at(&span, x)).or_else(|| s.auth.clone()),
                roles: policy.roles.map(|x| at(&span, x)),
                scopes: policy.scopes.map(|x| at(&span, x)),
                allow_if: policy.allow_if.map(|x| at(&span, x)),
                rate_limit: policy
                    .rate_limit
                    .map(|rules| rules.into_iter().map(|r| at(&span, rate_rule(r, &span))).collect())
                    .or_else(|| s.rate_limit.clone()),
                ..RouteSection::derived(at(&span, String::new()))
            };
            let Some(mut config) = validate_route(v, &at(&span, route), raw, defaults) else { continue };
            let strict = s.strict.unwrap_or(true);
            let schemas = operation_schemas(item, operation, &document, &defs, refuse.is_some(), &span, strict);
            for reference in &schemas.unresolved {
                v.error(
                    &s.spec,
                    format!(
                        "{name}: `$ref` {reference} points nowhere in the spec (only local references are followed)"
                    ),
                );
            }
            let options = PolicyOptions {
                dialect,
                strict: !s.allow_unknown_properties.unwrap_or(false),
                body_required: schemas.body_required,
                content_types: schemas.content_types,
                limits: BodyLimits::default(),
                max_body: config.max_body,
                refuse: refuse.unwrap_or(false),
            };
            let before = v.diagnostics.len();
            config.validation = Some(compile(v, schemas.raw, &options));
            for diagnostic in &mut v.diagnostics[before..] {
                diagnostic.message = format!("{name}: {}", diagnostic.message);
            }
            routes.push(config);
        }
    }
    let ids: Vec<&str> = paths
        .values()
        .flat_map(|item| METHODS.iter().filter_map(move |m| item.get(*m)?.get("operationId")?.as_str()))
        .collect();
    for id in s.operations.keys().filter(|id| !ids.contains(&id.as_str())) {
        v.error(&s.spec, format!("`[openapi.operations.{id}]`: the spec has no operation with this operationId"));
    }
    if !s.strict.unwrap_or(true) {
        let catch_all = RouteSection {
            methods: Some(at(&span, ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].map(String::from).to_vec())),
            upstream: Some(s.upstream.clone()),
            auth: s.auth.clone(),
            rate_limit: s.rate_limit.clone(),
            ..RouteSection::derived(at(&span, format!("{prefix}/{{*rest}}")))
        };
        routes.extend(validate_route(v, &at(&span, catch_all), raw, defaults));
    }
    routes
}

/// The operation's policy: the TOML table by `operationId`, else `x-portcullis`.
fn operation_policy(
    v: &mut Validator<'_>,
    s: &OpenApiSection,
    operation: &Value,
    name: &str,
) -> Option<OperationPolicy> {
    let id = operation.get("operationId").and_then(Value::as_str);
    if let Some(policy) = id.and_then(|id| s.operations.get(id)) {
        return Some(policy.clone());
    }
    match operation.get("x-portcullis") {
        None => Some(OperationPolicy::default()),
        Some(extension) => match serde_json::from_value::<OperationPolicy>(extension.clone()) {
            Ok(policy) => Some(policy),
            Err(e) => {
                v.error(&s.spec, format!("{name}: `x-portcullis`: {e}"));
                None
            }
        },
    }
}

/// `value` at the position `span` (every derived key points at `spec`).
fn at<T>(span: &Range<usize>, value: T) -> Spanned<T> {
    Spanned::new(span.clone(), value)
}

fn rate_rule(rule: crate::config::file::OperationRateRule, span: &Range<usize>) -> RateRuleSection {
    RateRuleSection {
        rate: at(span, rule.rate),
        burst: rule.burst.map(|n| at(span, n)),
        key: rule.key.map(|x| at(span, x)),
        cost: rule.cost.map(|n| at(span, n)),
        count: rule.count.map(|x| at(span, x)),
        exempt_roles: None,
        exempt_networks: None,
    }
}

/// What an operation asks of its requests and answers.
struct OperationSchemas {
    raw: RawSchemas,
    body_required: bool,
    /// The JSON media types of the request body (`application/json` when none).
    content_types: Vec<String>,
    /// `$ref`s that point nowhere in the spec.
    unresolved: Vec<String>,
}

/// The operation's schemas.
fn operation_schemas(
    item: &Value,
    operation: &Value,
    document: &Value,
    defs: &Value,
    filter: bool,
    span: &Range<usize>,
    strict: bool,
) -> OperationSchemas {
    let mut unresolved = Vec::new();
    let located = |schema: Option<Value>| schema.map(|schema| (schema, span.clone()));
    let mut parameters: Vec<&Value> = Vec::new();
    for list in [item.get("parameters"), operation.get("parameters")].into_iter().flatten() {
        for parameter in list.as_array().into_iter().flatten() {
            let parameter = resolve_checked(parameter, document, &mut unresolved);
            let key = |p: &Value| (p.get("name").cloned(), p.get("in").cloned());
            // Operation parameters override path-item ones of the same name and place.
            parameters.retain(|existing| key(existing) != key(parameter));
            parameters.push(parameter);
        }
    }
    let object_for = |place: &str| {
        let chosen: Vec<&&Value> =
            parameters.iter().filter(|p| p.get("in").and_then(Value::as_str) == Some(place)).collect();
        // Strict: an operation without query parameters takes none.
        if chosen.is_empty() && !(strict && place == "query") {
            return None;
        }
        let mut properties = Map::new();
        let mut required = Vec::new();
        for parameter in chosen {
            let Some(name) = parameter.get("name").and_then(Value::as_str) else { continue };
            let name = if place == "header" { name.to_ascii_lowercase() } else { name.to_owned() };
            let mut schema = parameter.get("schema").cloned().unwrap_or_else(|| json!({}));
            rewrite_refs(&mut schema);
            properties.insert(name.clone(), schema);
            if place == "path" || parameter.get("required") == Some(&Value::Bool(true)) {
                required.push(Value::String(name));
            }
        }
        Some(with_defs(json!({"type": "object", "properties": properties, "required": required}), defs))
    };
    let body = operation.get("requestBody").map(|b| resolve_checked(b, document, &mut unresolved));
    let content = body.and_then(|b| b.get("content")).and_then(Value::as_object);
    let content_types: Vec<String> =
        content.into_iter().flat_map(|c| c.keys()).filter(|m| is_json(m)).map(|m| m.to_ascii_lowercase()).collect();
    let body_schema = body.and_then(|b| json_schema(b.get("content")?)).map(|schema| with_defs(schema, defs));
    let body_required = body.and_then(|b| b.get("required")).and_then(Value::as_bool).unwrap_or(false);
    let response = filter
        .then(|| {
            let responses = operation.get("responses")?.as_object()?;
            let mut codes: Vec<&String> = responses.keys().filter(|c| c.starts_with('2')).collect();
            codes.sort();
            codes.into_iter().find_map(|code| {
                json_schema(resolve_checked(&responses[code], document, &mut unresolved).get("content")?)
            })
        })
        .flatten()
        .map(|schema| with_defs(schema, defs));
    let raw = RawSchemas {
        path: located(object_for("path")),
        query: located(object_for("query")),
        headers: located(object_for("header")),
        body: located(body_schema),
        response: located(response),
    };
    let content_types = if content_types.is_empty() { vec!["application/json".to_owned()] } else { content_types };
    OperationSchemas { raw, body_required, content_types, unresolved }
}

fn is_json(media: &str) -> bool {
    media.eq_ignore_ascii_case("application/json") || (media.starts_with("application/") && media.ends_with("+json"))
}

/// The schema of the JSON media type of a `content` map.
fn json_schema(content: &Value) -> Option<Value> {
    let content = content.as_object()?;
    let (_, media) = content.iter().find(|(media, _)| is_json(media))?;
    let mut schema = media.get("schema")?.clone();
    rewrite_refs(&mut schema);
    Some(schema)
}

/// `schema` with the spec's component schemas as `$defs`.
fn with_defs(mut schema: Value, defs: &Value) -> Value {
    if let Value::Object(map) = &mut schema
        && defs.as_object().is_some_and(|d| !d.is_empty())
    {
        map.insert("$defs".into(), defs.clone());
    }
    schema
}

/// `#/components/schemas/X` → `#/$defs/X`, everywhere in `value`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref")
                && let Some(name) = reference.strip_prefix("#/components/schemas/")
            {
                *reference = format!("#/$defs/{name}");
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// [`resolve`], noting a reference that points nowhere.
fn resolve_checked<'a>(value: &'a Value, document: &'a Value, unresolved: &mut Vec<String>) -> &'a Value {
    let target = resolve(value, document);
    if let Some(reference) = target.get("$ref").and_then(Value::as_str) {
        unresolved.push(reference.to_owned());
    }
    target
}
