#!/usr/bin/env python3
"""Cross-checks the guest's hand-written pre-tokenizers against the regexes
llama.cpp uses for them, evaluated by Python's `regex` module (which has
\\p{L}, \\p{N}, lookahead and PCRE alternation semantics).

    python3 tests/llm/check_pretok.py PATH/TO/tok_dump [SEED]

Random texts are drawn from a pool of tricky pieces (contractions in both
cases, digits of several scripts, combining marks, white space of every
kind, CR/LF, emoji, punctuation and symbols). Both sides split each text;
any difference is printed. \\s is spelled out as Unicode White_Space, which
is what llama.cpp uses; `regex`'s own \\s also matches U+001C..U+001F.
Characters newer than the Python's Unicode version are avoided.
"""
import random
import subprocess
import sys

import regex

WS = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
S, NS = f"[{WS}]", f"[^{WS}]"
GPT2 = rf"'s|'t|'re|'ve|'m|'ll|'d| ?\p{{L}}+| ?\p{{N}}+| ?[^{WS}\p{{L}}\p{{N}}]+|{S}+(?!{NS})|{S}+"
CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"


def llama3(numbers):
    return (rf"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|{numbers}"
            rf"| ?[^{WS}\p{{L}}\p{{N}}]+[\r\n]*|{S}*[\r\n]+|{S}+(?!{NS})|{S}+")


# name: (tok_split_pass list for tok_dump, llama.cpp's regex list)
PRE = {
    "smollm": ("1,6", [r"\p{N}", GPT2]),
    "gpt2": ("6", [GPT2]),
    "llama3": ("7", [llama3(r"\p{N}{1,3}")]),
    "qwen2": ("8", [llama3(r"\p{N}")]),
    "default": ("3,6,2,5", [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"]),
    "falcon": ("4,6,5", [r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"]),
}

POOL = ["a", "b", "Z", "e\u0301", "é", "ß", "ñ", "Ω", "ж", "中", "文", "ア", "한", "١", "٢", "²",
        "½", "Ⅻ", "0", "1", "7", "9", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000",
        "\u2009", "\u200b", "\x1c", "\x85", "'", "'s", "'S", "'re", "'LL", "'d", "'x", "!", "?",
        ".", ",", "$", "+", "<", "=", "^", "`", "~", "|", "-", "_", "(", ")", "«", "»", "—", "…",
        "€", "©", "😀", "👍🏽", "\u200d", "\ufe0f", "\U0001D400", "\x01", "\x7f", "#", "%", "&",
        "*", "/", ":", ";", "@", "[", "\\", "]", "{", "}"]


def reference(text, patterns):
    """llama.cpp's semantics: each regex splits every piece into its matches
    and the gaps between them."""
    pieces = [text] if text else []
    for pat in patterns:
        out = []
        for piece in pieces:
            last = 0
            for m in regex.finditer(pat, piece):
                if m.start() > last:
                    out.append(piece[last:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                last = m.end()
            if last < len(piece):
                out.append(piece[last:])
        pieces = out
    return pieces


def main():
    tool = sys.argv[1]
    random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    texts = ["".join(random.choice(POOL) for _ in range(random.randint(0, 30)))
             for _ in range(4000)]
    failures = 0
    for name, (passes, patterns) in PRE.items():
        data = "\x1e".join(texts).encode()
        lines = subprocess.run([tool, "split", passes], input=data, capture_output=True,
                               check=True).stdout.decode().split("\n")
        bad = 0
        for text, line in zip(texts, lines):
            ours = [bytes.fromhex(h).decode() for h in line.split()]
            ref = reference(text, patterns)
            if ours != ref:
                bad += 1
                if bad <= 3:
                    print(f"{name}: {text!r}\n  ours {ours}\n  ref  {ref}")
        print(f"{name}: {len(texts) - bad}/{len(texts)} texts split identically")
        failures += bad
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
