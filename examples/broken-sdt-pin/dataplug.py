"""Read one PV site's 5-minute AC power from a CSV file.

BROKEN ON PURPOSE (a common mistake, for docs and tests): requirements.txt is a `pip freeze`
excerpt from a notebook environment, so it pins solar-data-tools, dask and distributed at other
versions than sdt-build's. SDT is pinned by sdt-build, and Dask needs the same versions on the
client and every worker, so `sdt-build check` stops with SDT-E201 and SDT-E202. README.md shows
the fix. (This file itself is fine.)
"""

import os
from pathlib import Path

import pandas as pd
from solardatatools.time_axis_manipulation import make_time_series

from sdt_build import DataPlug, EnvVar


def _default_folder() -> Path:
    import sdt_dask

    return Path(sdt_dask.__file__).parent / "examples" / "example_data"


class SiteCSV(DataPlug):
    """Key: (site,) where site is the CSV's file name without .csv."""

    env = [EnvVar("SDT_CSV_DIR", required=False, help="folder of site CSVs (default: SDT's examples)")]

    def __init__(self):
        self.folder = Path(os.environ.get("SDT_CSV_DIR") or _default_folder())

    def keys(self):
        return [(path.stem,) for path in sorted(self.folder.glob("*.csv"))]

    def get_data(self, key: tuple) -> pd.DataFrame:
        (site,) = key
        series, _ = make_time_series(pd.read_csv(self.folder / f"{site}.csv"))
        return series
