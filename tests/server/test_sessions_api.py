"""The sessions API: X-Session-Id, GET/DELETE /v1/sessions[/ID], export
(GET .../snapshot) and import (POST /v1/sessions), hostile imports."""
import json
import os

import requests

from conftest import model_id

Q1 = [{"role": "user", "content": "What is a cat?"}]


def chat(srv, messages, seed, headers=None, max_tokens=12):
    r = requests.post(srv.url + "/v1/chat/completions", headers=headers or {},
                      json={"messages": messages, "max_tokens": max_tokens, "seed": seed, "temperature": 0.8},
                      timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"], r.headers


def two_turns(srv, headers=None):
    first, h = chat(srv, Q1, 10, headers)
    history = Q1 + [{"role": "assistant", "content": first}, {"role": "user", "content": "And a dog?"}]
    second, h2 = chat(srv, history, 11, headers)
    return [first, second], h, h2, history


def test_x_session_id_names_the_session(make_server):
    srv = make_server()
    _, h = chat(srv, Q1, 1)
    sid = h["X-Session-Id"]
    assert h["x-samepage-session"] == sid
    _, other = chat(srv, [{"role": "user", "content": "Something else."}], 2)
    assert other["X-Session-Id"] != sid
    # An unrelated conversation sent to the first session continues it there.
    _, h3 = chat(srv, [{"role": "user", "content": "Yet another thing."}], 3, {"X-Session-Id": sid})
    assert h3["X-Session-Id"] == sid
    for bad in ("nosuchsession", "../../etc", "x" * 40):
        r = requests.post(srv.url + "/v1/chat/completions", headers={"X-Session-Id": bad},
                          json={"messages": Q1, "max_tokens": 2})
        assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found"


def test_list_and_delete(make_server, tmp_path):
    sessions = tmp_path / "sessions"
    srv = make_server(sessions)
    _, h = chat(srv, Q1, 1)
    sid = h["X-Session-Id"]
    data = requests.get(srv.url + "/v1/sessions").json()
    assert data["object"] == "list" and len(data["data"]) == 1
    s = data["data"][0]
    assert s["id"] == sid and s["object"] == "session" and s["state"] == "live" and s["tokens"] > 10
    assert s["created"] <= s["last_used"] and s["busy"] is False
    assert requests.get(srv.url + f"/v1/sessions/{sid}").json()["id"] == sid
    assert any(f.startswith(sid + ".") for f in os.listdir(sessions))
    r = requests.delete(srv.url + f"/v1/sessions/{sid}")
    assert r.status_code == 200 and r.json() == {"id": sid, "object": "session.deleted", "deleted": True}
    assert not any(f.startswith(sid) for f in os.listdir(sessions))  # --sessions DIR stops growing
    assert json.loads((sessions / "index.json").read_text())["sessions"] == []
    assert requests.get(srv.url + "/v1/sessions").json()["data"] == []
    assert requests.delete(srv.url + f"/v1/sessions/{sid}").status_code == 404
    assert requests.put(srv.url + "/v1/sessions").status_code == 405
    assert requests.get(srv.url + f"/v1/sessions/{sid}/kv").status_code == 404


def test_export_and_import_continue_identically(make_server, tmp_path):
    reference, *_ = two_turns(make_server())
    for sessions in (None, tmp_path / "a"):
        src = make_server(sessions)
        first, h = chat(src, Q1, 10)
        snap = requests.get(src.url + f"/v1/sessions/{h['X-Session-Id']}/snapshot")
        assert snap.status_code == 200 and snap.headers["content-type"] == "application/octet-stream"
        dst = make_server(tmp_path / f"dst-{sessions is None}")
        r = requests.post(dst.url + "/v1/sessions", data=snap.content)
        assert r.status_code == 200, r.text
        new = r.json()
        assert new["object"] == "session" and new["tokens"] > 10
        history = Q1 + [{"role": "assistant", "content": first}, {"role": "user", "content": "And a dog?"}]
        second, h2 = chat(dst, history, 11, {"X-Session-Id": new["id"]})
        assert [first, second] == reference
        assert int(h2["x-samepage-prefilled-tokens"]) < 25  # the import's cache was used
        # Continued by prefix too (without the header) on the source's copy.
        again, h3 = chat(src, history, 11)
        assert again == reference[1] and h3["X-Session-Id"] == h["X-Session-Id"]


def test_hostile_imports_are_400(make_server, tmp_path):
    srv = make_server()
    _, h = chat(srv, Q1, 1)
    good = requests.get(srv.url + f"/v1/sessions/{h['X-Session-Id']}/snapshot").content
    bodies = [b"", b"not a snapshot", os.urandom(4096), good[: len(good) // 2], good[:64],
              good[:100] + b"\xff" * 64 + good[164:]]
    for body in bodies:
        r = requests.post(srv.url + "/v1/sessions", data=body)
        assert r.status_code == 400, (len(body), r.text)
        assert r.json()["error"]["code"] == "invalid_snapshot"
    assert len(requests.get(srv.url + "/v1/sessions").json()["data"]) == 1
    small = make_server(None, "--max-import", "4K")
    r = requests.post(small.url + "/v1/sessions", data=good[:8192])
    assert r.status_code == 413
    assert chat(srv, Q1, 1)[0]  # still serving
