-- The PostgreSQL role the provisioner logs in as: CREATEROLE, never superuser
-- (the daemon refuses a superuser login unless the target sets allow_superuser = true).
-- Run once per cluster, as a superuser, with psql (docs/deployment.md):
--
--   psql -v ON_ERROR_STOP=1 -f deploy/least-privilege-postgresql.sql \
--        -v account=provisioner \
--        -v owners=app_owner \
--        -v databases=trading,reporting \
--        -v roles=trade_reader,trade_executor
--
--   account    the login role to create (default: provisioner)
--   owners     roles owning the schemas, tables, sequences and functions the role
--              catalog grants on (manage_privileges); comma-separated, may be empty
--   databases  databases whose CONNECT / TEMPORARY the catalog grants (on = "database"),
--              and where leavers' objects are reassigned; comma-separated, default:
--              the database psql is connected to
--   roles      existing business roles (created by DBAs) that rules hand out;
--              comma-separated, may be empty
--
-- Set the password separately (\password provisioner) and give it to the daemon as
-- a secret reference (targets[].password = "credential:pg.pass", "env:..." or "file:...").
-- The script is idempotent: run it again after adding owners, databases or roles.

\set ON_ERROR_STOP on
\if :{?account}
\else
  \set account provisioner
\endif
\if :{?owners}
\else
  \set owners ''
\endif
\if :{?databases}
\else
  SELECT current_database() AS databases \gset
\endif
\if :{?roles}
\else
  \set roles ''
\endif

SELECT current_setting('server_version_num')::int >= 160000 AS pg16,
       EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'account') AS account_exists \gset

-- 1. The login: CREATEROLE to create, alter, comment on and drop the roles it manages;
--    nothing else (no SUPERUSER, CREATEDB, REPLICATION or BYPASSRLS).
\if :account_exists
  ALTER ROLE :"account" LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 10;
\else
  CREATE ROLE :"account" LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 10;
\endif
-- One session per run and target, one per further database with manage_privileges,
-- plus the leader-lock session per replica: 10 leaves room for three replicas.

-- 2. End a leaver's open sessions (pg_terminate_backend) without superuser.
GRANT pg_signal_backend TO :"account";

-- 3. Every DDL statement of this role lands in the server log, and the role cannot
--    switch that off (log_statement is superuser-only): the audit trail of what the
--    account did, independent of the provisioner's own.
ALTER ROLE :"account" SET log_statement = 'ddl';

-- The lists, for the blocks below (psql does not substitute inside $$ ... $$).
SELECT set_config('provisioner_setup.account', :'account', false),
       set_config('provisioner_setup.owners', :'owners', false),
       set_config('provisioner_setup.databases', :'databases', false),
       set_config('provisioner_setup.roles', :'roles', false) \gset

-- 4. Object owners: GRANT/REVOKE on their objects and ALTER DEFAULT PRIVILEGES FOR
--    ROLE need the owner's rights, i.e. membership (with INHERIT) in each owner.
DO $$
DECLARE
  owner text;
BEGIN
  FOREACH owner IN ARRAY coalesce(string_to_array(nullif(current_setting('provisioner_setup.owners'), ''), ','), '{}') LOOP
    EXECUTE format('GRANT %I TO %I', btrim(owner), current_setting('provisioner_setup.account'));
  END LOOP;
END $$;

-- 5. Databases: the catalog's on = "database" grants (CONNECT, TEMPORARY) are made by
--    the account, so it needs them WITH GRANT OPTION; without it PostgreSQL only
--    warns ("no privileges were granted") and verify fails with "CONNECT missing".
DO $$
DECLARE
  db text;
BEGIN
  FOREACH db IN ARRAY coalesce(string_to_array(nullif(current_setting('provisioner_setup.databases'), ''), ','), '{}') LOOP
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I WITH GRANT OPTION',
                   btrim(db), current_setting('provisioner_setup.account'));
  END LOOP;
END $$;

-- 6. Existing business roles the rules hand out. PostgreSQL 16+: ADMIN OPTION only,
--    without inheriting the role's privileges or being able to SET ROLE to it.
--    PostgreSQL <= 15: CREATEROLE already grants any non-superuser role, so nothing
--    is added (ADMIN OPTION would also make the account a member).
\if :pg16
DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY coalesce(string_to_array(nullif(current_setting('provisioner_setup.roles'), ''), ','), '{}') LOOP
    EXECUTE format('GRANT %I TO %I WITH ADMIN TRUE, INHERIT FALSE, SET FALSE',
                   btrim(r), current_setting('provisioner_setup.account'));
  END LOOP;
END $$;
\else
-- 7. PostgreSQL <= 15: CREATEROLE can grant the account itself pg_execute_server_program,
--    pg_read_server_files or pg_write_server_files (shell and file access as the server's
--    operating-system user). The daemon warns at every start; the mitigations are in
--    docs/deployment.md (upgrade to 16; meanwhile the DDL log of step 3, pg_hba
--    restricted to the daemon hosts, and an alert on those GRANTs).
\echo 'WARNING: PostgreSQL < 16: a CREATEROLE role can grant itself pg_execute_server_program; see docs/deployment.md'
\endif
