//! A session as the C and JNI boundaries hold it: one call at a time, and a cancel
//! that any thread may raise while a call runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

use crate::chat_session::ChatSession;
use crate::error::{FfiError, FfiResult};

pub struct SharedSession {
    chat: Mutex<ChatSession>,
    cancel: AtomicBool,
}

impl SharedSession {
    pub fn new(chat: ChatSession) -> SharedSession {
        SharedSession {
            chat: Mutex::new(chat),
            cancel: AtomicBool::new(false),
        }
    }

    /// The session for one call, refused rather than waited for when another call (on
    /// another thread, or a token callback re-entering) holds it: waiting could deadlock.
    /// Clears a cancel left from before this call.
    pub fn lock(&self) -> FfiResult<MutexGuard<'_, ChatSession>> {
        let guard = match self.chat.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => return Err(FfiError::Busy),
            Err(TryLockError::Poisoned(_)) => {
                return Err(FfiError::Internal(
                    "the session was left unusable by an earlier internal error; free it".into(),
                ))
            }
        };
        self.cancel.store(false, Ordering::Release);
        Ok(guard)
    }

    /// Stops the call running on the session before its next forward pass.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
}
