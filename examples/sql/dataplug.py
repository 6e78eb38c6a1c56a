"""One site's power series from a PostgreSQL-protocol database (PostgreSQL, Amazon Redshift,
e.g. PVDB), in PVDB's long format: one row per site, measurement, sensor and timestamp.

Connection settings are libpq's standard variables (PGHOST, PGPORT, PGUSER, PGPASSWORD,
PGDATABASE; also PGSSLMODE, PGSSLROOTCERT…), which psycopg reads itself. SDT_SQL_TABLE names the
table, with the columns site, meas_name, ts (UTC), sensor and meas_val_f.
"""

import os

import pandas as pd
import psycopg
from psycopg import sql
from solardatatools.time_axis_manipulation import make_time_series

from sdt_build import DataPlug, EnvVar


class PostgresSites(DataPlug):
    """Key: (site,), e.g. ("TAEFC1044741",)."""

    env = [
        EnvVar("PGHOST", help="database host"),
        EnvVar("PGPORT", required=False, default="5432", help="database port"),
        EnvVar("PGDATABASE", help="database name"),
        EnvVar("PGUSER", help="user with SELECT on the table"),
        EnvVar("PGPASSWORD", required=False, secret=True, help="that user's password"),
        EnvVar("SDT_SQL_TABLE", required=False, default="measurements",
               help="table (or schema.table) with site, meas_name, ts, sensor, meas_val_f"),
    ]

    def __init__(self):
        self.table = sql.Identifier(*os.environ.get("SDT_SQL_TABLE", "measurements").split("."))

    @staticmethod
    def _connect() -> psycopg.Connection:
        # One short-lived connection per call: never shared between the threads of a worker.
        return psycopg.connect(connect_timeout=30)

    def keys(self):
        with self._connect() as conn:
            rows = conn.execute(sql.SQL("SELECT DISTINCT site FROM {} ORDER BY site").format(self.table))
            return [(site,) for (site,) in rows]

    def size(self, key: tuple) -> int:
        """Rows for the site: the runner starts the largest sites first."""
        with self._connect() as conn:
            query = sql.SQL("SELECT count(*) FROM {} WHERE site = %s").format(self.table)
            return conn.execute(query, key[:1]).fetchone()[0]

    def get_data(self, key: tuple) -> pd.DataFrame:
        (site,) = key
        query = sql.SQL("SELECT site, meas_name, ts, sensor, meas_val_f FROM {} WHERE site = %s "
                        "ORDER BY ts").format(self.table)
        with self._connect() as conn, conn.cursor() as cursor:
            cursor.execute(query, (site,))
            table = pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])
        if table.empty:
            raise LookupError(f"no rows for site {site!r} in {os.environ.get('SDT_SQL_TABLE', 'measurements')}")
        series, _ = make_time_series(table)
        return series
