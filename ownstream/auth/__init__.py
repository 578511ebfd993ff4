"""Client access: an OAuth 2 authorization server in front of ownstream's grants.

Discovery (RFC 9728 / 8414), client registration (RFC 7591), pushed authorization requests
(RFC 9126) carrying PDPP `authorization_details` (RFC 9396), the authorization code flow with
PKCE S256, the device flow (RFC 8628), the PDPP agent-connect flow, refresh-token families,
introspection (RFC 7662) and revocation (RFC 7009), and the owner's console sign-in. A consent
creates an ordinary grant (`grants.issue.build_grant`); reads are enforced as before.
"""

SCOPE = "pdpp:read"
DATA_ACCESS_TYPE = "https://pdpp.dev/data-access"
DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"

ACCESS_TOKEN_SECONDS = 3600
AUTHORIZATION_SECONDS = 600  # a pending request (PAR, device, agent connect) waits this long
CODE_SECONDS = 300
POLL_INTERVAL_SECONDS = 2  # agent connect; the device flow uses 5, as RFC 8628 suggests
DEVICE_POLL_INTERVAL_SECONDS = 5
