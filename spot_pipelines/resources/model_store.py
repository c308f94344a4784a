"""ModelStore: where versioned model artifacts (joblib bytes) live. Local directory by default.

The abstract base keeps the assets storage-agnostic (an S3 store would implement the same three
methods); vetting an artifact's content is `core.ml.deserialize`'s job.
"""

import os
import tempfile
from abc import abstractmethod
from pathlib import Path

import dagster as dg

from spot_pipelines.core.ml import ModelArtifactError
from spot_pipelines.settings import dagster_home


class ModelStore(dg.ConfigurableResource):
    """Stores artifact bytes under a name and hands back a URI the registry records."""

    @abstractmethod
    def write(self, name: str, data: bytes) -> str:
        """Store `data` atomically; return its URI."""

    @abstractmethod
    def read(self, uri: str) -> bytes:
        """The bytes at `uri`, or ModelArtifactError if they are not there."""

    @staticmethod
    def artifact_name(version: int) -> str:
        return f"interruption_model/v{version:05d}.joblib"


class LocalModelStore(ModelStore):
    """Artifacts under `base_dir` (default `$DAGSTER_HOME/models`)."""

    base_dir: str | None = None

    def root(self) -> Path:
        return Path(self.base_dir) if self.base_dir else dagster_home() / "models"

    def write(self, name: str, data: bytes) -> str:
        path = self.root() / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".joblib")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.resolve().as_uri()

    def read(self, uri: str) -> bytes:
        path = Path(uri.removeprefix("file://"))
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ModelArtifactError(f"model artifact {uri} cannot be read: {exc.strerror or exc}") from None
