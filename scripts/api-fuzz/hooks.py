"""Schemathesis hooks for scripts/api-fuzz.sh: checks specific to logpipe's API."""

import schemathesis
from schemathesis.core.parameters import ParameterLocation

BATCH = "/api/v1/logs/batch"


@schemathesis.check
def batch_reports_refused_events(ctx, response, case):
    """A schema-violating batch may be accepted in part, never in full: a 202 to one must list
    the events it refused."""
    meta = case.meta
    if case.operation.path != BATCH or meta is None:
        return None
    body = meta.components.get(ParameterLocation.BODY)
    # Only a broken body counts: an extra header or query parameter leaves the events valid.
    if body is None or not body.mode.is_negative:
        return None
    if response.status_code != 202:
        return None
    body = response.json()
    if not body.get("rejected"):
        raise AssertionError(
            f"a batch that breaks the schema was accepted in full: {body.get('accepted')} events, none refused"
        )
    return None


@schemathesis.check
def errors_carry_code_and_request_id(ctx, response, case):
    """Every error answer names a stable code and the request id, and never leaks internals."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"error answer {response.status_code} is not JSON: {response.text[:200]!r}")
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not error.get("code") or not error.get("request_id"):
        raise AssertionError(f"error answer without error.code and error.request_id: {body}")
    if response.headers.get("x-request-id", [None])[0] != error["request_id"]:
        raise AssertionError("error.request_id differs from the X-Request-Id header")
    return None
