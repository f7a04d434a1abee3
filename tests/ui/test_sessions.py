"""The label sessions one server keeps are bounded: how many, how long idle, how much undo."""

from __future__ import annotations

import time

import numpy as np

from ui.label_api import LabelService
from ui.label_component import dispatch
from ui.sessions import LabelSession, Pending, SessionStore, Undo


def test_a_new_page_past_the_limit_closes_the_one_idle_longest(project, fake):
    store = SessionStore(max_sessions=3)
    service = LabelService(project, fake, sessions=store)
    try:
        tokens = [service.open_page() for _ in range(3)]
        for t in (tokens[0], tokens[2]):
            service.boot(t)  # tokens[1] is now idle the longest
        newest = service.open_page()
        assert len(store) == 3 and store.get(tokens[1]) is None
        reply = dispatch(service, [tokens[1], "boot"])  # as the page calls it
        assert "closed for a newer page" in reply["error"] and "at most 3 pages" in reply["error"]
        assert "everything accepted is saved" in reply["error"]
        for t in (tokens[0], tokens[2], newest):
            assert "error" not in dispatch(service, [t, "boot"])
    finally:
        service.close()


def test_an_idle_session_is_dropped_and_says_so():
    store = SessionStore(idle_s=0.05)
    s = store.open()
    time.sleep(0.1)
    assert store.get(s.token) is None and "idle for more than" in store.closed_reason(s.token)
    assert store.closed_reason("never-seen") is None


def test_undo_history_is_bounded_in_bytes_keeping_the_newest():
    s = LabelSession(token="t", owner="", undo_bytes=3 * 2**20)
    for k in range(20):
        p = Pending(points=[(k, k)], labels=[1], low_res=np.zeros((3, 1, 256, 256), np.float16))  # 384 KiB each
        s.push(Undo(pending=p.pack()))
    assert sum(u.nbytes for u in s.undo) <= 3 * 2**20 and len(s.undo) == 7
    assert s.undo[-1].pending.state.points == [(19, 19)]  # the newest steps stay


def test_ten_sessions_of_ten_clicks_all_answer_within_their_bounds(project, fake):
    store = SessionStore(max_sessions=16, undo_bytes=2**20)
    service = LabelService(project, fake, sessions=store)
    try:
        tokens = [service.open_page() for _ in range(10)]
        for t in tokens:
            service.open_image(t, project.images()[0].id)
        for k in range(10):
            for t in tokens:
                assert "error" not in service.prompt(t, "pos", [10 + k, 10 + k])
        assert len(store) == 10
        for t in tokens:
            s = store.get(t)
            assert s is not None and sum(u.nbytes for u in s.undo) <= 2**20
            assert "error" not in service.prompt(t, "neg", [50, 40])
    finally:
        service.close()
