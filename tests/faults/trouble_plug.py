"""A plug whose keys misbehave on purpose (copied into a test folder as dataplug.py, next to the
synthetic example as synthetic.py). Keys:

    ("ok", n)          30 days of synthetic data (n tells keys apart)
    ("sleep", s)       good data after s seconds
    ("until", port)    good data once something listens on 127.0.0.1:port (up to 10 minutes)
    ("late", s)        ValueError after s seconds
    ("raises",)        ValueError in get_data
    ("dies",)          the worker process is killed (SIGKILL)
    ("hog", mb)        allocates and touches mb megabytes, 100 MB at a time
    ("none",) ("empty",) ("strings",) ("series",) ("unsorted",) ("no-index",) ("zeros",) ("nan",)
                       get_data returns something that is not a usable power series
    ("leaks",)         prints the declared secret and raises an error that quotes it
    ("endless-size",)  the plug's size() never answers for it (get_data then fails as for an unknown key)
    ("echo", ...)      ValueError quoting the key as get_data received it (its repr shows every
                       field's type), at once and with no SDT work
    ("exits", code)    sys.exit(code) in get_data
    ("interrupts",)    KeyboardInterrupt raised in get_data
    ("tz",)            good data with its index in UTC (time-zone aware)

With SDT_FAULTS_FIXED set, every key gives good data (as a fixed plug would, for --resume).
"""

import os
import signal
import socket
import sys
import time

import numpy as np

from sdt_build import DataPlug, EnvVar
from synthetic import SyntheticPV


class Trouble(DataPlug):
    env = [EnvVar("SDT_FAULTS_FIXED", required=False),
           EnvVar("SDT_FAULTS_SECRET", required=False, secret=True, help="a secret the plug reads")]

    def size(self, key):
        if key[0] == "endless-size":
            time.sleep(3600)
        return 1

    def get_data(self, key):
        kind = key[0]
        if kind == "echo":
            raise ValueError(f"get_data received {key!r}")
        if kind == "exits":
            sys.exit(key[1])
        if kind == "interrupts":
            raise KeyboardInterrupt
        good = SyntheticPV().get_data((3, 30))
        if os.environ.get("SDT_FAULTS_FIXED") or kind == "ok":
            return good
        if kind == "until":
            _wait_for_listener(int(key[1]))
            return good
        if kind in ("sleep", "late"):
            time.sleep(float(key[1]))
        if kind == "sleep":
            return good
        if kind in ("raises", "late"):
            raise ValueError(f"site {key!r} has no data")
        if kind == "leaks":
            secret = os.environ.get("SDT_FAULTS_SECRET", "")
            print(f"connecting with {secret}")
            raise PermissionError(f"the server refused the token {secret}")
        if kind == "dies":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "hog":
            chunks = []
            for _ in range(int(key[1]) // 100):
                chunks.append(np.ones(100 * 2**20 // 8))
            return good
        if kind == "tz":
            return good.tz_localize("UTC")
        if kind == "none":
            return None
        if kind == "empty":
            return good.iloc[:0]
        if kind == "strings":
            return good.astype(str)
        if kind in ("zeros", "nan"):
            return good * (0.0 if kind == "zeros" else np.nan)
        if kind == "series":
            return good.iloc[:, 0]
        if kind == "unsorted":
            return good.sample(frac=1, random_state=0)
        if kind == "no-index":
            return good.reset_index(drop=True)
        raise KeyError(f"unknown trouble {kind!r}")


def _wait_for_listener(port: int, limit: float = 600) -> None:
    ends = time.monotonic() + limit
    while time.monotonic() < ends:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} in {limit:.0f} s")
