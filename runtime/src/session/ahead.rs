//! Greedy decoding one step ahead, so that the GPU does not wait for the CPU between
//! greedy tokens. The argmax of a step leaves the picked id where the next step's
//! embedding reads it, so the next step needs nothing from the CPU but its position:
//! it is recorded and submitted right behind the step before, whose pick is then read
//! back (waiting for that step alone, each step's pick landing in a buffer of its own)
//! while the GPU runs on, before the caller sees the pick.
//!
//! A step fed ahead becomes the session's only when the caller asks for its result (the
//! next call, with the id it fed). Until then the session's tokens and position do not
//! count it, whatever feeds or moves the session first takes it back
//! (`Session::settle`), and what reads its state reads the state before it
//! (`Session::conv_states`): attention rows past the position are simply overwritten
//! later, and each conv layer's state before the step is the copy the token kernel kept
//! (shortconv.wgsl's `previous`). So a token stream dropped after any token leaves the
//! session as it would be had the stream fed nothing ahead.
//!
//! Constrained greedy decoding does the same around the mask: the pick over a step's
//! row, limited to what the grammar allows, is submitted, the step that feeds the pick
//! right behind it, and the pick read back; the grammar then computes the next mask
//! while the GPU runs that step (`Session::pick_greedy_ahead`).
//!
//! Sampled decoding cannot submit the next step before the sampler picks its token, but
//! it records it ahead: while the GPU runs a step, the next one is recorded (its token
//! id to be written into the token buffer before it is submitted), so that after the
//! pick only a write and a submission stand between the GPU and its next step. Taking
//! such a step back is dropping it and the KV block it may have reserved.

use super::{only_pick, top_logits, Batch, Landing, Readback, Recorded, Session};
use crate::error::Result;
use crate::sampler::TopLogits;

/// A greedy step submitted ahead of the caller: the token it feeds (the pick of the
/// step before), where its own pick lands, and its submission.
pub(crate) struct Ahead {
    token: u32,
    landing: Landing,
    index: wgpu::SubmissionIndex,
}

impl Session {
    /// As [`Session::step_greedy`]: feeds `token` and returns the most likely next
    /// token, but returns with the step that feeds that token already submitted, where
    /// the context has room for it. The next call, with that token, finds its step
    /// under way.
    pub(crate) fn step_greedy_ahead(&mut self, token: u32) -> Result<u32> {
        let gpu = self.model.gpu.clone();
        let (landing, index) = match self.ahead.take() {
            // A step with a pick of its own (not one fed ahead by a constrained pick).
            Some(Ahead {
                token: fed,
                landing: landing @ Landing::Id(_),
                index,
            }) if fed == token => (landing, index),
            pending => {
                self.ahead = pending;
                self.settle()?;
                if self.position() + 1 > self.max_context() {
                    // The context shifts first: the synchronous step does that.
                    return self.step_greedy(token);
                }
                let step = self.record_step(token, Readback::Argmax)?;
                (step.landing, gpu.queue.submit([step.commands]))
            }
        };
        // `token`'s step is in flight at the session's position: the one after it.
        let pos = self.position() + 1;
        let picked = self.read_pick_behind((landing, index), pos, Readback::Argmax)?;
        self.tokens.push(token);
        Ok(picked)
    }

    /// Submits the step at `pos` right behind the greedy pick in flight (`pick`), its
    /// token the one the pick leaves on the GPU, then reads the pick: the step is fed
    /// ahead of the caller, whose next step feeds the pick.
    fn read_pick_behind(
        &mut self,
        (landing, index): (Landing, wgpu::SubmissionIndex),
        pos: usize,
        readback: Readback,
    ) -> Result<u32> {
        let next = self.record_ahead(pos, readback);
        let gpu = &self.model.gpu;
        let next = next.map(|next| (next.landing, gpu.queue.submit([next.commands])));
        let picked = only_pick(self.read_back(landing, index)?)?;
        if let Some((landing, index)) = next {
            self.ahead = Some(Ahead {
                token: picked,
                landing,
                index,
            });
        }
        Ok(picked)
    }

    /// As [`Session::step_top`], submitting the step recorded while the GPU ran the one
    /// before, where there is one, and recording the step after this one meanwhile,
    /// where the context holds it without a shift.
    pub(crate) fn step_top_ahead(&mut self, token: u32, temperature: f32) -> Result<TopLogits> {
        // Checked before a recorded step is taken: a bad id leaves it to `settle`.
        self.check_tokens(&[token])?;
        let gpu = self.model.gpu.clone();
        let recorded = match self.sampled_next.take() {
            Some(recorded) => {
                gpu.queue
                    .write_buffer(&self.state.tokens, 0, bytemuck::bytes_of(&token));
                recorded
            }
            None => {
                self.settle()?;
                if self.position() + 1 > self.max_context() {
                    // The context shifts first: the synchronous step does that.
                    return self.step_top(token, temperature);
                }
                self.record_step(token, Readback::Top)?
            }
        };
        self.set_top_temperature(temperature);
        let index = gpu.queue.submit([recorded.commands]);
        self.sampled_next = self.record_ahead(self.position() + 1, Readback::Top);
        let record = self.read_back(recorded.landing, index)?;
        self.tokens.push(token);
        top_logits(&record)
    }

    /// Records the step that feeds `token` at the session's position (which the context
    /// has room for).
    fn record_step(&mut self, token: u32, readback: Readback) -> Result<Recorded> {
        self.check_tokens(&[token])?;
        let batch = Batch {
            tokens: Some(&[token]),
            n: 1,
            pos: self.position(),
        };
        self.record(batch, None, readback)
    }

    /// Records the step at `pos`, its token left to be written into the token buffer
    /// (by the CPU, or by the argmax before it), where the context holds it without a
    /// shift.
    fn record_ahead(&mut self, pos: usize, readback: Readback) -> Option<Recorded> {
        if pos + 1 > self.max_context() {
            return None;
        }
        let batch = Batch {
            tokens: None,
            n: 1,
            pos,
        };
        // No block left for it (a shared pool): the next call feeds it instead, and
        // reports what is wrong.
        self.record(batch, None, readback)
            .inspect_err(|_| self.pages.truncate(pos))
            .ok()
    }

    /// As [`Session::pick_greedy`], returning with the step that feeds the pick
    /// submitted right behind it, where the context has room: a constrained greedy
    /// step. The caller's next [`Session::submit_step`], with that token, finds it
    /// under way, and computes the next mask while the GPU runs it.
    pub(crate) fn pick_greedy_ahead(&mut self, allowed: Option<&[u32]>) -> Result<u32> {
        let pick = self.submit_pick(Readback::Argmax, allowed)?;
        self.read_pick_behind(pick, self.position(), Readback::Nothing)
    }

    /// Whether the step fed ahead is the one that feeds `token`: it is then the
    /// session's.
    pub(super) fn take_ahead(&mut self, token: u32) -> bool {
        if self.ahead.as_ref().is_none_or(|ahead| ahead.token != token) {
            return false;
        }
        self.ahead = None;
        self.tokens.push(token);
        true
    }

    /// Takes back a step fed ahead that the caller did not ask for, or drops one recorded
    /// ahead, if there is one: the session is then as if it had never been fed.
    pub(crate) fn settle(&mut self) -> Result<()> {
        if self.sampled_next.take().is_some() {
            self.pages.truncate(self.position());
        }
        if self.ahead.take().is_none() {
            return Ok(());
        }
        let gpu = &self.model.gpu;
        let size = self.state.conv_state_bytes(&self.model.config);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for conv in self.state.conv_layers() {
            encoder.copy_buffer_to_buffer(conv.previous, 0, conv.state, 0, size);
        }
        gpu.queue.submit([encoder.finish()]);
        self.pages.truncate(self.position());
        gpu.check()
    }

    /// Each conv layer's state as the session holds it: from before a step fed ahead,
    /// while one is pending.
    pub(crate) fn conv_states(&self) -> impl Iterator<Item = &wgpu::Buffer> {
        let pending = self.ahead.is_some();
        self.state
            .conv_layers()
            .map(move |conv| if pending { conv.previous } else { conv.state })
    }
}
