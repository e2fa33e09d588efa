/* cli.h: the subcommands of the `samepage` command and their shared helpers. */
#ifndef SP_CLI_H
#define SP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes of samepage itself; a guest's own exit code passes through
 * (`exec`). Every failure exits non-zero (README.md, "The CLI"). */
#define SP_EXIT_FAILED 1    /* the command ran but failed: a refused model, a failed turn */
#define SP_EXIT_USAGE 2     /* bad command line */
#define SP_EXIT_RUNTIME 125 /* samepage failed before or outside the guest */
#define SP_EXIT_TRAP 134    /* the guest trapped */
#define SP_EXIT_TIMEOUT 124 /* the guest ran past --timeout */
#define SP_EXIT_INTERRUPTED 130 /* stopped by SIGINT (Ctrl-C), 128 + 2 */

int sp_cli_exec(int argc, char **argv);
int sp_cli_run(int argc, char **argv);
int sp_cli_kv(int argc, char **argv);
int sp_cli_bench(int argc, char **argv);

/* The default model's path ($SAMEPAGE_MODEL, else the fetch cache). */
const char *sp_cli_default_model(void);

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
sp_error_t *sp_cli_llm_prefill(sp_actor_t *a, int n, double *ms);

/* `samepage bench prefill` (cli_bench_prefill.c). */
int sp_cli_bench_prefill(int argc, char **argv);


/* The value in kB of `key:` in a /proc file such as /proc/self/status;
 * -1 when absent. */
long sp_cli_proc_kb(const char *file, const char *key);

/* Parses "512M", "4G", "65536" (bytes) into *out; 0 on success. */
int sp_cli_parse_size(const char *text, uint64_t *out);

/* Parses --timeout SECONDS ("2", "0.5") into milliseconds; 0 on success. */
int sp_cli_parse_timeout(const char *text, uint32_t *ms);

/* Whether an error is a guest stopped by its time limit (actor_limits.c). */
bool sp_cli_is_timeout(const sp_error_t *err);

#endif
