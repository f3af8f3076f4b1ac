"""Command line: ``python -m pipeline_lib info|view|serve|plan ...`` (``--help`` for each)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline_lib.errors import UserError


def _info(args: argparse.Namespace) -> None:
    from pipeline_lib.report import format_record, read_record

    record = read_record(args.output)
    print(json.dumps(record, indent=2, default=str) if args.json else format_record(record).rstrip())


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        print(f"wrote {output}", file=sys.stderr)


def _view(args: argparse.Namespace) -> None:
    from pipeline_lib.report import napari_script, neuroglancer_link, neuroglancer_state

    follow = not args.no_inputs
    if args.napari:
        _write(napari_script(args.store, follow_inputs=follow), args.output)
        return
    state = neuroglancer_state(args.store, root=args.root, url_base=args.url_base, follow_inputs=follow)
    if args.output is not None:
        _write(json.dumps(state, indent=2) + "\n", args.output)
    print(neuroglancer_link(state, args.viewer))


def _serve(args: argparse.Namespace) -> None:
    from pipeline_lib.report import cors_server

    server = cors_server(args.directory, args.port)
    print(f"serving {Path(args.directory).resolve()} at http://127.0.0.1:{args.port} (Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()


def _plan(args: argparse.Namespace) -> None:
    from pipeline_lib.config import read_yaml
    from pipeline_lib.costs import as_dicts, format_costs, stage_costs
    from pipeline_lib.workflow import Plan

    costs = stage_costs(Plan.from_config(read_yaml(args.configfile)))
    print(json.dumps(as_dicts(costs), indent=2) if args.json else format_costs(costs).rstrip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline_lib", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print the provenance an output records")
    info.add_argument("output", type=Path, help="a zarr store (results/.../*.zarr) or an evaluation JSON")
    info.add_argument("--json", action="store_true", help="print everything as JSON instead of YAML")
    info.set_defaults(run=_info)

    view = sub.add_parser("view", help="write a neuroglancer link/state or a napari script for a store")
    view.add_argument("store", type=Path, help="a zarr store; the stores it was made from are added")
    kind = view.add_mutually_exclusive_group(required=True)
    kind.add_argument(
        "--neuroglancer", action="store_true", help="print a neuroglancer link (-o: also write the state JSON)"
    )
    kind.add_argument("--napari", action="store_true", help="print a napari script (-o: write it to a file)")
    view.add_argument("-o", "--output", type=Path, help="file to write the state JSON or script to")
    view.add_argument(
        "--no-inputs", action="store_true", help="show only the given store, not the stores it was made from"
    )
    view.add_argument("--root", type=Path, default=Path("."), help="directory served over HTTP (default: current)")
    view.add_argument("--url-base", default="http://localhost:8000", help="URL where --root is served")
    view.add_argument(
        "--viewer", default="https://neuroglancer-demo.appspot.com", help="neuroglancer instance of the link"
    )
    view.set_defaults(run=_view)

    serve = sub.add_parser("serve", help="serve a directory over HTTP with CORS headers, for neuroglancer")
    serve.add_argument("--directory", type=Path, default=Path("."))
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=_serve)

    plan = sub.add_parser("plan", help="print what a run will cost: blocks, jobs, voxels, scratch and output sizes")
    plan.add_argument("--configfile", type=Path, default=Path("config/config.yaml"), help="the run's config")
    plan.add_argument("--json", action="store_true", help="print the stages as JSON")
    plan.set_defaults(run=_plan)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
