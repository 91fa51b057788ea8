"""The lock-out's counters in Redis, shared by every process with the same Redis and prefix.

One key per counter, `<prefix>:lockout:<kind>:<hex>`, holding the counter (Redis's own clock,
seconds) and expiring when it has drained: nothing outlives its last failure by more than its
budget's day. An admission is one Lua script (atomic: decide and charge, counter_store.decide
in Lua), so two processes admitting at once cannot both take the last room, and a failure
costs that one round trip and nothing more. A refund (success) goes in the background.

Times cross the wire as seconds remaining, never as clock readings: every counter is kept on
Redis's clock (TIME inside the scripts), so the processes' clocks need not agree, and a
process whose clock is off cannot drain or inflate anyone's counters.

This process keeps what Redis last said about each key it touched (a MemoryCounterStore):
remembered logins are decided from it without a round trip (authn/lockout.py), and while Redis is
unavailable it is the store, counting here alone. The keys charged meanwhile are pushed to
Redis when it answers again (the higher of the two counters wins).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from redis.commands.core import AsyncScript

from kube_front_proxy.authn.counter_store import Admission, Budget, MemoryCounterStore, decide
from kube_front_proxy.state.redis_link import Client, RedisLink, Unavailable

# Counters are seconds on Redis's clock, written with 17 significant digits (exact doubles).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function put(key, counter)
  if counter > now then
    redis.call('SET', key, string.format('%.17g', counter), 'PX',
               math.ceil((counter - now) * 1000))
  else
    redis.call('DEL', key)
  end
end
"""

# KEYS: the strict budgets' counters, then the alternatives'. ARGV[1]: the number of strict
# ones; then each key's interval and burst. Returns the wait (<= 0: admitted and charged),
# the index of the alternative charged (0: none), and each counter as seconds remaining.
ADMIT = (
    _NOW
    + """
local strict = tonumber(ARGV[1])
local counters = redis.call('MGET', unpack(KEYS))
for i = 1, #KEYS do counters[i] = tonumber(counters[i]) or 0 end
local function wait(i)
  local interval, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  return math.max(counters[i], now) + (1 - burst) * interval - now
end
local w = -math.huge
for i = 1, strict do w = math.max(w, wait(i)) end
local chosen = 0
if #KEYS > strict then
  local least = math.huge
  for i = strict + 1, #KEYS do
    local wi = wait(i)
    if wi <= 0 then chosen = i break end
    least = math.min(least, wi)
  end
  if chosen == 0 then w = math.max(w, least) end
end
if w <= 0 then
  for i = 1, #KEYS do
    if i <= strict or i == chosen then
      counters[i] = math.max(counters[i], now) + tonumber(ARGV[2 * i])
      put(KEYS[i], counters[i])
    end
  end
end
local out = {string.format('%.17g', w), chosen}
for i = 1, #KEYS do out[#out + 1] = string.format('%.17g', counters[i] - now) end
return out
"""
)

# KEYS: counters to refund one failure each, ARGV: their intervals ("clear": delete the key).
REFUND = (
    _NOW
    + """
for i, key in ipairs(KEYS) do
  if ARGV[i] == 'clear' then
    redis.call('DEL', key)
  else
    local counter = tonumber(redis.call('GET', key))
    if counter then put(key, counter - tonumber(ARGV[i])) end
  end
end
"""
)

# KEYS: counters, ARGV: seconds remaining each; a counter becomes the higher of the two.
RAISE = (
    _NOW
    + """
for i, key in ipairs(KEYS) do
  local counter = tonumber(redis.call('GET', key)) or 0
  put(key, math.max(counter, now + tonumber(ARGV[i])))
end
"""
)

# Keys pushed per script call when Redis is back.
_BATCH = 500


class RedisCounterStore:
    def __init__(
        self,
        link: RedisLink,
        local: MemoryCounterStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """clock: the lock-out's (what `now` means in every call, and in `local`)."""
        self.link = link
        self.local = local
        self._clock = clock
        self.prefix = f"{link.settings.key_prefix}:lockout:".encode()
        self._admit = link.client.register_script(ADMIT)
        self._refund = link.client.register_script(REFUND)
        self._raise = link.client.register_script(RAISE)
        # Keys charged here while Redis was unavailable: pushed to it when it is back.
        self._unsynced: set[bytes] = set()
        link.on_recovery(self._resync)

    def redis_key(self, key: bytes) -> bytes:
        return self.prefix + key[:1] + b":" + key[1:].hex().encode()

    def admit(
        self, strict: Sequence[Budget], either: Sequence[Budget], now: float
    ) -> asyncio.Future[Admission]:
        if self.link.up:
            return asyncio.ensure_future(self._admit_shared(strict, either, now))
        done = asyncio.get_running_loop().create_future()
        done.set_result(self._admit_here(strict, either, now))
        return done

    async def _admit_shared(
        self, strict: Sequence[Budget], either: Sequence[Budget], now: float
    ) -> Admission:
        budgets = (*strict, *either)
        keys = [self.redis_key(b.key) for b in budgets]
        args: list[float] = [len(strict)]
        for b in budgets:
            args += (b.interval, b.burst)
        try:
            reply = await self.link.call(lambda r: _run(self._admit, r, keys, args))
        except Unavailable:
            return self._admit_here(strict, either, now)
        wait, chosen = float(reply[0]), int(reply[1])
        for budget, remaining in zip(budgets, reply[2:], strict=True):
            self.local.record(budget.key, now + float(remaining), now)
        if wait > 0:
            return Admission(wait)
        return Admission(wait, (*strict, budgets[chosen - 1]) if chosen else tuple(strict))

    def _admit_here(
        self, strict: Sequence[Budget], either: Sequence[Budget], now: float
    ) -> Admission:
        admission = self.local.admit_now(strict, either, now)
        if len(self._unsynced) < 4 * self.local.max_per_kind:
            self._unsynced.update(b.key for b in admission.charged)
        return admission

    def known_wait(
        self, strict: Sequence[Budget], either: Sequence[Budget], now: float
    ) -> float | None:
        if not self.link.up:
            return self.local.known_wait(strict, either, now)
        counters = [self.local.known(b.key, now) for b in (*strict, *either)]
        if any(c is None for c in counters):
            return None
        return decide(strict, either, [c or 0.0 for c in counters], now).wait

    def known(self, key: bytes, now: float) -> float | None:
        return self.local.known(key, now)

    def tracked(self, kind: int) -> int:
        return self.local.tracked(kind)

    def refund(self, charged: Sequence[Budget], now: float, clear: bytes = b"") -> None:
        self.local.refund(charged, now, clear)
        keys = [self.redis_key(b.key) for b in charged]
        args: list[float | str] = [b.interval for b in charged]
        if clear:
            keys.append(self.redis_key(clear))
            args.append("clear")
        self.link.spawn(lambda r: _run(self._refund, r, keys, args))

    async def _resync(self, client: Client) -> None:
        now = self._clock()
        pending = sorted(self._unsynced)
        for start in range(0, len(pending), _BATCH):
            keys, args = [], []
            for key in pending[start : start + _BATCH]:
                remaining = (self.local.known(key, now) or 0.0) - now
                if remaining > 0:
                    keys.append(self.redis_key(key))
                    args.append(remaining)
            if keys:
                await self.link.timed(_run(self._raise, client, keys, args))
        self._unsynced.clear()


async def _run(
    script: AsyncScript, client: Client, keys: Sequence[bytes], args: Sequence[float | str]
) -> list[bytes]:
    reply: list[bytes] = await script(keys=list(keys), args=list(args), client=client)
    return reply
