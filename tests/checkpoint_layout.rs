//! The element type's layout, not only its name, is checked (DESIGN §4, issue 9 item 5).
//!
//! Two modules stand for two builds of a program: `v1::Reading` and `v2::Reading` have the
//! same serde name and different fields. Format 2 records the traced layout, so reading one
//! as the other is a precise `TypeMismatch`, never a silent misread.

use crate::common;

use flintlock::{Context, Error};
use serde::{Deserialize, Serialize};

mod v1 {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Reading {
        pub sensor: String,
        pub delta: i32,
    }
}

mod v2 {
    use super::*;
    /// The same name, a field of another type.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Reading {
        pub sensor: String,
        pub delta: u32,
    }
}

mod moved {
    use super::*;
    /// The same layout as `v1::Reading`, in another module: a refactoring, not a change.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Reading {
        pub sensor: String,
        pub delta: i32,
    }
}

mod renamed_field {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Reading {
        pub sensor: String,
        pub change: i32,
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Mode {
    Slow,
    Fast(u8),
}

mod more_modes {
    use super::*;
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub enum Mode {
        Slow,
        Fast(u8),
        Turbo,
    }
}

mod log_v1 {
    use super::*;
    /// An enum reached only through a `Vec` field of a struct.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Log {
        pub modes: Vec<Mode>,
        pub last: Option<Mode>,
    }
}

mod log_moved {
    use super::*;
    /// The same layout as `log_v1::Log`, in another module.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Log {
        pub modes: Vec<Mode>,
        pub last: Option<Mode>,
    }
}

mod log_v2 {
    use super::*;
    /// The enum behind the `Vec` gained a variant.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Log {
        pub modes: Vec<more_modes::Mode>,
        pub last: Option<more_modes::Mode>,
    }
}

fn write<T>(dir: &std::path::Path, data: Vec<T>) -> std::path::PathBuf
where
    T: flintlock::Data + Serialize + serde::de::DeserializeOwned,
{
    let ctx = common::ctx_with_dir(dir);
    let rdd = ctx.parallelize(data, 2);
    rdd.checkpoint().unwrap();
    rdd.count().unwrap();
    rdd.checkpoint_path().unwrap()
}

fn readings() -> Vec<v1::Reading> {
    vec![
        v1::Reading {
            sensor: "a".into(),
            delta: -1,
        },
        v1::Reading {
            sensor: "b".into(),
            delta: -5,
        },
    ]
}

#[test]
fn a_changed_field_type_is_a_type_mismatch_naming_the_field() {
    let dir = common::backend::place();
    let path = write(dir.path(), readings());
    let ctx = common::ctx();
    let err = ctx.open_checkpoint::<v2::Reading>(&path).unwrap_err();
    match &err {
        Error::TypeMismatch {
            difference: Some(d),
            ..
        } => {
            assert!(d.contains("delta"), "{err}");
            assert!(d.contains("i32") && d.contains("u32"), "{err}");
        }
        other => panic!("expected a layout mismatch, got {other}"),
    }
    // It used to read [1, 9]-style garbage; the written data is intact for the right type.
    assert_eq!(
        ctx.open_checkpoint::<v1::Reading>(&path)
            .unwrap()
            .collect()
            .unwrap(),
        readings()
    );
}

#[test]
fn a_renamed_field_is_a_type_mismatch() {
    let dir = common::backend::place();
    let path = write(dir.path(), readings());
    let err = common::ctx()
        .open_checkpoint::<renamed_field::Reading>(&path)
        .unwrap_err();
    assert!(
        matches!(&err, Error::TypeMismatch { difference: Some(d), .. } if d.contains("delta")),
        "{err}"
    );
}

#[test]
fn a_new_enum_variant_is_a_type_mismatch() {
    let dir = common::backend::place();
    let path = write(dir.path(), vec![Mode::Slow, Mode::Fast(3)]);
    let err = common::ctx()
        .open_checkpoint::<more_modes::Mode>(&path)
        .unwrap_err();
    assert!(
        matches!(&err, Error::TypeMismatch { difference: Some(d), .. } if d.contains("Turbo")),
        "{err}"
    );
}

#[test]
fn a_type_moved_to_another_module_with_the_same_layout_reads() {
    let dir = common::backend::place();
    let path = write(dir.path(), readings());
    let back = common::ctx()
        .open_checkpoint::<moved::Reading>(&path)
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].delta, -1);
    assert_eq!(back[1].sensor, "b");
}

#[test]
fn the_manifest_records_the_layout() {
    let dir = common::backend::place();
    let path = write(dir.path(), vec![(7u64, readings()[0].clone())]);
    let bytes = common::backend::read(&path.join("_manifest.json"));
    let manifest = flintlock::checkpoint::ManifestBody::decode(&bytes, &path).unwrap();
    assert_eq!(manifest.version, 2);
    assert_eq!(
        manifest.element_layout.as_deref(),
        Some("(u64, Reading); struct Reading { sensor: str, delta: i32 }")
    );
}

#[test]
fn an_untraceable_type_keeps_the_name_check() {
    // serde_json::Value cannot be traced (it needs deserialize_any); a checkpoint of strings
    // opened as such a type fails on the name.
    let dir = common::backend::place();
    let path = write(dir.path(), vec!["x".to_string()]);
    let err = common::ctx()
        .open_checkpoint::<serde_json::Value>(&path)
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::TypeMismatch {
                difference: None,
                ..
            }
        ),
        "{err}"
    );
    // And the same type opens as itself.
    let ctx = Context::builder().threads(1).build().unwrap();
    assert_eq!(
        ctx.open_checkpoint::<String>(&path)
            .unwrap()
            .collect()
            .unwrap(),
        vec!["x".to_string()]
    );
}

fn logs() -> Vec<log_v1::Log> {
    vec![
        log_v1::Log {
            modes: vec![Mode::Slow, Mode::Fast(2)],
            last: Some(Mode::Fast(9)),
        },
        log_v1::Log {
            modes: vec![],
            last: None,
        },
    ]
}

#[test]
fn an_enum_behind_a_vec_field_is_part_of_the_layout() {
    // The tracer explores a struct's `Vec` and `Option` fields once and then cuts them
    // short; the enum behind them is traced to its last variant all the same.
    let dir = common::backend::place();
    let path = write(dir.path(), logs());
    let bytes = common::backend::read(&path.join("_manifest.json"));
    let manifest = flintlock::checkpoint::ManifestBody::decode(&bytes, &path).unwrap();
    assert_eq!(
        manifest.element_layout.as_deref(),
        Some(
            "Log; struct Log { modes: seq<Mode>, last: option<Mode> }; \
             enum Mode { 0 Slow, 1 Fast(u8) }"
        )
    );
    // A new variant of that enum is a mismatch that names it, not a name-only check.
    let ctx = common::ctx();
    let err = ctx.open_checkpoint::<log_v2::Log>(&path).unwrap_err();
    assert!(
        matches!(&err, Error::TypeMismatch { difference: Some(d), .. } if d.contains("Turbo")),
        "{err}"
    );
    // The same layout in another module reads back exactly.
    let back = ctx
        .open_checkpoint::<log_moved::Log>(&path)
        .unwrap()
        .collect()
        .unwrap();
    let back: Vec<(Vec<Mode>, Option<Mode>)> =
        back.into_iter().map(|l| (l.modes, l.last)).collect();
    let written: Vec<(Vec<Mode>, Option<Mode>)> =
        logs().into_iter().map(|l| (l.modes, l.last)).collect();
    assert_eq!(back, written);
}
