-- storekit schema for SQLite (prefix "app_", uuid user ids): what migrate() and ensure_table create.
CREATE TABLE IF NOT EXISTS "app_storekit_meta" (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
CREATE TABLE "app_users" (
    id BLOB PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    hashed_password TEXT NOT NULL,
    is_active INTEGER NOT NULL,
    is_superuser INTEGER NOT NULL,
    is_verified INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    extra TEXT NOT NULL,
    CONSTRAINT "app_users_email_key" UNIQUE (email_key)
);
CREATE TABLE "app_oauth_accounts" (
    provider TEXT NOT NULL,
    account_id TEXT NOT NULL,
    user_id BLOB NOT NULL REFERENCES "app_users" (id) ON DELETE CASCADE,
    account_email TEXT NOT NULL,
    access_token TEXT NOT NULL,
    expires_at INTEGER,
    refresh_token TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (provider, account_id)
);
CREATE INDEX "app_oauth_accounts_user" ON "app_oauth_accounts" (user_id);
CREATE TABLE "app_access_tokens" (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id BLOB NOT NULL REFERENCES "app_users" (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
CREATE INDEX "app_access_tokens_user" ON "app_access_tokens" (user_id);
CREATE TABLE "app_kv" (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX "app_kv_expiry" ON "app_kv" (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE "app_kv_rowid" (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER
);
INSERT INTO "app_kv_rowid" (namespace, key, value, expires_at)
    SELECT namespace, key, value, expires_at FROM "app_kv" ORDER BY namespace, key;
DROP TABLE "app_kv";
ALTER TABLE "app_kv_rowid" RENAME TO "app_kv";
CREATE UNIQUE INDEX "app_kv_key" ON "app_kv" (namespace, key);
CREATE INDEX "app_kv_expiry" ON "app_kv" (expires_at) WHERE expires_at IS NOT NULL;
INSERT INTO "app_storekit_meta" (name, value) VALUES ('id_kind', 'uuid') ON CONFLICT (name) DO UPDATE SET value = excluded.value;
INSERT INTO "app_storekit_meta" (name, value) VALUES ('schema_version', '2') ON CONFLICT (name) DO UPDATE SET value = excluded.value;
CREATE TABLE IF NOT EXISTS "app_storekit_tables" (name TEXT COLLATE NOCASE PRIMARY KEY NOT NULL, shape TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS "app_things" (
    partition_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    "by-group:partition" TEXT,
    "by-group:sort" INTEGER,
    "by-name:partition" TEXT,
    "pair:1" TEXT,
    "pair:2" REAL,
    CONSTRAINT "app_things:pk" PRIMARY KEY (partition_key)
);
CREATE INDEX IF NOT EXISTS "app_things:by-group" ON "app_things" ("by-group:partition", "by-group:sort", partition_key) WHERE "by-group:partition" IS NOT NULL;
CREATE INDEX IF NOT EXISTS "app_things:by-name" ON "app_things" ("by-name:partition", partition_key) WHERE "by-name:partition" IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS "app_things:pair" ON "app_things" ("pair:1", "pair:2") WHERE "pair:1" IS NOT NULL;
INSERT INTO "app_storekit_tables" (name, shape) VALUES ('things', '{"partition":{"field":"id","kind":"text"},"sort":null,"indexes":[{"name":"by-group","partition":{"field":"group","kind":"text"},"sort":{"field":"rank","kind":"int"}},{"name":"by-name","partition":{"field":"name","kind":"text"},"sort":null}],"uniques":[{"name":"pair","components":[{"field":"a","kind":"text"},{"field":"b","kind":"float"}]}]}');
CREATE TABLE IF NOT EXISTS "app_events" (
    partition_key BLOB NOT NULL,
    sort_key INTEGER NOT NULL,
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    CONSTRAINT "app_events:pk" PRIMARY KEY (partition_key, sort_key)
);
INSERT INTO "app_storekit_tables" (name, shape) VALUES ('events', '{"partition":{"field":"stream","kind":"bytes"},"sort":{"field":"at","kind":"int"},"indexes":[],"uniques":[]}');
