-- PostgreSQL twin of sqlite/0003_audit_tenant.sql.
ALTER TABLE audit_log ADD COLUMN tenant text COLLATE "C";
CREATE INDEX audit_log_by_tenant ON audit_log(tenant, id);
