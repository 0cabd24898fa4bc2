#version 460
// y[m, r] = x[m, :] · W[r, :] + bias[r] for a few activation rows m (decode: one token per sequence).
// Bandwidth-bound: each workgroup reads ROWS whole weight rows once, with 16-byte loads (8 bf16/f16 or
// 4 f32 values per load; block-quantized rows: eight values' codes, a word or two, and their block's scales)
// spread over its invocations, and applies them to all m activation rows at once,
// so a batch of sequences costs one pass over the weights. Partial sums meet in subgroup, then shared memory.
// A decode step is many small kernels, and on a GPU each launch and barrier costs more than a small matrix's read,
// so one dispatch does what would be several:
// - up to three weights of one type and width read against the same x: the attention's q, k and v projections
//   (workgroups of q's rows, then k's, then v's), or the SwiGLU's gate and up (`gated`: each workgroup takes ROWS / 2
//   rows of both and writes silu(gate) * up);
// - the RMSNorm before it (`norm`): x ⊙ the norm's weight goes into the dot products and the sum of x² alongside, and
//   each result is scaled by 1 / sqrt(mean(x²) + eps) at the end (the same product, as the scale is one number per
//   row); workgroup 0 also writes the normalized x to `normOut`, as the norm alone would have;
// - the residual add after it (`residual`): residual += y, each element by the invocation that wrote it.
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint GROUP = 64;
layout(constant_id = 1) const uint ROWS = 2;
// Activation rows, a pipeline per count (1..8) so every loop over them unrolls into registers.
layout(constant_id = 2) const uint M = 1;
const uint MAX_M = M;
// What is fused, a pipeline each, so that a plain product carries none of the fused ones' work: 1, an RMSNorm
// (p.norm set); 2, more than one weight (q/k/v, or gate and up).
layout(constant_id = 3) const uint FUSED = 0;
const bool NORM = (FUSED & 1u) != 0u;
const bool SEVERAL = (FUSED & 2u) != 0u;

const uint WIDE = 1u;    // every weight row starts on a 16-byte boundary and is whole 16-byte chunks
const uint GATED = 2u;   // w[0] is the gate and w[1] the up projection (same rows); y[0] = silu(x·gateᵀ) * (x·upᵀ)

layout(push_constant) uniform Push {
    uint64_t x;         // [m, cols] f32
    uint64_t w[3];      // [rows[i], cols] stored type; rows[i] = 0 past the last weight
    uint64_t bias[3];   // [rows[i]] f32, or 0
    uint64_t y[3];      // [m, rows[i]] f32
    uint64_t norm;      // [cols] f32: the weight of an RMSNorm of x to apply first, or 0
    uint64_t normOut;   // [m, cols] f32: where that norm's output goes
    uint64_t residual;  // [m, rows[0]] f32 that also receives += y[0], or 0
    uint rows[3];
    uint cols;
    float eps;
    uint flags;         // WIDE | GATED
} p;

// The weight and row that lane r (0..ROWS-1) of workgroup g reads; false past that weight's last row.
bool laneRow(uint g, uint r, out uint part, out uint row) {
    if (!SEVERAL) {
        part = 0u;
        row = g * ROWS + r;
        return row < p.rows[0];
    }
    if ((p.flags & GATED) != 0u) {
        const uint half_ = ROWS / 2u;
        part = r / half_;
        row = g * half_ + r % half_;
        return row < p.rows[0];
    }
    uint groups0 = (p.rows[0] + ROWS - 1u) / ROWS, groups1 = (p.rows[1] + ROWS - 1u) / ROWS;
    part = g < groups0 ? 0u : (g < groups0 + groups1 ? 1u : 2u);
    uint first = part == 0u ? g : (part == 1u ? g - groups0 : g - groups0 - groups1);
    row = first * ROWS + r;
    return row < p.rows[part];
}

shared float partials[ROWS * MAX_M + MAX_M][64];   // the dot products, then the fused norm's sums of squares

#if defined(WEIGHT_F32) || defined(WEIGHT_Q8_0)
const uint PER_CHUNK = 4;
#else
const uint PER_CHUNK = 8;
#endif

// Four activation values of row j from column c (a multiple of 4), times the norm's weight when one is fused, their
// squares added to ss when read for lane 0 (every column is read once per lane).
vec4 xAt(uint j, uint c, inout float ss, uint lane) {
    vec4 v = Float4s(p.x).v[(j * p.cols + c) / 4];
    if (!NORM) { return v; }
    if (lane == 0u) { ss += dot(v, v); }
    return v * Float4s(p.norm).v[c / 4];
}

float xAt1(uint j, uint c, inout float ss) {
    float v = Floats(p.x).f[j * p.cols + c];
    if (!NORM) { return v; }
    ss += v * v;
    return v * Floats(p.norm).f[c];
}

void main() {
    uint g = linearGroup();
    uint parts[ROWS], rowOf[ROWS];
    bool live[ROWS];
    for (uint r = 0; r < ROWS; r++) { live[r] = laneRow(g, r, parts[r], rowOf[r]); }
    if (!live[0]) { return; }
    uint t = gl_LocalInvocationID.x;
    float acc[ROWS][MAX_M], ss[MAX_M];
    for (uint j = 0; j < MAX_M; j++) {
        ss[j] = 0.0;
        for (uint r = 0; r < ROWS; r++) { acc[r][j] = 0.0; }
    }

#if defined(WEIGHT_BLOCKS)
    // Block-quantized rows: eight weights an invocation at a time (quarterAt), neighbours reading neighbouring words.
    // The activations at a quarter's columns are loaded with lane 0's weights (lane 0 is always a row) for every lane.
    uint quarters = p.cols / 8u;
    for (uint c = t; c < quarters; c += GROUP) {
        uint unit = c >> 2, quarter = c & 3u;
        for (uint r = 0; r < ROWS; r++) {
            if (!live[r]) { continue; }
            vec4 lo, hi;
            uint c0, c1;
            quarterAt(p.w[parts[r]], rowOf[r] * p.cols, unit, quarter, lo, hi, c0, c1);
            for (uint j = 0; j < M; j++) { acc[r][j] += dot(lo, xAt(j, c0, ss[j], r)) + dot(hi, xAt(j, c1, ss[j], r)); }
        }
    }
#else
    if ((p.flags & WIDE) != 0u) {
        uint chunks = p.cols / PER_CHUNK;
        for (uint c = t; c < chunks; c += GROUP) {
            vec4 xs[MAX_M][PER_CHUNK / 4];
            for (uint j = 0; j < M; j++) {
                for (uint h = 0; h < PER_CHUNK / 4; h++) { xs[j][h] = xAt(j, c * PER_CHUNK + 4u * h, ss[j], 0u); }
            }
            for (uint r = 0; r < ROWS; r++) {
                if (!live[r]) { continue; }
                uvec4 q = Uint4s(p.w[parts[r]]).v[rowOf[r] * chunks + c];
#if defined(WEIGHT_BF16)
                vec4 lo = vec4(uintBitsToFloat(q.x << 16), uintBitsToFloat(q.x & 0xFFFF0000u),
                               uintBitsToFloat(q.y << 16), uintBitsToFloat(q.y & 0xFFFF0000u));
                vec4 hi = vec4(uintBitsToFloat(q.z << 16), uintBitsToFloat(q.z & 0xFFFF0000u),
                               uintBitsToFloat(q.w << 16), uintBitsToFloat(q.w & 0xFFFF0000u));
                for (uint j = 0; j < M; j++) { acc[r][j] += dot(lo, xs[j][0]) + dot(hi, xs[j][1]); }
#elif defined(WEIGHT_F16)
                vec4 lo = vec4(unpackHalf2x16(q.x), unpackHalf2x16(q.y));
                vec4 hi = vec4(unpackHalf2x16(q.z), unpackHalf2x16(q.w));
                for (uint j = 0; j < M; j++) { acc[r][j] += dot(lo, xs[j][0]) + dot(hi, xs[j][1]); }
#else
                vec4 ws = uintBitsToFloat(q);
                for (uint j = 0; j < M; j++) { acc[r][j] += dot(ws, xs[j][0]); }
#endif
            }
        }
    } else {
        // Rows that do not start on 16 bytes (cols not a multiple of 8, or 4 for f32): one value at a time.
        for (uint c = t; c < p.cols; c += GROUP) {
            float xv[MAX_M];
            for (uint j = 0; j < M; j++) { xv[j] = xAt1(j, c, ss[j]); }
            for (uint r = 0; r < ROWS; r++) {
                if (!live[r]) { continue; }
                float wv = weightAt(p.w[parts[r]], rowOf[r] * p.cols + c);
                for (uint j = 0; j < M; j++) { acc[r][j] += wv * xv[j]; }
            }
        }
    }
#endif

    for (uint r = 0; r < ROWS; r++) {
        for (uint j = 0; j < M; j++) {
            float s = subgroupAdd(acc[r][j]);
            if (subgroupElect()) { partials[r * MAX_M + j][gl_SubgroupID] = s; }
        }
    }
    if (NORM) {
        for (uint j = 0; j < M; j++) {
            float s = subgroupAdd(ss[j]);
            if (subgroupElect()) { partials[ROWS * MAX_M + j][gl_SubgroupID] = s; }
        }
    }
    barrier();

    // 1 / rms of each activation row (1 without a fused norm).
    float scale[MAX_M];
    for (uint j = 0; j < M; j++) {
        scale[j] = 1.0;
        if (NORM) {
            float sum = 0.0;
            for (uint i = 0; i < gl_NumSubgroups; i++) { sum += partials[ROWS * MAX_M + j][i]; }
            scale[j] = 1.0 / sqrt(sum / float(p.cols) + p.eps);
        }
    }
    if (NORM && g == 0u) {
        for (uint c = t; c < p.cols; c += GROUP) {
            for (uint j = 0; j < M; j++) {
                Floats(p.normOut).f[j * p.cols + c] = Floats(p.x).f[j * p.cols + c] * scale[j] * Floats(p.norm).f[c];
            }
        }
    }

    if (SEVERAL && (p.flags & GATED) != 0u) {
        const uint half_ = ROWS / 2u;
        if (t < half_ * M) {
            uint r = t / M, j = t % M;
            if (live[r]) {
                float gate = 0.0, up = 0.0;
                for (uint i = 0; i < gl_NumSubgroups; i++) {
                    gate += partials[r * MAX_M + j][i];
                    up += partials[(r + half_) * MAX_M + j][i];
                }
                gate *= scale[j];
                up *= scale[j];
                Floats(p.y[0]).f[j * p.rows[0] + rowOf[r]] = gate / (1.0 + exp(-gate)) * up;
            }
        }
    } else if (t < ROWS * M) {
        uint r = t / M, j = t % M;
        if (live[r]) {
            uint part = parts[r], row = rowOf[r];
            float total = 0.0;
            for (uint i = 0; i < gl_NumSubgroups; i++) { total += partials[r * MAX_M + j][i]; }
            total *= scale[j];
            if (p.bias[part] != 0ul) { total += Floats(p.bias[part]).f[row]; }
            Floats(p.y[part]).f[j * p.rows[part] + row] = total;
            if (p.residual != 0ul) { Floats(p.residual).f[j * p.rows[0] + row] += total; }
        }
    }
}
