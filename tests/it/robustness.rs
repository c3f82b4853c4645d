//! Bad input never panics and never hangs: arbitrary bytes through the CSV
//! reader and arbitrary cells through header matching and every value parser
//! end in records, row-level reports or a source-level error. A bounded
//! number of generated cases runs in CI.

use proptest::prelude::*;

use crate::harness::map_all;
use sheetsync::mapping::conventions::{DateOrderSetting, ReadSettings};
use sheetsync::source::SourceRows;
use sheetsync::source::csv::CsvSource;
use sheetsync::source::table::{Cell, Table};

fn settings() -> ReadSettings {
    ReadSettings {
        date_order: DateOrderSetting::Auto,
        time_zone: chrono_tz::Europe::Paris,
        zone_is_the_syncs: false,
    }
}

/// Surveys `source` and reads every winning record. Returns the survey's
/// counts (rows read, records, rejected) when the source has a usable header.
fn counts(source: &SourceRows) -> Option<(usize, usize, usize)> {
    let (survey, records) = map_all(source, &settings()).ok()?;
    for issue in survey.warnings.iter().chain(&survey.rejected) {
        assert!(issue.row >= 1 && !issue.reason.is_empty(), "{issue:?}");
    }
    Some((survey.rows_read, records.len(), survey.rejected.len()))
}

/// Cells people might type, and some nobody would.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        "[0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}",
        "[-(]?[€$]?[0-9 .,']{1,12}[)%€]?",
        "[0-9.,]{1,6}[eE][+-]?[0-9]{1,4}",
        "(Mon|jeudi|mar\\.)? ?[0-9]{1,2}(er|st)? (Jan|janv\\.|März|mars) [0-9]{2,4}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_a_csv_export_end_in_records_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let source = SourceRows::Csv(CsvSource::from_bytes(bytes, "generated"));
        let _ = counts(&source);
    }

    /// Rows as exports write them, as wide as the header. (Ragged rows whose
    /// quoted cells hold more `;` than the header has `,` can make the
    /// delimiter sniffer pick `;`: the view then fails with the header it
    /// could not find, an error, not a panic; see the hardening issue.)
    #[test]
    fn any_text_under_a_real_header_is_read_or_reported(
        rows in proptest::collection::vec(proptest::collection::vec(cell(), 8), 0..30),
    ) {
        let mut csv = String::from("Client,Stage,Discovery date,Expected MRR,Month,Show/No show,POA date,Pipeline\n");
        for row in &rows {
            let quoted: Vec<String> = row.iter().map(|cell| format!("\"{}\"", cell.replace('"', "\"\""))).collect();
            csv.push_str(&quoted.join(","));
            csv.push('\n');
        }
        let source = SourceRows::Csv(CsvSource::from_bytes(csv.into_bytes(), "generated"));
        let (rows_read, records, rejected) = counts(&source).expect("the header is found");
        prop_assert!(records + rejected <= rows_read, "{records} + {rejected} > {rows_read}");
    }

    #[test]
    fn any_typed_cells_from_the_sheets_api_are_read_or_reported(
        rows in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![
                cell().prop_map(|text| Cell::text(&text)),
                any::<f64>().prop_map(Cell::Number),
                any::<bool>().prop_map(Cell::Bool),
            ], 0..8),
            0..20,
        ),
    ) {
        let mut table = Table { serial_time_zone: Some(chrono_tz::America::New_York), ..Table::default() };
        let header = ["Client", "Stage", "Discovery date", "Expected MRR", "Month", "Relevance", "Billing start"];
        table.push_row(1, header.iter().map(|label| Cell::text(label)).collect());
        for (index, row) in rows.into_iter().enumerate() {
            table.push_row(index + 2, row);
        }
        prop_assert!(counts(&SourceRows::Table(table)).is_some());
    }
}
