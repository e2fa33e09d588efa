"""Interrupted turns are rolled back: after a client disconnects mid-stream
the conversation continues as if that turn never happened (compared with a
run that never had it); SIGTERM rolls back the turns in flight, exits 0,
and the sessions continue after a restart."""
import signal
import time

import pytest
import requests

Q1 = [{"role": "user", "content": "What is a cat?"}]
LONG = "Now write a very long story about a cat and a dragon, with many chapters."


def chat(srv, messages, seed, max_tokens=16):
    r = requests.post(srv.url + "/v1/chat/completions",
                      json={"messages": messages, "max_tokens": max_tokens, "seed": seed, "temperature": 0.8},
                      timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"], r.headers


def history_after(first):
    return Q1 + [{"role": "assistant", "content": first}, {"role": "user", "content": LONG}]


def reference(make_server):
    srv = make_server()
    first, _ = chat(srv, Q1, 10)
    second, _ = chat(srv, history_after(first), 11)
    return first, second


def start_stream(srv, messages, seed=11):
    r = requests.post(srv.url + "/v1/chat/completions", stream=True, timeout=120,
                      json={"messages": messages, "max_tokens": 400, "seed": seed, "temperature": 0.8,
                            "stream": True})
    lines = r.iter_lines()
    for _ in range(6):  # the role chunk and a few tokens
        next(lines)
    return r


def wait_idle(srv):
    deadline = time.time() + 30
    while time.time() < deadline:
        if srv.metric('samepage_errors_total{kind="client_disconnect"}') == 1 and \
                not any(s["busy"] for s in requests.get(srv.url + "/v1/sessions").json()["data"]):
            return
        time.sleep(0.05)
    raise AssertionError("the interrupted turn did not end")


@pytest.mark.parametrize("stored", [False, True])
def test_disconnect_mid_stream_rolls_back(make_server, tmp_path, stored):
    first_ref, second_ref = reference(make_server)
    srv = make_server(tmp_path / "sessions" if stored else None)
    first, h = chat(srv, Q1, 10)
    assert first == first_ref
    tokens_before = requests.get(srv.url + "/v1/sessions").json()["data"][0]["tokens"]
    start_stream(srv, history_after(first)).close()
    wait_idle(srv)
    (s,) = requests.get(srv.url + "/v1/sessions").json()["data"]
    assert s["id"] == h["X-Session-Id"] and s["tokens"] <= tokens_before  # nothing of the turn kept
    second, h2 = chat(srv, history_after(first), 11)
    assert second == second_ref and h2["X-Session-Id"] == h["X-Session-Id"]


def test_disconnect_in_a_new_conversation_leaves_nothing(make_server):
    srv = make_server()
    start_stream(srv, [{"role": "user", "content": LONG}]).close()
    deadline = time.time() + 30
    while requests.get(srv.url + "/v1/sessions").json()["data"] and time.time() < deadline:
        time.sleep(0.05)
    assert requests.get(srv.url + "/v1/sessions").json()["data"] == []


def test_sigterm_rolls_back_and_exits_0(make_server, tmp_path):
    first_ref, second_ref = reference(make_server)
    srv = make_server(tmp_path / "sessions")
    first, _ = chat(srv, Q1, 10)
    stream = start_stream(srv, history_after(first))
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=60) == 0, srv.log.read_text()
    assert "SIGTERM" in srv.log.read_text()
    stream.close()
    again = make_server(tmp_path / "sessions")
    assert again.metric('samepage_sessions{state="stored"}') == 1
    second, _ = chat(again, history_after(first), 11)
    assert second == second_ref
