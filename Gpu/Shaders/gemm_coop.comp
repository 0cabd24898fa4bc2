#version 460
// Y[m, n] = X[m, :] · W[n, :] + bias[n] on the device's matrix units (VK_KHR_cooperative_matrix): TILE x TILE x TILE
// products of f16 matrices into f32 (TILE 16 as NVIDIA and AMD offer, 8 as Mesa's lavapipe does; compiled for each).
// X arrives from split_rows.comp as hi + lo f16 rows scaled by a power of two per row, so each product is hi·W + lo·W
// with 22 of x's significant bits. W (bf16 or f16 as stored) widens to f16 exactly from 2^-14 to 65504; below, a bf16
// weight moves by at most 2^-25, and trained weights do not come near the top. Other weights (f32, and the block types
// widened as weightAt defines them) are split like x, as hi + lo of 16 W, so a product is hi·W hi + lo·W hi + hi·W lo
// (lo·lo is below f32's resolution): 22 significant bits of each weight from 2^-7 up (below, at most 2^-29 off) to 4096.
// A 64 x 64 output tile per workgroup of four subgroups, each taking a 32 x 32 quadrant as (32 / TILE)² accumulators; K
// in steps of 32 through shared memory. The host sets the workgroup to four subgroups (specialization constant 0) and
// checks this shader against the f32 GEMM on the device before trusting it (VulkanBackend.MatrixUnitsAgree).
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"
layout(local_size_x_id = 0) in;

const uint BM = 64, BN = 64, BK = 32;
const uint PER = 32 / TILE;   // products per side of a subgroup's quadrant
const uint STRIDE = BK + 8;   // halves per staged row: the padding spreads rows over shared-memory banks
#if defined(WEIGHT_BF16) || defined(WEIGHT_F16)
const float WEIGHT_SCALE = 1.0;
#else
#define SPLIT_WEIGHTS 1
const float WEIGHT_SCALE = 16.0;   // keeps lo clear of f16's subnormals down to 2^-7 and hi below 65504 up to 4096
#endif

layout(push_constant) uniform Push {
    uint64_t hi;       // [m, k] f16 (split_rows.comp)
    uint64_t lo;       // [m, k] f16
    uint64_t unscale;  // [m] f32
    uint64_t w;        // [n, k] stored type
    uint64_t bias;     // [n] f32, or 0
    uint64_t y;        // [m, n] f32
    uint m;
    uint n;
    uint k;            // even
    uint tilesN;       // ceil(n / BN)
} p;

shared float16_t xHi[BM * STRIDE];
shared float16_t xLo[BM * STRIDE];
shared float16_t ws[BN * STRIDE];
#if defined(SPLIT_WEIGHTS)
shared float16_t wsLo[BN * STRIDE];
#endif
shared float ys[BM * BN];

#define MATRIX(use) coopmat<float16_t, gl_ScopeSubgroup, TILE, TILE, use>
#define ACCUMULATOR coopmat<float, gl_ScopeSubgroup, TILE, TILE, gl_MatrixUseAccumulator>

void main() {
    uint tile = linearGroup();
    uint tileM = tile / p.tilesN, tileN = tile % p.tilesN;
    if (tileM * BM >= p.m) { return; }
    uint t = gl_LocalInvocationID.x, size = gl_WorkGroupSize.x;
    // Subgroups past the fourth (a device running smaller subgroups than it reported) only help stage.
    bool computes = gl_SubgroupID < 4u;
    uint qm = (gl_SubgroupID / 2u) * 32u, qn = (gl_SubgroupID % 2u) * 32u;
    ACCUMULATOR acc[PER][PER];
    for (uint i = 0; i < PER; i++) { for (uint j = 0; j < PER; j++) { acc[i][j] = ACCUMULATOR(0.0); } }

    for (uint k0 = 0; k0 < p.k; k0 += BK) {
        for (uint e = t; e < BM * BK / 2u; e += size) {
            uint row = e / (BK / 2u), pair = e % (BK / 2u);
            uint gm = tileM * BM + row, gk = k0 + 2u * pair;
            f16vec2 h = f16vec2(0.0), l = f16vec2(0.0);
            if (gm < p.m && gk < p.k) {
                h = unpackFloat2x16(Uints(p.hi).u[(gm * p.k + gk) / 2u]);
                l = unpackFloat2x16(Uints(p.lo).u[(gm * p.k + gk) / 2u]);
            }
            uint at = row * STRIDE + 2u * pair;
            xHi[at] = h.x;
            xHi[at + 1u] = h.y;
            xLo[at] = l.x;
            xLo[at + 1u] = l.y;
        }
        for (uint e = t; e < BN * BK; e += size) {
            uint row = e / BK, kk = e % BK;
            uint gn = tileN * BN + row, gk = k0 + kk;
            float v = (gn < p.n && gk < p.k) ? weightAt(p.w, gn * p.k + gk) : 0.0;
#if defined(SPLIT_WEIGHTS)
            // As split_rows.comp: hi keeps 11 significant bits by masking, so v - hi is exact.
            v *= WEIGHT_SCALE;
            float vHi = uintBitsToFloat(floatBitsToUint(v) & 0xFFFFE000u);
            ws[row * STRIDE + kk] = float16_t(vHi);
            wsLo[row * STRIDE + kk] = float16_t(v - vHi);
#else
            ws[row * STRIDE + kk] = float16_t(v);
#endif
        }
        barrier();
        if (computes) {
            for (uint kk = 0; kk < BK; kk += TILE) {
                MATRIX(gl_MatrixUseA) hi[PER], lo[PER];
                MATRIX(gl_MatrixUseB) w[PER];
#if defined(SPLIT_WEIGHTS)
                MATRIX(gl_MatrixUseB) wLo[PER];
#endif
                for (uint i = 0; i < PER; i++) {
                    coopMatLoad(hi[i], xHi, (qm + TILE * i) * STRIDE + kk, STRIDE, gl_CooperativeMatrixLayoutRowMajor);
                    coopMatLoad(lo[i], xLo, (qm + TILE * i) * STRIDE + kk, STRIDE, gl_CooperativeMatrixLayoutRowMajor);
                }
                // W's rows are the product's columns: read [n][k] as a column-major K x N matrix.
                for (uint j = 0; j < PER; j++) {
                    coopMatLoad(w[j], ws, (qn + TILE * j) * STRIDE + kk, STRIDE, gl_CooperativeMatrixLayoutColumnMajor);
#if defined(SPLIT_WEIGHTS)
                    coopMatLoad(wLo[j], wsLo, (qn + TILE * j) * STRIDE + kk, STRIDE, gl_CooperativeMatrixLayoutColumnMajor);
#endif
                }
                for (uint i = 0; i < PER; i++) {
                    for (uint j = 0; j < PER; j++) {
                        acc[i][j] = coopMatMulAdd(hi[i], w[j], acc[i][j]);
                        acc[i][j] = coopMatMulAdd(lo[i], w[j], acc[i][j]);
#if defined(SPLIT_WEIGHTS)
                        acc[i][j] = coopMatMulAdd(hi[i], wLo[j], acc[i][j]);
#endif
                    }
                }
            }
        }
        barrier();
    }

    if (computes) {
        for (uint i = 0; i < PER; i++) {
            for (uint j = 0; j < PER; j++) {
                coopMatStore(acc[i][j], ys, (qm + TILE * i) * BN + qn + TILE * j, BN, gl_CooperativeMatrixLayoutRowMajor);
            }
        }
    }
    barrier();
    for (uint e = t; e < BM * BN; e += size) {
        uint gm = tileM * BM + e / BN, gn = tileN * BN + e % BN;
        if (gm >= p.m || gn >= p.n) { continue; }
        float v = ys[e] * (Floats(p.unscale).f[gm] / WEIGHT_SCALE);
        if (p.bias != 0ul) { v += Floats(p.bias).f[gn]; }
        Floats(p.y).f[gm * p.n + gn] = v;
    }
}
