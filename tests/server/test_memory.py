"""--max-memory: the live conversations' memory (each counted as its
snapshot's size: the pages its actor wrote) stays under the budget; the
least recently used idle ones go to disk and come back on demand, exactly
as they were; when the budget is held by conversations in use, a new one is
a 503 with Retry-After; a budget that cannot hold one conversation is
refused at start."""
import re
import subprocess

import pytest
import requests

from conftest import CTX, EXE, MODEL

QUESTIONS = ["What is a cat?", "What is the sea?", "What is a tree?"]


def chat(srv, messages, seed):
    r = requests.post(srv.url + "/v1/chat/completions", timeout=120,
                      json={"messages": messages, "max_tokens": 12, "seed": seed, "temperature": 0.8})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def follow_up(question, answer):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer},
            {"role": "user", "content": "Tell me more."}]


def fresh_bytes(srv):
    """What a new conversation counts, as the server said at start."""
    return int(re.search(r"a new conversation counts (\d+)", srv.log.read_text()).group(1))


def test_budget_evicts_lru_and_restores(make_server, tmp_path):
    # The uninterrupted run, and what one conversation counts after a turn.
    ref = make_server(tmp_path / "ref", "--max-memory", "64G")
    answers = [chat(ref, [{"role": "user", "content": q}], 10 + i) for i, q in enumerate(QUESTIONS)]
    again_ref = chat(ref, follow_up(QUESTIONS[0], answers[0]), 20)
    one = ref.metric("samepage_live_actor_bytes") / 3
    assert ref.metric('samepage_sessions{state="live"}') == 3 and one >= fresh_bytes(ref) > 0
    ref.stop()

    budget = int(one * 2.5)  # two conversations, not three
    srv = make_server(tmp_path / "s", "--max-memory", str(budget), "--max-live", "100")
    assert srv.metric("samepage_max_memory_bytes") == budget
    for i, q in enumerate(QUESTIONS):
        assert chat(srv, [{"role": "user", "content": q}], 10 + i) == answers[i]
        assert srv.metric("samepage_live_actor_bytes") <= budget
    assert srv.metric('samepage_sessions{state="live"}') == 2
    assert srv.metric('samepage_sessions{state="stored"}') == 1
    assert srv.metric("samepage_evictions_total") == 1
    # The first conversation, evicted, comes back as it was.
    assert chat(srv, follow_up(QUESTIONS[0], answers[0]), 20) == again_ref
    assert srv.metric("samepage_restores_total") == 1
    assert srv.metric("samepage_live_actor_bytes") <= budget
    assert srv.metric('samepage_sessions{state="live"}') <= 2


def test_budget_held_by_busy_conversations_is_503(make_server, tmp_path):
    probe = make_server(tmp_path / "probe", "--max-memory", "64G")
    budget = int(fresh_bytes(probe) * 1.5)  # one new conversation, not two
    probe.stop()
    srv = make_server(tmp_path / "s", "--max-memory", str(budget), "--max-live", "100")
    stream = requests.post(srv.url + "/v1/chat/completions", stream=True, timeout=60,
                           json={"messages": [{"role": "user", "content": "Tell a very long story."}],
                                 "max_tokens": 600, "stream": True, "seed": 1, "stop": ["never-ever"]})
    next(stream.iter_lines())  # the first chunk: its actor is live and busy
    r = requests.post(srv.url + "/v1/chat/completions", timeout=60,
                      json={"messages": [{"role": "user", "content": "another conversation"}], "max_tokens": 2})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
    err = r.json()["error"]
    assert err["code"] == "server_busy" and "--max-memory" in err["message"], err
    stream.close()


@pytest.mark.parametrize("args,says", [
    (["--max-memory", "1M"], "cannot hold one conversation"),
    (["--max-memory", "1G", "--no-sessions"], "--max-memory needs --sessions"),
])
def test_budget_refused_at_start(tmp_path, args, says):
    cmd = [EXE, "serve", "--model", MODEL, "--port", "0", "--backend", "cpu", "--ctx", str(CTX)]
    if "--no-sessions" in args:
        args = [a for a in args if a != "--no-sessions"]
    else:
        cmd += ["--sessions", str(tmp_path / "s")]
    p = subprocess.run(cmd + args, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and says in p.stderr, p.stderr
