"""The docker worker of `python -m deploy.worker`: prefect-docker's, with the container policy
of deploy.container_policy enforced before any container is created.

A run whose container would break the policy ends Failed, with a message naming each refused
setting, and no container is created for it. Every container the worker does create gets the
hardening of container_policy.HARDENING and a name made from its flow run's id.
"""

from __future__ import annotations

import warnings
from typing import Any

import anyio.abc
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import Abort
from prefect.states import Failed
from prefect.utilities.engine import propose_state
from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration, DockerWorkerResult
from pydantic import PrivateAttr

from deploy.container_policy import HARDENING, ContainerPolicy
from deploy.work_pool import POOL_ENV, check_image_and_network, image_pattern
from taxi.settings import Settings


class ContainerRefusedError(RuntimeError):
    """A flow run's container would break the worker's container policy."""


def policy_from_settings(settings: Settings) -> ContainerPolicy:
    """The worker's policy from its own environment; ValueError naming what is missing or
    malformed."""
    if not settings.image or not settings.flow_network:
        raise ValueError(
            "set TAXI_IMAGE and TAXI_FLOW_NETWORK for the worker as for the work pool: "
            "the only image repository and Docker network of flow containers"
        )
    check_image_and_network(settings.image, settings.flow_network)
    return ContainerPolicy(
        repository=settings.image,
        image_pattern=image_pattern(settings.image),
        network=settings.flow_network,
        mem_limit_max=settings.mem_limit_max,
    )


class TaxiJobConfiguration(DockerWorkerJobConfiguration):
    """prefect-docker's job configuration, keeping the container name the template asked for
    (refused) and naming the container after the flow run's id instead of its name, which
    whoever creates the run chooses."""

    _asked_name: str | None = PrivateAttr(default=None)

    def prepare_for_flow_run(self, flow_run: FlowRun, *args: Any, **kwargs: Any) -> None:
        self._asked_name = self.name
        super().prepare_for_flow_run(flow_run, *args, **kwargs)
        self.name = f"taxi-flow-run-{flow_run.id}"


# Registered for the worker type "docker" in place of prefect-docker's (Prefect warns that it
# replaces it; deploy.worker checks that it did).
with warnings.catch_warnings():
    warnings.simplefilter("ignore")

    class TaxiDockerWorker(DockerWorker):
        type = "docker"
        job_configuration = TaxiJobConfiguration
        # Set by deploy.worker from its own environment before the worker starts.
        policy: ContainerPolicy | None = None

        async def _refusals(
            self, flow_run: FlowRun, configuration: TaxiJobConfiguration
        ) -> list[str]:
            """The policy's refusals for this run; the deployment's env is read afresh (Prefect
            merges the run's env into the deployment object it builds the configuration from)."""
            if self.policy is None:
                return [
                    "the worker has no container policy (start it with python -m deploy.worker)"
                ]
            env = dict(POOL_ENV)
            if flow_run.deployment_id:
                deployment = await self.client.read_deployment(flow_run.deployment_id)
                env.update((deployment.job_variables or {}).get("env") or {})
            return self.policy.refusals(configuration, env, configuration._asked_name)

        async def _refuse(self, flow_run: FlowRun, refused: list[str]) -> str:
            message = "the worker refused to create this run's container: " + "; ".join(refused)
            self.get_flow_run_logger(flow_run).error(message)
            try:
                await propose_state(self.client, Failed(message=message), flow_run_id=flow_run.id)
            except Abort:
                pass  # the run is final already (cancelled meanwhile)
            return message

        async def run(
            self,
            flow_run: FlowRun,
            configuration: TaxiJobConfiguration,
            task_status: anyio.abc.TaskStatus[Any] | None = None,
        ) -> DockerWorkerResult:
            refused = await self._refusals(flow_run, configuration)
            if not refused:
                return await super().run(flow_run, configuration, task_status)
            message = await self._refuse(flow_run, refused)
            if task_status is not None:
                # An error as the "started" value: the run is not reported as submitted.
                task_status.started(ContainerRefusedError(message))
            # 0: the run's state is already final; anything else would propose Crashed over it.
            return DockerWorkerResult(status_code=0, identifier="refused")

        async def _initiate_run(
            self, flow_run: FlowRun, configuration: TaxiJobConfiguration
        ) -> None:
            refused = await self._refusals(flow_run, configuration)
            if refused:
                raise ContainerRefusedError(await self._refuse(flow_run, refused))
            await super()._initiate_run(flow_run, configuration)

        def _build_container_settings(
            self, docker_client: Any, configuration: TaxiJobConfiguration
        ) -> dict[str, Any]:
            settings = super()._build_container_settings(docker_client, configuration)
            # Only a configuration that passed run()'s check gets here; what the policy does not
            # know (a create argument of a newer prefect-docker) is refused, not passed on.
            unknown = settings.keys() - KNOWN_SETTINGS
            if unknown:
                raise ContainerRefusedError(f"unknown container settings {sorted(unknown)}")
            return {**settings, **HARDENING}


# What prefect-docker 0.7's _build_container_settings passes to docker-py's containers.create.
KNOWN_SETTINGS = {
    "image",
    "network",
    "network_mode",
    "command",
    "environment",
    "auto_remove",
    "labels",
    "extra_hosts",
    "name",
    "volumes",
    "mem_limit",
    "memswap_limit",
    "privileged",
}
