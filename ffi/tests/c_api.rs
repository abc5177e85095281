//! The C ABI's contract, called from Rust exactly as a C caller would: NULL checks,
//! error codes and messages, streaming, stopping, cancelling, continuing, chat turns
//! that feed only what they add, and one model shared by threads.

mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

use common::{
    architecture_fixture, assert_ok, fixture, gguf_fixture, last_error, reference, shared_model,
    GgufFixture, ARCHITECTURE_FIXTURES, GGUF_FIXTURES,
};
use lfm_edge::StopReason;
use lfm_edge_ffi::capi::*;
use lfm_edge_ffi::chat_session::stop_code;
use lfm_edge_ffi::LfmStatus;

/// One model for the whole binary.
fn model() -> *const LfmModel {
    shared_model(fixture)
}

/// A session freed when dropped.
struct Session(*mut LfmSession);

impl Session {
    fn new(context_length: u32) -> Session {
        let (status, session) = Session::open(model(), context_length);
        assert_ok(status);
        session
    }

    /// `lfm_session_new` on `model`: its status, and the session (NULL on failure).
    fn open(model: *const LfmModel, context_length: u32) -> (LfmStatus, Session) {
        let options = LfmSessionOptions {
            context_length,
            ..lfm_session_options_default()
        };
        let mut session = ptr::dangling_mut();
        let status = unsafe { lfm_session_new(model, &options, &mut session) };
        (status, Session(session))
    }

    fn context(&self) -> (usize, usize) {
        let (mut used, mut capacity) = (0, 0);
        assert_ok(unsafe { lfm_session_context(self.0, &mut used, &mut capacity) });
        (used, capacity)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        unsafe { lfm_session_free(self.0) }
    }
}

/// What a token callback saw, and what it should do.
#[derive(Default)]
struct Collected {
    ids: Vec<u32>,
    text: String,
    /// Return false once this many tokens arrived.
    stop_after: Option<usize>,
    /// Call back into the session (must be refused) or cancel it (allowed).
    session: Option<*mut LfmSession>,
    reentrant_status: Option<LfmStatus>,
}

unsafe extern "C" fn collect(
    text: *const c_char,
    text_len: usize,
    token: u32,
    user_data: *mut c_void,
) -> bool {
    let collected = &mut *user_data.cast::<Collected>();
    let bytes = std::slice::from_raw_parts(text.cast::<u8>(), text_len);
    assert_eq!(*text.add(text_len), 0, "text is NUL-terminated");
    collected.text.push_str(std::str::from_utf8(bytes).unwrap());
    if token == TOKEN_NONE {
        // Held-back text let go at the end: no token of its own.
        return true;
    }
    collected.ids.push(token);
    if let Some(session) = collected.session {
        collected.reentrant_status = Some(lfm_session_reset(session));
        lfm_session_cancel(session);
    }
    collected.stop_after != Some(collected.ids.len())
}

fn options(max_tokens: u32) -> LfmGenerateOptions {
    LfmGenerateOptions {
        max_tokens,
        ignore_eos: 1,
        ..lfm_generate_options_default()
    }
}

/// The callback and user data that stream into `collected`, or none.
fn sink(collected: Option<&mut Collected>) -> (LfmTokenCallback, *mut c_void) {
    match collected {
        Some(collected) => (Some(collect), ptr::from_mut(collected).cast()),
        None => (None, ptr::null_mut()),
    }
}

/// Asserts a call succeeded, with the error message if it did not.
/// `lfm_generate_tokens` with `options` (NULL when none), streaming to `collected`
/// when given.
fn try_generate_tokens(
    session: &Session,
    ids: &[u32],
    options: Option<&LfmGenerateOptions>,
    collected: Option<&mut Collected>,
    cancel: *const i32,
    result: *mut LfmGeneration,
) -> LfmStatus {
    let options = options.map_or(ptr::null(), ptr::from_ref);
    let (callback, user_data) = sink(collected);
    unsafe {
        lfm_generate_tokens(
            session.0,
            ids.as_ptr(),
            ids.len(),
            options,
            callback,
            user_data,
            cancel,
            result,
        )
    }
}

fn generate_tokens(
    session: &Session,
    ids: &[u32],
    options: LfmGenerateOptions,
    collected: &mut Collected,
    cancel: *const i32,
) -> LfmGeneration {
    let mut result = LfmGeneration::default();
    let status = try_generate_tokens(
        session,
        ids,
        Some(&options),
        Some(collected),
        cancel,
        &mut result,
    );
    assert_ok(status);
    result
}

/// Greedy generation from `ids` without a cancel flag.
fn generate_ids(
    session: &Session,
    ids: &[u32],
    max_tokens: u32,
    collected: &mut Collected,
) -> LfmGeneration {
    generate_tokens(session, ids, options(max_tokens), collected, ptr::null())
}

fn generate_text(session: &Session, prompt: &str, max_tokens: u32) -> (Vec<u32>, LfmGeneration) {
    let prompt = CString::new(prompt).unwrap();
    let mut collected = Collected::default();
    let mut result = LfmGeneration::default();
    let (callback, user_data) = sink(Some(&mut collected));
    assert_ok(unsafe {
        lfm_generate(
            session.0,
            prompt.as_ptr(),
            &options(max_tokens),
            callback,
            user_data,
            ptr::null(),
            &mut result,
        )
    });
    (collected.ids, result)
}

fn chat(session: &Session, content: &str, max_tokens: u32) -> (LfmGeneration, String) {
    let (role, content) = (
        CString::new("user").unwrap(),
        CString::new(content).unwrap(),
    );
    let mut collected = Collected::default();
    let mut result = LfmGeneration::default();
    let (callback, user_data) = sink(Some(&mut collected));
    assert_ok(unsafe {
        lfm_chat(
            session.0,
            role.as_ptr(),
            content.as_ptr(),
            &options(max_tokens),
            callback,
            user_data,
            ptr::null(),
            &mut result,
        )
    });
    (result, collected.text)
}

/// `lfm_tokenize` of `text` into `ids` (NULL when empty), its count into `count`.
fn tokenize(
    text: &CStr,
    add_special_tokens: bool,
    ids: &mut [u32],
    count: &mut usize,
) -> LfmStatus {
    let out = if ids.is_empty() {
        ptr::null_mut()
    } else {
        ids.as_mut_ptr()
    };
    unsafe {
        lfm_tokenize(
            model(),
            text.as_ptr(),
            add_special_tokens,
            out,
            ids.len(),
            count,
        )
    }
}

fn token_count(text: &str) -> usize {
    let text = CString::new(text).unwrap();
    let mut count = 0;
    let status = tokenize(&text, false, &mut [], &mut count);
    assert!(matches!(status, LfmStatus::Ok | LfmStatus::BufferTooSmall));
    count
}

#[test]
fn greedy_generation_matches_the_reference() {
    let r = reference();
    let session = Session::new(0);
    let mut collected = Collected::default();
    let result = generate_ids(&session, &r.prompt_ids, 24, &mut collected);
    assert_eq!(collected.ids, r.greedy_ids);
    assert_eq!(result.prompt_tokens, r.prompt_ids.len());
    assert_eq!(result.generated_tokens, 24);
    assert_eq!(result.stop_reason, stop_code(StopReason::MaxTokens));
    assert_eq!(session.context(), (r.prompt_ids.len() + 24, 4096));
}

#[test]
fn a_generation_continues_where_the_last_one_stopped() {
    let whole = Session::new(0);
    let (all, _) = generate_text(&whole, "Return the array", 10);
    let split = Session::new(0);
    let (first, _) = generate_text(&split, "Return the array", 4);
    let (rest, result) = generate_text(&split, "", 6);
    assert_eq!([first, rest].concat(), all);
    assert_eq!(
        result.prompt_tokens, 1,
        "only the last generated token is fed"
    );
}

#[test]
fn tokenize_reports_the_size_it_needs() {
    let r = reference();
    let t = &r.tokenizations[0];
    let text = CString::new(t.text.as_str()).unwrap();
    let mut count = 0;
    let mut small = [0u32; 2];
    let status = tokenize(&text, true, &mut small, &mut count);
    assert_eq!(status, LfmStatus::BufferTooSmall);
    assert_eq!(count, t.ids.len());
    let mut ids = vec![0u32; count];
    let status = tokenize(&text, true, &mut ids, &mut count);
    assert_eq!(status, LfmStatus::Ok);
    assert_eq!(ids, t.ids);
    assert_eq!(token_count(&t.text), t.ids.len() - 1, "without bos");
}

#[test]
fn null_and_invalid_arguments_are_errors_not_crashes() {
    let mut model_out = ptr::dangling_mut();
    let status = unsafe { lfm_model_load(ptr::null(), ptr::null(), &mut model_out) };
    assert_eq!(status, LfmStatus::NullArgument);
    assert!(model_out.is_null(), "a failed load writes NULL");
    assert_eq!(last_error(), "path is NULL");

    let path = CString::new("/nonexistent/model").unwrap();
    let status = unsafe { lfm_model_load(path.as_ptr(), ptr::null(), &mut model_out) };
    assert_eq!(status, LfmStatus::Io);
    assert!(
        last_error().contains("/nonexistent/model"),
        "{}",
        last_error()
    );

    let bad_backend = LfmModelOptions {
        backend: 42,
        ..lfm_model_options_default()
    };
    let fixture = CString::new(fixture().to_str().unwrap()).unwrap();
    let status = unsafe { lfm_model_load(fixture.as_ptr(), &bad_backend, &mut model_out) };
    assert_eq!(status, LfmStatus::InvalidArgument);

    let session = Session::new(0);
    let status = unsafe {
        lfm_generate(
            session.0,
            ptr::null(),
            ptr::null(),
            None,
            ptr::null_mut(),
            ptr::null(),
            ptr::null_mut(),
        )
    };
    assert_eq!(status, LfmStatus::NullArgument);
    assert_eq!(last_error(), "prompt is NULL");
    let status = unsafe { lfm_session_context(ptr::null(), &mut 0, &mut 0) };
    assert_eq!(status, LfmStatus::NullArgument);
    let status = unsafe { lfm_session_reset(ptr::null_mut()) };
    assert_eq!(status, LfmStatus::NullArgument);
    unsafe {
        lfm_session_free(ptr::null_mut());
        lfm_model_free(ptr::null_mut());
    }

    let mut collected = Collected::default();
    let out_of_vocab = [1, 5000];
    let status = try_generate_tokens(
        &session,
        &out_of_vocab,
        None,
        Some(&mut collected),
        ptr::null(),
        ptr::null_mut(),
    );
    assert_eq!(status, LfmStatus::InvalidArgument);
    assert!(last_error().contains("5000"), "{}", last_error());
    assert_eq!(session.context().0, 0, "a refused call feeds nothing");

    let nan = LfmGenerateOptions {
        temperature: f32::NAN,
        ..options(4)
    };
    let status = try_generate_tokens(
        &session,
        &[1],
        Some(&nan),
        None,
        ptr::null(),
        ptr::null_mut(),
    );
    assert_eq!(status, LfmStatus::InvalidArgument);
    assert!(
        unsafe { CStr::from_ptr(lfm_version()) }.to_str().unwrap() == env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn callbacks_stop_and_cancels_land_before_the_next_pass() {
    let r = reference();
    let session = Session::new(0);
    let mut collected = Collected {
        stop_after: Some(3),
        ..Collected::default()
    };
    let result = generate_ids(&session, &r.prompt_ids, 24, &mut collected);
    assert_eq!(result.stop_reason, stop_code(StopReason::Callback));
    assert_eq!(collected.ids, r.greedy_ids[..3]);

    // A cancel flag already set: nothing is fed.
    unsafe { lfm_session_reset(session.0) };
    let cancel = 1i32;
    let result = generate_tokens(
        &session,
        &r.prompt_ids,
        options(24),
        &mut Collected::default(),
        &cancel,
    );
    assert_eq!(result.stop_reason, stop_code(StopReason::Cancelled));
    assert_eq!((result.prompt_tokens, session.context().0), (0, 0));

    // From inside the callback: re-entering the session is refused, cancelling is not.
    let mut collected = Collected {
        session: Some(session.0),
        ..Collected::default()
    };
    let result = generate_ids(&session, &r.prompt_ids, 24, &mut collected);
    assert_eq!(collected.reentrant_status, Some(LfmStatus::Busy));
    assert_eq!(result.stop_reason, stop_code(StopReason::Cancelled));
    assert_eq!(collected.ids, r.greedy_ids[..1]);
}

#[test]
fn a_full_context_stops_generation_then_refuses_prompts() {
    let r = reference();
    let capacity = r.prompt_ids.len() + 4;
    let session = Session::new(capacity as u32);
    let mut collected = Collected::default();
    let result = generate_ids(&session, &r.prompt_ids, 24, &mut collected);
    assert_eq!(result.stop_reason, stop_code(StopReason::ContextFull));
    // The fifth token is sampled from the fourth's logits and streamed, but the full
    // context cannot hold it.
    assert_eq!(collected.ids, r.greedy_ids[..5]);
    assert_eq!(session.context(), (capacity, capacity));
    let status = try_generate_tokens(&session, &[1], None, None, ptr::null(), ptr::null_mut());
    assert_eq!(status, LfmStatus::ContextFull);
}

#[test]
fn chat_turns_feed_only_what_they_add() {
    let session = Session::new(0);
    let (first, reply) = chat(&session, "Hi", 6);
    let opening = "<|startoftext|><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(first.prompt_tokens, token_count(opening));
    let ended = first.stop_reason == stop_code(StopReason::EndOfSequence);
    assert_eq!(
        session.context().0,
        first.prompt_tokens + first.generated_tokens
    );

    let (second, _) = chat(&session, "More", 6);
    let added = "<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n";
    let pending = usize::from(!ended && first.generated_tokens > 0);
    assert_eq!(
        second.prompt_tokens,
        pending + token_count(added),
        "reply was {reply:?}"
    );

    // Raw generation in between: the next turn keeps the cache up to the first
    // difference from the rendered conversation, and feeds the rest.
    let held = session.context().0;
    generate_text(&session, " and", 2);
    let (third, _) = chat(&session, "Again", 2);
    let kept = session.context().0 - third.prompt_tokens - third.generated_tokens;
    assert!(
        kept >= first.prompt_tokens && kept < held,
        "kept {kept} of {held}"
    );
}

#[test]
fn chat_add_and_template_errors() {
    let session = Session::new(0);
    let (system, prompt) = (
        CString::new("system").unwrap(),
        CString::new("Be brief.").unwrap(),
    );
    let status = unsafe { lfm_chat_add(session.0, system.as_ptr(), prompt.as_ptr()) };
    assert_eq!(status, LfmStatus::Ok);
    let (first, _) = chat(&session, "Hi", 2);
    let expected = "<|startoftext|><|im_start|>system\nBe brief.<|im_end|>\n\
                    <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(first.prompt_tokens, token_count(expected));

    let status = unsafe { lfm_chat_add(session.0, ptr::null(), prompt.as_ptr()) };
    assert_eq!(status, LfmStatus::NullArgument);
    assert_eq!(last_error(), "role is NULL");
}

#[test]
fn one_model_serves_sessions_on_several_threads() {
    let r = reference();
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let session = Session::new(0);
                let mut collected = Collected::default();
                generate_ids(&session, &r.prompt_ids, 8, &mut collected);
                assert_eq!(collected.ids, r.greedy_ids[..8]);
            });
        }
    });
}

/// `lfm_model_load` of the fixture with `options`: its status, and the model (NULL on
/// failure).
fn load_with(options: LfmModelOptions) -> (LfmStatus, *mut LfmModel) {
    let path = CString::new(fixture().to_str().unwrap()).unwrap();
    let mut model = ptr::dangling_mut();
    let status = unsafe { lfm_model_load(path.as_ptr(), &options, &mut model) };
    (status, model)
}

#[test]
fn a_vram_budget_holds_the_weights_and_every_session() {
    let load = |vram_budget_bytes| {
        load_with(LfmModelOptions {
            vram_budget_bytes,
            ..lfm_model_options_default()
        })
    };
    let (status, model) = load(1000);
    assert_eq!(status, LfmStatus::Budget);
    assert!(model.is_null());
    assert!(
        last_error().contains("VRAM budget of 1000 bytes"),
        "{}",
        last_error()
    );

    let weights = lfm_edge::budget::weight_file_bytes(&fixture()).unwrap();
    let (status, model) = load(weights + (1 << 20));
    assert_ok(status);
    let open = |context_length| Session::open(model, context_length);
    // Context 0: all the budget leaves; then nothing is left for another session.
    let (status, first) = open(0);
    assert_ok(status);
    let (_, capacity) = first.context();
    assert!((64..128_000).contains(&capacity), "{capacity}");
    let (status, second) = open(16);
    assert_eq!(status, LfmStatus::Budget, "{}", last_error());
    assert!(second.0.is_null());
    // Freeing a session gives its bytes back.
    drop(first);
    let (status, again) = open(0);
    assert_ok(status);
    assert_eq!(again.context().1, capacity);
    drop(again);
    unsafe { lfm_model_free(model) };
}

#[test]
fn sessions_share_the_models_kv_pool() {
    // Three blocks of 16 tokens for every session of the model.
    let (status, model) = load_with(LfmModelOptions {
        kv_pool_tokens: 48,
        ..lfm_model_options_default()
    });
    assert_ok(status);
    let prompt = reference().prompt_ids; // 16 tokens: one block
    let (status, first) = Session::open(model, 0);
    assert_ok(status);
    assert_eq!(first.context().1, 48, "context 0 is the pool's size");
    let generation = generate_ids(&first, &prompt, 8, &mut Collected::default());
    assert_eq!(generation.stop_reason, stop_code(StopReason::MaxTokens));

    // The first session holds two blocks: the second's prompt takes the last one, and
    // its first token finds the pool full.
    let (status, second) = Session::open(model, 0);
    assert_ok(status);
    let generation = generate_ids(&second, &prompt, 24, &mut Collected::default());
    assert_eq!(generation.stop_reason, stop_code(StopReason::ContextFull));
    assert_eq!(generation.generated_tokens, 1);
    let status = try_generate_tokens(&second, &[1, 2], None, None, ptr::null(), ptr::null_mut());
    assert_eq!(status, LfmStatus::ContextFull);
    assert!(last_error().contains("KV pool is full"), "{}", last_error());

    // Freeing the first session gives its blocks back.
    drop(first);
    let generation = generate_ids(&second, &[], 24, &mut Collected::default());
    assert_eq!(generation.stop_reason, stop_code(StopReason::MaxTokens));
    drop(second);
    unsafe { lfm_model_free(model) };
}

#[test]
fn a_saved_session_picks_the_conversation_up_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(dir.path().join("chat.lfm").to_str().unwrap()).unwrap();
    let original = Session::new(0);
    chat(&original, "Hi", 6);
    assert_ok(unsafe { lfm_session_save(original.0, path.as_ptr()) });

    let restored = Session::new(0);
    assert_ok(unsafe { lfm_session_load(restored.0, path.as_ptr()) });
    assert_eq!(restored.context(), original.context());
    // The next turn feeds only what it adds, in both, and they answer alike.
    let (want, want_text) = chat(&original, "More", 6);
    let (got, got_text) = chat(&restored, "More", 6);
    assert_eq!(got.prompt_tokens, want.prompt_tokens);
    assert!(got.prompt_tokens < 20, "{}", got.prompt_tokens);
    assert_eq!(got_text, want_text);
    assert_eq!(restored.context(), original.context());

    // A file that is not a session leaves the session as it was.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a session").unwrap();
    let junk = CString::new(junk.to_str().unwrap()).unwrap();
    let status = unsafe { lfm_session_load(restored.0, junk.as_ptr()) };
    assert_eq!(status, LfmStatus::InvalidArgument);
    assert!(
        last_error().contains("not an lfm-edge app session"),
        "{}",
        last_error()
    );
    assert_eq!(restored.context(), original.context());
    let missing = CString::new("/nonexistent/chat.lfm").unwrap();
    let status = unsafe { lfm_session_load(restored.0, missing.as_ptr()) };
    assert_eq!(status, LfmStatus::Io);
}

#[test]
fn options_are_read_as_long_as_their_struct_size_says() {
    let session = Session::new(0);
    for size in [0, 8, std::mem::size_of::<LfmGenerateOptions>() as u32 + 8] {
        let odd = LfmGenerateOptions {
            struct_size: size,
            ..options(4)
        };
        let status = try_generate_tokens(
            &session,
            &[1],
            Some(&odd),
            None,
            ptr::null(),
            ptr::null_mut(),
        );
        assert_eq!(status, LfmStatus::InvalidArgument);
        assert!(
            last_error().contains(&format!("lfm_generate_options.struct_size is {size}")),
            "{}",
            last_error()
        );
    }
    let bad_session = LfmSessionOptions {
        struct_size: 0,
        ..lfm_session_options_default()
    };
    let mut out = ptr::dangling_mut();
    let status = unsafe { lfm_session_new(model(), &bad_session, &mut out) };
    assert_eq!(status, LfmStatus::InvalidArgument);
    assert!(out.is_null());
    assert!(last_error().contains("lfm_session_options_default()"));
}

#[test]
fn quantized_gguf_files_load_and_stream_the_greedy_reference() {
    for name in GGUF_FIXTURES {
        stream_the_greedy_reference(name, gguf_fixture(name));
    }
}

/// Qwen3 and Ministral 3 go through the same C ABI as LFM2.
#[test]
fn other_architectures_load_and_stream_the_greedy_reference() {
    for name in ARCHITECTURE_FIXTURES {
        stream_the_greedy_reference(name, architecture_fixture(name));
    }
}

fn stream_the_greedy_reference(name: &str, f: GgufFixture) {
    let path = CString::new(f.path.to_str().unwrap()).unwrap();
    let mut model = ptr::null_mut();
    assert_ok(unsafe { lfm_model_load(path.as_ptr(), ptr::null(), &mut model) });
    let (status, session) = Session::open(model, 0);
    assert_ok(status);
    unsafe { lfm_model_free(model) };
    let mut collected = Collected::default();
    generate_tokens(
        &session,
        &f.prompt_ids,
        options(24),
        &mut collected,
        ptr::null(),
    );
    assert_eq!(collected.ids, f.greedy_ids, "{name}");
}

#[test]
fn stop_strings_end_the_generation_unstreamed() {
    let r = reference();
    let session = Session::new(0);
    let mut full = Collected::default();
    generate_tokens(&session, &r.prompt_ids, options(24), &mut full, ptr::null());
    let chars: Vec<char> = full.text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let stop_c = CString::new(stop.clone()).unwrap();
    let never = CString::new("\u{1F600}never\u{1F600}").unwrap();
    let stops = [never.as_ptr(), stop_c.as_ptr()];
    let with_stops = LfmGenerateOptions {
        stop_strings: stops.as_ptr(),
        n_stop_strings: stops.len(),
        ..options(24)
    };
    unsafe { lfm_session_reset(session.0) };
    let mut collected = Collected::default();
    let result = generate_tokens(
        &session,
        &r.prompt_ids,
        with_stops,
        &mut collected,
        ptr::null(),
    );
    assert_eq!(result.stop_reason, stop_code(StopReason::StopString));
    assert_eq!(collected.text, full.text[..full.text.find(&stop).unwrap()]);

    // A NULL array with a count is refused before anything runs.
    let missing = LfmGenerateOptions {
        n_stop_strings: 1,
        ..options(4)
    };
    unsafe { lfm_session_reset(session.0) };
    let status = try_generate_tokens(
        &session,
        &[1],
        Some(&missing),
        None,
        ptr::null(),
        ptr::null_mut(),
    );
    assert_eq!(status, LfmStatus::NullArgument);
    assert_eq!(session.context().0, 0);
}

#[test]
fn a_constraint_shapes_the_output_and_a_bad_one_is_refused() {
    let session = Session::new(0);
    let regex = CString::new("[0-9]{3}").unwrap();
    let constrained = LfmGenerateOptions {
        constraint_kind: CONSTRAINT_REGEX as _,
        constraint: regex.as_ptr(),
        ignore_eos: 0,
        ..options(16)
    };
    let mut collected = Collected::default();
    let result = generate_tokens(&session, &[1], constrained, &mut collected, ptr::null());
    assert_eq!(collected.text.len(), 3, "{:?}", collected.text);
    assert!(
        collected.text.chars().all(|c| c.is_ascii_digit()),
        "{:?}",
        collected.text
    );
    assert_eq!(result.stop_reason, stop_code(StopReason::EndOfSequence));
    // An app built against the first version of the struct: no constraint, whatever
    // lies past its end.
    let first_version = LfmGenerateOptions {
        struct_size: std::mem::offset_of!(LfmGenerateOptions, constraint_kind) as u32,
        ..constrained
    };
    let mut collected = Collected::default();
    generate_tokens(&session, &[1], first_version, &mut collected, ptr::null());
    assert_eq!(collected.ids.len(), 16);
    // Refusals, before any token and before the prompt is fed: the session is left as
    // it was.
    let held = session.context();
    let schema =
        CString::new(r#"{"type": "object", "properties": {"n": {"type": "intger"}}}"#).unwrap();
    for (kind, text, why) in [
        (
            CONSTRAINT_JSON_SCHEMA,
            schema.as_ptr(),
            "JSON schema at /properties/n: Invalid type: intger",
        ),
        (CONSTRAINT_LARK, regex.as_ptr(), "grammar"),
        (CONSTRAINT_REGEX, ptr::null(), "constraint"),
        (
            9,
            regex.as_ptr(),
            "constraint_kind 9 is not an lfm_constraint_kind",
        ),
    ] {
        let bad = LfmGenerateOptions {
            constraint_kind: kind as _,
            constraint: text,
            ..options(4)
        };
        let mut collected = Collected::default();
        let mut result = LfmGeneration::default();
        let status = try_generate_tokens(
            &session,
            &[1],
            Some(&bad),
            Some(&mut collected),
            ptr::null(),
            &mut result,
        );
        assert_ne!(status, LfmStatus::Ok);
        assert!(last_error().contains(why), "{}", last_error());
        assert!(collected.ids.is_empty());
        assert_eq!(session.context(), held, "{why}");
    }
}
