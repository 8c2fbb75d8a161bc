"""Prometheus text for the agent's GET /metrics: per-GPU gauges and the sampler's own cost."""

from __future__ import annotations

from workbench.agent.gpu.service import GpuService

_GAUGES = (
    ("workbench_gpu_utilization_percent", "GPU utilization (percent)", "utilization_gpu"),
    ("workbench_gpu_memory_utilization_percent", "GPU memory controller utilization", "utilization_memory"),
    ("workbench_gpu_memory_used_bytes", "GPU memory used", "memory_used_bytes"),
    ("workbench_gpu_memory_total_bytes", "GPU memory total", "memory_total_bytes"),
    ("workbench_gpu_temperature_celsius", "GPU temperature", "temperature_c"),
    ("workbench_gpu_power_watts", "GPU power draw", "power_draw_w"),
    ("workbench_gpu_power_limit_watts", "GPU power limit", "power_limit_w"),
    ("workbench_gpu_allocated_share", "share of the GPU pinned to replicas", "allocated_share"),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(service: GpuService) -> str:
    """Prometheus text exposition; values the GPU cannot report (N/A) are left out."""
    gpus = service.gpus()
    simulated = "true" if service.simulated else "false"
    lines = [
        "# HELP workbench_gpu_up 1 when the GPU answers, 0 when it is lost",
        "# TYPE workbench_gpu_up gauge",
    ]
    labels = {}
    for g in gpus:
        labels[g.index] = (f'gpu="{g.index}",uuid="{_escape(g.uuid or "")}",'
                           f'name="{_escape(g.name or "")}",simulated="{simulated}"')
        lines.append(f"workbench_gpu_up{{{labels[g.index]}}} {0 if g.error else 1}")
    for metric, help_text, attr in _GAUGES:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for g in gpus:
            value = getattr(g, attr)
            if value is not None:
                text = str(value) if isinstance(value, int) else repr(float(value))
                lines.append(f"{metric}{{{labels[g.index]}}} {text}")
    sampler = service.sampler
    lines += [
        "# HELP workbench_gpu_sampler_cpu_seconds_total CPU time used by the GPU sampler thread",
        "# TYPE workbench_gpu_sampler_cpu_seconds_total counter",
        f"workbench_gpu_sampler_cpu_seconds_total {sampler.cpu_seconds:.6f}",
        "# HELP workbench_gpu_sampler_samples_total samples taken",
        "# TYPE workbench_gpu_sampler_samples_total counter",
        f"workbench_gpu_sampler_samples_total {sampler.samples}",
    ]
    return "\n".join(lines) + "\n"
