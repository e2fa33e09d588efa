"""Tenants (--api-keys): 401 without a known key; a session belongs to one
tenant, and another tenant can never list, continue, export or delete it,
nor reuse its cached prefix; 429 past --max-concurrent-per-tenant; without
keys, loopback only."""
import subprocess

import openai
import pytest
import requests

from conftest import EXE, MODEL, model_id

ALICE, ALICE2, BOB = "alice-key-0001", "alice-key-0002", "bob-key-000001"
CHAT = [{"role": "user", "content": "Tell me about the moon."}]


@pytest.fixture
def keys(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# key tenant\n{ALICE} alice\n\n{ALICE2}\talice\n{BOB} bob\n")
    return path


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def chat(srv, key, messages, **headers):
    r = requests.post(srv.url + "/v1/chat/completions", headers={**auth(key), **headers},
                      json={"messages": messages, "max_tokens": 8, "seed": 3}, timeout=120)
    return r


def test_missing_and_unknown_keys_are_401(make_server, keys):
    srv = make_server(None, "--api-keys", str(keys))
    for headers in ({}, auth("wrong-key-123"), {"Authorization": "Basic abc"}):
        for method, path in (("post", "/v1/chat/completions"), ("get", "/v1/models"), ("get", "/v1/sessions")):
            r = getattr(requests, method)(srv.url + path, headers=headers, json={"messages": CHAT}, timeout=30)
            assert r.status_code == 401, (headers, path)
            err = r.json()["error"]
            assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error" and err["message"]
    with pytest.raises(openai.AuthenticationError):
        srv.client("not-a-key-at-all").models.list()
    assert requests.get(srv.url + "/health").status_code == 200  # open, as /metrics
    assert [m.id for m in srv.client(ALICE).models.list().data] == [model_id()]


def test_other_tenants_never_see_a_session(make_server, keys, tmp_path):
    srv = make_server(tmp_path / "sessions", "--api-keys", str(keys))
    r = chat(srv, ALICE, CHAT)
    assert r.status_code == 200
    sid = r.headers["X-Session-Id"]
    reply = r.json()["choices"][0]["message"]["content"]
    # Alice's other key is the same tenant.
    assert [s["id"] for s in requests.get(srv.url + "/v1/sessions", headers=auth(ALICE2)).json()["data"]] == [sid]
    # Bob: list, show, export, delete, continue by id: as if it did not exist.
    assert requests.get(srv.url + "/v1/sessions", headers=auth(BOB)).json()["data"] == []
    for method, path in (("get", f"/v1/sessions/{sid}"), ("get", f"/v1/sessions/{sid}/snapshot"),
                         ("delete", f"/v1/sessions/{sid}")):
        r = getattr(requests, method)(srv.url + path, headers=auth(BOB), timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found", path
    r = chat(srv, BOB, CHAT, **{"X-Session-Id": sid})
    assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found"
    # Continuation by a matching prefix: Bob's identical conversation reuses nothing.
    longer = CHAT + [{"role": "assistant", "content": reply}, {"role": "user", "content": "And the sun?"}]
    r = chat(srv, BOB, longer)
    assert r.status_code == 200 and r.headers["X-Session-Id"] != sid
    assert int(r.headers["x-samepage-prefilled-tokens"]) == r.json()["usage"]["prompt_tokens"]
    # Alice continues hers, with only the new tokens prefilled; still there.
    r = chat(srv, ALICE2, longer)
    assert r.headers["X-Session-Id"] == sid and int(r.headers["x-samepage-prefilled-tokens"]) < 25
    assert requests.get(srv.url + f"/v1/sessions/{sid}", headers=auth(ALICE)).status_code == 200
    assert len(requests.get(srv.url + "/v1/sessions", headers=auth(BOB)).json()["data"]) == 1


def test_sessions_keep_their_tenant_across_a_restart(make_server, keys, tmp_path):
    srv = make_server(tmp_path / "sessions", "--api-keys", str(keys))
    sid = chat(srv, ALICE, CHAT).headers["X-Session-Id"]
    srv.stop()
    again = make_server(tmp_path / "sessions", "--api-keys", str(keys))
    assert requests.get(again.url + "/v1/sessions", headers=auth(BOB)).json()["data"] == []
    data = requests.get(again.url + "/v1/sessions", headers=auth(ALICE)).json()["data"]
    assert [(s["id"], s["state"]) for s in data] == [(sid, "stored")]


def test_per_tenant_concurrency_is_429(make_server, keys):
    srv = make_server(None, "--api-keys", str(keys), "--max-concurrent-per-tenant", "1")
    body = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 400,
            "stream": True, "seed": 1}
    stream = requests.post(srv.url + "/v1/chat/completions", headers=auth(ALICE), json=body, stream=True, timeout=120)
    lines = stream.iter_lines()
    next(lines)  # the stream is under way
    r = chat(srv, ALICE2, CHAT)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert chat(srv, BOB, CHAT).status_code == 200  # another tenant is not held up
    stream.close()


def run_serve(*args):
    return subprocess.run([EXE, "serve", "--model", MODEL, "--port", "0", *args], capture_output=True, text=True,
                          timeout=60)


def test_without_keys_loopback_only(make_server, tmp_path):
    r = run_serve("--host", "0.0.0.0")
    assert r.returncode == 2 and "--api-keys" in r.stderr and "loopback" in r.stderr
    srv = make_server()
    assert "no --api-keys" in srv.log.read_text() and "loopback only" in srv.log.read_text()


@pytest.mark.parametrize("text,why", [("onlyonekey\n", "expected"), ("short tenant\n", "8-127"),
                                      ("goodkey123 bad/tenant\n", "8-127"),
                                      ("goodkey123 a\ngoodkey123 b\n", "already"), ("# nothing\n", "no keys")])
def test_bad_key_files(tmp_path, text, why):
    path = tmp_path / "keys"
    path.write_text(text)
    r = run_serve("--api-keys", str(path))
    assert r.returncode == 2 and why in r.stderr, r.stderr
    r = run_serve("--api-keys", str(tmp_path / "missing"))
    assert r.returncode == 2 and "cannot read" in r.stderr
