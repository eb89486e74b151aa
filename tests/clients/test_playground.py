"""The playground page (GET /playground) in headless Chromium, as a person uses it.

Debian's `chromium` package driven by Playwright for Python (`executable_path`; Playwright never
downloads a browser here). The page runs against the real API and CPU worker that
tools/client-tests.sh starts. A screenshot of the finished generation is saved as
target/test-output/playground.png (DARKROOM_TEST_OUTPUT overrides the folder).
"""
import os
import pathlib
import re
import shutil

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

OUTPUT = pathlib.Path(os.environ.get("DARKROOM_TEST_OUTPUT") or pathlib.Path(__file__).resolve().parents[2] / "target" / "test-output")
# Generous: the CPU worker may still be busy with an earlier test's job.
TIMEOUT_MS = 120_000

# Records what #progress-text and the preview caption showed while a job ran.
RECORD = """() => {
  window.__seen = { progress: [], previews: [] };
  const watch = (id, list) => new MutationObserver(() => list.push(document.getElementById(id).textContent))
    .observe(document.getElementById(id), { childList: true, characterData: true, subtree: true });
  watch("progress-text", window.__seen.progress);
  watch("preview-caption", window.__seen.previews);
}"""


def chromium_path():
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail("no chromium: install Debian's chromium package (.ci/run installs it when missing)")
    return path


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path())
        yield b
        b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


def open_page(context, url, problems):
    """The playground in a new tab; console errors (CSP violations among them) go to `problems`."""
    page = context.new_page()
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    response = page.goto(url + "/playground")
    assert response.status == 200
    return page, response


def field(page, label):
    """The input labelled exactly `label` (as a screen reader names it)."""
    return page.get_by_label(label, exact=True)


def sign_in(page, token, model):
    field(page, "API token").fill(token)
    field(page, "API token").blur()  # `change`: the page stores it and loads models and jobs
    field(page, "Model").select_option(model)


def fill_request(page, *, width, height, steps, seed, prompt, num_images=1):
    field(page, "Sampler").select_option("Euler a")
    field(page, "Width").fill(str(width))
    field(page, "Height").fill(str(height))
    field(page, "Steps").fill(str(steps))
    field(page, "Guidance scale").fill("6")
    field(page, "Seed").fill(str(seed) if seed is not None else "")
    field(page, "Images").fill(str(num_images))
    field(page, "Prompt").fill(prompt)
    field(page, "Negative prompt").fill("blurry")


def test_the_page_is_static_public_and_locked_down(url):
    r = requests.get(url + "/playground", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "unsafe-inline" not in csp, csp
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", csp), csp
    # Nothing from another host.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text)


def test_generate_shows_progress_and_the_image(context, url, token, model):
    problems = []
    page, _ = open_page(context, url, problems)
    sign_in(page, token, model)
    # Enough steps (a second or two on the tiny model) that the stream is open before most of them.
    fill_request(page, width=64, height=64, steps=24, seed=4242, prompt="a lighthouse at dusk, playground")
    field(page, "Preview every N steps").fill("4")
    page.evaluate(RECORD)
    page.get_by_role("button", name="Generate", exact=True).click()

    image = page.locator("#results img").first
    expect(image).to_have_attribute("src", re.compile(r"^blob:"), timeout=TIMEOUT_MS)
    size = image.evaluate("async (img) => { await img.decode(); return [img.naturalWidth, img.naturalHeight]; }")
    assert size == [64, 64]
    expect(page.locator("#status")).to_contain_text("Succeeded")
    expect(page.locator("#results figcaption").first).to_contain_text("Seed 4242")
    expect(page.locator("#params")).to_contain_text("a lighthouse at dusk, playground")
    expect(page.locator("#params")).to_contain_text("Euler a")

    seen = page.evaluate("window.__seen")
    assert any(re.match(r"Step \d+/24", t) for t in seen["progress"]), f"progress shown: {seen['progress']}"
    assert any(t.startswith("Preview at step") for t in seen["previews"]), f"previews shown: {seen['previews']}"

    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / "playground.png"), full_page=True)
    assert not problems, problems

    # The token survives a reload (local storage), and the job is in the recent list; opening it
    # from there shows its image again.
    page.reload()
    expect(field(page, "API token")).to_have_value(token)
    entry = page.get_by_role("button", name=re.compile(r"a lighthouse at dusk, playground")).first
    expect(entry).to_be_visible()
    entry.click()
    again = page.locator("#results img").first
    expect(again).to_have_attribute("src", re.compile(r"^blob:"))
    assert again.evaluate("async (img) => { await img.decode(); return img.naturalWidth; }") == 64
    assert not problems, problems


def test_cancel_stops_a_job(context, url, token, model):
    problems = []
    page, _ = open_page(context, url, problems)
    sign_in(page, token, model)
    # Long enough that it cannot finish before the click: 8 images of 150 steps.
    fill_request(page, width=256, height=256, steps=150, seed=None, prompt="a job to cancel, playground", num_images=8)
    page.get_by_role("button", name="Generate", exact=True).click()
    cancel = page.get_by_role("button", name="Cancel", exact=True)
    expect(cancel).to_be_enabled()
    cancel.click()
    expect(page.locator("#status")).to_contain_text("Canceled", timeout=TIMEOUT_MS)
    expect(cancel).to_be_disabled()
    assert not problems, problems


def test_recent_jobs_page_with_next(context, url, token, model):
    auth = {"Authorization": f"Bearer {token}"}
    jobs = requests.get(url + "/v1/jobs?limit=11", headers=auth, timeout=30).json()["data"]
    # More than a page (10) of jobs; one-step jobs are cheap.
    for i in range(11 - len(jobs)):
        body = {"model": model, "prompt": f"filler {i}, playground", "width": 64, "height": 64, "steps": 1}
        assert requests.post(url + "/v1/jobs", json=body, headers=auth, timeout=30).status_code == 202
    jobs = requests.get(url + "/v1/jobs?limit=11", headers=auth, timeout=30).json()["data"]
    problems = []
    page, _ = open_page(context, url, problems)
    sign_in(page, token, model)
    items = page.locator("#jobs li")
    expect(items).to_have_count(10)
    page.get_by_role("button", name="Older jobs", exact=True).click()
    expect(items.nth(10)).to_be_visible()
    ids = page.locator("#jobs button").evaluate_all("(bs) => bs.map((b) => b.dataset.id)")
    assert len(ids) == len(set(ids)) > 10
    assert ids[:11] == [j["id"] for j in jobs]
    assert not problems, problems


def test_a_dropped_stream_resumes_with_last_event_id(context, url, token, model):
    """The first event stream is cut after its first event; the page reconnects with that
    event's id in Last-Event-ID and gets the rest from the API."""
    problems = []
    page, _ = open_page(context, url, problems)
    seen = []
    cut = {}

    def handle(route, request):
        seen.append(request.headers.get("last-event-id"))
        if len(seen) > 1:
            route.continue_()
            return
        # The whole stream (it ends with the job), then only its first event to the page.
        body = route.fetch(timeout=TIMEOUT_MS).text()
        first = next(b for b in re.split(r"\r?\n\r?\n", body) if re.search(r"^event: ?job$", b, re.M))
        cut["id"] = re.search(r"^id: ?(.*)$", first, re.M).group(1)
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=first + "\n\n")

    page.route(re.compile(r"/v1/jobs/[^/]+/events$"), handle)
    sign_in(page, token, model)
    fill_request(page, width=64, height=64, steps=4, seed=7, prompt="a dropped stream, playground")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Succeeded", timeout=TIMEOUT_MS)
    expect(page.locator("#results img").first).to_have_attribute("src", re.compile(r"^blob:"))
    assert len(seen) >= 2 and seen[0] is None and seen[1] == cut["id"], (seen, cut)
    assert not problems, problems


def test_the_event_stream_parser(context, url):
    """The page's SSE parser on the cases a network can produce: CRLF, CR, a line split between
    reads, multi-line data, comments, ids."""
    page, _ = open_page(context, url, [])
    events = page.evaluate("""() => {
      const out = [];
      const p = new SseParser((e) => out.push(e));
      for (const chunk of [": keep-alive\\r\\nid: 1\\r", "\\nevent: job\\ndata: {\\"a\\":", "1}\\n\\n", "id: 2\\revent: progress\\rdata: x\\rdata:y\\r\\r",
                           "data\\n\\n:\\n\\nevent: queued\\ndata: {}\\n\\nevent: half\\ndata: never dispatched"]) p.feed(chunk);
      return out;
    }""")
    assert events == [
        {"type": "job", "data": '{"a":1}', "id": "1"},
        {"type": "progress", "data": "x\ny", "id": "2"},
        {"type": "message", "data": "", "id": "2"},
        {"type": "queued", "data": "{}", "id": "2"},
    ]


def test_a1111_prompt_syntax_is_sent_and_shown(context, url, token, model):
    """Picking AUTOMATIC1111's syntax sends `prompt_syntax: "a1111"`; the job shows it, and a
    prompt that syntax cannot read is the API's 422 naming `prompt`."""
    problems = []
    page, _ = open_page(context, url, problems)
    sign_in(page, token, model)
    prompt = "a (lighthouse:1.3) at dusk BREAK [fog], a1111 playground"
    fill_request(page, width=64, height=64, steps=4, seed=11, prompt=prompt)
    field(page, "Prompt syntax").select_option("a1111")
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Succeeded", timeout=TIMEOUT_MS)
    expect(page.locator("#params")).to_contain_text("AUTOMATIC1111")
    auth = {"Authorization": f"Bearer {token}"}
    jobs = requests.get(url + "/v1/jobs?limit=20", headers=auth, timeout=30).json()["data"]
    job = next(j for j in jobs if j["request"]["prompt"] == prompt)
    assert job["request"]["prompt_syntax"] == "a1111", job["request"]
    assert not problems, problems

    field(page, "Prompt").fill("a (cat:1.2.3)")
    page.get_by_role("button", name="Generate", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("422 invalid_request")
    expect(alert).to_contain_text("field: prompt")


def test_errors_show_the_apis_message(context, url, token, model):
    problems = []
    page, _ = open_page(context, url, problems)
    sign_in(page, token, model)
    fill_request(page, width=64, height=64, steps=500, seed=1, prompt="too many steps")
    page.get_by_role("button", name="Generate", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("422 invalid_request")
    expect(alert).to_contain_text("field: steps")
    # The browser logs the 422 itself; nothing else may go wrong.
    assert all("status of 422" in p for p in problems), problems
