"""The Open Inference protocol (KServe V2) over REST, with the binary tensor data extension: Triton and KServe
clients talk to fastserve unchanged."""

from fastserve.http.v2.infer import handle_infer, infer_target
from fastserve.http.v2.metadata import ROUTES

__all__ = ["ROUTES", "handle_infer", "infer_target"]
