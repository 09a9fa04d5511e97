"""Flags and the top of the migration: analyze, copy, verify; the JSON report; the exit code.

Exit codes: 0 done (and verified, with --verify), 1 something could not be copied or verification
found a difference, 2 bad arguments, or the source or the target cannot be reached."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from genesis_flow.migrate import plan as pl


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source-uri", required=True,
                   help="file:///…/mlruns, sqlite:///…, postgresql://…, mysql://… or http(s)://… (an MLflow server)")
    p.add_argument("--target-uri", default=None, help="the Genesis-Flow tracking URI (not needed with --analyze-only)")
    p.add_argument("--source-artifacts", default=None, metavar="URL_OR_DIR",
                   help="where a database source's mlflow-artifacts:/ files are: the MLflow server's URL, "
                        "or the directory of its --artifacts-destination")
    p.add_argument("--analyze-only", action="store_true", help="report what would be migrated; write nothing")
    p.add_argument("--output", metavar="FILE", default=None, help="also write the JSON report to FILE")
    p.add_argument("--experiments", default=None, help="comma-separated experiment names or ids (default: all)")
    p.add_argument("--since", default=None, help="only runs started or ended since (epoch ms or ISO date)")
    p.add_argument("--dry-run", action="store_true", help="compare with the target and report what would be copied")
    p.add_argument("--verify", action="store_true", help="after copying (or alone with --verify-only), compare "
                                                         "everything; exit 1 on any difference")
    p.add_argument("--verify-only", action="store_true", help="compare only; copy nothing")
    p.add_argument("--workers", type=int, default=4, help="runs copied concurrently (default 4)")
    p.add_argument("--no-artifacts", action="store_true", help="skip artifacts")
    p.add_argument("--no-registry", action="store_true", help="skip the model registry")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def options(args: argparse.Namespace) -> pl.Options:
    return pl.Options(
        source_uri=args.source_uri, target_uri=args.target_uri or "", source_artifacts=args.source_artifacts,
        experiments=[e.strip() for e in args.experiments.split(",") if e.strip()] if args.experiments else None,
        since_ms=pl.parse_since(args.since), dry_run=args.dry_run, analyze_only=args.analyze_only,
        verify=args.verify or args.verify_only, workers=args.workers, output=args.output,
        progress=not args.quiet, artifacts=not args.no_artifacts, registry=not args.no_registry)


def run(opts: pl.Options, *, copy: bool = True) -> tuple[dict[str, Any], int]:
    from genesis_flow.migrate.source import SourceError
    from genesis_flow.migrate.target import TargetError

    try:
        if opts.analyze_only:
            from genesis_flow.migrate.analyze import analyze

            return {"analysis": analyze(opts)}, 0
        if not opts.target_uri:
            raise SourceError("--target-uri is required (unless --analyze-only)")
        report: dict[str, Any] = {}
        code = 0
        if copy:
            from genesis_flow.migrate.copy import migrate

            report["migration"] = migrate(opts)
            if report["migration"]["errors"]:
                code = 1
        if opts.verify and not opts.dry_run:
            from genesis_flow.migrate.verify import verify

            report["verification"] = verify(opts)
            if not report["verification"]["ok"]:
                code = 1
        return report, code
    except (SourceError, TargetError) as exc:
        return {"error": str(exc)}, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlflow_to_genesis_flow",
                                     description="Migrate an MLflow tracking store into Genesis-Flow")
    add_flags(parser)
    return run_args(parser.parse_args(argv))


def run_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report, code = run(options(args), copy=not args.verify_only)
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
