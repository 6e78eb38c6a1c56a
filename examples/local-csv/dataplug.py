"""Read one PV site's 5-minute AC power from a CSV file.

By default the files are the two real sites that ship inside the solar-data-tools wheel
(sdt_dask/examples/example_data); set SDT_CSV_DIR to read your own folder of CSVs with the
columns site, meas_name, ts, sensor, meas_val_f.
"""

import os
from pathlib import Path

import pandas as pd
from solardatatools.time_axis_manipulation import make_time_series

from sdt_build import DataPlug, EnvVar


def _default_folder() -> Path:
    import sdt_dask

    return Path(sdt_dask.__file__).parent / "examples" / "example_data"


class LocalCSV(DataPlug):
    """Key: (site,) where site is the CSV's file name without .csv."""

    env = [EnvVar("SDT_CSV_DIR", required=False, help="folder of site CSVs (default: SDT's examples)")]

    def __init__(self):
        self.folder = Path(os.environ.get("SDT_CSV_DIR") or _default_folder())

    def keys(self):
        return [(path.stem,) for path in sorted(self.folder.glob("*.csv"))]

    def get_data(self, key: tuple) -> pd.DataFrame:
        (site,) = key
        # Plain read_csv: with index_col=0 the index is the constant 'site' column and
        # make_time_series tries to allocate tens of gigabytes.
        raw = pd.read_csv(self.folder / f"{site}.csv")
        series, _ = make_time_series(raw)
        return series
