"""PV systems from NREL's PVDAQ data service (https://developer.nrel.gov/docs/solar/pvdaq-v3/).

A key names a system and one year or several: the API serves one CSV per system and year, and
several years are concatenated in order. The API key comes from NREL_API_KEY; PVDAQ_URL points
at another server with the same API (a mirror or a test server).
"""

import io
import os
import random
import time

import pandas as pd
import requests

from sdt_build import DataPlug, EnvVar

DEFAULT_URL = "https://developer.nrel.gov/api/pvdaq/v3"


class PVDAQError(RuntimeError):
    """The API refused a request; the message is the API's own, with what to do."""


class PVDAQ(DataPlug):
    """Key: (system_id, year) or (system_id, [year, ...]), e.g. (34, 2019) or (34, [2018, 2019])."""

    env = [
        EnvVar("NREL_API_KEY", secret=True, help="your key from https://developer.nrel.gov/signup/"),
        EnvVar("PVDAQ_URL", required=False, default=DEFAULT_URL, help="API base URL"),
    ]
    attempts = 6          # per request, for rate-limit (429) and server (5xx) answers
    backoff_seconds = 1.0  # first wait; doubles each attempt, with jitter

    def __init__(self):
        self.url = os.environ.get("PVDAQ_URL", DEFAULT_URL).rstrip("/")
        self.api_key = os.environ["NREL_API_KEY"]

    def get_data(self, key: tuple) -> pd.DataFrame:
        system_id, years = key
        years = [years] if isinstance(years, (int, str)) else list(years)
        with requests.Session() as session:  # one session per call: sessions are not shared across threads
            frames = [self._year(session, int(system_id), int(year)) for year in years]
        table = pd.concat(frames)
        table.index = pd.to_datetime(table.pop("Date-Time"))
        return table.drop(columns=["SiteId"], errors="ignore").sort_index()

    def _year(self, session: requests.Session, system_id: int, year: int) -> pd.DataFrame:
        params = {"api_key": self.api_key, "system_id": system_id, "year": year}
        for attempt in range(1, self.attempts + 1):
            response = session.get(f"{self.url}/data_file", params=params, timeout=120)
            if response.status_code == 200:
                return pd.read_csv(io.StringIO(response.text))
            if response.status_code != 429 and response.status_code < 500:
                break
            if attempt < self.attempts:
                time.sleep(self._wait(response, attempt))
        raise PVDAQError(self._explain(response, system_id, year))

    def _wait(self, response: requests.Response, attempt: int) -> float:
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.isdigit():
            return float(retry_after)
        return self.backoff_seconds * 2 ** (attempt - 1) * (1 + random.random() / 2)

    @staticmethod
    def _explain(response: requests.Response, system_id: int, year: int) -> str:
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = body.get("error") or {}
        message = error.get("message") or "; ".join(body.get("errors", [])) or response.text[:200]
        code = error.get("code", "")
        fix = {
            "API_KEY_MISSING": "set NREL_API_KEY",
            "API_KEY_INVALID": "check NREL_API_KEY",
            "OVER_RATE_LIMIT": "still rate-limited after retries: run fewer keys at once (--max-in-flight)",
        }.get(code, "check the system id and year" if response.status_code == 404 else "")
        what = f"PVDAQ answered {response.status_code} {code}".strip()
        return f"{what} for system {system_id}, {year}: {message}" + (f" ({fix})" if fix else "")
