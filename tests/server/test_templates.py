"""Shared system prompts (--max-templates): a new conversation that starts
with a system message its tenant used before starts from a restore of that
prefix's template instead of prefilling it again; never across tenants;
bit for bit the same output as without templates."""
import os

import requests

SYS = ("You are a careful assistant for a veterinary clinic. Answer in two short sentences, "
       "name the animal first, and never give medical doses.")
ALICE, BOB = "alice-key-0001", "bob-key-000001"


def conv(user, system=SYS):
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def chat(srv, messages, seed=5, headers=None):
    r = requests.post(srv.url + "/v1/chat/completions", headers=headers or {},
                      json={"messages": messages, "max_tokens": 10, "seed": seed, "temperature": 0.9,
                            "logprobs": True, "top_logprobs": 2}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    tpl = r.headers.get("x-samepage-template", "")
    return body, int(r.headers["x-samepage-prefilled-tokens"]), tpl


def output(body):
    c = body["choices"][0]
    return c["message"]["content"], [(t["token"], t["logprob"]) for t in c["logprobs"]["content"]]


def test_second_conversation_prefills_only_the_user_part(make_server, tmp_path):
    sessions = tmp_path / "s"
    srv = make_server(sessions)
    b1, pre1, tpl1 = chat(srv, conv("What is a cat?"))
    n1 = b1["usage"]["prompt_tokens"]
    assert tpl1.startswith("miss ") and pre1 == n1
    prefix = int(tpl1.split()[1])
    assert 20 < prefix < n1
    b2, pre2, tpl2 = chat(srv, conv("Tell me about dogs, please."))
    n2 = b2["usage"]["prompt_tokens"]
    assert tpl2 == f"hit {prefix}"
    assert pre2 == n2 - prefix and b2["usage"]["prompt_tokens_details"]["cached_tokens"] == prefix
    assert b2["id"] and requests.get(srv.url + "/v1/sessions").json()["data"].__len__() == 2
    assert srv.metric("samepage_template_hits_total") == 1
    assert srv.metric("samepage_template_misses_total") == 1
    assert srv.metric("samepage_template_saved_tokens_total") == prefix
    assert srv.metric("samepage_templates") == 1
    files = os.listdir(sessions / "templates" / "default")
    assert len([f for f in files if f.endswith(".snap")]) == 1 and len(files) == 2
    # No system message, or continuing a conversation: no template involved.
    _, _, tpl = chat(srv, [{"role": "user", "content": "What is a cat?"}])
    assert tpl == ""
    # After a restart the template is still there.
    srv.stop()
    again = make_server(sessions)
    b3, pre3, tpl3 = chat(again, conv("And a horse?"))
    assert tpl3 == f"hit {prefix}" and pre3 == b3["usage"]["prompt_tokens"] - prefix


def test_output_identical_with_and_without_the_template(make_server, tmp_path):
    plain = make_server(tmp_path / "p", "--max-templates", "0")
    want = [output(chat(plain, conv(q), seed=s)[0]) for q, s in (("What is a cat?", 7), ("Tell me about dogs.", 8))]
    assert chat(plain, conv("x"))[2] == ""  # off
    srv = make_server(tmp_path / "t")
    got, seen = [], []
    for q, s in (("What is a cat?", 7), ("Tell me about dogs.", 8)):
        body, _, tpl = chat(srv, conv(q), seed=s)
        got.append(output(body)), seen.append(tpl.split()[0])
    assert seen == ["miss", "hit"]
    assert got == want  # the same tokens and the same log-probabilities, bit for bit


def test_no_template_across_tenants(make_server, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"{ALICE} alice\n{BOB} bob\n")
    sessions = tmp_path / "s"
    srv = make_server(sessions, "--api-keys", str(keys))
    alice, bob = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
    _, _, a1 = chat(srv, conv("What is a cat?"), headers=alice)
    b1, pre, b_tpl = chat(srv, conv("Tell me about dogs."), headers=bob)
    assert a1.startswith("miss ") and b_tpl.startswith("miss ")  # bob does not hit alice's
    assert pre == b1["usage"]["prompt_tokens"]
    _, _, a2 = chat(srv, conv("And a horse?"), headers=alice)
    assert a2.startswith("hit ")
    assert srv.metric("samepage_template_hits_total") == 1
    assert srv.metric("samepage_template_misses_total") == 2
    for t in ("alice", "bob"):
        assert len([f for f in os.listdir(sessions / "templates" / t) if f.endswith(".snap")]) == 1


def test_templates_are_bounded(make_server, tmp_path):
    sessions = tmp_path / "s"
    srv = make_server(sessions, "--max-templates", "2")
    systems = [SYS, "You are a pirate. Answer like one.", "You are a poet. Answer in rhyme."]
    for i, sysmsg in enumerate(systems):
        assert chat(srv, conv("What is a cat?", sysmsg))[2].startswith("miss ")
    assert srv.metric("samepage_templates") == 2
    assert srv.metric("samepage_template_evictions_total") == 1
    assert len(os.listdir(sessions / "templates" / "default")) == 4
    assert chat(srv, conv("Tell me about dogs.", systems[2]))[2].startswith("hit ")
    assert chat(srv, conv("Tell me about dogs.", systems[0]))[2].startswith("miss ")  # the least recently used went
