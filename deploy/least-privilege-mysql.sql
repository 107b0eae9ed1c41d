-- The MariaDB 10.4+ / MySQL 8 account the provisioner logs in as (docs/mysql.md,
-- docs/deployment.md). Run once per server as an administrator:
--   mysql < deploy/least-privilege-mysql.sql     (edit the account and host first)
-- Never root: the account needs account and role administration, the marker table,
-- and KILL CONNECTION for leavers' sessions, nothing more.

CREATE USER IF NOT EXISTS 'provisioner'@'%' IDENTIFIED BY 'change-me' WITH MAX_USER_CONNECTIONS 10;

-- create, alter, lock and drop accounts; create and drop roles
GRANT CREATE USER ON *.* TO 'provisioner'@'%';
-- grant and revoke roles it manages (MariaDB: WITH ADMIN OPTION per role it did not create;
-- MySQL 8: ROLE_ADMIN)
-- GRANT trade_reader TO 'provisioner'@'%' WITH ADMIN OPTION;      -- MariaDB, per existing role
-- GRANT ROLE_ADMIN ON *.* TO 'provisioner'@'%';                   -- MySQL 8
-- end a leaver's open sessions: MariaDB CONNECTION ADMIN (10.5.2+), MySQL 8 CONNECTION_ADMIN
GRANT CONNECTION ADMIN ON *.* TO 'provisioner'@'%';
-- the ownership markers
CREATE DATABASE IF NOT EXISTS provisioner_meta;
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON provisioner_meta.* TO 'provisioner'@'%';
-- reading accounts, roles and grants
GRANT SELECT ON mysql.user TO 'provisioner'@'%';
GRANT SELECT ON mysql.roles_mapping TO 'provisioner'@'%';
-- only with manage_default_role = true (MariaDB):
-- GRANT UPDATE ON mysql.* TO 'provisioner'@'%';
