"""The os-ken WSGI context serves routes registered after its first request.

The server starts before the app has loaded its store and registered its REST controller; a
request in between (a D-MA retrying, a test polling) must not leave the API answering 404 for
good (it did: Routes compiles its patterns at the first match only).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("os_ken")

from routes import Mapper
from webob import Request as WebobRequest

from apps.osken_wsgi import ControllerBase, Response, WSGIApplication, route


class Hello(ControllerBase):
    @route("hello", "/hello", methods=["GET"])
    def hello(self, req: Any, **_: Any) -> Any:
        return Response(body=b"hi", content_type="text/plain")


def test_a_route_registered_after_a_request_answers() -> None:
    app = WSGIApplication.__new__(WSGIApplication)
    app.config, app.mapper, app.registory = {}, Mapper(), {}
    assert WebobRequest.blank("/hello").get_response(app).status_int == 404  # not yet
    app.register(Hello, {"x": 1})
    answer = WebobRequest.blank("/hello").get_response(app)
    assert answer.status_int == 200 and answer.body == b"hi"
