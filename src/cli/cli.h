/* cli.h: the subcommands of the `samepage` command and their shared helpers. */
#ifndef SP_CLI_H
#define SP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes of samepage itself; a guest's own exit code passes through
 * (`exec`). Every failure exits non-zero (README.md, "The CLI"). */
#define SP_EXIT_FAILED 1    /* the command ran but failed: a refused model, a failed turn */
#define SP_EXIT_USAGE 2     /* bad command line */
#define SP_EXIT_RUNTIME 125 /* samepage failed before or outside the guest */
#define SP_EXIT_TRAP 134    /* the guest trapped */
#define SP_EXIT_TIMEOUT 124 /* the guest ran past --timeout */
#define SP_EXIT_INTERRUPTED 130 /* stopped by SIGINT (Ctrl-C), 128 + 2 */

/* ---- command lines (main.c) ----
 * Every subcommand parses its options the same way: "-h"/"--help" prints
 * its complete usage on stdout (exit 0); an option it does not have, or one
 * given without its value, is refused by name with its usage on stderr
 * (exit SP_EXIT_USAGE). */

/* Prints a subcommand's usage to out. */
typedef void sp_cli_usage_fn(FILE *out);

/* Whether arg asks for help ("-h", "--help"). */
bool sp_cli_is_help(const char *arg);

/* Whether arg is one of names (NULL-terminated). */
bool sp_cli_is_one_of(const char *arg, const char *const *names);

/* Refuses opt, an option cmd ("bench actors") does not have; returns
 * SP_EXIT_USAGE. */
int sp_cli_unknown_option(const char *cmd, const char *opt, sp_cli_usage_fn *usage);

/* Refuses arg, a positional argument cmd does not take; returns SP_EXIT_USAGE. */
int sp_cli_unexpected_argument(const char *cmd, const char *arg, sp_cli_usage_fn *usage);

/* The value of the option argv[*i], advancing *i past it; NULL, with the
 * message and cmd's usage on stderr, when the option is last on the line. */
const char *sp_cli_option_value(const char *cmd, int argc, char **argv, int *i, sp_cli_usage_fn *usage);

/* Reads the option argv[*i] of cmd, whose options are `flags` (no value)
 * and `valued` (one value each; both lists NULL-terminated). Returns 0 with
 * *val its value (NULL for a flag) and *i past it; -1 after --help (usage
 * on stdout); or SP_EXIT_USAGE, with the message and usage on stderr, for
 * an unknown option, a missing value or a positional argument. */
int sp_cli_next_option(const char *cmd, int argc, char **argv, int *i, const char *const *flags,
                       const char *const *valued, sp_cli_usage_fn *usage, const char **val);

int sp_cli_exec(int argc, char **argv);
int sp_cli_run(int argc, char **argv);
int sp_cli_kv(int argc, char **argv);
int sp_cli_bench(int argc, char **argv);
/* `samepage serve` (src/server/serve_main.c). */
int sp_cli_serve(int argc, char **argv);

/* The default model's path ($SAMEPAGE_MODEL, else the fetch cache). */
const char *sp_cli_default_model(void);
/* A model file the user named: `given` if such a file exists, else the
 * cache path of a known short name ("smollm2", "gemma3-270m"; *short_name
 * then says which), else `given` (cli_models.c). */
const char *sp_cli_model_path(const char *given, const char **short_name);

/* The environment's settings (knobs.h), parsed once by main; every
 * runtime the CLI creates gets them (sp_runtime_options.knobs). */
const struct sp_knobs *sp_cli_knobs(void);

/* `samepage bench actors`. */
int sp_cli_bench_actors(int argc, char **argv);

/* `samepage bench soak` (cli_bench_soak.c). */
int sp_cli_bench_soak(int argc, char **argv);

/* `samepage bench snapshot`. */
int sp_cli_bench_snapshot(int argc, char **argv);

typedef struct sp_actor sp_actor_t;
typedef struct sp_runtime sp_runtime_t;
typedef struct sp_error sp_error_t;

/* Calls the guest export fn with nargs (0-2) i64 arguments x, y (main.c). */
sp_error_t *sp_cli_call(sp_actor_t *a, const char *fn, int64_t x, int64_t y, int nargs, int64_t *out);

/* qsort order of doubles, for medians (main.c). */
int sp_cli_cmp_double(const void *a, const void *b);

/* The embedded LLM guest, for benchmarks (cli_llm.c): an actor with the
 * model granted and loaded (--ctx, and --batch unless batch <= 0: the
 * guest's default); a timed prefill of n token
 * ids (a fixed pseudo-random sequence). */
sp_error_t *sp_cli_llm_actor(sp_runtime_t *rt, const char *model, int ctx, int batch, sp_actor_t **out);
/* The actor alone, its model granted but not loaded (llm_init not called:
 * a restore's target, or a caller's own load). */
sp_error_t *sp_cli_llm_new(sp_runtime_t *rt, const char *model, int ctx, int batch, const char *const *extra,
                           int n_extra, sp_actor_t **out);
/* The same with extra guest options (sampling: "--temp", "0", ...). */
sp_error_t *sp_cli_llm_actor_with(sp_runtime_t *rt, const char *model, int ctx, int batch, const char *const *extra,
                                  int n_extra, sp_actor_t **out);
sp_error_t *sp_cli_llm_prefill(sp_actor_t *a, int n, double *ms);
/* Whether the first actor of a process should warm up at load (the guest's
 * --warmup): on CUDA, whose kernels (ours and cuBLAS's) load on first
 * launch, which the first prompt would otherwise pay. */
bool sp_cli_llm_warmup_wanted(sp_runtime_t *rt);
int sp_cli_bench_decode(int argc, char **argv);

/* `samepage bench prefill` (cli_bench_prefill.c). */
int sp_cli_bench_prefill(int argc, char **argv);

/* `samepage bench batch` (cli_bench_batch.c). */
int sp_cli_bench_batch(int argc, char **argv);


/* The value in kB of `key:` in a /proc file such as /proc/self/status;
 * -1 when absent. */
long sp_cli_proc_kb(const char *file, const char *key);

/* Parses "512M", "4G", "65536" (bytes) into *out; 0 on success. */
int sp_cli_parse_size(const char *text, uint64_t *out);

/* Parses --timeout SECONDS ("2", "0.5") into milliseconds; 0 on success. */
int sp_cli_parse_timeout(const char *text, uint32_t *ms);

/* The exit code of a failure, by its kind (sp_error_kind): a time limit
 * 124, a trap 134, anything else `otherwise`. */
int sp_cli_exit_code(const sp_error_t *err, int otherwise);

#endif
