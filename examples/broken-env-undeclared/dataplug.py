"""One year of a SolarEdge site's 15-minute AC power, from the SolarEdge monitoring API.

BROKEN ON PURPOSE (a common mistake, for docs and tests): the API key is read from the
environment when the module is imported, and it is not declared in `env`. It works in the
analyst's shell, where SOLAREDGE_API_KEY is exported, and `sdt-build check` cannot see the
problem (it passes). But sdt-build passes only declared variables to containers, so importing
this file in the image raises KeyError: the smoke test after `sdt-build build` fails with
SDT-E402, before the image is tagged :latest. README.md shows the fix.
"""

import os

import pandas as pd
import requests

from sdt_build import DataPlug

URL = "https://monitoringapi.solaredge.com/site/{site}/power"
API_KEY = os.environ["SOLAREDGE_API_KEY"]  # read at import, and not declared: this is the mistake


class SolarEdgeSites(DataPlug):
    """Key: (site_id, year), e.g. (1234567, 2023)."""

    def get_data(self, key: tuple) -> pd.DataFrame:
        site, year = key
        values = []
        for start in pd.date_range(f"{year}-01-01", periods=12, freq="MS"):  # the API serves a month per call
            end = start + pd.offsets.MonthBegin(1) - pd.Timedelta(minutes=15)
            reply = requests.get(URL.format(site=site), timeout=60, params={
                "api_key": API_KEY,
                "startTime": f"{start:%Y-%m-%d %H:%M:%S}", "endTime": f"{end:%Y-%m-%d %H:%M:%S}"})
            reply.raise_for_status()
            values += reply.json()["power"]["values"]
        frame = pd.DataFrame(values)
        return frame.set_index(pd.to_datetime(frame["date"]))[["value"]].rename(columns={"value": "power"})
