//! What every C entry point shares: the panic guard, the per-thread error message, and
//! checked conversions of pointer arguments.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;

use crate::error::{FfiError, FfiResult, LfmStatus};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs the body of an entry point: a panic becomes `LFM_ERROR_INTERNAL`, and any
/// failure leaves its message for `lfm_last_error_message`.
pub(crate) fn call(body: impl FnOnce() -> FfiResult<()>) -> LfmStatus {
    let result = panic::catch_unwind(AssertUnwindSafe(body))
        .unwrap_or_else(|payload| Err(FfiError::from_panic(&*payload)));
    match result {
        Ok(()) => LfmStatus::Ok,
        Err(error) => {
            let message = CString::new(error.to_string().replace('\0', " ")).unwrap_or_default();
            LAST_ERROR.with(|last| *last.borrow_mut() = message);
            error.status()
        }
    }
}

/// The message of the last call that failed on this thread ("" if none): valid until
/// the next failing call on this thread.
#[no_mangle]
pub extern "C" fn lfm_last_error_message() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// The library's version, e.g. "0.1.0" (static storage).
#[no_mangle]
pub extern "C" fn lfm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// # Safety
/// `ptr` is NULL or a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, name: &'static str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::Null(name));
    }
    CStr::from_ptr(ptr)
        .to_str()
        .map_err(|_| FfiError::InvalidArgument(format!("{name} is not valid UTF-8")))
}

/// # Safety
/// `ptr` is NULL or points to a live `T` that outlives `'a`.
pub(crate) unsafe fn ref_arg<'a, T>(ptr: *const T, name: &'static str) -> FfiResult<&'a T> {
    ptr.as_ref().ok_or(FfiError::Null(name))
}

/// An output pointer, checked before any work is done.
pub(crate) fn out_arg<T>(ptr: *mut T, name: &'static str) -> FfiResult<NonNull<T>> {
    NonNull::new(ptr).ok_or(FfiError::Null(name))
}

/// Frees a handle made by `Box::into_raw` under the panic guard; NULL: nothing happens.
///
/// # Safety
/// `ptr` is NULL or a live handle made by `Box::into_raw`, freed once.
pub(crate) unsafe fn free_box<T>(ptr: *mut T) {
    if !ptr.is_null() {
        call(|| {
            drop(Box::from_raw(ptr));
            Ok(())
        });
    }
}
