"""Progress without a terminal: a log line at the start, now and then, and at the end; never one per update."""

from __future__ import annotations

import logging

import pytest

from ernie_cpt.messages import plural
from ernie_cpt.progress import LoggedProgress, progress, show_library_progress


def test_logged_progress_logs_the_first_update_the_interval_and_the_end(caplog, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("ernie_cpt.progress.time.monotonic", lambda: now[0])
    with (caplog.at_level(logging.INFO, logger="ernie_cpt"),
          LoggedProgress(total=1000, desc="Pre-training", unit="step", interval_s=30.0) as bar):
        for step in range(1, 1001):
            now[0] = step / 8  # 8 steps/s (exact in binary): 125 s in all
            bar.update(1)
            bar.set_postfix(loss="1.234")
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[1].split("(")[0].strip() for line in lines] == [
        "1/1,000 steps", "241/1,000 steps", "481/1,000 steps", "721/1,000 steps", "961/1,000 steps",
        "1,000/1,000 steps"]  # the first, then every 30 s (240 steps), then the last
    assert lines[0] == "Pre-training: 1/1,000 steps (0%), 8.00 steps/s, 2m04s left"  # 999 / 8 = 124.9 s
    assert lines[-1] == "Pre-training: 1,000/1,000 steps (100%), 8.00 steps/s, loss=1.234"


def test_a_resumed_bar_counts_its_rate_from_where_it_started(caplog, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("ernie_cpt.progress.time.monotonic", lambda: now[0])
    with caplog.at_level(logging.INFO, logger="ernie_cpt"):
        bar = LoggedProgress(total=100, desc="Pre-training", unit="step", initial=90)
        now[0] = 2.0
        bar.update(2)
        bar.close()
    assert caplog.records[0].getMessage() == "Pre-training: 92/100 steps (92%), 1.00 steps/s, 0m08s left"
    assert len(caplog.records) == 1  # close() logs only what was not logged yet


def test_tqdm_disable_silences_it(caplog, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    with caplog.at_level(logging.INFO, logger="ernie_cpt"), progress(10, "Pre-training", "step") as bar:
        bar.update(10)
    assert caplog.records == []


@pytest.mark.parametrize("show", [False, True])
def test_library_bars_follow_verbose(monkeypatch, show):
    from transformers.utils import logging as transformers_logging

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    show_library_progress(show)
    try:
        assert transformers_logging.is_progress_bar_enabled() is show
    finally:
        show_library_progress(False)


def test_plural():
    assert [plural(n, "document") for n in (0, 1, 2, 1200)] == ["0 documents", "1 document", "2 documents",
                                                                 "1,200 documents"]
    assert plural(1, "entity", "entities") == "1 entity" and plural(3, "entity", "entities") == "3 entities"
