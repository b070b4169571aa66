"""mailxfer: moves SES inbound mail from S3 to the receiver, signed.

Standard library and boto3 only, and nothing from the other packages, so the
deployed Lambda zip is this folder alone.
"""

from mailxfer.handler import handler

__version__ = "0.1.0"
__all__ = ["__version__", "handler"]
