"""A real browser for tests: Debian's chromium, headless, driven through chromedriver by selenium.

Why a browser: whether a page shows its charts is decided by the JavaScript that draws them, which
no HTML parser runs. `open_page` loads a URL, waits until a JavaScript predicate holds, evaluates
JavaScript expressions for the facts a test asserts, saves a screenshot and returns the console
errors. Nothing is downloaded: chromedriver is Debian's (`make browser` installs both), handed to
selenium through `Service`, so selenium-manager never runs. Background networking, component
updates and sync are off, and each page gets a fresh profile.
"""

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often give /dev/shm 64 MB, too little for a renderer
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,2000",
)
# Offline: every request, loopback included, goes to a proxy on a port nothing listens on (the
# discard port), so a page that fetches anything logs a failed load instead of reaching the network.
OFFLINE_FLAGS = ("--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>")


def missing() -> str | None:
    """Why no browser can run here (a test fails with it), or None."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    return f"{' and '.join(absent)} missing: run `make browser` (as root)" if absent else None


@dataclass(frozen=True)
class Page:
    """What a test asserts on: the `evaluate` expressions' values by name, every console message
    at SEVERE level (script errors, failed loads), and the screenshot's path."""

    facts: dict[str, Any]
    errors: list[str]
    screenshot: Path


def open_page(
    url: str,
    screenshot: Path,
    ready_js: str,
    evaluate: dict[str, str] | None = None,
    timeout: float = 30.0,
    offline: bool = False,
    setup_js: str | None = None,
) -> Page:
    """Load `url`, run the JavaScript statements `setup_js` once if given (work the page should do
    for the test, such as drawing charts again to inspect them), wait up to `timeout` seconds until
    the JavaScript expression `ready_js` is true (TimeoutError otherwise, with the console errors so
    far), evaluate each of `evaluate`'s expressions, save a PNG screenshot to `screenshot`.
    `offline`: no request reaches any host."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="rewind-chromium-")
    for flag in (*FLAGS, *(OFFLINE_FLAGS if offline else ()), f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(url)
        if setup_js is not None:
            driver.execute_script(setup_js)
        try:
            wait = WebDriverWait(driver, timeout, poll_frequency=0.1)
            wait.until(lambda d: d.execute_script(f"return !!({ready_js})"))
        except TimeoutException:
            raise TimeoutError(f"{url}: not ready after {timeout} s ({ready_js}); errors: {severe(driver)}") from None
        facts = {name: driver.execute_script(f"return ({js})") for name, js in (evaluate or {}).items()}
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        return Page(facts, severe(driver), screenshot)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def severe(driver: webdriver.Chrome) -> list[str]:
    """The browser console's SEVERE messages since the last call (the log is drained as read)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
