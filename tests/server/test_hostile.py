"""Hostile and wrong requests: each gets its error in OpenAI's shape with
the right status, and the server keeps serving."""
import json
import threading

import pytest
import requests

from conftest import model_id

OK = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def post(server, body, path="/v1/chat/completions", **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=60, **kw)


def expect(r, status, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    return err


BAD_BODIES = [
    (b"{", None),
    (b"", None),
    (b"[1, 2]", None),
    (b"[" * 100000 + b"]" * 100000, None),
    (b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', None),
    (b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}', None),
    (b'{"messages": [], "messages": []}', None),
    ({"messages": "hi"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
    ({"messages": [{"role": "user"}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "x", "name": "n"}]}, "messages[0].name"),
    (dict(OK, max_tokens=-1), "max_tokens"),
    (dict(OK, max_tokens=10**30), None),
    (dict(OK, max_tokens="5"), "max_tokens"),
    (dict(OK, max_tokens=1.5), "max_tokens"),
    (dict(OK, temperature=-0.1), "temperature"),
    (dict(OK, temperature=1e300), "temperature"),
    (dict(OK, temperature="hot"), "temperature"),
    (dict(OK, top_p=0), "top_p"),
    (dict(OK, top_k=-3), "top_k"),
    (dict(OK, seed=-1), "seed"),
    (dict(OK, seed=2**70), None),
    (dict(OK, stop=["a", "b", "c", "d", "e"]), "stop"),
    (dict(OK, stop=[1]), "stop"),
    (dict(OK, stream="yes"), "stream"),
    (dict(OK, stream_options={"include_usage": True}), "stream_options"),
    (dict(OK, n=2), "n"),
    (dict(OK, logprobs=3), "logprobs"),
    (dict(OK, logprobs=True, top_logprobs=21), "top_logprobs"),
    (dict(OK, tools=[]), "tools"),
    (dict(OK, frobnicate=1), "frobnicate"),
    ({"prompt": "x"}, "prompt"),
]


@pytest.mark.parametrize("body,param", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_request(server, body, param):
    expect(post(server, body), 400, param)


def test_completions_errors(server):
    expect(post(server, {"prompt": ""}, "/v1/completions"), 400, "prompt")
    expect(post(server, {"prompt": "x", "echo": True}, "/v1/completions"), 400, "echo")
    expect(post(server, {"messages": OK["messages"]}, "/v1/completions"), 400, "messages")


def test_context_too_long(server):
    long = "word " * 3000
    err = expect(post(server, {"messages": [{"role": "user", "content": long}]}), 400)
    assert err["code"] == "context_length_exceeded"
    expect(post(server, dict(OK, max_tokens=1024)), 400, "max_tokens")


def test_not_found(server):
    expect(requests.get(server.url + "/v1/nothing"), 404)
    err = expect(post(server, dict(OK, model="gpt-9")), 404, "model")
    assert err["code"] == "model_not_found"
    expect(requests.get(server.url + "/v1/chat/completions"), 405)


def test_too_large(server):
    body = json.dumps({"messages": [{"role": "user", "content": "x" * (2 << 20)}]})
    expect(post(server, body), 413)


def test_busy_is_503_with_retry_after(make_server):
    srv = make_server(None, "--max-live", "1")
    stream = requests.post(srv.url + "/v1/chat/completions", stream=True, timeout=60,
                           json={"messages": [{"role": "user", "content": "Tell a very long story."}],
                                 "max_tokens": 600, "stream": True, "seed": 1, "stop": ["never-ever"]})
    lines = stream.iter_lines()
    next(lines)  # the first chunk: the one live actor is busy now
    r = post(srv, {"messages": [{"role": "user", "content": "another conversation"}], "max_tokens": 2})
    err = expect(r, 503)
    assert r.headers["Retry-After"] == "1" and err["code"] == "server_busy"
    stream.close()


def test_disconnect_mid_stream_then_serving(server):
    r = requests.post(server.url + "/v1/chat/completions", stream=True, timeout=60,
                      json={"messages": [{"role": "user", "content": "Tell a story."}], "max_tokens": 200,
                            "stream": True})
    next(r.iter_lines())
    r.close()
    assert post(server, OK).status_code == 200


def test_concurrent_clients_then_still_serving(server):
    results = []

    def one(i):
        r = post(server, {"messages": [{"role": "user", "content": f"Number {i}?"}], "max_tokens": 6, "seed": i})
        results.append(r.status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results == [200] * 6
    assert requests.get(server.url + "/health").status_code == 200
    r = server.client().chat.completions.create(model=model_id(), messages=OK["messages"], max_tokens=2)
    assert r.choices[0].message.content is not None
