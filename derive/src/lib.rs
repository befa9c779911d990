//! `#[derive(Record)]`: a storekit table declared on its record type, so that the compiler
//! checks the declaration. Use it through the `storekit` crate (feature `derive`, on by
//! default) as `storekit::Record`; [`Record`](derive@Record) describes the attribute and what
//! it generates.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse as _, ParseStream};
use syn::spanned::Spanned as _;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Path, Token, Type};

// The rules of `TableSchemaBuilder::build` (storekit-core's `table/schema.rs`), checked here so
// that a derived schema is refused when compiled, never when built. Kept equal to core's:
// `schema()` still builds through core, and a schema these rules let through and core refuses
// would fail there, naming the type.
const NAME_LENGTH: (usize, usize) = (3, 40);
const RESERVED_TABLE_NAMES: [&str; 8] = [
    "users",
    "oauth_accounts",
    "access_tokens",
    "kv",
    "kv_rowid",
    "storekit_meta",
    "storekit_tables",
    "storekit_unique",
];
const RESERVED_TABLE_PREFIXES: [&str; 1] = ["sqlite_"];
const RESERVED_FIELD_PREFIX: &str = "_storekit";
const MAX_INDEXES: usize = 20;
const MAX_UNIQUE_INDEXES: usize = 20;
const MAX_UNIQUE_COMPONENTS: usize = 4;
const MAX_FIELD_BYTES: usize = 255;
/// The attribute storekit keeps versions in unless `version = "..."` names another.
const VERSION_ATTRIBUTE: &str = "_storekit_version";

/// Derives `storekit::table::RecordType` (the table's schema), a typed `key`, and typed
/// `query` / `query_<index>` constructors from a `#[storekit(...)]` attribute.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use storekit::Record;
/// use storekit::table::{KeyType, RecordType as _};
///
/// #[derive(Debug, Serialize, Deserialize, Record)]
/// #[serde(rename_all = "camelCase")]
/// #[storekit(
///     table = "orders",
///     partition = customer_id,
///     sort = order_id,
///     index(name = "status-index", partition = status, sort = last_update),
///     unique(name = "order-reference", fields(reference)),
///     ttl = expires_at,
/// )]
/// struct Order {
///     customer_id: String,
///     order_id: String,
///     status: String,
///     last_update: i64,
///     reference: Option<String>,
///     expires_at: Option<f64>,
/// }
///
/// // The schema `TableSchema::builder` would build, with the fields' serde names.
/// let schema = Order::schema();
/// assert_eq!(schema.partition().field(), "customerId");
/// assert_eq!(schema.indexes()[0].sort().map(|k| k.kind()), Some(KeyType::Int));
/// // A typed key, and a typed query of each index: `Order::query_status_index(1)` or
/// // `Order::query_stauts_index("shipped")` would not compile.
/// let key = Order::key("ada", "o-1");
/// let shipped = Order::query_status_index("shipped").descending();
/// // The name and values of a lookup in a unique index: `table.get_by_unique(index, &values)`.
/// let (index, values) = Order::unique_order_reference("r-1");
/// assert_eq!(index, "order-reference");
/// # let _ = (key, shipped, values);
/// ```
///
/// Then `Order::table(store)` (from `storekit::table::RecordType`) is the `Table<Order>` of a store.
///
/// # The attribute
///
/// `#[storekit(...)]` on the struct (one or several) takes:
///
/// | item | what it declares |
/// |---|---|
/// | `table = "name"` | the table's name (required): 3 to 40 of `a-z A-Z 0-9 _ - .`, not one of storekit's own tables |
/// | `partition = field` | the partition key (required); not an `Option` |
/// | `sort = field` | the sort key, if any; not an `Option` |
/// | `index(name = "...", partition = field, sort = field, projection = ...)` | a query index (`sort` optional); a record whose field is `None` is not in it. `projection` is `ALL` (the default), `KEYS_ONLY` or `INCLUDE(field, ...)` (`storekit::table::IndexProjection`): a query on a partial index reads what it holds, e.g. with `Table::query_as` |
/// | `unique(name = "...", fields(a, b))` | a unique index over 1 to 4 fields |
/// | `ttl = field` | the field records expire by: Unix seconds, an integer or float (or an `Option` of one) |
/// | `exact_name` | the table is named `table` itself, without the store's prefix (`TableSchemaBuilder::exact_name`); no `unique` then |
/// | `version = "version"` | the attribute versions are kept in (`TableSchemaBuilder::version_attribute`; `_storekit_version` when unsaid): a PynamoDB model's `VersionAttribute`, say |
/// | `crate = "path"` | where storekit is, for a crate that depends on `storekit-core` only (`crate = "storekit_core"`) |
///
/// Fields are named as in Rust; the table uses the name serde writes (`#[serde(rename = "...")]`,
/// `#[serde(rename_all = "...")]`). Each key field's Rust type picks its key type through
/// `storekit::table::KeyField`: `String`, `&str`, `Uuid` are text, `i8` to `i64` and `u8` to `u32`
/// integers, `f64` and `f32` floats, `Vec<u8>` bytes (with
/// `#[serde(with = "storekit::table::record::base64")]`, as the document holds base64 text).
///
/// # What it generates
///
/// - `RecordType::schema()`, the `TableSchema` (checked when the type is compiled by the
///   rules `TableSchemaBuilder::build` applies at run time);
/// - `key(partition, sort) -> RecordKey`, taking each key field's `KeyField::Arg` (`&str` for
///   a `String`, the integer type for an integer, ...);
/// - `query(partition) -> Query`, a query of one partition of the table, and for each index
///   `query_<index>(partition) -> Query`, `<index>` being the index's name with every character
///   other than a letter or digit made `_`, in lower case (`product-name-index` gives
///   `query_product_name_index`);
/// - for each unique index, `unique_<index>(values..) -> (&'static str, [KeyValue; N])`, the
///   index's name and the values of a lookup: `table.get_by_unique(index, &values)`.
///
/// The functions are as visible as the struct.
#[proc_macro_derive(Record, attributes(storekit))]
pub fn derive_record(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// A struct field as the table sees it.
struct Field {
    ident: Ident,
    ty: Type,
    /// The name serde writes, which the table stores.
    stored: String,
    /// Why serde never writes it, or writes it elsewhere: such a field cannot be a key.
    unwritten: Option<&'static str>,
    /// Whether serde writes it through a function of its own (`with`, `serialize_with`).
    custom: bool,
}

struct IndexDecl {
    name: LitStr,
    partition: Option<Ident>,
    sort: Option<Ident>,
    projection: ProjectionDecl,
}

/// `projection = ALL | KEYS_ONLY | INCLUDE(field, ...)` of an index.
enum ProjectionDecl {
    All,
    KeysOnly(Span),
    Include(Span, Vec<Ident>),
}

struct UniqueDecl {
    name: LitStr,
    fields: Vec<Ident>,
}

#[derive(Default)]
struct Decl {
    table: Option<LitStr>,
    partition: Option<Ident>,
    sort: Option<Ident>,
    indexes: Vec<IndexDecl>,
    uniques: Vec<UniqueDecl>,
    ttl: Option<Ident>,
    /// `exact_name`: the table is named without the store's prefix.
    exact_name: Option<Span>,
    /// `version = "..."`: the attribute versions are kept in.
    version: Option<LitStr>,
    krate: Option<Path>,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let named = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named,
            _ => return Err(not_a_struct(input)),
        },
        _ => return Err(not_a_struct(input)),
    };
    let rename_all = container_rename_all(input)?;
    let fields = named
        .named
        .iter()
        .map(|field| read_field(field, rename_all.as_ref()))
        .collect::<syn::Result<Vec<_>>>()?;

    let mut decl = Decl::default();
    let mut attr_span = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("storekit")) {
        attr_span.get_or_insert(attr.path().span());
        attr.parse_nested_meta(|meta| read_item(&mut decl, &meta))?;
    }
    let Some(attr_span) = attr_span else {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "#[derive(Record)] on `{name}` needs #[storekit(table = \"...\", partition = field)]"
            ),
        ));
    };
    let table = decl.table.clone().ok_or_else(|| {
        syn::Error::new(
            attr_span,
            format!("#[storekit(...)] on `{name}` has no `table = \"...\"`: the table's name"),
        )
    })?;
    let partition = decl.partition.clone().ok_or_else(|| {
        syn::Error::new(
            attr_span,
            format!(
                "#[storekit(...)] on `{name}` has no `partition = field`: every table has a partition key"
            ),
        )
    })?;
    check_table_name(&table)?;
    if let Some(version) = &decl.version
        && let Some(field) = fields.iter().find(|f| f.stored == version.value())
    {
        // Every write of such a record would be refused: the name is the version's.
        return Err(syn::Error::new(
            version.span(),
            format!(
                "field `{}` is stored as {:?}, the version attribute: storekit keeps the version \
                 there, outside the record",
                field.ident, field.stored
            ),
        ));
    }

    let find = |ident: &Ident| find_field(name, &fields, ident);
    let partition = find(&partition)?;
    let sort = decl.sort.as_ref().map(find).transpose()?;
    for (key, what) in std::iter::once((partition, "partition")).chain(sort.map(|s| (s, "sort"))) {
        if is_option(&key.ty) {
            return Err(syn::Error::new(
                key.ty.span(),
                format!(
                    "the {what} key `{}` of table {:?} is an `Option`: every record has its key",
                    key.ident,
                    table.value()
                ),
            ));
        }
    }
    if sort.is_some_and(|s| s.stored == partition.stored) {
        return Err(syn::Error::new(
            decl.sort.span(),
            "the table's sort key is its partition key",
        ));
    }

    let mut names: Vec<(String, Span)> = Vec::new();
    let mut check_index_name = |name: &LitStr| -> syn::Result<()> {
        check_name("index name", name)?;
        let folded = name.value().to_ascii_lowercase();
        // SQLite's names ignore ASCII case, so two names that differ only there are one.
        if names.iter().any(|(n, _)| *n == folded) {
            return Err(syn::Error::new(
                name.span(),
                format!("two indexes are named {:?} (ignoring case)", name.value()),
            ));
        }
        names.push((folded, name.span()));
        Ok(())
    };
    if decl.indexes.len() > MAX_INDEXES {
        return Err(syn::Error::new(
            decl.indexes[MAX_INDEXES].name.span(),
            format!(
                "{} query indexes, over the limit of {MAX_INDEXES}",
                decl.indexes.len()
            ),
        ));
    }
    if decl.uniques.len() > MAX_UNIQUE_INDEXES {
        return Err(syn::Error::new(
            decl.uniques[MAX_UNIQUE_INDEXES].name.span(),
            format!(
                "{} unique indexes, over the limit of {MAX_UNIQUE_INDEXES}",
                decl.uniques.len()
            ),
        ));
    }
    let mut indexes = Vec::new();
    for index in &decl.indexes {
        check_index_name(&index.name)?;
        let index_partition = index.partition.as_ref().ok_or_else(|| {
            syn::Error::new(
                index.name.span(),
                format!("index {:?} has no `partition = field`", index.name.value()),
            )
        })?;
        let index_partition = find(index_partition)?;
        let index_sort = index.sort.as_ref().map(find).transpose()?;
        if index_sort.is_some_and(|s| s.stored == index_partition.stored) {
            return Err(syn::Error::new(
                index.sort.span(),
                format!("index {:?} sorts by its partition key", index.name.value()),
            ));
        }
        indexes.push((index, index_partition, index_sort));
    }
    if let (Some(span), Some(unique)) = (decl.exact_name, decl.uniques.first()) {
        // `TableSchemaBuilder::build`'s rule: stores with different prefixes share the table.
        return Err(syn::Error::new(
            span,
            format!(
                "an `exact_name` table cannot have a unique index ({:?}): stores with \
                 different prefixes share it, and would each keep its unique values alone",
                unique.name.value()
            ),
        ));
    }
    let mut uniques = Vec::new();
    for unique in &decl.uniques {
        check_index_name(&unique.name)?;
        let n = unique.fields.len();
        if !(1..=MAX_UNIQUE_COMPONENTS).contains(&n) {
            return Err(syn::Error::new(
                unique.name.span(),
                format!(
                    "unique index {:?} has {n} fields, not 1 to {MAX_UNIQUE_COMPONENTS}: `fields(a, b)`",
                    unique.name.value()
                ),
            ));
        }
        let components = unique
            .fields
            .iter()
            .map(find)
            .collect::<syn::Result<Vec<_>>>()?;
        for (i, component) in components.iter().enumerate() {
            if components[..i].iter().any(|c| c.stored == component.stored) {
                return Err(syn::Error::new(
                    unique.fields[i].span(),
                    format!(
                        "unique index {:?} names the field `{}` twice",
                        unique.name.value(),
                        component.ident
                    ),
                ));
            }
        }
        uniques.push((unique, components));
    }

    // Every key field: written by serde, at the top level, with a name a key may have.
    let keys: Vec<&Field> = std::iter::once(partition)
        .chain(sort)
        .chain(
            indexes
                .iter()
                .flat_map(|(_, p, s)| std::iter::once(*p).chain(*s)),
        )
        .chain(uniques.iter().flat_map(|(_, c)| c.iter().copied()))
        .collect();
    for key in &keys {
        check_key_field(key)?;
    }
    let ttl = decl.ttl.as_ref().map(find).transpose()?;
    if let Some(ttl) = ttl {
        check_stored_name(ttl)?;
        if ttl.unwritten.is_some() {
            return Err(syn::Error::new(
                ttl.ident.span(),
                format!(
                    "the ttl field `{}` is {}",
                    ttl.ident,
                    ttl.unwritten.unwrap_or_default()
                ),
            ));
        }
        if ttl.stored.contains(['.', '[', ']', '"']) {
            return Err(syn::Error::new(
                ttl.ident.span(),
                format!(
                    "the ttl field {:?} must be a top-level name without `.`, `[`, `]` or `\"`",
                    ttl.stored
                ),
            ));
        }
        if keys.iter().any(|k| k.stored == ttl.stored) {
            return Err(syn::Error::new(
                ttl.ident.span(),
                format!("the ttl field `{}` is also a key field", ttl.ident),
            ));
        }
    }

    // Each partial projection: the struct's fields, none a key (every index holds those), and
    // the ttl field where records expire (`TableSchemaBuilder::build`'s rules).
    let mut projections = Vec::new();
    for (index, index_partition, index_sort) in &indexes {
        let table_keys = std::iter::once(partition).chain(sort);
        let index_keys: Vec<&Field> = table_keys
            .chain(std::iter::once(*index_partition))
            .chain(*index_sort)
            .collect();
        let included = match &index.projection {
            ProjectionDecl::All => None,
            ProjectionDecl::KeysOnly(span) => Some((*span, Vec::new())),
            ProjectionDecl::Include(span, fields) => {
                if fields.is_empty() {
                    return Err(syn::Error::new(
                        *span,
                        "`INCLUDE()` holds no field: declare the index KEYS_ONLY",
                    ));
                }
                let mut found = Vec::new();
                for ident in fields {
                    let field = find(ident)?;
                    check_stored_name(field)?;
                    if index_keys.iter().any(|k| k.stored == field.stored) {
                        return Err(syn::Error::new(
                            ident.span(),
                            format!(
                                "index {:?} includes the key field `{ident}`, which every index holds",
                                index.name.value()
                            ),
                        ));
                    }
                    found.push(field.stored.clone());
                }
                Some((*span, found))
            }
        };
        if let (Some(ttl), Some((span, fields))) = (ttl, &included)
            && !fields.contains(&ttl.stored)
        {
            return Err(syn::Error::new(
                *span,
                format!(
                    "index {:?} does not hold the ttl field `{}`: include it, so that a query \
                     on the index can leave expired records out",
                    index.name.value(),
                    ttl.ident
                ),
            ));
        }
        projections.push(included.map(|(span, fields)| {
            (
                matches!(index.projection, ProjectionDecl::KeysOnly(_)),
                span,
                fields,
            )
        }));
    }

    let krate = decl
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::storekit));
    let key_type = |field: &Field| {
        let ty = &field.ty;
        quote_spanned!(ty.span()=> <#ty as #krate::table::KeyField>)
    };
    // Spanned at the field's type, all of it: a type that is not a key type is then one error,
    // on the field, however many generated items use it.
    let key_def = |field: &Field| {
        let (stored, kind) = (&field.stored, key_type(field));
        quote_spanned!(field.ty.span()=> #krate::table::KeyDef::new(#stored, #kind::KEY_TYPE))
    };
    let partition_def = key_def(partition);
    let sort_def = sort.map(|s| {
        let def = key_def(s);
        quote!(.sort_key(#def))
    });
    let index_defs = indexes
        .iter()
        .zip(&projections)
        .map(|((index, p, s), projection)| {
            let name = &index.name;
            let p = key_def(p);
            let s = match s {
                Some(s) => {
                    let def = key_def(s);
                    quote!(::core::option::Option::Some(#def))
                }
                None => quote!(::core::option::Option::None),
            };
            match projection {
                None => quote!(.index(#name, #p, #s)),
                Some((true, _, _)) => quote!(.query_index(
                    #krate::table::QueryIndex::new(#name, #p, #s).keys_only()
                )),
                Some((false, _, fields)) => quote!(.query_index(
                    #krate::table::QueryIndex::new(#name, #p, #s).include([#(#fields),*])
                )),
            }
        });
    let unique_defs = uniques.iter().map(|(unique, components)| {
        let name = &unique.name;
        let defs = components.iter().map(|c| key_def(c));
        quote!(.unique(#name, [#(#defs),*]))
    });
    let exact_def = decl.exact_name.map(|_| quote!(.exact_name()));
    let version_def = decl
        .version
        .as_ref()
        .map(|v| quote!(.version_attribute(#v)));
    let ttl_def = ttl.map(|ttl| {
        let (stored, ty) = (&ttl.stored, &ttl.ty);
        let check = quote_spanned!(ty.span()=> __storekit_ttl::<#ty>());
        quote! {
            .ttl({
                fn __storekit_ttl<T: #krate::table::TtlField + ?::core::marker::Sized>() {}
                #check;
                #stored
            })
        }
    });

    let vis = &input.vis;
    let table_name = table.value();
    let param = |field: &Field| {
        let (ident, kind) = (&field.ident, key_type(field));
        let ty = quote_spanned!(field.ty.span()=> #kind::Arg<'_>);
        quote!(#ident: #ty)
    };
    let value = |field: &Field| {
        let (ident, kind) = (&field.ident, key_type(field));
        quote_spanned!(field.ty.span()=> #kind::key_value(#ident))
    };
    let key_fn = {
        let params = std::iter::once(partition).chain(sort).map(param);
        let partition_value = value(partition);
        let sort_value = match sort {
            Some(s) => {
                let v = value(s);
                quote!(::core::option::Option::Some(#v))
            }
            None => quote!(::core::option::Option::None),
        };
        let doc = match sort {
            Some(s) => format!(
                "The key of the record of table `{table_name}` whose `{}` is `{}` and `{}` is `{}`.",
                partition.ident, partition.ident, s.ident, s.ident
            ),
            None => format!(
                "The key of the record of table `{table_name}` whose `{}` is `{}`.",
                partition.ident, partition.ident
            ),
        };
        quote! {
            #[doc = #doc]
            #[must_use]
            #vis fn key(#(#params),*) -> #krate::table::RecordKey {
                #krate::table::RecordKey {
                    partition: #partition_value,
                    sort: #sort_value,
                }
            }
        }
    };
    let query_fn = {
        let (p, v) = (param(partition), value(partition));
        let doc = format!(
            "A query of the records of table `{table_name}` whose `{}` is `{}`{}.",
            partition.ident,
            partition.ident,
            match sort {
                Some(s) => format!(", by `{}`", s.ident),
                None => String::new(),
            }
        );
        quote! {
            #[doc = #doc]
            #[must_use]
            #vis fn query(#p) -> #krate::table::Query {
                #krate::table::Query::table(#v)
            }
        }
    };
    let mut methods: Vec<(String, Span)> = Vec::new();
    let mut index_fns = Vec::new();
    for (index, p, s) in &indexes {
        let index_name = index.name.value();
        let method = format!("query_{}", snake(&index_name));
        if let Some((_, first)) = methods.iter().find(|(m, _)| *m == method) {
            let mut error = syn::Error::new(
                index.name.span(),
                format!("two indexes would both be queried by `{method}`: rename one"),
            );
            error.combine(syn::Error::new(*first, "the other index"));
            return Err(error);
        }
        methods.push((method.clone(), index.name.span()));
        let method = format_ident!("{method}", span = index.name.span());
        let (param, v) = (param(p), value(p));
        let doc = format!(
            "A query of index `{index_name}` of table `{table_name}`: the records whose `{}` is `{}`{}.",
            p.ident,
            p.ident,
            match s {
                Some(s) => format!(", by `{}`", s.ident),
                None => String::new(),
            }
        );
        let name = &index.name;
        index_fns.push(quote! {
            #[doc = #doc]
            #[must_use]
            #vis fn #method(#param) -> #krate::table::Query {
                #krate::table::Query::index(#name, #v)
            }
        });
    }
    for (unique, components) in &uniques {
        let unique_name = unique.name.value();
        let method = format!("unique_{}", snake(&unique_name));
        if let Some((_, first)) = methods.iter().find(|(m, _)| *m == method) {
            let mut error = syn::Error::new(
                unique.name.span(),
                format!("two unique indexes would both be looked up by `{method}`: rename one"),
            );
            error.combine(syn::Error::new(*first, "the other index"));
            return Err(error);
        }
        methods.push((method.clone(), unique.name.span()));
        let method = format_ident!("{method}", span = unique.name.span());
        let params = components.iter().map(|c| param(c));
        let values = components.iter().map(|c| value(c));
        let n = components.len();
        let fields = components
            .iter()
            .map(|c| format!("`{}`", c.ident))
            .collect::<Vec<_>>()
            .join(", ");
        let doc = format!(
            "The name and values of a lookup in unique index `{unique_name}` of table \
             `{table_name}` (on {fields}): `table.get_by_unique(index, &values)`."
        );
        let name = &unique.name;
        index_fns.push(quote! {
            #[doc = #doc]
            #[must_use]
            #vis fn #method(#(#params),*) -> (&'static str, [#krate::table::KeyValue; #n]) {
                (#name, [#(#values),*])
            }
        });
    }

    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::table::RecordType for #name #ty_generics #where_clause {
            fn schema() -> #krate::table::TableSchema {
                let built = #krate::table::TableSchema::builder(#table, #partition_def)
                    #sort_def
                    #(#index_defs)*
                    #(#unique_defs)*
                    #ttl_def
                    #exact_def
                    #version_def
                    .build();
                match built {
                    ::core::result::Result::Ok(schema) => schema,
                    // The derive checked the rules `build` applies when this was compiled.
                    ::core::result::Result::Err(error) => ::core::panic!(
                        "#[derive(Record)] on `{}`: {}",
                        ::core::stringify!(#name),
                        error
                    ),
                }
            }
        }

        #[automatically_derived]
        impl #impl_generics #name #ty_generics #where_clause {
            #key_fn
            #query_fn
            #(#index_fns)*
        }
    })
}

fn not_a_struct(input: &DeriveInput) -> syn::Error {
    syn::Error::new(
        input.ident.span(),
        "#[derive(Record)] applies to a struct with named fields: one field per stored attribute",
    )
}

/// Reads one item of `#[storekit(...)]`.
fn read_item(decl: &mut Decl, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let path = &meta.path;
    if path.is_ident("table") {
        set(&mut decl.table, meta.value()?.parse()?, meta)
    } else if path.is_ident("partition") {
        set(&mut decl.partition, meta.value()?.parse()?, meta)
    } else if path.is_ident("sort") {
        set(&mut decl.sort, meta.value()?.parse()?, meta)
    } else if path.is_ident("ttl") {
        set(&mut decl.ttl, meta.value()?.parse()?, meta)
    } else if path.is_ident("exact_name") {
        set(&mut decl.exact_name, path.span(), meta)
    } else if path.is_ident("crate") {
        let text: LitStr = meta.value()?.parse()?;
        set(&mut decl.krate, text.parse()?, meta)
    } else if path.is_ident("version") {
        let version: LitStr = meta.value()?.parse()?;
        let text = version.value();
        let fits = text == VERSION_ATTRIBUTE
            || !(text.is_empty()
                || text.len() > 255
                || text.starts_with("_storekit")
                || text.contains(['.', '[', ']', '"', '\0']));
        if !fits {
            return Err(syn::Error::new(
                version.span(),
                format!(
                    "version attribute {text:?}: 1 to 255 bytes, no `.`, `[`, `]`, `\"` or NUL, \
                     and not starting with \"_storekit\" unless it is {VERSION_ATTRIBUTE:?}"
                ),
            ));
        }
        set(&mut decl.version, version, meta)
    } else if path.is_ident("index") {
        let (mut name, mut partition, mut sort, mut projection) = (None, None, None, None);
        meta.parse_nested_meta(|inner| {
            if inner.path.is_ident("name") {
                set(&mut name, inner.value()?.parse()?, &inner)
            } else if inner.path.is_ident("partition") {
                set(&mut partition, inner.value()?.parse()?, &inner)
            } else if inner.path.is_ident("sort") {
                set(&mut sort, inner.value()?.parse()?, &inner)
            } else if inner.path.is_ident("projection") {
                let read = read_projection(inner.value()?)?;
                set(&mut projection, read, &inner)
            } else {
                Err(inner.error(
                    "unknown item of `index(...)`; expected `name`, `partition`, `sort` or `projection`",
                ))
            }
        })?;
        let name: LitStr =
            name.ok_or_else(|| meta.error("`index(...)` has no `name = \"...\"`"))?;
        decl.indexes.push(IndexDecl {
            name,
            partition,
            sort,
            projection: projection.unwrap_or(ProjectionDecl::All),
        });
        Ok(())
    } else if path.is_ident("unique") {
        let (mut name, mut fields) = (None, None);
        meta.parse_nested_meta(|inner| {
            if inner.path.is_ident("name") {
                set(&mut name, inner.value()?.parse()?, &inner)
            } else if inner.path.is_ident("fields") {
                let mut list = Vec::new();
                inner.parse_nested_meta(|field| {
                    list.push(field.path.require_ident()?.clone());
                    Ok(())
                })?;
                set(&mut fields, list, &inner)
            } else {
                Err(inner.error("unknown item of `unique(...)`; expected `name` or `fields`"))
            }
        })?;
        let name: LitStr =
            name.ok_or_else(|| meta.error("`unique(...)` has no `name = \"...\"`"))?;
        decl.uniques.push(UniqueDecl {
            name,
            fields: fields.unwrap_or_default(),
        });
        Ok(())
    } else {
        Err(meta.error(
            "unknown item of #[storekit(...)]; expected `table`, `partition`, `sort`, `index`, \
             `unique`, `ttl`, `exact_name`, `version` or `crate`",
        ))
    }
}

fn set<T>(slot: &mut Option<T>, value: T, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if slot.is_some() {
        let name = meta
            .path
            .get_ident()
            .map_or_else(String::new, ToString::to_string);
        return Err(meta.error(format!("`{name}` is given twice")));
    }
    *slot = Some(value);
    Ok(())
}

/// `projection = ALL`, `KEYS_ONLY` or `INCLUDE(field, ...)` (the first two also as strings),
/// DynamoDB's names; the included fields are the struct's, checked when the schema is.
fn read_projection(input: ParseStream<'_>) -> syn::Result<ProjectionDecl> {
    let (text, span) = if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        (lit.value(), lit.span())
    } else {
        let ident: Ident = input.parse()?;
        (ident.to_string(), ident.span())
    };
    match text.as_str() {
        "ALL" => Ok(ProjectionDecl::All),
        "KEYS_ONLY" => Ok(ProjectionDecl::KeysOnly(span)),
        "INCLUDE" if input.peek(syn::token::Paren) => {
            let content;
            syn::parenthesized!(content in input);
            let fields = content.parse_terminated(Ident::parse, Token![,])?;
            Ok(ProjectionDecl::Include(span, fields.into_iter().collect()))
        }
        "INCLUDE" => Err(syn::Error::new(
            span,
            "`INCLUDE` names the fields it holds: `projection = INCLUDE(price, updated_at)`",
        )),
        other => Err(syn::Error::new(
            span,
            format!("projection {other}: expected ALL, KEYS_ONLY or INCLUDE(field, ...)"),
        )),
    }
}

/// The struct's `#[serde(rename_all = "...")]`, if any.
fn container_rename_all(input: &DeriveInput) -> syn::Result<Option<(String, Span)>> {
    let mut rename_all = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                rename_all = Some(serialized_name(&meta, "rename_all")?);
                Ok(())
            } else {
                skip_meta(&meta)
            }
        })?;
    }
    Ok(rename_all)
}

/// The name serde writes from `rename = "x"` or `rename(serialize = "x", ...)`: a name written
/// one way and read another cannot be a table's field, so differing names are refused.
fn serialized_name(meta: &ParseNestedMeta<'_>, what: &str) -> syn::Result<(String, Span)> {
    if meta.input.peek(Token![=]) {
        let lit: LitStr = meta.value()?.parse()?;
        return Ok((lit.value(), lit.span()));
    }
    let (mut serialize, mut deserialize) = (None::<LitStr>, None::<LitStr>);
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("serialize") {
            serialize = Some(inner.value()?.parse()?);
        } else if inner.path.is_ident("deserialize") {
            deserialize = Some(inner.value()?.parse()?);
        } else {
            skip_meta(&inner)?;
        }
        Ok(())
    })?;
    match (serialize, deserialize) {
        (Some(s), Some(d)) if s.value() != d.value() => Err(syn::Error::new(
            d.span(),
            format!(
                "serde `{what}` writes {:?} and reads {:?}: a storekit table stores one name",
                s.value(),
                d.value()
            ),
        )),
        (Some(s), _) => Ok((s.value(), s.span())),
        (None, _) => Err(meta.error(format!(
            "serde `{what}` without `serialize`: storekit cannot tell the name written"
        ))),
    }
}

/// Consumes a serde item storekit has no use for.
fn skip_meta(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<proc_macro2::Group>()?;
    }
    Ok(())
}

fn read_field(field: &syn::Field, rename_all: Option<&(String, Span)>) -> syn::Result<Field> {
    let ident = field
        .ident
        .clone()
        .ok_or_else(|| syn::Error::new(field.span(), "a field without a name"))?;
    let mut renamed = None;
    let mut unwritten = None;
    let mut custom = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let path = &meta.path;
            if path.is_ident("rename") {
                renamed = Some(serialized_name(&meta, "rename")?.0);
                return Ok(());
            }
            if path.is_ident("skip") || path.is_ident("skip_serializing") {
                unwritten = Some("never written by serde (`skip`)");
            } else if path.is_ident("flatten") {
                unwritten = Some("flattened by serde into the record: not one field");
            } else if path.is_ident("with") || path.is_ident("serialize_with") {
                custom = true;
            }
            skip_meta(&meta)
        })?;
    }
    let rust_name = ident.to_string();
    let rust_name = rust_name.strip_prefix("r#").unwrap_or(&rust_name);
    let stored = match (renamed, rename_all) {
        (Some(name), _) => name,
        (None, Some((rule, span))) => apply_rename_all(rule, rust_name, *span)?,
        (None, None) => rust_name.to_owned(),
    };
    Ok(Field {
        ident,
        ty: field.ty.clone(),
        stored,
        unwritten,
        custom,
    })
}

/// serde's `rename_all` rules for a field's name, as serde applies them.
fn apply_rename_all(rule: &str, field: &str, span: Span) -> syn::Result<String> {
    let pascal = || {
        let mut pascal = String::new();
        let mut capitalize = true;
        for ch in field.chars() {
            if ch == '_' {
                capitalize = true;
            } else if capitalize {
                pascal.push(ch.to_ascii_uppercase());
                capitalize = false;
            } else {
                pascal.push(ch);
            }
        }
        pascal
    };
    Ok(match rule {
        "lowercase" | "snake_case" => field.to_owned(),
        "UPPERCASE" | "SCREAMING_SNAKE_CASE" => field.to_ascii_uppercase(),
        "PascalCase" => pascal(),
        "camelCase" => {
            let pascal = pascal();
            let mut chars = pascal.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_lowercase().to_string() + chars.as_str()
            })
        }
        "kebab-case" => field.replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => field.to_ascii_uppercase().replace('_', "-"),
        other => {
            return Err(syn::Error::new(
                span,
                format!("unknown serde rename_all rule {other:?}"),
            ));
        }
    })
}

fn find_field<'f>(name: &Ident, fields: &'f [Field], ident: &Ident) -> syn::Result<&'f Field> {
    if let Some(field) = fields.iter().find(|f| f.ident == *ident) {
        return Ok(field);
    }
    let wanted = ident.to_string();
    let closest = fields
        .iter()
        .map(|f| (distance(&wanted, &f.ident.to_string()), f))
        .filter(|(d, _)| *d <= wanted.len().div_ceil(3).max(1))
        .min_by_key(|(d, _)| *d);
    let hint = closest.map_or_else(String::new, |(_, f)| {
        format!("; did you mean `{}`?", f.ident)
    });
    Err(syn::Error::new(
        ident.span(),
        format!("`{name}` has no field `{ident}`{hint}"),
    ))
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

fn check_key_field(field: &Field) -> syn::Result<()> {
    if let Some(why) = field.unwritten {
        return Err(syn::Error::new(
            field.ident.span(),
            format!("the key field `{}` is {why}", field.ident),
        ));
    }
    check_stored_name(field)?;
    if is_bytes(&field.ty) && !field.custom {
        return Err(syn::Error::new(
            field.ty.span(),
            format!(
                "the bytes key field `{}` must be written as base64 text: add \
                 #[serde(with = \"storekit::table::record::base64\")] (serde writes bytes as a \
                 list of numbers)",
                field.ident
            ),
        ));
    }
    Ok(())
}

fn check_stored_name(field: &Field) -> syn::Result<()> {
    let stored = &field.stored;
    if stored.is_empty() || stored.len() > MAX_FIELD_BYTES || stored.contains('\0') {
        return Err(syn::Error::new(
            field.ident.span(),
            format!("the field {stored:?} must be 1 to {MAX_FIELD_BYTES} bytes without NUL"),
        ));
    }
    if stored.starts_with(RESERVED_FIELD_PREFIX) {
        return Err(syn::Error::new(
            field.ident.span(),
            format!("the field {stored:?} starts with the reserved {RESERVED_FIELD_PREFIX:?}"),
        ));
    }
    Ok(())
}

fn check_name(what: &str, name: &LitStr) -> syn::Result<()> {
    let text = name.value();
    let (shortest, longest) = NAME_LENGTH;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if !(shortest..=longest).contains(&text.len()) || !text.chars().all(allowed) {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "{what} {text:?} must be {shortest} to {longest} of the characters a-z, A-Z, 0-9, _, - and ."
            ),
        ));
    }
    Ok(())
}

fn check_table_name(name: &LitStr) -> syn::Result<()> {
    check_name("table name", name)?;
    let text = name.value();
    if RESERVED_TABLE_NAMES
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(&text))
    {
        return Err(syn::Error::new(
            name.span(),
            format!("table name {text:?} is one of storekit's own tables"),
        ));
    }
    if let Some(reserved) = RESERVED_TABLE_PREFIXES.iter().find(|prefix| {
        text.get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    }) {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "table name {text:?} starts with {reserved:?}, which a backend keeps for itself"
            ),
        ));
    }
    Ok(())
}

/// The last segment of a type's path and its generic arguments' types, seen through
/// references: how the derive recognises `Option<..>` and `Vec<u8>` by their spelling.
fn last_segment(ty: &Type) -> Option<(&Ident, Vec<&Type>)> {
    match ty {
        Type::Reference(reference) => last_segment(&reference.elem),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let segment = path.path.segments.last()?;
            let args = match &segment.arguments {
                syn::PathArguments::AngleBracketed(args) => args
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        syn::GenericArgument::Type(t) => Some(t),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some((&segment.ident, args))
        }
        _ => None,
    }
}

fn is_option(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|(ident, _)| ident == "Option")
}

/// `Vec<u8>`, `Box<[u8]>`, or an `Option` of one.
fn is_bytes(ty: &Type) -> bool {
    let is_u8 = |t: &Type| last_segment(t).is_some_and(|(i, a)| i == "u8" && a.is_empty());
    match last_segment(ty) {
        Some((ident, args)) if ident == "Option" && args.len() == 1 => is_bytes(args[0]),
        Some((ident, args)) if ident == "Vec" && args.len() == 1 => is_u8(args[0]),
        Some((ident, args)) if ident == "Box" && args.len() == 1 => {
            matches!(args[0], Type::Slice(slice) if is_u8(&slice.elem))
        }
        _ => false,
    }
}

/// An index's name as the tail of a method's name: letters and digits kept, in lower case,
/// anything else `_`.
fn snake(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_all_follows_serde() {
        let span = Span::call_site();
        let rename = |rule| apply_rename_all(rule, "last_update_at", span).ok();
        assert_eq!(rename("camelCase").as_deref(), Some("lastUpdateAt"));
        assert_eq!(rename("PascalCase").as_deref(), Some("LastUpdateAt"));
        assert_eq!(rename("kebab-case").as_deref(), Some("last-update-at"));
        assert_eq!(
            rename("SCREAMING-KEBAB-CASE").as_deref(),
            Some("LAST-UPDATE-AT")
        );
        assert_eq!(rename("UPPERCASE").as_deref(), Some("LAST_UPDATE_AT"));
        assert_eq!(rename("lowercase").as_deref(), Some("last_update_at"));
        assert_eq!(rename("Title Case"), None);
    }

    #[test]
    fn names_and_suggestions() {
        assert_eq!(snake("product-name-index"), "product_name_index");
        assert_eq!(snake("By.Status"), "by_status");
        assert_eq!(distance("nmae", "name"), 2);
        assert_eq!(distance("", "id"), 2);
        assert_eq!(distance("status", "status"), 0);
    }
}
