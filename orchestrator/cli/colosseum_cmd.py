"""``pamdi colosseum ...``: check SRNs, upload the image, RF scenarios, reservations, batch jobs, runs.

Every command reads the Colosseum config (``--config``, default ``colosseum.yaml`` or
$PAMDI_COLOSSEUM_CONFIG). Passwords come from the environment variables the config names
(default $COLOSSEUM_SRN_PASSWORD for the SRN containers, $COLOSSEUM_PASSWORD for the LDAP user:
file-proxy and the REST API) or from a prompt; never from the config. Errors print one line per
SRN that failed, naming the SRN and the cause, and exit 1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer

from orchestrator.cli.common import fail
from orchestrator.cli.output import JsonOpt, emit

T = TypeVar("T")

colosseum_app = typer.Typer(
    name="colosseum",
    help="Run PA-MDI on Colosseum: SRNs through the SSH gateway, RF scenarios, reservations, batch jobs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rf_app = typer.Typer(
    name="rf", help="RF scenario control (colosseumcli rf ... on the first SRN).", no_args_is_help=True
)
colosseum_app.add_typer(rf_app, name="rf")

ConfigOpt = typer.Option(
    None, "--config", "-c", help="Colosseum config YAML (default: $PAMDI_COLOSSEUM_CONFIG or ./colosseum.yaml)."
)


def _config_path(path: Path | None) -> Path:
    if path is not None:
        return path
    return Path(os.environ.get("PAMDI_COLOSSEUM_CONFIG", "colosseum.yaml"))


def _load(path: Path | None, need_srns: bool = False):  # -> ColosseumConfig
    """The config; ``need_srns``: the command talks to SRNs, so a config without ``srns:`` is refused
    here, in one line, before any password is asked for."""
    from orchestrator.colosseum.config import ConfigError, load_config

    try:
        cfg = load_config(_config_path(path))
        if need_srns:
            cfg.require_srns()
        return cfg
    except ConfigError as err:
        raise fail(str(err)) from None


def _secret(cfg, which: str) -> str:
    from orchestrator.colosseum.config import ConfigError, secret

    try:
        if which == "srn":
            return secret(cfg.srn_password_env, f"SRN password for {cfg.srn_user}")
        return secret(cfg.ldap_password_env, f"Colosseum (LDAP) password for {cfg.user}")
    except ConfigError as err:
        raise fail(str(err)) from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # asyncssh is chatty at INFO; its lines never carry passwords but say little to a user.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def _session_run(cfg, fn: Callable[[object], Awaitable[T]], *, srn_pw: bool = True, ldap_pw: bool = False) -> T:
    from orchestrator.colosseum.transport import ColosseumError, Session

    srn_password = _secret(cfg, "srn") if srn_pw else None
    ldap_password = _secret(cfg, "ldap") if ldap_pw else None

    async def main() -> T:
        async with Session(cfg, srn_password, ldap_password) as session:
            return await fn(session)

    try:
        return asyncio.run(main())
    except ColosseumError as err:
        raise fail(str(err), code=1) from None


@colosseum_app.command("init")
def init_cmd(
    path: Path = typer.Argument(Path("colosseum.yaml"), help="Config file to write."),
    team: str = typer.Option(..., "--team", help="Your Colosseum team name (SRN hosts are <team>-<NNN>)."),
    user: str = typer.Option(..., "--user", help="Your Colosseum (LDAP) user name."),
    srns: str = typer.Option("", "--srns", help="SRN numbers of the reservation, e.g. 13,15,27 (or fill them "
                                                 "later with `colosseum reservation ID --write`)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented colosseum.yaml to start from (every field a team edits, with its default)."""
    from orchestrator.colosseum.config import ConfigError
    from orchestrator.colosseum.template import write_template

    try:
        numbers = tuple(int(x) for x in srns.replace(" ", "").split(",") if x)
    except ValueError:
        raise fail(f"--srns: {srns!r} is not a comma-separated list of SRN numbers") from None
    try:
        written = write_template(path, team, user, numbers, force=force)
    except (ConfigError, FileExistsError) as err:
        raise fail(str(err)) from None
    typer.echo(f"wrote {written}; next: `pamdi colosseum reservation ID --write -c {written}` (fills srns), "
               f"then `pamdi colosseum check -c {written}`")


@colosseum_app.command("check")
def check_cmd(
    config: Path | None = ConfigOpt, verbose: bool = typer.Option(False, "--verbose", "-v"), as_json: bool = JsonOpt,
) -> None:
    """Each SRN: reachable, interfaces and addresses, data-plane and col0 address, colosseumcli version, USRP."""
    _logging(verbose)
    cfg = _load(config, need_srns=True)
    from orchestrator.colosseum.admin import check

    reports, errors = _session_run(cfg, check)
    emit({"srns": [r.as_dict() for r in reports] + [
        {"srn": e.srn, "host": e.host, "reachable": False, "error": f"{e.kind}: {e.detail}"} for e in errors]}, as_json)
    if errors or any(r.problems for r in reports):
        for e in errors:
            typer.echo(str(e), err=True)
        for r in reports:
            for p in r.problems:
                typer.echo(f"SRN {r.srn} ({r.host}): {p}", err=True)
        raise typer.Exit(1)


@colosseum_app.command("upload-image")
def upload_image_cmd(
    file: Path = typer.Argument(..., help="LXD image tarball (lxc image export), NAME.tar.gz"),
    config: Path | None = ConfigOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    as_json: bool = JsonOpt,
) -> None:
    """Copy an image to the team's NAS folder via file-proxy, chmod 755, verify its sha256 there."""
    _logging(verbose)
    cfg = _load(config, need_srns=True)
    from orchestrator.colosseum.admin import upload_image

    emit(_session_run(cfg, lambda s: upload_image(s, file), srn_pw=False, ldap_pw=True), as_json)


@rf_app.command("start")
def rf_start_cmd(
    scenario: int | None = typer.Argument(None, help="RF scenario ID (default: the config's `scenario`)."),
    cycle: bool | None = typer.Option(None, "--cycle/--no-cycle", help="Repeat the scenario (default: config)."),
    config: Path | None = ConfigOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    as_json: bool = JsonOpt,
) -> None:
    """colosseumcli rf start ID [-c], waiting out the >15 s rule after an rf stop."""
    _logging(verbose)
    cfg = _load(config, need_srns=True)
    sid = scenario if scenario is not None else cfg.scenario
    if sid is None:
        raise fail("rf start: give a scenario ID or set `scenario:` in the config")
    from orchestrator.colosseum import rf

    async def go(session):
        started = await rf.start(session, sid, cycle=cfg.cycle if cycle is None else cycle)
        return {"scenario": sid, "start_time": started, "info": (await rf.info(session)).as_dict()}

    emit(_session_run(cfg, go), as_json)


@rf_app.command("stop")
def rf_stop_cmd(
    config: Path | None = ConfigOpt, verbose: bool = typer.Option(False, "--verbose", "-v"), as_json: bool = JsonOpt,
) -> None:
    """colosseumcli rf stop, then rf info until CLEARED (up to 30 s)."""
    _logging(verbose)
    cfg = _load(config, need_srns=True)
    from orchestrator.colosseum import rf

    emit(_session_run(cfg, lambda s: _as_dict(rf.stop(s))), as_json)


async def _as_dict(coro):
    return (await coro).as_dict()


@rf_app.command("info")
def rf_info_cmd(
    config: Path | None = ConfigOpt, verbose: bool = typer.Option(False, "--verbose", "-v"), as_json: bool = JsonOpt,
) -> None:
    """colosseumcli rf info and rf radiomap, parsed."""
    _logging(verbose)
    cfg = _load(config, need_srns=True)
    from orchestrator.colosseum import rf

    async def go(session):
        info = await rf.info(session)
        rmap = await rf.radiomap(session) if info.scenario_id is not None else []
        return {**info.as_dict(), "radiomap": [e.__dict__ for e in rmap]}

    emit(_session_run(cfg, go), as_json)


def _rest(cfg):
    from orchestrator.colosseum.rest import RestClient

    return RestClient(cfg, _secret(cfg, "ldap"))


@colosseum_app.command("reservation")
def reservation_cmd(
    res_id: str = typer.Argument(..., help="Reservation ID (from the website)."),
    write: bool = typer.Option(False, "--write", help="Write the reservation's SRN numbers into the config file."),
    config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Read a reservation over the REST API: SRN list, times, status; --write fills `srns:` in the config."""
    cfg = _load(config)
    from orchestrator.colosseum.config import ConfigError, write_srns
    from orchestrator.colosseum.rest import RestError

    try:
        res = _rest(cfg).reservation(res_id)
    except RestError as err:
        raise fail(str(err), code=1) from None
    out = res.as_dict()
    if write:
        try:
            write_srns(_config_path(config), list(res.srns))
        except ConfigError as err:
            raise fail(str(err)) from None
        out["written_to"] = str(_config_path(config))
    emit(out, as_json)


@colosseum_app.command("batch")
def batch_cmd(
    spec: str = typer.Argument(..., help="Experiment spec YAML, or the name of a shipped spec (`pamdi specs list`)."),
    submit: bool = typer.Option(False, "--submit", help="Queue the job through the REST API after uploading."),
    priority: int = typer.Option(0, "--priority", min=0, help='Batch priority ("0" is the highest).'),
    out: Path | None = typer.Option(None, "--out", help="Also keep the batch JSON and node configs here."),
    upload: bool = typer.Option(True, "--upload/--no-upload", help="Upload to the NAS batch/ and config/ folders."),
    keep_outputs: bool = typer.Option(False, "--keep-outputs", help="The leader also saves every result tensor "
                                      "(/logs/runs/<batch>/<policy>/outputs.npz)."),
    config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write the batch JSON of a PA-MDI experiment, upload it (and node configs) to the NAS, optionally queue it."""
    from orchestrator.cli.common import spec_or_exit
    from orchestrator.colosseum import batch as batchmod
    from orchestrator.colosseum.rest import RestError
    from orchestrator.colosseum.transport import ColosseumError

    cfg = _load(config)
    exp = spec_or_exit(spec)
    run_id = time.strftime("%Y%m%d-%H%M%S")
    name = batchmod.batch_name(exp, run_id)
    try:
        data = batchmod.batch_json(cfg, exp, name)
        batchmod.validate_batch(data)
    except ColosseumError as err:
        raise fail(str(err)) from None
    nodes = batchmod.node_configs(cfg, exp, name, keep_outputs=keep_outputs)
    result: dict[str, object] = {"batch": f"{name}.json", "json": data, "node_configs": sorted(nodes)}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_bytes(batchmod.dumps(data))
        for fname, content in nodes.items():
            (out / fname).write_bytes(batchmod.dumps(content))
    if upload or submit:
        async def up(session):
            await session.put_bytes(None, batchmod.dumps(data), f"{cfg.nas_batch_dir}/{name}.json")
            for fname, content in nodes.items():
                await session.put_bytes(None, batchmod.dumps(content), f"{cfg.nas_config_dir}/{fname}")
            return f"{cfg.nas_batch_dir}/{name}.json"

        result["uploaded"] = _session_run(cfg, up, srn_pw=False, ldap_pw=True)
    if submit:
        try:
            _rest(cfg).queue_batch(f"{name}.json", name=name, priority=priority)
        except RestError as err:
            raise fail(str(err), code=1) from None
        result["queued"] = True
    emit(result, as_json)


@colosseum_app.command("batch-status")
def batch_status_cmd(
    hours: float = typer.Option(24.0, "--hours", help="Time window: jobs entered in the last HOURS."),
    config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List pending / active / completed batch jobs (REST API)."""
    from orchestrator.colosseum.rest import RestError

    cfg = _load(config)
    now = time.time()
    try:
        jobs = _rest(cfg).batch_jobs(now - hours * 3600, now + 60)
    except RestError as err:
        raise fail(str(err), code=1) from None
    emit({k: [{"job_id": j.get("job_id"), "file_name": j.get("file_name"), "status": j.get("job_status"),
               "enter_queue_time": j.get("enter_queue_time")} for j in v] for k, v in jobs.items()}, as_json)


@colosseum_app.command("run")
def run_cmd(
    spec: str = typer.Argument(..., help="Experiment spec YAML, or the name of a shipped spec (`pamdi specs list`)."),
    run_id: str | None = typer.Option(None, "--run-id", help="Run ID (default: time stamp)."),
    results: Path = typer.Option(Path("results/runs"), "--results", help="Where run folders go."),
    no_rf: bool = typer.Option(False, "--no-rf", help="Do not start the config's RF scenario."),
    config: Path | None = ConfigOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    as_json: bool = JsonOpt,
) -> None:
    """Deploy agents on the SRNs (data over the radio, control over col0), run the policies, harvest
    into results/runs/<run-id>/."""
    _logging(verbose)
    from orchestrator.cli.common import spec_or_exit
    from orchestrator.colosseum.deploy import run_experiment
    from orchestrator.colosseum.transport import ColosseumError

    cfg = _load(config, need_srns=True)
    exp = spec_or_exit(spec)
    srn_password = _secret(cfg, "srn")
    rid = run_id or time.strftime("%Y%m%d-%H%M%S")
    try:
        summary = run_experiment(cfg, exp, srn_password, run_dir=results / rid, run_id=rid, start_rf=not no_rf)
    except ColosseumError as err:
        raise fail(str(err), code=1) from None
    emit(summary, as_json)


@colosseum_app.command("harvest")
def harvest_cmd(
    run_id: str | None = typer.Option(None, "--run-id", help="Interactive run to collect again from the SRNs."),
    job: str | None = typer.Option(None, "--job", help="Finished batch job (its RESERVATION-<id> /logs on the NAS)."),
    results: Path = typer.Option(Path("results/runs"), "--results"),
    config: Path | None = ConfigOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Copy traces back: an interactive run's files from every SRN, or a batch job's /logs from the NAS."""
    from orchestrator.colosseum.deploy import harvest_batch, harvest_run

    cfg = _load(config, need_srns=run_id is not None)  # a batch job's logs come from the NAS
    if (run_id is None) == (job is None):
        raise fail("harvest: give exactly one of --run-id RUN or --job RESERVATION_ID")
    if run_id is not None:
        files = _session_run(cfg, lambda s: harvest_run(s, run_id, results / run_id))
    else:
        assert job is not None
        files = _session_run(cfg, lambda s: harvest_batch(s, job, results / f"batch-{job}"), srn_pw=False, ldap_pw=True)
    emit({"files": [str(f) for f in files]}, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(colosseum_app, name="colosseum")
