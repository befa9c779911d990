//! The storekit conformance suite: the contract every backend keeps.
//!
//! The cases are plain `pub async fn`s in [`users`], [`kv`], [`tables`], [`edges`],
//! [`schema_edges`], [`expressions`], [`scans`], [`projections`], [`records`],
//! [`transactions`], [`differential`], [`races`], [`transfer`], [`input`], [`load`], [`holds`],
//! [`observe`] and [`model`] that take a [`Fixture`] (fresh, empty
//! stores) and fail by panicking. A backend runs them in one of two ways:
//!
//! - [`run_suite`], one function: every case of a [`Suite`] in turn, then one panic naming
//!   every case that failed. `storekit_core`'s `tiny_kv` and `tiny_auth` examples (also the
//!   doctests of its store traits) pass the suite this way.
//! - [`conformance_suite!`], which expands to one `#[tokio::test]` per case, so a failure names
//!   both the case and the backend and cases run in parallel:
//!
//! ```ignore
//! // tests/mybackend.rs
//! async fn setup(ctx: storekit_conformance::SetupContext) -> Option<storekit_conformance::Fixture> {
//!     // Connect (or return None when the server is not configured), create the schema under
//!     // `ctx.prefix`, and return the stores plus how to inspect and drop what they wrote.
//!     # unimplemented!()
//! }
//! storekit_conformance::conformance_suite!(setup);
//! ```
//!
//! User cases run twice, with UUID and with integer ids. Every case gets its own table prefix
//! (or schema, or file) and the fixture's cleanup runs whether the case passed or not.
//!
//! Servers come from [`server_url`]: the URL in the environment, else a container started once
//! per test binary ([`containers`]), else the case is skipped, or fails when `CI` is set.

pub mod containers;
pub mod differential;
pub mod edges;
pub mod expressions;
pub mod harness;
pub mod holds;
pub mod input;
pub mod kv;
pub mod load;
pub mod model;
pub mod observe;
pub mod projections;
pub mod races;
pub mod records;
pub mod scans;
pub mod schema_edges;
pub mod tables;
pub mod transactions;
pub mod transfer;
pub mod users;

pub use harness::{Capabilities, Fixture, KEEP_EXPIRED, SetupContext, run_case, server_url};
pub use suite::{Case, Suite, cases, run_suite};

mod suite;

/// Every case, listed once: calls `$crate::$callback!` with the groups of cases, each as
/// `group, IdKind variant, module: [case, ...];`, after `($($args)*)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($callback:ident $($args:tt)*) => {
        $crate::$callback! { ($($args)*)
            users_uuid, Uuid, users: [
                user_round_trip,
                email_lookup_is_unicode_case_insensitive,
                duplicate_email_in_other_case_is_refused,
                concurrent_creates_of_one_email_give_one_user,
                update_patches_and_bumps_version,
                email_change_keeps_uniqueness,
                concurrent_email_swaps_are_refused_cleanly,
                stale_version_is_a_conflict,
                concurrent_updates_lose_nothing,
                delete_user_removes_accounts_and_tokens,
                list_users_pages_through_everyone,
                missing_and_foreign_ids,
                oauth_accounts_round_trip,
                oauth_account_is_unique_across_users_under_race,
                access_tokens,
                access_tokens_are_stored_hashed,
            ];
            users_int, Int, users: [
                user_round_trip,
                email_lookup_is_unicode_case_insensitive,
                duplicate_email_in_other_case_is_refused,
                concurrent_creates_of_one_email_give_one_user,
                update_patches_and_bumps_version,
                email_change_keeps_uniqueness,
                concurrent_email_swaps_are_refused_cleanly,
                stale_version_is_a_conflict,
                concurrent_updates_lose_nothing,
                delete_user_removes_accounts_and_tokens,
                list_users_pages_through_everyone,
                missing_and_foreign_ids,
                oauth_accounts_round_trip,
                oauth_account_is_unique_across_users_under_race,
                access_tokens,
                access_tokens_are_stored_hashed,
            ];
            kv, Uuid, kv: [
                kv_round_trip,
                kv_ttl_expired_items_are_never_returned,
                kv_batches,
                kv_keys_by_prefix,
                kv_keys_lists_large_namespaces,
                kv_clear_leaves_other_namespaces,
                kv_set_if_absent_race,
                kv_compare_and_swap_race,
                kv_concurrent_increments,
                kv_concurrent_writers_keep_their_own_outcomes,
                kv_overlapping_batches_in_any_order,
                kv_limits_are_enforced,
                kv_typed_json,
                kv_json_values_of_every_type_round_trip,
                kv_json_values_no_document_can_hold_round_trip,
                kv_json_and_bytes_take_turns_at_one_key,
                kv_expire_and_persist_change_only_the_ttl,
                kv_get_stale_reads_expired_items_for_the_kept_time,
            ];
            kv_holds, Uuid, holds: [
                kv_big_batches_never_hold_the_runtime,
            ];
            input, Uuid, input: [
                nul_characters_are_refused,
                extra_reads_back_as_returned,
                oauth_expiry_at_the_ends_of_time,
                one_answer_when_two_rules_apply,
            ];
            load, Uuid, load: [
                mixed_writers_on_few_keys_account_for_every_success,
            ];
            observe, Uuid, observe: [
                every_call_opens_one_span_with_database_fields,
            ];
            model_uuid, Uuid, model: [
                random_sequences_agree_with_a_plain_model,
            ];
            model_int, Int, model: [
                random_sequences_agree_with_a_plain_model,
            ];
            expressions, Uuid, expressions: [
                filtered_pages_are_full_and_exact,
                every_operator_on_every_type,
                bad_conditions_are_invalid_input,
                random_filters_agree_with_the_reference,
                patches_apply_every_action_or_none,
                conditional_patches_change_nothing_when_refused,
                concurrent_adds_to_one_counter_are_exact,
            ];
            projections, Uuid, projections: [
                top_level_and_nested_paths_follow_the_reference,
                list_elements_keep_their_order_not_their_positions,
                missing_paths_are_left_out_without_error,
                select_with_a_filter_tests_the_whole_record,
                select_on_an_index_query_pages_through_cursors,
                a_projected_get_of_a_missing_record_is_none,
                bad_selections_are_invalid_input,
                expired_records_are_not_read_through_a_projection,
                typed_partial_records_read_as_a_second_type,
            ];
            scans, Uuid, scans: [
                filtered_scans_are_full_and_exact,
                unfiltered_pages_read_what_they_return,
                filtered_query_pages_count_their_reads,
                scan_cursors_are_bound_to_their_filter,
                scan_filters_may_test_key_fields,
                read_budgets_cut_pages_and_continue_exactly,
                a_budget_under_the_limit_bounds_an_unfiltered_page,
                bad_read_budgets_and_scans_are_invalid_input,
                typed_scans_and_streams_filter,
            ];
            records, Uuid, records: [
                expired_records_are_never_read,
                pages_stay_full_around_expired_records,
                expired_records_free_their_key_and_unique_values,
                records_expire_while_the_store_runs,
                put_many_and_delete_many_round_trip,
                a_failing_batch_is_all_or_nothing_where_atomic,
            ];
            transactions, Uuid, transactions: [
                conditional_puts_write_only_when_the_condition_holds,
                conditional_deletes_delete_only_when_the_condition_holds,
                concurrent_conditional_creates_have_one_winner,
                a_transaction_across_tables_commits,
                a_transaction_failing_on_its_last_action_leaves_nothing,
                transactions_over_the_limit_are_refused,
                concurrent_transactions_sell_exactly_the_stock,
            ];
            differential, Uuid, differential: [
                random_writes_agree_with_the_reference,
                random_writes_without_unique_values_agree_with_the_reference,
                a_transaction_names_its_first_failing_action,
                adds_past_the_64_bit_range_are_refused,
            ];
            races, Uuid, races: [
                overlapping_batches_leave_whole_records,
                inserts_over_an_expired_record_have_one_winner,
            ];
            kv_races, Uuid, races: [
                kv_ttl_changes_on_one_key_race_cleanly,
            ];
            tables, Uuid, tables: [
                round_trip_and_versions,
                insert_is_create_only_and_put_upserts,
                concurrent_inserts_of_one_key_have_one_winner,
                racing_for_a_unique_value_has_one_winner_each_round,
                unique_values_move_and_free_on_update_and_delete,
                composite_and_multiple_unique_indexes,
                stale_versions_are_conflicts,
                concurrent_updates_lose_nothing,
                mixed_writers_on_three_keys_account_for_every_success,
                every_sort_condition_on_integer_keys,
                every_sort_condition_on_text_keys,
                integer_order_spans_the_whole_range,
                text_and_bytes_sort_in_byte_order,
                pages_are_full_and_each_record_comes_once,
                a_query_past_one_megabyte_fills_its_page,
                products_by_name_newest_first,
                sparse_indexes_leave_out_records_without_the_field,
                updates_move_and_deletes_leave_every_index,
                ties_on_the_index_sort_key_come_once_each,
                key_limits_are_enforced,
                document_limits_are_enforced,
                numbers_read_back_equal_everywhere,
                schema_rules_are_checked,
                reads_after_writes_see_them_except_index_queries,
                garbled_and_foreign_cursors_are_invalid_input,
                concurrent_ensure_table_creates_it_once,
                a_table_that_drifted_is_refused_with_its_differences,
                adding_indexes_to_a_populated_table_backfills_them,
                get_many_keeps_order_repeats_and_misses,
                scan_and_count_see_every_record_once,
                verified_queries_drop_stale_hits,
                query_streams_follow_every_page,
                typed_tables_read_and_write_serde_records,
                float_keys_sort_numerically,
                every_call_on_a_dropped_table_is_not_found,
            ];
            edges, Uuid, edges: [
                float_keys_hold_only_integers_a_float_holds_exactly,
                paging_one_record_at_a_time_always_ends,
                edited_cursors_are_invalid_input,
                versions_run_from_one_to_i64_max,
                long_field_names_are_refused_at_any_depth,
                random_cursor_edits_are_refused_and_intact_cursors_continue,
            ];
            schema_edges, Uuid, schema_edges: [
                table_names_that_differ_only_in_case_are_one_name,
                adding_an_index_over_records_that_do_not_fit_it,
                a_refused_unique_index_leaves_nothing_behind,
                an_exact_named_table_is_one_table_for_every_prefix,
            ];
            transfer_uuid, Uuid, transfer: [
                kv_export_pages_every_live_item_once_with_its_deadline,
                kv_import_keeps_values_and_deadlines_and_replaces,
                kv_json_items_export_and_copy_as_their_json,
                users_copy_out_and_back_unchanged,
                users_import_into_a_store_that_never_saw_them,
                records_copy_with_their_versions_and_tables,
                racing_imports_leave_one_whole_winner,
            ];
            transfer_int, Int, transfer: [
                users_copy_out_and_back_unchanged,
                users_import_into_a_store_that_never_saw_them,
                racing_imports_leave_one_whole_winner,
            ];
        }
    };
}

/// Expands one `#[tokio::test]` per conformance case for the backend whose fixture `setup`
/// builds (`async fn setup(SetupContext) -> Option<Fixture>`).
#[macro_export]
macro_rules! conformance_suite {
    ($setup:ident) => {
        $crate::__with_cases!(__tests $setup);
    };
}

/// The tests [`conformance_suite!`] expands to.
#[doc(hidden)]
#[macro_export]
macro_rules! __tests {
    (($setup:ident) $($group:ident, $kind:ident, $module:ident: [$($case:ident),* $(,)?];)*) => {
        $(
            mod $group {
                $(
                    #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $case() {
                        $crate::run_case(
                            stringify!($case),
                            $crate::harness::IdKind::$kind,
                            super::$setup,
                            $crate::$module::$case,
                        )
                        .await;
                    }
                )*
            }
        )*
    };
}

/// The cases as [`Case`] values, for [`cases`].
#[doc(hidden)]
#[macro_export]
macro_rules! __case_list {
    (() $($group:ident, $kind:ident, $module:ident: [$($case:ident),* $(,)?];)*) => {
        vec![$($(
            $crate::Case {
                group: stringify!($group),
                name: stringify!($case),
                id_kind: $crate::harness::IdKind::$kind,
                run: |fixture| Box::pin($crate::$module::$case(fixture)),
            },
        )*)*]
    };
}
