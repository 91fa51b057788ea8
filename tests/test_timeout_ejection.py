"""A request answered with our 504 (upstream.response_timeout_seconds) is a failure of its API
server for passive ejection, not an answer: a hung server must not look healthy."""

from __future__ import annotations

from mitmproxy.test import tflow

from kube_front_proxy.upstream.pool import ROUND_ROBIN, ServerPool
from kube_front_proxy.upstream.response_timeout import TIMED_OUT
from kube_front_proxy.upstream.routing import Router

A, B = ("10.0.0.1", 6443), ("10.0.0.2", 6443)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_timed_out_request_ejects_its_server_and_a_real_answer_does_not() -> None:
    pool = ServerPool([A, B], ROUND_ROBIN, 10, clock=Clock())
    router = Router(pool, retries=1)
    timed_out, answered = tflow.tflow(), tflow.tflow()
    router.route(timed_out)
    router.route(answered)
    assert (timed_out.request.host, answered.request.host) == (A[0], B[0])
    timed_out.metadata[TIMED_OUT] = 60
    router.answered(timed_out)
    router.answered(answered)
    assert [(s.outstanding, s.failures, s.ejected_until) for s in pool.servers] == [
        (0, 1, 110.0),
        (0, 0, 0.0),
    ]
    for _ in range(3):
        f = tflow.tflow()
        router.route(f)
        assert f.request.host == B[0]
        router.answered(f)
