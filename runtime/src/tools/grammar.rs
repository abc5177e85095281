//! The Lark grammar of LFM2 tool calls over a given list of tools, so that constrained
//! decoding writes calls that parse and whose arguments validate:
//! `[name(key=value, …), …]<|tool_call_end|>`, each value a JSON value valid against
//! its parameter's schema (JSON's strings, numbers, lists and objects read as Python's),
//! the keyword arguments in the order the schema lists them, the required ones always.

use serde_json::Value;

use super::Tool;
use crate::constraint::Vocabulary;

/// At most this many calls in one answer.
const MAX_CALLS: usize = 4;

/// A marker as the grammar writes it: the special token when the tokenizer has one,
/// its text otherwise (a model without tool tokens, such as the demo model).
pub(crate) fn marker(vocab: &Vocabulary, text: &str) -> String {
    match vocab.special_token(text) {
        Some(_) => text.to_owned(),
        None => quoted(text),
    }
}

fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// The grammar of the calls after the start marker (`opened`: the start marker is
/// already out), or from the start marker on.
pub(crate) fn calls_grammar(vocab: &Vocabulary, tools: &[&Tool], opened: bool) -> String {
    let start = marker(vocab, super::TOOL_CALL_START);
    let end = marker(vocab, super::TOOL_CALL_END);
    let mut lark = String::new();
    let open = if opened { String::new() } else { start + " " };
    let more = MAX_CALLS - 1;
    lark += &format!("start: {open}\"[\" call (\", \" call){{0,{more}}} \"]\" {end}\n");
    let names: Vec<String> = (0..tools.len()).map(|i| format!("tool_{i}")).collect();
    lark += &format!("call: {}\n", names.join(" | "));
    for (rule, tool) in names.iter().zip(tools) {
        let open = quoted(&format!("{}(", tool.name));
        lark += &format!("{rule}: {open} {} \")\"\n", arguments(tool));
    }
    lark
}

/// The keyword arguments of `tool` in the order its schema lists them: some first one
/// (any of those before the first required one), then each later one with a comma,
/// optional or not.
fn arguments(tool: &Tool) -> String {
    let properties: Vec<(&String, &Value)> = match tool.parameters.get("properties") {
        Some(Value::Object(map)) => map.iter().collect(),
        _ => Vec::new(),
    };
    let required: Vec<&str> = match tool.parameters.get("required") {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is_required = |name: &str| required.contains(&name);
    let argument = |(name, schema): (&String, &Value)| {
        format!("{} %json {}", quoted(&format!("{name}=")), compact(schema))
    };
    let after = |from: usize| -> String {
        (properties[from..].iter())
            .map(|&(name, schema)| {
                let item = format!("\", \" {}", argument((name, schema)));
                match is_required(name) {
                    true => item,
                    false => format!("({item})?"),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut firsts = Vec::new();
    for (i, &(name, schema)) in properties.iter().enumerate() {
        firsts.push(format!("{} {}", argument((name, schema)), after(i + 1)));
        if is_required(name) {
            break;
        }
    }
    let all_optional = properties.iter().all(|(name, _)| !is_required(name));
    match (firsts.is_empty(), all_optional) {
        (true, _) => String::new(),
        (false, true) => format!("({})?", firsts.join(" | ")),
        (false, false) => format!("({})", firsts.join(" | ")),
    }
}

/// A parameter's schema, written on one line as the calls write JSON.
fn compact(schema: &Value) -> String {
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object.entry("x-guidance").or_insert_with(|| {
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            })
        });
    }
    schema.to_string()
}
