"""``pamdi compose SPEC --out DIR`` (render a docker-compose project) and ``pamdi compose-run``
(what the project's coordinator container runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from orchestrator.cli.choices import DeviceTimeName
from orchestrator.cli.common import fail, print_json, select_policies
from orchestrator.cli.output import JsonOpt, emit


def register(app: typer.Typer) -> None:
    @app.command()
    def compose(
        spec: str = typer.Argument(..., help="spec file, or the name of a shipped spec"),
        out: Path = typer.Option(..., "--out", help="folder for docker-compose.yml, pamdi/ and traces/"),
        image: str = typer.Option("pamdi-node:latest", help="node image (pamdi image build)"),
        policy: str = typer.Option(None, "--policy", "-p", help="policy name or 'all' (default: the spec's)"),
        subnet_pool: str = typer.Option("10.213.0.0/16", help="where the experiment's /24 subnets come from"),
        cpu_quota: bool = typer.Option(True, help="under --device-time quota: limit each node to its device's CPUs"),
        device_time: DeviceTimeName = typer.Option(None, "--device-time", help="how device time is produced "
                                                                                "(default profile)"),
        task_timeout: float = typer.Option(60.0, help="seconds before a task counts as failed"),
        insecure: bool = typer.Option(False, "--insecure",
                                      help="plaintext ZeroMQ, no keys/ (any container on the networks may steer)"),
        up: bool = typer.Option(False, "--up", help="then run it here (compose up), save every container's log "
                                                    "under traces/logs/, take it down and write the report"),
        as_json: bool = JsonOpt,
    ) -> None:
        """Render a docker-compose project that runs SPEC by itself (docker-compose up)."""
        from orchestrator.compose import compose_cli, render_compose
        from orchestrator.spec import SpecError, load_spec
        from orchestrator.specs import resolve_spec

        try:
            s = load_spec(resolve_spec(spec))
        except (FileNotFoundError, SpecError) as err:
            raise fail(str(err)) from None
        policies = select_policies(policy, s)
        try:
            project = render_compose(s, out, image=image, policies=policies, subnet_pool=subnet_pool,
                                     cpu_quota=cpu_quota, device_time=device_time, task_timeout_s=task_timeout,
                                     insecure=insecure)
        except (ValueError, RuntimeError) as err:
            raise fail(f"compose: {err}") from None
        rendered = {"compose_file": str(project.compose_file), "services": list(project.services),
                    "networks": list(project.networks),
                    "run": f"cd {out} && {' '.join(compose_cli())} up --abort-on-container-exit "
                           "--exit-code-from coordinator",
                    "traces": str(out / "traces"), "report": f"pamdi report {out / 'traces'}",
                    "keys": None if insecure else f"{out / 'keys'} (the run's private keys: delete with the project)"}
        if not up:
            emit(rendered, as_json)
            return
        from orchestrator.compose_up import up_project

        run = up_project(out)
        emit({**rendered, "returncode": run.returncode, "logs": str(run.traces / "logs"),
              "report": run.report["report"] if run.report else run.report_error}, as_json)
        if run.returncode != 0:
            raise typer.Exit(run.returncode)

    @app.command("compose-run", hidden=True)
    def compose_run(job: Path = typer.Argument(..., help="run.json rendered by pamdi compose")) -> None:
        """Coordinator of a compose project: run the experiment against the nodes in run.json."""
        import logging

        from orchestrator.compose import run_from_config

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            summary = run_from_config(job)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except (OSError, ValueError, RuntimeError) as err:
            raise fail(f"compose-run: {err}", code=1) from None
        print_json(summary)
