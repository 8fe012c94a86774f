"""Take docs/screenshots/loss.png: the Loss page on the embedded default model (Gemma 3 270M), by hand.

    python scripts/loss_screenshot.py [--conversation ID] [--out docs/screenshots/loss.png]

Starts `streamlit run app.py` on a free local port, opens /loss in Debian's chromium (Playwright, never a downloaded
browser), clicks "Load the model" (~30-45 s on 2 cores, longer when the machine is busy) with the batch starting at
--conversation, and saves a screenshot of the logged losses and the tokens colored by loss. Needs
requirements-model.txt, playwright and /usr/bin/chromium. Not a test: the suite never loads Gemma in a browser.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settle(page) -> None:
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=600_000)
    page.wait_for_timeout(1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversation", default="demo-11-three-turns")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots" / "loss.png"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="loss-shot-") as tmp:
        log = Path(tmp) / "streamlit.log"
        with open(log, "wb") as out:
            server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                                       "--server.port", str(port), "--server.fileWatcherType", "none"],
                                      cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            with sync_playwright() as p:
                context = p.chromium.launch_persistent_context(
                    str(Path(tmp) / "profile"), executable_path="/usr/bin/chromium", headless=True, args=ARGS,
                    viewport={"width": 1500, "height": 1300})
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(600_000)
                page.goto(f"{url}/loss?conv={args.conversation}")
                page.locator("h1").filter(has_text="Loss").first.wait_for(state="visible")
                settle(page)
                started = time.monotonic()
                page.get_by_role("button", name="Load the model").click()
                page.locator(".st-key-loss_token_chart .js-plotly-plot").wait_for(state="visible")
                settle(page)
                print(f"model loaded and scored in {time.monotonic() - started:.0f} s")
                page.evaluate("() => document.activeElement && document.activeElement.blur()")
                page.locator(".st-key-loss_setup").evaluate("el => el.scrollIntoView({block: 'start'})")
                settle(page)
                page.screenshot(path=args.out)
                print(f"Wrote {args.out}")
                context.close()
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
