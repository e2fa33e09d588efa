/*
 * unicode.c: codepoint classes, lenient UTF-8, the GPT-2 byte map, and the
 * pre-tokenizer splits built on them. See unicode.h for why each behaves
 * the way it does.
 */
#include "unicode.h"

#include <stdbool.h>

uint32_t tok_cpt_flags(uint32_t cp) {
  if (cp < 256) return tok_cpt_latin1[cp];
  if (cp > TOK_CPT_MAX) return 0;
  /* Find the last run whose start is <= cp: entries are start << 8 | flags,
   * so compare against cp << 8 | 0xff. */
  uint32_t key = cp << 8 | 0xffu, lo = 0, hi = tok_cpt_n_runs;
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (tok_cpt_runs[mid] <= key) lo = mid;
    else hi = mid;
  }
  return tok_cpt_runs[lo] & 0xffu;
}

size_t tok_utf8_seq_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xc0) return 1; /* continuation byte */
  if (lead < 0xe0) return 2;
  if (lead < 0xf0) return 3;
  if (lead < 0xf8) return 4;
  return 1;
}

size_t tok_utf8_decode(const uint8_t *s, size_t len, uint32_t *cp) {
  uint8_t b0 = s[0];
  size_t n = tok_utf8_seq_len(b0);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  if (n == 1 || n > len) goto bad;
  uint32_t v = b0 & (0x7fu >> n);
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) goto bad;
    v = v << 6 | (s[i] & 0x3fu);
  }
  if (v > TOK_CPT_MAX) goto bad;
  *cp = v;
  return n;
bad:
  *cp = TOK_CPT_REPLACEMENT;
  return 1;
}

size_t tok_utf8_encode(uint32_t cp, uint8_t out[4]) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (uint8_t)(0xc0 | cp >> 6);
    out[1] = (uint8_t)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xe0 | cp >> 12);
    out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (uint8_t)(0xf0 | (cp >> 18 & 0x07));
  out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
  out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
  out[3] = (uint8_t)(0x80 | (cp & 0x3f));
  return 4;
}

size_t tok_utf8_complete_prefix(const uint8_t *s, size_t len) {
  /* Only the last 3 bytes can belong to an unfinished sequence. */
  size_t start = len > 3 ? len - 3 : 0;
  for (size_t i = len; i-- > start;) {
    if ((s[i] & 0xc0) == 0x80) continue; /* a continuation: keep looking */
    size_t want = tok_utf8_seq_len(s[i]);
    /* A lead still waiting for bytes: hold it and its continuations. */
    if (want > 1 && len - i < want) return i;
    return len;
  }
  return len;
}

/* Bytes GPT-2 shows as themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF.
 * The other 68 bytes (0x00..0x20, 0x7F..0xA0, 0xAD) map, in byte order, to
 * U+0100..U+0143. */
static int is_printable_byte(uint32_t b) {
  return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

uint32_t tok_byte_to_cpt(uint8_t b) {
  if (is_printable_byte(b)) return b;
  if (b <= 0x20) return 0x100u + b;           /* 33 control/space bytes */
  if (b >= 0x7f && b <= 0xa0) return b + 0xa2u; /* next 34: U+0121.. */
  return 0x143;                                /* 0xAD, the last one */
}

int tok_cpt_to_byte(uint32_t cp) {
  if (cp < 0x100) return is_printable_byte(cp) ? (int)cp : -1;
  if (cp <= 0x120) return (int)(cp - 0x100);
  if (cp <= 0x142) return (int)(cp - 0xa2);
  if (cp == 0x143) return 0xad;
  return -1;
}

/* ---- pre-tokenizer splits ----
 * A pass cuts each piece [a, b) of the codepoint array into smaller pieces,
 * recorded as end offsets. Outside [a, b) a position reads as "out of range"
 * (flags 0, codepoint OUT), which is what the lookaheads of the regexes see
 * at a piece boundary. */

#define IN_RANGE 0x100u  /* set in every in-range position's flags */
#define OUT 0xFFFFFFFFu /* the codepoint past either end of a piece */

typedef struct split {
  const uint32_t *cps;  /* codepoints of the whole text */
  const uint8_t *flags; /* their TOK_CPT_* flags */
  size_t b;             /* end of the current piece */
  size_t prev;          /* end of the last piece cut */
  size_t *ends;         /* output: piece ends */
  size_t n;
} split;

static uint32_t fl(const split *s, size_t pos) { return pos < s->b ? s->flags[pos] | IN_RANGE : 0; }
static uint32_t cp_at(const split *s, size_t pos) { return pos < s->b ? s->cps[pos] : OUT; }

/* Ends a piece at `end` (empty pieces are dropped); returns its length. */
static size_t cut(split *s, size_t end) {
  size_t len = end - s->prev;
  if (len) s->ends[s->n++] = end;
  s->prev = end;
  return len;
}

#define LNS (TOK_CPT_LETTER | TOK_CPT_NUMBER | TOK_CPT_SPACE)

/* Runs of codepoints in the class, and the gaps between them, as pieces.
 * `each` cuts every matching codepoint on its own (\p{N} rather than \p{N}+). */
static void split_class(split *s, size_t a, uint32_t (*in)(uint32_t cp, uint32_t f), bool each) {
  for (size_t pos = a; pos < s->b;) {
    if (!in(s->cps[pos], s->flags[pos])) {
      pos++;
      continue;
    }
    cut(s, pos);
    do pos++;
    while (!each && pos < s->b && in(s->cps[pos], s->flags[pos]));
    cut(s, pos);
  }
  cut(s, s->b);
}

static uint32_t is_number(uint32_t cp, uint32_t f) {
  (void)cp;
  return f & TOK_CPT_NUMBER;
}

static uint32_t is_punct(uint32_t cp, uint32_t f) {
  if (f & TOK_CPT_PUNCT) return 1;
  return cp == '$' || cp == '+' || cp == '<' || cp == '=' || cp == '>' || cp == '^' ||
         cp == '~' || cp == '|';
}

static uint32_t is_newline(uint32_t cp, uint32_t f) {
  (void)f;
  return cp == '\n';
}

static uint32_t is_punct_bt(uint32_t cp, uint32_t f) { return is_punct(cp, f) || cp == '`'; }

/* [0-9][0-9][0-9], leftmost first: each triple is a piece, as is each gap. */
static void split_digit_triples(split *s, size_t a) {
  for (size_t pos = a; pos + 3 <= s->b;) {
    const uint32_t *c = s->cps + pos;
    if (c[0] - '0' < 10 && c[1] - '0' < 10 && c[2] - '0' < 10) {
      cut(s, pos);
      pos += 3;
      cut(s, pos);
    } else {
      pos++;
    }
  }
  cut(s, s->b);
}

/* 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive (ASCII only: no other
 * codepoint lowercases to these letters). Returns the match length or 0. */
static size_t contraction(const split *s, size_t pos, bool any_case) {
  if (s->cps[pos] != '\'' || pos + 1 >= s->b) return 0;
  uint32_t c1 = s->cps[pos + 1], c2 = pos + 2 < s->b ? s->cps[pos + 2] : OUT;
  if (any_case) {
    if (c1 < 0x80) c1 |= (c1 >= 'A' && c1 <= 'Z') ? 0x20 : 0;
    if (c2 < 0x80) c2 |= (c2 >= 'A' && c2 <= 'Z') ? 0x20 : 0;
  }
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

/* \s+(?!\S)|\s+ : the whitespace run at pos (count n), minus its last
 * codepoint when something follows it inside the piece. */
static size_t whitespace_end(const split *s, size_t pos) {
  size_t n = 0;
  while (fl(s, pos + n) & TOK_CPT_SPACE) n++;
  if (n > 1 && cp_at(s, pos + n) != OUT) return pos + n - 1;
  if (n > 0) return pos + n;
  return pos + 1; /* no match: a single codepoint */
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(split *s, size_t a) {
  for (size_t pos = a; pos < s->b;) {
    size_t k = contraction(s, pos, false);
    if (k) {
      pos += cut(s, pos + k);
      continue;
    }
    uint32_t cp = s->cps[pos], f2 = cp == ' ' ? fl(s, pos + 1) : fl(s, pos);
    uint32_t cls = f2 & TOK_CPT_LETTER ? TOK_CPT_LETTER : f2 & TOK_CPT_NUMBER ? TOK_CPT_NUMBER : 0;
    if (cls) { /* ` ?\p{L}+` or ` ?\p{N}+` */
      pos += cp == ' ';
      while (fl(s, pos) & cls) pos++;
      cut(s, pos);
      continue;
    }
    if (!(f2 & LNS) && f2) { /* ` ?[^\s\p{L}\p{N}]+` */
      pos += cp == ' ';
      while (!(f2 & LNS) && f2) f2 = fl(s, ++pos);
      cut(s, pos);
      continue;
    }
    pos = whitespace_end(s, pos);
    cut(s, pos);
  }
  cut(s, s->b);
}

/* Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ ; Qwen2 has max_digits 1;
 * Qwen3.5 also counts marks (\p{M}) as letters: `lm` is the letter class. */
static void split_llama3(split *s, size_t a, size_t max_digits, uint32_t lm) {
  const uint32_t lns = LNS | lm;
  for (size_t pos = a; pos < s->b;) {
    size_t k = contraction(s, pos, true);
    if (k) {
      pos += cut(s, pos + k);
      continue;
    }
    uint32_t cp = s->cps[pos], f = fl(s, pos);
    if (!(cp == '\r' || cp == '\n' || (f & TOK_CPT_NUMBER)) &&
        ((f & lm) || (fl(s, pos + 1) & lm))) {
      pos++; /* the optional prefix, or the first letter */
      while (fl(s, pos) & lm) pos++;
      cut(s, pos);
      continue;
    }
    if (f & TOK_CPT_NUMBER) {
      for (size_t ini = pos; fl(s, pos) & TOK_CPT_NUMBER;)
        if (++pos - ini >= max_digits) cut(s, pos), ini = pos;
      cut(s, pos);
      continue;
    }
    uint32_t f2 = cp == ' ' ? fl(s, pos + 1) : f;
    if (!(f2 & lns) && f) { /* llama.cpp tests f here, not f2 */
      pos += cp == ' ';
      while (!(f2 & lns) && f2) f2 = fl(s, ++pos);
      while (cp_at(s, pos) == '\r' || cp_at(s, pos) == '\n') pos++;
      cut(s, pos);
      continue;
    }
    size_t n = 0, last_nl = 0;
    for (; fl(s, pos + n) & TOK_CPT_SPACE; n++)
      if (s->cps[pos + n] == '\r' || s->cps[pos + n] == '\n') last_nl = pos + n + 1;
    pos = last_nl ? last_nl : whitespace_end(s, pos); /* \s*[\r\n]+ first */
    cut(s, pos);
  }
  cut(s, s->b);
}

void tok_split(tok_split_pass p, const uint32_t *cps, const uint8_t *flags, const size_t *ends_in,
               size_t n_in, size_t *ends_out, size_t *n_out) {
  split st = {cps, flags, 0, 0, ends_out, 0}, *s = &st;
  for (size_t i = 0, a = 0; i < n_in; a = ends_in[i++]) {
    s->b = ends_in[i];
    s->prev = a;
    switch (p) {
      case TOK_SPLIT_EACH_NUMBER: split_class(s, a, is_number, true); break;
      case TOK_SPLIT_NUMBER_RUNS: split_class(s, a, is_number, false); break;
      case TOK_SPLIT_PUNCT_RUNS: split_class(s, a, is_punct, false); break;
      case TOK_SPLIT_PUNCT_RUNS_BT: split_class(s, a, is_punct_bt, false); break;
      case TOK_SPLIT_DIGIT_TRIPLES: split_digit_triples(s, a); break;
      case TOK_SPLIT_GPT2: split_gpt2(s, a); break;
      case TOK_SPLIT_LLAMA3: split_llama3(s, a, 3, TOK_CPT_LETTER); break;
      case TOK_SPLIT_QWEN2: split_llama3(s, a, 1, TOK_CPT_LETTER); break;
      case TOK_SPLIT_QWEN35: split_llama3(s, a, 1, TOK_CPT_LETTER | TOK_CPT_MARK); break;
      case TOK_SPLIT_NEWLINE_RUNS: split_class(s, a, is_newline, false); break;
      case TOK_SPLIT_END: break;
    }
  }
  *n_out = s->n;
}
