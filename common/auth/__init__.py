"""Authentication and authorization like MLflow 3's ``basic-auth`` app, shared by ingest and
query (and so standalone): `install_security(app, settings, db)` adds the browser policy, the
auth middleware and API (``GENESIS_FLOW_AUTH=basic``) and the rate limits to a tier's app.

Modules: `permissions` (levels), `passwords` (scrypt, token digests), `store` (MongoDB users,
tokens, grants), `identity` (Basic/Bearer, verified-credential cache), `rules` (what each route
requires), `authorize` (resolving resources to experiments, grants, search filtering),
`middleware`, `api` (the REST API the stock AuthServiceClient calls)."""

from common.auth.install import install_security

__all__ = ["install_security"]
