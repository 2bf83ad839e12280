"""Loopback HTTP servers that speak the OpenAI (embeddings, chat) and Ollama embedding APIs.

Vectors are a bag of words: each word has a fixed random direction, and a
text is the sum of its words, so paraphrases that share words come out close.
"""

import base64
import hashlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def words(text):
    return re.findall(r"[a-z0-9]+", text.lower())


def embed(text, dim):
    total = np.zeros(dim)
    for word in words(text):
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
        total += np.random.default_rng(seed).standard_normal(dim)
    return total.astype(np.float32)


def free_port():
    """A loopback port nothing listens on (the socket that found it is closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Listener(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 refuses connections under concurrent load


class _Server:
    def __init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                server.handle(self, "POST", self.path, body)

            def do_GET(self):
                server.handle(self, "GET", self.path, None)

        self.httpd = _Listener(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A short poll interval: shutdown() waits for one, once per test.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.log = []

    @property
    def port(self):
        return self.httpd.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def reply(handler, status, payload, headers=None, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a scripted stall)


    @staticmethod
    def trickle(handler, payload, delay, deadline=30.0):
        """Send a 200 whose body comes a byte every ``delay`` seconds (for at most ``deadline``)."""
        data = json.dumps(payload).encode()
        end = time.monotonic() + deadline
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            for i in range(len(data)):
                if time.monotonic() > end:
                    break
                handler.wfile.write(data[i:i + 1])
                handler.wfile.flush()
                time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            pass


class FakeOpenAI(_Server):
    """``POST /v1/embeddings``; ``script`` holds one action per coming request.

    Actions: ``"ok"``, ``"shuffle"`` (answer with the items out of order),
    ``("status", code, headers)``, ``("stall", seconds)``, ``("json", payload)``
    (answer 200 with exactly that) and ``("trickle", seconds)`` (the right
    answer, a byte at a time).

    ``POST /v1/chat/completions`` answers ``"answer N to: <last message>"``
    (N counts chat requests), streamed as SSE when asked, with usage in
    words. Every request is logged with its headers under ``"_headers"``. ``chat_script`` holds one action per coming chat request:
    ``"ok"``, ``("finish", reason)`` (that finish_reason, None included),
    ``"tool_calls"``, ``"empty"``, ``("status", code, headers)``, ``("cut", k)``
    (a stream that stops after k content chunks, with no finish or [DONE]),
    ``"stream_error"`` (an error event mid-stream) and ``"no_stream_options"``
    (400 if the request has ``stream_options``) and ``("hold", event)`` (a stream
    that sends its first content chunk, then waits up to 10 s for ``event``
    and sets ``released`` before the rest). ``chat_delay`` seconds pass
    before each chat answer. ``GET /v1/models`` lists two models.
    """

    def __init__(self, dim=1536):
        super().__init__()
        self.dim = dim
        self.script = []
        self.chat_script = []
        self.chat_delay = 0.0
        self.chats = 0
        self.released = threading.Event()
        self._count_lock = threading.Lock()

    def chat_log(self):
        return [entry for entry in self.log if entry["path"].endswith("/chat/completions")]

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def handle(self, handler, method, path, body):
        # Request headers under "_headers", names lower-cased.
        self.log.append({"path": path, **(body or {}),
                         "_headers": {k.lower(): v for k, v in handler.headers.items()}})
        if path.endswith("/models"):
            return self.reply(handler, 200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                for m in ("fake-chat", "fake-embed")]})
        if path.endswith("/chat/completions"):
            return self.chat(handler, body)
        action = self.script.pop(0) if self.script else "ok"
        if isinstance(action, tuple) and action[0] == "status":
            _, code, headers = action
            return self.reply(handler, code, {"error": {"message": f"scripted {code}",
                                                        "type": "scripted"}}, headers)
        if isinstance(action, tuple) and action[0] == "json":
            return self.reply(handler, 200, action[1])
        if isinstance(action, tuple) and action[0] == "stall":
            time.sleep(action[1])
            return self.reply(handler, 200, {"data": [], "model": "x", "object": "list",
                                             "usage": {"prompt_tokens": 0, "total_tokens": 0}})
        inputs = body["input"]
        dim = body.get("dimensions", self.dim)
        items = []
        for i, text in enumerate(inputs):
            vector = embed(text, dim)
            encoded = (base64.b64encode(vector.astype("<f4").tobytes()).decode()
                       if body.get("encoding_format") == "base64" else vector.tolist())
            items.append({"object": "embedding", "index": i, "embedding": encoded})
        if action == "shuffle":
            items.reverse()
        tokens = sum(len(words(t)) for t in inputs)
        payload = {"object": "list", "data": items, "model": body["model"],
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        if isinstance(action, tuple) and action[0] == "trickle":
            return self.trickle(handler, payload, action[1])
        self.reply(handler, 200, payload)


    # ---------------------------------------------------------------- chat

    def chat(self, handler, body):
        with self._count_lock:
            self.chats += 1
            n = self.chats
            action = self.chat_script.pop(0) if self.chat_script else "ok"
        if self.chat_delay:
            time.sleep(self.chat_delay)
        if isinstance(action, tuple) and action[0] == "status":
            _, code, headers = action
            return self.reply(handler, code, {"error": {"message": f"scripted {code}",
                                                        "type": "scripted", "code": None}},
                              headers)
        if action == "no_stream_options" and "stream_options" in body:
            return self.reply(handler, 400, {"error": {
                "message": "Unrecognized request argument supplied: stream_options",
                "type": "invalid_request_error"}})
        last = body["messages"][-1].get("content") or ""
        if isinstance(last, list):
            last = "\n".join(part.get("text", "") for part in last)
        content, finish, calls = f"answer {n} to: {last}", "stop", None
        if action == "empty":
            content = ""
        if isinstance(action, tuple) and action[0] == "finish":
            finish = action[1]
        if action == "tool_calls":
            content, finish = None, "tool_calls"
            calls = [{"id": f"call_{n}", "type": "function",
                      "function": {"name": "lookup", "arguments": json.dumps({"q": last})}}]
        prompt = sum(len(words(str(m.get("content") or ""))) for m in body["messages"])
        usage = {"prompt_tokens": prompt, "completion_tokens": len(words(content or "")),
                 "total_tokens": prompt + len(words(content or ""))}
        head = {"id": f"chatcmpl-{n}", "created": 1_700_000_000 + n, "model": body["model"],
                "system_fingerprint": "fp_fake"}
        if not body.get("stream"):
            message = {"role": "assistant", "content": content}
            if calls:
                message["tool_calls"] = calls
            return self.reply(handler, 200, {**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": usage})
        self.sse(handler, head, content, finish, calls, usage, body, action)

    def sse(self, handler, head, content, finish, calls, usage, body, action):
        head = {**head, "object": "chat.completion.chunk"}

        def event(choices, **extra):
            return b"data: " + json.dumps({**head, "choices": choices, **extra}).encode() + b"\n\n"

        def delta(d, reason=None):
            return event([{"index": 0, "delta": d, "finish_reason": reason, "logprobs": None}])

        events = [delta({"role": "assistant", "content": ""})]
        events += [delta({"content": piece}) for piece in re.findall(r"\S+\s*", content or "")]
        if isinstance(action, tuple) and action[0] == "cut":
            events = events[:1 + action[1]]
        elif action == "stream_error":
            events = events[:2] + [b'data: {"error": {"message": "scripted stream failure"}}\n\n']
        else:
            for i, call in enumerate(calls or ()):
                events.append(delta({"tool_calls": [{"index": i, **call}]}))
            events.append(delta({}, finish))
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append(event([], usage=usage))
            events.append(b"data: [DONE]\n\n")
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.end_headers()
            for i, data in enumerate(events):
                if i == 2 and isinstance(action, tuple) and action[0] == "hold":
                    action[1].wait(10)
                    self.released.set()
                handler.wfile.write(data)
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


class FakeOllama(_Server):
    """``/api/embed``, ``/api/embeddings`` and ``/api/tags`` of an Ollama server.

    ``script`` holds actions for the coming embedding requests:
    ``("json", payload)`` or ``("trickle", seconds)``, as for FakeOpenAI.
    """

    def __init__(self, dim=768, models=("nomic-embed-text:latest",), chat_models=("llama3:latest",),
                 batch_endpoint=True):
        super().__init__()
        self.dim, self.models, self.chat_models = dim, set(models), set(chat_models)
        self.batch_endpoint = batch_endpoint
        self.script = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def handle(self, handler, method, path, body):
        self.log.append({"path": path, **(body or {})})
        if path == "/api/tags":
            names = sorted(self.models | self.chat_models)
            return self.reply(handler, 200, {"models": [{"name": n} for n in names]})
        if path not in ("/api/embed", "/api/embeddings") or (
                path == "/api/embed" and not self.batch_endpoint):
            return self.reply(handler, 404, b"404 page not found", content_type="text/plain")
        model = body["model"] if ":" in body["model"] else body["model"] + ":latest"
        if model in self.chat_models:
            return self.reply(handler, 400, {"error": f"{model} does not support embeddings"})
        if model not in self.models:
            return self.reply(handler, 404, {"error": f"model '{body['model']}' not found"})
        action = self.script.pop(0) if self.script else "ok"
        if action[0] == "json":
            return self.reply(handler, 200, action[1])
        if path == "/api/embed":
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            payload = {"model": model, "embeddings": [embed(t, self.dim).tolist() for t in texts]}
            if action[0] == "trickle":
                return self.trickle(handler, payload, action[1])
            return self.reply(handler, 200, payload)
        self.reply(handler, 200, {"embedding": embed(body["prompt"], self.dim).tolist()})

