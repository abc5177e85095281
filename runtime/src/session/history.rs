//! A session's history: keeping a cached prefix, rewinding, forking, shifting a full
//! context, and what a restore needs.

use super::Session;
use crate::error::{Error, Result};
use crate::kv_pool::PassContext;
use crate::ops::KvShift;

impl Session {
    /// Makes the cache hold exactly `tokens` and returns the logits of the last one:
    /// the longest prefix the cache already holds is kept (a new chat turn feeds only
    /// what it adds), the rest is rewound and fed.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        self.prefill_until(tokens, &|| false)
    }

    /// As [`Session::prefill`], polling `cancelled` before each batch fed
    /// ([`Session::feed_until`]).
    pub fn prefill_until(
        &mut self,
        tokens: &[u32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::Input("no tokens to feed (empty prompt)".into()));
        }
        let start = self.reusable_prefix(tokens);
        if start == 0 {
            self.reset();
            return self.feed_until(tokens, cancelled);
        }
        if start < self.position() {
            self.restore_snapshot(start)?;
            self.truncate(start);
        }
        log::debug!(
            "prefill: {start} of {} tokens cached, feeding the rest",
            tokens.len()
        );
        self.feed_until(&tokens[start..], cancelled)
    }

    /// How many of `tokens` [`Session::prefill`] keeps without feeding them again: the
    /// prefix the cache shares with them (never all of them: the last one is fed for
    /// its logits), back to the conv-state snapshot at or before it unless the cache
    /// holds nothing past it.
    pub fn reusable_prefix(&self, tokens: &[u32]) -> usize {
        let common = (self.tokens.iter().zip(tokens))
            .take_while(|(a, b)| a == b)
            .count();
        let keep = common.min(tokens.len().saturating_sub(1));
        if keep < self.floor {
            return 0;
        }
        if keep == self.position() {
            // The conv state is the one after the last cached token: nothing to restore.
            return keep;
        }
        let interval = self.options.snapshot_interval;
        (keep / interval * interval).max(self.floor)
    }

    /// Makes the cache hold `text`, a rendered conversation (special tokens included,
    /// none added), and returns the logits of its last token. When `text` starts with
    /// the text of the tokens the cache holds, those tokens are kept as they are and
    /// only the rest is encoded: sampled tokens need not be how the tokenizer would
    /// split their text, and re-encoding the answer of a previous turn would otherwise
    /// lose the cache from its first difference.
    pub fn prefill_text(&mut self, text: &str) -> Result<Vec<f32>> {
        self.prefill_text_until(text, &|| false)
    }

    /// As [`Session::prefill_text`], polling `cancelled` before each batch fed.
    pub fn prefill_text_until(
        &mut self,
        text: &str,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Vec<f32>> {
        let ids = self.encode_continuation(text)?;
        self.prefill_until(&ids, cancelled)
    }

    /// The ids [`Session::prefill_text`] makes the cache hold for `text`: the cached
    /// tokens followed by the rest encoded, when `text` starts with their text; else
    /// `text` encoded whole.
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>> {
        let tokenizer = &self.model.tokenizer;
        let held = tokenizer.decode(self.tokens(), false)?;
        match text.strip_prefix(held.as_str()) {
            Some(rest) if !held.is_empty() && !rest.is_empty() => {
                let mut ids = self.tokens().to_vec();
                ids.extend(tokenizer.encode_with(rest, false)?);
                Ok(ids)
            }
            _ => tokenizer.encode_with(text, false),
        }
    }

    /// Forgets the tokens after position `to`, as if only the first `to` had been fed.
    pub fn rewind(&mut self, to: usize) -> Result<()> {
        self.settle()?;
        if to > self.position() {
            return Err(Error::Input(format!(
                "cannot rewind to position {to}: the session holds {} tokens",
                self.position()
            )));
        }
        if to < self.floor {
            return Err(Error::Input(format!(
                "cannot rewind to position {to}: a context shift dropped the tokens before {}",
                self.floor
            )));
        }
        if to == self.position() {
            return Ok(());
        }
        let start = self.restore_snapshot(to)?;
        let again = self.tokens[start..to].to_vec();
        self.truncate(start);
        if !again.is_empty() {
            self.feed(&again)?;
        }
        Ok(())
    }

    /// Restores the conv state of the latest snapshot at or before `to` (>= the floor)
    /// and returns its position: the caller truncates the tokens there, and feeds again
    /// those from it to `to`.
    fn restore_snapshot(&mut self, to: usize) -> Result<usize> {
        let interval = self.options.snapshot_interval;
        let aligned = to / interval * interval;
        let (slot, start) = if aligned > self.floor {
            (aligned / interval, aligned)
        } else {
            (0, self.floor)
        };
        let gpu = &self.model.gpu;
        let size = self.state.conv_state_bytes(&self.model.config);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for conv in self.state.conv_layers() {
            encoder.copy_buffer_to_buffer(conv.snapshots, slot as u64 * size, conv.state, 0, size);
        }
        gpu.queue.submit([encoder.finish()]);
        Ok(start)
    }

    /// Forgets the tokens from position `to` on, and the KV blocks past them.
    fn truncate(&mut self, to: usize) {
        self.tokens.truncate(to);
        self.pages.truncate(to);
    }

    /// A new session holding the same tokens, which then goes its own way: it shares
    /// the KV blocks (each copied only when one of the two writes into it) and gets a
    /// copy of the conv state and its snapshots. A fork of a session with a pool of its
    /// own gets a pool of its own too.
    pub fn fork(&self) -> Result<Session> {
        let mut other = if self.own_pool {
            Session::new(self.model.clone(), &self.options)?
        } else {
            Session::new_in(self.pages.pool(), self.model.clone(), &self.options)?
        };
        if other.max_context() != self.max_context() {
            // A VRAM budget fitted the fork a shorter context than its parent's.
            let budget = self.model.vram_budget().map_or(0, |b| b.total());
            return Err(Error::Budget {
                budget,
                message: format!(
                    "a fork needs a context of {} tokens like its parent; what is left holds {}",
                    self.max_context(),
                    other.max_context()
                ),
            });
        }
        let gpu = &self.model.gpu;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        if self.own_pool {
            // Separate pools: the cache rows are copied.
            let context = PassContext {
                gpu,
                step_group: &other.step_group,
                rope_table: &other.state.rope_table,
            };
            let pos = self.position();
            other.pages.prepare_write(0, pos, &mut encoder, &context)?;
            let rows = self.pages.row_ranges(pos).into_iter();
            let runs: Vec<_> = rows.zip(other.pages.row_ranges(pos)).collect();
            let pools = self.kv_pool().layers().iter().zip(other.kv_pool().layers());
            for ((k, v), (k2, v2)) in pools {
                for (from, to) in [(k, k2), (v, v2)] {
                    for &((src, size), (dst, _)) in &runs {
                        encoder.copy_buffer_to_buffer(from, src, to, dst, size);
                    }
                }
            }
        } else {
            other.pages.share_blocks_of(&self.pages)?;
        }
        let conv = self.conv_states().zip(self.state.conv_layers());
        for ((state, from), to) in conv.zip(other.state.conv_layers()) {
            encoder.copy_buffer_to_buffer(state, 0, to.state, 0, state.size());
            let snapshots = from.snapshots;
            encoder.copy_buffer_to_buffer(snapshots, 0, to.snapshots, 0, snapshots.size());
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.check()?;
        other.tokens = self.tokens.clone();
        other.floor = self.floor;
        Ok(other)
    }

    /// Empties the session and gives it KV blocks for `rows` positions (a restore).
    pub(crate) fn reserve(&mut self, rows: usize) -> Result<()> {
        self.reset();
        let gpu = &self.model.gpu;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let context = PassContext {
            gpu,
            step_group: &self.step_group,
            rope_table: &self.state.rope_table,
        };
        self.pages.prepare_write(0, rows, &mut encoder, &context)?;
        gpu.queue.submit([encoder.finish()]);
        Ok(())
    }

    /// Restores what a saved session held (see `file.rs`).
    pub(crate) fn set_restored(&mut self, tokens: Vec<u32>, floor: usize) {
        self.tokens = tokens;
        self.floor = floor;
    }

    /// Makes room for `needed` more tokens by dropping cached tokens after the first
    /// `shift_keep`: cache rows move down and keys turn back to their new positions.
    pub(super) fn shift(&mut self, needed: usize) -> Result<()> {
        let (pos, capacity) = (self.position(), self.max_context());
        let keep = self.options.shift_keep.min(pos);
        let deficit = (pos + needed).saturating_sub(capacity);
        let discard = ((pos - keep) / 2).max(deficit);
        if discard > pos - keep {
            return Err(Error::Input(format!(
                "the context of {capacity} tokens is full and cannot make room by shifting: it must \
                 hold the {keep} tokens kept at its start plus the {needed} tokens fed at once; \
                 give a longer context"
            )));
        }
        let gpu = &*self.model.gpu;
        let moved = pos - keep - discard;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let context = PassContext {
            gpu,
            step_group: &self.step_group,
            rope_table: &self.state.rope_table,
        };
        // The moved rows' destination must be this session's alone.
        self.pages
            .prepare_write(keep, keep + moved, &mut encoder, &context)?;
        let pool = self.pages.pool();
        let mut moves = Vec::new();
        for (k_cache, v_cache) in pool.layers() {
            for (cache, rotate) in [(k_cache, true), (v_cache, false)] {
                // At most `discard` rows per launch: source and destination stay apart.
                for done in (0..moved).step_by(discard.max(1)) {
                    let shift = KvShift {
                        src: keep + discard + done,
                        dst: keep + done,
                        rows: discard.min(moved - done),
                        rotate,
                    };
                    let table = &self.state.rope_table;
                    moves.push(pool.shift(table, &self.pages.buffer, cache, shift)?);
                }
            }
        }
        context.encode(&mut encoder, "context shift", &moves);
        // The conv state is that of the last token, wherever it now sits: it becomes
        // the state a rewind to the new floor restores.
        let size = self.state.conv_state_bytes(&self.model.config);
        for conv in self.state.conv_layers() {
            encoder.copy_buffer_to_buffer(conv.state, 0, conv.snapshots, 0, size);
        }
        gpu.queue.submit([encoder.finish()]);
        gpu.check()?;
        self.tokens.drain(keep..keep + discard);
        self.pages.truncate(self.tokens.len());
        self.floor = self.position();
        log::info!("context shift: dropped {discard} tokens after the first {keep}");
        Ok(())
    }
}
