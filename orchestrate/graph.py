"""The topology as a picture: Mermaid text, and Graphviz DOT for an SVG."""

from __future__ import annotations

import shutil
import subprocess

from .model import Cluster


def _id(name: str) -> str:
    return name.replace("-", "_")


def _placed(cluster: Cluster) -> dict[str, list[str]]:
    """Container name -> the hosts it may run on (none on the local backend)."""
    if cluster.backend == "local":
        return {}
    where = {cluster.master_name: [h.name for h in cluster.master_hosts()]}
    for slot in cluster.iter_workers():
        where[slot.name] = [h.name for h in cluster.group_hosts(slot.group)]
    return where


def _on(hosts: list[str], pinned: bool, newline: str) -> str:
    """A node label's suffix naming the hosts of a container not drawn inside its host."""
    return "" if pinned or not hosts else f"{newline}on {', '.join(hosts)}"


def mermaid(cluster: Cluster) -> str:
    """A Mermaid flowchart: networks as subnets, master and workers attached to them; on a
    swarm, a box per host around what placement pins to it (the rest says where it may run)."""
    where = _placed(cluster)
    nodes: dict[str, str] = {}  # container name -> its node line
    m = cluster.master_name
    on = _on(where.get(m, []), len(where.get(m, [])) == 1, "<br/>")
    nodes[m] = f'{_id(m)}["{m}<br/>master :{cluster.master.port}{on}"]'
    for slot in cluster.iter_workers():
        hosts = where.get(slot.name, [])
        on = _on(hosts, len(hosts) == 1, "<br/>")
        nodes[slot.name] = f'{_id(slot.name)}["{slot.name}<br/>worker ({slot.group.name}){on}"]'
    lines = ["flowchart LR"]
    for host in cluster.hosts:
        inside = [name for name, hosts in where.items() if hosts == [host.name]]
        if inside:
            title = f"{host.name}<br/>{host.address} ({host.role})"
            lines.append(f'    subgraph {_id("host__" + host.name)}["{title}"]')
            lines += [f"        {nodes.pop(name)}" for name in inside]
            lines.append("    end")
    lines += [f"    {line}" for line in nodes.values()]
    for net in cluster.networks:
        flag = "internal" if net.internal else "external"
        lines.append(f'    {_id("net-" + net.name)}(("{net.name}<br/>{net.subnet}<br/>{flag}"))')
    for net in cluster.master.networks:
        lines.append(f"    {_id(m)} --- {_id('net-' + net)}")
    for slot in cluster.iter_workers():
        for net in slot.group.networks:
            lines.append(f"    {_id('net-' + net)} --- {_id(slot.name)}")
    return "\n".join(lines) + "\n"


def dot(cluster: Cluster) -> str:
    """The same picture in Graphviz DOT."""
    where = _placed(cluster)
    nodes: dict[str, str] = {}
    m = cluster.master_name
    on = _on(where.get(m, []), len(where.get(m, [])) == 1, "\\n")
    nodes[m] = (
        f'"{m}" [shape=box, style=filled, fillcolor="#ffe0a0", '
        f'label="{m}\\nmaster :{cluster.master.port}{on}"];'
    )
    for slot in cluster.iter_workers():
        hosts = where.get(slot.name, [])
        on = _on(hosts, len(hosts) == 1, "\\n")
        nodes[slot.name] = (
            f'"{slot.name}" [shape=box, label="{slot.name}\\n{slot.group.name}{on}"];'
        )
    lines = [f'graph "{cluster.name}" {{', "  rankdir=LR; node [fontname=Helvetica];"]
    for host in cluster.hosts:
        inside = [name for name, hosts in where.items() if hosts == [host.name]]
        if inside:
            lines.append(f'  subgraph "cluster_host:{host.name}" {{')
            lines.append(f'    label="{host.name}\\n{host.address} ({host.role})";')
            lines += [f"    {nodes.pop(name)}" for name in inside]
            lines.append("  }")
    lines += [f"  {line}" for line in nodes.values()]
    for net in cluster.networks:
        lines.append(f'  "net:{net.name}" [shape=ellipse, label="{net.name}\\n{net.subnet}"];')
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
