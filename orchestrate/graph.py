"""The topology as a picture: Mermaid text, and Graphviz DOT for an SVG."""

from __future__ import annotations

import shutil
import subprocess

from .model import Cluster


def _id(name: str) -> str:
    return name.replace("-", "_")


def mermaid(cluster: Cluster) -> str:
    """A Mermaid flowchart: networks as subnets, master and workers attached to them."""
    lines = ["flowchart LR"]
    m = cluster.master_name
    lines.append(f'    {_id(m)}["{m}<br/>master :{cluster.master.port}"]')
    for net in cluster.networks:
        flag = "internal" if net.internal else "external"
        lines.append(f'    {_id("net-" + net.name)}(("{net.name}<br/>{net.subnet}<br/>{flag}"))')
    for slot in cluster.iter_workers():
        lines.append(f'    {_id(slot.name)}["{slot.name}<br/>worker ({slot.group.name})"]')
    for net in cluster.master.networks:
        lines.append(f"    {_id(m)} --- {_id('net-' + net)}")
    for slot in cluster.iter_workers():
        for net in slot.group.networks:
            lines.append(f"    {_id('net-' + net)} --- {_id(slot.name)}")
    return "\n".join(lines) + "\n"


def dot(cluster: Cluster) -> str:
    """The same picture in Graphviz DOT."""
    lines = [f'graph "{cluster.name}" {{', "  rankdir=LR; node [fontname=Helvetica];"]
    m = cluster.master_name
    lines.append(
        f'  "{m}" [shape=box, style=filled, fillcolor="#ffe0a0", '
        f'label="{m}\\nmaster :{cluster.master.port}"];'
    )
    for net in cluster.networks:
        lines.append(f'  "net:{net.name}" [shape=ellipse, label="{net.name}\\n{net.subnet}"];')
    for slot in cluster.iter_workers():
        lines.append(f'  "{slot.name}" [shape=box, label="{slot.name}\\n{slot.group.name}"];')
    for net in cluster.master.networks:
        lines.append(f'  "{m}" -- "net:{net}";')
    for slot in cluster.iter_workers():
        for net in slot.group.networks:
            lines.append(f'  "net:{net}" -- "{slot.name}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


GRAPHVIZ_MISSING = (
    "graph --svg needs Graphviz's `dot` on PATH (apt-get install graphviz); "
    "without --svg the Mermaid text needs nothing"
)


def graphviz() -> str | None:
    """The path of Graphviz's ``dot``, or None: asked before anything is printed or written."""
    return shutil.which("dot")


def svg(cluster: Cluster) -> str | None:
    """SVG text rendered by Graphviz's ``dot``, or None where Graphviz is not installed."""
    exe = graphviz()
    if exe is None:
        return None
    res = subprocess.run(
        [exe, "-Tsvg"], input=dot(cluster), capture_output=True, text=True, check=True, timeout=60
    )
    return res.stdout
