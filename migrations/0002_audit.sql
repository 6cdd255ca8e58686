-- Security events (the audit trail). Times are unix milliseconds.
-- `id` is a UUIDv7, so replaying a spooled batch twice inserts nothing new.

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    category TEXT NOT NULL,
    severity TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    request_id TEXT NOT NULL,
    client_ip TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    route TEXT,
    user_id TEXT,
    target TEXT,
    instance TEXT NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_action_at ON audit_events (action, at);
CREATE INDEX audit_events_user_at ON audit_events (user_id, at);
CREATE INDEX audit_events_ip_at ON audit_events (client_ip, at);
CREATE INDEX audit_events_route_at ON audit_events (route, at);
