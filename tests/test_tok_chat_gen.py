#!/usr/bin/env python3
"""Renders tests/fixtures/chat_llamacpp.txt: the prompt text each chat family's
template gives two conversations, for tests/test_tok_chat.c to compare the
guest's chat.c with.

    python3 tests/test_tok_chat_gen.py [LLAMA_CPP_DIR] > tests/fixtures/chat_llamacpp.txt

LLAMA_CPP_DIR is the vendored llama.cpp of the llama-cpp-python 0.3.36 sdist
(scripts/fetch-llama-vocab.sh prints its models/ folder). Templates come from
its vocab files' tokenizer.chat_template and its models/templates/*.jinja;
the plain Llama 3 one from its tests/test-chat-template.cpp. Rendering is
PyPI jinja2 (3.1) the way llama.cpp's Jinja path calls it: bos_token empty
(the guest adds BOS as a token id), add_generation_prompt true, and, where a
template ignores a system message (llama.cpp's capability probe), the system
text joined to the first user message with "\\n" (common/chat.cpp
system_message_not_supported).

Output: one line per case, tab-separated: family, conversation (A: system,
user, assistant, user; B: user), the template's source relative to
LLAMA_CPP_DIR (what the test detects the family from), and the expected text
with backslash, newline and tab escaped as \\\\, \\n, \\t.
"""
import os
import re
import sys

import jinja2

here = os.path.dirname(os.path.abspath(__file__))
root = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
    "~/.cache/samepage/llama.cpp-0.3.36/llama_cpp_python-0.3.36/vendor/llama.cpp")
sys.path.insert(0, os.path.join(root, "gguf-py"))
from gguf import GGUFReader  # noqa: E402  (the gguf-py of the same tree)

CONVERSATIONS = {
    "A": [{"role": "system", "content": "You are terse."},
          {"role": "user", "content": "Hi there"},
          {"role": "assistant", "content": "Hello! How can I help?"},
          {"role": "user", "content": "Name a color."}],
    "B": [{"role": "user", "content": "What is 2+2?"}],
}

# family, template source, and where the test reads the template when not
# from the same source (None: the same)
CASES = [
    ("chatml", "models/ggml-vocab-qwen2.gguf", None),
    ("llama3", "tests/test-chat-template.cpp#Llama-3", None),
    ("gemma", "models/templates/google-gemma-2-2b-it.jinja", None),
    ("gemma4", "models/ggml-vocab-gemma-4.gguf", None),
    ("phi3", "models/ggml-vocab-phi-3.gguf", None),
    ("phi3", "models/templates/microsoft-Phi-3.5-mini-instruct.jinja", None),
    ("phi3", "tests/test-chat-template.cpp#Phi-3-small", None),
    ("mistral", "models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja", None),
    ("mistral-v7", "models/templates/Mistral-Small-3.2-24B-Instruct-2506.jinja", None),
]


def template_of(src):
    if src.endswith(".gguf"):
        r = GGUFReader(os.path.join(root, src))
        return r.fields["tokenizer.chat_template"].contents()
    if "#" in src:  # the "Llama-3" case of llama.cpp's chat template test
        path, name = src.split("#")
        text = open(os.path.join(root, path), encoding="utf-8").read()
        at = text.index('"%s"' % name)
        lit = re.search(r'template_str=\s*\*/\s*"((?:[^"\\]|\\.)*)"', text[at:]).group(1)
        return lit.encode().decode("unicode_escape")
    return open(os.path.join(root, src), encoding="utf-8").read()


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def render(tmpl, messages):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: "2026-01-01"
    return env.from_string(tmpl).render(messages=messages, add_generation_prompt=True,
                                        bos_token="", eos_token="</s>")


def supports_system(tmpl):
    """llama.cpp's probe: is the system content used at all?"""
    try:
        out = render(tmpl, [{"role": "system", "content": "System message"},
                            {"role": "user", "content": "User message"}])
    except jinja2.exceptions.TemplateError:
        return False
    return "System message" in out


def polyfill(messages):
    if messages and messages[0]["role"] == "system" and len(messages) > 1:
        first = dict(messages[1])
        first["content"] = messages[0]["content"] + "\n" + first["content"]
        return [first] + messages[2:]
    return messages


def escape(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def main():
    print("# chat prompts as llama.cpp's Jinja path renders them; made by tests/test_tok_chat_gen.py")
    for family, src, detect in CASES:
        tmpl = template_of(src)
        sys_ok = supports_system(tmpl)
        for conv, messages in CONVERSATIONS.items():
            # Mistral Small 3.2's default system prompt embeds today's date:
            # not a constant, so the guest does not take it (chat.c).
            if conv == "B" and family == "mistral-v7":
                continue
            out = render(tmpl, messages if sys_ok else polyfill(messages))
            print("\t".join([family, conv, detect or src, escape(out)]))


if __name__ == "__main__":
    main()
