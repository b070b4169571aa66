"""mailxfer: moves SES inbound mail from S3 to the receiver, signed.

Standard library and boto3 only, and nothing from the other packages, so the
deployed Lambda zip is this folder alone.
"""

from mailxfer.handler import handler

__all__ = ["handler"]
