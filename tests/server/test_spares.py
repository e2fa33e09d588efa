"""--spare-actors: fresh actors made ahead by a background thread, so a new
conversation takes one instead of waiting while one is made. A conversation
on a spare answers exactly as on an actor made for it; the pool refills
itself; it stays within --max-memory; bad values are refused."""
import re
import subprocess
import time

import pytest

from conftest import CTX, EXE, MODEL

QUESTIONS = ["What is a cat?", "What is the sea?", "What is a tree?", "Why is snow white?"]


def chat(srv, question, seed):
    import requests
    r = requests.post(srv.url + "/v1/chat/completions", timeout=120,
                      json={"messages": [{"role": "user", "content": question}], "max_tokens": 10, "seed": seed,
                            "temperature": 0.8})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def wait_for(srv, name, value, seconds=60):
    """Polls /metrics until metric `name` reaches value; its last reading."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        got = srv.metric(name)
        if got is not None and got >= value:
            return got
        time.sleep(0.1)
    return srv.metric(name)


def test_conversations_on_spares_answer_as_on_new_actors(make_server, tmp_path):
    ref = make_server(None, "--spare-actors", "0", "--max-live", "2")
    answers = [chat(ref, q, 30 + i) for i, q in enumerate(QUESTIONS)]
    assert ref.metric("samepage_spare_actors") == 0 and ref.metric("samepage_spare_actors_made_total") == 0
    ref.stop()

    srv = make_server(None, "--spare-actors", "2", "--max-live", "2")
    assert wait_for(srv, "samepage_spare_actors", 2) == 2
    for i, q in enumerate(QUESTIONS):  # past --max-live: evictions too
        assert chat(srv, q, 30 + i) == answers[i]
        # each conversation took a spare; the thread makes another
        assert wait_for(srv, "samepage_spare_actors_made_total", 3 + i) >= 3 + i
    assert wait_for(srv, "samepage_spare_actors", 2) == 2
    assert srv.metric("samepage_evictions_total") == 2


def test_spares_stay_within_max_memory(make_server, tmp_path):
    probe = make_server(tmp_path / "probe", "--max-memory", "64G", "--spare-actors", "0")
    chat(probe, QUESTIONS[0], 1)
    one = probe.metric("samepage_live_actor_bytes")  # a conversation after one turn
    probe.stop()
    srv = make_server(tmp_path / "s", "--max-memory", "64G", "--spare-actors", "0")
    fresh = fresh_bytes(srv)
    srv.stop()
    assert 0 < 2 * fresh <= one  # a conversation's turn wrote more than a fresh actor holds
    budget = int(one) + fresh // 2  # one conversation; or spares, fewer than the four asked for
    srv = make_server(tmp_path / "s", "--max-memory", str(budget), "--max-live", "100", "--spare-actors", "4")
    assert wait_for(srv, "samepage_spare_actors", 1) >= 1  # the thread makes what fits
    time.sleep(1)
    assert srv.metric("samepage_spare_actors") * fresh <= budget < 4 * fresh
    for i, q in enumerate(QUESTIONS[:3]):
        chat(srv, q, 40 + i)
        time.sleep(0.5)
        live = srv.metric("samepage_live_actor_bytes")
        assert srv.metric("samepage_spare_actors") * fresh + live <= budget


def fresh_bytes(srv):
    """What a new conversation (and a spare) counts, as the server said at start."""
    return int(re.search(r"a new conversation counts (\d+)", srv.log.read_text()).group(1))


@pytest.mark.parametrize("value", ["-1", "65", "two"])
def test_bad_spare_actors_is_refused(value, tmp_path):
    r = subprocess.run([EXE, "serve", "--model", MODEL, "--port", "0", "--ctx", str(CTX), "--spare-actors", value],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--spare-actors" in r.stderr, r.stderr
