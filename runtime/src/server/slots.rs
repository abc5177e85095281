//! The server's sessions, sharing one KV pool. A request takes the idle session whose
//! cache shares the longest prefix with its prompt (so a conversation that goes on
//! lands where its earlier turns are cached and feeds only its new turn), else an empty
//! one, else the least recently used; it gives the session back when its answer ends,
//! whatever became of the request. When the pool has no block left for a busy session,
//! the least recently used idle session holding blocks is emptied for it.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::kv_pool::KvPool;
use crate::session::Session;

/// A prompt as a request gives it.
pub enum Prompt {
    /// A rendered conversation: special tokens as text, none to add.
    Text(String),
    /// Token ids (a completion's prompt, encoded with the tokenizer's special tokens).
    Ids(Vec<u32>),
}

struct Slot {
    /// Locked by the request that holds it, else only under the table's lock.
    session: Arc<Mutex<Session>>,
    busy: bool,
    /// The text of the tokens it holds, to find the conversation a prompt continues.
    text: String,
    /// When it was last given back (a tick of `Table::clock`).
    used: u64,
}

struct Table {
    slots: Vec<Slot>,
    clock: u64,
}

pub struct Slots {
    pool: Arc<KvPool>,
    table: Mutex<Table>,
    /// One permit per session: requests wait here, first come first served, for one.
    permits: Arc<Semaphore>,
}

/// A session taken for one request; dropping it gives the session back.
pub struct Lease {
    slots: Arc<Slots>,
    index: usize,
    session: Arc<Mutex<Session>>,
    _permit: OwnedSemaphorePermit,
}

/// A request that panicked while holding a lock left what it guards usable: the table
/// changes by single assignments, and a session is consistent between forward passes.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slots {
    pub fn new(pool: Arc<KvPool>, sessions: Vec<Session>) -> Slots {
        let permits = Arc::new(Semaphore::new(sessions.len()));
        let slots = sessions
            .into_iter()
            .map(|session| Slot {
                session: Arc::new(Mutex::new(session)),
                busy: false,
                text: String::new(),
                used: 0,
            })
            .collect();
        Slots {
            pool,
            table: Mutex::new(Table { slots, clock: 0 }),
            permits,
        }
    }

    pub fn permits(&self) -> &Arc<Semaphore> {
        &self.permits
    }

    pub fn pool(&self) -> &Arc<KvPool> {
        &self.pool
    }

    /// Sessions, and how many requests hold one now.
    pub fn counts(&self) -> (usize, usize) {
        let table = lock(&self.table);
        let busy = table.slots.iter().filter(|s| s.busy).count();
        (table.slots.len(), busy)
    }

    /// The session for `prompt` (`ids`: the prompt encoded whole), with the permit that
    /// says one is idle.
    pub fn take(
        self: &Arc<Self>,
        prompt: &Prompt,
        ids: &[u32],
        permit: OwnedSemaphorePermit,
    ) -> Result<Lease> {
        let mut table = lock(&self.table);
        let candidates: Vec<Candidate> = (table.slots.iter().enumerate())
            .filter(|(_, slot)| !slot.busy)
            .map(|(index, slot)| {
                let session = lock(&slot.session);
                let continues = match prompt {
                    Prompt::Text(text) => !slot.text.is_empty() && text.starts_with(&slot.text),
                    Prompt::Ids(_) => false,
                };
                // Continuing the text it holds, a session keeps all its tokens.
                let reused = match continues {
                    true => session.position(),
                    false => session.reusable_prefix(ids),
                };
                Candidate {
                    index,
                    reused,
                    empty: session.position() == 0,
                    used: slot.used,
                }
            })
            .collect();
        let index = choose(&candidates)
            .ok_or_else(|| Error::Gpu("a permit was granted but no session is idle".into()))?;
        let slot = &mut table.slots[index];
        slot.busy = true;
        Ok(Lease {
            slots: self.clone(),
            index,
            session: slot.session.clone(),
            _permit: permit,
        })
    }

    /// Frees KV blocks until `needed` are free, emptying the least recently used idle
    /// sessions that hold some; false when those run out first.
    pub fn make_room(&self, needed: usize) -> bool {
        if self.pool.free_blocks() >= needed {
            return true;
        }
        let mut table = lock(&self.table);
        while self.pool.free_blocks() < needed {
            let victim = (table.slots.iter_mut())
                .filter(|s| !s.busy && lock(&s.session).position() > 0)
                .min_by_key(|s| s.used);
            let Some(slot) = victim else {
                return false;
            };
            let mut session = lock(&slot.session);
            log::debug!("evicting an idle session of {} tokens", session.position());
            session.reset();
            slot.text.clear();
        }
        true
    }

    fn give_back(&self, index: usize, text: String) {
        let mut table = lock(&self.table);
        table.clock += 1;
        let used = table.clock;
        let slot = &mut table.slots[index];
        slot.busy = false;
        slot.text = text;
        slot.used = used;
    }
}

impl Lease {
    /// The session, for this request alone.
    pub fn session(&self) -> MutexGuard<'_, Session> {
        lock(&self.session)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The text of what it holds, for the next request to recognise.
        let text = {
            let session = lock(&self.session);
            (session.model().tokenizer)
                .decode(session.tokens(), false)
                .unwrap_or_default()
        };
        self.slots.give_back(self.index, text);
    }
}

/// An idle session as a prompt sees it.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    index: usize,
    /// Prompt tokens its cache would keep.
    reused: usize,
    empty: bool,
    used: u64,
}

/// The session that keeps the most of the prompt; among equals an empty one (no
/// conversation is lost), then the least recently used.
fn choose(candidates: &[Candidate]) -> Option<usize> {
    (candidates.iter())
        .max_by_key(|c| (c.reused, c.empty, std::cmp::Reverse(c.used)))
        .map(|c| c.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(index: usize, reused: usize, empty: bool, used: u64) -> Candidate {
        Candidate {
            index,
            reused,
            empty,
            used,
        }
    }

    #[test]
    fn the_longest_prefix_then_an_empty_session_then_the_least_recently_used() {
        let longest = [candidate(0, 3, false, 1), candidate(1, 40, false, 9)];
        assert_eq!(choose(&longest), Some(1));
        let empty = [candidate(0, 0, false, 1), candidate(1, 0, true, 9)];
        assert_eq!(choose(&empty), Some(1));
        let oldest = [candidate(0, 0, false, 7), candidate(1, 0, false, 2)];
        assert_eq!(choose(&oldest), Some(1));
        assert_eq!(choose(&[]), None);
    }
}
