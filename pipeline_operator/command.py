"""`alertops operator`: run the kopf operator for PipelineStep and TrainingSetBuild."""
from __future__ import annotations

import argparse
import os
import sys

from step_runtime.cli import port_number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `alertops operator`."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", metavar="NS",
                       help="watch this namespace (repeatable; default: $ALERTOPS_WATCH_NAMESPACE or all)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument("--selector", "-l", default=os.environ.get("ALERTOPS_OPERATOR_SELECTOR"), metavar="SELECTOR",
                        help="handle only resources whose labels match (key=value, key!=value, key, !key; "
                             "comma = and; default: $ALERTOPS_OPERATOR_SELECTOR or all)")
    # String defaults go through `type` at parse time: a bad env value is a one-line usage error.
    parser.add_argument("--liveness-port", type=port_number, default=os.environ.get("ALERTOPS_LIVENESS_PORT", "8081"),
                        help="serve kopf's liveness probe at :PORT/healthz (0: off; default 8081)")
    parser.add_argument("--metrics-port", type=port_number, default=os.environ.get("ALERTOPS_METRICS_PORT", "8082"),
                        help="serve Prometheus metrics at :PORT/metrics (0: off; default 8082)")
    parser.add_argument("--default-image", default=os.environ.get("ALERTOPS_DEFAULT_IMAGE"),
                        help="runtime image of every PipelineStep and TrainingSetBuild whose spec.image is unset "
                             "(default: $ALERTOPS_DEFAULT_IMAGE or ghcr.io/alertops/alertops:0.1.0)")
    parser.add_argument("--log-format", choices=("json", "text"), default=os.environ.get("ALERTOPS_LOG_FORMAT", "json"),
                        help="log lines as JSON (default) or plain text")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def namespaces_from(args: argparse.Namespace) -> tuple[bool, list[str]]:
    """(clusterwide, namespaces) from the flags and $ALERTOPS_WATCH_NAMESPACE (comma-separated)."""
    if args.all_namespaces:
        return True, []
    if args.namespace:
        return False, list(args.namespace)
    env = [n.strip() for n in os.environ.get("ALERTOPS_WATCH_NAMESPACE", "").split(",") if n.strip()]
    return (False, env) if env else (True, [])


def main(args: argparse.Namespace) -> int:
    """Run the operator until SIGINT/SIGTERM."""
    import kopf
    from prometheus_client import start_http_server

    from pipeline_operator.selector import SelectorError, parse_selector

    try:
        selector = parse_selector(args.selector)
    except SelectorError as exc:
        print(f"alertops operator: --selector: {exc}", file=sys.stderr)
        return 2
    from pipeline_operator import handlers
    from pipeline_operator.children import RenderSettings

    registry = kopf.OperatorRegistry()
    handlers.register(registry, selector)

    clusterwide, namespaces = namespaces_from(args)
    kopf.configure(debug=args.verbose, verbose=args.verbose,
                   log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL)
    if args.metrics_port:
        try:
            start_http_server(args.metrics_port)
        except OSError as exc:
            print(f"alertops operator: cannot serve metrics on port {args.metrics_port}: {exc}", file=sys.stderr)
            return 2
    memo = kopf.Memo()
    if args.default_image:
        memo["render_settings"] = RenderSettings(default_image=args.default_image)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    kopf.run(
        clusterwide=clusterwide,
        namespaces=namespaces,
        standalone=True,  # one replica with Recreate: no peering objects needed
        liveness_endpoint=liveness,
        memo=memo,
        registry=registry,
    )
    return 0
