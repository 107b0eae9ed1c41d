-- Northwind Capital's trading objects on MariaDB 10.4+ (docs/mysql.md): each PostgreSQL
-- schema of examples/trading-schema.sql is a MariaDB database. Idempotent. The role
-- catalog (mappings/roles/trading.toml) grants on these; ids come from sequences, as on
-- PostgreSQL, so the catalog's sequence grants name real objects.
CREATE DATABASE IF NOT EXISTS trading;
CREATE DATABASE IF NOT EXISTS risk;
CREATE DATABASE IF NOT EXISTS reference;

CREATE SEQUENCE IF NOT EXISTS reference.instruments_id_seq;
CREATE TABLE IF NOT EXISTS reference.instruments (
  id BIGINT NOT NULL DEFAULT NEXTVAL(reference.instruments_id_seq) PRIMARY KEY,
  symbol VARCHAR(32) NOT NULL UNIQUE, asset_class VARCHAR(32) NOT NULL);
CREATE SEQUENCE IF NOT EXISTS trading.orders_id_seq;
CREATE TABLE IF NOT EXISTS trading.orders (
  id BIGINT NOT NULL DEFAULT NEXTVAL(trading.orders_id_seq) PRIMARY KEY, instrument_id BIGINT NOT NULL,
  side VARCHAR(4) NOT NULL, qty DECIMAL(20, 4) NOT NULL, price DECIMAL(20, 4),
  status VARCHAR(16) NOT NULL DEFAULT 'new', trader VARCHAR(128) NOT NULL DEFAULT '');
CREATE SEQUENCE IF NOT EXISTS trading.executions_id_seq;
CREATE TABLE IF NOT EXISTS trading.executions (
  id BIGINT NOT NULL DEFAULT NEXTVAL(trading.executions_id_seq) PRIMARY KEY, order_id BIGINT NOT NULL,
  qty DECIMAL(20, 4) NOT NULL, price DECIMAL(20, 4) NOT NULL,
  executed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6));
CREATE SEQUENCE IF NOT EXISTS trading.approvals_id_seq;
CREATE TABLE IF NOT EXISTS trading.approvals (
  id BIGINT NOT NULL DEFAULT NEXTVAL(trading.approvals_id_seq) PRIMARY KEY, order_id BIGINT NOT NULL,
  status VARCHAR(16) NOT NULL DEFAULT 'pending', approved_by VARCHAR(128), approved_at TIMESTAMP(6) NULL);
CREATE SEQUENCE IF NOT EXISTS trading.settlements_id_seq;
CREATE TABLE IF NOT EXISTS trading.settlements (
  id BIGINT NOT NULL DEFAULT NEXTVAL(trading.settlements_id_seq) PRIMARY KEY, execution_id BIGINT NOT NULL,
  settled_on DATE, status VARCHAR(16) NOT NULL DEFAULT 'open');
CREATE TABLE IF NOT EXISTS risk.positions (
  book VARCHAR(64) NOT NULL, instrument_id BIGINT NOT NULL, qty DECIMAL(20, 4) NOT NULL,
  PRIMARY KEY (book, instrument_id));
CREATE TABLE IF NOT EXISTS risk.limits (book VARCHAR(64) PRIMARY KEY, max_exposure DECIMAL(20, 4) NOT NULL);
CREATE TABLE IF NOT EXISTS risk.results (
  run_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), book VARCHAR(64) NOT NULL, var_99 DECIMAL(20, 4));

CREATE OR REPLACE PROCEDURE trading.approve_order(p_order BIGINT) SQL SECURITY DEFINER
  UPDATE trading.approvals SET status = 'approved', approved_by = SESSION_USER(), approved_at = NOW(6)
   WHERE order_id = p_order;
CREATE OR REPLACE FUNCTION risk.exposure(p_book VARCHAR(64)) RETURNS DECIMAL(20, 4) READS SQL DATA
  RETURN (SELECT COALESCE(SUM(qty), 0) FROM risk.positions WHERE book = p_book);
