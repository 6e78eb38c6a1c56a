"""Deterministic synthetic PV systems: pvlib clear-sky power with clouds, outages, and on some
systems inverter clipping, a capacity change or a time shift (``features`` says which).

Useful to try sdt-build without data, and for benchmarks: the same key always gives the same
series. Key: (system_id,) or (system_id, days).
"""

import numpy as np
import pandas as pd
import pvlib

from sdt_build import DataPlug, EnvVar

SITES = [(37.4, -122.1, "US/Pacific"), (33.4, -112.0, "US/Arizona"), (39.7, -105.0, "US/Mountain"),
         (40.7, -74.0, "US/Eastern"), (47.6, -122.3, "US/Pacific"), (29.8, -95.4, "US/Central")]


class SyntheticPV(DataPlug):
    """Key (system_id,) or (system_id, days); system_id is any integer."""

    env = [EnvVar("SDT_SYNTHETIC_SYSTEMS", required=False, default="18", help="how many systems keys() lists")]

    def keys(self):
        import os

        count = int(os.environ.get("SDT_SYNTHETIC_SYSTEMS", "18"))
        return [(system,) for system in range(count)]

    def size(self, key) -> float:
        """Days of data: what the pipeline's run time grows with (for longest-first ordering)."""
        return self._days(key)

    def _days(self, key) -> int:
        system = int(key[0])
        return int(key[1]) if len(key) > 1 else 120 + (system * 37) % 300

    def get_data(self, key: tuple) -> pd.DataFrame:
        system = int(key[0])
        days = self._days(key)
        rng = np.random.default_rng(system)
        latitude, longitude, timezone = SITES[system % len(SITES)]
        index = pd.date_range("2021-01-01", periods=days * 288, freq="5min", tz="UTC")
        location = pvlib.location.Location(latitude, longitude)
        clear = location.get_clearsky(index, model="haurwitz")["ghi"].to_numpy()
        capacity = rng.uniform(3.0, 30.0)
        power = clear / 1000.0 * capacity
        daily_clouds = rng.beta(5, 1.5, size=days).repeat(288)  # mostly clear days, some dark ones
        power *= daily_clouds * (1 - 0.15 * rng.random(power.size) * (daily_clouds < 0.8))
        for _ in range(int(rng.integers(0, 4))):  # outages: whole days at zero
            start = int(rng.integers(0, days - 3)) * 288
            power[start:start + 288 * int(rng.integers(1, 3))] = 0.0
        series = pd.Series(power, index=index.tz_convert(timezone).tz_localize(None))  # logger local time
        series = series[~series.index.duplicated()]
        if rng.random() < 0.5:  # a time shift: the logger's clock moves one hour for a while
            start = int(rng.integers(days // 4, days // 2)) * 288
            series.iloc[start:] = np.roll(series.iloc[start:].to_numpy(), 12)
        features = self.features(system)
        if "clipping" in features:  # an inverter smaller than the array: the brightest hours are flat
            series = series.clip(upper=0.75 * capacity)
        if "capacity change" in features:  # a third of the array lost for good, from the middle on
            series.iloc[len(series) // 2:] *= 2 / 3
        return series.to_frame("ac_power")

    @staticmethod
    def features(system: int) -> tuple[str, ...]:
        """What a system has besides clouds and outages (a time shift is drawn with its data)."""
        return tuple(name for name, every in (("clipping", 3), ("capacity change", 4)) if int(system) % every == 1)
