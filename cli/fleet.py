"""`sentinel fleet ls` and `sentinel fleet show NODE`."""

from __future__ import annotations

import argparse

from cli.client import (
    add_client_arguments,
    age,
    load_config,
    open_channel,
    print_json,
    print_table,
    to_json,
)
from sentinel.v1 import fleet_pb2, fleet_pb2_grpc, telemetry_pb2

GIB = 1024**3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("fleet", help="the hub's view of the fleet")
    commands = parser.add_subparsers(dest="fleet_command", required=True, metavar="CMD")
    ls = commands.add_parser("ls", help="list nodes")
    ls.add_argument(
        "-l",
        "--selector",
        default="",
        metavar="SELECTOR",
        help="label selector, e.g. 'role=gpu,zone in (a,b)'",
    )
    add_client_arguments(ls)
    ls.set_defaults(func=_ls)
    show = commands.add_parser("show", help="show one node")
    show.add_argument("node_id", metavar="NODE")
    add_client_arguments(show)
    show.set_defaults(func=_show)


def list_all_nodes(stub: fleet_pb2_grpc.FleetServiceStub, selector: str) -> list[fleet_pb2.Node]:
    nodes: list[fleet_pb2.Node] = []
    token = ""
    while True:
        page = stub.ListNodes(
            fleet_pb2.ListNodesRequest(label_selector=selector, page_token=token, page_size=500),
            timeout=30,
        )
        nodes.extend(page.nodes)
        token = page.next_page_token
        if not token:
            return nodes


def _ls(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with open_channel(config) as channel:
        nodes = list_all_nodes(fleet_pb2_grpc.FleetServiceStub(channel), args.selector)
    if args.output == "json":
        print_json({"nodes": [to_json(n) for n in nodes]})
        return 0
    rows = [_summary_row(n) for n in nodes]
    print_table(
        ["NODE", "STATE", "LAST SEEN", "CPU", "MEM", "GPUS", "GPU UTIL", "GPU POWER", "LABELS"],
        rows,
    )
    return 0


def _summary_row(node: fleet_pb2.Node) -> list[str]:
    host = node.latest_sample.host
    gpus = node.latest_sample.gpus
    mem = (
        f"{100 * host.memory_used_bytes / host.memory_total_bytes:.0f}%"
        if host.memory_total_bytes
        else "-"
    )
    util = [g.utilization_gpu_percent for g in gpus if g.HasField("utilization_gpu_percent")]
    power = [g.power_w for g in gpus if g.HasField("power_w")]
    return [
        node.node_id,
        fleet_pb2.NodeState.Name(node.state).removeprefix("NODE_STATE_").lower(),
        age(node.last_seen),
        f"{host.cpu_percent:.0f}%" if node.HasField("latest_sample") else "-",
        mem,
        str(len(node.gpus)),
        f"{sum(util) / len(util):.0f}%" if util else "-",
        f"{sum(power):.0f} W" if power else "-",
        ",".join(f"{k}={v}" for k, v in sorted(node.labels.items())) or "-",
    ]


def _show(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    with open_channel(config) as channel:
        node = (
            fleet_pb2_grpc.FleetServiceStub(channel)
            .GetNode(fleet_pb2.GetNodeRequest(node_id=args.node_id), timeout=30)
            .node
        )
    if args.output == "json":
        print_json(to_json(node))
        return 0
    _print_node(node)
    return 0


def _print_node(node: fleet_pb2.Node) -> None:
    host, sample, counters = node.host, node.latest_sample, node.counters
    state = fleet_pb2.NodeState.Name(node.state).removeprefix("NODE_STATE_").lower()
    print_table(
        ["FIELD", "VALUE"],
        [
            ["node", node.node_id],
            ["state", state],
            ["last seen", age(node.last_seen)],
            ["sample taken", age(sample.time)],
            ["agent", node.agent_version],
            ["boot id", node.boot_id],
            ["host", f"{host.hostname} ({host.os} {host.kernel}, {host.architecture})"],
            [
                "cpu",
                f"{host.cpu_count} x {host.cpu_model or '?'}; {sample.host.cpu_percent:.1f}% "
                f"busy; load {sample.host.load1:.2f}",
            ],
            [
                "memory",
                f"{sample.host.memory_used_bytes / GIB:.1f} / "
                f"{host.memory_total_bytes / GIB:.1f} GiB",
            ],
            ["gpu backend", host.gpu_backend or "-"],
            ["labels", ",".join(f"{k}={v}" for k, v in sorted(node.labels.items())) or "-"],
            [
                "telemetry",
                f"{counters.batches_received} batches, {counters.samples_received} "
                f"samples, {counters.duplicates_dropped} duplicates dropped, "
                f"{counters.gaps_announced} gaps, last acked seq {counters.last_acked_seq}",
            ],
        ],
    )
    if node.gpus:
        print()
        metrics = {g.index: g for g in sample.gpus}
        print_table(
            ["GPU", "NAME", "UTIL", "MEM USED", "TEMP", "POWER", "SM CLOCK", "UUID"],
            [_gpu_row(inv, metrics.get(inv.index)) for inv in node.gpus],
        )


def _gpu_row(inv: telemetry_pb2.GpuInventory, m: telemetry_pb2.GpuMetrics | None) -> list[str]:
    def field(name: str, fmt: str) -> str:
        return fmt.format(getattr(m, name)) if m is not None and m.HasField(name) else "-"

    return [
        str(inv.index),
        inv.name,
        field("utilization_gpu_percent", "{}%"),
        f"{field('memory_used_bytes', '{}')} / {inv.memory_total_bytes}"
        if m is None or not m.HasField("memory_used_bytes")
        else f"{m.memory_used_bytes / GIB:.1f} / {inv.memory_total_bytes / GIB:.1f} GiB",
        field("temperature_gpu_c", "{} C"),
        field("power_w", "{:.0f} W"),
        field("clock_sm_mhz", "{} MHz"),
        inv.uuid,
    ]
