"""PV sites stored as CSV or Parquet objects in an S3 bucket (AWS S3, MinIO, SeaweedFS, Ceph…).

Each object is one site, either in the long format SDT's own examples and PVDB exports use
(columns site, meas_name, ts, sensor, meas_val_f; ts in UTC) or as a wide table whose first
column is the timestamp and whose other columns are power. The endpoint, region and credentials
come from the standard AWS variables, which boto3 reads itself.
"""

import io
import os

import boto3
import pandas as pd
from solardatatools.time_axis_manipulation import make_time_series

from sdt_build import DataPlug, EnvVar

LONG_FORMAT = {"ts", "meas_name", "meas_val_f"}
SUFFIXES = (".csv", ".csv.gz", ".parquet")


class S3Sites(DataPlug):
    """Key: (object_key,), e.g. ("sites/TAEFC1044741.csv",)."""

    env = [
        EnvVar("SDT_S3_BUCKET", help="bucket holding one object per site"),
        EnvVar("SDT_S3_PREFIX", required=False, default="", help="only list objects under this prefix"),
        EnvVar("AWS_ACCESS_KEY_ID", required=False, help="credentials (or an instance/task role)"),
        EnvVar("AWS_SECRET_ACCESS_KEY", required=False, secret=True, help="credentials"),
        EnvVar("AWS_SESSION_TOKEN", required=False, secret=True, help="with temporary credentials (STS, SSO)"),
        EnvVar("AWS_DEFAULT_REGION", required=False, help="the bucket's region"),
        EnvVar("AWS_ENDPOINT_URL", required=False, help="a non-AWS S3 server, e.g. http://127.0.0.1:8333"),
    ]

    def __init__(self):
        self.bucket = os.environ["SDT_S3_BUCKET"]
        self.prefix = os.environ.get("SDT_S3_PREFIX", "")

    @staticmethod
    def _s3():
        # A new session and client per call: boto3 sessions are not thread-safe, and a worker
        # runs several keys at once.
        return boto3.session.Session().client("s3")

    def keys(self):
        pages = self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        return [(item["Key"],) for page in pages for item in page.get("Contents", [])
                if item["Key"].endswith(SUFFIXES)]

    def size(self, key: tuple) -> int:
        """The object's size in bytes: the runner starts the largest sites first."""
        return self._s3().head_object(Bucket=self.bucket, Key=key[0])["ContentLength"]

    def get_data(self, key: tuple) -> pd.DataFrame:
        (name,) = key
        body = self._s3().get_object(Bucket=self.bucket, Key=name)["Body"].read()
        if name.endswith(".parquet"):
            table = pd.read_parquet(io.BytesIO(body))
        else:
            table = pd.read_csv(io.BytesIO(body), compression="gzip" if name.endswith(".gz") else None)
        if LONG_FORMAT <= set(table.columns):
            series, _ = make_time_series(table)
            return series
        table = table.set_index(table.columns[0])
        table.index = pd.to_datetime(table.index)
        return table.sort_index()
