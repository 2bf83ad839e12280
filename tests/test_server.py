"""``bsc serve`` as users meet it: a real uvicorn on a real socket, driven by the openai client."""

import asyncio
import subprocess
import sys
import threading
import time

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from binary_semantic_cache import BinarySemanticCache  # noqa: E402
from binary_semantic_cache.llm import keys  # noqa: E402
from binary_semantic_cache.server.tenancy import load_secret, tenant_of  # noqa: E402

from .fake_servers import FakeOllama, FakeOpenAI  # noqa: E402
from .server_support import Served, free_port  # noqa: E402


def question(text, **extra):
    return {"model": "fake-chat", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": text}], **extra}


@pytest.fixture
def upstream():
    with FakeOpenAI(dim=64) as server:
        yield server


@pytest.fixture
def proxy(upstream, tmp_path):
    with Served(upstream.url, tmp_path, "--embedder", "upstream:fake-embed",
                "--cache-dir", str(tmp_path / "home")) as served:
        yield served


def client_of(proxy, key="sk-tenant-a"):
    return openai.OpenAI(base_url=proxy.base, api_key=key, max_retries=0, timeout=30)


def post(proxy, body, key="sk-tenant-a", headers=None, **kwargs):
    headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    return httpx.post(proxy.base + "/chat/completions", json=body, headers=headers,
                      timeout=30, **kwargs)


def stats(proxy):
    return httpx.get(proxy.url + "/bsc/stats", timeout=10).json()


def test_hit_and_miss_headers_with_the_openai_client(proxy, upstream):
    client = client_of(proxy)
    first = client.chat.completions.with_raw_response.create(**question("What is the capital "
                                                                        "of France?"))
    again = client.chat.completions.with_raw_response.create(**question("What is the capital "
                                                                        "of France?"))
    near = client.chat.completions.with_raw_response.create(**question("what is the capital "
                                                                       "of france"))
    assert [r.headers["x-bsc-cache"] for r in (first, again, near)] == ["MISS", "HIT", "HIT"]
    assert "x-bsc-similarity" not in again.headers
    assert 0.9 <= float(near.headers["x-bsc-similarity"]) <= 1.0
    assert int(again.headers["age"]) >= 0
    texts = {r.parse().choices[0].message.content for r in (first, again, near)}
    assert len(texts) == 1 and upstream.chats == 1


def test_streams_pass_through_and_replay(proxy, upstream):
    client = client_of(proxy)
    miss = client.chat.completions.create(**question("Tell me about dragons"), stream=True)
    first = "".join(c.choices[0].delta.content or "" for c in miss if c.choices)
    hit = client.chat.completions.create(**question("Tell me about dragons"), stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(hit)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == first
    assert chunks[-1].usage is not None and upstream.chats == 1
    plain = client.chat.completions.create(**question("Tell me about dragons"))
    assert plain.choices[0].message.content == first and upstream.chats == 1
    raw = post(proxy, question("Tell me about dragons", stream=True))
    assert raw.headers["x-bsc-cache"] == "HIT" and raw.text.endswith("data: [DONE]\n\n")


def test_the_async_client(proxy, upstream):
    async def main():
        client = openai.AsyncOpenAI(base_url=proxy.base, api_key="sk-a", max_retries=0,
                                    timeout=30)
        try:
            replies = await asyncio.gather(*(client.chat.completions.create(
                **question("Who wrote Hamlet?")) for _ in range(10)))
            stream = await client.chat.completions.create(**question("Who wrote Hamlet?"),
                                                          stream=True)
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream
                                if c.choices])
            return [r.choices[0].message.content for r in replies], streamed
        finally:
            await client.close()

    texts, streamed = asyncio.run(asyncio.wait_for(main(), 60))
    assert len(set(texts)) == 1 and streamed == texts[0] and upstream.chats == 1


def test_api_keys_are_isolated_and_never_reach_the_disk(proxy, upstream, tmp_path):
    assert post(proxy, question("Q1"), key="sk-alice").headers["x-bsc-cache"] == "MISS"
    assert post(proxy, question("Q1"), key="sk-bob").headers["x-bsc-cache"] == "MISS"
    assert post(proxy, question("Q1"), key="sk-alice").headers["x-bsc-cache"] == "HIT"
    assert [e["_headers"]["authorization"] for e in upstream.chat_log()] == [
        "Bearer sk-alice", "Bearer sk-bob"]
    assert proxy.stop()
    saved = b"".join(p.read_bytes() for p in (tmp_path / "home").rglob("*") if p.is_file())
    assert b"sk-alice" not in saved and b"sk-bob" not in saved
    assert "sk-alice" not in proxy.output()


def test_shared_tenants_share(upstream, tmp_path):
    with Served(upstream.url, tmp_path, "--shared-tenants") as served:
        post(served, question("Q1"), key="sk-alice")
        assert post(served, question("Q1"), key="sk-bob").headers["x-bsc-cache"] == "HIT"


NEVER = [(("finish", "length"), "length"), (("finish", "content_filter"), "content_filter"),
         ("tool_calls", "tool_calls"), ("empty", "empty"), (("status", 500, {}), "error")]


def test_the_never_store_rules(proxy, upstream):
    for i, (action, reason) in enumerate(NEVER):
        upstream.chat_script = [action]
        body = question(f"never store {i}")
        first = post(proxy, body)
        second = post(proxy, body)
        assert (first.headers["x-bsc-cache"], second.headers["x-bsc-cache"]) == ("MISS", "MISS")
        assert second.status_code == 200
    upstream.chat_script = [("cut", 2)]
    cut = post(proxy, question("a cut stream", stream=True))
    assert "[DONE]" not in cut.text
    skipped = stats(proxy)["llm"]["skipped_stores"]
    assert skipped == {**{reason: 1 for _, reason in NEVER}, "incomplete_stream": 1}
    assert stats(proxy)["cache"]["size"] == len(NEVER)  # the second, clean answers only


def test_upstream_errors_pass_through_unchanged(proxy, upstream):
    upstream.chat_script = [("status", 429, {"Retry-After": "7"}), ("status", 401, {}),
                            ("status", 400, {})]
    for status in (429, 401, 400):
        direct = post(proxy, question(f"error {status}"))
        assert direct.status_code == status and direct.json()["error"]["message"] == (
            f"scripted {status}")
        if status == 429:
            assert direct.headers["retry-after"] == "7"
    with pytest.raises(openai.RateLimitError):
        upstream.chat_script = [("status", 429, {"Retry-After": "1"})]
        client_of(proxy).chat.completions.create(**question("rate limited"))
    assert stats(proxy)["cache"]["size"] == 0


def test_an_unreachable_upstream_is_a_502_and_a_slow_one_a_504(upstream, tmp_path):
    with Served(f"http://127.0.0.1:{free_port()}/v1", tmp_path) as served:
        down = post(served, question("hello"))
        assert down.status_code == 502 and "could not be reached" in down.json()["error"][
            "message"]
        assert "upstream unreachable" in served.output()
    upstream.chat_delay = 3.0
    with Served(upstream.url, tmp_path, "--upstream-timeout", "0.5") as served:
        slow = post(served, question("hello"))
        assert slow.status_code == 504 and "within 0.5 s" in slow.json()["error"]["message"]
        assert httpx.get(served.url + "/healthz").status_code == 200


def test_bad_requests_are_refused_and_the_proxy_stays_up(upstream, tmp_path):
    with Served(upstream.url, tmp_path, "--max-body", "2000") as served:
        url, auth = served.base + "/chat/completions", {"Authorization": "Bearer k"}
        cases = [
            (dict(content=b"x" * 5000), 413, "max-body"),
            (dict(content=b"{not json"), 400, "not valid JSON"),
            (dict(json=["a list"]), 400, "JSON object"),
            (dict(json={"messages": [{"role": "user", "content": "hi"}]}), 400, "'model'"),
            (dict(json={"model": "m"}), 400, "'messages'"),
            (dict(json={**question("hi"), "cache": {"nope": 1}}), 400, "unknown cache control"),
            (dict(json=question("hi"), headers={**auth, "X-BSC-TTL": "soon"}), 400, "X-BSC-TTL"),
        ]
        for kwargs, status, text in cases:
            kwargs.setdefault("headers", auth)
            response = httpx.post(url, timeout=10, **kwargs)
            assert response.status_code == status and text in response.json()["error"][
                "message"], response.text
        assert httpx.get(served.url + "/nowhere").json()["error"]["message"]
        assert httpx.get(served.url + "/healthz").status_code == 200
    assert upstream.chats == 0


def test_request_controls(proxy, upstream):
    post(proxy, question("Q"))
    fresh = post(proxy, question("Q"), headers={"Cache-Control": "no-cache"})
    assert fresh.headers["x-bsc-cache"] == "REFRESH"
    assert post(proxy, question("Q")).json() == fresh.json()  # replaced in place
    assert post(proxy, question("R"), headers={"Cache-Control": "no-store"}).headers[
        "x-bsc-cache"] == "MISS"
    assert post(proxy, question("R")).headers["x-bsc-cache"] == "MISS"
    spaced = post(proxy, question("Q"), headers={"X-BSC-Namespace": "team-2"})
    assert spaced.headers["x-bsc-cache"] == "MISS"
    body = {**question("S"), "cache": {"ttl": 60, "namespace": "team-2"}}
    post(proxy, body)
    assert "cache" not in upstream.chat_log()[-1]
    assert not any(k.startswith("x-bsc") or k == "cache-control"
                   for k in upstream.chat_log()[-1]["_headers"])


def test_other_routes_are_forwarded_unchanged(proxy, upstream):
    models = httpx.get(proxy.base + "/models", headers={"Authorization": "Bearer k"})
    direct = httpx.get(upstream.url + "/models")
    assert models.status_code == 200 and models.json() == direct.json()
    vectors = client_of(proxy).embeddings.create(model="fake-embed", input=["hello", "world"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 64


def test_metrics_and_stats(proxy, upstream):
    post(proxy, question("Q"))
    post(proxy, question("Q"))
    text = httpx.get(proxy.url + "/metrics").text
    assert 'bsc_lookups_total{result="hit",tier="exact"} 1.0' in text
    assert 'bsc_chat_requests_total{outcome="hit"} 1.0' in text
    assert 'bsc_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 2.0' \
        in text and "bsc_hit_seconds_bucket" in text
    s = stats(proxy)
    assert s["llm"]["hits"] == 1 and s["cache"]["size"] == 1 and s["llm"]["lookups"][
        "exact/hit"] == 1


def test_flush_needs_the_admin_token(upstream, tmp_path):
    with Served(upstream.url, tmp_path) as served:
        assert httpx.post(served.url + "/bsc/flush").status_code == 403
    token = tmp_path / "token"
    token.write_text("a-long-enough-admin-token\n")
    with Served(upstream.url, tmp_path, "--admin-token-file", str(token)) as served:
        post(served, question("Q"))
        post(served, question("Q"), headers={"X-BSC-Namespace": "team-2"})
        post(served, question("R"), headers={"X-BSC-Namespace": "team-2"})
        flush = served.url + "/bsc/flush"
        assert httpx.post(flush, headers={"X-BSC-Admin-Token": "wrong"}).status_code == 401
        ok = {"X-BSC-Admin-Token": "a-long-enough-admin-token"}
        assert httpx.post(flush, headers=ok, json={"namespace": "team-2"}).json()["removed"] == 2
        assert post(served, question("Q")).headers["x-bsc-cache"] == "HIT"
        assert httpx.post(flush, headers=ok).json()["removed"] == 1
        assert post(served, question("Q")).headers["x-bsc-cache"] == "MISS"


def test_sigterm_saves_and_a_restart_keeps_the_hits(upstream, tmp_path):
    home = tmp_path / "home"
    served = Served(upstream.url, tmp_path, "--cache-dir", str(home), "--embedder",
                    "upstream:fake-embed", "--save-interval", "3600")
    post(served, question("What is the capital of France?"))
    assert served.stop() and "saved 1 entries" in served.output()
    with Served(upstream.url, tmp_path, "--cache-dir", str(home), "--embedder",
                "upstream:fake-embed") as again:
        assert "(loaded)" in again.output() and "1 of 10,000 entries" in again.output()
        assert post(again, question("What is the capital of France?")).headers[
            "x-bsc-cache"] == "HIT"
        assert post(again, question("what is the capital of france")).headers[
            "x-bsc-cache"] == "HIT"
    assert upstream.chats == 1


def test_sigkill_leaves_a_loadable_directory(upstream, tmp_path):
    home = tmp_path / "home"
    served = Served(upstream.url, tmp_path, "--cache-dir", str(home), "--save-interval", "0.1")
    stop = threading.Event()

    def traffic():
        i = 0
        while not stop.is_set() and i < 10_000:
            try:
                post(served, question(f"question {i}"))
            except httpx.HTTPError:
                return
            i += 1

    worker = threading.Thread(target=traffic)
    worker.start()
    deadline = time.monotonic() + 20
    while not (home / "cache" / "manifest.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # more saves, with puts between them
    served.kill()
    stop.set()
    worker.join(20)
    assert not worker.is_alive()
    # A load with every checksum verified: the directory is whole, and what it
    # holds are the answers asked for, found under the keys the proxy made.
    cache = BinarySemanticCache.load(home / "cache", verify=True)
    tenant = tenant_of(load_secret(home), "Bearer sk-tenant-a")
    found = []
    for i in range(10_000):
        request = question(f"question {i}")
        plan = keys.chat_plan(request, request.pop("messages"), None)
        namespace, key = keys.keyed(plan, (tenant,), None)
        entry = cache.get_exact(key, namespace=namespace)
        if entry is not None:
            found.append(entry.response["message"]["content"].endswith(f"question {i}"))
    assert found and all(found) and len(found) == len(cache)


def test_a_client_leaving_mid_stream_closes_the_upstream_and_stores_nothing(proxy, upstream):
    go = threading.Event()
    upstream.chat_script = [("hold", go)]
    with httpx.stream("POST", proxy.base + "/chat/completions",
                      json=question("long story", stream=True),
                      headers={"Authorization": "Bearer k"}, timeout=30) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")  # the first chunk came before the rest
        assert not upstream.released.is_set()
    go.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not stats(proxy)["llm"]["skipped_stores"]:
        time.sleep(0.05)
    assert stats(proxy)["llm"]["skipped_stores"] == {"incomplete_stream": 1}
    assert stats(proxy)["cache"]["size"] == 0


def test_a_bounded_load_has_no_errors_and_exact_hit_counts(upstream, tmp_path):
    questions = [f"load question {i} about item{i}" for i in range(50)]
    upstream.chat_delay = 0.02

    async def main(url):
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            gate = asyncio.Semaphore(32)

            async def one(i):
                async with gate:
                    r = await http.post(url, json=question(questions[i % 50]),
                                        headers={"Authorization": "Bearer k"})
                    return r.status_code, r.headers.get("x-bsc-cache"), r.json()

            return await asyncio.gather(*(one(i) for i in range(2_000)))

    with Served(upstream.url, tmp_path) as served:
        results = asyncio.run(asyncio.wait_for(main(served.base + "/chat/completions"), 240))
        assert {status for status, _, _ in results} == {200}
        labels = [label for _, label, _ in results]
        assert labels.count("MISS") == 50 and labels.count("HIT") == 1_950
        assert upstream.chats == 50
        by_question = {}
        for i, (_, _, body) in enumerate(results):
            by_question.setdefault(i % 50, set()).add(body["choices"][0]["message"]["content"])
        assert all(len(texts) == 1 for texts in by_question.values())
        assert stats(served)["llm"]["hits"] == 1_950
        text = httpx.get(served.url + "/metrics").text  # twins that waited count as hits
        assert 'bsc_chat_requests_total{outcome="hit"} 1950.0' in text
        assert 'bsc_chat_requests_total{outcome="miss"} 50.0' in text


def test_startup_fits_one_screen_and_a_missing_extra_names_pip(upstream, tmp_path):
    with Served(upstream.url, tmp_path, "--cache-dir", str(tmp_path / "home")) as served:
        text = served.output()
    head = text.split("\n\n")[0].splitlines()
    assert head[0] == f"bsc serve: listening on http://127.0.0.1:{served.port}/v1"
    assert len(head) <= 12
    assert all(len(line.replace(str(tmp_path), "DIR")) <= 80 for line in head)
    assert any(upstream.url in line for line in head) and "tenant.secret" not in text
    code = ("import sys; sys.modules['starlette'] = None; from binary_semantic_cache.cli import "
            "main; sys.exit(main(['serve', '--upstream', 'http://127.0.0.1:9/v1']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "pip install 'binary-semantic-cache[server]'" in done.stderr


def test_an_ollama_embedder_gives_semantic_hits(upstream, tmp_path, monkeypatch):
    with FakeOllama(dim=64) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        with Served(upstream.url, tmp_path, "--embedder", "ollama:nomic-embed-text") as served:
            post(served, question("What is the capital of France?"))
            near = post(served, question("what is the capital of france"))
            assert near.headers["x-bsc-cache"] == "HIT" and "x-bsc-similarity" in near.headers
            assert "ollama:nomic-embed-text" in served.output()
        assert [e["path"] for e in ollama.log] == ["/api/embed", "/api/embed"]
    assert upstream.chats == 1


def test_an_openai_embedder_reads_its_key_from_the_environment(upstream, tmp_path,
                                                                monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-embedding-key")
    with Served(upstream.url, tmp_path, "--embedder", "openai:fake-embed") as served:
        post(served, question("What is the capital of France?"))
        assert post(served, question("what is the capital of france")).headers[
            "x-bsc-cache"] == "HIT"
    embeds = [e for e in upstream.log if e["path"].endswith("/embeddings")]
    assert embeds and all(e["_headers"]["authorization"] == "Bearer sk-embedding-key"
                          for e in embeds)


def test_replicas_on_one_redis_share_hits_and_tenants(upstream, tmp_path):
    from .redis_support import BINARY, RedisServer

    if BINARY is None:
        pytest.skip("no redis-server on PATH")
    redis = RedisServer(tmp_path)
    try:
        args = ("--redis", redis.url, "--name", "replicas", "--embedder", "upstream:fake-embed")
        with Served(upstream.url, tmp_path, *args) as one, \
                Served(upstream.url, tmp_path, *args) as two:
            assert "shared cache 'replicas'" in one.output()
            assert post(one, question("What is the capital of France?")).headers[
                "x-bsc-cache"] == "MISS"
            deadline = time.monotonic() + 10
            label = None
            while time.monotonic() < deadline and label != "HIT":
                label = post(two, question("what is the capital of france"),
                             headers={"Cache-Control": "no-store"}).headers["x-bsc-cache"]
            assert label == "HIT"
            # The same tenant on both replicas, another tenant on neither.
            assert post(two, question("What is the capital of France?"),
                        key="sk-other").headers["x-bsc-cache"] == "MISS"
    finally:
        redis.stop()
