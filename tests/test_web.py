"""The pages over plain HTTP (no browser): sessions, CSRF, tenant isolation, escaping, each page answering."""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from apiary.serve.limits import RateLimiter
from apiary.serve.tenants import Tenants
from apiary.store.feedback import make_feedback
from apiary.store.records import Run, RunBudget
from apiary.web.ui import SIGN_INS_PER_MINUTE
from apiary.web.views import time_left
from apiary.web.session import Sessions, local_host
from web_hive import KEYS, SECRET, make_hive, running_site, server


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_core_dir, random_adapter):
    with running_site(tmp_path_factory, tiny_core_dir, random_adapter) as running:
        yield running


def signed_in(url: str, key: str) -> httpx.Client:
    c = httpx.Client(base_url=url)
    page = c.get("/ui/login")
    answer = c.post("/ui/login", data={"key": key, "csrf": csrf_of(page.text)})
    assert answer.status_code == 303, answer.text
    return c


def csrf_of(html: str) -> str:
    """The page's CSRF token (in its forms, and in the header htmx sends)."""
    return re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', html).group(1)


def test_every_page_answers_a_signed_in_tenant(site):
    running, _hive, ids = site
    c = signed_in(running.url, "key-local")
    for path in ["/ui", "/ui/workers/arith", "/ui/workers/arith/run", "/ui/episodes", "/ui/episodes?worker=arith&origin=attempt",
                 f"/ui/episodes/{ids['a']}", "/ui/inbox", "/ui/static/htmx.min.js"]:
        answer = c.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
    for chart in ("heldout", "curves", "retention"):
        answer = c.get(f"/ui/workers/arith/{chart}.svg")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg+xml")
    assert "script-src 'self'" in c.get("/ui").headers["content-security-policy"]
    assert "held-out: chain_sum 0.60 (gain kept 0.88)" in c.get("/ui").text  # the consolidation's per-job figures, as stored
    token = csrf_of(c.get("/ui").text)
    odd = c.post("/ui/inbox", data={"episode_id": str(ids["a"]), "kind": "preference", "other": "²", "csrf": token})
    assert odd.status_code == 400 and "Refused: pick one of the two answers" in odd.text


def test_a_visitor_without_a_session_is_sent_to_sign_in_and_a_wrong_key_is_refused(site):
    running, _hive, _ids = site
    c = httpx.Client(base_url=running.url)
    answer = c.get("/ui/workers/arith")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    page = c.get("/ui/login")
    wrong = c.post("/ui/login", data={"key": "nope", "csrf": csrf_of(page.text)})
    assert wrong.status_code == 401 and "invalid API key" in wrong.text
    forged = httpx.get(running.url + "/ui", cookies={"apiary_session": "local:abc:" + "0" * 64})
    assert forged.status_code == 303  # a cookie not signed by this server is no session


def test_a_form_without_the_csrf_token_of_its_session_is_refused_and_writes_nothing(site):
    running, hive, ids = site
    c = signed_in(running.url, "key-local")
    before = len(hive.store.feedback())
    for token in (None, "0" * 64):
        data = {"episode_id": str(ids["wrong"]), "kind": "reward", "value": "1"} | ({"csrf": token} if token else {})
        answer = c.post("/ui/inbox", data=data)
        assert answer.status_code == 403 and "CSRF" in answer.text
    other = signed_in(running.url, "key-local")  # another browser's token is not this one's
    answer = c.post("/ui/workers/arith/rollback", data={"version": "1", "csrf": csrf_of(other.get("/ui/workers/arith").text)})
    assert answer.status_code == 403
    assert len(hive.store.feedback()) == before and hive.store.worker("arith").live_version == 2


def test_a_tenant_sees_and_changes_only_its_own_workers_and_episodes(site):
    running, hive, ids = site
    acme = signed_in(running.url, "key-acme")
    overview = acme.get("/ui").text
    assert "acme-sums" in overview and "/ui/workers/arith" not in overview and "bravo-times" not in overview
    assert acme.get("/ui/workers/arith").status_code == 404
    assert acme.get(f"/ui/episodes/{ids['a']}").status_code == 404
    assert acme.get("/ui/workers/arith/heldout.svg").status_code == 404
    assert SECRET.replace("'", "&#39;") in acme.get("/ui/episodes").text
    local = signed_in(running.url, "key-local")
    assert SECRET.replace("'", "&#39;") not in local.get("/ui/episodes").text
    assert local.get(f"/ui/episodes/{ids['acme']}").status_code == 404
    token = csrf_of(acme.get("/ui").text)
    assert acme.post("/ui/workers/arith/rollback", data={"version": "1", "csrf": token}).status_code == 404
    said = acme.post("/ui/inbox", data={"episode_id": str(ids["wrong"]), "kind": "reward", "value": "1", "csrf": token})
    assert "Refused: no episode" in said.text
    assert acme.post("/ui/core/rollback", data={"version": "0", "csrf": token}).status_code == 403  # the core is shared
    assert hive.store.feedback(episode_ids=[ids["wrong"]]) == [] and hive.store.worker("arith").live_version == 2
    with zipfile.ZipFile(io.BytesIO(acme.get("/ui/export.zip").content)) as archive:
        episodes = archive.read("episodes.jsonl").decode()
        assert SECRET.replace("'", "\\u0027") in episodes or SECRET in episodes
        assert '"arith"' not in episodes and '"acme-sums"' in archive.read("workers.jsonl").decode()


def test_model_text_is_escaped_on_every_page(site):
    running, _hive, ids = site
    c = signed_in(running.url, "key-local")
    for path in [f"/ui/episodes/{ids['injected']}", "/ui/episodes", f"/ui/inbox?episode={ids['injected']}"]:
        html = c.get(path).text
        assert "<script>window.pwned" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;window.pwned" in html, path


def test_without_keys_the_pages_answer_only_to_localhost_and_the_core_rollback_is_checked(tmp_path, tiny_core_dir,
                                                                                          monkeypatch):
    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    hive = make_hive(tmp_path / "hive", tiny_core_dir)
    with server(hive, tiny_core_dir, Tenants()) as running:
        c = httpx.Client(base_url=running.url)
        page = c.get("/ui")
        assert page.status_code == 200  # no sign-in: the local tenant
        rebound = httpx.get(running.url + "/ui", headers={"Host": "evil.example:8000"})
        assert rebound.status_code == 403 and "localhost" in rebound.text
        said = c.post("/ui/core/rollback", data={"version": "3", "csrf": csrf_of(page.text)})
        assert "refused: no core version 3" in said.text and hive.store.table_rows("releases") == []
        said = c.post("/ui/workers/arith/learn", data={"csrf": csrf_of(page.text)})
        assert "started with --no-learn" in said.text


def test_episodes_are_filtered_by_worker_origin_score_and_date_and_a_bad_filter_says_which(site):
    running, hive, ids = site
    c = signed_in(running.url, "key-local")
    rows = c.get("/ui/episodes", params={"worker": "arith", "origin": "attempt", "min_score": "1"}).text
    assert re.findall(r'/ui/episodes/(\d+)"', rows) == [str(ids["a"])]
    assert ">0<" in c.get("/ui/episodes", params={"until": "2000-01-01"}).text
    answer = c.get("/ui/episodes", params={"min_score": "lots"})
    assert answer.status_code == 400 and "min_score must be a number" in answer.text


def test_asking_a_worker_to_learn_now_needs_only_one_piece_of_pending_feedback(site):
    from apiary.hive.feedback_learning import ready_workers

    _running, hive, ids = site
    hive.store.add_feedback([make_feedback(ids["b"], reward=0.0, by="test")])
    assert [w.name for w, _ in ready_workers(hive.store, 8)] == []
    assert [(w.name, learners) for w, learners in ready_workers(hive.store, 8, asked=frozenset({"arith"}))] == [
        ("arith", ["rewards"])]


def test_sessions_are_signed_and_csrf_tokens_bound_to_them():
    sessions = Sessions(b"k" * 32)
    session = sessions.new("acme")
    assert sessions.read(sessions.cookie(session)) == session
    assert sessions.read(sessions.cookie(session).replace("acme", "bravo", 1)) is None
    assert sessions.csrf_ok(session, sessions.csrf(session))
    assert not sessions.csrf_ok(sessions.new("acme"), sessions.csrf(session))
    assert Sessions(b"j" * 32).read(sessions.cookie(session)) is None
    assert [local_host(h) for h in ("127.0.0.1:8000", "localhost", "[::1]:80", "evil.example", "127.0.0.1.evil.example")] == [
        True, True, True, False, False]


def test_contradicting_feedback_from_the_inbox_is_kept_and_flagged_on_the_card(site):
    running, hive, ids = site
    c = signed_in(running.url, "key-local")
    token = csrf_of(c.get("/ui/inbox").text)
    first = c.post("/ui/inbox", data={"episode_id": str(ids["injected"]), "kind": "correction", "value": "Hello!",
                                      "csrf": token})
    assert "Recorded correction" in first.text
    second = c.post("/ui/inbox", data={"episode_id": str(ids["injected"]), "kind": "reward", "value": "1", "csrf": token})
    assert "Recorded reward" in second.text and "Flagged: reward 1 for an answer that was corrected" in second.text
    assert [f.conflict is not None for f in hive.store.feedback(episode_ids=[ids["injected"]])] == [False, True]


@pytest.mark.skipif(not os.environ.get("APIARY_SLOW_TESTS"), reason="a learning run and its gate, 30 s to minutes: set "
                                                                  "APIARY_SLOW_TESTS=1 (CI does)")
def test_learn_now_starts_a_gated_run_on_the_pending_feedback_below_the_threshold(tmp_path, tiny_core_dir, monkeypatch):
    from apiary.hive.feedback_learning import LearningConfig
    from apiary.serve.app import ServerThread, create_app
    from apiary.serve.service import ServeConfig, Service
    from apiary.store.records import Episode

    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    hive = make_hive(tmp_path / "hive", tiny_core_dir)
    job = hive.store.worker("arith").job
    (episode,) = hive.store.add_episodes([Episode(job=job, task_id="q", messages=[{"role": "user", "content": "2 + 5?"}],
                                                  completion="8", origin="attempt", worker="arith")])
    hive.feedback(episode, correction="7")
    config = ServeConfig(watch_seconds=0.1, max_tokens=16, learning=LearningConfig(min_feedback=100, poll_seconds=0.5))
    with ServerThread(create_app(Service(hive.path, core=str(tiny_core_dir), config=config), Tenants())) as running:
        c = httpx.Client(base_url=running.url)
        said = c.post("/ui/workers/arith/learn", data={"csrf": csrf_of(c.get("/ui/workers/arith").text)})
        assert "learning from 1 piece(s) of pending feedback" in said.text
        deadline = time.time() + 180
        while time.time() < deadline and not hive.store.decisions_like("worker:arith:"):
            time.sleep(0.5)
    assert [d.candidate for d in hive.store.decisions_like("worker:arith:")] == ["worker:arith:1"]
    assert hive.store.feedback_learned("arith", 1) == [f.id for f in hive.store.feedback("arith")]


def test_a_running_run_shows_its_step_of_its_budget_and_about_how_long_it_has_left(site):
    running, _hive, _ids = site
    fragment = signed_in(running.url, "key-local").get("/ui/workers/arith/run").text
    assert 'at step <b>3</b> of <b id="run-steps">10</b>' in fragment
    assert re.search(r'<b id="run-left">about \d+ min \d+ s left</b>', fragment), fragment


def test_a_run_of_an_older_apiary_says_its_time_left_is_not_known(tmp_path, tiny_core_dir, monkeypatch):
    from apiary.web.views import run_progress

    monkeypatch.setenv("APIARY_CACHE", str(tmp_path / "cache"))
    hive = make_hive(tmp_path / "hive", tiny_core_dir)
    hive.store.start_run(Run(worker="arith", job=hive.store.worker("arith").job, learner="rl", step=2))
    progress = run_progress(hive.store, "arith")
    assert progress.run.budget is None and progress.last_step is None and progress.seconds_left is None


def test_time_left_is_the_sooner_of_the_minutes_by_the_clock_and_the_steps_at_their_pace():
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    at = since + timedelta(seconds=120)
    assert time_left(RunBudget(steps=10, since=since), 3, at) == pytest.approx(280)  # 7 steps at 40 s each
    assert time_left(RunBudget(minutes=3, since=since), 3, at) == pytest.approx(60)
    assert time_left(RunBudget(steps=10, minutes=3, since=since), 3, at) == pytest.approx(60)
    assert time_left(RunBudget(steps=10, from_step=5, since=since), 7, at) == pytest.approx(480)  # resumed at step 5
    assert time_left(RunBudget(minutes=1, since=since), 3, at) == 0
    assert time_left(RunBudget(steps=10, since=since), 0, at) is None  # no step yet to pace by
    assert time_left(RunBudget(since=since), 3, at) is None  # no limit: until the feedback is used up


def test_wrong_keys_from_one_address_are_limited_and_the_refusal_says_when_to_retry(site, monkeypatch):
    from starlette.testclient import TestClient

    running, _hive, _ids = site
    app, clock = running.server.config.app, [1000.0]
    monkeypatch.setattr(app.state.pages, "sign_ins", RateLimiter(SIGN_INS_PER_MINUTE, clock=lambda: clock[0]))

    def attempt(client: TestClient, key: str):
        return client.post("/ui/login", data={"key": key, "csrf": csrf_of(client.get("/ui/login").text)})

    guesser = TestClient(app, client=("203.0.113.7", 40000), follow_redirects=False)
    assert [attempt(guesser, f"guess-{i}").status_code for i in range(SIGN_INS_PER_MINUTE)] == [401] * SIGN_INS_PER_MINUTE
    refused = attempt(guesser, "key-local")  # even the right key waits: guessing gains nothing
    assert refused.status_code == 429 and refused.headers["retry-after"] == "6" and "try again in 6 s" in refused.text
    other = TestClient(app, client=("203.0.113.8", 40000), follow_redirects=False)
    assert [attempt(other, "key-local").status_code for _ in range(SIGN_INS_PER_MINUTE + 2)] == [303] * (
        SIGN_INS_PER_MINUTE + 2)  # another address is not slowed, and right keys do not count
    clock[0] += 6
    assert attempt(guesser, "key-local").status_code == 303


def test_a_second_server_on_the_same_hive_keeps_the_first_ones_visitors_signed_in(site, tiny_core_dir):
    running, hive, _ids = site
    first = signed_in(running.url, "key-acme")
    with server(hive, tiny_core_dir, Tenants(KEYS)) as replica:
        second = httpx.Client(base_url=replica.url, cookies={"apiary_session": first.cookies["apiary_session"]})
        page = second.get("/ui")
        assert page.status_code == 200 and "acme-sums" in page.text
        assert csrf_of(page.text) == csrf_of(first.get("/ui").text)  # a form of one server is good on the other
    assert (hive.path / "session.key").stat().st_mode & 0o777 == 0o600


def test_the_core_lineage_lists_the_feedback_its_sources_learned_folding_all_but_the_first_ten(site):
    running, hive, _ids = site
    learned = hive.store.feedback_learned("arith", 2)
    items = hive.store.feedback_by_id(learned)
    html = signed_in(running.url, "key-local").get("/ui").text
    block = html[html.index('id="learned-v1-arith"'):]
    block = block[:block.index("</div>")]
    listed = [int(i) for i in re.findall(r">#(\d+)</a>", block)]
    assert len(learned) == 13 and listed == sorted(learned) and "(13 feedback)" in html
    shown, folded = block.split("<details>")
    assert len(re.findall(r">#\d+</a>", shown)) == 10 and "and 3 more</summary>" in folded
    first = items[listed[0]]
    assert f'<a href="/ui/episodes/{first.episode_id}">#{first.id}</a> {first.kind}' in shown
    assert "learned-v1" not in signed_in(running.url, "key-acme").get("/ui").text  # another tenant's worker's feedback
