//! Tools through the C ABI, called from Rust as a C caller would: tools set on a session
//! with a tool choice, a chat turn on the demo model whose reply is calls that validate
//! against the tool's parameters (read back as JSON), a tool result that continues the
//! chat from the cached prefix, and every way of getting it wrong as a status and a message.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::ptr;

use common::{assert_ok, check_weather_call, demo_model, last_error, shared_model, WEATHER_TOOL};
use lfm_edge::StopReason;
use lfm_edge_ffi::capi::*;
use lfm_edge_ffi::chat_session::stop_code;
use lfm_edge_ffi::LfmStatus;
use serde_json::Value;

/// One model for the whole binary.
fn model() -> *const LfmModel {
    shared_model(demo_model)
}

/// A status and the message that goes with it ("" for LFM_OK).
fn outcome(status: LfmStatus) -> (LfmStatus, String) {
    match status {
        LfmStatus::Ok => (status, String::new()),
        _ => (status, last_error()),
    }
}

/// A session freed when dropped.
struct Session(*mut LfmSession);

impl Session {
    fn new() -> Session {
        let mut session = ptr::null_mut();
        assert_ok(unsafe { lfm_session_new(model(), ptr::null(), &mut session) });
        Session(session)
    }

    fn used(&self) -> usize {
        let (mut used, mut capacity) = (0, 0);
        assert_ok(unsafe { lfm_session_context(self.0, &mut used, &mut capacity) });
        used
    }

    /// `lfm_chat_set_tools`; None passes NULL.
    fn set_tools(&self, tools: Option<&str>, choice: Option<&str>) -> (LfmStatus, String) {
        let tools = tools.map(|t| CString::new(t).unwrap());
        let choice = choice.map(|c| CString::new(c).unwrap());
        let pointer = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        outcome(unsafe { lfm_chat_set_tools(self.0, pointer(&tools), pointer(&choice)) })
    }

    /// `lfm_chat` with `options`, its result.
    fn chat(
        &self,
        role: &str,
        content: &str,
        options: &LfmGenerateOptions,
    ) -> Result<LfmGeneration, (LfmStatus, String)> {
        let (role, content) = (CString::new(role).unwrap(), CString::new(content).unwrap());
        let mut result = LfmGeneration::default();
        let status = unsafe {
            lfm_chat(
                self.0,
                role.as_ptr(),
                content.as_ptr(),
                options,
                None,
                ptr::null_mut(),
                ptr::null(),
                &mut result,
            )
        };
        match outcome(status) {
            (LfmStatus::Ok, _) => Ok(result),
            failed => Err(failed),
        }
    }

    /// The last reply's calls, read as a C caller does: the size first, then the text.
    fn tool_calls(&self) -> Vec<Value> {
        let mut size = 0;
        let status = unsafe { lfm_chat_tool_calls(self.0, ptr::null_mut(), 0, &mut size) };
        assert_eq!(status, LfmStatus::BufferTooSmall);
        let mut buffer = vec![0x55 as c_char; size];
        // One byte short: nothing is written, the size is told again.
        let mut again = 0;
        let status =
            unsafe { lfm_chat_tool_calls(self.0, buffer.as_mut_ptr(), size - 1, &mut again) };
        assert_eq!(status, LfmStatus::BufferTooSmall);
        assert_eq!(
            last_error(),
            format!("{size} bytes do not fit the buffer of {}", size - 1)
        );
        assert_eq!((again, buffer[0]), (size, 0x55));
        assert_ok(unsafe { lfm_chat_tool_calls(self.0, buffer.as_mut_ptr(), size, &mut again) });
        let text = unsafe { CStr::from_ptr(buffer.as_ptr()) }.to_str().unwrap();
        assert_eq!(text.len() + 1, size);
        let calls: Value = serde_json::from_str(text).unwrap();
        calls.as_array().unwrap().clone()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        unsafe { lfm_session_free(self.0) }
    }
}

/// Ends where the grammar of the calls lets an end-of-sequence token through.
fn until_done(max_tokens: u32) -> LfmGenerateOptions {
    LfmGenerateOptions {
        max_tokens,
        ..lfm_generate_options_default()
    }
}

#[test]
fn required_tool_calls_validate_and_a_tool_result_continues_the_chat() {
    let session = Session::new();
    assert_eq!(session.tool_calls(), Vec::<Value>::new());
    assert_ok(session.set_tools(Some(WEATHER_TOOL), Some("required")).0);
    let sampled = LfmGenerateOptions {
        temperature: 1.0,
        seed: 5,
        ..until_done(300)
    };
    for options in [until_done(300), sampled] {
        unsafe { lfm_session_reset(session.0) };
        let first = session
            .chat("user", "Will it rain in Paris this week?", &options)
            .unwrap();
        // The calls close, and the grammar then ends the reply.
        assert_eq!(
            first.stop_reason,
            stop_code(StopReason::EndOfSequence),
            "{first:?}"
        );
        let calls = session.tool_calls();
        assert!(!calls.is_empty());
        calls.iter().for_each(check_weather_call);

        // The result goes back as a "tool" turn (the model now free to answer in text):
        // the cache keeps at least the first turn, tools and all, and feeds the rest.
        assert_ok(session.set_tools(Some(WEATHER_TOOL), None).0);
        let held = session.used();
        let second = session
            .chat(
                "tool",
                r#"{"rain": true, "temperature": 14}"#,
                &LfmGenerateOptions {
                    ignore_eos: 1,
                    ..until_done(6)
                },
            )
            .unwrap();
        let kept = session.used() - second.prompt_tokens - second.generated_tokens;
        assert!(
            kept >= first.prompt_tokens && kept <= held,
            "kept {kept} of {held}; the first prompt was {}",
            first.prompt_tokens
        );
        assert_eq!(second.generated_tokens, 6);
        assert_ok(session.set_tools(Some(WEATHER_TOOL), Some("required")).0);
    }
    // A reset forgets the reply, and its calls with it.
    unsafe { lfm_session_reset(session.0) };
    assert_eq!(session.tool_calls(), Vec::<Value>::new());
}

#[test]
fn a_tool_named_as_the_choice_is_the_one_called() {
    let two = r#"[{"name": "get_time", "parameters": {"type": "object",
                   "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}},
                  {"name": "ping"}]"#;
    let session = Session::new();
    assert_ok(session.set_tools(Some(two), Some("get_time")).0);
    session
        .chat("user", "What time is it?", &until_done(200))
        .unwrap();
    let calls = session.tool_calls();
    assert!(!calls.is_empty());
    for call in calls {
        assert_eq!(call["name"], "get_time", "{call}");
        let zone = &call["arguments"]["zone"];
        assert!(zone == "UTC" || zone == "CET", "{call}");
    }
}

#[test]
fn bad_tools_and_choices_are_errors_and_leave_the_tools_as_they_were() {
    let session = Session::new();
    assert_ok(session.set_tools(Some(WEATHER_TOOL), Some("required")).0);
    let invalid = LfmStatus::InvalidArgument;
    let (status, message) = session.set_tools(Some("[{"), Some("auto"));
    assert_eq!(status, invalid);
    assert!(message.starts_with("tools: invalid JSON"), "{message}");
    let (status, message) = session.set_tools(Some(r#"[{"parameters": {}}]"#), None);
    assert_eq!(
        (status, message.as_str()),
        (invalid, "tools: [0] has no \"name\" string")
    );
    let (status, message) = session.set_tools(Some(WEATHER_TOOL), Some("get_time"));
    assert_eq!(status, invalid);
    assert_eq!(
        message,
        "tool choice \"get_time\" is not auto, required, none or a tool's name \
         (the tools are get_weather)"
    );
    let (status, message) = session.set_tools(None, Some("required"));
    assert_eq!(status, invalid);
    assert!(message.contains("required with no tools"), "{message}");
    let not_utf8 = b"[\xff]\0";
    let status = unsafe { lfm_chat_set_tools(session.0, not_utf8.as_ptr().cast(), ptr::null()) };
    assert_eq!(
        outcome(status),
        (invalid, "tools_json is not valid UTF-8".into())
    );

    // Required makes the whole reply calls: a constraint of the caller's is refused
    // before any token, and the conversation is left as it was.
    let pattern = CString::new("[a-z]+").unwrap();
    let constrained = LfmGenerateOptions {
        constraint_kind: CONSTRAINT_REGEX,
        constraint: pattern.as_ptr(),
        ..until_done(8)
    };
    let (status, message) = session.chat("user", "Hi", &constrained).unwrap_err();
    assert_eq!(status, invalid);
    assert!(
        message.starts_with("tool choice required makes the whole answer tool calls"),
        "{message}"
    );
    assert_eq!(session.used(), 0);

    // The failed calls changed nothing: "required" still holds.
    session
        .chat("user", "Rain in Oslo?", &until_done(300))
        .unwrap();
    let calls = session.tool_calls();
    assert!(!calls.is_empty());
    calls.iter().for_each(check_weather_call);

    // No tools: the reply is text, and has no calls.
    assert_ok(session.set_tools(None, None).0);
    session.chat("user", "Thanks.", &until_done(4)).unwrap();
    assert_eq!(session.tool_calls(), Vec::<Value>::new());
}

#[test]
fn null_arguments_are_errors() {
    let session = Session::new();
    let tools = CString::new(WEATHER_TOOL).unwrap();
    let status = unsafe { lfm_chat_set_tools(ptr::null_mut(), tools.as_ptr(), ptr::null()) };
    assert_eq!(
        outcome(status),
        (LfmStatus::NullArgument, "session is NULL".into())
    );
    let mut size = 0;
    let status = unsafe { lfm_chat_tool_calls(ptr::null(), ptr::null_mut(), 0, &mut size) };
    assert_eq!(
        outcome(status),
        (LfmStatus::NullArgument, "session is NULL".into())
    );
    let status = unsafe { lfm_chat_tool_calls(session.0, ptr::null_mut(), 0, ptr::null_mut()) };
    assert_eq!(
        outcome(status),
        (LfmStatus::NullArgument, "out_size is NULL".into())
    );
    let status = unsafe { lfm_chat_tool_calls(session.0, ptr::null_mut(), 8, &mut size) };
    assert_eq!(
        outcome(status),
        (LfmStatus::NullArgument, "out_json is NULL".into())
    );
}
