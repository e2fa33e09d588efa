"""The OpenAI API as the official client meets it: chat and completions,
streamed and not, stop, seed, max_tokens, usage and finish_reason."""
import json
import re
import time

import requests

from conftest import model_id

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]


def test_health_and_models(server):
    assert requests.get(server.url + "/health").json() == {"status": "ok"}
    models = server.client().models.list()
    assert [m.id for m in models.data] == [model_id()]


def test_chat(server):
    r = server.client().chat.completions.create(model=model_id(), messages=HELLO, max_tokens=24, seed=1)
    c = r.choices[0]
    assert r.object == "chat.completion" and c.message.role == "assistant" and c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_matches_non_stream(server):
    client = server.client()
    whole = client.chat.completions.create(model=model_id(), messages=HELLO, max_tokens=16, seed=5)
    chunks = list(client.chat.completions.create(model=model_id(), messages=HELLO, max_tokens=16, seed=5,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text == whole.choices[0].message.content
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_sse_wire_format(server):
    r = requests.post(server.url + "/v1/chat/completions", stream=True,
                      json={"messages": HELLO, "max_tokens": 4, "stream": True, "seed": 2})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line for line in r.iter_lines() if line]
    assert all(e.startswith(b"data: ") for e in events)
    assert events[-1] == b"data: [DONE]"
    last = json.loads(events[-2][6:])
    assert last["choices"][0]["finish_reason"] == "length" and "usage" not in last


def test_completions(server):
    client = server.client()
    r = client.completions.create(model=model_id(), prompt="The capital of France is", max_tokens=8, seed=3,
                                  temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    assert r.usage.completion_tokens <= 8
    streamed = "".join(ch.choices[0].text for ch in client.completions.create(
        model=model_id(), prompt="The capital of France is", max_tokens=8, seed=3, temperature=0, stream=True)
        if ch.choices)
    assert streamed == r.choices[0].text


def test_seed_determinism(server):
    client = server.client()
    args = dict(model=model_id(), messages=[{"role": "user", "content": "Name three colours."}], max_tokens=24,
                temperature=1.0, top_p=0.95, seed=1234)
    a = client.chat.completions.create(**args).choices[0].message.content
    b = client.chat.completions.create(**args).choices[0].message.content
    assert a == b
    others = {client.chat.completions.create(**dict(args, seed=s)).choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {a}) > 1  # the seed matters


def test_max_tokens(server):
    r = server.client().chat.completions.create(
        model=model_id(), messages=[{"role": "user", "content": "Count from 1 to 100."}], max_tokens=5, seed=1)
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
    r = server.client().chat.completions.create(
        model=model_id(), messages=[{"role": "user", "content": "Count from 1 to 100."}], max_completion_tokens=3,
        seed=1)
    assert r.usage.completion_tokens == 3


def test_stop(server):
    client = server.client()
    args = dict(model=model_id(), messages=[{"role": "user", "content": "Describe the sea in two sentences."}],
                max_tokens=40, temperature=0)
    full = client.chat.completions.create(**args).choices[0].message.content
    stop = full.split()[3]  # a word from the middle: the reply ends just before it
    cut = client.chat.completions.create(**args, stop=[stop])
    assert cut.choices[0].message.content == full[:full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        **args, stop=[stop, "never"], stream=True) if ch.choices)
    assert streamed == full[:full.index(stop)]


def test_sampling_fields_accepted(server):
    r = server.client().chat.completions.create(
        model=model_id(), messages=HELLO, max_tokens=8, seed=9, temperature=0.7, top_p=0.9, presence_penalty=0.5,
        frequency_penalty=0.5, extra_body={"top_k": 20, "min_p": 0.1, "repeat_penalty": 1.2})
    assert r.choices[0].message.content


def test_penalties_change_greedy_text(server):
    client = server.client()
    args = dict(model=model_id(), messages=[{"role": "user", "content": "Repeat the word cat twenty times."}],
                max_tokens=30, temperature=0, seed=1)
    plain = client.chat.completions.create(**args).choices[0].message.content
    penalised = client.chat.completions.create(**args, frequency_penalty=2.0, presence_penalty=2.0)
    assert penalised.choices[0].message.content != plain


def histogram(text, name):
    """A Prometheus histogram from /metrics: ([(le, count)], sum, count)."""
    buckets = [(float(le), int(n)) for le, n in
               re.findall(r'^' + name + r'_bucket\{le="([^"]+)"\} (\d+)$', text, re.M)]
    total = float(re.search(r"^" + name + r"_sum (\S+)$", text, re.M).group(1))
    count = int(re.search(r"^" + name + r"_count (\d+)$", text, re.M).group(1))
    return buckets, total, count


def test_inter_token_latency_histogram(make_server):
    srv = make_server()
    name = "samepage_inter_token_latency_seconds"
    text = requests.get(srv.url + "/metrics").text
    assert f"# TYPE {name} histogram" in text
    assert histogram(text, name)[2] == 0
    client, steps, t0 = srv.client(), 0, time.monotonic()
    for stream in (False, True):
        r = client.completions.create(model=model_id(), prompt="Once upon a time", max_tokens=12, seed=3,
                                      stream=stream, **({"stream_options": {"include_usage": True}} if stream else {}))
        if stream:
            chunks = list(r)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason][0]
            usage = chunks[-1].usage
        else:
            finish, usage = r.choices[0].finish_reason, r.usage
        # Each decode step gives one token, the end-of-turn one included;
        # a turn of k steps has k - 1 gaps between tokens.
        steps += usage.completion_tokens + (1 if finish == "stop" else 0) - 1
    elapsed = time.monotonic() - t0
    buckets, total, count = histogram(requests.get(srv.url + "/metrics").text, name)
    assert count == steps > 0
    assert buckets[-1] == (float("inf"), count)
    assert [n for _, n in buckets] == sorted(n for _, n in buckets)  # cumulative
    assert [le for le, _ in buckets] == sorted(le for le, _ in buckets)
    assert 0 < total < elapsed
