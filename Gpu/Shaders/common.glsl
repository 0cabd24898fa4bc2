// Shared by every QwenSharp shader: buffers arrive as 64-bit device addresses in the push constants
// (GL_EXT_buffer_reference), so no shader declares descriptor bindings and no buffer is capped by
// maxStorageBufferRange; reductions go through subgroups, then shared memory across subgroups, so they are
// correct for any subgroup size (8 on lavapipe, 32 on NVIDIA, 64 on AMD).
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(buffer_reference, std430, buffer_reference_align = 4) buffer Floats { float f[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer Float4s { vec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer Uints { uint u[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer Uint4s { uvec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer Ints { int i[]; };

// Workgroups beyond maxComputeWorkGroupCount[0] (65535 on many devices) spill into y: the host splits a
// 1-D grid into x * y and every shader reads its linear group index here.
uint linearGroup() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// Four bytes of a word as floats (unsigned) or as signed int8 values.
vec4 bytesOf(uint word) { return vec4(word & 0xFFu, (word >> 8) & 0xFFu, (word >> 16) & 0xFFu, word >> 24); }
vec4 signedBytesOf(uint word) {
    return vec4(int(word << 24) >> 24, int(word << 16) >> 24, int(word << 8) >> 24, int(word) >> 24);
}

// Weights stay in their stored type: bf16 is the top half of an f32, f16 is IEEE half, f32 is itself.
#if defined(WEIGHT_BF16)
float weightAt(uint64_t w, uint i) {
    uint word = Uints(w).u[i >> 1];
    return uintBitsToFloat((i & 1u) == 0u ? word << 16 : word & 0xFFFF0000u);
}
#elif defined(WEIGHT_F16)
float weightAt(uint64_t w, uint i) {
    vec2 pair = unpackHalf2x16(Uints(w).u[i >> 1]);
    return (i & 1u) == 0u ? pair.x : pair.y;
}
#elif defined(WEIGHT_F32)
float weightAt(uint64_t w, uint i) { return uintBitsToFloat(Uints(w).u[i]); }
#elif defined(WEIGHT_Q8_0) || defined(WEIGHT_Q4_0) || defined(WEIGHT_Q4_1) || defined(WEIGHT_Q5_1) || defined(WEIGHT_Q2_K) || defined(WEIGHT_Q3_K) || defined(WEIGHT_IQ4_XS) || defined(WEIGHT_Q4_K) || defined(WEIGHT_Q5_K) || defined(WEIGHT_Q6_K)
// Block-quantized weights (GGUF's blocks as stored, each value widened as ggml's dequantize_row_* defines it). Blocks
// are only 2-byte aligned, so bytes are read out of the 32-bit words that hold them (buffers are padded to 16 bytes).
#define WEIGHT_BLOCKS 1
uint byteAt(uint64_t w, uint offset) { return (Uints(w).u[offset >> 2] >> ((offset & 3u) * 8u)) & 0xFFu; }
float halfAt(uint64_t w, uint offset) { return unpackHalf2x16(byteAt(w, offset) | (byteAt(w, offset + 1u) << 8)).x; }
#if defined(WEIGHT_Q8_0)
// Q8_0: 34 bytes, d then 32 int8 q; value = d * q.
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 5) * 34u;
    int q = int(byteAt(w, base + 2u + (i & 31u)) << 24) >> 24;
    return halfAt(w, base) * float(q);
}
#elif defined(WEIGHT_Q4_0)
// Q4_0: 18 bytes, d then 16 bytes of nibbles: value j < 16 is byte j's low nibble, value j >= 16 byte j - 16's high
// nibble; value = d * (q - 8).
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 5) * 18u, j = i & 31u;
    uint q = (byteAt(w, base + 2u + (j & 15u)) >> ((j >> 4) * 4u)) & 0xFu;
    return halfAt(w, base) * float(int(q) - 8);
}
#elif defined(WEIGHT_Q4_1) || defined(WEIGHT_Q5_1)
// Q4_1: 20 bytes, d and m (f16), then 16 bytes of nibbles laid out as Q4_0's. Q5_1: 24 bytes, d and m, qh (bit j is value
// j's fifth bit), then the nibbles. value = d * q + m (d * q is exact in f32, so a fused multiply-add rounds alike).
#if defined(WEIGHT_Q4_1)
const uint BYTES = 20u, CODES = 4u;
#else
const uint BYTES = 24u, CODES = 8u;
#endif
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 5) * BYTES, j = i & 31u;
    uint q = (byteAt(w, base + CODES + (j & 15u)) >> ((j >> 4) * 4u)) & 0xFu;
#if defined(WEIGHT_Q5_1)
    q |= ((byteAt(w, base + 4u + (j >> 3)) >> (j & 7u)) & 1u) << 4;
#endif
    return halfAt(w, base) * float(q) + halfAt(w, base + 2u);
}
#elif defined(WEIGHT_Q2_K)
// Q2_K (84 bytes a super-block of 256): scales[16] (low nibble a 4-bit scale, high nibble a 4-bit min), qs[64], d, dmin
// (f16). Value j = 128n + 32t + 16h + l takes bits 2t, 2t + 1 of qs[32n + 16h + l] and scale byte 8n + 2t + h;
// value = d × sc × q − dmin × m.
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 8) * 84u, j = i & 255u, n = j >> 7, t = (j & 127u) >> 5, h = (j & 31u) >> 4, l = j & 15u;
    uint q = (byteAt(w, base + 16u + 32u * n + 16u * h + l) >> (2u * t)) & 3u;
    uint sc = byteAt(w, base + 8u * n + 2u * t + h);
    return halfAt(w, base + 80u) * float(sc & 0xFu) * float(q) - halfAt(w, base + 82u) * float(sc >> 4);
}
#elif defined(WEIGHT_Q3_K)
// Q3_K (110 bytes a super-block of 256, so only 2-byte aligned): hmask[32], qs[64], 12 bytes of 16 six-bit scales, d (f16).
// Value j = 128n + 32t + l takes bits 2t, 2t + 1 of qs[32n + l] and, as bit 2, bit 4n + t of hmask[l]: q = that - 4 (-4..3);
// its group g = j / 16 has the scale sc - 32, sc's low four bits the low (g < 8) or high nibble of scales[g % 8], its top
// two bits 2 (g / 4), 2 (g / 4) + 1 of scales[8 + g % 4] (ggml's kmask unpacking); value = (d × (sc − 32)) × q.
float q3kScale(uint64_t w, uint base, uint g) {
    uint low = (byteAt(w, base + 96u + (g & 7u)) >> ((g >> 3) * 4u)) & 0xFu;
    uint high = (byteAt(w, base + 104u + (g & 3u)) >> (2u * (g >> 2))) & 3u;
    return halfAt(w, base + 108u) * float(int(low | (high << 4)) - 32);
}

float weightAt(uint64_t w, uint i) {
    uint base = (i >> 8) * 110u, j = i & 255u, n = j >> 7, t = (j & 127u) >> 5, l = j & 31u;
    uint c = ((byteAt(w, base + 32u + 32u * n + l) >> (2u * t)) & 3u) | (((byteAt(w, base + l) >> (4u * n + t)) & 1u) << 2);
    return q3kScale(w, base, j >> 4) * float(int(c) - 4);
}
#elif defined(WEIGHT_IQ4_XS)
// IQ4_XS (136 bytes a super-block of 256): d (f16), scales_h (u16), scales_l[4], qs[128]. Sub-block s = j / 32 has the 6-bit
// scale ls = nibble (s % 2) of scales_l[s / 2] | bits 2s, 2s + 1 of scales_h << 4; its value l = j % 32 is the low (l < 16)
// or high nibble of qs[16s + l % 16], an index into ggml's kvalues_iq4nl; value = (d × (ls − 32)) × kvalues_iq4nl[index].
const int IQ4_VALUES[16] = int[16](-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
// Sub-block s's scale of the super-block at base (4-byte aligned: 136 = 4 × 34), times d.
float iq4xsScale(uint64_t w, uint base, uint s) {
    uint head = Uints(w).u[base >> 2], low = Uints(w).u[(base >> 2) + 1u];
    uint ls = ((low >> (4u * s)) & 0xFu) | (((head >> (16u + 2u * s)) & 3u) << 4);
    return unpackHalf2x16(head & 0xFFFFu).x * float(int(ls) - 32);
}

float weightAt(uint64_t w, uint i) {
    uint base = (i >> 8) * 136u, j = i & 255u, s = j >> 5, l = j & 31u;
    uint index = (byteAt(w, base + 8u + 16u * s + (l & 15u)) >> ((l >> 4) * 4u)) & 0xFu;
    return iq4xsScale(w, base, s) * float(IQ4_VALUES[index]);
}
#elif defined(WEIGHT_Q4_K) || defined(WEIGHT_Q5_K)
// Q4_K (144 bytes a super-block of 256) and Q5_K (176): d, dmin (f16), 12 bytes of 6-bit scales and mins, (Q5_K: qh[32],)
// qs[128]. Value j is in sub-block s = j / 32 (its scale and min as ggml's get_scale_min_k4); its code is the low (s even)
// or high (s odd) nibble of qs[32 (s / 2) + j % 32], plus 16 for Q5_K when bit s of qh[j % 32] is set;
// value = d × scale × q − dmin × min.
// Sub-block s's 6-bit scale and min of the Q4_K/Q5_K super-block at base (ggml's get_scale_min_k4): the 12 bytes after d
// and dmin hold s < 4's in the low six bits of bytes s and 4 + s, the others' low nibbles in byte 8 + s and their top bits
// in the top two bits of bytes s - 4 and s.
void scaleMinK4(uint64_t w, uint base, uint s, out uint sc, out uint m) {
    if (s < 4u) {
        sc = byteAt(w, base + 4u + s) & 63u;
        m = byteAt(w, base + 8u + s) & 63u;
    } else {
        uint packed = byteAt(w, base + 8u + s);
        sc = (packed & 0xFu) | ((byteAt(w, base + s) >> 6) << 4);
        m = (packed >> 4) | ((byteAt(w, base + 4u + s) >> 6) << 4);
    }
}

// A super-block's bytes, and where its qs (the nibbles) start.
#if defined(WEIGHT_Q4_K)
const uint BYTES = 144u, CODES = 16u;
#else
const uint BYTES = 176u, CODES = 48u;
#endif

float weightAt(uint64_t w, uint i) {
    uint base = (i >> 8) * BYTES, j = i & 255u, s = j >> 5, l = j & 31u;
    uint sc, m;
    scaleMinK4(w, base, s, sc, m);
    uint q = (byteAt(w, base + CODES + 32u * (s >> 1) + l) >> ((s & 1u) * 4u)) & 0xFu;
#if defined(WEIGHT_Q5_K)
    q |= ((byteAt(w, base + 16u + l) >> s) & 1u) << 4;
#endif
    return halfAt(w, base) * float(sc) * float(q) - halfAt(w, base + 2u) * float(m);
}
#elif defined(WEIGHT_Q6_K)
// Q6_K (210 bytes a super-block of 256): ql[128], qh[64], int8 scales[16], d (f16). Value j: half n = j / 128, quarter
// t = (j % 128) / 32, l = j % 32; its low 4 bits are the low (t < 2) or high nibble of ql[64n + 32 (t % 2) + l], its top
// 2 bits bits 2t, 2t + 1 of qh[32n + l]; value = d × scales[j / 16] × (q − 32).
float weightAt(uint64_t w, uint i) {
    uint base = (i >> 8) * 210u, j = i & 255u, n = j >> 7, t = (j & 127u) >> 5, l = j & 31u;
    uint low = (byteAt(w, base + 64u * n + 32u * (t & 1u) + l) >> ((t >> 1) * 4u)) & 0xFu;
    uint high = (byteAt(w, base + 128u + 32u * n + l) >> (2u * t)) & 3u;
    int scale = int(byteAt(w, base + 192u + (j >> 4)) << 24) >> 24;
    return halfAt(w, base + 208u) * float(scale) * float(int(low | (high << 4)) - 32);
}
#endif

// The 32-bit little-endian word at any byte offset (blocks are only 2-byte aligned); buffers are padded to 16 bytes, so
// the word after the last one read is there.
uint wordAt(uint64_t w, uint offset) {
    uint at = offset >> 2, shift = (offset & 3u) * 8u;
    uint low = Uints(w).u[at];
    return shift == 0u ? low : (low >> shift) | (Uints(w).u[at + 1u] << (32u - shift));
}


// Block-wise reads for the matrix-vector product: eight weights of one row at a time, widened exactly as weightAt widens
// them (same formulas), with the columns they belong to. The row's values are cut into units of 32 (a Q8_0/Q4_0 block, a
// k-quant sub-block), a unit into quarters of 8; quarter q of unit u gives weights lo (columns c0..c0 + 3) and hi (c1..c1 + 3),
// the columns counted from the row's start. Neighbouring invocations take neighbouring quarters, so their loads of the
// codes are neighbouring words. `first` is the row's first value (a whole number of blocks).
void quarterAt(uint64_t w, uint first, uint u, uint q, out vec4 lo, out vec4 hi, out uint c0, out uint c1) {
#if defined(WEIGHT_Q8_0)
    // 32 int8 codes after the f16 scale: the quarter's 8 are consecutive.
    uint base = ((first >> 5) + u) * 34u;
    float d = halfAt(w, base);
    lo = d * signedBytesOf(wordAt(w, base + 2u + 8u * q));
    hi = d * signedBytesOf(wordAt(w, base + 6u + 8u * q));
    c0 = 32u * u + 8u * q;
    c1 = c0 + 4u;
#elif defined(WEIGHT_Q4_0)
    // Bytes 4q..4q + 3 of the nibbles: their low nibbles are values 4q.., their high ones 16 + 4q...
    uint base = ((first >> 5) + u) * 18u;
    float d = halfAt(w, base);
    uint codes = wordAt(w, base + 2u + 4u * q);
    lo = d * (bytesOf(codes & 0x0F0F0F0Fu) - 8.0);
    hi = d * (bytesOf((codes >> 4) & 0x0F0F0F0Fu) - 8.0);
    c0 = 32u * u + 4u * q;
    c1 = c0 + 16u;
#elif defined(WEIGHT_Q4_1) || defined(WEIGHT_Q5_1)
    // As Q4_0's, with the block's minimum added (and for Q5_1 the fifth bits of values 4q.. and 16 + 4q.., bits 4q.. and
    // 16 + 4q.. of qh, each moved to bit 4 of its byte).
    uint base = ((first >> 5) + u) * BYTES;
    float d = halfAt(w, base), m = halfAt(w, base + 2u);
    uint codes = wordAt(w, base + CODES + 4u * q);
    uint low = codes & 0x0F0F0F0Fu, high = (codes >> 4) & 0x0F0F0F0Fu;
#if defined(WEIGHT_Q5_1)
    uint qh = wordAt(w, base + 4u), bitsLow = (qh >> (4u * q)) & 0xFu, bitsHigh = (qh >> (16u + 4u * q)) & 0xFu;
    low |= ((bitsLow & 1u) | ((bitsLow & 2u) << 7) | ((bitsLow & 4u) << 14) | ((bitsLow & 8u) << 21)) << 4;
    high |= ((bitsHigh & 1u) | ((bitsHigh & 2u) << 7) | ((bitsHigh & 4u) << 14) | ((bitsHigh & 8u) << 21)) << 4;
#endif
    lo = d * bytesOf(low) + m;
    hi = d * bytesOf(high) + m;
    c0 = 32u * u + 4u * q;
    c1 = c0 + 16u;
#elif defined(WEIGHT_Q2_K)
    // Unit s (32 values) of a super-block is half n = s / 4, shift t = s % 4: values 8q..8q + 7 are one 16-value group
    // (h = q / 2), bits 2t, 2t + 1 of qs[32n + 16h + 8 (q % 2) ..], under scale byte 8n + 2t + h.
    uint base = ((first >> 8) + (u >> 3)) * 84u, s = u & 7u, n = s >> 2, t = s & 3u, h = q >> 1;
    uint at = base + 16u + 32u * n + 8u * q;
    uint codes0 = (Uints(w).u[at >> 2] >> (2u * t)) & 0x03030303u, codes1 = (Uints(w).u[(at >> 2) + 1u] >> (2u * t)) & 0x03030303u;
    uint sc = byteAt(w, base + 8u * n + 2u * t + h);
    float scale = halfAt(w, base + 80u) * float(sc & 0xFu), minimum = halfAt(w, base + 82u) * float(sc >> 4);
    lo = scale * bytesOf(codes0) - minimum;
    hi = scale * bytesOf(codes1) - minimum;
    c0 = 32u * u + 8u * q;
    c1 = c0 + 4u;
#elif defined(WEIGHT_Q3_K)
    // Unit s (32 values) of a super-block is half n = s / 4, shift t = s % 4: values l = 8q..8q + 7 (group 8n + 2t + q / 2)
    // take bits 2t, 2t + 1 of qs[32n + l..] and bit 4n + t of hmask[l..], read as words at any 2-byte offset.
    uint base = ((first >> 8) + (u >> 3)) * 110u, s = u & 7u, n = s >> 2, t = s & 3u, l = 8u * q;
    uint at = base + 32u + 32u * n + l, high = 4u * n + t;
    uint codes0 = ((wordAt(w, at) >> (2u * t)) & 0x03030303u) | (((wordAt(w, base + l) >> high) & 0x01010101u) << 2);
    uint codes1 = ((wordAt(w, at + 4u) >> (2u * t)) & 0x03030303u) | (((wordAt(w, base + l + 4u) >> high) & 0x01010101u) << 2);
    float scale = q3kScale(w, base, 8u * n + 2u * t + (q >> 1));
    lo = scale * (bytesOf(codes0) - 4.0);
    hi = scale * (bytesOf(codes1) - 4.0);
    c0 = 32u * u + l;
    c1 = c0 + 4u;
#elif defined(WEIGHT_IQ4_XS)
    // Sub-block s of a super-block, laid out as a Q4_0 block: bytes 4q..4q + 3 of its 16 hold the indices of values 4q..
    // (low nibbles) and 16 + 4q.. (high nibbles).
    uint base = ((first >> 8) + (u >> 3)) * 136u, s = u & 7u;
    float scale = iq4xsScale(w, base, s);
    uint codes = Uints(w).u[(base + 8u + 16u * s + 4u * q) >> 2];
    lo = scale * vec4(IQ4_VALUES[codes & 0xFu], IQ4_VALUES[(codes >> 8) & 0xFu], IQ4_VALUES[(codes >> 16) & 0xFu], IQ4_VALUES[(codes >> 24) & 0xFu]);
    hi = scale * vec4(IQ4_VALUES[(codes >> 4) & 0xFu], IQ4_VALUES[(codes >> 12) & 0xFu], IQ4_VALUES[(codes >> 20) & 0xFu], IQ4_VALUES[codes >> 28]);
    c0 = 32u * u + 4u * q;
    c1 = c0 + 16u;
#elif defined(WEIGHT_Q4_K) || defined(WEIGHT_Q5_K)
    // Sub-block s of a super-block: values l = 8q..8q + 7 are nibble (s % 2) of qs[32 (s / 2) + l] (Q5_K: bit s of qh[l]
    // on top); super-blocks are 4-byte aligned (144, 176 bytes), so are these words.
    uint base = ((first >> 8) + (u >> 3)) * BYTES, s = u & 7u;
    uint sc, m;
    scaleMinK4(w, base, s, sc, m);
    float scale = halfAt(w, base) * float(sc), minimum = halfAt(w, base + 2u) * float(m);
    uint shift = (s & 1u) * 4u, at = base + CODES + 32u * (s >> 1) + 8u * q;
    uint codes0 = (Uints(w).u[at >> 2] >> shift) & 0x0F0F0F0Fu, codes1 = (Uints(w).u[(at >> 2) + 1u] >> shift) & 0x0F0F0F0Fu;
#if defined(WEIGHT_Q5_K)
    uint hat = (base + 16u + 8u * q) >> 2;
    codes0 |= ((Uints(w).u[hat] >> s) & 0x01010101u) << 4;
    codes1 |= ((Uints(w).u[hat + 1u] >> s) & 0x01010101u) << 4;
#endif
    lo = scale * bytesOf(codes0) - minimum;
    hi = scale * bytesOf(codes1) - minimum;
    c0 = 32u * u + 8u * q;
    c1 = c0 + 4u;
#elif defined(WEIGHT_Q6_K)
    // Unit s is half n = s / 4, quarter t = s % 4 of it: values l = 8q..8q + 7 take nibble (t / 2) of
    // ql[64n + 32 (t % 2) + l] and bits 2t, 2t + 1 of qh[32n + l]; their scale is scales[2s + q / 2].
    uint base = ((first >> 8) + (u >> 3)) * 210u, s = u & 7u, n = s >> 2, t = s & 3u, l = 8u * q;
    uint lowAt = base + 64u * n + 32u * (t & 1u) + l, highAt = base + 128u + 32u * n + l, shift = (t >> 1) * 4u;
    uint low0 = (wordAt(w, lowAt) >> shift) & 0x0F0F0F0Fu, low1 = (wordAt(w, lowAt + 4u) >> shift) & 0x0F0F0F0Fu;
    uint high0 = (wordAt(w, highAt) >> (2u * t)) & 0x03030303u, high1 = (wordAt(w, highAt + 4u) >> (2u * t)) & 0x03030303u;
    int sc = int(byteAt(w, base + 192u + 2u * s + (q >> 1)) << 24) >> 24;
    float scale = halfAt(w, base + 208u) * float(sc);
    lo = scale * (bytesOf(low0 | (high0 << 4)) - 32.0);
    hi = scale * (bytesOf(low1 | (high1 << 4)) - 32.0);
    c0 = 32u * u + l;
    c1 = c0 + 4u;
#endif
}
#endif

// A KV cache of halves (kv_store.comp and attention.comp compiled with KV_F16 or KV_BF16) holds two elements a 32-bit
// word, the lower first, each rounded to nearest even here in integers (not by the device's conversion, whose rounding
// Vulkan leaves open), so every device stores the bits the CPU backend stores.
#if defined(KV_F16) || defined(KV_BF16) || defined(KV_Q8_0) || defined(KV_Q4_0)
layout(buffer_reference, std430, buffer_reference_align = 4) buffer KvWords { uint u[]; };
#endif
#if defined(KV_F16) || defined(KV_BF16)
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer KvWordPairs { uvec2 v[]; };
#endif
#if defined(KV_F16) || defined(KV_Q8_0) || defined(KV_Q4_0)
uint kvBits(float x) {
    uint b = floatBitsToUint(x), sign = (b >> 16) & 0x8000u, a = b & 0x7FFFFFFFu;
    if (a > 0x7F800000u) { return sign | 0x7E00u | ((a >> 13) & 0x3FFu); }   // NaN stays NaN
    if (a >= 0x477FF000u) { return sign | 0x7C00u; }                         // 65520 and up round to infinity
    if (a >= 0x38800000u) {                                                  // a normal half: rebias, round
        uint m = a - 0x38000000u;
        return sign | ((m + 0x0FFFu + ((m >> 13) & 1u)) >> 13);
    }
    uint e = a >> 23;
    if (e < 102u) { return sign; }                                           // below 2^-25: zero
    uint mantissa = (a & 0x7FFFFFu) | 0x800000u, shift = 126u - e;          // a subnormal half: units of 2^-24
    uint q = mantissa >> shift, rest = mantissa & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    return sign | (q + ((rest > halfway || (rest == halfway && (q & 1u) == 1u)) ? 1u : 0u));
}
#endif
#if defined(KV_F16)
vec2 kvPair(uint word) { return unpackHalf2x16(word); }
#elif defined(KV_BF16)
uint kvBits(float x) {
    uint b = floatBitsToUint(x);
    if (isnan(x)) { return (b >> 16) | 0x40u; }
    return (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
}
vec2 kvPair(uint word) { return vec2(uintBitsToFloat(word << 16), uintBitsToFloat(word & 0xFFFF0000u)); }
#endif

// A quantized KV cache (kv_store_quantized.comp, and attention.comp, compiled with KV_Q8_0 or KV_Q4_0) holds each
// position's row of kvDim keys (or values) as kvDim codes (q8_0: int8, value i in byte i; q4_0: 4 bits, value i in nibble
// i % 2 of byte i / 2, low first, and value = scale × (code − 8)), then kvDim / 32 f16 scales (scale b for values
// 32b..32b + 31; its bits as kvBits rounds them), then up to 2 bytes to a whole word (`rowBytes` apart): llama.cpp's
// bytes per block (34 or 18 for 32 values), laid out so that each head's codes are whole aligned words.
#if defined(KV_Q8_0) || defined(KV_Q4_0)
#define KV_QUANTIZED 1
#if defined(KV_Q8_0)
const uint KV_VALUES_PER_WORD = 4u;
#else
const uint KV_VALUES_PER_WORD = 8u;
#endif

// Bytes from a row's start to the code of its value i (a whole word when i is a multiple of KV_VALUES_PER_WORD).
uint kvCodeByte(uint i) { return i * 4u / KV_VALUES_PER_WORD; }

// Scale `block` of the row at byte `row` of a cache of rows of kvDim values.
float kvScale(uint64_t cache, uint row, uint kvDim, uint block) {
    uint at = row + kvCodeByte(kvDim) + 2u * block;
    return unpackHalf2x16(KvWords(cache).u[at >> 2] >> ((at & 2u) * 8u)).x;
}

// Values v..v + 3 (v a multiple of 4) of a word of codes, as the numbers the scale multiplies.
vec4 kvFour(uint word, uint v) {
#if defined(KV_Q8_0)
    return signedBytesOf(word);
#else
    uint shifted = word >> (4u * v);
    return vec4(shifted & 0xFu, (shifted >> 4) & 0xFu, (shifted >> 8) & 0xFu, (shifted >> 12) & 0xFu) - 8.0;
#endif
}

// Value i of the row at byte `row`, as the number its block's scale multiplies.
float kvCode(uint64_t cache, uint row, uint i) {
    uint word = KvWords(cache).u[(row + kvCodeByte(i)) >> 2];
#if defined(KV_Q8_0)
    return float(int(word << (24u - 8u * (i & 3u))) >> 24);
#else
    return float((word >> (4u * (i & 7u))) & 0xFu) - 8.0;
#endif
}

// Sets the 16 bits at byte `at` (even) of a word that another workgroup may be setting the other half of.
void setHalfWord(uint64_t cache, uint at, uint bits) {
    uint shift = (at & 2u) * 8u;
    atomicAnd(KvWords(cache).u[at >> 2], ~(0xFFFFu << shift));
    atomicOr(KvWords(cache).u[at >> 2], bits << shift);
}
#endif
