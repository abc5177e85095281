//! Whether a compiled grammar has any complete sentence at all.
//!
//! `start: "a" start` allows a first token, and a next one, forever: the mask is never
//! empty, so nothing stops the generation before `max_tokens`, and the output can never
//! be complete. Such a grammar is refused before any token instead.
//!
//! A symbol *ends* (is productive) when it can derive a finite string of terminals: a
//! terminal (lexeme) does, and so does a rule all of whose right-hand symbols end. The
//! grammar has a complete sentence exactly when its start symbol ends. The analysis
//! runs over llguidance's compiled grammar, so a Lark grammar, a JSON schema (a
//! `required` property that refers back to its own object) and a `%json` embed are all
//! judged alike, after llguidance's own rewriting.
//!
//! It errs only towards accepting: a rule under a parametric condition counts as
//! usable, and a terminal counts as ending even if its regex matches nothing (a regex
//! that matches nothing at the start is refused by the first mask already).

use std::collections::HashSet;

use llguidance::earley::{CGrammar, CSymIdx};

/// The name of a rule, reachable from the start, that never ends, when the start
/// symbol does not end; `None` when the grammar has a complete sentence.
pub(super) fn never_ends(grammar: &CGrammar) -> Option<String> {
    let reachable = reachable(grammar);
    let size = reachable.iter().map(CSymIdx::as_index).max().unwrap_or(0) + 1;
    // Indexed by `CSymIdx::as_index`.
    let mut ends = vec![false; size];
    for &sym in &reachable {
        let data = grammar.sym_data(sym);
        // A nested grammar that is not linked in is llguidance's to judge.
        let unlinked = data.gen_grammar.is_some() && data.rules.is_empty();
        ends[sym.as_index()] =
            data.is_terminal || data.is_nullable || !data.cond_nullable.is_empty() || unlinked;
    }
    // Fixed point: each pass marks the symbols with a rule whose right-hand side now all
    // ends; at most one pass per symbol, over grammars of hundreds of symbols.
    loop {
        let mut changed = false;
        for &sym in &reachable {
            if ends[sym.as_index()] {
                continue;
            }
            let a_rule_ends = grammar.rules_of(sym).iter().any(|&rule| {
                let (rhs, _, _) = grammar.rule_rhs(rule);
                rhs.iter().all(|s| ends[s.as_index()])
            });
            if a_rule_ends {
                ends[sym.as_index()] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    match ends[grammar.start().as_index()] {
        true => None,
        false => Some(culprit(grammar, &reachable, &ends)),
    }
}

/// The symbols the start symbol can reach, the start among them.
fn reachable(grammar: &CGrammar) -> Vec<CSymIdx> {
    let mut seen = HashSet::from([grammar.start()]);
    let mut order = vec![grammar.start()];
    let mut todo = vec![grammar.start()];
    while let Some(sym) = todo.pop() {
        for &rule in grammar.rules_of(sym) {
            for &s in grammar.rule_rhs(rule).0 {
                if seen.insert(s) {
                    order.push(s);
                    todo.push(s);
                }
            }
        }
    }
    order
}

/// The rule to name: the first one that never ends and that the user wrote (llguidance
/// names its own helper symbols with a `#`, a `_` or a `:`), else the start symbol.
fn culprit(grammar: &CGrammar, reachable: &[CSymIdx], ends: &[bool]) -> String {
    let written =
        |name: &str| !name.starts_with('_') && !name.contains(['#', ':', ' ']) && !name.is_empty();
    let start = grammar.sym_name(grammar.start());
    if written(start) {
        return start.to_owned();
    }
    reachable
        .iter()
        .filter(|sym| !ends[sym.as_index()])
        .map(|&sym| grammar.sym_name(sym))
        .find(|name| written(name))
        .unwrap_or(start)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llguidance::api::{GrammarInit, ParserLimits, TopLevelGrammar};
    use llguidance::Logger;

    /// Compiled without a tokenizer: the analysis needs only the rules.
    fn compile(lark: &str) -> std::sync::Arc<CGrammar> {
        compile_top(TopLevelGrammar::from_lark(lark.to_owned()))
    }

    fn compile_top(grammar: TopLevelGrammar) -> std::sync::Arc<CGrammar> {
        let init = GrammarInit::Serialized(grammar);
        let mut logger = Logger::new(0, 0);
        init.to_cgrammar(None, &mut logger, ParserLimits::default(), vec![])
            .unwrap()
    }

    #[test]
    fn grammars_without_a_finite_sentence_are_found() {
        assert_eq!(
            never_ends(&compile("start: \"a\" start\n")).as_deref(),
            Some("start")
        );
        assert_eq!(
            never_ends(&compile("start: x\nx: \"(\" x \")\"\n")).as_deref(),
            Some("start")
        );
        for fine in [
            "start: \"a\"+\n",
            "start: x\nx: \"(\" x \")\" | \"a\"\n",
            "start: \"a\" start | \"b\"\n",
            "start: x?\nx: \"(\" x \")\"\n",
            "start: \"{\" obj \"}\"\nobj: %json {\"type\": \"object\"}\n",
        ] {
            assert_eq!(never_ends(&compile(fine)), None, "{fine}");
        }
    }

    /// A schema that requires a value inside itself, directly or through an embed.
    #[test]
    fn json_schemas_without_a_finite_value_are_found() {
        let schema = |text: &str| {
            let value = serde_json::from_str(text).unwrap();
            never_ends(&compile_top(TopLevelGrammar::from_json_schema(value)))
        };
        let nested =
            r##"{"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}"##;
        assert!(schema(nested).is_some());
        let deep = r##"{"type": "array", "items": {"$ref": "#"}, "minItems": 1}"##;
        assert!(schema(deep).is_some());
        let lark = format!("start: \"<\" j \">\"\nj: %json {deep}\n");
        assert_eq!(never_ends(&compile(&lark)).as_deref(), Some("start"));
        let optional = r##"{"type": "object", "properties": {"a": {"$ref": "#"}}}"##;
        assert_eq!(schema(optional), None);
        assert_eq!(schema(r#"{"type": "integer"}"#), None);
    }
}
