"""Reading a tracking server as one browser session's user, not as the dashboard process.

MLflow's client takes its credentials from the process environment (MLFLOW_TRACKING_USERNAME / _PASSWORD), for
the tracking REST store and for the proxied artifact repository alike, so one process could read as one user
only. A team dashboard asks each session to sign in (dashboard/sign_in.py) and reads through a client whose
store and artifact downloads carry that session's credentials; MLflow offers no per-client credentials, so this
swaps in its own tracking client (a private attribute, as bulk.store_of reads it).
"""

import tempfile
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.store.tracking.rest_store import RestStore
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.client import TrackingServiceClient
from mlflow.utils.rest_utils import MlflowHostCreds

from core.store import Credentials

DOWNLOAD_SECONDS = 60  # one artifact file through the server's proxy


class SignedInTracking(TrackingServiceClient):
    """MLflow's tracking client, its REST store and its artifact downloads as `credentials`' user."""

    def __init__(self, uri: str, credentials: Credentials):
        self.credentials = credentials
        self._store = RestStore(lambda: MlflowHostCreds(uri, username=credentials.user, password=credentials.password))
        super().__init__(uri)

    @property
    def store(self) -> RestStore:
        return self._store

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        """One artifact file of the run, through the server's artifact proxy, as this user; an artifact store the
        server does not proxy (S3, say) is read with the store's own credentials, as MLflow reads it."""
        artifact_uri = self.get_run(run_id).info.artifact_uri
        if not artifact_uri.startswith("mlflow-artifacts:"):
            return super().download_artifacts(run_id, path, dst_path)
        url = f"{MlflowArtifactsRepository.resolve_uri(artifact_uri, self.tracking_uri)}/{quote(path)}"
        if urlsplit(url)[:2] != urlsplit(self.tracking_uri)[:2]:  # mlflow-artifacts://other.host/...: any owner of
            # an experiment may set it, and the password goes to the tracking server only
            raise MlflowException(f"run {run_id}'s artifacts are not on the tracking server", RESOURCE_DOES_NOT_EXIST)
        with requests.get(url, auth=self.credentials.basic_auth(), stream=True, timeout=DOWNLOAD_SECONDS) as answer:
            if answer.status_code == 404:
                raise MlflowException(f"run {run_id} has no artifact {path}", RESOURCE_DOES_NOT_EXIST)
            answer.raise_for_status()
            local = Path(dst_path or tempfile.mkdtemp()) / path
            local.parent.mkdir(parents=True, exist_ok=True)
            with open(local, "wb") as out:
                for chunk in answer.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
        return str(local)


def signed_in_client(uri: str, credentials: Credentials) -> MlflowClient:
    """A client on the server `uri` reading as `credentials`' user, whatever the process environment says."""
    client = MlflowClient(uri)
    client._tracking_client = SignedInTracking(uri, credentials)
    return client
