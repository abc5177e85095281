//! Loading and freeing a model, and tokenizing with its tokenizer.

use std::ffi::c_char;
use std::ptr;

use super::boundary::{call, free_box, out_arg, ref_arg, str_arg};
use super::types::{options_arg, LfmModel, LfmModelOptions};
use crate::error::{FfiError, LfmStatus};
use crate::model::{load_model, tokenize};

/// # Safety
/// `path` is a NUL-terminated string; `options` is NULL (defaults) or a live struct of
/// at least its `struct_size` bytes;
/// `out_model` points to writable storage for the handle (NULL is written on failure).
#[no_mangle]
pub unsafe extern "C" fn lfm_model_load(
    path: *const c_char,
    options: *const LfmModelOptions,
    out_model: *mut *mut LfmModel,
) -> LfmStatus {
    call(|| {
        let out = out_arg(out_model, "out_model")?;
        out.write(ptr::null_mut());
        let path = str_arg(path, "path")?;
        let options = options_arg(options)?.to_load_options()?;
        let model = load_model(path, &options)?;
        out.write(Box::into_raw(Box::new(LfmModel(model))));
        Ok(())
    })
}

/// # Safety
/// `model` is NULL (nothing happens) or a handle from `lfm_model_load`, freed once.
#[no_mangle]
pub unsafe extern "C" fn lfm_model_free(model: *mut LfmModel) {
    free_box(model)
}

/// # Safety
/// `model` is a live handle; `text` a NUL-terminated string; `out_tokens` has room for
/// `capacity` ids (NULL allowed when `capacity` is 0); `out_count` is writable.
#[no_mangle]
pub unsafe extern "C" fn lfm_tokenize(
    model: *const LfmModel,
    text: *const c_char,
    add_special_tokens: bool,
    out_tokens: *mut u32,
    capacity: usize,
    out_count: *mut usize,
) -> LfmStatus {
    call(|| {
        let count = out_arg(out_count, "out_count")?;
        let model = ref_arg(model, "model")?;
        let text = str_arg(text, "text")?;
        if out_tokens.is_null() && capacity > 0 {
            return Err(FfiError::Null("out_tokens"));
        }
        let ids = tokenize(&model.0.model, text, add_special_tokens)?;
        count.write(ids.len());
        if ids.len() > capacity {
            return Err(FfiError::BufferTooSmall {
                needed: ids.len(),
                capacity,
                what: "tokens",
            });
        }
        if !ids.is_empty() {
            ptr::copy_nonoverlapping(ids.as_ptr(), out_tokens, ids.len());
        }
        Ok(())
    })
}
