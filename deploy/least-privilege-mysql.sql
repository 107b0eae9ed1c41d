-- The MariaDB 10.4+ / MySQL 8 account the provisioner logs in as (docs/mysql.md,
-- docs/deployment.md). Never root: account and role administration, ending a leaver's
-- sessions, reading the grant tables, and its own marker database; nothing more.
-- Run once per server as an administrator, after replacing the password:
--   mysql < deploy/least-privilege-mysql.sql
-- The MariaDB test suite creates its account from exactly the GRANT lines below
-- (tests/support/mysql.py), so every MariaDB test runs with these privileges.

CREATE USER IF NOT EXISTS 'provisioner'@'%' IDENTIFIED BY 'replace-me' WITH MAX_USER_CONNECTIONS 10;

-- create, lock and drop accounts and roles; see other sessions; end a leaver's sessions
GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'provisioner'@'%';
-- read accounts and role grants
GRANT SELECT ON mysql.global_priv TO 'provisioner'@'%';
GRANT SELECT ON mysql.roles_mapping TO 'provisioner'@'%';
-- read object privileges (manage_privileges = true; harmless otherwise)
GRANT SELECT ON mysql.db TO 'provisioner'@'%';
GRANT SELECT ON mysql.tables_priv TO 'provisioner'@'%';
GRANT SELECT ON mysql.columns_priv TO 'provisioner'@'%';
GRANT SELECT ON mysql.procs_priv TO 'provisioner'@'%';
-- the ownership markers (meta_database, default provisioner_meta; created on the first apply)
GRANT CREATE, SELECT, INSERT, UPDATE, DELETE ON provisioner_meta.* TO 'provisioner'@'%';

-- Existing roles (created by DBAs) that rules hand out, one line each:
--   GRANT trade_reader TO 'provisioner'@'%' WITH ADMIN OPTION;
-- Only with manage_privileges = true, one line per database (a catalog schema) whose privileges
-- it manages: granting and revoking a privilege needs that privilege WITH GRANT OPTION:
--   GRANT ALL PRIVILEGES ON `trading`.* TO 'provisioner'@'%' WITH GRANT OPTION;
-- Only with manage_default_role = true (as strong as root; docs/mysql.md):
--   GRANT UPDATE ON mysql.* TO 'provisioner'@'%';
