/*
 * The TM-score program's superposition search, one pair at a time, for CPUs.
 *
 * The same search as ptk.metrics.superposition_search's batched torch path (the module doc of
 * ptk/metrics/search.py states it step by step), fused per pair: the residues stay in cache while
 * every seed and refinement of the pair is scored, and each superposition costs a few passes
 * over the pair's residues instead of a dozen tensor operations. ptk.metrics calls it through
 * ctypes (the compiled extension is a plain shared library; PyInit__tmsearch only lets the
 * build tools and importlib find it) and runs groups of pairs on several threads: nothing here
 * touches Python, so ctypes releases the GIL.
 *
 * Search (per pair, n common residues, coordinates centred on them):
 *   seeds      fragments of seed_lengths(n) residues slid by `step`; each superposed, scored
 *              (TM and GDT), and its kept sets taken at the seed distance of each stage;
 *   refinement from each kept set, up to 20 times: superpose on the kept set, score, keep the
 *              residues within the refinement distance; stop when the kept set repeats.
 *   stage 0    (the program's first pass, TM-align's search distance) records GDT counts only;
 *   stage 1    (the final search) records TM, and GDT where both distances coincide (then
 *              stage 0 is not run: it would repeat stage 1).
 * A refinement depends only on (stage, kept set), so a kept set met again at an iteration no
 * earlier than a previous visit is not refined again: the maxima are those of the full search.
 * Kept sets are identified by two 64-bit sums of random per-residue weights (wrapping).
 *
 * Superposition of a residue set from its summed moments (sum y x^T, sum x, sum y, count):
 * Horn's quaternion, the top eigenvector of the 4x4 key matrix of the centred cross-covariance,
 * its eigenvalue by Newton on the characteristic polynomial (Theobald's QCP) and the vector
 * from the adjugate (cyclic Jacobi where the top eigenvalue is not separated), then
 * t = mean(y) - R mean(x). A kept set's moments are updated from a previous set's by the few
 * residues that differ (a refinement step, the next seed), else summed afresh.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N_ITER 20
#define N_INIT_MAX 6
#define L_INI_MIN 4
#define N_CUTOFFS 5
#define N_MOMENTS 16 /* sum y_j x_k (9), sum x (3), sum y (3), count */

/* The search is compiled twice on x86-64, for AVX2 + FMA and for the baseline, and the loader
 * picks the one the CPU runs (2x apart); everything it calls is inlined into it. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define PTK_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PTK_CLONES
#endif
#define PTK_INLINE static inline __attribute__((always_inline))

static const double GDT_CUTOFFS_SQ[N_CUTOFFS] = {0.25, 1.0, 4.0, 16.0, 64.0};

/* ------------------------------------------------------------------------------------------ */
/* superposition from moments */

static void jacobi4(double a[4][4], double v[4][4]) {
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) v[i][j] = (i == j);
    for (int sweep = 0; sweep < 64; sweep++) {
        double off = 0.0, diag = 0.0;
        for (int p = 0; p < 4; p++) {
            diag += a[p][p] * a[p][p];
            for (int q = p + 1; q < 4; q++) off += a[p][q] * a[p][q];
        }
        if (off <= 1e-30 * diag || off == 0.0) return;
        for (int p = 0; p < 3; p++) {
            for (int q = p + 1; q < 4; q++) {
                double apq = a[p][q];
                if (apq == 0.0) continue;
                double theta = (a[q][q] - a[p][p]) / (2.0 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < 4; k++) { /* columns p, q */
                    double akp = a[k][p], akq = a[k][q];
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for (int k = 0; k < 4; k++) { /* rows p, q */
                    double apk = a[p][k], aqk = a[q][k];
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for (int k = 0; k < 4; k++) {
                    double vkp = v[k][p], vkq = v[k][q];
                    v[k][p] = c * vkp - s * vkq;
                    v[k][q] = s * vkp + c * vkq;
                }
            }
        }
    }
}

PTK_INLINE double det3(double a, double b, double c, double d, double e, double f, double g, double h, double i) {
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
}

/* Top eigenvector of the symmetric, traceless 4x4 key matrix k: its eigenvalue by Newton on the
 * characteristic polynomial from above (Theobald's QCP), the vector from the adjugate of
 * k - lambda I. Returns 0, or -1 where the top eigenvalue is not well separated (the rotation
 * is ill-determined) so that the caller falls back to Jacobi. */
PTK_INLINE int top_eigenvector(const double k[4][4], double det_s, double q[4]) {
    /* characteristic polynomial lambda^4 + c2 lambda^2 + c1 lambda + c0 of the traceless k:
     * c2 = -tr(k^2)/2, c1 = -tr(k^3)/3 (= -8 det S), c0 = det k */
    double sq = 0.0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) sq += k[i][j] * k[i][j];
    if (sq == 0.0) return -1;
    double c2 = -0.5 * sq, c1 = -8.0 * det_s;
    double c0 = k[0][0] * det3(k[1][1], k[1][2], k[1][3], k[2][1], k[2][2], k[2][3], k[3][1], k[3][2], k[3][3]) -
                k[0][1] * det3(k[1][0], k[1][2], k[1][3], k[2][0], k[2][2], k[2][3], k[3][0], k[3][2], k[3][3]) +
                k[0][2] * det3(k[1][0], k[1][1], k[1][3], k[2][0], k[2][1], k[2][3], k[3][0], k[3][1], k[3][3]) -
                k[0][3] * det3(k[1][0], k[1][1], k[1][2], k[2][0], k[2][1], k[2][2], k[3][0], k[3][1], k[3][2]);
    /* Start above the top eigenvalue: the smaller of two bounds, the Frobenius norm and the
     * largest absolute row sum (Gershgorin); Newton then descends onto it monotonically. */
    double rows = 0.0;
    for (int i = 0; i < 4; i++) {
        double row = fabs(k[i][0]) + fabs(k[i][1]) + fabs(k[i][2]) + fabs(k[i][3]);
        if (row > rows) rows = row;
    }
    double lambda = sqrt(sq) < rows ? sqrt(sq) : rows;
    for (int it = 0; it < 60; it++) {
        double l2 = lambda * lambda;
        double value = (l2 + c2) * l2 + c1 * lambda + c0;
        double slope = 4.0 * l2 * lambda + 2.0 * c2 * lambda + c1;
        if (slope <= 0.0) break;
        double delta = value / slope;
        lambda -= delta;
        if (fabs(delta) <= 1e-15 * fabs(lambda)) break;
    }
    double m[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) m[i][j] = k[i][j] - (i == j ? lambda : 0.0);
    /* Columns of adj(m): each is parallel to the eigenvector when lambda is a simple root. The
     * first one unless it is small (then the largest). */
    double best = -1.0, scale = sq * sq * sq; /* |adj| ~ |k|^3 */
    for (int col = 0; col < 4 && !(col == 1 && best > 1e-6 * scale); col++) {
        double v[4];
        for (int row = 0; row < 4; row++) {
            int r[3], c[3], nr = 0, nc = 0;
            for (int t = 0; t < 4; t++) {
                if (t != col) r[nr++] = t; /* adj(m)[row][col] = cofactor of m[col][row] */
                if (t != row) c[nc++] = t;
            }
            double minor = det3(m[r[0]][c[0]], m[r[0]][c[1]], m[r[0]][c[2]], m[r[1]][c[0]], m[r[1]][c[1]],
                                m[r[1]][c[2]], m[r[2]][c[0]], m[r[2]][c[1]], m[r[2]][c[2]]);
            v[row] = ((row + col) % 2 ? -minor : minor);
        }
        double norm = v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3];
        if (norm > best) {
            best = norm;
            memcpy(q, v, sizeof(v));
        }
    }
    if (!(best > 1e-16 * scale)) return -1;
    return 0;
}

/* R x + t ~ y for the residue set with moments m (see N_MOMENTS). */
PTK_INLINE void superpose(const double *m, double rot[9], double trans[3]) {
    double count = m[15] > 1.0 ? m[15] : 1.0;
    double c[3][3]; /* c[j][k] = sum (y_j - ybar_j)(x_k - xbar_k) */
    for (int j = 0; j < 3; j++)
        for (int k = 0; k < 3; k++) c[j][k] = m[3 * j + k] - m[12 + j] * m[9 + k] / count;
    /* Horn's S_ab = sum x_a y_b = c[b][a] */
    double sxx = c[0][0], sxy = c[1][0], sxz = c[2][0];
    double syx = c[0][1], syy = c[1][1], syz = c[2][1];
    double szx = c[0][2], szy = c[1][2], szz = c[2][2];
    double a[4][4] = {
        {sxx + syy + szz, syz - szy, szx - sxz, sxy - syx},
        {syz - szy, sxx - syy - szz, sxy + syx, szx + sxz},
        {szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy},
        {sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz},
    };
    double q0, q1, q2, q3, q[4] = {1.0, 0.0, 0.0, 0.0};
    double det_s = sxx * (syy * szz - syz * szy) - sxy * (syx * szz - syz * szx) + sxz * (syx * szy - syy * szx);
    if (top_eigenvector((const double(*)[4])a, det_s, q) == 0) {
        q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3];
    } else {
        double v[4][4];
        jacobi4(a, v);
        int top = 0;
        for (int i = 1; i < 4; i++)
            if (a[i][i] > a[top][top]) top = i;
        q0 = v[0][top], q1 = v[1][top], q2 = v[2][top], q3 = v[3][top];
    }
    double norm = sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3);
    q0 /= norm, q1 /= norm, q2 /= norm, q3 /= norm;
    rot[0] = q0 * q0 + q1 * q1 - q2 * q2 - q3 * q3;
    rot[1] = 2.0 * (q1 * q2 - q0 * q3);
    rot[2] = 2.0 * (q1 * q3 + q0 * q2);
    rot[3] = 2.0 * (q1 * q2 + q0 * q3);
    rot[4] = q0 * q0 - q1 * q1 + q2 * q2 - q3 * q3;
    rot[5] = 2.0 * (q2 * q3 - q0 * q1);
    rot[6] = 2.0 * (q1 * q3 - q0 * q2);
    rot[7] = 2.0 * (q2 * q3 + q0 * q1);
    rot[8] = q0 * q0 - q1 * q1 - q2 * q2 + q3 * q3;
    for (int j = 0; j < 3; j++)
        trans[j] = (m[12 + j] - rot[3 * j] * m[9] - rot[3 * j + 1] * m[10] - rot[3 * j + 2] * m[11]) / count;
}

/* ------------------------------------------------------------------------------------------ */
/* per-pair workspace */

typedef struct {
    uint64_t a, b;
    int iteration; /* 0: empty slot */
} slot_t;

typedef struct {
    int64_t n;
    double *x, *y;        /* [3][n] coordinates, one row per axis */
    double *feat;         /* [n][N_MOMENTS] per-residue moment terms */
    double *prefix;       /* [n + 1][N_MOMENTS] their running sums (seed fragments) */
    double *d2;           /* [n] squared distances under the current superposition */
    uint8_t *seed[4];     /* [n] kept sets of this seed and the previous one, per stage */
    uint8_t *chain[2];    /* [n] kept sets of the refinement under way */
    uint64_t *wa, *wb;    /* [n] hash weights */
    double *scratch;      /* [n] for the third-smallest distance */
    slot_t *table;        /* open addressing, per pair */
    int64_t capacity, used;
    double inv_d0sq, norm, best_tm;
    int64_t best_counts[N_CUTOFFS];
    int64_t states;
} pair_t;

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Squared distances of all residues under (rot, trans) into p->d2, in one pass that also sums
 * the TM-score and counts residues under the GDT cutoffs; records their maxima where asked. */
PTK_INLINE void score(pair_t *p, const double rot[9], const double trans[3], int want_tm, int want_gdt) {
    const int64_t n = p->n;
    const double *x0 = p->x, *x1 = p->x + n, *x2 = p->x + 2 * n;
    const double *y0 = p->y, *y1 = p->y + n, *y2 = p->y + 2 * n;
    double *d2 = p->d2;
    const double k = p->inv_d0sq;
    double tm = 0.0, c0 = 0.0, c1 = 0.0, c2 = 0.0, c3 = 0.0, c4 = 0.0; /* counts: whole numbers */
#define PTK_DISTANCE                                                                                  \
    double e0 = rot[0] * x0[i] + rot[1] * x1[i] + rot[2] * x2[i] + trans[0] - y0[i];                  \
    double e1 = rot[3] * x0[i] + rot[4] * x1[i] + rot[5] * x2[i] + trans[1] - y1[i];                  \
    double e2 = rot[6] * x0[i] + rot[7] * x1[i] + rot[8] * x2[i] + trans[2] - y2[i];                  \
    double d = e0 * e0 + e1 * e1 + e2 * e2;                                                          \
    d2[i] = d;
#define PTK_TM tm += 1.0 / (1.0 + d * k);
#define PTK_GDT                                                                                       \
    c0 += d < GDT_CUTOFFS_SQ[0] ? 1.0 : 0.0;                                                          \
    c1 += d < GDT_CUTOFFS_SQ[1] ? 1.0 : 0.0;                                                          \
    c2 += d < GDT_CUTOFFS_SQ[2] ? 1.0 : 0.0;                                                          \
    c3 += d < GDT_CUTOFFS_SQ[3] ? 1.0 : 0.0;                                                          \
    c4 += d < GDT_CUTOFFS_SQ[4] ? 1.0 : 0.0;
    if (want_tm && want_gdt) {
#pragma omp simd reduction(+ : tm, c0, c1, c2, c3, c4)
        for (int64_t i = 0; i < n; i++) {
            PTK_DISTANCE
            PTK_TM
            PTK_GDT
        }
    } else if (want_tm) {
#pragma omp simd reduction(+ : tm)
        for (int64_t i = 0; i < n; i++) {
            PTK_DISTANCE
            PTK_TM
        }
    } else {
#pragma omp simd reduction(+ : c0, c1, c2, c3, c4)
        for (int64_t i = 0; i < n; i++) {
            PTK_DISTANCE
            PTK_GDT
        }
    }
#undef PTK_DISTANCE
#undef PTK_GDT
#undef PTK_TM
    if (want_tm && tm / p->norm > p->best_tm) p->best_tm = tm / p->norm;
    if (want_gdt) {
        const double counts[N_CUTOFFS] = {c0, c1, c2, c3, c4};
        for (int c = 0; c < N_CUTOFFS; c++)
            if ((int64_t)counts[c] > p->best_counts[c]) p->best_counts[c] = (int64_t)counts[c];
    }
}

/* A kept set: its residues (1 / 0 per residue), their count and hashes, and their moments once
 * a superposition needs them (has_m). */
typedef struct {
    uint8_t *in;
    double m[N_MOMENTS];
    uint64_t ha, hb;
    int64_t count;
    int has_m;
} kept_t;

/* Moments of `out` from a base set's (bm) by the residues whose flag differs from the base's:
 * `before` [n], or `fill` for every residue where `before` is NULL (the empty or the whole set).
 * Flags are 0 or 1, so a differing byte of u ^ v is 1 and the differing residues are the set
 * bits (8 residues per word). */
PTK_INLINE void update(pair_t *p, kept_t *out, const uint8_t *before, uint64_t fill, const double *bm) {
    const int64_t n = p->n;
    const uint8_t *now = out->in;
    double m[N_MOMENTS];
    memcpy(m, bm, sizeof(m));
#define PTK_APPLY(i)                                                                                  \
    do {                                                                                              \
        const double *f = p->feat + (i) * N_MOMENTS;                                                  \
        if (now[i])                                                                                   \
            for (int k = 0; k < N_MOMENTS; k++) m[k] += f[k];                                         \
        else                                                                                          \
            for (int k = 0; k < N_MOMENTS; k++) m[k] -= f[k];                                         \
    } while (0)
    const uint64_t fill8 = fill * 0x0101010101010101ULL;
    int64_t block = 0;
    for (; block + 8 <= n; block += 8) {
        uint64_t u, v = fill8;
        memcpy(&u, now + block, 8);
        if (before) memcpy(&v, before + block, 8);
        for (uint64_t x = u ^ v; x; x &= x - 1) {
            int64_t i = block + (__builtin_ctzll(x) >> 3);
            PTK_APPLY(i);
        }
    }
    for (int64_t i = block; i < n; i++)
        if (now[i] != (before ? before[i] : fill)) PTK_APPLY(i);
#undef PTK_APPLY
    memcpy(out->m, m, sizeof(m));
}

/* Number of residues whose 0/1 flags differ. */
PTK_INLINE int64_t differences(const uint8_t *now, const uint8_t *before, int64_t n) {
    int64_t count = 0, block = 0;
    for (; block + 8 <= n; block += 8) {
        uint64_t u, v;
        memcpy(&u, now + block, 8);
        memcpy(&v, before + block, 8);
        count += __builtin_popcountll(u ^ v);
    }
    for (int64_t i = block; i < n; i++) count += now[i] != before[i];
    return count;
}

/* The kept set of the current distances at `cut` (grown by 0.5 A while fewer than 3 of more
 * than 3 residues are kept) into *out: flags, count and hashes. Its moments wait for
 * moments(): a set already refined, or equal to the one before it, never needs them. */
PTK_INLINE void keep(pair_t *p, double cut, kept_t *out) {
    const int64_t n = p->n;
    uint8_t *kept = out->in;
    const double *d2 = p->d2;
    double cut_sq = cut * cut;
    for (int64_t i = 0; i < n; i++) kept[i] = d2[i] < cut_sq;
    int64_t count = 0, block = 0;
    for (; block + 8 <= n; block += 8) {
        uint64_t u;
        memcpy(&u, kept + block, 8);
        count += __builtin_popcountll(u);
    }
    for (int64_t i = block; i < n; i++) count += kept[i];
    if (count < 3 && n > 3) {
        /* the third-smallest distance, then the distance grown in 0.5 A steps past it */
        double *s = p->scratch;
        memcpy(s, d2, (size_t)n * sizeof(double));
        double third = 0.0;
        for (int r = 0; r < 3; r++) { /* partial selection: n is small next to this rarity */
            int64_t best = r;
            for (int64_t i = r + 1; i < n; i++)
                if (s[i] < s[best]) best = i;
            double tmp = s[r];
            s[r] = s[best];
            s[best] = tmp;
            third = s[r];
        }
        third = sqrt(third > 0.0 ? third : 0.0);
        double grown = cut + 0.5 * (floor((third - cut) / 0.5) + 1.0);
        cut_sq = grown * grown;
        count = 0;
        for (int64_t i = 0; i < n; i++) count += kept[i] = d2[i] < cut_sq;
    }
    uint64_t a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t mask = (uint64_t)0 - (uint64_t)kept[i];
        a += p->wa[i] & mask;
        b += p->wb[i] & mask;
    }
    out->ha = a;
    out->hb = b;
    out->count = count;
    out->has_m = 0;
}

/* The moments of `out`, updated residue by residue from whichever of the bases (kept sets of
 * the same pair with moments, or NULL), the empty set and the whole set it differs least from,
 * when that is few residues (a refinement step or the next seed changes a few residues of a set
 * of hundreds); otherwise summed afresh. */
PTK_INLINE void moments(pair_t *p, kept_t *out, const kept_t *base1, const kept_t *base2) {
    if (out->has_m) return;
    const int64_t n = p->n, count = out->count;
    const uint8_t *kept = out->in;
    const kept_t *base = NULL;
    int64_t fewest = count < n - count ? count : n - count;
    const kept_t *bases[2] = {base1, base2};
    for (int k = 0; k < 2; k++) {
        if (!bases[k] || !bases[k]->has_m) continue;
        int64_t d = differences(kept, bases[k]->in, n);
        if (d < fewest) {
            fewest = d;
            base = bases[k];
        }
    }
    out->has_m = 1;
    if (4 * fewest <= n) {
        static const double zero[N_MOMENTS] = {0.0};
        if (base)
            update(p, out, base->in, 0, base->m);
        else if (fewest == count)
            update(p, out, NULL, 0, zero);
        else
            update(p, out, NULL, 1, p->prefix + n * N_MOMENTS);
        return;
    }
    /* two residues at a time into two sets of accumulators (latency, not throughput, bounds a
     * single chain of vector adds) */
    double acc[2][N_MOMENTS] = {{0.0}};
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
        const double *f0 = p->feat + i * N_MOMENTS, *f1 = f0 + N_MOMENTS;
        double k0 = kept[i], k1 = kept[i + 1];
#pragma omp simd
        for (int k = 0; k < N_MOMENTS; k++) {
            acc[0][k] += k0 * f0[k];
            acc[1][k] += k1 * f1[k];
        }
    }
    for (; i < n; i++) {
        const double *f0 = p->feat + i * N_MOMENTS;
        double k0 = kept[i];
#pragma omp simd
        for (int k = 0; k < N_MOMENTS; k++) acc[0][k] += k0 * f0[k];
    }
    for (int k = 0; k < N_MOMENTS; k++) out->m[k] = acc[0][k] + acc[1][k];
}

static int table_grow(pair_t *p) {
    int64_t capacity = p->capacity * 2;
    slot_t *table = calloc((size_t)capacity, sizeof(slot_t));
    if (!table) return -1;
    for (int64_t i = 0; i < p->capacity; i++) {
        slot_t s = p->table[i];
        if (!s.iteration) continue;
        int64_t h = (int64_t)(s.a & (uint64_t)(capacity - 1));
        while (table[h].iteration) h = (h + 1) & (capacity - 1);
        table[h] = s;
    }
    free(p->table);
    p->table = table;
    p->capacity = capacity;
    return 0;
}

/* 1 if (a, b) was already refined at an iteration <= `iteration` (skip it); otherwise records
 * it at `iteration` and returns 0. -1 when out of memory. */
static int visited(pair_t *p, uint64_t a, uint64_t b, int iteration) {
    if (2 * (p->used + 1) > p->capacity && table_grow(p)) return -1;
    int64_t h = (int64_t)(a & (uint64_t)(p->capacity - 1));
    while (p->table[h].iteration) {
        slot_t *s = &p->table[h];
        if (s->a == a && s->b == b) {
            if (s->iteration <= iteration) return 1;
            s->iteration = iteration;
            return 0;
        }
        h = (h + 1) & (p->capacity - 1);
    }
    p->table[h].a = a;
    p->table[h].b = b;
    p->table[h].iteration = iteration;
    p->used++;
    return 0;
}

/* Refinement chain of one stage from a seed's kept set; near1, near2 (or NULL): kept sets of
 * the same pair that may already have moments, to update the seed set's from. */
PTK_INLINE int refine(pair_t *p, int stage, double cut, int gdt_in_tm_stage, kept_t *seed, const kept_t *near1,
                      const kept_t *near2) {
    double rot[9], trans[3];
    const uint64_t stage_mix = stage ? 0x9E3779B97F4A7C15ULL : 0;
    kept_t sets[2] = {{.in = p->chain[0]}, {.in = p->chain[1]}};
    kept_t *current = seed;
    for (int iteration = 1; iteration <= N_ITER; iteration++) {
        int seen = visited(p, current->ha ^ stage_mix, current->hb, iteration);
        if (seen < 0) return -1;
        if (seen) return 0;
        moments(p, current, near1, near2);
        superpose(current->m, rot, trans);
        score(p, rot, trans, stage == 1, stage == 0 || gdt_in_tm_stage);
        p->states++;
        if (iteration == N_ITER) return 0;
        kept_t *next = &sets[iteration & 1];
        keep(p, cut, next);
        if (next->ha == current->ha && next->hb == current->hb) return 0;
        near1 = current;
        near2 = NULL;
        current = next;
    }
    return 0;
}

static int seed_lengths(int64_t n, int64_t out[N_INIT_MAX]) {
    int64_t minimum = n < L_INI_MIN ? n : L_INI_MIN;
    int count = 0;
    for (int i = 0; i < N_INIT_MAX - 1; i++) {
        int64_t length = n >> i;
        if (length <= minimum) {
            out[count++] = minimum;
            return count;
        }
        out[count++] = length;
    }
    out[count++] = minimum;
    return count;
}

PTK_INLINE int search_pair(pair_t *p, const double cut[4], int64_t step) {
    const int64_t n = p->n;
    const int same = cut[0] == cut[2];
    int64_t lengths[N_INIT_MAX];
    int n_lengths = seed_lengths(n, lengths);
    double m_seed[N_MOMENTS], rot[9], trans[3];
    /* kept sets of this seed and the previous one, per stage */
    kept_t first[2] = {{.in = p->seed[0]}, {.in = p->seed[1]}};
    kept_t final[2] = {{.in = p->seed[2]}, {.in = p->seed[3]}};
    int64_t count = 0;
    for (int l = 0; l < n_lengths; l++) {
        int64_t length = lengths[l], last = n - length;
        for (int64_t start = 0;; start += step, count++) {
            if (start > last) start = last;
            /* moments of the fragment */
            const double *lo = p->prefix + start * N_MOMENTS, *hi = p->prefix + (start + length) * N_MOMENTS;
            for (int k = 0; k < N_MOMENTS; k++) m_seed[k] = hi[k] - lo[k];
            superpose(m_seed, rot, trans);
            score(p, rot, trans, 1, 1);
            p->states++;
            /* Both stages' kept sets from the seed's distances (before refine() overwrites
             * them); their moments from the previous seed's of this length or each other's. */
            int fresh = start == 0, now = count & 1;
            kept_t *first_now = &first[now], *final_now = &final[now];
            const kept_t *first_before = fresh ? NULL : &first[!now], *final_before = fresh ? NULL : &final[!now];
            if (!same) keep(p, cut[0], first_now);
            keep(p, cut[2], final_now);
            if (!same && refine(p, 0, cut[1], 0, first_now, first_before, final_before)) return -1;
            if (refine(p, 1, cut[3], same, final_now, same ? final_before : first_now, final_before)) return -1;
            if (start == last) break;
        }
    }
    return 0;
}

/*
 * Search pairs [0, n_pairs). x, y: [n_pairs, stride, 3] centred coordinates of the common
 * residues (the first n[b] rows of pair b); cut: [n_pairs, 2, 2] kept-set distances (stage
 * 0/1, seed/refinement); inv_d0sq, norm: [n_pairs]. Writes best_tm [n_pairs], best_counts
 * [n_pairs, 5] and states [n_pairs] (superpositions scored). Returns 0, or -1 out of memory.
 */
PTK_CLONES int ptk_tm_search(int64_t n_pairs, const double *x, const double *y, int64_t stride, const int64_t *n,
                  const double *inv_d0sq, const double *norm, const double *cut, int64_t step,
                  double *best_tm, int64_t *best_counts, int64_t *states) {
    int64_t n_max = 0;
    for (int64_t b = 0; b < n_pairs; b++)
        if (n[b] > n_max) n_max = n[b];
    pair_t p;
    memset(&p, 0, sizeof(p));
    size_t doubles = (size_t)(2 * N_MOMENTS + 9) * (size_t)(n_max > 0 ? n_max : 1) + N_MOMENTS;
    double *buffer = malloc(doubles * sizeof(double));
    uint64_t *weights = malloc(2 * (size_t)(n_max > 0 ? n_max : 1) * sizeof(uint64_t));
    uint8_t *flags = malloc(6 * (size_t)(n_max > 0 ? n_max : 1) + 8);
    p.capacity = 4096;
    p.table = calloc((size_t)p.capacity, sizeof(slot_t));
    int rc = 0;
    if (!buffer || !weights || !flags || !p.table) {
        rc = -1;
        goto done;
    }
    uint64_t state = 0x5851F42D4C957F2DULL;
    for (int64_t i = 0; i < 2 * n_max; i++) weights[i] = splitmix64(&state);
    p.wa = weights;
    p.wb = weights + n_max;
    for (int64_t b = 0; b < n_pairs; b++) {
        const int64_t nb = n[b];
        best_tm[b] = 0.0;
        for (int c = 0; c < N_CUTOFFS; c++) best_counts[N_CUTOFFS * b + c] = 0;
        states[b] = 0;
        if (nb <= 0) continue;
        p.n = nb;
        p.feat = buffer;
        p.prefix = p.feat + N_MOMENTS * nb;
        p.x = p.prefix + N_MOMENTS * (nb + 1);
        p.y = p.x + 3 * nb;
        p.d2 = p.y + 3 * nb;
        p.scratch = p.d2 + nb;
        for (int k = 0; k < 4; k++) p.seed[k] = flags + k * nb;
        p.chain[0] = flags + 4 * nb;
        p.chain[1] = flags + 5 * nb;
        const double *xb = x + 3 * stride * b, *yb = y + 3 * stride * b;
        for (int k = 0; k < N_MOMENTS; k++) p.prefix[k] = 0.0;
        for (int64_t i = 0; i < nb; i++) {
            double *f = p.feat + N_MOMENTS * i;
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 3; k++) f[3 * j + k] = yb[3 * i + j] * xb[3 * i + k];
            for (int k = 0; k < 3; k++) {
                f[9 + k] = p.x[k * nb + i] = xb[3 * i + k];
                f[12 + k] = p.y[k * nb + i] = yb[3 * i + k];
            }
            f[15] = 1.0;
            for (int k = 0; k < N_MOMENTS; k++) p.prefix[N_MOMENTS * (i + 1) + k] = p.prefix[N_MOMENTS * i + k] + f[k];
        }
        memset(p.table, 0, (size_t)p.capacity * sizeof(slot_t));
        p.used = 0;
        p.inv_d0sq = inv_d0sq[b];
        p.norm = norm[b];
        p.best_tm = -1.0;
        for (int c = 0; c < N_CUTOFFS; c++) p.best_counts[c] = -1;
        p.states = 0;
        if (search_pair(&p, cut + 4 * b, step > 0 ? step : 1)) {
            rc = -1;
            goto done;
        }
        best_tm[b] = p.best_tm;
        for (int c = 0; c < N_CUTOFFS; c++) best_counts[N_CUTOFFS * b + c] = p.best_counts[c];
        states[b] = p.states;
    }
done:
    free(buffer);
    free(weights);
    free(flags);
    free(p.table);
    return rc;
}

/* A module object, so that the build tools and importlib find this library. */
static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_tmsearch",
    .m_doc = "The TM-score search kernel of ptk.metrics (called through ctypes).",
    .m_size = -1,
};
PyMODINIT_FUNC PyInit__tmsearch(void) { return PyModule_Create(&module); }
