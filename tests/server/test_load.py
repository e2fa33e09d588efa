"""Load on loopback, bounded in time (CTest test_serve_load, SP_SERVE_LOAD=1):
16 concurrent streaming clients, new and returning conversations mixed,
temperature > 0 with a seed per request. Every reply must equal the one
the same client got running alone (no lost or mixed-up tokens), no request
may fail, and the server's RSS after the measured rounds must stay within
rss_bound() of its RSS after the warm-up round.

The clients are bench/serve_load.py's (the benchmark runs them longer)."""
import os
import pathlib
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
import serve_load  # noqa: E402
from conftest import BACKEND  # noqa: E402

pytestmark = pytest.mark.skipif(not os.environ.get("SP_SERVE_LOAD"),
                                reason="the load test runs as CTest test_serve_load (SP_SERVE_LOAD=1)")

CLIENTS = 16
ROUNDS = 3            # round 0 is the warm-up; rounds 1..2 are measured
MAX_TOKENS = 12


def rss_bound(warm_kib):
    """The RSS allowed after the measured rounds: 5 % + 24 MiB over the
    warm-up's. After the warm-up every live actor exists (--max-live 16, one
    per client); later rounds only replace them (evicted to disk, restored,
    started anew), so memory must not grow with the number of turns."""
    return warm_kib * 1.05 + 24 * 1024


def server_args():
    # One tenant (no key file) with all 16 streams in flight at once. A
    # stream holds its slot until the server has freed it, a moment after
    # the client read [DONE]: hence twice as many slots as clients.
    # SP_SERVE_ISOLATION=process (CTest test_serve_load_isolated): each
    # conversation's actor computes in its own worker process.
    isolation = os.environ.get("SP_SERVE_ISOLATION")
    return ["--max-live", str(CLIENTS), "--max-concurrent-per-tenant", str(2 * CLIENTS)] + \
        (["--isolation", isolation] if isolation else [])


def texts(results):
    return {(i, r): (res["text"], res["completion_tokens"], res["finish"])
            for i, rs in enumerate(results) for r, _, res in rs}


def test_sixteen_clients_match_single_client_runs(make_server, tmp_path):
    # The reference: each client alone, one after the other, on its own server.
    t0 = time.monotonic()
    ref_srv = make_server(tmp_path / "ref-sessions", *server_args())
    want = {}
    for i in range(CLIENTS):
        c = serve_load.Client(i, max_tokens=MAX_TOKENS)
        for r in range(ROUNDS):
            _, res = c.step(ref_srv.url)
            want[(i, r)] = (res["text"], res["completion_tokens"], res["finish"])
    ref_srv.stop()
    t_ref = time.monotonic() - t0
    assert any(t for t, _, _ in want.values())

    srv = make_server(tmp_path / "sessions", *server_args())
    clients = [serve_load.Client(i, max_tokens=MAX_TOKENS) for i in range(CLIENTS)]
    # Warm-up: every client's first conversation, all at once.
    warm, errors, _ = serve_load.run_clients(srv.url, clients, rounds=1)
    assert not errors, errors
    warm_rss = serve_load.rss_kib(srv.proc.pid)
    # Measured: the rest of the script, every client at its own pace.
    rest, errors, wall = serve_load.run_clients(srv.url, clients, rounds=ROUNDS)
    assert not errors, errors
    end_rss = serve_load.rss_kib(srv.proc.pid)

    got = texts(warm)
    got.update(texts(rest))
    assert len(got) == CLIENTS * ROUNDS
    returning = sum(ret for rs in rest for _, ret, _ in rs)
    assert 0 < returning < CLIENTS * (ROUNDS - 1)  # a mix of new and returning
    bad = [(k, got[k], want[k]) for k in sorted(want) if got[k] != want[k]]
    assert not bad, f"{len(bad)} replies differ from the single-client run, first: {bad[0]}"
    # Returning conversations prefilled only their new tokens.
    for rs in rest:
        for _, ret, res in rs:
            if ret:
                assert 0 < res["prefilled"] < res["prompt_tokens"], res
    assert end_rss <= rss_bound(warm_rss), f"RSS grew from {warm_rss} KiB to {end_rss} KiB"
    stats = serve_load.summarize(rest, wall)
    print(f"\nload: {stats}; RSS {warm_rss // 1024} MiB after warm-up, {end_rss // 1024} MiB after "
          f"{ROUNDS - 1} more rounds; reference runs {t_ref:.1f} s")
    assert srv.metric("samepage_evictions_total") > 0  # more conversations than live actors
    # Cross-actor batching (on by default: CPU, no worker processes) ran
    # some of these turns batched, and the replies above are still equal.
    if not os.environ.get("SP_SERVE_ISOLATION") and BACKEND == "cpu":
        assert srv.metric("samepage_batched_lists_total") > 0
