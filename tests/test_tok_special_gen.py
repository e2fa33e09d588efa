#!/usr/bin/env python3
"""Renders tests/fixtures/tok_special_llamacpp.txt: llama.cpp's token ids for
texts full of special tokens (the chat prompts of
tests/fixtures/chat_llamacpp.txt and a few hand-made ones), tokenized by the
vocab-only files of scripts/fetch-llama-vocab.sh with add_special=false and
parse_special true and false, and llama.cpp's detokenization of those ids
(remove_special=false, unparse_special=false). tests/test_tok_vocab.c checks
the guest against it; this is where the SentencePiece space prefix after
special tokens and Phi-3's rstrip get compared.

    LD_LIBRARY_PATH=$LIB LLAMA_CPP_LIB_PATH=$LIB PYTHONPATH=$SDIST \\
      python3 tests/test_tok_special_gen.py MODELS_DIR > tests/fixtures/tok_special_llamacpp.txt

with LIB a shared libllama of llama.cpp 0.3.36 (tools/reference/README.md)
and SDIST the llama_cpp_python-0.3.36 source (its Python package).

Format: "T <n> <text>" gives text n; "I <vocab> <n> <parse_special> <ids>"
then a tab and the detokenized text. Texts escape backslash, newline, tab
and carriage return as \\\\, \\n, \\t, \\r.
"""
import ctypes
import os
import sys

import llama_cpp as L

VOCABS = ["qwen2", "llama-bpe", "gpt-2", "phi-3", "llama-spm", "gemma-4"]
EXTRA = [
    "<s>Hello</s>", " <|user|> x", "<start_of_turn>user\nHi<end_of_turn>\n",
    "<|im_start|>user\n  spaced  <|im_end|>", "<|turn>model\n<|channel>thought\n<channel|>ok",
    "a<|end|>b", "\n\n\n<|end|>\n", "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "[INST] Hi [/INST] there</s>", "<unk>", "<0x41> A", "<|user|>\t \n x <|end|>  y",
    "<|endoftext|> <s> </s> <eos> <bos>",
]


def unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def escape(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def texts():
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for line in open(os.path.join(here, "fixtures", "chat_llamacpp.txt"), encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        out.append(unescape(line.rstrip("\n").split("\t")[3]))
    return out + EXTRA


def main():
    models = sys.argv[1]
    L.llama_backend_init()
    ts = texts()
    print("# llama.cpp 0.3.36 ids for special-token texts; made by tests/test_tok_special_gen.py")
    for i, t in enumerate(ts):
        print("T %d %s" % (i, escape(t)))
    p = L.llama_model_default_params()
    p.vocab_only = True
    for name in VOCABS:
        m = L.llama_model_load_from_file(os.path.join(models, "ggml-vocab-%s.gguf" % name).encode(), p)
        v = L.llama_model_get_vocab(m)
        for i, t in enumerate(ts):
            raw = t.encode()
            for special in (True, False):
                buf = (L.llama_token * (len(raw) + 8))()
                n = L.llama_tokenize(v, raw, len(raw), buf, len(raw) + 8, False, special)
                ids = list(buf[:n])
                out = ctypes_detok(v, ids)
                print("I %s %d %d %s\t%s" % (name, i, int(special), " ".join(map(str, ids)), escape(out)))
        L.llama_model_free(m)


def ctypes_detok(v, ids):
    arr = (L.llama_token * max(len(ids), 1))(*ids)
    cap = 16 * len(ids) + 16
    buf = (ctypes.c_char * cap)()
    n = L.llama_detokenize(v, arr, len(ids), buf, cap, False, False)
    return bytes(buf[:n]).decode("utf-8", "replace")


if __name__ == "__main__":
    main()
