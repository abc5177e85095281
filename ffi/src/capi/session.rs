//! Opening, resetting, cancelling and freeing sessions.

use std::ffi::c_char;
use std::path::Path;
use std::ptr;

use super::boundary::{call, free_box, out_arg, ref_arg, str_arg};
use super::types::{options_arg, LfmModel, LfmSession, LfmSessionOptions};
use crate::chat_session::ChatSession;
use crate::error::{FfiResult, LfmStatus};
use crate::shared_session::SharedSession;

/// # Safety
/// `model` is a live handle; `options` is NULL (defaults) or a live struct of at least
/// its `struct_size` bytes;
/// `out_session` points to writable storage for the handle (NULL is written on failure).
#[no_mangle]
pub unsafe extern "C" fn lfm_session_new(
    model: *const LfmModel,
    options: *const LfmSessionOptions,
    out_session: *mut *mut LfmSession,
) -> LfmStatus {
    call(|| {
        let out = out_arg(out_session, "out_session")?;
        out.write(ptr::null_mut());
        let model = ref_arg(model, "model")?;
        let options = options_arg(options)?;
        let chat = model
            .0
            .open_session(options.context_length, options.batch)?;
        out.write(Box::into_raw(Box::new(LfmSession(SharedSession::new(
            chat,
        )))));
        Ok(())
    })
}

/// # Safety
/// `session` is NULL (nothing happens) or a handle from `lfm_session_new` that no call
/// is using, freed once.
#[no_mangle]
pub unsafe extern "C" fn lfm_session_free(session: *mut LfmSession) {
    free_box(session)
}

/// # Safety
/// `session` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn lfm_session_reset(session: *mut LfmSession) -> LfmStatus {
    call(|| {
        ref_arg(session, "session")?.0.lock()?.reset();
        Ok(())
    })
}

/// # Safety
/// `session` is a live handle; `path` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lfm_session_save(
    session: *mut LfmSession,
    path: *const c_char,
) -> LfmStatus {
    with_file(session, path, |chat, path| chat.save(path))
}

/// # Safety
/// `session` is a live handle; `path` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn lfm_session_load(
    session: *mut LfmSession,
    path: *const c_char,
) -> LfmStatus {
    with_file(session, path, ChatSession::load)
}

/// `op` on the session and the file at `path`, checked as `lfm_session_save` says.
unsafe fn with_file(
    session: *mut LfmSession,
    path: *const c_char,
    op: impl FnOnce(&mut ChatSession, &Path) -> FfiResult<()>,
) -> LfmStatus {
    call(|| {
        let session = &ref_arg(session, "session")?.0;
        let path = str_arg(path, "path")?;
        op(&mut *session.lock()?, Path::new(path))
    })
}

/// # Safety
/// `session` is a live handle; this is the one call that may run while another call
/// uses the session.
#[no_mangle]
pub unsafe extern "C" fn lfm_session_cancel(session: *const LfmSession) -> LfmStatus {
    call(|| {
        ref_arg(session, "session")?.0.cancel();
        Ok(())
    })
}

/// # Safety
/// `session` is a live handle; `out_used` and `out_capacity` are writable.
#[no_mangle]
pub unsafe extern "C" fn lfm_session_context(
    session: *const LfmSession,
    out_used: *mut usize,
    out_capacity: *mut usize,
) -> LfmStatus {
    call(|| {
        let used = out_arg(out_used, "out_used")?;
        let capacity = out_arg(out_capacity, "out_capacity")?;
        let chat = ref_arg(session, "session")?.0.lock()?;
        used.write(chat.tokens_held());
        capacity.write(chat.capacity());
        Ok(())
    })
}
