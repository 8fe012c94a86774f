"""The app in a real browser: `streamlit run app.py` headless on 127.0.0.1, driven by Debian's chromium with Playwright.

Checks what only a browser shows: the token table's -100 cells are gray and trained cells green (computed
background colors), every page opened as the first request of a freshly started server has the full sidebar and
its content, every sidebar value survives a tour of the pages, Plotly bars open what they show when clicked, two
browser sessions never see each other's upload, user-supplied markdown never becomes an <img>, and the screenshots
look right. Screenshots go to tests/artifacts/; the Inspect, Dataset, Gradient weights and Packing ones are copied to
docs/screenshots/ for the README when those are missing or SFT_UPDATE_SCREENSHOTS=1 (so a normal run leaves the
committed screenshots alone). Special tokens
such as DeepSeek's <｜User｜> need a font with full-width forms (Debian: fonts-droid-fallback) to look right.

Never downloads a browser: it uses /usr/bin/chromium (Debian's `chromium` package) and skips when it is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
STARTUP_TIMEOUT = 60  # seconds for streamlit to answer its health check
# the colors inspector.views.viz uses, as browsers report them
GRAY = "rgb(229, 231, 235)"  # masked (label -100): STATE_COLORS["masked"][0] == "#e5e7eb"
GREEN = "rgb(187, 247, 208)"  # trained: STATE_COLORS["trained"][0] == "#bbf7d0"
RED = "rgb(254, 202, 202)"  # flagged: STATE_COLORS["flagged"][0] == "#fecaca"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium "
                                                     "(apt-get install chromium); the browser test needs it"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer within {STARTUP_TIMEOUT}s:\n{log.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def streamlit_server(log_dir: Path, env: dict | None = None):
    """A fresh `streamlit run app.py` subprocess on a free port, with the repository's .streamlit/config.toml
    (127.0.0.1, no usage statistics); always stopped at the end."""
    port = _free_port()
    log = log_dir / f"streamlit-{port}.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory) -> Path:
    """The server's own temporary folder (its TMPDIR): where it would spill an upload to disk."""
    return tmp_path_factory.mktemp("streamlit-tmp")


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_tmp):
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    with streamlit_server(tmp_path_factory.mktemp("streamlit"), {"TMPDIR": str(server_tmp)}) as url:
        yield url


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser_page(playwright, tmp_path_factory):
    """A chromium page (persistent context in a fresh profile folder: Playwright refuses --user-data-dir in args)."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1500, "height": 1100}, device_scale_factor=1)
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        yield page
    finally:
        context.close()


@pytest.fixture()
def new_session(playwright, tmp_path):
    """Open browser sessions of their own (each its own fresh profile, cookies and websocket)."""
    contexts = []

    def open_one():
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / f"profile-{len(contexts)}"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1500, "height": 1100})
        contexts.append(context)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        return page

    yield open_one
    for context in contexts:
        context.close()


def _settle(page) -> None:
    """Wait until Streamlit has finished running the script (no 'running' status, no stale elements)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=60_000)
    page.wait_for_timeout(700)


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def _shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def _publish(path: Path, name: str) -> None:
    """Copy a screenshot to docs/screenshots/ (the README's) when it is missing or SFT_UPDATE_SCREENSHOTS=1."""
    target = SCREENSHOTS / name
    if os.environ.get("SFT_UPDATE_SCREENSHOTS") == "1" or not target.exists():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _bg(locator) -> str:
    return locator.evaluate("el => getComputedStyle(el).backgroundColor")


def test_inspect_token_table_colors(server, browser_page):
    page = browser_page
    page.goto(server)
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    _no_exception(page)
    masked = page.locator('table.sfti-tokens td.sfti-label[data-label="-100"]')
    trained = page.locator('table.sfti-tokens td.sfti-label[data-state="trained"]')
    assert masked.count() > 0 and trained.count() > 0
    assert masked.first.inner_text().strip() == "-100"
    assert _bg(masked.first) == GRAY
    assert _bg(trained.first) == GREEN
    # a trained token's row is green (or red when a check flags it), and hovering shows why
    row = page.locator('table.sfti-tokens tr[data-state="trained"]').first
    assert _bg(row.locator("td").first) == GREEN
    flagged = page.locator('table.sfti-tokens tr[data-state="flagged"]')
    if flagged.count():
        assert _bg(flagged.first.locator("td").first) == RED
        assert "pad-equals-eos" in flagged.first.get_attribute("title")
    _shot(page, "inspect.png")


def _choose(page, area: str, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labeled ``label`` in the main area ("stMain") or the sidebar ("stSidebar")."""
    box = page.locator(f'[data-testid="{area}"]').get_by_role("combobox", name=label)
    box.scroll_into_view_if_needed()
    box.click()
    box.fill(option)  # typing filters the list and opens it wherever the box sits on the screen
    page.get_by_role("option", name=option, exact=True).click()
    _settle(page)


def _selected(page, area: str, label: str) -> str:
    return page.locator(f'[data-testid="{area}"]').get_by_role("combobox", name=label).input_value()


def _pick_conversation(page, conv_id: str) -> None:
    _choose(page, "stMain", "Conversation", conv_id)
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)


def test_inspect_screenshot_for_readme(server, browser_page):
    """The README screenshot: a short three-turn chat, where trained answers and masked questions alternate."""
    page = browser_page
    page.goto(server)
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    _pick_conversation(page, "demo-11-three-turns")
    page.wait_for_function("() => [...document.querySelectorAll('table.sfti-tokens td.sfti-token')]"
                           ".some(td => td.innerText.includes('Neptune'))")
    _no_exception(page)
    page.set_viewport_size({"width": 1500, "height": 1500})
    try:
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        _settle(page)
        path = _shot(page, "inspect-three-turns.png")
    finally:
        page.set_viewport_size({"width": 1500, "height": 1100})
    _publish(path, "inspect.png")


def test_chips_and_rendered_text(server, browser_page):
    page = browser_page
    page.goto(server)
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    page.get_by_role("tab", name="Chips").click()
    chip = page.locator('span.sfti-chip[data-state="masked"]').first
    chip.wait_for(state="visible")
    assert _bg(chip) == GRAY
    page.get_by_role("tab", name="Rendered text").click()
    seg = page.locator('span.sfti-seg[data-segment="user"]').first
    seg.wait_for(state="visible")
    assert _bg(seg) == "rgb(219, 234, 254)"  # SEGMENT_COLORS["user"] == "#dbeafe"
    _shot(page, "inspect-rendered.png")
    page.get_by_role("tab", name="Compare").click()
    page.locator("table.sfti-compare").first.wait_for(state="visible")
    assert page.locator('tr.sfti-cmp-row[data-status="label differs"]').count() > 0
    _shot(page, "inspect-compare.png")


# --- every page as the first request of a fresh server ---------------------------------------------------------

PAGES = [("", "Inspect", "table.sfti-tokens"), ("dataset", "Dataset", ".js-plotly-plot"),
         ("weights", "Gradient weights", ".js-plotly-plot"), ("export", "Export", '[data-testid="stDownloadButton"]'),
         ("audit", "Audit", "table.sfti-audit")]
SIDEBAR_SECTIONS = ("Tokenizer", "Chat template", "Data", "Training sample")


def _heading(page, title: str) -> None:
    page.locator("h1").filter(has_text=title).first.wait_for(state="visible")


def _sidebar_is_full(page) -> None:
    side = page.locator('[data-testid="stSidebar"]')
    for section in SIDEBAR_SECTIONS:
        assert side.get_by_role("heading", name=section, exact=True).count() == 1, section
    assert side.get_by_role("combobox", name="Strategy").count() == 1
    assert side.get_by_role("spinbutton", name="Max length (tokens, 0 = no limit)").count() == 1
    for _, title, _ in PAGES:  # our navigation, with every page
        assert side.get_by_role("link", name=title, exact=True).count() == 1, title
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # no legacy navigation


@pytest.mark.parametrize("path, title, marker", PAGES)
def test_a_deep_link_as_the_first_request_of_a_fresh_server(tmp_path, browser_page, path, title, marker):
    page = browser_page
    with streamlit_server(tmp_path) as url:
        page.goto(f"{url}/{path}")
        _heading(page, title)
        page.locator(marker).first.wait_for(state="visible")
        _settle(page)
        _no_exception(page)
        _sidebar_is_full(page)
        assert page.title().startswith(title)


# --- the sidebar across pages ----------------------------------------------------------------------------------

TOUR_TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _radio(page, group: int, option: str) -> None:
    """Click ``option`` of the sidebar's ``group``-th radio group (0 tokenizer, 1 template, 2 data)."""
    page.locator('[data-testid="stSidebar"] [data-testid="stRadio"]').nth(group).get_by_text(option,
                                                                                         exact=True).click()
    _settle(page)


def test_every_sidebar_value_survives_a_tour_of_the_pages(server, browser_page, tiny_tokenizer, tmp_path):
    page = browser_page
    folder = tmp_path / "tok"
    tiny_tokenizer.save_pretrained(folder)
    data = tmp_path / "tour.jsonl"
    data.write_text(json.dumps({"id": "tour-1", "messages": [
        {"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "How can I help you today?"}]}) + "\n")
    page.goto(server)
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    side = page.locator('[data-testid="stSidebar"]')
    _radio(page, 0, "Hub id or local folder")
    name = side.get_by_role("textbox", name="Hub id or local folder")
    name.fill(str(folder))
    name.press("Enter")
    _settle(page)
    _radio(page, 1, "Edit (Jinja)")
    editor = side.get_by_role("textbox", name="Jinja chat template")
    editor.fill(TOUR_TEMPLATE)
    editor.press("Control+Enter")
    _settle(page)
    _radio(page, 2, "Upload a file")
    side.locator('input[type="file"][accept*=".ndjson"]').set_input_files(str(data))
    side.get_by_text("tour.jsonl", exact=False).first.wait_for(state="visible")
    _settle(page)
    _choose(page, "stSidebar", "Strategy", "all-tokens")
    length = side.get_by_role("spinbutton", name="Max length (tokens, 0 = no limit)")
    length.fill("512")
    length.press("Enter")
    _settle(page)
    side.get_by_text("Label the end-of-turn token", exact=True).click()
    _settle(page)

    def kept() -> None:
        _no_exception(page)
        assert side.get_by_role("textbox", name="Hub id or local folder").input_value() == str(folder)
        assert side.get_by_role("textbox", name="Jinja chat template").input_value() == TOUR_TEMPLATE
        assert side.get_by_text("Using the uploaded file:").count() == 1
        assert "tour.jsonl" in side.get_by_text("Using the uploaded file:").inner_text()
        assert _selected(page, "stSidebar", "Strategy") == "all-tokens"
        assert side.get_by_role("spinbutton", name="Max length (tokens, 0 = no limit)").input_value() == "512"
        assert not side.get_by_role("switch", name="Label the end-of-turn token").is_checked()

    kept()
    for _, title, marker in [*PAGES[1:], PAGES[0]]:
        side.get_by_role("link", name=title, exact=True).click()
        _heading(page, title)
        page.locator(marker).first.wait_for(state="visible")
        _settle(page)
        kept()
    # and in use on Inspect: the uploaded conversation, every token trained, the pasted template's markup
    assert _selected(page, "stMain", "Conversation") == "tour-1"
    assert page.locator('table.sfti-tokens td.sfti-label[data-label="-100"]').count() == 0
    assert page.locator("table.sfti-tokens td.sfti-token").first.inner_text() == "<|im_start|>"
    assert "strategy=all-tokens" in page.url and "max_length=512" in page.url and "conv=tour-1" in page.url


# --- Plotly charts: present, and a click opens what they show --------------------------------------------------

def _eventually(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def _click_widest_bar_of_the_top_row(page, chart) -> None:
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    boxes = chart.locator(".barlayer .point path").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })")
    top = min(b[1] for b in boxes)
    x, y, w, h = max((b for b in boxes if abs(b[1] - top) < 1), key=lambda b: b[2])
    page.mouse.click(x + w / 2, y + h / 2)


def _click_bar(page, chart, index: int = 0) -> None:
    bar = chart.locator(".barlayer .trace").first.locator(".point path").nth(index)
    bar.scroll_into_view_if_needed()
    box = bar.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def test_dataset_page_draws_plotly_and_a_bar_opens_its_conversation(server, browser_page):
    page = browser_page
    page.goto(f"{server}/dataset")
    page.locator(".js-plotly-plot").first.wait_for(state="visible")
    _settle(page)
    _no_exception(page)
    assert page.locator(".js-plotly-plot").count() >= 4
    assert page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight") < 3 * 1100
    out = _shot(page, "dataset.png")
    _publish(out, "dataset.png")
    page.get_by_role("tab", name="Worst samples").click()
    chart = page.locator(".st-key-dataset_worst_chart .js-plotly-plot")  # the element keyed in the page
    chart.wait_for(state="visible")
    _settle(page)
    chart.scroll_into_view_if_needed()
    ticks = chart.locator(".ytick text").evaluate_all(
        "els => els.map(e => [e.textContent, e.getBoundingClientRect().y])")
    first = min(ticks, key=lambda t: t[1])[0]  # the worst sample: the top row
    _click_widest_bar_of_the_top_row(page, chart)
    _heading(page, "Inspect")
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    assert _selected(page, "stMain", "Conversation") == first
    assert f"conv={first}" in page.url


def test_a_length_histogram_bar_lists_its_samples_and_opens_one(server, browser_page):
    page = browser_page
    page.goto(f"{server}/dataset")
    page.locator(".js-plotly-plot").first.wait_for(state="visible")
    _settle(page)
    chart = page.locator(".st-key-dataset_lengths .js-plotly-plot")
    chart.wait_for(state="visible")
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    boxes = chart.locator(".barlayer .point path").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })")
    x, y, w, h = max(boxes, key=lambda b: b[3])  # the tallest bar: the most samples
    page.mouse.click(x + w / 2, y + h - 2)
    box = page.locator(".st-key-dataset_lengths_pick").get_by_role("combobox")
    box.wait_for(state="visible")
    _settle(page)
    _no_exception(page)
    assert page.get_by_text("samples in this bar").count() >= 1
    box.click()
    box.fill("tokens")  # typing opens the list wherever the box sits (as _choose does); every option holds it
    page.get_by_role("option").first.wait_for(state="visible")
    options = page.get_by_role("option").all_inner_texts()
    assert len(options) >= 2 and all(" tokens · " in o for o in options)
    first = options[0].split(" · ")[0]
    page.get_by_role("option").first.click()
    _heading(page, "Inspect")
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    assert _selected(page, "stMain", "Conversation") == first  # the demo: one sample per conversation, same id


def test_gradient_weights_bars_select_a_sample(server, browser_page):
    page = browser_page
    page.goto(f"{server}/weights")
    page.locator(".js-plotly-plot").nth(1).wait_for(state="visible")
    _settle(page)
    _no_exception(page)
    body = page.locator('[data-testid="stMain"]').inner_text()
    for value in ("2/3", "1/6", "17/24", "5/24", "1/12", "mean per sample", "sample_mean"):
        assert value in body
    crossed = page.locator('s.sfti-term[data-counted="false"]')
    assert crossed.count() > 0
    assert "line-through" in crossed.first.evaluate("el => getComputedStyle(el).textDecorationLine")
    # a large fraction reads as a percentage, the exact value on hover
    approx = page.locator("span.sfti-approx").first
    assert approx.inner_text().endswith("%") and "/" in approx.get_attribute("title")
    page.set_viewport_size({"width": 1500, "height": 1500})
    try:
        _settle(page)
        out = _shot(page, "gradient-weights.png")
    finally:
        page.set_viewport_size({"width": 1500, "height": 1100})
    _publish(out, "gradient-weights.png")
    chart = page.locator(".st-key-weights_sample_chart .js-plotly-plot")
    before = _selected(page, "stMain", "Tokens of sample")
    _click_bar(page, chart, 1)
    _eventually(lambda: _selected(page, "stMain", "Tokens of sample") != before)
    _settle(page)
    assert _selected(page, "stMain", "Tokens of sample") == "demo-04-reasoning" != before


# --- two sessions; user-supplied markdown ------------------------------------------------------------------------

def test_two_browser_sessions_never_see_each_others_upload(server, server_tmp, new_session, tmp_path):
    import tempfile

    marker = "private-" + tmp_path.name
    data = tmp_path / "secret.jsonl"
    data.write_text(json.dumps({"id": marker, "messages": [{"role": "user", "content": marker},
                                                            {"role": "assistant", "content": "ok"}]}) + "\n")
    started = time.time() - 1
    a, b = new_session(), new_session()
    for page in (a, b):
        page.goto(server)
        page.locator("table.sfti-tokens").first.wait_for(state="visible")
        _settle(page)
    _radio(a, 2, "Upload a file")
    a.locator('[data-testid="stSidebar"] input[type="file"][accept*=".ndjson"]').set_input_files(str(data))
    _eventually(lambda: _selected(a, "stMain", "Conversation") == marker)
    # B, at the same time: its upload source is empty, its pages never show A's record
    _radio(b, 2, "Upload a file")
    assert b.locator('[data-testid="stSidebar"]').get_by_text("Using the uploaded file:").count() == 0
    assert marker not in b.content()
    # and there is no file to name under "Path on this machine": the upload never reached the disk
    # only what this test made is searched (other programs' files in /tmp come and go): the server's own TMPDIR,
    # and the files of the repository (its working folder) written since the test started
    made = list(server_tmp.rglob("*")) + [q for q in ROOT.rglob("*") if ".git" not in q.parts and _newer(q, started)]
    found = [str(q) for q in made if q.is_file() and not q.is_symlink() and marker.encode() in _read(q)]
    assert found == []
    _radio(b, 2, "Path on this machine")
    box = b.locator('[data-testid="stSidebar"]').get_by_role("textbox", name="File or folder")
    box.fill(tempfile.gettempdir())
    box.press("Enter")
    _settle(b)
    assert marker not in b.content()
    b.reload()
    b.locator("h1").first.wait_for(state="visible")
    _settle(b)
    assert marker not in b.content()
    # B uploads its own file: each session sees its own upload only
    other = tmp_path / "other.jsonl"
    other.write_text(data.read_text().replace(marker, marker + "-b"))
    _radio(b, 2, "Upload a file")
    b.locator('[data-testid="stSidebar"] input[type="file"][accept*=".ndjson"]').set_input_files(str(other))
    _eventually(lambda: _selected(b, "stMain", "Conversation") == marker + "-b")
    a.get_by_role("tab", name="Sortable table").click()
    _settle(a)
    assert _selected(a, "stMain", "Conversation") == marker
    assert marker + "-b" not in a.content()
    assert "secret.jsonl" not in b.content()


def _newer(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:  # gone in between
        return False


def _read(path: Path, limit: int = 50_000_000) -> bytes:
    try:
        return path.read_bytes() if path.stat().st_size < limit else b""
    except OSError:
        return b""


def test_markdown_in_ids_and_template_errors_never_becomes_an_image(server, new_session):
    record = {"id": "![x](http://host/id.png)", "messages": [{"role": "user", "content": "Hi"},
                                                              {"role": "assistant", "content": "Yo"}]}
    page = new_session()
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "host/" in r.url or "//h/" in r.url else None)
    page.goto(server)
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    _radio(page, 2, "Paste JSON")
    area = page.locator('[data-testid="stSidebar"]').get_by_role("textbox", name="JSON or JSON Lines")
    area.fill(json.dumps(record))
    area.press("Control+Enter")
    _settle(page)
    _eventually(lambda: _selected(page, "stMain", "Conversation") == record["id"])
    _radio(page, 1, "Edit (Jinja)")
    editor = page.locator('[data-testid="stSidebar"]').get_by_role("textbox", name="Jinja chat template")
    editor.fill("{{ raise_exception('![t](http://h/x.png)') }}")
    editor.press("Control+Enter")
    _settle(page)
    assert page.get_by_text("![t](http://h/x.png)", exact=False).count() >= 1  # shown, as text
    for _, title, _ in PAGES:
        page.locator('[data-testid="stSidebar"]').get_by_role("link", name=title, exact=True).click()
        _heading(page, title)
        _settle(page)
        _no_exception(page)
        srcs = page.locator("img").evaluate_all("els => els.map(e => e.src)")
        assert not [x for x in srcs if "host/" in x or "//h/" in x], srcs
    assert fetched == []


def test_selecting_a_row_of_the_paged_table_opens_it_in_inspect(server, browser_page):
    page = browser_page
    page.goto(f"{server}/dataset")
    page.locator(".js-plotly-plot").first.wait_for(state="visible")
    _settle(page)
    page.get_by_role("tab", name="All samples").click()
    grid = page.locator('.st-key-dataset_table [data-testid="stDataFrame"]')
    grid.wait_for(state="visible")
    grid.scroll_into_view_if_needed()
    _settle(page)
    box = grid.bounding_box()
    row_height = 35  # Streamlit's dataframe rows (and header) are 35 px high
    page.mouse.click(box["x"] + 14, box["y"] + row_height * 4 + row_height / 2)  # the 4th sample's checkbox
    _heading(page, "Inspect")
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    assert _selected(page, "stMain", "Conversation") == "demo-04-reasoning"


# --- issue 10: the Packing page; issue 14: the training template on Export ----------------------------------------

def test_packing_page_as_the_first_request_of_a_fresh_server_and_a_block_click(tmp_path, browser_page):
    """/packing first on a fresh server: the full sidebar, the blocks chart; clicking a block selects its sequence and
    highlights its sample. The README's Packing screenshot is taken here."""
    page = browser_page
    with streamlit_server(tmp_path) as url:
        page.goto(f"{url}/packing")
        _heading(page, "Packing")
        chart = page.locator(".st-key-packing_blocks .js-plotly-plot")
        chart.wait_for(state="visible")
        page.locator("table.sfti-packed").first.wait_for(state="visible")
        _settle(page)
        _no_exception(page)
        _sidebar_is_full(page)
        assert page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Packing", exact=True).count() == 1
        assert page.title().startswith("Packing")
        # the first sequence holding several samples is on screen, a thick line where each of them starts
        assert _selected(page, "stMain", "Packed sequence").startswith("seq 1: 4 piece(s)")
        boundary = page.locator('table.sfti-packed tr[data-boundary="true"]')
        assert boundary.count() == 4
        assert boundary.nth(1).locator("td").first.evaluate("el => getComputedStyle(el).borderTopWidth") == "3px"
        assert boundary.nth(1).locator("td.sfti-position").inner_text() == "0"  # position ids restart
        page.set_viewport_size({"width": 1500, "height": 1500})
        try:
            page.evaluate("() => document.activeElement && document.activeElement.blur()")
            _settle(page)
            out = _shot(page, "packing.png")
        finally:
            page.set_viewport_size({"width": 1500, "height": 1100})
        _publish(out, "packing.png")
        _click_bar(page, chart, 0)  # the first block: sequence 0 (demo-07, the long answer bfd truncates)
        _eventually(lambda: _selected(page, "stMain", "Packed sequence").startswith("seq 0:"))
        _settle(page)
        _no_exception(page)
        assert page.get_by_text("Selected sample: demo-07-truncated-answer", exact=False).count() == 1
        assert page.locator("table.sfti-packed tr.sfti-row").first.get_attribute("data-sample") == \
            "demo-07-truncated-answer"
        _shot(page, "packing-clicked.png")


def test_export_training_template_download(server, browser_page, deepseek_setup, tmp_path):
    from inspector.labels.engine import LabelOptions
    from inspector.data.loaders import load_data
    from inspector.training_template.check import export_training_template
    from inspector.template.tokenizer import DEMO_DIR

    expected = export_training_template(deepseek_setup, load_data(DEMO_DIR / "demo.jsonl").conversations,
                                        LabelOptions()).training.template
    page = browser_page
    page.goto(f"{server}/export")
    _heading(page, "Export")
    build = page.get_by_role("button", name="Build and verify the training template")
    build.wait_for(state="visible")
    _settle(page)
    build.click()
    page.locator(".sfti-side-by-side").wait_for(state="visible")
    _settle(page)
    _no_exception(page)
    assert page.locator(".sfti-side-by-side mark.sfti-tag").count() > 0
    with page.expect_download() as info:
        page.get_by_role("button", name="Training template (.jinja)").click()
    download = info.value
    assert download.suggested_filename == "chat_template.training.jinja"
    path = tmp_path / download.suggested_filename
    download.save_as(str(path))
    assert path.read_text(encoding="utf-8") == expected and "{% generation %}" in expected
    _settle(page)
    page.locator(".sfti-side-by-side").scroll_into_view_if_needed()
    _shot(page, "export-training-template.png")


# --- issue 12: the Loss page -------------------------------------------------------------------------------------


def _hover_cell(page, chart, column: int, row: int) -> str:
    """Move the mouse over one cell of a Plotly heatmap (axis units) and return the hover label's text."""
    x, y = chart.evaluate(
        "(el, [c, r]) => { const L = el._fullLayout, b = el.getBoundingClientRect();"
        " return [b.x + L.xaxis._offset + L.xaxis.l2p(c), b.y + L.yaxis._offset + L.yaxis.l2p(r)]; }", [column, row])
    page.mouse.move(x, y)
    label = chart.locator(".hoverlayer .hovertext")
    label.first.wait_for(state="visible")
    return label.first.text_content()


def test_the_loss_page_as_the_first_request_of_a_fresh_server_loads_a_model_folder(tmp_path, browser_page,
                                                                                   tiny_lm_dir):
    page = browser_page
    with streamlit_server(tmp_path, env={"SFT_INSPECTOR_SERVER_PATHS": "on"}) as url:
        page.goto(f"{url}/loss")
        _heading(page, "Loss")
        main = page.locator('[data-testid="stMain"]')
        main.get_by_role("button", name="Load the model").wait_for(state="visible")
        _settle(page)
        _no_exception(page)
        _sidebar_is_full(page)
        assert page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Loss", exact=True).count() == 1
        assert page.title().startswith("Loss")
        assert "No model loaded in this session" in main.inner_text()
        # a local model folder typed into the page, then loaded
        main.get_by_text("Hub id or local folder", exact=True).click()
        _settle(page)
        box = main.get_by_role("textbox", name="Hub id or local folder")
        box.fill(tiny_lm_dir)
        box.press("Enter")
        _settle(page)
        main.get_by_role("button", name="Load the model").click()
        chart = page.locator(".st-key-loss_token_chart .js-plotly-plot")
        chart.wait_for(state="visible")
        _settle(page)
        _no_exception(page)
        text = main.inner_text()
        assert "Logged loss · assistant-only" in text and "Logged loss · all-tokens" in text
        assert "needs the model's own vocabulary" in text and "Why they differ" in text
        # hover: position 1 (ChatML's role name after <|im_start|>) is masked, with the model's top predictions
        chart.scroll_into_view_if_needed()
        hover = _hover_cell(page, chart, 1, 0)
        assert "#1" in hover and "-100 (masked)" in hover and "top:" in hover and "loss" in hover
        _shot(page, "loss-tiny-model.png")
        # the strategy switch: under all-tokens the same cell is trained and the logged number is the other one
        page.locator(".st-key-loss_strategy").get_by_text("all-tokens", exact=True).click()
        _settle(page)
        _eventually(lambda: chart.count() == 1)  # the chart of the previous run is gone
        hover = _hover_cell(page, chart, 1, 0)
        assert "· trained" in hover and "-100" not in hover
