//! Parquet output of a sweep table (`--out FILE.parquet`): the same long form as the CSV,
//! typed (INT64 for indices and values, UTF8 strings, an axis column INT64 when every value
//! of it is an integer), one row group, uncompressed (the `parquet` crate without its codec
//! features keeps the build small; any reader decompresses nothing).

use std::path::Path;
use std::sync::Arc;

use parquet::basic::{ConvertedType, Repetition, Type as Physical};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::sweep::Table;

/// A column's values, typed.
enum Col {
    Int(Vec<i64>),
    Str(Vec<String>),
}

fn columns(t: &Table) -> Vec<(String, Col)> {
    let r = &t.rows;
    let ints = |f: &dyn Fn(&crate::sweep::TableRow) -> i64| Col::Int(r.iter().map(f).collect());
    let strs = |f: &dyn Fn(&crate::sweep::TableRow) -> String| Col::Str(r.iter().map(f).collect());
    let mut c: Vec<(String, Col)> = vec![
        ("schema".into(), ints(&|x| x.schema as i64)),
        ("file".into(), strs(&|x| x.file.clone())),
        ("variant_index".into(), ints(&|x| x.variant_index as i64)),
        ("variant_count".into(), ints(&|x| x.variant_count as i64)),
        ("variant".into(), strs(&|x| x.variant.clone())),
        ("profile".into(), strs(&|x| x.profile.clone())),
    ];
    for (i, key) in t.axes.iter().enumerate() {
        let vals: Vec<&String> = r.iter().map(|x| &x.params[i]).collect();
        let parsed: Option<Vec<i64>> = vals.iter().map(|v| v.parse().ok()).collect();
        c.push((
            format!("param.{key}"),
            match parsed {
                Some(p) => Col::Int(p),
                None => Col::Str(vals.into_iter().cloned().collect()),
            },
        ));
    }
    c.extend([
        (
            "checkpoint_index".into(),
            ints(&|x| x.checkpoint_index as i64),
        ),
        ("checkpoint".into(), strs(&|x| x.checkpoint.clone())),
        (
            "checkpoint_line".into(),
            ints(&|x| x.checkpoint_line as i64),
        ),
        ("group".into(), strs(&|x| x.group.clone())),
        ("observable".into(), strs(&|x| x.observable.clone())),
        ("value".into(), ints(&|x| x.value)),
        ("switches".into(), strs(&|x| x.switches.clone())),
        ("sysfs_changed".into(), strs(&|x| x.sysfs_changed.clone())),
    ]);
    c
}

pub fn write(path: &Path, t: &Table) -> Result<(), String> {
    let err = |e: parquet::errors::ParquetError| format!("{}: parquet: {e}", path.display());
    let cols = columns(t);
    let fields = cols
        .iter()
        .map(|(name, col)| {
            let b = match col {
                Col::Int(_) => Type::primitive_type_builder(name, Physical::INT64),
                Col::Str(_) => Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                    .with_converted_type(ConvertedType::UTF8),
            };
            b.with_repetition(Repetition::REQUIRED)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let schema = Type::group_type_builder("thpsim_sweep")
        .with_fields(fields)
        .build()
        .map_err(err)?;
    // A fixed `created_by` keeps the file a function of the table alone (merge == unsharded).
    let props = WriterProperties::builder()
        .set_created_by(format!(
            "thpsim sweep schema {}",
            crate::sweep::SWEEP_SCHEMA
        ))
        .build();
    let file =
        std::fs::File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut w = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).map_err(err)?;
    let mut rg = w.next_row_group().map_err(err)?;
    for (_, col) in &cols {
        let mut cw = rg
            .next_column()
            .map_err(err)?
            .expect("one column writer per schema field");
        match col {
            Col::Int(v) => {
                cw.typed::<Int64Type>()
                    .write_batch(v, None, None)
                    .map_err(err)?;
            }
            Col::Str(v) => {
                let b: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(s.as_str())).collect();
                cw.typed::<ByteArrayType>()
                    .write_batch(&b, None, None)
                    .map_err(err)?;
            }
        }
        cw.close().map_err(err)?;
    }
    rg.close().map_err(err)?;
    w.close().map_err(err)?;
    Ok(())
}
