//! The JSON of OpenAI's API as the server reads and writes it: requests of
//! `/v1/chat/completions` and `/v1/completions` (unknown fields are ignored, known
//! ones of the wrong type refused), and the responses, stream chunks, usage and model
//! list the official clients parse. Field names and shapes follow OpenAI's API
//! reference; llama.cpp's extensions `top_k`, `min_p` and `repetition_penalty` are
//! read too.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/chat/completions`. Its `model` is not read: whatever it names, the
/// server answers with its one model.
#[derive(Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    /// The newer name of `max_tokens`; it wins when both are given.
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required` or `{"type": "function", "function": {"name": …}}`,
    /// as [`ToolChoice::from_openai`](crate::tools::ToolChoice::from_openai) reads it.
    #[serde(default)]
    pub tool_choice: Option<Value>,
}

/// `POST /v1/completions` (its `model` not read either).
#[derive(Deserialize)]
pub struct CompletionRequest {
    pub prompt: PromptIn,
    #[serde(default)]
    pub echo: Option<bool>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub best_of: Option<u32>,
}

/// What both endpoints take to sample and stream, read from the same JSON object as
/// the request (not flattened into it: a wrong field is named by its path).
#[derive(Deserialize)]
pub struct Sampling {
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub min_p: Option<f32>,
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

#[derive(Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCallIn>>,
}

/// A message's content: a string, or parts of which only text is understood.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// A call an earlier assistant turn made, as the client sends it back.
#[derive(Deserialize)]
pub struct ToolCallIn {
    pub function: FunctionCallIn,
}

#[derive(Deserialize)]
pub struct FunctionCallIn {
    pub name: String,
    /// The arguments as a JSON object, in a string.
    pub arguments: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Deserialize)]
pub struct JsonSchemaFormat {
    #[serde(default)]
    pub schema: Option<Value>,
}

/// A completion's prompt: text, or token ids; a list of one of either.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum PromptIn {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    Batch(Vec<Vec<u32>>),
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
}

#[derive(Serialize, Clone, Copy, Debug, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Serialize, Clone, Copy, Debug, Default)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose cache was reused rather than fed again.
    pub cached_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, cached_tokens: usize, completion_tokens: usize) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

/// What every response and chunk starts with.
#[derive(Serialize, Clone)]
pub struct Header {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: &'static str,
}

#[derive(Serialize)]
pub struct ChatCompletion {
    #[serde(flatten)]
    pub header: Header,
    pub choices: [ChatChoice; 1],
    pub usage: Usage,
}

#[derive(Serialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: AssistantMessage,
    pub logprobs: Option<()>,
    pub finish_reason: FinishReason,
}

#[derive(Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    pub refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut>,
}

#[derive(Serialize, Clone)]
pub struct ToolCallOut {
    /// Its place in the answer's calls (stream deltas only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCallOut,
}

#[derive(Serialize, Clone)]
pub struct FunctionCallOut {
    pub name: String,
    /// A JSON object, in a string.
    pub arguments: String,
}

#[derive(Serialize)]
pub struct ChatChunk {
    #[serde(flatten)]
    pub header: Header,
    pub choices: Vec<ChunkChoice>,
    /// Only on the last chunk, which has no choices, with `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<()>,
    pub finish_reason: Option<FinishReason>,
}

#[derive(Serialize, Default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut>>,
}

#[derive(Serialize)]
pub struct TextCompletion {
    #[serde(flatten)]
    pub header: Header,
    /// One; none on a stream's usage chunk.
    pub choices: Vec<TextChoice>,
    /// Always on a whole response; on a stream only on its last chunk, with
    /// `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Serialize)]
pub struct TextChoice {
    pub index: u32,
    pub text: String,
    pub logprobs: Option<()>,
    pub finish_reason: Option<FinishReason>,
}

#[derive(Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

#[derive(Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}
