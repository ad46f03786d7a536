"""`wharf-model-agent`: the node's model cache agent (one per node, as a DaemonSet)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from wharf_model_agent.agent import Agent
from wharf_model_agent.config import AgentConfig, parse_config
from wharf_model_agent.http import serve
from wharf_model_agent.kube import LocalModelApi, connect

log = logging.getLogger("wharf_model_agent")


async def run(config: AgentConfig) -> None:
    api_client = await connect(config.kubeconfig)
    agent = Agent(config, LocalModelApi(api_client))
    runner = await serve(agent, config.metrics_port) if config.metrics_port else None
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    log.info("watching LocalModelNode %s; cache %s", config.node_name, agent.layout.models_dir)
    try:
        await agent.run()
    except asyncio.CancelledError:
        log.info("stopping")
    finally:
        if runner is not None:
            await runner.cleanup()
        await api_client.close()


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_config(argv)
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(run(config))


if __name__ == "__main__":
    main()
