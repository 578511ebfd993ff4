"""The owner's browser console: server-rendered pages (templates/) and one stylesheet (static/).

This issue brings sign-in and the consent page; the console issue builds the rest on them.
"""
