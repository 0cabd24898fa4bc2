#version 460
// y[m, r] = x[m, :] · W[r, :] + bias[r] for a few activation rows m (decode: one token per sequence).
// Bandwidth-bound: each workgroup reads ROWS whole weight rows once, with 16-byte loads (8 bf16/f16 or
// 4 f32 values per load; block-quantized rows: eight values' codes, a word or two, and their block's scales)
// spread over its invocations, and applies them to all m activation rows at once,
// so a batch of sequences costs one pass over the weights. Partial sums meet in subgroup, then shared memory.
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint GROUP = 64;
layout(constant_id = 1) const uint ROWS = 2;
// Activation rows, a pipeline per count (1..8) so every loop over them unrolls into registers.
layout(constant_id = 2) const uint M = 1;
const uint MAX_M = M;

layout(push_constant) uniform Push {
    uint64_t x;      // [m, cols] f32
    uint64_t w;      // [rows, cols] stored type
    uint64_t bias;   // [rows] f32, or 0
    uint64_t y;      // [m, rows] f32
    uint rows;
    uint cols;
    uint wide;       // 1 when every weight row starts on a 16-byte boundary and is whole 16-byte chunks
} p;

shared float partials[ROWS * MAX_M][64];

#if defined(WEIGHT_F32) || defined(WEIGHT_Q8_0)
const uint PER_CHUNK = 4;
#else
const uint PER_CHUNK = 8;
#endif

void main() {
    uint firstRow = linearGroup() * ROWS;
    if (firstRow >= p.rows) { return; }
    uint t = gl_LocalInvocationID.x;
    float acc[ROWS][MAX_M];
    for (uint r = 0; r < ROWS; r++) { for (uint j = 0; j < MAX_M; j++) { acc[r][j] = 0.0; } }

#if defined(WEIGHT_BLOCKS)
    // Block-quantized rows: eight weights an invocation at a time (quarterAt), neighbours reading neighbouring words.
    uint quarters = p.cols / 8u;
    for (uint c = t; c < quarters; c += GROUP) {
        uint unit = c >> 2, quarter = c & 3u;
        for (uint r = 0; r < ROWS; r++) {
            uint row = firstRow + r;
            if (row >= p.rows) { break; }
            vec4 lo, hi;
            uint c0, c1;
            quarterAt(p.w, row * p.cols, unit, quarter, lo, hi, c0, c1);
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
                uint row = firstRow + r;
                if (row >= p.rows) { break; }
                uvec4 q = Uint4s(p.w).v[row * chunks + c];
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
                uint row = firstRow + r;
                if (row >= p.rows) { break; }
                float wv = weightAt(p.w, row * p.cols + c);
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
    if (t < ROWS * M) {
        uint r = t / M, j = t % M, row = firstRow + r;
        if (row < p.rows) {
            float total = 0.0;
            for (uint i = 0; i < gl_NumSubgroups; i++) { total += partials[r * MAX_M + j][i]; }
            if (p.bias != 0ul) { total += Floats(p.bias).f[row]; }
            Floats(p.y).f[j * p.rows + row] = total;
        }
    }
}
