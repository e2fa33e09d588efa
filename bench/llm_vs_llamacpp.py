#!/usr/bin/env python3
"""Side-by-side CPU benchmark: samepage vs llama.cpp on the same GGUF, same
prompt, same thread count, in one run. Prints JSON (--json) or a table with
the ratios (samepage / llama.cpp; > 1 means samepage is faster).

llama.cpp is used through an installed llama-cpp-python (see
tools/reference/README.md); this script does not build it. Both run greedy
decoding; llama.cpp's per-token cost here includes a Python call and an
argmax over the logits (about 0.1 ms), which we state next to the numbers.

usage: bench/llm_vs_llamacpp.py --samepage build/samepage --model M.gguf
           [--threads 2] [--prompt-tokens 256] [--gen 128] [--reps 3] [--json]
"""
import argparse, json, statistics, subprocess, sys, time

TEXT = ("The lighthouse stood at the edge of the world, and for two hundred years "
        "a keeper climbed its stairs every evening to light the lamp. ")


def prompt_text(llm, n_tokens):
    text = TEXT
    while len(llm.tokenize(text.encode(), add_bos=False, special=False)) < n_tokens:
        text += TEXT
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)[:n_tokens]
    return llm.detokenize(ids).decode("utf-8", "ignore")


def run_llamacpp(llm, text, n_gen):
    ids = llm.tokenize(text.encode(), add_bos=False, special=False)
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    for _ in range(n_gen):
        llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])
    t2 = time.perf_counter()
    return {"prompt_tokens": len(ids), "prefill_tok_s": len(ids) / (t1 - t0), "decode_tok_s": n_gen / (t2 - t1)}


def run_samepage(binary, model, text, n_gen, threads):
    out = subprocess.run([binary, "run", "--model", model, "--raw", "--json", "--temp", "0", "--repeat-penalty", "1", "--threads", str(threads),
                          "-n", str(n_gen), "--ctx", "2048", "--batch", "512", "-p", text],
                         capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"prompt_tokens": r["prompt_tokens"], "prefill_tok_s": r["prefill_tok_s"],
            "decode_tok_s": r["decode_tok_s"], "generated": r["generated_tokens"]}


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samepage", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from llama_cpp import Llama, __version__ as lcp_version
    llm = Llama(a.model, n_ctx=2048, n_batch=512, n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
    text = prompt_text(llm, a.prompt_tokens)
    sp_rows, lc_rows = [], []
    for _ in range(a.reps):  # interleaved, so drift hits both alike
        sp_rows.append(run_samepage(a.samepage, a.model, text, a.gen, a.threads))
        lc_rows.append(run_llamacpp(llm, text, a.gen))
    res = {"bench": "llm_cpu", "model": a.model, "threads": a.threads, "reps": a.reps,
           "llama_cpp_python": lcp_version, "prompt_tokens": sp_rows[0]["prompt_tokens"],
           "gen_tokens": a.gen,
           "samepage": {"prefill_tok_s": median(sp_rows, "prefill_tok_s"), "decode_tok_s": median(sp_rows, "decode_tok_s")},
           "llama_cpp": {"prefill_tok_s": median(lc_rows, "prefill_tok_s"), "decode_tok_s": median(lc_rows, "decode_tok_s")}}
    res["ratio_prefill"] = res["samepage"]["prefill_tok_s"] / res["llama_cpp"]["prefill_tok_s"]
    res["ratio_decode"] = res["samepage"]["decode_tok_s"] / res["llama_cpp"]["decode_tok_s"]
    if a.json:
        print(json.dumps(res))
        return
    print(f"model {a.model}, {a.threads} threads, prompt {res['prompt_tokens']} tokens, "
          f"{a.gen} generated, median of {a.reps}")
    print(f"{'':10} {'samepage':>12} {'llama.cpp':>12} {'ratio':>7}")
    for k, label in (("prefill_tok_s", "prefill"), ("decode_tok_s", "decode")):
        s, l = res["samepage"][k], res["llama_cpp"][k]
        print(f"{label:10} {s:9.1f} t/s {l:9.1f} t/s {s / l:6.2f}x")


if __name__ == "__main__":
    sys.exit(main())
