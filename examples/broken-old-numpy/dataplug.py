"""Read one PV site's 5-minute AC power from a CSV file, with the logger's -1e6 gaps set to NaN.

BROKEN ON PURPOSE (a common mistake, for docs and tests): requirements.txt pins numpy==1.19.5,
copied from an old analysis environment. SDT's set needs numpy 2.x, and numpy 1.19 has no wheel
for Python 3.11, so `sdt-build check` stops with SDT-E203 and SDT-E208. README.md shows the fix.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
from solardatatools.time_axis_manipulation import make_time_series

from sdt_build import DataPlug, EnvVar

MISSING = -1e6  # what the logger writes when it has no reading


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
        return series.mask(series <= MISSING, np.nan)
