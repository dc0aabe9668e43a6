"""The topology as a picture: Mermaid text, Graphviz DOT for an SVG, and Cytoscape.js elements
for the dashboard, all three the same drawing."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

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


#: Where ``elements`` puts the three columns of Mermaid's ``flowchart LR``, and the row pitch.
COLUMNS = {"master": 0, "network": 260, "worker": 520}
ROW = 80


def elements(
    cluster: Cluster,
    where: dict[str, list[str]] | None = None,
    machines: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The same picture as Cytoscape.js elements: ``data`` (``id``, ``label``, ``kind``,
    ``parent`` for what a machine box holds) and a ``position``. As in ``mermaid``: the
    master, then its networks, then the workers, left to right, and a box per machine around
    what is pinned to it. ``where`` (container -> machines) replaces the placement the model
    allows with where the engine put each container; ``machines`` (name -> title) names the
    boxes (default: the file's hosts). Positions are laid out here, rows in the model's
    order, so that the page needs no layout library; with machine boxes the page lays them
    out itself (a box spans columns)."""
    where = _placed(cluster) if where is None else where
    if machines is None:
        machines = {h.name: f"{h.name}\n{h.address} ({h.role})" for h in cluster.hosts}
    m = cluster.master_name
    out: list[dict[str, Any]] = []
    boxes = {hosts[0] for hosts in where.values() if len(hosts) == 1 and hosts[0] in machines}
    for name in sorted(boxes):
        out.append({"data": {"id": f"host:{name}", "label": machines[name], "kind": "machine"}})

    def node(name: str, label: str, kind: str, x: float, y: float) -> dict[str, Any]:
        hosts = where.get(name, [])
        data: dict[str, Any] = {"id": name, "label": label + _on(hosts, len(hosts) == 1, "\n")}
        data["kind"] = kind
        if len(hosts) == 1 and hosts[0] in boxes:
            data["parent"] = f"host:{hosts[0]}"
        return {"data": data, "position": {"x": x, "y": y}}

    slots = list(cluster.iter_workers())
    rows = {slot.name: i * ROW for i, slot in enumerate(slots)}
    net_rows: dict[str, float] = {}
    for i, net in enumerate(cluster.networks):
        attached = [rows[s.name] for s in slots if net.name in s.group.networks]
        net_rows[net.name] = sum(attached) / len(attached) if attached else i * ROW
    on_master = [net_rows[n] for n in cluster.master.networks]
    out.append(
        node(
            m,
            f"{m}\nmaster :{cluster.master.port}",
            "master",
            COLUMNS["master"],
            sum(on_master) / len(on_master) if on_master else 0,
        )
    )
    for net in cluster.networks:
        flag = "internal" if net.internal else "external"
        out.append(
            {
                "data": {
                    "id": f"net:{net.name}",
                    "label": f"{net.name}\n{net.subnet}\n{flag}",
                    "kind": "network",
                },
                "position": {"x": COLUMNS["network"], "y": net_rows[net.name]},
            }
        )
    for slot in slots:
        label = f"{slot.name}\nworker ({slot.group.name})"
        out.append(node(slot.name, label, "worker", COLUMNS["worker"], rows[slot.name]))
    for net in cluster.master.networks:
        out.append({"data": {"id": f"{m}--{net}", "source": m, "target": f"net:{net}"}})
    for slot in slots:
        for net in slot.group.networks:
            edge = {"id": f"{net}--{slot.name}", "source": f"net:{net}", "target": slot.name}
            out.append({"data": edge})
    return out


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
