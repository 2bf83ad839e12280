"""What separates and what joins requests: keys, normalisation, the policy and controls."""

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binary_semantic_cache.llm import CachePolicy
from binary_semantic_cache.llm import keys
from binary_semantic_cache.llm.policy import controls

IDENTITY = ["tests.Embedder", "bag-of-words", 64]
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                max_size=12)
values = st.recursive(st.none() | st.booleans() | st.integers() | words |
                      st.floats(allow_nan=False, allow_infinity=False),
                      lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(words, inner, max_size=3), max_leaves=8)
# Parameters that make a request bypass the cache are tested apart.
BYPASSING = {"n", "logprobs", "top_logprobs", "audio", "modalities"}
params = st.dictionaries(words.filter(lambda k: k not in keys.NOT_IN_KEY | BYPASSING),
                         values, max_size=5)


def where(request, namespaces=(), identity=IDENTITY):
    request = dict(request)
    plan = keys.chat_plan(request, request.pop("messages"), None)
    assert plan.bypass is None
    return keys.keyed(plan, namespaces, identity)


def request_of(extra, text="What is the capital of France?"):
    return {"model": "m", "messages": [{"role": "system", "content": "brief"},
                                       {"role": "user", "content": text}], **extra}


@given(params)
def test_parameter_order_never_matters(extra):
    backwards = dict(reversed(list(extra.items())))
    assert where(request_of(extra)) == where(request_of(backwards))


@given(params, words, values)
def test_every_keyed_parameter_separates(extra, name, value):
    if name in keys.NOT_IN_KEY | BYPASSING:
        return
    changed = {**extra, name: value}
    if name in extra and extra[name] == value:
        return
    first, second = where(request_of(extra)), where(request_of(changed))
    assert first.namespace != second.namespace and first.key == second.key


@given(params, st.sampled_from(sorted(keys.NOT_IN_KEY - {"messages"})), values)
def test_parameters_outside_the_key_never_separate(extra, name, value):
    assert where(request_of(extra)) == where(request_of({**extra, name: value}))


@given(st.lists(st.sampled_from([" ", "\t", "\n", "\u00a0", "\u2003"]), min_size=1, max_size=4),
       st.lists(words.filter(lambda w: w.strip() and w == " ".join(w.split())
                             and w == unicodedata.normalize("NFC", w)), min_size=1,
                max_size=5))
def test_whitespace_never_separates_and_normalising_is_idempotent(gaps, parts):
    spaced = "".join(p + gaps[i % len(gaps)] for i, p in enumerate(parts))
    assert keys.normalise(spaced) == " ".join(parts)
    assert keys.normalise(keys.normalise(spaced)) == keys.normalise(spaced)
    assert where(request_of({}, spaced)) == where(request_of({}, " ".join(parts)))


def test_composed_and_decomposed_text_share_a_key():
    assert where(request_of({}, "caf\u00e9")) == where(request_of({}, "cafe\u0301"))


def test_namespaces_embedder_and_context_separate():
    base = where(request_of({}))
    assert where(request_of({}), ("a",)).namespace != base.namespace
    assert where(request_of({}), ("a", "b")).namespace != where(request_of({}), ("ab",)).namespace
    assert where(request_of({}), identity=[*IDENTITY[:2], 32]).namespace != base.namespace
    assert where(request_of({}), identity=None).namespace != base.namespace
    other = request_of({})
    other["messages"][0]["content"] = "verbose"
    assert where(other).namespace != base.namespace and where(other).key == base.key
    assert where(request_of({}), ("a/b",)).namespace.startswith(keys.namespace_path(("a/b",)))
    assert not where(request_of({}), ("a/b",)).namespace.startswith(keys.namespace_path(("a",)))


def test_parameters_without_a_json_form_are_refused():
    plan = keys.chat_plan({"model": "m", "seed": object()},
                          [{"role": "user", "content": "hi"}], None)
    with pytest.raises(TypeError, match="no JSON form"):
        keys.keyed(plan, (), IDENTITY)


def test_the_policy_checks_its_fields():
    with pytest.raises(ValueError, match="similarity_threshold"):
        CachePolicy(similarity_threshold=-0.1)
    with pytest.raises(ValueError, match="ttl"):
        CachePolicy(ttl=0)
    with pytest.raises(ValueError, match="max_messages"):
        CachePolicy(max_messages=0)
    with pytest.raises(TypeError, match="namespace"):
        CachePolicy(namespace=3)
    with pytest.raises(ValueError, match="prices\\['x'\\]"):
        CachePolicy(prices={"x": (1.0,)})
    policy = CachePolicy(prices={"gpt-4o": (1.0, 2.0), "mine": (0.5, 0.5)})
    assert policy.price("gpt-4o-2024-08-06") == (1.0, 2.0)
    assert policy.price("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert policy.price("mine") == (0.5, 0.5) and policy.price("unknown") is None
    with pytest.raises(AttributeError):
        policy.ttl = 5
    assert hash(policy) == hash(CachePolicy(prices={"gpt-4o": (9.0, 9.0)}))


def test_controls_start_from_the_policy():
    policy = CachePolicy(ttl=60, similarity_threshold=0.95)
    assert controls(None, policy).ttl == 60 and controls(None, policy).threshold == 0.95
    ctl = controls({"ttl": 5, "threshold": 0.99, "namespace": "u", "no-store": True}, policy)
    assert (ctl.ttl, ctl.threshold, ctl.namespace, ctl.no_store, ctl.no_cache) == (
        5.0, 0.99, "u", True, False)
