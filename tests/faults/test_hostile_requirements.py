"""Requirements files that attack the tool's patience: 5,000 lines against the machine's real
indexes. The index look-ups are bounded (a pool, a per-request timeout, a total budget), say
what they are doing while they run, and name every package the budget left out."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import EXAMPLES, SDT

LINES = 5000


@pytest.mark.timeout(300)
def test_five_thousand_lines_are_bounded_and_say_so(tmp_path):
    import shutil

    folder = tmp_path / "hostile"
    shutil.copytree(EXAMPLES / "local-csv", folder)
    names = [f"sdt-hostile-probe-{i:04d}" for i in range(LINES)]
    (folder / "requirements.txt").write_text("".join(f"{name}>=1.0\n" for name in names))
    env = {**os.environ, "SDT_CACHE_DIR": str(tmp_path / "cache"), "SDT_INDEX_BUDGET": "5"}
    done = subprocess.run([SDT, "check", str(folder), "--json"], capture_output=True, text=True, env=env)
    payload = json.loads(done.stdout)
    budget = [f for f in payload["findings"] if f["code"] == "SDT-E229"]
    assert len(budget) == 1 and budget[0]["severity"] == "note", payload["findings"][:3]
    missing = {f["package"] for f in payload["findings"] if f["code"] == "SDT-E205"}
    skipped = LINES - len(missing)
    assert skipped > 0 and f"{skipped} of {LINES} packages were not looked up" in budget[0]["cause"]
    assert next(n for n in names if n not in missing) in budget[0]["cause"]  # named, in the file's order
    assert done.returncode == 2  # the names that were looked up are not on any index
    shown = subprocess.run([SDT, "check", str(folder)], capture_output=True, text=True, env=env)
    assert f"looking up {LINES} package(s) on the indexes" in shown.stderr
    assert "SDT-E229" in shown.stderr


@pytest.fixture
def wheel_host(tmp_path):
    """A file host on 127.0.0.1: `junk-1.0-py3-none-any.whl` is not a zip, any other path is a 404,
    and `/silent/…` accepts the request and never answers."""
    import http.server
    import threading

    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "junk-1.0-py3-none-any.whl").write_bytes(os.urandom(4096))
    stop = threading.Event()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "host"), **kwargs)

        def do_GET(self):
            if self.path.startswith("/silent/"):
                stop.wait(30)
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    stop.set()
    server.shutdown()
    server.server_close()


@pytest.mark.timeout(120)
def test_wheel_urls_that_serve_no_wheel_are_named_per_line(tmp_path, wheel_host):
    import shutil

    folder = tmp_path / "hostile"
    shutil.copytree(EXAMPLES / "local-csv", folder)
    (folder / "requirements.txt").write_text(
        f"junk @ {wheel_host}/junk-1.0-py3-none-any.whl\n"
        f"gone @ {wheel_host}/gone-1.0-py3-none-any.whl\n"
        f"mute @ {wheel_host}/silent/mute-1.0-py3-none-any.whl\n")
    env = {**os.environ, "SDT_CACHE_DIR": str(tmp_path / "cache"), "SDT_INDEX_BUDGET": "5"}
    done = subprocess.run([SDT, "check", str(folder), "--json"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    found = {f["package"]: f for f in json.loads(done.stdout)["findings"]}
    assert {name: (f["code"], f["severity"], f["line"]) for name, f in found.items()} == {
        "junk": ("SDT-E234", "error", 1), "gone": ("SDT-E234", "error", 2), "mute": ("SDT-E224", "note", 3)}, found
    assert "BadZipFile" in found["junk"]["cause"] and "HTTP 404" in found["gone"]["cause"]
    assert "no answer within 5 s" in found["mute"]["cause"]  # undecided, as an index that does not answer
    locked = subprocess.run([SDT, "lock", str(folder)], capture_output=True, text=True, env=env)
    assert locked.returncode == 2 and "SDT-E234" in locked.stderr and "SDT-E999" not in locked.stderr


def _sdist(folder, name: str) -> str:
    """A source archive of a tiny package (no wheel of it anywhere; its metadata only a build tells), as a
    file URL."""
    import io
    import tarfile

    folder.mkdir()
    archive = folder / f"{name}-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member, text in ((f"{name}-1.0/setup.py", f"from setuptools import setup\nsetup(name={name!r}, "
                                                       "version='1.0', py_modules=[])\n"),
                             (f"{name}-1.0/PKG-INFO", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")):
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive.as_uri()


@pytest.mark.parametrize("resolver", ["uv", "pip-compile"])
def test_a_url_that_needs_building_or_an_unreachable_repository_is_named_as_such(tmp_path, resolver):
    """Not "a source build failed" (SDT-E222) when nothing was built: a source archive's URL with
    source builds off is SDT-E233 (build a wheel, point at it), a repository whose host git cannot
    reach is SDT-E235 naming the host."""
    import shutil

    for line, code in (("sdtbuildtiny @ {url}", "SDT-E233"),
                       ("pvanalytics @ git+https://sdt-build.invalid/pvlib/pvanalytics@v0.2.2", "SDT-E235")):
        folder = tmp_path / code
        shutil.copytree(EXAMPLES / "local-csv", folder)
        (folder / "requirements.txt").write_text(line.format(url=_sdist(folder / "dist", "sdtbuildtiny")) + "\n")
        env = {**os.environ, "SDT_CACHE_DIR": str(tmp_path / "cache")}
        done = subprocess.run([SDT, "lock", str(folder), "--resolver", resolver, "--json"], capture_output=True,
                              text=True, env=env, timeout=600)
        error = json.loads(done.stdout)["error"]
        assert done.returncode == 2 and error["code"] == code, (line, done.stdout[-3000:])
        if code == "SDT-E233":
            assert "sdtbuildtiny" in error["cause"] and "pip wheel" in error["fix"], error
        else:
            assert "sdt-build.invalid" in error["cause"] and "sdt-build.invalid" in error["fix"], error
        assert "from source" not in error["cause"] and "Traceback" not in done.stdout + done.stderr, error

