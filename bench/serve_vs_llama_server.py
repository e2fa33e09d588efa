#!/usr/bin/env python3
"""serve_vs_llama_server.py: `samepage serve` against llama.cpp's llama-server (issue 16).

Both servers get the same GGUF file, the CPU, 2 threads (samepage's CPU
backend uses every online CPU and has no --threads flag: run it on a
2-CPU machine, or under `taskset -c 0,1`, for a like-for-like figure), and
the same requests (temperature 0, fixed seed, streamed). They run one after
the other, never together, INTERLEAVED (repeat r runs samepage then
llama-server, repeat r+1 the other way round), and each figure is the
median of the repeats; every raw sample stays in the JSON.

A. Time to first token (TTFT) continuing a long conversation: a chat
   history H of ~2,000 tokens built from deterministic text, ending with a
   user turn; each server answers it (its own reply R, greedy), then the
   conversation goes on with one more user turn (H + R + U1, ...).

   samepage (--sessions DIR --max-live 1):
     cold      H on a fresh server: the whole history is prefilled
     restart   server stopped (SIGTERM) and started again on DIR; H+R+U1:
               the conversation is restored from its snapshot on disk
               (the snapshot files are dropped from the page cache first,
               posix_fadvise DONTNEED, unless --keep-page-cache)
     live      same server, next turn: only the new turn is prefilled
     evicted   another conversation in between (--max-live 1 evicts ours),
               then the next turn: restored from disk again
   llama-server (-np 1 -c CTX, --slot-save-path, cache_prompt true, its
   default --cache-ram host prompt cache):
     cold      H on a fresh server
     restart   server restarted; H+R+U1 is prefilled again from scratch
     live      same server, next turn: its prompt cache (slot KV) is warm
     evicted   another conversation in between; the next turn takes the
               prefix back from the --cache-ram host cache if it kept it
     slot_restore  restarted again, then POST /slots/0?action=restore of the
               slot file saved after H (a manual API a client must drive;
               the figure is restore call + TTFT, both are in the JSON)

B. Concurrent streaming clients (1, 4, 16): every client sends its own
   fixed short prompts (a new conversation each request), max_tokens 64,
   temperature 0, the same for both servers; `rounds` requests each, all
   clients started together. Aggregate decode tokens/s (completion tokens
   of every request / wall time of the level), inter-token latency (gap
   between two streamed pieces of a reply: p50, p99), per-request decode
   rate, TTFT p50/p99. samepage: --sessions (a snapshot after every turn,
   as `scripts/serve` runs it) --max-live 16; llama-server: -np 16
   --kv-unified -c CTX (16 slots sharing one CTX-token KV cache).

The machine may be shared: before each measured phase (one server's part
A flow, or one server's part B levels, and again before each part B level
but the first) the script waits up to --wait-quiet seconds for 3
consecutive idle seconds, and it records, per phase and per part B level,
the share of the CPU that OTHER processes used meanwhile ("load":
foreign_cpu_frac, 0 = quiet). The second summary keeps only the samples
at most --quiet-max (0.1) foreign. llama.cpp's spinning thread pool suffers
more from a busy machine than samepage's, so figures from phases with a
high foreign_cpu_frac are not a fair comparison.

Output: JSON (on stdout, and written to
bench/results/DATE-serve-vs-llama-server.json unless --json says where)
and two tables: medians of every repeat, and of the quiet phases only. Ratio columns: ours/theirs is samepage's figure over
llama-server's; "better" says which direction is better for the metric;
"samepage x" is that ratio turned so that > 1 always means samepage is
better (theirs/ours for latencies, ours/theirs for throughput).

    bench/serve_vs_llama_server.py                       # defaults
    bench/serve_vs_llama_server.py --repeats 5 --parts a,b
    bench/serve_vs_llama_server.py --quick               # 1 repeat, smaller
    bench/serve_vs_llama_server.py --backend cuda --llama-server BIN   # on a GPU:
        samepage serve --backend cuda against a CUDA llama-server with -ngl 999

llama-server: built by `scripts/build-llamacpp.sh --server` (run it, or pass
--build-peer to have this script run it, or --llama-server BIN).
Python's standard library only.
"""
import argparse
import ctypes
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("SAMEPAGE_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "samepage")
DEFAULT_MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_LLAMA_SERVER = os.path.join(CACHE, "llama.cpp-0.3.36", "build", "bin", "llama-server")

TOPICS = ["the moon", "bread", "rivers", "owls", "bicycles", "tea", "volcanoes", "chess", "rain", "bees",
          "maps", "glass", "whales", "clocks", "salt", "kites", "ferns", "ice", "trains", "paper"]
SENTENCES = [
    "The lighthouse stood at the edge of the world, and for two hundred years a keeper climbed its stairs every evening to light the lamp.",
    "Ships passed in the dark water below, their crews trusting the steady beam to guide them home through storms and fog.",
    "The keeper wrote the weather, the wind and the names of the vessels in a heavy leather book that nobody else would ever read.",
    "In spring the gulls came back to the rocks, and the keeper counted their nests along the northern cliff.",
    "Every autumn a supply boat brought oil, flour, candles and letters from a sister who lived in the city far to the south.",
    "When the great storm came, the waves rose higher than the gallery and the glass of the lamp room shook in its frame.",
    "The keeper kept the light burning all night, trimming the wick by hand when the clockwork failed.",
    "In the morning the sea was calm again, and a fishing boat that had been missing for two days came slowly into the harbour.",
]

PROCS = []  # every server process this script started: killed on exit


def log(msg):
    print(f"serve_vs_llama_server: {msg}", file=sys.stderr, flush=True)


def _die_with_parent():
    """preexec_fn: the server gets SIGKILL if this script dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def kill_all():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=10)
            except Exception:  # noqa: BLE001
                pass
    PROCS.clear()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(base, method, path, body=None, timeout=600):
    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        return r.status, data
    finally:
        conn.close()


class Server:
    """One server process (samepage or llama-server) on a port of its own."""

    def __init__(self, kind, exe, model, workdir, args):
        self.kind, self.exe, self.model, self.workdir, self.args = kind, exe, model, workdir, args
        self.proc, self.url = None, None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.log_path = os.path.join(self.workdir, f"{self.kind}-{self.starts}.log")
        logf = open(self.log_path, "w")
        t0 = time.perf_counter()
        if self.kind == "samepage":
            cmd = [self.exe, "serve", "--model", self.model, "--port", "0", *self.args]
        else:
            port = free_port()
            cmd = [self.exe, "-m", self.model, "--host", "127.0.0.1", "--port", str(port), *self.args]
            self.url = f"http://127.0.0.1:{port}"
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        PROCS.append(self.proc)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited {self.proc.returncode} at start: {self.tail()}")
            if self.kind == "samepage" and not self.url:
                m = re.search(r"listening on (http://[\d.]+:\d+)", open(self.log_path, errors="replace").read())
                if m:
                    self.url = m.group(1)
            if self.url:
                try:
                    st, _ = http_json(self.url, "GET", "/health", timeout=5)
                    if st == 200:
                        self.start_s = time.perf_counter() - t0
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not become healthy: {self.tail()}")

    def tail(self, n=15):
        try:
            return " | ".join(open(self.log_path, errors="replace").read().strip().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc in PROCS:
            PROCS.remove(self.proc)
        self.proc = None
        if self.kind == "samepage":
            self.url = None

    def rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                return round(int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1)) / 1024, 1)
        except (OSError, AttributeError):
            return None


def stream_chat(server, messages, max_tokens, seed=1, extra=None, timeout=900):
    """One streamed chat completion; returns a dict with t0, pieces [(t, text)],
    ttft_s, text, usage, timings (llama-server), prefilled (samepage header)."""
    body = {"messages": messages, "stream": True, "stream_options": {"include_usage": True},
            "max_tokens": max_tokens, "temperature": 0, "seed": seed,
            "repeat_penalty": 1.0}  # samepage's default is 1.1, llama-server's 1.0: the same greedy chain
    if server.kind == "llama":
        body["cache_prompt"] = True  # its default; said explicitly
    body.update(extra or {})
    host, port = server.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"{server.kind}: HTTP {resp.status}: {resp.read(2000)!r}")
        out = {"t0": t0, "pieces": [], "usage": None, "timings": None, "finish": None,
               "prefilled": resp.getheader("x-samepage-prefilled-tokens"),
               "session": resp.getheader("x-samepage-session")}
        done = False
        while True:
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
                raise RuntimeError(f"{server.kind}: stream error: {ev['error']}")
            if ev.get("usage"):
                out["usage"] = ev["usage"]
            if ev.get("timings"):
                out["timings"] = ev["timings"]
            for ch in ev.get("choices") or []:
                piece = (ch.get("delta") or {}).get("content")
                if piece:
                    out["pieces"].append((time.perf_counter(), piece))
                if ch.get("finish_reason"):
                    out["finish"] = ch["finish_reason"]
        if not done:
            raise RuntimeError(f"{server.kind}: stream ended without [DONE]")
        out["t_end"] = time.perf_counter()
        out["text"] = "".join(p for _, p in out["pieces"])
        out["ttft_s"] = out["pieces"][0][0] - t0 if out["pieces"] else None
        return out
    finally:
        conn.close()


def brief(res):
    """What of a stream_chat result goes into the JSON."""
    u = res.get("usage") or {}
    d = {"ttft_ms": None if res["ttft_s"] is None else round(1000 * res["ttft_s"], 2),
         "total_ms": round(1000 * (res["t_end"] - res["t0"]), 2),
         "prompt_tokens": u.get("prompt_tokens"), "completion_tokens": u.get("completion_tokens"),
         "cached_tokens": (u.get("prompt_tokens_details") or {}).get("cached_tokens"), "finish": res["finish"]}
    if res.get("prefilled") is not None:
        d["prefilled_tokens"] = int(res["prefilled"])
    t = res.get("timings")
    if t:
        d["prefilled_tokens"] = t.get("prompt_n")
        d["llama_cache_n"] = t.get("cache_n")
        d["llama_prompt_ms"] = round(t.get("prompt_ms", 0), 2)
    return d


# --------------------------------------------------------------------------- machine load

def cpu_jiffies():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle, sum(v[:8])


def our_cpu_s():
    """CPU seconds of this script and of the servers it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter:
    """What fraction of the machine's CPU OTHER processes used during a
    phase: (machine busy - this script - its servers) / (wall x CPUs).
    Servers must have been stopped (waited for) before stop() counts them."""

    def __init__(self, pid=None):
        self.pid = pid  # a running server of ours, counted through /proc
        self.b0, _ = cpu_jiffies()
        self.o0, self.t0 = our_cpu_s() + self.pid_cpu_s(), time.perf_counter()

    def pid_cpu_s(self):
        if not self.pid:
            return 0.0
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self):
        b1, _ = cpu_jiffies()
        hz = os.sysconf("SC_CLK_TCK")
        wall = time.perf_counter() - self.t0
        busy = (b1 - self.b0) / hz
        ours = our_cpu_s() + self.pid_cpu_s() - self.o0
        n = len(os.sched_getaffinity(0)) or 1
        return {"wall_s": round(wall, 2), "foreign_cpu_frac": round(max(0.0, busy - ours) / (wall * n), 3)}


def wait_quiet(max_wait, threshold=0.15, need=3):
    """Waits until the machine is at most `threshold` busy for `need`
    consecutive seconds (nothing of ours runs now), or max_wait seconds.
    Returns {"waited_s", "quiet", "busy_frac" of the last second}."""
    t0 = time.perf_counter()
    ok, frac = 0, None
    while True:
        b0, a0 = cpu_jiffies()
        time.sleep(1.0)
        b1, a1 = cpu_jiffies()
        frac = (b1 - b0) / max(1, a1 - a0)
        ok = ok + 1 if frac <= threshold else 0
        waited = time.perf_counter() - t0
        if ok >= need or waited >= max_wait:
            return {"waited_s": round(waited, 1), "quiet": ok >= need, "busy_frac": round(frac, 3)}


def phase(a, fn, *args):
    """Runs one measured phase after waiting for a quiet machine; returns
    fn's result with "load": the wait and the other processes' CPU share."""
    q = wait_quiet(a.wait_quiet) if a.wait_quiet > 0 else {"waited_s": 0, "quiet": None}
    m = LoadMeter()
    out = fn(*args)
    load = {**q, **m.stop()}
    if isinstance(out, dict):
        out["load"] = load
        return out
    return {"levels": out, "load": load}


# --------------------------------------------------------------------------- A

def history(target_tokens):
    """A deterministic user/assistant history of about target_tokens tokens
    (1.3 tokens a word, SmolLM2's tokenizer on this text), ending with a
    user turn."""
    msgs = [{"role": "system", "content": "You are a helpful assistant who remembers the whole conversation."}]
    words, i = 0, 0
    while words * 1.3 < target_tokens - 60:
        topic = TOPICS[i % len(TOPICS)]
        q = f"Question {i + 1}: tell me part {i + 1} of the lighthouse story, and mention {topic}."
        a = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(4)) + f" That is part {i + 1}, with {topic}."
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        words += len(q.split()) + len(a.split()) + 8
        i += 1
    msgs.append({"role": "user", "content": "Now summarise the whole story so far in two sentences."})
    return msgs


FOLLOW_UPS = ["What did the keeper write in the book?", "Who sent the letters?",
              "What happened after the storm?", "Name one bird from the story."]
OTHER_CONV = [{"role": "user", "content": "A different conversation: what is two plus two?"}]


def drop_page_cache(dirpath):
    """posix_fadvise(DONTNEED) on every file under dirpath (this process's
    files only: nothing else on the machine is touched). Returns bytes."""
    total = 0
    for d, _, files in os.walk(dirpath):
        for f in files:
            p = os.path.join(d, f)
            try:
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    total += os.fstat(fd).st_size
                finally:
                    os.close(fd)
            except OSError:
                pass
    return total


def part_a_samepage(a, work, rep):
    d = tempfile.mkdtemp(prefix=f"sp-a{rep}-", dir=work)
    sessions = os.path.join(d, "sessions")
    srv = Server("samepage", a.samepage, a.model, d,
                 ["--backend", a.backend, "--sessions", sessions, "--max-live", "1", "--ctx", str(a.ctx)])
    out = {}
    H = history(a.history_tokens)
    try:
        srv.start()
        r0 = stream_chat(srv, H, a.reply_tokens)
        out["cold"] = brief(r0)
        conv = H + [{"role": "assistant", "content": r0["text"]}]
        srv.stop()
        out["snapshot_bytes"] = sum(os.path.getsize(os.path.join(dd, f))
                                    for dd, _, fs in os.walk(sessions) for f in fs)
        if not a.keep_page_cache:
            drop_page_cache(sessions)
        srv.start()
        out["restart_server_start_ms"] = round(1000 * srv.start_s, 1)
        conv.append({"role": "user", "content": FOLLOW_UPS[0]})
        r1 = stream_chat(srv, conv, a.reply_tokens)
        out["restart"] = brief(r1)
        conv += [{"role": "assistant", "content": r1["text"]}, {"role": "user", "content": FOLLOW_UPS[1]}]
        r2 = stream_chat(srv, conv, a.reply_tokens)
        out["live"] = brief(r2)
        conv.append({"role": "assistant", "content": r2["text"]})
        out["other_conversation"] = brief(stream_chat(srv, OTHER_CONV, 8))
        conv.append({"role": "user", "content": FOLLOW_UPS[2]})
        r3 = stream_chat(srv, conv, a.reply_tokens)
        out["evicted"] = brief(r3)
        st, m = http_json(srv.url, "GET", "/metrics")
        out["metrics"] = [ln for ln in m.decode(errors="replace").splitlines()
                          if not ln.startswith("#") and re.search(r"restor|evict|snapshot", ln)]
        out["rss_mib"] = srv.rss_mib()
    finally:
        srv.stop()
        if not a.keep_work:
            shutil.rmtree(d, ignore_errors=True)
    return out


def llama_device_args(a):
    """llama-server's threads, and with --backend cuda every layer on the GPU."""
    threads = ["-t", str(a.threads), "-tb", str(a.threads)]
    return threads + (["-ngl", "999"] if a.backend == "cuda" else [])


def part_a_llama(a, work, rep):
    d = tempfile.mkdtemp(prefix=f"ll-a{rep}-", dir=work)
    slots = os.path.join(d, "slots")
    os.makedirs(slots)
    srv = Server("llama", a.llama_server, a.model, d,
                 llama_device_args(a) + ["-c", str(a.ctx), "-np", "1", "--slot-save-path", slots, "--no-webui"])
    out = {}
    H = history(a.history_tokens)
    try:
        srv.start()
        r0 = stream_chat(srv, H, a.reply_tokens)
        out["cold"] = brief(r0)
        conv = H + [{"role": "assistant", "content": r0["text"]}]
        t = time.perf_counter()
        st, body = http_json(srv.url, "POST", "/slots/0?action=save", {"filename": "conv.bin"})
        out["slot_save_ms"] = round(1000 * (time.perf_counter() - t), 2)
        if st != 200:
            out["slot_save_error"] = body.decode(errors="replace")[:300]
        srv.stop()
        out["slot_file_bytes"] = sum(os.path.getsize(os.path.join(slots, f)) for f in os.listdir(slots))
        srv.start()
        out["restart_server_start_ms"] = round(1000 * srv.start_s, 1)
        c1 = conv + [{"role": "user", "content": FOLLOW_UPS[0]}]
        r1 = stream_chat(srv, c1, a.reply_tokens)
        out["restart"] = brief(r1)
        conv = c1 + [{"role": "assistant", "content": r1["text"]}, {"role": "user", "content": FOLLOW_UPS[1]}]
        r2 = stream_chat(srv, conv, a.reply_tokens)
        out["live"] = brief(r2)
        conv.append({"role": "assistant", "content": r2["text"]})
        out["other_conversation"] = brief(stream_chat(srv, OTHER_CONV, 8))
        conv.append({"role": "user", "content": FOLLOW_UPS[2]})
        r3 = stream_chat(srv, conv, a.reply_tokens)
        out["evicted"] = brief(r3)
        out["rss_mib"] = srv.rss_mib()
        # slot restore after a restart: the manual save/restore API
        if "slot_save_error" not in out:
            srv.stop()
            if not a.keep_page_cache:
                drop_page_cache(slots)
            srv.start()
            t = time.perf_counter()
            st, body = http_json(srv.url, "POST", "/slots/0?action=restore", {"filename": "conv.bin"})
            restore_ms = round(1000 * (time.perf_counter() - t), 2)
            if st != 200:
                out["slot_restore_error"] = body.decode(errors="replace")[:300]
            else:
                r4 = stream_chat(srv, c1, a.reply_tokens)
                b = brief(r4)
                b["restore_call_ms"] = restore_ms
                b["ttft_only_ms"] = b["ttft_ms"]
                b["ttft_ms"] = round(restore_ms + b["ttft_ms"], 2)
                out["slot_restore"] = b
    finally:
        srv.stop()
        if not a.keep_work:
            shutil.rmtree(d, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- B

def client_messages(i, r):
    topic = TOPICS[(7 * i + 3 * r) % len(TOPICS)]
    return [{"role": "user", "content": f"I am client {i}, request {r}. Tell me about {topic} in a few sentences."}]


def run_level(srv, n, rounds, max_tokens):
    results = [[] for _ in range(n)]
    errors = []
    barrier = threading.Barrier(n + 1)

    def work(i):
        barrier.wait()
        try:
            for r in range(rounds):
                results[i].append(stream_chat(srv, client_messages(i, r), max_tokens, seed=1000 * i + r))
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors.append(f"client {i}: {e!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    res = [x for rs in results for x in rs]
    tokens = sum((x["usage"] or {}).get("completion_tokens") or 0 for x in res)
    gaps, ttft, rates = [], [], []
    for x in res:
        ts = [p[0] for p in x["pieces"]]
        gaps += [b - a for a, b in zip(ts, ts[1:])]
        if x["ttft_s"] is not None:
            ttft.append(x["ttft_s"])
        ct = (x["usage"] or {}).get("completion_tokens") or 0
        if len(ts) > 1 and ct > 1:
            rates.append((ct - 1) / (ts[-1] - ts[0]))
    ms = lambda v: None if v is None else round(1000 * v, 2)  # noqa: E731
    return {"clients": n, "rounds": rounds, "requests": len(res), "errors": errors,
            "completion_tokens": tokens, "pieces": sum(len(x["pieces"]) for x in res),
            "mean_completion_tokens": round(tokens / len(res), 1) if res else None,
            "wall_s": round(wall, 3), "aggregate_tok_s": round(tokens / wall, 2) if wall > 0 else None,
            "itl_p50_ms": ms(percentile(gaps, 50)), "itl_p99_ms": ms(percentile(gaps, 99)),
            "per_request_tok_s_p50": round(percentile(rates, 50), 2) if rates else None,
            "ttft_p50_ms": ms(percentile(ttft, 50)), "ttft_p99_ms": ms(percentile(ttft, 99)),
            "rss_mib": srv.rss_mib()}


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


def part_b(a, kind, work, rep, levels):
    d = tempfile.mkdtemp(prefix=f"{kind}-b{rep}-", dir=work)
    top = max(levels)
    if kind == "samepage":
        args = ["--backend", a.backend, "--max-live", str(top), "--ctx", str(a.ctx),
                "--max-concurrent-per-tenant", str(4 * top)]
        if not a.b_memory_only:
            args += ["--sessions", os.path.join(d, "sessions")]
        srv = Server("samepage", a.samepage, a.model, d, args + a.samepage_extra.split())
    else:
        srv = Server("llama", a.llama_server, a.model, d,
                     # -c is the unified cache of all slots: each conversation may reach --ctx, as samepage's
                     llama_device_args(a) + ["-c", str(a.ctx * top), "-np", str(top), "--kv-unified", "--no-webui"])
    out = []
    try:
        srv.start()
        stream_chat(srv, [{"role": "user", "content": "Warm up: say hello."}], 8)  # not measured
        for n in levels:
            rounds = a.rounds_1 if n == 1 else a.rounds
            q = wait_quiet(a.wait_quiet) if a.wait_quiet > 0 and n != levels[0] else {}
            m = LoadMeter(srv.proc.pid)
            row = run_level(srv, n, rounds, a.max_tokens)
            row["load"] = {**q, **m.stop()}
            for e in row["errors"][:3]:
                log(f"{kind} {n} clients: {e}")
            out.append(row)
    finally:
        srv.stop()
        if not a.keep_work:
            shutil.rmtree(d, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- report

def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 2) if xs else None


def ratio_rows(a_runs, b_runs, levels, max_foreign=None):
    """Table rows: (metric, samepage, llama, ours/theirs, better, samepage_x),
    medians over the repeats; with max_foreign, only over the phases whose
    load.foreign_cpu_frac is at most that (n_samepage, n_llama: how many)."""
    rows = []

    def ok(phase_out):
        return max_foreign is None or phase_out["load"]["foreign_cpu_frac"] <= max_foreign

    def add(name, ours, theirs, higher_better):
        (ours, n_ours), (theirs, n_theirs) = ours, theirs
        r = None if not ours or not theirs else ours / theirs
        x = None if r is None else (r if higher_better else 1 / r)
        rows.append({"metric": name, "samepage": ours, "llama_server": theirs,
                     "ours_over_theirs": None if r is None else round(r, 3),
                     "better": "higher" if higher_better else "lower",
                     "samepage_advantage": None if x is None else round(x, 3),
                     "n_samepage": n_ours, "n_llama": n_theirs})

    def medn(xs):
        xs = [x for x in xs if x is not None]
        return med(xs), len(xs)

    if a_runs:
        sp = [r["samepage"] for r in a_runs if ok(r["samepage"])]
        ll = [r["llama"] for r in a_runs if ok(r["llama"])]
        g = lambda runs, k, f="ttft_ms": medn([r.get(k, {}).get(f) for r in runs])  # noqa: E731
        add("A TTFT ms: cold, whole history prefilled (both)", g(sp, "cold"), g(ll, "cold"), False)
        add("A TTFT ms: after restart (samepage: restore from disk; llama: re-prefill)",
            g(sp, "restart"), g(ll, "restart"), False)
        add("A TTFT ms: after restart (samepage: restore; llama: slot restore API + TTFT)",
            g(sp, "restart"), g(ll, "slot_restore"), False)
        add("A TTFT ms: live next turn (samepage: live actor; llama: warm prompt cache)",
            g(sp, "live"), g(ll, "live"), False)
        add("A TTFT ms: after another conversation (samepage: evicted, --max-live 1; llama: -np 1 + --cache-ram)",
            g(sp, "evicted"), g(ll, "evicted"), False)
    for n in levels if b_runs else []:
        def pick(kind, key):
            return medn([row[key] for run in b_runs for row in run[kind]["levels"]
                         if row["clients"] == n and ok(row if "load" in row else run[kind])])
        add(f"B {n:>2} clients: aggregate tok/s", pick("samepage", "aggregate_tok_s"),
            pick("llama", "aggregate_tok_s"), True)
        add(f"B {n:>2} clients: ITL p50 ms", pick("samepage", "itl_p50_ms"), pick("llama", "itl_p50_ms"), False)
        add(f"B {n:>2} clients: ITL p99 ms", pick("samepage", "itl_p99_ms"), pick("llama", "itl_p99_ms"), False)
        add(f"B {n:>2} clients: per-request decode tok/s p50 (tokens-1 / first-to-last piece)",
            pick("samepage", "per_request_tok_s_p50"), pick("llama", "per_request_tok_s_p50"), True)
        add(f"B {n:>2} clients: TTFT p50 ms", pick("samepage", "ttft_p50_ms"), pick("llama", "ttft_p50_ms"), False)
    return rows


def machine_info():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": cpu or platform.machine(), "cpus_online": os.cpu_count(),
            "affinity": sorted(os.sched_getaffinity(0)), "kernel": platform.release()}


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--samepage", default=os.path.join(ROOT, "build", "samepage"))
    ap.add_argument("--llama-server", default=DEFAULT_LLAMA_SERVER)
    ap.add_argument("--build-peer", action="store_true", help="run scripts/build-llamacpp.sh --server first")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--backend", choices=["cpu", "cuda"], default="cpu",
                    help="samepage serve --backend; with cuda llama-server gets -ngl 999 (a CUDA build)")
    ap.add_argument("--threads", type=int, default=2, help="llama-server -t/-tb (samepage uses every online CPU)")
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--parts", default="a,b")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--history-tokens", type=int, default=2000)
    ap.add_argument("--reply-tokens", type=int, default=16, help="max_tokens of part A's replies")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--max-tokens", type=int, default=64, help="max_tokens of part B's replies")
    ap.add_argument("--rounds", type=int, default=2, help="requests per client in part B (4 and 16 clients)")
    ap.add_argument("--rounds-1", type=int, default=4, help="requests of the single client in part B")
    ap.add_argument("--b-memory-only", action="store_true", help="part B: samepage without --sessions")
    ap.add_argument("--samepage-extra", default="", help="part B: more `samepage serve` options (e.g. \"--spare-actors 0\")")
    ap.add_argument("--keep-page-cache", action="store_true",
                    help="part A: leave snapshot/slot files in the page cache before a restore")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary directories (logs, sessions)")
    ap.add_argument("--wait-quiet", type=float, default=120,
                    help="before each phase wait up to this many seconds for the machine to be idle (0: don't)")
    ap.add_argument("--quiet-max", type=float, default=0.1,
                    help="second summary: only phases where other processes used at most this share of the CPU")
    ap.add_argument("--resummarize", metavar="JSON", nargs="+",
                    help="recompute the summaries of result files, run nothing; several files (same model and "
                         "server settings) are merged into --json")
    ap.add_argument("--json", help="JSON path (default bench/results/DATE-serve-vs-llama-server.json)")
    ap.add_argument("--quick", action="store_true", help="1 repeat, 1,4 clients, 1 round")
    a = ap.parse_args()
    if a.quick:
        a.repeats, a.rounds, a.rounds_1 = 1, 1, 2
        if a.clients == ap.get_default("clients"):
            a.clients = "1,4"
    if a.resummarize:
        reports = []
        for path in a.resummarize:
            with open(path) as f:
                reports.append(json.load(f))
        if len(reports) == 1:
            return write_report(reports[0], a.json or a.resummarize[0], a.quiet_max)
        if not a.json:
            sys.exit("serve_vs_llama_server: error: merging several files needs --json OUT")
        keys = ["threads", "ctx", "history_tokens", "reply_tokens", "clients", "max_tokens", "rounds", "rounds_1"]
        base = reports[0]
        for r in reports[1:]:
            diff = [k for k in keys if r["settings"].get(k) != base["settings"].get(k)] + \
                   (["model"] if r["model"] != base["model"] else [])
            if diff:
                sys.exit(f"serve_vs_llama_server: error: cannot merge, settings differ: {diff}")
        merged = {k: v for k, v in base.items() if k not in ("summary", "summary_quiet")}
        merged["merged_from"] = [{"file": os.path.relpath(os.path.abspath(p), ROOT), "date": r["date"],
                                  "command": r["command"], "commit": r.get("commit"),
                                  "loadavg_before": r.get("loadavg_before"), "loadavg_after": r.get("loadavg_after")}
                                 for p, r in zip(a.resummarize, reports)]
        merged["command"] = "bench/serve_vs_llama_server.py --resummarize " + " ".join(
            os.path.relpath(os.path.abspath(p), ROOT) for p in a.resummarize) + f" --json {a.json}"
        merged["settings"] = {**base["settings"], "repeats": sum(r["settings"]["repeats"] for r in reports)}
        merged["part_a_runs"] = [x for r in reports for x in r["part_a_runs"]]
        merged["part_b_runs"] = [x for r in reports for x in r["part_b_runs"]]
        return write_report(merged, a.json, a.quiet_max)
    parts = set(a.parts.split(","))
    levels = [int(x) for x in a.clients.split(",") if x]

    if a.build_peer:
        p = subprocess.run([os.path.join(ROOT, "scripts", "build-llamacpp.sh"), "--server"],
                           stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit("serve_vs_llama_server: scripts/build-llamacpp.sh --server failed")
        a.llama_server = os.path.join(p.stdout.strip().splitlines()[-1], "llama-server")
    for what, path, hint in [("samepage", a.samepage, "build it: ninja -C build samepage"),
                             ("llama-server", a.llama_server,
                              "build it: scripts/build-llamacpp.sh --server (or pass --build-peer / --llama-server BIN)"),
                             ("model", a.model, "fetch it: scripts/fetch-model.sh, or pass --model FILE.gguf")]:
        if not os.path.isfile(path) or (what != "model" and not os.access(path, os.X_OK)):
            sys.exit(f"serve_vs_llama_server: error: {what} not found at {path}; {hint}")

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    work = tempfile.mkdtemp(prefix="serve-vs-llama-")
    a_runs, b_runs = [], []
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    commit = git_commit()  # HEAD when the run starts (the binary may be older: see --samepage)
    try:
        for rep in range(a.repeats):
            order = ["samepage", "llama"] if rep % 2 == 0 else ["llama", "samepage"]
            if "a" in parts:
                run = {}
                for kind in order:
                    log(f"repeat {rep + 1}/{a.repeats}: part A, {kind}")
                    run[kind] = phase(a, part_a_samepage if kind == "samepage" else part_a_llama, a, work, rep)
                a_runs.append(run)
                log("A " + json.dumps({k: {s: v.get("ttft_ms", v.get("foreign_cpu_frac"))
                                           for s, v in run[k].items() if isinstance(v, dict)} for k in run}))
            if "b" in parts:
                run = {}
                for kind in order:
                    log(f"repeat {rep + 1}/{a.repeats}: part B, {kind}")
                    run[kind] = phase(a, part_b, a, kind, work, rep, levels)
                b_runs.append(run)
                log("B " + json.dumps({k: [r["aggregate_tok_s"] for r in run[k]["levels"]] + [run[k]["load"]]
                                       for k in run}))
    finally:
        kill_all()
        if not a.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"work files kept in {work}")

    report = {
        "bench": "serve_vs_llama_server", "date": started.isoformat(timespec="seconds"),
        "commit": commit, "machine": machine_info(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "model": os.path.basename(a.model), "samepage": a.samepage, "llama_server": a.llama_server,
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT) if sys.argv[0].startswith(ROOT) else sys.argv[0],
                             *sys.argv[1:]]),
        "settings": {"threads": a.threads, "ctx": a.ctx, "repeats": a.repeats, "history_tokens": a.history_tokens,
                     "reply_tokens": a.reply_tokens, "clients": levels, "max_tokens": a.max_tokens,
                     "rounds": a.rounds, "rounds_1": a.rounds_1, "temperature": 0, "repeat_penalty": 1.0,
                     "wait_quiet_s": a.wait_quiet,
                     "b_samepage_sessions_on_disk": not a.b_memory_only,
                     "page_cache_dropped_before_restore": not a.keep_page_cache,
                     "backend": a.backend,
                     "samepage_args_a": f"serve --backend {a.backend} --sessions DIR --max-live 1 --ctx CTX",
                     "llama_args_a": " ".join(llama_device_args(a)) + " -c CTX -np 1 --slot-save-path DIR --no-webui",
                     "samepage_args_b": f"serve --backend {a.backend} --max-live {max(levels)} --ctx CTX "
                                        f"--max-concurrent-per-tenant {4 * max(levels)}"
                                        + ("" if a.b_memory_only else " --sessions DIR")
                                        + (" " + a.samepage_extra if a.samepage_extra else ""),
                     "llama_args_b": " ".join(llama_device_args(a)) + f" -c CTX*{max(levels)} -np {max(levels)} --kv-unified --no-webui"},
        "part_a_runs": a_runs, "part_b_runs": b_runs,
    }
    path = a.json or os.path.join(ROOT, "bench", "results", f"{started:%Y-%m-%d}-serve-vs-llama-server.json")
    return write_report(report, path, a.quiet_max)


def write_report(report, path, quiet_max):
    """Adds the summaries to report, writes it to path, prints it and the tables."""
    a_runs, b_runs, levels = report["part_a_runs"], report["part_b_runs"], report["settings"]["clients"]
    report["summary"] = ratio_rows(a_runs, b_runs, levels)
    report["summary_quiet"] = {"max_foreign_cpu_frac": quiet_max,
                               "rows": ratio_rows(a_runs, b_runs, levels, quiet_max)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    print(f"\nJSON: {path}")
    for title, rows in [("every repeat", report["summary"]),
                        (f"only phases where other processes used <= {quiet_max} of the CPU",
                         report["summary_quiet"]["rows"])]:
        print(f"\nMedians, {title} (n = repeats counted, samepage/llama-server):")
        print("| metric | samepage | llama-server | ours/theirs | better | samepage advantage (>1: samepage better) | n |")
        print("|---|---:|---:|---:|---|---:|---|")
        for r in rows:
            print(f"| {r['metric']} | {r['samepage']} | {r['llama_server']} | {r['ours_over_theirs']} | "
                  f"{r['better']} | {r['samepage_advantage']} | {r['n_samepage']}/{r['n_llama']} |")
    loads = [run[k]["load"]["foreign_cpu_frac"] for run in a_runs + b_runs for k in run]
    if loads:
        print(f"\nother processes' share of the CPU during the measured phases: median {med(loads)}, "
              f"max {max(loads)} (0 = a quiet machine; per phase in the JSON, load)")
    errs = sum(len(row["errors"]) for run in b_runs for k in run for row in run[k]["levels"])
    return 1 if errs else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()
