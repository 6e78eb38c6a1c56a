"""What the package indexes say about a project: releases, files, Requires-Python, yanked
releases and which files are wheels for the target. Used by the pre-check when the indexes
answer; never required (``check --offline`` and an unreachable index skip it).

Every index and find-links location of pip's configuration is read (``pipconfig``), through
unearth's client: PEP 691 JSON and PEP 503 HTML pages, file:// indexes, credentials in the URL
or in netrc, the configured certificate and trusted hosts. Look-ups run in a ``Session``: its own
client and a deadline that no request outlives, whatever the index does (silent, or a byte a
second). Many run in a ``Pool`` of threads within that budget (``look_up``, and the dependency
walk's); what the budget leaves out is named, never dropped, and no thread of a pool outlives it.

A release's requirements (``metadata``) come from its PEP 658/714 metadata file where the index
serves one, else from the wheel's METADATA read through HTTP range requests (the whole wheel
when the server ignores ranges), or from disk for file:// indexes and find-links folders; they
are cached on disk for good (a file's metadata never changes).
"""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import json
import os
import queue
import socket
import ssl
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import Future, TimeoutError as FuturesTimeout, as_completed
from dataclasses import dataclass
from email.parser import HeaderParser
from functools import lru_cache
from pathlib import Path
from urllib.parse import urljoin

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)
from packaging.version import InvalidVersion, Version

from sdt_build.cache import cache_root, write_cached
from sdt_build.sources.pipconfig import IndexSettings, host
from sdt_build.target import target

ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.1, text/html;q=0.01"
TTL_SECONDS = 6 * 3600
REQUEST_SECONDS = 10.0  # the longest wait for one answer from one index (within a session's time left)
CONNECT_SECONDS = 5.0
WORKERS = 16  # look-ups at once
BUDGET_SECONDS = 30.0  # all the look-ups of one command (SDT_INDEX_BUDGET overrides)
GRACE_SECONDS = 2.0  # how long a pool's threads may take to end past their session's deadline


@dataclass(frozen=True)
class Release:
    version: Version
    yanked: bool
    requires_python: str | None
    wheel_for_target: bool
    has_sdist: bool
    wheel_url: str | None = None  # whose metadata stands for the release: a wheel for the target, else any wheel

    def allows_python(self, python: str) -> bool:
        """True when every micro release of ``python`` (X.Y.0 up) may install it."""
        return _allows_python(self.requires_python, python)


@lru_cache(maxsize=4096)
def _allows_python(requires_python: str | None, python: str) -> bool:
    if not requires_python:
        return True
    try:
        return Version(f"{python}.0") in SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True


class NotOnIndex(Exception):
    """No index has a project of that name."""


class IndexUnreachable(Exception):
    """No answer from the index (offline, proxy, TLS)."""


class IndexRefused(IndexUnreachable):
    """The index answered 401/403: the credentials are missing or wrong. ``args[0]`` is its host."""


class BadAnswer(Exception):
    """A file's server answered, but not with the file: an error status (``args[0]`` says which)."""


class OutOfTime(Exception):
    """The session's time ran out (or its owner ended it) before the look-up finished."""


@dataclass(frozen=True)
class Metadata:
    """What a release declares: its requirements (Requires-Dist) and Requires-Python."""

    requires: tuple[str, ...]
    requires_python: str | None


def budget_seconds() -> float:
    return float(os.environ.get("SDT_INDEX_BUDGET") or BUDGET_SECONDS)


class Session:
    """The look-ups of one walk, one ``look_up`` or one probe: an HTTP client of their own and a
    deadline. Each request's waits are cut to the time left, and at the deadline (or at ``end``,
    when the owner is done sooner) the sockets of the requests still running are shut, so none
    outlives it; a request asked after that raises ``OutOfTime``."""

    def __init__(self, settings: IndexSettings, seconds: float):
        self.settings = settings
        self.deadline = time.monotonic() + seconds
        self._ended = threading.Event()
        self._lock = threading.Lock()  # guards _sockets; nothing is called while it is held
        self._sockets: list[socket.socket] = []
        self.client = _client(settings, self._bound)
        self._timer = threading.Timer(max(0.0, seconds), self.end)
        self._timer.name, self._timer.daemon = "sdt-index-deadline", True
        self._timer.start()

    def left(self) -> float:
        """Seconds before the deadline (0 once it has passed or the session has ended)."""
        return 0.0 if self._ended.is_set() else max(0.0, self.deadline - time.monotonic())

    def get(self, url: str, headers: dict[str, str] | None = None):
        """GET ``url`` within the time left; ``OutOfTime`` when the session ended first."""
        try:
            return self.client.get(url, headers=headers)
        except Exception as exc:
            if not self.left():
                raise OutOfTime(host(url)) from exc
            raise

    def end(self) -> None:
        """Refuse new requests and shut the sockets of those still running (they fail at once)."""
        with self._lock:
            self._ended.set()
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def close(self) -> None:
        self.end()
        self._timer.cancel()
        self._timer.join()
        self.client.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _bound(self, request) -> None:
        """Before each request (the client's hook): its waits cut to the time left, its sockets noted."""
        left = self.left()
        if not left:
            raise OutOfTime(request.url.host)
        request.extensions["timeout"] = {"connect": min(CONNECT_SECONDS, left), "read": min(REQUEST_SECONDS, left),
                                         "write": min(REQUEST_SECONDS, left), "pool": left}
        request.extensions["trace"] = self._trace

    def _trace(self, event: str, info: dict) -> None:
        if event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            sock = info["return_value"].get_extra_info("socket")
            with self._lock:
                if not self._ended.is_set():
                    self._sockets.append(sock)
                    return
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    """Wake whoever waits on ``sock`` (the plain socket's shutdown: TLS's own would unwrap it under them)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # closed already
        pass


def _client(settings: IndexSettings, hook: Callable):
    """An unearth client for one session: pip's certificate, client certificate, trusted hosts,
    and credentials from the URLs or netrc (never an interactive prompt); ``hook`` sees each request."""
    import httpx2
    from unearth.auth import MultiDomainBasicAuth
    from unearth.fetchers.sync import PyPIClient

    client = PyPIClient(trusted_hosts=settings.trusted_hosts, verify=_verify(settings.cert),
                        cert=settings.client_cert, follow_redirects=True,
                        limits=httpx2.Limits(max_connections=WORKERS * 2), event_hooks={"request": [hook]})
    client.auth = MultiDomainBasicAuth(prompting=False, index_urls=[*settings.indexes, *settings.find_links])
    return client


@lru_cache(maxsize=8)
def _verify(cert: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cert if cert and Path(cert).exists() else None)


class Pool:
    """Look-ups of one session in ``WORKERS`` threads, served by rank (lowest first) and in order of
    asking; ``hurry`` moves one up. The lock guards only the queue and the jobs: no future is
    cancelled or completed, and so no callback runs, while it is held."""

    def __init__(self, session: Session, name: str):
        self.session = session
        self.queue: queue.PriorityQueue = queue.PriorityQueue()
        self.order = itertools.count()
        self.jobs: dict[Future, tuple] = {}  # not yet started → (function, arguments)
        self.lock = threading.Lock()
        self.closed = False
        self.threads = [threading.Thread(target=self._serve, name=f"{name}-{n}", daemon=True)
                        for n in range(WORKERS)]
        for thread in self.threads:
            thread.start()

    def submit(self, rank: int, function: Callable, *args) -> Future:
        """``function(*args)`` in a thread of the pool (a cancelled future once the pool is closed)."""
        future: Future = Future()
        with self.lock:
            if not self.closed:
                self.jobs[future] = (function, args)
                self.queue.put((rank, next(self.order), future))
                return future
        future.cancel()
        return future

    def hurry(self, future: Future, rank: int) -> None:
        with self.lock:
            if future in self.jobs and not self.closed:
                self.queue.put((rank, next(self.order), future))

    def _serve(self) -> None:
        while True:
            _, _, future = self.queue.get()
            if future is None:
                return
            with self.lock:
                job = self.jobs.pop(future, None)
            if job is None or not future.set_running_or_notify_cancel():
                continue  # served already (a hurried copy), or cancelled
            try:
                result = job[0](*job[1])
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)
            else:
                future.set_result(result)

    def close(self) -> None:
        """Cancel what has not started (its callbacks run here, outside the lock), end the session
        (what is running fails at once), and wait for the threads: nothing outlives the pool."""
        with self.lock:
            self.closed = True
            pending = list(self.jobs)
            self.jobs.clear()
            for _ in self.threads:
                self.queue.put((-1, next(self.order), None))
        for future in pending:
            future.cancel()
        self.session.end()
        until = self.session.deadline + GRACE_SECONDS  # by then every wait of every request has ended
        for thread in self.threads:
            thread.join(max(0.0, until - time.monotonic()))
        self.session.close()


def releases(name: str, python: str, session: Session) -> list[Release]:
    """Every release of ``name`` on the indexes and find-links, newest first (cached a few hours)."""
    project = canonicalize_name(name)
    sources = hashlib.sha256("\n".join(session.settings.describe()).encode()).hexdigest()[:12]
    cache = cache_root() / "index-v2" / sources / f"{hashlib.sha256(project.encode()).hexdigest()[:32]}.json"
    if cache.exists() and time.time() - cache.stat().st_mtime < TTL_SECONDS:
        data = json.loads(cache.read_text())
        if data.get("missing"):
            raise NotOnIndex(project)
        return _releases(data["files"], python)
    found, failures = _links(project, session)
    files = [file for file in found if _names(file["filename"], project)]
    if failures and not files:  # an index that did not answer may have it
        raise IndexUnreachable("; ".join(failures))
    write_cached(cache, json.dumps({"files": files} if files else {"missing": True}))
    if not files:
        raise NotOnIndex(project)
    return _releases(files, python)


def _links(project: str, session: Session) -> tuple[list[dict], list[str]]:
    """The files every source offers for ``project`` (filename, url, requires-python, yanked), and
    the indexes that did not answer. A JSON page (PEP 691) is read as it is: its files are already
    what is needed, and a project with thousands of wheels costs no Link object each."""
    import httpx2
    from unearth.collector import IndexPage, collect_links_from_location, parse_html_page
    from unearth.link import Link

    def file(link) -> dict:
        return {"filename": link.filename, "url": link.url_without_fragment,
                "requires-python": link.requires_python, "yanked": link.is_yanked}

    files, failures = [], []
    for url in session.settings.indexes:
        page = f"{url.rstrip('/')}/{project}/"
        if page.startswith("file:"):
            try:
                files += map(file, collect_links_from_location(session.client, Link(page)))
            except OSError as exc:  # a name no file system can hold has no page there
                if exc.errno != errno.ENAMETOOLONG:
                    failures.append(f"{host(url)}: {exc.strerror or type(exc).__name__}")
            continue
        try:
            response = session.get(page, headers={"Accept": ACCEPT})
        except httpx2.InvalidURL:  # a name too long for any URL has no page either
            continue
        except httpx2.HTTPError as exc:
            failures.append(f"{host(url)}: {type(exc).__name__}")
            continue
        if response.status_code in (401, 403):
            raise IndexRefused(host(url), response.status_code)
        if response.status_code >= 400 and response.status_code != 404:
            failures.append(f"{host(url)}: HTTP {response.status_code}")
            continue
        if response.status_code == 404:
            continue
        content_type = response.headers.get("Content-Type", "")
        if "json" in content_type:
            base = str(response.url)
            files += [{"filename": item["filename"],
                       "url": (item["url"] if "://" in item["url"] else urljoin(base, item["url"])).split("#")[0],
                       "requires-python": item.get("requires-python"), "yanked": bool(item.get("yanked"))}
                      for item in response.json().get("files", [])]
        else:
            page = IndexPage(Link(str(response.url)), response.content, response.encoding, content_type)
            files += map(file, parse_html_page(page))
    for location in session.settings.find_links:
        if "://" in location or os.path.exists(location):
            link = Link(location) if "://" in location else Link.from_path(os.path.abspath(location))
            try:
                files += map(file, collect_links_from_location(session.client, link, expand=True))
            except httpx2.HTTPError as exc:
                if not session.left():
                    raise OutOfTime(host(location)) from exc
                failures.append(f"{host(location)}: {type(exc).__name__}")
    return files, failures


def _names(filename: str, project: str) -> bool:
    try:
        if filename.endswith(".whl"):  # a wheel's name is what comes before its first "-"
            return _canonical(filename.split("-", 1)[0]) == project
        return _canonical(parse_sdist_filename(filename)[0]) == project
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return False


_canonical = lru_cache(maxsize=1024)(canonicalize_name)


def look_up(names: Iterable[str], python: str, settings: IndexSettings, *, budget: float | None = None,
            progress: Callable[[int, int], None] = lambda done, total: None
            ) -> tuple[dict[str, list[Release] | Exception], list[str]]:
    """``releases`` of many names, ``WORKERS`` at a time, within ``budget`` seconds in all (and
    no thread of theirs left running when it returns).

    Returns name → releases (or the NotOnIndex / IndexUnreachable it raised), and the names the
    budget left unlooked-up, in the order given.
    """
    names = list(dict.fromkeys(names))
    results: dict[str, list[Release] | Exception] = {}

    def one(name: str):
        try:
            return releases(name, python, pool.session)
        except (NotOnIndex, IndexUnreachable, OutOfTime) as exc:
            return exc

    pool = Pool(Session(settings, budget_seconds() if budget is None else budget), "sdt-index")
    try:
        futures = {pool.submit(0, one, name): name for name in names}
        progress(0, len(names))
        for future in as_completed(futures, timeout=pool.session.left()):
            if not isinstance(outcome := future.result(), OutOfTime):
                results[futures[future]] = outcome
                progress(len(results), len(names))
    except FuturesTimeout:
        pass
    finally:
        pool.close()
    return results, [name for name in names if name not in results]


def _releases(files: list[dict], python: str) -> list[Release]:
    tags = target(python).tags
    grouped: dict[Version, dict] = {}
    for item in files:
        filename = item.get("filename", "")
        try:
            if filename.endswith(".whl"):
                _, version, _, file_tags = parse_wheel_filename(filename)
                wheel = bool(file_tags & tags)
                sdist = False
            elif filename.endswith((".tar.gz", ".zip")):
                _, version = parse_sdist_filename(filename)
                wheel, sdist = False, True
            else:
                continue
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            continue
        entry = grouped.setdefault(version, {"yanked": True, "requires_python": None,
                                             "wheel": False, "sdist": False, "url": None})
        entry["yanked"] = entry["yanked"] and bool(item.get("yanked"))
        entry["requires_python"] = entry["requires_python"] or item.get("requires-python")
        if filename.endswith(".whl") and item.get("url") and (wheel and not entry["wheel"] or not entry["url"]):
            entry["url"] = item["url"]
        entry["wheel"] = entry["wheel"] or wheel
        entry["sdist"] = entry["sdist"] or sdist
    return [Release(v, e["yanked"], e["requires_python"], e["wheel"], e["sdist"], e["url"])
            for v, e in sorted(grouped.items(), reverse=True)]


def metadata(release: Release, session: Session) -> Metadata | None:
    """The requirements ``release`` declares, from its wheel's metadata (None: it has no wheel)."""
    url = release.wheel_url
    if url is None:
        return None
    known = cached_metadata(release)
    if known is not None:
        return known
    cache = _metadata_file(url)
    headers = HeaderParser().parsestr(_metadata_text(url, session))
    found = Metadata(tuple(headers.get_all("Requires-Dist") or ()), headers.get("Requires-Python"))
    write_cached(cache, json.dumps([found.requires, found.requires_python]))
    return found


def cached_metadata(release: Release) -> Metadata | None:
    """``release``'s metadata when an earlier look-up saved it (None: not saved, or no wheel)."""
    cache = _metadata_file(release.wheel_url) if release.wheel_url else None
    if cache is None or not cache.exists():
        return None
    requires, requires_python = json.loads(cache.read_text())
    return Metadata(tuple(requires), requires_python)


def _metadata_file(url: str) -> Path:
    return cache_root() / "metadata" / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.json"


def _metadata_text(url: str, session: Session) -> str:
    """A wheel's METADATA: the index's metadata file (PEP 658), else read out of the wheel."""
    import httpx2

    if url.startswith("file:") or "://" not in url:
        from unearth.link import Link

        path = Link(url).file_path if url.startswith("file:") else Path(url)
        beside = path.with_name(path.name + ".metadata")
        return beside.read_text("utf-8") if beside.exists() else _from_wheel(path)
    try:
        response = session.get(url + ".metadata")
        if response.status_code == 200:
            return response.text
        return _from_wheel(_RangedFile(session, url))
    except httpx2.HTTPStatusError as exc:
        raise BadAnswer(f"{host(url)}: HTTP {exc.response.status_code}") from exc
    except httpx2.HTTPError as exc:
        raise IndexUnreachable(f"{host(url)}: {type(exc).__name__}") from exc


def _from_wheel(file) -> str:
    with zipfile.ZipFile(file) as wheel:
        name = next(n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        return wheel.read(name).decode("utf-8")


class _RangedFile(io.RawIOBase):
    """A remote file read through HTTP range requests (zipfile reads only the directory and METADATA)."""

    TAIL = 64 * 1024

    def __init__(self, session: Session, url: str):
        self.session, self.url, self.position = session, url, 0
        response = session.get(url, headers={"Range": f"bytes=-{self.TAIL}"})
        response.raise_for_status()
        if response.status_code == 206:
            self.size = int(response.headers["Content-Range"].rsplit("/", 1)[1])
        else:  # ranges ignored: the whole file came
            self.size = len(response.content)
        self.start, self.block = self.size - len(response.content), response.content

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size + offset}[whence]
        return self.position

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        if not (self.start <= self.position and end <= self.start + len(self.block)):
            response = self.session.get(self.url, headers={"Range": f"bytes={self.position}-{max(end, self.position + self.TAIL) - 1}"})
            response.raise_for_status()
            self.start, self.block = self.position, response.content
        data = self.block[self.position - self.start:end - self.start]
        self.position += len(data)
        return data


def reach(url: str, settings: IndexSettings) -> tuple[str, str, str] | None:
    """None when index ``url`` answers with the configured credentials, else (status, what, fix)."""
    import httpx2

    where = host(url)
    if url.startswith("file:"):
        from unearth.link import Link

        if Link(url).file_path.is_dir():
            return None
        return ("warning", f"the local index {where} does not exist (pip ignores it)",
                "remove it from pip's configuration (`pip config list` shows where it is set)")
    try:
        with Session(settings, CONNECT_SECONDS + REQUEST_SECONDS) as session:
            response = session.get(f"{url.rstrip('/')}/pip/", headers={"Accept": ACCEPT})
    except (httpx2.HTTPError, OutOfTime) as exc:
        why = "none whole in time" if isinstance(exc, OutOfTime) else type(exc).__name__
        return ("fail", f"no answer ({why})", "check the network, proxy and certificate "
                "(`pip config set global.cert CA.pem`) for this index")
    if response.status_code in (401, 403):
        return ("fail", f"refused the credentials (HTTP {response.status_code})",
                f"check the user name and token for {where} in the index URL or in ~/.netrc")
    if response.status_code >= 400 and response.status_code != 404:
        return ("fail", f"answered HTTP {response.status_code}", "check the index URL")
    return None
