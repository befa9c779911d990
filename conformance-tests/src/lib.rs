//! The storekit conformance suite: the contract every backend keeps.
//!
//! The cases are plain `pub async fn`s in [`users`], [`kv`], [`tables`], [`edges`],
//! [`schema_edges`], [`expressions`], [`scans`], [`projections`], [`index_projections`],
//! [`read_options`], [`records`],
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
//! // tests/mybackend.rs, in the backend's own crate (the suite depends on storekit-core only)
//! async fn setup(ctx: storekit_conformance::SetupContext) -> Option<storekit_conformance::Fixture> {
//!     // Connect (or return None when the server is not configured) and migrate under
//!     // `ctx.prefix`; the store, as one `Arc<dyn Store>`, gives every part and its admin.
//!     let store = MyStore::connect(&ctx.prefix).await.expect("connect");
//!     store.migrate().await.expect("migrate");
//!     Some(storekit_conformance::Fixture::new(std::sync::Arc::new(store)))
//! }
//! storekit_conformance::conformance_suite!(setup);
//! ```
//!
//! User cases run twice, with UUID and with integer ids. Every case gets its own table prefix
//! (or schema, or file), and after it, whether it passed or not, the harness drops the store's
//! tables (`Admin::drop_tables`) and runs the fixture's teardown.
//!
//! Servers come from [`server_url`]: the URL in the environment, else a container started once
//! per test binary ([`containers`]), else the case is skipped, or fails when `CI` is set.
//!
//! Every case is listed once, in the registry at the end of this file, a line per group (the
//! user cases with both id kinds). A case asserts the shape of an answer with
//! [`assert_matches!`], which a backend's own tests may use too.

/// Asserts that a value matches a pattern (with an optional guard), as
/// `assert!(matches!(value, pattern))` does, and shows the value when it does not; a message,
/// if given, comes first in the panic.
///
/// ```
/// use storekit_conformance::assert_matches;
/// use storekit_core::Error;
///
/// let missing: Result<(), Error> = Err(Error::NotFound { what: "record" });
/// assert_matches!(missing, Err(Error::NotFound { what: "record" }));
/// assert_matches!(missing, Err(Error::NotFound { what }) if what.len() == 6, "a {}", "miss");
/// ```
#[macro_export]
macro_rules! assert_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $value {
            $pattern $(if $guard)? => {}
            ref other => panic!("{other:?} does not match {}", stringify!($pattern)),
        }
    };
    ($value:expr, $pattern:pat $(if $guard:expr)?, $($message:tt)+) => {
        match $value {
            $pattern $(if $guard)? => {}
            ref other => panic!(
                "{}: {other:?} does not match {}",
                format_args!($($message)+),
                stringify!($pattern)
            ),
        }
    };
}

pub mod containers;
pub mod differential;
pub mod edges;
pub mod expressions;
pub mod harness;
pub mod holds;
pub mod index_projections;
pub mod input;
pub mod kv;
pub mod load;
pub mod model;
pub mod observe;
pub mod projections;
pub mod races;
pub mod read_options;
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

/// Every case, listed once, a line per group: the module that holds its cases, the test module
/// (the group's name) of each id kind it runs with, and the [`Suite`] that runs it besides
/// `Suite::All`; then its cases, a case marked `: Uuid` running with that id kind only. Calls
/// `$crate::$callback!` with the groups after `($($args)*)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($callback:ident $($args:tt)*) => {
        $crate::$callback! { ($($args)*)
            users [users_uuid: Uuid, users_int: Int] Users: [
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
            kv [kv: Uuid] Kv: [
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
            holds [kv_holds: Uuid] All: [
                kv_big_batches_never_hold_the_runtime,
            ];
            input [input: Uuid] All: [
                nul_characters_are_refused,
                extra_reads_back_as_returned,
                oauth_expiry_at_the_ends_of_time,
                one_answer_when_two_rules_apply,
            ];
            load [load: Uuid] All: [
                mixed_writers_on_few_keys_account_for_every_success,
            ];
            observe [observe: Uuid] All: [
                every_call_opens_one_span_with_database_fields,
            ];
            model [model_uuid: Uuid, model_int: Int] All: [
                random_sequences_agree_with_a_plain_model,
            ];
            expressions [expressions: Uuid] Tables: [
                filtered_pages_are_full_and_exact,
                a_page_behind_many_misses_is_whole_and_exact,
                every_operator_on_every_type,
                bad_conditions_are_invalid_input,
                random_filters_agree_with_the_reference,
                patches_apply_every_action_or_none,
                conditional_patches_change_nothing_when_refused,
                concurrent_adds_to_one_counter_are_exact,
                concurrent_adds_without_a_unique_index_are_exact,
                typed_patches_return_what_is_asked_as_a_second_type,
            ];
            projections [projections: Uuid] Tables: [
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
            index_projections [index_projections: Uuid] Tables: [
                a_drifted_table_is_refused_and_an_undeclared_index_left_alone,
                a_partial_index_returns_what_it_holds,
                whole_records_come_from_the_table,
                paths_a_partial_index_does_not_hold_are_refused,
                a_partial_index_reads_as_a_type_of_its_fields,
                a_projection_declared_otherwise_is_a_mismatch,
                undeclared_indexes_are_left_alone_and_listed,
                billing_and_tags_are_accepted_everywhere,
            ];
            scans [scans: Uuid] Tables: [
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
            read_options [read_options: Uuid] Tables: [
                eventual_reads_are_fresh_where_the_store_says_so,
                partition_counts_match_the_records_of_the_range,
                parallel_scan_segments_cover_the_table_once,
                a_named_version_attribute_is_the_version_and_no_field,
            ];
            records [records: Uuid] Tables: [
                expired_records_are_never_read,
                pages_stay_full_around_expired_records,
                expired_records_free_their_key_and_unique_values,
                records_expire_while_the_store_runs,
                put_many_and_delete_many_round_trip,
                a_failing_batch_is_all_or_nothing_where_atomic,
            ];
            transactions [transactions: Uuid] Tables: [
                conditional_puts_write_only_when_the_condition_holds,
                conditional_deletes_delete_only_when_the_condition_holds,
                concurrent_conditional_creates_have_one_winner,
                a_transaction_across_tables_commits,
                a_transaction_failing_on_its_last_action_leaves_nothing,
                transactions_over_the_limit_are_refused,
                concurrent_transactions_sell_exactly_the_stock,
            ];
            differential [differential: Uuid] Tables: [
                random_writes_agree_with_the_reference,
                random_writes_without_unique_values_agree_with_the_reference,
                a_transaction_names_its_first_failing_action,
                adds_past_the_64_bit_range_are_refused,
            ];
            races [races: Uuid] Tables: [
                overlapping_batches_leave_whole_records,
                inserts_over_an_expired_record_have_one_winner,
            ];
            races [kv_races: Uuid] Kv: [
                kv_ttl_changes_on_one_key_race_cleanly,
            ];
            tables [tables: Uuid] Tables: [
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
                adding_indexes_to_a_populated_table_backfills_them,
                get_many_keeps_order_repeats_and_misses,
                typed_reads_find_what_untyped_reads_find,
                typed_queries_and_scans_page_as_untyped_ones_do,
                scan_and_count_see_every_record_once,
                verified_queries_drop_stale_hits,
                query_streams_follow_every_page,
                typed_tables_read_and_write_serde_records,
                float_keys_sort_numerically,
                every_call_on_a_dropped_table_is_not_found,
            ];
            edges [edges: Uuid] Tables: [
                float_keys_hold_only_integers_a_float_holds_exactly,
                paging_one_record_at_a_time_always_ends,
                edited_cursors_are_invalid_input,
                versions_run_from_one_to_i64_max,
                long_field_names_are_refused_at_any_depth,
                random_cursor_edits_are_refused_and_intact_cursors_continue,
            ];
            schema_edges [schema_edges: Uuid] Tables: [
                table_names_that_differ_only_in_case_are_one_name,
                adding_an_index_over_records_that_do_not_fit_it,
                a_refused_unique_index_leaves_nothing_behind,
                an_exact_named_table_is_one_table_for_every_prefix,
            ];
            transfer [transfer_uuid: Uuid, transfer_int: Int] All: [
                kv_export_pages_every_live_item_once_with_its_deadline: Uuid,
                kv_import_keeps_values_and_deadlines_and_replaces: Uuid,
                kv_json_items_export_and_copy_as_their_json: Uuid,
                users_copy_out_and_back_unchanged,
                users_import_into_a_store_that_never_saw_them,
                records_copy_with_their_versions_and_tables: Uuid,
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

/// The tests [`conformance_suite!`] expands to: a module per group and id kind.
#[doc(hidden)]
#[macro_export]
macro_rules! __tests {
    (($setup:ident) $($module:ident [$($group:ident: $kind:ident),+] $suite:ident: $cases:tt;)*) => {
        $($(
            $crate::__group_tests! { $setup $module $group $kind $cases }
        )+)*
    };
}

/// The tests of one group with one id kind, in a module named by the group.
#[doc(hidden)]
#[macro_export]
macro_rules! __group_tests {
    ($setup:ident $module:ident $group:ident $kind:ident [$($case:ident $(: $only:ident)?),* $(,)?]) => {
        mod $group {
            $(
                $crate::__with_kind! { $kind [$($only)?]
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
                }
            )*
        }
    };
}

/// The cases as [`Case`] values, for [`cases`], in the registry's order.
#[doc(hidden)]
#[macro_export]
macro_rules! __case_list {
    (() $($module:ident [$($group:ident: $kind:ident),+] $suite:ident: $cases:tt;)*) => {{
        let mut list = ::std::vec::Vec::new();
        $($(
            $crate::__group_cases! { list $module $group $kind $suite $cases }
        )+)*
        list
    }};
}

/// Pushes the [`Case`]s of one group with one id kind onto `$list`.
#[doc(hidden)]
#[macro_export]
macro_rules! __group_cases {
    ($list:ident $module:ident $group:ident $kind:ident $suite:ident
        [$($case:ident $(: $only:ident)?),* $(,)?]) => {
        $(
            $crate::__with_kind! { $kind [$($only)?]
                $list.push($crate::Case {
                    group: stringify!($group),
                    name: stringify!($case),
                    id_kind: $crate::harness::IdKind::$kind,
                    suite: $crate::Suite::$suite,
                    run: |fixture| ::std::boxed::Box::pin($crate::$module::$case(fixture)),
                });
            }
        )*
    };
}

/// Expands to what follows the brackets when a case runs with this id kind: it is not marked
/// (empty brackets), or marked with this kind.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_kind {
    ($kind:ident [] $($then:tt)*) => { $($then)* };
    (Uuid [Uuid] $($then:tt)*) => { $($then)* };
    (Int [Int] $($then:tt)*) => { $($then)* };
    ($kind:ident [$only:ident] $($then:tt)*) => {};
}
