-- Audit rows remember the tenant they concern (NULL for platform-level changes), so a
-- tenant admin can read their tenant's trail with an indexed, newest-first scan.
ALTER TABLE audit_log ADD COLUMN tenant TEXT;
CREATE INDEX audit_log_by_tenant ON audit_log(tenant, id);
