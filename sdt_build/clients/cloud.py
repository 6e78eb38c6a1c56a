"""FargateClient and AzureClient: dask-cloudprovider clusters, every setting checked offline first.

Nothing here calls a cloud before the settings, the credentials and the image have been checked:
a wrong subnet or a missing key is a named error on this machine, not a cluster that never starts.
``dry_run()`` returns the exact keyword arguments ``connect`` gives the engine (``engine_kwargs``,
secrets masked). dask-cloudprovider stays on the client side (``pip install "sdt-build[cloud]"``);
the worker image does not need it. Settings the engines read themselves (Dask's configuration,
``DASK_CLOUDPROVIDER__…``, ``~/.aws/config``) count as set.

Declared secrets never travel in plain text: AWS keys are left to the tasks' role; any other
secret is refused (SDT-E518) unless the client sets ``allow_plain_secrets = True``, which every
run record notes.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdt_build.clients.base import Client
from sdt_build.clients.local import parse_memory
from sdt_build.constraints import PIPELINE_PEAK, PIPELINE_PEAK_BYTES, WORKER_MEMORY
from sdt_build.installer import add_extra
from sdt_build.runtime.errors import RunFailure
from sdt_build.runtime.plug import EnvVar

if TYPE_CHECKING:
    import distributed

# Fargate task sizes: CPU units → allowed memory (MiB) per AWS's table.
FARGATE_SIZES = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4097, 1024)),
    1024: list(range(2048, 8193, 1024)),
    2048: list(range(4096, 16385, 1024)),
    4096: list(range(8192, 30721, 1024)),
    8192: list(range(16384, 61441, 4096)),
    16384: list(range(32768, 122881, 8192)),
}
# Memory (GiB) of common Azure VM sizes, to check workers × memory fits a VM.
AZURE_VM_MEMORY = {
    "Standard_D2s_v3": 8, "Standard_D4s_v3": 16, "Standard_D8s_v3": 32, "Standard_D16s_v3": 64,
    "Standard_D2s_v5": 8, "Standard_D4s_v5": 16, "Standard_D8s_v5": 32, "Standard_D16s_v5": 64,
    "Standard_E2s_v3": 16, "Standard_E4s_v3": 32, "Standard_E8s_v3": 64, "Standard_E16s_v3": 128,
    "Standard_E2s_v5": 16, "Standard_E4s_v5": 32, "Standard_E8s_v5": 64, "Standard_F4s_v2": 8,
    "Standard_F8s_v2": 16, "Standard_F16s_v2": 32, "Standard_B2ms": 8, "Standard_B4ms": 16,
}


# Secrets a cloud's own identity replaces: the tasks get a role, never these keys.
ROLE_COVERED = {"fargate": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|KEY|CREDENTIAL")


class CloudClient(Client):
    """What the engine clients share: offline checks, the registry rule, secrets, dry runs."""

    tags: dict[str, str] = {}
    allow_plain_secrets: bool = False
    problems_code = "SDT-E510"
    cluster_class = ""
    engine_library = ("dask_cloudprovider", "dask-cloudprovider", "cloud")
    _config_before: dict[str, Any] | None = None  # Dask's configuration before make_cluster

    @property
    def needs_image(self) -> bool:
        return True

    @property
    def needs_registry(self) -> bool:
        return True

    def check(self, image: str | None) -> list[str]:
        """Every setting problem (empty when connect may go ahead)."""
        raise NotImplementedError

    def engine_kwargs(self, image: str, *, masked: bool = True) -> dict[str, Any]:
        """The keyword arguments of the engine's cluster class (secrets masked unless ``masked`` is False)."""
        raise NotImplementedError

    def spec(self, image: str) -> dict[str, Any]:
        return self.engine_kwargs(image)

    def dry_run(self, image: str | None = None) -> dict[str, Any]:
        image = image or self.image
        problems = self.engine_problems() + self.check(image or (f"{self.registry}/image:tag" if self.registry
                                                                 else None))
        image = image or (f"{self.registry}/<the image sdt-build builds and pushes>" if self.registry
                          else "<the image sdt-build builds and pushes>")
        try:
            self.secret_plan()
        except RunFailure as exc:
            problems.append(exc.cause)
        return {"backend": self.backend, "cluster": self.cluster_class, "kwargs": self.spec(image),
                "problems": problems}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "allow_plain_secrets": self.allow_plain_secrets,
                "secrets": self.secret_plan(strict=False)}

    def preflight(self, registry: str | None) -> None:
        self._raise_problems(f"{registry}/image:tag" if registry else None)
        self.secret_plan()

    def _raise_problems(self, image: str | None) -> None:
        problems = self.check(image)
        if problems:
            raise RunFailure(self.problems_code, f"{type(self).__name__} settings are not valid: {problems[0]}",
                             "fix the settings in client.py (or their environment variables); "
                             "`sdt-build run DIR --dry-run` shows every problem and the cluster spec",
                             detail="\n".join(problems))

    def _image_problems(self, image: str | None) -> list[str]:
        if not image:
            return ["no image: build and push one (`sdt-build build DIR --push REGISTRY`) or set image"]
        first = image.split("/")[0]
        if "/" not in image:
            return [f"image {image} has no registry: the cloud cannot pull an image that exists only here; "
                    "push it with `sdt-build build DIR --push REGISTRY` and use the pushed name"]
        if re.match(r"^(localhost|127\.|0\.0\.0\.0|\[::1\])", first):
            return [f"image {image} is in a registry on this machine, which the cloud cannot reach; push it "
                    "to one it can (`sdt-build build DIR --push REGISTRY`)"]
        return []

    def _tag_problems(self) -> list[str]:
        problems = []
        for key, value in (self.tags or {}).items():
            if not isinstance(key, str) or not isinstance(value, str):
                problems.append(f"tag {key!r}: keys and values must be strings")
            elif key.lower().startswith(("aws:", "azure", "microsoft", "windows")):
                problems.append(f"tag {key!r} uses a prefix the cloud reserves")
            elif len(key) > 128 or len(value) > 256:
                problems.append(f"tag {key!r} is too long (key ≤ 128, value ≤ 256 characters)")
        return problems

    def secret_names_here(self) -> set[str]:
        """The environment's names that are secret: declared so, or named like a credential."""
        return set(self.secret_names | {v.name for v in self.env if v.secret} |
                   {n for n in self.environment if SECRET_NAME.search(n)}) & set(self.environment)

    def secret_plan(self, strict: bool = True) -> dict[str, str]:
        """How each secret reaches the cluster (names only). Strict: refuse one that would travel
        in plain text, unless ``allow_plain_secrets``."""
        plan = {}
        for name in sorted(self.secret_names_here()):
            if name in ROLE_COVERED.get(self.backend, ()):
                plan[name] = "not sent: the tasks' role gives AWS access"
            elif self.allow_plain_secrets:
                plan[name] = "plain environment (allow_plain_secrets = True)"
            else:
                plan[name] = "refused"
        refused = [n for n, how in plan.items() if how == "refused"]
        if strict and refused:
            raise RunFailure("SDT-E518", f"{type(self).__name__} would send the secret {', '.join(refused)} to "
                             f"the cluster in plain text ({self.plain_carrier})", self.secret_fix)
        return plan

    plain_carrier = "the cluster's environment"
    secret_fix = "give the cluster an identity that reaches the resource instead of a secret, or set " \
                 "allow_plain_secrets = True in client.py (the run record notes it)"

    def _environment(self, masked: bool) -> dict[str, str]:
        """What the cluster's processes get: secrets a role covers are left out; others masked or refused."""
        plan = self.secret_plan(strict=not masked)
        return {n: ("****" if masked and n in plan else v) for n, v in self.environment.items()
                if not plan.get(n, "").startswith("not sent")}

    def _cloudprovider(self, module: str):
        import importlib

        try:
            return importlib.import_module(f"dask_cloudprovider.{module}")
        except ImportError as exc:
            raise RunFailure("SDT-E509", f"{type(self).__name__} needs dask-cloudprovider on this machine",
                             add_extra("cloud")) from exc

    def engine_class(self):
        """The engine's cluster class."""
        module, _, name = self.cluster_class.rpartition(".")
        return getattr(self._cloudprovider(module.removeprefix("dask_cloudprovider.")), name)

    def make_cluster(self, image: str, **extra: Any):
        """The engine's cluster object (started unless ``asynchronous=True`` is among ``extra``).

        What the engine writes into Dask's global configuration for its cluster (AzureVMCluster's TLS
        settings, which would make every later cluster in this process refuse plain TCP) lasts until
        ``close()``.
        """
        import dask

        if self._config_before is None:
            self._config_before = copy.deepcopy(dask.config.config)
        return self.engine_class()(**self.engine_kwargs(image, masked=False), **extra)

    def close(self) -> None:
        """Release the cluster, then give Dask back the configuration it had before ``make_cluster``."""
        super().close()
        saved, self._config_before = self._config_before, None
        if saved is not None:
            import dask

            dask.config.config.clear()
            dask.config.config.update(saved)

    def connect(self, image: str | None = None) -> "distributed.Client":
        image = image or self.image
        self._raise_problems(image)
        self.secret_plan()
        self._cluster = self.make_cluster(image)
        self._dask_client = self.new_dask_client(self._cluster)
        return self._dask_client


class FargateClient(CloudClient):
    """AWS Fargate (dask-cloudprovider's FargateCluster). CPU in Fargate units (1024 = 1 vCPU)."""

    backend = "fargate"
    cluster_class = "dask_cloudprovider.aws.FargateCluster"
    problems_code = "SDT-E510"
    region: str | None = None
    vpc: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    scheduler_cpu: int = 1024
    scheduler_mem: int = 4096
    worker_cpu: int = 1024
    worker_mem: int = 2048  # MiB: Fargate's least for one vCPU, room for the largest measured pipeline run
    fargate_spot: bool = False
    fargate_use_private_ip: bool = False
    cluster_arn: str | None = None
    execution_role_arn: str | None = None
    task_role_arn: str | None = None
    task_role_policies: tuple[str, ...] = ()
    cloudwatch_logs_group: str | None = None
    memory_per_worker = None  # the engine gives each worker --memory-limit worker_mem
    plain_carrier = "ECS container overrides"
    secret_fix = ("AWS keys never go to tasks: give them a role (task_role_arn, or task_role_policies for the role "
                  "dask-cloudprovider creates); for another secret, let the role read it from Secrets Manager or "
                  "SSM in the plug, or set allow_plain_secrets = True in client.py (the run record notes it)")
    env = (EnvVar("AWS_REGION", required=False, help="region when `region` is not set (or AWS_DEFAULT_REGION)"),
           EnvVar("AWS_ACCESS_KEY_ID", required=False, secret=True),
           EnvVar("AWS_SECRET_ACCESS_KEY", required=False, secret=True),
           EnvVar("AWS_SESSION_TOKEN", required=False, secret=True),
           EnvVar("AWS_PROFILE", required=False, help="a profile in ~/.aws/credentials or ~/.aws/config"))

    def _region(self) -> str | None:
        """As the engine finds it: client.py, Dask's configuration, then botocore's chain
        (AWS_REGION, AWS_DEFAULT_REGION, the profile in ~/.aws/config)."""
        import dask

        found = self.region or dask.config.get("cloudprovider.ecs.region_name", None)
        if found:
            return found
        try:
            import botocore.session

            return botocore.session.Session().get_config_variable("region")
        except ImportError:
            return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")

    def check(self, image: str | None) -> list[str]:
        problems = []
        region = self._region()
        if not region:
            problems.append("no region: set region in client.py, or AWS_REGION / AWS_DEFAULT_REGION")
        elif not re.fullmatch(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d", region):
            problems.append(f"region {region!r} is not an AWS region name (like us-west-2)")
        if self.vpc and not re.fullmatch(r"vpc-[0-9a-f]{8}([0-9a-f]{9})?", self.vpc):
            problems.append(f"vpc {self.vpc!r} is not a VPC id (vpc-0123456789abcdef0)")
        problems += [f"subnet {s!r} is not a subnet id (subnet-0123456789abcdef0)" for s in self.subnets
                     if not re.fullmatch(r"subnet-[0-9a-f]{8}([0-9a-f]{9})?", s)]
        problems += [f"security group {g!r} is not a security group id (sg-0123456789abcdef0)"
                     for g in self.security_groups if not re.fullmatch(r"sg-[0-9a-f]{8}([0-9a-f]{9})?", g)]
        if self.subnets and not self.vpc:
            problems.append("subnets are set but vpc is not: name the VPC they belong to")
        for role, cpu, mem in (("scheduler", self.scheduler_cpu, self.scheduler_mem),
                               ("worker", self.worker_cpu, self.worker_mem)):
            if cpu not in FARGATE_SIZES:
                problems.append(f"{role}_cpu {cpu} is not a Fargate size ({', '.join(map(str, FARGATE_SIZES))})")
            elif mem not in FARGATE_SIZES[cpu]:
                allowed = FARGATE_SIZES[cpu]
                problems.append(f"{role}_mem {mem} MiB does not go with {role}_cpu {cpu}: Fargate allows "
                                f"{allowed[0]}–{allowed[-1]} MiB in steps of {allowed[1] - allowed[0] if len(allowed) > 1 else 0}")
        if self.worker_mem * 2**20 < PIPELINE_PEAK_BYTES:
            problems.append(f"worker_mem {self.worker_mem} MiB is below what SDT needs ({PIPELINE_PEAK}): use at "
                            f"least {parse_memory(WORKER_MEMORY) // 2**20}")
        if self.memory_per_worker is not None:
            problems.append(f"memory_per_worker {self.memory_per_worker}: Fargate workers get worker_mem as their "
                            "Dask memory limit (dask-cloudprovider passes --memory-limit); set worker_mem instead")
        arns = {"cluster_arn": "ecs", "execution_role_arn": "iam", "task_role_arn": "iam"}
        problems += [f"{name} {getattr(self, name)!r} is not an ARN (arn:aws:{service}:…)"
                     for name, service in arns.items()
                     if getattr(self, name) and not str(getattr(self, name)).startswith(f"arn:aws:{service}:")]
        if self.workers < 1 or self.threads_per_worker < 1:
            problems.append("workers and threads_per_worker must be at least 1")
        problems += self._tag_problems() + self._image_problems(image) + self._credential_problems()
        return problems

    def _credential_problems(self) -> list[str]:
        try:
            import botocore.exceptions
            import botocore.session

            try:
                found = botocore.session.Session().get_credentials() is not None
            except botocore.exceptions.BotoCoreError as exc:  # e.g. a key id without its secret
                return [f"AWS credentials are unusable: {exc}"]
        except ImportError:  # without botocore: the standard variables and files
            home = Path.home() / ".aws"
            found = bool(os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")) or \
                (home / "credentials").exists() or bool(os.environ.get("AWS_PROFILE"))
        if found:
            return []
        missing = [n for n in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not os.environ.get(n)]
        return [f"no AWS credentials: {', '.join(missing)} unset, no AWS_PROFILE, no ~/.aws/credentials "
                "(or instance/container role)"]

    def engine_kwargs(self, image: str, *, masked: bool = True) -> dict[str, Any]:
        spec = {"image": image, "region_name": self._region(), "n_workers": self.workers,
                "scheduler_cpu": self.scheduler_cpu, "scheduler_mem": self.scheduler_mem,
                "worker_cpu": self.worker_cpu, "worker_mem": self.worker_mem,
                "worker_nthreads": self.threads_per_worker, "fargate_spot": self.fargate_spot,
                "fargate_use_private_ip": self.fargate_use_private_ip,
                "environment": self._environment(masked), "tags": dict(self.tags or {})}
        optional = {"vpc": self.vpc, "subnets": list(self.subnets), "security_groups": list(self.security_groups),
                    "cluster_arn": self.cluster_arn, "execution_role_arn": self.execution_role_arn,
                    "task_role_arn": self.task_role_arn, "task_role_policies": list(self.task_role_policies),
                    "cloudwatch_logs_group": self.cloudwatch_logs_group}
        return {**spec, **{k: v for k, v in optional.items() if v}}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "memory_per_worker": f"{self.worker_mem}MB (worker_mem)"}


class AzureClient(CloudClient):
    """Azure VMs (dask-cloudprovider's AzureVMCluster)."""

    backend = "azure"
    cluster_class = "dask_cloudprovider.azure.AzureVMCluster"
    problems_code = "SDT-E511"
    plain_carrier = "the VMs' cloud-init, readable by anyone who can read the VM"
    secret_fix = ("give the VMs a managed identity (extra_vm_options={'identity': …}) that reaches the resource, "
                  "or set allow_plain_secrets = True in client.py (the run record notes it)")
    location: str | None = None
    resource_group: str | None = None
    vnet: str | None = None
    security_group: str | None = None
    subnet: str | None = None
    subscription_id: str | None = None
    public_ingress: bool | None = None  # None: the engine's default (a public IP for the scheduler)
    vm_size: str = "Standard_D2s_v5"  # 2 vCPU, 8 GiB: a worker per core has room for the measured pipeline
    disk_size: int = 50
    bootstrap: bool | None = None  # None: the engine's default (install Docker on the VM at boot)
    extra_bootstrap: tuple[str, ...] = ()  # commands the VM runs before the container, e.g. a registry login
    docker_args: str = ""
    extra_vm_options: dict[str, Any] = {}
    env = (EnvVar("AZURE_SUBSCRIPTION_ID", required=False, help="the subscription clusters are created in"),
           EnvVar("AZURE_TENANT_ID", required=False), EnvVar("AZURE_CLIENT_ID", required=False),
           EnvVar("AZURE_CLIENT_SECRET", required=False, secret=True),
           EnvVar("AZURE_LOCATION", required=False, help="location when `location` is not set"),
           EnvVar("AZURE_RESOURCE_GROUP", required=False), EnvVar("AZURE_VNET", required=False),
           EnvVar("AZURE_SECURITY_GROUP", required=False))

    # where the engine reads each setting in Dask's configuration (cloudprovider.azure.…)
    DASK_KEYS = {"location": "location", "resource_group": "resource_group", "subscription_id": "subscription_id",
                 "vnet": "azurevm.vnet", "subnet": "azurevm.subnet", "security_group": "azurevm.security_group"}

    def _setting(self, name: str) -> str | None:
        """client.py, then AZURE_<NAME>, then Dask's configuration (as the engine reads it)."""
        import dask

        return getattr(self, name) or os.environ.get(f"AZURE_{name.upper()}") or \
            dask.config.get(f"cloudprovider.azure.{self.DASK_KEYS[name]}", None)

    def check(self, image: str | None) -> list[str]:
        problems = []
        location = self._setting("location")
        if not location:
            problems.append("no location: set location in client.py or AZURE_LOCATION (like westus2)")
        elif not re.fullmatch(r"[a-z]+[a-z0-9]*", location):
            problems.append(f"location {location!r} is not an Azure location name (like westus2, lowercase)")
        group = self._setting("resource_group")
        if not group:
            problems.append("no resource_group: set it in client.py or AZURE_RESOURCE_GROUP")
        elif not re.fullmatch(r"[\w\-.()]{1,90}", group) or group.endswith("."):
            problems.append(f"resource_group {group!r} is not a valid name (1–90 letters, digits, _-.() )")
        for name in ("vnet", "security_group"):
            value = self._setting(name)
            if not value:
                problems.append(f"no {name}: set it in client.py or AZURE_{name.upper()}")
            elif not re.fullmatch(r"[A-Za-z0-9][\w\-.]{0,62}[\w]", value):
                problems.append(f"{name} {value!r} is not a valid name (2–64 letters, digits, _-.)")
        if not re.fullmatch(r"Standard_[A-Z]+\d+[a-z_0-9]*", self.vm_size):
            problems.append(f"vm_size {self.vm_size!r} is not an Azure VM size (like Standard_E2s_v5)")
        else:
            memory = AZURE_VM_MEMORY.get(self.vm_size)
            needed = parse_memory(self.memory_per_worker) / 2**30
            if memory is not None and needed > memory:
                problems.append(f"vm_size {self.vm_size} has {memory} GiB, less than memory_per_worker "
                                f"{self.memory_per_worker}")
            if memory is not None and memory * 2**30 < PIPELINE_PEAK_BYTES:
                problems.append(f"vm_size {self.vm_size} has {memory} GiB; {PIPELINE_PEAK}")
        if self.disk_size < 30:
            problems.append(f"disk_size {self.disk_size} GB is too small for the image (use 50 or more)")
        if self.tags:
            problems.append("tags: AzureVMCluster tags every VM, NIC and IP with its own tags and takes no others; "
                            "remove tags (extra_vm_options cannot carry them either)")
        if "tags" in (self.extra_vm_options or {}):
            problems.append("extra_vm_options['tags']: AzureVMCluster sets the VMs' tags itself; remove it")
        problems += self._image_problems(image) + self._credential_problems()
        return problems

    def _credential_problems(self) -> list[str]:
        if not self._setting("subscription_id"):
            return ["no subscription: set subscription_id in client.py, AZURE_SUBSCRIPTION_ID, or "
                    "cloudprovider.azure.subscription_id in Dask's configuration"]
        service_principal = all(os.environ.get(n) for n in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID",
                                                            "AZURE_CLIENT_SECRET"))
        cli_login = (Path.home() / ".azure" / "msal_token_cache.json").exists() or \
            (Path.home() / ".azure" / "accessTokens.json").exists()
        if service_principal or cli_login or os.environ.get("AZURE_FEDERATED_TOKEN_FILE"):
            return []
        missing = [n for n in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET") if not os.environ.get(n)]
        return [f"no Azure credentials: {', '.join(missing)} unset and no `az login` token cache"]

    def engine_kwargs(self, image: str, *, masked: bool = True) -> dict[str, Any]:
        spec = {"location": self._setting("location"), "resource_group": self._setting("resource_group"),
                "vnet": self._setting("vnet"), "security_group": self._setting("security_group"),
                "subscription_id": self._setting("subscription_id"),
                "vm_size": self.vm_size, "disk_size": self.disk_size, "n_workers": self.workers,
                "docker_image": image, "docker_args": self.docker_args,
                "worker_options": {"nthreads": self.threads_per_worker, "memory_limit": self.memory_per_worker},
                "env_vars": self._environment(masked)}
        optional = {"subnet": self._setting("subnet"), "public_ingress": self.public_ingress,
                    "bootstrap": self.bootstrap, "extra_bootstrap": list(self.extra_bootstrap),
                    "extra_vm_options": dict(self.extra_vm_options or {})}
        return {**spec, **{k: v for k, v in optional.items() if v is not None and v != [] and v != {}}}
