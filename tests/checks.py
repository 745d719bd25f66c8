"""Checks that several test modules share: closeness to torch's result, the tolerances of the
parity tests, the error-message test over a module's own table of cases, and a call recorder."""

from __future__ import annotations

import numpy as np
import pytest

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-4)}
PARITY_TOL = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
}
"""Per dtype, the tolerance of the layer parity tests against torch (functional, activations,
losses, resampling)."""


def close(ours, theirs, dtype, what):
    """``ours`` has ``dtype``, the shape of ``theirs`` (a torch tensor or an array) and its values
    to TOL[dtype]; ``what`` names the comparison in a failure."""
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.dtype == dtype, what
    assert ours.shape == theirs.shape, f"{what}: {ours.shape} vs torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, err_msg=what, **TOL[dtype])


def error_message_test(cases):
    """A test over ``cases``, rows (id, call, exception, message pattern): each call raises that
    exception with a message that matches the pattern (re.search). Assign it to a module-level
    ``test_...`` name for pytest to collect it."""

    @pytest.mark.parametrize(
        ("call", "exception", "message"), [c[1:] for c in cases], ids=[c[0] for c in cases]
    )
    def test_error_messages(call, exception, message):
        with pytest.raises(exception, match=message):
            call()

    return test_error_messages


def record_calls(monkeypatch, owner, name: str) -> list:
    """Patch ``owner.name`` to record the shape of its first argument at every call; returns
    the record (a list that grows as the patched function is called)."""
    calls, original = [], getattr(owner, name)

    def recorded(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls
