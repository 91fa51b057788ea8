"""Live reload: config.yaml and every file it names are watched; a valid change takes effect,
a broken one is logged (file and key) and the last good configuration keeps serving.

Polling os.stat is enough for a handful of files, works on every platform, and sees
Kubernetes Secret and ConfigMap updates, which swap a symlink (a new inode) rather than write
in place. Connections already open keep their TLS session; new ones use the new certificates.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.runtime import Runtime, build_runtime

logger = logging.getLogger("kube_front_proxy")

Snapshot = dict[Path, tuple[int, int, int] | None]


def snapshot(paths: Iterable[Path]) -> Snapshot:
    """Identity (inode, mtime, size) of each file, None for a missing one."""
    result: Snapshot = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            result[path] = None
        else:
            result[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return result


def restart_needed(current: Runtime, new: Runtime) -> str | None:
    """Why `new` cannot replace `current` without a restart, or None if it can."""
    if new.needs_restart_to_change != current.needs_restart_to_change:
        return "changes to listen, upstream.servers, metrics or audit need a restart"
    return None


class Reloader:
    """Rebuilds the runtime when a watched file changes and hands it to `use`."""

    def __init__(
        self,
        current: Callable[[], Runtime],
        use: Callable[[Runtime], None],
        refused: Callable[[], None] = lambda: None,
    ) -> None:
        self._current = current
        self._use = use
        self._refused = refused
        self._seen = snapshot(current().watched_files)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.check()

    async def check(self) -> bool:
        """One look at the files; True if a new configuration was taken into use."""
        current = self._current()
        now = snapshot(current.watched_files)
        if now == self._seen:
            return False
        self._seen = now
        try:
            new = await asyncio.to_thread(build_runtime, current.settings.file, current)
        except ConfigError as e:
            logger.error("kube-front-proxy: reload refused, still serving the last good "
                         "configuration: %s", e)  # fmt: skip
            self._refused()
            return False
        refusal = restart_needed(current, new)
        if refusal:
            logger.error("kube-front-proxy: reload refused: %s; still serving the last good "
                         "configuration", refusal)  # fmt: skip
            self._refused()
            return False
        self._use(new)
        self._seen = snapshot(new.watched_files)
        logger.info("kube-front-proxy: configuration reloaded from %s", new.settings.file)
        return True
