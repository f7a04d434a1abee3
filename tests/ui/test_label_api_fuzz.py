"""Every label API method, called over HTTP on a live app with random and hostile arguments,
answers with a reply (an ``{"error": ...}`` for bad ones, never HTTP 500), and afterwards the
server still answers a normal click.

Deterministic (``derandomize``), at most ``EXAMPLES`` calls per method.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ui.label_component import METHODS

EXAMPLES = 40

_numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 10**9, 1e9, -1e9, 10**30, 2**63, 2**64, 1e308, 0.5, 59, 79, 80, 60]),
)
_hostile = st.one_of(
    _numbers, st.none(), st.booleans(),
    st.text(max_size=40), st.sampled_from(["pos", "neg", "box", "brush", "eraser", "accepted", "rejected", "done",
                                           "good", "unlabeled", "nan", "1e999", "../../etc/passwd", "x" * 5000]),
)
_point = st.lists(_numbers, min_size=0, max_size=3)
_points = st.one_of(st.lists(_point, max_size=30), st.lists(st.tuples(_numbers, _numbers), max_size=30), _hostile)
_arg = st.one_of(_hostile, _point, _points, st.dictionaries(st.text(max_size=5), _hostile, max_size=3))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from data.store import Project
    from tests.ui.conftest import FakeSegmenter, add_image
    from ui.app import build_app
    from ui.browser import serve

    project = Project.create(tmp_path_factory.mktemp("fuzz") / "proj", classes=["scratch", "stain"])
    for k in range(2):
        add_image(project, f"img{k}.png", 40 + 80 * k)
    demo = build_app(project, FakeSegmenter())
    label = next(bid for bid, b in demo.blocks.items() if getattr(b, "elem_id", None) == "ds-label")
    with serve(demo) as url, httpx.Client(base_url=url, timeout=30) as client:
        def call(*args):
            body = {"session_hash": "fuzz", "component_id": label, "fn_name": "api", "data": list(args)}
            # NaN and Infinity as bare JSON tokens: a browser never sends them, a hostile client can
            r = client.post("/gradio_api/component_server", content=json.dumps(body),
                            headers={"content-type": "application/json"})
            assert r.status_code == 200, (args, r.status_code, r.text[:300])
            return r.json()

        token = demo.ds_service.open_page()
        assert "error" not in call(token, "open_image", project.images()[0].id)
        yield call, token, project
    demo.ds_service.close()


def _reply_ok(out) -> None:
    assert isinstance(out, dict)
    if "error" in out:
        assert isinstance(out["error"], str) and out["error"] and "Traceback" not in out["error"]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_answers_hostile_arguments(live, method):
    call, token, project = live

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(args=st.lists(_arg, max_size=4), own_token=st.booleans())
    def fuzz(args, own_token):
        # with this page's token the checks past the session run; without it, the token itself is hostile
        out = call(token, method, *args) if own_token else call(*(args[:1] or [None]), method, *args[1:])
        _reply_ok(out)
        if own_token and method == "open_image" and "error" in out:
            call(token, "open_image", project.images()[0].id)  # keep an image open for the others

    fuzz()
    # The server still answers a normal click, with a mask.
    call(token, "open_image", project.images()[0].id)
    call(token, "clear")
    out = call(token, "prompt", "pos", [20, 20])
    assert "error" not in out and out.get("candidates"), out


def test_the_hostile_cases_found_before_are_refused_in_words(live):
    call, token, project = live
    call(token, "open_image", project.images()[0].id)
    assert "out of range" in call(token, "open_image", 10**30)["error"]
    assert "far outside the 80x60 image" in call(token, "polygon", [[0, 0], [1e9, 0], [0, 50]])["error"]
    assert "far outside the 80x60 image" in call(token, "stroke", "brush", [[1e9, 1e9]], 3)["error"]
    assert "must be a number" in call(token, "choose", [1])["error"]
    assert "wrong arguments" in call(token, "prompt")["error"]
    assert call(token, "polygon", [[-5, -5], [85, -5], [40, 65]]).get("candidates")  # just past the edges: fine
