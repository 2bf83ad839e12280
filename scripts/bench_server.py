"""``bsc serve`` on loopback beside a direct upstream call and LiteLLM's proxy, in one run.

    python scripts/bench_server.py --litellm /tmp/llvenv/bin/litellm \
        --json docs/results/server.json

The upstream is the tests' fake chat-completions server (tests/fake_servers.py).
Each proxy runs as a subprocess and is measured the same way, in turn:

- hit latency: sequential exact hits over one keep-alive connection, p50/p99,
  beside the proxy's health route on the same connection (the HTTP stack alone);
- hits per second: 32 concurrent clients (asyncio, httpx, in two processes) sending
  exact hits;
- a miss's time to first byte: streamed requests for questions never asked,
  to the proxy and straight to the upstream in a fresh random order, with the
  upstream waiting ``--first-token`` seconds before it answers, as an LLM does.

The embedder is ``upstream:fake-embed``, but exact hits never embed: the hit
figures exclude embedding. The load generator shares the machine's cores with
the proxy; the figures are for comparison within the run. LiteLLM runs with
its in-memory cache (``cache_params: {type: local}``) if ``--litellm`` names its
command; its cache is exact-match, like these hits.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_servers import FakeOpenAI  # noqa: E402
from tests.server_support import Launched, Served, free_port  # noqa: E402

QUESTIONS = 50
LITELLM_CONFIG = """model_list:
  - model_name: fake-chat
    litellm_params:
      model: openai/fake-chat
      api_base: {upstream}
      api_key: sk-fake
litellm_settings:
  cache: true
  cache_params:
    type: local
"""


def body(text, stream=False):
    return {"model": "fake-chat", "stream": stream,
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": text}]}


HEADERS = {"Authorization": "Bearer sk-bench"}


class LiteLLM(Launched):
    """LiteLLM's proxy as a subprocess, stopped by its pid."""

    def __init__(self, command, upstream, folder):
        port = free_port()
        config = Path(folder) / "litellm.yaml"
        config.write_text(LITELLM_CONFIG.format(upstream=upstream))
        env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}
        super().__init__("litellm", [command, "--config", str(config), "--port", str(port),
                                     "--num_workers", "1"],
                         port, Path(folder) / "litellm.log", "/health/liveliness", env=env,
                         wait=120.0)


def percentiles(seconds):
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "calls": len(ms)}


def hit_latency(base, floor_url, n, label):
    """Sequential hits (and the floor URL) over one keep-alive connection."""
    with httpx.Client(timeout=30) as http:
        url = base + "/chat/completions"
        for i in range(QUESTIONS):  # store every question first
            http.post(url, json=body(f"question {i} of the benchmark"), headers=HEADERS)
        hits, floor = [], []
        for j in range(n):
            text = f"question {j % QUESTIONS} of the benchmark"
            for which in random.sample(("hit", "floor"), 2):
                t0 = time.perf_counter()
                if which == "hit":
                    r = http.post(url, json=body(text), headers=HEADERS)
                    hits.append(time.perf_counter() - t0)
                    if label and r.headers.get(label[0]) != label[1]:
                        raise RuntimeError(f"expected a hit, got {r.headers.get(label[0])}")
                else:
                    http.get(floor_url)
                    floor.append(time.perf_counter() - t0)
    return percentiles(hits), percentiles(floor)


async def _hit_load(base, total, clients):
    url = base + "/chat/completions"
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as h:
        queue = list(range(total))
        errors = []

        async def client():
            while queue:
                i = queue.pop()
                r = await h.post(url, json=body(f"question {i % QUESTIONS} of the benchmark"),
                                 headers=HEADERS)
                if r.status_code != 200:
                    errors.append(r.status_code)

        started = time.time()
        await asyncio.gather(*(client() for _ in range(clients)))
        return started, time.time(), errors


def _load_worker(base, total, clients, start, results):
    start.wait(60)
    results.put(asyncio.run(asyncio.wait_for(_hit_load(base, total, clients), 600)))


def hits_per_second(base, total, clients=32, processes=2):
    """Hits per second of ``clients`` concurrent clients, spread over ``processes``.

    One Python process of httpx clients cannot send more than a few hundred
    requests a second, so the clients run in several, started together; the
    rate is all their requests over the time from the first start to the last end.
    """
    import multiprocessing

    start, results = multiprocessing.Event(), multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_load_worker, args=(
        base, total // processes, clients // processes, start, results))
        for _ in range(processes)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # every worker has imported and is waiting
    start.set()
    spans = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(60)
    errors = [e for _, _, errs in spans for e in errs]
    if errors:
        raise RuntimeError(f"{len(errors)} errors under load, e.g. {errors[0]}")
    return (total // processes * processes) / (max(e for _, e, _ in spans)
                                               - min(s for s, _, _ in spans))


def first_byte(url, text):
    """Seconds to the first content-bearing SSE line of a streamed request."""
    t0 = time.perf_counter()
    with httpx.stream("POST", url + "/chat/completions", json=body(text, stream=True),
                      headers=HEADERS, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and '"content"' in line:
                return time.perf_counter() - t0
    raise RuntimeError("the stream had no content")


def miss_ttfb(upstream, proxies, n, tag):
    """First-byte times of misses through each proxy and straight to the upstream."""
    sides = {"direct": upstream.url, **proxies}
    times = {name: [] for name in sides}
    for i in range(n):
        for name in random.sample(list(sides), len(sides)):
            times[name].append(first_byte(sides[name], f"{tag} never asked {i} {name}"))
    return {name: percentiles(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--litellm", metavar="COMMAND", help="LiteLLM's `litellm` command")
    parser.add_argument("--hits", type=int, default=2_000, help="sequential hits (2000)")
    parser.add_argument("--load", type=int, default=8_000, help="requests under load (8000)")
    parser.add_argument("--misses", type=int, default=100, help="streamed misses (100)")
    parser.add_argument("--first-token", type=float, default=0.05,
                        help="seconds the upstream waits before answering (0.05)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    random.seed(0)
    out = {"hits": args.hits, "load": args.load, "misses": args.misses,
           "first_token_s": args.first_token, "clients": 32, "cpu_count": os.cpu_count(),
           "proxies": {}}
    with tempfile.TemporaryDirectory() as folder, FakeOpenAI(dim=64) as upstream:
        folder = Path(folder)
        ours = Served(upstream.url, folder, "--embedder", "upstream:fake-embed",
                      "--cache-dir", str(folder / "home"))
        others = {}
        try:
            if args.litellm:
                others["litellm"] = LiteLLM(args.litellm, upstream.url, folder)
            proxies = {"bsc serve": ours, **others}
            for name, proxy in proxies.items():
                label = ("x-bsc-cache", "HIT") if name == "bsc serve" else None
                hit, floor = hit_latency(proxy.base, proxy.url + proxy.health, args.hits, label)
                rate = hits_per_second(proxy.base, args.load)
                version = httpx.post(proxy.base + "/chat/completions", json=body("question 0 of "
                                     "the benchmark"), headers=HEADERS).headers.get(
                                         "x-litellm-version")
                out["proxies"][name] = {"hit": hit, "floor": floor, "hits_per_second": rate,
                                        "version": version}
                print(f"{name}: hit p50 {hit['p50_ms']:.2f} ms, p99 {hit['p99_ms']:.2f} ms "
                      f"(floor p50 {floor['p50_ms']:.2f} ms); {rate:,.0f} hits/s with 32 "
                      "clients", flush=True)
            upstream.chat_delay = args.first_token
            out["ttfb"] = miss_ttfb(upstream, {n: p.base for n, p in proxies.items()},
                                    args.misses, "ttfb")
            for name, figures in out["ttfb"].items():
                print(f"miss time to first byte, {name}: p50 {figures['p50_ms']:.1f} ms, "
                      f"p99 {figures['p99_ms']:.1f} ms", flush=True)
        finally:
            ours.stop()
            for other in others.values():
                other.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
