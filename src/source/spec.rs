//! Where a view's rows come from: its `sheet_url` (or its config override)
//! classified once into a [`SourceSpec`].

use std::path::PathBuf;

use reqwest::Url;
use serde::Serialize;

use crate::redact::redact_url;

/// Where one view reads its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A file on this host: a CSV export or a workbook (`.xlsx`, `.xls`,
    /// `.ods`...), told apart by its content when it is read. `sheet_name`
    /// chooses a workbook's tab.
    File { path: PathBuf, sheet_name: Option<String> },
    /// A CSV export or a workbook served over HTTP(S), including Google's
    /// public CSV export links.
    Download { url: String, sheet_name: Option<String> },
    /// A tab of a Google spreadsheet, read through the Sheets API.
    GoogleSheet(SheetRef),
}

/// A tab of a Google spreadsheet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SheetRef {
    pub spreadsheet_id: String,
    /// The tab named by the URL's `gid`, used when no sheet name is set.
    pub gid: Option<i64>,
    /// The tab's title; when absent, the `gid` tab, else the first tab.
    pub sheet_name: Option<String>,
}

/// The two kinds the schema's `data_metadata.source_type` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    Csv,
    GoogleSheets,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Csv => "csv",
            SourceType::GoogleSheets => "google_sheets",
        }
    }
}

/// A source that is none of the kinds sheetsync reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source {0:?} is neither a file:// path, an http(s) URL nor a Google Sheets link or ID")]
pub struct UnrecognisedSource(pub String);

impl SourceSpec {
    /// Classifies a view's source. `sheet_name` is the view's tab, which
    /// Google Sheets and workbooks use (a CSV export has one table).
    pub fn parse(source: &str, sheet_name: Option<&str>) -> Result<SourceSpec, UnrecognisedSource> {
        let source = source.trim();
        let sheet_name = sheet_name
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned);
        if let Some(path) = source.strip_prefix("file://") {
            return Ok(SourceSpec::File {
                path: PathBuf::from(path),
                sheet_name,
            });
        }
        if source.starts_with('/') || source.starts_with("./") {
            return Ok(SourceSpec::File {
                path: PathBuf::from(source),
                sheet_name,
            });
        }
        if is_spreadsheet_id(source) {
            return Ok(SourceSpec::GoogleSheet(SheetRef {
                spreadsheet_id: source.to_owned(),
                gid: None,
                sheet_name,
            }));
        }
        let url = Url::parse(source).map_err(|_| UnrecognisedSource(redact_url(source)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UnrecognisedSource(redact_url(source)));
        }
        match google_spreadsheet_id(&url) {
            Some(id) if !is_csv_export(&url) => Ok(SourceSpec::GoogleSheet(SheetRef {
                spreadsheet_id: id,
                gid: gid_of(&url),
                sheet_name,
            })),
            _ => Ok(SourceSpec::Download {
                url: source.to_owned(),
                sheet_name,
            }),
        }
    }

    pub fn source_type(&self) -> SourceType {
        match self {
            // The schema knows two kinds: a workbook file is a file export.
            SourceSpec::File { .. } | SourceSpec::Download { .. } => SourceType::Csv,
            SourceSpec::GoogleSheet(_) => SourceType::GoogleSheets,
        }
    }

    /// The source as an operator would recognise it, secrets redacted.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::File { path, .. } => format!("file://{}", path.display()),
            SourceSpec::Download { url, .. } => redact_url(url),
            SourceSpec::GoogleSheet(sheet) => {
                let tab = match (&sheet.sheet_name, sheet.gid) {
                    (Some(name), _) => format!("tab {name:?}"),
                    (None, Some(gid)) => format!("tab gid={gid}"),
                    (None, None) => "first tab".to_owned(),
                };
                format!("Google spreadsheet {} ({tab})", sheet.spreadsheet_id)
            }
        }
    }
}

/// Spreadsheet IDs are long runs of URL-safe base64 characters.
fn is_spreadsheet_id(text: &str) -> bool {
    text.len() >= 25 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `ID` from `https://docs.google.com/spreadsheets/d/ID/...`, or from a
/// Drive link to a file (`https://drive.google.com/file/d/ID/view`,
/// `…/open?id=ID`): an Office file uploaded to Drive is shared that way, and
/// is read through the Google path (`[google] office_files`).
fn google_spreadsheet_id(url: &Url) -> Option<String> {
    match url.host_str() {
        Some("docs.google.com") => {}
        Some("drive.google.com") => {
            // `/open?id=ID` only: `/uc?export=download&id=ID` is a public
            // download link, read as a download.
            let from_query = (url.path() == "/open")
                .then(|| url.query_pairs().find(|(name, _)| name == "id"))
                .flatten()
                .map(|(_, id)| id.into_owned())
                .filter(|id| is_spreadsheet_id(id));
            if from_query.is_some() {
                return from_query;
            }
        }
        _ => return None,
    }
    let mut segments = url.path_segments()?;
    while let Some(segment) = segments.next() {
        if segment == "d" {
            return segments.next().filter(|id| !id.is_empty()).map(str::to_owned);
        }
    }
    None
}

/// `/export?format=csv` and `/gviz/tq?tqx=out:csv` links are public CSV.
pub(super) fn is_csv_export(url: &Url) -> bool {
    let path = url.path();
    let query = url.query().unwrap_or("");
    (path.ends_with("/export") && query.contains("format=csv"))
        || (path.contains("/gviz/tq") && query.contains("out:csv"))
}

/// The tab id from `?gid=N` or `#gid=N`.
fn gid_of(url: &Url) -> Option<i64> {
    let from_query = url
        .query_pairs()
        .find(|(name, _)| name == "gid")
        .and_then(|(_, value)| value.parse().ok());
    from_query.or_else(|| {
        url.fragment()?
            .split('&')
            .find_map(|part| part.strip_prefix("gid=")?.parse().ok())
    })
}

/// The tab a hand-typed `sheet_name` means: the exact title first, else
/// one that differs only in case or surrounding spaces. One rule for
/// Google spreadsheets and workbooks alike.
pub(super) fn find_tab<'a>(titles: impl Iterator<Item = &'a str> + Clone, wanted: &str) -> Option<&'a str> {
    titles.clone().find(|title| *title == wanted).or_else(|| {
        titles
            .into_iter()
            .find(|title| title.trim().eq_ignore_ascii_case(wanted.trim()))
    })
}

pub(super) fn google_sheet(spec: &SourceSpec) -> Option<&SheetRef> {
    match spec {
        SourceSpec::GoogleSheet(sheet) => Some(sheet),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1HJSHVRBKbwJ199VxJCioSOTz4gI9KrSniXKwAjcU3bI";

    fn sheet(gid: Option<i64>, sheet_name: Option<&str>) -> SourceSpec {
        SourceSpec::GoogleSheet(SheetRef {
            spreadsheet_id: ID.to_owned(),
            gid,
            sheet_name: sheet_name.map(str::to_owned),
        })
    }

    fn file(path: &str, sheet_name: Option<&str>) -> SourceSpec {
        SourceSpec::File {
            path: path.into(),
            sheet_name: sheet_name.map(str::to_owned),
        }
    }

    fn download(url: &str, sheet_name: Option<&str>) -> SourceSpec {
        SourceSpec::Download {
            url: url.to_owned(),
            sheet_name: sheet_name.map(str::to_owned),
        }
    }

    #[test]
    fn classifies_every_link_form() {
        let base = format!("https://docs.google.com/spreadsheets/d/{ID}");
        let cases = [
            (format!("{base}/edit#gid=42"), None, sheet(Some(42), None)),
            (
                format!("{base}/edit?usp=sharing"),
                Some("Sheet1"),
                sheet(None, Some("Sheet1")),
            ),
            (format!("{base}/edit?gid=7#gid=7"), Some("  "), sheet(Some(7), None)),
            (ID.to_owned(), Some("Q1 pipeline"), sheet(None, Some("Q1 pipeline"))),
            (
                format!("{base}/export?format=csv&gid=3"),
                None,
                download(&format!("{base}/export?format=csv&gid=3"), None),
            ),
            (
                format!("{base}/gviz/tq?tqx=out:csv&sheet=Q1"),
                None,
                download(&format!("{base}/gviz/tq?tqx=out:csv&sheet=Q1"), None),
            ),
            (
                "file:///data/signal.csv".to_owned(),
                None,
                file("/data/signal.csv", None),
            ),
            (
                "/data/deals.xlsx".to_owned(),
                Some(" Q1 "),
                file("/data/deals.xlsx", Some("Q1")),
            ),
            (
                "https://exports.example.com/a.csv".to_owned(),
                None,
                download("https://exports.example.com/a.csv", None),
            ),
            (
                format!("https://drive.google.com/file/d/{ID}/view?usp=sharing"),
                Some("Deals"),
                sheet(None, Some("Deals")),
            ),
            (
                format!("https://drive.google.com/open?id={ID}"),
                None,
                sheet(None, None),
            ),
            (
                format!("https://drive.google.com/uc?export=download&id={ID}"),
                None,
                download(&format!("https://drive.google.com/uc?export=download&id={ID}"), None),
            ),
            (
                "https://exports.example.com/a.xlsx".to_owned(),
                Some("Deals"),
                download("https://exports.example.com/a.xlsx", Some("Deals")),
            ),
        ];
        for (source, sheet_name, expected) in cases {
            assert_eq!(
                SourceSpec::parse(&source, sheet_name).unwrap(),
                expected,
                "classifying {source}"
            );
        }
        assert!(SourceSpec::parse("ftp://example.com/a.csv", None).is_err());
        assert!(SourceSpec::parse("not a source", None).is_err());
    }

    #[test]
    fn source_types_follow_the_schema() {
        assert_eq!(sheet(None, None).source_type().as_str(), "google_sheets");
        assert_eq!(file("/a", None).source_type().as_str(), "csv");
    }
}
