"""The app in a real browser: `streamlit run app.py` headless on 127.0.0.1, driven by Debian's chromium with Playwright.

Checks what only a browser shows: the token table's -100 cells are gray and trained cells green (computed
background colors), every page renders without an exception, and the screenshots look right. Screenshots go to
tests/artifacts/; the Inspect and Gradient weights ones are copied to docs/screenshots/ for the README when those
are missing or SFT_UPDATE_SCREENSHOTS=1 (so a normal run leaves the committed screenshots alone). Special tokens
such as DeepSeek's <｜User｜> need a font with full-width forms (Debian: fonts-droid-fallback) to look right.

Never downloads a browser: it uses /usr/bin/chromium (Debian's `chromium` package) and skips when it is missing.
"""

from __future__ import annotations

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
# the colors inspector.viz uses, as browsers report them
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A `streamlit run app.py` subprocess on a free port; always stopped at the end."""
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
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
def browser_page(tmp_path_factory):
    """A chromium page (persistent context in a fresh profile folder: Playwright refuses --user-data-dir in args)."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-quic"],
            viewport={"width": 1500, "height": 1100}, device_scale_factor=1)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
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


@pytest.mark.parametrize("path, marker, shot", [
    ("dataset", "Token shares, overall", "dataset.png"),
    ("weights", "Preset: session-level vs split-turn", "gradient-weights.png"),
    ("export", "Download", "export.png"),
])
def test_every_page(server, browser_page, path, marker, shot):
    page = browser_page
    page.goto(f"{server}/{path}")
    page.get_by_text(marker, exact=True).first.wait_for(state="visible")
    _settle(page)
    _no_exception(page)
    if path == "weights":
        body = page.locator('[data-testid="stMain"]').inner_text()
        for value in ("2/3", "1/6", "17/24", "5/24", "1/12"):
            assert value in body
        crossed = page.locator('s.sfti-term[data-counted="false"]')
        assert crossed.count() > 0
        assert "line-through" in crossed.first.evaluate("el => getComputedStyle(el).textDecorationLine")
    if path == "dataset":
        page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(state="visible")
    out = _shot(page, shot)
    if path == "weights":
        _publish(out, "gradient-weights.png")


def test_selecting_a_sample_row_opens_it_in_inspect(server, browser_page):
    page = browser_page
    page.goto(f"{server}/dataset")
    page.get_by_text("Samples (select a row to inspect)", exact=True).wait_for(state="visible")
    _settle(page)
    grid = page.locator('[data-testid="stDataFrame"]').nth(1)  # [0] is the overall shares table
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    row_height = 35  # Streamlit's dataframe rows (and header) are 35 px high
    page.mouse.click(box["x"] + 14, box["y"] + row_height * 4 + row_height / 2)  # the 4th sample's checkbox
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    assert _selected(page, "stMain", "Conversation") == "demo-04-reasoning"


def test_sidebar_settings_carry_over_between_pages(server, browser_page):
    page = browser_page
    page.goto(server)
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    _choose(page, "stSidebar", "Strategy", "all-tokens")
    assert page.locator('table.sfti-tokens td.sfti-label[data-label="-100"]').count() == 0
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Dataset", exact=True).click()
    page.get_by_text("Token shares, overall", exact=True).wait_for(state="visible")
    _settle(page)
    assert _selected(page, "stSidebar", "Strategy") == "all-tokens"
    page.locator('[data-testid="stSidebarNav"]').get_by_text("Inspect", exact=True).click()
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    assert page.locator('table.sfti-tokens td.sfti-label[data-label="-100"]').count() == 0


def test_clicking_a_bar_of_the_share_chart_opens_it_in_inspect(server, browser_page):
    page = browser_page
    page.goto(f"{server}/dataset")
    page.get_by_text("Per sample (click a bar to inspect)", exact=True).wait_for(state="visible")
    _settle(page)
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.55, box["y"] + 24 * 2 + 17)  # a bar in the third row
    page.locator("table.sfti-tokens").first.wait_for(state="visible")
    _settle(page)
    assert _selected(page, "stMain", "Conversation").startswith("demo-")
    assert page.get_by_role("heading", name="Inspect").count() == 1
