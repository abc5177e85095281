// GGUF blocks dotted with x for matvec.wgsl, prepended to it after quant.wgsl. A thread
// takes one unit per step, the same unit of each of its rows: x is loaded once per
// step, every weight word once (through a Stream where blocks start mid-word), and a
// block's scales once per row.

// Elements per step along a row: a block (32 elements, Q2_0's 64, Q1_0's 128, TQ1_0's
// 256: a byte holds the trits of elements 32 or 16 apart, so no equal part of a block
// has bytes of its own), or a part whose codes share bytes (64 elements of Q4_K/Q5_K,
// a 128-element half block of Q6_K and TQ2_0).
fn unit_elements() -> u32 {
    switch WEIGHT_DTYPE {
        case DTYPE_Q4_K, DTYPE_Q5_K, DTYPE_Q2_0: { return 64u; }
        case DTYPE_Q6_K, DTYPE_Q1_0, DTYPE_TQ2_0: { return 128u; }
        case DTYPE_TQ1_0: { return 256u; }
        default: { return 32u; }
    }
}

fn sum4(v: vec4<f32>) -> f32 {
    return dot(v, vec4<f32>(1.0));
}

// acc[j] += dot(unit u[j] of the tensor, x[xb .. xb + unit_elements()]) for each row.
fn unit_dots(u: RowIndex, xb: u32, acc: ptr<function, Rows>) {
    switch WEIGHT_DTYPE {
        case DTYPE_Q8_0: {
            // d, 32 int8.
            var qs: array<Stream, MAX_ROWS>;
            var s: Rows;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                qs[j] = stream_at(u[j] * 34u + 2u);
            }
            for (var i = 0u; i < 8u; i++) {
                let xv = x4(xb + 4u * i);
                for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                    qs[j] = advance(qs[j]);
                    s[j] += dot(i8x4(qs[j].word), xv);
                }
            }
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                (*acc)[j] += f16_at(u[j] * 34u) * s[j];
            }
        }
        case DTYPE_Q4_0, DTYPE_Q4_1, DTYPE_Q5_0, DTYPE_Q5_1: {
            // d, [m], [qh], 16 bytes: byte i holds element i in its low nibble and
            // i + 16 in its high one; Q5 adds bit i of qh as the fifth bit.
            let five = WEIGHT_DTYPE == DTYPE_Q5_0 || WEIGHT_DTYPE == DTYPE_Q5_1;
            let size = 18u + 2u * (WEIGHT_DTYPE - DTYPE_Q4_0); // 18, 20, 22, 24 bytes
            var qs: array<Stream, MAX_ROWS>;
            var qh: RowIndex;
            var qx: Rows;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                let b = u[j] * size;
                qs[j] = stream_at(b + size - 16u);
                if five {
                    qh[j] = u32_at(b + size - 20u);
                }
            }
            var xs = 0.0;
            for (var i = 0u; i < 4u; i++) {
                let lo = x4(xb + 4u * i);
                let hi = x4(xb + 16u + 4u * i);
                xs += sum4(lo + hi);
                for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                    qs[j] = advance(qs[j]);
                    let q = qs[j].word;
                    var q_lo = bytes4(q & NIBBLES);
                    var q_hi = bytes4((q >> 4u) & NIBBLES);
                    if five {
                        q_lo += 16.0 * bytes4(spread4(qh[j] >> (4u * i)));
                        q_hi += 16.0 * bytes4(spread4(qh[j] >> (16u + 4u * i)));
                    }
                    qx[j] += dot(q_lo, lo) + dot(q_hi, hi);
                }
            }
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                let b = u[j] * size;
                let d = f16_at(b);
                switch WEIGHT_DTYPE {
                    case DTYPE_Q4_0: { (*acc)[j] += d * (qx[j] - 8.0 * xs); }
                    case DTYPE_Q5_0: { (*acc)[j] += d * (qx[j] - 16.0 * xs); }
                    default: { (*acc)[j] += d * qx[j] + f16_at(b + 2u) * xs; }
                }
            }
        }
        case DTYPE_Q4_K, DTYPE_Q5_K: {
            // d, dmin, 12 bytes of 6-bit (scale, min) pairs, [Q5_K: 32 bytes of high
            // bits], 128 bytes of nibbles. Unit c (of 4) is sub-blocks 2c and 2c + 1:
            // the low and high nibbles of bytes 32c .. 32c + 31. Blocks are 4-byte aligned.
            let size = select(176u, 144u, WEIGHT_DTYPE == DTYPE_Q4_K);
            var qx_lo: Rows;
            var qx_hi: Rows;
            var xs = vec2<f32>(0.0);
            for (var i = 0u; i < 8u; i++) {
                let lo = x4(xb + 4u * i);
                let hi = x4(xb + 32u + 4u * i);
                xs += vec2<f32>(sum4(lo), sum4(hi));
                for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                    let b = (u[j] / 4u) * size;
                    let c = u[j] % 4u;
                    let q = load_word((b + size - 128u + 32u * c) / 4u + i);
                    var q_lo = bytes4(q & NIBBLES);
                    var q_hi = bytes4((q >> 4u) & NIBBLES);
                    if WEIGHT_DTYPE == DTYPE_Q5_K {
                        let high = load_word((b + 16u) / 4u + i) >> (2u * c);
                        q_lo += 16.0 * bytes4(high & 0x01010101u);
                        q_hi += 16.0 * bytes4((high >> 1u) & 0x01010101u);
                    }
                    qx_lo[j] += dot(q_lo, lo);
                    qx_hi[j] += dot(q_hi, hi);
                }
            }
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                let b = (u[j] / 4u) * size;
                let c = u[j] % 4u;
                let lo = k_scale_min(b + 4u, 2u * c);
                let hi = k_scale_min(b + 4u, 2u * c + 1u);
                let scaled = lo.x * qx_lo[j] + hi.x * qx_hi[j];
                let mins = lo.y * xs.x + hi.y * xs.y;
                (*acc)[j] += f16_at(b) * scaled - f16_at(b + 2u) * mins;
            }
        }
        case DTYPE_Q6_K: {
            // 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, d.
            // Unit h (of 2) is half h of the block: quarter q of it (32 elements) takes
            // its low bits from nibble q / 2 of ql bytes 64h + 32 (q % 2) + l and its
            // high ones from bits 2q of qh byte 32h + l; one scale per 16 elements.
            var ql0: array<Stream, MAX_ROWS>;
            var ql1: array<Stream, MAX_ROWS>;
            var qh: array<Stream, MAX_ROWS>;
            var first: array<vec4<f32>, MAX_ROWS>;  // quarters 0..3, elements l < 16
            var second: array<vec4<f32>, MAX_ROWS>; // l >= 16
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                let b = (u[j] / 2u) * 210u + 64u * (u[j] % 2u);
                ql0[j] = stream_at(b);
                ql1[j] = stream_at(b + 32u);
                qh[j] = stream_at(b + 128u - 32u * (u[j] % 2u));
            }
            for (var i = 0u; i < 8u; i++) {
                let x0 = x4(xb + 4u * i);
                let x1 = x4(xb + 32u + 4u * i);
                let x2 = x4(xb + 64u + 4u * i);
                let x3 = x4(xb + 96u + 4u * i);
                for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                    ql0[j] = advance(ql0[j]);
                    ql1[j] = advance(ql1[j]);
                    qh[j] = advance(qh[j]);
                    let low0 = ql0[j].word;
                    let low1 = ql1[j].word;
                    let high = qh[j].word;
                    let q0 = (low0 & NIBBLES) | ((high & 0x03030303u) << 4u);
                    let q1 = (low1 & NIBBLES) | (((high >> 2u) & 0x03030303u) << 4u);
                    let q2 = ((low0 >> 4u) & NIBBLES) | (((high >> 4u) & 0x03030303u) << 4u);
                    let q3 = ((low1 >> 4u) & NIBBLES) | (((high >> 6u) & 0x03030303u) << 4u);
                    let part = vec4<f32>(
                        dot(bytes4(q0) - 32.0, x0),
                        dot(bytes4(q1) - 32.0, x1),
                        dot(bytes4(q2) - 32.0, x2),
                        dot(bytes4(q3) - 32.0, x3),
                    );
                    if i < 4u {
                        first[j] += part;
                    } else {
                        second[j] += part;
                    }
                }
            }
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                // Scale byte 2q + (l >= 16) of this half.
                let block = (u[j] / 2u) * 210u;
                let s03_words = advance(stream_at(block + 192u + 8u * (u[j] % 2u)));
                let s03 = i8x4(s03_words.word);
                let s47 = i8x4(advance(s03_words).word);
                let total = dot(first[j], vec4<f32>(s03.x, s03.z, s47.x, s47.z))
                    + dot(second[j], vec4<f32>(s03.y, s03.w, s47.y, s47.w));
                (*acc)[j] += f16_at(block + 208u) * total;
            }
        }
        case DTYPE_Q1_0: {
            // d, 16 bytes of signs (bit i % 8 of byte i / 8 is element i, set for +d):
            // dot = d (Σ x where set - Σ x where clear) = d (2 Σ_set x - Σ x), Σ x shared
            // by the thread's rows. Word i of the signs covers elements 32i .. 32i + 31.
            var qs: array<Stream, MAX_ROWS>;
            var plus: Rows;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                qs[j] = stream_at(u[j] * 18u + 2u);
            }
            var xs = 0.0;
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                    qs[j] = advance(qs[j]);
                }
                for (var v = 0u; v < 8u; v++) {
                    let xv = x4(xb + 32u * i + 4u * v);
                    xs += sum4(xv);
                    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                        plus[j] += dot(bits4(qs[j].word >> (4u * v)), xv);
                    }
                }
            }
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                (*acc)[j] += f16_at(u[j] * 18u) * (2.0 * plus[j] - xs);
            }
        }
        case DTYPE_Q2_0: {
            // d, 16 bytes of 2-bit codes (bits 2 (i % 4) of byte i / 4): dot =
            // d (Σ q x - Σ x). Word i covers elements 16i .. 16i + 15, byte v of it four.
            var qs: array<Stream, MAX_ROWS>;
            var qx: Rows;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                qs[j] = stream_at(u[j] * 18u + 2u);
            }
            var xs = 0.0;
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                    qs[j] = advance(qs[j]);
                }
                for (var v = 0u; v < 4u; v++) {
                    let xv = x4(xb + 16u * i + 4u * v);
                    xs += sum4(xv);
                    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                        qx[j] += dot(codes4(qs[j].word >> (8u * v)), xv);
                    }
                }
            }
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                (*acc)[j] += f16_at(u[j] * 18u) * (qx[j] - xs);
            }
        }
        case DTYPE_TQ1_0: {
            // 48 bytes of five trits, 4 of four, d: word i (bytes 4i .. 4i + 3) holds
            // trit n of elements first + stride n .. + 3 (tq1_0_quad the other way
            // round), and dot = d (Σ t x - Σ x).
            var qs: array<Stream, MAX_ROWS>;
            var tx: Rows;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                qs[j] = stream_at(u[j] * 54u);
            }
            var xs = 0.0;
            for (var i = 0u; i < 13u; i++) {
                for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                    qs[j] = advance(qs[j]);
                }
                var first = 4u * i;
                var stride = 32u;
                if i >= 8u {
                    first = 160u + 4u * (i - 8u);
                    stride = 16u;
                }
                if i == 12u {
                    first = 240u;
                    stride = 4u;
                }
                var pow3 = 1u;
                for (var n = 0u; n < select(5u, 4u, i == 12u); n++) {
                    let xv = x4(xb + first + stride * n);
                    xs += sum4(xv);
                    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                        tx[j] += dot(vec4<f32>(trits4(qs[j].word, pow3)), xv);
                    }
                    pow3 *= 3u;
                }
            }
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                (*acc)[j] += f16_at(u[j] * 54u + 52u) * (tx[j] - xs);
            }
        }
        case DTYPE_TQ2_0: {
            // 64 bytes of 2-bit codes, d: unit h (of 2) is half h of the block, bytes
            // 32h .. 32h + 31, bits 2l of byte 32h + m element 32l + m of the half; dot =
            // d (Σ q x - Σ x). Word i covers m = 4i .. 4i + 3 of each l.
            var qs: array<Stream, MAX_ROWS>;
            var qx: Rows;
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                qs[j] = stream_at((u[j] / 2u) * 66u + 32u * (u[j] % 2u));
            }
            var xs = 0.0;
            for (var i = 0u; i < 8u; i++) {
                for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                    qs[j] = advance(qs[j]);
                }
                for (var l = 0u; l < 4u; l++) {
                    let xv = x4(xb + 32u * l + 4u * i);
                    xs += sum4(xv);
                    for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                        qx[j] += dot(bytes4((qs[j].word >> (2u * l)) & 0x03030303u), xv);
                    }
                }
            }
            for (var j = 0u; j < ROWS_PER_THREAD; j++) {
                (*acc)[j] += f16_at((u[j] / 2u) * 66u + 64u) * (qx[j] - xs);
            }
        }
        default: {}
    }
}
