"""The IMAP connector: a live mailbox, incrementally per folder."""
