-- The collector's and the migrations' own PostgreSQL roles, instead of the (RDS) master user.
-- Run by an administrator (the chart's database-roles hook Job in AWS mode, with the RDS master
-- secret) before every migration; idempotent. The first passwords come from the environment
-- (never from the command line):
--   COLLECTOR_PASSWORD=... MIGRATOR_PASSWORD=... psql -f database-roles.sql
--
--   iot_owner     NOLOGIN; owns the schema objects (tables, partitions, functions).
--   iot_migrator  LOGIN; runs `iot-collector migrate`.
--   iot_collector LOGIN; runs `iot-collector serve`.
-- Both login roles act as iot_owner (ALTER ROLE ... SET role): what one creates the other may
-- alter. The collector needs the owner's rights at run time: it creates the time partitions
-- ahead and on demand and detaches and drops them for retention. Neither role is a superuser
-- (nor rds_superuser), may create roles or databases, or has any right outside this
-- database's public schema. Passwords are set only when a role is created: afterwards Secrets
-- Manager rotates them (single-user rotation), and this script never resets them.
\set ON_ERROR_STOP on
\getenv collector_password COLLECTOR_PASSWORD
\getenv migrator_password MIGRATOR_PASSWORD

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iot_owner') AS create_owner \gset
\if :create_owner
CREATE ROLE iot_owner NOLOGIN;
\endif

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iot_migrator') AS create_migrator \gset
\if :create_migrator
CREATE ROLE iot_migrator LOGIN PASSWORD :'migrator_password';
\endif

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'iot_collector') AS create_collector \gset
\if :create_collector
CREATE ROLE iot_collector LOGIN PASSWORD :'collector_password';
\endif

ALTER ROLE iot_migrator NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;
ALTER ROLE iot_collector NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;
GRANT iot_owner TO iot_migrator, iot_collector, CURRENT_USER;
ALTER ROLE iot_migrator IN DATABASE :"DBNAME" SET role = 'iot_owner';
ALTER ROLE iot_collector IN DATABASE :"DBNAME" SET role = 'iot_owner';

GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO iot_owner;
GRANT USAGE, CREATE ON SCHEMA public TO iot_owner;
-- Objects an earlier version created as the master user move to iot_owner.
SELECT format('ALTER %s %I.%I OWNER TO iot_owner',
              CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S')
  AND pg_get_userbyid(c.relowner) <> 'iot_owner'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
\gexec
SELECT format('ALTER FUNCTION %s OWNER TO iot_owner', p.oid::regprocedure)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> 'iot_owner'
\gexec
