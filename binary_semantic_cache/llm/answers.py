"""Answers as stored records: what may be stored, and how a record is replayed.

A record is plain JSON (so ``cache.save()`` needs no pickle)::

    {"bsc": 1, "id": ..., "created": ..., "model": ..., "system_fingerprint": ...,
     "message": {"role": "assistant", "content": ..., "tool_calls": [...]},
     "finish_reason": "stop", "usage": {...} or None, "latency": seconds}

The decorator stores ``{"bsc": 1, "text": ..., "latency": seconds}``.
"""

import re

FORMAT = 1
_PIECE = re.compile(r"\S*\s*")  # a word and the space after it
_PIECE_CHARS = 48  # replayed content arrives in deltas of about this many characters


def skip_reason(message, finish_reason, cache_tool_calls):
    """Why an answer must not be stored, or None when it may be."""
    calls = message.get("tool_calls")
    if (calls or finish_reason == "tool_calls") and not cache_tool_calls:
        return "tool_calls"
    if finish_reason != "stop" and finish_reason != "tool_calls":
        return {"length": "length", "content_filter": "content_filter",
                None: "no_finish_reason"}.get(finish_reason, "finish_reason_other")
    if not message.get("content") and not calls:
        return "empty"
    return None


def completion_record(body, latency, cache_tool_calls):
    """``(record, None)`` from a chat completion (as JSON) that may be stored, else
    ``(None, reason)``."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return None, "empty" if choices == [] else "unreadable"
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return None, "unreadable"
    message = {k: v for k, v in message.items() if v is not None}
    reason = skip_reason(message, choice.get("finish_reason"), cache_tool_calls)
    if reason is not None:
        return None, reason
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else None
    return {"bsc": FORMAT, "id": body.get("id", ""), "created": body.get("created", 0),
            "model": body.get("model", ""), "system_fingerprint": body.get("system_fingerprint"),
            "message": message, "finish_reason": choice.get("finish_reason"), "usage": usage,
            "latency": latency}, None


def text_record(text, latency):
    return {"bsc": FORMAT, "text": text, "latency": latency}


def is_record(value, kind):
    """True if ``value`` is a record this layer wrote (``kind`` "message" or "text")."""
    return type(value) is dict and value.get("bsc") == FORMAT and kind in value


def usage_only(chunk):
    """True for the chunk that carries only usage (``stream_options.include_usage``)."""
    return not chunk.get("choices") and chunk.get("usage") is not None


SEND, HOLD, DROP = "send", "hold", "drop"  # what a stream does with a chunk


class Accumulator:
    """A streamed answer, chunk by chunk (each as JSON), into the record of the whole answer."""

    def __init__(self):
        self.head = None
        self.role, self.content, self.calls = "assistant", [], {}
        self.finish_reason = self.usage = None

    def add(self, chunk):
        if self.head is None:
            self.head = (chunk.get("id", ""), chunk.get("created", 0), chunk.get("model", ""),
                         chunk.get("system_fingerprint"))
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("role"):
                self.role = delta["role"]
            if delta.get("content"):
                self.content.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                self._add_call(call)
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]

    def _add_call(self, call):
        slot = self.calls.setdefault(call.get("index", 0), {
            "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        function = call.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

    def take(self, chunk, shown):
        """Add ``chunk``; SEND it on now, HOLD it until the answer is stored, or DROP it.

        The chunk with the finish and those after it are held. The usage-only
        chunk a stream asked for on its caller's behalf (``shown`` False) is dropped.
        """
        self.add(chunk)
        if not shown and usage_only(chunk):
            return DROP
        return HOLD if self.finish_reason is not None else SEND

    def result(self, latency, cache_tool_calls):
        """``(record, None)`` of the whole answer if it may be stored, else ``(None, reason)``."""
        if self.head is None:
            return None, "empty"
        record = self.record(latency)
        reason = skip_reason(record["message"], self.finish_reason, cache_tool_calls)
        return (None, reason) if reason is not None else (record, None)

    def record(self, latency):
        message = {"role": self.role}
        if self.content:
            message["content"] = "".join(self.content)
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        cid, created, model, fingerprint = self.head or ("", 0, "", None)
        return {"bsc": FORMAT, "id": cid, "created": created, "model": model,
                "system_fingerprint": fingerprint, "message": message,
                "finish_reason": self.finish_reason, "usage": self.usage, "latency": latency}


def completion_dict(record):
    """The ChatCompletion (as a dict) a record replays."""
    return {"id": record["id"], "object": "chat.completion", "created": record["created"],
            "model": record["model"], "system_fingerprint": record["system_fingerprint"],
            "choices": [{"index": 0, "message": record["message"], "logprobs": None,
                         "finish_reason": record["finish_reason"]}],
            "usage": record["usage"]}


def chunk_dicts(record, include_usage):
    """The ChatCompletionChunks (as dicts) a record replays: role, content, calls, finish, usage."""
    head = {"id": record["id"], "object": "chat.completion.chunk", "created": record["created"],
            "model": record["model"], "system_fingerprint": record["system_fingerprint"]}

    def chunk(delta, finish_reason=None):
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish_reason}]}

    message = record["message"]
    out = [chunk({"role": message.get("role", "assistant"), "content": ""})]
    out.extend(chunk({"content": piece}) for piece in pieces(message.get("content") or ""))
    for i, call in enumerate(message.get("tool_calls") or ()):
        out.append(chunk({"tool_calls": [{"index": i, **call}]}))
    out.append(chunk({}, record["finish_reason"]))
    if include_usage and record["usage"] is not None:
        out.append({**head, "choices": [], "usage": record["usage"]})
    return out


def pieces(text):
    """``text`` cut at word ends into deltas of about ``_PIECE_CHARS`` characters.

    >>> pieces("the quick brown fox")
    ['the quick brown fox']
    >>> "".join(pieces("word " * 40)) == "word " * 40
    True
    """
    out, current = [], ""
    for word in _PIECE.findall(text):
        current += word
        if len(current) >= _PIECE_CHARS:
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def usage_counts(record):
    usage = record.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt if type(prompt) is int else 0, completion if type(completion) is int else 0)
