"""The mbox importer: plain mbox files, Google Takeout archives, Thunderbird profiles."""
