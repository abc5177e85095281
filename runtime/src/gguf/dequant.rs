//! CPU dequantization of the supported types: the reference the GPU kernels are tested
//! against, not a runtime path. Each block is decoded as gguf-py's `gguf.quants` does,
//! in the same f32 operations in the same order, so results match it bit for bit
//! (block layouts: ggml-common.h). Q1_0 and Q2_0, which gguf-py cannot decode, and the
//! ternary TQ1_0 and TQ2_0 are ggml-quants.c's `dequantize_row_*` transcribed.

use half::f16;

use super::ggml_type::GgmlType;
use crate::error::{Error, Result};

/// `bytes` (whole blocks of `ggml_type`) as f32, in the tensor's element order.
pub fn dequantize(ggml_type: GgmlType, bytes: &[u8]) -> Result<Vec<f32>> {
    let decode: fn(&[u8], &mut Vec<f32>) = match ggml_type {
        GgmlType::F32 => |b, out| out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => |b, out| out.push(half_at(b, 0)),
        GgmlType::BF16 => |b, out| out.push(f32::from_bits(u32::from(u16_at(b, 0)) << 16)),
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        GgmlType::Q1_0 => q1_0,
        GgmlType::Q2_0 => q2_0,
        GgmlType::TQ1_0 => tq1_0,
        GgmlType::TQ2_0 => tq2_0,
        other => {
            return Err(Error::Input(format!(
                "dequantizing {other} is not supported"
            )))
        }
    };
    let block_bytes = ggml_type.block_bytes() as usize;
    let blocks = bytes.chunks_exact(block_bytes);
    if !blocks.remainder().is_empty() {
        return Err(Error::Input(format!(
            "{} bytes are not whole {ggml_type} blocks of {block_bytes} bytes",
            bytes.len()
        )));
    }
    let mut out = Vec::with_capacity(blocks.len() * ggml_type.block_size() as usize);
    blocks.for_each(|block| decode(block, &mut out));
    Ok(out)
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16_at(b, i)).to_f32()
}

/// Element `i` of a 32-element block of nibbles: low nibbles are elements 0–15, high
/// nibbles 16–31.
fn nibble(qs: &[u8], i: usize) -> u8 {
    (qs[i % 16] >> (4 * (i / 16))) & 0x0F
}

/// Fifth bit of element `i` in Q5_0/Q5_1: bit `i` of a little-endian u32.
fn high_bit(qh: &[u8], i: usize) -> u8 {
    (qh[i / 8] >> (i % 8)) & 1
}

/// d(f16), 16 bytes of nibbles; x = d · (q − 8).
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half_at(b, 0);
    out.extend((0..32).map(|i| d * f32::from(nibble(&b[2..], i) as i8 - 8)));
}

/// d, m (f16), 16 bytes of nibbles; x = d · q + m.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    out.extend((0..32).map(|i| d * f32::from(nibble(&b[4..], i)) + m));
}

/// d (f16), 4 bytes of fifth bits, 16 bytes of nibbles; x = d · (q − 16).
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half_at(b, 0);
    let (qh, qs) = (&b[2..6], &b[6..]);
    out.extend((0..32).map(|i| {
        let q = nibble(qs, i) | (high_bit(qh, i) << 4);
        d * f32::from(q as i8 - 16)
    }));
}

/// d, m (f16), 4 bytes of fifth bits, 16 bytes of nibbles; x = d · q + m.
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let (qh, qs) = (&b[4..8], &b[8..]);
    out.extend((0..32).map(|i| d * f32::from(nibble(qs, i) | (high_bit(qh, i) << 4)) + m));
}

/// d (f16), 32 × i8; x = q · d.
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half_at(b, 0);
    out.extend(b[2..].iter().map(|&q| f32::from(q as i8) * d));
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes of Q4_K/Q5_K: 6 bits
/// each, the high 2 bits of sub-blocks 4–7 stored in the top of bytes 0–7.
fn scale_min(scales: &[u8], j: usize) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    };
    (f32::from(sc), f32::from(m))
}

/// 256 elements in 8 sub-blocks of 32: x = (d · scale) · q − (dmin · min).
/// `q(e)` is the quant of element `e`.
fn k_quant(b: &[u8], out: &mut Vec<f32>, q: impl Fn(usize) -> u8) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    for j in 0..8 {
        let (sc, m) = scale_min(&b[4..16], j);
        let (scale, min) = (d * sc, dmin * m);
        out.extend((32 * j..32 * (j + 1)).map(|e| scale * f32::from(q(e)) - min));
    }
}

/// Nibble of element `e` of a K-quant block: sub-blocks 2c and 2c+1 share the 32 bytes of
/// chunk c, low then high nibbles.
fn k_nibble(qs: &[u8], e: usize) -> u8 {
    (qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 0x0F
}

/// d, dmin (f16), 12 bytes of scales/mins, 128 bytes of nibbles.
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let qs = &b[16..144];
    k_quant(b, out, |e| k_nibble(qs, e));
}

/// As Q4_K, with 32 bytes of fifth bits (bit j of byte i: element 32·j + i) before the
/// nibbles.
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (qh, qs) = (&b[16..48], &b[48..176]);
    k_quant(b, out, |e| {
        k_nibble(qs, e) | (((qh[e % 32] >> (e / 32)) & 1) << 4)
    });
}

/// 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 × i8 scales (one per 16
/// elements), d (f16); x = (d · scale) · (q − 32). Each half of 128 elements uses 64
/// bytes of ql (elements 0–63 low nibbles, 64–127 high) and 32 bytes of qh (2 bits per
/// group of 32 elements).
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = half_at(b, 208);
    out.extend((0..256).map(|e| {
        let (half, r) = (e / 128, e % 128);
        let low = (ql[64 * half + r % 64] >> (4 * (r / 64))) & 0x0F;
        let high = (qh[32 * half + r % 32] >> (2 * (r / 32))) & 0x03;
        let q = (low | (high << 4)) as i8 - 32;
        (d * f32::from(scales[e / 16] as i8)) * f32::from(q)
    }));
}

/// d (f16), 16 bytes of signs: bit j % 8 of byte j / 8 is element j, 1 for +d and 0
/// for −d (ggml-quants.c, `dequantize_row_q1_0`).
fn q1_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half_at(b, 0);
    let neg_d = -d;
    let qs = &b[2..18];
    out.extend((0..128).map(|j| {
        let bit = (qs[j / 8] >> (j % 8)) & 1;
        if bit == 1 {
            d
        } else {
            neg_d
        }
    }));
}

/// d (f16), 16 bytes of 2-bit codes: bits 2·(j % 4) of byte j / 4 are element j's
/// code q, x = (q − 1) · d, so codes 0..3 are −d, 0, +d, +2d (`dequantize_row_q2_0`).
fn q2_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half_at(b, 0);
    let qs = &b[2..18];
    out.extend((0..64).map(|j| {
        let q = (qs[j / 4] >> (2 * (j % 4))) & 0x03;
        (i32::from(q) - 1) as f32 * d
    }));
}

/// Trits 0..`count` of each of `bytes`, trit-major: a byte q holds up to five as a
/// base-3 fraction of 256, trit n is ((q · 3ⁿ) mod 256) · 3 / 256, and codes 0, 1, 2
/// are −d, 0, +d (`dequantize_row_tq1_0`'s pow3 loops).
fn trits(bytes: &[u8], count: usize, d: f32, out: &mut Vec<f32>) {
    const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
    for pow3 in &POW3[..count] {
        for &byte in bytes {
            let q = byte.wrapping_mul(*pow3);
            let xi = ((u16::from(q) * 3) >> 8) as i16;
            out.push(f32::from(xi - 1) * d);
        }
    }
}

/// 48 bytes of five trits (bytes 0–31: elements 32n + m in trit n of byte m; bytes
/// 32–47: elements 160 + 16n + m), 4 bytes of four (elements 240 + 4n + j), d (f16)
/// last (`dequantize_row_tq1_0`).
fn tq1_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half_at(b, 52);
    trits(&b[..32], 5, d, out);
    trits(&b[32..48], 5, d, out);
    trits(&b[48..52], 4, d, out);
}

/// 64 bytes of 2-bit codes, d (f16) last: bits 2l of byte 32h + m are element
/// 128h + 32l + m's code q, x = (q − 1) · d (`dequantize_row_tq2_0`).
fn tq2_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half_at(b, 64);
    for half in b[..64].chunks_exact(32) {
        for l in 0..4 {
            out.extend(half.iter().map(|&byte| {
                let q = ((byte >> (2 * l)) & 3) as i8;
                f32::from(q - 1) * d
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block with scale `d` and the given code bytes.
    fn block(d: f32, qs: [u8; 16]) -> Vec<u8> {
        let mut b = f16::from_f32(d).to_le_bytes().to_vec();
        b.extend(qs);
        b
    }

    #[test]
    fn q1_0_bits_are_signs_lsb_first() {
        // Byte 0 = 0b0000_0101: elements 0 and 2 are +d, 1 and 3..7 −d; byte 15's top
        // bit is element 127.
        let mut qs = [0u8; 16];
        qs[0] = 0b0000_0101;
        qs[15] = 0x80;
        let values = dequantize(GgmlType::Q1_0, &block(0.5, qs)).unwrap();
        assert_eq!(values.len(), 128);
        assert_eq!(&values[..8], [0.5, -0.5, 0.5, -0.5, -0.5, -0.5, -0.5, -0.5]);
        assert!(values[8..127].iter().all(|&v| v == -0.5));
        assert_eq!(values[127], 0.5);
        // All ones: every weight +d; a zero scale gives signed zeros.
        assert!(dequantize(GgmlType::Q1_0, &block(0.25, [0xff; 16]))
            .unwrap()
            .iter()
            .all(|&v| v == 0.25));
        let zero = dequantize(GgmlType::Q1_0, &block(0.0, [0; 16])).unwrap();
        assert!(zero.iter().all(|v| v.to_bits() == (-0.0f32).to_bits()));
    }

    #[test]
    fn q2_0_codes_are_minus_one_to_two() {
        // Byte 0 = 0b11_10_01_00: codes 0, 1, 2, 3 for elements 0..3; byte 15 = 0b10 <<
        // 6: element 63 is code 2.
        let mut qs = [0b0101_0101u8; 16]; // code 1 (zero) everywhere else
        qs[0] = 0b1110_0100;
        qs[15] = 0b1001_0101;
        let d = 1.5;
        let values = dequantize(GgmlType::Q2_0, &block(d, qs)).unwrap();
        assert_eq!(values.len(), 64);
        assert_eq!(&values[..4], [-1.5, 0.0, 1.5, 3.0]);
        assert!(values[4..63].iter().all(|&v| v == 0.0));
        assert_eq!(values[63], 1.5);
    }

    #[test]
    fn tq1_0_packs_five_trits_a_byte() {
        // A byte holding trits t0..t4 (t0 most significant) is ceil((Σ tₙ 3^(4−n)) ·
        // 256 / 243), as ggml's quantizer writes it; qh holds four, the fifth zero.
        let pack = |t: [u8; 5]| {
            let v = t.iter().fold(0u16, |v, &t| 3 * v + u16::from(t));
            ((v * 256).div_ceil(243)) as u8
        };
        let mut b = vec![pack([1; 5]); 52];
        b[0] = pack([0, 1, 2, 1, 0]); // elements 0, 32, 64, 96, 128
        b[47] = pack([2, 0, 1, 1, 2]); // elements 175, 191, 207, 223, 239
        b[51] = pack([0, 2, 1, 2, 0]); // elements 243, 247, 251, 255
        b.extend(f16::from_f32(0.5).to_le_bytes());
        let values = dequantize(GgmlType::TQ1_0, &b).unwrap();
        assert_eq!(values.len(), 256);
        let at = |es: &[usize]| es.iter().map(|&e| values[e]).collect::<Vec<_>>();
        assert_eq!(at(&[0, 32, 64, 96, 128]), [-0.5, 0.0, 0.5, 0.0, -0.5]);
        assert_eq!(at(&[175, 191, 207, 223, 239]), [0.5, -0.5, 0.0, 0.0, 0.5]);
        assert_eq!(at(&[243, 247, 251, 255]), [-0.5, 0.5, 0.0, 0.5]);
        let marked = [
            0, 32, 64, 96, 128, 175, 191, 207, 223, 239, 243, 247, 251, 255,
        ];
        for (e, &v) in values.iter().enumerate() {
            assert!(marked.contains(&e) || v == 0.0, "element {e}: {v}");
        }
    }

    #[test]
    fn tq2_0_codes_are_minus_one_to_two_in_strides_of_32() {
        // Byte 32 + 5 = 0b11_10_00_01: elements 128 + 5, + 32, + 64, + 96 are codes 1,
        // 0, 2, 3; d is the last two bytes.
        let mut b = vec![0b0101_0101u8; 64];
        b[37] = 0b1110_0001;
        b.extend(f16::from_f32(-2.0).to_le_bytes());
        let values = dequantize(GgmlType::TQ2_0, &b).unwrap();
        assert_eq!(values.len(), 256);
        let at = |es: [usize; 4]| es.map(|e| values[e]);
        assert_eq!(at([133, 165, 197, 229]), [0.0, 2.0, -2.0, -4.0]);
        assert_eq!(values.iter().filter(|&&v| v != 0.0).count(), 3);
    }

    #[test]
    fn low_bit_blocks_are_18_bytes() {
        // Two blocks read back to back; a partial one is refused.
        let two = [block(1.0, [0xff; 16]), block(2.0, [0; 16])].concat();
        let q1 = dequantize(GgmlType::Q1_0, &two).unwrap();
        assert_eq!((q1.len(), q1[127], q1[128]), (256, 1.0, -2.0));
        let q2 = dequantize(GgmlType::Q2_0, &two).unwrap();
        assert_eq!((q2.len(), q2[63], q2[64]), (128, 2.0, -2.0));
        let err = dequantize(GgmlType::Q2_0, &two[..20])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not whole Q2_0 blocks of 18 bytes"), "{err}");
    }
}
