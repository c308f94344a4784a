"""The local AWS emulator for the demo: moto's server on 127.0.0.1 in this process, with
deterministic resource ids, seeded spot price histories and a stand-in for the commitment APIs moto lacks."""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.request
from collections.abc import Iterator

from moto.server import ThreadedMotoServer

from spot_pipelines.demo.commitments import emulate_commitments
from spot_pipelines.demo.ports import free_port
from spot_pipelines.demo.price_emulation import emulate_spot_prices
from spot_pipelines.demo.workbench import EMULATOR_VARIABLES

SEED = 20251122
# A fixed, known port, so another shell can find the emulator (`spot-pipelines demo env`); when it
# is taken, a free one is used and recorded.
EMULATOR_PORT = 5055


@contextlib.contextmanager
def local_aws(instance_types: list[str], port: int = EMULATOR_PORT) -> Iterator[str]:
    """Start the emulator (on `port`, else a free one), point boto3 (this process and its children)
    at it, yield its URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every call otherwise
    port = free_port(port)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in EMULATOR_VARIABLES}
    # The platform's own identity in the emulator: it assumes the role-based account's role.
    # moto has no Price List API: a closed port makes that unreachability quick and quiet, and
    # on_demand_prices falls back to its bundled snapshot (saying so in its metadata).
    os.environ["AWS_ENDPOINT_URL_PRICING"] = f"http://127.0.0.1:{free_port()}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="demo-platform",
        AWS_SECRET_ACCESS_KEY="demo-platform-secret",
        AWS_DEFAULT_REGION="us-east-1",
    )
    # Same seed, same instance ids: re-running the demo updates rows instead of adding new ones.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/seed?a={SEED}", method="POST")).read()
    try:
        with emulate_spot_prices(seed=SEED, instance_types=instance_types), emulate_commitments():
            yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
