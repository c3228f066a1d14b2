//! The one paged list: a count and a page of the same filtered rows, and the
//! answer every list route gives (`items`, `total`, `limit`, `offset`).

use friendship_queries::Read;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use spin_sdk::pg4::ParameterValue as P;

use crate::db::{Db, DbError};
use crate::http::Page;

/// A page of a list and the size of the whole list.
#[derive(Debug, Serialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// Runs `count` with `filters`, and `list` with `filters` then the page's
/// `limit` and `offset` (the list statement's last two parameters).
pub fn paged<T: DeserializeOwned>(
    db: &Db,
    count: &Read,
    list: &Read,
    filters: Vec<P>,
    page: Page,
) -> Result<Paged<T>, DbError> {
    #[derive(Deserialize)]
    struct Count {
        total: i64,
    }
    let total = db.read_single::<Count>(count, &filters)?.total;
    let mut params = filters;
    params.extend([P::Int64(page.limit), P::Int64(page.offset)]);
    Ok(Paged {
        items: db.read(list, &params)?,
        total,
        limit: page.limit,
        offset: page.offset,
    })
}
