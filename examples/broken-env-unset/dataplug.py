"""One year of a SolarEdge site's 15-minute AC power, from the SolarEdge monitoring API.

BROKEN ON PURPOSE (a common mistake, for docs and tests): the plug declares its API key as a
required secret, and the shell that runs sdt-build has not exported it. `sdt-build check` stops
with SDT-E108 (naming the variable, never a value). The code is right; README.md shows the fix.
"""

import os

import pandas as pd
import requests

from sdt_build import DataPlug, EnvVar

URL = "https://monitoringapi.solaredge.com/site/{site}/power"


class SolarEdgeSites(DataPlug):
    """Key: (site_id, year), e.g. (1234567, 2023)."""

    env = [EnvVar("SOLAREDGE_API_KEY", secret=True, help="API key from the SolarEdge monitoring portal")]

    def get_data(self, key: tuple) -> pd.DataFrame:
        site, year = key
        values = []
        for start in pd.date_range(f"{year}-01-01", periods=12, freq="MS"):  # the API serves a month per call
            end = start + pd.offsets.MonthBegin(1) - pd.Timedelta(minutes=15)
            reply = requests.get(URL.format(site=site), timeout=60, params={
                "api_key": os.environ["SOLAREDGE_API_KEY"],
                "startTime": f"{start:%Y-%m-%d %H:%M:%S}", "endTime": f"{end:%Y-%m-%d %H:%M:%S}"})
            reply.raise_for_status()
            values += reply.json()["power"]["values"]
        frame = pd.DataFrame(values)
        return frame.set_index(pd.to_datetime(frame["date"]))[["value"]].rename(columns={"value": "power"})
