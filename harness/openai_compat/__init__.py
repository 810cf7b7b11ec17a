"""Calling OpenAI-compatible servers safely: the pieces any caller of such a server reuses.

The judge (`chexbench judge`) is the first user; a model under test served behind an
OpenAI-compatible endpoint is the next. Each module has one job:

- `endpoint`: which server is called (flag, `$OPENAI_BASE_URL`, api.openai.com), refusing
  URLs that carry credentials, normalised so that it can key a cache;
- `secrets`: the API key read from the environment only, and masked in every message;
- `usage`: the `usage` a server reports, validated before a cent is booked;
- `client`: one request through the `openai` client with one retry policy, a total deadline
  per attempt (a trickled answer cannot outlive it) and a server's Retry-After;
- `cache`: a SQLite request cache keyed by the endpoint and every request field, which is also
  the ledger of every paid call, with a claim table so that processes sharing it never pay
  twice for one request;
- `batch`: many requests through client and cache, bounded concurrency, claims honoured;
- `cost`: prices, estimates and ledger totals.

Core layer: it imports nothing from the engine, the analyses or the CLI.
"""
