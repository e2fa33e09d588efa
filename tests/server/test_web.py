"""The chat page at GET /: its files and their headers (always), and a real
headless browser, Debian's chromium driven by Selenium (CTest
test_serve_browser, SP_SERVE_BROWSER=1): it sends a message, sees the reply
stream in, reloads, resumes the conversation and continues it."""
import os
import pathlib
import shutil

import pytest
import requests

WEB = pathlib.Path(__file__).resolve().parents[2] / "src" / "server" / "web"
FILES = [("/", "index.html", "text/html; charset=utf-8"), ("/index.html", "index.html", "text/html; charset=utf-8"),
         ("/app.js", "app.js", "text/javascript; charset=utf-8"), ("/style.css", "style.css", "text/css; charset=utf-8")]


@pytest.mark.parametrize("path,name,ctype", FILES)
def test_page_files_and_headers(server, path, name, ctype):
    r = requests.get(server.url + path, timeout=30)
    assert r.status_code == 200
    assert r.content == (WEB / name).read_bytes()  # embedded as it is in the repository
    assert r.headers["Content-Type"] == ctype
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-cache"
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = requests.get(server.url + path, headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    other = requests.get(server.url + path, headers={"If-None-Match": '"0000"'}, timeout=30)
    assert other.status_code == 200 and other.content == r.content


def test_page_has_no_inline_script_or_style(server):
    html = requests.get(server.url + "/", timeout=30).text
    assert '<script src="/app.js" defer></script>' in html
    assert "<script>" not in html and "<style" not in html and " style=" not in html and " on" + "click=" not in html


@pytest.mark.parametrize("method,path,status", [("POST", "/", 405), ("DELETE", "/app.js", 405),
                                               ("GET", "/app.js/", 404), ("GET", "/nope.js", 404),
                                               ("GET", "/../CMakeLists.txt", 404), ("GET", "/index.htm", 404)])
def test_page_refuses_other_requests(server, method, path, status):
    r = requests.request(method, server.url + path, timeout=30)
    assert r.status_code == status
    assert r.json()["error"]["message"]


# ---- the browser ----

def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


def wait_for(drv, cond, what, timeout=60):
    """Waits for cond; on a timeout, fails with the page and its console."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.05).until(lambda d: cond(d))
    except TimeoutException:
        page = drv.find_element(By.TAG_NAME, "main").get_attribute("outerHTML")
        pytest.fail(f"no {what} after {timeout} s; page: {page[:3000]}; console: {drv.get_log('browser')}")


# Records every length the last reply's text takes while it streams.
WATCH = """
window.__lengths = [];
const obs = new MutationObserver(() => {
  const b = [...document.querySelectorAll('.msg.assistant')].pop();
  if (b && !b.dataset.done) window.__lengths.push(b.textContent.length);
});
obs.observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
"""


def chat_turn(drv, text):
    """Types text, sends it, waits for the reply; returns the reply bubble's
    text and data attributes, and the lengths seen while it streamed."""
    from selenium.webdriver.common.by import By
    n = len(drv.find_elements(By.CSS_SELECTOR, ".msg.assistant"))
    drv.execute_script(WATCH)
    box = drv.find_element(By.ID, "prompt")
    box.clear()
    box.send_keys(text)
    drv.find_element(By.ID, "send").click()
    def finished(d):
        bubbles = d.find_elements(By.CSS_SELECTOR, ".msg.assistant")
        return (len(bubbles) > n and bubbles[-1].get_attribute("data-done") == "1") or \
            d.find_elements(By.CSS_SELECTOR, ".msg.error")
    wait_for(drv, finished, "a finished reply")
    assert not drv.find_elements(By.CSS_SELECTOR, ".msg.error"), drv.find_element(By.CSS_SELECTOR, ".msg.error").text
    b = drv.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]
    data = {k: b.get_attribute("data-" + k) for k in ("session", "prefilled", "chunks", "completion-tokens", "prompt-tokens")}
    return b.text, data, drv.execute_script("return window.__lengths")


def set_field(drv, field, value):
    from selenium.webdriver.common.by import By
    el = drv.find_element(By.ID, field)
    el.clear()
    el.send_keys(str(value))


def messages(drv):
    from selenium.webdriver.common.by import By
    return [(e.get_attribute("class").split()[1], e.text) for e in drv.find_elements(By.CSS_SELECTOR, "#messages .msg")]


@pytest.mark.skipif(not os.environ.get("SP_SERVE_BROWSER"),
                    reason="the browser test runs as CTest test_serve_browser (SP_SERVE_BROWSER=1)")
def test_browser_chat_streams_reloads_and_resumes(make_server, tmp_path):
    from selenium.webdriver.common.by import By
    srv = make_server(tmp_path / "sessions")
    drv = browser(tmp_path)
    try:
        drv.get(srv.url + "/")
        wait_for(drv, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the page")
        wait_for(drv, lambda d: d.find_element(By.ID, "model").text.startswith("model: "), "the model's id")
        drv.find_element(By.CSS_SELECTOR, "#settings summary").click()  # open the settings
        set_field(drv, "max-tokens", 40)
        set_field(drv, "seed", 7)

        # 1. A message: the reply streams in, piece by piece, with its speed.
        reply1, d1, lengths = chat_turn(drv, "What is a cat?")
        assert reply1.strip(), "no reply text"
        assert int(d1["chunks"]) >= 2 and int(d1["completion-tokens"]) >= 2, d1
        partial = sorted({n for n in lengths if 0 < n < len(reply1)})
        assert partial, f"the text never showed part of the reply while streaming: {lengths}"
        assert "tok/s" in drv.find_element(By.ID, "speed").text
        session = d1["session"]
        assert session
        assert len(drv.find_elements(By.CSS_SELECTOR, "#sessions li")) == 1
        # The list knows the server holds it (GET /v1/sessions).
        wait_for(drv, lambda d: d.find_element(By.CSS_SELECTOR, "#sessions li .where").text == "held",
                 "the session marked as held by the server")

        # 2. Reload: the conversation is back, and still the current one.
        drv.refresh()
        wait_for(drv, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the page")
        assert messages(drv) == [("user", "What is a cat?"), ("assistant", reply1)]
        assert drv.find_elements(By.CSS_SELECTOR, "#sessions li.active")

        # 3. Continue it: the server's session goes on, prefilling only the new turn.
        reply2, d2, _ = chat_turn(drv, "And a dog?")
        assert reply2.strip()
        assert d2["session"] == session, (d1, d2)
        # Not the whole history again: at least the first turn's prompt came
        # from the cache (how much of the reply does depends on whether its
        # text tokenizes back to the tokens generated).
        cached = int(d2["prompt-tokens"]) - int(d2["prefilled"])
        assert int(d2["prefilled"]) > 0 and cached >= int(d1["prompt-tokens"]), (d1, d2)
        assert [m[0] for m in messages(drv)] == ["user", "assistant", "user", "assistant"]

        # 4. A second conversation, then back to the first from the list.
        drv.find_element(By.ID, "new-chat").click()
        assert messages(drv) == []
        reply3, d3, _ = chat_turn(drv, "Name a colour.")
        assert d3["session"] != session
        items = drv.find_elements(By.CSS_SELECTOR, "#sessions li")
        assert len(items) == 2
        first = [li for li in items if "What is a cat?" in li.text][0]
        first.find_element(By.CSS_SELECTOR, "button.open").click()
        assert [m[1] for m in messages(drv)][:2] == ["What is a cat?", reply1]

        # No errors in the console: no CSP violation, no failed request.
        severe = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
    finally:
        drv.quit()
