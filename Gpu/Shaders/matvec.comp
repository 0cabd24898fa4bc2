#version 460
// y[m, r] = x[m, :] · W[r, :] + bias[r] for a few activation rows m (decode: one token per sequence).
// Bandwidth-bound: each workgroup reads ROWS whole weight rows once, with 16-byte loads (8 bf16/f16 or
// 4 f32 values per load; block-quantized rows: eight values' codes, a word or two, and their block's scales)
// spread over its invocations, and applies them to all m activation rows at once,
// so a batch of sequences costs one pass over the weights. Partial sums meet in subgroup, then shared memory.
// One dispatch serves up to three weights of one type and width read against the same x, so a decode step
// launches fewer kernels: the attention's q, k and v projections (workgroups of q's rows, then k's, then v's), or
// the SwiGLU's gate and up (`gated`: each workgroup takes ROWS / 2 rows of both and writes silu(gate) * up).
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint GROUP = 64;
layout(constant_id = 1) const uint ROWS = 2;
// Activation rows, a pipeline per count (1..8) so every loop over them unrolls into registers.
layout(constant_id = 2) const uint M = 1;
const uint MAX_M = M;

layout(push_constant) uniform Push {
    uint64_t x;        // [m, cols] f32
    uint64_t w[3];     // [rows[i], cols] stored type; rows[i] = 0 past the last weight
    uint64_t bias[3];  // [rows[i]] f32, or 0
    uint64_t y[3];     // [m, rows[i]] f32
    uint rows[3];
    uint cols;
    uint wide;         // 1 when every weight row starts on a 16-byte boundary and is whole 16-byte chunks
    uint gated;        // 1: w[0] is the gate and w[1] the up projection (same rows); y[0] = silu(x·gateᵀ) * (x·upᵀ)
} p;

// The weight and row that lane r (0..ROWS-1) of workgroup g reads; false past that weight's last row.
bool laneRow(uint g, uint r, out uint part, out uint row) {
    if (p.gated != 0u) {
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

shared float partials[ROWS * MAX_M][64];

#if defined(WEIGHT_F32) || defined(WEIGHT_Q8_0)
const uint PER_CHUNK = 4;
#else
const uint PER_CHUNK = 8;
#endif

void main() {
    uint g = linearGroup();
    uint parts[ROWS], rowOf[ROWS];
    bool live[ROWS];
    for (uint r = 0; r < ROWS; r++) { live[r] = laneRow(g, r, parts[r], rowOf[r]); }
    if (!live[0]) { return; }
    uint t = gl_LocalInvocationID.x;
    float acc[ROWS][MAX_M];
    for (uint r = 0; r < ROWS; r++) { for (uint j = 0; j < MAX_M; j++) { acc[r][j] = 0.0; } }

#if defined(WEIGHT_BLOCKS)
    // Block-quantized rows: eight weights an invocation at a time (quarterAt), neighbours reading neighbouring words.
    uint quarters = p.cols / 8u;
    for (uint c = t; c < quarters; c += GROUP) {
        uint unit = c >> 2, quarter = c & 3u;
        for (uint r = 0; r < ROWS; r++) {
            if (!live[r]) { continue; }
            vec4 lo, hi;
            uint c0, c1;
            quarterAt(p.w[parts[r]], rowOf[r] * p.cols, unit, quarter, lo, hi, c0, c1);
            for (uint j = 0; j < M; j++) {
                acc[r][j] += dot(lo, Float4s(p.x).v[(j * p.cols + c0) / 4]) + dot(hi, Float4s(p.x).v[(j * p.cols + c1) / 4]);
            }
        }
    }
#else
    if (p.wide != 0u) {
        uint chunks = p.cols / PER_CHUNK;
        for (uint c = t; c < chunks; c += GROUP) {
            vec4 xs[MAX_M][PER_CHUNK / 4];
            for (uint j = 0; j < M; j++) {
                for (uint h = 0; h < PER_CHUNK / 4; h++) {
                    xs[j][h] = Float4s(p.x).v[(j * p.cols) / 4 + c * (PER_CHUNK / 4) + h];
                }
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
            for (uint r = 0; r < ROWS; r++) {
                if (!live[r]) { continue; }
                float wv = weightAt(p.w[parts[r]], rowOf[r] * p.cols + c);
                for (uint j = 0; j < M; j++) { acc[r][j] += wv * Floats(p.x).f[j * p.cols + c]; }
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
    barrier();
    if (p.gated != 0u) {
        const uint half_ = ROWS / 2u;
        if (t < half_ * M) {
            uint r = t / M, j = t % M;
            if (live[r]) {
                float gate = 0.0, up = 0.0;
                for (uint i = 0; i < gl_NumSubgroups; i++) {
                    gate += partials[r * MAX_M + j][i];
                    up += partials[(r + half_) * MAX_M + j][i];
                }
                Floats(p.y[0]).f[j * p.rows[0] + rowOf[r]] = gate / (1.0 + exp(-gate)) * up;
            }
        }
    } else if (t < ROWS * M) {
        uint r = t / M, j = t % M;
        if (live[r]) {
            uint part = parts[r], row = rowOf[r];
            float total = 0.0;
            for (uint i = 0; i < gl_NumSubgroups; i++) { total += partials[r * MAX_M + j][i]; }
            if (p.bias[part] != 0ul) { total += Floats(p.bias[part]).f[row]; }
            Floats(p.y[part]).f[j * p.rows[part] + row] = total;
        }
    }
}
