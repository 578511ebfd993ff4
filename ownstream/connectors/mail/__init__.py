"""What a mail record is, whichever path (IMAP or an mbox export) acquired it.

Both mail connectors build records with this package, so one message read from an IMAP server
and from an export of the same mailbox gets the same key and, field for field, the same data:
the paths then enrich one record instead of making two.
"""

from ownstream.connectors.mail.keys import KeyAssigner, KeyBasis, normalize_message_id
from ownstream.connectors.mail.message import (
    MAX_MESSAGE_BYTES,
    Rejected,
    build_record,
    crlf_size,
    normalize_folder,
)
from ownstream.connectors.mail.rejections import Rejections

CLAIM = "mail_account"
MESSAGES = "messages"
MAIL_FOLDERS = "mail_folders"

SYSTEM_FLAGS = ("\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen")

__all__ = [
    "CLAIM",
    "MAIL_FOLDERS",
    "MAX_MESSAGE_BYTES",
    "MESSAGES",
    "SYSTEM_FLAGS",
    "KeyAssigner",
    "KeyBasis",
    "Rejected",
    "Rejections",
    "build_record",
    "crlf_size",
    "normalize_folder",
    "normalize_message_id",
]
