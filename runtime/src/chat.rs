//! A model's chat template (the Jinja `chat_template` of tokenizer_config.json) rendered
//! the way HF transformers' `apply_chat_template` renders it: the same whitespace
//! options (`trim_blocks`, `lstrip_blocks`), loop controls, Python string methods, the
//! `bos_token` / `eos_token` variables and `raise_exception`. The text it gives already
//! holds the special tokens, bos included: encode it with
//! [`Tokenizer::encode_with`](crate::Tokenizer::encode_with)`(text, false)`.

use minijinja::{context, Environment, ErrorKind, Value};

use crate::error::{Error, Result};
use crate::model::Model;

/// One turn of a conversation, as HF's `messages` list holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// "system", "user", "assistant" or "tool".
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const TEMPLATE_NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the texts the template sees.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        Self::compile(source, bos_token, eos_token)
            .map_err(|e| Error::Input(format!("invalid chat template: {e:#}")))
    }

    /// The template `model` ships in tokenizer_config.json, with its bos and eos tokens.
    pub fn for_model(model: &Model) -> Result<ChatTemplate> {
        let config_path = model.path.join("tokenizer_config.json");
        let source = model.tokenizer.chat_template.as_deref().ok_or_else(|| {
            Error::config(&config_path, "the model has no chat_template to chat with")
        })?;
        let token_text = |id: Option<&u32>| match id {
            Some(&id) => model.tokenizer.decode(&[id], false),
            None => Ok(String::new()),
        };
        let bos = token_text(model.config.bos_token_id.as_ref())?;
        let eos_ids = &model.tokenizer.eos_token_ids;
        let eos = token_text(eos_ids.first().or(model.config.eos_token_ids.first()))?;
        Self::compile(source, &bos, &eos)
            .map_err(|e| Error::config(&config_path, format!("chat_template: {e:#}")))
    }

    fn compile(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> std::result::Result<ChatTemplate, minijinja::Error> {
        let mut env = Environment::new();
        // transformers compiles chat templates with these two options on.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned())?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The conversation as the model reads it; with `add_generation_prompt`, followed by
    /// the opening of the assistant's turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::Input(format!("chat template: {e:#}")))?;
        template
            .render(context! {
                messages,
                add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            .map_err(|e| Error::Input(format!("chat template: {e:#}")))
    }
}

/// HF templates call this to refuse a conversation (e.g. roles that do not alternate).
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of LFM2's published template: a namespace, slicing off the system
    /// message, string tests, Python string methods, and the generation prompt.
    const LFM2_LIKE: &str = r#"{{- bos_token -}}
{%- set ns = namespace(system_prompt="") -%}
{%- if messages[0]["role"] == "system" -%}
    {%- set ns.system_prompt = messages[0]["content"].strip() -%}
    {%- set messages = messages[1:] -%}
{%- endif -%}
{%- if ns.system_prompt -%}
    {{- "<|im_start|>system\n" + ns.system_prompt + "<|im_end|>\n" -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message["role"] not in ["user", "assistant", "tool"] -%}
        {{- raise_exception("unknown role " + message["role"]) -}}
    {%- endif -%}
    {{- "<|im_start|>" + message["role"] + "\n" + message["content"] + "<|im_end|>\n" -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- "<|im_start|>assistant\n" -}}
{%- endif -%}"#;

    fn template() -> ChatTemplate {
        ChatTemplate::new(LFM2_LIKE, "<|startoftext|>", "<|im_end|>").unwrap()
    }

    #[test]
    fn renders_system_turns_and_generation_prompt() {
        let messages = [
            Message::new("system", "  Be brief. "),
            Message::new("user", "Hi"),
        ];
        assert_eq!(
            template().render(&messages, true).unwrap(),
            "<|startoftext|><|im_start|>system\nBe brief.<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(!template()
            .render(&messages, false)
            .unwrap()
            .ends_with("assistant\n"));
    }

    #[test]
    fn raise_exception_becomes_an_input_error() {
        let err = template()
            .render(&[Message::new("robot", "beep")], true)
            .unwrap_err();
        assert!(
            matches!(&err, Error::Input(m) if m.contains("unknown role robot")),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        let err = ChatTemplate::new("{% for m in messages %}", "", "").unwrap_err();
        assert!(err.to_string().contains("invalid chat template"), "{err}");
    }

    #[test]
    fn trims_blocks_like_transformers() {
        let t = ChatTemplate::new("{% if true %}\n  x\n{% endif %}\n", "", "").unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "  x\n");
    }
}
