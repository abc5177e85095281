// GGUF weights read in place: the tensor's raw ggml blocks (layouts: ggml-common.h).
// Prepended (after common.wgsl) to the kernels that read weight matrices; each defines
// `load_word(i)`, word i of its weight binding. Blocks are not 4-byte aligned (Q8_0 is
// 34 bytes) but always 2-byte aligned, so bytes and halves are picked out of words.

const DTYPE_Q8_0: u32 = 3u;
const DTYPE_Q4_0: u32 = 4u;
const DTYPE_Q4_1: u32 = 5u;
const DTYPE_Q5_0: u32 = 6u;
const DTYPE_Q5_1: u32 = 7u;
const DTYPE_Q4_K: u32 = 8u;
const DTYPE_Q5_K: u32 = 9u;
const DTYPE_Q6_K: u32 = 10u;
const DTYPE_Q1_0: u32 = 11u;
const DTYPE_Q2_0: u32 = 12u;
const DTYPE_TQ1_0: u32 = 13u;
const DTYPE_TQ2_0: u32 = 14u;

fn byte_at(b: u32) -> u32 {
    return (load_word(b >> 2u) >> ((b & 3u) * 8u)) & 0xffu;
}

fn i8_at(b: u32) -> f32 {
    return f32(i32(byte_at(b) << 24u) >> 24u);
}

// The f16 at even byte `b`.
fn f16_at(b: u32) -> f32 {
    let word = load_word(b >> 2u);
    return f16_bits_to_f32(select(word & 0xffffu, word >> 16u, (b & 2u) != 0u));
}

// The u32 at even byte `b`: one word, or the halves of two.
fn u32_at(b: u32) -> u32 {
    let w = b >> 2u;
    if (b & 2u) == 0u {
        return load_word(w);
    }
    return (load_word(w) >> 16u) | (load_word(w + 1u) << 16u);
}

const NIBBLES: u32 = 0x0f0f0f0fu;

// The four bytes of `w` as values, lowest first.
fn bytes4(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu));
}

// The four bytes of `w` as signed values.
fn i8x4(w: u32) -> vec4<f32> {
    let v = bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u));
    return vec4<f32>(v >> vec4<u32>(24u));
}

// Bits 0..3 of `b` as 0.0 or 1.0 (Q1_0's signs, lowest first).
fn bits4(b: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(b) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u));
}

// The four 2-bit codes in bits 0..7 of `b` (Q2_0), lowest first.
fn codes4(b: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(b) >> vec4<u32>(0u, 2u, 4u, 6u)) & vec4<u32>(3u));
}

// Trit n (0, 1 or 2) of each byte of `w`, lowest byte first, `pow3` = 3^n: TQ1_0 packs
// five in a byte q as a base-3 fraction of 256, and trit n is ((q 3^n) mod 256) 3 / 256.
fn trits4(w: u32, pow3: u32) -> vec4<u32> {
    let q = (((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu)) * pow3) & vec4<u32>(0xffu);
    return (q * 3u) >> vec4<u32>(8u);
}

// Where TQ1_0 keeps elements 4k .. 4k + 3 of a block (k < 64): trit n of its bytes
// o .. o + 3, as (o, 3^n). Bytes 0..31 hold elements 32n + m, bytes 32..47 elements
// 160 + 16n + m, bytes 48..51 elements 240 + 4n + m.
fn tq1_0_quad(k: u32) -> vec2<u32> {
    var pow3 = array<u32, 5>(1u, 3u, 9u, 27u, 81u);
    if k < 40u {
        return vec2<u32>(4u * (k % 8u), pow3[k / 8u]);
    }
    if k < 60u {
        return vec2<u32>(32u + 4u * ((k - 40u) % 4u), pow3[(k - 40u) / 4u]);
    }
    return vec2<u32>(48u, pow3[k - 60u]);
}

// Bits 0..3 of `bits` moved to bit 0 of bytes 0..3.
fn spread4(bits: u32) -> u32 {
    return (bits & 1u) | ((bits & 2u) << 7u) | ((bits & 4u) << 14u) | ((bits & 8u) << 21u);
}

// Consecutive u32 words from an even byte offset: the last word read is carried, so
// each word costs one load even when the data starts mid-word. `advance` reads the next
// word into `word`.
struct Stream {
    word: u32,
    carry: u32,
    next: u32,
    mid: bool,
}

fn stream_at(b: u32) -> Stream {
    return Stream(0u, load_word(b >> 2u), (b >> 2u) + 1u, (b & 2u) != 0u);
}

fn advance(s: Stream) -> Stream {
    let hi = load_word(s.next);
    let word = select(s.carry, (s.carry >> 16u) | (hi << 16u), s.mid);
    return Stream(word, hi, s.next + 1u, s.mid);
}

// Weight element `e` (row-major index) of a tensor of any supported type.
fn weight_at(e: u32) -> f32 {
    switch WEIGHT_DTYPE {
        case DTYPE_Q8_0: {
            let b = (e / 32u) * 34u;
            return f16_at(b) * i8_at(b + 2u + e % 32u);
        }
        case DTYPE_Q4_0, DTYPE_Q4_1: {
            let size = select(20u, 18u, WEIGHT_DTYPE == DTYPE_Q4_0);
            let b = (e / 32u) * size;
            let i = e % 32u;
            let qs = b + size - 16u;
            let q = f32((byte_at(qs + i % 16u) >> (4u * (i / 16u))) & 0xfu);
            if WEIGHT_DTYPE == DTYPE_Q4_0 {
                return f16_at(b) * (q - 8.0);
            }
            return f16_at(b) * q + f16_at(b + 2u);
        }
        case DTYPE_Q5_0, DTYPE_Q5_1: {
            let size = select(24u, 22u, WEIGHT_DTYPE == DTYPE_Q5_0);
            let b = (e / 32u) * size;
            let i = e % 32u;
            let qh = u32_at(b + size - 20u);
            let low = (byte_at(b + size - 16u + i % 16u) >> (4u * (i / 16u))) & 0xfu;
            let q = f32(low | (((qh >> i) & 1u) << 4u));
            if WEIGHT_DTYPE == DTYPE_Q5_0 {
                return f16_at(b) * (q - 16.0);
            }
            return f16_at(b) * q + f16_at(b + 2u);
        }
        case DTYPE_Q4_K, DTYPE_Q5_K: {
            // d, dmin, 12 bytes of 6-bit (scale, min) pairs for 8 sub-blocks of 32,
            // [Q5_K: 32 bytes of high bits], 128 bytes of nibbles; 64 elements per 32 bytes.
            let size = select(176u, 144u, WEIGHT_DTYPE == DTYPE_Q4_K);
            let b = (e / 256u) * size;
            let i = e % 256u;
            let chunk = i / 64u;
            let high = (i % 64u) / 32u;
            let l = i % 32u;
            let sub = 2u * chunk + high;
            let scale_min = k_scale_min(b + 4u, sub);
            let qs = b + size - 128u;
            var q = (byte_at(qs + 32u * chunk + l) >> (4u * high)) & 0xfu;
            if WEIGHT_DTYPE == DTYPE_Q5_K {
                q |= ((byte_at(b + 16u + l) >> sub) & 1u) << 4u;
            }
            return f16_at(b) * scale_min.x * f32(q) - f16_at(b + 2u) * scale_min.y;
        }
        case DTYPE_Q6_K: {
            // 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 int8 scales, d.
            let b = (e / 256u) * 210u;
            let i = e % 256u;
            let half = i / 128u;
            let quarter = (i % 128u) / 32u;
            let l = i % 32u;
            let low = (byte_at(b + 64u * half + l + 32u * (quarter & 1u)) >> (4u * (quarter / 2u))) & 0xfu;
            let high = (byte_at(b + 128u + 32u * half + l) >> (2u * quarter)) & 3u;
            let scale = i8_at(b + 192u + 8u * half + l / 16u + 2u * quarter);
            return f16_at(b + 208u) * scale * (f32(low | (high << 4u)) - 32.0);
        }
        case DTYPE_Q1_0: {
            // d, 16 bytes of signs: bit i % 8 of byte i / 8, set for +d.
            let b = (e / 128u) * 18u;
            let i = e % 128u;
            let d = f16_at(b);
            return select(-d, d, ((byte_at(b + 2u + i / 8u) >> (i % 8u)) & 1u) == 1u);
        }
        case DTYPE_Q2_0: {
            // d, 16 bytes of codes: bits 2 (i % 4) of byte i / 4; x = (q - 1) d.
            let b = (e / 64u) * 18u;
            let i = e % 64u;
            let q = (byte_at(b + 2u + i / 4u) >> (2u * (i % 4u))) & 3u;
            return (f32(q) - 1.0) * f16_at(b);
        }
        case DTYPE_TQ1_0: {
            // 52 bytes of trits (tq1_0_quad), d; x = (t - 1) d.
            let b = (e / 256u) * 54u;
            let i = e % 256u;
            let at = tq1_0_quad(i / 4u);
            let t = trits4(u32_at(b + at.x), at.y)[i % 4u];
            return (f32(t) - 1.0) * f16_at(b + 52u);
        }
        case DTYPE_TQ2_0: {
            // 64 bytes of codes, d: bits 2l of byte 32h + m are element 128h + 32l + m.
            let b = (e / 256u) * 66u;
            let i = e % 256u;
            let q = (byte_at(b + 32u * (i / 128u) + i % 32u) >> (2u * ((i / 32u) % 4u))) & 3u;
            return (f32(q) - 1.0) * f16_at(b + 64u);
        }
        default: {
            return weight_value(load_word(weight_word(e)), e);
        }
    }
}

// The 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
fn k_scale_min(scales: u32, j: u32) -> vec2<f32> {
    if j < 4u {
        return vec2<f32>(f32(byte_at(scales + j) & 63u), f32(byte_at(scales + j + 4u) & 63u));
    }
    let packed = byte_at(scales + j + 4u);
    let scale = (packed & 0xfu) | ((byte_at(scales + j - 4u) >> 6u) << 4u);
    let min = (packed >> 4u) | ((byte_at(scales + j) >> 6u) << 4u);
    return vec2<f32>(f32(scale), f32(min));
}

// Elements 32g .. 32g + 31 of a GGUF tensor, dequantized: a whole Q4/Q5/Q8 block, or
// one 32-element part of a K-quant, Q1_0, Q2_0 or TQ block. Kernels that reuse each weight
// many times decode it this way, scales once per 32 elements.
fn group32(g: u32) -> array<vec4<f32>, 8> {
    var w: array<vec4<f32>, 8>;
    switch WEIGHT_DTYPE {
        case DTYPE_Q8_0: {
            let d = f16_at(g * 34u);
            var qs = stream_at(g * 34u + 2u);
            for (var i = 0u; i < 8u; i++) {
                qs = advance(qs);
                w[i] = d * i8x4(qs.word);
            }
        }
        case DTYPE_Q4_0, DTYPE_Q4_1, DTYPE_Q5_0, DTYPE_Q5_1: {
            // d, [m], [qh], 16 bytes: byte l holds element l in its low nibble and
            // l + 16 in its high one; Q5 adds bit l of qh as the fifth bit.
            let five = WEIGHT_DTYPE == DTYPE_Q5_0 || WEIGHT_DTYPE == DTYPE_Q5_1;
            let size = 18u + 2u * (WEIGHT_DTYPE - DTYPE_Q4_0); // 18, 20, 22, 24 bytes
            let b = g * size;
            let d = f16_at(b);
            var offset = 0.0;
            switch WEIGHT_DTYPE {
                case DTYPE_Q4_0: { offset = -8.0 * d; }
                case DTYPE_Q5_0: { offset = -16.0 * d; }
                default: { offset = f16_at(b + 2u); }
            }
            var qh = 0u;
            if five {
                qh = u32_at(b + size - 20u);
            }
            var qs = stream_at(b + size - 16u);
            for (var i = 0u; i < 4u; i++) {
                qs = advance(qs);
                var lo = bytes4(qs.word & NIBBLES);
                var hi = bytes4((qs.word >> 4u) & NIBBLES);
                if five {
                    lo += 16.0 * bytes4(spread4(qh >> (4u * i)));
                    hi += 16.0 * bytes4(spread4(qh >> (16u + 4u * i)));
                }
                w[i] = d * lo + offset;
                w[i + 4u] = d * hi + offset;
            }
        }
        case DTYPE_Q4_K, DTYPE_Q5_K: {
            // Sub-block j: nibble j % 2 of bytes 32 (j / 2) .. + 31; Q5_K adds bit j
            // of the 32 qh bytes. Blocks are 4-byte aligned.
            let size = select(176u, 144u, WEIGHT_DTYPE == DTYPE_Q4_K);
            let b = (g / 8u) * size;
            let j = g % 8u;
            let scale_min = k_scale_min(b + 4u, j);
            let scale = f16_at(b) * scale_min.x;
            let min = f16_at(b + 2u) * scale_min.y;
            let qs = (b + size - 128u + 32u * (j / 2u)) / 4u;
            for (var i = 0u; i < 8u; i++) {
                var q = bytes4((load_word(qs + i) >> (4u * (j % 2u))) & NIBBLES);
                if WEIGHT_DTYPE == DTYPE_Q5_K {
                    q += 16.0 * bytes4((load_word((b + 16u) / 4u + i) >> j) & 0x01010101u);
                }
                w[i] = scale * q - min;
            }
        }
        case DTYPE_Q6_K: {
            // Sub-block j is quarter j % 4 of half j / 4: low bits from nibble
            // (j % 4) / 2 of ql bytes 64 (j / 4) + 32 (j % 2) + l, high ones from bits
            // 2 (j % 4) of qh byte 32 (j / 4) + l; one int8 scale per 16 elements.
            let b = (g / 8u) * 210u;
            let half = (g % 8u) / 4u;
            let quarter = g % 4u;
            var ql = stream_at(b + 64u * half + 32u * (quarter % 2u));
            var qh = stream_at(b + 128u + 32u * half);
            let scales = b + 192u + 8u * half + 2u * quarter;
            let d = f16_at(b + 208u);
            let scale = vec2<f32>(d * i8_at(scales), d * i8_at(scales + 1u));
            for (var i = 0u; i < 8u; i++) {
                ql = advance(ql);
                qh = advance(qh);
                let low = (ql.word >> (4u * (quarter / 2u))) & NIBBLES;
                let high = ((qh.word >> (2u * quarter)) & 0x03030303u) << 4u;
                w[i] = scale[i / 4u] * (bytes4(low | high) - 32.0);
            }
        }
        case DTYPE_Q1_0: {
            // Quarter g % 4 of block g / 4: the 32 sign bits of qs bytes 4 (g % 4) ..
            // + 3, one (even-offset) word; x = d (2 bit - 1).
            let b = (g / 4u) * 18u;
            let d = f16_at(b);
            let bits = u32_at(b + 2u + 4u * (g % 4u));
            for (var i = 0u; i < 8u; i++) {
                w[i] = d * (2.0 * bits4(bits >> (4u * i)) - 1.0);
            }
        }
        case DTYPE_Q2_0: {
            // Half g % 2 of block g / 2: qs bytes 8 (g % 2) .. + 7, four codes each.
            let b = (g / 2u) * 18u;
            let d = f16_at(b);
            let qs = b + 2u + 8u * (g % 2u);
            let words = array<u32, 2>(u32_at(qs), u32_at(qs + 4u));
            for (var i = 0u; i < 8u; i++) {
                w[i] = d * (codes4(words[i / 4u] >> (8u * (i % 4u))) - 1.0);
            }
        }
        case DTYPE_TQ1_0: {
            // Part j = g % 8 of block g / 8: its elements' quads 8j .. 8j + 7.
            let b = (g / 8u) * 54u;
            let d = f16_at(b + 52u);
            for (var i = 0u; i < 8u; i++) {
                let at = tq1_0_quad(8u * (g % 8u) + i);
                w[i] = d * (vec4<f32>(trits4(u32_at(b + at.x), at.y)) - 1.0);
            }
        }
        case DTYPE_TQ2_0: {
            // Part j = g % 8 of block g / 8: bits 2 (j % 4) of bytes 32 (j / 4) .. + 31.
            let b = (g / 8u) * 66u;
            let d = f16_at(b + 64u);
            var qs = stream_at(b + 32u * ((g % 8u) / 4u));
            for (var i = 0u; i < 8u; i++) {
                qs = advance(qs);
                w[i] = d * (bytes4((qs.word >> (2u * (g % 4u))) & 0x03030303u) - 1.0);
            }
        }
        default: {}
    }
    return w;
}
