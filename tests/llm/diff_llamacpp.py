#!/usr/bin/env python3
"""Differential test: the guest tokenizer against llama.cpp itself, on
thousands of random texts (and random invalid byte strings).

    /work/venv-ref/bin/python tests/llm/diff_llamacpp.py PATH/TO/tok_dump MODEL.gguf [SEED]

Needs llama-cpp-python (see tools/reference/README.md for the venv). Each
text is tokenized by both, with parse_special false and true; differences
are printed with both id lists. Byte strings with 0xF4..0xF7 are skipped:
they can decode to codepoints above U+10FFFF, on which llama.cpp aborts
(the guest turns them into U+FFFD instead).
"""
import random
import subprocess
import sys

import llama_cpp
from llama_cpp import Llama

POOL = ["a", "b", "Z", "the", " the", " and", "ing", "e\u0301", "é", "ß", "ñ", "Ω", "ж", "中", "文",
        "ア", "한", "١", "²", "½", "0", "1", "7", "9", "42", "2024", " ", "  ", "   ", "\t", "\n",
        "\n\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u200b", "'", "'s", "'S", "'re", "'LL", "'d",
        "n't", "!", "?", ".", ",", "$", "+", "<", "=", "^", "`", "~", "|", "-", "_", "(", ")", "«",
        "—", "…", "€", "©", "😀", "👍🏽", "\u200d", "\ufe0f", "\x01", "#", "%", "&", "*", "/", ":",
        ";", "@", "[", "\\", "]", "{", "}", "<|im_start|>", "<|im_end|>", "<|endoftext|>",
        "<repo_name>", "<|im_start", "|>", "def ", "return ", "http://", "www.", "Hello", "World",
        "HELLO", "ÇA", "über", "naïve", "日本語", "Привет", "مرحبا", "ꙮ", "\U0001F1EB\U0001F1F7"]


def llama_ids(vocab, data, special):
    cap = len(data) + 16
    arr = (llama_cpp.llama_token * cap)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), arr, cap, False, special)
    return list(arr[:n])


def main():
    tool, model = sys.argv[1], sys.argv[2]
    random.seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    texts = ["".join(random.choice(POOL) for _ in range(random.randint(0, 40))).encode()
             for _ in range(5000)]
    texts += [bytes(random.randrange(256) for _ in range(random.randint(1, 40)))
              for _ in range(1000)]
    texts = [t for t in texts if b"\x1e" not in t and not any(0xF4 <= b <= 0xF7 for b in t)]
    llm = Llama(model_path=model, vocab_only=True, verbose=False)  # keeps the vocab alive
    vocab = llm._model.vocab
    failures = 0
    for special in (0, 1):
        out = subprocess.run([tool, "ids", model, str(special)], input=b"\x1e".join(texts),
                             capture_output=True, check=True).stdout.decode().split("\n")
        bad = 0
        for text, line in zip(texts, out):
            ours = [int(x) for x in line.split()]
            ref = llama_ids(vocab, text, bool(special))
            if ours != ref:
                bad += 1
                if bad <= 5:
                    print(f"special={special} {text!r}\n  ours      {ours}\n  llama.cpp {ref}")
        print(f"parse_special={special}: {len(texts) - bad}/{len(texts)} texts tokenized identically")
        failures += bad
    llm.close()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
