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
