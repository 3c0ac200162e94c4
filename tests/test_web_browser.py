"""The pages in a real browser: Playwright driving the machine's Chromium (Debian's package, which `.ci/run`
installs; nothing is downloaded). Clicks go through htmx as a person's would.

With APIARY_UI_SCREENSHOTS=DIR set, the main pages are also saved as DIR/ui-*.png (the README's pictures).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from web_hive import PAYLOAD, running_site

CHROMIUM = "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no {CHROMIUM}: apt-get install chromium (.ci/run does)")


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_core_dir, random_adapter):
    with running_site(tmp_path_factory, tiny_core_dir, random_adapter) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def signed_in(browser, url: str, key: str, bypass_csp: bool = True):
    """A new browser context (its own cookies) signed in with `key`; returns its page. The pages' Content-Security-
    Policy is bypassed unless asked: Playwright's waits evaluate script, and the injection test must show that
    escaping alone keeps a payload inert (the policy is a second wall)."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=bypass_csp).new_page()
    page.goto(url + "/ui/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/ui")
    return page


def test_each_page_loads_with_htmx_and_its_figures(site, browser):
    running, hive, ids = site
    page = signed_in(browser, running.url, "key-local")
    assert page.evaluate("typeof htmx") == "object"
    assert page.inner_text("#current-core") == "v0" and "arith" in page.inner_text("#workers")
    assert "refused: held-out 0.580" in page.inner_text("#gates")
    folded = page.locator("#learned-v1-arith details a").first  # the 11th to 13th feedback core v1's source learned
    assert page.locator("#learned-v1-arith > a").count() == 10 and not folded.is_visible()
    page.click("#learned-v1-arith summary")
    assert folded.is_visible()
    page.click("text=arith")
    page.wait_for_selector("#heldout")
    assert "0.640" in page.inner_text("#heldout")
    assert "at step 3 of 10" in page.inner_text("#run-progress")  # the run in progress, updated in place every 2 s
    assert "left" in page.inner_text("#run-left")
    hive.store.update_run(hive.store.unfinished_run("arith").id, step=4)
    page.wait_for_selector("#run-progress >> text=at step 4", timeout=10_000)
    page.wait_for_function("[...document.images].every(i => i.complete)")  # the three SVG charts
    assert page.evaluate("[...document.images].map(i => i.naturalWidth > 0)") == [True, True, True]
    page.click("nav >> text=Episodes")
    page.select_option("select[name=origin]", "serve")  # htmx swaps the rows in place
    page.wait_for_function("document.querySelector('#episode-count').textContent === '1'")
    page.goto(f"{running.url}/ui/episodes/{ids['a']}")
    transcript = page.text_content(".transcript")
    assert "What is 3 + 4?" in transcript and "expected answer" in transcript


def test_htmx_works_under_the_pages_content_security_policy(site, browser):
    running, _hive, _ids = site
    page = signed_in(browser, running.url, "key-local", bypass_csp=False)
    refused = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None)
    page.goto(running.url + "/ui/episodes")
    page.select_option("select[name=origin]", "serve")
    page.wait_for_url("**/ui/episodes?*origin=serve*")  # htmx pushed the filtered address
    assert page.inner_text("#episode-count") == "1" and refused == []


def test_a_correction_from_the_inbox_is_in_the_store_and_a_refusal_says_why(site, browser):
    running, hive, ids = site
    page = signed_in(browser, running.url, "key-local")
    page.goto(f"{running.url}/ui/inbox?episode={ids['wrong']}")
    page.fill("#critique-value", "   ")
    page.click("#give-critique")
    page.wait_for_selector("#outcome")
    assert "Refused: empty critique" in page.inner_text("#outcome")
    page.fill("#giver", "dana")
    page.fill("#correction-value", "9")
    page.click("#give-correction")
    page.wait_for_selector("text=Recorded correction")
    (stored,) = hive.store.feedback(episode_ids=[ids["wrong"]])
    assert (stored.kind, stored.text, stored.by) == ("correction", "9", "dana")
    assert page.locator("article.review").get_attribute("data-episode") != str(ids["wrong"])  # on to the next answer


def test_picking_the_better_of_two_answers_records_a_preference(site, browser):
    running, hive, ids = site
    page = signed_in(browser, running.url, "key-local")
    page.goto(f"{running.url}/ui/inbox?episode={ids['a']}")
    page.click("#prefer-a")
    page.wait_for_selector("text=Recorded preference")
    (stored,) = hive.store.feedback(kind="preference")
    assert (stored.episode_id, stored.other_episode_id) == (ids["a"], ids["b"])


def test_rolling_a_worker_back_changes_the_version_the_server_serves(site, browser):
    running, hive, _ids = site
    page = signed_in(browser, running.url, "key-local")
    page.goto(running.url + "/ui/workers/arith")
    assert page.inner_text("#served") == "v2"
    page.once("dialog", lambda dialog: dialog.accept())  # the confirmation
    page.select_option("#rollback-version", "1")
    page.click("#rollback")
    page.wait_for_selector("text=rolled back")
    assert hive.store.worker("arith").live_version == 1
    for _ in range(50):  # the server's watcher swaps the route within its watch interval
        page.reload()
        if page.inner_text("#served") == "v1":
            break
        time.sleep(0.1)
    assert page.inner_text("#served") == "v1" and page.inner_text("#live") == "v1"


def test_a_tenant_cannot_reach_another_tenants_worker_or_episode(site, browser):
    running, _hive, ids = site
    page = signed_in(browser, running.url, "key-acme")
    assert "acme-sums" in page.inner_text("#workers") and "arith" not in page.inner_text("#workers").replace("acme-sums", "")
    assert page.goto(running.url + "/ui/workers/arith").status == 404
    assert page.goto(f"{running.url}/ui/episodes/{ids['injected']}").status == 404


def test_a_script_in_a_completion_is_shown_as_text_and_never_runs(site, browser):
    running, _hive, ids = site
    page = signed_in(browser, running.url, "key-local")
    for path in (f"/ui/episodes/{ids['injected']}", f"/ui/inbox?episode={ids['injected']}", "/ui/episodes?origin=serve"):
        page.goto(running.url + path)
        page.wait_for_timeout(100)
        assert page.evaluate("window.pwned") is None, path
    page.goto(f"{running.url}/ui/episodes/{ids['injected']}")
    assert PAYLOAD in page.inner_text(".completion")


@pytest.mark.skipif(not os.environ.get("APIARY_UI_SCREENSHOTS"), reason="set APIARY_UI_SCREENSHOTS=DIR to save them")
def test_screenshots_of_the_main_pages(site, browser):
    running, _hive, ids = site
    out = Path(os.environ["APIARY_UI_SCREENSHOTS"])
    page = signed_in(browser, running.url, "key-local")
    for name, path in [("overview", "/ui"), ("worker", "/ui/workers/arith"), ("episodes", "/ui/episodes"),
                       ("inbox", f"/ui/inbox?episode={ids['b']}")]:
        page.goto(running.url + path)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / f"ui-{name}.png"), full_page=name != "episodes")  # its list is long
