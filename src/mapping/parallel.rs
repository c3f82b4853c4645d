//! Reading a pass's rows on both cores, or inline on one.
//!
//! Converting cells (dates, amounts, enums, keys) is most of a pass's cost
//! and depends on nothing but the row, while what a pass learns from each
//! row (winners, duplicates, warnings, evidence, changes) must be added up in
//! source order. So rows go out in batches to [`WORKERS`] threads that
//! convert them, and come back, with what was read, to the calling thread,
//! which adds them up in order. The reading thread and the workers are
//! scoped to the pass: a pass that ends, fails or panics leaves none behind.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;

use crate::concurrency::Threading;
use crate::source::table::Row;
use crate::source::{RowReader, SourceError};

/// Threads converting rows where the process has two cores or more (on
/// one, a pass reads inline): the source's own reader (a CSV parser thread)
/// is light.
const WORKERS: usize = 2;
/// Rows per batch: enough to make a batch's hand-offs negligible.
const BATCH_ROWS: usize = 512;
/// Batches read but not yet added up: bounds the memory of a pass (and the
/// reordering buffer) to this many batches of rows.
const IN_FLIGHT: usize = 8;

/// What a worker sends back: a batch, and what was read from each row,
/// or the panic that stopped it.
type Done<T> = (usize, Vec<Row>, std::thread::Result<Vec<T>>);

/// Reads every row of `rows`, has `read` turn each into a `T` (on the
/// worker threads, when the pass may use threads), and hands each row with
/// its `T` to `add`, in source order, on the calling thread. Returns the
/// blank rows the pass skipped.
pub(super) fn read_rows<T: Send>(
    rows: RowReader<'_>,
    read: &(dyn Fn(&Row) -> T + Sync),
    add: impl FnMut(&Row, T),
) -> Result<usize, SourceError> {
    match rows.threading() {
        Threading::Inline => read_inline(rows, read, add),
        Threading::Parallel => read_on_workers(rows, read, add),
    }
}

/// [`read_rows`] on the calling thread alone: each row read and added up
/// while its cells are still in cache.
fn read_inline<T>(
    mut rows: RowReader<'_>,
    read: &dyn Fn(&Row) -> T,
    mut add: impl FnMut(&Row, T),
) -> Result<usize, SourceError> {
    while let Some(row) = rows.next_row() {
        let row = row?;
        add(row, read(row));
    }
    Ok(rows.blank_rows())
}

/// [`read_rows`] with the rows converted on [`WORKERS`] threads.
fn read_on_workers<T: Send>(
    mut rows: RowReader<'_>,
    read: &(dyn Fn(&Row) -> T + Sync),
    mut add: impl FnMut(&Row, T),
) -> Result<usize, SourceError> {
    let recycle = rows.recycler();
    std::thread::scope(|scope| {
        let (done, finished) = mpsc::sync_channel::<Done<T>>(IN_FLIGHT);
        let mut workers = Vec::with_capacity(WORKERS);
        for _ in 0..WORKERS {
            let (jobs, queue) = mpsc::sync_channel::<(usize, Vec<Row>)>(1);
            let done = done.clone();
            workers.push(jobs);
            scope.spawn(move || {
                for (sequence, batch) in queue {
                    let results = panic::catch_unwind(AssertUnwindSafe(|| batch.iter().map(read).collect()));
                    let stop = results.is_err();
                    if done.send((sequence, batch, results)).is_err() || stop {
                        return;
                    }
                }
            });
        }
        drop(done);
        // One token per batch in flight: the reader waits for the adding up.
        let (tokens, returned) = mpsc::sync_channel::<()>(IN_FLIGHT);
        let reader = scope.spawn(move || -> Result<usize, SourceError> {
            for sequence in 0.. {
                let batch = rows.next_batch(BATCH_ROWS)?;
                let worker = &workers[sequence % WORKERS];
                if batch.is_empty() || tokens.send(()).is_err() || worker.send((sequence, batch)).is_err() {
                    break;
                }
            }
            Ok(rows.blank_rows())
        });
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        for (sequence, batch, results) in finished {
            waiting.insert(sequence, (batch, results));
            while let Some((batch, results)) = waiting.remove(&next) {
                // Unwinding drops the channels, which stops the other threads.
                let results = results.unwrap_or_else(|panic| panic::resume_unwind(panic));
                for (row, result) in batch.iter().zip(results) {
                    add(row, result);
                }
                if let Some(recycle) = &recycle {
                    // A full queue only means the reader has enough buffers.
                    let _ = recycle.try_send(batch);
                }
                let _ = returned.try_recv();
                next += 1;
            }
        }
        reader.join().unwrap_or_else(|panic| panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceRows;
    use crate::source::csv::CsvSource;
    use crate::source::table::{Cell, Table};

    fn table(rows: usize) -> SourceRows {
        let mut table = Table::default();
        for number in 1..=rows {
            table.push_row(number, vec![Cell::text(&format!("r{number}"))]);
        }
        table.push_row(rows + 1, vec![Cell::Empty]);
        SourceRows::Table(table)
    }

    const BOTH: [Threading; 2] = [Threading::Inline, Threading::Parallel];

    #[test]
    fn rows_come_back_in_source_order_with_their_reading() {
        let source = table(5 * BATCH_ROWS + 7);
        for threading in BOTH {
            let mut seen = Vec::new();
            let read = |row: &Row| row.number * 2;
            let blank = read_rows(source.rows_in(threading).unwrap(), &read, |row, doubled| {
                assert_eq!(doubled, row.number * 2);
                seen.push(row.number);
            })
            .unwrap();
            assert_eq!(seen, (1..=5 * BATCH_ROWS + 7).collect::<Vec<_>>(), "{threading:?}");
            assert_eq!(blank, 1, "{threading:?}");
        }
    }

    #[test]
    fn a_csv_pass_reads_the_same_inline_and_from_its_parser_s_batches() {
        let mut text = String::from("a,b\n");
        for index in 0..3 * BATCH_ROWS {
            text.push_str(&format!("{index},x\n,\n"));
        }
        let source = SourceRows::Csv(CsvSource::from_bytes(text.into_bytes(), "test"));
        for threading in BOTH {
            let mut seen = Vec::new();
            let rows = source.rows_in(threading).unwrap();
            assert_eq!(rows.recycler().is_some(), threading == Threading::Parallel);
            let blank = read_rows(rows, &|row: &Row| row.cells[0].display(), |row, first| {
                seen.push((row.number, first));
            })
            .unwrap();
            assert_eq!(seen.len(), 3 * BATCH_ROWS + 1);
            assert_eq!(seen[1], (2, "0".to_owned()));
            assert_eq!(
                seen.last(),
                Some(&(2 * 3 * BATCH_ROWS, format!("{}", 3 * BATCH_ROWS - 1)))
            );
            assert_eq!(blank, 3 * BATCH_ROWS, "the rows of empty cells ({threading:?})");
        }
    }

    #[test]
    fn a_panic_while_reading_is_the_pass_s_panic_not_a_hang() {
        let source = table(4 * BATCH_ROWS);
        for threading in BOTH {
            let outcome = std::panic::catch_unwind(|| {
                let read = |row: &Row| {
                    assert!(row.number != 3 * BATCH_ROWS / 2, "a reading that panics");
                    row.number
                };
                read_rows(source.rows_in(threading).unwrap(), &read, |_, _| {})
            });
            assert!(outcome.is_err(), "{threading:?}");
        }
    }
}
