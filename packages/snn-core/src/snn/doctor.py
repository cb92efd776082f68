"""``snn doctor``: what is installed, what can run here, and what failed.

:func:`collect` builds the report as plain data (JSON-serialisable); :func:`render_table` and
:func:`render_json` turn it into text. The CLI (:mod:`snn.cli`) calls :func:`add_arguments` and
:func:`run`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from typing import Any, TextIO

from snn.errors import FIRST_PARTY_PLUGINS, install_hint

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

    Its keys:

    - ``snn``, ``torch``, ``python``, ``platform``: versions;
    - ``cuda``: whether CUDA is available and the device names;
    - ``switches``: the plugin environment switches as set;
    - ``switch_notes``: what the switches did, one sentence each (plugins not loaded or
      disabled, in-tree plugins that cannot be disabled);
    - ``plugins``: one ``{name, distribution, version, error}`` per plugin; ``error`` is
      ``None`` or the recorded failures of that plugin;
    - ``neurons``: one ``{name, plugin, distribution, version, states, parameters, learnables,
      description}`` per registered neuron model;
    - ``backends``: one ``{name, plugin, distribution, version, available, reason, devices,
      emulated_devices, dtypes, surrogates, kernels, auto_priority, description}`` per backend;
      ``kernels`` lists ``"<model>/<kernel mode>"`` for every registered model it serves;
    - ``missing_backends``: one ``{name, distribution, installed, from_index, from_checkout}``
      per backend of a first-party plugin that is not registered; ``installed`` is the
      installed version of the distribution (the plugin was then disabled or failed) or
      ``None``, and the two commands install it from a package index or from a checkout of the
      snn repository;
    - ``strategies``, ``losses``, ``learners``: one ``{name, plugin, distribution, version,
      description}`` each (losses also ``signature`` when registered);
    - ``failures``: one ``{plugin, distribution, version, stage, error, clash_name, clash_with,
      message}`` per recorded failure.
    """
    import torch

    import snn
    from snn.plugins import get_registry

    registry = get_registry()

    # a failure belongs to a loaded plugin's row when it names that plugin and (if it knows it)
    # the same distribution: a distribution refused for an entry-point name another one holds
    # gets a row of its own, not the holder's
    errors: dict[tuple[str, str | None], list[str]] = {}
    for failure in registry.failures:
        origin = registry.plugins.get(failure.plugin)
        same = origin is not None and failure.distribution in (None, origin.distribution)
        key = (failure.plugin, origin.distribution if same and origin is not None else failure.distribution)
        errors.setdefault(key, []).append(failure.describe())

    plugin_rows = []
    for name, origin in registry.plugins.items():
        found = errors.pop((name, origin.distribution), None)
        plugin_rows.append(
            {
                "name": name,
                "distribution": origin.distribution,
                "version": origin.version,
                "error": "; ".join(found) if found else None,
            }
        )
    for failure in registry.failures:
        found = errors.pop((failure.plugin, failure.distribution), None)
        if found:
            plugin_rows.append(
                {
                    "name": failure.plugin,
                    "distribution": failure.distribution,
                    "version": failure.version,
                    "error": "; ".join(found),
                }
            )

    neuron_rows = []
    for name, item in registry.models.items():
        model = item.implementation
        neuron_rows.append(
            {
                "name": name,
                "plugin": item.provenance.plugin,
                "distribution": item.provenance.distribution,
                "version": item.provenance.version,
                "states": list(model.state_names),
                "parameters": list(model.hyperparameter_names),
                "learnables": list(model.learnables),
                "description": item.description,
            }
        )

    backend_rows = []
    for name, info in registry.backends.items():
        reason = info.unavailable_reason()
        kernels = [
            f"{model_name}/{mode}"
            for model_name, item in registry.models.items()
            for mode in ("multi_step", "single_step")
            if info.serves_model(item.implementation, mode)
        ]
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
                "surrogates": sorted(info.claimed_surrogates()),
                "kernels": sorted(kernels),
                "auto_priority": info.auto_priority,
                "description": info.description,
            }
        )

    missing_backends = []
    for plugin in FIRST_PARTY_PLUGINS.values():
        for name in plugin.backends:
            if name in registry.backends:
                continue
            missing_backends.append(
                {
                    "name": name,
                    "distribution": plugin.distribution,
                    "installed": _installed_version(plugin.distribution),
                    "from_index": plugin.from_index,
                    "from_checkout": plugin.from_checkout,
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
            "SNN_TRACE_PLUGINS": os.environ.get("SNN_TRACE_PLUGINS", ""),
        },
        "switch_notes": list(registry.switches),
        "plugins": plugin_rows,
        "neurons": neuron_rows,
        "backends": backend_rows,
        "missing_backends": missing_backends,
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


def _installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None`` when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


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
    lines += [f"  {note}" for note in report.get("switch_notes", [])]

    lines += ["", "Plugins"]
    lines += _table(
        ["name", "distribution", "status"],
        [[p["name"], _origin(p), "ok" if p["error"] is None else "FAILED"] for p in report["plugins"]],
    )
    lines += ["", "Neuron models"]
    lines += _table(
        ["name", "plugin", "states", "parameters"],
        [
            [n["name"], n["plugin"], ", ".join(n["states"]), ", ".join(n["parameters"] + [f"{p} (learnable)" for p in n["learnables"]])]
            for n in report["neurons"]
        ],
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
    for missing in report.get("missing_backends", []):
        if missing["installed"] is None:
            lines += [
                f"  {missing['name']} ({missing['distribution']}): not installed; install it with",
                f"    {missing['from_index']}",
                f"    or, from a checkout of the snn repository (at its root): {missing['from_checkout']}",
            ]
        else:
            lines.append(
                f"  {missing['name']} ({missing['distribution']} {missing['installed']}): installed but not "
                "registered (plugin disabled or failed: see the switches and Failures)"
            )
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
            lines.append(f"  install the online learners with: {install_hint('online')}")
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
