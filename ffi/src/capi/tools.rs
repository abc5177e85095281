//! Tools for chat turns and the calls of the last reply, over [`ChatSession`]'s, which
//! are the library's `ToolUse`.
//!
//! [`ChatSession`]: crate::chat_session::ChatSession

use std::ffi::c_char;
use std::ptr;

use super::boundary::{call, out_arg, ref_arg, str_arg};
use super::types::LfmSession;
use crate::error::{FfiError, FfiResult, LfmStatus};

/// # Safety
/// `session` is a live handle; `tools_json` and `tool_choice` are NULL or NUL-terminated
/// strings.
#[no_mangle]
pub unsafe extern "C" fn lfm_chat_set_tools(
    session: *mut LfmSession,
    tools_json: *const c_char,
    tool_choice: *const c_char,
) -> LfmStatus {
    call(|| {
        let session = &ref_arg(session, "session")?.0;
        let tools = optional_str(tools_json, "tools_json")?;
        let choice = optional_str(tool_choice, "tool_choice")?.unwrap_or("auto");
        session.lock()?.set_tools(tools, choice)
    })
}

/// # Safety
/// `session` is a live handle; `out_json` has room for `capacity` bytes (NULL allowed
/// when `capacity` is 0); `out_size` is writable.
#[no_mangle]
pub unsafe extern "C" fn lfm_chat_tool_calls(
    session: *const LfmSession,
    out_json: *mut c_char,
    capacity: usize,
    out_size: *mut usize,
) -> LfmStatus {
    call(|| {
        let size = out_arg(out_size, "out_size")?;
        let session = &ref_arg(session, "session")?.0;
        if out_json.is_null() && capacity > 0 {
            return Err(FfiError::Null("out_json"));
        }
        let json = session.lock()?.tool_calls_json();
        // serde_json escapes a NUL in a string, so the text holds none of its own.
        let text = json.into_bytes();
        size.write(text.len() + 1);
        if text.len() + 1 > capacity {
            return Err(FfiError::BufferTooSmall {
                needed: text.len() + 1,
                capacity,
                what: "bytes",
            });
        }
        ptr::copy_nonoverlapping(text.as_ptr(), out_json.cast::<u8>(), text.len());
        out_json.add(text.len()).write(0);
        Ok(())
    })
}

/// # Safety
/// `ptr` is NULL or a NUL-terminated string that outlives `'a`.
unsafe fn optional_str<'a>(ptr: *const c_char, name: &'static str) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    str_arg(ptr, name).map(Some)
}
