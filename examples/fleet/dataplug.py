"""A synthetic fleet with known truth: N varied PV systems, deterministic, plus the two real sites
that ship inside the solar-data-tools wheel.

Each system is drawn from its id alone: where it is (its clock is the local standard time of its
longitude), 90 days to 5 years of 5- or 15-minute AC power from pvlib's clear sky with clouds, and
on some systems inverter clipping, a capacity change, a one-hour time shift, missing timestamps or
power at night. A few systems are broken (all zeros, all NaN, power logged as text) and must fail.
``truth(key)`` says what each system has, so a run's rows can be checked against it.

Keys: (system_id,), (system_id, days) for a shorter or longer copy, or ("real", site).
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib

from sdt_build import DataPlug, EnvVar

SEED = 20261206
BROKEN = {7: "all zeros", 77: "all NaN", 147: "power as text"}  # by system_id % 200
REAL = ("TAEFC1044741", "ZT162185000441C1203")
DAY = pd.Timedelta("1D")


def _real_folder() -> Path:
    import sdt_dask

    return Path(sdt_dask.__file__).parent / "examples" / "example_data"


def _system(system: int, days: int | None = None) -> dict:
    """The drawn parameters of one system (days: its length instead of the drawn one)."""
    rng = np.random.default_rng([SEED, system])
    share = rng.random()
    drawn = int(rng.integers(90, 365) if share < 0.1 else rng.integers(365, 731) if share < 0.92
                else rng.integers(731, 1827))  # most 1 to 2 years, a few up to 5
    days = drawn if days is None else int(days)
    capacity = float(np.exp(rng.uniform(np.log(3.0), np.log(300.0))))  # kW
    shift_start, shift_days = rng.uniform(0.3, 0.6), rng.uniform(0.15, 0.4)
    return {
        "rng": rng, "days": days, "latitude": float(rng.uniform(25.0, 48.0)),
        "longitude": float(rng.uniform(-123.0, -70.0)), "minutes": 5 if rng.random() < 0.7 else 15,
        "start": pd.Timestamp("2015-01-01") + int(rng.integers(0, 6 * 365)) * DAY, "capacity": capacity,
        "clipping": float(rng.uniform(0.65, 0.8)) if rng.random() < 0.25 else None,
        "capacity change": (float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.55, 0.8)))
        if rng.random() < 0.2 else None,
        "time shift": (shift_start, min(shift_start + shift_days, 1.0)) if rng.random() < 0.3 else None,
        "gaps": rng.random() < 0.4,
        # power at night: an inverter's standby draw (negative, at night only) or a meter's offset (always)
        "night offset": (float(rng.uniform(-0.01, -0.002)) if rng.random() < 0.5 else float(rng.uniform(0.0005, 0.0015)))
        * capacity if rng.random() < 0.2 else None,
        "broken": BROKEN.get(system % 200),
    }


def _clear(spec: dict) -> pd.Series:
    """Clear-sky AC power at the system's capacity, indexed by its logger's clock (local standard
    time): Haurwitz's clear sky on Spencer's sun, a few numpy operations per reading."""
    per_day = 24 * 60 // spec["minutes"]
    clock = pd.date_range(spec["start"], periods=spec["days"] * per_day, freq=f"{spec['minutes']}min")
    day = clock.day_of_year.to_numpy()
    hour = (clock.hour + clock.minute / 60).to_numpy()
    solar_time = hour - round(spec["longitude"] / 15) + spec["longitude"] / 15 \
        + pvlib.solarposition.equation_of_time_spencer71(day) / 60
    zenith = pvlib.solarposition.solar_zenith_analytical(
        np.radians(spec["latitude"]), np.radians(15 * (solar_time - 12)), pvlib.solarposition.declination_spencer71(day))
    ghi = pvlib.clearsky.haurwitz(pd.Series(np.degrees(zenith)))["ghi"].to_numpy()
    return pd.Series(ghi / 1000.0 * spec["capacity"], index=clock)


def _effective_capacity(spec: dict) -> float:
    """The power a clear day reaches at the start (clipped where the inverter clips): the capacity
    SDT should estimate, in kW (from the clear sky at each day's solar noon)."""
    days = pd.date_range(spec["start"], periods=spec["days"], freq="D")
    declination = np.degrees(pvlib.solarposition.declination_spencer71(days.day_of_year.to_numpy()))
    noon = pvlib.clearsky.haurwitz(pd.Series(np.abs(spec["latitude"] - declination)))["ghi"].to_numpy()
    peak = float(np.quantile(noon, 0.9)) / 1000.0 * spec["capacity"]
    return min(peak, spec["clipping"] * spec["capacity"]) if spec["clipping"] else peak


class FleetPV(DataPlug):
    """Key (system_id,), (system_id, days) or ("real", site)."""

    env = [EnvVar("SDT_FLEET_SITES", required=False, default="1000", help="how many synthetic systems keys() lists")]

    def keys(self):
        count = int(os.environ.get("SDT_FLEET_SITES", "1000"))
        return [(system,) for system in range(count)] + [("real", site) for site in REAL]

    def size(self, key) -> float:
        """Days of data (what SDT's cost grows with), for longest-first ordering."""
        if key[0] == "real":
            return 490 if key[1] == REAL[0] else 226
        return _system(int(key[0]), *key[1:])["days"]

    def get_data(self, key: tuple) -> pd.DataFrame:
        if key[0] == "real":
            from solardatatools.time_axis_manipulation import make_time_series

            return make_time_series(pd.read_csv(_real_folder() / f"{key[1]}.csv"))[0]
        spec = _system(int(key[0]), *key[1:])
        clear = _clear(spec)
        rng, power, per_day = spec["rng"], clear.to_numpy().copy(), 24 * 60 // spec["minutes"]
        clear_days = rng.random(spec["days"]) < 0.6  # most days clear, the others cloudy to dark
        clouds = np.where(clear_days, rng.uniform(0.95, 1.0, spec["days"]), rng.beta(2, 2, spec["days"])).repeat(per_day)
        power *= clouds * (1 - 0.15 * rng.random(power.size) * (clouds < 0.8))
        if spec["clipping"]:
            power = np.minimum(power, spec["clipping"] * spec["capacity"])
        if spec["capacity change"]:
            at, kept = spec["capacity change"]
            power[int(at * spec["days"]) * per_day:] *= kept
        if spec["time shift"]:  # the logger's clock one hour off for a while
            start, end = (int(f * spec["days"]) * per_day for f in spec["time shift"])
            power[start:end] = np.roll(power[start:end], 60 // spec["minutes"])
        if spec["night offset"]:
            power += np.where((clear.to_numpy() == 0) | (spec["night offset"] > 0), spec["night offset"], 0.0)
        if spec["broken"] == "all zeros":
            power[:] = 0.0
        elif spec["broken"] == "all NaN":
            power[:] = np.nan
        values = np.full(power.size, "ERR") if spec["broken"] == "power as text" else power  # a logger error code
        keep = np.ones(power.size, dtype=bool)
        if spec["gaps"]:  # missing timestamps: a few outages of days, and scattered single readings
            for _ in range(int(rng.integers(1, 5))):
                start = int(rng.integers(0, max(1, power.size - per_day)))
                keep[start:start + int(rng.integers(per_day // 4, 10 * per_day))] = False
            keep &= rng.random(power.size) > 0.01
        return pd.DataFrame({"ac_power": values[keep]}, index=clear.index[keep])

    def truth(self, key: tuple) -> dict | None:
        """What the system has (None for a real site): its capacity as SDT should estimate it (kW),
        clipping, a capacity change, a time shift, and why it is broken (None when it is not)."""
        if key[0] == "real":
            return None
        spec = _system(int(key[0]), *key[1:])
        broken = spec["broken"]
        return {"capacity": None if broken else round(_effective_capacity(spec), 3),
                "clipping": spec["clipping"] is not None and not broken,
                "capacity change": spec["capacity change"] is not None and not broken,
                "time shift": spec["time shift"] is not None and not broken, "broken": broken,
                "days": spec["days"], "minutes": spec["minutes"]}
