"""Hostile and wrong requests: each gets its error in OpenAI's shape with
the right status, and the server keeps serving."""
import http.client
import json
import socket
import threading
import time
from urllib.parse import urlparse

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


def served(srv, source="127.0.0.1"):
    """GET /health from a given local address, and how long it took."""
    url = urlparse(srv.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10, source_address=(source, 0))
    t0 = time.monotonic()
    conn.request("GET", "/health")
    status = conn.getresponse().status
    conn.close()
    return status, time.monotonic() - t0


def closed_by_server(sock, within):
    """Whether the server closes sock (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_slowloris(make_server):
    """Connections that dribble their headers hold up no one else; one
    address holds at most --max-connections-per-ip of them, so another
    address is still served when it has used them all; and a connection
    that goes silent is closed after --client-timeout."""
    srv = make_server(None, "--client-timeout", "2", "--max-connections-per-ip", "8")
    url = urlparse(srv.url)
    stop = threading.Event()
    dribblers = []

    def dribble():
        while not stop.wait(0.5):  # a header byte every half second: never idle long enough to time out
            for sock in dribblers:
                sock.sendall(b"x")

    for _ in range(6):
        sock = socket.create_connection((url.hostname, url.port))
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        dribblers.append(sock)
    feeder = threading.Thread(target=dribble, daemon=True)
    feeder.start()
    try:
        # Below the address's limit: the same address is served at once,
        # completions included.
        assert post(srv, OK).status_code == 200
        status, seconds = served(srv)
        assert status == 200 and seconds < 5  # (blocked, it would wait for a dribbler: forever)
        # At the limit (6 dribbling + 2 more): one more from this address is
        # turned away, another address is still served.
        more = [socket.create_connection((url.hostname, url.port)) for _ in range(2)]
        for sock in more:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        time.sleep(1.0)  # accepted and counted, even on a loaded machine
        # The server counts a connection once its thread has it: a few more
        # tries, so that one of them is surely over the limit; that one is
        # closed at once, any under it answered.
        overs = [socket.create_connection((url.hostname, url.port)) for _ in range(4)]
        for sock in overs:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert any([closed_by_server(sock, 5) for sock in overs])
        status, seconds = served(srv, "127.0.0.2")
        assert status == 200 and seconds < 5  # (blocked, it would wait for a dribbler: forever)
        # The two that went silent are closed after the timeout (2 s); the
        # dribblers are not (they keep sending).
        assert all(closed_by_server(sock, 6) for sock in more)
        for sock in more + overs:
            sock.close()
        assert all(not closed_by_server(sock, 0.1) for sock in dribblers)
    finally:
        stop.set()
        feeder.join()
    # Silent now: closed after the timeout, and this address is served again.
    assert all(closed_by_server(sock, 6) for sock in dribblers)
    for sock in dribblers:
        sock.close()
    assert served(srv)[0] == 200


def test_header_deadline(make_server):
    """A client that keeps dribbling its headers is cut off after
    --header-timeout however often it sends; a kept-alive connection's next
    request has the same deadline, and requests on time are untouched."""
    srv = make_server(None, "--header-timeout", "2", "--client-timeout", "30")
    url = urlparse(srv.url)
    sock = socket.create_connection((url.hostname, url.port))
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    t0, cut = time.monotonic(), False
    while time.monotonic() - t0 < 8 and not cut:
        try:
            sock.sendall(b"x")  # far more often than --client-timeout
            cut = closed_by_server(sock, 0.3)
        except (BrokenPipeError, ConnectionResetError):
            cut = True
    took = time.monotonic() - t0
    sock.close()
    assert cut and 1.5 < took < 5, took
    assert srv.metric("samepage_header_timeouts_total") == 1
    # Kept alive: a request on time, then the next one's headers dribbled.
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", "/health")
    assert conn.getresponse().read() and conn.sock
    conn.sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    assert closed_by_server(conn.sock, 5)
    conn.close()
    assert srv.metric("samepage_header_timeouts_total") == 2
    # A request that takes longer than the deadline, its headers on time, is not cut.
    r = post(srv, {"messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 900,
                   "stop": ["never-ever"]})
    assert r.status_code == 200, r.text
    if r.json()["choices"][0]["finish_reason"] == "length":
        assert r.elapsed.total_seconds() > 2  # (so the deadline did pass while it ran)
    assert srv.metric("samepage_header_timeouts_total") == 2
