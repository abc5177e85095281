//! The tool calls in an LFM2 answer: `<|tool_call_start|>[name(arg="v", n=1), …]
//! <|tool_call_end|>`, Python-style calls with keyword arguments (strings in either
//! quote with Python's escapes, numbers, `True`/`False`/`None` or JSON's literals, lists,
//! tuples, dicts), or the JSON form `[{"name": …, "arguments": {…}}]` the model writes
//! when its system prompt asks for JSON calls. Written for our own use after reading
//! the formats of LFM2's and LFM2.5's chat templates.

use serde_json::{Map, Number, Value};

use super::{ToolCall, TOOL_CALL_END, TOOL_CALL_START};

/// An answer split into what it says and the calls it makes.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedAnswer {
    /// The text outside the tool-call sections, trimmed.
    pub content: String,
    pub calls: Vec<ToolCall>,
}

/// The calls in `text`, the answer decoded with its special tokens. A section that does
/// not parse is an error naming the byte where it goes wrong; one cut off before its
/// end marker (`max_tokens`) too.
pub fn parse_tool_calls(text: &str) -> Result<ParsedAnswer, String> {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(TOOL_CALL_START) {
        content.push_str(&rest[..start]);
        let section = &rest[start + TOOL_CALL_START.len()..];
        let Some(end) = section.find(TOOL_CALL_END) else {
            return Err(format!("a tool call is not closed by {TOOL_CALL_END}"));
        };
        calls.extend(parse_section(&section[..end])?);
        rest = &section[end + TOOL_CALL_END.len()..];
    }
    content.push_str(rest);
    Ok(ParsedAnswer {
        content: content.trim().to_owned(),
        calls,
    })
}

/// What lies between the markers: a list of calls (or one call without brackets), in
/// Python or in JSON form.
fn parse_section(text: &str) -> Result<Vec<ToolCall>, String> {
    let mut p = Parser { text, at: 0 };
    p.space();
    let calls = if p.peek() == Some(b'[') {
        p.at += 1;
        p.items(b']', Parser::call)?
    } else {
        vec![p.call()?]
    };
    p.space();
    if p.at != text.len() {
        return Err(p.fail("unexpected text after the calls"));
    }
    Ok(calls)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// Moves past the bytes that `keep` accepts.
    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
    }

    fn space(&mut self) {
        self.skip_while(|b| b.is_ascii_whitespace());
    }

    fn eat(&mut self, byte: u8) -> Result<(), String> {
        self.space();
        if self.peek() != Some(byte) {
            return Err(self.fail(&format!("expected {:?}", byte as char)));
        }
        self.at += 1;
        Ok(())
    }

    fn fail(&self, why: &str) -> String {
        let context: String = self.text[self.at..].chars().take(24).collect();
        format!("tool call: {why} at byte {} ({context:?})", self.at)
    }

    /// Comma-separated items up to `close` (the opening bracket eaten), a trailing
    /// comma allowed as in Python.
    fn items<T>(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let mut items = Vec::new();
        loop {
            self.space();
            if self.peek() == Some(close) {
                self.at += 1;
                return Ok(items);
            }
            items.push(item(self)?);
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b) if b == close => {}
                _ => return Err(self.fail(&format!("expected ',' or {:?}", close as char))),
            }
        }
    }

    /// `name(key=value, …)` or `{"name": …, "arguments": …}`.
    fn call(&mut self) -> Result<ToolCall, String> {
        self.space();
        if self.peek() == Some(b'{') {
            let at = self.at;
            return json_call(self.value()?).map_err(|why| {
                self.at = at;
                self.fail(&why)
            });
        }
        let name = self.name()?;
        self.eat(b'(')?;
        let arguments = self.items(b')', |p| {
            p.space();
            let key = p.name()?;
            p.eat(b'=')?;
            Ok((key, p.value()?))
        })?;
        Ok(ToolCall {
            name,
            arguments: arguments.into_iter().collect(),
        })
    }

    /// A function or keyword name; dotted names (`Calendar.create_event`) too.
    fn name(&mut self) -> Result<String, String> {
        let start = self.at;
        self.skip_while(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if self.at == start || self.text.as_bytes()[start].is_ascii_digit() {
            return Err(self.fail("expected a name"));
        }
        Ok(self.text[start..self.at].to_owned())
    }

    fn value(&mut self) -> Result<Value, String> {
        self.space();
        match self.peek() {
            Some(quote @ (b'"' | b'\'')) => self.string(quote).map(Value::String),
            Some(b'[') => {
                self.at += 1;
                self.items(b']', Self::value).map(Value::Array)
            }
            Some(b'(') => {
                self.at += 1;
                self.items(b')', Self::value).map(Value::Array)
            }
            Some(b'{') => {
                self.at += 1;
                let entries = self.items(b'}', |p| {
                    let key = match p.value()? {
                        Value::String(key) => key,
                        // Python allows other keys; JSON's are strings.
                        Value::Number(n) => n.to_string(),
                        other => return Err(p.fail(&format!("a dict key {other} is not a string"))),
                    };
                    p.eat(b':')?;
                    Ok((key, p.value()?))
                })?;
                Ok(Value::Object(entries.into_iter().collect::<Map<_, _>>()))
            }
            Some(b'-' | b'+' | b'.' | b'0'..=b'9') => self.number(),
            _ => {
                let start = self.at;
                let word = self.name()?;
                match word.as_str() {
                    "True" | "true" => Ok(Value::Bool(true)),
                    "False" | "false" => Ok(Value::Bool(false)),
                    "None" | "null" => Ok(Value::Null),
                    _ => {
                        self.at = start;
                        Err(self.fail("expected a value"))
                    }
                }
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        self.skip_while(|b| b.is_ascii_digit() || b"+-.eE_".contains(&b));
        let text = self.text[start..self.at].replace('_', "");
        let text = text.strip_prefix('+').unwrap_or(&text);
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Value::from(n));
        }
        match text.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(Value::Number(n)),
            None => {
                self.at = start;
                Err(self.fail("expected a number"))
            }
        }
    }

    /// A string in `quote`, with Python's escapes (which hold JSON's).
    fn string(&mut self, quote: u8) -> Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.at..];
            let Some(c) = rest.chars().next() else {
                return Err(self.fail("a string is not closed"));
            };
            self.at += c.len_utf8();
            match c {
                _ if c as u32 == quote as u32 => return Ok(out),
                '\\' => {
                    let escaped = self.escape()?;
                    out.push_str(&escaped);
                }
                _ => out.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<String, String> {
        let Some(c) = self.text[self.at..].chars().next() else {
            return Err(self.fail("a string is not closed"));
        };
        self.at += c.len_utf8();
        let hex = |p: &mut Self, digits: usize| -> Result<u32, String> {
            let code = p.text.get(p.at..p.at + digits);
            let value = code.and_then(|h| u32::from_str_radix(h, 16).ok());
            let value = value.ok_or_else(|| p.fail("a bad \\x, \\u or \\U escape"))?;
            p.at += digits;
            Ok(value)
        };
        let code = match c {
            'n' => '\n' as u32,
            't' => '\t' as u32,
            'r' => '\r' as u32,
            'b' => 8,
            'f' => 12,
            '0' => 0,
            'x' => hex(self, 2)?,
            'U' => hex(self, 8)?,
            'u' => {
                let high = hex(self, 4)?;
                // JSON spells a character above U+FFFF as a surrogate pair.
                if (0xD800..0xDC00).contains(&high) && self.text[self.at..].starts_with("\\u") {
                    self.at += 2;
                    let low = hex(self, 4)?;
                    0x10000 + ((high - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF)
                } else {
                    high
                }
            }
            '\n' => return Ok(String::new()),
            // `\\`, `\'`, `\"`, `\/`; Python keeps the backslash of an unknown escape.
            '\\' | '\'' | '"' | '/' => c as u32,
            other => return Ok(format!("\\{other}")),
        };
        char::from_u32(code)
            .map(String::from)
            .ok_or_else(|| self.fail("an escape that is not a character"))
    }
}

/// `{"name": "f", "arguments": {…}}` (arguments possibly a JSON string, as OpenAI's
/// API sends them; `parameters` as some prompts ask).
fn json_call(value: Value) -> Result<ToolCall, String> {
    let Value::Object(mut object) = value else {
        return Err("a JSON tool call is not an object".into());
    };
    let name = match object.remove("name") {
        Some(Value::String(name)) => name,
        _ => return Err("a JSON tool call has no \"name\" string".into()),
    };
    let arguments = object
        .remove("arguments")
        .or_else(|| object.remove("parameters"));
    let arguments = match arguments {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(Value::String(text)) => match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(format!("the arguments of {name} are not a JSON object")),
        },
        Some(_) => return Err(format!("the arguments of {name} are not an object")),
    };
    Ok(ToolCall { name, arguments })
}
