//! The Sheets API's answers as they arrive on the wire: the spreadsheet's
//! metadata, one cell of a `values:batchGet`, and Google's error body.

use serde::Deserialize;
use serde_json::Value;

use crate::source::table::Cell;

/// The fields `spreadsheets.get` is asked for: the zone, and each tab's id,
/// title and height.
pub(super) const METADATA_FIELDS: &str = "properties.timeZone,sheets.properties(sheetId,title,gridProperties.rowCount)";

/// `spreadsheets.get` as masked by [`METADATA_FIELDS`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpreadsheetMetadata {
    pub(super) properties: SpreadsheetProperties,
    #[serde(default)]
    pub(super) sheets: Vec<SheetEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SpreadsheetProperties {
    pub(super) time_zone: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct SheetEntry {
    pub(super) properties: SheetProperties,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SheetProperties {
    pub(super) sheet_id: i64,
    pub(super) title: String,
    #[serde(default)]
    pub(super) grid_properties: Option<GridProperties>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GridProperties {
    pub(super) row_count: Option<usize>,
}

/// One cell of a `values:batchGet` answer, deserialized as it is read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SheetCell(pub(crate) Cell);

impl<'de> Deserialize<'de> for SheetCell {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CellVisitor)
    }
}

/// Numbers and booleans keep their type; strings go through the same rules
/// as CSV text; anything else (never sent with `UNFORMATTED_VALUE`) is read
/// as its text.
struct CellVisitor;

impl<'de> serde::de::Visitor<'de> for CellVisitor {
    type Value = SheetCell;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a spreadsheet cell value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<SheetCell, E> {
        // Sheets numbers are doubles; integers beyond 2^53 are not exact
        // there either.
        Ok(SheetCell(Cell::Number(value as f64)))
    }

    fn visit_u64<E>(self, value: u64) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::Number(value as f64)))
    }

    fn visit_f64<E>(self, value: f64) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::Number(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::text(value)))
    }

    fn visit_unit<E>(self) -> Result<SheetCell, E> {
        Ok(SheetCell(Cell::Empty))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<SheetCell, A::Error> {
        let mut parts = Vec::new();
        while let Some(value) = seq.next_element::<Value>()? {
            parts.push(value.to_string());
        }
        Ok(SheetCell(Cell::text(&format!("[{}]", parts.join(",")))))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<SheetCell, A::Error> {
        let value = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(SheetCell(Cell::text(&value.to_string())))
    }
}

/// Google's error body: `{"error": {"code", "message", "status", "details"}}`.
#[derive(Debug, Deserialize)]
pub(super) struct ErrorBody {
    pub(super) error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
pub(super) struct ErrorDetail {
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) details: Vec<Value>,
}

/// A 403 that is about the project (API not enabled), not about sharing.
pub(super) fn api_disabled(detail: &ErrorDetail) -> bool {
    let details = serde_json::to_string(&detail.details).unwrap_or_default();
    details.contains("SERVICE_DISABLED")
        || detail.message.contains("has not been used in project")
        || detail.message.contains("is disabled")
}

/// A 403 because the token lacks the Sheets scope (a default gcloud login,
/// a VM's access scopes).
pub(super) fn scope_insufficient(detail: &ErrorDetail) -> bool {
    let details = serde_json::to_string(&detail.details).unwrap_or_default();
    details.contains("ACCESS_TOKEN_SCOPE_INSUFFICIENT") || detail.message.contains("insufficient authentication scopes")
}

/// A 400 because the "spreadsheet" is an Office file uploaded to Drive and
/// never converted, which the Sheets API does not read.
pub(super) fn office_file(detail: &ErrorDetail) -> bool {
    detail
        .message
        .contains("This operation is not supported for this document")
}
