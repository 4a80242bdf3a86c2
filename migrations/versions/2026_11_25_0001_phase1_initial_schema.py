"""Phase 1: helper functions, workflows, executions, users, their indexes and triggers; seed the admin.

The DDL below is the spec's (shared/spec/schema-design.md, phase 1) verbatim, so
the catalog it yields is the spec's by construction; tests compare the two
catalogs independently.

The admin user is seeded without a known password: its hash comes from
FLOWSCOPE_ADMIN_PASSWORD at migration time (argon2id, OWASP parameters), or it
is "!" (no hash ever verifies against it), so the account cannot log in until
a password is set with ``flowscope users set-password admin``.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADMIN_ID = "usr_admin"
UNUSABLE_PASSWORD = "!"

FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
""",
    """
CREATE OR REPLACE FUNCTION calculate_duration()
RETURNS TRIGGER AS $$
BEGIN
    IF NEW.completed_at IS NOT NULL AND NEW.started_at IS NOT NULL THEN
        NEW.duration_seconds = EXTRACT(EPOCH FROM (NEW.completed_at - NEW.started_at));
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
""",
]

TABLES = [
    """
CREATE TABLE workflows (
    id VARCHAR(255) PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT,
    version INTEGER NOT NULL DEFAULT 1,
    owner VARCHAR(255) NOT NULL,
    organization_id VARCHAR(255),
    nodes JSONB NOT NULL,
    edges JSONB NOT NULL,
    metadata JSONB DEFAULT '{}',
    tags TEXT[] DEFAULT '{}',
    status VARCHAR(50) DEFAULT 'draft',
    is_public BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_by VARCHAR(255) NOT NULL,
    updated_by VARCHAR(255) NOT NULL,
    deleted_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT valid_status CHECK (status IN ('draft', 'active', 'archived')),
    CONSTRAINT valid_nodes CHECK (jsonb_typeof(nodes) = 'array'),
    CONSTRAINT valid_edges CHECK (jsonb_typeof(edges) = 'array')
)
""",
    """
CREATE TABLE executions (
    id VARCHAR(255) PRIMARY KEY,
    workflow_id VARCHAR(255) NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    owner VARCHAR(255) NOT NULL,
    organization_id VARCHAR(255),
    status VARCHAR(50) NOT NULL DEFAULT 'queued',
    parameters JSONB DEFAULT '{}',
    result JSONB,
    error JSONB,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    duration_seconds DECIMAL(10, 3),
    current_step VARCHAR(255),
    steps_completed INTEGER DEFAULT 0,
    steps_total INTEGER DEFAULT 0,
    metadata JSONB DEFAULT '{}',
    trace_id VARCHAR(255),
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT valid_execution_status CHECK (
        status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'timeout')
    ),
    CONSTRAINT valid_parameters CHECK (jsonb_typeof(parameters) = 'object'),
    CONSTRAINT valid_duration CHECK (
        duration_seconds IS NULL OR duration_seconds >= 0
    )
)
""",
    """
CREATE TABLE users (
    id VARCHAR(255) PRIMARY KEY,
    username VARCHAR(255) UNIQUE NOT NULL,
    email VARCHAR(255) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    full_name VARCHAR(255),
    avatar_url TEXT,
    organization_id VARCHAR(255),
    is_active BOOLEAN DEFAULT TRUE,
    is_admin BOOLEAN DEFAULT FALSE,
    email_verified BOOLEAN DEFAULT FALSE,
    scopes JSONB DEFAULT '["workflow:read", "workflow:execute"]',
    last_login TIMESTAMP WITH TIME ZONE,
    password_changed_at TIMESTAMP WITH TIME ZONE,
    failed_login_attempts INTEGER DEFAULT 0,
    locked_until TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    deleted_at TIMESTAMP WITH TIME ZONE
)
""",
]

INDEXES = [
    "CREATE INDEX idx_workflows_owner ON workflows(owner) WHERE deleted_at IS NULL",
    "CREATE INDEX idx_workflows_org ON workflows(organization_id) WHERE deleted_at IS NULL",
    "CREATE INDEX idx_workflows_status ON workflows(status) WHERE deleted_at IS NULL",
    "CREATE INDEX idx_workflows_created ON workflows(created_at DESC)",
    "CREATE INDEX idx_workflows_tags ON workflows USING GIN(tags)",
    "CREATE INDEX idx_workflows_metadata ON workflows USING GIN(metadata)",
    """CREATE INDEX idx_workflows_search ON workflows USING GIN(
    to_tsvector('english', name || ' ' || COALESCE(description, ''))
) WHERE deleted_at IS NULL""",
    "CREATE INDEX idx_executions_workflow ON executions(workflow_id)",
    "CREATE INDEX idx_executions_owner ON executions(owner)",
    "CREATE INDEX idx_executions_status ON executions(status)",
    "CREATE INDEX idx_executions_created ON executions(created_at DESC)",
    "CREATE INDEX idx_executions_trace ON executions(trace_id) WHERE trace_id IS NOT NULL",
    "CREATE INDEX idx_executions_workflow_status ON executions(workflow_id, status, created_at DESC)",
    "CREATE INDEX idx_users_username ON users(username) WHERE deleted_at IS NULL",
    "CREATE INDEX idx_users_email ON users(email) WHERE deleted_at IS NULL",
    "CREATE INDEX idx_users_org ON users(organization_id) WHERE deleted_at IS NULL",
    "CREATE INDEX idx_users_active ON users(is_active) WHERE deleted_at IS NULL",
]

TRIGGERS = [
    """CREATE TRIGGER update_workflows_updated_at
    BEFORE UPDATE ON workflows
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column()""",
    """CREATE TRIGGER update_executions_updated_at
    BEFORE UPDATE ON executions
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column()""",
    """CREATE TRIGGER calculate_execution_duration
    BEFORE UPDATE ON executions
    FOR EACH ROW
    WHEN (NEW.completed_at IS NOT NULL AND OLD.completed_at IS NULL)
    EXECUTE FUNCTION calculate_duration()""",
    """CREATE TRIGGER update_users_updated_at
    BEFORE UPDATE ON users
    FOR EACH ROW
    EXECUTE FUNCTION update_updated_at_column()""",
]


def _admin_password_hash() -> str:
    password = os.environ.get("FLOWSCOPE_ADMIN_PASSWORD")
    if not password:
        return UNUSABLE_PASSWORD
    # argon2id at OWASP's minimum (m=19 MiB, t=2, p=1); the PHC string records them.
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1).hash(password)


def upgrade() -> None:
    for statement in [*FUNCTIONS, *TABLES, *INDEXES, *TRIGGERS]:
        op.execute(statement)
    has_password = bool(os.environ.get("FLOWSCOPE_ADMIN_PASSWORD"))
    op.get_bind().execute(
        sa.text(
            "INSERT INTO users (id, username, email, password_hash, full_name, is_admin,"
            " scopes, password_changed_at)"
            " VALUES (:id, 'admin', 'admin@localhost', :hash, 'Administrator', TRUE,"
            ' \'["admin", "workflow:read", "workflow:write", "workflow:execute"]\','
            " CASE WHEN :has_password THEN CURRENT_TIMESTAMP END)"
        ),
        {"id": ADMIN_ID, "hash": _admin_password_hash(), "has_password": has_password},
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS executions")
    op.execute("DROP TABLE IF EXISTS workflows")
    op.execute("DROP TABLE IF EXISTS users")
    op.execute("DROP FUNCTION IF EXISTS calculate_duration()")
    op.execute("DROP FUNCTION IF EXISTS update_updated_at_column()")
