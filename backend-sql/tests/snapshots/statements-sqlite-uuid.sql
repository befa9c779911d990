-- delete_oauth
DELETE FROM "app_oauth_accounts" WHERE provider = ?1 AND account_id = ?2 AND user_id = ?3

-- delete_token
DELETE FROM "app_access_tokens" WHERE token_hash = ?1

-- delete_user
DELETE FROM "app_users" WHERE id = ?1

-- delete_user_oauth
DELETE FROM "app_oauth_accounts" WHERE user_id = ?1

-- delete_user_tokens
DELETE FROM "app_access_tokens" WHERE user_id = ?1

-- import_token
INSERT INTO "app_access_tokens" (token_hash, user_id, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (token_hash) DO NOTHING

-- import_user
INSERT INTO "app_users" (id, email, email_key, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO UPDATE SET email = excluded.email, email_key = excluded.email_key, hashed_password = excluded.hashed_password, is_active = excluded.is_active, is_superuser = excluded.is_superuser, is_verified = excluded.is_verified, created_at = excluded.created_at, updated_at = excluded.updated_at, version = excluded.version, extra = excluded.extra

-- insert_oauth
INSERT INTO "app_oauth_accounts" (user_id, provider, account_id, account_email, access_token, expires_at, refresh_token, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)

-- insert_token
INSERT INTO "app_access_tokens" (token_hash, user_id, created_at) VALUES (?1, ?2, ?3)

-- insert_user
INSERT INTO "app_users" (id, email, email_key, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1, ?9)

-- kv_clear
DELETE FROM "app_kv" WHERE namespace = :ns

-- kv_contains
SELECT 1 FROM "app_kv" WHERE namespace = :ns AND key = :key AND (expires_at IS NULL OR expires_at > :now)

-- kv_delete_any
DELETE FROM "app_kv" WHERE namespace = :ns AND key = :key

-- kv_delete_expired
DELETE FROM "app_kv" WHERE namespace = :ns AND key = :key AND expires_at IS NOT NULL AND expires_at <= :now

-- kv_delete_live
DELETE FROM "app_kv" WHERE namespace = :ns AND key = :key AND (expires_at IS NULL OR expires_at > :now)

-- kv_export(false, false)
SELECT namespace, key, value, expires_at FROM "app_kv" WHERE (expires_at IS NULL OR expires_at > :now) ORDER BY namespace, key LIMIT :limit

-- kv_export(false, true)
SELECT namespace, key, value, expires_at FROM "app_kv" WHERE (expires_at IS NULL OR expires_at > :now) AND (namespace, key) > (:ns, :key) ORDER BY namespace, key LIMIT :limit

-- kv_export(true, false)
SELECT namespace, key, value, expires_at FROM "app_kv" WHERE (expires_at IS NULL OR expires_at > :now) AND namespace = :only ORDER BY namespace, key LIMIT :limit

-- kv_export(true, true)
SELECT namespace, key, value, expires_at FROM "app_kv" WHERE (expires_at IS NULL OR expires_at > :now) AND namespace = :only AND (namespace, key) > (:ns, :key) ORDER BY namespace, key LIMIT :limit

-- kv_get
SELECT value FROM "app_kv" WHERE namespace = :ns AND key = :key AND (expires_at IS NULL OR expires_at > :now)

-- kv_get_any
SELECT value, expires_at FROM "app_kv" WHERE namespace = :ns AND key = :key

-- kv_insert_if_absent
INSERT INTO "app_kv" (namespace, key, value, expires_at) VALUES (:ns, :key, :value, :exp) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at WHERE expires_at IS NOT NULL AND expires_at <= :now

-- kv_keys_after
SELECT key FROM "app_kv" WHERE namespace = :ns AND key > :from AND (expires_at IS NULL OR expires_at > :now) ORDER BY key LIMIT :limit

-- kv_keys_first
SELECT key FROM "app_kv" WHERE namespace = :ns AND key >= :from AND (expires_at IS NULL OR expires_at > :now) ORDER BY key LIMIT :limit

-- kv_purge_some
DELETE FROM "app_kv" WHERE id IN (SELECT id FROM "app_kv" WHERE expires_at IS NOT NULL AND expires_at <= :now LIMIT :limit)

-- kv_set_expiry
UPDATE "app_kv" SET expires_at = :exp WHERE namespace = :ns AND key = :key AND (expires_at IS NULL OR expires_at > :now)

-- kv_swap
UPDATE "app_kv" SET value = :value, expires_at = :exp WHERE namespace = :ns AND key = :key AND value = :expected AND (expires_at IS NULL OR expires_at > :now)

-- kv_upsert
INSERT INTO "app_kv" (namespace, key, value, expires_at) VALUES (:ns, :key, :value, :exp) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at

-- list_users_after
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "app_users" WHERE id > ?2 ORDER BY id LIMIT ?1

-- list_users_first
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "app_users" ORDER BY id LIMIT ?1

-- oauth_of_user
SELECT user_id, provider, account_id, account_email, access_token, expires_at, refresh_token, created_at, updated_at FROM "app_oauth_accounts" WHERE user_id = ?1 ORDER BY provider, account_id

-- oauth_one
SELECT user_id, provider, account_id, account_email, access_token, expires_at, refresh_token, created_at, updated_at FROM "app_oauth_accounts" WHERE provider = ?1 AND account_id = ?2 AND user_id = ?3

-- token_by_hash
SELECT user_id, created_at FROM "app_access_tokens" WHERE token_hash = ?1

-- tokens_of_user
SELECT token_hash, created_at FROM "app_access_tokens" WHERE user_id = ?1

-- update_oauth
UPDATE "app_oauth_accounts" SET account_email = ?4, access_token = ?5, expires_at = ?6, refresh_token = ?7, updated_at = ?8 WHERE provider = ?1 AND account_id = ?2 AND user_id = ?3

-- update_user
UPDATE "app_users" SET email = ?3, email_key = ?4, hashed_password = ?5, is_active = ?6, is_superuser = ?7, is_verified = ?8, updated_at = ?9, version = ?10, extra = ?11 WHERE id = ?1 AND version = ?2

-- user_by_email
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "app_users" WHERE email_key = ?1

-- user_by_id
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "app_users" WHERE id = ?1

-- user_by_oauth
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "app_users" WHERE id = (SELECT user_id FROM "app_oauth_accounts" WHERE provider = ?1 AND account_id = ?2)

