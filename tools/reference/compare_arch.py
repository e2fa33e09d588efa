#!/usr/bin/env python3
"""compare_arch.py: samepage's logits against llama.cpp's, per architecture.

For each case (a tools/synth_gguf preset shrunk to 2 layers, in some weight
type, maybe with edited metadata) this writes the file, runs it through the
LLM guest (tests/test_arch run ... LOGITS_OUT: 48 fixed token ids, logits
kept at every position) and through llama.cpp (llama-cpp-python over a
shared libllama, same ids, n_ctx 256 as the guest), then compares (with
--weights: the weight-type cases, one architecture in every type):

  - argmax at every position where llama.cpp's top-1/top-2 margin is clear
    (>= NEAR_TIE, the rule of tests/test_llm_greedy.c): must be equal;
  - the largest absolute logit difference, which must stay below
    MAX_DIFF (the random models' logits have std ~0.5; a wrong RoPE mode,
    norm or scale moves them by tenths or more, summation order and the f16
    KV cache by thousandths). Quantized weights get MAX_DIFF_QUANT: llama.cpp
    rounds the activations to 8 bits before a quantized matmul (its vec_dot
    types), which alone moves logits by 0.02 to 0.14 here; a wrong
    dequantization moves them by 1 or more.

Exit status: 0 all agree, 1 a disagreement, 77 llama_cpp cannot be imported
(the CTest test_arch_llamacpp is then skipped).

Usage: compare_arch.py --synth SYNTH --test-arch TEST_ARCH --guest-dir DIR
                       --out DIR [--llama-lib DIR] [--llama-py DIR]
                       [--only NAME,...] [--weights] [--model GGUF]...
The library defaults to $LLAMA_CPP_LIB_PATH or the shared build in
~/.cache/samepage/llama.cpp-0.3.36/build-shared/bin, the Python package
to the llama_cpp_python-0.3.36 source beside it (see README.md here).
"""
import argparse
import os
import subprocess
import sys
import types

NEAR_TIE = 0.25
MAX_DIFF = 0.01
MAX_DIFF_QUANT = 0.3
N_PROMPT = 48  # as tests/test_arch.c
# the model cache's llama.cpp peer, as scripts/fetch-model.sh finds the cache
REF = os.path.join(os.environ.get("SAMEPAGE_CACHE")
                   or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "samepage"),
                   "llama.cpp-0.3.36")

SMALL = ["--layers", "2", "--vocab", "2048"]
NARROW = ["--embd", "256", "--ff", "512", "--heads", "8"]
# name, preset, type, extra synth flags, metadata edits (test_arch_gguf_edit.py)
CASES = [
    ("qwen2-q8_0", "qwen2.5-0.5b", "q8_0", [], []),
    ("qwen2-f32", "qwen2.5-0.5b", "f32", [], []),
    ("qwen3-f16", "qwen3-0.6b", "f16", [], []),
    ("qwen3-q8_0", "qwen3-0.6b", "q8_0", [], []),
    ("gemma3-f32", "gemma-3-270m", "f32", [], []),
    ("gemma3-q8_0-window16", "gemma-3-270m", "q8_0", [],
     ["gemma3.attention.sliding_window=u32:16"]),
    ("gemma3-f32-default-pat", "gemma-3-270m", "f32", [],  # no pattern key: 6, so 2 local layers
     ["-gemma3.attention.sliding_window_pattern", "gemma3.attention.sliding_window=u32:16"]),
    ("gemma3-softcap", "gemma-3-270m", "f16", [],
     ["gemma3.final_logit_softcapping=f32:2.0"]),
    ("phi3-q8_0", "phi-3-mini", "q8_0", NARROW + ["--kv-heads", "8"], []),
    ("phi3-f32-longctx", "phi-3-mini", "f32", NARROW + ["--kv-heads", "8", "--ctx", "8192"],
     ["phi3.rope.scaling.original_context_length=u32:128"]),
    ("mistral-f16", "mistral-7b", "f16", NARROW + ["--kv-heads", "2"], []),
    ("llama-q8_0", "smollm2-135m", "q8_0", [], []),
]
WEIGHT_CASES = [
    # The weight types of issue 15 (K-quants, Q5_x, IQ4_x; q4_k_m mixes
    # Q4_K, Q6_K and, for qwen2's 896-wide rows, Q5_0/Q8_0).
    ("qwen2-q4_k_m", "qwen2.5-0.5b", "q4_k_m", [], []),
    ("gemma3-q4_k_m", "gemma-3-270m", "q4_k_m", [], []),
    ("phi3-q4_k_m", "phi-3-mini", "q4_k_m", NARROW + ["--kv-heads", "8"], []),
] + [("qwen3-" + t, "qwen3-0.6b", t, [], [])
     for t in ("q4_k_m", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q5_0", "q5_1", "iq4_nl", "iq4_xs")]


def reexec_with_library(args):
    """ld.so reads LD_LIBRARY_PATH once, at start: run again with it set, so
    libllama finds libggml*.so beside it."""
    lib = args.llama_lib
    if os.environ.get("_COMPARE_ARCH_REEXEC") == lib:
        return
    env = dict(os.environ, _COMPARE_ARCH_REEXEC=lib, LLAMA_CPP_LIB_PATH=lib)
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env["PYTHONPATH"] = args.llama_py + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def import_llama():
    # llama_cpp imports diskcache for its optional prompt cache only.
    try:
        import diskcache  # noqa: F401
    except ImportError:
        stub = types.ModuleType("diskcache")
        stub.Cache = object
        sys.modules["diskcache"] = stub
    try:
        import numpy  # noqa: F401
        from llama_cpp import Llama
        return Llama
    except Exception as e:  # a missing library raises OSError, FileNotFoundError...
        print("SKIP: cannot import llama_cpp (%s: %s)" % (type(e).__name__, e))
        sys.exit(77)


def make_model(args, name, preset, wtype, extra, edits):
    path = os.path.join(args.out, name + ".gguf")
    cmd = [args.synth, "--out", path, "--preset", preset, "--type", wtype] + SMALL + extra
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    if edits:
        editor = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "test_arch_gguf_edit.py")
        subprocess.run([sys.executable, editor, path, path + ".edit"] + edits, check=True)
        os.replace(path + ".edit", path)
    return path


def samepage_logits(args, model, np, ids_file=None):
    dump = os.path.join(args.out, os.path.basename(model) + ".logits")
    cmd = [args.test_arch, "run", args.guest_dir, model, dump] + ([ids_file] if ids_file else [])
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout + run.stderr)
        return None, None
    raw = open(dump, "rb").read()
    ids = np.frombuffer(raw[: 4 * N_PROMPT], dtype=np.int32)
    logits = np.frombuffer(raw[4 * N_PROMPT:], dtype=np.float32).reshape(N_PROMPT, -1)
    return ids, logits


def llama_logits(Llama, model, ids, np):
    llm = Llama(model_path=model, n_ctx=256, n_batch=64, n_threads=1, logits_all=True, verbose=False, seed=1234)
    llm.eval([int(i) for i in ids])
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


TEXT = (b"The river rose slowly through the night, and by morning the village had moved its "
        b"boats up to the church steps. Nobody was surprised: it happened every spring, and "
        b"the old men said it had happened since before the bridge was built.")


def real_text_ids(Llama, model, out, np):
    """A real model is compared on real text (random ids make a chaotic
    context whose logits amplify every rounding): the first N_PROMPT ids of
    TEXT as llama.cpp tokenizes it, bos included."""
    llm = Llama(model_path=model, n_ctx=256, vocab_only=True, verbose=False)
    ids = llm.tokenize(TEXT + b" " + TEXT, add_bos=True)[:N_PROMPT]
    assert len(ids) == N_PROMPT, "TEXT is too short for this tokenizer"
    path = os.path.join(out, os.path.basename(model) + ".ids")
    np.array(ids, dtype=np.int32).tofile(path)
    return path


def compare(name, ours, ref, np, max_diff):
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    clear = margin >= NEAR_TIE
    same = ours.argmax(axis=1) == ref.argmax(axis=1)
    diff = float(np.abs(ours - ref).max())
    bad_clear = int((clear & ~same).sum())
    ok = bad_clear == 0 and (max_diff is None or diff <= max_diff)
    for i in np.nonzero(clear & ~same)[0]:
        print("  position %d: llama.cpp argmax %d (margin %.3f), ours %d"
              % (i, int(ref[i].argmax()), float(margin[i]), int(ours[i].argmax())))
    print("%-22s argmax equal at %2d/%d positions, %2d/%2d clear (margin >= %.2f) differ; "
          "max |logit diff| %.5f (limit %s, logits std %.3f) %s"
          % (name, int(same.sum()), len(same), bad_clear, int(clear.sum()), NEAR_TIE, diff,
             "none" if max_diff is None else "%.2f" % max_diff, float(ref.std()), "ok" if ok else "FAIL"))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", required=True)
    ap.add_argument("--test-arch", required=True)
    ap.add_argument("--guest-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--llama-lib", default=os.environ.get("LLAMA_CPP_LIB_PATH", REF + "/build-shared/bin"))
    ap.add_argument("--llama-py", default=REF + "/llama_cpp_python-0.3.36")
    ap.add_argument("--only", default="")
    ap.add_argument("--model", action="append", default=[],
                    help="also compare this existing GGUF file (a real model: on real text, argmax rule only)")
    ap.add_argument("--weights", action="store_true",
                    help="the weight-type cases (K-quants, Q5_x, IQ4_x) instead of the architectures")
    args = ap.parse_args()
    reexec_with_library(args)
    Llama = import_llama()
    import numpy as np

    missing = [m for m in args.model if not os.path.exists(m)]
    if missing:
        print("SKIP: %s not found (scripts/fetch-model.sh fetches it)" % ", ".join(missing))
        return 77
    os.makedirs(args.out, exist_ok=True)
    only = set(filter(None, args.only.split(",")))
    failed = 0
    # Only the given files with --model, unless --only names cases too.
    cases = [] if args.model and not only else WEIGHT_CASES if args.weights else CASES
    for name, preset, wtype, extra, edits in cases:
        if only and name not in only:
            continue
        model = make_model(args, name, preset, wtype, extra, edits)
        ids, ours = samepage_logits(args, model, np)
        if ours is None:
            print("%-22s samepage failed" % name)
            failed += 1
            continue
        ref = llama_logits(Llama, model, ids, np)
        max_diff = MAX_DIFF if wtype in ("f32", "f16") else MAX_DIFF_QUANT
        failed += not compare(name, ours, ref, np, max_diff)
        os.remove(os.path.join(args.out, name + ".gguf.logits"))
    for model in args.model:
        ids_file = real_text_ids(Llama, model, args.out, np)
        ids, ours = samepage_logits(args, model, np, ids_file)
        if ours is None:
            print("%-20s samepage failed" % os.path.basename(model))
            failed += 1
            continue
        ref = llama_logits(Llama, model, ids, np)
        # A real model's logits (std ~5) amplify every rounding of its
        # quantized matmuls by more than any fixed limit; the argmax rule
        # of tests/test_llm_greedy.c is the criterion there.
        failed += not compare(os.path.basename(model)[:20], ours, ref, np, None)
        os.remove(os.path.join(args.out, os.path.basename(model) + ".logits"))
    print("%d case(s) disagree" % failed if failed else "all cases agree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
