-- The database role the provisioner daemon logs in as: CREATEROLE, not superuser.
-- Run once as a superuser on each target cluster (psql -v ON_ERROR_STOP=1 -f least-privilege.sql).
-- The password is set separately (\password provisioner) and given to the daemon as a secret
-- reference (targets[].password = "env:PGPASSWORD" or "file:/etc/provisioner/pg.pass").

CREATE ROLE provisioner LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 10;          -- one session per run and target, plus the leader-lock session per replica

-- To end a leaver's open sessions (pg_terminate_backend) without superuser:
GRANT pg_signal_backend TO provisioner;

-- On PostgreSQL 16+, a CREATEROLE role manages the roles it created or holds ADMIN OPTION on.
-- Existing group roles the rules hand out need ADMIN OPTION, e.g.:
--   GRANT trade_reader TO provisioner WITH ADMIN OPTION;

-- Optional: a separate state/audit database on PostgreSQL (state.url), owned by its own role.
--   CREATE ROLE provisioner_state LOGIN NOSUPERUSER;
--   CREATE DATABASE provisioner_state OWNER provisioner_state;
