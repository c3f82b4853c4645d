//! Reading tabs page by page, each answer parsed as it arrives.
//!
//! A `values:batchGet` answer is read chunk by chunk from the network and
//! handed, through a small bounded channel, to a parser on a blocking
//! thread: a streaming serde visitor walks `valueRanges` -> rows -> cells and
//! writes each row to its tab's [`RowSpool`] as soon as it is complete. No
//! JSON value tree is built, the body is never held whole, and memory holds
//! a few network chunks and one row, whatever the page size.
//!
//! Google answers the ranges in the order they were asked (documented for
//! `valueRanges`), so each answer range is the page of the tab at the same
//! position; its `range` is checked against the page asked for.

use std::fmt;
use std::io::{self, Read};

use bytes::Bytes;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio::sync::mpsc;

use super::a1::{self, Page};
use super::body::transport_reason;
use super::error::SheetsError;
use super::transport::{AnswerFailure, ReadAnswer};
use super::wire::SheetCell;
use crate::source::spool::{Mark, RowSpool, SpoolError, SpooledRows};
use crate::source::table::Cell;

/// Network chunks in flight between the download and the parser.
const CHANNEL_CHUNKS: usize = 8;
/// The parser's read buffer.
const PARSE_BUFFER: usize = 64 * 1024;

/// A tab being read: its pages and the rows read so far.
#[derive(Debug)]
pub struct TabPages {
    pub title: String,
    pub pages: Vec<Page>,
    spool: RowSpool,
    /// The row after the last one read; rows Google leaves out between two
    /// pages (empty rows ending a page) are counted as blank, as a read of
    /// the whole tab counts them.
    next_row: Option<usize>,
    /// Where the current round started, to go back to when it is retried.
    round_start: (Mark, Option<usize>),
    /// Reused for each row's cells.
    cells: Vec<Cell>,
}

impl TabPages {
    pub fn new(title: &str, pages: Vec<Page>, location: &str) -> TabPages {
        let spool = RowSpool::new(location);
        TabPages {
            title: title.to_owned(),
            pages,
            round_start: (spool.mark(), None),
            spool,
            next_row: None,
            cells: Vec::new(),
        }
    }

    /// Starts a round: what it writes can be taken back by [`Self::restart_round`].
    pub fn start_round(&mut self) {
        self.round_start = (self.spool.mark(), self.next_row);
    }

    /// Forgets what the current round wrote (an answer cut off, read again).
    pub fn restart_round(&mut self) -> Result<(), SpoolError> {
        let (mark, next_row) = self.round_start;
        self.spool.rollback(mark)?;
        self.next_row = next_row;
        Ok(())
    }

    pub fn finish(self) -> Result<SpooledRows, SpoolError> {
        self.spool.finish()
    }
}

/// Reads one `values:batchGet` answer into `tabs` (their `round`-th pages, in
/// the order asked), parsing it on a blocking thread as the chunks arrive.
/// The tabs are handed back with the outcome; a failed round is restarted
/// with [`TabPages::restart_round`] before it is read again.
pub async fn read_answer(
    response: &mut reqwest::Response,
    mut tabs: Vec<TabPages>,
    (spreadsheet_id, round): (&str, usize),
    call: &str,
    max_bytes: u64,
) -> (Option<Vec<TabPages>>, Result<TabOutcomes, AnswerFailure>) {
    let (sender, receiver) = mpsc::channel::<Result<Bytes, String>>(CHANNEL_CHUNKS);
    let (owned_id, owned_call) = (spreadsheet_id.to_owned(), call.to_owned());
    let parser = tokio::task::spawn_blocking(move || {
        let reader = io::BufReader::with_capacity(PARSE_BUFFER, ChunkReader::new(receiver));
        let outcome = parse_answer(reader, &mut tabs, round, &owned_id, &owned_call);
        (tabs, outcome)
    });
    let mut received = 0u64;
    let mut stopped: Option<AnswerFailure> = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                received += chunk.len() as u64;
                if received > max_bytes {
                    let _ = sender.send(Err("answer too large".to_owned())).await;
                    stopped = Some(AnswerFailure::Failed(SheetsError::Malformed {
                        call: call.to_owned(),
                        message: format!(
                            "the answer is larger than [sources] max_download_bytes ({max_bytes} bytes); lower \
                             [google] page_rows or raise the limit"
                        ),
                    }));
                    break;
                }
                // A closed channel means the parser stopped: its outcome says why.
                if sender.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(error) => {
                let reason = transport_reason(error);
                let _ = sender.send(Err(reason.clone())).await;
                stopped = Some(AnswerFailure::Transport(reason));
                break;
            }
        }
    }
    drop(sender);
    let (tabs, parsed) = match parser.await {
        Ok((tabs, parsed)) => (Some(tabs), parsed),
        Err(error) => (
            None,
            Err(SheetsError::Malformed {
                call: call.to_owned(),
                message: format!("the answer's parser stopped: {error}"),
            }),
        ),
    };
    let outcome = match stopped {
        Some(failure) => Err(failure),
        None => parsed.map_err(AnswerFailure::Failed),
    };
    (tabs, outcome)
}

/// A `Read` over the chunks the download sends; a transport failure
/// arrives as an error and ends the parse.
struct ChunkReader {
    chunks: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl ChunkReader {
    fn new(chunks: mpsc::Receiver<Result<Bytes, String>>) -> ChunkReader {
        ChunkReader {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(reason)) => return Err(io::Error::other(reason)),
                None => return Ok(0),
            }
        }
        let count = buffer.len().min(self.current.len());
        buffer[..count].copy_from_slice(&self.current[..count]);
        bytes::Buf::advance(&mut self.current, count);
        Ok(count)
    }
}

/// What every level of the parse needs to know.
struct Context<'a> {
    spreadsheet_id: &'a str,
    round: usize,
    /// A failure of the whole answer that is not about JSON syntax (a spool
    /// write), kept here because serde's errors carry only text.
    problem: Option<SheetsError>,
    /// Per tab, why its page is not in the answer: only that tab fails.
    tab_failures: Vec<Option<SheetsError>>,
}

impl Context<'_> {
    fn missing_range(&mut self, index: usize, tab: &TabPages) {
        let failure = SheetsError::MissingRange {
            spreadsheet_id: self.spreadsheet_id.to_owned(),
            range: tab
                .pages
                .get(self.round)
                .map_or_else(|| tab.title.clone(), |page| page.range.clone()),
        };
        if let Some(slot) = self.tab_failures.get_mut(index) {
            slot.get_or_insert(failure);
        }
    }
}

/// Per tab of an answer, `None` when its page was read, else why not.
pub type TabOutcomes = Vec<Option<SheetsError>>;

/// Parses a whole answer from `reader` into the tabs' spools.
fn parse_answer(
    reader: impl Read,
    tabs: &mut [TabPages],
    round: usize,
    spreadsheet_id: &str,
    call: &str,
) -> Result<TabOutcomes, SheetsError> {
    let mut context = Context {
        spreadsheet_id,
        round,
        problem: None,
        tab_failures: tabs.iter().map(|_| None).collect(),
    };
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let seed = AnswerSeed {
        tabs,
        context: &mut context,
    };
    let parsed = seed.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    match (context.problem, parsed) {
        (Some(problem), _) => Err(problem),
        (None, Ok(())) => Ok(context.tab_failures),
        (None, Err(error)) => Err(SheetsError::Malformed {
            call: call.to_owned(),
            message: error.to_string(),
        }),
    }
}

/// The answer object: only `valueRanges` is read.
struct AnswerSeed<'a, 'c> {
    tabs: &'a mut [TabPages],
    context: &'a mut Context<'c>,
}

impl<'de> DeserializeSeed<'de> for AnswerSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnswerSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a values:batchGet answer")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut answered = 0;
        while let Some(key) = map.next_key::<String>()? {
            if key == "valueRanges" {
                answered = map.next_value_seed(RangesSeed {
                    tabs: &mut *self.tabs,
                    context: &mut *self.context,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        for (index, missing) in self.tabs.iter().enumerate().skip(answered) {
            self.context.missing_range(index, missing);
        }
        Ok(())
    }
}

/// `valueRanges`: one range per tab, in the order asked. Returns how many
/// ranges were read.
struct RangesSeed<'a, 'c> {
    tabs: &'a mut [TabPages],
    context: &'a mut Context<'c>,
}

impl<'de> DeserializeSeed<'de> for RangesSeed<'_, '_> {
    type Value = usize;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RangesSeed<'_, '_> {
    type Value = usize;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a list of value ranges")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut index = 0;
        loop {
            let Some(tab) = self.tabs.get_mut(index) else {
                // More ranges than asked for: not an answer to this request.
                return match seq.next_element::<IgnoredAny>()? {
                    Some(_) => Err(A::Error::custom("the answer has more ranges than were asked for")),
                    None => Ok(index),
                };
            };
            let seed = RangeSeed {
                index,
                tab,
                context: &mut *self.context,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(index);
            }
            index += 1;
        }
    }
}

/// One value range: its `range`, checked, and its `values`, spooled.
struct RangeSeed<'a, 'c> {
    index: usize,
    tab: &'a mut TabPages,
    context: &'a mut Context<'c>,
}

impl<'de> DeserializeSeed<'de> for RangeSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RangeSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a value range")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(page) = self.tab.pages.get(self.context.round).cloned() else {
            return Err(A::Error::custom("a range for a tab with no page left"));
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "range" => {
                    let range = map.next_value::<String>()?;
                    // Another tab's range: this tab's page is missing, and
                    // rows already read under it are dropped with the tab.
                    if a1::split_range(&range) != (self.tab.title.clone(), page.first_row) {
                        self.context.missing_range(self.index, self.tab);
                    }
                }
                "values" if self.context.tab_failures[self.index].is_some() => {
                    map.next_value::<IgnoredAny>()?;
                }
                "values" => map.next_value_seed(RowsSeed {
                    tab: &mut *self.tab,
                    first_row: page.first_row,
                    context: &mut *self.context,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A page's rows, each spooled as soon as its cells are read.
struct RowsSeed<'a, 'c> {
    tab: &'a mut TabPages,
    first_row: usize,
    context: &'a mut Context<'c>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("rows of cells")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let tab = self.tab;
        let mut number = self.first_row;
        let mut cells = std::mem::take(&mut tab.cells);
        while seq.next_element_seed(RowSeed { cells: &mut cells })?.is_some() {
            if number == self.first_row
                && let Some(next) = tab.next_row.filter(|next| self.first_row > *next)
            {
                tab.spool.add_blank_rows(self.first_row - next);
            }
            if let Err(error) = tab.spool.push(number, &cells) {
                self.context.problem = Some(SheetsError::Spool(error.to_string()));
                return Err(A::Error::custom("the rows could not be spooled"));
            }
            number += 1;
        }
        if number > self.first_row {
            tab.next_row = Some(number);
        }
        tab.cells = cells;
        Ok(())
    }
}

/// One row: its cells, typed, into a reused buffer.
struct RowSeed<'a> {
    cells: &'a mut Vec<Cell>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a row of cells")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.cells.clear();
        while let Some(SheetCell(cell)) = seq.next_element()? {
            self.cells.push(cell);
        }
        Ok(())
    }
}

/// A round of pages, streamed into the tabs' spools. A retried round first
/// forgets what the failed attempt wrote.
pub(super) struct PagesAnswer<'a> {
    /// `None` only if the parser panicked, losing them.
    pub(super) tabs: Option<Vec<TabPages>>,
    pub(super) spreadsheet_id: &'a str,
    pub(super) round: usize,
    pub(super) max_bytes: u64,
}

impl ReadAnswer for PagesAnswer<'_> {
    type Output = TabOutcomes;

    async fn read(&mut self, mut response: reqwest::Response, call: &str) -> Result<TabOutcomes, AnswerFailure> {
        let failed = |message: String| {
            AnswerFailure::Failed(SheetsError::Malformed {
                call: call.to_owned(),
                message,
            })
        };
        let mut tabs = self
            .tabs
            .take()
            .ok_or_else(|| failed("the answer's parser stopped".to_owned()))?;
        for tab in &mut tabs {
            tab.restart_round()
                .map_err(|error| AnswerFailure::Failed(SheetsError::Spool(error.to_string())))?;
        }
        let (tabs, outcome) = read_answer(
            &mut response,
            tabs,
            (self.spreadsheet_id, self.round),
            call,
            self.max_bytes,
        )
        .await;
        self.tabs = tabs;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::table::Row;
    use serde_json::json;

    fn tab(title: &str, pages: Vec<Page>) -> TabPages {
        TabPages::new(title, pages, "test")
    }

    fn rows_of(tab: TabPages) -> (Vec<Row>, usize) {
        let spooled = tab.finish().unwrap();
        let mut pass = spooled.rows();
        let mut rows = Vec::new();
        while let Some(row) = pass.next_row() {
            rows.push(row.unwrap().clone());
        }
        (rows, spooled.blank_rows())
    }

    /// Parses an answer that must read every tab.
    fn parse(answer: serde_json::Value, tabs: &mut [TabPages], round: usize) -> Result<(), SheetsError> {
        let outcomes = parse_bytes(answer.to_string().as_bytes(), tabs, round)?;
        match outcomes.into_iter().flatten().next() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    fn parse_bytes(answer: &[u8], tabs: &mut [TabPages], round: usize) -> Result<TabOutcomes, SheetsError> {
        parse_answer(answer, tabs, round, "sheet-id", "values:batchGet")
    }

    #[test]
    fn keeps_types_and_numbers_rows_and_counts_blank_ones() {
        let mut tabs = vec![tab("It's Q1", a1::pages("It's Q1", Some(9), 100))];
        let answer = json!({
            "spreadsheetId": "x",
            "valueRanges": [{
                "range": "'It''s Q1'!A1:C9",
                "majorDimension": "ROWS",
                "values": [
                    ["Client", "Stage", "Pipeline"],
                    ["Acme", "Lost"],
                    [],
                    ["  ", null],
                    ["Globex", true, 1234.5],
                ],
            }],
        });
        parse(answer, &mut tabs, 0).unwrap();
        let (rows, blank) = rows_of(tabs.pop().unwrap());
        assert_eq!(blank, 2);
        assert_eq!(rows.iter().map(|row| row.number).collect::<Vec<_>>(), vec![1, 2, 5]);
        assert_eq!(rows[1].cells, vec![Cell::text("Acme"), Cell::text("Lost")]);
        assert_eq!(
            rows[2].cells,
            vec![Cell::Text("Globex".into()), Cell::Bool(true), Cell::Number(1234.5)]
        );
    }

    #[test]
    fn values_before_the_range_and_gaps_between_pages() {
        let pages = a1::pages("T", Some(6), 3);
        let mut tabs = vec![tab("T", pages)];
        // Google ends the first page early (its last row is empty).
        parse(
            json!({"valueRanges": [{"values": [["a"], ["b"]], "range": "T!A1:A3"}]}),
            &mut tabs,
            0,
        )
        .unwrap();
        tabs[0].start_round();
        parse(
            json!({"valueRanges": [{"range": "T!A4:A6", "values": [["c"]]}]}),
            &mut tabs,
            1,
        )
        .unwrap();
        let (rows, blank) = rows_of(tabs.pop().unwrap());
        assert_eq!(rows.iter().map(|row| row.number).collect::<Vec<_>>(), vec![1, 2, 4]);
        assert_eq!(blank, 1);
    }

    #[test]
    fn a_wrong_or_missing_range_fails_only_its_tab() {
        let mut tabs = vec![tab("A", a1::pages("A", None, 10)), tab("B", a1::pages("B", None, 10))];
        let wrong = parse_bytes(
            json!({"valueRanges": [{"values": [["x"]], "range": "B!A1:B2"}, {"range": "B!A1:B2"}]})
                .to_string()
                .as_bytes(),
            &mut tabs,
            0,
        )
        .unwrap();
        assert!(matches!(wrong[0], Some(SheetsError::MissingRange { .. })), "{wrong:?}");
        assert!(wrong[1].is_none());
        let short = parse_bytes(
            json!({"valueRanges": [{"range": "A!A1:B2", "values": [["x"]]}]})
                .to_string()
                .as_bytes(),
            &mut tabs,
            0,
        )
        .unwrap();
        assert!(short[0].is_none());
        assert!(
            matches!(short[1], Some(SheetsError::MissingRange { ref range, ref spreadsheet_id }) if range == "'B'" && spreadsheet_id == "sheet-id"),
            "{short:?}"
        );
        let broken = parse_bytes(
            b"{\"valueRanges\": [{\"range\": \"A!A1\", \"values\": [[1, ",
            &mut tabs,
            0,
        );
        assert!(matches!(broken, Err(SheetsError::Malformed { .. })), "{broken:?}");
    }

    #[test]
    fn a_restarted_round_forgets_its_rows() {
        let mut tabs = vec![tab("T", a1::pages("T", Some(4), 2))];
        parse(
            json!({"valueRanges": [{"range": "T!A1:A2", "values": [["a"], ["b"]]}]}),
            &mut tabs,
            0,
        )
        .unwrap();
        tabs[0].start_round();
        let cut = parse_bytes(
            b"{\"valueRanges\": [{\"range\": \"T!A3:A4\", \"values\": [[\"c\"], [\"d",
            &mut tabs,
            1,
        );
        assert!(cut.is_err());
        tabs[0].restart_round().unwrap();
        parse(
            json!({"valueRanges": [{"range": "T!A3:A4", "values": [["c"], ["d"]]}]}),
            &mut tabs,
            1,
        )
        .unwrap();
        let (rows, _) = rows_of(tabs.pop().unwrap());
        let texts: Vec<String> = rows.iter().map(|row| row.cells[0].display()).collect();
        assert_eq!(texts, ["a", "b", "c", "d"]);
    }
}
