-- storekit schema for PostgreSQL (prefix "app_", int user ids): what migrate() and ensure_table create.
CREATE TABLE IF NOT EXISTS "app_storekit_meta" (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE "app_users" (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    email_key text NOT NULL,
    hashed_password text NOT NULL,
    is_active boolean NOT NULL,
    is_superuser boolean NOT NULL,
    is_verified boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version bigint NOT NULL,
    extra jsonb NOT NULL,
    CONSTRAINT "app_users_email_key" UNIQUE (email_key)
);
CREATE TABLE "app_oauth_accounts" (
    provider text NOT NULL,
    account_id text NOT NULL,
    user_id bigint NOT NULL REFERENCES "app_users" (id) ON DELETE CASCADE,
    account_email text NOT NULL,
    access_token text NOT NULL,
    expires_at timestamptz,
    refresh_token text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (provider, account_id)
);
CREATE INDEX "app_oauth_accounts_user" ON "app_oauth_accounts" (user_id);
CREATE TABLE "app_access_tokens" (
    token_hash text PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES "app_users" (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL
);
CREATE INDEX "app_access_tokens_user" ON "app_access_tokens" (user_id);
-- COLLATE "C" orders keys by their bytes, so prefix ranges match Rust's starts_with.
CREATE TABLE "app_kv" (
    namespace text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    expires_at bigint,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX "app_kv_expiry" ON "app_kv" (expires_at) WHERE expires_at IS NOT NULL;
INSERT INTO "app_storekit_meta" (name, value) VALUES ('id_kind', 'int') ON CONFLICT (name) DO UPDATE SET value = excluded.value;
INSERT INTO "app_storekit_meta" (name, value) VALUES ('schema_version', '1') ON CONFLICT (name) DO UPDATE SET value = excluded.value;
CREATE TABLE IF NOT EXISTS "app_storekit_tables" (name text COLLATE "C" PRIMARY KEY NOT NULL, shape jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS "app_things" (
    partition_key text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    document jsonb NOT NULL,
    "by-group:partition" text COLLATE "C",
    "by-group:sort" bigint,
    "by-name:partition" text COLLATE "C",
    "pair:1" text COLLATE "C",
    "pair:2" double precision,
    CONSTRAINT "app_things:pk" PRIMARY KEY (partition_key)
);
CREATE INDEX IF NOT EXISTS "app_things:by-group" ON "app_things" ("by-group:partition", "by-group:sort", partition_key) WHERE "by-group:partition" IS NOT NULL;
CREATE INDEX IF NOT EXISTS "app_things:by-name" ON "app_things" ("by-name:partition", partition_key) WHERE "by-name:partition" IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS "app_things:pair" ON "app_things" ("pair:1", "pair:2") WHERE "pair:1" IS NOT NULL;
INSERT INTO "app_storekit_tables" (name, shape) VALUES ('things', '{"partition":{"field":"id","kind":"text"},"sort":null,"indexes":[{"name":"by-group","partition":{"field":"group","kind":"text"},"sort":{"field":"rank","kind":"int"}},{"name":"by-name","partition":{"field":"name","kind":"text"},"sort":null}],"uniques":[{"name":"pair","components":[{"field":"a","kind":"text"},{"field":"b","kind":"float"}]}]}'::jsonb);
CREATE TABLE IF NOT EXISTS "app_events" (
    partition_key bytea NOT NULL,
    sort_key bigint NOT NULL,
    version bigint NOT NULL,
    document jsonb NOT NULL,
    CONSTRAINT "app_events:pk" PRIMARY KEY (partition_key, sort_key)
);
INSERT INTO "app_storekit_tables" (name, shape) VALUES ('events', '{"partition":{"field":"stream","kind":"bytes"},"sort":{"field":"at","kind":"int"},"indexes":[],"uniques":[]}'::jsonb);
