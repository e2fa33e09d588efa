"""GET/POST /v1/sessions/ID/kv.safetensors: a session's KV cache in the
format of `samepage kv export`, and its import into a copy of session ID
(as `samepage kv import`), which becomes a new session; tenants; bad files."""
import json
import struct

import requests

Q1 = [{"role": "user", "content": "What is a cat?"}]
ALICE, BOB = "alice-key-0001", "bob-key-000001"


def chat(srv, messages, seed, headers=None, max_tokens=12):
    r = requests.post(srv.url + "/v1/chat/completions", headers=headers or {},
                      json={"messages": messages, "max_tokens": max_tokens, "seed": seed, "temperature": 0.8},
                      timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"], r.headers


def kv_url(srv, sid):
    return srv.url + f"/v1/sessions/{sid}/kv.safetensors"


def header_of(blob):
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), 8 + n


def second_turn(srv, first, headers=None):
    history = Q1 + [{"role": "assistant", "content": first}, {"role": "user", "content": "And a dog?"}]
    return chat(srv, history, 11, headers)


def test_kv_round_trip_continues_identically(make_server, tmp_path):
    ref = make_server()
    first_ref, _ = chat(ref, Q1, 10)
    second_ref, _ = second_turn(ref, first_ref)
    for sessions in (None, tmp_path / "s"):
        srv = make_server(sessions)
        first, h = chat(srv, Q1, 10)
        assert first == first_ref
        sid = h["X-Session-Id"]
        kv = requests.get(kv_url(srv, sid), timeout=60)
        assert kv.status_code == 200 and kv.headers["content-type"] == "application/octet-stream"
        meta, data_at = header_of(kv.content)
        tokens = requests.get(srv.url + f"/v1/sessions/{sid}").json()["tokens"]
        assert meta["__metadata__"]["format"] == "samepage-kv-1"
        assert int(meta["__metadata__"]["positions"]) == tokens
        assert meta["layer.0.k"]["dtype"] == "F16" and meta["layer.0.k"]["shape"][0] == tokens
        r = requests.post(kv_url(srv, sid), data=kv.content, timeout=60)
        assert r.status_code == 200, r.text
        new = r.json()
        assert new["object"] == "session" and new["id"] != sid and new["tokens"] == tokens
        # the same file again from the new session: the cache went in whole
        assert requests.get(kv_url(srv, new["id"]), timeout=60).content == kv.content
        # A cache of zeros, same shapes: the import is what the new session uses.
        zeros = kv.content[:data_at] + bytes(len(kv.content) - data_at)
        z = requests.post(kv_url(srv, sid), data=zeros, timeout=60)
        assert z.status_code == 200, z.text
        second, h2 = second_turn(srv, first, {"X-Session-Id": new["id"]})
        assert second == second_ref
        assert int(h2["x-samepage-prefilled-tokens"]) < tokens  # continued from the imported cache
        garbage, _ = second_turn(srv, first, {"X-Session-Id": z.json()["id"]})
        assert garbage != second_ref


def test_another_tenant_gets_404(make_server, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"{ALICE} alice\n{BOB} bob\n")
    srv = make_server(tmp_path / "s", "--api-keys", str(keys))
    alice, bob = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
    _, h = chat(srv, Q1, 1, alice)
    sid = h["X-Session-Id"]
    kv = requests.get(kv_url(srv, sid), headers=alice, timeout=60)
    assert kv.status_code == 200
    for r in (requests.get(kv_url(srv, sid), headers=bob, timeout=60),
              requests.post(kv_url(srv, sid), headers=bob, data=kv.content, timeout=60)):
        assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found", r.text
    assert requests.get(srv.url + "/v1/sessions", headers=bob).json()["data"] == []
    assert requests.get(kv_url(srv, sid)).status_code == 401


def test_bad_files_are_400(make_server, tmp_path):
    srv = make_server(tmp_path / "s", "--max-import", str(64 << 20))
    _, h = chat(srv, Q1, 1, max_tokens=4)
    short = h["X-Session-Id"]
    _, h = chat(srv, [{"role": "user", "content": "Tell me a long story about a cat and a dog."}], 2, max_tokens=30)
    long_id = h["X-Session-Id"]
    good = requests.get(kv_url(srv, short), timeout=60).content
    longer = requests.get(kv_url(srv, long_id), timeout=60).content
    meta, data_at = header_of(good)
    other_model = good.replace(meta["__metadata__"]["model_hash"].encode(), b"0123456789abcdef")
    cases = {
        "empty": (b"", "empty"),
        "garbage": (b"\x00" * 7, "too short"),
        "bad header length": (b"\xff" * 64, "bad header length"),
        "truncated": (good[:len(good) - 100], "bad data_offsets"),
        "header only": (good[:data_at], "bad data_offsets"),
        "another model": (other_model, "another model"),
        "more positions than the session": (longer, "positions"),
    }
    before = len(requests.get(srv.url + "/v1/sessions").json()["data"])
    for name, (blob, words) in cases.items():
        r = requests.post(kv_url(srv, short), data=blob, timeout=60)
        assert r.status_code == 400, (name, r.text)
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["code"] == "invalid_kv", (name, err)
        assert words in err["message"], (name, err["message"])
    assert len(requests.get(srv.url + "/v1/sessions").json()["data"]) == before  # nothing kept
    # the session itself is untouched and still exports the same cache
    assert requests.get(kv_url(srv, short), timeout=60).content == good
    assert requests.put(kv_url(srv, short)).status_code == 405


def test_oversized_upload_is_413(make_server, tmp_path):
    srv = make_server(tmp_path / "s", "--max-import", "100000")
    _, h = chat(srv, Q1, 1, max_tokens=4)
    sid = h["X-Session-Id"]
    good = requests.get(kv_url(srv, sid), timeout=60).content
    assert len(good) > 100000
    r = requests.post(kv_url(srv, sid), data=good, timeout=60)
    assert r.status_code == 413 and "--max-import" in r.json()["error"]["message"], r.text
    assert r.json()["error"]["code"] == "request_too_large"
