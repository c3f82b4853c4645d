//! The mapping end to end: sources in, records and reports out.

use mongodb::bson::Bson;

use super::conventions::{DateOrderDecision, ReadSettings};
use super::survey::MAX_DEFERRED;
use super::values::dates::DateOrder;
use super::*;
use crate::source::SourceRows;
use crate::source::csv::CsvSource;
use crate::source::table::Cell;
use crate::source::table::Table;
use chrono::Utc;
use conventions::DateOrderSetting;
use convert::to_bson_date;
use header::column_letters;
use sales::SALES_RECORDS;

/// Both passes over a source, as the sync makes them.
struct Mapping {
    header_row: usize,
    rows_read: usize,
    records: Vec<MappedRecord>,
    duplicates: Vec<Duplicate>,
    rejected: Vec<RowIssue>,
    warnings: Vec<RowIssue>,
    unknown_columns: Vec<String>,
    date_order: Option<DateOrderDecision>,
    notices: Vec<String>,
    survey_passes: usize,
}

fn map_fetched(fetched: SourceRows) -> Result<Mapping, SurveyError> {
    map_fetched_with(fetched, DateOrderSetting::Auto)
}

/// As the default configuration reads: date-times in Europe/Paris.
fn map_fetched_with(fetched: SourceRows, date_order: DateOrderSetting) -> Result<Mapping, SurveyError> {
    let settings = ReadSettings {
        date_order,
        time_zone: chrono_tz::Europe::Paris,
        zone_is_the_syncs: false,
    };
    let (mapper, plan) = survey(&SALES_RECORDS, &fetched, &settings, &Default::default())?;
    let mut winners = mapper.winners(&plan, fetched.rows()?);
    let mut records = Vec::new();
    while let Some(record) = winners.next_record() {
        records.push(record?);
    }
    Ok(Mapping {
        header_row: plan.header_row,
        rows_read: plan.rows_read,
        records,
        duplicates: plan.duplicates,
        rejected: plan.rejected,
        warnings: plan.warnings,
        unknown_columns: plan.unknown_columns,
        date_order: plan.date_order,
        notices: plan.notices,
        survey_passes: plan.survey_passes,
    })
}

fn map_csv(text: &str) -> Mapping {
    map_csv_with(text, DateOrderSetting::Auto)
}

fn map_csv_with(text: &str, date_order: DateOrderSetting) -> Mapping {
    let source = CsvSource::from_bytes(text.as_bytes().to_vec(), "test");
    map_fetched_with(SourceRows::Csv(source), date_order).unwrap()
}

/// Each record's value of `name`, in source order.
fn column(mapping: &Mapping, name: &str) -> Vec<Bson> {
    mapping
        .records
        .iter()
        .map(|record| record.fields.get(name).cloned().unwrap_or(Bson::Null))
        .collect()
}

fn warned_rows(mapping: &Mapping) -> Vec<(usize, &str)> {
    mapping
        .warnings
        .iter()
        .map(|warning| (warning.row, warning.column.as_deref().unwrap_or("")))
        .collect()
}

fn date(year: i32, month: u32, day: u32) -> Bson {
    bson_date(year, month, day, 0, 0)
}

#[test]
fn a_us_sheet_is_read_month_first_from_its_own_dates() {
    let mapping = map_csv("Client,Stage,Discovery date,POA date\nA,Lost,1/13/2025,2/1/2025\nB,Lost,2/1/2025,\n");
    assert_eq!(
        column(&mapping, "discovery_date"),
        [date(2025, 1, 13), date(2025, 2, 1)]
    );
    assert_eq!(column(&mapping, "poa_date"), [date(2025, 2, 1), Bson::Null]);
    assert_eq!(mapping.warnings, []);
    let decision = mapping.date_order.unwrap();
    assert_eq!(decision.order, DateOrder::MonthFirst);
    assert!(
        decision
            .reason
            .contains("1 value(s) only read month-first (e.g. \"1/13/2025\" at row 2"),
        "{}",
        decision.reason
    );
}

#[test]
fn dates_against_the_decided_order_are_reported_with_both_readings() {
    // Day-first wins 2 to 1: the month-first-only date is not guessed.
    let mapping = map_csv("Client,Stage,Discovery date\nA,Lost,13/01/2025\nB,Lost,1/14/2025\nC,Lost,14/01/2025\n");
    assert_eq!(
        column(&mapping, "discovery_date"),
        [date(2025, 1, 13), Bson::Null, date(2025, 1, 14)]
    );
    assert_eq!(warned_rows(&mapping), [(3, "Discovery date")]);
    let reason = &mapping.warnings[0].reason;
    assert!(
        reason.contains("read day-first this is no date, read month-first it is 2025-01-14"),
        "{reason}"
    );
    // Month-first wins: the pass assumed day-first, so it is made again.
    let mapping = map_csv(
        "Client,Stage,Discovery date\nA,Lost,1/13/2025\nB,Lost,14/01/2025\nC,Lost,1/14/2025\nD,Lost,2/1/2025\n",
    );
    assert_eq!(
        column(&mapping, "discovery_date"),
        [date(2025, 1, 13), Bson::Null, date(2025, 1, 14), date(2025, 2, 1)]
    );
    assert_eq!(warned_rows(&mapping), [(3, "Discovery date")]);
    assert!(mapping.warnings[0].reason.contains("read day-first it is 2025-01-14"));
}

#[test]
fn a_month_derived_from_a_moment_is_its_date_in_the_configured_zone() {
    // 00:30 in Paris on 1 February is still 31 January in UTC.
    let mapping = map_csv("Client,Stage,Discovery date\nA,Lost,2025-02-01 00:30\nB,Lost,01/02/2025\n");
    assert_eq!(
        column(&mapping, "discovery_date"),
        [bson_date(2025, 1, 31, 23, 30), date(2025, 2, 1)]
    );
    assert_eq!(
        column(&mapping, "month"),
        [Bson::from("2025-02"), Bson::from("2025-02")]
    );
}

#[test]
fn a_serial_means_its_spreadsheets_clock() {
    let mut table = Table {
        serial_time_zone: Some(chrono_tz::America::New_York),
        ..Table::default()
    };
    table.push_row(
        1,
        vec![Cell::text("Client"), Cell::text("Stage"), Cell::text("Discovery date")],
    );
    table.push_row(2, vec![Cell::text("A"), Cell::text("Lost"), Cell::Number(45667.5)]);
    table.push_row(
        3,
        vec![Cell::text("B"), Cell::text("Lost"), Cell::text("10/01/2025 12:00")],
    );
    let mapping = map_fetched(SourceRows::Table(table.clone())).unwrap();
    assert_eq!(
        column(&mapping, "discovery_date"),
        [bson_date(2025, 1, 10, 17, 0), bson_date(2025, 1, 10, 11, 0)],
        "the serial is noon in New York, the sheet's clock; the text is noon in Paris, the configured zone"
    );
    assert_eq!(mapping.notices.len(), 1);
    assert!(
        mapping.notices[0].contains("America/New_York") && mapping.notices[0].contains("Europe/Paris"),
        "{:?}",
        mapping.notices
    );

    // A sync's own time_zone applies to serials too.
    let settings = ReadSettings {
        date_order: DateOrderSetting::Auto,
        time_zone: chrono_tz::Europe::Paris,
        zone_is_the_syncs: true,
    };
    let rows = SourceRows::Table(table);
    let (mapper, survey) = survey(&SALES_RECORDS, &rows, &settings, &Default::default()).unwrap();
    let mut winners = mapper.winners(&survey, rows.rows().unwrap());
    let first = winners.next_record().unwrap().unwrap();
    assert_eq!(first.fields.get("discovery_date"), Some(&bson_date(2025, 1, 10, 11, 0)));
}

#[test]
fn a_configured_order_wins_over_the_data() {
    let mapping = map_csv_with(
        "Client,Stage,Discovery date\nA,Lost,13/01/2025\nB,Lost,2/1/2025\n",
        DateOrderSetting::Mdy,
    );
    assert_eq!(column(&mapping, "discovery_date"), [Bson::Null, date(2025, 2, 1)]);
    assert_eq!(warned_rows(&mapping), [(2, "Discovery date")]);
    assert!(mapping.date_order.unwrap().reason.contains("date_order = \"mdy\""));
}

#[test]
fn undecided_dates_are_read_day_first_with_one_warning() {
    let mapping = map_csv("Client,Stage,Discovery date\nA,Lost,2025-01-20\nB,Lost,2/1/2025\nC,Lost,3/1/2025\n");
    assert_eq!(
        column(&mapping, "discovery_date"),
        [date(2025, 1, 20), date(2025, 1, 2), date(2025, 1, 3)]
    );
    assert_eq!(warned_rows(&mapping), [(3, "Discovery date")], "{:?}", mapping.warnings);
    assert!(mapping.warnings[0].reason.starts_with("2 date(s) of this source"));
    assert!(
        mapping
            .date_order
            .unwrap()
            .reason
            .contains("no date in the source shows the order")
    );
}

#[test]
fn ambiguous_amounts_follow_their_column_then_the_source() {
    // Expected MRR proves `,` decimals; Pipeline has no proof of its own.
    let mapping =
        map_csv("Client,Stage,Expected MRR,Pipeline,Expected ARR\nA,Lost,\"1.234,56\",5.000,\nB,Lost,5.000,,7.500\n");
    assert_eq!(
        column(&mapping, "expected_mrr"),
        [Bson::Double(1234.56), Bson::Double(5000.0)]
    );
    assert_eq!(column(&mapping, "pipeline"), [Bson::Double(5000.0), Bson::Null]);
    assert_eq!(column(&mapping, "expected_arr"), [Bson::Null, Bson::Double(7500.0)]);
    assert_eq!(warned_rows(&mapping), [(2, "Pipeline"), (3, "Expected ARR")]);
    assert!(
        mapping.warnings[0]
            .reason
            .contains("5 if `.` is the decimal mark, 5000 if `,` is"),
        "{:?}",
        mapping.warnings
    );
    assert!(mapping.warnings[0].reason.contains("other number columns"));
    // Nothing anywhere decides: `.` stays the decimal mark, with a warning.
    let mapping = map_csv("Client,Stage,Pipeline\nA,Lost,5.000\n");
    assert_eq!(column(&mapping, "pipeline"), [Bson::Double(5.0)]);
    assert!(mapping.warnings[0].reason.contains("the default"));
}

#[test]
fn more_doubts_than_can_be_set_aside_are_judged_on_a_second_pass() {
    let mut text = String::from("Client,Stage,Pipeline\n");
    for index in 0..=MAX_DEFERRED {
        text.push_str(&format!("C{index},Lost,5.000\n"));
    }
    let undecided = map_csv(&text);
    assert_eq!(
        undecided.warnings.len(),
        MAX_DEFERRED + 1,
        "every ambiguous value is reported"
    );
    assert_eq!(
        undecided.warnings.last().map(|warning| warning.row),
        Some(MAX_DEFERRED + 2)
    );
    assert_eq!(undecided.survey_passes, 2);
    text.push_str("Last,Lost,\"1,5\"\n");
    let decided = map_csv(&text);
    assert_eq!(decided.records.len(), MAX_DEFERRED + 2);
    assert_eq!(decided.records[0].fields.get("pipeline"), Some(&Bson::Double(5000.0)));
    assert_eq!(decided.warnings, [], "the column decides every one of them");
    assert_eq!(
        decided.survey_passes, 1,
        "no doubt past the ones set aside can warn: no second pass"
    );
    // A US sheet: the order decided differs from the first pass's.
    let us = map_csv("Client,Stage,Discovery Date\nA,Lost,12/31/2025\nB,Lost,01/02/2025\n");
    assert_eq!(us.survey_passes, 2);
}

fn mapping_error(fetched: SourceRows) -> MappingError {
    match map_fetched(fetched) {
        Err(SurveyError::Mapping(error)) => error,
        other => panic!(
            "expected a mapping error, got {:?}",
            other.map(|mapping| mapping.records)
        ),
    }
}

fn field<'a>(mapping: &'a Mapping, index: usize, name: &str) -> &'a Bson {
    mapping.records[index].fields.get(name).unwrap()
}

#[test]
fn header_labels_match_loosely_with_aliases() {
    let mapping = map_csv(
        "CLIENT,Étape,Discovery date,Expected MRR,Show/No show,Type of source,Owner (AE),Date POA,Produit,Mystery\n\
         Acme,Lost,2025-01-02,10,no show,inbound,Ann,03/01/2025,SEO,?\n",
    );
    let record = &mapping.records[0].fields;
    assert_eq!(record.get_str("client"), Ok("Acme"));
    assert_eq!(record.get_str("stage"), Ok("Lost"));
    assert_eq!(record.get_str("show_noshow"), Ok("Noshow"));
    assert_eq!(record.get_str("type_of_source"), Ok("Inbound"));
    assert_eq!(record.get_str("owner"), Ok("Ann"));
    assert_eq!(record.get_str("product"), Ok("SEO"));
    assert_eq!(record.get_f64("expected_mrr"), Ok(10.0));
    assert!(record.get_datetime("poa_date").is_ok());
    assert_eq!(mapping.unknown_columns, vec!["Mystery"]);
}

#[test]
fn title_lines_ragged_rows_and_repeated_columns() {
    let mapping =
        map_csv("Pipeline,,\nexported 2025-03-01\nClient,Stage,MRR,Expected MRR\nAcme,Lost\nGlobex,Lost,5,6,extra\n");
    assert_eq!(mapping.header_row, 3);
    assert_eq!(mapping.records.len(), 2);
    assert_eq!(
        field(&mapping, 0, "expected_mrr"),
        &Bson::Null,
        "short row padded with empties"
    );
    assert_eq!(
        field(&mapping, 1, "expected_mrr"),
        &Bson::Double(6.0),
        "the column named for the field wins over one named by an alias"
    );
    let reasons: Vec<&str> = mapping.warnings.iter().map(|w| w.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("which is read from column \"Expected MRR\"")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("beyond the header's 4 columns")),
        "{reasons:?}"
    );
}

#[test]
fn values_under_an_unnamed_column_are_reported() {
    let mapping = map_csv("Client,,Stage,\nAcme,note,Lost,\nGlobex,,Lost,x\nInitech,,Lost,\n");
    assert_eq!(mapping.records.len(), 3, "the rows themselves are imported");
    let ignored: Vec<(usize, Option<&str>)> = mapping
        .warnings
        .iter()
        .map(|warning| (warning.row, warning.column.as_deref()))
        .collect();
    assert_eq!(ignored, [(2, Some("B")), (3, Some("D"))]);
    assert!(
        mapping.warnings[0].reason.contains("name the column"),
        "{:?}",
        mapping.warnings
    );
    assert_eq!(
        [0, 25, 26, 51, 52, 701, 702].map(column_letters),
        ["A", "Z", "AA", "AZ", "BA", "ZZ", "AAA"]
    );
}

#[test]
fn every_value_rule() {
    // (column, cell, field, expected value, whether a warning is expected)
    let cases: &[(&str, &str, &str, Bson, bool)] = &[
        (
            "Discovery Date",
            "2025-01-10",
            "discovery_date",
            bson_date(2025, 1, 10, 0, 0),
            false,
        ),
        // Alone in its source, a date whose day is 12 or less is read
        // day-first with a warning that nothing decided the order.
        (
            "Discovery Date",
            "10/01/2025",
            "discovery_date",
            bson_date(2025, 1, 10, 0, 0),
            true,
        ),
        (
            "Discovery Date",
            "10/01/25",
            "discovery_date",
            bson_date(2025, 1, 10, 0, 0),
            true,
        ),
        (
            "Discovery Date",
            "13/01/25",
            "discovery_date",
            bson_date(2025, 1, 13, 0, 0),
            false,
        ),
        // Wall-clock times are read in [sync] time_zone (Paris: UTC+1
        // in January); offsets are kept.
        (
            "Discovery Date",
            "2025-01-10 14:30",
            "discovery_date",
            bson_date(2025, 1, 10, 13, 30),
            false,
        ),
        (
            "Discovery Date",
            "2025-01-10T14:30:00Z",
            "discovery_date",
            bson_date(2025, 1, 10, 14, 30),
            false,
        ),
        ("Pipeline", "12%", "pipeline", Bson::Double(0.12), false),
        ("Discovery Date", "someday", "discovery_date", Bson::Null, true),
        (
            "POA Date",
            "31/12/2024",
            "poa_date",
            bson_date(2024, 12, 31, 0, 0),
            false,
        ),
        (
            "Billing Start",
            "2025-02-01",
            "billing_start",
            bson_date(2025, 2, 1, 0, 0),
            false,
        ),
        ("Expected MRR", "5000", "expected_mrr", Bson::Double(5000.0), false),
        ("Expected MRR", "5,000.50", "expected_mrr", Bson::Double(5000.5), false),
        (
            "Expected ARR",
            "5 000,50 €",
            "expected_arr",
            Bson::Double(5000.5),
            false,
        ),
        ("Pipeline", "€5,000", "pipeline", Bson::Double(5000.0), false),
        ("Pipeline", "(1,200)", "pipeline", Bson::Double(-1200.0), false),
        ("Pipeline", "a lot", "pipeline", Bson::Null, true),
        (
            "Show/Noshow",
            "NO-SHOW",
            "show_noshow",
            Bson::String("Noshow".into()),
            false,
        ),
        (
            "Show/Noshow",
            "maybe",
            "show_noshow",
            Bson::String("maybe".into()),
            true,
        ),
        (
            "Type of Source",
            "client referral",
            "type_of_source",
            Bson::String("Client referral".into()),
            false,
        ),
        (
            "Type of Source",
            "Webinar",
            "type_of_source",
            Bson::String("Webinar".into()),
            true,
        ),
        ("Month", "janv.-25", "month", Bson::String("2025-01".into()), false),
        ("Month", "2025-03", "month", Bson::String("2025-03".into()), false),
        ("Month", "later", "month", Bson::Null, true),
        ("Relevance", "  High ", "relevance", Bson::String("High".into()), false),
        ("Relevance", "", "relevance", Bson::Null, false),
    ];
    for (column, cell, name, expected, warns) in cases {
        let mapping = map_csv(&format!("Client,Stage,{column}\nAcme,Lost,\"{cell}\"\n"));
        assert_eq!(field(&mapping, 0, name), expected, "{column} = {cell:?}");
        assert_eq!(
            !mapping.warnings.is_empty(),
            *warns,
            "{column} = {cell:?}: {:?}",
            mapping.warnings
        );
        if let Some(warning) = mapping.warnings.first() {
            assert_eq!((warning.row, warning.column.as_deref()), (2, Some(*column)));
            assert_eq!(warning.value.as_deref(), Some(*cell));
        }
    }
}

#[test]
fn stage_is_canonical_and_month_derives_from_discovery_date() {
    let mapping = map_csv("Client,Stage,Discovery date\nAcme,b - legals,15/03/2025\nBeta,legals,\n");
    assert_eq!(field(&mapping, 0, "stage"), &Bson::String("B Legals".into()));
    assert_eq!(field(&mapping, 0, "month"), &Bson::String("2025-03".into()));
    assert_eq!(field(&mapping, 1, "month"), &Bson::Null);
}

#[test]
fn only_rows_without_client_or_stage_are_rejected() {
    let mapping = map_csv("Client,Stage,Owner\n,Lost,Ann\nAcme,,Ann\n ,  ,Ann\nBeta,Lost,\n");
    assert_eq!(mapping.rows_read, 4);
    assert_eq!(mapping.records.len(), 1);
    let rejected: Vec<(usize, &str)> = mapping.rejected.iter().map(|r| (r.row, r.reason.as_str())).collect();
    assert_eq!(rejected.len(), 3);
    assert!(rejected[0].1.starts_with("no client:"), "{rejected:?}");
    assert!(rejected[1].1.starts_with("no stage:"), "{rejected:?}");
    assert!(rejected[2].1.starts_with("no client and no stage:"), "{rejected:?}");
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 3, 4]);
}

#[test]
fn duplicates_by_client_and_stage_last_row_wins() {
    let mapping = map_csv(
        "Client,Stage,Expected MRR\nAcme Corp,B Legals,1\nAcme Corp,Lost,2\n  acme   CORP ,legals,3\nGlobex,Lost,4\n",
    );
    assert_eq!(mapping.records.len(), 3);
    let rows: Vec<usize> = mapping.records.iter().map(|record| record.row).collect();
    assert_eq!(rows, vec![3, 4, 5], "winners come in source order");
    assert_eq!(field(&mapping, 1, "expected_mrr"), &Bson::Double(3.0));
    assert_eq!(field(&mapping, 1, "client"), &Bson::String("acme   CORP".into()));
    assert_eq!(
        mapping.duplicates,
        vec![Duplicate {
            row: 2,
            superseded_by: 4
        }]
    );
}

#[test]
fn missing_required_header_names_the_columns_found() {
    let source = CsvSource::from_bytes(b"Title\nFirm,Progress,Owner\nAcme,Lost,Ann\n".to_vec(), "test");
    let error = mapping_error(SourceRows::Csv(source));
    assert_eq!(
        error,
        MappingError::MissingRequiredColumns {
            row: 2,
            missing: "client, stage".into(),
            found: "\"Firm\", \"Progress\", \"Owner\"".into(),
        }
    );
    assert_eq!(
        mapping_error(SourceRows::Table(Table::default())),
        MappingError::EmptySource
    );
}

#[test]
fn a_missing_header_error_quotes_only_short_header_cells() {
    let line = format!(
        "root:x:0:0:root:/root:/bin/bash,{}\n",
        (0..40).map(|n| format!("c{n}")).collect::<Vec<_>>().join(",")
    );
    let source = CsvSource::from_bytes(format!("{line}second line secret\n").into_bytes(), "test");
    let MappingError::MissingRequiredColumns { found, .. } = mapping_error(SourceRows::Csv(source)) else {
        panic!("expected a missing header");
    };
    assert!(found.starts_with("\"root:x:0:0:root:/root:/b…\""), "{found}");
    assert!(found.ends_with("\"c28\", …"), "{found}");
    assert!(!found.contains("secret"));
}

#[test]
fn typed_cells_from_spreadsheets() {
    let mut table = Table {
        serial_time_zone: Some(chrono_tz::Europe::Paris),
        ..Table::default()
    };
    let text = |value: &str| Cell::Text(value.to_owned());
    table.push_row(
        1,
        vec![
            text("Client"),
            text("Stage"),
            text("Discovery date"),
            text("Expected MRR"),
            text("Month"),
        ],
    );
    table.push_row(
        2,
        vec![
            Cell::Number(42.0),
            text("Lost"),
            Cell::Number(45667.0),
            Cell::Number(1250.5),
            Cell::Number(45667.0),
        ],
    );
    table.push_row(3, vec![text("Beta"), text("Lost"), Cell::Bool(true)]);
    let mapping = map_fetched(SourceRows::Table(table)).unwrap();
    assert_eq!(field(&mapping, 0, "client"), &Bson::String("42".into()));
    assert_eq!(field(&mapping, 0, "discovery_date"), &bson_date(2025, 1, 10, 0, 0));
    assert_eq!(field(&mapping, 0, "expected_mrr"), &Bson::Double(1250.5));
    assert_eq!(field(&mapping, 0, "month"), &Bson::String("2025-01".into()));
    assert_eq!(field(&mapping, 1, "discovery_date"), &Bson::Null);
    assert_eq!(mapping.warnings.len(), 1, "{:?}", mapping.warnings);
}

#[test]
fn a_link_cell_gives_its_target_to_the_link_field_and_its_text_to_the_others() {
    let mut table = Table::default();
    let text = |value: &str| Cell::Text(value.to_owned());
    let link = |text: &str, target: &str| Cell::Link {
        text: text.to_owned(),
        target: target.to_owned(),
    };
    table.push_row(1, vec![text("Client"), text("Stage"), text("Hubspot Link")]);
    table.push_row(
        2,
        vec![
            link("Acme", "https://acme.example.com/"),
            text("Lost"),
            link("Open in HubSpot", "https://app.hubspot.com/deals/42"),
        ],
    );
    let mapping = map_fetched(SourceRows::Table(table)).unwrap();
    assert_eq!(field(&mapping, 0, "client"), &Bson::String("Acme".into()));
    assert_eq!(
        field(&mapping, 0, "hubspot_link"),
        &Bson::String("https://app.hubspot.com/deals/42".into())
    );
    assert!(mapping.warnings.is_empty(), "{:?}", mapping.warnings);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// A sheet written in one convention (day/month order, decimal
    /// mark) maps back to the dates and amounts that were written, with
    /// no warning, whatever the order its rows come in. Its first row is
    /// dated the 25th, which shows the order as any real sheet soon does.
    #[test]
    fn a_sheet_in_one_convention_maps_back_to_its_values(
        rows in proptest::collection::vec((0i64..40_000, -100_000_000i64..100_000_000), 1..20),
        month_first in proptest::prelude::any::<bool>(),
        comma_decimals in proptest::prelude::any::<bool>(),
    ) {
        let write_date = |date: chrono::NaiveDate| match month_first {
            true => date.format("%-m/%-d/%Y").to_string(),
            false => date.format("%d/%m/%Y").to_string(),
        };
        let write_amount = |cents: i64| {
            let text = format!("{}.{:02}", cents / 100, (cents % 100).abs());
            let text = if cents < 0 && cents > -100 { format!("-{text}") } else { text };
            if comma_decimals { format!("\"{}\"", text.replace('.', ",")) } else { text }
        };
        let first = chrono::NaiveDate::from_ymd_opt(2025, 1, 25).unwrap();
        let epoch = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).unwrap();
        let mut csv = format!("Client,Stage,Discovery date,Pipeline\nC,Lost,{},1\n", write_date(first));
        let mut expected = Vec::new();
        for (index, (days, cents)) in rows.iter().enumerate() {
            let date = epoch + chrono::Duration::days(*days);
            csv.push_str(&format!("C{index},Lost,{},{}\n", write_date(date), write_amount(*cents)));
            expected.push((Bson::DateTime(crate::bson_dates::to_bson_date(values::midnight_utc(date))), Bson::Double(*cents as f64 / 100.0)));
        }
        let mapping = map_csv(&csv);
        proptest::prop_assert_eq!(&mapping.warnings, &[]);
        let read: Vec<(Bson, Bson)> = column(&mapping, "discovery_date")
            .into_iter()
            .zip(column(&mapping, "pipeline"))
            .skip(1)
            .collect();
        proptest::prop_assert_eq!(read, expected, "{}", csv);
    }
}

fn bson_date(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> Bson {
    use chrono::TimeZone;
    to_bson_date(Utc.with_ymd_and_hms(year, month, day, hour, minute, 0).unwrap())
}
