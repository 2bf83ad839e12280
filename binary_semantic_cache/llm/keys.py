"""Which stored answers a request may see: its partition, its exact key, its text.

A request's *partition* is everything that can change the answer apart from the
last user message: the namespaces, the model, every parameter but the few that
cannot (``NOT_IN_KEY``), the earlier messages and the embedder's identity. It
is hashed from a canonical JSON document that starts with :data:`VERSION` and
names one core namespace, so the semantic scan never crosses partitions. The
*exact key* is the last user message, NFC-normalised with its whitespace
collapsed.
"""

import hashlib
import json
import unicodedata
from typing import NamedTuple
from urllib.parse import quote

VERSION = "bsc-llm-1"

# Request parameters that never change the answer (transport, bookkeeping, the
# end user's id). Everything else, unknown parameters included, is in the key.
NOT_IN_KEY = frozenset({"messages", "stream", "stream_options", "user", "metadata", "store",
                        "service_tier", "timeout", "extra_headers", "extra_query"})

PREFIX = "llm/"  # of every core namespace this layer writes


class Plan(NamedTuple):
    """How one request meets the cache: bypass (with a reason) or look up and store."""

    bypass: str | None
    scope: tuple  # (kind, the parameters and earlier messages) before namespaces/embedder
    text: str | None  # the normalised last user message
    model: str | None


class Keyed(NamedTuple):
    namespace: str  # the core namespace of the partition
    key: str


def chat_plan(params, messages, max_messages):
    """The :class:`Plan` of one chat request (``params`` without ``messages``)."""
    reason, plain = _screen(params, messages, max_messages)
    if reason is None:
        text = normalise(_text(plain[-1]["content"]))
        reason = None if text else "empty_prompt"
    if reason is not None:
        return Plan(reason, (), None, params.get("model"))
    last = plain[-1]
    shape = {k: v for k, v in last.items() if k != "content"}
    shape["parts"] = not isinstance(last["content"], str)
    keyed = {k: v for k, v in params.items() if k not in NOT_IN_KEY}
    return Plan(None, ("chat", keyed, plain[:-1], shape), text, params.get("model"))


def _screen(params, messages, max_messages):
    """``(bypass reason or None, the messages as plain dicts)``."""
    if not isinstance(messages, (list, tuple)):
        return "malformed", None
    if not messages:
        return "no_messages", None
    if max_messages is not None and len(messages) > max_messages:
        return "max_messages", None
    n = params.get("n")
    if n is not None and n != 1:
        return "n", None
    if params.get("logprobs") or params.get("top_logprobs"):
        return "logprobs", None
    modalities = params.get("modalities")
    if params.get("audio") is not None or (modalities and list(modalities) != ["text"]):
        return "non_text_content", None
    plain = []
    for message in messages:
        message = _plain(message)
        if not isinstance(message, dict):
            return "malformed", None
        if not _text_only(message.get("content")) or message.get("audio") is not None:
            return "non_text_content", None
        plain.append(message)
    if plain[-1].get("role") != "user":
        return "last_not_user", None
    return None, plain


def call_plan(name, prompt, params):
    """The :class:`Plan` of a call of a decorated ``fn(prompt, **params)``."""
    if not isinstance(prompt, str):
        return Plan("not_text", (), None, None)
    text = normalise(prompt)
    if not text:
        return Plan("empty_prompt", (), None, None)
    return Plan(None, ("function", name, params), text, None)


def keyed(plan, namespaces, embedder):
    """The :class:`Keyed` of a plan under ``namespaces`` (a tuple of str) and embedder identity.

    Raises TypeError when a parameter has no JSON form, so no key can be made.
    """
    doc = json.dumps([VERSION, list(namespaces), embedder, plan.scope], sort_keys=True,
                     ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                     default=_json_default)
    digest = hashlib.blake2b(doc.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    key = hashlib.blake2b(plan.text.encode("utf-8", "surrogatepass"),
                          digest_size=16).hexdigest()
    return Keyed(namespace_path(namespaces) + digest, key)


def namespace_path(namespaces):
    """The start of every core namespace under ``namespaces``, for clearing by name."""
    return PREFIX + "".join(quote(ns, safe="") + "/" for ns in namespaces)


def normalise(text):
    """NFC form with every run of whitespace made one space, and the ends trimmed.

    >>> normalise("  Caf\\u0065\\u0301 \\n au   lait ")
    'Café au lait'
    """
    return " ".join(unicodedata.normalize("NFC", text).split())


def embedder_identity(embedder):
    """Class, model name and dimension slots of an embedder; the dimension is filled later."""
    if embedder is None:
        return None
    kind = type(embedder)
    model = None
    for attr in ("model_name", "model"):
        try:
            value = getattr(embedder, attr, None)
        except Exception:  # noqa: BLE001  (a property may fail; identity does without it)
            value = None
        if isinstance(value, str):
            model = value
            break
    return (f"{kind.__module__}.{kind.__qualname__}", model)


def _plain(message):
    """A message as plain data: SDK message objects are dumped, dicts pass."""
    if isinstance(message, dict):
        return message
    dump = getattr(message, "model_dump", None)
    if dump is not None:
        return dump(mode="json", exclude_none=True)
    return None


def _text_only(content):
    if content is None or isinstance(content, str):
        return True
    if not isinstance(content, (list, tuple)):
        return False
    return all(isinstance(part, dict) and part.get("type") == "text"
               and isinstance(part.get("text"), str) for part in content)


def _text(content):
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    return "\n".join(part["text"] for part in content)


def _json_default(value):
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="json", exclude_none=True)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (tuple, list)) or hasattr(value, "__iter__") and not isinstance(
            value, (str, bytes, dict)):
        return list(value)
    raise TypeError(f"a request parameter of type {type(value).__name__} has no JSON form")
