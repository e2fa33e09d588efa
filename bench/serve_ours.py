#!/usr/bin/env python3
"""serve_ours.py: samepage serve alone, parts A and B of
serve_vs_llama_server.py (same flows, same figures), without the peer: for a
before/after of samepage itself where llama-server cannot be built in time
(the GPU machine's budget). Ratios against llama-server come only from
serve_vs_llama_server.py, where both run in one call.

    bench/serve_ours.py --samepage build/samepage --model F.gguf --backend cuda [--json OUT]
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_vs_llama_server as peer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samepage", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--history-tokens", type=int, default=2000)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--samepage-extra", default="", help="part B: more `samepage serve` options")
    ap.add_argument("--json")
    a = ap.parse_args()
    # the settings serve_vs_llama_server.py uses by default
    a.reply_tokens, a.max_tokens, a.rounds, a.rounds_1 = 16, 64, 2, 4
    a.keep_page_cache, a.b_memory_only, a.wait_quiet, a.threads, a.keep_work = False, False, 0, 2, False
    work = tempfile.mkdtemp(prefix="serve-ours-")
    levels = [int(x) for x in a.clients.split(",")]
    try:
        out = {"backend": a.backend, "model": os.path.basename(a.model),
               "part_a": peer.part_a_samepage(a, work, 0), "part_b": peer.part_b(a, "samepage", work, 0, levels)}
    finally:
        peer.kill_all()
    text = json.dumps(out, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)
    pa = out["part_a"]
    print("| figure | samepage |\n|---|---:|")
    for k in ("cold", "restart", "live", "evicted"):
        if isinstance(pa.get(k), dict):
            print(f"| A TTFT ms: {k} | {pa[k].get('ttft_ms')} |")
    for row in out["part_b"]:
        print(f"| B {row['clients']} clients: aggregate tok/s | {row['aggregate_tok_s']} |")
        print(f"| B {row['clients']} clients: TTFT p50 ms | {row['ttft_p50_ms']} |")
        print(f"| B {row['clients']} clients: ITL p50/p99 ms | {row['itl_p50_ms']} / {row['itl_p99_ms']} |")


if __name__ == "__main__":
    main()
