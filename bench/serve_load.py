#!/usr/bin/env python3
"""serve_load.py: concurrent streaming clients against `samepage serve`.

Each client holds conversations: a new one, or its last one continued
(a returning conversation: the whole history plus one more question), and
streams every reply from /v1/chat/completions. With 1, 4 and 16 clients it
reports aggregate decode tokens/s, p50/p99 inter-token latency (the time
between two streamed pieces of one reply) and p50/p99 time to first token,
as JSON (--json FILE, or stdout) and a table.

    bench/serve_load.py --exe build/samepage                  # 20 s per level
    bench/serve_load.py --exe build/samepage --seconds 200    # 10 minutes
    bench/serve_load.py --url http://127.0.0.1:8080           # a running server

Python's standard library only. tests/server/test_load.py imports the
client (stream_chat, Client, run_clients) from here.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

TOPICS = ["the moon", "bread", "rivers", "owls", "bicycles", "tea", "volcanoes", "chess", "rain", "bees",
          "maps", "glass", "whales", "clocks", "salt", "kites", "ferns", "ice", "trains", "paper"]


def stream_chat(url, messages, *, seed, temperature, max_tokens, timeout=300, headers=None):
    """One streamed chat completion. Returns a dict: text, pieces [(t, text)],
    t0 (request sent), ttft (s), completion_tokens, prompt_tokens, finish,
    session, prefilled; raises RuntimeError on any HTTP or stream error."""
    u = urllib.parse.urlsplit(url)
    body = json.dumps({"messages": messages, "stream": True, "stream_options": {"include_usage": True},
                       "seed": seed, "temperature": temperature, "max_tokens": max_tokens})
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read(2000)!r}")
        out = {"pieces": [], "t0": t0, "finish": None, "completion_tokens": None, "prompt_tokens": None,
               "session": resp.getheader("x-samepage-session"),
               "prefilled": int(resp.getheader("x-samepage-prefilled-tokens") or -1)}
        done = False
        while not done:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                raise RuntimeError(f"stream error: {ev['error']}")
            if ev.get("usage"):
                out["completion_tokens"] = ev["usage"]["completion_tokens"]
                out["prompt_tokens"] = ev["usage"]["prompt_tokens"]
            for ch in ev.get("choices") or []:
                piece = (ch.get("delta") or {}).get("content")
                if piece:
                    out["pieces"].append((time.perf_counter(), piece))
                if ch.get("finish_reason"):
                    out["finish"] = ch["finish_reason"]
        if not done:
            raise RuntimeError("stream ended without [DONE]")
        if out["finish"] is None or out["completion_tokens"] is None:
            raise RuntimeError("stream without finish_reason or usage")
        out["text"] = "".join(p for _, p in out["pieces"])
        out["ttft"] = out["pieces"][0][0] - t0 if out["pieces"] else None
        return out
    finally:
        conn.close()


class Client:
    """One user: a fixed script of conversations, new and returning.
    Round 0 starts a conversation; after that, odd (client + round) starts a
    new one and even continues the last one (at most `turns` turns long).
    Every request's seed is fixed by (client, round), so one client's
    replies are the same whether it runs alone or among many."""

    def __init__(self, index, max_tokens=16, temperature=0.8, turns=3):
        self.i, self.max_tokens, self.temperature, self.turns = index, max_tokens, temperature, turns
        self.history = []
        self.round = 0

    def next_messages(self):
        r, i = self.round, self.i
        returning = r > 0 and (i + r) % 2 == 0 and len(self.history) < 2 * self.turns
        if not returning:
            topic = TOPICS[(7 * i + 3 * r) % len(TOPICS)]
            self.history = [{"role": "user", "content": f"I am client {i}, chat {r}. Tell me about {topic}."}]
        else:
            self.history.append({"role": "user", "content": f"Client {i} again: say more about it ({r})."})
        return returning, list(self.history)

    def step(self, url):
        """Sends this round's request; returns (returning, result)."""
        returning, messages = self.next_messages()
        res = stream_chat(url, messages, seed=1000 * self.i + self.round, temperature=self.temperature,
                          max_tokens=self.max_tokens)
        self.history.append({"role": "assistant", "content": res["text"]})
        self.round += 1
        return returning, res


def run_clients(url, clients, rounds=None, deadline=None):
    """Runs every Client in its own thread for `rounds` rounds (or until
    `deadline`, time.perf_counter()). Returns (results, errors, wall_s):
    results[i] is client i's [(round, returning, result)]."""
    results = [[] for _ in clients]
    errors = []

    def work(k, c):
        try:
            while (rounds is None or c.round < rounds) and (deadline is None or time.perf_counter() < deadline):
                r = c.round
                returning, res = c.step(url)
                results[k].append((r, returning, res))
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors.append(f"client {c.i} round {c.round}: {e!r}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k, c)) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors, time.perf_counter() - t0


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


def summarize(results, wall_s):
    tokens = sum(res["completion_tokens"] for rs in results for _, _, res in rs)
    gaps, ttft = [], []
    for rs in results:
        for _, _, res in rs:
            t = [p[0] for p in res["pieces"]]
            gaps += [b - a for a, b in zip(t, t[1:])]
            if res["ttft"] is not None:
                ttft.append(res["ttft"])
    ms = lambda x: None if x is None else round(1000 * x, 2)  # noqa: E731
    return {"requests": sum(len(rs) for rs in results), "completion_tokens": tokens, "wall_s": round(wall_s, 3),
            "aggregate_tok_s": round(tokens / wall_s, 2) if wall_s > 0 else None,
            "itl_p50_ms": ms(percentile(gaps, 50)), "itl_p99_ms": ms(percentile(gaps, 99)),
            "ttft_p50_ms": ms(percentile(ttft, 50)), "ttft_p99_ms": ms(percentile(ttft, 99))}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))


def start_server(exe, model, sessions, extra=(), log_path=None):
    """Starts `samepage serve` on a free port; returns (process, url)."""
    log_path = log_path or os.path.join(sessions, "..", "serve.log")
    log = open(log_path, "w")
    args = [exe, "serve", "--model", model, "--port", "0", "--sessions", sessions, *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 120
    while time.time() < deadline:
        m = re.search(r"listening on (http://[\d.]+:\d+)", open(log_path).read())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}: {open(log_path).read()}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start: " + open(log_path).read())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exe", default="build/samepage", help="samepage binary (unless --url)")
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/samepage/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--url", help="a running server instead of starting one")
    ap.add_argument("--clients", default="1,4,16", help="concurrency levels, comma-separated")
    ap.add_argument("--seconds", type=float, default=20, help="run time per level")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--json", help="write the JSON here (default: stdout, before the table)")
    a = ap.parse_args()
    levels = [int(x) for x in a.clients.split(",") if x]
    proc, tmp = None, None
    url = a.url
    if not url:
        tmp = tempfile.mkdtemp(prefix="serve-load-")
        proc, url = start_server(a.exe, a.model, os.path.join(tmp, "sessions"),
                                 ["--backend", a.backend, "--ctx", str(a.ctx), "--max-live", str(max(levels)),
                                  "--max-concurrent-per-tenant", str(2 * max(levels))],
                                 os.path.join(tmp, "serve.log"))
    rows = []
    try:
        for n in levels:
            clients = [Client(i, max_tokens=a.max_tokens) for i in range(n)]
            results, errors, wall = run_clients(url, clients, deadline=time.perf_counter() + a.seconds)
            row = {"clients": n, **summarize(results, wall), "errors": len(errors)}
            if proc:
                row["server_rss_mib"] = round(rss_kib(proc.pid) / 1024, 1)
            for e in errors[:5]:
                print("error:", e, file=sys.stderr)
            rows.append(row)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=60)
    report = {"bench": "serve_load", "url": url if a.url else None, "model": os.path.basename(a.model),
              "backend": a.backend, "max_tokens": a.max_tokens, "seconds_per_level": a.seconds, "levels": rows}
    text = json.dumps(report, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    cols = ["clients", "requests", "completion_tokens", "aggregate_tok_s", "itl_p50_ms", "itl_p99_ms",
            "ttft_p50_ms", "ttft_p99_ms", "errors"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c)) for c in cols) + " |")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
