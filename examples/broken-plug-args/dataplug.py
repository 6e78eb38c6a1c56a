"""Read one PV site's power from a folder of CSV files (ported from sdt_dask's LocalFiles plug).

BROKEN ON PURPOSE (a common mistake, for docs and tests): __init__ takes the folder as an
argument, the way one creates the plug in a notebook (`LocalFiles("/data/pv/")`). sdt-build
creates the plug with no arguments on every worker, so `sdt-build check` stops with SDT-E114.
README.md shows the fix: read the folder from a declared environment variable.
"""

from pathlib import Path

import pandas as pd
from solardatatools.time_axis_manipulation import make_time_series

from sdt_build import DataPlug


class LocalFiles(DataPlug):
    """Key: (site,) where site is the file name without its extension."""

    def __init__(self, path_to_files, ext=".csv"):
        self.path = Path(path_to_files)
        self.ext = ext

    def keys(self):
        return [(path.stem,) for path in sorted(self.path.glob(f"*{self.ext}"))]

    def get_data(self, key: tuple) -> pd.DataFrame:
        (site,) = key
        series, _ = make_time_series(pd.read_csv(self.path / f"{site}{self.ext}"))
        return series
