//! Where a JSON schema is wrong: llguidance says what is wrong ("Invalid type: intger")
//! but not where, so on an error each subschema is compiled on its own, and the deepest
//! one that fails is named by its JSON pointer.

use llguidance::api::TopLevelGrammar;
use serde_json::Value;

use super::vocab::Vocabulary;

/// Keywords whose value is a schema.
const ONE: [&str; 10] = [
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedProperties",
    "additionalItems",
];
/// Keywords whose value maps names to schemas.
const BY_NAME: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];
/// Keywords whose value lists schemas.
const LISTED: [&str; 5] = ["prefixItems", "anyOf", "oneOf", "allOf", "items"];

/// The JSON pointer of the deepest subschema of `root` that does not compile on its own
/// (with the root's definitions beside it, so that its `$ref`s resolve); `None` when
/// every subschema compiles and the fault is in the root itself.
pub fn locate_error(vocab: &Vocabulary, root: &Value) -> Option<String> {
    let compiles = |schema: &Value| {
        let mut schema = schema.clone();
        if let (Some(object), Some(root)) = (schema.as_object_mut(), root.as_object()) {
            for key in ["$defs", "definitions"] {
                if let Some(defs) = root.get(key) {
                    object.entry(key).or_insert_with(|| defs.clone());
                }
            }
        }
        let grammar = TopLevelGrammar::from_json_schema(schema);
        vocab.factory.create_parser(grammar).is_ok()
    };
    let mut at = root;
    let mut pointer = String::new();
    'deeper: loop {
        for (path, child) in children(at) {
            if !compiles(child) {
                pointer += &path;
                at = child;
                continue 'deeper;
            }
        }
        return (!pointer.is_empty()).then_some(pointer);
    }
}

/// The subschemas directly inside `schema`, with their pointers relative to it.
fn children(schema: &Value) -> Vec<(String, &Value)> {
    let Some(object) = schema.as_object() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (key, value) in object {
        let key_path = format!("/{}", escape(key));
        match value {
            Value::Object(_) if ONE.contains(&key.as_str()) => found.push((key_path, value)),
            Value::Object(map) if BY_NAME.contains(&key.as_str()) => {
                for (name, child) in map {
                    found.push((format!("{key_path}/{}", escape(name)), child));
                }
            }
            Value::Array(list) if LISTED.contains(&key.as_str()) => {
                for (i, child) in list.iter().enumerate() {
                    found.push((format!("{key_path}/{i}"), child));
                }
            }
            _ => {}
        }
    }
    found
}

/// RFC 6901: `~` and `/` in a name.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}
