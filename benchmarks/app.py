"""How long a visitor of the demo, and a user of the CLI, waits: this tree against another revision.

    python benchmarks/app.py                      # this working tree only
    python benchmarks/app.py --baseline 63f8c8e   # and the same measures on that commit, side by side

Needs Chromium (/usr/bin/chromium) and Playwright, as the browser tests do. Every figure comes from
one run on this machine; compare only the columns of one run. What it measures, with koclip-mini:

- fresh server, first answer: seconds from the server's health check passing to the first answer
  drawn on a page opened right then (a new server per page), and from the server's launch to that
  answer. "cold": an empty compilation cache; "warm": the cache a previous server left.
- warm server, new session: seconds from opening a page to the page fully drawn with its answer,
  once the server has loaded and compiled everything; the median of several new sessions, and how
  many times the page was drawn (script runs) in each.
- the floor: the same for a one-line Streamlit app (`st.write`), which is what Streamlit and the
  browser take whatever the app does.
- CLI: wall seconds of `--help`, argument errors and one search, end to end (median of 3).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python" if (ROOT / ".venv").is_dir() else Path(sys.executable)
CHROMIUM = "/usr/bin/chromium"
PAGES = {  # url path → text that appears once the page has answered
    "image_to_text": "koclip-mini · ",
    "text_to_image": " best of ",
    "text_to_patch": "Best patch for",
}
SESSIONS = 5
# Counts the times the page's script starts running: one run draws the page once.
COUNT_RUNS = """
window.__runs = 0;
new MutationObserver(() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const state = app && app.getAttribute('data-test-script-state');
  if (state === 'running' && window.__last !== 'running') window.__runs += 1;
  window.__last = state;
}).observe(document, {subtree: true, attributes: true, childList: true, attributeFilter: ['data-test-script-state']});
"""
SETTLED = (
    "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state') === 'notRunning'"
    " && !document.querySelector('[data-stale=\"true\"]')"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(tree: Path, compilation_cache: Path):
    """A headless server of the app in `tree`; yields (url, its launch time, the time its health check
    passed, pid)."""
    port = free_port()
    launched = time.monotonic()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "KOCLIP_MODEL": "koclip-mini",
        "KOCLIP_COMPILATION_CACHE": str(compilation_cache),
        "PYTHONPATH": str(tree),
    }
    process = subprocess.Popen(
        [
            str(PYTHON),
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise SystemExit("the server did not become healthy in 120 s")
        yield url, launched, time.monotonic(), process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, quiet: float = 3.0, limit: float = 300.0) -> None:
    """Until the server has used under 5% of a core for `quiet` seconds: loading and compiling are done."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(quiet)
        if cpu_seconds(pid) - before < 0.05 * quiet:
            return


def answered(browser, url: str, page_name: str) -> tuple[float, int]:
    """Seconds from opening `page_name` in a new session until it has answered and settled; script runs."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.add_init_script(COUNT_RUNS)
    try:
        start = time.monotonic()
        page.goto(f"{url}/{page_name}")
        page.get_by_text(PAGES[page_name]).first.wait_for(timeout=300_000)
        page.wait_for_function(SETTLED, timeout=300_000)
        return time.monotonic() - start, page.evaluate("window.__runs")
    finally:
        page.close()


def first_answers(browser, tree: Path, cache: Path) -> dict[str, tuple[float, float]]:
    """Per page: (health check → first answer, launch → first answer), in seconds."""
    out = {}
    for name in PAGES:
        with server(tree, cache) as (url, launched, healthy, _):
            page = browser.new_page()
            page.goto(f"{url}/{name}")
            page.get_by_text(PAGES[name]).first.wait_for(timeout=300_000)
            out[name] = (time.monotonic() - healthy, time.monotonic() - launched)
            page.close()
    return out


def new_sessions(browser, tree: Path, cache: Path) -> dict[str, tuple[float, list[int]]]:
    out = {}
    with server(tree, cache) as (url, _, _, pid):
        answered(browser, url, "image_to_text")
        wait_idle(pid)
        for name in PAGES:
            answered(browser, url, name)  # the page's own first use (a gallery opened, say)
            runs = [answered(browser, url, name) for _ in range(SESSIONS)]
            out[name] = (statistics.median(t for t, _ in runs), [n for _, n in runs])
    return out


FLOOR_APP = 'import streamlit as st\nst.write("ready")\n'


def floor(browser, scratch: Path) -> float:
    """A new session of a one-line app, open → drawn: the part of a page's time the app cannot change."""
    tree = scratch / "floor"
    tree.mkdir(parents=True, exist_ok=True)
    (tree / "app.py").write_text(FLOOR_APP)
    times = []
    with server(tree, scratch / "floor-cache") as (url, _, _, _):
        for _ in range(SESSIONS + 1):
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            start = time.monotonic()
            page.goto(url)
            page.get_by_text("ready").wait_for(timeout=60_000)
            page.wait_for_function(SETTLED)
            times.append(time.monotonic() - start)
            page.close()
    return statistics.median(times[1:])


def cli_times(tree: Path, cache: Path) -> dict[str, float]:
    gallery = ROOT / "embeddings" / "koclip-mini-scenes"
    calls = {
        "--help": ["--help"],
        "search --help": ["search", "--help"],
        "error: no such gallery": ["search", "빨간 원", "--gallery", "/nonexistent"],
        "error: unknown model": ["search", "빨간 원", "--gallery", str(gallery), "--model", "no-such-model"],
        "error: empty query": ["search", " ", "--gallery", str(gallery)],
        "search, koclip-mini": ["search", "빨간 원", "--gallery", str(gallery)],
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KOCLIP_COMPILATION_CACHE": str(cache), "PYTHONPATH": str(tree)}
    out = {}
    for name, args in calls.items():
        times = []
        for _ in range(3):
            start = time.monotonic()
            subprocess.run([str(PYTHON), "-m", "koclip", *args], cwd=tree, env=env, capture_output=True)
            times.append(time.monotonic() - start)
        out[name] = statistics.median(times)
    return out


def measure(browser, tree: Path, scratch: Path) -> dict[str, object]:
    cold, warm = scratch / "cold-cache", scratch / "warm-cache"
    figures: dict[str, object] = {"cold": first_answers(browser, tree, cold)}
    first_answers(browser, tree, warm)  # fills the cache
    figures["warm"] = first_answers(browser, tree, warm)
    figures["sessions"] = new_sessions(browser, tree, warm)
    figures["cli"] = cli_times(tree, warm)
    return figures


def report(results: dict[str, dict]) -> None:
    names = list(results)
    print("\n## Fresh server, koclip-mini: health check → first answer (launch → first answer), s")
    print("| page | compilation cache | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for cache in ("cold", "warm"):
        for page in PAGES:
            cells = [f"{results[n][cache][page][0]:.1f} ({results[n][cache][page][1]:.1f})" for n in names]
            print(f"| {page} | {cache} | " + " | ".join(cells) + " |")
    print("\n## Warm server: a new session's page, open → fully drawn (median s; script runs per session)")
    print("| page | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for page in PAGES:
        cells = [f"{results[n]['sessions'][page][0]:.2f} ({max(results[n]['sessions'][page][1])} run)" for n in names]
        print(f"| {page} | " + " | ".join(cells) + " |")
    print("\n## CLI wall time (median of 3, s)")
    print("| call | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for call in results[names[0]]["cli"]:
        print(f"| {call} | " + " | ".join(f"{results[n]['cli'][call]:.2f}" for n in names) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", metavar="REV", help="also measure this git revision, in a temporary worktree")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="koclip-bench-") as scratch, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        trees = {"this tree": ROOT}
        if args.baseline:
            baseline = Path(scratch) / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(baseline), args.baseline],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            trees = {args.baseline: baseline, **trees}
        try:
            for name, tree in trees.items():
                print(f"measuring {name}…", flush=True)
                results[name] = measure(browser, tree, Path(scratch) / name.replace(" ", "-"))
            floor_seconds = floor(browser, Path(scratch))
        finally:
            if args.baseline:
                subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, capture_output=True)
            browser.close()
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    report(results)
    print(f"\nFloor: a one-line Streamlit app's new session, open → drawn: {floor_seconds:.2f} s (median)")


if __name__ == "__main__":
    main()
