"""The cast of the demo data: organizations, users, the words workflows are named with,
node kinds, error signatures and the timing of the planted stories (see :mod:`flowscope.demo`).
"""

from __future__ import annotations

from datetime import timedelta

MARKER_ORG = "org_demo_acme"
UNUSABLE_PASSWORD = "!"  # as the seeded admin: no password matches until one is set
PREFIXES = {"organizations": "org_demo_", "users": "usr_demo_", "workflows": "wf_demo_"}

ORGANIZATIONS = (
    # id, name, slug, share of the workflows
    ("org_demo_acme", "Acme Logistics", "demo-acme", 0.5),
    ("org_demo_globex", "Globex Retail", "demo-globex", 0.3),
    ("org_demo_initech", "Initech Finance", "demo-initech", 0.2),
)
USERS = (
    # username, full name, organization
    ("ana", "Ana Souza", "org_demo_acme"),
    ("bruno", "Bruno Keller", "org_demo_acme"),
    ("chen", "Chen Wei", "org_demo_acme"),
    ("dara", "Dara O'Neill", "org_demo_acme"),
    ("emeka", "Emeka Obi", "org_demo_globex"),
    ("fatima", "Fatima Zahra", "org_demo_globex"),
    ("gus", "Gus Lindqvist", "org_demo_globex"),
    ("hana", "Hana Sato", "org_demo_globex"),
    ("ivan", "Ivan Petrov", "org_demo_initech"),
    ("jia", "Jia Li", "org_demo_initech"),
    ("kofi", "Kofi Mensah", "org_demo_initech"),
    ("lena", "Lena Fischer", "org_demo_initech"),
)
ORG_DOMAINS = {
    "org_demo_acme": "acme.example",
    "org_demo_globex": "globex.example",
    "org_demo_initech": "initech.example",
}

# subject → domain tag
SUBJECTS = {
    "orders": "sales",
    "invoices": "finance",
    "customers": "crm",
    "inventory": "ops",
    "shipments": "ops",
    "payments": "finance",
    "leads": "marketing",
    "tickets": "support",
    "web-events": "analytics",
    "features": "ml",
    "pricing": "sales",
    "fraud-scores": "ml",
    "payroll": "finance",
    "ledger": "finance",
    "contacts": "crm",
    "campaigns": "marketing",
    "returns": "ops",
    "sessions": "analytics",
    "churn-model": "ml",
    "warehouse": "data",
}
ACTIONS = (
    "sync",
    "etl",
    "daily report",
    "backfill",
    "export",
    "enrich",
    "reconcile",
    "alerts",
    "refresh",
    "scoring",
    "cleanup",
    "ingest",
)
PIPELINE_ACTIONS = {"etl", "backfill", "ingest", "refresh", "sync", "export"}
CADENCES = ("hourly", "nightly", "on-demand")

NODE_KINDS = {
    # kind → (verb, default position in a graph)
    "trigger": "Start",
    "sql_query": "Query",
    "http_request": "Call API for",
    "transform": "Transform",
    "python": "Run script on",
    "ml_predict": "Score",
    "branch": "Route",
    "write_file": "Write",
    "notify": "Notify about",
}
MIDDLE_KINDS = ("sql_query", "http_request", "transform", "python", "ml_predict", "branch")

# Error signatures: (type, message template, node kind where they strike, weight)
SIGNATURES = (
    (
        "ConnectionError",
        "could not connect to warehouse.internal:5432: connection refused",
        "sql_query",
        3.0,
    ),
    (
        "HTTPError",
        "503 Service Unavailable from api.partner.example (attempt {n}/3)",
        "http_request",
        4.0,
    ),
    (
        "RateLimitError",
        "429 Too Many Requests from api.partner.example: retry after {n}s",
        "http_request",
        2.0,
    ),
    ("KeyError", "missing field 'customer_id' in record {n}", "transform", 3.0),
    ("SchemaValidationError", "column 'amount' expected numeric, got text", "transform", 1.5),
    ("MemoryError", "worker exceeded its memory limit of 4096 MiB", "python", 1.0),
    (
        "PermissionError",
        "access denied to storage bucket 'exports' for batch {n}",
        "write_file",
        1.0,
    ),
)
TIMEOUT_TYPE = "TimeoutError"
INCIDENT_OFFSET = timedelta(days=21, hours=-9)  # 09:00 UTC on a weekday three weeks before now
INCIDENT_LENGTH = timedelta(hours=5)
REGRESSION_AGE = timedelta(days=7)
REGRESSION_FACTOR = 2.4
ARCHIVED_AGE = timedelta(days=40)
