"""AWS Fargate through dask-cloudprovider (pip install "sdt-build[cloud]").

Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
~/.aws, or a role); the region from here or AWS_REGION. The image must be in a registry Fargate can
pull from: `sdt-build build DIR --push 123456789012.dkr.ecr.us-west-2.amazonaws.com`.
`sdt-build run DIR --dry-run` prints the cluster spec without creating anything.
AWS keys never go to the tasks: dask-cloudprovider gives them a task role (task_role_arn, or
task_role_policies such as "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess" for an S3 plug).
"""

from sdt_build.clients import FargateClient


class Fargate(FargateClient):
    region = "us-west-2"
    vpc = "vpc-0123456789abcdef0"
    subnets = ("subnet-0123456789abcdef0", "subnet-0fedcba9876543210")
    security_groups = ("sg-0123456789abcdef0",)
    workers = 20
    threads_per_worker = 1
    worker_cpu = 1024          # Fargate units: 1024 = 1 vCPU
    worker_mem = 2048          # MiB (the default): room for the largest measured pipeline run; also each
                               # worker's Dask memory limit
    image = "123456789012.dkr.ecr.us-west-2.amazonaws.com/mysites:latest"
    tags = {"project": "pv-fleet", "owner": "analytics"}
