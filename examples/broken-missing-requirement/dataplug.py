"""Read one PV site's AC power from the fleet's PostgreSQL database.

BROKEN ON PURPOSE (a common mistake, for docs and tests): the plug imports psycopg2, which is
installed on the analyst's laptop but is not part of SDT's image, and there is no
requirements.txt asking for it. Every worker would fail with ModuleNotFoundError; `sdt-build
check` stops with SDT-E107 first and names the distribution to add (psycopg2-binary: the import
name and the package name differ). README.md shows the fix.
"""

import pandas as pd
import psycopg2  # not in SDT's image, and no requirements.txt: this is the mistake

from sdt_build import DataPlug, EnvVar

QUERY = "SELECT ts, ac_power_w FROM pv_power WHERE site_id = %(site)s ORDER BY ts"


class FleetDB(DataPlug):
    """Key: (site_id,). The connection comes from libpq's standard PG* variables."""

    env = [
        EnvVar("PGHOST", required=False, help="database host (default: local socket)"),
        EnvVar("PGDATABASE", required=False, default="pvfleet", help="database name"),
        EnvVar("PGUSER", required=False, help="database user"),
        EnvVar("PGPASSWORD", required=False, secret=True, help="database password (or a ~/.pgpass)"),
    ]

    def _query(self, sql: str, params: dict | None = None, **read) -> pd.DataFrame:
        connection = psycopg2.connect("")  # empty DSN: psycopg2 reads the PG* variables itself
        try:
            return pd.read_sql_query(sql, connection, params=params, **read)
        finally:
            connection.close()

    def keys(self):
        return [(site,) for site in self._query("SELECT DISTINCT site_id FROM pv_power ORDER BY 1")["site_id"]]

    def get_data(self, key: tuple) -> pd.DataFrame:
        (site,) = key
        return self._query(QUERY, {"site": site}, index_col="ts", parse_dates=["ts"])
