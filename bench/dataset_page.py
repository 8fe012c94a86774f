"""The app's Dataset page at 1,000, 10,000 and 100,000 conversations: scan time, draw time after the scan, and
peak server memory (issue 9: drawn within 5 s after the scan at 100k, memory under 2 GB).

For each size: write the generated conversations (``bench/data.py``) to a JSONL file, start a fresh
``streamlit run app.py`` (server paths on), open ``/dataset?data=path&path=FILE`` in Debian's chromium, and time

- **scan**: from the request to the scan's end (the page's metrics appear; the scan streams with a progress bar);
- **draw after the scan**: from the metrics to the last Plotly chart drawn in the browser;
- **revisit**: a second visit of the page (the scan is cached): request to the last chart drawn;
- **page height**: the main area's scroll height in a 1500x1100 window;
- **peak memory**: the server process tree's highest RSS (polled every 50 ms) and its kernel high-water mark.

    python bench/dataset_page.py                  # 1k, 10k, 100k
    python bench/dataset_page.py --sizes 1000     # one size
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from data import write_jsonl  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
CHARTS = 4  # Plotly charts drawn on the Dataset page's first screen and first tab
# Plotly charts drawn (an svg inside) and current (Streamlit marks the elements of the previous run stale)
DRAWN = ("() => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.querySelector('.main-svg')"
         " && !p.closest('[data-stale=\"true\"]')).length")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Memory(threading.Thread):
    """Highest summed RSS of a process tree, polled every 50 ms, and its summed VmHWM."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.peak = 0
        self.hwm = 0
        self.running = True

    def run(self) -> None:
        import psutil

        while self.running:
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
                hwm = 0
                for p in procs:
                    for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            hwm += int(line.split()[1]) * 1024
                self.hwm = max(self.hwm, hwm)
            except (psutil.Error, OSError):
                pass
            time.sleep(0.05)


def measure(n: int, folder: Path, timeout: float) -> dict:
    from playwright.sync_api import sync_playwright

    data = folder / f"dataset-{n}.jsonl"
    if not data.exists():
        write_jsonl(data, n, seed=0)
    port = _port()
    env = {**os.environ, "SFT_INSPECTOR_SERVER_PATHS": "on", "PYTHONUNBUFFERED": "1"}
    log = open(folder / f"streamlit-{n}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    memory = Memory(proc.pid)
    memory.start()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        query = urllib.parse.urlencode({"data": "path", "path": str(data)})
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(timeout * 1000)
            t0 = time.monotonic()
            page.goto(f"{url}/dataset?{query}")
            page.get_by_text("Rejected by the loader", exact=True).wait_for(state="visible")
            t_scan = time.monotonic()
            page.wait_for_function(f"({DRAWN})() >= {CHARTS} && !document.querySelector('[data-testid=\"stProgress\"]')")
            t_drawn = time.monotonic()
            height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
            page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Inspect", exact=True).click()
            page.locator("table.sfti-tokens").first.wait_for(state="visible")
            t1 = time.monotonic()
            page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Dataset", exact=True).click()
            page.wait_for_function(f"({DRAWN})() >= {CHARTS} && !document.querySelector('table.sfti-tokens')")
            t_revisit = time.monotonic() - t1
            browser.close()
    finally:
        memory.running = False
        memory.join(timeout=2)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return {"n": n, "scan": t_scan - t0, "draw": t_drawn - t_scan, "revisit": t_revisit, "height": height,
            "peak_rss": memory.peak, "hwm": memory.hwm, "file_mb": data.stat().st_size / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--folder", default=None, help="where the generated JSONL files go (default: a temp folder)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per page load")
    args = ap.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="sft-inspector-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"Dataset page, deepseek tokenizer, assistant-only, max_length 1024; data in {folder}")
    print(f"{'conversations':>13} {'file MB':>8} {'scan s':>8} {'draw s':>7} {'revisit s':>9} {'height px':>9} "
          f"{'peak RSS MB':>11} {'VmHWM MB':>9}")
    for n in args.sizes:
        r = measure(n, folder, args.timeout)
        print(f"{r['n']:>13,} {r['file_mb']:>8.1f} {r['scan']:>8.1f} {r['draw']:>7.2f} {r['revisit']:>9.2f} "
              f"{r['height']:>9,} {r['peak_rss'] / 2**20:>11,.0f} {r['hwm'] / 2**20:>9,.0f}", flush=True)


if __name__ == "__main__":
    main()
