"""Real trial functions for the search tests: each prints `name=value` lines as a trainer does.

They live in a module of their own so that spawned worker processes can import them.
"""

import os
import time

OPTIMUM = {"x": 0.3, "y": -1.2, "n": 3, "kind": "b"}


def quadratic(context, params):
    """loss = distance to OPTIMUM (0 there); the categorical and int parameters add their own penalty."""
    loss = (params["x"] - 0.3) ** 2 + (params["y"] + 1.2) ** 2
    loss += 0.1 * (params.get("n", 3) - 3) ** 2 + (0.0 if params.get("kind", "b") == "b" else 1.0)
    print(f"epoch=1 loss={loss + 1.0:.6f}")
    print(f"loss={loss:.8f} other-metric=3e-2")


def grid_point(context, params):
    print(f"score={params['a'] * 10 + params['b']} c={params['c']}")


def epochs(context, params):
    """Ten epochs; the objective `accuracy` of epoch e is quality * e / 10: a low-quality trial is worse at every
    step, which median stopping must catch."""
    for epoch in range(1, 11):
        print(f"epoch={epoch} accuracy={params['quality'] * epoch / 10:.4f}")
        time.sleep(0.02)


def flaky(context, params):
    """Fails (raises) for x < 0.5; reports nothing for 0.5 <= x < 0.6; succeeds otherwise."""
    if params["x"] < 0.5:
        raise RuntimeError(f"diverged at x={params['x']}")
    if params["x"] < 0.6:
        print("no metrics here")
        return
    print(f"loss={params['x']}")


def crash(context, params):
    """Kills its own worker process, as an out-of-memory kill would."""
    if params["x"] < 0.5:
        os._exit(3)
    print(f"loss={params['x']}")


def load_context(path):
    with open(path) as f:
        return {"offset": float(f.read())}


def with_context(context, params):
    print(f"loss={(params['x'] - context['offset']) ** 2}")
