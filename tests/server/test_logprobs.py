"""logprobs / top_logprobs for chat and completions, as OpenAI returns them.
They are the model's log-softmax (before penalties and temperature)."""
import math

import pytest
import requests

from conftest import model_id

HELLO = [{"role": "user", "content": "Write one sentence about the sea."}]
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}  # the model's own argmax


def test_chat_logprobs(server):
    r = server.client().chat.completions.create(model=model_id(), messages=HELLO, max_tokens=12, seed=1,
                                                logprobs=True, top_logprobs=5, extra_body=GREEDY)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens or r.choices[0].finish_reason == "stop"
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and bytes(t.bytes).decode("utf-8", "replace") == t.token
        top = t.top_logprobs
        assert len(top) == 5
        assert [x.logprob for x in top] == sorted((x.logprob for x in top), reverse=True)
        assert sum(math.exp(x.logprob) for x in top) <= 1 + 1e-4
        # Greedy without penalties: the chosen token is the most likely one.
        assert t.token == top[0].token and abs(t.logprob - top[0].logprob) < 1e-5


def test_chat_logprobs_without_alternatives_and_off(server):
    client = server.client()
    r = client.chat.completions.create(model=model_id(), messages=HELLO, max_tokens=6, seed=2, logprobs=True)
    assert all(t.top_logprobs == [] for t in r.choices[0].logprobs.content)
    r = client.chat.completions.create(model=model_id(), messages=HELLO, max_tokens=6, seed=2)
    assert r.choices[0].logprobs is None


def test_streamed_logprobs_match(server):
    client = server.client()
    whole = client.chat.completions.create(model=model_id(), messages=HELLO, max_tokens=12, seed=4, logprobs=True,
                                           top_logprobs=3)
    chunks = client.chat.completions.create(model=model_id(), messages=HELLO, max_tokens=12, seed=4, logprobs=True,
                                            top_logprobs=3, stream=True)
    streamed = [t for ch in chunks if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in whole.choices[0].logprobs.content]


def test_completion_logprobs(server):
    r = server.client().completions.create(model=model_id(), prompt="The capital of France is", max_tokens=6,
                                           seed=3, logprobs=3, extra_body=GREEDY)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert 1 <= len(top) <= 3 and sum(math.exp(v) for v in top.values()) <= 1 + 1e-4
        assert abs(max(top.values()) - logprob) < 1e-5 and top[token] == logprob


@pytest.mark.parametrize("body,param", [({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                                        ({"top_logprobs": 2}, "top_logprobs"),
                                        ({"logprobs": 3}, "logprobs"),
                                        ({"logprobs": True, "top_logprobs": -1}, "top_logprobs")])
def test_bad_logprobs(server, body, param):
    r = requests.post(server.url + "/v1/chat/completions", json={"messages": HELLO, **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    r = requests.post(server.url + "/v1/completions", json={"prompt": "Hi", "logprobs": 21})
    assert r.status_code == 400 and r.json()["error"]["param"] == "logprobs"
