"""The soak benchmark's machinery, on the tiny model for seconds (the 10-minute soak is a benchmark:
python -m apiary.bench.soak): clients chat and send feedback to a real server that learns, and every
figure it reports is there and sane."""

from apiary.bench.soak import markdown, plot, soak
from apiary.store.store import Store


def test_a_short_soak_reports_no_errors_memory_latency_and_versions_and_loses_no_feedback(tmp_path, tiny_core_dir):
    report = soak(seconds=16, clients=3, core=tiny_core_dir, work=tmp_path, sample_s=2.0, min_feedback=4, heldout=4)
    assert report.errors == {}, report.errors
    assert len(report.samples) >= 2 and [s.at_s for s in report.samples] == sorted(s.at_s for s in report.samples)
    assert all(100 < s.rss_mb < 16_000 for s in report.samples), report.samples  # the server's memory, each time
    assert report.requests >= 3 and report.feedback == len(report.acknowledged) >= 3, report
    assert all(s.p95_s > 0 for s in report.samples if s.requests) and any(s.requests for s in report.samples), report.samples
    assert all(s.live_version >= 0 and s.served_version is not None for s in report.samples), report.samples  # read
    stored = Store(tmp_path / "hive").feedback()
    assert sorted(f.id for f in stored) == sorted(report.acknowledged)  # every acknowledged piece is in the store
    plot(report, tmp_path / "soak.png")
    assert (tmp_path / "soak.png").stat().st_size > 0
    text = markdown(report, "python -m apiary.bench.soak --core tiny")
    assert f"{report.requests} chats, {report.feedback} feedback acknowledged, errors:\nnone" in text
