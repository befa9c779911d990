-- delete_oauth
DELETE FROM "shop"."app_oauth_accounts" WHERE provider = $1 AND account_id = $2 AND user_id = $3

-- delete_token
DELETE FROM "shop"."app_access_tokens" WHERE token_hash = $1

-- delete_user
DELETE FROM "shop"."app_users" WHERE id = $1

-- delete_user_oauth
DELETE FROM "shop"."app_oauth_accounts" WHERE user_id = $1

-- delete_user_tokens
DELETE FROM "shop"."app_access_tokens" WHERE user_id = $1

-- import_token
INSERT INTO "shop"."app_access_tokens" (token_hash, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (token_hash) DO NOTHING

-- import_user
INSERT INTO "shop"."app_users" (id, email, email_key, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO UPDATE SET email = excluded.email, email_key = excluded.email_key, hashed_password = excluded.hashed_password, is_active = excluded.is_active, is_superuser = excluded.is_superuser, is_verified = excluded.is_verified, created_at = excluded.created_at, updated_at = excluded.updated_at, version = excluded.version, extra = excluded.extra

-- insert_oauth
INSERT INTO "shop"."app_oauth_accounts" (user_id, provider, account_id, account_email, access_token, expires_at, refresh_token, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)

-- insert_token
INSERT INTO "shop"."app_access_tokens" (token_hash, user_id, created_at) VALUES ($1, $2, $3)

-- insert_user
INSERT INTO "shop"."app_users" (id, email, email_key, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1, $9) RETURNING id

-- kv_clear
DELETE FROM "shop"."app_kv" WHERE namespace = $1

-- kv_contains
SELECT EXISTS (SELECT 1 FROM "shop"."app_kv" WHERE namespace = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3))

-- kv_delete
DELETE FROM "shop"."app_kv" WHERE namespace = $1 AND key = $2 RETURNING expires_at

-- kv_delete_many
DELETE FROM "shop"."app_kv" WHERE namespace = $1 AND key = ANY($2)

-- kv_export(false, false)
SELECT namespace, key, value, expires_at FROM "shop"."app_kv" WHERE (expires_at IS NULL OR expires_at > $1) ORDER BY namespace, key LIMIT $2

-- kv_export(false, true)
SELECT namespace, key, value, expires_at FROM "shop"."app_kv" WHERE (expires_at IS NULL OR expires_at > $1) AND (namespace, key) > ($3, $4) ORDER BY namespace, key LIMIT $2

-- kv_export(true, false)
SELECT namespace, key, value, expires_at FROM "shop"."app_kv" WHERE (expires_at IS NULL OR expires_at > $1) AND namespace = $3 ORDER BY namespace, key LIMIT $2

-- kv_export(true, true)
SELECT namespace, key, value, expires_at FROM "shop"."app_kv" WHERE (expires_at IS NULL OR expires_at > $1) AND namespace = $3 AND (namespace, key) > ($4, $5) ORDER BY namespace, key LIMIT $2

-- kv_get
SELECT value FROM "shop"."app_kv" WHERE namespace = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)

-- kv_get_any
SELECT value, expires_at FROM "shop"."app_kv" WHERE namespace = $1 AND key = $2

-- kv_get_many
SELECT key, value FROM "shop"."app_kv" WHERE namespace = $1 AND key = ANY($2) AND (expires_at IS NULL OR expires_at > $3)

-- kv_import
INSERT INTO "shop"."app_kv" (namespace, key, value, expires_at) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::bigint[]) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at

-- kv_insert_if_absent
INSERT INTO "shop"."app_kv" AS old (namespace, key, value, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at WHERE old.expires_at IS NOT NULL AND old.expires_at <= $5

-- kv_keys_after
SELECT key FROM "shop"."app_kv" WHERE namespace = $1 AND key > $2 AND (expires_at IS NULL OR expires_at > $3) ORDER BY key LIMIT $4

-- kv_keys_first
SELECT key FROM "shop"."app_kv" WHERE namespace = $1 AND key >= $2 AND (expires_at IS NULL OR expires_at > $3) ORDER BY key LIMIT $4

-- kv_keys_unordered
SELECT key FROM "shop"."app_kv" WHERE namespace = $1 AND key >= $2 AND (expires_at IS NULL OR expires_at > $3) LIMIT $4

-- kv_keys_unordered_below
SELECT key FROM "shop"."app_kv" WHERE namespace = $1 AND key >= $2 AND key < $5 AND (expires_at IS NULL OR expires_at > $3) LIMIT $4

-- kv_lock_counter
INSERT INTO "shop"."app_kv" AS old (namespace, key, value, expires_at) VALUES ($1, $2, '0', $3) ON CONFLICT (namespace, key) DO UPDATE SET value = CASE WHEN old.expires_at <= $4 THEN excluded.value ELSE old.value END, expires_at = CASE WHEN old.expires_at <= $4 THEN excluded.expires_at ELSE old.expires_at END RETURNING value, expires_at

-- kv_purge_some
DELETE FROM "shop"."app_kv" WHERE (namespace, key) IN (SELECT namespace, key FROM "shop"."app_kv" WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)

-- kv_set_expiry
UPDATE "shop"."app_kv" SET expires_at = $3 WHERE namespace = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $4)

-- kv_set_value
UPDATE "shop"."app_kv" SET value = $3 WHERE namespace = $1 AND key = $2

-- kv_swap
UPDATE "shop"."app_kv" SET value = $3, expires_at = $4 WHERE namespace = $1 AND key = $2 AND value = $5 AND (expires_at IS NULL OR expires_at > $6)

-- kv_upsert
INSERT INTO "shop"."app_kv" (namespace, key, value, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at

-- kv_upsert_many
INSERT INTO "shop"."app_kv" (namespace, key, value, expires_at) SELECT $1, k, v, $4 FROM UNNEST($2::text[], $3::bytea[]) AS t (k, v) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at

-- list_users_after
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "shop"."app_users" WHERE id > $2 ORDER BY id LIMIT $1

-- list_users_first
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "shop"."app_users" ORDER BY id LIMIT $1

-- oauth_of_user
SELECT user_id, provider, account_id, account_email, access_token, expires_at, refresh_token, created_at, updated_at FROM "shop"."app_oauth_accounts" WHERE user_id = $1 ORDER BY provider COLLATE "C", account_id COLLATE "C"

-- oauth_one
SELECT user_id, provider, account_id, account_email, access_token, expires_at, refresh_token, created_at, updated_at FROM "shop"."app_oauth_accounts" WHERE provider = $1 AND account_id = $2 AND user_id = $3 FOR UPDATE

-- raise_ids
SELECT setval(s, GREATEST($1, COALESCE(pg_sequence_last_value(s), 1))) FROM (SELECT pg_get_serial_sequence($2, 'id')::regclass AS s) AS identity

-- token_by_hash
SELECT user_id, created_at FROM "shop"."app_access_tokens" WHERE token_hash = $1

-- tokens_of_user
SELECT token_hash, created_at FROM "shop"."app_access_tokens" WHERE user_id = $1

-- update_oauth
UPDATE "shop"."app_oauth_accounts" SET account_email = $4, access_token = $5, expires_at = $6, refresh_token = $7, updated_at = $8 WHERE provider = $1 AND account_id = $2 AND user_id = $3

-- update_user
WITH taken AS (SELECT 1 FROM "shop"."app_users" WHERE email_key = $4 AND id <> $1), updated AS (UPDATE "shop"."app_users" SET email = $3, email_key = $4, hashed_password = $5, is_active = $6, is_superuser = $7, is_verified = $8, updated_at = $9, version = $10, extra = $11 WHERE id = $1 AND version = $2 AND NOT EXISTS (SELECT 1 FROM taken) RETURNING 1) SELECT EXISTS (SELECT 1 FROM taken), EXISTS (SELECT 1 FROM updated)

-- user_by_email
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "shop"."app_users" WHERE email_key = $1

-- user_by_id
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "shop"."app_users" WHERE id = $1

-- user_by_oauth
SELECT id, email, hashed_password, is_active, is_superuser, is_verified, created_at, updated_at, version, extra FROM "shop"."app_users" WHERE id = (SELECT user_id FROM "shop"."app_oauth_accounts" WHERE provider = $1 AND account_id = $2)

