// Native (C, N-API) versions of Vigil's hot numeric kernels. Each function does exactly the
// arithmetic of its JavaScript twin in kernels/*.ts, in the same order and precision (float64
// where the JS works on numbers, one rounding to float32 on store), so results are bit-identical
// and the JS kernels remain the reference. The JS wrappers validate shapes and arguments; this
// file re-checks every extent against the buffers so a bad call throws instead of corrupting
// memory. Built by node-gyp at `npm ci` (binding.gyp next to this file).
// Two functions are not arithmetic: prefetchRanges, a page-cache hint for the sealed index's reads,
// and trimHeap, which hands the C heap's free pages back to the OS.
#if defined(__linux__)
#define _GNU_SOURCE
#endif
#define NAPI_VERSION 8
#include <node_api.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <fcntl.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// Compiled twice, for AVX2 and for the x86-64 baseline; the loader picks one per machine.
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));

// ---------------------------------------------------------------------------------------------
// Argument helpers: each returns 0 after throwing a TypeError/RangeError into JS.

typedef struct {
  void* data;
  size_t length;
} Array;

static int typed_array(napi_env env, napi_value value, napi_typedarray_type want, Array* out, const char* what) {
  bool is_typed = false;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, &out->length, &out->data, &buffer, &offset) != napi_ok || type != want) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  return 1;
}

static int integer(napi_env env, napi_value value, int64_t min, int64_t* out, const char* what) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok || d != floor(d) || d < (double)min || d > 9007199254740991.0) {
    napi_throw_range_error(env, NULL, what);
    return 0;
  }
  *out = (int64_t)d;
  return 1;
}

static int args(napi_env env, napi_callback_info info, size_t want, napi_value* argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "vigil_kernels: too few arguments");
    return 0;
  }
  return 1;
}

static int fits(napi_env env, int64_t need, size_t have, const char* what) {
  if (need < 0 || (uint64_t)need > have) {
    napi_throw_range_error(env, NULL, what);
    return 0;
  }
  return 1;
}

static napi_value number(napi_env env, double value) {
  napi_value out;
  napi_create_double(env, value, &out);
  return out;
}

static napi_value undefined(napi_env env) {
  napi_value out;
  napi_get_undefined(env, &out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// RoPE over table rows (kernels/rope.ts rotateTableRows).

static void rotate_token_scalar(const float* from, float* to, int64_t half, const double* cos, const double* sin, double sign) {
  for (int64_t i = 0; i < half; i++) {
    double x1 = from[i], x2 = from[i + half];
    double c = cos[i], s = sign * sin[i];
    to[i] = (float)(x1 * c - x2 * s);
    to[i + half] = (float)(x2 * c + x1 * s);
  }
}

// Loads both halves' four lanes before storing, so to == from (in place) is safe.
HOT static void rotate_token_vector(const float* from, float* to, int64_t half, const double* cos, const double* sin, double sign) {
  int64_t i = 0;
  for (; i + 4 <= half; i += 4) {
    v4f a, b;
    v4d c, s;
    memcpy(&a, from + i, sizeof a);
    memcpy(&b, from + i + half, sizeof b);
    memcpy(&c, cos + i, sizeof c);
    memcpy(&s, sin + i, sizeof s);
    s = s * sign;
    v4d x1 = __builtin_convertvector(a, v4d), x2 = __builtin_convertvector(b, v4d);
    v4f r1 = __builtin_convertvector(x1 * c - x2 * s, v4f);
    v4f r2 = __builtin_convertvector(x2 * c + x1 * s, v4f);
    memcpy(to + i, &r1, sizeof r1);
    memcpy(to + i + half, &r2, sizeof r2);
  }
  if (i < half) {
    for (; i < half; i++) {
      double x1 = from[i], x2 = from[i + half];
      double c = cos[i], s = sign * sin[i];
      to[i] = (float)(x1 * c - x2 * s);
      to[i + half] = (float)(x2 * c + x1 * s);
    }
  }
}

// rotateRows(src, srcTokens, dst, dstTotal, dstOffset, heads, tokens, headDim, half, cos, sin, rows, sign)
static napi_value rotate_rows(napi_env env, napi_callback_info info) {
  napi_value argv[13];
  if (!args(env, info, 13, argv)) return NULL;
  Array src, dst, cos, sin, rows;
  int64_t src_tokens, dst_total, dst_offset, heads, tokens, head_dim, half;
  double sign;
  if (!typed_array(env, argv[0], napi_float32_array, &src, "rotateRows: src must be a Float32Array") ||
      !integer(env, argv[1], 0, &src_tokens, "rotateRows: srcTokens") ||
      !typed_array(env, argv[2], napi_float32_array, &dst, "rotateRows: dst must be a Float32Array") ||
      !integer(env, argv[3], 0, &dst_total, "rotateRows: dstTotal") || !integer(env, argv[4], 0, &dst_offset, "rotateRows: dstOffset") ||
      !integer(env, argv[5], 0, &heads, "rotateRows: heads") || !integer(env, argv[6], 0, &tokens, "rotateRows: tokens") ||
      !integer(env, argv[7], 0, &head_dim, "rotateRows: headDim") || !integer(env, argv[8], 0, &half, "rotateRows: half") ||
      !typed_array(env, argv[9], napi_float64_array, &cos, "rotateRows: cos must be a Float64Array") ||
      !typed_array(env, argv[10], napi_float64_array, &sin, "rotateRows: sin must be a Float64Array") ||
      !typed_array(env, argv[11], napi_int32_array, &rows, "rotateRows: rows must be an Int32Array") ||
      napi_get_value_double(env, argv[12], &sign) != napi_ok) {
    return NULL;
  }
  if (!fits(env, heads * src_tokens * head_dim, src.length, "rotateRows: src too short") ||
      !fits(env, heads * dst_total * head_dim, dst.length, "rotateRows: dst too short") ||
      !fits(env, tokens, (size_t)src_tokens, "rotateRows: tokens > srcTokens") ||
      !fits(env, dst_offset + tokens, (size_t)dst_total, "rotateRows: tokens do not fit dst") ||
      !fits(env, 2 * half, (size_t)head_dim, "rotateRows: rotaryDim > headDim") ||
      !fits(env, tokens, rows.length, "rotateRows: rows too short")) {
    return NULL;
  }
  const int32_t* row_of = rows.data;
  size_t table = cos.length < sin.length ? cos.length : sin.length;
  for (int64_t t = 0; t < tokens; t++) {
    if (row_of[t] >= 0 && !fits(env, (int64_t)row_of[t] + half, table, "rotateRows: row past the trig table")) return NULL;
  }
  const float* s = src.data;
  float* d = dst.data;
  const double* c = cos.data;
  const double* n = sin.data;
  const int64_t rot = 2 * half;
  const int in_place = s == d && src_tokens == dst_total && dst_offset == 0;
  // Whole blocks either coincide (in place) or do not overlap: then lanes may be batched.
  const char *s_lo = (const char*)s, *s_hi = s_lo + heads * src_tokens * head_dim * 4;
  const char *d_lo = (const char*)d, *d_hi = d_lo + heads * dst_total * head_dim * 4;
  const int vector = in_place || s_hi <= d_lo || d_hi <= s_lo;
  for (int64_t h = 0; h < heads; h++) {
    for (int64_t t = 0; t < tokens; t++) {
      const float* from = s + (h * src_tokens + t) * head_dim;
      float* to = d + (h * dst_total + dst_offset + t) * head_dim;
      int32_t row = row_of[t];
      if (row < 0) {
        if (!in_place) memmove(to, from, (size_t)head_dim * 4);
        continue;
      }
      if (vector) rotate_token_vector(from, to, half, c + row, n + row, sign);
      else rotate_token_scalar(from, to, half, c + row, n + row, sign);
      if (!in_place) for (int64_t k = rot; k < head_dim; k++) to[k] = from[k];
    }
  }
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// Half precision (kernels/fp16.ts).

static uint16_t round_f32_bits(uint32_t u) {
  uint32_t sign = (u >> 16) & 0x8000;
  uint32_t abs = u & 0x7fffffff;
  if (abs >= 0x7f800000) return (uint16_t)(abs == 0x7f800000 ? (sign | 0x7c00) : (sign | 0x7e00 | ((abs >> 13) & 0x3ff)));
  if (abs >= 0x477ff000) return (uint16_t)(sign | 0x7c00);
  if (abs >= 0x38800000) {
    uint32_t h = (abs - 0x38000000) >> 13;
    uint32_t rem = abs & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1) != 0)) h++;
    return (uint16_t)(sign | h);
  }
  if (abs <= 0x33000000) return (uint16_t)sign;
  uint32_t m = (abs & 0x7fffff) | 0x800000;
  uint32_t shift = 126 - (abs >> 23);
  uint32_t h = m >> shift;
  uint32_t rem = m & ((1u << shift) - 1);
  uint32_t halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (h & 1) != 0)) h++;
  return (uint16_t)(sign | h);
}

HOT static void f32_to_f16(const uint32_t* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8u u;
    memcpy(&u, src + i, sizeof u);
    v8u abs = u & 0x7fffffff;
    v8i normal = (abs >= 0x38800000) & (abs < 0x477ff000);
    int all = 1;
    for (int k = 0; k < 8; k++) all &= normal[k] != 0;
    if (all) {
      // Rebias and round to nearest even in one add (as the JS fast path).
      v8u h = ((u >> 16) & 0x8000) | ((abs - 0x38000000 + 0xfff + ((abs >> 13) & 1)) >> 13);
      v8h out = __builtin_convertvector(h, v8h);
      memcpy(dst + i, &out, sizeof out);
    } else {
      for (int k = 0; k < 8; k++) dst[i + k] = round_f32_bits(u[k]);
    }
  }
  for (; i < n; i++) dst[i] = round_f32_bits(src[i]);
}

HOT static void f16_to_f32(const uint16_t* src, uint32_t* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8h raw;
    memcpy(&raw, src + i, sizeof raw);
    v8u h = __builtin_convertvector(raw, v8u);
    v8u sign = (h & 0x8000) << 16;
    v8u exp = (h >> 10) & 0x1f;
    v8u mant = h & 0x3ff;
    v8u normal = sign | (((h & 0x7fff) << 13) + 0x38000000);
    v8u special = sign | 0x7f800000 | (mant << 13);
    // Zero / subnormal: mant * 2^-24 is exact in float32; the sign goes on as a bit.
    v8f scaled = __builtin_convertvector(mant, v8f) * 5.9604644775390625e-8f;
    v8u small;
    memcpy(&small, &scaled, sizeof small);
    small |= sign;
    v8u is_special = (v8u)(exp == 0x1f);
    v8u is_small = (v8u)(exp == 0);
    v8u out = (special & is_special) | (small & is_small) | (normal & ~(is_special | is_small));
    memcpy(dst + i, &out, sizeof out);
  }
  for (; i < n; i++) {
    uint32_t h = src[i];
    uint32_t sign = (h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) dst[i] = sign | 0x7f800000 | (mant << 13);
    else if (exp != 0) dst[i] = sign | (((h & 0x7fff) << 13) + 0x38000000);
    else {
      float v = (float)mant * 5.9604644775390625e-8f;
      uint32_t bits;
      memcpy(&bits, &v, 4);
      dst[i] = bits | sign;
    }
  }
}

// float32ToFloat16(src, dst): converts all of src.
static napi_value float32_to_float16(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Array src, dst;
  if (!args(env, info, 2, argv) || !typed_array(env, argv[0], napi_float32_array, &src, "float32ToFloat16: src must be a Float32Array") ||
      !typed_array(env, argv[1], napi_uint16_array, &dst, "float32ToFloat16: dst must be a Uint16Array") ||
      !fits(env, (int64_t)src.length, dst.length, "float32ToFloat16: dst too short")) {
    return NULL;
  }
  f32_to_f16(src.data, dst.data, src.length);
  return undefined(env);
}

// float16ToFloat32(src, dst): converts all of src.
static napi_value float16_to_float32(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  Array src, dst;
  if (!args(env, info, 2, argv) || !typed_array(env, argv[0], napi_uint16_array, &src, "float16ToFloat32: src must be a Uint16Array") ||
      !typed_array(env, argv[1], napi_float32_array, &dst, "float16ToFloat32: dst must be a Float32Array") ||
      !fits(env, (int64_t)src.length, dst.length, "float16ToFloat32: dst too short")) {
    return NULL;
  }
  f16_to_f32(src.data, dst.data, src.length);
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// 8-bit quantization (kernels/quantize.ts; its header states the specification).

static float int8_scale(double lo, double hi) {
  double range = hi - lo;
  if (!(range > 0)) return 0;
  float scale = (float)(range / 255.0);
  if ((double)scale * 255.0 < range) scale = nextafterf(scale, INFINITY);
  return scale;
}

static int non_finite(uint32_t bits) {
  return (bits & 0x7f800000) == 0x7f800000;
}

// Returns 0, or 1 when a value of the group is NaN or infinite (nothing written then).
HOT static int keys_per_channel(const float* src, int64_t tokens, int64_t head_dim, uint8_t* codes, float* scales, float* zeros, float* lo, float* hi, double* inv) {
  for (int64_t d = 0; d < head_dim; d++) lo[d] = hi[d] = src[d];
  uint32_t bad = 0;
  const float* end = src + tokens * head_dim;
  for (const float* row = src; row < end; row += head_dim) {
    for (int64_t d = 0; d < head_dim; d++) {
      float x = row[d];
      uint32_t bits;
      memcpy(&bits, &x, 4);
      bad |= (uint32_t)non_finite(bits);
      lo[d] = x < lo[d] ? x : lo[d];
      hi[d] = x > hi[d] ? x : hi[d];
    }
  }
  if (bad) return 1;
  for (int64_t d = 0; d < head_dim; d++) {
    float scale = int8_scale(lo[d], hi[d]);
    inv[d] = scale > 0 ? 1.0 / scale : 0;
    scales[d] = scale;
    zeros[d] = lo[d];
  }
  for (int64_t r = 0; r < tokens; r++) {
    const float* row = src + r * head_dim;
    uint8_t* out = codes + r * head_dim;
    for (int64_t d = 0; d < head_dim; d++) {
      int32_t q = (int32_t)(((double)row[d] - (double)lo[d]) * inv[d] + 0.5);
      out[d] = (uint8_t)(q < 255 ? q : 255);
    }
  }
  return 0;
}

// First-seen min/max of a row, as the scalar reference scans it (only a zero's sign depends on order).
static void row_range_scalar(const float* row, int64_t n, float* lo_out, float* hi_out) {
  float lo = row[0], hi = row[0];
  for (int64_t i = 0; i < n; i++) {
    lo = row[i] < lo ? row[i] : lo;
    hi = row[i] > hi ? row[i] : hi;
  }
  *lo_out = lo;
  *hi_out = hi;
}

typedef float v8f __attribute__((vector_size(32)));

// Min/max of a row 8 lanes at a time (one running min is a serial chain the compiler will not
// vectorize), plus the non-finite flag. Lane order can only change which zero (+0 or -0) wins, so a
// zero result is recomputed in the reference order.
static inline __attribute__((always_inline)) int row_range(const float* row, int64_t n, float* lo_out, float* hi_out) {
  float min, max;
  uint32_t any_bad = 0;
  int64_t i = 0;
  if (n >= 8) {
    v8f lo, hi, x;
    memcpy(&lo, row, 32);
    hi = lo;
    v8i bad = {0};
    const v8i exponent = {0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000, 0x7f800000};
    for (; i + 8 <= n; i += 8) {
      memcpy(&x, row + i, 32);
      v8i bits = (v8i)x & exponent;
      bad |= bits == exponent;
      v8i below = x < lo, above = x > hi;
      lo = (v8f)((below & (v8i)x) | (~below & (v8i)lo));
      hi = (v8f)((above & (v8i)x) | (~above & (v8i)hi));
    }
    min = lo[0];
    max = hi[0];
    for (int l = 0; l < 8; l++) {
      any_bad |= (uint32_t)bad[l];
      min = lo[l] < min ? lo[l] : min;
      max = hi[l] > max ? hi[l] : max;
    }
  } else {
    min = max = row[0];
  }
  for (; i < n; i++) {
    float x = row[i];
    uint32_t bits;
    memcpy(&bits, &x, 4);
    any_bad |= (uint32_t)non_finite(bits);
    min = x < min ? x : min;
    max = x > max ? x : max;
  }
  if (any_bad) return 1;
  if (min == 0 || max == 0) row_range_scalar(row, n, &min, &max);
  *lo_out = min;
  *hi_out = max;
  return 0;
}

HOT static int values_per_token(const float* src, int64_t rows, int64_t head_dim, uint8_t* codes, float* scales, float* zeros) {
  for (int64_t r = 0; r < rows; r++) {
    const float* row = src + r * head_dim;
    float lo, hi;
    if (row_range(row, head_dim, &lo, &hi)) return (int)r + 1;
    float scale = int8_scale(lo, hi);
    double inv = scale > 0 ? 1.0 / scale : 0;
    scales[r] = scale;
    zeros[r] = lo;
    uint8_t* out = codes + r * head_dim;
    for (int64_t i = 0; i < head_dim; i++) {
      int32_t q = (int32_t)(((double)row[i] - (double)lo) * inv + 0.5);
      out[i] = (uint8_t)(q < 255 ? q : 255);
    }
  }
  return 0;
}

typedef struct {
  Array src, codes, scales, zeros;
  int64_t heads, tokens, head_dim;
} QuantCall;

static int quant_args(napi_env env, napi_callback_info info, QuantCall* q, int64_t groups_per_head_token, const char* name) {
  napi_value argv[7];
  if (!args(env, info, 7, argv) || !typed_array(env, argv[0], napi_float32_array, &q->src, name) ||
      !integer(env, argv[1], 1, &q->heads, name) || !integer(env, argv[2], 1, &q->tokens, name) || !integer(env, argv[3], 1, &q->head_dim, name) ||
      !typed_array(env, argv[4], napi_uint8_array, &q->codes, name) || !typed_array(env, argv[5], napi_float32_array, &q->scales, name) ||
      !typed_array(env, argv[6], napi_float32_array, &q->zeros, name)) {
    return 0;
  }
  int64_t n = q->heads * q->tokens * q->head_dim;
  int64_t groups = q->heads * (groups_per_head_token ? q->tokens : q->head_dim);
  return fits(env, n, q->src.length, name) && fits(env, n, q->codes.length, name) && fits(env, groups, q->scales.length, name) &&
         fits(env, groups, q->zeros.length, name);
}

// quantizeKeysPerChannel(src, heads, tokens, headDim, codes, scales, zeros) -> -1, or the head holding a non-finite value.
static napi_value quantize_keys_per_channel(napi_env env, napi_callback_info info) {
  QuantCall q;
  if (!quant_args(env, info, &q, 0, "quantizeKeysPerChannel: bad arguments")) return NULL;
  float* lo = malloc((size_t)q.head_dim * 2 * sizeof(float));
  double* inv = malloc((size_t)q.head_dim * sizeof(double));
  if (!lo || !inv) {
    free(lo);
    free(inv);
    napi_throw_error(env, NULL, "quantizeKeysPerChannel: out of memory");
    return NULL;
  }
  double poisoned = -1;
  for (int64_t h = 0; h < q.heads; h++) {
    int64_t base = h * q.tokens * q.head_dim;
    if (keys_per_channel((const float*)q.src.data + base, q.tokens, q.head_dim, (uint8_t*)q.codes.data + base,
                         (float*)q.scales.data + h * q.head_dim, (float*)q.zeros.data + h * q.head_dim, lo, lo + q.head_dim, inv)) {
      poisoned = (double)h;
      break;
    }
  }
  free(lo);
  free(inv);
  return number(env, poisoned);
}

// quantizeValuesPerToken(src, heads, tokens, headDim, codes, scales, zeros) -> -1, or the row holding a non-finite value.
static napi_value quantize_values_per_token(napi_env env, napi_callback_info info) {
  QuantCall q;
  if (!quant_args(env, info, &q, 1, "quantizeValuesPerToken: bad arguments")) return NULL;
  int bad = values_per_token(q.src.data, q.heads * q.tokens, q.head_dim, q.codes.data, q.scales.data, q.zeros.data);
  return number(env, bad ? bad - 1 : -1);
}

HOT static void dequant_keys(const uint8_t* codes, const float* scales, const float* zeros, int64_t tokens, int64_t head_dim, float* dst) {
  for (int64_t r = 0; r < tokens; r++) {
    for (int64_t d = 0; d < head_dim; d++) {
      dst[r * head_dim + d] = (float)((double)zeros[d] + (double)codes[r * head_dim + d] * (double)scales[d]);
    }
  }
}

HOT static void dequant_values(const uint8_t* codes, const float* scales, const float* zeros, int64_t rows, int64_t head_dim, float* dst) {
  for (int64_t r = 0; r < rows; r++) {
    double lo = zeros[r], scale = scales[r];
    for (int64_t i = 0; i < head_dim; i++) dst[r * head_dim + i] = (float)(lo + (double)codes[r * head_dim + i] * scale);
  }
}

static int dequant_args(napi_env env, napi_callback_info info, QuantCall* q, int per_token, const char* name) {
  napi_value argv[7];
  if (!args(env, info, 7, argv) || !typed_array(env, argv[0], napi_uint8_array, &q->codes, name) ||
      !typed_array(env, argv[1], napi_float32_array, &q->scales, name) || !typed_array(env, argv[2], napi_float32_array, &q->zeros, name) ||
      !integer(env, argv[3], 1, &q->heads, name) || !integer(env, argv[4], 1, &q->tokens, name) || !integer(env, argv[5], 1, &q->head_dim, name) ||
      !typed_array(env, argv[6], napi_float32_array, &q->src, name)) {
    return 0;
  }
  int64_t n = q->heads * q->tokens * q->head_dim;
  int64_t groups = q->heads * (per_token ? q->tokens : q->head_dim);
  return fits(env, n, q->src.length, name) && fits(env, n, q->codes.length, name) && fits(env, groups, q->scales.length, name) &&
         fits(env, groups, q->zeros.length, name);
}

// dequantizeKeysPerChannel(codes, scales, zeros, heads, tokens, headDim, dst)
static napi_value dequantize_keys_per_channel(napi_env env, napi_callback_info info) {
  QuantCall q;
  if (!dequant_args(env, info, &q, 0, "dequantizeKeysPerChannel: bad arguments")) return NULL;
  for (int64_t h = 0; h < q.heads; h++) {
    int64_t base = h * q.tokens * q.head_dim;
    dequant_keys((const uint8_t*)q.codes.data + base, (const float*)q.scales.data + h * q.head_dim, (const float*)q.zeros.data + h * q.head_dim,
                 q.tokens, q.head_dim, (float*)q.src.data + base);
  }
  return undefined(env);
}

// dequantizeValuesPerToken(codes, scales, zeros, heads, tokens, headDim, dst)
static napi_value dequantize_values_per_token(napi_env env, napi_callback_info info) {
  QuantCall q;
  if (!dequant_args(env, info, &q, 1, "dequantizeValuesPerToken: bad arguments")) return NULL;
  dequant_values(q.codes.data, q.scales.data, q.zeros.data, q.heads * q.tokens, q.head_dim, q.src.data);
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// Mean over tokens (kernels/pool.ts), float64 sums in token order.

HOT static void mean_tokens(const float* src, int64_t tokens, int64_t head_dim, double* acc, float* dst) {
  for (int64_t d = 0; d < head_dim; d++) acc[d] = 0;
  for (int64_t t = 0; t < tokens; t++) {
    const float* row = src + t * head_dim;
    for (int64_t d = 0; d < head_dim; d++) acc[d] += (double)row[d];
  }
  for (int64_t d = 0; d < head_dim; d++) dst[d] = (float)(acc[d] / (double)tokens);
}

// meanOverTokens(src, heads, tokens, headDim, dst)
static napi_value mean_over_tokens(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  Array src, dst;
  int64_t heads, tokens, head_dim;
  const char* name = "meanOverTokens: bad arguments";
  if (!args(env, info, 5, argv) || !typed_array(env, argv[0], napi_float32_array, &src, name) || !integer(env, argv[1], 0, &heads, name) ||
      !integer(env, argv[2], 1, &tokens, name) || !integer(env, argv[3], 0, &head_dim, name) ||
      !typed_array(env, argv[4], napi_float32_array, &dst, name) || !fits(env, heads * tokens * head_dim, src.length, name) ||
      !fits(env, heads * head_dim, dst.length, name)) {
    return NULL;
  }
  double* acc = malloc((size_t)(head_dim > 0 ? head_dim : 1) * sizeof(double));
  if (!acc) {
    napi_throw_error(env, NULL, "meanOverTokens: out of memory");
    return NULL;
  }
  for (int64_t h = 0; h < heads; h++) {
    mean_tokens((const float*)src.data + h * tokens * head_dim, tokens, head_dim, acc, (float*)dst.data + h * head_dim);
  }
  free(acc);
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// Top-k with a size-k min-heap (kernels/topk.ts): larger first, ties by lower index, NaN last.

static int worse(double va, int32_t ia, double vb, int32_t ib) {
  if (va != va) return vb == vb || ia > ib;
  if (vb != vb) return 0;
  return va < vb || (va == vb && ia > ib);
}

static void sift_down(double* vals, int32_t* idx, int64_t size, int64_t i) {
  double v = vals[i];
  int32_t x = idx[i];
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= size) break;
    if (c + 1 < size && worse(vals[c + 1], idx[c + 1], vals[c], idx[c])) c++;
    if (!worse(vals[c], idx[c], v, x)) break;
    vals[i] = vals[c];
    idx[i] = idx[c];
    i = c;
  }
  vals[i] = v;
  idx[i] = x;
}

static void sift_up(double* vals, int32_t* idx, int64_t i) {
  double v = vals[i];
  int32_t x = idx[i];
  while (i > 0) {
    int64_t p = (i - 1) >> 1;
    if (!worse(v, x, vals[p], idx[p])) break;
    vals[i] = vals[p];
    idx[i] = idx[p];
    i = p;
  }
  vals[i] = v;
  idx[i] = x;
}

// Scans in blocks: a block none of whose scores can enter the heap costs one vector compare.
#define TOPK_SCAN(TYPE)                                                                    \
  for (int64_t i = 0; i < n; i++) {                                                        \
    if (size == k && i + 8 <= n) {                                                         \
      double worst = vals[0];                                                              \
      int skip = worst == worst;                                                           \
      for (int j = 0; j < 8 && skip; j++) skip = ((const TYPE*)scores)[i + j] <= worst;    \
      if (skip) {                                                                          \
        i += 7;                                                                            \
        continue;                                                                          \
      }                                                                                    \
    }                                                                                      \
    double v = ((const TYPE*)scores)[i];                                                   \
    if (size == k && v <= vals[0]) continue;                                               \
    if (size < k) {                                                                        \
      vals[size] = v;                                                                      \
      idx[size] = (int32_t)i;                                                              \
      sift_up(vals, idx, size++);                                                          \
    } else if (worse(vals[0], idx[0], v, (int32_t)i)) {                                    \
      vals[0] = v;                                                                         \
      idx[0] = (int32_t)i;                                                                 \
      sift_down(vals, idx, size, 0);                                                       \
    }                                                                                      \
  }

static void top_k_f32(const float* scores, int64_t n, int64_t k, double* vals, int32_t* idx) {
  int64_t size = 0;
  TOPK_SCAN(float)
}

static void top_k_f64(const double* scores, int64_t n, int64_t k, double* vals, int32_t* idx) {
  int64_t size = 0;
  TOPK_SCAN(double)
}

// topK(scores: Float32Array | Float64Array, k, vals: Float64Array, idx: Int32Array): fills the heap
// and sorts it best-first, like the JS kernel; k must already be clamped to [1, n].
static napi_value top_k(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!args(env, info, 4, argv)) return NULL;
  napi_typedarray_type type;
  size_t n;
  void* scores;
  napi_value buffer;
  size_t offset;
  bool is_typed = false;
  if (napi_is_typedarray(env, argv[0], &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, argv[0], &type, &n, &scores, &buffer, &offset) != napi_ok ||
      (type != napi_float32_array && type != napi_float64_array)) {
    napi_throw_type_error(env, NULL, "topK: scores must be a Float32Array or Float64Array");
    return NULL;
  }
  int64_t k;
  Array vals, idx;
  if (!integer(env, argv[1], 1, &k, "topK: k must be an integer >= 1") || !fits(env, k, n, "topK: k > scores") ||
      !typed_array(env, argv[2], napi_float64_array, &vals, "topK: vals must be a Float64Array") ||
      !typed_array(env, argv[3], napi_int32_array, &idx, "topK: idx must be an Int32Array") || !fits(env, k, vals.length, "topK: vals too short") ||
      !fits(env, k, idx.length, "topK: idx too short") || !fits(env, (int64_t)n, 2147483647, "topK: too many scores")) {
    return NULL;
  }
  double* v = vals.data;
  int32_t* x = idx.data;
  if (type == napi_float32_array) top_k_f32(scores, (int64_t)n, k, v, x);
  else top_k_f64(scores, (int64_t)n, k, v, x);
  for (int64_t size = k; size > 1;) {
    double tv = v[0];
    int32_t tx = x[0];
    size--;
    v[0] = v[size];
    x[0] = x[size];
    v[size] = tv;
    x[size] = tx;
    sift_down(v, x, size, 0);
  }
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// Row scores of exact search (retrieval/exactStore.ts rowScore): per row, four float64 partial
// sums over the lanes i % 4 (the JS keeps four accumulators), the tail into the first, then
// s0 + s1 + (s2 + s3). A v4d accumulator is exactly those four sums.

HOT static void dot_rows(const float* m, int64_t rows, int64_t dim, const float* q, double* out) {
  const int64_t end4 = dim - dim % 4;
  for (int64_t r = 0; r < rows; r++) {
    const float* row = m + r * dim;
    v4d acc = {0, 0, 0, 0};
    for (int64_t i = 0; i < end4; i += 4) {
      v4f a, b;
      memcpy(&a, q + i, sizeof a);
      memcpy(&b, row + i, sizeof b);
      acc += __builtin_convertvector(a, v4d) * __builtin_convertvector(b, v4d);
    }
    double s0 = acc[0];
    for (int64_t i = end4; i < dim; i++) s0 += (double)q[i] * (double)row[i];
    out[r] = s0 + acc[1] + (acc[2] + acc[3]);
  }
}

// dotRows(matrix, rows, dim, query, out: Float64Array): out[r] = query . row r
static napi_value dot_rows_api(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  Array m, v, out;
  int64_t rows, dim;
  const char* name = "dotRows: bad arguments";
  if (!args(env, info, 5, argv) || !typed_array(env, argv[0], napi_float32_array, &m, name) || !integer(env, argv[1], 0, &rows, name) ||
      !integer(env, argv[2], 0, &dim, name) || !typed_array(env, argv[3], napi_float32_array, &v, name) ||
      !typed_array(env, argv[4], napi_float64_array, &out, name) || !fits(env, rows * dim, m.length, "dotRows: matrix too short") ||
      !fits(env, dim, v.length, "dotRows: vector too short") || !fits(env, rows, out.length, "dotRows: out too short")) {
    return NULL;
  }
  dot_rows(m.data, rows, dim, v.data, out.data);
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// Sealed-index scans over int8 rows (kernels/int8Rows.ts).
//
// dotRowsInt8: out[r] = scale_r * (s0 + s1 + (s2 + s3)), s_j the float64 sums of query[i] * code[i]
// over i % 4 == j in order of i (the tail into s0). Each product of a float32 and an int8 is exact
// in float64, so only the sums round, and they round in the JS order: one v4d accumulator per row
// holds exactly the four sums. Four rows are interleaved so their add chains overlap.

static double dot_row_int8_scalar(const int8_t* row, const double* q, int64_t dim) {
  const int64_t end4 = dim - dim % 4;
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int64_t i = 0; i < end4; i += 4) {
    s0 += q[i] * (double)row[i];
    s1 += q[i + 1] * (double)row[i + 1];
    s2 += q[i + 2] * (double)row[i + 2];
    s3 += q[i + 3] * (double)row[i + 3];
  }
  for (int64_t i = end4; i < dim; i++) s0 += q[i] * (double)row[i];
  return s0 + s1 + (s2 + s3);
}

static void dot_rows_int8_scalar(const int8_t* codes, const float* scales, int64_t rows, int64_t dim, const double* q, double* out) {
  for (int64_t r = 0; r < rows; r++) out[r] = (double)scales[r] * dot_row_int8_scalar(codes + r * dim, q, dim);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define INT8_AVX2 1

__attribute__((target("avx2"))) static inline __m256d int8_acc4(__m256d acc, const int8_t* c, __m256d q) {
  int32_t w;
  memcpy(&w, c, 4);
  __m256d x = _mm256_cvtepi32_pd(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(w)));
  return _mm256_add_pd(acc, _mm256_mul_pd(q, x));
}

__attribute__((target("avx2"))) static inline double int8_finish(__m256d acc, const int8_t* row, const double* q, int64_t end4, int64_t dim) {
  double l[4];
  _mm256_storeu_pd(l, acc);
  double s0 = l[0];
  for (int64_t i = end4; i < dim; i++) s0 += q[i] * (double)row[i];
  return s0 + l[1] + (l[2] + l[3]);
}

__attribute__((target("avx2"))) static void dot_rows_int8_avx2(const int8_t* codes, const float* scales, int64_t rows, int64_t dim, const double* q, double* out) {
  const int64_t end4 = dim - dim % 4;
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const int8_t* a = codes + r * dim;
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < end4; i += 4) {
      __m256d qv = _mm256_loadu_pd(q + i);
      a0 = int8_acc4(a0, a + i, qv);
      a1 = int8_acc4(a1, a + dim + i, qv);
      a2 = int8_acc4(a2, a + 2 * dim + i, qv);
      a3 = int8_acc4(a3, a + 3 * dim + i, qv);
    }
    out[r] = (double)scales[r] * int8_finish(a0, a, q, end4, dim);
    out[r + 1] = (double)scales[r + 1] * int8_finish(a1, a + dim, q, end4, dim);
    out[r + 2] = (double)scales[r + 2] * int8_finish(a2, a + 2 * dim, q, end4, dim);
    out[r + 3] = (double)scales[r + 3] * int8_finish(a3, a + 3 * dim, q, end4, dim);
  }
  for (; r < rows; r++) {
    const int8_t* row = codes + r * dim;
    __m256d acc = _mm256_setzero_pd();
    for (int64_t i = 0; i < end4; i += 4) acc = int8_acc4(acc, row + i, _mm256_loadu_pd(q + i));
    out[r] = (double)scales[r] * int8_finish(acc, row, q, end4, dim);
  }
}
#endif

static void dot_rows_int8(const int8_t* codes, const float* scales, int64_t rows, int64_t dim, const double* q, double* out) {
#ifdef INT8_AVX2
  if (__builtin_cpu_supports("avx2")) {
    dot_rows_int8_avx2(codes, scales, rows, dim, q, out);
    return;
  }
#endif
  dot_rows_int8_scalar(codes, scales, rows, dim, q, out);
}

// dotRowsInt16: out[r] = scale_r * queryScale * (int16 query . int8 row), the dot product in int32.
// Integer sums are exact in any order (|sum| <= dim * 32767 * 127 < 2^31 for dim <= 516), so the
// compiler may vectorize them freely (pmaddwd) and the JS twin, summing in float64, is exact too.
HOT static void dot_rows_int16(const int8_t* codes, const float* scales, int64_t rows, int64_t dim, const int16_t* q, double query_scale, double* out) {
  for (int64_t r = 0; r < rows; r++) {
    const int8_t* row = codes + r * dim;
    int32_t s = 0;
    for (int64_t i = 0; i < dim; i++) s += (int32_t)q[i] * (int32_t)row[i];
    out[r] = (double)scales[r] * query_scale * (double)s;
  }
}

// Shared argument checks of the two scans: codes, scales, from, rows, dim, query, ..., out.
static int int8_scan_args(napi_env env, napi_value* argv, int out_arg, napi_typedarray_type query_type, Array* codes, Array* scales, int64_t* from, int64_t* rows,
                          int64_t* dim, Array* query, Array* out, const char* name) {
  if (!typed_array(env, argv[0], napi_int8_array, codes, name) || !typed_array(env, argv[1], napi_float32_array, scales, name) ||
      !integer(env, argv[2], 0, from, name) || !integer(env, argv[3], 0, rows, name) || !integer(env, argv[4], 1, dim, name) ||
      !typed_array(env, argv[5], query_type, query, name) || !typed_array(env, argv[out_arg], napi_float64_array, out, name)) {
    return 0;
  }
  if (*dim > 4096 || *from > 2147483647 || *rows > 2147483647) {
    napi_throw_range_error(env, NULL, name);
    return 0;
  }
  return fits(env, (*from + *rows) * *dim, codes->length, name) && fits(env, *from + *rows, scales->length, name) && fits(env, *dim, query->length, name) &&
         fits(env, *rows, out->length, name);
}

// dotRowsInt8(codes: Int8Array, scales: Float32Array, from, rows, dim, query: Float32Array, out: Float64Array)
static napi_value dot_rows_int8_api(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  Array codes, scales, query, out;
  int64_t from, rows, dim;
  if (!args(env, info, 7, argv) ||
      !int8_scan_args(env, argv, 6, napi_float32_array, &codes, &scales, &from, &rows, &dim, &query, &out, "dotRowsInt8: bad arguments")) {
    return NULL;
  }
  double q[4096];
  const float* qf = query.data;
  for (int64_t i = 0; i < dim; i++) q[i] = (double)qf[i];
  dot_rows_int8((const int8_t*)codes.data + from * dim, (const float*)scales.data + from, rows, dim, q, out.data);
  return undefined(env);
}

// dotRowsInt16(codes: Int8Array, scales: Float32Array, from, rows, dim, query: Int16Array, queryScale, out: Float64Array)
static napi_value dot_rows_int16_api(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  Array codes, scales, query, out;
  int64_t from, rows, dim;
  double query_scale;
  const char* name = "dotRowsInt16: bad arguments";
  if (!args(env, info, 8, argv) || !int8_scan_args(env, argv, 7, napi_int16_array, &codes, &scales, &from, &rows, &dim, &query, &out, name)) return NULL;
  if (napi_get_value_double(env, argv[6], &query_scale) != napi_ok) {
    napi_throw_type_error(env, NULL, name);
    return NULL;
  }
  if (dim > 516) {
    napi_throw_range_error(env, NULL, "dotRowsInt16: dim > 516 could overflow the int32 sums");
    return NULL;
  }
  dot_rows_int16((const int8_t*)codes.data + from * dim, (const float*)scales.data + from, rows, dim, query.data, query_scale, out.data);
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// prefetchRanges(fds: Int32Array, offsets: Float64Array, lengths: Float64Array): asks the OS to
// start reading each [offset, offset + length) of fds[i] into the page cache (posix_fadvise
// WILLNEED), so the reads that follow overlap on the device instead of waiting one after another:
// the sealed index's ~96 list reads per layer from a cold cache took 9 ms one by one and 1.5-2 ms
// after the hint on the development VM. Only a hint: errors are ignored, and it does nothing where
// posix_fadvise is missing. Results never depend on it.
static napi_value prefetch_ranges(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  Array fds, offsets, lengths;
  const char* name = "prefetchRanges: bad arguments";
  if (!args(env, info, 3, argv) || !typed_array(env, argv[0], napi_int32_array, &fds, name) ||
      !typed_array(env, argv[1], napi_float64_array, &offsets, name) || !typed_array(env, argv[2], napi_float64_array, &lengths, name) ||
      !fits(env, (int64_t)fds.length, offsets.length, name) || !fits(env, (int64_t)fds.length, lengths.length, name)) {
    return NULL;
  }
#if defined(__linux__)
  const int32_t* fd = fds.data;
  const double* off = offsets.data;
  const double* len = lengths.data;
  for (size_t i = 0; i < fds.length; i++) {
    if (fd[i] < 0 || !(off[i] >= 0) || !(len[i] > 0) || off[i] > 9007199254740991.0 || len[i] > 9007199254740991.0) continue;
    (void)posix_fadvise(fd[i], (off_t)off[i], (off_t)len[i], POSIX_FADV_WILLNEED);
  }
#endif
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// trimHeap(): glibc's malloc_trim(0). glibc keeps memory freed by onnxruntime, sharp and V8's
// array buffers in its heaps for reuse and gives little of it back by itself: after questions
// that re-encode archived frames RSS stayed ~116 MiB above what was in use until a trim
// (docs/PERFORMANCE.md, "Horizon"). Returns true when memory went back to the OS; false where
// there is nothing to trim or no glibc.
static napi_value trim_heap(napi_env env, napi_callback_info info) {
  int released = 0;
#if defined(__GLIBC__)
  released = malloc_trim(0);
#endif
  napi_value result;
  napi_get_boolean(env, released != 0, &result);
  return result;
}

// ---------------------------------------------------------------------------------------------

static napi_value init(napi_env env, napi_value exports) {
  const napi_property_descriptor methods[] = {
      {"rotateRows", NULL, rotate_rows, NULL, NULL, NULL, napi_enumerable, NULL},
      {"float32ToFloat16", NULL, float32_to_float16, NULL, NULL, NULL, napi_enumerable, NULL},
      {"float16ToFloat32", NULL, float16_to_float32, NULL, NULL, NULL, napi_enumerable, NULL},
      {"quantizeKeysPerChannel", NULL, quantize_keys_per_channel, NULL, NULL, NULL, napi_enumerable, NULL},
      {"quantizeValuesPerToken", NULL, quantize_values_per_token, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dequantizeKeysPerChannel", NULL, dequantize_keys_per_channel, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dequantizeValuesPerToken", NULL, dequantize_values_per_token, NULL, NULL, NULL, napi_enumerable, NULL},
      {"meanOverTokens", NULL, mean_over_tokens, NULL, NULL, NULL, napi_enumerable, NULL},
      {"topK", NULL, top_k, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dotRows", NULL, dot_rows_api, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dotRowsInt8", NULL, dot_rows_int8_api, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dotRowsInt16", NULL, dot_rows_int16_api, NULL, NULL, NULL, napi_enumerable, NULL},
      {"prefetchRanges", NULL, prefetch_ranges, NULL, NULL, NULL, napi_enumerable, NULL},
      {"trimHeap", NULL, trim_heap, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof methods / sizeof methods[0], methods);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
