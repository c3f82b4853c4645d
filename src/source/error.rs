//! Why a source could not be read: one error for every kind of source.

use super::csv::CsvError;
use super::policy::PolicyError;
use super::sheets::SheetsError;
use super::spec::UnrecognisedSource;
use super::spool::SpoolError;
use super::workbook::WorkbookError;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Unrecognised(#[from] UnrecognisedSource),
    #[error("cannot download {url}: {message}")]
    Http { url: String, message: String },
    #[error("{url} answered HTTP {status}; check that the link is public and still valid")]
    HttpStatus { url: String, status: u16 },
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error(transparent)]
    Sheets(#[from] SheetsError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Workbook(#[from] WorkbookError),
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
    /// Something sheetsync itself got wrong (a reader thread that panicked,
    /// a result missing from a batch): not about the source.
    #[error("internal error: {0}; the next sync tries again, and a report of it is welcome")]
    Internal(String),
    #[error(transparent)]
    Refused(#[from] PolicyError),
    #[error(
        "{url} is larger than [sources] max_download_bytes ({limit} bytes); raise the limit if this export is \
         meant to be that large"
    )]
    TooLarge { url: String, limit: u64 },
}
