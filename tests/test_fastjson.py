"""gateway/fastjson.py: orjson's speed, the json module's answers (issue 16).

Every document parses to what json.loads gives, or fails where it fails; every value written
decodes to what json.dumps's output decodes to; the cases where orjson alone would differ
(NaN and Infinity literals, lone surrogates, integers past 64 bits, Flask's own types) are
spelled out.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math

import pytest
from flask import Flask
from hypothesis import given, settings, strategies as st

from gateway import fastjson

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


def same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@settings(max_examples=300, deadline=None)
@given(values)
def test_what_is_written_reads_back_as_the_json_module_writes_it(value):
    assert same(json.loads(fastjson.dumps(value)), json.loads(json.dumps(value)))
    assert same(fastjson.loads(json.dumps(value)), json.loads(json.dumps(value)))


@pytest.mark.parametrize("text", ['NaN', '[Infinity, -Infinity]', '"\\ud800"', '{"a": "x\\udfff"}',
                                  str(2**80), '[1e400]', '"\\u00e9\\u2028"', '{"a": 1, "a": 2}'])
def test_documents_orjson_refuses_or_reads_otherwise_parse_as_before(text):
    expected = json.loads(text)
    got = fastjson.loads(text)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(got)
    else:
        assert same(got, expected)


@pytest.mark.parametrize("text", ['', '{', '[1,]', "{'a': 1}", '\x00'])
def test_invalid_documents_fail_as_before(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        fastjson.loads(text)


def test_a_lone_surrogate_and_non_string_keys_are_written_by_the_json_module():
    for value in ({"content": "a\ud800b"}, {1: "one"}):
        assert fastjson.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_flasks_own_types_keep_flasks_rendering():
    @dataclasses.dataclass
    class Point:
        x: int

    app = Flask(__name__)
    provider = fastjson.Provider(app)
    flask_default = Flask(__name__).json
    when = datetime.datetime(2026, 12, 2, 5, 0, tzinfo=datetime.timezone.utc)
    for value in ({"b": 1, "a": [when]}, {"p": Point(1)}, {"z": "é", "a": None}):
        ours = provider.dumps(value, separators=(",", ":"))
        assert json.loads(ours) == json.loads(flask_default.dumps(value, separators=(",", ":")))
    assert provider.dumps({"b": 1, "a": 2}, separators=(",", ":")) == '{"a":2,"b":1}'   # sorted, as Flask sorts
