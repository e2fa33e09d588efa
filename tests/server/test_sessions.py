"""Conversations are actors: a continued conversation prefills only its new
tokens; after SIGKILL and a restart, or after an eviction to disk, it
continues exactly as if nothing had happened."""
from conftest import model_id

QUESTIONS = ["What is a cat?", "And a dog?", "Which one purrs?"]


def turn(client, history, question, seed):
    """Sends the conversation with one more question; returns (text, prefilled, usage)."""
    history.append({"role": "user", "content": question})
    raw = client.chat.completions.with_raw_response.create(
        model=model_id(), messages=history, max_tokens=20, temperature=0.8, seed=seed)
    r = raw.parse()
    text = r.choices[0].message.content
    history.append({"role": "assistant", "content": text})
    return text, int(raw.headers["x-samepage-prefilled-tokens"]), r.usage


def conversation(client, n, history=None):
    history = [] if history is None else history
    return [turn(client, history, q, seed=10 + i) for i, q in enumerate(QUESTIONS[:n])], history


def test_continued_conversation_prefills_only_new_tokens(make_server):
    srv = make_server()
    client = srv.client()
    turns, _ = conversation(client, 3)
    first_prefilled, first_usage = turns[0][1], turns[0][2]
    assert first_prefilled == first_usage.prompt_tokens  # nothing cached yet
    for text, prefilled, usage in turns[1:]:
        # Only the new user message, its template pieces and the closing of
        # the last reply: far fewer than the whole prompt.
        assert prefilled < 25 < usage.prompt_tokens, (prefilled, usage)
        assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - prefilled
    total = sum(t[1] for t in turns)
    assert srv.metric("samepage_prefilled_tokens_total") == total
    assert srv.metric('samepage_sessions{state="live"}') == 1


def test_sigkill_and_restart_continue_identically(make_server, tmp_path):
    reference, _ = conversation(make_server(tmp_path / "ref").client(), 3)
    srv = make_server(tmp_path / "sessions")
    before, history = conversation(srv.client(), 2)
    srv.kill()  # no chance to write anything more
    again = make_server(tmp_path / "sessions")
    assert again.metric('samepage_sessions{state="stored"}') == 1
    text, prefilled, _ = turn(again.client(), history, QUESTIONS[2], seed=12)
    assert [t[0] for t in before] + [text] == [t[0] for t in reference]
    assert prefilled < 25  # restored from the snapshot, not re-prefilled
    assert again.metric("samepage_restores_total") == 1


def test_eviction_to_disk_and_back(make_server, tmp_path):
    reference, _ = conversation(make_server(tmp_path / "ref").client(), 2)
    srv = make_server(tmp_path / "sessions", "--max-live", "1")
    client = srv.client()
    first, history = conversation(client, 1)
    other = [{"role": "user", "content": "Say something else entirely."}]
    client.chat.completions.create(model=model_id(), messages=other, max_tokens=8, seed=1)  # evicts the first
    assert srv.metric("samepage_evictions_total") == 1
    text, prefilled, _ = turn(client, history, QUESTIONS[1], seed=11)
    assert [first[0][0], text] == [t[0] for t in reference]
    assert prefilled < 25 and srv.metric("samepage_restores_total") == 1
