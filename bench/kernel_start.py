"""Measure how long a Slurm kernel takes to start, next to a local kernel and a bare Slurm dispatch.

Each round runs these, one after the other and never overlapping:

1. ``local kernel``: a local ipykernel (the ``python3`` kernelspec, jupyter_client's
   LocalProvisioner), from ``start_kernel()`` until a client's ``wait_for_ready()``
   returns. That call returns once a ``kernel_info_reply`` and IOPub messages have
   arrived and IOPub then stayed quiet for 0.2 s (jupyter_client 8.10), so the time
   when the reply arrived is recorded as well.
2. ``sbatch dispatch``: from running ``sbatch --parsable --wrap true`` until
   ``scontrol show job -o`` shows the job in any state but PENDING. The job is
   polled every 20 ms, and one ``scontrol`` call takes a few milliseconds, so the
   value can be late by up to one poll period plus one call.
3. The same dispatch with ``--export=PATH,HOME``, which only adds rows that are
   not in the ratio. For a list of exported names, slurmd loads the user's login
   environment before the job's script runs. slurmgate submitted kernels this way
   until it switched, for sbatch on the gateway's host, to ``--export=ALL`` with
   only the job's variables in sbatch's environment. It still does so over SSH,
   so this row shows what the switch saves and what an SSH setup still pays.
4. ``slurm kernel``: a ``slurm-cpu`` kernelspec (slurmgate's provisioner), timed
   as the local kernel. The phases of the launch come from the provisioner's log
   records and from the job's output file. For that, the kernelspec adds one
   ``echo`` line with the time to the job script.
5. Only with ``--fast-poll-interval``: the same Slurm kernel from a kernelspec
   that sets another ``fast_poll_interval``. The shared squeue poller polls at
   the shortest interval that any tracked job requests, and the script starts
   one kernel at a time, so each start runs at its own kernelspec's interval.

Shutdown is not counted in the start times. Before the next measurement the
script waits until the job has left squeue, then sleeps a random time (see
``--jitter``) so that submissions fall at random points of Slurm's periodic
scheduling passes instead of locking into one phase of them. Every job it submits has a name
that starts with ``slurmgate-bench-<pid>-``, and at exit, after Ctrl-C and
SIGTERM too, every job with that prefix is cancelled by id.

Run it from the environment slurmgate is installed in, on a host with the
Slurm client commands, against a partition that has a free CPU::

    python bench/kernel_start.py --rounds 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import logging
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import ipykernel
import jupyter_client
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from slurmgate.provisioners.config import SlurmKernelConfig
from slurmgate.provisioners.kernelspec import main as install_kernelspec
from slurmgate.slurm.client import SlurmClient
from slurmgate.slurm.poller import JobPoller

LOCAL = "local kernel"
DISPATCH = "sbatch dispatch"
SLURM = "slurm kernel"

READY_TIMEOUT = 120.0
DISPATCH_POLL_INTERVAL = 0.02
JOB_GONE_TIMEOUT = 60.0
# A job that leaves PENDING has been dispatched, and a job in one of these states has also run its script.
ENDED_STATES = {
    "COMPLETING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
}
# The job script echoes this marker and the epoch time before it starts the launcher.
SCRIPT_START_MARKER = "slurmgate-bench-script-start"
SCRIPT_START_LINE = re.compile(rf"^{SCRIPT_START_MARKER} (\d+\.\d+)$", re.MULTILINE)
# The launcher logs this line, in its local-time asctime format, after IPKernelApp.initialize() bound the ports.
LISTENING_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) slurmgate-launcher INFO: kernel \S+ of job \d+ listens on", re.MULTILINE,
)
# Log messages of slurmgate.provisioners.lifecycle.KernelJob that mark a launch milestone.
LOG_MILESTONES = {
    "submitted Slurm job": "sbatch returned",
    "is running on node": "RUNNING seen by poller",
    "reports the kernel on": "reply accepted",
}
# Phases of a start as (name, from milestone, to milestone), where None stands for the start_kernel() call.
PHASES = [
    ("submit (sbatch)", None, "sbatch returned"),
    ("queue and batch launch", "sbatch returned", "job script started"),
    ("kernel start in the job", "job script started", "kernel listening"),
    ("reply delivery", "kernel listening", "reply accepted"),
    ("until kernel_info reply", None, "kernel_info reply"),
    ("connect and kernel_info", "reply accepted", "kernel_info reply"),
    ("IOPub drain in wait_for_ready", "kernel_info reply", "ready"),
]
# The extra dispatch measurement exports these names, as slurmgate's sbatch call does over SSH (and did locally before).
EXPORT_NAMES = "PATH,HOME"

log = logging.getLogger("slurmgate.bench")


@dataclass
class SlurmKind:
    """One Slurm kernelspec under test and the fast poll interval it runs with."""

    label: str
    kernel_name: str
    fast_poll_interval: float


@dataclass
class BenchSetup:
    """Everything the rounds share: kernelspecs, the job output folder and the shared poller."""

    partition: str
    job_prefix: str
    output_dir: Path
    spec_manager: KernelSpecManager
    kinds: list[SlurmKind]
    poller: JobPoller


@dataclass
class Results:
    """Samples of one run, in seconds unless the name says otherwise."""

    durations: dict[str, list[float]] = field(default_factory=dict)
    extras: dict[str, list[float]] = field(default_factory=dict)
    milestones: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    job_ids: dict[str, list[str]] = field(default_factory=dict)

    @staticmethod
    def add(table: dict, kind: str, value) -> None:
        table.setdefault(kind, []).append(value)


class MilestoneHandler(logging.Handler):
    """Records the wall-clock time of the first log record of each launch milestone."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.times: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        for text, milestone in LOG_MILESTONES.items():
            if text in str(record.msg):
                self.times.setdefault(milestone, record.created)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds; each round runs every kind once (default: 7)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and left out of the results (default: 1)")
    parser.add_argument("--partition", default="cpu", help="Slurm partition of the dispatch jobs and the Slurm kernels (default: cpu)")
    parser.add_argument(
        "--fast-poll-interval", type=float, action="append", default=[], metavar="SECONDS",
        help="also measure a Slurm kernel whose kernelspec sets fast_poll_interval to SECONDS; repeatable",
    )
    parser.add_argument(
        "--jitter", type=float, default=1.0, metavar="SECONDS",
        help="sleep a random time from 0 to SECONDS before each measurement, so that submissions do not keep one phase"
        " of the scheduler's periodic passes, such as backfill every bf_interval seconds (default: 1)",
    )
    parser.add_argument("--json", action="store_true", help="print the samples and the summary as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0 or args.jitter < 0:
        parser.error(f"--rounds must be at least 1, --warmup and --jitter at least 0; got {args.rounds}, {args.warmup} and {args.jitter:g}")
    if any(interval <= 0 for interval in args.fast_poll_interval):
        parser.error(f"--fast-poll-interval must be more than 0 seconds; got {args.fast_poll_interval}")
    return args


def run_command(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def list_jobs(*squeue_args: str) -> list[tuple[str, str]]:
    """Return (job id, job name) of the jobs squeue lists with these arguments."""
    result = run_command(["squeue", "--noheader", "--format=%i|%j", *squeue_args])
    if result.returncode != 0:
        raise RuntimeError(f"squeue failed with exit code {result.returncode}: {result.stderr.strip()}")
    return [tuple(line.split("|", 1)) for line in result.stdout.splitlines() if "|" in line]


def cancel_own_jobs(job_prefix: str) -> list[str]:
    """Cancel, by id, every job whose name starts with ``job_prefix``, and return their ids.

    The provisioner cancels the job of a start that is interrupted, even during
    sbatch, so this only catches what an interrupted dispatch measurement or a
    failed cancellation leaves behind.
    """
    job_ids = [job_id for job_id, name in list_jobs() if name.startswith(job_prefix)]
    if job_ids:
        run_command(["scancel", *job_ids])
        for job_id in job_ids:
            wait_until_gone(job_id, timeout=15)
    return job_ids


def wait_until_gone(job_id: str, timeout: float = JOB_GONE_TIMEOUT) -> bool:
    """Wait until squeue no longer lists the job, and return False if it still does after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while list_jobs(f"--jobs={job_id}"):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def write_kernelspec(kernels_root: Path, name: str, setup_args: list[str], config: dict) -> None:
    """Install a Slurm kernelspec with ``jupyter slurm-spec install``, then add ``config`` to it."""
    with contextlib.redirect_stdout(io.StringIO()):
        if install_kernelspec(["install", "--name", name, *setup_args]) != 0:
            raise RuntimeError(f"installing kernelspec {name!r} failed: jupyter slurm-spec printed the reason on stderr")
    spec_file = kernels_root / name / "kernel.json"
    spec = json.loads(spec_file.read_text())
    spec["metadata"]["kernel_provisioner"]["config"].update(config)
    spec_file.write_text(json.dumps(spec, indent=2))


def prepare(args: argparse.Namespace, workdir: Path) -> BenchSetup:
    """Install the kernelspecs into ``workdir`` and create the shared poller as the first Slurm kernel would."""
    job_prefix = f"slurmgate-bench-{os.getpid()}-"
    output_dir = workdir / "job-output"
    output_dir.mkdir()
    kernels_root = workdir / "share" / "jupyter" / "kernels"
    setup_args = [
        "--partition", args.partition, "--prefix", str(workdir), "--job-output", f"{output_dir}/kernel-%j.log",
        "--prologue", f'echo "{SCRIPT_START_MARKER} $(date +%s.%N)"',
    ]
    defaults = SlurmKernelConfig()
    # Each Slurm kernel passes its kernelspec's intervals when it tracks its job, so these settings only fill in
    # for jobs that pass none. The bench keeps the shared poller to read its squeue call counters.
    poller = JobPoller.shared(SlurmClient(), interval=defaults.poll_interval, fast_interval=defaults.fast_poll_interval)
    intervals = [(SLURM, "bench-slurm", defaults.fast_poll_interval, {})]
    for interval in args.fast_poll_interval:
        name = f"bench-slurm-fast-{interval:g}".replace(".", "_")
        intervals.append((f"{SLURM}, fast poll {interval:g} s", name, interval, {"fast_poll_interval": interval}))
    kinds = []
    for label, name, interval, config in intervals:
        write_kernelspec(kernels_root, name, setup_args, {"job_name_prefix": f"{job_prefix}kernel-", **config})
        kinds.append(SlurmKind(label, name, interval))
    spec_manager = KernelSpecManager(kernel_dirs=[str(kernels_root)])
    return BenchSetup(args.partition, job_prefix, output_dir, spec_manager, kinds, poller)


def record_reply_time(client, times: dict[str, float]) -> None:
    """Store in ``times`` the wall-clock time when the client receives the first kernel_info reply."""
    channel = client.shell_channel
    get_msg = channel.get_msg

    # wait_for_ready() does not return the reply, and afterwards it reads IOPub until no message arrives for
    # 0.2 s (jupyter_client 8.10). Wrapping the channel shows when the reply itself came.
    async def get_msg_and_record(*args, **kwargs):
        message = await get_msg(*args, **kwargs)
        if message["msg_type"] == "kernel_info_reply":
            times.setdefault("kernel_info reply", time.time())
        return message

    channel.get_msg = get_msg_and_record


async def start_until_ready(manager: AsyncKernelManager, times: dict[str, float], **start_options) -> float:
    """Start the kernel, record its milestones in ``times`` and return the seconds until ``wait_for_ready`` returned."""
    started = time.perf_counter()
    await manager.start_kernel(**start_options)
    client = manager.client()
    record_reply_time(client, times)
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=READY_TIMEOUT)
        duration = time.perf_counter() - started
        times["ready"] = time.time()
        return duration
    finally:
        client.stop_channels()


async def shut_down(manager: AsyncKernelManager) -> float:
    """Shut the kernel down as a server does on request; return the seconds it took."""
    started = time.perf_counter()
    if manager.has_kernel:
        await manager.shutdown_kernel()
    return time.perf_counter() - started


async def measure_local_kernel(results: Results) -> None:
    manager = AsyncKernelManager(kernel_name="python3")
    times: dict[str, float] = {}
    wall_start = time.time()
    try:
        # The kernel's stdout would mix with the --json output.
        results.add(results.durations, LOCAL, await start_until_ready(manager, times, stdout=subprocess.DEVNULL))
    finally:
        results.add(results.extras, f"{LOCAL} shutdown", await shut_down(manager))
    results.add(results.milestones, LOCAL, {name: value - wall_start for name, value in times.items()})


def read_job_state(job_id: str) -> tuple[str, float]:
    """Return the job's JobState from ``scontrol show job -o`` and the seconds the call took."""
    started = time.perf_counter()
    result = run_command(["scontrol", "show", "job", "-o", job_id])
    elapsed = time.perf_counter() - started
    match = re.search(r"\bJobState=(\S+)", result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"scontrol show job {job_id} failed with exit code {result.returncode}: {result.stderr.strip()}")
    return match.group(1), elapsed


async def poll_until_ended(job_id: str, started: float) -> tuple[float, float, list[float]]:
    """Poll the job until it has ended; return the seconds after ``started`` when it left PENDING and when it ended."""
    dispatched = None
    call_times = []
    while True:
        state, call_time = read_job_state(job_id)
        call_times.append(call_time)
        now = time.perf_counter() - started
        if state != "PENDING" and dispatched is None:
            dispatched = now
        if state in ENDED_STATES:
            return dispatched, now, call_times
        if now > READY_TIMEOUT:
            raise RuntimeError(f"dispatch job {job_id} is still {state} after {READY_TIMEOUT:g} s: check that its partition has a free CPU")
        await asyncio.sleep(DISPATCH_POLL_INTERVAL)


async def measure_dispatch(setup: BenchSetup, results: Results, export: str | None = None) -> None:
    """Time ``sbatch --wrap true`` until the job leaves PENDING. With ``export``, the times go to the extras only."""
    argv = ["sbatch", "--parsable", "--wrap", "true", "-p", setup.partition, "-o", "/dev/null", f"--job-name={setup.job_prefix}dispatch"]
    label = DISPATCH
    if export is not None:
        argv.append(f"--export={export}")
        label = f"{DISPATCH} --export={export}"
    started = time.perf_counter()
    submitted = run_command(argv)
    submit_time = time.perf_counter() - started
    if submitted.returncode != 0:
        raise RuntimeError(f"sbatch failed with exit code {submitted.returncode}: {submitted.stderr.strip()}")
    job_id = submitted.stdout.strip().split(";")[0]
    try:
        dispatched, ended, call_times = await poll_until_ended(job_id, started)
    finally:
        run_command(["scancel", job_id])
        wait_until_gone(job_id)
    if export is None:
        results.add(results.durations, DISPATCH, dispatched)
        results.add(results.extras, f"{DISPATCH}: sbatch call", submit_time)
        results.add(results.extras, f"{DISPATCH}: scontrol call", statistics.median(call_times))
    else:
        results.add(results.extras, f"{label}: left PENDING", dispatched)
    results.add(results.extras, f"{label}: left PENDING to ended", ended - dispatched)
    results.add(results.job_ids, label, job_id)


def read_job_milestones(output_file: Path) -> dict[str, float]:
    """Return the wall-clock times that the job script and the launcher wrote to the job's output file."""
    try:
        text = output_file.read_text(errors="replace")
    except OSError:
        return {}
    times = {}
    script_start = SCRIPT_START_LINE.search(text)
    if script_start:
        times["job script started"] = float(script_start.group(1))
    listening = LISTENING_LINE.search(text)
    if listening:
        # NOTE: asctime is local time with millisecond resolution. The offsets assume that the job runs on this host's clock.
        times["kernel listening"] = datetime.strptime(listening.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return times


def make_kernel_logger(handler: MilestoneHandler) -> logging.Logger:
    """Return the quiet logger of the Slurm kernel managers, now recording milestones with ``handler`` only."""
    logger = logging.getLogger("slurmgate.bench.kernel")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers = [handler]
    return logger


async def measure_slurm_kernel(setup: BenchSetup, kind: SlurmKind, results: Results) -> None:
    handler = MilestoneHandler()
    manager = AsyncKernelManager(kernel_name=kind.kernel_name, kernel_spec_manager=setup.spec_manager, log=make_kernel_logger(handler))
    queries_before = setup.poller.query_count
    position_queries_before = setup.poller.position_query_count
    times: dict[str, float] = {}
    wall_start = time.time()
    job_id = None
    try:
        duration = await start_until_ready(manager, times)
        queries = setup.poller.query_count - queries_before
        position_queries = setup.poller.position_query_count - position_queries_before
        job_id = manager.provisioner.kernel_job.job_id
    finally:
        job_id = job_id or getattr(manager.provisioner, "job_id", None)
        results.add(results.extras, f"{kind.label} shutdown", await shut_down(manager))
        if job_id and not wait_until_gone(job_id):
            log.warning("job %s of the Slurm kernel is still in squeue %g s after shutdown; cancelling it", job_id, JOB_GONE_TIMEOUT)
            run_command(["scancel", job_id])
    times.update(handler.times)
    times.update(read_job_milestones(setup.output_dir / f"kernel-{job_id}.log"))
    results.add(results.durations, kind.label, duration)
    results.add(results.extras, f"{kind.label}: squeue calls", queries + position_queries)
    results.add(results.extras, f"{kind.label}: squeue calls for queue positions", position_queries)
    results.add(results.job_ids, kind.label, job_id)
    results.add(results.milestones, kind.label, {name: value - wall_start for name, value in times.items()})


async def run_rounds(args: argparse.Namespace, setup: BenchSetup) -> Results:
    """Run the warm-up and measured rounds, each kind once per round in a fixed order."""
    results = Results()
    for round_number in range(args.warmup + args.rounds):
        target = results if round_number >= args.warmup else Results()
        measurements = [
            functools.partial(measure_local_kernel, target),
            functools.partial(measure_dispatch, setup, target),
            functools.partial(measure_dispatch, setup, target, export=EXPORT_NAMES),
            *(functools.partial(measure_slurm_kernel, setup, kind, target) for kind in setup.kinds),
        ]
        for measure in measurements:
            await asyncio.sleep(random.uniform(0, args.jitter))
            await measure()
        label = "warm-up round" if round_number < args.warmup else "round"
        print(f"{label} {round_number + 1} of {args.warmup + args.rounds} done", file=sys.stderr)
    return results


def describe(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "count": len(values)}


def summarize_phases(records: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Describe each phase over the samples that recorded both of its milestones."""
    phases = {}
    for name, begin, end in PHASES:
        values = [record[end] - record.get(begin, 0.0) for record in records if end in record and (begin is None or begin in record)]
        if values:
            phases[name] = describe(values)
    return phases


def summarize(results: Results, setup: BenchSetup) -> dict:
    """Reduce the samples to medians and ranges, per-phase times and the start-time ratios."""
    summary = {
        "durations": {kind: describe(values) for kind, values in results.durations.items()},
        "extras": {kind: describe(values) for kind, values in results.extras.items()},
        "phases": {kind: summarize_phases(records) for kind, records in results.milestones.items()},
        "ratios": {},
    }
    dispatch = summary["durations"][DISPATCH]["median"]
    local_reply = summary["phases"][LOCAL].get("until kernel_info reply")
    for kind in setup.kinds:
        ratios = {"until ready": summary["durations"][kind.label]["median"] / (summary["durations"][LOCAL]["median"] + dispatch)}
        slurm_reply = summary["phases"][kind.label].get("until kernel_info reply")
        if local_reply and slurm_reply:
            ratios["until kernel_info reply"] = slurm_reply["median"] / (local_reply["median"] + dispatch)
        summary["ratios"][kind.label] = ratios
    return summary


def describe_machine(setup: BenchSetup) -> dict:
    scheduler = run_command(["scontrol", "show", "config"]).stdout
    parameters = re.search(r"^SchedulerParameters\s*=\s*(.*)$", scheduler, re.MULTILINE)
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jupyter_client": jupyter_client.__version__,
        "ipykernel": ipykernel.__version__,
        "slurm": run_command(["sinfo", "--version"]).stdout.strip(),
        "scheduler_parameters": parameters.group(1).strip() if parameters else None,
        "partition": setup.partition,
        "poll_interval": setup.poller.interval,
        "fast_poll_intervals": {kind.label: kind.fast_poll_interval for kind in setup.kinds},
    }


def print_rows(title: str, rows: dict[str, dict[str, float]]) -> None:
    width = max(56, *(len(name) + 2 for name in rows))
    print(f"\n{title:<{width}}{'median':>8}{'min':>8}{'max':>8}{'n':>4}")
    for name, stats in rows.items():
        print(f"{name:<{width}}{stats['median']:>8.3f}{stats['min']:>8.3f}{stats['max']:>8.3f}{stats['count']:>4}")


def print_table(report: dict) -> None:
    summary = report["summary"]
    machine = report["machine"]
    print(f"{machine['slurm']}, partition {machine['partition']}, {machine['cpus']} CPUs, Python {machine['python']},"
          f" jupyter_client {machine['jupyter_client']}, ipykernel {machine['ipykernel']}")
    print(f"SchedulerParameters={machine['scheduler_parameters']}; other jobs in squeue at start: {report['other_jobs_at_start']},"
          f" at end: {report['other_jobs_at_end']}")
    print_rows("start time (s)", summary["durations"])
    print_rows("not in the ratio (s, or a count)", summary["extras"])
    print()
    for kind, ratios in summary["ratios"].items():
        for basis, ratio in ratios.items():
            print(f"ratio {kind} / ({LOCAL} + {DISPATCH}), medians {basis}: {ratio:.2f}")
    for kind, phases in summary["phases"].items():
        print_rows(f"{kind}: phases (s)", phases)


async def bench(args: argparse.Namespace) -> dict:
    """Run the benchmark in a temporary folder and cancel every job it left, however it ends."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    with tempfile.TemporaryDirectory(prefix="slurmgate-bench-") as workdir:
        setup = prepare(args, Path(workdir))
        other_jobs = len(list_jobs())
        if other_jobs:
            log.warning("%d other job(s) are in squeue; they compete with the measured jobs", other_jobs)
        try:
            results = await run_rounds(args, setup)
        finally:
            leftovers = cancel_own_jobs(setup.job_prefix)
            if leftovers:
                log.warning("cancelled leftover benchmark job(s) %s", ", ".join(leftovers))
        other_jobs_at_end = len(list_jobs())
    return {
        "command": " ".join(["python", "bench/kernel_start.py", *(sys.argv[1:])]),
        "machine": describe_machine(setup),
        "other_jobs_at_start": other_jobs,
        "other_jobs_at_end": other_jobs_at_end,
        "samples": {
            "durations": results.durations, "extras": results.extras, "milestones": results.milestones, "job_ids": results.job_ids,
        },
        "summary": summarize(results, setup),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = asyncio.run(bench(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; the benchmark's jobs and kernels were stopped", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
