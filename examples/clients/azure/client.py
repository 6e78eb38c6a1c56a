"""Azure VMs through dask-cloudprovider (pip install "sdt-build[cloud]").

Credentials: AZURE_SUBSCRIPTION_ID plus a service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID,
AZURE_CLIENT_SECRET) or an `az login` session. Location, resource group, vnet and security group
from here or AZURE_LOCATION, AZURE_RESOURCE_GROUP, AZURE_VNET, AZURE_SECURITY_GROUP.
The image must be in a registry the VMs can pull from (`sdt-build build DIR --push myacr.azurecr.io`).
"""

from sdt_build.clients import AzureClient


class Azure(AzureClient):
    location = "westus2"
    resource_group = "pv-analytics"
    vnet = "pv-vnet"
    security_group = "pv-nsg"
    vm_size = "Standard_D2s_v5"  # 2 vCPU, 8 GiB
    workers = 10
    threads_per_worker = 1
    memory_per_worker = "2GiB"
    image = "myacr.azurecr.io/mysites:latest"
