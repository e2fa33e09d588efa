/*
 * synth_gguf.c: writes a GGUF v3 model (Llama, Mistral-style Llama, Qwen2,
 * Qwen3, Gemma 3, Phi-3) of any shape with random weights.
 *
 * Why: performance work needs models of real shapes (SmolLM2-135M,
 * Llama-3.2-1B, ...) on machines that cannot download them. The weights are
 * random but scaled so that activations stay finite through every layer, and
 * the tokenizer is a small, self-consistent byte-level BPE, so llama.cpp and
 * samepage load and run the file like a converted model (the text it
 * generates is noise). The tool is plain C11 with libc and libm only, and it
 * streams the tensor data through one large buffer, so a 2.5 GB model takes
 * seconds, not minutes.
 *
 * The file it writes (all integers little-endian, as in ggml's gguf.h):
 *
 *  1. Header: "GGUF", u32 version 3, u64 tensor count, u64 key/value count.
 *  2. The key/value pairs: a string key (u64 length + bytes), a u32 value
 *     type, the value. Arrays are a u32 element type, a u64 count, then the
 *     elements.
 *  3. The tensor infos: string name, u32 n_dims, n_dims u64 extents
 *     (innermost first), u32 ggml type, u64 offset from the start of the
 *     data section.
 *  4. Zero padding to a multiple of 32 (general.alignment); then the data
 *     section: each tensor's bytes, each padded with zeros to 32.
 *
 * The model is written to a temporary file beside --out and renamed into
 * place only once complete, so a reader never sees a partial file.
 *
 * Build: gcc -std=gnu11 -O2 -o synth_gguf tools/synth_gguf.c -lm
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Limits and constants
 * ------------------------------------------------------------------------ */

#define GGUF_VERSION 3
#define ALIGNMENT 32          /* general.alignment; also ggml's default */
#define QK 32                 /* elements per Q4_0 / Q4_1 / Q8_0 block */
#define QK_K 256              /* elements per K-quant super-block */
#define CHUNK_BYTES (8u << 20) /* tensor data is generated 8 MiB at a time */
#define MAX_TOKEN_BYTES 16    /* longest merged token, in raw bytes */
#define RMS_EPS 1e-5f

/* Random weights: elements ~ N(0, WEIGHT_STD). With an RMS-normalised input
 * of width n, a matmul output then has std WEIGHT_STD * sqrt(n): about 0.9
 * for n = 2048, so activations neither vanish nor overflow, in any layer. */
#define WEIGHT_STD 0.02f
#define NORM_JITTER 0.05f     /* std of the norm weights around 1.0 */

/* Llama 3 rope scaling, as in Llama 3.2's config.json. */
#define L3_FACTOR 32.0
#define L3_LOW_FREQ_FACTOR 1.0
#define L3_HIGH_FREQ_FACTOR 4.0
#define L3_ORIGINAL_CTX 8192.0

/* GGUF metadata value types. */
enum { GV_UINT32 = 4, GV_INT32 = 5, GV_FLOAT32 = 6, GV_BOOL = 7,
       GV_STRING = 8, GV_ARRAY = 9 };

/* A tensor storage type: `block` elements take `block_bytes` bytes. */
typedef struct wtype {
  const char *name;    /* as given to --type */
  uint32_t ggml_type;  /* ggml type id */
  uint32_t file_type;  /* general.file_type (llama_ftype) */
  uint32_t block;      /* elements per block */
  uint32_t block_bytes;
  /* Types filled as random bytes with their f16 scales patched in (the
   * K-quants, Q5_x, IQ4_x): where the scale d and the min live in a block
   * (dmin_at 0: none), the std of the codes times sub-block scales (so d
   * gives weights of std ~ WEIGHT_STD), and dmin as a multiple of d
   * (which centres the codes of types with a min on zero). */
  uint16_t d_at, dmin_at;
  float code_std, dmin_ratio;
  bool mix;            /* q4_k_m: a per-tensor choice, see tensor_type */
} wtype;

static const wtype WTYPES[] = {
    {"f32", 0, 0, 1, 4, 0, 0, 0, 0, false},
    {"f16", 1, 1, 1, 2, 0, 0, 0, 0, false},
    {"bf16", 30, 32, 1, 2, 0, 0, 0, 0, false},
    {"q8_0", 8, 7, QK, 2 + QK, 0, 0, 0, 0, false},
    {"q4_0", 2, 2, QK, 2 + QK / 2, 0, 0, 0, 0, false},
    {"q4_1", 3, 3, QK, 4 + QK / 2, 0, 0, 0, 0, false},
    /* Block layouts as ggml's (d is ggml_half; offsets in bytes). */
    {"q5_0", 6, 8, QK, 22, 0, 0, 9.2f, 0, false},
    {"q5_1", 7, 9, QK, 24, 0, 2, 9.2f, -15.5f, false},
    {"q2_k", 10, 10, QK_K, 84, 80, 82, 13.8f, 1.5f, false},
    {"q3_k", 11, 12, QK_K, 110, 108, 0, 42.0f, 0, false},
    {"q4_k", 12, 14, QK_K, 144, 0, 2, 241.0f, 7.5f, false},
    {"q5_k", 13, 16, QK_K, 176, 0, 2, 520.0f, 15.5f, false},
    {"q6_k", 14, 18, QK_K, 210, 208, 0, 1369.0f, 0, false},
    {"iq4_nl", 20, 25, QK, 18, 0, 0, 60.0f, 0, false},
    {"iq4_xs", 23, 30, QK_K, 136, 0, 0, 1100.0f, 0, false},
    {"q4_k_m", 12, 15, QK_K, 144, 0, 2, 241.0f, 7.5f, true},
};
#define N_WTYPES (sizeof WTYPES / sizeof WTYPES[0])
static const wtype *const WTYPE_F32 = &WTYPES[0];

static const wtype *find_wtype(const char *name);

/* ------------------------------------------------------------------------
 * Configuration: presets, command line, validation
 * ------------------------------------------------------------------------ */

/* Which special tokens and chat template the vocabulary gets. */
typedef enum tok_style { STYLE_CHATML, STYLE_LLAMA3, STYLE_PHI3 } tok_style;

typedef struct shape {
  uint64_t vocab, embd, layers, heads, kv_heads, ff, ctx;
} shape;

/* What an architecture adds to the Llama graph: the tensors and metadata
 * llama.cpp expects of it. All zero: plain Llama. */
typedef struct arch_extras {
  const char *arch;     /* general.architecture; NULL: "llama" */
  uint64_t head_dim;    /* attention.key_length/value_length; 0: embd / heads */
  float rms_eps;        /* 0: RMS_EPS */
  bool qkv_bias;        /* qwen2: attn_q/k/v.bias */
  bool qk_norm;         /* qwen3, gemma3: attn_q_norm, attn_k_norm [head_dim] */
  bool post_norms;      /* gemma3: post_attention_norm, post_ffw_norm */
  bool fused;           /* phi3: attn_qkv, ffn_up = gate | up, no ffn_gate */
  bool untied;          /* output.weight of its own */
  uint64_t window;      /* attention.sliding_window (0: none) */
  uint64_t swa_pattern; /* gemma3: every n-th layer global (capped at layers) */
  uint64_t orig_ctx;    /* phi3 LongRoPE: rope_factors_long/short, the
                           original context length and attn_factor */
} arch_extras;

typedef struct preset {
  const char *name;
  shape s;
  double rope_theta;
  bool llama3_rope;
  const char *tok_pre; /* tokenizer.ggml.pre */
  tok_style style;
  arch_extras x;
} preset;

/* Shapes of the real models (their config.json), the smallest of each
 * family; shrink with --layers/--vocab for tests. */
static const preset PRESETS[] = {
    {"smollm2-135m", {49152, 576, 30, 9, 3, 1536, 8192}, 100000.0, false,
     "smollm", STYLE_CHATML, {0}},
    {"llama-3.2-1b", {128256, 2048, 16, 32, 8, 8192, 131072}, 500000.0, true,
     "llama-bpe", STYLE_LLAMA3, {0}},
    {"mistral-7b", {32000, 4096, 32, 32, 8, 14336, 32768}, 10000.0, false,
     "default", STYLE_CHATML, {.untied = true, .window = 4096}},
    {"qwen2.5-0.5b", {151936, 896, 24, 14, 2, 4864, 32768}, 1000000.0, false,
     "qwen2", STYLE_CHATML, {.arch = "qwen2", .rms_eps = 1e-6f, .qkv_bias = true}},
    {"qwen3-0.6b", {151936, 1024, 28, 16, 8, 3072, 40960}, 1000000.0, false,
     "qwen2", STYLE_CHATML, {.arch = "qwen3", .head_dim = 128, .rms_eps = 1e-6f, .qk_norm = true}},
    {"gemma-3-270m", {262144, 640, 18, 4, 1, 2048, 32768}, 1000000.0, false,
     "default", STYLE_CHATML,
     {.arch = "gemma3", .head_dim = 256, .rms_eps = 1e-6f, .qk_norm = true, .post_norms = true,
      .window = 512, .swa_pattern = 6}},
    {"phi-3-mini", {32064, 3072, 32, 32, 32, 8192, 131072}, 10000.0, false,
     "default", STYLE_PHI3, {.arch = "phi3", .fused = true, .untied = true, .orig_ctx = 4096}},
};
#define N_PRESETS (sizeof PRESETS / sizeof PRESETS[0])

typedef struct config {
  const char *out;
  const preset *preset; /* NULL: a custom shape */
  const wtype *type;    /* of the 2-D weights; norms are always f32 */
  shape s;
  double rope_theta;
  bool llama3_rope, untied;
  uint64_t seed;
  const char *tok_pre;
  tok_style style;
  arch_extras x;
} config;

/* The integer options, each with its field in `shape` and its range. */
typedef struct int_opt {
  const char *flag;
  size_t off;
  uint64_t min, max;
} int_opt;

static const int_opt INT_OPTS[] = {
    {"--vocab", offsetof(shape, vocab), 1, 1u << 20},
    {"--embd", offsetof(shape, embd), 1, 65536},
    {"--layers", offsetof(shape, layers), 1, 1024},
    {"--heads", offsetof(shape, heads), 1, 1024},
    {"--kv-heads", offsetof(shape, kv_heads), 1, 1024},
    {"--ff", offsetof(shape, ff), 1, 1u << 20},
    {"--ctx", offsetof(shape, ctx), 1, 1u << 24},
};
#define N_INT_OPTS (sizeof INT_OPTS / sizeof INT_OPTS[0])

static uint64_t *shape_field(shape *s, size_t off) {
  return (uint64_t *)((char *)s + off);
}

static uint64_t shape_get(const shape *s, size_t off) {
  return *(const uint64_t *)((const char *)s + off);
}

static size_t int_opt_index(const char *flag) {
  for (size_t i = 0; i < N_INT_OPTS; i++)
    if (strcmp(INT_OPTS[i].flag, flag) == 0) return i;
  return N_INT_OPTS; /* not reached for the flags used below */
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: synth_gguf --out FILE [--preset smollm2-135m|llama-3.2-1b|mistral-7b|\n"
          "                               qwen2.5-0.5b|qwen3-0.6b|gemma-3-270m|phi-3-mini]\n"
          "         [--type f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q2_k|q3_k|q4_k|q5_k|q6_k|\n"
          "                 iq4_nl|iq4_xs|q4_k_m] [--vocab N] [--embd N]\n"
          "         [--layers N] [--heads N] [--kv-heads N] [--ff N] [--ctx N]\n"
          "         [--rope-theta F] [--llama3-rope] [--untied] [--seed N]\n"
          "Writes a GGUF v3 model with random weights (see tools/README.md).\n"
          "Without --preset, --vocab --embd --layers --heads --ff are required.\n");
}

/* Prints "synth_gguf: error: ..." and returns false, so callers can write
 * `return fail(...)`. */
static bool fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("synth_gguf: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return false;
}

/* Parses a whole decimal integer in [min, max]; no sign, no junk. */
static bool parse_u64(const char *flag, const char *s, uint64_t min,
                      uint64_t max, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = (s[0] >= '0' && s[0] <= '9') ? strtoull(s, &end, 10) : 0;
  if (end == NULL || *end != '\0' || errno != 0 || v < min || v > max)
    return fail("%s: expected an integer in [%" PRIu64 ", %" PRIu64 "], got '%s'",
                flag, min, max, s);
  *out = v;
  return true;
}

static bool parse_theta(const char *s, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v <= 1.0 ||
      v > 1e12)
    return fail("--rope-theta: expected a number in (1, 1e12], got '%s'", s);
  *out = v;
  return true;
}

static const preset *find_preset(const char *name) {
  for (size_t i = 0; i < N_PRESETS; i++)
    if (strcmp(PRESETS[i].name, name) == 0) return &PRESETS[i];
  return NULL;
}

static const wtype *find_wtype(const char *name) {
  for (size_t i = 0; i < N_WTYPES; i++)
    if (strcmp(WTYPES[i].name, name) == 0) return &WTYPES[i];
  return NULL;
}

/* What the command line said, before the preset fills the gaps. */
typedef struct cli_args {
  const char *out, *preset, *type;
  shape s;
  bool given[N_INT_OPTS];
  double theta;
  bool has_theta, llama3_rope, untied;
  uint64_t seed;
} cli_args;

/* Handles one option that takes a value; *used is set when it matched. */
static bool parse_valued(cli_args *a, const char *flag, const char *val,
                         bool *used) {
  *used = true;
  if (strcmp(flag, "--out") == 0) { a->out = val; return true; }
  if (strcmp(flag, "--preset") == 0) { a->preset = val; return true; }
  if (strcmp(flag, "--type") == 0) { a->type = val; return true; }
  if (strcmp(flag, "--seed") == 0)
    return parse_u64(flag, val, 0, UINT64_MAX, &a->seed);
  if (strcmp(flag, "--rope-theta") == 0) {
    a->has_theta = true;
    return parse_theta(val, &a->theta);
  }
  for (size_t i = 0; i < N_INT_OPTS; i++) {
    if (strcmp(flag, INT_OPTS[i].flag) != 0) continue;
    a->given[i] = true;
    return parse_u64(flag, val, INT_OPTS[i].min, INT_OPTS[i].max,
                     shape_field(&a->s, INT_OPTS[i].off));
  }
  *used = false;
  return true;
}

/* Returns 0 on success, 1 when --help was asked for, 2 on a usage error. */
static int parse_args(int argc, char **argv, cli_args *a) {
  memset(a, 0, sizeof *a);
  a->seed = 1;
  for (int i = 1; i < argc; i++) {
    const char *flag = argv[i];
    bool used = false;
    if (strcmp(flag, "-h") == 0 || strcmp(flag, "--help") == 0) return 1;
    if (strcmp(flag, "--llama3-rope") == 0) { a->llama3_rope = true; continue; }
    if (strcmp(flag, "--untied") == 0) { a->untied = true; continue; }
    if (i + 1 < argc && !parse_valued(a, flag, argv[i + 1], &used)) return 2;
    if (used) { i++; continue; }
    bool known = strcmp(flag, "--out") == 0 || strcmp(flag, "--preset") == 0 ||
                 strcmp(flag, "--type") == 0 || strcmp(flag, "--seed") == 0 ||
                 strcmp(flag, "--rope-theta") == 0;
    for (size_t k = 0; k < N_INT_OPTS; k++)
      known = known || strcmp(flag, INT_OPTS[k].flag) == 0;
    if (known) fail("%s needs a value", flag);
    else fail("unknown option '%s' (try --help)", flag);
    return 2;
  }
  return 0;
}

/* Starts from the preset (or the custom defaults) and applies the flags. */
static bool resolve_config(const cli_args *a, config *c) {
  memset(c, 0, sizeof *c);
  if (a->out == NULL || a->out[0] == '\0') return fail("--out FILE is required");
  c->out = a->out;
  c->seed = a->seed;
  c->type = find_wtype(a->type ? a->type : "q8_0");
  if (c->type == NULL)
    return fail("--type: unknown type '%s' (f32, f16, bf16, q8_0, q4_0, q4_1, "
                "q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, q4_k_m)",
                a->type);
  c->rope_theta = 10000.0;
  c->tok_pre = "default";
  c->style = STYLE_CHATML;
  c->s.ctx = 2048;
  if (a->preset != NULL) {
    c->preset = find_preset(a->preset);
    if (c->preset == NULL)
      return fail("--preset: unknown preset '%s' (smollm2-135m, llama-3.2-1b, "
                  "mistral-7b, qwen2.5-0.5b, qwen3-0.6b, gemma-3-270m, phi-3-mini)",
                  a->preset);
    c->s = c->preset->s;
    c->rope_theta = c->preset->rope_theta;
    c->llama3_rope = c->preset->llama3_rope;
    c->tok_pre = c->preset->tok_pre;
    c->style = c->preset->style;
    c->x = c->preset->x;
  }
  for (size_t i = 0; i < N_INT_OPTS; i++)
    if (a->given[i])
      *shape_field(&c->s, INT_OPTS[i].off) = shape_get(&a->s, INT_OPTS[i].off);
  if (a->has_theta) c->rope_theta = a->theta;
  c->llama3_rope = c->llama3_rope || a->llama3_rope;
  c->untied = a->untied || c->x.untied;
  /* A custom shape without --kv-heads gets plain multi-head attention. */
  if (c->preset == NULL && !a->given[int_opt_index("--kv-heads")])
    c->s.kv_heads = c->s.heads;
  return true;
}

static uint32_t n_special_tokens(tok_style style) {
  return style == STYLE_LLAMA3 ? 5 : style == STYLE_PHI3 ? 7 : 3;
}

/* The size of one attention head: the preset's, or the width split evenly. */
static uint64_t head_dim(const config *c) {
  return c->x.head_dim ? c->x.head_dim : c->s.embd / c->s.heads;
}

/* The row lengths of the 2-D weights (embd, ff, heads * head_dim) must hold
 * whole blocks: every one for a plain type; for q4_k_m whole 32-element
 * blocks, since rows that are no multiple of 256 fall back to Q5_0/Q8_0. */
static bool rows_fit(const config *c) {
  uint64_t block = c->type->mix ? QK : c->type->block;
  uint64_t q_dim = c->s.heads * head_dim(c);
  if (block == 1) return true;
  if (c->s.embd % block || c->s.ff % block)
    return fail("--type %s needs --embd and --ff to be multiples of %" PRIu64 " "
                "(got %" PRIu64 " and %" PRIu64 ")", c->type->name, block, c->s.embd, c->s.ff);
  if (q_dim % block)
    return fail("--type %s needs --heads times the head dim (%" PRIu64 ") to be a multiple of %" PRIu64,
                c->type->name, q_dim, block);
  return true;
}

/* Checks the shape for what llama.cpp and the block formats need. */
static bool validate_config(const config *c) {
  const shape *s = &c->s;
  for (size_t i = 0; i < N_INT_OPTS; i++)
    if (shape_get(s, INT_OPTS[i].off) == 0)
      return fail("%s is required without --preset", INT_OPTS[i].flag);
  if (c->x.head_dim == 0 && s->embd % s->heads != 0)
    return fail("--embd %" PRIu64 " is not a multiple of --heads %" PRIu64,
                s->embd, s->heads);
  if (s->heads % s->kv_heads != 0)
    return fail("--heads %" PRIu64 " is not a multiple of --kv-heads %" PRIu64,
                s->heads, s->kv_heads);
  if (head_dim(c) % 2 != 0)
    return fail("head dim %" PRIu64 " (--embd / --heads) must be even for RoPE",
                head_dim(c));
  uint64_t min_vocab = 256 + n_special_tokens(c->style);
  if (s->vocab < min_vocab)
    return fail("--vocab %" PRIu64 " is too small: the byte tokens and special "
                "tokens alone need %" PRIu64, s->vocab, min_vocab);
  return rows_fit(c);
}

/* ------------------------------------------------------------------------
 * Random numbers and float encodings
 * ------------------------------------------------------------------------ */

/* xorshift64*: fast, and good enough for weights nobody will train. */
typedef struct rng { uint64_t x; } rng;

static uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* An independent stream per (seed, purpose), so each tensor's data depends
 * only on the seed and its index, never on the other tensors. */
static rng rng_new(uint64_t seed, uint64_t stream) {
  rng r = {splitmix64(seed ^ splitmix64(stream + 1))};
  if (r.x == 0) r.x = 0x2545F4914F6CDD1Dull; /* xorshift must not start at 0 */
  return r;
}

static inline uint64_t rng_next(rng *r) {
  r->x ^= r->x >> 12;
  r->x ^= r->x << 25;
  r->x ^= r->x >> 27;
  return r->x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, 1). */
static inline float rng_unit(rng *r) {
  return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* About N(0, std): the sum of four 16-bit uniforms (Irwin-Hall), which has
 * std 65536 / sqrt(3) ~ 37837.2 and is within 3.5 std, so never extreme. */
static inline float rng_gauss(rng *r, float std) {
  uint64_t v = rng_next(r);
  int32_t sum = (int32_t)(v & 0xFFFF) + (int32_t)((v >> 16) & 0xFFFF) +
                (int32_t)((v >> 32) & 0xFFFF) + (int32_t)(v >> 48);
  return (float)(sum - 131070) * (std / 37837.2f);
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* IEEE binary16, round to nearest even (subnormals included). */
static uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t ax = x & 0x7FFFFFFF;
  if (ax > 0x7F800000) return sign | 0x7E00;  /* NaN */
  if (ax >= 0x477FF000) return sign | 0x7C00; /* >= 65520 rounds to inf */
  if (ax < 0x38800000) {                      /* below 2^-14: subnormal */
    float a;
    memcpy(&a, &ax, sizeof a);
    return sign | (uint16_t)lrintf(a * 16777216.0f); /* units of 2^-24 */
  }
  uint32_t h = ((ax >> 23) - 112) << 10 | (ax & 0x7FFFFF) >> 13;
  uint32_t rest = ax & 0x1FFF;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* may carry: fine */
  return sign | (uint16_t)h;
}

/* bfloat16: the top half of the f32, rounded to nearest even (no NaNs here). */
static uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  return (uint16_t)((x + 0x7FFF + ((x >> 16) & 1)) >> 16);
}

static inline uint8_t *put_le16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  return p + 2;
}

static inline uint8_t *put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
  return p + 4;
}

static inline uint8_t *put_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
  return p + 8;
}

/* ------------------------------------------------------------------------
 * Growable byte buffer (the header and metadata are built in memory)
 * ------------------------------------------------------------------------ */

typedef struct buf {
  uint8_t *p;
  size_t len, cap;
  bool oom; /* sticky: checked once at the end instead of after each put */
} buf;

static uint8_t *buf_grow(buf *b, size_t n) {
  if (b->oom) return NULL;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (p == NULL) { b->oom = true; return NULL; }
    b->p = p;
    b->cap = cap;
  }
  uint8_t *at = b->p + b->len;
  b->len += n;
  return at;
}

static void buf_bytes(buf *b, const void *src, size_t n) {
  uint8_t *p = buf_grow(b, n);
  if (p != NULL && n > 0) memcpy(p, src, n);
}

static void buf_u8(buf *b, uint8_t v) { buf_bytes(b, &v, 1); }
static void buf_u32(buf *b, uint32_t v) {
  uint8_t *p = buf_grow(b, 4);
  if (p != NULL) put_le32(p, v);
}
static void buf_u64(buf *b, uint64_t v) {
  uint8_t *p = buf_grow(b, 8);
  if (p != NULL) put_le64(p, v);
}
static void buf_str(buf *b, const char *s, size_t n) {
  buf_u64(b, n);
  buf_bytes(b, s, n);
}

/* Key/value writers; each counts itself so the header count is exact. */
typedef struct kvw {
  buf *b;
  uint64_t n;
} kvw;

static void kv_key(kvw *w, const char *key, uint32_t type) {
  buf_str(w->b, key, strlen(key));
  buf_u32(w->b, type);
  w->n++;
}
static void kv_str(kvw *w, const char *key, const char *val) {
  kv_key(w, key, GV_STRING);
  buf_str(w->b, val, strlen(val));
}
static void kv_u32(kvw *w, const char *key, uint64_t val) {
  kv_key(w, key, GV_UINT32);
  buf_u32(w->b, (uint32_t)val); /* every value passed fits (checked ranges) */
}
static void kv_f32(kvw *w, const char *key, float val) {
  kv_key(w, key, GV_FLOAT32);
  buf_u32(w->b, f32_bits(val));
}
static void kv_bool(kvw *w, const char *key, bool val) {
  kv_key(w, key, GV_BOOL);
  buf_u8(w->b, val ? 1 : 0);
}
static void kv_array(kvw *w, const char *key, uint32_t elem_type, uint64_t n) {
  kv_key(w, key, GV_ARRAY);
  buf_u32(w->b, elem_type);
  buf_u64(w->b, n);
}

/* ------------------------------------------------------------------------
 * Vocabulary: a byte-level BPE whose merges and tokens agree
 * ------------------------------------------------------------------------
 * Token strings are stored the way GPT-2 style GGUFs store them: each raw
 * byte written as one code point of GPT-2's byte-to-unicode table (space is
 * U+0120 "Ġ", newline U+010A "Ċ"). Ids 0..255 are the single bytes; every
 * later normal token is the concatenation of two earlier tokens, recorded as
 * the merge "left right" in the same order, so merge rank i creates token
 * 256 + i. The special tokens come last. */

typedef struct vocab {
  char *text;          /* the token strings back to back */
  size_t text_len, text_cap;
  uint32_t *off, *len; /* [n] where each token's string is in text */
  uint8_t *nbytes;     /* [n] raw byte length of normal tokens */
  int32_t *type;       /* [n] 1 normal, 3 control */
  uint32_t (*merge)[2]; /* [n_merges] left and right ids */
  uint32_t n, cap, n_merges;
  uint32_t *slot;      /* hash set of token strings: id + 1, 0 empty */
  uint32_t slot_mask;
  uint32_t bos, eos;
} vocab;

static uint32_t str_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}

/* The hash slot holding string s, or the empty slot where it would go. */
static uint32_t *vocab_slot(const vocab *v, const char *s, size_t n) {
  uint32_t i = str_hash(s, n) & v->slot_mask;
  for (;; i = (i + 1) & v->slot_mask) {
    uint32_t id = v->slot[i];
    if (id == 0) return &v->slot[i];
    id--;
    if (v->len[id] == n && memcmp(v->text + v->off[id], s, n) == 0)
      return &v->slot[i];
  }
}

static bool vocab_init(vocab *v, uint32_t cap) {
  memset(v, 0, sizeof *v);
  uint32_t slots = 1;
  while (slots < 2 * cap) slots *= 2; /* load factor <= 1/2 */
  v->cap = cap;
  v->text_cap = (size_t)cap * 12 + 4096;
  v->text = malloc(v->text_cap);
  v->off = malloc(cap * sizeof *v->off);
  v->len = malloc(cap * sizeof *v->len);
  v->nbytes = malloc(cap);
  v->type = malloc(cap * sizeof *v->type);
  v->merge = malloc(cap * sizeof *v->merge);
  v->slot = calloc(slots, sizeof *v->slot);
  v->slot_mask = slots - 1;
  if (!v->text || !v->off || !v->len || !v->nbytes || !v->type || !v->merge ||
      !v->slot)
    return fail("out of memory for a %u-token vocabulary", cap);
  return true;
}

static void vocab_deinit(vocab *v) {
  free(v->text); free(v->off); free(v->len); free(v->nbytes);
  free(v->type); free(v->merge); free(v->slot);
}

/* Appends token s (string n bytes long) if it is new; returns its id, or
 * UINT32_MAX when the string is already a token or memory ran out. */
static uint32_t vocab_add(vocab *v, const char *s, size_t n, uint8_t nbytes,
                          int32_t type) {
  uint32_t *slot = vocab_slot(v, s, n);
  if (*slot != 0 || v->n == v->cap) return UINT32_MAX;
  if (v->text_len + n > v->text_cap) {
    size_t cap = v->text_cap * 2 + n;
    char *t = realloc(v->text, cap);
    if (t == NULL) return UINT32_MAX;
    v->text = t;
    v->text_cap = cap;
  }
  memcpy(v->text + v->text_len, s, n);
  uint32_t id = v->n++;
  v->off[id] = (uint32_t)v->text_len;
  v->len[id] = (uint32_t)n;
  v->nbytes[id] = nbytes;
  v->type[id] = type;
  v->text_len += n;
  *slot = id + 1;
  return id;
}

/* GPT-2's byte-to-unicode table: printable Latin-1 bytes map to themselves,
 * the other 68 bytes to U+0100.. in byte order. Writes the UTF-8 code. */
static size_t gpt2_byte_utf8(int byte, char out[2]) {
  bool printable = (byte >= 0x21 && byte <= 0x7E) ||
                   (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
  uint32_t cp = (uint32_t)byte;
  if (!printable) {
    cp = 256;
    for (int b = 0; b < byte; b++)
      cp += !((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE);
  }
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  out[0] = (char)(0xC0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3F));
  return 2;
}

/* Text-like bytes, most frequent in English first. Merges mostly combine
 * these, and pick_biased favours the start of the pool, so the vocabulary
 * gets word pieces ("Ġt", "he", "to") and English text gets some
 * multi-byte tokens (about 1.3 bytes a token; a trained vocabulary gets ~4). */
static const char TEXT_BYTES[] =
    " etaoinshrdlcumwfgypbvkjxqz\n.,'ETAOINSHRDLCUMWFGYPBVKJXQZ0123456789";
/* True when the token starts with a space ("Ġ"): only allowed on the left of
 * a merge, because pre-tokenizers keep spaces at the start of words. */
static bool starts_with_space(const vocab *v, uint32_t id) {
  const char *s = v->text + v->off[id];
  return v->len[id] >= 2 && (uint8_t)s[0] == 0xC4 && (uint8_t)s[1] == 0xA0;
}

/* Picks an id in [0, n), favouring early (short) ones: density ~ 1/sqrt. */
static uint32_t pick_biased(rng *r, uint32_t n) {
  float u = rng_unit(r);
  uint32_t i = (uint32_t)((float)n * u * u);
  return i < n ? i : n - 1;
}

/* True when s contains "<|": every special token starts so, and llama.cpp
 * warns about normal tokens that look like control tokens, so merged tokens
 * never contain it. That also keeps them distinct from the special tokens. */
static bool has_control_marker(const char *s, size_t n) {
  for (size_t i = 0; i + 1 < n; i++)
    if (s[i] == '<' && s[i + 1] == '|') return true;
  return false;
}

/* True for the Phi-3 special tokens without "<|" ("<unk>", "<s>", "</s>"),
 * which a merge of "<", "s" and ">" could otherwise make first. */
static bool is_plain_special(const char *s, size_t n) {
  static const char *const plain[] = {"<unk>", "<s>", "</s>"};
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
    if (n == strlen(plain[i]) && memcmp(s, plain[i], n) == 0) return true;
  return false;
}

/* Tries one random merge; returns true when it produced a new token. */
static bool try_merge(vocab *v, rng *r, const uint32_t *pool, uint32_t n_pool,
                      bool anywhere) {
  uint32_t a, b;
  if (anywhere) {
    a = pick_biased(r, v->n);
    b = pick_biased(r, v->n);
  } else {
    a = pool[pick_biased(r, n_pool)];
    b = pool[pick_biased(r, n_pool)];
  }
  if (starts_with_space(v, b) || v->nbytes[a] + v->nbytes[b] > MAX_TOKEN_BYTES)
    return false;
  char s[4 * MAX_TOKEN_BYTES];
  size_t la = v->len[a], lb = v->len[b];
  memcpy(s, v->text + v->off[a], la);
  memcpy(s + la, v->text + v->off[b], lb);
  if (has_control_marker(s, la + lb) || is_plain_special(s, la + lb)) return false;
  uint32_t id = vocab_add(v, s, la + lb, (uint8_t)(v->nbytes[a] + v->nbytes[b]), 1);
  if (id == UINT32_MAX) return false;
  v->merge[v->n_merges][0] = a;
  v->merge[v->n_merges][1] = b;
  v->n_merges++;
  return true;
}

/* Adds n_merges merged tokens. Mostly pairs of text-like tokens; one in
 * eight anywhere, so some multi-byte UTF-8 characters become tokens too. */
static bool add_merges(vocab *v, rng *r, uint32_t n_merges) {
  uint32_t *pool = malloc((size_t)v->cap * sizeof *pool);
  if (pool == NULL) return fail("out of memory building merges");
  uint32_t n_pool = 0;
  for (const char *c = TEXT_BYTES; *c != '\0'; c++) pool[n_pool++] = (uint8_t)*c;
  for (uint32_t m = 0; m < n_merges; m++) {
    uint32_t tries = 0;
    bool anywhere = (rng_next(r) & 7) == 0;
    while (!try_merge(v, r, pool, n_pool, anywhere || tries > 1000)) {
      if (++tries > 1000000) {
        free(pool);
        return fail("could not find %u distinct merges (made %u)", n_merges, m);
      }
    }
    if (!anywhere && tries <= 1000) pool[n_pool++] = v->n - 1;
  }
  free(pool);
  return true;
}

/* The special tokens, appended after the merges (ids vocab-N..vocab-1). */
static const char *const SPECIAL_CHATML[] = {"<|endoftext|>", "<|im_start|>",
                                             "<|im_end|>"};
/* Phi-3's (llama.cpp checks that a model named "phi-3" has the first
 * three; bos "<s>", eos "<|endoftext|>"). */
static const char *const SPECIAL_PHI3[] = {"<unk>", "<s>", "</s>", "<|endoftext|>",
                                           "<|user|>", "<|assistant|>", "<|end|>"};
static const char *const SPECIAL_LLAMA3[] = {
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eot_id|>"};

static bool build_vocab(vocab *v, const config *c) {
  uint32_t n_vocab = (uint32_t)c->s.vocab;
  uint32_t n_special = n_special_tokens(c->style);
  const char *const *special =
      c->style == STYLE_LLAMA3 ? SPECIAL_LLAMA3 : c->style == STYLE_PHI3 ? SPECIAL_PHI3 : SPECIAL_CHATML;
  if (!vocab_init(v, n_vocab)) return false;
  for (int byte = 0; byte < 256; byte++) {
    char s[2];
    size_t n = gpt2_byte_utf8(byte, s);
    vocab_add(v, s, n, 1, 1); /* 256 distinct strings: cannot fail */
  }
  rng r = rng_new(c->seed, UINT64_MAX);
  if (!add_merges(v, &r, n_vocab - 256 - n_special)) return false;
  for (uint32_t i = 0; i < n_special; i++)
    if (vocab_add(v, special[i], strlen(special[i]), 0, 3) == UINT32_MAX)
      return fail("out of memory adding special tokens");
  uint32_t first = n_vocab - n_special;
  v->bos = c->style == STYLE_LLAMA3 ? first : first + 1; /* begin / im_start */
  v->eos = c->style == STYLE_LLAMA3 ? first + 1 : first + 2; /* end / im_end */
  if (c->style == STYLE_PHI3) v->bos = first + 1, v->eos = first + 3; /* <s> / <|endoftext|> */
  return true;
}

/* ------------------------------------------------------------------------
 * Metadata
 * ------------------------------------------------------------------------ */

/* ChatML (SmolLM2 and custom shapes) and the Llama 3 header format. */
static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' "
    "+ message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
static const char LLAMA3_TEMPLATE[] =
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + "
    "'<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/* "<arch>.<key>" in a static buffer (one key at a time). */
static const char *arch_key(const config *c, const char *key) {
  static char full[96];
  snprintf(full, sizeof full, "%s.%s", c->x.arch ? c->x.arch : "llama", key);
  return full;
}

/* Phi-3's LongRoPE attention factor, as its converter computes it:
 * sqrt(1 + ln(ctx / original ctx) / ln(original ctx)). */
static float longrope_attn_factor(const config *c) {
  double scale = (double)c->s.ctx / (double)c->x.orig_ctx;
  return scale <= 1.0 ? 1.0f : (float)sqrt(1.0 + log(scale) / log((double)c->x.orig_ctx));
}

/* What the architectures add to the Llama keys (nothing for plain Llama). */
static void write_arch_kvs(kvw *w, const config *c) {
  const arch_extras *x = &c->x;
  if (x->head_dim) {
    kv_u32(w, arch_key(c, "attention.key_length"), x->head_dim);
    kv_u32(w, arch_key(c, "attention.value_length"), x->head_dim);
  }
  if (x->window) kv_u32(w, arch_key(c, "attention.sliding_window"), x->window);
  if (x->swa_pattern) /* a shrunk model keeps a global layer: its last */
    kv_u32(w, arch_key(c, "attention.sliding_window_pattern"),
           x->swa_pattern < c->s.layers ? x->swa_pattern : c->s.layers);
  if (x->orig_ctx) {
    kv_u32(w, arch_key(c, "rope.scaling.original_context_length"), x->orig_ctx);
    kv_f32(w, arch_key(c, "rope.scaling.attn_factor"), longrope_attn_factor(c));
  }
}

static const char PHI3_TEMPLATE[] =
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' + '\\n' + "
    "message['content'] + '<|end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

static void write_model_kvs(kvw *w, const config *c) {
  const shape *s = &c->s;
  char name[128];
  snprintf(name, sizeof name, "synthetic %s %s",
           c->preset ? c->preset->name : "llama", c->type->name);
  kv_str(w, "general.architecture", c->x.arch ? c->x.arch : "llama");
  kv_str(w, "general.name", name);
  kv_u32(w, "general.alignment", ALIGNMENT);
  kv_u32(w, "general.file_type", c->type->file_type);
  kv_u32(w, arch_key(c, "context_length"), s->ctx);
  kv_u32(w, arch_key(c, "embedding_length"), s->embd);
  kv_u32(w, arch_key(c, "block_count"), s->layers);
  kv_u32(w, arch_key(c, "feed_forward_length"), s->ff);
  kv_u32(w, arch_key(c, "attention.head_count"), s->heads);
  kv_u32(w, arch_key(c, "attention.head_count_kv"), s->kv_heads);
  kv_f32(w, arch_key(c, "rope.freq_base"), (float)c->rope_theta);
  kv_f32(w, arch_key(c, "attention.layer_norm_rms_epsilon"), c->x.rms_eps ? c->x.rms_eps : RMS_EPS);
  kv_u32(w, arch_key(c, "rope.dimension_count"), head_dim(c));
  kv_u32(w, arch_key(c, "vocab_size"), s->vocab);
  write_arch_kvs(w, c);
}

static void write_tokenizer_kvs(kvw *w, const config *c, const vocab *v) {
  kv_str(w, "tokenizer.ggml.model", "gpt2");
  kv_str(w, "tokenizer.ggml.pre", c->tok_pre);
  kv_array(w, "tokenizer.ggml.tokens", GV_STRING, v->n);
  for (uint32_t i = 0; i < v->n; i++)
    buf_str(w->b, v->text + v->off[i], v->len[i]);
  kv_array(w, "tokenizer.ggml.token_type", GV_INT32, v->n);
  for (uint32_t i = 0; i < v->n; i++) buf_u32(w->b, (uint32_t)v->type[i]);
  kv_array(w, "tokenizer.ggml.merges", GV_STRING, v->n_merges);
  for (uint32_t m = 0; m < v->n_merges; m++) {
    uint32_t a = v->merge[m][0], b = v->merge[m][1];
    buf_u64(w->b, (uint64_t)v->len[a] + 1 + v->len[b]);
    buf_bytes(w->b, v->text + v->off[a], v->len[a]);
    buf_u8(w->b, ' ');
    buf_bytes(w->b, v->text + v->off[b], v->len[b]);
  }
  kv_u32(w, "tokenizer.ggml.bos_token_id", v->bos);
  kv_u32(w, "tokenizer.ggml.eos_token_id", v->eos);
  kv_bool(w, "tokenizer.ggml.add_bos_token", c->style != STYLE_CHATML);
  kv_str(w, "tokenizer.chat_template",
         c->style == STYLE_LLAMA3 ? LLAMA3_TEMPLATE : c->style == STYLE_PHI3 ? PHI3_TEMPLATE : CHATML_TEMPLATE);
}

/* ------------------------------------------------------------------------
 * Tensors
 * ------------------------------------------------------------------------ */

typedef enum fill_kind { FILL_WEIGHT, FILL_NORM, FILL_ROPE_FREQS, FILL_ROPE_SHORT, FILL_ROPE_LONG } fill_kind;

typedef struct tensor {
  char name[48];
  uint32_t n_dims;
  uint64_t ne[2];    /* extents, innermost first */
  const wtype *type;
  fill_kind fill;
  uint64_t offset;   /* from the start of the data section */
  uint64_t n_bytes;
} tensor;

typedef struct tensor_list {
  tensor *t;
  uint32_t n;
  uint64_t data_bytes; /* the data section, padding included */
} tensor_list;

static uint64_t align_up(uint64_t x) {
  return (x + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
}

/* Appends a tensor; ne1 == 0 makes it 1-D. */
static void add_tensor(tensor_list *l, const char *name, uint64_t ne0,
                       uint64_t ne1, const wtype *type, fill_kind f) {
  tensor *t = &l->t[l->n++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->n_dims = ne1 ? 2 : 1;
  t->ne[0] = ne0;
  t->ne[1] = ne1 ? ne1 : 1;
  t->type = type;
  t->fill = f;
  t->n_bytes = ne0 / type->block * type->block_bytes * t->ne[1];
  t->offset = l->data_bytes;
  l->data_bytes = align_up(l->data_bytes + t->n_bytes);
}

/* llama-quantize's rule for the layers whose attn_v and ffn_down get more
 * bits in a _M mixture: the first and last eighth, every third between. */
static bool use_more_bits(uint64_t i, uint64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* The storage type of a 2-D weight: --type, or for q4_k_m what
 * llama-quantize picks: Q6_K for the output (the embedding table when
 * tied) and for attn_v / ffn_down in use_more_bits layers, Q5_K for a
 * fused attn_qkv, Q4_K otherwise; a row that is no multiple of 256 falls
 * back to Q5_0 (Q8_0 for Q6_K, Q5_1 for Q5_K). layer < 0: not in a block. */
static const wtype *tensor_type(const config *c, const char *role, int64_t layer, uint64_t ne0) {
  if (!c->type->mix) return c->type;
  const char *name = "q4_k";
  bool output = strcmp(role, "output") == 0 || (strcmp(role, "token_embd") == 0 && !c->untied);
  bool more = layer >= 0 && use_more_bits((uint64_t)layer, c->s.layers);
  if (output || (more && (strcmp(role, "attn_v") == 0 || strcmp(role, "ffn_down") == 0))) name = "q6_k";
  else if (strcmp(role, "attn_qkv") == 0) name = "q5_k";
  if (ne0 % QK_K) name = strcmp(name, "q6_k") == 0 ? "q8_0" : strcmp(name, "q5_k") == 0 ? "q5_1" : "q5_0";
  return find_wtype(name);
}

/* One block's tensors, those of the architecture included; ne1 == 0 marks
 * the 1-D f32 ones (norms, biases). Plain Llama gets exactly its nine. */
static void add_layer(tensor_list *l, const config *c, uint64_t i) {
  const shape *s = &c->s;
  const arch_extras *x = &c->x;
  uint64_t hd = head_dim(c), q_dim = s->heads * hd, kv_dim = s->kv_heads * hd;
  const struct { const char *role, *suffix; uint64_t ne0, ne1; bool want; fill_kind fill; } parts[] = {
      {"attn_norm", "weight", s->embd, 0, true, FILL_NORM},
      {"attn_q", "weight", s->embd, q_dim, !x->fused, FILL_WEIGHT},
      {"attn_k", "weight", s->embd, kv_dim, !x->fused, FILL_WEIGHT},
      {"attn_v", "weight", s->embd, kv_dim, !x->fused, FILL_WEIGHT},
      {"attn_qkv", "weight", s->embd, q_dim + 2 * kv_dim, x->fused, FILL_WEIGHT},
      {"attn_q", "bias", q_dim, 0, x->qkv_bias, FILL_WEIGHT},
      {"attn_k", "bias", kv_dim, 0, x->qkv_bias, FILL_WEIGHT},
      {"attn_v", "bias", kv_dim, 0, x->qkv_bias, FILL_WEIGHT},
      {"attn_q_norm", "weight", hd, 0, x->qk_norm, FILL_NORM},
      {"attn_k_norm", "weight", hd, 0, x->qk_norm, FILL_NORM},
      {"attn_output", "weight", q_dim, s->embd, true, FILL_WEIGHT},
      {"post_attention_norm", "weight", s->embd, 0, x->post_norms, FILL_NORM},
      {"ffn_norm", "weight", s->embd, 0, true, FILL_NORM},
      {"ffn_gate", "weight", s->embd, s->ff, !x->fused, FILL_WEIGHT},
      {"ffn_up", "weight", s->embd, x->fused ? 2 * s->ff : s->ff, true, FILL_WEIGHT},
      {"ffn_down", "weight", s->ff, s->embd, true, FILL_WEIGHT},
      {"post_ffw_norm", "weight", s->embd, 0, x->post_norms, FILL_NORM},
  };
  for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
    if (!parts[k].want) continue;
    char name[48];
    bool vec = parts[k].ne1 == 0;
    snprintf(name, sizeof name, "blk.%" PRIu64 ".%s.%s", i, parts[k].role, parts[k].suffix);
    add_tensor(l, name, parts[k].ne0, parts[k].ne1,
               vec ? WTYPE_F32 : tensor_type(c, parts[k].role, (int64_t)i, parts[k].ne0), parts[k].fill);
  }
}

static bool build_tensors(tensor_list *l, const config *c) {
  const shape *s = &c->s;
  size_t max = 6 + 17 * (size_t)s->layers;
  l->t = calloc(max, sizeof *l->t);
  l->n = 0;
  l->data_bytes = 0;
  if (l->t == NULL) return fail("out of memory for the tensor list");
  add_tensor(l, "token_embd.weight", s->embd, s->vocab, tensor_type(c, "token_embd", -1, s->embd), FILL_WEIGHT);
  if (c->llama3_rope)
    add_tensor(l, "rope_freqs.weight", head_dim(c) / 2, 0, WTYPE_F32, FILL_ROPE_FREQS);
  if (c->x.orig_ctx) {
    add_tensor(l, "rope_factors_long.weight", head_dim(c) / 2, 0, WTYPE_F32, FILL_ROPE_LONG);
    add_tensor(l, "rope_factors_short.weight", head_dim(c) / 2, 0, WTYPE_F32, FILL_ROPE_SHORT);
  }
  for (uint64_t i = 0; i < s->layers; i++) add_layer(l, c, i);
  add_tensor(l, "output_norm.weight", s->embd, 0, WTYPE_F32, FILL_NORM);
  if (c->untied)
    add_tensor(l, "output.weight", s->embd, s->vocab, tensor_type(c, "output", -1, s->embd), FILL_WEIGHT);
  return true;
}

static void write_tensor_infos(buf *b, const tensor_list *l) {
  for (uint32_t i = 0; i < l->n; i++) {
    const tensor *t = &l->t[i];
    buf_str(b, t->name, strlen(t->name));
    buf_u32(b, t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++) buf_u64(b, t->ne[d]);
    buf_u32(b, t->type->ggml_type);
    buf_u64(b, t->offset);
  }
}

/* ------------------------------------------------------------------------
 * Tensor data
 * ------------------------------------------------------------------------ */

/* Block scales: chosen so the dequantised weights have std ~ WEIGHT_STD
 * (codes uniform: int8 std ~ 73.9, 4-bit std ~ 4.61), jittered per block by
 * 0.5x..1.5x like real scales. */
static inline float block_scale(rng *r, float code_std) {
  return WEIGHT_STD / code_std * (0.5f + rng_unit(r));
}

static void fill_q8_0(rng *r, uint8_t *p, size_t n_blocks) {
  for (size_t i = 0; i < n_blocks; i++) {
    p = put_le16(p, f32_to_f16(block_scale(r, 73.9f)));
    for (int k = 0; k < QK; k += 8) p = put_le64(p, rng_next(r));
  }
}

/* Q4_0: value = (code - 8) * d, codes 0..15 in nibbles. The codes average
 * -0.5, so d gets a random sign (as real Q4_0 scales have) to keep the
 * weights' mean at zero. */
static void fill_q4_0(rng *r, uint8_t *p, size_t n_blocks) {
  for (size_t i = 0; i < n_blocks; i++) {
    float d = block_scale(r, 4.61f);
    p = put_le16(p, f32_to_f16((rng_next(r) & 1) ? d : -d));
    p = put_le64(p, rng_next(r));
    p = put_le64(p, rng_next(r));
  }
}

/* Q4_1: value = code * d + m; m = -7.5 d centres the codes on zero. */
static void fill_q4_1(rng *r, uint8_t *p, size_t n_blocks) {
  for (size_t i = 0; i < n_blocks; i++) {
    float d = block_scale(r, 4.61f);
    p = put_le16(p, f32_to_f16(d));
    p = put_le16(p, f32_to_f16(-7.5f * d));
    p = put_le64(p, rng_next(r));
    p = put_le64(p, rng_next(r));
  }
}

/* The types filled as random bytes: every bit pattern of their codes and
 * sub-block scales is a valid block, so only the f16 super-block scales
 * need care. d (jittered, as block_scale) gets a random sign where the
 * type has no min; dmin = dmin_ratio * d centres the codes otherwise. */
static void fill_random_bytes(rng *r, const wtype *t, uint8_t *p, size_t n_blocks) {
  for (size_t i = 0; i < n_blocks; i++, p += t->block_bytes) {
    for (uint32_t k = 0; k < t->block_bytes; k += 8) {
      uint64_t v = rng_next(r);
      uint32_t m = t->block_bytes - k < 8 ? t->block_bytes - k : 8;
      memcpy(p + k, &v, m);
    }
    float d = block_scale(r, t->code_std);
    if (t->dmin_ratio == 0 && (rng_next(r) & 1)) d = -d;
    put_le16(p + t->d_at, f32_to_f16(d));
    if (t->dmin_ratio != 0) put_le16(p + t->dmin_at, f32_to_f16(t->dmin_ratio * d));
  }
}

/* Appends x to p in float type t (f32, f16 or bf16). */
static inline uint8_t *put_float(uint8_t *p, const wtype *t, float x) {
  if (t->ggml_type == 0) return put_le32(p, f32_bits(x));
  if (t->ggml_type == 1) return put_le16(p, f32_to_f16(x));
  return put_le16(p, f32_to_bf16(x));
}

/* Norm weights: n elements about N(1, NORM_JITTER), always f32. */
static void fill_norm(rng *r, uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p = put_le32(p, f32_bits(1.0f + rng_gauss(r, NORM_JITTER)));
}

/* Float weights, about N(0, WEIGHT_STD). Drawing and converting each element
 * costs ~10 ns, too slow for billions of them, so each tensor first encodes
 * FLOAT_TABLE draws and then picks its elements from them, four per 64-bit
 * random number. */
#define FLOAT_TABLE 65536
static void fill_float_table(rng *r, const wtype *t, uint8_t *table) {
  for (uint32_t i = 0; i < FLOAT_TABLE; i++)
    table = put_float(table, t, rng_gauss(r, WEIGHT_STD));
}

/* Copies n random table entries of `width` bytes; the fixed-size memcpy
 * calls compile to single loads and stores. */
static void pick_entries(rng *r, const uint8_t *table, uint8_t *p, size_t n,
                         size_t width) {
  for (size_t i = 0; i < n; i += 4) {
    uint64_t v = rng_next(r);
    size_t m = n - i < 4 ? n - i : 4;
    for (size_t k = 0; k < m; k++, p += width) {
      const uint8_t *e = table + ((v >> (16 * k)) & 0xFFFF) * width;
      if (width == 2) memcpy(p, e, 2);
      else memcpy(p, e, 4);
    }
  }
}

static void fill_float(rng *r, const wtype *t, const uint8_t *table,
                       uint8_t *p, size_t n) {
  if (t->block_bytes == 2) pick_entries(r, table, p, n, 2);
  else pick_entries(r, table, p, n, 4);
}

/* Fills n_blocks blocks of a random tensor; table is the tensor's float
 * table (float types only). */
static void fill_random(const tensor *t, rng *r, const uint8_t *table,
                        uint8_t *p, size_t n_blocks) {
  if (t->fill == FILL_NORM) { fill_norm(r, p, n_blocks); return; }
  switch (t->type->ggml_type) {
  case 8: fill_q8_0(r, p, n_blocks); break;
  case 2: fill_q4_0(r, p, n_blocks); break;
  case 3: fill_q4_1(r, p, n_blocks); break;
  case 0: case 1: case 30: fill_float(r, t->type, table, p, n_blocks); break;
  default: fill_random_bytes(r, t->type, p, n_blocks);
  }
}

/* Llama 3 rope scaling as llama.cpp's converter materialises it: one factor
 * per rotated pair, dividing that pair's frequency. High frequencies are
 * kept (1), low ones slowed by L3_FACTOR, the band between interpolated. */
static void fill_rope_freqs(const config *c, uint8_t *p, uint64_t n) {
  double low_wavelen = L3_ORIGINAL_CTX / L3_LOW_FREQ_FACTOR;
  double high_wavelen = L3_ORIGINAL_CTX / L3_HIGH_FREQ_FACTOR;
  for (uint64_t i = 0; i < n; i++) {
    float freq = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)(2 * n));
    double wavelen = 2.0 * M_PI / freq, factor;
    if (wavelen < high_wavelen) factor = 1.0;
    else if (wavelen > low_wavelen) factor = L3_FACTOR;
    else {
      double smooth = (L3_ORIGINAL_CTX / wavelen - L3_LOW_FREQ_FACTOR) /
                      (L3_HIGH_FREQ_FACTOR - L3_LOW_FREQ_FACTOR);
      factor = 1.0 / ((1.0 - smooth) / L3_FACTOR + smooth);
    }
    p = put_le32(p, f32_bits((float)factor));
  }
}

/* Phi-3 LongRoPE factors, one per rotated pair, rising from the high
 * frequencies to the low ones as real ones do: short ones near 1, long
 * ones up to ~40 (the context extension). */
static void fill_longrope(uint8_t *p, uint64_t n, bool long_factors) {
  for (uint64_t i = 0; i < n; i++) {
    double t = n > 1 ? (double)i / (double)(n - 1) : 0.0;
    p = put_le32(p, f32_bits((float)(long_factors ? 1.0 + 39.0 * t * t : 1.0 + 0.25 * t)));
  }
}

/* Streams one tensor's data (and its padding) through chunk; table is
 * scratch space for fill_float_table. */
static bool write_tensor_data(FILE *f, const tensor *t, uint32_t index,
                              const config *c, uint8_t *chunk, uint8_t *table) {
  static const uint8_t zeros[ALIGNMENT];
  uint64_t n_blocks = t->n_bytes / t->type->block_bytes;
  uint64_t per_chunk = CHUNK_BYTES / t->type->block_bytes;
  rng r = rng_new(c->seed, index);
  if (t->fill == FILL_ROPE_FREQS || t->fill == FILL_ROPE_SHORT || t->fill == FILL_ROPE_LONG) {
    if (t->fill == FILL_ROPE_FREQS) fill_rope_freqs(c, chunk, t->ne[0]); /* tiny: [head_dim / 2] */
    else fill_longrope(chunk, t->ne[0], t->fill == FILL_ROPE_LONG);
    n_blocks = 0;
    if (fwrite(chunk, 1, t->n_bytes, f) != t->n_bytes) return false;
  }
  if (t->fill == FILL_WEIGHT && t->type->block == 1)
    fill_float_table(&r, t->type, table);
  for (uint64_t done = 0; done < n_blocks; done += per_chunk) {
    size_t n = (size_t)(n_blocks - done < per_chunk ? n_blocks - done : per_chunk);
    fill_random(t, &r, table, chunk, n);
    if (fwrite(chunk, t->type->block_bytes, n, f) != n) return false;
  }
  size_t pad = (size_t)(align_up(t->n_bytes) - t->n_bytes);
  return fwrite(zeros, 1, pad, f) == pad;
}

/* ------------------------------------------------------------------------
 * The file
 * ------------------------------------------------------------------------ */

/* Header, metadata and tensor infos, padded to the data section. */
static bool build_header(buf *b, const config *c, const vocab *v,
                         const tensor_list *l) {
  kvw w = {b, 0};
  buf_bytes(b, "GGUF", 4);
  buf_u32(b, GGUF_VERSION);
  buf_u64(b, l->n);
  size_t kv_count_at = b->len;
  buf_u64(b, 0); /* patched below, once the pairs are counted */
  write_model_kvs(&w, c);
  write_tokenizer_kvs(&w, c, v);
  write_tensor_infos(b, l);
  size_t pad = (size_t)(align_up(b->len) - b->len);
  uint8_t *p = buf_grow(b, pad);
  if (p != NULL) memset(p, 0, pad);
  if (b->oom) return fail("out of memory building the GGUF header");
  put_le64(b->p + kv_count_at, w.n);
  return true;
}

/* Writes everything to an open temporary file. */
static bool write_body(FILE *f, const buf *header, const tensor_list *l,
                       const config *c) {
  uint8_t *chunk = malloc(CHUNK_BYTES);
  uint8_t *table = malloc(FLOAT_TABLE * 4);
  if (chunk == NULL || table == NULL) {
    free(chunk);
    free(table);
    return fail("out of memory for the write buffer");
  }
  bool ok = fwrite(header->p, 1, header->len, f) == header->len;
  for (uint32_t i = 0; ok && i < l->n; i++)
    ok = write_tensor_data(f, &l->t[i], i, c, chunk, table);
  free(chunk);
  free(table);
  if (!ok) return fail("writing: %s", strerror(errno));
  return true;
}

/* Writes the model to "<out>.tmp.XXXXXX", then renames it to out. */
static bool write_file(const config *c, const buf *header, const tensor_list *l) {
  size_t n = strlen(c->out) + 16;
  char *tmp = malloc(n);
  if (tmp == NULL) return fail("out of memory");
  snprintf(tmp, n, "%s.tmp.XXXXXX", c->out);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    fail("cannot create a temporary file beside '%s': %s", c->out, strerror(errno));
    free(tmp);
    return false;
  }
  mode_t mask = umask(0);
  umask(mask);
  (void)fchmod(fd, 0666 & ~mask); /* mkstemp's 0600 is needlessly private */
  FILE *f = fdopen(fd, "wb");
  bool ok = f != NULL;
  if (ok) {
    setvbuf(f, NULL, _IOFBF, 1u << 20);
    ok = write_body(f, header, l, c);
    ok = (fclose(f) == 0 || fail("closing '%s': %s", tmp, strerror(errno))) && ok;
  } else {
    fail("fdopen: %s", strerror(errno));
    close(fd);
  }
  if (ok && rename(tmp, c->out) != 0)
    ok = fail("cannot rename '%s' to '%s': %s", tmp, c->out, strerror(errno));
  if (!ok) unlink(tmp);
  free(tmp);
  return ok;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t count_params(const tensor_list *l) {
  uint64_t n = 0;
  for (uint32_t i = 0; i < l->n; i++) n += l->t[i].ne[0] * l->t[i].ne[1];
  return n;
}

/* ------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  cli_args args;
  config cfg;
  int rc = parse_args(argc, argv, &args);
  if (rc == 1) { usage(stdout); return 0; }
  if (rc != 0 || !resolve_config(&args, &cfg) || !validate_config(&cfg))
    return 2;
  double t0 = now_seconds();
  vocab v;
  tensor_list tl = {0};
  buf header = {0};
  bool ok = build_vocab(&v, &cfg) && build_tensors(&tl, &cfg) &&
            build_header(&header, &cfg, &v, &tl) &&
            write_file(&cfg, &header, &tl);
  double secs = now_seconds() - t0;
  if (ok) {
    double mb = (double)(header.len + tl.data_bytes) / 1e6;
    printf("synth_gguf: wrote %s: %s, %u tensors, %.1fM params, %u merges, "
           "%.1f MB in %.2f s (%.0f MB/s)\n",
           cfg.out, cfg.type->name, tl.n, (double)count_params(&tl) / 1e6,
           v.n_merges, mb, secs, mb / (secs > 0 ? secs : 1e-9));
  }
  vocab_deinit(&v);
  free(tl.t);
  free(header.p);
  return ok ? 0 : 1;
}
