-- Placeholder for the 0011 migration of another branch in flight: drop at merge.
SELECT 1;
