"""/docs works offline: headless Chromium, cut off from everything but the app, lists the API"""

import html
import re
import shutil
import subprocess
import threading

import pytest
from helpers import skip_unless_required
from runtime_servers import free_port
from werkzeug.serving import make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def chromium():
    if CHROMIUM is None:
        skip_unless_required("REQUIRE_CHROMIUM", "no chromium: .ci/run installs Debian's chromium")
    return CHROMIUM


@pytest.fixture
def served(app):
    """The app on a loopback port, in a thread of this process."""
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def rendered_dom(chromium, url, profile):
    dead_proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # Every host but the app's fails to resolve, and any other connection
        # goes to a dead proxy: a CDN asset could not load.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--proxy-server={dead_proxy}",
        "--proxy-bypass-list=127.0.0.1",
        "--virtual-time-budget=15000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def operations_in(dom):
    """{(method, path, summary)} of the operation blocks Swagger UI rendered."""
    found = set()
    for block in dom.split('class="opblock opblock-')[1:]:
        method = block.split('"', 1)[0]
        path = re.search(r'data-path="([^"]*)"', block)
        summary = re.search(r'opblock-summary-description">([^<]*)<', block)
        found.add((method, path and html.unescape(path[1]), summary and html.unescape(summary[1])))
    return found


@pytest.mark.parametrize("backend", ["sqlite"])  # the docs do not touch the database
def test_docs_list_the_six_operations_with_no_network(chromium, served, tmp_path, anonymous):
    page = anonymous.get("/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    spec = anonymous.get("/openapi.json").json
    expected = {
        (method, path, operation["summary"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }

    dom = rendered_dom(chromium, f"{served}/docs", tmp_path / "profile")

    assert assets and all(asset.startswith("/docs/assets/") for asset in assets), assets
    assert len(expected) == 6
    assert operations_in(dom) == expected
