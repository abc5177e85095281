//! Launch shapes chosen per adapter. A GPU and a CPU rasteriser (lavapipe) want opposite
//! layouts. On a GPU the threads of a warp must read neighbouring words (coalesced
//! loads) and workgroup memory is what makes a tiled matmul fast. On lavapipe the SIMD
//! lanes are invocations and every load, from storage or workgroup memory, runs a loop
//! over the lanes, so what counts is how many multiply-adds each load feeds: each lane
//! takes whole rows, several of them, and (in prefill) several tokens, with no
//! workgroup memory at all.

use super::kernels::Reduce;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Threads of one matvec.wgsl workgroup.
    pub matvec_workgroup: u32,
    /// Threads that share one matvec row (a power of two dividing the workgroup).
    pub matvec_row_threads: u32,
    /// Consecutive rows each matvec thread computes (1 to 8; workgroup × rows ≤ 256).
    pub matvec_rows_per_thread: u32,
    pub prefill: Prefill,
    /// Logits each workgroup of a pick's first launch reads (pick.wgsl): the argmax's
    /// and the candidates' (powers of two, at least [`PickChunks::SMALLEST`]).
    pub pick_chunks: PickChunks,
    /// How a single token's attention spreads its keys over workgroups.
    pub key_ranges: KeyRanges,
}

/// A single token's attention (rope.wgsl `token`) takes its keys in up to `most` ranges,
/// each a multiple of `keys` keys, side by side, and a second launch combines them;
/// with one range, the one launch writes the output. On a GPU a few workgroups over a
/// long cache would leave most of it idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRanges {
    pub most: u32,
    pub keys: u32,
}

impl KeyRanges {
    /// The largest `most`, for which a session's partial results are sized (so that its
    /// memory does not depend on the adapter): 8 ranges of each of LFM2's 8 kv heads
    /// make 64 workgroups.
    pub const MOST: u32 = 8;

    /// Keys per range for a token that sees `n_keys`: as even as whole multiples of
    /// `keys` allow (rope.wgsl `range_keys`).
    pub fn keys_per_range(self, n_keys: u32) -> u32 {
        n_keys.div_ceil(self.most).div_ceil(self.keys) * self.keys
    }

    /// How many ranges a token that sees `n_keys` takes (rope.wgsl `range_count`).
    pub fn count(self, n_keys: u32) -> u32 {
        n_keys.div_ceil(self.keys_per_range(n_keys))
    }

    pub(super) fn constants(self) -> [(&'static str, f64); 2] {
        [
            ("SPLITS", self.most.into()),
            ("SPLIT_KEYS", self.keys.into()),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PickChunks {
    pub argmax: u32,
    pub top: u32,
}

impl PickChunks {
    /// The smallest chunks, for which the picks' scratch is sized (so that a session's
    /// memory does not depend on the adapter): a GPU's. Small, so that the row spreads
    /// over many workgroups: 64 at a 65 536 vocabulary. The candidates' merge reads up
    /// to 255 of each chunk's, so their chunks are larger: 16 of 4096, 16 logits per
    /// thread in either launch.
    pub const SMALLEST: PickChunks = PickChunks {
        argmax: 1024,
        top: 4096,
    };
}

/// The kernel dense projections of more than one token take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefill {
    /// matmul.wgsl: tiles through workgroup memory.
    Tiled,
    /// matmul_rows.wgsl: a block of rows (1 to 4) × tokens (1 to 16) in each
    /// thread's registers.
    Rows {
        workgroup: u32,
        rows_per_thread: u32,
        tokens_per_thread: u32,
    },
}

impl Tuning {
    /// 64 threads share a row, 4 rows per workgroup: measured on an NVIDIA H200 against
    /// nine other shapes (`bench --matvec-launch`), the fastest on LFM2-1.2B in Q4_0
    /// and F16 and on LFM2-8B-A1B in Q4_0, within 7 % of the best on Qwen3-8B in Q1_0.
    pub const GPU: Tuning = Tuning {
        matvec_workgroup: 256,
        matvec_row_threads: 64,
        matvec_rows_per_thread: 1,
        prefill: Prefill::Tiled,
        pick_chunks: PickChunks::SMALLEST,
        // Not yet measured on a GPU: ranges of whole 256-key units (four blocks of
        // attend.wgsl), up to 8, spread LFM2-1.2B's 8 kv heads over 64 workgroups
        // from 2 048 keys on.
        key_ranges: KeyRanges {
            most: KeyRanges::MOST,
            keys: 256,
        },
    };

    /// With subgroup operations: the same 64 threads on a row, but a row to a
    /// workgroup, so that a row's sums take one subgroup sum and one barrier instead of
    /// a tree (`Reduce::Subgroups`). Not yet measured against `GPU` on a GPU.
    pub const GPU_SUBGROUPS: Tuning = Tuning {
        matvec_workgroup: 64,
        ..Tuning::GPU
    };

    /// Chosen by measuring on lavapipe (AVX2, SIMD-8). Matvec: two SIMD vectors of
    /// lanes, 8 rows each (some 1.15× faster than 4, 1.4× than 2): 128 rows per
    /// workgroup, so that even a 1024-row matrix spreads over 8 workgroups (threads of
    /// the rasteriser). Prefill: 4 rows × 16 tokens per lane; 8 rows spill their
    /// decoded weights and lose more than the saved x loads gain.
    pub const CPU: Tuning = Tuning {
        matvec_workgroup: 16,
        matvec_row_threads: 1,
        matvec_rows_per_thread: 8,
        prefill: Prefill::Rows {
            workgroup: 32,
            rows_per_thread: 4,
            tokens_per_thread: 16,
        },
        // A workgroup costs tens of µs to start: one for an argmax of 65 536 logits
        // (330 µs against 1040 at the GPU's chunks), four for the candidates (1820 µs
        // against 2630, 2880 in one workgroup).
        pick_chunks: PickChunks {
            argmax: 65536,
            top: 16384,
        },
        // lavapipe's two cores are kept busy by the head groups' workgroups alone.
        key_ranges: KeyRanges { most: 1, keys: 256 },
    };

    /// Fails on shapes the kernels cannot run (their register blocks are fixed-size).
    pub fn check(&self) -> Result<()> {
        let fits = |what: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(Error::Input(format!("launch shape {self:?}: {what}")))
            }
        };
        let (wg, threads, rows) = (
            self.matvec_workgroup,
            self.matvec_row_threads,
            self.matvec_rows_per_thread,
        );
        fits(
            "matvec row threads must be a power of two dividing the workgroup",
            threads.is_power_of_two() && wg % threads == 0,
        )?;
        fits(
            "matvec rows per thread must be 1 to 8, workgroup × rows at most 256",
            (1..=8).contains(&rows) && wg * rows <= 256,
        )?;
        if let Prefill::Rows {
            workgroup,
            rows_per_thread,
            tokens_per_thread,
        } = self.prefill
        {
            fits(
                "prefill blocks must be 1 to 4 rows by 1 to 16 tokens, in a workgroup of 1 to 256",
                (1..=4).contains(&rows_per_thread)
                    && (1..=16).contains(&tokens_per_thread)
                    && (1..=256).contains(&workgroup),
            )?;
        }
        let ranges = self.key_ranges;
        fits(
            "key ranges must be 1 to KeyRanges::MOST, in units of 1 to 65536 keys",
            (1..=KeyRanges::MOST).contains(&ranges.most) && (1..=65536).contains(&ranges.keys),
        )?;
        let (chunks, smallest) = (self.pick_chunks, PickChunks::SMALLEST);
        fits(
            "pick chunks must be powers of two, at least PickChunks::SMALLEST",
            [(chunks.argmax, smallest.argmax), (chunks.top, smallest.top)]
                .iter()
                .all(|&(c, least)| c.is_power_of_two() && c >= least),
        )?;
        Ok(())
    }

    /// The same, with decode's matvec launched as `[workgroup, row threads, rows per
    /// thread]` (checked by [`Tuning::check`]).
    pub fn with_matvec(self, [workgroup, row_threads, rows_per_thread]: [u32; 3]) -> Tuning {
        Tuning {
            matvec_workgroup: workgroup,
            matvec_row_threads: row_threads,
            matvec_rows_per_thread: rows_per_thread,
            ..self
        }
    }

    pub fn for_adapter(info: &wgpu::AdapterInfo, reduce: Reduce) -> Tuning {
        match (info.device_type, reduce) {
            (wgpu::DeviceType::Cpu, _) => Tuning::CPU,
            (_, Reduce::Subgroups) => Tuning::GPU_SUBGROUPS,
            (_, Reduce::Workgroup) => Tuning::GPU,
        }
    }

    /// Workgroups of a matvec.wgsl launch over `slots` matrices of `rows` rows each:
    /// each slot's rows are padded to whole threads.
    pub fn matvec_workgroups(&self, rows: usize, slots: usize) -> u32 {
        let per_thread = self.matvec_rows_per_thread as usize;
        let threads_per_group = (self.matvec_workgroup / self.matvec_row_threads) as usize;
        (slots * rows.div_ceil(per_thread)).div_ceil(threads_per_group) as u32
    }

    /// The override constants of matvec.wgsl.
    pub(super) fn matvec_constants(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("WG", self.matvec_workgroup.into()),
            ("ROW_THREADS", self.matvec_row_threads.into()),
            ("ROWS_PER_THREAD", self.matvec_rows_per_thread.into()),
        ]
    }

    /// The override constants of matmul_rows.wgsl.
    pub(super) fn pick_constants(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("ARGMAX_CHUNK", self.pick_chunks.argmax.into()),
            ("TOP_CHUNK", self.pick_chunks.top.into()),
        ]
    }

    /// matmul_rows.wgsl's launch shape but its tokens, which a launch chooses (fewer
    /// for small batches).
    pub(super) fn matmul_rows_constants(&self) -> Vec<(&'static str, f64)> {
        match self.prefill {
            Prefill::Rows {
                workgroup,
                rows_per_thread,
                ..
            } => vec![
                ("WG", workgroup.into()),
                ("ROWS_PER_THREAD", rows_per_thread.into()),
            ],
            Prefill::Tiled => Vec::new(),
        }
    }
}
