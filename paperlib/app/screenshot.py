"""A screenshot of notebook 08's widget, rendered by JupyterLab in a real (headless) browser.

`python -m paperlib screenshot` starts `jupyter lab --no-browser` on a free localhost port with
no token, opens notebooks/08_try_it.ipynb in the system's Chromium through Playwright (the
optional extra `screenshot`; the browser is never downloaded: Debian's `chromium` package),
runs all cells, clicks one cell of the sketch (so the click-to-attention path is exercised in
the browser, not only in the tests), waits for the widgets and saves the PNG. The notebook is
never saved: autosave is off in a throwaway settings folder and the server is stopped unsaved.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..paths import atomic_write, repo_root

NOTEBOOK = "notebooks/08_try_it.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# JupyterLab settings for the throwaway server: no autosave (the committed notebook keeps the
# outputs of `make reproduce`), and no news or update checks (no network here).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer at {url} within {timeout:.0f} s")


def start_lab(root: Path, work: Path, port: int, profile: str) -> subprocess.Popen:
    settings = work / "settings"
    for rel, values in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(values))
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0", "--IdentityProvider.token=",
           "--ServerApp.password=", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={work / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]  # no package index queries
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root
        cmd.append("--allow-root")
    env = {**os.environ, "PAPERLIB_PROFILE": profile, "TQDM_DISABLE": "1"}
    log = open(work / "lab.log", "wb")
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)


def take(out: str | os.PathLike | None = None, profile: str = "mini", chromium: str = CHROMIUM,
         width: int = 1500, height: int = 1500, timeout: float = 300.0) -> Path:
    """Run notebook 08 in JupyterLab in headless Chromium and save the widget's screenshot."""
    if out is not None and (not str(out).strip() or Path(out).suffix.lower() != ".png"
                            or Path(out).is_dir()):
        # checked before minutes of JupyterLab and Chromium, not when the PNG is written
        raise ValueError(f"--out {str(out)!r} is not a PNG file path (e.g. shot.png)")
    try:
        from playwright.sync_api import sync_playwright  # optional (the 'screenshot' extra)
    except ImportError:
        raise RuntimeError("playwright is not installed: pip install -e '.[screenshot]' "
                           "(it drives the system's chromium; no browser is downloaded)") from None
    if not Path(chromium).is_file():
        raise FileNotFoundError(f"no Chromium at {chromium}: apt-get install -y chromium, "
                                f"or pass --chromium PATH")
    root = repo_root()
    out = Path(out) if out else root / "results" / "fig_try_it_screenshot.png"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="paperlib-screenshot-") as tmp:
        work = Path(tmp)
        proc = start_lab(root, work, port, profile)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_server(f"{base}/api/status", proc, 60)
            with sync_playwright() as pw:
                ctx = pw.chromium.launch_persistent_context(
                    str(work / "chromium-profile"), executable_path=chromium, headless=True,
                    args=CHROMIUM_ARGS, viewport={"width": width, "height": height})
                try:
                    _drive(ctx.new_page(), f"{base}/lab/tree/{NOTEBOOK}", out, timeout)
                finally:
                    ctx.close()
        except Exception:
            sys.stderr.write((work / "lab.log").read_text(errors="replace")[-3000:])
            raise
        finally:
            proc.terminate()  # unsaved: the committed notebook is left as it was
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return out


def _drive(page, url: str, out: Path, timeout: float) -> None:
    ms = timeout * 1000
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=ms)
    # The kernel must be up before "run all", else the run is queued behind the kernel start.
    page.wait_for_function("() => { const w = window.jupyterapp?.shell?.currentWidget;"
                           " return w?.sessionContext?.session?.kernel?.status === 'idle'; }",
                           timeout=ms)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # The widget's images (sketch, reference, attention, output, one per trained arm).
    page.wait_for_selector(".jp-OutputArea-output .widget-image", timeout=ms)
    page.wait_for_function("() => !document.querySelector('.jp-InputArea-prompt') ||"
                           " ![...document.querySelectorAll('.jp-InputArea-prompt')]"
                           ".some(p => p.textContent.includes('*'))", timeout=ms)
    sketch = page.locator(".jp-OutputArea-output .widget-image").first
    sketch.scroll_into_view_if_needed()
    box = sketch.bounding_box()
    # A click on the sketch picks a feature cell: the attention caption must follow.
    page.mouse.click(box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"])
    page.wait_for_function("() => [...document.querySelectorAll('.widget-html')]"
                           ".some(e => /attention<\\/b> of cell \\(1, 1\\)/.test(e.innerHTML))",
                           timeout=30000)
    widget = page.locator(".jp-OutputArea-output .widget-vbox").first  # the outermost box
    widget.scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # let the last images paint
    png = widget.screenshot()  # bytes, written through a temp file: a stop keeps the old PNG
    atomic_write(out, lambda f: f.write(png))


# ----------------------------------------------------------------------------- command line

def add_screenshot_arguments(sp) -> None:
    sp.add_argument("--profile", default="mini", help="whose runs the notebook shows (default mini)")
    sp.add_argument("--out", default=None, help="PNG path (default results/fig_try_it_screenshot.png)")
    sp.add_argument("--chromium", default="/usr/bin/chromium", help="the browser executable")


def screenshot_main(args) -> None:
    print(take(args.out, profile=args.profile, chromium=args.chromium))
