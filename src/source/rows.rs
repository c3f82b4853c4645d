//! A source's rows once fetched, and one pass over them: the mapping reads
//! a source several times, never holding it whole.

use super::csv::{CsvRows, CsvSource};
use super::error::SourceError;
use super::spool::{SpoolPass, SpooledRows};
use super::table::{Cell, Row, Table};
use crate::concurrency::Threading;

/// A source's rows, fetched and ready to be read in passes.
#[derive(Debug)]
pub enum SourceRows {
    /// Rows built in memory (tests, small tables).
    Table(Table),
    /// Rows an API sent (Google Sheets), spooled to a temporary file as they
    /// arrived and read back on each pass.
    Spooled(SpooledRows),
    /// A CSV export, parsed anew on each pass so it is never held as cells.
    Csv(CsvSource),
}

impl SourceRows {
    /// Starts a pass over the rows, threaded as this process's cores allow
    /// (see [`Threading`]).
    pub fn rows(&self) -> Result<RowReader<'_>, SourceError> {
        self.rows_in(Threading::of_this_process())
    }

    /// Starts a pass over the rows, on the calling thread alone or with
    /// threads of its own.
    pub fn rows_in(&self, threading: Threading) -> Result<RowReader<'_>, SourceError> {
        let pass = match self {
            SourceRows::Table(table) => Pass::Table {
                rows: table.rows.iter(),
                blank_rows: table.blank_rows,
            },
            SourceRows::Spooled(spooled) => Pass::Spooled {
                pass: Box::new(spooled.rows()),
                blank_rows: spooled.blank_rows(),
            },
            SourceRows::Csv(source) => Pass::Csv(Box::new(source.rows(threading)?)),
        };
        Ok(RowReader { pass, threading })
    }

    /// A SHA-256 of the rows as read (every cell, with its row number; for
    /// a CSV export, its bytes, which decide both) and of what else decides
    /// their reading (the zone of date serials), in hex: equal for a source
    /// that did not change, across runs and processes. One pass over the
    /// rows, or over the bytes. `recipe` (what else decides the
    /// outcome: the target, the reading settings) is digested first.
    pub fn digest(&self, recipe: &str) -> Result<String, SourceError> {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(&(recipe.len() as u64).to_le_bytes());
        context.update(recipe.as_bytes());
        let zone = self
            .serial_time_zone()
            .map(|zone| zone.name().to_owned())
            .unwrap_or_default();
        context.update(zone.as_bytes());
        context.update(&[0]);
        if let SourceRows::Csv(source) = self {
            source.feed_digest(&mut context)?;
            return Ok(hex(context.finish().as_ref()));
        }
        let mut rows = self.rows()?;
        while let Some(row) = rows.next_row() {
            let row = row?;
            context.update(&(row.number as u64).to_le_bytes());
            context.update(&(row.cells.len() as u64).to_le_bytes());
            for cell in &row.cells {
                match cell {
                    Cell::Empty => context.update(&[0]),
                    Cell::Text(text) => {
                        context.update(&[1]);
                        context.update(&(text.len() as u64).to_le_bytes());
                        context.update(text.as_bytes());
                    }
                    Cell::Number(number) => {
                        context.update(&[2]);
                        context.update(&number.to_bits().to_le_bytes());
                    }
                    Cell::Bool(flag) => context.update(&[3, u8::from(*flag)]),
                    Cell::Fault(fault) => context.update(&[4, fault.code()]),
                    Cell::Link { text, target } => {
                        context.update(&[5]);
                        for part in [text, target] {
                            context.update(&(part.len() as u64).to_le_bytes());
                            context.update(part.as_bytes());
                        }
                    }
                }
            }
        }
        Ok(hex(context.finish().as_ref()))
    }

    /// About how many rows a pass reads: exact for rows held or spooled,
    /// a guess from its length for a CSV export. For sizing what a pass
    /// fills (a map per key grown by doubling moves every entry each time).
    pub fn expected_rows(&self) -> usize {
        match self {
            SourceRows::Table(table) => table.rows.len(),
            SourceRows::Spooled(spooled) => spooled.len(),
            SourceRows::Csv(source) => source.expected_rows(),
        }
    }

    /// The Google Sheets tab read (its `gid`), if the rows come from one.
    pub fn tab_gid(&self) -> Option<i64> {
        match self {
            SourceRows::Table(table) => table.tab_gid,
            SourceRows::Spooled(spooled) => spooled.tab_gid,
            SourceRows::Csv(_) => None,
        }
    }

    /// The zone in which numeric date cells (spreadsheet serials) are read.
    pub fn serial_time_zone(&self) -> Option<chrono_tz::Tz> {
        match self {
            SourceRows::Table(table) => table.serial_time_zone,
            SourceRows::Spooled(spooled) => spooled.serial_time_zone,
            SourceRows::Csv(_) => None,
        }
    }
}

/// One pass over a source's non-blank rows. Each row is lent until the
/// next: the readers refill the same buffers rather than allocating a row
/// of cells per line.
pub struct RowReader<'a> {
    pass: Pass<'a>,
    threading: Threading,
}

enum Pass<'a> {
    Table {
        rows: std::slice::Iter<'a, Row>,
        blank_rows: usize,
    },
    /// Boxed: a pass carries its read buffer.
    Spooled { pass: Box<SpoolPass>, blank_rows: usize },
    /// Boxed: a CSV pass carries the parser's buffers.
    Csv(Box<CsvRows>),
}

impl RowReader<'_> {
    pub fn next_row(&mut self) -> Option<Result<&Row, SourceError>> {
        match &mut self.pass {
            Pass::Table { rows, .. } => rows.next().map(Ok),
            Pass::Spooled { pass, .. } => pass.next_row().map(|row| row.map_err(SourceError::from)),
            Pass::Csv(rows) => rows.next_row().map(|row| row.map_err(SourceError::from)),
        }
    }

    /// Whether the rows read from this pass may be spread over threads.
    pub fn threading(&self) -> Threading {
        self.threading
    }

    /// Blank rows skipped so far (all of them, once the pass is over).
    pub fn blank_rows(&self) -> usize {
        match &self.pass {
            Pass::Table { blank_rows, .. } | Pass::Spooled { blank_rows, .. } => *blank_rows,
            Pass::Csv(rows) => rows.blank_rows(),
        }
    }

    /// Up to `max` rows, owned, to be handed to another thread; empty at the
    /// end. A threaded CSV pass hands over the batches its parser thread
    /// made.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<Row>, SourceError> {
        if let Pass::Csv(rows) = &mut self.pass
            && let Some(batch) = rows.next_batch()
        {
            return Ok(batch?);
        }
        let mut batch = Vec::with_capacity(max);
        while batch.len() < max {
            match self.next_row() {
                Some(row) => batch.push(row?.clone()),
                None => break,
            }
        }
        Ok(batch)
    }

    /// Where batches taken with [`RowReader::next_batch`] can be given back
    /// once read, for their buffers to be refilled.
    pub fn recycler(&self) -> Option<std::sync::mpsc::SyncSender<Vec<Row>>> {
        match &self.pass {
            Pass::Csv(rows) => rows.recycler(),
            _ => None,
        }
    }
}

/// Bytes as lower-case hexadecimal.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> SourceRows {
        SourceRows::Csv(CsvSource::from_bytes(text.as_bytes().to_vec(), "test.csv"))
    }

    #[test]
    fn a_csv_digest_follows_its_bytes_and_the_recipe() {
        let text = "Client,Stage\nAcme,Won\nBeta,Lost\n";
        let digest = csv(text).digest("recipe").unwrap();
        assert_eq!(digest.len(), 64);
        assert_eq!(digest, csv(text).digest("recipe").unwrap());
        assert_ne!(digest, csv(text).digest("another recipe").unwrap());
        assert_ne!(
            digest,
            csv("Client,Stage\nAcme,Won\nBeta,Lose\n").digest("recipe").unwrap()
        );
        // The same cells on other lines are other rows: the bytes differ.
        assert_ne!(
            digest,
            csv("Client,Stage\n\nAcme,Won\nBeta,Lost\n").digest("recipe").unwrap()
        );
    }

    #[test]
    fn a_file_rewritten_after_its_sniff_is_not_digested() {
        use std::io::Write as _;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"Client,Stage\nAcme,Won\n").unwrap();
        let source = SourceRows::Csv(CsvSource::from_file(file.reopen().unwrap(), "test.csv").unwrap());
        assert!(source.digest("recipe").is_ok());
        file.write_all(b"Beta,Lost\n").unwrap();
        assert!(source.digest("recipe").is_err());
    }
}
