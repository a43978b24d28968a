"""Connecting to Ray: a local cluster for one sweep, or the cluster a ``ray job submit`` runs in.

Ray 2.60 facts this module works with (read from the installed package):

- **Token auth is on by default for a new local cluster.** ``ray.init()`` without an address and with
  ``RAY_AUTH_MODE`` unset switches to ``token`` mode and writes a random token to ``~/.ray/auth_token``
  (created if missing). ``ray start --head`` only enables token mode if a token already exists
  (``ray get-auth-token --generate``) or ``RAY_AUTH_MODE=token``. Clients (``ray job submit``, a driver
  with ``RAY_ADDRESS``) then need the same token: the file, ``RAY_AUTH_TOKEN`` or
  ``RAY_AUTH_TOKEN_PATH``. ``RAY_AUTH_MODE=disabled`` opts out (the tests do, so they never touch
  ``~/.ray``). busray does not change the mode: it is the operator's security decision.
- **Trial slots.** A local cluster gets ``busray_trial_slot = max_concurrent``; each trial driver takes
  one slot and no CPU. On an existing cluster started without that resource (``ray start --head
  --resources '{"busray_trial_slot": 8}'`` adds it), trial drivers ask for 1 byte of ``memory``
  instead, and Tune's ``max_concurrent_trials`` alone bounds concurrency.
- **The dashboard is needed.** Ray Train V2's ``PlacementGroupCleaner`` asks the state API (served by
  the dashboard of ``ray[default]``) whether a trial's Train controller is still alive; without it the
  placement groups of trials that ASHA stopped are never removed and later trials wait forever for
  their CPUs. So the dashboard is left on (``include_dashboard`` default), bound to 127.0.0.1.
- ``_temp_dir`` (sockets and logs) must stay short: Unix socket paths are limited to 107 bytes.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from busray.sweep.trial import SLOT_RESOURCE

TEMP_DIR_ENV = "BUSRAY_RAY_TEMP_DIR"


def start_local_ray(max_concurrent: int, temp_dir: str | None = None, num_cpus: int | None = None) -> None:
    """Start a private local cluster with ``max_concurrent`` trial slots."""
    import ray

    temp_dir = temp_dir or os.environ.get(TEMP_DIR_ENV)
    ray.init(resources={SLOT_RESOURCE: float(max_concurrent)}, num_cpus=num_cpus,
             _temp_dir=temp_dir, dashboard_host="127.0.0.1", log_to_driver=True,
             configure_logging=True, logging_level="WARNING")


@contextlib.contextmanager
def ray_session(max_concurrent: int, temp_dir: str | None = None) -> Iterator[None]:
    """Use the running Ray (tests, notebooks), the cluster of ``RAY_ADDRESS``, or a new local one.

    Ray is shut down on exit only when this function started or connected it.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], logging_level="WARNING")
    else:
        start_local_ray(max_concurrent, temp_dir)
    try:
        yield
    finally:
        ray.shutdown()


def trial_driver_resources() -> dict[str, float]:
    """What each Tune trial driver reserves (see the module docstring)."""
    import ray

    if ray.cluster_resources().get(SLOT_RESOURCE, 0) >= 1:
        return {"CPU": 0.0, SLOT_RESOURCE: 1.0}
    return {"CPU": 0.0, "memory": 1.0}
