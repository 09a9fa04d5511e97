"""The query tier: MLflow's read endpoints, answered from MongoDB.

Reading order for a newcomer: `routes.py` (the endpoints; thin), `requests.py` (request messages),
then the logic per resource: `experiments.py`, `runs.py`, `history.py`. Searches go through
`filters.py` (the MLflow search grammar -> typed clauses), `translate.py` (clauses -> MongoDB
query and sort plan), `paging.py` (keyset page tokens) and `search.py` (one query per page).
`app.py` builds the aiohttp application from its dependencies.
"""
