"""``snn doctor``: what is installed, what can run here, and what failed.

:func:`collect` builds the report as plain data (JSON-serialisable); :func:`render_table` and
:func:`render_json` turn it into text. The CLI (:mod:`snn.cli`) calls :func:`add_arguments` and
:func:`run`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any, TextIO

__all__ = ["DESCRIPTION", "collect", "render_table", "render_json", "add_arguments", "run"]

#: One line for ``snn --help``.
DESCRIPTION = "show installed plugins, backends, strategies, losses, learners and plugin failures"


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _item(item: Any) -> dict[str, Any]:
    entry = {
        "name": item.name,
        "plugin": item.provenance.plugin,
        "distribution": item.provenance.distribution,
        "version": item.provenance.version,
        "description": item.description,
    }
    signature = item.metadata.get("signature")
    if signature is not None:
        entry["signature"] = str(signature)
    return entry


def collect() -> dict[str, Any]:
    """The doctor report as a JSON-serialisable dict.

    Keys:
        ``snn`` / ``torch`` / ``python`` / ``platform``: versions.
        ``cuda``: whether CUDA is available and the device names.
        ``switches``: the plugin environment switches as set.
        ``plugins``: ``[{name, distribution, version, error}]``; ``error`` is ``None`` or the
            recorded failures of that plugin.
        ``backends``: ``[{name, plugin, distribution, version, available, reason, devices,
            emulated_devices, dtypes, surrogates, kernels, auto_priority, description}]``.
        ``strategies`` / ``losses`` / ``learners``: ``[{name, plugin, distribution, version,
            description}]`` (losses also ``signature`` when registered).
        ``failures``: ``[{plugin, distribution, version, stage, error, clash_name, clash_with,
            message}]``.
    """
    import torch

    import snn
    from snn.plugins import get_registry

    registry = get_registry()

    errors: dict[str, list[str]] = {}
    for failure in registry.failures:
        errors.setdefault(failure.plugin, []).append(failure.describe())

    plugin_rows = []
    for name, origin in registry.plugins.items():
        plugin_rows.append(
            {
                "name": name,
                "distribution": origin.distribution,
                "version": origin.version,
                "error": "; ".join(errors[name]) if name in errors else None,
            }
        )
    for failure in registry.failures:
        if failure.plugin not in registry.plugins and all(r["name"] != failure.plugin for r in plugin_rows):
            plugin_rows.append(
                {
                    "name": failure.plugin,
                    "distribution": failure.distribution,
                    "version": failure.version,
                    "error": "; ".join(errors[failure.plugin]),
                }
            )

    backend_rows = []
    for name, info in registry.backends.items():
        reason = info.unavailable_reason()
        backend_rows.append(
            {
                "name": name,
                "plugin": info.provenance.plugin,
                "distribution": info.provenance.distribution,
                "version": info.provenance.version,
                "available": reason is None,
                "reason": reason,
                "devices": sorted(info.devices),
                "emulated_devices": sorted(info.emulated_devices),
                "dtypes": sorted(_dtype_name(d) for d in info.dtypes),
                "surrogates": sorted(info.surrogates),
                "kernels": sorted(f"{kind}/{mode}" for kind, mode in info.kernels),
                "auto_priority": info.auto_priority,
                "description": info.description,
            }
        )

    cuda_available = torch.cuda.is_available()
    return {
        "snn": snn.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": {
            "available": cuda_available,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if cuda_available
            else [],
        },
        "switches": {
            "SNN_DISABLE_PLUGIN_AUTOLOAD": os.environ.get("SNN_DISABLE_PLUGIN_AUTOLOAD", ""),
            "SNN_DISABLED_PLUGINS": os.environ.get("SNN_DISABLED_PLUGINS", ""),
        },
        "plugins": plugin_rows,
        "backends": backend_rows,
        "strategies": [_item(i) for i in registry.strategies.values()],
        "losses": [_item(i) for i in registry.losses.values()],
        "learners": [_item(i) for i in registry.learners.values()],
        "failures": [
            {
                "plugin": f.plugin,
                "distribution": f.distribution,
                "version": f.version,
                "stage": f.stage,
                "error": f.error,
                "clash_name": f.clash_name,
                "clash_with": f.clash_with,
                "message": f.describe(),
            }
            for f in registry.failures
        ],
    }


def render_json(report: dict[str, Any]) -> str:
    """The report as one indented JSON object."""
    return json.dumps(report, indent=2, sort_keys=False)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    rule = "  " + "  ".join("-" * w for w in widths)
    body = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return [line.rstrip(), rule, *(b.rstrip() for b in body)]


def _origin(row: dict[str, Any]) -> str:
    if row.get("distribution"):
        return f"{row['distribution']} {row.get('version') or '?'}"
    return "-"


def render_table(report: dict[str, Any]) -> str:
    """The report as human-readable tables."""
    cuda = report["cuda"]
    lines = [
        f"snn {report['snn']}  torch {report['torch']}  python {report['python']}",
        f"platform: {report['platform']}",
        "cuda: " + (", ".join(cuda["devices"]) if cuda["available"] else "not available"),
    ]
    switches = {k: v for k, v in report["switches"].items() if v}
    if switches:
        lines.append("switches: " + ", ".join(f"{k}={v}" for k, v in switches.items()))

    lines += ["", "Plugins"]
    lines += _table(
        ["name", "distribution", "status"],
        [[p["name"], _origin(p), "ok" if p["error"] is None else "FAILED"] for p in report["plugins"]],
    )
    lines += ["", "Backends"]
    if not report["backends"]:
        lines.append("  (none)")
    for b in report["backends"]:
        status = "available" if b["available"] else f"NOT AVAILABLE: {b['reason']}"
        devices = b["devices"] + [f"{d} (emulated)" for d in b["emulated_devices"]]
        lines += [
            f"  {b['name']} (plugin {b['plugin']}, {_origin(b)}): {status}",
            f"    devices:    {', '.join(devices) or '-'}",
            f"    dtypes:     {', '.join(b['dtypes']) or '-'}",
            f"    kernels:    {', '.join(b['kernels']) or '-'}",
            f"    surrogates: {', '.join(b['surrogates']) or '-'}",
        ]
    for title, key in (
        ("Forward strategies", "strategies"),
        ("Losses", "losses"),
        ("Online learners", "learners"),
    ):
        lines += ["", title]
        lines += _table(
            ["name", "plugin", "description"],
            [[i["name"], i["plugin"], i["description"]] for i in report[key]],
        )
        if key == "learners" and not report[key]:
            lines.append('  install the online learners with: pip install "snn-core[online]"')
    lines += ["", "Failures"]
    if report["failures"]:
        lines += [f"  - {f['message']}" for f in report["failures"]]
    else:
        lines.append("  (none)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``snn doctor`` options to ``parser``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def run(args: argparse.Namespace, *, stdout: TextIO | None = None) -> int:
    """Print the report; exit status 1 when a plugin failure was recorded, else 0.

    Args:
        args: the namespace parsed by a parser prepared with :func:`add_arguments`.
        stdout: where to write (default :data:`sys.stdout`).
    """
    report = collect()
    text = render_json(report) if args.json else render_table(report)
    (stdout or sys.stdout).write(text + "\n")
    return 1 if report["failures"] else 0
