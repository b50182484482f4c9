//! Cursor lists of API.md §1: `?limit=1..100` (default 20), `?cursor=<id>`, newest first.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1..100 (default 20).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

pub struct Page {
    pub limit: i64,
    pub before: Option<String>,
}

impl ListParams {
    /// Validates the page; `cursor_ok` says whether the cursor has this list's id form.
    pub fn page(&self, cursor_ok: impl Fn(&str) -> bool) -> Result<Page, ApiError> {
        let limit = match self.limit.as_deref() {
            None => 20,
            Some(raw) => raw.parse::<i64>().ok().filter(|l| (1..=100).contains(l)).ok_or_else(|| {
                ApiError::bad_request("limit must be a whole number from 1 to 100").with_param("limit")
            })?,
        };
        let before = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) if cursor_ok(c) => Some(c.to_owned()),
            Some(_) => return Err(ApiError::bad_request("cursor is not a cursor of this list").with_param("cursor")),
        };
        Ok(Page { limit, before })
    }
}

impl Page {
    /// The query limit: one more row than the page to learn whether another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }
    pub fn before(&self) -> Option<&str> {
        self.before.as_deref()
    }
    pub fn finish<R, T>(&self, rows: Vec<R>, id: impl Fn(&R) -> String, out: impl Fn(R) -> T) -> List<T> {
        let (rows, next) = sendmux_core::store::page(rows, self.limit as usize, id);
        List { data: rows.into_iter().map(out).collect(), next_cursor: next }
    }
}

#[derive(Serialize, ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
