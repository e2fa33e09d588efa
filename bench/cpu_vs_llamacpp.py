#!/usr/bin/env python3
"""CPU benchmark: samepage against native llama.cpp (llama-bench), side by side.

What it measures, on one GGUF file, one machine, one thread count:
  * decode tok/s (128 greedy tokens) at context depths ~0, 266, 630, 2048
    samepage: `samepage run --raw -n 128 --temp 0 --repeat-penalty 1
              --backend cpu --threads T --json -p PROMPT`, PROMPT being a
              paragraph repeated until it tokenizes to about DEPTH tokens
              (two short `-n 0` runs calibrate tokens per word); the depth
              actually used is the prompt_tokens samepage reports.
    llama.cpp: `llama-bench -p 0 -n 128 -d DEPTH -t T -r 1 -o json`, with
              DEPTH = samepage's prompt_tokens (0 for the ~0 row).
  * decode with samepage's default sampler chain (temp 0.8, top-k 40,
    top-p 0.95, min-p 0.05, repeat-penalty 1.1) at depth ~0. llama-bench
    does not sample: its column there is the same greedy tg128 run.
  * prefill of 256 tokens: `samepage bench prefill --tokens 256 --runs 3
    --backend cpu --json` (warm median of its runs; it has no --threads
    flag and uses every online CPU) against `llama-bench -p 256 -n 0`.
Runs are INTERLEAVED (samepage, then llama.cpp, repeated --runs times) so
drift on a shared machine hits both alike; each figure is the median of the
runs, and every raw sample is kept in the JSON.

Output: one JSON object on the first line of stdout, then a table with the
ratios samepage / llama.cpp (> 1: samepage is faster). Progress on stderr.

llama-bench is built natively by scripts/build-llamacpp.sh (from the pinned
llama-cpp-python sdist) unless --llama-bench is given. Python 3 stdlib only.

usage: bench/cpu_vs_llamacpp.py [--model M.gguf] [--threads 2] [--runs 3]
           [--depths 0,266,630,2048] [--samepage build/samepage]
           [--llama-bench BIN] [--simd generic|avx2|avx512] [--quick]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_GEN = 128
PREFILL_TOKENS = 256
SHORT_PROMPT = "Once upon a time"
PARAGRAPH = (
    "The lighthouse stood at the edge of the world, and for two hundred years "
    "a keeper climbed its stairs every evening to light the lamp. Ships passed "
    "in the dark water below, their crews trusting the steady beam to guide "
    "them home through storms, fog and the long winter nights, while the "
    "keeper wrote the weather, the wind and the names of the vessels in a "
    "heavy leather book that nobody else would ever read."
)
WORDS = PARAGRAPH.split()
TIMEOUT_S = 3600


def log(msg):
    print(f"cpu_vs_llamacpp: {msg}", file=sys.stderr, flush=True)


def run_cmd(cmd, env=None):
    """Runs cmd; returns (stdout, seconds). Raises RuntimeError on failure."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, env=env, timeout=TIMEOUT_S)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        tail = p.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{os.path.basename(cmd[0])} exited {p.returncode}: " + " | ".join(tail))
    # The generated text (samepage's JSON "text") may hold a token that
    # splits a UTF-8 sequence: decode leniently, the figures are ASCII.
    return p.stdout.decode("utf-8", "replace"), dt


def last_json_object(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON object in the output")


# ---- samepage ----

class Samepage:
    def __init__(self, binary, model, threads, env):
        self.binary, self.model, self.threads, self.env = binary, model, threads, env

    def run(self, prompt, n, greedy=True, seed=None):
        cmd = [self.binary, "run", "--model", self.model, "--raw", "-n", str(n), "--backend", "cpu",
               "--threads", str(self.threads), "--ctx", "4096", "--batch", "512", "--json"]
        if greedy:
            cmd += ["--temp", "0", "--repeat-penalty", "1"]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        cmd += ["-p", prompt]
        out, wall = run_cmd(cmd, self.env)
        r = last_json_object(out)
        return {"prompt_tokens": r["prompt_tokens"], "generated_tokens": r["generated_tokens"],
                "decode_tok_s": r["decode_tok_s"], "decode_ms": r["decode_ms"],
                "prefill_tok_s": r["prefill_tok_s"], "load_ms": r["load_ms"], "backend": r.get("backend"),
                "wall_s": round(wall, 3)}

    def prompt_tokens(self, prompt):
        return self.run(prompt, 0)["prompt_tokens"]

    def prefill(self, tokens):
        cmd = [self.binary, "bench", "prefill", "--tokens", str(tokens), "--runs", "3", "--backend", "cpu",
               "--json", "--model", self.model]
        out, wall = run_cmd(cmd, self.env)
        r = last_json_object(out)
        return {"tok_s": r["warm_tok_s"], "warm_ms": r["warm_ms"], "cold_tok_s": r["cold_tok_s"],
                "runs_ms": r["runs_ms"], "batch": r.get("batch"), "backend": r.get("backend"),
                "wall_s": round(wall, 3)}


def words_prompt(n_words):
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words))


def calibrate(sp):
    """Tokens per word of PARAGRAPH and the fixed overhead (BOS), from two
    prefill-only runs: one and two copies of the paragraph."""
    w = len(WORDS)
    t1 = sp.prompt_tokens(words_prompt(w))
    t2 = sp.prompt_tokens(words_prompt(2 * w))
    per_word = (t2 - t1) / w
    overhead = t1 - (t2 - t1)
    return {"words_per_paragraph": w, "tokens_1x": t1, "tokens_2x": t2,
            "tokens_per_word": per_word, "overhead_tokens": overhead}


def depth_prompt(target, cal):
    if target <= 0:
        return SHORT_PROMPT
    n_words = max(1, round((target - cal["overhead_tokens"]) / cal["tokens_per_word"]))
    return words_prompt(n_words)


# ---- llama.cpp ----

def llama_bench(binary, model, threads, n_prompt, n_gen, depth):
    cmd = [binary, "-m", model, "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen),
           "-d", str(depth), "-r", "1", "-o", "json"]
    out, wall = run_cmd(cmd)
    rows = json.loads(out)
    if not rows:
        raise RuntimeError("llama-bench printed no result")
    r = rows[0]
    return {"tok_s": r["avg_ts"], "samples_ts": r.get("samples_ts"), "samples_ns": r.get("samples_ns"),
            "n_prompt": r.get("n_prompt"), "n_gen": r.get("n_gen"), "n_depth": r.get("n_depth"),
            "wall_s": round(wall, 3)}, r


def llama_info(row):
    keys = ["build_commit", "build_number", "cpu_info", "backends", "model_type", "model_size",
            "model_n_params", "n_threads", "n_batch", "n_ubatch", "flash_attn", "type_k", "type_v"]
    return {k: row[k] for k in keys if k in row}


def find_llama_bench(arg):
    if arg:
        return arg
    script = os.path.join(ROOT, "scripts", "build-llamacpp.sh")
    log(f"building/locating the llama.cpp peer with {script}")
    p = subprocess.run([script], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"cpu_vs_llamacpp: {script} failed")
    return os.path.join(p.stdout.strip().splitlines()[-1], "llama-bench")


def default_model():
    p = subprocess.run([os.path.join(ROOT, "scripts", "fetch-model.sh")], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit("cpu_vs_llamacpp: scripts/fetch-model.sh failed; pass --model")
    return p.stdout.strip().splitlines()[-1]


def machine_info():
    cpu, flags = "", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    simd = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16")
            if f in flags]
    return {"cpu": cpu, "cpus_online": os.cpu_count(), "simd_flags": simd, "kernel": platform.release()}


def git_commit():
    try:
        c = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return c + ("-dirty" if dirty else "")
    except OSError:
        return None


# ---- figures ----

def summarize(fig):
    sp = [s["decode_tok_s"] if "decode_tok_s" in s else s["tok_s"] for s in fig["samepage_samples"]]
    lc = [s["tok_s"] for s in fig["llama_samples"]]
    fig["samepage_tok_s"] = round(statistics.median(sp), 2) if sp else None
    fig["llama_tok_s"] = round(statistics.median(lc), 2) if lc else None
    fig["ratio"] = (round(fig["samepage_tok_s"] / fig["llama_tok_s"], 3)
                    if fig["samepage_tok_s"] and fig["llama_tok_s"] else None)
    return fig


def interleave(fig, runs, sp_fn, lc_fn):
    """samepage run, then llama.cpp run, `runs` times. A failing side is
    recorded in fig["errors"] and not retried."""
    fig.setdefault("samepage_samples", [])
    fig.setdefault("llama_samples", [])
    fig.setdefault("errors", [])
    sp_ok = lc_ok = True
    for r in range(runs):
        if sp_ok:
            try:
                fig["samepage_samples"].append(sp_fn(r))
            except (RuntimeError, KeyError, ValueError, subprocess.TimeoutExpired) as e:
                fig["errors"].append(f"samepage: {e}")
                log(f"{fig['name']}: samepage failed: {e}")
                sp_ok = False
        if lc_ok:
            try:
                fig["llama_samples"].append(lc_fn(r))
            except (RuntimeError, KeyError, ValueError, subprocess.TimeoutExpired) as e:
                fig["errors"].append(f"llama.cpp: {e}")
                log(f"{fig['name']}: llama.cpp failed: {e}")
                lc_ok = False
        if fig["samepage_samples"] or fig["llama_samples"]:
            last_sp = fig["samepage_samples"][-1] if fig["samepage_samples"] else {}
            last_lc = fig["llama_samples"][-1] if fig["llama_samples"] else {}
            log(f"{fig['name']} run {r + 1}/{runs}: samepage "
                f"{last_sp.get('decode_tok_s', last_sp.get('tok_s', '-'))} tok/s, "
                f"llama.cpp {last_lc.get('tok_s', '-')} tok/s")
    if not fig["errors"]:
        del fig["errors"]
    return summarize(fig)


def main():
    ap = argparse.ArgumentParser(description="samepage vs native llama.cpp on the CPU (see the header).")
    ap.add_argument("--model", help="GGUF file (default: scripts/fetch-model.sh's SmolLM2-135M Q4_1)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3, help="interleaved repetitions per figure (median)")
    ap.add_argument("--depths", default="0,266,630,2048", help="decode context depths, comma-separated")
    ap.add_argument("--samepage", default=os.path.join(ROOT, "build", "samepage"))
    ap.add_argument("--llama-bench", help="llama-bench binary (default: scripts/build-llamacpp.sh builds it)")
    ap.add_argument("--simd", choices=["generic", "avx2", "avx512"], help="SP_CPU_SIMD for samepage's runs")
    ap.add_argument("--quick", action="store_true", help="smoke check: --runs 1, depths 0,266")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.depths = 1, "0,266"
    depths = [int(d) for d in a.depths.split(",") if d.strip()]
    if a.runs < 1 or a.threads < 1 or any(d < 0 for d in depths):
        sys.exit("cpu_vs_llamacpp: --runs and --threads must be >= 1, depths >= 0")
    model = os.path.abspath(a.model) if a.model else default_model()
    if not os.access(a.samepage, os.X_OK):
        sys.exit(f"cpu_vs_llamacpp: {a.samepage} is not executable (build samepage, or pass --samepage)")
    lb = find_llama_bench(a.llama_bench)
    if not os.access(lb, os.X_OK):
        sys.exit(f"cpu_vs_llamacpp: {lb} is not executable")
    max_ctx = max(depths + [0]) + N_GEN
    if max_ctx > 4096:
        sys.exit("cpu_vs_llamacpp: depths above 3968 need a larger --ctx than this driver passes (4096)")

    env = dict(os.environ)
    env.pop("SP_ISOLATION", None)  # in-process, as llama-bench
    if a.simd:
        env["SP_CPU_SIMD"] = a.simd
    sp = Samepage(a.samepage, model, a.threads, env)
    started = time.time()
    res = {
        "bench": "cpu_vs_llamacpp",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": model, "model_bytes": os.path.getsize(model),
        "threads": a.threads, "runs": a.runs, "quick": a.quick, "n_gen": N_GEN,
        "simd": env.get("SP_CPU_SIMD", "auto"),
        "machine": machine_info(),
        "samepage": {"binary": os.path.abspath(a.samepage), "commit": git_commit(), "backend": "cpu",
                     "prefill_threads": os.cpu_count()},
        "llama_cpp": {"binary": os.path.abspath(lb), "source": "llama-cpp-python 0.3.36 sdist, vendor/llama.cpp"},
        "notes": [
            "ratio = samepage / llama.cpp (> 1: samepage faster); medians of interleaved runs",
            "decode rows: samepage greedy (--temp 0 --repeat-penalty 1) vs llama-bench tg128 at the same depth",
            "decode_sampled: samepage's default sampler chain; llama-bench does not sample, so its column is greedy tg128",
            "prefill: samepage bench prefill has no --threads flag and uses every online CPU "
            f"({os.cpu_count()}); llama-bench uses -t {a.threads}",
        ],
        "figures": [],
    }
    if a.threads != os.cpu_count():
        log(f"warning: samepage bench prefill uses {os.cpu_count()} threads, llama-bench {a.threads}")

    log(f"model {model}, {a.threads} threads, {a.runs} runs, depths {depths}, simd {res['simd']}")
    cal = calibrate(sp) if any(d > 0 for d in depths) else None
    res["prompt_calibration"] = cal
    if cal:
        log(f"calibration: {cal['tokens_per_word']:.3f} tokens/word, overhead {cal['overhead_tokens']} tokens")

    llama_row = None

    def lc_decode(depth_ref):
        def f(_r):
            nonlocal llama_row
            s, row = llama_bench(lb, model, a.threads, 0, N_GEN, depth_ref())
            llama_row = llama_row or row
            return s
        return f

    # 1. Greedy decode at each depth.
    for target in depths:
        prompt = depth_prompt(target, cal)
        fig = {"name": f"decode_d{target}", "kind": "decode", "sampling": "greedy", "target_depth": target,
               "prompt_words": len(prompt.split())}

        def sp_fn(_r, prompt=prompt, fig=fig):
            s = sp.run(prompt, N_GEN, greedy=True)
            fig.setdefault("samepage_depth", s["prompt_tokens"])
            if s["generated_tokens"] < N_GEN:
                log(f"{fig['name']}: samepage stopped after {s['generated_tokens']} tokens (end of text)")
            return s

        def depth_ref(fig=fig, target=target):
            # llama.cpp at samepage's actual depth (0 for the ~0 row).
            return fig.get("samepage_depth", target) if target > 0 else 0

        interleave(fig, a.runs, sp_fn, lc_decode(depth_ref))
        fig["llama_depth"] = depth_ref()
        res["figures"].append(fig)

    # 2. Default sampler chain at depth ~0 (llama-bench: greedy only).
    fig = {"name": "decode_sampled_d0", "kind": "decode", "sampling": "samepage defaults; llama.cpp greedy",
           "target_depth": 0, "llama_depth": 0}

    def sp_sampled(r, fig=fig):
        s = sp.run(SHORT_PROMPT, N_GEN, greedy=False, seed=1000 + r)
        s["seed"] = 1000 + r
        fig.setdefault("samepage_depth", s["prompt_tokens"])
        if s["generated_tokens"] < N_GEN:
            log(f"{fig['name']}: samepage stopped after {s['generated_tokens']} tokens (end of text)")
        return s

    interleave(fig, a.runs, sp_sampled, lc_decode(lambda: 0))
    res["figures"].append(fig)

    # 3. Prefill of 256 tokens.
    fig = {"name": f"prefill_{PREFILL_TOKENS}", "kind": "prefill", "tokens": PREFILL_TOKENS}

    def lc_prefill(_r):
        s, _row = llama_bench(lb, model, a.threads, PREFILL_TOKENS, 0, 0)
        return s

    interleave(fig, a.runs, lambda _r: sp.prefill(PREFILL_TOKENS), lc_prefill)
    res["figures"].append(fig)

    if llama_row:
        res["llama_cpp"].update(llama_info(llama_row))
    res["elapsed_s"] = round(time.time() - started, 1)
    print(json.dumps(res), flush=True)
    print_table(res)


def print_table(res):
    m = res["machine"]
    lc = res["llama_cpp"]
    print()
    fa = {-1: "auto", 0: "off", 1: "on"}.get(lc.get("flash_attn"), lc.get("flash_attn", "?"))
    print(f"samepage {res['samepage']['commit']} vs llama.cpp {lc.get('build_commit', '?')} "
          f"(llama-bench, flash_attn {fa}), CPU")
    print(f"model {os.path.basename(res['model'])} ({res['model_bytes'] / 1e6:.0f} MB), "
          f"{res['threads']} threads, {m['cpu']} ({m['cpus_online']} CPUs), samepage SIMD {res['simd']}, "
          f"median of {res['runs']} interleaved run(s)")
    hdr = f"{'figure':<20} {'depth sp/llama':>15} {'samepage tok/s':>15} {'llama.cpp tok/s':>16} {'ratio':>7}"
    print(hdr)
    print("-" * len(hdr))
    for f in res["figures"]:
        if f["kind"] == "prefill":
            depth = "-"
            name = f"prefill {f['tokens']}"
        else:
            depth = f"{f.get('samepage_depth', '?')}/{f.get('llama_depth', '?')}"
            name = "decode, sampled*" if "sampled" in f["name"] else "decode, greedy"
        sp = f"{f['samepage_tok_s']:.1f}" if f.get("samepage_tok_s") else "failed"
        ll = f"{f['llama_tok_s']:.1f}" if f.get("llama_tok_s") else "failed"
        ratio = f"{f['ratio']:.2f}x" if f.get("ratio") else "-"
        print(f"{name:<20} {depth:>15} {sp:>15} {ll:>16} {ratio:>7}")
    print("ratio = samepage / llama.cpp (> 1: samepage faster). Decode: 128 tokens after the given depth.")
    print("* samepage's default sampler chain; llama-bench does not sample (its column is greedy tg128).")
    print(f"prefill: samepage bench prefill uses all {res['samepage']['prefill_threads']} online CPUs "
          f"(no --threads flag); llama-bench -t {res['threads']}.")
    for f in res["figures"]:
        for e in f.get("errors", []):
            print(f"error in {f['name']}: {e}")


if __name__ == "__main__":
    main()
