//! Generation and chat: options, the token callback and the cancel flags, bridged to
//! the shared [`ChatSession`].

use std::ffi::{c_char, c_void};
use std::slice;
use std::sync::atomic::{AtomicI32, Ordering};

use lfm_edge::GenerateOptions;

use super::boundary::{call, ref_arg, str_arg};
use super::types::{
    options_arg, LfmGenerateOptions, LfmGeneration, LfmSession, LfmTokenCallback, TOKEN_NONE,
};
use crate::chat_session::{ChatSession, Outcome, Stream};
use crate::error::{FfiError, FfiResult, LfmStatus};

/// The arguments every generating entry point takes after its input, in its order:
/// the session, the options, the token callback and its user data, the caller's cancel
/// flag and the result to fill.
struct GenerateArgs(
    *mut LfmSession,
    *const LfmGenerateOptions,
    LfmTokenCallback,
    *mut c_void,
    *const i32,
    *mut LfmGeneration,
);

impl GenerateArgs {
    /// What every generating call does around its body: lock the session, bridge the
    /// callback and both cancel flags (the caller's and `lfm_session_cancel`'s), report.
    ///
    /// # Safety
    /// The pointer arguments are as the calling entry point documents them.
    unsafe fn run(
        self,
        body: impl FnOnce(&mut ChatSession, &GenerateOptions, Stream) -> FfiResult<Outcome>,
    ) -> FfiResult<()> {
        let GenerateArgs(session, options, on_token, user_data, cancel, out_result) = self;
        let session = &ref_arg(session, "session")?.0;
        let options = options_arg(options)?.to_options()?;
        let mut chat = session.lock()?;
        // The caller writes the flag from any thread while we read it: read it atomically.
        let flag = (!cancel.is_null()).then(|| AtomicI32::from_ptr(cancel.cast_mut()));
        let cancelled =
            || session.cancelled() || flag.is_some_and(|f| f.load(Ordering::Acquire) != 0);
        let mut deliver = |text: &str, token: Option<u32>| match on_token {
            Some(callback) => {
                let mut bytes = Vec::with_capacity(text.len() + 1);
                bytes.extend_from_slice(text.as_bytes());
                bytes.push(0);
                let token = token.unwrap_or(TOKEN_NONE);
                callback(bytes.as_ptr().cast(), text.len(), token, user_data)
            }
            None => true,
        };
        let stream = Stream {
            cancelled: &cancelled,
            on_token: &mut deliver,
        };
        let outcome = body(&mut chat, &options, stream)?;
        if let Some(out) = out_result.as_mut() {
            *out = LfmGeneration::from(&outcome);
        }
        Ok(())
    }
}

/// # Safety
/// `session` is a live handle; `prompt` a NUL-terminated string; `options` NULL or a
/// live struct of at least its `struct_size` bytes (its stop strings live and
/// NUL-terminated); `cancel` NULL or an int32_t that stays valid for the call;
/// `out_result` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn lfm_generate(
    session: *mut LfmSession,
    prompt: *const c_char,
    options: *const LfmGenerateOptions,
    on_token: LfmTokenCallback,
    user_data: *mut c_void,
    cancel: *const i32,
    out_result: *mut LfmGeneration,
) -> LfmStatus {
    let args = GenerateArgs(session, options, on_token, user_data, cancel, out_result);
    call(|| {
        let prompt = str_arg(prompt, "prompt")?;
        args.run(|chat, options, stream| chat.generate_text(prompt, options, stream))
    })
}

/// # Safety
/// As `lfm_generate`, with `tokens` pointing to `n_tokens` ids (NULL allowed when
/// `n_tokens` is 0).
#[no_mangle]
pub unsafe extern "C" fn lfm_generate_tokens(
    session: *mut LfmSession,
    tokens: *const u32,
    n_tokens: usize,
    options: *const LfmGenerateOptions,
    on_token: LfmTokenCallback,
    user_data: *mut c_void,
    cancel: *const i32,
    out_result: *mut LfmGeneration,
) -> LfmStatus {
    let args = GenerateArgs(session, options, on_token, user_data, cancel, out_result);
    call(|| {
        let tokens = match (tokens.is_null(), n_tokens) {
            (true, 0) => &[][..],
            (true, _) => return Err(FfiError::Null("tokens")),
            (false, n) => slice::from_raw_parts(tokens, n),
        };
        args.run(|chat, options, stream| chat.generate_tokens(tokens, options, stream))
    })
}

/// # Safety
/// `session` is a live handle; `role` and `content` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn lfm_chat_add(
    session: *mut LfmSession,
    role: *const c_char,
    content: *const c_char,
) -> LfmStatus {
    call(|| {
        let session = &ref_arg(session, "session")?.0;
        let role = str_arg(role, "role")?;
        let content = str_arg(content, "content")?;
        session.lock()?.add_message(role, content);
        Ok(())
    })
}

/// # Safety
/// As `lfm_generate`, with `role` and `content` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn lfm_chat(
    session: *mut LfmSession,
    role: *const c_char,
    content: *const c_char,
    options: *const LfmGenerateOptions,
    on_token: LfmTokenCallback,
    user_data: *mut c_void,
    cancel: *const i32,
    out_result: *mut LfmGeneration,
) -> LfmStatus {
    let args = GenerateArgs(session, options, on_token, user_data, cancel, out_result);
    call(|| {
        let role = str_arg(role, "role")?;
        let content = str_arg(content, "content")?;
        args.run(|chat, options, stream| chat.chat(role, content, options, stream))
    })
}
