/*
 * cli_run.c: `samepage run`, chat with a GGUF model.
 *
 * The host knows nothing about models: it grants the model file to the
 * embedded LLM guest as "model", forwards the sampling options as the
 * guest's argv, and drives the guest's exports turn by turn:
 *   llm_init() -> status            parse GGUF, tokenizer, KV cache
 *   llm_input(len) -> addr          a buffer the host writes text into
 *   llm_prompt(len, mode) -> n      tokenize + prefill (mode: chat turn / raw)
 *   llm_next() -> record address    sample, feed it back; the record holds
 *                                   the token (< 0: failed), whether it
 *                                   ended the turn and its text
 *                                   (include/samepage_llm.h)
 *   llm_error_ptr
 * It streams the text, and reports load, prefill and decode speed.
 *
 * Exit status: 0, or 1 when a turn failed (the guest's message on stderr),
 * 130 when Ctrl-C stopped a one-shot answer (README.md has the table).
 * Ctrl-C: a handler sets a flag that the decode loop reads between tokens;
 * it is armed one-shot (SA_RESETHAND), so a second Ctrl-C during the same
 * answer ends the process. At the interactive prompt it is armed without
 * SA_RESTART, so it interrupts the blocking read of stdin.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "cli/cli.h"
#include "core/knobs.h"
#include "samepage.h"
#include "samepage_llm.h"

extern const uint8_t sp_embedded_llm[], sp_embedded_llm_end[];

#define MAX_GUEST_ARGS 48
/* With --timeout: how long a call may stay inside one host call (a submit)
 * past its deadline before the process ends with 124 (samepage.h,
 * timeout_exit_grace_ms). A 128-token prefill of a 1B model on 2 cores
 * takes about 2 s. */
#define RUN_TIMEOUT_GRACE_MS 5000

typedef struct run_args {
  const char *model;
  const char *prompt;
  const char *backend;
  const char *residency;
  const char *isolation;
  unsigned threads;
  long n_predict;
  bool json, raw;
  const char *save, *resume; /* snapshot paths */
  uint32_t timeout_ms;       /* per call into the guest, 0 = none */
  const char *seed;          /* --seed, or the one picked for this run */
  char seed_text[24];
  bool self_contained;
  const char *guest_argv[MAX_GUEST_ARGS];
  int guest_argc;
} run_args;

typedef struct run_stats {
  double load_ms, prefill_ms, decode_ms;
  long prompt_tokens, generated;
  struct sp_actor_stats decode_lists; /* host time of the decode steps' lists */
} run_stats;

static void run_usage(FILE *out) {
  fprintf(out,
          "usage: samepage run [options] [PROMPT]\n"
          "  -m, --model FILE|NAME  GGUF model, or a known name fetched by scripts/fetch-model.sh NAME:\n"
          "                         smollm2 (the default: SmolLM2-135M-Instruct Q4_1; or $SAMEPAGE_MODEL),\n"
          "                         gemma3-270m (Gemma 3 270M base, Q4_K_M)\n"
          "  -p, --prompt TEXT      prompt; without one, an interactive chat\n"
          "  -n, --n-predict N      tokens to generate per turn (default 256)\n"
          "  --temp F               sampling temperature (default 0.8; 0 is greedy)\n"
          "  --top-k N              keep the N most likely tokens (default 40; 0: all)\n"
          "  --top-p F              keep the smallest set with this probability (default 0.95)\n"
          "  --min-p F              drop tokens below F x the most likely (default 0.05)\n"
          "  --repeat-penalty F     penalty on recent tokens (default 1.1; 1: none)\n"
          "  --repeat-last-n N      tokens the penalty looks back over (default 64)\n"
          "  --seed N               sampling seed (default: a new one each run, printed)\n"
          "  --ctx N                context length (default 4096)\n"
          "  --batch N              prefill batch (default 128)\n"
          "  --system TEXT          system prompt for chat models\n"
          "  --raw                  no chat template: continue the text\n"
          "  --backend cpu|cuda|vulkan|auto  compute backend (default auto)\n"
          "  --timeout SECONDS      stop the guest if one call into it runs longer\n"
          "  --save FILE            snapshot the conversation at the end (atomic)\n"
          "  --resume FILE          continue a saved conversation\n"
          "  --self-contained       with --save: embed the model instead of referencing it\n"
          "  --residency none|weights  device copies of frozen weights (default weights)\n"
          "  --isolation none|process  process: the backend runs in a worker process, so\n"
          "                         a GPU fault or crash there ends this actor alone\n"
          "                         (default none, or $SP_ISOLATION)\n"
          "  --threads N            CPU backend threads\n"
          "  --sample-full          the sampler reads every logit back (a comparison for\n"
          "                         the default, which reads only the top candidates)\n"
          "  --json                 machine-readable output\n"
          "  -h, --help             this message\n");
}

/* Options the host interprets that take a value (the guest's are below). */
static const char *const host_value_options[] = {"-m", "--model", "-p", "--prompt", "-n", "--n-predict", "--backend",
                                                 "--residency", "--isolation", "--save", "--resume", "--timeout",
                                                 "--threads", NULL};

/* Options the guest interprets: forwarded verbatim as its argv. */
static const char *const guest_options[] = {"--temp", "--top-k", "--top-p", "--min-p",
                                            "--repeat-penalty", "--seed", "--ctx", "--batch",
                                            "--system", "--repeat-last-n", NULL};

/* Guest options that take a float: the host refuses NaN, infinities and
 * non-numbers before the guest sees them. */
static const char *const float_options[] = {"--temp", "--top-p", "--min-p", "--repeat-penalty", NULL};

static bool finite_float_ok(const char *opt, const char *val) {
  for (int i = 0; float_options[i]; i++) {
    if (strcmp(opt, float_options[i])) continue;
    char *end;
    double v = strtod(val, &end);
    if (end == val || *end || !isfinite(v) || fabs(v) > 3.4e38) {
      fprintf(stderr, "samepage run: %s: \"%s\" is not a finite number\n", opt, val);
      return false;
    }
  }
  return true;
}

static bool is_guest_option(const char *opt) { return sp_cli_is_one_of(opt, guest_options); }

/* One option of the host's own with its value; 0 or an exit code. */
static int parse_host_option(run_args *a, const char *opt, const char *val) {
  if (!strcmp(opt, "-m") || !strcmp(opt, "--model")) a->model = val;
  else if (!strcmp(opt, "-p") || !strcmp(opt, "--prompt")) a->prompt = val;
  else if (!strcmp(opt, "--backend")) a->backend = val;
  else if (!strcmp(opt, "--residency")) a->residency = val;
  else if (!strcmp(opt, "--isolation")) a->isolation = val;
  else if (!strcmp(opt, "--save")) a->save = val;
  else if (!strcmp(opt, "--resume")) a->resume = val;
  else if (!strcmp(opt, "--timeout")) {
    if (sp_cli_parse_timeout(val, &a->timeout_ms)) {
      fprintf(stderr, "samepage run: --timeout: \"%s\" is not a number of seconds\n", val);
      return SP_EXIT_USAGE;
    }
  } else if (!strcmp(opt, "-n") || !strcmp(opt, "--n-predict")) {
    char *end;
    a->n_predict = strtol(val, &end, 10);
    if (*end || a->n_predict < 0 || a->n_predict > 1 << 20) {
      fprintf(stderr, "samepage run: -n: \"%s\" is not a token count\n", val);
      return SP_EXIT_USAGE;
    }
  } else if (!strcmp(opt, "--threads")) {
    a->threads = (unsigned)atoi(val);
    if (a->threads < 1 || a->threads > 1024) { fprintf(stderr, "samepage run: --threads: 1..1024\n"); return SP_EXIT_USAGE; }
  }
  return 0;
}

/* One option the guest interprets, forwarded as its argv; 0 or an exit code. */
static int add_guest_option(run_args *a, const char *opt, const char *val) {
  if (a->guest_argc + 2 >= MAX_GUEST_ARGS) {
    fprintf(stderr, "samepage run: %s: too many sampling and model options\n", opt);
    return SP_EXIT_USAGE;
  }
  if (!finite_float_ok(opt, val)) return SP_EXIT_USAGE;
  if (!strcmp(opt, "--seed")) a->seed = val;
  a->guest_argv[a->guest_argc++] = opt;
  a->guest_argv[a->guest_argc++] = val;
  return 0;
}

/* Returns 0, -1 after --help, or an exit code to stop with. */
static int parse_run_args(int argc, char **argv, run_args *a) {
  memset(a, 0, sizeof *a);
  a->backend = "auto", a->n_predict = 256;
  a->guest_argv[a->guest_argc++] = "llm";
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (sp_cli_is_help(opt)) { run_usage(stdout); return -1; }
    if (!strcmp(opt, "--json")) { a->json = true; continue; }
    if (!strcmp(opt, "--raw")) { a->raw = true; continue; }
    if (!strcmp(opt, "--self-contained")) { a->self_contained = true; continue; }
    if (!strcmp(opt, "--sample-full") && a->guest_argc < MAX_GUEST_ARGS) { /* the guest's, without a value */
      a->guest_argv[a->guest_argc++] = opt;
      continue;
    }
    if (opt[0] != '-') {
      if (a->prompt) { fprintf(stderr, "samepage run: more than one prompt given\n"); return SP_EXIT_USAGE; }
      a->prompt = opt;
      continue;
    }
    bool guest = is_guest_option(opt);
    if (!guest && !sp_cli_is_one_of(opt, host_value_options)) return sp_cli_unknown_option("run", opt, run_usage);
    const char *val = sp_cli_option_value("run", argc, argv, &i, run_usage);
    if (!val) return SP_EXIT_USAGE;
    int rc = guest ? add_guest_option(a, opt, val) : parse_host_option(a, opt, val);
    if (rc) return rc;
  }
  if (a->prompt && !a->prompt[0]) { fprintf(stderr, "samepage run: the prompt is empty\n"); return SP_EXIT_USAGE; }
  if (!a->model) a->model = sp_cli_default_model();
  /* Without --seed, a fresh seed each run, printed with the stats so the
   * run can be repeated exactly. */
  if (!a->seed && a->guest_argc + 2 < MAX_GUEST_ARGS) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(a->seed_text, sizeof a->seed_text, "%llu",
             (unsigned long long)(ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40)) % 1000000000ull);
    a->seed = a->seed_text;
    a->guest_argv[a->guest_argc++] = "--seed";
    a->guest_argv[a->guest_argc++] = a->seed;
  }
  /* A progress line while a large model loads, when someone is watching. */
  struct stat st;
  if (isatty(2) && !stat(a->model, &st) && st.st_size > (256 << 20) && a->guest_argc < MAX_GUEST_ARGS)
    a->guest_argv[a->guest_argc++] = "--progress";
  return 0;
}

/* ---- Ctrl-C ---- */

static volatile sig_atomic_t interrupted; /* set by the handler, read between tokens */

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

/* Arms the handler for one SIGINT (then the default action: a second
 * Ctrl-C ends the process); restart: whether blocking calls resume after
 * it (false at the interactive prompt, so the read returns EINTR). */
static void arm_sigint(bool restart) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | (restart ? SA_RESTART : 0);
  interrupted = 0;
  sigaction(SIGINT, &sa, NULL);
}

/* ---- talking to the guest ---- */

/* One turn as the guest's KV cache saw it (--json): where its prompt
 * starts, its prompt tokens, the tokens sampled and fed back (the
 * end-of-turn one included), and the positions the cache holds after it.
 * The positions are read from the guest (llm_n_past), not computed here. */
typedef struct turn_figures {
  long first_position, prompt_tokens, sampled_tokens, positions_after;
} turn_figures;

typedef struct llm_session {
  sp_actor_t *actor;
  run_args *args;
  run_stats stats;
  char *text;          /* the reply so far, for --json */
  size_t text_len, text_cap;
  turn_figures *turns; /* every turn so far, for --json */
  size_t n_turns, turns_cap;
  bool failed;         /* a turn failed (the guest's message was printed) */
  bool stopped;        /* Ctrl-C stopped the last answer */
} llm_session;

/* The guest's own message after a failed call. */
static const char *guest_error(sp_actor_t *actor) {
  static char msg[1024];
  int64_t addr = 0;
  sp_error_t *err = sp_cli_call(actor, "llm_error_ptr", 0, 0, 0, &addr);
  addr = (uint32_t)addr; /* an i32 result: addresses past 2 GiB come back negative */
  uint8_t *base;
  size_t size;
  sp_actor_memory(actor, &base, &size);
  if (err || addr <= 0 || (uint64_t)addr >= size) {
    sp_error_free(err);
    return "unknown error";
  }
  snprintf(msg, sizeof msg, "%.*s", (int)(size - (size_t)addr < 1000 ? size - (size_t)addr : 1000),
           (const char *)base + addr);
  return msg;
}

static void append_text(llm_session *s, const uint8_t *bytes, size_t len) {
  if (s->text_len + len + 1 > s->text_cap) {
    size_t cap = (s->text_len + len + 1) * 2;
    char *grown = realloc(s->text, cap);
    if (!grown) return;
    s->text = grown, s->text_cap = cap;
  }
  memcpy(s->text + s->text_len, bytes, len);
  s->text_len += len;
  s->text[s->text_len] = '\0';
}

/* One decoding step: one call, then its record read in guest memory
 * (include/samepage_llm.h), checked before use: NULL when the record is
 * not inside the memory or claims more text than it holds. */
static sp_error_t *next_step(sp_actor_t *actor, const sp_llm_step **out) {
  int64_t addr = 0;
  sp_error_t *err = sp_cli_call(actor, "llm_next", 0, 0, 0, &addr);
  if (err) return err;
  uint8_t *base;
  size_t size;
  sp_actor_memory(actor, &base, &size);
  *out = sp_llm_step_at(base, size, addr);
  return NULL;
}

/* Streams the text of a step. */
static void emit_piece(llm_session *s, const sp_llm_step *step) {
  if (s->args->json) append_text(s, step->piece, step->piece_len);
  else {
    fwrite(step->piece, 1, step->piece_len, stdout);
    fflush(stdout);
  }
}

/* The positions the guest's KV cache holds now. */
static sp_error_t *cache_positions(sp_actor_t *actor, long *out) {
  int64_t n = 0;
  sp_error_t *err = sp_cli_call(actor, "llm_n_past", 0, 0, 0, &n);
  *out = (long)(uint32_t)n; /* an i32 result */
  return err;
}

static void add_turn(llm_session *s, const turn_figures *t) {
  if (s->n_turns == s->turns_cap) {
    size_t cap = s->turns_cap ? s->turns_cap * 2 : 8;
    turn_figures *grown = realloc(s->turns, cap * sizeof *grown);
    if (!grown) return;
    s->turns = grown, s->turns_cap = cap;
  }
  s->turns[s->n_turns++] = *t;
}

/* Samples up to -n tokens of the reply, streaming them. */
static sp_error_t *decode_reply(llm_session *s, turn_figures *turn) {
  sp_error_t *err;
  double t0 = sp_now_ms();
  struct sp_actor_stats before = {.size = sizeof before}, after = {.size = sizeof after};
  if ((err = sp_actor_stats(s->actor, &before))) return err;
  for (long i = 0; i < s->args->n_predict; i++) {
    const sp_llm_step *step;
    if (interrupted) {
      s->stopped = true;
      break;
    }
    if ((err = next_step(s->actor, &step))) return err;
    if (!step || step->token < 0) {
      fprintf(stderr, "\nsamepage run: %s\n", step ? guest_error(s->actor) : "the guest's step record is corrupt");
      s->failed = true;
      break;
    }
    turn->sampled_tokens++;
    if (step->turn_done) break;
    s->stats.generated++;
    emit_piece(s, step);
  }
  s->stats.decode_ms += sp_now_ms() - t0;
  if ((err = sp_actor_stats(s->actor, &after))) return err;
  struct sp_actor_stats *d = &s->stats.decode_lists;
  d->lists += after.lists - before.lists, d->commands += after.commands - before.commands;
  d->validate_ms += after.validate_ms - before.validate_ms, d->backend_ms += after.backend_ms - before.backend_ms;
  return NULL;
}

static sp_error_t *prompt_turn(llm_session *s, const char *text, bool raw) {
  size_t len = strlen(text);
  int64_t addr, n;
  turn_figures turn = {0};
  sp_error_t *err = cache_positions(s->actor, &turn.first_position);
  if (!err) err = sp_cli_call(s->actor, "llm_input", (int64_t)len, 0, 1, &addr);
  if (err) return err;
  addr = (uint32_t)addr; /* an i32 result: addresses past 2 GiB come back negative */
  uint8_t *base;
  size_t size;
  sp_actor_memory(s->actor, &base, &size);
  if (addr <= 0 || (uint64_t)addr + len > size) {
    fprintf(stderr, "samepage run: %s\n", guest_error(s->actor));
    s->failed = true;
    return NULL;
  }
  memcpy(base + addr, text, len);
  double t0 = sp_now_ms();
  if ((err = sp_cli_call(s->actor, "llm_prompt", (int64_t)len, raw ? 1 : 0, 2, &n))) return err;
  s->stats.prefill_ms += sp_now_ms() - t0;
  if (n < 0) {
    fprintf(stderr, "samepage run: %s\n", guest_error(s->actor));
    s->failed = true;
    return NULL;
  }
  s->stats.prompt_tokens += n;
  turn.prompt_tokens = n;
  if ((err = decode_reply(s, &turn))) return err;
  if ((err = cache_positions(s->actor, &turn.positions_after))) return err;
  add_turn(s, &turn);
  if (!s->args->json) printf("\n");
  return NULL;
}

/* Waits until stdin has input or Ctrl-C was pressed. The flag is polled
 * every 200 ms as well: a SIGINT that lands just before the wait, or on
 * another thread of the process, would not interrupt it. */
static void wait_input(void) {
  while (!interrupted) {
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(0, &fds);
    struct timeval tv = {0, 200000};
    int n = select(1, &fds, NULL, NULL, &tv);
    if (n > 0 || (n < 0 && errno != EINTR)) return;
  }
}

/* Reads one line into `line`; false at end of input, on a read error, or
 * when Ctrl-C interrupts the read (an empty prompt: the chat ends). stdin
 * is unbuffered (interactive()), so select() sees every unread byte. */
static bool read_line(char *line, size_t cap, bool tty) {
  arm_sigint(false);
  if (tty) { fprintf(stderr, "> "); fflush(stderr); }
  wait_input();
  bool got = !interrupted && fgets(line, (int)cap, stdin) != NULL;
  if (!got && interrupted && tty) fprintf(stderr, "\n");
  return got && !interrupted;
}

static sp_error_t *interactive(llm_session *s) {
  char line[16384];
  bool tty = isatty(0);
  setvbuf(stdin, NULL, _IONBF, 0);
  while (read_line(line, sizeof line, tty)) {
    line[strcspn(line, "\n")] = '\0';
    if (!line[0]) continue;
    if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
    /* Ctrl-C from here stops this answer alone: back to the prompt, the
     * conversation kept (what was said so far stays in the cache). */
    arm_sigint(true);
    sp_error_t *err = prompt_turn(s, line, s->args->raw);
    if (err) return err;
    if (s->stopped && tty) fprintf(stderr, "[stopped]\n");
    s->stopped = false;
  }
  return NULL;
}

static void print_json_string(const char *text) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)text; p && *p; p++) {
    if (*p == '"' || *p == '\\') printf("\\%c", *p);
    else if (*p == '\n') printf("\\n");
    else if (*p < 0x20) printf("\\u%04x", *p);
    else putchar(*p);
  }
  putchar('"');
}

static void print_json_turns(const llm_session *s) {
  printf("\"turns\": [");
  for (size_t i = 0; i < s->n_turns; i++) {
    const turn_figures *t = &s->turns[i];
    printf("%s{\"first_position\": %ld, \"prompt_tokens\": %ld, \"sampled_tokens\": %ld, \"positions_after\": %ld}",
           i ? ", " : "", t->first_position, t->prompt_tokens, t->sampled_tokens, t->positions_after);
  }
  printf("], ");
}

static sp_error_t *report(sp_runtime_t *rt, const llm_session *s) {
  fflush(stdout);
  const run_stats *st = &s->stats;
  struct sp_runtime_stats rs = {.size = sizeof rs};
  sp_error_t *err = sp_runtime_stats(rt, &rs);
  if (err) return err;
  double prefill_tps = st->prefill_ms > 0 ? st->prompt_tokens / (st->prefill_ms / 1e3) : 0;
  double decode_tps = st->decode_ms > 0 ? st->generated / (st->decode_ms / 1e3) : 0;
  if (s->args->json) {
    printf("{\"model\": ");
    print_json_string(s->args->model);
    printf(", \"load_ms\": %.1f, \"prompt_tokens\": %ld, \"prefill_ms\": %.1f, \"prefill_tok_s\": %.1f, "
           "\"generated_tokens\": %ld, \"decode_ms\": %.1f, \"decode_tok_s\": %.1f, \"backend\": \"%s\", \"isolation\": \"%s\", "
           "\"resident_bytes\": %llu, \"resident_ms\": %.1f, \"device_local_bytes\": %llu, "
           "\"device_local_transfers\": %llu, \"device_local_ms\": %.1f, \"repacked_bytes\": %llu, \"decode_lists\": %llu, "
           "\"decode_commands\": %llu, \"decode_validate_ms\": %.2f, \"decode_backend_ms\": %.2f, ",
           st->load_ms, st->prompt_tokens, st->prefill_ms, prefill_tps, st->generated, st->decode_ms, decode_tps,
           sp_runtime_backend_name(rt), sp_runtime_isolation(rt), (unsigned long long)rs.resident_bytes, rs.resident_ms, (unsigned long long)rs.local_bytes,
           (unsigned long long)rs.local_transfers, rs.local_transfer_ms, (unsigned long long)rs.repacked_bytes,
           (unsigned long long)st->decode_lists.lists,
           (unsigned long long)st->decode_lists.commands, st->decode_lists.validate_ms, st->decode_lists.backend_ms);
    print_json_turns(s);
    printf("\"text\": ");
    print_json_string(s->text ? s->text : "");
    printf("}\n");
  }
  fprintf(stderr, "load %.0f ms | prefill %ld tokens, %.1f tok/s | decode %ld tokens, %.1f tok/s (%.2f ms/token) | seed %s\n",
          st->load_ms, st->prompt_tokens, prefill_tps, st->generated, decode_tps,
          st->generated ? st->decode_ms / st->generated : 0.0, s->args->seed ? s->args->seed : "-");
  if (rs.resident_copies)
    fprintf(stderr, "backend %s | resident %.1f MiB in %llu copies, %.1f ms | repacked for the GPU %.1f MiB\n",
            sp_runtime_backend_name(rt), rs.resident_bytes / 1048576.0, (unsigned long long)rs.resident_copies,
            rs.resident_ms, rs.repacked_bytes / 1048576.0);
  if (rs.local_transfers)
    fprintf(stderr, "backend %s | device-local %.1f MiB, %llu transfers of %.1f MiB, %.1f ms\n",
            sp_runtime_backend_name(rt), rs.local_bytes / 1048576.0, (unsigned long long)rs.local_transfers,
            rs.local_transfer_bytes / 1048576.0, rs.local_transfer_ms);
  return NULL;
}

static sp_error_t *resume_session(llm_session *s) {
  sp_snapshot_stats st = {0};
  double t0 = sp_now_ms();
  sp_error_t *err = sp_actor_restore(s->actor, s->args->resume, &st);
  if (!err)
    fprintf(stderr, "resumed %s: %.2f MB, %llu pages written, %.1f ms\n", s->args->resume, st.bytes / 1e6,
            (unsigned long long)st.pages_written, sp_now_ms() - t0);
  return err;
}

static sp_error_t *save_session(llm_session *s) {
  sp_snapshot_options opts = {.self_contained = s->args->self_contained};
  sp_snapshot_stats st = {0};
  double t0 = sp_now_ms();
  sp_error_t *err = sp_actor_snapshot(s->actor, s->args->save, &opts, &st);
  if (!err)
    fprintf(stderr, "saved %s: %.2f MB (memory %.1f MB), %.1f ms\n", s->args->save, st.bytes / 1e6,
            st.memory_bytes / 1e6, sp_now_ms() - t0);
  return err;
}

static int run_session(sp_runtime_t *rt, run_args *a) {
  sp_blob_grant grant = {"model", a->model};
  sp_actor_options opts = {.argv = a->guest_argv, .argc = a->guest_argc, .inherit_stdio = true,
                           .blobs = &grant, .n_blobs = 1, .timeout_ms = a->timeout_ms,
                           /* a forward pass can legitimately outlast the deadline by a
                              prefill batch's time; past that the process ends with 124 */
                           .timeout_exit_grace_ms = RUN_TIMEOUT_GRACE_MS};
  llm_session s = {.args = a};
  if (!a->resume && sp_cli_llm_warmup_wanted(rt) && a->guest_argc < MAX_GUEST_ARGS)
    a->guest_argv[a->guest_argc++] = "--warmup"; /* a resumed actor restores, it does not load */
  opts.argc = a->guest_argc;
  double t0 = sp_now_ms();
  size_t len = (size_t)(sp_embedded_llm_end - sp_embedded_llm);
  sp_error_t *err = sp_actor_new(rt, sp_embedded_llm, len, &opts, &s.actor);
  int64_t status = 0;
  /* A resumed conversation brings its own state, options and model
   * mapping: restore into the fresh actor instead of initialising it. */
  if (!err && a->resume) err = resume_session(&s);
  else if (!err) err = sp_cli_call(s.actor, "llm_init", 0, 0, 0, &status);
  s.stats.load_ms = sp_now_ms() - t0;
  int rc = 0;
  if (!err && status < 0) {
    fprintf(stderr, "samepage run: %s: %s\n", a->model, guest_error(s.actor));
    rc = SP_EXIT_FAILED;
  } else if (!err) {
    err = a->prompt ? prompt_turn(&s, a->prompt, a->raw) : interactive(&s);
    /* Stopped or failed, the conversation so far is still reported and
     * saved; only the exit status tells. */
    if (!err) err = report(rt, &s);
    if (!err && a->save) err = save_session(&s);
    if (!err) rc = s.failed ? SP_EXIT_FAILED : a->prompt && s.stopped ? SP_EXIT_INTERRUPTED : 0;
  }
  if (err) {
    fprintf(stderr, "samepage run: %s\n", sp_error_message(err));
    rc = sp_cli_exit_code(err, SP_EXIT_RUNTIME);
    sp_error_free(err);
  }
  free(s.text);
  free(s.turns);
  sp_actor_free(s.actor);
  return rc;
}

int sp_cli_run(int argc, char **argv) {
  run_args a;
  int rc = parse_run_args(argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  arm_sigint(true); /* Ctrl-C while loading: no answer, the stats, exit 130 */
  const char *short_name = NULL;
  a.model = sp_cli_model_path(a.model, &short_name);
  if (access(a.model, R_OK)) {
    if (short_name)
      fprintf(stderr, "samepage run: model %s (%s) is not fetched yet: scripts/fetch-model.sh %s\n", short_name,
              a.model, short_name);
    else
      fprintf(stderr, "samepage run: model %s: cannot read it%s\n", a.model,
              sp_cli_knobs()->model ? "" : " (fetch the default model with scripts/fetch-model.sh)");
    return SP_EXIT_RUNTIME;
  }
  sp_runtime_options ropts = {.backend = a.backend, .threads = a.threads, .residency = a.residency,
                              .isolation = a.isolation, .knobs = sp_cli_knobs()};
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(&ropts, &rt);
  if (err) {
    fprintf(stderr, "samepage run: %s\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_RUNTIME;
  }
  rc = run_session(rt, &a);
  sp_runtime_free(rt);
  return rc;
}
