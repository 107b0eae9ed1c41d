-- Northwind Capital's trading database objects, for the quickstart and the
-- privilege tests.  Run as the object-owner role (the loader does SET ROLE);
-- idempotent.  The role catalog (mappings/roles/trading.toml) grants on these.
CREATE SCHEMA IF NOT EXISTS trading;
CREATE SCHEMA IF NOT EXISTS risk;
CREATE SCHEMA IF NOT EXISTS reference;

CREATE TABLE IF NOT EXISTS reference.instruments (
  id bigserial PRIMARY KEY, symbol text NOT NULL UNIQUE, asset_class text NOT NULL);
CREATE TABLE IF NOT EXISTS trading.orders (
  id bigserial PRIMARY KEY, instrument_id bigint NOT NULL, side text NOT NULL,
  qty numeric NOT NULL, price numeric, status text NOT NULL DEFAULT 'new', trader text NOT NULL DEFAULT current_user);
CREATE TABLE IF NOT EXISTS trading.executions (
  id bigserial PRIMARY KEY, order_id bigint NOT NULL, qty numeric NOT NULL, price numeric NOT NULL,
  executed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS trading.approvals (
  id bigserial PRIMARY KEY, order_id bigint NOT NULL, status text NOT NULL DEFAULT 'pending',
  approved_by text, approved_at timestamptz);
CREATE TABLE IF NOT EXISTS trading.settlements (
  id bigserial PRIMARY KEY, execution_id bigint NOT NULL, settled_on date, status text NOT NULL DEFAULT 'open');
CREATE TABLE IF NOT EXISTS risk.positions (
  book text NOT NULL, instrument_id bigint NOT NULL, qty numeric NOT NULL, PRIMARY KEY (book, instrument_id));
CREATE TABLE IF NOT EXISTS risk.limits (
  book text PRIMARY KEY, max_exposure numeric NOT NULL);
CREATE TABLE IF NOT EXISTS risk.results (
  run_at timestamptz NOT NULL DEFAULT now(), book text NOT NULL, var_99 numeric);

CREATE OR REPLACE FUNCTION trading.approve_order(p_order bigint) RETURNS void
  LANGUAGE sql AS $$
    UPDATE trading.approvals SET status = 'approved', approved_by = session_user, approved_at = now()
     WHERE order_id = p_order
  $$;
CREATE OR REPLACE FUNCTION risk.exposure(p_book text) RETURNS numeric
  LANGUAGE sql STABLE AS $$ SELECT coalesce(sum(qty), 0) FROM risk.positions WHERE book = p_book $$;
