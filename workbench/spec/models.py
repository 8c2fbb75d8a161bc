"""Pydantic models of an API in workbench.yaml."""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from workbench.spec.weights import ModelSpec, check_models
from workbench.wire.replica import CONTAINER_PORT, ServingConfig
from workbench.wire.sizes import parse_bytes

API_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
APT_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(=[A-Za-z0-9.+:~\-]+)?$")
PIP_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._\-]*(\[[A-Za-z0-9,._\-]+\])?"
    r"([<>=!~]=?[^\s;]+(,[<>=!~]=?[^\s;,]+)*)?$"
)

ByteSize = Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PredictorSpec(_Strict):
    path: str = "predictor.py"
    class_name: str | None = Field(
        None, alias="class",
        description="class to load; default Predictor, or PythonPredictor (Cortex)",
    )
    config: dict[str, Any] = Field(default_factory=dict)
    requirements: str | None = Field(
        None,
        description="pip requirements file in the project (default: requirements.txt if present)",
    )
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _python_file(cls, value: str) -> str:
        if not value.endswith(".py"):
            raise ValueError(f"{value!r} must be a Python file ending in .py")
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"{value!r} must be a path inside the project folder")
        return value

    @field_validator("class_name")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not value.isidentifier():
            raise ValueError(f"{value!r} is not a Python class name")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return check_env(value)


def check_env(value: Any) -> Any:
    """An `env` mapping: valid names, string or number values (as strings)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not ENV_NAME.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if isinstance(item, bool | dict | list) or item is None:
                raise ValueError(f"value of {key} must be a string or a number")
        return {key: str(item) for key, item in value.items()}
    return value


IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")
HEALTH_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$")
SHM_MIN, SHM_MAX = 2**20, 2**40  # 1 MiB .. 1 TiB


def _argv(value: Any) -> Any:
    """A list of strings as it is; a string split as a shell would (no shell ever runs it)."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as error:
            raise ValueError(f"cannot split {value!r} into arguments: {error}") from None
    if isinstance(value, list):
        for item in value:
            if isinstance(item, bool | dict | list) or item is None:
                raise ValueError(f"{item!r}: each argument must be a string or a number")
        return [str(item) for item in value]
    return value


Argv = Annotated[list[str], BeforeValidator(_argv)]


class HealthSpec(_Strict):
    """The readiness probe of a container API's server."""

    path: str = Field("/health", description="GET this path; ready while it answers 2xx")
    port: int | None = Field(None, ge=1, le=65535, description="the port to probe (container.port)")
    timeout: float = Field(1.0, gt=0, le=600, description="seconds one probe may take")
    period: float = Field(1.0, ge=1, le=3600, description="seconds between probes")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not HEALTH_PATH.match(value):
            raise ValueError(f"{value!r} is not a URL path such as /health (it starts with '/')")
        return value


def _health(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


class ContainerSpec(_Strict):
    """Any model server as an API: an image (or a Dockerfile), a command, a port, a health path."""

    image: str | None = Field(None, description="an image the host has or can pull")
    build: str | None = Field(None, description="a Dockerfile in the project folder, built on each host")
    command: Argv | None = Field(None, description="replaces the image's entrypoint; the process "
                                 "runtime's command line")
    args: Argv | None = Field(None, description="replaces the image's CMD")
    env: dict[str, str] = Field(default_factory=dict)
    port: int = Field(CONTAINER_PORT, ge=1, le=65535, description="where the server listens ($PORT)")
    shm_size: ByteSize | None = Field(None, description="/dev/shm size, e.g. 16Gi (NCCL, PyTorch workers)")
    health: Annotated[HealthSpec, BeforeValidator(_health)] = Field(default_factory=HealthSpec)
    startup_timeout: float = Field(600.0, gt=0, le=24 * 3600.0,
                                   description="seconds a replica may take to turn healthy")
    metrics: str | None = Field(None, description="the server's Prometheus path (e.g. /metrics), "
                                "scraped by the controller for autoscaling.metric")

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: str | None) -> str | None:
        if value is not None and not HEALTH_PATH.match(value):
            raise ValueError(f"{value!r} is not a URL path such as /metrics (it starts with '/')")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_REF.match(value):
            raise ValueError(f"{value!r} is not an image reference such as vllm/vllm-openai:v0.6.3")
        return value

    @field_validator("build")
    @classmethod
    def _build(cls, value: str | None) -> str | None:
        if value is not None and (not value or value.startswith("/") or ".." in value.split("/")
                                  or value.endswith("/")):
            raise ValueError(f"{value!r} must be a Dockerfile inside the project folder, e.g. Dockerfile")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        value = check_env(value)
        if isinstance(value, dict) and "PORT" in value:
            raise ValueError("PORT is set to the server's port: set container.port instead")
        return value

    @field_validator("shm_size")
    @classmethod
    def _shm_size(cls, value: int | None) -> int | None:
        if value is not None and not SHM_MIN <= value <= SHM_MAX:
            raise ValueError(f"{value} bytes is out of range: use 1Mi to 1Ti (e.g. 16Gi)")
        return value

    @model_validator(mode="after")
    def _image_or_build(self) -> ContainerSpec:
        if self.image is not None and self.build is not None:
            raise ValueError("set either image or build, not both")
        return self


def parse_gpu_count(value: Any) -> Any:
    """A whole number of GPUs (0-64), or a fraction below 1 for sharing one GPU (0.5)."""
    if isinstance(value, bool):
        raise ValueError("expected a number of GPUs such as 1, 2 or 0.5, not a boolean")
    if isinstance(value, int | float):
        if value < 0 or value > 64:
            raise ValueError(f"{value} GPUs: use 0 to 64 (or a fraction below 1 to share a GPU)")
        if value >= 1 and value != int(value):
            raise ValueError(f"{value} GPUs: use a whole number, or a fraction below 1 to share one GPU")
        return int(value) if value == int(value) else float(value)
    return value


def parse_gpu_memory(value: Any) -> Any:
    """Minimum free GPU memory: a plain number is GiB (16), a string a size (16Gi, 500Mi)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 16 (GiB) or 16Gi, not a boolean")
    if isinstance(value, int | float):
        return int(value * 2**30)
    return parse_bytes(value)


GpuCount = Annotated[int | float, BeforeValidator(parse_gpu_count)]
GpuMemory = Annotated[int, BeforeValidator(parse_gpu_memory), Field(gt=0)]


class ComputeSpec(_Strict):
    cpu: float | None = Field(None, gt=0, le=1024, description="CPU cores (e.g. 0.5, 2)")
    mem: ByteSize | None = Field(None, description="memory limit, e.g. 512Mi or 4Gi")
    gpu: GpuCount = Field(
        0, description="GPUs per replica: a whole number, or a fraction below 1 (0.5) to share one GPU"
    )
    gpu_memory: GpuMemory | None = Field(
        None, description="minimum free memory on each GPU: GiB (16) or a size (16Gi)"
    )
    gpu_type: str | None = Field(
        None, min_length=1, max_length=100,
        description="part of the GPU name, case-insensitive (e.g. A100, 4090)",
    )

    @model_validator(mode="after")
    def _gpu_options_need_gpu(self) -> ComputeSpec:
        for name in ("gpu_memory", "gpu_type"):
            if getattr(self, name) is not None and not self.gpu:
                raise ValueError(f"{name} needs a GPU: set compute.gpu (e.g. gpu: 1)")
        return self

    @property
    def gpu_count(self) -> int:
        """How many GPUs a replica is given (a fractional share still takes one)."""
        return 0 if not self.gpu else max(1, int(self.gpu))

    @property
    def gpu_share(self) -> float | None:
        """The share of its GPU a fractional replica uses; None for whole GPUs."""
        return float(self.gpu) if 0 < self.gpu < 1 else None


IN_FLIGHT = "in_flight"  # autoscaling.metric's default: the router's count of requests in flight
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$")


class AutoscalingSpec(_Strict):
    """Cortex's autoscaler settings; the controller uses them (validated here)."""

    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(100, ge=1, le=1000)
    init_replicas: int | None = Field(None, ge=0, le=1000)
    target_concurrency: float | None = Field(None, gt=0)
    window: float = Field(60.0, gt=0)
    downscale_stabilization_period: float = Field(300.0, ge=0)
    upscale_stabilization_period: float = Field(60.0, ge=0)
    max_downscale_factor: float = Field(0.75, gt=0, lt=1)
    max_upscale_factor: float = Field(1.5, gt=1)
    downscale_tolerance: float = Field(0.05, ge=0, lt=1)
    upscale_tolerance: float = Field(0.05, ge=0)
    metric: str = Field(IN_FLIGHT, description="what to scale on: the router's in-flight count "
                        "(default), or a gauge the replicas' metrics expose, e.g. vllm:num_requests_waiting")
    target: float | None = Field(None, gt=0, description="the metric's per-replica target "
                                 "(the in-flight count's is target_concurrency)")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not METRIC_NAME.match(value):
            raise ValueError(f"{value!r} is not a Prometheus metric name such as "
                             "vllm:num_requests_waiting")
        return value

    @model_validator(mode="after")
    def _metric_target(self) -> AutoscalingSpec:
        if self.metric != IN_FLIGHT and self.target is None:
            raise ValueError(f"autoscaling on {self.metric} needs its per-replica target: set "
                             "autoscaling.target (e.g. target: 2)")
        if self.metric == IN_FLIGHT and self.target is not None:
            raise ValueError("the in-flight count's target is target_concurrency; autoscaling.target "
                             "goes with a scraped autoscaling.metric")
        return self

    @property
    def scraped(self) -> bool:
        """Scaling on a gauge the controller scrapes from the replicas."""
        return self.metric != IN_FLIGHT

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})"
            )
        if self.init_replicas is not None and not (
            self.min_replicas <= self.init_replicas <= self.max_replicas
        ):
            raise ValueError("init_replicas must lie between min_replicas and max_replicas")
        return self


class ImageSpec(_Strict):
    base: str = Field("python:3.11-slim", description="base image with Python >= 3.10")
    apt: list[str] = Field(default_factory=list, description="extra Debian packages")
    pip: list[str] = Field(default_factory=list, description="extra pip requirements")
    wheelhouse: str | None = Field(None, description="folder of wheels; install with --no-index")
    offline: bool = Field(False, description="resolve wheels on the workstation, build without network")
    build_commands: list[list[str]] = Field(
        default_factory=list, description="commands (argv lists) run in the project after installing"
    )

    @field_validator("apt")
    @classmethod
    def _apt(cls, value: list[str]) -> list[str]:
        for item in value:
            if not APT_PACKAGE.match(item):
                raise ValueError(f"{item!r} is not a Debian package name")
        return value

    @field_validator("pip")
    @classmethod
    def _pip(cls, value: list[str]) -> list[str]:
        for item in value:
            if not PIP_REQUIREMENT.match(item.replace(" ", "")):
                raise ValueError(f"{item!r} is not a pip requirement such as numpy==2.1 or torch>=2")
        return value

    @field_validator("build_commands")
    @classmethod
    def _commands(cls, value: list[list[str]]) -> list[list[str]]:
        for command in value:
            if not command:
                raise ValueError(
                    "a build command must not be empty; write it as a list, e.g. [python, train.py]"
                )
        return value


Percent = Annotated[str, Field(pattern=r"^\d{1,3}%$")]

#: Paths the controller serves itself; an API may not take these names.
RESERVED_NAMES = frozenset({"v1", "metrics", "healthz", "readyz", "docs", "openapi", "api", "workbench",
                            "openai"})  # /openai/v1: the router's OpenAI front door
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$")


class OpenAISpec(_Strict):
    """The model names the router's OpenAI front door (/openai/v1) routes to this API."""

    models: list[str] = Field(description="the `model` values of requests this API serves")

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one model, e.g. models: [llama-3-8b]; or leave openai out")
        seen: set[str] = set()
        for name in value:
            if not MODEL_NAME.match(name):
                raise ValueError(f"{name!r} is not a model name: letters, digits and ._:/@+- , "
                                 "starting with a letter or digit, at most 256 characters")
            if name in seen:
                raise ValueError(f"{name!r} is named twice")
            seen.add(name)
        return value


AFFINITY_PROMPT = "prompt"
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


class RoutingSpec(_Strict):
    """How the router on the workstation spreads this API's requests over its replicas."""

    #: ewma (peak-EWMA, as Linkerd and Finagle) by default: with one replica stalled it kept 99.95%
    #: of requests within a 1 s timeout where p2c, blind to how long requests have been out, kept
    #: 99.74% (docs/benchmarks.md, balancing)
    policy: Literal["p2c", "least_outstanding", "round_robin", "ewma", "prefix"] = "ewma"
    #: policy: prefix — consistent hashing with bounded loads on a key of the request (its prompt's
    #: first characters, or a header), so requests sharing a prompt prefix meet a warm KV cache
    affinity: str = Field(AFFINITY_PROMPT, description="policy: prefix's key: prompt (the prompt's "
                          "or messages' first affinity_prefix characters) or header:NAME")
    affinity_prefix: int = Field(256, description="characters of the prompt that make the key")
    affinity_load_factor: float = Field(
        1.25, description="a replica takes at most this x the average in-flight load before a key "
        "spills to the next replica on the ring")
    timeout: float = Field(60.0, gt=0, le=3600,
                           description="seconds to the answer's first byte before the router answers 504")
    #: 60 s, as nginx's proxy_read_timeout and a cloud load balancer's idle timeout (Envoy's
    #: stream_idle_timeout is 5 min): long enough for a model server that pauses between tokens, short
    #: enough that a stalled stream does not hold a client and a replica's slot for minutes
    stream_idle_timeout: float = Field(
        60.0, gt=0, le=3600,
        description="seconds the router waits for the next chunk of an answer before it ends the stream")
    idempotent: bool = Field(True, description="retry after a partial send (predictions usually are)")
    max_retries: int = Field(2, ge=0, le=10)
    retry_budget: float = Field(0.2, ge=0, le=1, description="retries allowed as a share of requests")
    retry_budget_min: float = Field(10.0, ge=0, description="retries per second always allowed")
    eject_after: int = Field(5, ge=1, le=1000, description="consecutive failures that eject a replica")
    eject_seconds: float = Field(10.0, gt=0, le=3600, description="first ejection; doubles each time")
    max_ejected_percent: float = Field(50.0, ge=0, le=100)
    scale_from_zero_timeout: float = Field(
        300.0, gt=0, le=3600, description="how long a request waits while an API scaled to zero starts"
    )
    api_keys_env: str | None = Field(
        None, description="environment variable holding comma-separated API keys for this API"
    )

    @field_validator("affinity")
    @classmethod
    def _affinity(cls, value: str) -> str:
        if value == AFFINITY_PROMPT:
            return value
        kind, _, header = value.partition(":")
        if kind != "header" or not HEADER_NAME.match(header):
            raise ValueError(f"{value!r}: use prompt, or header:NAME (e.g. header:X-Session-ID)")
        return value

    @field_validator("affinity_prefix")
    @classmethod
    def _affinity_prefix(cls, value: int) -> int:
        if value <= 0 or value > 1_000_000:
            raise ValueError(f"{value}: the key's length in characters must be 1 to 1000000 (default 256)")
        return value

    @field_validator("affinity_load_factor")
    @classmethod
    def _load_factor(cls, value: float) -> float:
        if not 1.0 <= value <= 100.0:
            raise ValueError(f"{value}: a replica's bound is this x the average load, so it must be "
                             "1 to 100 (default 1.25)")
        return value

    @model_validator(mode="after")
    def _affinity_needs_prefix(self) -> RoutingSpec:
        if self.policy != "prefix":
            for name in _changed(self, ("affinity", "affinity_prefix", "affinity_load_factor")):
                raise ValueError(f"{name} applies to policy: prefix (this API's policy is {self.policy})")
        return self

    @property
    def affinity_header(self) -> str | None:
        """The header that makes the key (lowercase), or None when the prompt does."""
        kind, _, header = self.affinity.partition(":")
        return header.lower() if kind == "header" else None


class UpdateSpec(_Strict):
    """Rolling updates: how many replicas above desired may start, how many may be unready."""

    max_surge: int | Percent = "25%"
    max_unavailable: int | Percent = "25%"

    @model_validator(mode="after")
    def _can_progress(self) -> UpdateSpec:
        if self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("max_surge and max_unavailable cannot both be 0 (the update could not progress)")
        return self

    @staticmethod
    def resolve(value: int | str, desired: int, *, round_up: bool) -> int:
        if isinstance(value, int):
            return value
        share = int(value[:-1]) * desired / 100
        return int(-(-share // 1)) if round_up else int(share // 1)


class SplitTarget(_Strict):
    name: str
    weight: float = Field(ge=0, le=100)
    shadow: bool = Field(False, description="gets a copy of every request; its answer is dropped")


class TrafficSplitterSpec(_Strict):
    """An endpoint that routes by weight to other APIs (A/B tests, canaries), as Cortex's."""

    kind: Literal["traffic_splitter"]
    name: str
    apis: list[SplitTarget] = Field(min_length=1)
    openai: OpenAISpec | None = None  # a model name the splitter serves (a canary of a new version)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_api_name(value)

    @model_validator(mode="after")
    def _weights(self) -> TrafficSplitterSpec:
        served = [target for target in self.apis if not target.shadow]
        if not served:
            raise ValueError("at least one API must take real traffic (shadow: false)")
        if abs(sum(target.weight for target in served) - 100) > 1e-6:
            raise ValueError("the weights of the non-shadow APIs must add up to 100")
        if len([t for t in self.apis if t.shadow]) > 1:
            raise ValueError("at most one shadow API")
        if self.name in {target.name for target in self.apis}:
            raise ValueError("a traffic splitter cannot route to itself")
        return self


def _check_api_name(value: str) -> str:
    if not API_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid API name: use lowercase letters, digits and '-', "
            "starting with a letter, at most 63 characters"
        )
    if value in RESERVED_NAMES:
        raise ValueError(f"{value!r} is reserved by workbench; choose another name")
    return value


#: `serving` settings only the predictor runtime reads; a container API's server has its own.
PREDICTOR_ONLY_SERVING = {
    "max_queue": "the server queues requests itself",
    "max_batch_size": "the server batches requests itself",
    "batch_timeout": "the server batches requests itself",
    "request_timeout": "use routing.timeout",
    "startup_timeout": "use container.startup_timeout",
}
#: `image` settings of predictor images; a container's Dockerfile or image says its own.
PREDICTOR_ONLY_IMAGE = ("base", "apt")


def _changed(model: BaseModel, names: Any) -> list[str]:
    """Which of `names` hold another value than their default (a stored spec spells out all)."""
    fields = type(model).model_fields
    return [name for name in names
            if getattr(model, name) != fields[name].get_default(call_default_factory=True)]


class ApiSpec(_Strict):
    """One API: a predictor (or a container's own server), how to build it, where and how it runs.

    Field order matters: `container`'s checks read `predictor` and `runtime`, `serving`'s and
    `image`'s read `container` (pydantic validates fields in this order)."""

    kind: Literal["api"] = "api"
    name: str
    predictor: PredictorSpec | None = None  # set to the default predictor unless `container` is
    runtime: Literal["auto", "docker", "process"] = "auto"
    container: ContainerSpec | None = None
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    replicas: int | None = Field(None, ge=0, le=1000)
    autoscaling: AutoscalingSpec | None = None
    serving: ServingConfig = Field(default_factory=ServingConfig)
    image: ImageSpec = Field(default_factory=ImageSpec)
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    update: UpdateSpec = Field(default_factory=UpdateSpec)
    model: ModelSpec | None = Field(None, description="weights the replicas see read-only (not in the image)")
    models: list[ModelSpec] | None = Field(None, description="several models, each as `model`")
    openai: OpenAISpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_api_name(value)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[ModelSpec] | None, info: ValidationInfo) -> list[ModelSpec] | None:
        if value is None:
            return value
        if info.data.get("model") is not None:
            raise ValueError("set either model (one) or models (a list), not both")
        return check_models(value)

    @property
    def model_specs(self) -> list[ModelSpec]:
        """The API's models: `model`, or the `models` list (empty when it has none)."""
        if self.model is not None:
            return [self.model]
        return list(self.models or [])

    @field_validator("container")
    @classmethod
    def _container(cls, value: ContainerSpec | None, info: ValidationInfo) -> ContainerSpec | None:
        if value is None:
            return value
        if info.data.get("predictor") is not None:
            raise ValueError("set either predictor or container, not both: a container API runs its "
                             "own server in place of a predictor")
        runtime = info.data.get("runtime", "auto")
        has_image = value.image is not None or value.build is not None
        if runtime == "process" and not value.command:
            raise ValueError("runtime: process runs container.command on the host: set command "
                             "(e.g. [python, server.py])")
        if runtime == "docker" and not has_image:
            raise ValueError("set container.image (an image the host has or can pull) or "
                             "container.build (a Dockerfile in the project folder)")
        if not has_image and not value.command:
            raise ValueError("set container.image (an image the host has or can pull), container.build "
                             "(a Dockerfile in the project folder), or, for runtime: process, "
                             "container.command")
        return value

    @field_validator("serving")
    @classmethod
    def _serving(cls, value: ServingConfig, info: ValidationInfo) -> ServingConfig:
        if info.data.get("container") is not None:
            for name in sorted(_changed(value, PREDICTOR_ONLY_SERVING)):
                raise ValueError(f"{name} applies to predictors; a container API's server does not read "
                                 f"it ({PREDICTOR_ONLY_SERVING[name]})")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: ImageSpec, info: ValidationInfo) -> ImageSpec:
        if info.data.get("container") is not None:
            for name in _changed(value, PREDICTOR_ONLY_IMAGE):
                raise ValueError(f"image.{name} applies to predictor images; a container API's "
                                     "Dockerfile or image names its own")
        return value

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> ApiSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("set either replicas or autoscaling, not both")
        scaling = self.autoscaling
        if scaling is not None and scaling.scraped and self.container is not None \
                and self.container.metrics is None:
            raise ValueError(f"autoscaling on {scaling.metric} reads the server's metrics: set "
                             "container.metrics to their path (e.g. metrics: /metrics)")
        if self.container is None and self.predictor is None:
            self.predictor = PredictorSpec()
        return self

    @property
    def startup_timeout(self) -> float:
        """Seconds a replica may take to turn ready."""
        if self.container is not None:
            return self.container.startup_timeout
        return self.serving.startup_timeout

    @property
    def desired_replicas(self) -> int:
        if self.replicas is not None:
            return self.replicas
        if self.autoscaling is not None:
            scaling = self.autoscaling
            if scaling.init_replicas is not None:
                return scaling.init_replicas
            return max(scaling.min_replicas, 1)
        return 1
