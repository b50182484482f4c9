//! Binds a row — a struct whose fields are an insert's columns, in order — straight to
//! the parameters of a prepared rusqlite statement, through its `Serialize` impl.
//!
//! Why not a crate (`serde_rusqlite`): it collects every field into a boxed value first,
//! dozens of allocations per row on the committer thread that every sender waits on;
//! binding as the fields are visited allocates nothing. Only what rows hold is
//! supported: strings, integers, floats, booleans and options of them.

use rusqlite::Statement;
use serde::ser::{self, Impossible, Serialize, SerializeStruct};

#[derive(Debug)]
pub struct BindError(String);

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BindError {}

impl ser::Error for BindError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        BindError(msg.to_string())
    }
}

impl From<rusqlite::Error> for BindError {
    fn from(e: rusqlite::Error) -> Self {
        BindError(e.to_string())
    }
}

/// Binds `row`'s fields to parameters 1..=n of `stmt`; `columns` are the insert's
/// columns, which must be the struct's fields in order (checked).
pub fn bind_row<T: Serialize>(stmt: &mut Statement<'_>, columns: &[&str], row: &T) -> Result<(), BindError> {
    let mut binder = RowBinder { stmt, columns, next: 0 };
    row.serialize(&mut binder)?;
    if binder.next != columns.len() {
        return Err(BindError(format!("the row has {} fields, the insert {} columns", binder.next, columns.len())));
    }
    Ok(())
}

struct RowBinder<'a, 'c> {
    stmt: &'a mut Statement<'c>,
    columns: &'a [&'a str],
    next: usize,
}

fn unsupported<T>(what: &str) -> Result<T, BindError> {
    Err(BindError(format!("a row cannot hold {what}")))
}

impl ser::Serializer for &mut RowBinder<'_, '_> {
    type Ok = ();
    type Error = BindError;
    type SerializeSeq = Impossible<(), BindError>;
    type SerializeTuple = Impossible<(), BindError>;
    type SerializeTupleStruct = Impossible<(), BindError>;
    type SerializeTupleVariant = Impossible<(), BindError>;
    type SerializeMap = Impossible<(), BindError>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), BindError>;

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, BindError> {
        Ok(self)
    }

    fn serialize_bool(self, _: bool) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_i8(self, _: i8) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_i16(self, _: i16) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_i32(self, _: i32) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_i64(self, _: i64) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_u8(self, _: u8) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_u16(self, _: u16) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_u32(self, _: u32) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_u64(self, _: u64) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_f32(self, _: f32) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_f64(self, _: f64) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_char(self, _: char) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_str(self, _: &str) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_none(self) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_unit(self) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), BindError> {
        unsupported("a bare value")
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> Result<(), BindError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), BindError> {
        unsupported("an enum")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, BindError> {
        unsupported("a list")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, BindError> {
        unsupported("a tuple")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, BindError> {
        unsupported("a tuple")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, BindError> {
        unsupported("an enum")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, BindError> {
        unsupported("a map")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, BindError> {
        unsupported("an enum")
    }
}

impl SerializeStruct for &mut RowBinder<'_, '_> {
    type Ok = ();
    type Error = BindError;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), BindError> {
        match self.columns.get(self.next) {
            Some(column) if *column == key => {}
            other => return Err(BindError(format!("field `{key}` where the insert has column {other:?}"))),
        }
        self.next += 1;
        value.serialize(ValueBinder { stmt: self.stmt, index: self.next })
    }

    fn end(self) -> Result<(), BindError> {
        Ok(())
    }
}

/// Binds one field's value to parameter `index`.
struct ValueBinder<'a, 'c> {
    stmt: &'a mut Statement<'c>,
    index: usize,
}

impl ValueBinder<'_, '_> {
    fn bind(self, value: impl rusqlite::ToSql) -> Result<(), BindError> {
        Ok(self.stmt.raw_bind_parameter(self.index, value)?)
    }
}

impl ser::Serializer for ValueBinder<'_, '_> {
    type Ok = ();
    type Error = BindError;
    type SerializeSeq = Impossible<(), BindError>;
    type SerializeTuple = Impossible<(), BindError>;
    type SerializeTupleStruct = Impossible<(), BindError>;
    type SerializeTupleVariant = Impossible<(), BindError>;
    type SerializeMap = Impossible<(), BindError>;
    type SerializeStruct = Impossible<(), BindError>;
    type SerializeStructVariant = Impossible<(), BindError>;

    fn serialize_bool(self, v: bool) -> Result<(), BindError> {
        self.bind(i64::from(v))
    }
    fn serialize_i8(self, v: i8) -> Result<(), BindError> {
        self.bind(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), BindError> {
        self.bind(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), BindError> {
        self.bind(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), BindError> {
        self.bind(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), BindError> {
        self.bind(i64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), BindError> {
        self.bind(i64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), BindError> {
        self.bind(i64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), BindError> {
        self.bind(i64::try_from(v).map_err(|_| BindError(format!("{v} does not fit a column")))?)
    }
    fn serialize_f32(self, v: f32) -> Result<(), BindError> {
        self.bind(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), BindError> {
        self.bind(v)
    }
    fn serialize_char(self, v: char) -> Result<(), BindError> {
        self.bind(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<(), BindError> {
        self.bind(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), BindError> {
        self.bind(v)
    }
    fn serialize_none(self) -> Result<(), BindError> {
        self.bind(rusqlite::types::Null)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), BindError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), BindError> {
        self.bind(rusqlite::types::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), BindError> {
        self.bind(rusqlite::types::Null)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), BindError> {
        self.bind(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, v: &T) -> Result<(), BindError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), BindError> {
        unsupported("an enum")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, BindError> {
        unsupported("a list")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, BindError> {
        unsupported("a tuple")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, BindError> {
        unsupported("a tuple")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, BindError> {
        unsupported("an enum")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, BindError> {
        unsupported("a map")
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, BindError> {
        unsupported("a nested struct")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, BindError> {
        unsupported("an enum")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Row<'a> {
        id: &'a str,
        n: i64,
        score: f64,
        note: Option<String>,
        flag: bool,
    }

    #[test]
    fn fields_bind_to_their_columns_and_a_mismatch_is_refused() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id TEXT, n INTEGER, score REAL, note TEXT, flag INTEGER)").unwrap();
        let columns = ["id", "n", "score", "note", "flag"];
        let mut stmt = conn.prepare("INSERT INTO t (id, n, score, note, flag) VALUES (?1, ?2, ?3, ?4, ?5)").unwrap();
        for row in [
            Row { id: "a\0b", n: i64::MAX, score: 0.5, note: None, flag: true },
            Row { id: "c", n: -1, score: 4.25, note: Some("x".into()), flag: false },
        ] {
            bind_row(&mut stmt, &columns, &row).unwrap();
            stmt.raw_execute().unwrap();
        }
        let rows: Vec<(String, i64, f64, Option<String>, i64)> = conn
            .prepare("SELECT id, n, score, note, flag FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows, [("a\0b".into(), i64::MAX, 0.5, None, 1), ("c".into(), -1, 4.25, Some("x".into()), 0)]);

        let swapped = ["n", "id", "score", "note", "flag"];
        assert!(bind_row(&mut stmt, &swapped, &Row { id: "d", n: 1, score: 0.0, note: None, flag: false }).is_err());
        assert!(
            bind_row(&mut stmt, &columns[..4], &Row { id: "d", n: 1, score: 0.0, note: None, flag: false }).is_err()
        );
    }
}
