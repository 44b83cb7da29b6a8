"""The coordinator: sequencer, broadcaster, monitor, reads and the client port (docs/protocol.md).

Run it with `webfront coordinator --config FILE` or flags; see `main`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import select
import signal
import sys
from collections.abc import Sequence

from webfront.coordinator.config import CoordinatorConfig, add_arguments, from_args


async def serve(config: CoordinatorConfig) -> int:
    from webfront.coordinator.core import Coordinator

    loop = asyncio.get_running_loop()
    coordinator = Coordinator(config, loop)
    stop = loop.create_future()
    coordinator.on_fatal = lambda: stop.done() or stop.set_result(None)
    await coordinator.start()
    if config.metrics_port:
        from webfront.coordinator.metrics import start_metrics

        start_metrics(coordinator, config.metrics_port, config.listen[0])
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    try:
        await stop
    finally:
        coordinator.stop()
    return coordinator.exit_code


def run(config: CoordinatorConfig) -> int:
    """Run the coordinator until SIGINT/SIGTERM (0), until fenced by a newer one (3), or until
    its state dir cannot store an epoch (4); 2 when its state dir cannot be read. On uvloop
    when it is installed."""
    from webfront.coordinator.events import event
    from webfront.coordinator.state_files import StateDirError

    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # stock asyncio works, a little slower
        factory = None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(serve(config))
    except StateDirError as exc:
        event("fatal", "error", reason=str(exc), msg=f"cannot start: {exc}")
        return 2


STANDBY_IDLE_S = 1.0


def wait_for_promotion() -> bool:
    """A warm standby: everything imported, nothing bound or connected, until a line on stdin
    says go (True). End of input, its supervisor gone, means exit (False). The imports wait
    STANDBY_IDLE_S first: a standby is started just as the coordinator it replaced takes over,
    and its imports (what a cold start spends its first ~100 ms on) should not take the CPU
    from that takeover."""
    stdin = sys.stdin.buffer
    select.select([stdin], [], [], STANDBY_IDLE_S)
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass
    import webfront.coordinator.core
    import webfront.coordinator.metrics  # noqa: F401

    return stdin.readline() != b""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webfront coordinator", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--standby", action="store_true",
                        help="start warm and wait: run only once a line arrives on stdin "
                        "(exit 0 at end of input); `webfront cluster up` keeps one ready")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s coordinator %(levelname)s %(message)s",
    )
    try:
        config = from_args(args)
    except ValueError as exc:  # ConfigError among them: one line, no traceback, exit 2
        print(f"webfront coordinator: {exc}", file=sys.stderr)
        return 2
    if args.standby and not wait_for_promotion():
        return 0
    return run(config)
