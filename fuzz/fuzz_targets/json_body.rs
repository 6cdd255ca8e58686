//! Any bytes through the body hygiene parser and a strict schema: never a
//! panic, and whatever is accepted satisfies the schema and round-trips.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::gates::validate::json::{BodyLimits, parse};
use portcullis::gates::validate::schema::{Dialect, Schema};

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}, "tags": {"type": "array", "items": {"type": "string"}}}
        });
        Schema::compile(&schema, Dialect::Draft202012, true).expect("the schema compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = parse(data, &BodyLimits::default()) {
        let errors = schema().errors(&value);
        assert_eq!(errors.is_empty(), schema().is_valid(&value));
        let again = parse(value.to_string().as_bytes(), &BodyLimits::default()).expect("re-serialized JSON parses");
        assert_eq!(again, value);
    }
});
