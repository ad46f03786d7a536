"""What the local runtime runs for an LLMInferenceService, pure: the plan's pods as processes.

Each workload runs `replicas` groups of `size` processes (one per pod; `size` is 1 unless the
workload is multi-node). Rank 0 is the leader pod's `main` container, the others the worker
pod's. A container's command line is rewritten for one machine: the worker listens on
127.0.0.1 and a port of its own, reads the model from the cache folder instead of
`/mnt/models`, and a P/D worker gets its own KV side-channel port (two on one host would clash
on NIXL's default). `$(VAR)` is expanded from the container's environment and the
LeaderWorkerSet variables, as the kubelet does. A multi-node group (`wharf-llm-worker
multinode` in every pod) gets, besides the `LWS_*` environment, what two Ray nodes on one
machine need: the group's own Ray and vLLM ports, one Ray temp folder and token file per group,
and a block of Ray node ports and a log folder per rank. The gateway (`wharf-router gateway`) gets the
leaders as endpoints, with their roles when the service has a prefill workload.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from wharf_api.llm import LLMPlan, LLMPod, LLMWorkload
from wharf_api.llm.worker_cli import (
    DRAIN_TIMEOUT_FLAG,
    ENGINE_ARGS_SEPARATOR,
    GROUP_SIZE_ENV,
    HOST_FLAG,
    LEADER_ADDRESS_ENV,
    PORT_FLAG,
    WORKER_INDEX_ENV,
    Role,
    is_multinode_command,
    is_worker_command,
)

LOOPBACK = "127.0.0.1"
KV_SIDE_CHANNEL_FLAG = "--kv-side-channel-port"
GATEWAY = ("wharf-router", "gateway")
# what the worker allows itself to drain when no --drain-timeout is given (its default), and
# the teardown after it: the supervisor's fallback when the worker cannot say (`--dry-run`)
DEFAULT_DRAIN_TIMEOUT_S = 30
TEARDOWN_ALLOWANCE_S = 15
MAX_PROCESSES = 64
# vLLM's CPU build pins its OpenMP threads; "auto" picks the same cores in every engine on a
# machine (on two cores: core 0 for all), so the local runtime gives each engine its own
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
CRASH_LOOP_AFTER = 3
# Ray's socket paths grow from its temp folder and must stay under the kernel's limit, so a
# group's Ray folder is short and under /tmp rather than in the state folder
RAY_TEMP_ROOT = "/tmp/wharf-ray-"
RAY_TOKEN_FILE = "ray-auth-token"
# what a group's leader writes in its log folder (wharf_llm_worker.multinode.supervisor)
GROUP_STATUS_FILE = "group-status.json"
# Ray's node-local ports from `--ports-base` (the multinode command's PORTS_SPAN)
RAY_PORTS_SPAN = 60

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class LocalPlanError(ValueError):
    """The plan cannot run on one machine (named field and why)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined one is
    left as written, and `$$` is a literal `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR.sub(sub, text)


@dataclass(frozen=True)
class WorkerProcess:
    """One pod of a workload as a local process."""

    workload: str
    component: str  # main | prefill
    role: Role
    replica: int
    rank: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    # the port it serves HTTP on (the leader's); 0 for a non-leader rank
    port: int
    worker: bool
    # one engine on one rank: no multi-node group, no tensor or pipeline parallelism
    single_engine: bool = True
    # a multi-node group's folder (its Ray token file, its ranks' logs); None otherwise
    group_dir: str | None = None

    @property
    def ray_token_file(self) -> str | None:
        return str(PurePosixPath(self.group_dir) / RAY_TOKEN_FILE) if self.group_dir else None

    @property
    def group_status_file(self) -> str | None:
        """Where the group's leader reports the group's state (its rank-0 log folder)."""
        if self.group_dir is None:
            return None
        return str(PurePosixPath(self.group_dir) / "rank-0" / GROUP_STATUS_FILE)

    @property
    def name(self) -> str:
        suffix = f"-{self.rank}" if self.rank else ""
        return f"{self.workload}-{self.replica}{suffix}"

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def _set_flag(own: list[str], flag: str, value: str) -> list[str]:
    """`own` with `flag value` set (replacing `flag value` or `flag=value`, else appended)."""
    out: list[str] = []
    skip = False
    found = False
    for i, arg in enumerate(own):
        if skip:
            skip = False
            continue
        if arg == flag and i + 1 < len(own):
            out += [flag, value]
            skip = found = True
        elif arg.startswith(flag + "="):
            out.append(f"{flag}={value}")
            found = True
        else:
            out.append(arg)
    return out if found else [*out, flag, value]


def _mount_paths(text: str, mounts: Sequence[tuple[str, str]]) -> str:
    # the longest mount path first, so /mnt/models/x is not read as /mnt/model + s/x
    for mount, local in mounts:
        if text == mount or text.startswith(mount + "/"):
            return local + text[len(mount) :]
        if "=" in text:
            key, _, value = text.partition("=")
            if value == mount or value.startswith(mount + "/"):
                return f"{key}={local}{value[len(mount) :]}"
    return text


def local_argv(
    command: Sequence[str],
    args: Sequence[str],
    *,
    port: int,
    mounts: Mapping[str, str],
    side_channel_port: int | None,
) -> list[str]:
    """A container's command and args as a local process: loopback, its own port, the cache
    folders instead of the mount paths."""
    ordered = sorted(mounts.items(), key=lambda kv: -len(kv[0]))
    full = [_mount_paths(a, ordered) for a in (*command, *args)]
    if not is_worker_command(tuple(command)):
        # another server (a KServe preset's script): only its own --port, if it takes one
        return _set_flag(full, PORT_FLAG, str(port)) if PORT_FLAG in full else full
    cut = full.index(ENGINE_ARGS_SEPARATOR) if ENGINE_ARGS_SEPARATOR in full else len(full)
    own, engine = full[:cut], full[cut:]
    own = _set_flag(own, HOST_FLAG, LOOPBACK)
    own = _set_flag(own, PORT_FLAG, str(port))
    if side_channel_port is not None:
        own = _set_flag(own, KV_SIDE_CHANNEL_FLAG, str(side_channel_port))
    return [*own, *engine]


def _pod_for(workload: LLMWorkload, rank: int) -> LLMPod:
    pod = workload.leader if rank == 0 and workload.leader is not None else workload.worker
    if pod is None:
        raise LocalPlanError(f"workload {workload.name}: no pod template for rank {rank}")
    return pod


def cpu_binding(index: int, count: int, cpus: int) -> str:
    """The cores of the `index`-th of `count` single-engine workers on a `cpus`-core machine:
    an even share each, or one core round-robin when there are more workers than cores."""
    if count >= cpus:
        return str(index % cpus)
    share = cpus // count
    first = index * share
    return f"{first}-{first + share - 1}" if share > 1 else str(first)


def with_cpu_binding(
    procs: list[WorkerProcess], cpus: int, inherited: Mapping[str, str]
) -> list[WorkerProcess]:
    """`procs` with `VLLM_CPU_OMP_THREADS_BIND` set per worker, unless the user set it (in the
    container's env or the daemon's) or a worker is not a single engine (multi-node, or tensor
    or pipeline parallel: vLLM then wants one list per rank)."""
    if CPU_BIND_ENV in inherited or cpus < 1:
        return procs
    engines = [p for p in procs if p.worker and p.single_engine and CPU_BIND_ENV not in dict(p.env)]
    out = []
    for p in procs:
        if p in engines:
            bind = cpu_binding(engines.index(p), len(engines), cpus)
            p = dataclasses.replace(p, env=(*p.env, (CPU_BIND_ENV, bind)))
        out.append(p)
    return out


@dataclass(frozen=True)
class _Group:
    """What the ranks of one multi-node group share on this machine."""

    dir: str
    ray_port: int
    master_port: int
    data_parallel_rpc_port: int


def _group(
    workload: LLMWorkload, replica: int, root: str, free_port: Callable[[], int]
) -> _Group | None:
    if not workload.multi_node:
        return None
    return _Group(
        dir=str(PurePosixPath(root) / f"{workload.name}-{replica}"),
        ray_port=free_port(),
        master_port=free_port(),
        data_parallel_rpc_port=free_port(),
    )


def ray_temp_dir(group_dir: str) -> str:
    """A group's Ray temp folder: short (Ray's socket paths), one per group. Named from the
    group's own folder, which is under the Wharf home (its log folder): two homes on one
    machine (two users, two test runs) that run the same service do not share Ray's sockets."""
    return RAY_TEMP_ROOT + hashlib.sha256(group_dir.encode()).hexdigest()[:12]


def multinode_local_flags(
    own: list[str],
    *,
    group: _Group,
    temp_dir: str,
    rank: int,
    ports_base: int,
) -> list[str]:
    """The multinode command's own flags for one rank of a group on this machine."""
    flags = {
        "--node-ip": LOOPBACK,
        "--ray-port": str(group.ray_port),
        "--master-port": str(group.master_port),
        "--ports-base": str(min(ports_base, 65535 - RAY_PORTS_SPAN)),
        "--ray-temp-dir": temp_dir,
        "--auth-token-file": str(PurePosixPath(group.dir) / RAY_TOKEN_FILE),
        "--log-dir": str(PurePosixPath(group.dir) / f"rank-{rank}"),
    }
    for flag, value in flags.items():
        own = _set_flag(own, flag, value)
    return own


def worker_processes(
    plan: LLMPlan,
    model_dirs: Mapping[str, str],
    free_port: Callable[[], int],
    groups_root: str = "wharf-multinode",
) -> list[WorkerProcess]:
    """Every process of every workload. `model_dirs` maps mount paths (`/mnt/models`,
    `/mnt/lora/NAME`) to local folders; `free_port` gives a port not in use; a multi-node
    group keeps its token and logs in a folder under `groups_root`."""
    total = sum(w.replicas * w.size for w in plan.workloads)
    if total > MAX_PROCESSES:
        raise LocalPlanError(
            f"{plan.namespace}/{plan.name}: {total} worker processes; the local runtime runs "
            f"at most {MAX_PROCESSES} (lower replicas or parallelism)"
        )
    out: list[WorkerProcess] = []
    for workload in plan.workloads:
        for replica in range(workload.replicas):
            leader_port = free_port()
            group = _group(workload, replica, groups_root, free_port)
            for rank in range(workload.size):
                out.append(
                    _process(
                        plan, workload, replica, rank, leader_port, model_dirs, free_port, group
                    )
                )
    return out


def _process(
    plan: LLMPlan,
    workload: LLMWorkload,
    replica: int,
    rank: int,
    leader_port: int,
    model_dirs: Mapping[str, str],
    free_port: Callable[[], int],
    group: _Group | None,
) -> WorkerProcess:
    main = _pod_for(workload, rank).main
    env: dict[str, str] = {}
    if workload.multi_node:
        env[LEADER_ADDRESS_ENV] = LOOPBACK
        env[GROUP_SIZE_ENV] = str(workload.size)
        env[WORKER_INDEX_ENV] = str(rank)
    # a later entry may read an earlier one, as in a pod
    for key, value in main.env:
        env[key] = expand(value, env)
    port = leader_port if rank == 0 else free_port()
    side_channel = free_port() if workload.role != "both" else None
    argv = local_argv(
        main.command,
        main.args,
        port=port,
        mounts=model_dirs,
        side_channel_port=side_channel,
    )
    if not argv:
        raise LocalPlanError(f"workload {workload.name}: the main container has no command")
    multinode = group is not None and is_multinode_command(tuple(main.command))
    if multinode:
        assert group is not None
        cut = argv.index(ENGINE_ARGS_SEPARATOR) if ENGINE_ARGS_SEPARATOR in argv else len(argv)
        own = multinode_local_flags(
            argv[:cut],
            group=group,
            temp_dir=ray_temp_dir(group.dir),
            rank=rank,
            ports_base=free_port(),
        )
        if "--data-parallel-size" in argv and "--data-parallel-rpc-port" not in argv:
            own = _set_flag(own, "--data-parallel-rpc-port", str(group.data_parallel_rpc_port))
        argv = [*own, *argv[cut:]]
    return WorkerProcess(
        workload=workload.name,
        component=workload.component,
        role=workload.role,
        replica=replica,
        rank=rank,
        argv=tuple(expand(a, env) for a in argv),
        env=tuple(env.items()),
        port=port if rank == 0 else 0,
        worker=is_worker_command(main.command),
        single_engine=_single_engine(workload),
        group_dir=group.dir if multinode and group is not None else None,
    )


# What tells one write of a group's status file from another: the file is replaced whole on
# every write (a new inode, a new modification time)
StatusVersion = tuple[int, int]


def rank_in_ready_group(
    group_state: object, status_now: StatusVersion | None, status_at_start: StatusVersion | None
) -> bool:
    """Whether a rank without HTTP (not the leader) counts as ready: its group's leader reports
    the group `ready`, in a status it wrote after this rank's process started (`status_at_start`
    is the file as it was then, None when there was none). A rank the supervisor has just
    restarted is not part of the group until the leader re-forms it, while the leader may still
    answer /health for the group that lost the rank; and a status left by an earlier run says
    nothing about this one. The file's versions are compared, not its time against the
    process's start: a wall clock that jumps (a laptop waking up) cannot hold a rank back."""
    return group_state == "ready" and status_now is not None and status_now != status_at_start


def _single_engine(workload: LLMWorkload) -> bool:
    p = workload.parallelism
    ranks = 1 if p is None else max(p.tensor or 1, 1) * max(p.pipeline or 1, 1)
    return not workload.multi_node and ranks == 1


def gateway_args(
    port: int, leaders: Sequence[WorkerProcess], with_roles: bool, weights: str | None = None
) -> list[str]:
    """`wharf-router gateway`'s arguments: loopback and its port (the ingress is what users
    reach), each leader as `--endpoint URL[=ROLE]`, and the plan's scorer `--weights`
    (`wharf_api.llm.scheduler_weights`, from an inline scheduler config) when it has some."""
    args = ["--host", LOOPBACK, "--port", str(port)]
    for w in leaders:
        args += ["--endpoint", f"{w.url}={w.role}" if with_roles else w.url]
    if weights:
        args += ["--weights", weights]
    return args


def uses_gateway(plan: LLMPlan) -> bool:
    """A scheduler means a router picks the pod; without one the ingress balances them."""
    return plan.router is not None and plan.router.scheduler is not None


def drain_timeout_s(argv: Sequence[str]) -> int:
    """The worker's `--drain-timeout` (its default when absent)."""
    cut = list(argv).index(ENGINE_ARGS_SEPARATOR) if ENGINE_ARGS_SEPARATOR in argv else len(argv)
    own = list(argv[:cut])
    for i, arg in enumerate(own):
        value = None
        if arg == DRAIN_TIMEOUT_FLAG and i + 1 < len(own):
            value = own[i + 1]
        elif arg.startswith(DRAIN_TIMEOUT_FLAG + "="):
            value = arg.split("=", 1)[1]
        if value is not None and value.isdigit():
            return int(value)
    return DEFAULT_DRAIN_TIMEOUT_S


def dry_run_argv(argv: Sequence[str]) -> list[str]:
    """The worker's argv with `--dry-run` (before `--`): it prints its launch and
    `kill_timeout_s` as JSON."""
    argv = list(argv)
    cut = argv.index(ENGINE_ARGS_SEPARATOR) if ENGINE_ARGS_SEPARATOR in argv else len(argv)
    return [*argv[:cut], "--dry-run", *argv[cut:]]


# ---- status ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False"
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class WorkloadView:
    name: str
    component: str
    wanted: int  # processes
    ready: int
    last_crash: str | None
    # crashes in a row of its worst worker
    crashes: int = 0


def llm_conditions(
    workloads: Sequence[WorkloadView],
    router: bool | None,
    router_crash: str | None,
    download_failure: str | None,
    fetching: bool,
) -> list[Condition]:
    """KServe's LLMInferenceService conditions: `MainWorkloadReady`, `PrefillWorkloadReady`
    (with a prefill workload), `WorkloadsReady`, `RouterReady` and `Ready`. `router` is None
    when the service has no router process (the ingress balances the workers)."""
    conditions: list[Condition] = []
    for w in workloads:
        kind = "MainWorkloadReady" if w.component == "main" else "PrefillWorkloadReady"
        if download_failure is not None:
            conditions.append(Condition(kind, "False", "ModelDownloadFailed", download_failure))
        elif fetching:
            conditions.append(Condition(kind, "False", "Downloading", "the model is downloading"))
        elif w.ready >= w.wanted:
            conditions.append(Condition(kind, "True"))
        elif w.last_crash:
            # one crash may be the machine's (a killed process); a loop of them is the worker's
            reason = "CrashLoopBackOff" if w.crashes >= CRASH_LOOP_AFTER else "BackOff"
            conditions.append(
                Condition(kind, "False", reason, f"a worker of {w.name} {w.last_crash}")
            )
        else:
            conditions.append(
                Condition(
                    kind, "False", "Starting", f"{w.ready}/{w.wanted} workers of {w.name} ready"
                )
            )
    bad = [c for c in conditions if c.status != "True"]
    conditions.append(
        Condition("WorkloadsReady", "True")
        if not bad
        else Condition("WorkloadsReady", "False", bad[0].reason, bad[0].message)
    )
    if router is True or router is None:
        conditions.append(Condition("RouterReady", "True"))
    elif router_crash:
        conditions.append(
            Condition("RouterReady", "False", "RouterCrashed", f"the router {router_crash}")
        )
    else:
        conditions.append(
            Condition("RouterReady", "False", "RouterStarting", "the router is starting")
        )
    not_ready = [c for c in conditions if c.status != "True"]
    conditions.append(
        Condition("Ready", "True")
        if not not_ready
        else Condition("Ready", "False", not_ready[0].reason, not_ready[0].message)
    )
    return conditions
