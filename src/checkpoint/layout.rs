//! Structural layouts of checkpoint element types.
//!
//! A checkpoint manifest names its element type, but a type can keep its name and change its
//! layout: `struct Reading { delta: i32 }` becomes `struct Reading { delta: u32 }`, and
//! postcard, which writes neither names nor type tags, would then read the old bytes as
//! other values, or fail far from the cause. [`Layout::of`] traces the type's `Deserialize`
//! implementation with [`serde_reflection`] and renders what it finds as a canonical text
//! defined by this module. The manifest keeps that text; a later build that reopens the
//! checkpoint compares it with the layout of the type it asks for, and
//! [`first_difference`] says where the two part.
//!
//! # The text
//!
//! The text goes into files that must stay readable forever, so its grammar is defined here,
//! never by `serde_reflection`'s own `Debug` or serde forms, which may change between its
//! versions. A layout is the root type followed by the definition of each named container
//! (struct or enum) that it reaches, ordered by the bytes of their names:
//!
//! ```text
//! layout     = type *( "; " definition )
//! type       = primitive | name
//!            | "option<" type ">" | "seq<" type ">" | "map<" type ", " type ">"
//!            | tuple | "[" type "; " count "]"
//! tuple      = "()" | "(" type ",)" | "(" type 1*( ", " type ) ")"
//! primitive  = "unit" | "bool" | "i8" | "i16" | "i32" | "i64" | "i128"
//!            | "u8" | "u16" | "u32" | "u64" | "u128" | "f32" | "f64"
//!            | "char" | "str" | "bytes"
//! definition = "struct " name fields
//!            | "enum " name " {" [ " " variant *( ", " variant ) " " ] "}"
//! variant    = index " " name fields          ; index: 0, 1, 2, ... in order
//! fields     = ""                             ; unit struct or unit variant
//!            | "(" type ")"                   ; newtype
//!            | tuple                          ; tuple struct or tuple variant
//!            | " {}" | " { " name ": " type *( ", " name ": " type ) " }"
//! name       = identifier | quoted
//! ```
//!
//! For example, `(u64, Reading)` with `struct Reading { delta: i32, mode: Mode }` and
//! `enum Mode { Slow, Fast(u8) }` is
//! `(u64, Reading); enum Mode { 0 Slow, 1 Fast(u8) }; struct Reading { delta: i32, mode: Mode }`.
//!
//! - `count` and `index` are decimal, without leading zeros.
//! - An `identifier` is an ASCII letter or `_` followed by ASCII letters, digits and `_`.
//!   Any other name is `quoted`: between `"`, with `\"` for `"`, `\\` for `\`, and
//!   `\u{HEX}` (lower-case hex) for a control character (Unicode category Cc). A container
//!   name that is a primitive or `option`, `seq` or `map` is quoted as well, wherever it
//!   appears, so that a type position is never ambiguous.
//! - Names are serde's: a `#[serde(rename)]` changes the text, and a generic container
//!   appears under its bare name (`Wrapper`, not `Wrapper<u8>`).
//! - A tuple type whose elements all have the same type is written as an array
//!   (`(u64, u64)` is `[u64; 2]`), as serde-reflection normalizes it; postcard encodes the
//!   two alike. Tuple structs and tuple variants keep their fields (`struct P(u8, u8)`).
//! - `Box<T>`, `Arc<T>` and other transparent wrappers are written as `T`; `String` is
//!   `str`; `Vec<u8>` is `seq<u8>` (only `serde_bytes`-style types are `bytes`).
//!
//! # What is not traced
//!
//! [`Layout::of`] returns `None`, and the checkpoint is then checked by type name only, for:
//!
//! - types whose `Deserialize` needs a self-describing format (`deserialize_any`): untagged,
//!   internally or adjacently tagged enums, `#[serde(flatten)]`, `serde_json::Value`;
//! - types whose `Deserialize` fails or panics on the tracer's sample values (each integer
//!   is tried as 0, then as 1, so `NonZeroU64` traces);
//! - two different containers with the same serde name, including two instantiations of
//!   one generic type whose layouts differ (`(Pair<u8>, Pair<String>)`), two enums of one
//!   serde name from two Rust types (even with the same variants), and a generic enum used
//!   with two type arguments;
//! - fields with `#[serde(alias)]` (serde lists the alias as a field of its own);
//! - an enum whose first variant contains the enum itself (the tracer always explores the
//!   first variant first, so `enum Expr { Add(Box<Expr>, Box<Expr>), Lit(i64) }` never
//!   reaches a base case), and types nested more than `MAX_DEPTH` (96) levels deep;
//! - an enum reached only through an `Option`, a sequence or a map field of a struct that
//!   is itself inside another enum's variant (`enum Source { Local(Log) }` with
//!   `struct Log { modes: Vec<Mode> }`): serde-reflection explores such a field once, then
//!   cuts it short, so the enum's other variants are never seen. The same enum behind a
//!   struct's field outside enums (`Log` itself, `(u64, Log)`), as a direct field, in a
//!   tuple, or in another enum's first variant is traced (see "How it traces");
//! - an enum inside another enum's variant other than the first (`Result<u8, Mode>`):
//!   once the outer enum is complete, the tracer takes only its first variant, and the
//!   inner one is not met often enough to be explored to its end.
//!
//! And what a layout cannot say: a type whose serde form is a plain value traces as that
//! value. A `serde_repr` enum is its integer (`u8`), so renumbering or reordering its
//! variants' discriminants changes no layout, and old checkpoints read as the new numbers
//! say (and one where neither 0 nor 1 is a discriminant rejects both samples: no layout);
//! a `#[serde(from, into)]` type is the layout of its stand-in. Containers are told apart
//! by their Rust types, so two `#[serde(remote)]` definitions of one foreign type in one
//! element type (both deserialize as that type) are taken for one: the first met.
//!
//! Tracing never returns a partial layout: whatever serde-reflection leaves unresolved, and
//! every enum whose variants were not all seen, makes the whole layout `None`.
//!
//! # How it traces
//!
//! serde-reflection's tracer deserializes sample values (0 or 1, `false`, `""`, one
//! element per sequence, ...) and records which `Deserializer` methods the type calls, pass
//! after pass until every enum variant has been seen. A probe wrapped around the tracer's
//! deserializer bounds the nesting depth and records each enum met, so that the passes go
//! on until nested enums are complete too (the tracer alone completes only the root). The
//! tracer registers a struct's field formats under its name and, once they are known,
//! reads its `Option`, sequence and map fields as empty; so the probe gives each struct a
//! name of its own for each Rust type (two structs of one serde name are then both
//! explored, and told apart) and, outside enums, for each pass, and folds the names back
//! at the end, where one serde name with two different layouts is no layout. The
//! trace runs once per type and process, on a thread of its own with an 8 MiB stack,
//! inside `catch_unwind`; the result, `None` included, is cached by `TypeId`.

use std::any::TypeId;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde_reflection::{
    ContainerFormat, Format, FormatHolder, Named, Registry, Samples, Tracer, TracerConfig,
    VariantFormat,
};

/// A canonical, human-readable rendering of a type's serde layout, in the grammar of the
/// module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout(String);

impl Layout {
    /// The layout of `T`, or `None` when `T` cannot be traced (see the module
    /// documentation). Traced once per type and process, on a short-lived thread of its own;
    /// never panics, even when `T`'s `Deserialize` does.
    pub(crate) fn of<T: DeserializeOwned + 'static>() -> Option<Layout> {
        traced::<T>().map(|t| t.0)
    }

    /// A layout as read back from a manifest.
    pub(crate) fn from_text(text: String) -> Layout {
        Layout(text)
    }

    /// The canonical text.
    pub(crate) fn text(&self) -> &str {
        &self.0
    }
}

/// The fields `T`'s `Deserialize` reads for each struct and tuple struct (and struct or
/// tuple variant) it contains, by container name (names that two containers of different
/// fields share are left out). The encoder compares what a `Serialize` writes with these,
/// since postcard cannot tell a field left out (see `strict`).
///
/// `None` when the layout cannot be traced to the end (a struct with a field alias, a
/// validated field that rejects the tracer's samples, an untagged enum): the trace stopped
/// where it failed, so a container of the same name after that point (another module's
/// `Point`) was never met, and checking it against the one that was would refuse a type
/// that reads back. Such types are checked by the writer's round trip alone
/// (`Codec::encode_checked`).
pub(crate) fn field_counts_of<T: DeserializeOwned + 'static>() -> Option<Arc<FieldCounts>> {
    traced::<T>().map(|t| t.1)
}

/// The fields a struct, tuple struct or variant's `Deserialize` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadFields {
    /// How many.
    pub(crate) count: usize,
    /// Every name a struct or struct variant's `Deserialize` accepts, aliases included
    /// (each field's names together, fields in order): a field written under a name not
    /// among them is one it does not read.
    pub(crate) declared: Option<&'static [&'static str]>,
}

impl ReadFields {
    /// The names of the fields in the order they are read, when the declared names are
    /// exactly those (no alias among them: one name per field read).
    pub(crate) fn names(&self) -> Option<&'static [&'static str]> {
        self.declared.filter(|d| d.len() == self.count)
    }
}

/// Fields read per struct or tuple struct name, and per struct or tuple variant.
#[derive(Debug, Default)]
pub(crate) struct FieldCounts {
    containers: HashMap<&'static str, ReadFields>,
    /// By enum name, then by variant: its index (`#3`) or its name, as the trace met it.
    variants: HashMap<&'static str, HashMap<String, ReadFields>>,
    /// The variant names each enum's `Deserialize` declares, in the order of the indices
    /// it reads (aliases included), for enums whose name no other enum shares.
    enums: HashMap<&'static str, &'static [&'static str]>,
}

impl FieldCounts {
    /// Whether nothing is known.
    pub(crate) fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.variants.is_empty() && self.enums.is_empty()
    }

    /// The fields the struct or tuple struct `name` reads.
    pub(crate) fn container(&self, name: &str) -> Option<ReadFields> {
        self.containers.get(name).copied()
    }

    /// The variant names enum `name`'s `Deserialize` declares.
    pub(crate) fn enum_variants(&self, name: &str) -> Option<&'static [&'static str]> {
        self.enums.get(name).copied()
    }

    /// The fields variant `index` (`variant`) of enum `name` reads.
    pub(crate) fn variant(&self, name: &str, index: u32, variant: &str) -> Option<ReadFields> {
        let of_enum = self.variants.get(name)?;
        of_enum
            .get(variant)
            .or_else(|| of_enum.get(&format!("#{index}")))
            .copied()
    }
}

/// What a completed trace found: the layout and the fields read.
type Traced = (Layout, Arc<FieldCounts>);

/// The trace of `T`, once per type and process.
fn traced<T: DeserializeOwned + 'static>() -> Option<Traced> {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, Option<Traced>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let id = TypeId::of::<T>();
    let cached = cache.lock().get(&id).cloned();
    if let Some(layout) = cached {
        return layout;
    }
    // Traced without the lock: a `Deserialize` may itself ask for a layout. Two threads
    // that trace the same type at once compute the same text; the first one stored wins.
    // The trace runs on a thread of its own, with a known stack whatever the caller's
    // (a rayon worker's is 2 MiB); if no thread can be had, it is tried again next time.
    let worker = std::thread::Builder::new()
        .name("flintlock-layout".to_owned())
        .stack_size(TRACE_STACK)
        .spawn(|| std::panic::catch_unwind(trace::<T>).ok().flatten());
    let traced = worker.ok()?.join().unwrap_or(None);
    cache.lock().entry(id).or_insert(traced).clone()
}

/// Warns, once per type and process, that checkpoints of `type_name` (whose layout could
/// not be traced) are checked by type name only, and what that costs. Called where a
/// checkpoint of the type is written or opened; a subscriber that panics changes nothing.
pub(crate) fn warn_untraced(type_name: &str) {
    if first_time(type_name) {
        let _ = std::panic::catch_unwind(|| {
            tracing::warn!(
                element_type = type_name,
                "the serde layout of this element type cannot be traced (see \
                 flintlock::checkpoint::format), so its checkpoints are checked by type name \
                 only: a later build that changes the type but keeps its name would read them \
                 as other values, undetected; give the type (or its serde name) a new name \
                 when its layout changes"
            )
        });
    }
}

/// Warns, once per checkpoint folder and process, that the checkpoint at `path` records no
/// layout of its element type (a format-1 manifest, or a writer that could not trace the
/// type) while the reader's type has one: it is checked by type name only.
pub(crate) fn warn_unrecorded(type_name: &str, path: &std::path::Path) {
    if first_time(&format!("{:?}\0{type_name}", path.as_os_str())) {
        let _ = std::panic::catch_unwind(|| {
            tracing::warn!(
                element_type = type_name,
                path = %path.display(),
                "this checkpoint records no serde layout of its element type (an earlier \
                 format, or a writer that could not trace the type), so it is checked by type \
                 name only: if the type changed since it was written but kept its name, its \
                 records read as other values, undetected"
            )
        });
    }
}

/// Whether `key` is new to this process (each warning is given once per key).
fn first_time(key: &str) -> bool {
    static WARNED: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    let mut warned = WARNED.get_or_init(Default::default).lock();
    !warned.contains(key) && warned.insert(key.to_owned())
}

/// Describes the first difference between a layout written and one read, for an error
/// message: the place, in backticks, then what differs, as in
/// "`Reading.delta`: written as i32, read as u32" or "`Mode`: variant 2 `Fast` is new".
///
/// Places are Rust-like paths from the root type or from a named container: `.name` for a
/// field, `.1` for a position in a tuple, tuple struct or tuple variant, `::Name` for an enum
/// variant, `[_]` for the elements of a sequence or array, `[key]` and `[value]` for a map,
/// and `?` for the content of an option. The root type is compared first, then each
/// container in the order the comparison reaches it. A text that is not in this module's
/// grammar is compared as text.
pub(crate) fn first_difference(written: &Layout, read: &Layout) -> String {
    if written == read {
        return "nowhere: the layouts are equal".to_owned();
    }
    match (Parsed::parse(written.text()), Parsed::parse(read.text())) {
        (Some(w), Some(r)) => Diff::new(&w, &r)
            .run()
            .unwrap_or_else(|| text_difference(written.text(), read.text())),
        _ => text_difference(written.text(), read.text()),
    }
}

// ---------------------------------------------------------------------------------------
// Tracing
// ---------------------------------------------------------------------------------------

/// The most passes over a type while some enum still has variants to explore (one pass
/// explores one more variant of each enum it meets, by name and then by index).
const MAX_PASSES: usize = 4096;

/// The deepest nesting of `Deserializer` calls a trace follows. Real types stay far below;
/// the limit turns an unbounded recursion of the tracer into a `None` instead of a stack
/// overflow, which would abort the process.
const MAX_DEPTH: usize = 96;

/// The stack of the thread that traces: `MAX_DEPTH` levels of the tracer took between 0.5
/// and 0.75 MiB in a debug build (measured on x86-64 with rustc 1.95), less when optimized.
const TRACE_STACK: usize = 8 << 20;

/// Traces `T` with each integer sample in turn (a validated type may reject 0, another 1);
/// `None` when neither completes.
fn trace<T: DeserializeOwned>() -> Option<Traced> {
    trace_with::<T>(0).or_else(|| trace_with::<T>(1))
}

/// The tracer's settings: postcard is not human-readable (types such as `IpAddr` take
/// another form when it is), no sample values are recorded, and every integer reads as
/// `integer`.
fn tracer_config(integer: u8) -> TracerConfig {
    TracerConfig::default()
        .is_human_readable(false)
        .record_samples_for_newtype_structs(false)
        .record_samples_for_tuple_structs(false)
        .record_samples_for_structs(false)
        .default_u8_value(integer)
        .default_u16_value(integer.into())
        .default_u32_value(integer.into())
        .default_u64_value(integer.into())
        .default_u128_value(integer.into())
        .default_i8_value(integer as i8)
        .default_i16_value(integer.into())
        .default_i32_value(integer.into())
        .default_i64_value(integer.into())
        .default_i128_value(integer.into())
}

/// One trace of `T`, with every integer sample equal to `integer`.
///
/// Each pass explores one more variant of each enum it meets, first by name and then by
/// index; an enum stays marked incomplete in the tracer while it has variants left, and a
/// marked enum is not explored further. `Tracer::trace_type` clears the mark and repeats
/// the pass only while the *root* is an unfinished enum, so the enums inside a tuple or a
/// struct would stay incomplete. This loop clears the mark of every enum the pass met, and
/// repeats while a pass still made progress: an enum was marked, or an enum left
/// unfinished by an earlier pass was met again (a pass may skip an enum that is reached
/// through another enum's variants). An enum that is never met again stays unfinished, and
/// the trace fails.
fn trace_with<T: DeserializeOwned>(integer: u8) -> Option<Traced> {
    let probe = ProbeState::default();
    let layout = layout_with::<T>(&probe, integer)?;
    Some((layout, Arc::new(probe.field_counts())))
}

/// The passes of [`trace_with`]: the layout, when the trace completes.
fn layout_with<T: DeserializeOwned>(probe: &ProbeState, integer: u8) -> Option<Layout> {
    let samples = Samples::new();
    let mut tracer = Tracer::new(tracer_config(integer));
    let mut root: Option<Format> = None;
    let mut unfinished = BTreeSet::new();
    let mut finished = false;
    for pass in 0..MAX_PASSES {
        probe.pass.set(pass);
        let seed = Probe::new(PhantomData::<T>, probe);
        let (format, _value) = tracer.trace_type_once_with_seed(&samples, seed).ok()?;
        let format = probe.unrenamed(format)?;
        match &root {
            None => root = Some(format),
            Some(first) if *first == format => {}
            Some(_) => return None, // the root changed between passes
        }
        let mut progress = false;
        for name in probe.met.take() {
            let marked = tracer.check_incomplete_enum(name).is_some();
            progress |= marked || unfinished.contains(name);
            if marked {
                unfinished.insert(name);
            } else {
                unfinished.remove(name);
            }
        }
        if !progress {
            finished = unfinished.is_empty();
            break;
        }
    }
    if !finished || probe.conflict.get() {
        return None;
    }
    let registry = probe.merge_passes(tracer.registry().ok()?)?;
    let mut root = root?;
    // The registry's formats are normalized (tuples of one type become arrays); the root
    // is only reduced. Normalizing also fails on anything still unknown.
    root.normalize().ok()?;
    let parsed = Parsed::from_trace(&root, &registry, &probe.enums.borrow())?;
    Some(Layout(parsed.to_string()))
}

/// What the probe learns while the tracer runs.
#[derive(Default)]
struct ProbeState {
    /// The current nesting depth of `Deserializer` calls.
    depth: Cell<usize>,
    /// Each enum met, with the variant names its `Deserialize` declares.
    enums: RefCell<BTreeMap<&'static str, &'static [&'static str]>>,
    /// The enums met since this set was last taken (by each pass).
    met: RefCell<BTreeSet<&'static str>>,
    /// Two enums of one name declared different variants.
    conflict: Cell<bool>,
    /// The names of such enums.
    conflicting_enums: RefCell<BTreeSet<&'static str>>,
    /// The Rust type each enum name was first met as: two types of one serde name are two
    /// enums, even with the same variant names (the tracer would explore one and take its
    /// variants for the other's).
    enum_types: RefCell<HashMap<&'static str, TypeId>>,
    /// The fields each struct declared when it was met, before it was read: a struct of
    /// the same name declaring others is another struct (of another module), and neither
    /// is checked by name.
    declared: RefCell<HashMap<&'static str, &'static [&'static str]>>,
    /// The fields read for each struct and tuple struct, by name.
    containers: RefCell<HashMap<&'static str, ReadFields>>,
    /// Container names met with different fields.
    uneven: RefCell<BTreeSet<&'static str>>,
    /// The enums being deserialized, innermost last.
    enums_open: RefCell<Vec<&'static str>>,
    /// Set while an enum's variant identifier is read: the next integer or string visited
    /// is the variant.
    reading_variant: Cell<bool>,
    /// The variant just read (`#index` or its name).
    variant: RefCell<Option<String>>,
    /// The fields read for each struct and tuple variant, by (enum, variant).
    variant_fields: RefCell<BTreeMap<(&'static str, String), ReadFields>>,
    /// The fields read so far by each struct visitor being run, innermost last.
    seq_counts: RefCell<Vec<usize>>,
    /// Variants met with different fields.
    uneven_variants: RefCell<BTreeSet<(&'static str, String)>>,
    /// The pass being run (from 0).
    pass: Cell<usize>,
    /// The names each struct was given in the tracer's registry, one per pass
    /// ([`ProbeState::pass_name`]), with the struct's own name.
    renamed: RefCell<HashMap<&'static str, &'static str>>,
}

impl ProbeState {
    /// The fields read per container and variant, leaving out those met with different
    /// fields. Complete when the trace completed; otherwise what the passes that ran saw
    /// (each count is from a visitor that read its fields successfully).
    fn field_counts(&self) -> FieldCounts {
        let mut containers = self.containers.take();
        for name in self.uneven.take() {
            containers.remove(name);
        }
        let mut variants: HashMap<&'static str, HashMap<String, ReadFields>> = HashMap::new();
        for ((name, variant), n) in self.variant_fields.take() {
            variants.entry(name).or_default().insert(variant, n);
        }
        for (name, variant) in self.uneven_variants.take() {
            if let Some(v) = variants.get_mut(name) {
                v.remove(&variant);
            }
        }
        let mut enums: HashMap<_, _> = self.enums.take().into_iter().collect();
        for name in self.conflicting_enums.take() {
            enums.remove(name);
        }
        FieldCounts {
            containers,
            variants,
            enums,
        }
    }

    /// The name under which the tracer registers the struct `name`, of the Rust type
    /// `rust`, in this pass.
    ///
    /// serde-reflection registers each struct's field formats under its name and, once a
    /// field's format is known, cuts the field short: an `Option` reads as `None`, a
    /// sequence or map as empty. Two things would go unseen:
    ///
    /// - A second struct of the same serde name (another module's `Log { modes: Vec<u8> }`)
    ///   would read its `modes` as empty, and pass for the first. So each Rust type is
    ///   registered under a name of its own.
    /// - An enum reached only through such a field (`struct Log { modes: Vec<Mode> }`)
    ///   would never be met again after the first pass, and its other variants never
    ///   explored. So outside enums each pass registers a struct under a name of its own
    ///   that the tracer has not seen, and each pass explores every field. Inside an enum's
    ///   variant the name stays the same from one pass to the next: the enum keeps the
    ///   formats of the variants it has seen, across passes, and they must name the same
    ///   container.
    ///
    /// [`ProbeState::merge_passes`] folds the names back, refusing two different formats
    /// for one serde name.
    fn pass_name(&self, name: &'static str, rust: TypeId) -> &'static str {
        let pass = self.enums_open.borrow().is_empty().then(|| self.pass.get());
        type Key = (&'static str, TypeId, Option<usize>);
        static NAMES: OnceLock<Mutex<HashMap<Key, &'static str>>> = OnceLock::new();
        let mut names = NAMES.get_or_init(Default::default).lock();
        let n = names.len();
        // Leaked once per struct, type and pass in the process, as a `Deserializer` takes
        // only `&'static str` names. The NUL keeps it apart from any name in the type.
        let renamed = *names
            .entry((name, rust, pass))
            .or_insert_with(|| Box::leak(format!("{name}\0{n}").into_boxed_str()));
        drop(names);
        self.renamed.borrow_mut().insert(renamed, name);
        renamed
    }

    /// `format` with every pass name ([`ProbeState::pass_name`]) back to the struct's
    /// own; `None` if it still holds a variable that is unknown.
    fn unrenamed(&self, mut format: Format) -> Option<Format> {
        format.reduce();
        self.unrename(&mut format)?;
        Some(format)
    }

    /// Renames, in place, every pass name that `holder` refers to.
    fn unrename(&self, holder: &mut impl FormatHolder) -> Option<()> {
        let renamed = self.renamed.borrow();
        holder
            .visit_mut(&mut |format| {
                if let Format::TypeName(name) = format
                    && let Some(own) = renamed.get(name.as_str())
                {
                    *name = (*own).to_owned();
                }
                Ok(())
            })
            .ok()
    }

    /// The registry of a completed trace, with each struct registered under its own name
    /// once: `None` if two passes, or a pass and a variant, found different formats for
    /// one name (two structs of one name, or a `Deserialize` that reads differently from
    /// one pass to the next).
    fn merge_passes(&self, registry: Registry) -> Option<Registry> {
        let mut merged = Registry::new();
        for (name, mut container) in registry {
            self.unrename(&mut container)?;
            // Normalized again with the names folded back: `(Id, Id)` of two Rust types
            // is `[Id; 2]`, as it was before the renaming.
            container.normalize().ok()?;
            let name = match self.renamed.borrow().get(name.as_str()) {
                Some(own) => (*own).to_owned(),
                None => name,
            };
            match merged.entry(name) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(container);
                }
                std::collections::btree_map::Entry::Occupied(known) => {
                    if *known.get() != container {
                        return None;
                    }
                }
            }
        }
        Some(merged)
    }

    /// Enters one more level of nesting, or fails past [`MAX_DEPTH`].
    fn enter<E: de::Error>(&self) -> Result<DepthGuard<'_>, E> {
        let depth = self.depth.get() + 1;
        if depth > MAX_DEPTH {
            return Err(E::custom("the type nests too deeply to be traced"));
        }
        self.depth.set(depth);
        Ok(DepthGuard(&self.depth))
    }

    /// Records the fields a struct declares as it is met (before it is read, so that a
    /// trace that fails while reading it still knows it).
    fn saw_declared(&self, name: &'static str, fields: &'static [&'static str]) {
        let first = *self.declared.borrow_mut().entry(name).or_insert(fields);
        if first != fields {
            self.uneven.borrow_mut().insert(name);
        }
    }

    /// Records the fields a struct or tuple struct reads.
    fn saw_container(&self, name: &'static str, fields: ReadFields) {
        let first = *self.containers.borrow_mut().entry(name).or_insert(fields);
        if first != fields {
            self.uneven.borrow_mut().insert(name);
        }
    }

    /// Records the variant identifier just read, if one is being read.
    fn saw_identifier(&self, id: impl FnOnce() -> String) {
        if self.reading_variant.get() {
            self.reading_variant.set(false);
            *self.variant.borrow_mut() = Some(id());
        }
    }

    /// The enum being read and the variant just read (`#index` or its name), once.
    fn variant_key(&self) -> Option<(&'static str, String)> {
        let name = self.enums_open.borrow().last().copied()?;
        let variant = self.variant.borrow_mut().take()?;
        Some((name, variant))
    }

    /// Records the fields a variant reads.
    fn saw_variant_fields(&self, key: (&'static str, String), fields: ReadFields) {
        let first = *self
            .variant_fields
            .borrow_mut()
            .entry(key.clone())
            .or_insert(fields);
        if first != fields {
            self.uneven_variants.borrow_mut().insert(key);
        }
    }

    /// Records an enum, its Rust type and its declared variants.
    fn saw_enum(&self, name: &'static str, rust: TypeId, variants: &'static [&'static str]) {
        self.met.borrow_mut().insert(name);
        let first = *self.enums.borrow_mut().entry(name).or_insert(variants);
        let first_type = *self.enum_types.borrow_mut().entry(name).or_insert(rust);
        if first != variants || first_type != rust {
            self.conflict.set(true);
            self.conflicting_enums.borrow_mut().insert(name);
        }
    }
}

/// Leaves a level of nesting when dropped.
struct DepthGuard<'s>(&'s Cell<usize>);

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Wraps every deserializer, visitor, seed and access object that passes between the
/// tracer and the traced type, so that each nested `Deserializer` call goes through the
/// probe: it bounds the depth and records the enums (with their declared variants), which
/// serde-reflection does not expose. Everything else is forwarded unchanged.
struct Probe<'s, X> {
    inner: X,
    state: &'s ProbeState,
    /// For the visitor of a struct or struct variant: what its `visit_seq` reads is
    /// counted and recorded when it succeeds.
    reads: Option<Reads>,
    /// For the `SeqAccess` of such a struct: each element read counts.
    counting: bool,
}

/// A struct or struct variant whose fields are counted as its visitor reads them.
#[derive(Clone)]
enum Reads {
    Struct(&'static str, &'static [&'static str]),
    /// The enum and variant (as [`ProbeState::variant_key`] gives them) and the names.
    Variant((&'static str, String), &'static [&'static str]),
}

impl<'s, X> Probe<'s, X> {
    /// Wraps `inner`.
    fn new(inner: X, state: &'s ProbeState) -> Self {
        Probe {
            inner,
            state,
            reads: None,
            counting: false,
        }
    }

    /// Wraps another object with the same state.
    fn wrap<Y>(&self, inner: Y) -> Probe<'s, Y> {
        Probe::new(inner, self.state)
    }
}

/// Forwards `Deserializer` methods, one level deeper, with the visitor wrapped.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, X::Error> {
            let _depth = self.state.enter()?;
            let visitor = self.wrap(visitor);
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, X: de::Deserializer<'de>> de::Deserializer<'de> for Probe<'_, X> {
    type Error = X::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_map();
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, X::Error> {
        let _depth = self.state.enter()?;
        self.state.saw_container(
            name,
            ReadFields {
                count: len,
                declared: None,
            },
        );
        let visitor = self.wrap(visitor);
        let name = self.state.pass_name(name, typeid::of::<V::Value>());
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, X::Error> {
        let _depth = self.state.enter()?;
        let visitor = self.wrap(visitor);
        let name = self.state.pass_name(name, typeid::of::<V::Value>());
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, X::Error> {
        let _depth = self.state.enter()?;
        self.state.saw_declared(name, fields);
        let visitor = Probe {
            reads: Some(Reads::Struct(name, fields)),
            ..self.wrap(visitor)
        };
        let name = self.state.pass_name(name, typeid::of::<V::Value>());
        self.inner.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, X::Error> {
        let _depth = self.state.enter()?;
        self.state
            .saw_enum(name, typeid::of::<V::Value>(), variants);
        let visitor = self.wrap(visitor);
        self.state.enums_open.borrow_mut().push(name);
        let out = self.inner.deserialize_enum(name, variants, visitor);
        self.state.enums_open.borrow_mut().pop();
        out
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forwards `Visitor` methods that take a plain value.
macro_rules! forward_visit {
    ($($method:ident: $ty:ty;)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<X::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, X: Visitor<'de>> Visitor<'de> for Probe<'_, X> {
    type Value = X::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool: bool;
        visit_i8: i8;
        visit_i16: i16;
        visit_i32: i32;
        visit_i64: i64;
        visit_i128: i128;
        visit_u8: u8;
        visit_u16: u16;

        visit_u128: u128;
        visit_f32: f32;
        visit_f64: f64;
        visit_char: char;

        visit_bytes: &[u8];
        visit_borrowed_bytes: &'de [u8];
        visit_byte_buf: Vec<u8>;
    }

    // Integers and strings may be an enum's variant identifier: recorded when one is read.
    fn visit_u32<E: de::Error>(self, v: u32) -> Result<X::Value, E> {
        self.state.saw_identifier(|| format!("#{v}"));
        self.inner.visit_u32(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<X::Value, E> {
        self.state.saw_identifier(|| format!("#{v}"));
        self.inner.visit_u64(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<X::Value, E> {
        self.state.saw_identifier(|| v.to_string());
        self.inner.visit_str(v)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<X::Value, E> {
        self.state.saw_identifier(|| v.to_string());
        self.inner.visit_borrowed_str(v)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<X::Value, E> {
        self.state.saw_identifier(|| v.clone());
        self.inner.visit_string(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<X::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<X::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<X::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.visit_some(d)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<X::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.visit_newtype_struct(d)
    }

    /// For a struct or struct variant, counts the fields its visitor reads and records
    /// them once it succeeds: with their names when it read every name it declared (a
    /// declared name that is not read is an alias; then only the count is known).
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<X::Value, A::Error> {
        let Some(reads) = self.reads.clone() else {
            let seq = self.wrap(seq);
            return self.inner.visit_seq(seq);
        };
        self.state.seq_counts.borrow_mut().push(0);
        let seq = Probe {
            counting: true,
            ..self.wrap(seq)
        };
        let out = self.inner.visit_seq(seq);
        let count = self.state.seq_counts.borrow_mut().pop().unwrap_or(0);
        if out.is_ok() {
            let fields = |declared: &'static [&'static str]| ReadFields {
                count,
                declared: Some(declared),
            };
            match reads {
                Reads::Struct(name, declared) => self.state.saw_container(name, fields(declared)),
                Reads::Variant(key, declared) => {
                    self.state.saw_variant_fields(key, fields(declared))
                }
            }
        }
        out
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<X::Value, A::Error> {
        let map = self.wrap(map);
        self.inner.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<X::Value, A::Error> {
        let data = self.wrap(data);
        self.inner.visit_enum(data)
    }
}

impl<'de, X: DeserializeSeed<'de>> DeserializeSeed<'de> for Probe<'_, X> {
    type Value = X::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<X::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.deserialize(d)
    }
}

impl<'de, X: de::SeqAccess<'de>> de::SeqAccess<'de> for Probe<'_, X> {
    type Error = X::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, X::Error> {
        let seed = self.wrap(seed);
        let element = self.inner.next_element_seed(seed)?;
        if self.counting
            && element.is_some()
            && let Some(n) = self.state.seq_counts.borrow_mut().last_mut()
        {
            *n += 1;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, X: de::MapAccess<'de>> de::MapAccess<'de> for Probe<'_, X> {
    type Error = X::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, X::Error> {
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, X::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 's, X: de::EnumAccess<'de>> de::EnumAccess<'de> for Probe<'s, X> {
    type Error = X::Error;
    type Variant = Probe<'s, X::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), X::Error> {
        // The variant's identifier comes from a plain `u32` or `&str` deserializer: read
        // through the probe, so the variant's field count can be recorded under it.
        self.state.reading_variant.set(true);
        let seed = Probe::new(seed, self.state);
        let read = self.inner.variant_seed(seed);
        self.state.reading_variant.set(false);
        let (value, variant) = read?;
        Ok((value, Probe::new(variant, self.state)))
    }
}

impl<'de, X: de::VariantAccess<'de>> de::VariantAccess<'de> for Probe<'_, X> {
    type Error = X::Error;

    fn unit_variant(self) -> Result<(), X::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, X::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, X::Error> {
        if let Some(key) = self.state.variant_key() {
            self.state.saw_variant_fields(
                key,
                ReadFields {
                    count: len,
                    declared: None,
                },
            );
        }
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, X::Error> {
        let reads = self
            .state
            .variant_key()
            .map(|key| Reads::Variant(key, fields));
        let visitor = Probe {
            reads,
            ..self.wrap(visitor)
        };
        self.inner.struct_variant(fields, visitor)
    }
}

// ---------------------------------------------------------------------------------------
// The layout's structure
// ---------------------------------------------------------------------------------------

/// The primitive types, as written.
const PRIMITIVES: [&str; 17] = [
    "unit", "bool", "i8", "i16", "i32", "i64", "i128", "u8", "u16", "u32", "u64", "u128", "f32",
    "f64", "char", "str", "bytes",
];

/// The words that start a composite type.
const COMPOSITES: [&str; 3] = ["option", "seq", "map"];

/// The deepest type nesting that [`Parsed::parse`] reads (a traced layout is shallower).
const MAX_PARSE_DEPTH: usize = 2 * MAX_DEPTH;

/// A type.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ty {
    /// One of [`PRIMITIVES`].
    Prim(&'static str),
    /// A named container, defined in [`Parsed::defs`].
    Named(String),
    /// `option<T>`.
    Option(Box<Ty>),
    /// `seq<T>`.
    Seq(Box<Ty>),
    /// `map<K, V>`.
    Map(Box<Ty>, Box<Ty>),
    /// `(A, B, ...)`.
    Tuple(Vec<Ty>),
    /// `[T; N]`.
    Array(Box<Ty>, usize),
}

/// The fields of a struct or of an enum variant.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fields {
    /// None: `struct N`, `0 A`.
    Unit,
    /// One, unnamed: `struct N(T)`.
    Newtype(Ty),
    /// Any number, unnamed: `struct N(A, B)`.
    Tuple(Vec<Ty>),
    /// Any number, named: `struct N { a: A }`.
    Named(Vec<(String, Ty)>),
}

/// A named container's definition.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Body {
    /// A struct.
    Struct(Fields),
    /// An enum: its variants' names and fields, in index order.
    Enum(Vec<(String, Fields)>),
}

/// A layout's structure: the root type and the definition of each container it reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Parsed {
    root: Ty,
    defs: BTreeMap<String, Body>,
}

impl Ty {
    /// Converts a traced format; `None` for anything unresolved.
    fn from_format(format: &Format) -> Option<Ty> {
        let boxed = |format: &Format| Ty::from_format(format).map(Box::new);
        Some(match format {
            Format::Variable(_) => return None,
            Format::TypeName(name) => Ty::Named(name.clone()),
            Format::Unit => Ty::Prim("unit"),
            Format::Bool => Ty::Prim("bool"),
            Format::I8 => Ty::Prim("i8"),
            Format::I16 => Ty::Prim("i16"),
            Format::I32 => Ty::Prim("i32"),
            Format::I64 => Ty::Prim("i64"),
            Format::I128 => Ty::Prim("i128"),
            Format::U8 => Ty::Prim("u8"),
            Format::U16 => Ty::Prim("u16"),
            Format::U32 => Ty::Prim("u32"),
            Format::U64 => Ty::Prim("u64"),
            Format::U128 => Ty::Prim("u128"),
            Format::F32 => Ty::Prim("f32"),
            Format::F64 => Ty::Prim("f64"),
            Format::Char => Ty::Prim("char"),
            Format::Str => Ty::Prim("str"),
            Format::Bytes => Ty::Prim("bytes"),
            Format::Option(inner) => Ty::Option(boxed(inner)?),
            Format::Seq(inner) => Ty::Seq(boxed(inner)?),
            Format::Map { key, value } => Ty::Map(boxed(key)?, boxed(value)?),
            Format::Tuple(items) => Ty::Tuple(Ty::from_formats(items)?),
            Format::TupleArray { content, size } => Ty::Array(boxed(content)?, *size),
        })
    }

    /// Converts a list of traced formats.
    fn from_formats(formats: &[Format]) -> Option<Vec<Ty>> {
        formats.iter().map(Ty::from_format).collect()
    }

    /// Calls `f` with the name of each container this type refers to.
    fn for_each_name<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Ty::Prim(_) => {}
            Ty::Named(name) => f(name),
            Ty::Option(inner) | Ty::Seq(inner) | Ty::Array(inner, _) => inner.for_each_name(f),
            Ty::Map(key, value) => {
                key.for_each_name(f);
                value.for_each_name(f);
            }
            Ty::Tuple(items) => items.iter().for_each(|item| item.for_each_name(f)),
        }
    }
}

impl Fields {
    /// Converts a traced variant; `None` for anything unresolved.
    fn from_variant(variant: &VariantFormat) -> Option<Fields> {
        Some(match variant {
            VariantFormat::Variable(_) => return None,
            VariantFormat::Unit => Fields::Unit,
            VariantFormat::NewType(inner) => Fields::Newtype(Ty::from_format(inner)?),
            VariantFormat::Tuple(items) => Fields::Tuple(Ty::from_formats(items)?),
            VariantFormat::Struct(fields) => Fields::from_named(fields)?,
        })
    }

    /// Converts traced named fields.
    fn from_named(fields: &[Named<Format>]) -> Option<Fields> {
        let fields = fields
            .iter()
            .map(|Named { name, value }| Ty::from_format(value).map(|ty| (name.clone(), ty)));
        fields.collect::<Option<_>>().map(Fields::Named)
    }

    /// Calls `f` with the name of each container the fields refer to.
    fn for_each_name<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Fields::Unit => {}
            Fields::Newtype(ty) => ty.for_each_name(f),
            Fields::Tuple(items) => items.iter().for_each(|ty| ty.for_each_name(f)),
            Fields::Named(fields) => fields.iter().for_each(|(_, ty)| ty.for_each_name(f)),
        }
    }
}

impl Body {
    /// Converts a traced container. An enum must have exactly the indices 0, 1, 2, ...
    /// (serde-reflection keeps a variant it has not matched to an index yet under a
    /// provisional one near `u32::MAX`), each named among the variants its `Deserialize`
    /// declared (which include aliases, so there may be more of those).
    fn from_container(
        name: &str,
        container: &ContainerFormat,
        enums: &BTreeMap<&str, &[&str]>,
    ) -> Option<Body> {
        Some(match container {
            ContainerFormat::UnitStruct => Body::Struct(Fields::Unit),
            ContainerFormat::NewTypeStruct(inner) => {
                Body::Struct(Fields::Newtype(Ty::from_format(inner)?))
            }
            ContainerFormat::TupleStruct(items) => {
                Body::Struct(Fields::Tuple(Ty::from_formats(items)?))
            }
            ContainerFormat::Struct(fields) => Body::Struct(Fields::from_named(fields)?),
            ContainerFormat::Enum(variants) => {
                let declared = enums.get(name)?;
                if variants.is_empty() || variants.len() > declared.len() {
                    return None;
                }
                let mut out = Vec::with_capacity(variants.len());
                for (position, (&index, Named { name, value })) in variants.iter().enumerate() {
                    if usize::try_from(index).ok()? != position || !declared.contains(&&**name) {
                        return None;
                    }
                    out.push((name.clone(), Fields::from_variant(value)?));
                }
                Body::Enum(out)
            }
        })
    }

    /// Calls `f` with the name of each container the definition refers to.
    fn for_each_name<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Body::Struct(fields) => fields.for_each_name(f),
            Body::Enum(variants) => variants.iter().for_each(|(_, v)| v.for_each_name(f)),
        }
    }
}

impl Parsed {
    /// Builds the structure of a trace: the root and the containers it reaches, each of
    /// which must be in the registry.
    fn from_trace(
        root: &Format,
        registry: &Registry,
        enums: &BTreeMap<&str, &[&str]>,
    ) -> Option<Parsed> {
        let root = Ty::from_format(root)?;
        let mut pending = Vec::new();
        root.for_each_name(&mut |name| pending.push(name.to_owned()));
        let mut defs = BTreeMap::new();
        while let Some(name) = pending.pop() {
            if defs.contains_key(&name) {
                continue;
            }
            let body = Body::from_container(&name, registry.get(&name)?, enums)?;
            body.for_each_name(&mut |name| pending.push(name.to_owned()));
            defs.insert(name, body);
        }
        Some(Parsed { root, defs })
    }

    /// Reads a text in the grammar of the module documentation: `None` unless the text is
    /// exactly the canonical rendering of a layout that defines each container it reaches,
    /// and only those.
    fn parse(text: &str) -> Option<Parsed> {
        let mut parser = Parser {
            rest: text,
            depth: 0,
        };
        let root = parser.ty()?;
        let mut defs = BTreeMap::new();
        while parser.eat("; ") {
            let (name, body) = parser.definition()?;
            if defs.insert(name, body).is_some() {
                return None;
            }
        }
        if !parser.rest.is_empty() {
            return None;
        }
        let parsed = Parsed { root, defs };
        let closed = parsed.reachable()? == parsed.defs.keys().map(String::as_str).collect();
        (closed && parsed.to_string() == text).then_some(parsed)
    }

    /// The containers reachable from the root, or `None` if one is not defined.
    fn reachable(&self) -> Option<BTreeSet<&str>> {
        let mut pending = Vec::new();
        self.root.for_each_name(&mut |name| pending.push(name));
        let mut seen = BTreeSet::new();
        while let Some(name) = pending.pop() {
            if seen.insert(name) {
                self.defs.get(name)?.for_each_name(&mut |n| pending.push(n));
            }
        }
        Some(seen)
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// Whether a name is written bare.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A name as written: `container` names are also quoted when they are a keyword of types.
struct Name<'a> {
    name: &'a str,
    container: bool,
}

impl<'a> Name<'a> {
    /// A container's name.
    fn container(name: &'a str) -> Self {
        Name {
            name,
            container: true,
        }
    }

    /// A field's or variant's name.
    fn member(name: &'a str) -> Self {
        Name {
            name,
            container: false,
        }
    }
}

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keyword = PRIMITIVES.contains(&self.name) || COMPOSITES.contains(&self.name);
        if is_identifier(self.name) && !(self.container && keyword) {
            return f.write_str(self.name);
        }
        f.write_char('"')?;
        for c in self.name.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// Writes `(A, B)`, `(A,)` or `()`.
fn write_tuple(f: &mut fmt::Formatter<'_>, items: &[Ty]) -> fmt::Result {
    f.write_char('(')?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(if items.len() == 1 { ",)" } else { ")" })
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Prim(name) => f.write_str(name),
            Ty::Named(name) => write!(f, "{}", Name::container(name)),
            Ty::Option(inner) => write!(f, "option<{inner}>"),
            Ty::Seq(inner) => write!(f, "seq<{inner}>"),
            Ty::Map(key, value) => write!(f, "map<{key}, {value}>"),
            Ty::Tuple(items) => write_tuple(f, items),
            Ty::Array(inner, len) => write!(f, "[{inner}; {len}]"),
        }
    }
}

impl fmt::Display for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fields::Unit => Ok(()),
            Fields::Newtype(inner) => write!(f, "({inner})"),
            Fields::Tuple(items) => write_tuple(f, items),
            Fields::Named(fields) if fields.is_empty() => f.write_str(" {}"),
            Fields::Named(fields) => {
                f.write_str(" { ")?;
                for (i, (name, ty)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {ty}", Name::member(name))?;
                }
                f.write_str(" }")
            }
        }
    }
}

impl fmt::Display for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)?;
        for (name, body) in &self.defs {
            let name = Name::container(name);
            match body {
                Body::Struct(fields) => write!(f, "; struct {name}{fields}")?,
                Body::Enum(variants) if variants.is_empty() => write!(f, "; enum {name} {{}}")?,
                Body::Enum(variants) => {
                    write!(f, "; enum {name} {{ ")?;
                    for (index, (variant, fields)) in variants.iter().enumerate() {
                        if index > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{index} {}{fields}", Name::member(variant))?;
                    }
                    f.write_str(" }")?;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// A recursive-descent reader of the grammar; [`Parsed::parse`] checks the result is
/// canonical, so the reader may accept a little more than the grammar.
struct Parser<'a> {
    rest: &'a str,
    depth: usize,
}

impl<'a> Parser<'a> {
    /// Consumes `token` if the text continues with it.
    fn eat(&mut self, token: &str) -> bool {
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// Consumes `token`, or fails.
    fn expect(&mut self, token: &str) -> Option<()> {
        self.eat(token).then_some(())
    }

    /// Consumes a run of ASCII letters, digits and `_`.
    fn word(&mut self) -> Option<&'a str> {
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        (!word.is_empty()).then_some(word)
    }

    /// Consumes a decimal number.
    fn number(&mut self) -> Option<usize> {
        let end = self
            .rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.rest.len());
        let (digits, rest) = self.rest.split_at(end);
        self.rest = rest;
        digits.parse().ok()
    }

    /// Consumes a name, bare or quoted.
    fn name(&mut self) -> Option<String> {
        if !self.rest.starts_with('"') {
            return self.word().map(str::to_owned);
        }
        let mut name = String::new();
        let mut chars = self.rest[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[1 + i + 1..];
                    return Some(name);
                }
                '\\' => match chars.next()?.1 {
                    'u' => {
                        if chars.next()?.1 != '{' {
                            return None;
                        }
                        let mut code = 0u32;
                        loop {
                            match chars.next()?.1 {
                                '}' => break,
                                digit => {
                                    code = code.checked_mul(16)?.checked_add(digit.to_digit(16)?)?
                                }
                            }
                        }
                        name.push(char::from_u32(code)?);
                    }
                    escaped @ ('"' | '\\') => name.push(escaped),
                    _ => return None,
                },
                c => name.push(c),
            }
        }
        None
    }

    /// Consumes a type.
    fn ty(&mut self) -> Option<Ty> {
        self.depth += 1;
        if self.depth > MAX_PARSE_DEPTH {
            return None;
        }
        let ty = self.ty_here();
        self.depth -= 1;
        ty
    }

    /// Consumes a type, at the current depth.
    fn ty_here(&mut self) -> Option<Ty> {
        if self.eat("(") {
            return self.items().map(|(items, _)| Ty::Tuple(items));
        }
        if self.eat("[") {
            let inner = Box::new(self.ty()?);
            self.expect("; ")?;
            let len = self.number()?;
            self.expect("]")?;
            return Some(Ty::Array(inner, len));
        }
        if self.rest.starts_with('"') {
            return self.name().map(Ty::Named);
        }
        let word = self.word()?;
        let composite = COMPOSITES.contains(&word);
        if composite {
            self.expect("<")?;
        }
        let ty = match word {
            "option" => Ty::Option(Box::new(self.ty()?)),
            "seq" => Ty::Seq(Box::new(self.ty()?)),
            "map" => {
                let key = Box::new(self.ty()?);
                self.expect(", ")?;
                Ty::Map(key, Box::new(self.ty()?))
            }
            _ => match PRIMITIVES.iter().find(|&&p| p == word) {
                Some(primitive) => Ty::Prim(primitive),
                None => Ty::Named(word.to_owned()),
            },
        };
        if composite {
            self.expect(">")?;
        }
        Some(ty)
    }

    /// Consumes the rest of a parenthesized list of types, after its `(`; tells whether
    /// it ended with `,)`.
    fn items(&mut self) -> Option<(Vec<Ty>, bool)> {
        let mut items = Vec::new();
        if self.eat(")") {
            return Some((items, false));
        }
        loop {
            items.push(self.ty()?);
            if self.eat(")") {
                return Some((items, false));
            }
            if self.eat(",)") {
                return Some((items, true));
            }
            self.expect(", ")?;
        }
    }

    /// Consumes the fields of a struct or variant (possibly none).
    fn fields(&mut self) -> Option<Fields> {
        if self.eat("(") {
            let (mut items, trailing_comma) = self.items()?;
            return Some(match items.pop() {
                Some(only) if items.is_empty() && !trailing_comma => Fields::Newtype(only),
                Some(last) => {
                    items.push(last);
                    Fields::Tuple(items)
                }
                None => Fields::Tuple(items),
            });
        }
        if !self.eat(" {") {
            return Some(Fields::Unit);
        }
        let mut fields = Vec::new();
        if self.eat("}") {
            return Some(Fields::Named(fields));
        }
        self.expect(" ")?;
        loop {
            let name = self.name()?;
            self.expect(": ")?;
            fields.push((name, self.ty()?));
            if self.eat(" }") {
                return Some(Fields::Named(fields));
            }
            self.expect(", ")?;
        }
    }

    /// Consumes a container's definition.
    fn definition(&mut self) -> Option<(String, Body)> {
        if self.eat("struct ") {
            let name = self.name()?;
            return Some((name, Body::Struct(self.fields()?)));
        }
        self.expect("enum ")?;
        let name = self.name()?;
        self.expect(" {")?;
        let mut variants = Vec::new();
        if !self.eat("}") {
            self.expect(" ")?;
            loop {
                if self.number()? != variants.len() {
                    return None;
                }
                self.expect(" ")?;
                let variant = self.name()?;
                variants.push((variant, self.fields()?));
                if self.eat(" }") {
                    break;
                }
                self.expect(", ")?;
            }
        }
        Some((name, Body::Enum(variants)))
    }
}

// ---------------------------------------------------------------------------------------
// Differences
// ---------------------------------------------------------------------------------------

/// The longest rendering of a type that a difference quotes in full.
const MAX_QUOTE: usize = 60;

/// A rendering, cut to [`MAX_QUOTE`] characters.
fn quote(rendering: impl fmt::Display) -> String {
    let text = rendering.to_string();
    if text.chars().count() <= MAX_QUOTE {
        return text;
    }
    let cut: String = text.chars().take(MAX_QUOTE - 3).collect();
    cut + "..."
}

/// The first difference between two texts, as text: for texts outside the grammar.
fn text_difference(written: &str, read: &str) -> String {
    let at = written
        .char_indices()
        .zip(read.chars())
        .find(|&((_, w), r)| w != r)
        .map_or(written.len().min(read.len()), |((i, _), _)| i);
    let excerpt = |text: &str| match &text[at..] {
        "" => "(end)".to_owned(),
        rest => format!("`{}`", quote(rest)),
    };
    format!(
        "character {} of the layout text: written {}, read {}",
        written[..at].chars().count(),
        excerpt(written),
        excerpt(read)
    )
}

/// A walk over two layouts, in step, to their first difference.
struct Diff<'a> {
    written: &'a Parsed,
    read: &'a Parsed,
    /// The written root type: the start of the paths below the root.
    root: String,
    /// Containers met in both layouts, to compare after the root, in the order met.
    queue: VecDeque<&'a str>,
    queued: BTreeSet<&'a str>,
}

impl<'a> Diff<'a> {
    /// A walk from the roots.
    fn new(written: &'a Parsed, read: &'a Parsed) -> Self {
        Diff {
            written,
            read,
            root: written.root.to_string(),
            queue: VecDeque::new(),
            queued: BTreeSet::new(),
        }
    }

    /// The first difference, if any.
    fn run(mut self) -> Option<String> {
        let (written, read) = (self.written, self.read);
        if let Some(difference) = self.ty("", &written.root, &read.root) {
            return Some(difference);
        }
        while let Some(name) = self.queue.pop_front() {
            let (Some(w), Some(r)) = (written.defs.get(name), read.defs.get(name)) else {
                continue;
            };
            if let Some(difference) = self.body(name, w, r) {
                return Some(difference);
            }
        }
        None
    }

    /// A path extended by `segment`; the empty path is the root.
    fn child(&self, path: &str, segment: fmt::Arguments<'_>) -> String {
        let base = if path.is_empty() { &self.root } else { path };
        format!("{base}{segment}")
    }

    /// Compares two types at `path`.
    fn ty(&mut self, path: &str, w: &'a Ty, r: &'a Ty) -> Option<String> {
        match (w, r) {
            (Ty::Prim(a), Ty::Prim(b)) if a == b => None,
            (Ty::Named(a), Ty::Named(b)) if a == b => {
                if self.queued.insert(a) {
                    self.queue.push_back(a);
                }
                None
            }
            (Ty::Option(a), Ty::Option(b)) => self.ty(&self.child(path, format_args!("?")), a, b),
            (Ty::Seq(a), Ty::Seq(b)) => self.ty(&self.child(path, format_args!("[_]")), a, b),
            (Ty::Array(a, n), Ty::Array(b, m)) if n == m => {
                self.ty(&self.child(path, format_args!("[_]")), a, b)
            }
            (Ty::Map(wk, wv), Ty::Map(rk, rv)) => {
                let key = self.child(path, format_args!("[key]"));
                let value = self.child(path, format_args!("[value]"));
                self.ty(&key, wk, rk).or_else(|| self.ty(&value, wv, rv))
            }
            (Ty::Tuple(a), Ty::Tuple(b)) if a.len() == b.len() => self.positional(path, a, b),
            _ => {
                let place = if path.is_empty() {
                    "the element type".to_owned()
                } else {
                    format!("`{path}`")
                };
                Some(format!(
                    "{place}: written as {}, read as {}",
                    quote(w),
                    quote(r)
                ))
            }
        }
    }

    /// Compares two lists of unnamed fields or tuple elements at `path`, position by
    /// position.
    fn positional(&mut self, path: &str, w: &'a [Ty], r: &'a [Ty]) -> Option<String> {
        for (i, (a, b)) in w.iter().zip(r).enumerate() {
            if let Some(difference) = self.ty(&self.child(path, format_args!(".{i}")), a, b) {
                return Some(difference);
            }
        }
        let i = w.len().min(r.len());
        match (w.get(i), r.get(i)) {
            (Some(gone), _) => Some(format!("`{path}`: field {i} `{gone}` was removed")),
            (None, Some(new)) => Some(format!("`{path}`: field {i} `{new}` is new")),
            (None, None) => None,
        }
    }

    /// Compares two containers' definitions.
    fn body(&mut self, name: &'a str, w: &'a Body, r: &'a Body) -> Option<String> {
        let path = Name::container(name).to_string();
        match (w, r) {
            (Body::Struct(a), Body::Struct(b)) => self.fields(&path, a, b),
            (Body::Enum(a), Body::Enum(b)) => self.variants(&path, a, b),
            (Body::Struct(_), Body::Enum(_)) => {
                Some(format!("`{path}`: written as a struct, read as an enum"))
            }
            (Body::Enum(_), Body::Struct(_)) => {
                Some(format!("`{path}`: written as an enum, read as a struct"))
            }
        }
    }

    /// Compares the fields of a struct or variant at `path`.
    fn fields(&mut self, path: &str, w: &'a Fields, r: &'a Fields) -> Option<String> {
        match (w, r) {
            (Fields::Unit, Fields::Unit) => None,
            (Fields::Newtype(a), Fields::Newtype(b)) => self.ty(&format!("{path}.0"), a, b),
            (Fields::Tuple(a), Fields::Tuple(b)) => self.positional(path, a, b),
            (Fields::Named(a), Fields::Named(b)) => self.named(path, a, b),
            _ => Some(format!(
                "`{path}`: written as {}, read as {}",
                quote(format_args!("{path}{w}")),
                quote(format_args!("{path}{r}"))
            )),
        }
    }

    /// Compares two lists of named fields at `path`, position by position (postcard
    /// writes fields in order, without their names).
    fn named(
        &mut self,
        path: &str,
        w: &'a [(String, Ty)],
        r: &'a [(String, Ty)],
    ) -> Option<String> {
        let field = |(name, ty): &(String, Ty)| format!("{}: {}", Name::member(name), quote(ty));
        for (i, (a, b)) in w.iter().zip(r).enumerate() {
            if a.0 != b.0 {
                return Some(format!(
                    "`{path}`: field {i} written as `{}`, read as `{}`",
                    field(a),
                    field(b)
                ));
            }
            let child = format!("{path}.{}", Name::member(&a.0));
            if let Some(difference) = self.ty(&child, &a.1, &b.1) {
                return Some(difference);
            }
        }
        let i = w.len().min(r.len());
        match (w.get(i), r.get(i)) {
            (Some(gone), _) => Some(format!("`{path}`: field {i} `{}` was removed", field(gone))),
            (None, Some(new)) => Some(format!("`{path}`: field {i} `{}` is new", field(new))),
            (None, None) => None,
        }
    }

    /// Compares two enums' variants at `path`, index by index.
    fn variants(
        &mut self,
        path: &str,
        w: &'a [(String, Fields)],
        r: &'a [(String, Fields)],
    ) -> Option<String> {
        for (i, ((a, a_fields), (b, b_fields))) in w.iter().zip(r).enumerate() {
            let (a, b) = (Name::member(a), Name::member(b));
            if a.name != b.name {
                return Some(format!(
                    "`{path}`: variant {i} written as `{a}`, read as `{b}`"
                ));
            }
            if let Some(difference) = self.fields(&format!("{path}::{a}"), a_fields, b_fields) {
                return Some(difference);
            }
        }
        let i = w.len().min(r.len());
        match (w.get(i), r.get(i)) {
            (Some((gone, _)), _) => Some(format!(
                "`{path}`: variant {i} `{}` was removed",
                Name::member(gone)
            )),
            (None, Some((new, _))) => Some(format!(
                "`{path}`: variant {i} `{}` is new",
                Name::member(new)
            )),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    // Test types are only ever deserialized, so their fields are never read.
    #![allow(dead_code)]

    use super::*;
    use serde::{Deserialize, Deserializer};
    use std::collections::HashMap;
    use std::num::NonZeroU32;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// The text of `T`'s layout, which must trace.
    fn text<T: DeserializeOwned + 'static>() -> String {
        match Layout::of::<T>() {
            Some(layout) => layout.text().to_owned(),
            None => panic!("{} does not trace", std::any::type_name::<T>()),
        }
    }

    /// The first difference between the layouts of `W` and `R`, which must both trace.
    fn difference<W: DeserializeOwned + 'static, R: DeserializeOwned + 'static>() -> String {
        let (w, r) = (Layout::of::<W>().unwrap(), Layout::of::<R>().unwrap());
        assert_ne!(w, r);
        first_difference(&w, &r)
    }

    mod v1 {
        use serde::Deserialize;

        #[derive(Deserialize)]
        pub struct Reading {
            pub at: u64,
            pub delta: i32,
        }

        #[derive(Deserialize)]
        pub enum Mode {
            Slow { speed: u8 },
            Steady(u16, u16),
        }

        #[derive(Deserialize)]
        pub struct Event {
            pub mode: Mode,
            pub readings: Vec<Reading>,
        }
    }

    mod v2 {
        use serde::Deserialize;

        /// `delta` changed type.
        #[derive(Deserialize)]
        pub struct Reading {
            pub at: u64,
            pub delta: u32,
        }

        /// A variant was added.
        #[derive(Deserialize)]
        pub enum Mode {
            Slow { speed: u8 },
            Steady(u16, u16),
            Fast,
        }

        #[derive(Deserialize)]
        pub struct Event {
            pub mode: Mode,
            pub readings: Vec<super::v1::Reading>,
        }
    }

    mod v3 {
        use serde::Deserialize;

        /// `delta` renamed.
        #[derive(Deserialize)]
        pub struct Reading {
            pub at: u64,
            pub change: i32,
        }

        /// A variant's field changed type.
        #[derive(Deserialize)]
        pub enum Mode {
            Slow { speed: u16 },
            Steady(u16, u16),
        }
    }

    #[test]
    fn primitives_and_tuples() {
        assert_eq!(text::<()>(), "unit");
        assert_eq!(text::<bool>(), "bool");
        assert_eq!(text::<i8>(), "i8");
        assert_eq!(text::<i128>(), "i128");
        assert_eq!(text::<u16>(), "u16");
        assert_eq!(text::<u128>(), "u128");
        assert_eq!(text::<f32>(), "f32");
        assert_eq!(text::<f64>(), "f64");
        assert_eq!(text::<char>(), "char");
        assert_eq!(text::<String>(), "str");
        assert_eq!(text::<(u8,)>(), "(u8,)");
        assert_eq!(text::<(u8, i16)>(), "(u8, i16)");
        assert_eq!(text::<(u8, (bool, char), ())>(), "(u8, (bool, char), unit)");
        // A tuple of one type is an array, at the root as inside a container.
        assert_eq!(text::<(u64, u64)>(), "[u64; 2]");
        assert_eq!(text::<[u64; 2]>(), "[u64; 2]");
        assert_eq!(text::<[u8; 0]>(), "()");
        assert_eq!(text::<Vec<u8>>(), "seq<u8>");
        assert_eq!(text::<Option<(u32, String)>>(), "option<(u32, str)>");
    }

    #[test]
    fn u64_string_pair() {
        assert_eq!(text::<(u64, String)>(), "(u64, str)");
        let layout = Layout::of::<(u64, String)>().unwrap();
        assert_eq!(Layout::from_text(layout.text().to_owned()), layout);
    }

    #[test]
    fn changed_field_type_differs_and_names_the_field() {
        assert_eq!(
            text::<v1::Reading>(),
            "Reading; struct Reading { at: u64, delta: i32 }"
        );
        assert_eq!(
            difference::<v1::Reading, v2::Reading>(),
            "`Reading.delta`: written as i32, read as u32"
        );
        assert_eq!(
            difference::<(u64, v1::Reading), (u64, v2::Reading)>(),
            "`Reading.delta`: written as i32, read as u32"
        );
        assert_eq!(
            difference::<(u64, v1::Reading), (u32, v1::Reading)>(),
            "`(u64, Reading).0`: written as u64, read as u32"
        );
        assert_eq!(
            difference::<Vec<u64>, u64>(),
            "the element type: written as seq<u64>, read as u64"
        );
    }

    #[test]
    fn renamed_field_differs() {
        assert_eq!(
            difference::<v1::Reading, v3::Reading>(),
            "`Reading`: field 1 written as `delta: i32`, read as `change: i32`"
        );
    }

    #[test]
    fn enum_changes_differ() {
        assert_eq!(
            text::<v1::Mode>(),
            "Mode; enum Mode { 0 Slow { speed: u8 }, 1 Steady(u16, u16) }"
        );
        assert_eq!(
            text::<v2::Mode>(),
            "Mode; enum Mode { 0 Slow { speed: u8 }, 1 Steady(u16, u16), 2 Fast }"
        );
        assert_eq!(
            difference::<v1::Mode, v2::Mode>(),
            "`Mode`: variant 2 `Fast` is new"
        );
        assert_eq!(
            difference::<v2::Mode, v1::Mode>(),
            "`Mode`: variant 2 `Fast` was removed"
        );
        assert_eq!(
            difference::<v1::Mode, v3::Mode>(),
            "`Mode::Slow.speed`: written as u8, read as u16"
        );
    }

    #[test]
    fn enums_inside_other_types_are_traced_completely() {
        // serde-reflection's `trace_type` alone leaves these enums incomplete.
        assert_eq!(
            text::<(u64, v1::Mode)>(),
            "(u64, Mode); enum Mode { 0 Slow { speed: u8 }, 1 Steady(u16, u16) }"
        );
        assert_eq!(
            text::<Vec<Option<v1::Mode>>>(),
            "seq<option<Mode>>; enum Mode { 0 Slow { speed: u8 }, 1 Steady(u16, u16) }"
        );
        assert_eq!(
            text::<v1::Event>(),
            "Event; struct Event { mode: Mode, readings: seq<Reading> }; \
             enum Mode { 0 Slow { speed: u8 }, 1 Steady(u16, u16) }; \
             struct Reading { at: u64, delta: i32 }"
        );
        assert_eq!(
            difference::<v1::Event, v2::Event>(),
            "`Mode`: variant 2 `Fast` is new"
        );
        assert_eq!(
            text::<Result<u8, String>>(),
            "Result; enum Result { 0 Ok(u8), 1 Err(str) }"
        );
        // Behind a sequence or an option inside another enum's variant.
        #[derive(Deserialize)]
        enum Batch {
            Many(Vec<v1::Mode>),
            One(Option<v1::Mode>),
        }
        #[derive(Deserialize)]
        struct Job {
            batch: Batch,
        }
        assert_eq!(
            text::<Job>(),
            "Job; enum Batch { 0 Many(seq<Mode>), 1 One(option<Mode>) }; \
             struct Job { batch: Batch }; \
             enum Mode { 0 Slow { speed: u8 }, 1 Steady(u16, u16) }"
        );
        // An enum in a variant after the first is met in too few passes: once the outer
        // enum is complete, the tracer takes its first variant only. No layout rather than
        // a wrong one.
        assert_eq!(Layout::of::<Result<u8, v1::Mode>>(), None);
        // `Mode` is met only in the passes that take `Ok`.
        assert_eq!(
            text::<Option<Result<v1::Mode, String>>>(),
            "option<Result>; enum Mode { 0 Slow { speed: u8 }, 1 Steady(u16, u16) }; \
             enum Result { 0 Ok(Mode), 1 Err(str) }"
        );
    }

    #[test]
    fn enums_behind_a_collection_inside_a_container_trace() {
        // serde-reflection explores a struct's `Option`, sequence or map field once and then
        // cuts it short; each pass registers the struct under a name of its own, so the
        // enum behind it is met again until all its variants are seen.
        const MODE: &str = "enum Mode { 0 Slow { speed: u8 }, 1 Steady(u16, u16) }";
        #[derive(Deserialize)]
        struct Log {
            modes: Vec<v1::Mode>,
        }
        assert_eq!(
            text::<Log>(),
            format!("Log; struct Log {{ modes: seq<Mode> }}; {MODE}")
        );
        #[derive(Deserialize)]
        struct Maybe {
            mode: Option<v1::Mode>,
        }
        assert_eq!(
            text::<Maybe>(),
            format!("Maybe; struct Maybe {{ mode: option<Mode> }}; {MODE}")
        );
        #[derive(Deserialize)]
        struct ByName(BTreeMap<String, v1::Mode>);
        #[derive(Deserialize)]
        struct Modes(Vec<v1::Mode>);
        #[derive(Deserialize)]
        struct Pairs(u8, Option<v1::Mode>);
        #[derive(Deserialize)]
        struct Job {
            log: Log,
            by_name: ByName,
            modes: Modes,
            pairs: Vec<Pairs>,
        }
        assert_eq!(
            text::<(u64, Job)>(),
            format!(
                "(u64, Job); struct ByName(map<str, Mode>); \
                 struct Job {{ log: Log, by_name: ByName, modes: Modes, pairs: seq<Pairs> }}; \
                 struct Log {{ modes: seq<Mode> }}; {MODE}; struct Modes(seq<Mode>); \
                 struct Pairs(u8, option<Mode>)"
            )
        );
        // A recursive struct, and an enum whose variant holds one.
        #[derive(Deserialize)]
        struct Tree {
            mode: Option<v1::Mode>,
            children: Vec<Tree>,
        }
        assert_eq!(
            text::<Tree>(),
            format!("Tree; {MODE}; struct Tree {{ mode: option<Mode>, children: seq<Tree> }}")
        );
        // The same struct at the top and inside an enum's variant.
        #[derive(Deserialize)]
        enum Source {
            Local(Log),
            Remote,
        }
        #[derive(Deserialize)]
        struct Both {
            log: Log,
            source: Source,
        }
        assert_eq!(
            text::<Both>(),
            format!(
                "Both; struct Both {{ log: Log, source: Source }}; \
                 struct Log {{ modes: seq<Mode> }}; {MODE}; enum Source {{ 0 Local(Log), 1 Remote }}"
            )
        );
        // Two Rust types of one serde name with one layout (a generic struct's
        // instantiations) are one definition, and a tuple of them is an array, as before
        // the passes had names of their own: the texts of existing checkpoints stay.
        #[derive(Deserialize)]
        struct Id<T> {
            raw: u64,
            #[serde(skip)]
            _t: std::marker::PhantomData<T>,
        }
        #[derive(Deserialize)]
        struct Edge {
            ends: (Id<u8>, Id<String>),
            by: Vec<(Id<u8>, Id<String>)>,
        }
        assert_eq!(
            text::<Edge>(),
            "Edge; struct Edge { ends: [Id; 2], by: seq<[Id; 2]> }; struct Id { raw: u64 }"
        );
        // Inside an enum's variants too. (A generic enum used with two type arguments does
        // not trace, as before: the tracer explores the second's variants anew against the
        // first's.)
        #[derive(Deserialize)]
        enum Ref<T> {
            Id(Id<T>),
            Name(String),
        }
        assert_eq!(
            text::<(Ref<u8>, Ref<u8>)>(),
            "[Ref; 2]; struct Id { raw: u64 }; enum Ref { 0 Id(Id), 1 Name(str) }"
        );
        #[derive(Deserialize)]
        struct Follow {
            from: Ref<u8>,
            to: Ref<String>,
        }
        assert_eq!(Layout::of::<Follow>(), None);
        // Two structs of one serde name inside an enum's variants, different only behind
        // a sequence, an option or a map: no layout, not the first one's for both.
        mod pa {
            #[derive(serde::Deserialize)]
            pub struct P {
                pub _x: Vec<u8>,
            }
        }
        mod pb {
            #[derive(serde::Deserialize)]
            pub struct P {
                pub _x: Vec<i8>,
            }
        }
        mod pc {
            #[derive(serde::Deserialize)]
            pub struct P {
                pub _x: Vec<u8>,
            }
        }
        #[derive(Deserialize)]
        enum Two {
            A(pa::P),
            B(pb::P),
        }
        assert_eq!(Layout::of::<Two>(), None);
        assert_eq!(Layout::of::<Vec<Two>>(), None);
        // The same layout under one name in two modules is one definition.
        #[derive(Deserialize)]
        enum Same {
            A(pa::P),
            B(pc::P),
        }
        assert_eq!(
            text::<Same>(),
            "Same; struct P { _x: seq<u8> }; enum Same { 0 A(P), 1 B(P) }"
        );
        // Two enums of one serde name and the same variant names, one met at the top and
        // the other only where the tracer cuts it short: no layout, not the first one's.
        mod ea {
            #[derive(serde::Deserialize)]
            pub enum Mode {
                Slow,
                Fast(u8),
            }
        }
        mod eb {
            #[derive(serde::Deserialize)]
            pub enum Mode {
                Slow,
                Fast(i8),
            }
        }
        #[derive(Deserialize)]
        struct Inner {
            _m: Vec<eb::Mode>,
        }
        #[derive(Deserialize)]
        enum Src {
            Local(Inner),
            Remote,
        }
        #[derive(Deserialize)]
        struct Both2 {
            _mode: ea::Mode,
            _src: Src,
        }
        assert_eq!(Layout::of::<Both2>(), None);
        // What is reached only through a struct inside an enum's variant is still cut short
        // (the enum keeps its variants' formats from one pass to the next): no layout
        // rather than a wrong one.
        assert_eq!(Layout::of::<Source>(), None);
        // Two structs of one name whose fields differ only behind a sequence (which
        // serde-reflection would read as empty for the second) are no layout either.
        mod other {
            #[derive(serde::Deserialize)]
            pub struct Log {
                pub modes: Vec<u8>,
            }
        }
        assert_eq!(Layout::of::<(Log, Option<other::Log>)>(), None);
        // Told apart by the type's identity, not by its name, which two types can share.
        #[derive(Deserialize)]
        struct Rec {
            _v: Vec<u8>,
        }
        type First = Rec;
        {
            #[derive(Deserialize)]
            struct Rec {
                _v: Vec<String>,
            }
            assert_eq!(
                std::any::type_name::<First>(),
                std::any::type_name::<Rec>(),
                "the two types share a name"
            );
            assert_eq!(Layout::of::<(First, Option<Rec>)>(), None);
        }
    }

    /// `Arc<T>` as serde's `rc` feature deserializes it (flintlock does not enable it).
    fn arc<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Arc<T>, D::Error> {
        Box::<T>::deserialize(d).map(Arc::from)
    }

    #[derive(Deserialize)]
    struct Inner {
        id: u32,
        tag: char,
    }

    #[derive(Deserialize)]
    struct Outer {
        note: Option<String>,
        values: Vec<f64>,
        by_name: HashMap<String, Inner>,
        ordered: BTreeMap<u8, (bool, i64)>,
        bytes: [u8; 4],
        boxed: Box<Inner>,
        #[serde(deserialize_with = "arc")]
        shared: Arc<Vec<u16>>,
        nothing: (),
        wrapped: Id,
        pair: Pair,
        marker: Marker,
    }

    #[derive(Deserialize)]
    struct Id(u64);

    #[derive(Deserialize)]
    struct Pair(i8, String);

    #[derive(Deserialize)]
    struct Marker;

    #[test]
    fn nested_containers() {
        assert_eq!(
            text::<Outer>(),
            "Outer; struct Id(u64); struct Inner { id: u32, tag: char }; struct Marker; \
             struct Outer { note: option<str>, values: seq<f64>, by_name: map<str, Inner>, \
             ordered: map<u8, (bool, i64)>, bytes: [u8; 4], boxed: Inner, shared: seq<u16>, \
             nothing: unit, wrapped: Id, pair: Pair, marker: Marker }; struct Pair(i8, str)"
        );
    }

    #[test]
    fn untagged_enum_does_not_trace() {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Loose {
            Number(u64),
            Text(String),
        }
        assert_eq!(Layout::of::<Loose>(), None);
        assert_eq!(Layout::of::<(u8, Loose)>(), None);
    }

    #[test]
    fn skipped_serialization_still_traces() {
        #[derive(Deserialize)]
        struct Sparse {
            id: u64,
            #[serde(skip_serializing_if = "Option::is_none", default)]
            note: Option<String>,
        }
        assert_eq!(
            text::<Sparse>(),
            "Sparse; struct Sparse { id: u64, note: option<str> }"
        );
    }

    #[test]
    fn json_value_does_not_trace() {
        assert_eq!(Layout::of::<serde_json::Value>(), None);
        assert_eq!(Layout::of::<(u64, serde_json::Value)>(), None);
    }

    #[test]
    fn failing_deserialize_does_not_trace() {
        struct Never;
        impl<'de> Deserialize<'de> for Never {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                Err(de::Error::custom("never"))
            }
        }
        /// Rejects both samples, 0 and 1.
        #[derive(Deserialize)]
        #[serde(try_from = "u32")]
        struct AtLeastTen(u32);
        impl TryFrom<u32> for AtLeastTen {
            type Error = String;
            fn try_from(n: u32) -> Result<Self, String> {
                if n >= 10 {
                    Ok(AtLeastTen(n))
                } else {
                    Err(format!("{n} < 10"))
                }
            }
        }
        assert_eq!(Layout::of::<Never>(), None);
        assert_eq!(Layout::of::<(u8, Never)>(), None);
        assert_eq!(Layout::of::<AtLeastTen>(), None);
        // 0 is rejected, 1 is not.
        assert_eq!(text::<NonZeroU32>(), "u32");
        assert_eq!(text::<(u8, Option<NonZeroU32>)>(), "(u8, option<u32>)");
    }

    #[test]
    fn panicking_deserialize_does_not_trace() {
        struct Boom;
        impl<'de> Deserialize<'de> for Boom {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                panic!("Boom::deserialize panics (this message is expected)")
            }
        }
        assert_eq!(Layout::of::<Boom>(), None);
        assert_eq!(Layout::of::<Vec<Boom>>(), None);
        // Cached: asked again, it is not traced again.
        assert_eq!(Layout::of::<Boom>(), None);
    }

    #[test]
    fn traced_once_and_cached() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        struct Counted;
        impl<'de> Deserialize<'de> for Counted {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                CALLS.fetch_add(1, Ordering::SeqCst);
                u16::deserialize(d).map(|_| Counted)
            }
        }
        let first = Layout::of::<Counted>();
        let calls = CALLS.load(Ordering::SeqCst);
        assert!(calls > 0);
        let second = Layout::of::<Counted>();
        assert_eq!(first, second);
        assert_eq!(first.as_ref().map(Layout::text), Some("u16"));
        assert_eq!(CALLS.load(Ordering::SeqCst), calls);
    }

    #[test]
    fn recursive_types() {
        #[derive(Deserialize)]
        struct Tree {
            label: String,
            children: Vec<Tree>,
        }
        assert_eq!(
            text::<Tree>(),
            "Tree; struct Tree { label: str, children: seq<Tree> }"
        );

        #[derive(Deserialize)]
        struct Chain {
            next: Option<Box<Chain>>,
        }
        assert_eq!(
            text::<Chain>(),
            "Chain; struct Chain { next: option<Chain> }"
        );

        #[derive(Deserialize)]
        enum List {
            Nil,
            Cons(u8, Box<List>),
        }
        assert_eq!(
            text::<List>(),
            "List; enum List { 0 Nil, 1 Cons(u8, List) }"
        );

        // The first variant recurses: the tracer never reaches a base case. Bounded by
        // `MAX_DEPTH`, neither a hang nor a stack overflow.
        #[derive(Deserialize)]
        enum Expr {
            Add(Box<Expr>, Box<Expr>),
            Lit(i64),
        }
        assert_eq!(Layout::of::<Expr>(), None);

        #[derive(Deserialize)]
        struct Endless {
            inner: Box<Endless>,
        }
        assert_eq!(Layout::of::<Endless>(), None);
    }

    #[test]
    fn name_conflicts_do_not_trace() {
        #[derive(Deserialize)]
        struct Wrapper<T>(T, u8);
        assert_eq!(text::<Wrapper<u8>>(), "Wrapper; struct Wrapper(u8, u8)");
        assert_eq!(Layout::of::<(Wrapper<u8>, Wrapper<String>)>(), None);
        // Two enums named `Mode` with different variants.
        assert_eq!(Layout::of::<(v1::Mode, v2::Mode)>(), None);
        assert_eq!(Layout::of::<(v1::Reading, v2::Reading)>(), None);
    }

    #[test]
    fn names_outside_identifiers_are_quoted() {
        #[derive(Deserialize)]
        #[serde(rename = "u32")]
        struct Sneaky {
            #[serde(rename = "my field \"q\"\\")]
            value: u8,
        }
        #[derive(Deserialize)]
        #[serde(rename = "Größe\n")]
        enum Size {
            #[serde(rename = "bad-name")]
            Small,
        }
        let sneaky = text::<(Sneaky, u32)>();
        assert_eq!(
            sneaky,
            r#"("u32", u32); struct "u32" { "my field \"q\"\\": u8 }"#
        );
        let size = text::<Size>();
        assert_eq!(size, r#""Größe\u{a}"; enum "Größe\u{a}" { 0 "bad-name" }"#);
        for text in [sneaky, size] {
            assert_eq!(Parsed::parse(&text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn aliases() {
        #[derive(Deserialize)]
        enum Aliased {
            #[serde(alias = "Old")]
            New,
            Other(u8),
        }
        #[derive(Deserialize)]
        struct AliasedField {
            #[serde(alias = "old")]
            new: u8,
        }
        assert_eq!(
            text::<Aliased>(),
            "Aliased; enum Aliased { 0 New, 1 Other(u8) }"
        );
        assert_eq!(Layout::of::<AliasedField>(), None);
    }

    #[test]
    fn module_documentation_example() {
        #[derive(Deserialize)]
        struct Reading {
            delta: i32,
            mode: Mode,
        }
        #[derive(Deserialize)]
        enum Mode {
            Slow,
            Fast(u8),
        }
        assert_eq!(
            text::<(u64, Reading)>(),
            "(u64, Reading); enum Mode { 0 Slow, 1 Fast(u8) }; \
             struct Reading { delta: i32, mode: Mode }"
        );
    }

    #[test]
    fn std_types_golden() {
        assert_eq!(
            text::<std::time::Duration>(),
            "Duration; struct Duration { secs: u64, nanos: u32 }"
        );
        assert_eq!(
            text::<std::net::IpAddr>(),
            "IpAddr; enum IpAddr { 0 V4([u8; 4]), 1 V6([u8; 16]) }"
        );
        assert_eq!(
            text::<std::marker::PhantomData<u8>>(),
            "PhantomData; struct PhantomData"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_non_canonical_text() {
        let texts = [
            text::<Outer>(),
            text::<v1::Event>(),
            text::<(u8,)>(),
            text::<[u8; 0]>(),
            "S; struct S {}".to_owned(),
            "S; struct S()".to_owned(),
            "S; struct S(u8,)".to_owned(),
            "E; enum E { 0 A(), 1 B {}, 2 C(u8,), 3 D(u8) }".to_owned(),
            "map<option<[seq<u8>; 3]>, bytes>".to_owned(),
        ];
        for text in texts {
            let parsed = Parsed::parse(&text).unwrap_or_else(|| panic!("parses: {text}"));
            assert_eq!(parsed.to_string(), text);
        }
        for bad in [
            "",
            "u8 ",
            "(u8)",
            "(u8, u8,)",
            "S",                        // undefined container
            "u8; struct S",             // unreachable container
            "S; struct S; struct S",    // defined twice
            "B; struct B(A); struct A", // out of order (A < B)
            "E; enum E { 1 A }",        // index out of order
            "option<u8",
            "[u8; 01]",
            "\"u8\"",          // undefined quoted container
            "S; struct \"S\"", // quoted when it need not be
            "seq<u8>; enum",
        ] {
            assert_eq!(Parsed::parse(bad), None, "{bad:?}");
        }
        let deep = format!("{}u8{}", "option<".repeat(1000), ">".repeat(1000));
        assert_eq!(Parsed::parse(&deep), None);
    }

    #[test]
    fn first_difference_of_unusual_texts() {
        let layout = |text: &str| Layout::from_text(text.to_owned());
        assert_eq!(
            first_difference(&layout("u8"), &layout("u8")),
            "nowhere: the layouts are equal"
        );
        assert_eq!(
            first_difference(&layout("S; struct S"), &layout("S; enum S { 0 A }")),
            "`S`: written as a struct, read as an enum"
        );
        assert_eq!(
            first_difference(&layout("S; struct S(u8)"), &layout("S; struct S { a: u8 }")),
            "`S`: written as S(u8), read as S { a: u8 }"
        );
        assert_eq!(
            first_difference(
                &layout("S; struct S(u8, u16)"),
                &layout("S; struct S(u8, u16, i8)")
            ),
            "`S`: field 2 `i8` is new"
        );
        assert_eq!(
            first_difference(
                &layout("S; struct S { a: u8, b: u16 }"),
                &layout("S; struct S { a: u8 }")
            ),
            "`S`: field 1 `b: u16` was removed"
        );
        assert_eq!(
            first_difference(&layout("map<u8, str>"), &layout("map<u8, bytes>")),
            "`map<u8, str>[value]`: written as str, read as bytes"
        );
        assert_eq!(
            first_difference(
                &layout("E; enum E { 0 A, 1 B }"),
                &layout("E; enum E { 0 A, 1 C }")
            ),
            "`E`: variant 1 written as `B`, read as `C`"
        );
        // A text from elsewhere (or from a future grammar) is compared as text.
        assert_eq!(
            first_difference(&layout("u8 & more"), &layout("u8 & less")),
            "character 5 of the layout text: written `more`, read `less`"
        );
        assert_eq!(
            first_difference(&layout("garbage"), &layout("garb")),
            "character 4 of the layout text: written `age`, read (end)"
        );
    }
}
